package main

// outcome.go names how an attempt to deliver a message can end (docs/behaviour.md)
// and, next to each outcome, everything that follows from it. Metrics, the
// dashboard, the log and the sender loop all read this one table.

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// Outcome is how one attempt to deliver a message ended.
type Outcome string

// The attempt outcomes of docs/behaviour.md; what follows from each is in outcomes.
const (
	OutcomeSent            Outcome = "sent"
	OutcomeMessageappError Outcome = "messageapp_error"
	OutcomeUnreachable     Outcome = "unreachable"
	OutcomeTimeout         Outcome = "timeout"
	OutcomeConnectionLost  Outcome = "connection_lost"
	OutcomeBreakerOpen     Outcome = "breaker_open"
)

// outcomeRule is what follows from an outcome. Exactly one of waits and
// final says what becomes of the message; retryable may defer final.
type outcomeRule struct {
	outcome        Outcome
	level          zerolog.Level // of its log line
	retryable      bool          // another attempt follows, up to MAX_ATTEMPTS
	breakerFailure bool          // counts towards opening the circuit
	final          Status        // what the message ends as, once not retried
	waits          bool          // not an attempt: the message waits for the circuit
	text           string        // its log message, its own; {timeout} is the deadline
}

// outcomes is every outcome, in the order reports show them. A timeout, or
// a connection lost after the request was sent, is final although it
// failed: messageapp may have delivered it, and courier must not send it
// twice. A messageapp_error row holds for the answers
// that speak of messageapp's health; attemptRule makes the others final.
var outcomes = [...]outcomeRule{
	{OutcomeSent, zerolog.InfoLevel, false, false, StatusSent, false, "delivered to messageapp"},
	{OutcomeMessageappError, zerolog.ErrorLevel, true, true, StatusFailed, false, "messageapp answered with an error"},
	{OutcomeUnreachable, zerolog.ErrorLevel, true, true, StatusFailed, false, "messageapp unreachable: nothing was delivered"},
	{OutcomeTimeout, zerolog.ErrorLevel, false, true, StatusTimeout, false, "messageapp did not answer within {timeout}: gave up"},
	{OutcomeConnectionLost, zerolog.ErrorLevel, false, true, StatusConnectionLost, false, "connection to messageapp lost after the request was sent: delivery unknown"},
	{OutcomeBreakerOpen, zerolog.WarnLevel, false, false, "", true, "message held back by the open circuit: not sent to messageapp"},
}

// retryableStatus reports whether a non-2xx answer from messageapp speaks
// of its health, so that the same request may succeed later: a 5xx, 408
// Request Timeout or 429 Too Many Requests (RFC 9110 §15.5.9 and §15.6,
// RFC 6585 §4). Any other answer (a 4xx, or a redirect courier does not
// follow) is about the request: sending it again would get the same
// answer, and it says nothing against messageapp.
func retryableStatus(status int) bool {
	return status >= 500 || status == http.StatusRequestTimeout || status == http.StatusTooManyRequests
}

// attemptRule is what follows from an attempt that ended in outcome with
// error ae (nil for sent and breaker_open): the outcome's rule, except that
// an answer about the request is final at once and no breaker failure.
func attemptRule(outcome Outcome, ae *AttemptError) outcomeRule {
	r := outcome.rule()
	if outcome == OutcomeMessageappError && ae != nil && !retryableStatus(ae.Status) {
		r.retryable, r.breakerFailure = false, false
	}
	return r
}

// isBreakerFailure reports whether an attempt's error counts towards
// opening the circuit; an error that is not an attempt's (a call cut short
// by shutdown) never does.
func isBreakerFailure(err error) bool {
	var ae *AttemptError
	return errors.As(err, &ae) && attemptRule(ae.Kind, ae).breakerFailure
}

// answerDetail is the last_error detail of a non-2xx answer: the status,
// and for a status that is not retried, why; a 404 or 405 most likely
// means MESSAGEAPP_URL names no send endpoint.
func answerDetail(status int) string {
	switch {
	case status == http.StatusNotFound || status == http.StatusMethodNotAllowed:
		return fmt.Sprintf("messageapp answered %d: check MESSAGEAPP_URL, it names no send endpoint of messageapp; not retried", status)
	case !retryableStatus(status):
		return fmt.Sprintf("messageapp answered %d: it refuses this request; not retried", status)
	default:
		return fmt.Sprintf("messageapp answered %d", status)
	}
}

// outcomeKinds lists the outcomes, in the order of outcomes.
var outcomeKinds = func() (kinds [len(outcomes)]Outcome) {
	for i, r := range outcomes {
		kinds[i] = r.outcome
	}
	return kinds
}()

// rule is what follows from o. An outcome without a row is a programming
// error, and fails loudly rather than leave a message in limbo.
func (o Outcome) rule() outcomeRule {
	for _, r := range outcomes {
		if r.outcome == o {
			return r
		}
	}
	panic(fmt.Sprintf("outcome %q has no row in outcomes", o))
}

// outcomeTexts are the log messages of the outcomes with the deadline
// filled in, so that a person reading the log tells the kinds apart
// without reading fields.
func outcomeTexts(timeout time.Duration) map[Outcome]string {
	texts := make(map[Outcome]string, len(outcomes))
	for _, r := range outcomes {
		texts[r.outcome] = strings.ReplaceAll(r.text, "{timeout}", timeout.String())
	}
	return texts
}
