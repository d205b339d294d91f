package main

// dashboard.go is what people look at: GET /events, a server-sent event
// stream of one status snapshot per second plus every transition as it
// happens, and GET /, a self-contained page (embedded, no CDN) that draws
// that stream as live charts.

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/julienschmidt/httprouter"
)

//go:embed dashboard.html
var dashboardHTML []byte

// dashboardPage is dashboard.html with its rows of message counts, one per
// group of statuses, drawn from statusRules.
var dashboardPage = bytes.Replace(dashboardHTML, []byte(statusRowsMark), []byte(statusRows()), 1)

// statusRowsMark is the line of dashboard.html that statusRows replaces.
const statusRowsMark = "      <!-- status rows: one per status group, drawn from statusRules (dashboard.go) -->\n"

// statusRows are the dashboard's count rows of the statuses: those not
// final in one row, each final status whose delivery is known in its own,
// and those whose delivery is unknown in one. Each count is in an element
// with id c-<status>, which the page fills from /status's messages.
func statusRows() string {
	var b strings.Builder
	row := func(label string, rules []statusRule) {
		texts, cells := make([]string, len(rules)), make([]string, len(rules))
		for i, r := range rules {
			texts[i], cells[i] = r.text, fmt.Sprintf(`<span id="c-%s">0</span>`, r.status)
		}
		fmt.Fprintf(&b, "      <tr><td>%s%s</td><td>%s</td></tr>\n", label, strings.Join(texts, " · "), strings.Join(cells, " · "))
	}
	var pending, unknown []statusRule
	for _, r := range statusRules {
		switch {
		case !r.final:
			pending = append(pending, r)
		case r.unknown:
			unknown = append(unknown, r)
		}
	}
	row("", pending)
	for _, r := range statusRules {
		if r.final && !r.unknown {
			row("", []statusRule{r})
		}
	}
	row("delivery unknown: ", unknown)
	return b.String()
}

// Hub keeps the recent history and fans it out to every /events stream.
type Hub struct {
	interval time.Duration
	snapshot func() statusResponse
	// messageapp, when set, reports the built-in simulator's state for
	// each snapshot; set before Run.
	messageapp SelfReporter
	done       chan struct{} // closed when Run returns; streams end

	// mu guards everything below.
	mu        sync.Mutex
	subs      map[chan sseMessage]struct{}
	snapshots []Snapshot   // the last historyLen, oldest first
	events    []Transition // the last eventsLen, oldest first

	// Since the last snapshot; counted without the lock, on hot paths.
	outcomes [len(outcomeKinds)]atomic.Int64
	rejected atomic.Int64
}

// How much history a new stream starts with: five minutes of snapshots
// at one per second, and the last fifty transitions.
const (
	historyLen = 300
	eventsLen  = 50
	subBuffer  = 64 // messages a slow stream may fall behind before it is dropped
	// maxStreams is the most /events streams at once. Each holds its
	// buffer and starts with the history (a few hundred KiB); without a
	// cap, a client opening thousands would take that many times it.
	maxStreams = 64
)

// SelfReporter is a part of the lab that says how it is, as a value that
// encodes to JSON: the built-in simulator, whose report the snapshots carry.
type SelfReporter interface{ SelfReport() any }

// Snapshot is one point of the dashboard's charts: the status and what
// happened per second since the previous snapshot.
type Snapshot struct {
	Time      time.Time          `json:"time"`
	Status    statusResponse     `json:"status"`
	PerSecond map[string]float64 `json:"per_second"`
	// Messageapp is what the built-in simulator reports of itself (its
	// GET /control), when courier runs one; absent for a real messageapp.
	Messageapp any `json:"messageapp,omitempty"`
}

// Transition is a queue, circuit or concurrency limit change, as its log
// line says it.
type Transition struct {
	Time    time.Time `json:"time"`
	Event   string    `json:"event"`
	Depth   *int      `json:"depth,omitempty"`
	OpenFor string    `json:"open_for,omitempty"`
	Limit   *int      `json:"limit,omitempty"`
	From    *int      `json:"from,omitempty"`
	Cause   string    `json:"cause,omitempty"`
}

type sseMessage struct {
	event string
	data  []byte
}

// NewHub makes a hub that snapshots every interval once Run is called.
func NewHub(interval time.Duration, snapshot func() statusResponse) *Hub {
	return &Hub{interval: interval, snapshot: snapshot, done: make(chan struct{}),
		subs: map[chan sseMessage]struct{}{}}
}

// Run takes a snapshot every interval until stop is closed, then ends
// every stream.
func (h *Hub) Run(stop <-chan struct{}) {
	defer close(h.done)
	tick := time.NewTicker(h.interval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-tick.C:
			h.tick(now)
		}
	}
}

