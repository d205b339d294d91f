package main

// problem.go is how courier answers an error: RFC 9457 problem details
// (application/problem+json) with a stable `code` that clients switch on,
// and the one table that says which HTTP status each code is.

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/rs/zerolog"
)

// ProblemCode is the stable `code` of an error answer.
type ProblemCode string

// The problem codes courier answers with; each one's status is in
// problemStatus.
const (
	CodeInvalidRequest       ProblemCode = "invalid_request"
	CodeUnauthorized         ProblemCode = "unauthorized"
	CodePayloadTooLarge      ProblemCode = "payload_too_large"
	CodeUnsupportedMediaType ProblemCode = "unsupported_media_type"
	CodeIdempotencyKeyReused ProblemCode = "idempotency_key_reused"
	CodeNotFound             ProblemCode = "not_found"
	CodeFromEarlierRun       ProblemCode = "from_earlier_run"
	CodeMethodNotAllowed     ProblemCode = "method_not_allowed"
	CodeQueueFull            ProblemCode = "queue_full"
	CodeShuttingDown         ProblemCode = "shutting_down"
	CodeTooManyStreams       ProblemCode = "too_many_streams"
	CodeInternalError        ProblemCode = "internal_error"
)

// problemStatus is the HTTP status of each problem code.
var problemStatus = map[ProblemCode]int{
	CodeInvalidRequest:       http.StatusBadRequest,
	CodeUnauthorized:         http.StatusUnauthorized,
	CodePayloadTooLarge:      http.StatusRequestEntityTooLarge,
	CodeUnsupportedMediaType: http.StatusUnsupportedMediaType,
	CodeIdempotencyKeyReused: http.StatusUnprocessableEntity,
	CodeNotFound:             http.StatusNotFound,
	CodeFromEarlierRun:       http.StatusNotFound,
	CodeMethodNotAllowed:     http.StatusMethodNotAllowed,
	CodeQueueFull:            http.StatusServiceUnavailable,
	CodeShuttingDown:         http.StatusServiceUnavailable,
	CodeTooManyStreams:       http.StatusServiceUnavailable,
	CodeInternalError:        http.StatusInternalServerError,
}

// problem is an RFC 9457 problem details body with courier's stable code
// and the extension members some problems carry. A struct, not a map:
// the reject path is hot under overload, and maps encode slowly.
type problem struct {
	Type              string         `json:"type"`
	Title             string         `json:"title"`
	Status            int            `json:"status"`
	Detail            string         `json:"detail"`
	Code              ProblemCode    `json:"code"`
	Errors            []fieldProblem `json:"errors,omitempty"`
	RetryAfterSeconds int            `json:"retry_after_seconds,omitempty"`
	Queue             *queueStatus   `json:"queue,omitempty"`
	Circuit           *circuitStatus `json:"circuit,omitempty"`
}

// newProblem is the body of an answer with code: its type, title and status
// follow from the code.
func newProblem(code ProblemCode, detail string, extra *problem) problem {
	var body problem
	if extra != nil {
		body = *extra
	}
	status, ok := problemStatus[code]
	if !ok {
		status, code = http.StatusInternalServerError, CodeInternalError // a code without a row is courier's bug
	}
	body.Type, body.Title, body.Status, body.Detail, body.Code =
		"urn:courier:problem:"+string(code), http.StatusText(status), status, detail, code
	return body
}

// writeProblem answers with the problem of code; extra, if any, carries the
// extension members. 5xx answers other than the deliberate 503s are logged
// at error level, every other refusal at debug level only.
func (s *service) writeProblem(w http.ResponseWriter, code ProblemCode, detail string, extra *problem) {
	body := newProblem(code, detail, extra)
	if body.Status >= 500 && body.Status != http.StatusServiceUnavailable {
		s.log.Error().Int("status", body.Status).Str("code", string(body.Code)).Msg(detail)
	} else {
		logRefused(s.log, body.Status, body.Code, detail)
	}
	w.Header()["Content-Type"] = problemContentType
	w.WriteHeader(body.Status)
	_ = json.NewEncoder(w).Encode(body)
}

// logRefused writes the debug line of a refused request. Under overload
// most requests are refused, so this is on the hot path: with debug off,
// Debug() is one level comparison and a nil event that ignores the rest.
func logRefused(log zerolog.Logger, status int, code ProblemCode, detail string) {
	log.Debug().Str("event", "refused").Int("status", status).Str("code", string(code)).Msg(detail)
}

// problemContentType is shared, never modified, by every problem answer.
var problemContentType = []string{"application/problem+json"}

// fieldProblem is one entry of a 400's `errors` list.
type fieldProblem struct {
	Field  string `json:"field,omitempty"`
	Detail string `json:"detail"`
}

// describe joins field problems into one detail sentence.
func describe(problems []fieldProblem) string {
	parts := make([]string, len(problems))
	for i, p := range problems {
		parts[i] = p.Detail
	}
	return strings.Join(parts, "; ")
}
