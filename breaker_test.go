package main

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/facebookgo/clock"
	"github.com/rs/zerolog"
	circuit "github.com/rubyist/circuitbreaker"
)

var errBoom = errors.New("boom")

func failing(context.Context) error    { return errBoom }
func succeeding(context.Context) error { return nil }
func always(error) bool                { return true }

// newTestBreaker is a breaker on a mock clock, logging into logs.
func newTestBreaker(threshold int, initial, max time.Duration) (*Breaker, *clock.Mock, *logBuffer) {
	clk := clock.NewMock()
	clk.Add(time.Hour) // away from the zero time the library stores as "never failed"
	logs := &logBuffer{}
	return NewBreaker(threshold, initial, max, clk, zerolog.New(logs), observers(nil)), clk, logs
}

func trip(t *testing.T, b *Breaker, n int) {
	t.Helper()
	for range n {
		_ = b.Call(context.Background(), failing, always)
	}
	if st, _ := b.State(); st != CircuitOpen {
		t.Fatalf("after %d failures: got %s, want open", n, st)
	}
}

func TestTripRuleComparesWithAtLeastNotEquals(t *testing.T) {
	tests := []struct {
		failures int
		want     bool
	}{{0, false}, {4, false}, {5, true}, {6, true}, {50, true}}
	for _, tt := range tests {
		cb := circuit.NewBreaker()
		for range tt.failures {
			cb.Fail()
		}
		if got := tripAtLeast(5)(cb); got != tt.want {
			t.Errorf("%d consecutive failures: got trip=%v, want %v", tt.failures, got, tt.want)
		}
		// The library's own rule is the trap: once a concurrent failure
		// has counted past the threshold, it never trips again.
		if tt.failures > 5 && circuit.ConsecutiveTripFunc(5)(cb) {
			t.Errorf("library ConsecutiveTripFunc tripped at %d; the trap this rule avoids is gone", tt.failures)
		}
	}
}

func TestBreakerOpensUnderConcurrentFailuresAndThenMakesNoCalls(t *testing.T) {
	b, _, logs := newTestBreaker(5, time.Second, time.Second)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			<-start
			_ = b.Call(context.Background(), failing, always)
		})
	}
	close(start)
	wg.Wait()
	if st, _ := b.State(); st != CircuitOpen {
		t.Fatalf("after 32 concurrent failures: got %s, want open", st)
	}
	if got := logs.events("circuit_open"); len(got) != 1 {
		t.Errorf("circuit_open lines: got %d, want 1", len(got))
	}
	ran := false
	err := b.Call(context.Background(), func(context.Context) error { ran = true; return nil }, always)
	if !errors.Is(err, ErrCircuitOpen) || ran {
		t.Errorf("call while open: got err %v ran %v, want ErrCircuitOpen and not run", err, ran)
	}
}

func TestReadingTheStateDoesNotClaimTheProbe(t *testing.T) {
	b, clk, _ := newTestBreaker(1, 100*time.Millisecond, time.Second)
	trip(t, b, 1)
	clk.Add(101 * time.Millisecond)
	for range 10 {
		b.State()
		b.OpenLeft()
		b.ConsecutiveFailures()
	}
	ran := false
	if err := b.Call(context.Background(), func(context.Context) error { ran = true; return nil }, always); err != nil || !ran {
		t.Fatalf("probe after reading state: got err %v ran %v, want it to run", err, ran)
	}
	if st, _ := b.State(); st != CircuitClosed {
		t.Errorf("after a successful probe: got %s, want closed", st)
	}

	// The trap itself: the library's Ready() claims the probe, so a caller
	// that asks before calling is refused.
	cb := circuit.NewBreakerWithOptions(&circuit.Options{Clock: clk, ShouldTrip: tripAtLeast(1),
		BackOff: &scriptedBackOff{script: []time.Duration{100 * time.Millisecond, 200 * time.Millisecond}}})
	cb.Fail()
	clk.Add(150 * time.Millisecond)
	if !cb.Ready() {
		t.Fatal("library: not ready after its backoff")
	}
	if err := cb.Call(func() error { return nil }, 0); !errors.Is(err, circuit.ErrBreakerOpen) {
		t.Errorf("library Call after Ready: got %v, want ErrBreakerOpen (the trap)", err)
	}
}

func TestOnlyOneProbeAtATime(t *testing.T) {
	b, clk, logs := newTestBreaker(1, 100*time.Millisecond, time.Second)
	trip(t, b, 1)
	clk.Add(101 * time.Millisecond)

	inProbe, release := make(chan struct{}), make(chan struct{})
	probeDone := make(chan error, 1)
	go func() {
		probeDone <- b.Call(context.Background(), func(context.Context) error {
			close(inProbe)
			<-release
			return errBoom
		}, always)
	}()
	<-inProbe
	if st, _ := b.State(); st != CircuitHalfOpen {
		t.Errorf("during the probe: got %s, want half_open", st)
	}
	clk.Add(time.Hour) // long past any backoff: still only the one probe
	for range 10 {
		if err := b.Call(context.Background(), succeeding, always); !errors.Is(err, ErrCircuitOpen) {
			t.Fatalf("second call during the probe: got %v, want ErrCircuitOpen", err)
		}
	}
	close(release)
	if err := <-probeDone; !errors.Is(err, errBoom) {
		t.Errorf("probe: got %v, want its own error", err)
	}
	if st, _ := b.State(); st != CircuitOpen {
		t.Errorf("after a failed probe: got %s, want open", st)
	}
	want := []string{"circuit_open", "circuit_half_open", "circuit_open"}
	if got := logs.events("circuit_open", "circuit_half_open", "circuit_closed"); !slices.Equal(got, want) {
		t.Errorf("events: got %v, want %v", got, want)
	}
}