func (h *Hub) tick(now time.Time) {
	st := h.snapshot()
	h.mu.Lock()
	defer h.mu.Unlock()
	secs := h.interval.Seconds()
	per := map[string]float64{"rejected": float64(h.rejected.Swap(0)) / secs}
	for i, o := range outcomeKinds {
		per[string(o)] = float64(h.outcomes[i].Swap(0)) / secs
	}
	s := Snapshot{Time: now, Status: st, PerSecond: per}
	if h.messageapp != nil {
		s.Messageapp = h.messageapp.SelfReport()
	}
	h.snapshots = appendBounded(h.snapshots, s, historyLen)
	h.broadcast("snapshot", s)
}

// broadcast sends to every stream; a stream too slow to keep up is
// dropped rather than allowed to hold courier back. Callers hold mu.
func (h *Hub) broadcast(event string, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		return
	}
	for ch := range h.subs {
		select {
		case ch <- sseMessage{event, data}:
		default:
			delete(h.subs, ch)
			close(ch)
		}
	}
}

func (h *Hub) transition(t Transition) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = appendBounded(h.events, t, eventsLen)
	h.broadcast("transition", t)
}

// QueueChanged publishes an enqueueing transition.
func (h *Hub) QueueChanged(accepting bool, depth int) {
	h.transition(Transition{Time: time.Now(), Event: queueEvent(accepting), Depth: &depth})
}

// CircuitChanged publishes a circuit transition.
func (h *Hub) CircuitChanged(to CircuitState, openFor time.Duration) {
	t := Transition{Time: time.Now(), Event: circuitEvent(to)}
	if openFor > 0 {
		t.OpenFor = openFor.String()
	}
	h.transition(t)
}

// LimitChanged publishes a concurrency limit transition.
func (h *Hub) LimitChanged(limit, from int, cause string) {
	h.transition(Transition{Time: time.Now(), Event: limitEvent(limit > from), Limit: &limit, From: &from, Cause: cause})
}

// Attempted counts an attempt for the next snapshot.
func (h *Hub) Attempted(outcome Outcome, _ time.Duration) {
	if i := slices.Index(outcomeKinds[:], outcome); i >= 0 {
		h.outcomes[i].Add(1)
	}
}

// Rejected counts a 503 for the next snapshot.
func (h *Hub) Rejected(ProblemCode) { h.rejected.Add(1) }

// history is what a new stream starts with.
type history struct {
	IntervalMS int64        `json:"interval_ms"`
	Snapshots  []Snapshot   `json:"snapshots"`
	Events     []Transition `json:"events"`
}

// subscribe registers a stream and returns its channel and the history so
// far; ok is false, and nothing is registered, when maxStreams are open.
func (h *Hub) subscribe() (ch chan sseMessage, hist history, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.subs) >= maxStreams {
		return nil, history{}, false
	}
	ch = make(chan sseMessage, subBuffer)
	h.subs[ch] = struct{}{}
	return ch, history{IntervalMS: h.interval.Milliseconds(),
		Snapshots: append([]Snapshot{}, h.snapshots...), Events: append([]Transition{}, h.events...)}, true
}

func (h *Hub) unsubscribe(ch chan sseMessage) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[ch]; ok {
		delete(h.subs, ch)
		close(ch)
	}
}

func appendBounded[T any](s []T, v T, n int) []T {
	s = append(s, v)
	if len(s) > n {
		s = append(s[:0], s[len(s)-n:]...)
	}
	return s
}

// handleEvents streams the hub as server-sent events: `history` first,
// then a `snapshot` per interval and a `transition` per change.
func (s *service) handleEvents() httprouter.Handle {
	return func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
		rc := http.NewResponseController(w)
		if r.Method == http.MethodHead {
			w.Header().Set("Content-Type", "text/event-stream")
			w.Header().Set("Cache-Control", "no-cache")
			return // the headers say what GET would stream
		}
		ch, hist, ok := s.hub.subscribe()
		if !ok {
			w.Header().Set("Retry-After", "10")
			s.writeProblem(w, CodeTooManyStreams,
				fmt.Sprintf("%d event streams are open, the most courier serves at once; retry later", maxStreams), &problem{RetryAfterSeconds: 10})
			return
		}
		defer s.hub.unsubscribe(ch)
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Accel-Buffering", "no")

		// The server's WriteTimeout is for ordinary answers; a stream
		// pushes its deadline forward at every write instead.
		send := func(event string, data []byte) bool {
			_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, data); err != nil {
				return false
			}
			return rc.Flush() == nil
		}
		data, _ := json.Marshal(hist)
		if !send("history", data) {
			return
		}
		for {
			select {
			case m, ok := <-ch:
				if !ok || !send(m.event, m.data) {
					return
				}
			case <-r.Context().Done():
				return
			case <-s.hub.done:
				return
			}
		}
	}
}

func (s *service) handleDashboard() httprouter.Handle {
	return func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(dashboardPage)
	}
}
