package main

// handlers.go is courier's HTTP API (docs/api.md) on httprouter: routes, the
// JSON and problem+json writers, and one handler maker per endpoint. It
// knows the queue, the breaker's state and the store, never messageapp.

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/julienschmidt/httprouter"
	"github.com/rs/zerolog"
)

// service is courier: its queue, breaker and store, what watches them
// (metrics, the event hub) and the HTTP API over them. Nothing here reads
// globals.
type service struct {
	log          zerolog.Logger
	queue        *Queue
	breaker      *Breaker
	limiter      *Limiter
	store        *Store
	senders      int
	replica      string   // REPLICA: this instance's name behind the balancer, or empty
	ids          *IDs     // mints this run's message ids
	clients      *Clients // API_TOKENS; nil: open access
	adminSplit   bool     // ADMIN_ADDR is set: operators' routes are on their own listener
	shuttingDown *atomic.Bool
	shutdownWait int // Retry-After seconds while shutting down
	obs          Observer
	hub          *Hub
	metrics      *Metrics
	rejectCache  atomic.Pointer[renderedReject] // the last queue_full answer
}

// routes is the whole API surface.
func (s *service) routes() http.Handler {
	r := httprouter.New()
	// A path that is almost right is a 404 problem, not an HTML redirect:
	// every answer courier gives is JSON.
	r.RedirectTrailingSlash, r.RedirectFixedPath = false, false
	// Every read answers HEAD as GET: net/http drops the body.
	get := func(route string, h http.Handler) {
		r.Handler(http.MethodGet, route, h)
		r.Handler(http.MethodHead, route, h)
	}
	// Each API route's duration is measured, labelled by its pattern.
	measured := func(route string, h httprouter.Handle) http.Handler {
		return s.metrics.instrument(route, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			h(w, req, httprouter.ParamsFromContext(req.Context()))
		}))
	}
	// Clients' routes need a client's token when API_TOKENS is set (401
	// otherwise); operators' routes move to ADMIN_ADDR when it is set; the
	// probes answer on every listener.
	clients := func(route string, h clientHandle) http.Handler {
		return s.metrics.instrument(route, s.forClients(h))
	}
	r.Handler(http.MethodPost, "/messages", clients("/messages", s.handlePostMessage()))
	get("/messages", clients("/messages", s.handleListMessages()))
	get("/messages/:id", clients("/messages/:id", s.handleGetMessage()))
	get("/healthz", measured("/healthz", s.handleHealthz()))
	get("/readyz", measured("/readyz", s.handleReadyz()))
	get("/status", s.forOperators(measured("/status", s.handleStatus())))
	get("/", s.forOperators(plain(s.handleDashboard())))
	get("/events", s.forOperators(plain(s.handleEvents())))
	get("/metrics", s.forOperators(s.metrics.Handler()))
	get("/openapi.yaml", s.forOperators(plain(handleOpenAPI)))

	r.NotFound = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		detail := fmt.Sprintf("no route for %s %s", req.Method, req.URL.Path)
		if req.URL.Path == "/message" {
			detail += "; messages are sent to POST /messages"
		}
		s.writeProblem(w, CodeNotFound, detail, nil)
	})
	r.MethodNotAllowed = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		s.writeProblem(w, CodeMethodNotAllowed,
			fmt.Sprintf("%s is not allowed on %s (allowed: %s)", req.Method, req.URL.Path, w.Header().Get("Allow")), nil)
	})
	r.PanicHandler = func(w http.ResponseWriter, req *http.Request, v any) {
		s.log.Error().Str("event", "panic").Str("path", req.URL.Path).Interface("panic", v).Msg("handler panicked")
		s.writeProblem(w, CodeInternalError, "courier failed to handle this request", nil)
	}
	return r
}

// plain adapts a handle that takes no route parameters.
func plain(h httprouter.Handle) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h(w, r, nil) })
}

// openAPIDocument is the contract of the routes above (openapi.yaml), which
// the HTTP tests hold every request and response to.
//
//go:embed openapi.yaml
var openAPIDocument []byte

// handleOpenAPI serves openapi.yaml, for client generators and API diffs.
func handleOpenAPI(w http.ResponseWriter, _ *http.Request, _ httprouter.Params) {
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(openAPIDocument)
}

// writeJSON writes v as a JSON body with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// postMessageResponse is the 202 body.
type postMessageResponse struct {
	ID     string `json:"id"`
	Status Status `json:"status"`
}

