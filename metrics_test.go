package main

import (
	"bufio"
	"bytes"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// scrape returns GET /metrics as raw text and as series → value.
func (s *testCourier) scrape() (string, map[string]float64) {
	s.t.Helper()
	resp, err := s.client.Get(s.url + "/metrics")
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	series := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			s.t.Fatalf("unparsable sample %q", line)
		}
		series[line[:i]] = v
	}
	return string(raw), series
}

func TestMetricsAfterKnownTraffic(t *testing.T) {
	app := newFakeMessageapp(t, modeOK)
	s := startService(t, baseEnv(app.URL()))
	for i := range 3 {
		s.waitStatus(s.post("d", strconv.Itoa(i)).body["id"].(string), StatusSent)
	}
	app.set(modeError)
	for i := 0; s.status().Queue.Accepting && i < 100; i++ {
		s.post("d", "x")
	}
	s.post("d", "rejected")
	s.waitEvent("circuit_open", 1)

	raw, got := s.scrape()
	st := s.status()
	want := map[string]float64{
		`courier_messages_accepted_total`:                                           float64(st.Messages.Accepted),
		`courier_messages_finished_total{status="sent"}`:                            3,
		`courier_attempts_total{outcome="sent"}`:                                    3,
		`courier_messages_rejected_total{code="queue_full"}`:                        float64(st.Messages.Rejected),
		`courier_queue_depth`:                                                       10,
		`courier_queue_max_size`:                                                    10,
		`courier_queue_recovery_threshold`:                                          5,
		`courier_queue_accepting`:                                                   0,
		`courier_queue_transitions_total{direction="disabled"}`:                     1,
		`courier_queue_transitions_total{direction="enabled"}`:                      0,
		`courier_circuit_state{state="open"}`:                                       1,
		`courier_circuit_state{state="closed"}`:                                     0,
		`courier_circuit_transitions_total{state="open"}`:                           1,
		`courier_messages_pending{status="queued"}`:                                 float64(st.Messages.Queued),
		`courier_attempt_duration_seconds_bucket{le="0.2"}`:                         got[`courier_attempt_duration_seconds_count`],
		`courier_http_request_duration_seconds_count{code="202",route="/messages"}`: float64(st.Messages.Accepted),
		// The failures halved the limit down to one call; the open
		// circuit (10m) makes no further call to change it.
		`courier_concurrency_limit`:                                       1,
		`courier_concurrency_ceiling`:                                     4,
		`courier_concurrency_limit_transitions_total{direction="raised"}`: 0,
	}
	if got[`courier_concurrency_limit_transitions_total{direction="lowered"}`] < 1 {
		t.Errorf("limit lowered: got %v transitions, want at least 1", got[`courier_concurrency_limit_transitions_total{direction="lowered"}`])
	}
	if st.Concurrency.Limit != 1 {
		t.Errorf("/status concurrency limit: got %d, want 1, as /metrics", st.Concurrency.Limit)
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s: got %v (present %v), want %v", k, g, ok, v)
		}
	}
	// Calls in flight when it opened may add failures after the fifth.
	if got[`courier_circuit_consecutive_failures`] < 5 {
		t.Errorf("consecutive failures: got %v, want at least 5", got[`courier_circuit_consecutive_failures`])
	}
	if got[`courier_attempts_total{outcome="messageapp_error"}`] < 5 {
		t.Errorf("messageapp_error attempts: got %v, want at least 5", got[`courier_attempts_total{outcome="messageapp_error"}`])
	}
	for _, std := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if _, ok := got[std]; !ok {
			t.Errorf("standard collector metric %s missing", std)
		}
	}
	problems, err := promlint.New(strings.NewReader(raw)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}
