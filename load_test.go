package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeCourier accepts the first `accept` POSTs and then answers 503
// queue_full with Retry-After: 1, counting what it received.
type fakeCourier struct {
	*httptest.Server
	accept   int64
	received atomic.Int64

	mu   sync.Mutex // guards keys
	keys []string   // Idempotency-Key of each POST, in order
}

func newFakeCourier(t *testing.T, accept int64) *fakeCourier {
	t.Helper()
	f := &fakeCourier{accept: accept}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /messages", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		f.mu.Lock()
		f.keys = append(f.keys, r.Header.Get("Idempotency-Key"))
		f.mu.Unlock()
		if f.received.Add(1) <= f.accept {
			w.WriteHeader(http.StatusAccepted)
			io.WriteString(w, `{"id":"x","status":"queued"}`)
			return
		}
		w.Header().Set("Content-Type", "application/problem+json")
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"code":"queue_full","status":503}`)
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"queue":{"depth":3,"max_size":10,"accepting":false},"circuit":{"state":"open"}}`)
	})
	f.Server = httptest.NewServer(mux)
	t.Cleanup(f.Close)
	return f
}

func TestLoadClientAccountsForEveryRequest(t *testing.T) {
	fc := newFakeCourier(t, 10)
	var out bytes.Buffer
	c, err := newLoadClient(loadOptions{URL: fc.URL, Rate: 100, Duration: 1500 * time.Millisecond, MaxRequests: 1000, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	got := c.run(context.Background())
	if got.Requests != int(fc.received.Load()) {
		t.Errorf("requests: client counted %d, courier received %d", got.Requests, fc.received.Load())
	}
	if got.Accepted != 10 || got.Rejected["queue_full"] != got.Requests-10 || got.Errors != 0 {
		t.Errorf("tallies: got %+v, want 10 accepted and the rest queue_full", got)
	}
	if !strings.Contains(out.String(), "3/10") || !strings.Contains(out.String(), "open") {
		t.Errorf("per-second lines do not show courier's status:\n%s", out.String())
	}
	var summary bytes.Buffer
	printLoadSummary(&summary, c.opt, got)
	for _, want := range []string{"accepted (202)", "rejected (503 queue_full)", "requests wasted on 503", "-respect-retry-after"} {
		if !strings.Contains(summary.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, summary.String())
		}
	}
}

func TestRespectingRetryAfterWastesFewerRequests(t *testing.T) {
	run := func(respect bool) loadStats {
		fc := newFakeCourier(t, 0)
		c, err := newLoadClient(loadOptions{URL: fc.URL, Rate: 200, Duration: 1500 * time.Millisecond,
			MaxRequests: 10_000, RespectRetryAfter: respect})
		if err != nil {
			t.Fatal(err)
		}
		return c.run(context.Background())
	}
	hammer, polite := run(false), run(true)
	// Retry-After: 1 over 1.5 s lets a polite client through about twice;
	// the sends it holds are still waiting at the end, not dropped.
	if polite.Requests > 6 || polite.HeldBack < 100 || polite.StillHeld < polite.HeldBack-6 {
		t.Errorf("polite client: %d requests, %d held back, %d still held; want a handful and the rest held to the end",
			polite.Requests, polite.HeldBack, polite.StillHeld)
	}
	if hammer.Requests < 100 || hammer.HeldBack != 0 {
		t.Errorf("hammering client: %d requests, %d held back; want well over 100 and none held", hammer.Requests, hammer.HeldBack)
	}
}

func TestRespectingRetryAfterDelaysSendsInsteadOfDroppingThem(t *testing.T) {
	// courier refuses the first POST with Retry-After: 1 and takes the rest:
	// a client that waits as told sends what came due meanwhile afterwards.
	var posts atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.Method != http.MethodPost {
			http.NotFound(w, r)
			return
		}
		if posts.Add(1) == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"code":"queue_full","status":503}`)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(srv.Close)
	c, err := newLoadClient(loadOptions{URL: srv.URL, Rate: 100, Duration: 2 * time.Second,
		MaxRequests: 10_000, RespectRetryAfter: true})
	if err != nil {
		t.Fatal(err)
	}
	got := c.run(context.Background())
	// About 200 sends came due, 100 of them during the wait; dropping
	// those would leave about 100 accepted.
	if got.Accepted < 150 || got.HeldBack < 50 {
		t.Errorf("accepted %d, held back %d (%d still held at the end); want the held sends to go later, not be dropped",
			got.Accepted, got.HeldBack, got.StillHeld)
	}
	if offered := got.Requests + got.StillHeld + got.Dropped; offered < 150 {
		t.Errorf("requests %d + still held %d + dropped %d: want every send that came due accounted for", got.Requests, got.StillHeld, got.Dropped)
	}
}

func TestLoadTakesCourierOrItsMessagesURL(t *testing.T) {
	for _, path := range []string{"", "/", "/messages", "/messages/"} {
		t.Run("-url base"+path, func(t *testing.T) {
			fc := newFakeCourier(t, 1_000_000)
			var out, errOut bytes.Buffer
			code := runLoad(context.Background(), []string{"-url", fc.URL + path, "-rate", "0", "-concurrency", "1", "-max-requests", "5"}, &out, &errOut)
			if code != 0 || fc.received.Load() != 5 {
				t.Errorf("got exit %d, %d POSTs at /messages, stderr %q; want 0 and 5", code, fc.received.Load(), errOut.String())
			}
		})
	}
}

func TestLoadFailsWhenNoAnswerIsCouriers(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler()) // something, not courier
	t.Cleanup(srv.Close)
	var out, errOut bytes.Buffer
	code := runLoad(context.Background(), []string{"-url", srv.URL, "-rate", "0", "-concurrency", "1", "-max-requests", "5"}, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "base URL") {
		t.Errorf("got exit %d and %q, want 1 asking whether -url is courier's base URL", code, errOut.String())
	}
	if !strings.Contains(out.String(), "other answers (404)") {
		t.Errorf("summary does not show the 404s:\n%s", out.String())
	}
}

func TestLoadClientClosedLoopStopsAtMaxRequests(t *testing.T) {
	fc := newFakeCourier(t, 1_000_000)
	c, err := newLoadClient(loadOptions{URL: fc.URL, Concurrency: 4, Duration: 10 * time.Second, MaxRequests: 50})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.run(context.Background()); got.Requests != 50 || fc.received.Load() != 50 {
		t.Errorf("got %d requests (%d received), want exactly 50", got.Requests, fc.received.Load())
	}
}

func TestLoadRefusesRemoteAndBadOptions(t *testing.T) {
	tests := [][]string{
		{"-url", "http://example.com:9001"},
		{"-url", "not a url"},
		{"-url", "http://127.0.0.1:9001/api"},
		{"-url", "http://127.0.0.1:9001/?x=1"},
		{"-rate", "-1"},
		{"-rate", "0", "-concurrency", "0"},
		{"-duration", "0s"},
		{"-max-requests", "0"},
	}
	for _, args := range tests {
		var out, errOut bytes.Buffer
		if code := runLoad(context.Background(), args, &out, &errOut); code != 2 || errOut.Len() == 0 {
			t.Errorf("%v: got exit %d, stderr %q; want 2 with a reason", args, code, errOut.String())
		}
	}
}

func TestLoadAgainstNothingFails(t *testing.T) {
	fc := newFakeCourier(t, 0)
	url := fc.URL
	fc.Close()
	var out, errOut bytes.Buffer
	code := runLoad(context.Background(), []string{"-url", url, "-rate", "50", "-duration", "2s"}, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "is courier running") {
		t.Errorf("got exit %d and %q, want 1 asking whether courier runs", code, errOut.String())
	}
	// Said before sending, not after -duration of rows of question marks.
	if !strings.Contains(errOut.String(), "nothing answers at "+url) || out.Len() != 0 {
		t.Errorf("got stdout %q and stderr %q; want nothing sent and nothing answers at %s", out.String(), errOut.String(), url)
	}
}

func TestLoadClientRetriesWithTheSameIdempotencyKey(t *testing.T) {
	fc := newFakeCourier(t, 0)
	c, err := newLoadClient(loadOptions{URL: fc.URL, Concurrency: 1, Duration: 10 * time.Second, MaxRequests: 6, Retries: 2})
	if err != nil {
		t.Fatal(err)
	}
	got := c.run(context.Background())
	fc.mu.Lock()
	keys := fc.keys
	fc.mu.Unlock()
	if len(keys) != 6 || keys[0] == "" || keys[0] != keys[1] || keys[1] != keys[2] || keys[3] != keys[5] || keys[2] == keys[3] {
		t.Errorf("keys: got %v, want three sends of one key, then three of another", keys)
	}
	if got.Retries != 4 {
		t.Errorf("retries: got %d, want 4", got.Retries)
	}
}
