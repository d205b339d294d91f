package main

// delivery_test.go holds courier to what follows from each answer of
// messageapp (SPEC §5): which are retried, when, and which are final.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
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
		w.WriteHeader(status)
		if status == http.StatusOK {
			fmt.Fprint(w, "OK")
		}
	}))
	t.Cleanup(f.Server.Close)
	return f
}

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