// handlePostMessage sheds, checks the key, decodes, admits and answers.
func (s *service) handlePostMessage() clientHandle {
	return func(w http.ResponseWriter, r *http.Request, client string) {
		key, keys := r.Header.Get("Idempotency-Key"), r.Header["Idempotency-Key"]
		if s.shed(w, client, key) {
			return
		}
		if len(keys) > 1 {
			s.writeProblem(w, CodeInvalidRequest, "send one Idempotency-Key header, not several",
				&problem{Errors: []fieldProblem{{Field: "Idempotency-Key", Detail: "given more than once"}}})
			return
		}
		if keys != nil && !validIdempotencyKey(key) {
			s.writeProblem(w, CodeInvalidRequest, "Idempotency-Key must be 1 to 255 visible ASCII characters",
				&problem{Errors: []fieldProblem{{Field: "Idempotency-Key", Detail: "must be 1 to 255 visible ASCII characters"}}})
			return
		}
		req, ok := s.decode(w, r)
		if !ok {
			return
		}
		s.answerPost(w, s.admit(client, req, key))
	}
}

// shed refuses a POST before anything is read, while the queue is full or
// courier is shutting down: shedding must cost less than accepting. Only a
// retry of an already accepted message (its key is known) is let through,
// to be answered with its original 202, even while draining: behind a
// balancer, a 503 would send the retry to another replica, which would
// accept it a second time. It reports whether it answered.
func (s *service) shed(w http.ResponseWriter, client, key string) bool {
	refusing := s.shuttingDown.Load() || !s.queue.Accepting()
	if !refusing || (key != "" && s.store.HasKey(client, key)) {
		return false
	}
	if s.shuttingDown.Load() {
		s.rejectShuttingDown(w)
	} else {
		s.rejectQueueFull(w)
	}
	return true
}

// decode reads and checks a POST's body, answering 415, 413 or 400 when it
// will not do. It reports whether the request may go on.
func (s *service) decode(w http.ResponseWriter, r *http.Request) (postMessageRequest, bool) {
	if r.ContentLength > maxBodyBytes {
		// Said up front: refuse before reading, before net/http tells an
		// Expect: 100-continue client to go ahead and send it all.
		s.tooLarge(w)
		return postMessageRequest{}, false
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !isJSON(ct) {
		s.writeProblem(w, CodeUnsupportedMediaType,
			fmt.Sprintf("Content-Type %q is not JSON; send application/json (with curl: --json or -H 'Content-Type: application/json')", ct), nil)
		return postMessageRequest{}, false
	}
	req, problems, err := decodePostMessage(w, r)
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		s.tooLarge(w)
		return postMessageRequest{}, false
	case err != nil:
		problems = []fieldProblem{{Detail: err.Error()}}
	}
	if len(problems) > 0 {
		s.writeProblem(w, CodeInvalidRequest, describe(problems), &problem{Errors: problems})
		return postMessageRequest{}, false
	}
	return req, true
}

// tooLarge answers 413 payload_too_large.
func (s *service) tooLarge(w http.ResponseWriter) {
	s.writeProblem(w, CodePayloadTooLarge, fmt.Sprintf("request body is larger than %d bytes", maxBodyBytes), nil)
}

// admission is one POST at the queue: what it asks for, and what became of
// it.
type admission struct {
	store    *Store
	client   string // who posts it
	req      postMessageRequest
	key      string    // Idempotency-Key, if any
	id       string    // the new message's id
	delivery *Delivery // its record, for the queue and the store
	accepted bool      // enqueued as id
	use      KeyUse    // what key already stood for
	firstID  string    // the message key stands for, unless KeyUnused
}

// admit offers client's new message to the queue, unless its key was used.
func (s *service) admit(client string, req postMessageRequest, key string) *admission {
	a := &admission{store: s.store, client: client, req: req, key: key, id: s.ids.New()}
	a.delivery = newClientDelivery(client, a.id, req.Destination, req.Body, key)
	a.accepted = s.queue.Offer(a.delivery, a.record)
	if !a.accepted && key != "" && a.use == KeyUnused {
		a.use, a.firstID = s.store.LookupKey(client, key, req.Destination, req.Body) // refused while full or closed
	}
	return a
}

// record runs under the queue's lock, before the message can be taken: it
// refuses a key already used, so two POSTs with one key cannot both pass,
// and records the message otherwise.
func (a *admission) record() bool {
	if a.key != "" {
		if a.use, a.firstID = a.store.LookupKey(a.client, a.key, a.req.Destination, a.req.Body); a.use != KeyUnused {
			return false
		}
	}
	a.store.Insert(a.delivery)
	return true
}

