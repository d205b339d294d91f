package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/facebookgo/clock"
	"github.com/rs/zerolog"
)

func TestEachFailureKindHasItsOwnOutcomeLogLineAndFinalStatus(t *testing.T) {
	closedURL := func(t *testing.T) string {
		f := newFakeMessageapp(t, modeOK)
		u := f.URL()
		f.Server.Close() // nothing listens there any more: connection refused
		return u
	}
	tests := []struct {
		name         string
		mode         fakeMode
		url          func(*testing.T) string
		wantOutcome  Outcome
		wantStatus   Status
		wantAttempts int
		wantLevel    string
		wantDetail   string
	}{
		{"messageapp answers 500: retried, then failed", modeError, nil, OutcomeMessageappError, StatusFailed, 3, "error", "messageapp answered 500"},
		{"messageapp refuses the connection: unreachable, retried, then failed", modeOK, closedURL, OutcomeUnreachable, StatusFailed, 3, "error", "connection refused"},
		{"messageapp never accepts the connection: unreachable within the deadline, retried, then failed",
			modeOK, fullBacklogURL, OutcomeUnreachable, StatusFailed, 3, "error", "could not connect within 200ms"},
		{"messageapp hangs: one attempt, then timeout, never retried", modeHang, nil, OutcomeTimeout, StatusTimeout, 1, "error", "no answer within 200ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app := newFakeMessageapp(t, tt.mode)
			url := app.URL()
			if tt.url != nil {
				url = tt.url(t)
			}
			env := baseEnv(url)
			env["BREAKER_THRESHOLD"] = "100" // one message: the breaker stays out of it
			s := startService(t, env)

			id := s.post("d", "b").body["id"].(string)
			m := s.waitStatus(id, tt.wantStatus)
			if m.Attempts != tt.wantAttempts {
				t.Errorf("attempts: got %d, want %d", m.Attempts, tt.wantAttempts)
			}
			if m.LastError == nil || m.LastError.Kind != tt.wantOutcome || !strings.Contains(m.LastError.Detail, tt.wantDetail) {
				t.Errorf("last_error: got %+v, want kind %s with a detail saying %q", m.LastError, tt.wantOutcome, tt.wantDetail)
			}
			lines := s.logs.entries(map[string]any{"id": id, "component": "sender"})
			if len(lines) != tt.wantAttempts {
				t.Fatalf("attempt lines: got %d, want %d: %v", len(lines), tt.wantAttempts, lines)
			}
			for i, l := range lines {
				if l["outcome"] != string(tt.wantOutcome) || l["level"] != tt.wantLevel || l["message"] != outcomeTexts(200 * time.Millisecond)[tt.wantOutcome] ||
					l["attempt"] != float64(i+1) || l["duration_ms"] == nil {
					t.Errorf("line %d: got %v, want outcome %s at %s, attempt %d, duration_ms", i, l, tt.wantOutcome, tt.wantLevel, i+1)
				}
			}
			if tt.wantOutcome == OutcomeMessageappError && lines[0]["status"] != float64(500) {
				t.Errorf("messageapp_error line has status %v, want 500", lines[0]["status"])
			}
			if tt.wantOutcome == OutcomeTimeout {
				if d := lines[0]["duration_ms"].(float64); d < 200 || d > 1000 {
					t.Errorf("timeout after %vms, want about MESSAGEAPP_TIMEOUT (200ms)", d)
				}
				if got := app.calls.Load(); got != 1 {
					t.Errorf("messageapp calls: got %d, want 1 (a timeout is not retried)", got)
				}
			}
			if st := s.status(); !st.Messages.Balanced() {
				t.Errorf("counters not balanced: %+v", st.Messages)
			}
		})
	}
}

func TestSlowMessageappWithinTheTimeoutIsSent(t *testing.T) {
	app := newFakeMessageapp(t, modeSlow)
	app.delay.Store(int64(50 * time.Millisecond))
	s := startService(t, baseEnv(app.URL()))
	id := s.post("d", "b").body["id"].(string)
	if m := s.waitStatus(id, StatusSent); m.Attempts != 1 {
		t.Errorf("attempts: got %d, want 1", m.Attempts)
	}
}

