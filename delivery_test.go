package main

// delivery_test.go holds courier to what follows from each answer of
// messageapp (docs/behaviour.md): which are retried, when, and which are final.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// answeringMessageapp is a messageapp that answers each call with the
// status its answer function gives (headers included), and keeps what
// arrived: the requests, their Idempotency-Keys and when they came.
type answeringMessageapp struct {
	*httptest.Server
	answer func(call int, req sendRequest, w http.ResponseWriter) int

	mu      sync.Mutex // guards the fields below
	arrived []arrival
}

// arrival is one call that reached the fake.
type arrival struct {
	req sendRequest
	key string
	at  time.Time
}

func newAnsweringMessageapp(t *testing.T, answer func(call int, req sendRequest, w http.ResponseWriter) int) *answeringMessageapp {
	t.Helper()
	f := &answeringMessageapp{answer: answer}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req sendRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, "bad json", http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.arrived = append(f.arrived, arrival{req: req, key: r.Header.Get("Idempotency-Key"), at: time.Now()})
		call := len(f.arrived)
		f.mu.Unlock()
		status := f.answer(call, req, w)
		if status == dropConnection {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				if tc, ok := conn.(*net.TCPConn); ok {
					_ = tc.SetLinger(0) // a reset, as a crashing server's
				}
				conn.Close()
			}
			return
		}
		w.WriteHeader(status)
		if status == http.StatusOK {
			fmt.Fprint(w, "OK")
		}
	}))
	t.Cleanup(f.Server.Close)
	return f
}

// dropConnection, as an answer, closes the connection without a word,
// after the whole request was read.
const dropConnection = 0

func (f *answeringMessageapp) URL() string { return f.Server.URL + "/message" }

// arrivals returns the calls that reached the fake, in order, whose
// destination is dest (any, if empty).
func (f *answeringMessageapp) arrivals(dest string) []arrival {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []arrival
	for _, a := range f.arrived {
		if dest == "" || a.req.Destination == dest {
			out = append(out, a)
		}
	}
	return out
}

func TestOnlyAnswersAboutMessageappsHealthAreRetriedAndCountAgainstTheCircuit(t *testing.T) {
	tests := []struct {
		status       int
		wantAttempts int
		wantStatus   Status
		wantFailures int64 // the circuit's consecutive failures afterwards
		wantDetail   string
	}{
		{500, 3, StatusFailed, 3, "messageapp answered 500"},
		{502, 3, StatusFailed, 3, "messageapp answered 502"},
		{503, 3, StatusFailed, 3, "messageapp answered 503"},
		{504, 3, StatusFailed, 3, "messageapp answered 504"},
		{408, 3, StatusFailed, 3, "messageapp answered 408"},
		{429, 3, StatusFailed, 3, "messageapp answered 429"},
		{400, 1, StatusFailed, 0, "messageapp answered 400: it refuses this request; not retried"},
		{401, 1, StatusFailed, 0, "messageapp answered 401: it refuses this request; not retried"},
		{403, 1, StatusFailed, 0, "messageapp answered 403: it refuses this request; not retried"},
		{404, 1, StatusFailed, 0, "messageapp answered 404: check MESSAGEAPP_URL"},
		{405, 1, StatusFailed, 0, "messageapp answered 405: check MESSAGEAPP_URL"},
		{409, 1, StatusFailed, 0, "messageapp answered 409: it refuses this request; not retried"},
		{413, 1, StatusFailed, 0, "messageapp answered 413: it refuses this request; not retried"},
		{422, 1, StatusFailed, 0, "messageapp answered 422: it refuses this request; not retried"},
		{308, 1, StatusFailed, 0, "messageapp answered 308: it refuses this request; not retried"},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.status), func(t *testing.T) {
			app := newAnsweringMessageapp(t, func(int, sendRequest, http.ResponseWriter) int { return tt.status })
			env := baseEnv(app.URL())
			env["RETRY_BACKOFF_INITIAL"] = "1ms"
			env["RETRY_BACKOFF_MAX"] = "1ms"
			s := startService(t, env)
			id := s.post("d", "b").body["id"].(string)
			m := s.waitStatus(id, tt.wantStatus)
			if m.Attempts != tt.wantAttempts || len(app.arrivals("")) != tt.wantAttempts {
				t.Errorf("attempts: got %d (%d calls), want %d", m.Attempts, len(app.arrivals("")), tt.wantAttempts)
			}
			if m.LastError == nil || m.LastError.Kind != OutcomeMessageappError || m.LastError.Status != tt.status ||
				!strings.Contains(m.LastError.Detail, tt.wantDetail) {
				t.Errorf("last_error: got %+v, want messageapp_error %d saying %q", m.LastError, tt.status, tt.wantDetail)
			}
			if got := s.status().Circuit.ConsecutiveFailures; got != tt.wantFailures {
				t.Errorf("consecutive failures: got %d, want %d", got, tt.wantFailures)
			}
			lines := s.logs.entries(map[string]any{"id": id, "outcome": string(OutcomeMessageappError)})
			if len(lines) != tt.wantAttempts || lines[0]["status"] != float64(tt.status) ||
				!strings.Contains(fmt.Sprint(lines[0]["error"]), tt.wantDetail) {
				t.Errorf("log: got %v, want %d messageapp_error lines with status %d saying %q", lines, tt.wantAttempts, tt.status, tt.wantDetail)
			}
		})
	}
}

