package main

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/facebookgo/clock"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"
)

func TestOpenCircuitLogsEveryMessageItKeepsBackOnceWithItsID(t *testing.T) {
	env := baseEnv("")
	env["SENDERS"] = "8"
	s, _ := openCircuit(t, env) // BREAKER_BACKOFF_INITIAL 10m: one open period
	eventually(t, 5*time.Second, "a message held for the probe", func() bool {
		return len(s.logs.entries(map[string]any{"outcome": "breaker_open", "then": keptForProbe})) > 0
	})
	lines := s.logs.entries(map[string]any{"outcome": "breaker_open"})
	perID := map[string]int{}
	for _, l := range lines {
		id, _ := l["id"].(string)
		perID[id]++
		if id == "" || l["message"] != OutcomeBreakerOpen.rule().text || l["level"] != "warn" || l["probe_in_ms"] == nil {
			t.Errorf("breaker_open line: got %v, want id, its text, warn and probe_in_ms", l)
		}
	}
	for id, n := range perID {
		if n > 1 {
			t.Errorf("message %s: %d breaker_open lines in one open period, want 1", id, n)
		}
	}
	held := s.logs.entries(map[string]any{"outcome": "breaker_open", "then": keptForProbe})[0]["id"].(string)
	m := s.message(held)
	if m.Status != StatusSending || m.LastError == nil || m.LastError.Kind != OutcomeBreakerOpen ||
		!strings.Contains(m.LastError.Detail, "next probe due in") {
		t.Errorf("held message record: got status %s, last_error %+v; want sending, breaker_open with when the probe is due", m.Status, m.LastError)
	}
	for _, l := range s.logs.entries(map[string]any{"outcome": "breaker_open", "then": keptInQueue}) {
		if m := s.message(l["id"].(string)); m.Status != StatusQueued || m.LastError == nil || m.LastError.Kind != OutcomeBreakerOpen {
			t.Errorf("message put back in the queue: got status %s, last_error %+v; want queued, breaker_open", m.Status, m.LastError)
		}
	}
	// Lines and metric are written one after the other: compare them once
	// they agree or the deadline passes.
	eventually(t, 5*time.Second, "the breaker_open metric to equal the lines (under the budget)", func() bool {
		_, series := s.scrape()
		return series[`courier_attempts_total{outcome="breaker_open"}`] == float64(len(s.logs.entries(map[string]any{"outcome": "breaker_open"})))
	})
}

// countObserver counts attempts by outcome.
type countObserver struct {
	observers
	mu sync.Mutex
	n  map[Outcome]int
}

func (c *countObserver) Attempted(o Outcome, _ time.Duration) {
	c.mu.Lock()
	c.n[o]++
	c.mu.Unlock()
}

func TestBreakerOpenLinesAreBudgetedAndTheRestAccountedFor(t *testing.T) {
	logs := &logBuffer{}
	log := zerolog.New(logs)
	obs := &countObserver{n: map[Outcome]int{}}
	br := NewBreaker(1, time.Millisecond, time.Millisecond, clock.New(), log, observers(nil))
	p := NewSenders(NewLimiter(1, false, defaultLimiterTuning, log, obs), 3, newRetryBackoff(time.Millisecond, time.Millisecond), NewQueue(10, 5, log, obs, time.Now), br, NewStore(10, time.Now),
		newMessageappClient("http://127.0.0.1:1/message", time.Second, 1), log, obs)
	fail := func() {
		_ = br.Call(context.Background(), func(context.Context) error { return errors.New("down") }, func(error) bool { return true })
	}
	fail() // open period 1

	flood := make([]*Delivery, 100)
	for i := range flood {
		flood[i] = newDelivery("m"+strconv.Itoa(i), "", "", "")
		p.kept(flood[i], keptInQueue, time.Second)
		p.kept(flood[i], keptInQueue, time.Second) // the same period again: nothing
	}
	lines := logs.entries(map[string]any{"outcome": "breaker_open"})
	if len(lines) != keptLinesPerSecond {
		t.Errorf("lines from a flood of 100: got %d, want the budget's %d", len(lines), keptLinesPerSecond)
	}
	if got := obs.n[OutcomeBreakerOpen]; got != 100 {
		t.Errorf("breaker_open counted: got %d, want 100 (one per message per open period)", got)
	}

	// The next line the budget allows says how many went unlogged before it.
	p.keptLines = rate.NewLimiter(rate.Inf, 1)
	eventually(t, 5*time.Second, "the probe to be due", func() bool { return br.OpenLeft() == 0 })
	fail() // the probe fails: open period 2
	p.kept(flood[0], keptForProbe, time.Second)
	last := logs.entries(map[string]any{"outcome": "breaker_open"})
	if n := len(last); n != keptLinesPerSecond+1 || last[n-1]["id"] != "m0" || last[n-1]["unlogged_before"] != float64(100-keptLinesPerSecond) {
		t.Errorf("in a new open period: got %v, want a line for m0 with unlogged_before %d", last[len(last)-1], 100-keptLinesPerSecond)
	}
}