// openCircuit starts courier against a failing messageapp and fails enough
// messages concurrently to open the circuit.
func openCircuit(t *testing.T, env map[string]string) (*testCourier, *fakeMessageapp) {
	t.Helper()
	app := newFakeMessageapp(t, modeError)
	env["MESSAGEAPP_URL"] = app.URL()
	s := startService(t, env)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() { s.post("d", strconv.Itoa(i)) })
	}
	wg.Wait()
	s.waitEvent("circuit_open", 1)
	return s, app
}

func TestCircuitOpensAtExactlyTheThresholdUnderConcurrentFailures(t *testing.T) {
	env := baseEnv("")
	env["SENDERS"] = "16"
	env["MAX_ATTEMPTS"] = "1"
	s, _ := openCircuit(t, env)
	opens := s.logs.entries(map[string]any{"event": "circuit_open"})
	if len(opens) != 1 {
		t.Fatalf("circuit_open lines: got %d, want 1", len(opens))
	}
	if opens[0]["consecutive_failures"] != float64(5) || opens[0]["level"] != "warn" {
		t.Errorf("circuit_open: got %v, want consecutive_failures 5 at warn", opens[0])
	}
	if st := s.status(); st.Circuit.State != CircuitOpen {
		t.Errorf("circuit: got %s, want open", st.Circuit.State)
	}
}

func TestOpenCircuitMakesNoCallsAndHoldsAtMostOneMessage(t *testing.T) {
	env := baseEnv("")
	env["SENDERS"] = "8"
	s, app := openCircuit(t, env)
	// Wait for the calls in flight when it opened to settle: everything
	// left is then either queued or held by the one probe-slot sender.
	eventually(t, 5*time.Second, "in-flight calls to settle", func() bool {
		st := s.status()
		return st.Messages.Sending <= 1 && st.Messages.Balanced()
	})
	callsAtOpen := app.calls.Load()

	accepted := 0
	for i := 0; ; i++ {
		r := s.post("d", "more"+strconv.Itoa(i))
		if r.status == http.StatusServiceUnavailable {
			checkProblem(t, r, 503, "queue_full")
			if c, _ := r.body["circuit"].(map[string]any); c["state"] != "open" {
				t.Errorf("queue_full circuit: got %v, want open", c)
			}
			break
		}
		accepted++
		if i > 20 {
			t.Fatal("the queue never filled: senders are taking messages while the circuit is open")
		}
	}
	st := s.status()
	if st.Queue.Depth != 10 {
		t.Errorf("depth: got %d, want 10 (the queue is the whole backlog)", st.Queue.Depth)
	}
	if st.Messages.Sending > 1 {
		t.Errorf("sending while open: got %d, want at most 1", st.Messages.Sending)
	}
	if got := app.calls.Load(); got != callsAtOpen {
		t.Errorf("messageapp calls while open: got %d more, want 0", got-callsAtOpen)
	}
	if !st.Messages.Balanced() {
		t.Errorf("counters not balanced: %+v", st.Messages)
	}
}

func TestSuccessfulProbeClosesTheCircuitAndTheQueueDrains(t *testing.T) {
	env := baseEnv("")
	env["BREAKER_BACKOFF_INITIAL"] = "50ms"
	env["BREAKER_BACKOFF_MAX"] = "50ms"
	s, app := openCircuit(t, env)
	app.set(modeOK)
	s.waitEvent("circuit_closed", 1)
	eventually(t, 10*time.Second, "every message to finish", func() bool {
		st := s.status()
		return st.Messages.Queued == 0 && st.Messages.Sending == 0
	})
	st := s.status()
	if st.Circuit.State != CircuitClosed || st.Circuit.ConsecutiveFailures != 0 {
		t.Errorf("circuit: got %+v, want closed with 0 failures", st.Circuit)
	}
	if st.Messages.Sent == 0 || !st.Messages.Balanced() {
		t.Errorf("messages: got %+v, want some sent and balanced", st.Messages)
	}
	got := s.logs.events("circuit_open", "circuit_half_open", "circuit_closed")
	if n := len(got); n < 3 || got[n-3] != "circuit_open" || got[n-2] != "circuit_half_open" || got[n-1] != "circuit_closed" {
		t.Errorf("circuit events: got %v, want them to end open, half_open, closed", got)
	}
	for i := 1; i < len(got); i++ {
		if got[i] == got[i-1] {
			t.Errorf("circuit events repeat %s at %d: %v", got[i], i, got)
		}
	}
}