func TestARequestMessageappRefusesDoesNotOpenTheCircuitForEveryoneElse(t *testing.T) {
	// The reproduction: 400 for one destination, 200 for the others. Two
	// bad messages used to be six attempts, which opened the circuit and
	// held the good messages for the whole open period.
	app := newAnsweringMessageapp(t, func(_ int, req sendRequest, _ http.ResponseWriter) int {
		if req.Destination == "bad" {
			return http.StatusBadRequest
		}
		return http.StatusOK
	})
	env := baseEnv(app.URL())
	env["SENDERS"] = "4"
	env["QUEUE_MAX_SIZE"] = "100"
	env["QUEUE_RECOVERY_THRESHOLD"] = "50"
	env["BREAKER_THRESHOLD"] = "5"
	env["BREAKER_BACKOFF_INITIAL"] = "3s"
	env["BREAKER_BACKOFF_MAX"] = "3s"
	s := startService(t, env)

	bad := []string{s.post("bad", "1").body["id"].(string), s.post("bad", "2").body["id"].(string)}
	start := time.Now()
	var good []string
	for i := range 20 {
		r := s.post("good", strconv.Itoa(i))
		if r.status != http.StatusAccepted {
			t.Fatalf("good message %d: got %d %v, want 202", i, r.status, r.body)
		}
		good = append(good, r.body["id"].(string))
	}
	for _, id := range good {
		s.waitStatus(id, StatusSent)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("20 good messages took %s, want about a second at most (the 3 s open period never starts)", took)
	}
	for _, id := range bad {
		if m := s.waitStatus(id, StatusFailed); m.Attempts != 1 {
			t.Errorf("bad message %s: got %d attempts, want 1", id, m.Attempts)
		}
	}
	if got := len(app.arrivals("bad")); got != 2 {
		t.Errorf("bad attempts at messageapp: got %d, want 2", got)
	}
	if got := s.logs.entries(map[string]any{"event": "circuit_open"}); len(got) != 0 {
		t.Errorf("circuit_open lines: got %v, want none", got)
	}
	if got := s.logs.entries(map[string]any{"outcome": string(OutcomeBreakerOpen)}); len(got) != 0 {
		t.Errorf("breaker_open lines: got %d, want none", len(got))
	}
}

func TestAMessageappThatClosesIdleConnectionsCostsNoAttempt(t *testing.T) {
	// messageapp closes a connection after 20 ms idle, and courier's calls
	// come about that far apart, so some find their connection closing as
	// they reuse it. Each must still be delivered, in one attempt: a
	// connection messageapp closed while idle is never counted against it.
	const idle = 20 * time.Millisecond
	var calls atomic.Int64
	app := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, "OK")
	}))
	app.Config.IdleTimeout = idle
	var closed atomic.Int64
	app.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateClosed {
			closed.Add(1)
		}
	}
	app.Start()
	t.Cleanup(app.Close)
	client := newMessageappClient(app.URL+"/message", time.Second, 1)
	t.Cleanup(client.Close)

	// Until messageapp has closed one idle connection, courier cannot know
	// its keep-alive is shorter than idleConnTimeout (README, Decisions).
	if err := client.Send(context.Background(), newDelivery("first", "d", "b", "")); err != nil {
		t.Fatalf("first call: %v", err)
	}
	eventually(t, 5*time.Second, "messageapp to close the idle connection", func() bool { return closed.Load() > 0 })

	const n = 300
	failed := map[string]int{}
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for i := range n {
		// Gaps from 15 to 25 ms: just under, at and just over the idle timeout.
		for next := time.Now().Add(idle - 5*time.Millisecond + time.Duration(i%11)*time.Millisecond); time.Now().Before(next); {
			<-tick.C
		}
		if err := client.Send(context.Background(), newDelivery("m"+strconv.Itoa(i), "d", "b", "")); err != nil {
			failed[err.Error()]++
		}
	}
	if len(failed) > 0 {
		t.Errorf("failed calls to a healthy messageapp: got %v, want none", failed)
	}
	if got := calls.Load(); got != n+1 {
		t.Errorf("calls at messageapp: got %d, want %d", got, n+1)
	}
}

