package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/facebookgo/clock"
	"github.com/rs/zerolog"
)

// benchAPI is the real API over a queue of max messages, logging nowhere.
func benchAPI(b *testing.B, max int) (*service, http.Handler) {
	b.Helper()
	s := newTestService(b, map[string]string{"QUEUE_MAX_SIZE": strconv.Itoa(max), "QUEUE_RECOVERY_THRESHOLD": "0"})
	return s, s.routes()
}

var benchBody = []byte(`{"destination":"+34600000000","body":"hello from the benchmark"}`)

func postOnce(h http.Handler) int {
	req := httptest.NewRequest(http.MethodPost, "/messages", bytes.NewReader(benchBody))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code
}

// BenchmarkAdmit: decode, validate, enqueue and answer 202 through the real
// handler, with a taker keeping the queue from filling. The queue is the
// largest allowed, so that a taker the scheduler leaves behind for a while
// does not turn admissions into 503s.
func BenchmarkAdmit(b *testing.B) {
	a, h := benchAPI(b, 1_000_000)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, err := a.queue.Take(ctx, nil, nil); err != nil {
				return
			}
		}
	}()
	b.Cleanup(func() { cancel(); <-done })
	b.ReportAllocs()
	for b.Loop() {
		if code := postOnce(h); code != http.StatusAccepted {
			b.Fatalf("got %d", code)
		}
	}
}

// BenchmarkReject: the 503 queue_full answer once the queue is full.
func BenchmarkReject(b *testing.B) {
	_, h := benchAPI(b, 1)
	postOnce(h)
	b.ReportAllocs()
	for b.Loop() {
		if code := postOnce(h); code != http.StatusServiceUnavailable {
			b.Fatalf("got %d", code)
		}
	}
}

// BenchmarkWatermarkParallel: offers and takes from every P at once.
func BenchmarkWatermarkParallel(b *testing.B) {
	q := NewQueue(64, 16, zerolog.Nop(), observers(nil), time.Now)
	d := newDelivery("x", "", "", "")
	yes := func() bool { return true }
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if q.Offer(d, yes) {
				_, _ = q.Take(context.Background(), nil, nil)
			}
		}
	})
}

// BenchmarkBreakerCall and BenchmarkDirectCall: what the breaker wrapper
// adds to a call that succeeds at once.
func BenchmarkBreakerCall(b *testing.B) {
	br := NewBreaker(5, time.Second, time.Second, clock.New(), zerolog.Nop(), observers(nil))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_ = br.Call(ctx, succeeding, always)
	}
}

func BenchmarkDirectCall(b *testing.B) {
	ctx := context.Background()
	call := succeeding
	b.ReportAllocs()
	for b.Loop() {
		_ = call(ctx)
	}
}

// BenchmarkStoreOutcome: one message's store updates from accepted to
// sent, with eviction at the retention limit.
func BenchmarkStoreOutcome(b *testing.B) {
	s := NewStore(10_000, time.Now)
	fail := &AttemptError{Kind: OutcomeMessageappError, Detail: "messageapp answered 500"}
	ids := make([]string, 4096)
	for i := range ids {
		ids[i] = strconv.Itoa(i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		id := ids[i%len(ids)] + "-" + strconv.Itoa(i)
		s.Add(id, "d", "b", "")
		s.Move(id, StatusSending, 0, nil)
		s.Move(id, StatusSending, 1, fail)
		s.Move(id, StatusSent, 2, nil)
		i++
	}
}