func TestFailedProbeReopensTheCircuitWithALongerBackoff(t *testing.T) {
	env := baseEnv("")
	env["BREAKER_BACKOFF_INITIAL"] = "20ms"
	env["BREAKER_BACKOFF_MAX"] = "80ms"
	s, _ := openCircuit(t, env)
	s.waitEvent("circuit_open", 4)
	var opens []float64
	for _, e := range s.logs.entries(map[string]any{"event": "circuit_open"}) {
		opens = append(opens, e["open_for_ms"].(float64))
	}
	want := []float64{20, 40, 80, 80}
	for i := range want {
		if opens[i] != want[i] {
			t.Fatalf("open periods (ms): got %v, want %v…", opens, want)
		}
	}
	for _, e := range s.logs.entries(map[string]any{"outcome": "breaker_open"}) {
		if e["level"] != "warn" {
			t.Errorf("breaker_open line at %v, want warn", e["level"])
		}
	}
}

func TestShutdownDrainsTheQueue(t *testing.T) {
	app := newFakeMessageapp(t, modeSlow)
	app.delay.Store(int64(20 * time.Millisecond))
	env := baseEnv(app.URL())
	env["SENDERS"] = "1"
	s := startService(t, env)
	var ids []string
	for i := range 5 {
		ids = append(ids, s.post("d", strconv.Itoa(i)).body["id"].(string))
	}
	if code := s.stop(); code != 0 {
		t.Fatalf("exit code: got %d, want 0", code)
	}
	for _, id := range ids {
		if len(s.logs.entries(map[string]any{"id": id, "outcome": "sent"})) != 1 {
			t.Errorf("message %s was not delivered during the drain", id)
		}
	}
	stopped := s.logs.entries(map[string]any{"event": "stopped"})
	if len(stopped) != 1 || stopped[0]["undelivered"] != float64(0) {
		t.Errorf("stopped line: got %v, want undelivered 0", stopped)
	}
}

func TestShutdownRefusesNewMessagesAndListsUndelivered(t *testing.T) {
	s := startStuckCourier(t)
	var ids []string
	for i := range 4 {
		ids = append(ids, s.post("d", strconv.Itoa(i)).body["id"].(string))
	}
	exit := make(chan int, 1)
	go func() { exit <- s.stop() }()
	s.waitEvent("shutting_down", 1)

	r := s.post("d", "too late")
	checkProblem(t, r, 503, "shutting_down")
	if r.header.Get("Retry-After") == "" {
		t.Error("shutting_down without Retry-After")
	}
	checkProblem(t, s.do(http.MethodGet, "/readyz", "", ""), 503, "shutting_down")

	if code := <-exit; code != 0 {
		t.Fatalf("exit code: got %d, want 0", code)
	}
	// The first is in messageapp when the drain ends: delivery unknown,
	// final timeout. The others never left the queue.
	if got := s.logs.entries(map[string]any{"id": ids[0], "outcome": "timeout"}); len(got) != 1 || !strings.Contains(got[0]["error"].(string), "delivery is unknown") {
		t.Errorf("message %s, cut short in messageapp: got %v, want one timeout line saying delivery is unknown", ids[0], got)
	}
	for _, id := range ids[1:] {
		if len(s.logs.entries(map[string]any{"event": "undelivered", "id": id})) != 1 {
			t.Errorf("message %s not listed as undelivered", id)
		}
	}
	stopped := s.logs.entries(map[string]any{"event": "stopped"})
	if len(stopped) != 1 || stopped[0]["undelivered"] != float64(len(ids)-1) || stopped[0]["timeout"] != float64(1) {
		t.Errorf("stopped line: got %v, want undelivered %d, timeout 1", stopped, len(ids)-1)
	}
}

func TestCountersStayBalancedUnderMixedTraffic(t *testing.T) {
	app := newFakeMessageapp(t, modeOK)
	env := baseEnv(app.URL())
	env["BREAKER_BACKOFF_INITIAL"] = "10ms"
	env["BREAKER_BACKOFF_MAX"] = "20ms"
	env["MESSAGEAPP_TIMEOUT"] = "30ms"
	s := startService(t, env)

	done := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			if st := s.status(); !st.Messages.Balanced() || st.Queue.Depth > st.Queue.MaxSize {
				t.Errorf("status snapshot broke the contract: %+v", st)
				return
			}
		}
	})
	var clients sync.WaitGroup
	for c := range 8 {
		clients.Go(func() {
			for i := range 40 {
				if i%10 == 0 {
					app.set(fakeMode((c + i/10) % 4))
				}
				s.post("d", strconv.Itoa(i))
			}
		})
	}
	clients.Wait()
	app.set(modeOK)
	eventually(t, 15*time.Second, "every message to finish", func() bool {
		st := s.status()
		return st.Messages.Queued == 0 && st.Messages.Sending == 0
	})
	close(done)
	sampler.Wait()
	st := s.status()
	if st.Messages.Accepted+st.Messages.Rejected != 8*40 || !st.Messages.Balanced() {
		t.Errorf("final counters: got %+v, want 320 posts accounted for", st.Messages)
	}
}