func TestAConnectionLostAfterTheRequestWentOutIsFinalAndNeverResent(t *testing.T) {
	tests := []struct {
		name   string
		before int // messages answered 200 first, so the lost one goes on a reused connection
	}{
		{"on a new connection", 0},
		{"on a reused keep-alive connection", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app := newAnsweringMessageapp(t, func(call int, _ sendRequest, _ http.ResponseWriter) int {
				if call <= tt.before {
					return http.StatusOK
				}
				return dropConnection
			})
			env := baseEnv(app.URL())
			env["SENDERS"] = "1"
			env["MAX_ATTEMPTS"] = "3"
			s := startService(t, env)
			for i := range tt.before {
				s.waitStatus(s.post("first", strconv.Itoa(i)).body["id"].(string), StatusSent)
			}

			id := s.post("d", "lost").body["id"].(string)
			m := s.waitStatus(id, StatusConnectionLost)
			if got := app.arrivals("d"); len(got) != 1 || got[0].key != id {
				t.Errorf("copies at messageapp: got %v, want exactly one, with Idempotency-Key %s", got, id)
			}
			if m.Attempts != 1 {
				t.Errorf("attempts: got %d, want 1", m.Attempts)
			}
			if m.LastError == nil || m.LastError.Kind != OutcomeConnectionLost || !strings.Contains(m.LastError.Detail, "delivery unknown") ||
				strings.Contains(m.LastError.Detail, app.URL()) {
				t.Errorf("last_error: got %+v, want connection_lost saying delivery unknown, without the URL", m.LastError)
			}
			lines := s.logs.entries(map[string]any{"id": id, "component": "sender"})
			if len(lines) != 1 || lines[0]["outcome"] != string(OutcomeConnectionLost) || lines[0]["level"] != "error" ||
				lines[0]["message"] != outcomeTexts(200 * time.Millisecond)[OutcomeConnectionLost] {
				t.Errorf("log: got %v, want one connection_lost line at error", lines)
			}
			st := s.status()
			if st.Messages.ConnectionLost != 1 || !st.Messages.Balanced() {
				t.Errorf("counters: got %+v, want connection_lost 1 and balanced", st.Messages)
			}
			if st.Circuit.ConsecutiveFailures != 1 {
				t.Errorf("consecutive failures: got %d, want 1 (messageapp failed to answer)", st.Circuit.ConsecutiveFailures)
			}
			r := s.do(http.MethodGet, "/messages?status=connection_lost", "", "")
			if msgs, _ := r.body["messages"].([]any); r.status != http.StatusOK || len(msgs) != 1 {
				t.Errorf("GET /messages?status=connection_lost: got %d %v, want the one message", r.status, r.body)
			}
		})
	}
}

