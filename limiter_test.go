package main

import (
	"context"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// frozenLaw is a tuning under which the latency law never moves the
// limit: no window ever has enough calls. Only failures and successes do.
func frozenLaw(initial int) limiterTuning {
	return limiterTuning{initial: initial, window: time.Millisecond, maxWindow: time.Millisecond, minSamples: 1 << 30, headroom: 2}
}

// startCall takes a slot and begins a call through it, as a sender does.
func startCall(t *testing.T, l *Limiter) *slot {
	t.Helper()
	s, _, err := l.acquire(context.Background(), nil, nil)
	if err != nil {
		t.Fatalf("acquire: %v", err)
	}
	l.begin(&s)
	return &s
}

func TestFailuresHalveTheLimitAndSuccessesDoubleItBack(t *testing.T) {
	logs := &logBuffer{}
	l := NewLimiter(16, true, frozenLaw(16), zerolog.New(logs), observers(nil))
	var calls []*slot
	for range 8 {
		calls = append(calls, startCall(t, l))
	}
	finish := func(r callResult) {
		s := calls[0]
		calls = calls[1:]
		l.end(s, r)
		l.release(s)
		// The sender comes back for more, and finds room or not.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		defer cancel()
		if next, _, err := l.acquire(ctx, nil, nil); err == nil {
			l.begin(&next)
			calls = append(calls, &next)
		}
	}
	steps := []struct {
		name   string
		result callResult
		want   int
	}{
		{"a timeout halves the calls that were in flight (8)", callTimedOut, 4},
		{"an error answer halves it again", callFailed, 2},
		{"a refused connection halves it again", callFailed, 1},
		{"and it never goes below one", callTimedOut, 1},
		{"a call cut by shutdown changes nothing", callCut, 1},
		{"a success doubles it", callAnswered, 2},
		{"a 4xx answer is messageapp answering: it doubles it too", callAnswered, 4},
		{"successes go on doubling it", callAnswered, 8},
		{"back to the law's limit, never past it", callAnswered, 16},
		{"where further successes leave it", callAnswered, 16},
	}
	for _, step := range steps {
		finish(step.result)
		if got := l.Limit(); got != step.want {
			t.Fatalf("%s: limit got %d, want %d", step.name, got, step.want)
		}
	}
	for _, s := range calls {
		l.end(s, callAnswered)
		l.release(s)
	}

	// The log says each halving and doubling once, not each call.
	var got [][2]float64
	for _, e := range logs.entries(nil) {
		got = append(got, [2]float64{e["from"].(float64), e["limit"].(float64)})
	}
	want := [][2]float64{{16, 4}, {4, 2}, {2, 1}, {1, 2}, {2, 4}, {4, 8}, {8, 16}}
	if len(got) != len(want) {
		t.Fatalf("transition lines (from, limit): got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("transition lines (from, limit): got %v, want %v", got, want)
		}
	}
	if e := logs.entries(nil)[0]; e["event"] != "concurrency_lowered" || e["level"] != "warn" || e["cause"] != "calls fail" {
		t.Errorf("first line: got %v, want a warn concurrency_lowered caused by failing calls", e)
	}
}

func TestAFallingLimitHoldsBackNewCallsAndSendsWaitingSendersBack(t *testing.T) {
	l := NewLimiter(4, true, frozenLaw(4), zerolog.Nop(), observers(nil))
	a, b := startCall(t, l), startCall(t, l)
	// A sender waiting at an empty queue holds a slot, and the channel
	// that calls it back if the limit falls.
	idle, lowered, err := l.acquire(context.Background(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.end(a, callTimedOut) // two calls were in flight: one may go on
	l.release(a)
	select {
	case <-lowered:
	default:
		t.Fatal("the limit fell and the waiting sender was not called back")
	}
	l.release(&idle)
	if got := l.Limit(); got != 1 {
		t.Fatalf("limit: got %d, want 1", got)
	}
	// b still calls: there is no room for another until it ends.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, _, err := l.acquire(ctx, nil, nil); err == nil {
		t.Fatal("a slot was free while the one call allowed was in flight")
	}
	l.end(b, callAnswered)
	l.release(b)
	c := startCall(t, l) // b's slot is free again
	l.end(c, callAnswered)
	l.release(c)
}

func TestAFixedLimitStaysAtTheCeiling(t *testing.T) {
	l := NewLimiter(3, false, defaultLimiterTuning, zerolog.Nop(), observers(nil))
	s := startCall(t, l)
	l.end(s, callTimedOut)
	l.release(s)
	if l.Adaptive() || l.Limit() != 3 {
		t.Errorf("fixed limit after a timeout: got adaptive %v, limit %d; want false, 3", l.Adaptive(), l.Limit())
	}
}

// TestLimitFollowsLatencyWithinOneAndTheCeiling drives the real law: calls
// that take 1 ms, then 10 ms, then 1 ms again, as many at once as the limit
// allows. The limit falls when latency rises and rises again when it falls;
// at no moment is it above the ceiling or below one, nor are more calls in
// flight than the ceiling.
func TestLimitFollowsLatencyWithinOneAndTheCeiling(t *testing.T) {
	const ceiling = 32
	l := NewLimiter(ceiling, true, limiterTuning{initial: ceiling, window: 5 * time.Millisecond,
		maxWindow: 50 * time.Millisecond, minSamples: 5, headroom: 2}, zerolog.Nop(), observers(nil))
	var latency atomic.Int64
	latency.Store(int64(time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var busy, worst, lowest, highest atomic.Int64
	lowest.Store(ceiling)
	for range ceiling + 8 { // more senders than the ceiling, as SENDERS are not all called
		wg.Go(func() {
			for {
				s, _, err := l.acquire(ctx, nil, nil)
				if err != nil {
					return
				}
				l.begin(&s)
				n := busy.Add(1)
				for w := worst.Load(); n > w && !worst.CompareAndSwap(w, n); w = worst.Load() {
				}
				// A call's own time, with some spread: the workload, not a wait for anything.
				time.Sleep(time.Duration(float64(latency.Load()) * (0.8 + 0.4*rand.Float64())))
				busy.Add(-1)
				l.end(&s, callAnswered)
				l.release(&s)
			}
		})
	}
	wg.Go(func() { // the limit, watched throughout
		for ctx.Err() == nil {
			n := int64(l.Limit())
			for v := lowest.Load(); n < v && !lowest.CompareAndSwap(v, n); v = lowest.Load() {
			}
			for v := highest.Load(); n > v && !highest.CompareAndSwap(v, n); v = highest.Load() {
			}
			time.Sleep(time.Millisecond) // sampling interval
		}
	})
	defer func() {
		cancel()
		wg.Wait()
		if lowest.Load() < 1 || highest.Load() > ceiling || worst.Load() > ceiling {
			t.Errorf("limit went from %d to %d with up to %d calls at once; want within 1..%d",
				lowest.Load(), highest.Load(), worst.Load(), ceiling)
		}
	}()

	eventually(t, 10*time.Second, "the law to measure latency", func() bool {
		recent, baseline := l.Steering()
		return recent > 0 && baseline > 0
	})
	// A limit already at one (noise on a loaded machine can put it there)
	// has nowhere to fall: rising latency must start from above it.
	var settled int
	eventually(t, 10*time.Second, "the limit to be above one", func() bool { settled = l.Limit(); return settled > 1 })
	latency.Store(int64(10 * time.Millisecond))
	eventually(t, 10*time.Second, "the limit to fall as latency rises (from "+strconv.Itoa(settled)+")", func() bool { return l.Limit() < settled })
	var low int
	eventually(t, 10*time.Second, "latency to be seen high", func() bool {
		low = l.Limit()
		recent, _ := l.Steering()
		return recent > 5*time.Millisecond
	})
	latency.Store(int64(time.Millisecond))
	eventually(t, 10*time.Second, "the limit to rise again as latency falls", func() bool { return l.Limit() > low })
}

// TestASuddenHangCostsTheLimitNotEverySender reproduces the fault
// in small: with a fixed pool every sender takes a message into a hanging
// messageapp, and each ends with delivery unknown. With the limit, at most
// its calls go out (8 at start), the rest of the messages stay in the
// queue, and a timeout lets no new call start until the circuit opens.
func TestASuddenHangCostsTheLimitNotEverySender(t *testing.T) {
	app := newFakeMessageapp(t, modeHang)
	env := baseEnv(app.URL())
	env["SENDERS"] = "16"
	env["QUEUE_MAX_SIZE"] = "50"
	env["MESSAGEAPP_TIMEOUT"] = "300ms"
	s := startService(t, env)
	for i := range 20 {
		if r := s.post("d", strconv.Itoa(i)); r.status != http.StatusAccepted {
			t.Fatalf("post %d: got %d, want 202", i, r.status)
		}
	}
	s.waitEvent(circuitEvent(CircuitOpen), 1)
	eventually(t, 5*time.Second, "the calls in flight to time out", func() bool { return s.status().Concurrency.InFlight == 0 })
	st := s.status()
	// BREAKER_BACKOFF_INITIAL is 10m: no probe follows.
	if calls := app.calls.Load(); calls > 5+3 || st.Messages.Timeout != calls {
		t.Errorf("calls into the hang: got %d, %d of them timeout; want at most BREAKER_THRESHOLD + 3 = 8, all timeout", calls, st.Messages.Timeout)
	}
	if out := 20 - st.Messages.Timeout - int64(st.Queue.Depth); out > 1 {
		t.Errorf("queue depth %d after %d timeouts: %d messages out of the queue; want the rest in the queue, at most one out (docs/behaviour.md)", st.Queue.Depth, st.Messages.Timeout, out)
	}
	if !st.Messages.Balanced() {
		t.Errorf("accounting: %+v does not balance", st.Messages)
	}
}