func TestZeroShutdownTimeoutListsEverythingQueuedAtOnce(t *testing.T) {
	app := newFakeMessageapp(t, modeHang)
	env := baseEnv(app.URL())
	env["SENDERS"] = "1"
	env["MESSAGEAPP_TIMEOUT"] = "1m"
	env["SHUTDOWN_TIMEOUT"] = "0s"
	s := startService(t, env)
	for i := range 3 {
		s.post("d", strconv.Itoa(i))
	}
	start := time.Now()
	if code := s.stop(); code != 0 {
		t.Fatalf("exit code: got %d, want 0", code)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("shutdown took %s with SHUTDOWN_TIMEOUT=0s", took)
	}
	if got := s.logs.entries(map[string]any{"event": "undelivered"}); len(got) != 2 {
		t.Errorf("undelivered lines: got %d, want 2 (and the one in messageapp a timeout)", len(got))
	}
	if got := s.logs.entries(map[string]any{"outcome": "timeout"}); len(got) != 1 {
		t.Errorf("timeout lines: got %d, want 1, the call in messageapp when the drain ended", len(got))
	}
}

// parkedIn reports whether some goroutine is blocked in a select inside fn.
func parkedIn(fn string) bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "[select") && strings.Contains(g, fn) {
			return true
		}
	}
	return false
}

func TestMessageHeldDuringShutdownGetsItsOwnProbeWhenTheSlotFrees(t *testing.T) {
	// The stranding a review found: shutdown has closed the queue, so a
	// sender holding a message while the circuit is open cannot put it
	// back; the probe slot is held by another sender that then leaves with
	// nothing to carry. The held message must still be probed, and sent.
	app := newFakeMessageapp(t, modeOK)
	logs := &logBuffer{}
	log := zerolog.New(logs)
	q := NewQueue(2, 0, log, observers(nil), time.Now)
	br := NewBreaker(1, 20*time.Millisecond, 20*time.Millisecond, clock.New(), log, observers(nil))
	store := NewStore(10, time.Now)
	client := newMessageappClient(app.URL(), time.Second, 1)
	defer client.Close()
	p := NewSenders(NewLimiter(1, false, defaultLimiterTuning, log, observers(nil)), 3, newRetryBackoff(time.Millisecond, time.Millisecond), q, br, store, client, log, observers(nil))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_ = br.Call(ctx, func(context.Context) error { return errors.New("messageapp failed") }, func(error) bool { return true })
	if st, _ := br.State(); st != CircuitOpen {
		t.Fatalf("circuit: got %s, want open", st)
	}
	q.Close()
	p.probe <- struct{}{} // another sender holds the slot
	d := store.Add("held", "d", "b", "")
	done := make(chan struct{})
	go func() {
		defer close(done)
		probe := &probeHold{slot: p.probe}
		p.deliver(ctx, d, probe, &slot{})
		probe.release()
	}()
	eventually(t, 5*time.Second, "the sender to wait with its message", func() bool { return parkedIn("(*Senders).awaitTurn") })
	<-p.probe // the slot holder finds the queue drained and leaves

	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the held message was never probed: the sender still waits for a circuit that nothing will change")
	}
	if m, _ := store.Get("", "held"); m.Status != StatusSent {
		t.Errorf("held message: got status %s, want sent", m.Status)
	}
}

// fullBacklogURL is the address of a listener that never accepts and whose
// accept queue is already full: the kernel drops further connection
// attempts, so a client's dial hangs until its deadline and nothing ever
// reaches the other side.
func fullBacklogURL(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
	// Fill the accept queue until a dial no longer completes.
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			break
		}
		t.Cleanup(func() { _ = c.Close() })
		if i == 64 {
			t.Fatal("the accept queue never filled: every dial still completes")
		}
	}
	return "http://" + addr + "/message"
}