func TestEveryCallCarriesTheMessageIDAsIdempotencyKey(t *testing.T) {
	app := newAnsweringMessageapp(t, func(call int, _ sendRequest, _ http.ResponseWriter) int {
		if call == 1 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	env := baseEnv(app.URL())
	env["RETRY_BACKOFF_INITIAL"] = "1ms"
	s := startService(t, env)
	id := s.post("d", "b").body["id"].(string)
	s.waitStatus(id, StatusSent)
	got := app.arrivals("")
	if len(got) != 2 || got[0].key != id || got[1].key != id {
		t.Errorf("calls: got %v, want two, each with Idempotency-Key %s", got, id)
	}
}

func TestARetryWaitsAtLeastWhatRetryAfterAsks(t *testing.T) {
	// The reproduction: 503 with Retry-After: 2, twice, then 200. The
	// attempts used to come 0 and 1 ms apart.
	app := newAnsweringMessageapp(t, func(call int, _ sendRequest, w http.ResponseWriter) int {
		if call <= 2 {
			w.Header().Set("Retry-After", "2")
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	s := startService(t, baseEnv(app.URL()))
	id := s.post("d", "b").body["id"].(string)
	eventually(t, 15*time.Second, "the message to be sent", func() bool { return s.message(id).Status == StatusSent })
	got := app.arrivals("")
	if len(got) != 3 {
		t.Fatalf("calls: got %d, want 3", len(got))
	}
	for i := 1; i < len(got); i++ {
		if gap := got[i].at.Sub(got[i-1].at); gap < 2*time.Second {
			t.Errorf("gap before attempt %d: got %s, want at least 2s (Retry-After: 2)", i+1, gap)
		}
	}
	lines := s.logs.entries(map[string]any{"id": id, "component": "sender"})
	for i, l := range lines {
		want := any(float64(2000))
		if i == len(lines)-1 {
			want = nil // sent: no next attempt
		}
		if l["retry_in_ms"] != want {
			t.Errorf("attempt %d's line: retry_in_ms %v, want %v", i+1, l["retry_in_ms"], want)
		}
	}
}

func TestRetriesBackOffWithJitterAndEachWaitIsLonger(t *testing.T) {
	app := newAnsweringMessageapp(t, func(int, sendRequest, http.ResponseWriter) int { return http.StatusInternalServerError })
	env := baseEnv(app.URL())
	env["MAX_ATTEMPTS"] = "5"
	env["BREAKER_THRESHOLD"] = "100"
	env["RETRY_BACKOFF_INITIAL"] = "40ms"
	env["RETRY_BACKOFF_MAX"] = "1s"
	s := startService(t, env)
	id := s.post("d", "b").body["id"].(string)
	s.waitStatus(id, StatusFailed)
	got := app.arrivals("")
	if len(got) != 5 {
		t.Fatalf("calls: got %d, want 5", len(got))
	}
	// The n-th wait is drawn from [b/2, b), b = 40ms·2^(n-1), so it is at
	// least b/2, the most the wait before it could have drawn: each wait is
	// longer than the one before whatever the jitter drew. A gap between
	// arrivals is its wait plus however late the machine ran the sender,
	// which can be longer for one gap than the next, so gaps are held to
	// the floor of their own wait, not compared with each other; the
	// draws themselves are TestTheWaitBetweenAttempts's.
	for i := 1; i < len(got); i++ {
		gap := got[i].at.Sub(got[i-1].at)
		if low := 20 * time.Millisecond << (i - 1); gap < low {
			t.Errorf("gap before attempt %d: got %s, want at least %s, more than the wait before it could draw", i+1, gap, low)
		}
	}
}

func TestAMessageWaitingForItsRetryHoldsNoSenderAndCountsInTheBacklog(t *testing.T) {
	// Each message to "flaky" is answered 503 with Retry-After: 2 the
	// first time, then 200.
	var mu sync.Mutex
	seen := map[string]bool{}
	app := newAnsweringMessageapp(t, func(_ int, req sendRequest, w http.ResponseWriter) int {
		mu.Lock()
		defer mu.Unlock()
		if req.Destination == "flaky" && !seen[req.Body] {
			seen[req.Body] = true
			w.Header().Set("Retry-After", "2")
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	env := baseEnv(app.URL())
	env["SENDERS"] = "1"
	env["QUEUE_MAX_SIZE"] = "2"
	env["QUEUE_RECOVERY_THRESHOLD"] = "0"
	s := startService(t, env)
	flaky := []string{s.post("flaky", "1").body["id"].(string), s.post("flaky", "2").body["id"].(string)}

	eventually(t, 2*time.Second, "both to wait for their retry", func() bool {
		st := s.status()
		return len(app.arrivals("flaky")) == 2 && st.Messages.Queued == 2 && st.Messages.Sending == 0
	})
	st := s.status()
	if st.Queue.Depth != 2 || st.Queue.Accepting {
		t.Errorf("queue while two wait for their retry: got %+v, want depth 2, not accepting", st.Queue)
	}
	checkProblem(t, s.post("good", "x"), http.StatusServiceUnavailable, "queue_full")
	for _, id := range flaky {
		if m := s.message(id); m.Status != StatusQueued || m.Attempts != 1 || m.LastError == nil || m.LastError.Status != 503 {
			t.Errorf("message %s waiting for its retry: got %+v, want queued after 1 attempt, last_error 503", id, m)
		}
	}
	for _, id := range flaky {
		if m := s.waitStatus(id, StatusSent); m.Attempts != 2 {
			t.Errorf("message %s: got %d attempts, want 2", id, m.Attempts)
		}
	}
	if got := s.post("good", "y"); got.status != http.StatusAccepted {
		t.Errorf("POST once they are sent: got %d, want 202", got.status)
	}
}

func TestTheWaitBetweenAttempts(t *testing.T) {
	b := retryBackoff{initial: 100 * time.Millisecond, max: 5 * time.Second}
	tests := []struct {
		name       string
		attempt    int
		random     float64
		retryAfter time.Duration
		want       time.Duration
	}{
		{"after the first attempt, the least jitter: half the initial", 1, 0, 0, 50 * time.Millisecond},
		{"after the first attempt, the most jitter: just under the initial", 1, 0.999, 0, 99950 * time.Microsecond},
		{"doubling after the second", 2, 0, 0, 100 * time.Millisecond},
		{"and the third", 3, 0.5, 0, 300 * time.Millisecond},
		{"capped at the max", 10, 0.999, 0, 4997500 * time.Microsecond},
		{"never less than Retry-After", 1, 0.5, 2 * time.Second, 2 * time.Second},
		{"a longer backoff than Retry-After wins", 6, 0, time.Second, 1600 * time.Millisecond},
		{"Retry-After capped at the max too", 1, 0, time.Hour, 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b.random = func() float64 { return tt.random }
			if got := b.delay(tt.attempt, tt.retryAfter); got != tt.want {
				t.Errorf("delay(%d, %s): got %s, want %s", tt.attempt, tt.retryAfter, got, tt.want)
			}
		})
	}
}

func TestRetryAfterIsSecondsOrAnHTTPDate(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		value string
		want  time.Duration
	}{
		{"2", 2 * time.Second},
		{"0", 0},
		{"Sat, 05 Dec 2026 12:00:07 GMT", 7 * time.Second},
		{"Sat, 05 Dec 2026 11:59:00 GMT", 0}, // already past
		{"", 0},
		{"-3", 0},
		{"soon", 0},
		{"1.5", 0},
		// delay-seconds has no upper bound (RFC 9110 §10.2.3): a value past
		// what a Duration holds asks for the longest wait, not none.
		{"4294967296", 4294967296 * time.Second},
		{"99999999999", math.MaxInt64},
		{"123456789012345678901234567890", math.MaxInt64},
	}
	for _, tt := range tests {
		if got := retryAfter(tt.value, now); got != tt.want {
			t.Errorf("Retry-After %q: got %s, want %s", tt.value, got, tt.want)
		}
	}
}

// BenchmarkSend and BenchmarkBarePost: what courier's client (the
// Idempotency-Key, the trace, the peek at a reused connection and the
// byte counting) costs per call against a plain net/http POST of the same
// body to the same loopback messageapp.
func BenchmarkSend(b *testing.B) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, "OK")
	}))
	defer app.Close()
	client := newMessageappClient(app.URL+"/message", time.Second, 1)
	defer client.Close()
	d := newDelivery("bench", "+34600000000", "a body of a typical size for a short message", "")
	b.ReportAllocs()
	for b.Loop() {
		if err := client.Send(context.Background(), d); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBarePost(b *testing.B) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, "OK")
	}))
	defer app.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer client.CloseIdleConnections()
	payload := []byte(`{"destination":"+34600000000","body":"a body of a typical size for a short message"}`)
	b.ReportAllocs()
	for b.Loop() {
		resp, err := client.Post(app.URL+"/message", "application/json", bytes.NewReader(payload))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

func TestCourierLearnsMessageappsKeepAliveAndForgetsARestart(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	l := &idleLimit{now: func() time.Time { return now }}
	if l.stale(time.Hour) {
		t.Fatal("stale before messageapp closed any connection: courier knows nothing of its keep-alive yet")
	}
	l.closed(104 * time.Millisecond) // noticed late on a busy machine
	l.closed(100 * time.Millisecond)
	if l.stale(49*time.Millisecond) || !l.stale(50*time.Millisecond) {
		t.Errorf("after closes at 104 and 100 ms: stale at 49ms %v, at 50ms %v; want from 50ms on (half the shortest)",
			l.stale(49*time.Millisecond), l.stale(50*time.Millisecond))
	}
	now = now.Add(30 * time.Second)
	l.closed(3 * time.Millisecond) // a restart closes a connection just used
	if !l.stale(2 * time.Millisecond) {
		t.Error("right after a restart's close at 3 ms: a connection idle 2 ms is not stale, want stale")
	}
	now = now.Add(31 * time.Second) // the first two are a minute old
	if !l.stale(2 * time.Millisecond) {
		t.Error("the restart's close is 31 s old: still remembered, want stale at 2 ms")
	}
	now = now.Add(30 * time.Second) // and the restart's too
	if l.stale(time.Hour) {
		t.Error("every close is over a minute old: want nothing remembered")
	}
}