// answerPost tells the client what became of its POST.
func (s *service) answerPost(w http.ResponseWriter, a *admission) {
	id := a.id
	switch {
	case a.use == KeySame:
		w.Header().Set("Idempotent-Replayed", "true")
		id = a.firstID
	case a.use == KeyConflict:
		// Which message holds the key is not said: a key is easy to guess,
		// an id is not, and the id would lead to that message.
		s.writeProblem(w, CodeIdempotencyKeyReused,
			fmt.Sprintf("Idempotency-Key %q was used for another message, with a different destination or body; use a new key for a new message", a.key),
			nil)
		return
	case !a.accepted && s.shuttingDown.Load():
		s.rejectShuttingDown(w)
		return
	case !a.accepted:
		s.rejectQueueFull(w)
		return
	}
	w.Header().Set("Location", "/messages/"+id)
	if b, ok := appendPlainJSONString([]byte(`{"id":`), id); ok {
		// What writeJSON would write, without its encoder: ids need no escaping.
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write(append(b, `,"status":"queued"}`+"\n"...))
		return
	}
	writeJSON(w, http.StatusAccepted, postMessageResponse{ID: id, Status: StatusQueued})
}

// validIdempotencyKey accepts 1..255 visible ASCII characters.
func validIdempotencyKey(key string) bool {
	if len(key) > 255 {
		return false
	}
	for i := range len(key) {
		if key[i] < 0x21 || key[i] > 0x7e {
			return false
		}
	}
	return key != ""
}

// isJSON accepts application/json and any +json media type.
func isJSON(contentType string) bool {
	if contentType == "application/json" { // nearly every client: no parsing
		return true
	}
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

func (s *service) rejectShuttingDown(w http.ResponseWriter) {
	s.store.Reject()
	s.obs.Rejected(CodeShuttingDown)
	w.Header().Set("Retry-After", strconv.Itoa(s.shutdownWait))
	s.writeProblem(w, CodeShuttingDown,
		"courier is shutting down and accepts no new messages; retry later or on another instance",
		&problem{RetryAfterSeconds: s.shutdownWait})
}

// rejectQueueFull answers 503 queue_full. Under overload this is most of
// what courier does, and while the queue stays full the answer does not
// change: the body is rendered once per distinct set of figures and reused.
func (s *service) rejectQueueFull(w http.ResponseWriter) {
	s.store.Reject()
	s.obs.Rejected(CodeQueueFull)
	q, c := s.queueStatus(), s.circuitStatus()
	key := rejectKey{q: q, c: c, wait: s.retryAfter(q)}
	cached := s.rejectCache.Load()
	if cached == nil || cached.key != key {
		cached = renderQueueFull(key)
		s.rejectCache.Store(cached)
	}
	h := w.Header()
	h["Content-Type"] = problemContentType
	h["Retry-After"] = cached.retryAfter
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write(cached.body)
	logRefused(s.log, http.StatusServiceUnavailable, CodeQueueFull, "the queue is full")
}

// retryAfter is the Retry-After estimate for the queue as it is in q.
func (s *service) retryAfter(q queueStatus) int {
	return estimateRetryAfter(q.Depth, q.RecoveryThreshold, s.queue.DrainRate(), s.breaker.OpenLeft())
}

// rejectKey is everything a queue_full answer says.
type rejectKey struct {
	q    queueStatus
	c    circuitStatus
	wait int
}

// renderedReject is a queue_full answer ready to write.
type renderedReject struct {
	key        rejectKey
	retryAfter []string
	body       []byte
}

func renderQueueFull(k rejectKey) *renderedReject {
	detail := fmt.Sprintf("the queue is full (%d of %d); enqueueing resumes at %d or below", k.q.Depth, k.q.MaxSize, k.q.RecoveryThreshold)
	if k.c.State != CircuitClosed {
		detail += fmt.Sprintf("; messageapp is failing (circuit %s)", k.c.State)
	}
	q, c := k.q, k.c
	body, _ := json.Marshal(newProblem(CodeQueueFull, detail, &problem{RetryAfterSeconds: k.wait, Queue: &q, Circuit: &c}))
	return &renderedReject{key: k, retryAfter: []string{strconv.Itoa(k.wait)}, body: append(body, '\n')}
}

func (s *service) handleGetMessage() clientHandle {
	return func(w http.ResponseWriter, r *http.Request, client string) {
		id := httprouter.ParamsFromContext(r.Context()).ByName("id")
		m, ok := s.store.Get(client, id)
		switch {
		case !ok && s.fromEarlierRun(id):
			s.writeProblem(w, CodeFromEarlierRun,
				fmt.Sprintf("no message with id %q: an earlier run of this courier accepted it, and courier has restarted since; "+
					"what that run had not delivered is lost unless its shutdown spooled it (SPOOL_DIR), and a spooled message would be known here", id), nil)
			return
		case !ok:
			s.writeProblem(w, CodeNotFound,
				fmt.Sprintf("no message with id %q (unknown, or evicted after finishing)", id), nil)
			return
		}
		if m.Status == StatusQueued {
			if why := s.waitReason(); why != nil {
				m.LastError = why
			}
		}
		writeJSON(w, http.StatusOK, m)
	}
}

// fromEarlierRun reports whether id is one this courier (this REPLICA)
// minted in an earlier run: its shape and prefix are this courier's, its
// run tag is not this run's.
func (s *service) fromEarlierRun(id string) bool {
	prefix := ""
	if s.replica != "" {
		prefix = s.replica + "-"
	}
	return len(id) == len(prefix)+idTextLen && strings.HasPrefix(id, prefix) && s.ids.FromEarlierRun(id)
}

func (s *service) handleListMessages() clientHandle {
	return func(w http.ResponseWriter, r *http.Request, client string) {
		q := r.URL.Query()
		limit := 100
		if v := q.Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1000 {
				s.writeProblem(w, CodeInvalidRequest,
					fmt.Sprintf("limit %q must be a whole number from 1 to 1000", v),
					&problem{Errors: []fieldProblem{{Field: "limit", Detail: "must be a whole number from 1 to 1000"}}})
				return
			}
			limit = n
		}
		status := Status(q.Get("status"))
		if status != "" && !validStatus(status) {
			s.writeProblem(w, CodeInvalidRequest,
				fmt.Sprintf("status %q must be one of %s", status, statusNames()),
				&problem{Errors: []fieldProblem{{Field: "status", Detail: "must be one of " + statusNames()}}})
			return
		}
		messages := s.store.List(client, limit, status)
		if why := s.waitReason(); why != nil {
			for i := range messages {
				if messages[i].Status == StatusQueued {
					messages[i].LastError = why
				}
			}
		}
		writeMessageList(w, messages)
	}
}

