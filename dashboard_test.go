package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// sseEvent is one server-sent event as read off the wire.
type sseEvent struct {
	name string
	data string
	at   time.Time
}

// readEvents parses a text/event-stream into events until the body ends.
func readEvents(body io.Reader, out chan<- sseEvent) {
	defer close(out)
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var ev sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.name != "" {
				ev.at = time.Now()
				out <- ev
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, "event: "):
			ev.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			ev.data = strings.TrimPrefix(line, "data: ")
		}
	}
}

// startEventsAPI serves the API with a hub ticking every interval.
func startEventsAPI(t *testing.T, interval time.Duration) (*service, *httptest.Server) {
	t.Helper()
	a := newTestService(t, map[string]string{"QUEUE_MAX_SIZE": "2", "QUEUE_RECOVERY_THRESHOLD": "0"},
		func(cfg *config) { cfg.forTests.snapEvery = interval })
	stop := make(chan struct{})
	go a.hub.Run(stop)
	srv := httptest.NewServer(a.routes())
	t.Cleanup(func() {
		close(stop)
		<-a.hub.done
		srv.Close()
	})
	return a, srv
}

func openStream(t *testing.T, ctx context.Context, client *http.Client, url string) (*http.Response, chan sseEvent) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/events", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type: got %q, want text/event-stream", ct)
	}
	events := make(chan sseEvent, 100)
	go readEvents(resp.Body, events)
	return resp, events
}

func next(t *testing.T, events <-chan sseEvent) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-events:
		if !ok {
			t.Fatal("stream ended")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
	}
	return sseEvent{}
}

func TestEventStreamStartsWithHistoryThenSnapshotsAtTheInterval(t *testing.T) {
	a, srv := startEventsAPI(t, 50*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp, events := openStream(t, ctx, contractClient(t), srv.URL)
	defer resp.Body.Close()

	first := next(t, events)
	var h history
	if first.name != "history" || json.Unmarshal([]byte(first.data), &h) != nil || h.IntervalMS != 50 {
		t.Fatalf("first event: got %s %s, want history with interval_ms 50", first.name, first.data)
	}
	var times []time.Time
	for len(times) < 6 {
		ev := next(t, events)
		if ev.name != "snapshot" {
			continue
		}
		var s Snapshot
		if err := json.Unmarshal([]byte(ev.data), &s); err != nil || s.Status.Queue.MaxSize != 2 || s.PerSecond == nil {
			t.Fatalf("snapshot: %v %s", err, ev.data)
		}
		times = append(times, ev.at)
	}
	if gap := times[5].Sub(times[0]) / 5; gap < 25*time.Millisecond || gap > 200*time.Millisecond {
		t.Errorf("snapshots every %s on average, want about 50ms", gap)
	}

	// A transition is pushed as it happens, not at the next tick.
	a.queue.Offer(newDelivery("1", "", "", ""), func() bool { return true })
	a.queue.Offer(newDelivery("2", "", "", ""), func() bool { return true })
	for {
		ev := next(t, events)
		if ev.name == "transition" {
			if !strings.Contains(ev.data, `"event":"enqueueing_disabled"`) || !strings.Contains(ev.data, `"depth":2`) {
				t.Errorf("transition: got %s", ev.data)
			}
			break
		}
	}
}

func TestEventStreamEndsWhenTheClientLeaves(t *testing.T) {
	a, srv := startEventsAPI(t, 20*time.Millisecond)
	before := goleak.IgnoreCurrent() // the server and hub, running on
	ctx, cancel := context.WithCancel(context.Background())
	client := contractClient(t)
	resp, events := openStream(t, ctx, client, srv.URL)
	next(t, events)
	eventually(t, 2*time.Second, "the stream to subscribe", func() bool { return subscribers(a.hub) == 1 })
	cancel()
	resp.Body.Close()
	for range events { // the reader ends with the body
	}
	eventually(t, 2*time.Second, "the stream's handler to unsubscribe", func() bool { return subscribers(a.hub) == 0 })
	client.CloseIdleConnections()
	// The stream's handler and connection goroutines are gone, while the
	// server and the hub still run.
	goleak.VerifyNone(t, before)
}

func subscribers(h *Hub) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

func TestDashboardPageIsSelfContained(t *testing.T) {
	_, srv := startEventsAPI(t, time.Second)
	resp, err := contractClient(t).Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	page := string(body)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: got %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{`new EventSource("events")`, `id="circuit-state"`, `id="accepting"`, `id="depth-chart"`} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	for _, external := range []string{"http://", "https://", "//cdn"} {
		if strings.Contains(page, external) {
			t.Errorf("page refers to %q: it must work offline", external)
		}
	}
}

func TestSnapshotsCarryTheBuiltInSimulatorOnlyWhenThereIsOne(t *testing.T) {
	for _, tt := range []struct {
		name      string
		simulator SelfReporter
	}{
		{"a real messageapp", nil},
		{"the built-in simulator", fixedReport{backlog: 3}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := newTestService(t, nil, func(cfg *config) { cfg.forTests.snapEvery, cfg.simulator = 20*time.Millisecond, tt.simulator })
			stop := make(chan struct{})
			go a.hub.Run(stop)
			defer func() { close(stop); <-a.hub.done }()
			var h history
			eventually(t, 2*time.Second, "a snapshot", func() bool {
				ch, hist, _ := a.hub.subscribe()
				a.hub.unsubscribe(ch)
				h = hist
				return len(h.Snapshots) > 0
			})
			b, _ := json.Marshal(h.Snapshots[0])
			if got, want := strings.Contains(string(b), `"messageapp":{"backlog":3}`), tt.simulator != nil; got != want {
				t.Errorf("snapshot %s: carries messageapp %v, want %v", b, got, want)
			}
		})
	}
}

// fixedReport is a SelfReporter that always says the same.
type fixedReport struct{ backlog int }

func (r fixedReport) SelfReport() any { return map[string]int{"backlog": r.backlog} }