// scriptedBackOff hands out open periods from a script; after a Reset
// other than the one at construction it starts again from afterReset.
type scriptedBackOff struct {
	script     []time.Duration
	afterReset []time.Duration
	i, resets  int
}

func (s *scriptedBackOff) NextBackOff() time.Duration {
	d := s.script[min(s.i, len(s.script)-1)]
	s.i++
	return d
}

func (s *scriptedBackOff) Reset() {
	if s.resets++; s.resets > 1 && s.afterReset != nil {
		s.script = s.afterReset
	}
	s.i = 0
}

func TestSuccessfulProbeClosesEvenWhenTheLibraryWouldStayOpen(t *testing.T) {
	// The library's Success() resets the backoff and closes only if the
	// time since the last failure exceeds the fresh period. With jitter
	// that fresh period can be longer than the one just waited out.
	script := func() *scriptedBackOff {
		return &scriptedBackOff{script: []time.Duration{100 * time.Millisecond, 200 * time.Millisecond},
			afterReset: []time.Duration{time.Second}}
	}

	clk := clock.NewMock()
	clk.Add(time.Hour)
	bo := script()
	bo.Reset() // as newBreaker does
	cb := circuit.NewBreakerWithOptions(&circuit.Options{BackOff: bo, Clock: clk, ShouldTrip: tripAtLeast(1)})
	cb.Fail()
	clk.Add(150 * time.Millisecond)
	if err := cb.Call(func() error { return nil }, 0); err != nil {
		t.Fatalf("library probe: %v", err)
	}
	if !cb.Tripped() {
		t.Fatal("library closed after a successful probe; the trap this wrapper avoids is gone")
	}

	clk2 := clock.NewMock()
	clk2.Add(time.Hour)
	b := newBreaker(1, script(), clk2, zerolog.Nop(), observers(nil))
	trip(t, b, 1)
	clk2.Add(150 * time.Millisecond)
	if err := b.Call(context.Background(), succeeding, always); err != nil {
		t.Fatalf("probe: %v", err)
	}
	if st, _ := b.State(); st != CircuitClosed || b.cb.Tripped() {
		t.Errorf("after a successful probe: got %s (tripped %v), want closed", st, b.cb.Tripped())
	}
	if err := b.Call(context.Background(), succeeding, always); err != nil {
		t.Errorf("call after closing: got %v, want it to run", err)
	}
}

func TestOpenPeriodDoublesFromInitialUpToMax(t *testing.T) {
	b, clk, _ := newTestBreaker(1, 100*time.Millisecond, 400*time.Millisecond)
	trip(t, b, 1)
	for _, period := range []time.Duration{100, 200, 400, 400, 400} {
		period *= time.Millisecond
		if left := b.OpenLeft(); left != period {
			t.Fatalf("OpenLeft right after opening: got %s, want %s", left, period)
		}
		clk.Add(period - time.Millisecond)
		if err := b.Call(context.Background(), succeeding, always); !errors.Is(err, ErrCircuitOpen) {
			t.Fatalf("1ms before the %s period ends: got %v, want ErrCircuitOpen", period, err)
		}
		clk.Add(2 * time.Millisecond)
		if err := b.Call(context.Background(), failing, always); !errors.Is(err, errBoom) {
			t.Fatalf("1ms after the %s period: got %v, want the probe to run", period, err)
		}
	}
	// A success starts the sequence again from the initial period.
	clk.Add(time.Second)
	if err := b.Call(context.Background(), succeeding, always); err != nil {
		t.Fatal(err)
	}
	trip(t, b, 1)
	if left := b.OpenLeft(); left != 100*time.Millisecond {
		t.Errorf("after closing and tripping again: got %s, want 100ms", left)
	}
}

func TestLateResultsFromBeforeTheTripDoNotDecideTheCircuit(t *testing.T) {
	b, clk, _ := newTestBreaker(1, 100*time.Millisecond, time.Second)
	// late starts a call on the closed circuit; the result comes back
	// when the returned function is called.
	late := func(result error) func() {
		inFlight, release := make(chan struct{}), make(chan struct{})
		done := make(chan error, 1)
		go func() {
			done <- b.Call(context.Background(), func(context.Context) error {
				close(inFlight)
				<-release
				return result
			}, always)
		}()
		<-inFlight
		return func() { close(release); <-done }
	}
	lateSuccess, lateFailure := late(nil), late(errors.New("late 500"))
	trip(t, b, 1)
	lateSuccess()
	if st, _ := b.State(); st != CircuitOpen {
		t.Errorf("after a late success: got %s, want still open (only a probe closes it)", st)
	}
	clk.Add(50 * time.Millisecond)
	lateFailure()
	if left := b.OpenLeft(); left != 50*time.Millisecond {
		t.Errorf("after a late failure: the probe is due in %s, want 50ms (the open period is not restarted)", left)
	}
	clk.Add(51 * time.Millisecond)
	if err := b.Call(context.Background(), succeeding, always); err != nil {
		t.Fatal(err)
	}
	if st, _ := b.State(); st != CircuitClosed {
		t.Errorf("after the probe: got %s, want closed", st)
	}
}

func TestErrorsThatAreNotMessageappsFaultDoNotCount(t *testing.T) {
	b, _, _ := newTestBreaker(1, time.Second, time.Second)
	for range 3 {
		_ = b.Call(context.Background(), failing, func(error) bool { return false })
	}
	if st, _ := b.State(); st != CircuitClosed || b.ConsecutiveFailures() != 0 {
		t.Errorf("after aborted calls: got %s with %d failures, want closed with 0", st, b.ConsecutiveFailures())
	}
}