// writeMessageList writes the body of GET /messages one message at a time,
// so that answering holds one message's encoding, never the whole list's
// (a thousand 64 KiB messages would be 64 MiB per request).
func writeMessageList(w http.ResponseWriter, messages []Message) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, `{"messages":[`)
	enc := json.NewEncoder(w)
	for i := range messages {
		if i > 0 {
			_, _ = io.WriteString(w, ",")
		}
		if enc.Encode(&messages[i]) != nil {
			return // the client is gone
		}
	}
	_, _ = io.WriteString(w, "]}\n")
}

// waitReason is what a queued message shows as its last_error while the
// circuit is not closed: why it waits and, as of now, until when. Every
// queued message waits for the probe, including one queued after the
// circuit opened and never tried. It is nil while the circuit is closed.
func (s *service) waitReason() *AttemptError {
	if state, _ := s.breaker.State(); state != CircuitClosed {
		return keptError(state, s.breaker.OpenLeft())
	}
	return nil
}

func (s *service) handleStatus() httprouter.Handle {
	return func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
		writeJSON(w, http.StatusOK, s.snapshot())
	}
}

func (s *service) handleHealthz() httprouter.Handle {
	return func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}
}

func (s *service) handleReadyz() httprouter.Handle {
	return func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
		switch {
		case s.shuttingDown.Load():
			w.Header().Set("Retry-After", strconv.Itoa(s.shutdownWait))
			s.writeProblem(w, CodeShuttingDown, "courier is shutting down", nil)
		case !s.queue.Accepting():
			q := s.queueStatus()
			w.Header().Set("Retry-After", strconv.Itoa(s.retryAfter(q)))
			s.writeProblem(w, CodeQueueFull,
				fmt.Sprintf("the queue is full (%d of %d); not ready until it drains to %d", q.Depth, q.MaxSize, q.RecoveryThreshold), nil)
		default:
			writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
		}
	}
}