func TestAMessageQueuedWhileTheCircuitIsOpenSaysWhyItWaits(t *testing.T) {
	s, _ := openCircuit(t, baseEnv("")) // BREAKER_BACKOFF_INITIAL 10m: no probe during the test
	r := s.post("d", "queued after the circuit opened")
	if r.status != 202 {
		t.Fatalf("POST: got %d, want 202", r.status)
	}
	id := r.body["id"].(string)
	m := s.message(id)
	if m.Status != StatusQueued || m.LastError == nil || m.LastError.Kind != OutcomeBreakerOpen ||
		!strings.Contains(m.LastError.Detail, "next probe due in") {
		t.Fatalf("GET /messages/%s: got status %s, last_error %+v; want queued, breaker_open with when the probe is due", id, m.Status, m.LastError)
	}
	list, _ := s.do(http.MethodGet, "/messages?status=queued", "", "").body["messages"].([]any)
	if len(list) == 0 {
		t.Fatal("GET /messages?status=queued: no message")
	}
	for _, m := range list {
		if e, _ := m.(map[string]any)["last_error"].(map[string]any); e["kind"] != string(OutcomeBreakerOpen) {
			t.Errorf("GET /messages?status=queued: got %v, want every one with last_error breaker_open", m)
		}
	}
}

func TestTheOpenCircuitHoldsAMessageForTheProbeWhileEveryCallSlotIsTaken(t *testing.T) {
	// The adaptive limit's regression: at a limit of 1, its slot held by a
	// call that hangs, every sender waited for that slot before taking a
	// message, so none held one for the probe and the open circuit logged
	// no breaker_open line. Holding the probe needs no call slot; the
	// probe's call does, and waits for one.
	app := newFakeMessageapp(t, modeOK)
	logs := &logBuffer{}
	log := zerolog.New(logs)
	lim := NewLimiter(2, true, frozenLaw(1), log, observers(nil))
	q := NewQueue(10, 5, log, observers(nil), time.Now)
	br := NewBreaker(1, 200*time.Millisecond, 200*time.Millisecond, clock.New(), log, observers(nil))
	store := NewStore(10, time.Now)
	client := newMessageappClient(app.URL(), time.Second, 2)
	defer client.Close()
	p := NewSenders(lim, 3, newRetryBackoff(time.Millisecond, time.Millisecond), q, br, store, client, log, observers(nil))

	hanging := startCall(t, lim) // the limit's one slot, in a call that has not answered
	_ = br.Call(context.Background(), func(context.Context) error { return errors.New("messageapp failed") }, func(error) bool { return true })
	if st, _ := br.State(); st != CircuitOpen || lim.Limit() != 1 {
		t.Fatalf("setup: circuit %s, limit %d; want open, 1", st, lim.Limit())
	}
	d := store.Add("m", "d", "b", "")
	if !q.Offer(d, func() bool { return true }) {
		t.Fatal("setup: the queue refused m")
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.Start(ctx)
	defer p.Wait()
	defer cancel()

	eventually(t, 5*time.Second, "a breaker_open line for m, held for the probe", func() bool {
		return len(logs.entries(map[string]any{"outcome": "breaker_open", "id": "m", "then": keptForProbe})) > 0
	})
	if st, _ := br.State(); st != CircuitOpen {
		t.Errorf("circuit when m was held for the probe: got %s, want open", st)
	}

	// The probe is due, but its call needs the slot the hanging call holds.
	eventually(t, 5*time.Second, "the probe's sender to wait for a call slot", func() bool {
		return br.OpenLeft() == 0 && parkedIn("(*Limiter).acquire")
	})
	if calls, inFlight := app.calls.Load(), lim.InFlight(); calls != 0 || inFlight != 1 {
		t.Errorf("while the only slot is held: %d calls reached messageapp, %d in flight; want 0 and 1 (the limit)", calls, inFlight)
	}
	lim.end(hanging, callTimedOut)
	lim.release(hanging)
	eventually(t, 5*time.Second, "m sent by the probe", func() bool {
		m, _ := store.Get("", "m")
		return m.Status == StatusSent
	})
	if st, _ := br.State(); st != CircuitClosed || app.calls.Load() != 1 {
		t.Errorf("after the probe: circuit %s, %d calls; want closed, 1", st, app.calls.Load())
	}
	if n := len(logs.entries(map[string]any{"outcome": "breaker_open", "id": "m"})); n != 1 {
		t.Errorf("breaker_open lines for m: got %d, want 1 (one open period)", n)
	}
}
