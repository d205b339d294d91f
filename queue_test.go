package main

import (
	"context"
	"errors"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func newTestQueue(max, recovery int) (*Queue, *logBuffer) {
	logs := &logBuffer{}
	return NewQueue(max, recovery, zerolog.New(logs), observers(nil), time.Now), logs
}

func offer(q *Queue, id string) bool {
	return q.Offer(newDelivery(id, "", "", ""), func() bool { return true })
}

func take(t *testing.T, q *Queue) *Delivery {
	t.Helper()
	d, err := q.Take(context.Background(), nil, nil)
	if err != nil {
		t.Fatalf("take: %v", err)
	}
	return d
}

func TestWatermarkHysteresis(t *testing.T) {
	q, logs := newTestQueue(4, 2)
	steps := []struct {
		name          string
		op            func() bool // returns whether an offer was accepted; takes return true
		wantAccepted  bool
		wantDepth     int
		wantAccepting bool
	}{
		{"offer 1", func() bool { return offer(q, "1") }, true, 1, true},
		{"offer 2", func() bool { return offer(q, "2") }, true, 2, true},
		{"offer 3", func() bool { return offer(q, "3") }, true, 3, true},
		{"offer 4 reaches max: disabled", func() bool { return offer(q, "4") }, true, 4, false},
		{"offer at max is refused", func() bool { return offer(q, "5") }, false, 4, false},
		{"take to 3, above recovery: still disabled", func() bool { take(t, q); return true }, true, 3, false},
		{"offer between recovery and max is refused", func() bool { return offer(q, "6") }, false, 3, false},
		{"take to 2, at recovery: enabled", func() bool { take(t, q); return true }, true, 2, true},
		{"offer after recovery is accepted", func() bool { return offer(q, "7") }, true, 3, true},
		{"take to 2 while enabled: no transition", func() bool { take(t, q); return true }, true, 2, true},
	}
	for _, s := range steps {
		if got := s.op(); got != s.wantAccepted {
			t.Fatalf("%s: got accepted=%v, want %v", s.name, got, s.wantAccepted)
		}
		if q.Depth() != s.wantDepth || q.Accepting() != s.wantAccepting {
			t.Fatalf("%s: got depth %d accepting %v, want %d %v", s.name, q.Depth(), q.Accepting(), s.wantDepth, s.wantAccepting)
		}
	}
	got := logs.events("enqueueing_disabled", "enqueueing_enabled")
	if len(got) != 2 || got[0] != "enqueueing_disabled" || got[1] != "enqueueing_enabled" {
		t.Errorf("transition lines: got %v, want exactly one disabled then one enabled", got)
	}
	for _, e := range logs.entries(nil) {
		if e["depth"] == nil || e["max_size"] != float64(4) || e["recovery_threshold"] != float64(2) {
			t.Errorf("transition line without its figures: %v", e)
		}
	}
	if d := logs.entries(map[string]any{"event": "enqueueing_disabled"}); d[0]["level"] != "warn" {
		t.Errorf("enqueueing_disabled level: got %v, want warn", d[0]["level"])
	}
	if e := logs.entries(map[string]any{"event": "enqueueing_enabled"}); e[0]["level"] != "info" {
		t.Errorf("enqueueing_enabled level: got %v, want info", e[0]["level"])
	}
}

func TestRecoveryZeroWaitsForAnEmptyQueue(t *testing.T) {
	q, _ := newTestQueue(1, 0)
	if !offer(q, "a") || q.Accepting() {
		t.Fatal("max 1: the first offer should fill the queue and disable enqueueing")
	}
	take(t, q)
	if !q.Accepting() {
		t.Error("recovery 0: enqueueing should be enabled once the queue is empty")
	}
}

func TestConcurrentOffersAndTakesKeepTheWatermarkConsistent(t *testing.T) {
	q, logs := newTestQueue(10, 5)
	ctx, cancel := context.WithCancel(context.Background())
	var takers sync.WaitGroup
	var taken atomic.Int64
	for range 4 {
		takers.Go(func() {
			for {
				if _, err := q.Take(ctx, nil, nil); err != nil {
					return
				}
				taken.Add(1)
			}
		})
	}
	var offerers sync.WaitGroup
	var accepted atomic.Int64
	for w := range 16 {
		offerers.Go(func() {
			for i := range 500 {
				if q.Depth() > q.Max() {
					t.Errorf("depth %d above max", q.Depth())
				}
				if offer(q, strconv.Itoa(w*1000+i)) {
					accepted.Add(1)
				}
			}
		})
	}
	offerers.Wait()
	eventually(t, 5*time.Second, "the takers to empty the queue", func() bool { return q.Depth() == 0 })
	cancel()
	takers.Wait()
	if taken.Load() != accepted.Load() {
		t.Errorf("taken %d, accepted %d: a delivery was lost or duplicated", taken.Load(), accepted.Load())
	}
	got := logs.events("enqueueing_disabled", "enqueueing_enabled")
	for i, ev := range got {
		want := "enqueueing_disabled"
		if i%2 == 1 {
			want = "enqueueing_enabled"
		}
		if ev != want {
			t.Fatalf("transition %d: got %s, want %s (lines must alternate): %v", i, ev, want, got)
		}
	}
}

func TestRequeueIgnoresAcceptingButNeverExceedsMax(t *testing.T) {
	q, _ := newTestQueue(2, 0)
	offer(q, "a")
	offer(q, "b")
	d := take(t, q) // depth 1, still disabled (recovery 0)
	if q.Accepting() {
		t.Fatal("depth 1 with recovery 0: should still be disabled")
	}
	if !q.Requeue(d, func() {}) {
		t.Fatal("requeue with room: refused")
	}
	if q.Requeue(newDelivery("c", "", "", ""), func() {}) {
		t.Error("requeue into a full queue: accepted, want refused")
	}
	if q.Depth() != 2 {
		t.Errorf("depth: got %d, want 2", q.Depth())
	}
}

func TestADelayedDeliveryCountsInTheDepthAndJoinsTheQueueWhenDue(t *testing.T) {
	q, _ := newTestQueue(2, 0)
	t.Cleanup(q.Stop)
	offer(q, "a")
	d := take(t, q)
	recorded := false
	if !q.Delay(d, time.Now().Add(50*time.Millisecond), func() { recorded = true }) || !recorded {
		t.Fatal("delay with room: refused, or its record not written")
	}
	offer(q, "b")
	if q.Depth() != 2 || q.Accepting() {
		t.Errorf("one waiting for its retry and one queued: got depth %d, accepting %v; want 2, not accepting", q.Depth(), q.Accepting())
	}
	if q.Delay(newDelivery("c", "", "", ""), time.Now(), func() {}) || q.Requeue(newDelivery("c", "", "", ""), func() {}) {
		t.Error("a full queue took another delivery, want refused")
	}
	if got := take(t, q); got.ID() != "b" {
		t.Errorf("first take: got %s, want b (a is not due yet)", got.ID())
	}
	start := time.Now()
	if got := take(t, q); got.ID() != "a" || time.Since(start) < 30*time.Millisecond {
		t.Errorf("second take: got %s after %s, want a once due", got.ID(), time.Since(start))
	}
	if q.Depth() != 0 || !q.Accepting() {
		t.Errorf("after both taken: depth %d, accepting %v; want 0, accepting", q.Depth(), q.Accepting())
	}
}

func TestCloseWaitsForTheDelayedBeforeItReportsDrained(t *testing.T) {
	q, _ := newTestQueue(3, 1)
	t.Cleanup(q.Stop)
	offer(q, "a")
	d := take(t, q)
	q.Delay(d, time.Now().Add(20*time.Millisecond), func() {})
	q.Close()
	if q.Delay(newDelivery("b", "", "", ""), time.Now(), func() {}) {
		t.Error("closed queue took a delayed delivery")
	}
	select {
	case <-q.Drained():
		t.Fatal("drained while a delivery waits for its retry")
	default:
	}
	if got := take(t, q); got.ID() != "a" {
		t.Errorf("took %s, want a", got.ID())
	}
	<-q.Drained()
}

func TestCloseDrainsThenReportsDrained(t *testing.T) {
	q, _ := newTestQueue(3, 1)
	offer(q, "a")
	q.Close()
	if offer(q, "b") || q.Requeue(newDelivery("c", "", "", ""), func() {}) {
		t.Error("closed queue took a delivery")
	}
	select {
	case <-q.Drained():
		t.Fatal("drained while a delivery is still queued")
	default:
	}
	if d := take(t, q); d.ID() != "a" {
		t.Errorf("took %s, want a", d.ID())
	}
	<-q.Drained()
	if _, err := q.Take(context.Background(), nil, nil); !errors.Is(err, errQueueDrained) {
		t.Errorf("take from drained queue: got %v, want errQueueDrained", err)
	}
}

func TestRetryAfterEstimate(t *testing.T) {
	tests := []struct {
		name     string
		depth    int
		recovery int
		rate     float64
		openLeft time.Duration
		want     int
	}{
		{"draining fast: at least one second", 10, 5, 100, 0, 1},
		{"5 to drain at 2/s", 10, 5, 2, 0, 3},
		{"circuit open for 4s more, then 5 at 5/s", 10, 5, 5, 4 * time.Second, 5},
		{"nothing drained yet: open time plus one", 10, 5, 0, 2 * time.Second, 3},
		{"clamped to 60", 1000, 0, 1, 0, 60},
		{"already at recovery", 5, 5, 0, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := estimateRetryAfter(tt.depth, tt.recovery, tt.rate, tt.openLeft); got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
		})
	}
}

func TestDrainRateIsTheFastestRecentSecond(t *testing.T) {
	now := time.Unix(1000, 0)
	var m rateMeter
	add := func(at time.Time, n int) {
		for range n {
			m.add(at)
		}
	}
	add(now, 3)
	add(now.Add(time.Second), 7)
	add(now.Add(2*time.Second), 1)
	if got := m.peak(now.Add(2 * time.Second)); got != 7 {
		t.Errorf("peak: got %v, want 7", got)
	}
	if got := m.peak(now.Add(20 * time.Second)); got != 0 {
		t.Errorf("peak after the window: got %v, want 0", got)
	}
}

func TestQueueReopensWhenTakesEmptyItWhileTheFillingOfferDisablesIt(t *testing.T) {
	// The interleaving a review found at GOMAXPROCS=8: an offer fills the
	// queue and reads depth == max; before it disables enqueueing, senders
	// take every message. The last take must still see the queue disabled
	// and enable it, or courier answers 503 queue_full for ever.
	q, _ := newTestQueue(2, 0)
	offer(q, "a")
	var takers sync.WaitGroup
	q.testHookBeforeDisable = func() {
		for range 2 {
			takers.Go(func() {
				if _, err := q.Take(context.Background(), nil, nil); err != nil {
					t.Errorf("take: %v", err)
				}
			})
		}
		eventually(t, 5*time.Second, "the takers to empty the queue", func() bool { return q.Depth() == 0 })
	}
	if !offer(q, "b") {
		t.Fatal("the offer that fills the queue was refused")
	}
	takers.Wait()
	if q.Depth() != 0 || !q.Accepting() {
		t.Errorf("after every message was taken: got depth %d accepting %v, want 0 true", q.Depth(), q.Accepting())
	}
}

// transitionLog records the queue's transitions in order.
type transitionLog struct {
	observers
	mu   sync.Mutex
	seen []bool
}

func (l *transitionLog) QueueChanged(accepting bool, _ int) {
	l.mu.Lock()
	l.seen = append(l.seen, accepting)
	l.mu.Unlock()
}

func TestWatermarkIsConsistentWheneverTheQueueIsQuiet(t *testing.T) {
	// More procs than cores: more preemption points, as on a big box.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(8))
	run := 2 * time.Second
	if v := os.Getenv("COURIER_STRESS"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("COURIER_STRESS=%q: %v", v, err)
		}
		run = d
	}
	const max, recovery = 4, 1
	trans := &transitionLog{}
	q := NewQueue(max, recovery, zerolog.Nop(), trans, time.Now)
	t.Cleanup(q.Stop)
	var accepted, finished atomic.Int64
	// round runs offerers, takers and requeuers at once; with closeMidway,
	// the queue is closed in the middle of it. It returns once every
	// operation has returned: the queue is quiet.
	round := func(closeMidway bool) {
		ctx, cancel := context.WithCancel(context.Background())
		var offerers, others sync.WaitGroup
		for w := range 4 {
			offerers.Go(func() {
				for i := range 64 {
					if offer(q, strconv.Itoa(w*100+i)) {
						accepted.Add(1)
					}
				}
			})
		}
		for range 4 {
			others.Go(func() {
				for {
					if _, err := q.Take(ctx, nil, nil); err != nil {
						return
					}
					finished.Add(1)
				}
			})
		}
		for range 2 {
			others.Go(func() {
				for {
					d, err := q.Take(ctx, nil, nil)
					if err != nil {
						return
					}
					if !q.Requeue(d, func() {}) {
						finished.Add(1) // no room, or closed: the sender keeps and delivers it
					}
				}
			})
		}
		for i := range 2 {
			others.Go(func() {
				for {
					d, err := q.Take(ctx, nil, nil)
					if err != nil {
						return
					}
					if !q.Delay(d, time.Now().Add(time.Duration(i)*time.Millisecond), func() {}) {
						finished.Add(1) // no room, or closed: the sender keeps and delivers it
					}
				}
			})
		}
		if closeMidway {
			q.Close()
		}
		offerers.Wait()
		if closeMidway {
			<-q.Drained()
		}
		cancel()
		others.Wait()
	}

	rounds := 0
	for deadline := time.Now().Add(run); time.Now().Before(deadline); rounds++ {
		round(false)
		depth := q.Depth()
		if depth > max {
			t.Fatalf("round %d: depth %d above max %d", rounds, depth, max)
		}
		if depth <= recovery && !q.Accepting() {
			t.Fatalf("round %d: quiet with depth %d <= recovery %d but not accepting", rounds, depth, recovery)
		}
		if got, want := accepted.Load(), finished.Load()+int64(depth); got != want {
			t.Fatalf("round %d: accepted %d, taken or queued %d", rounds, got, want)
		}
	}
	round(true)
	if q.Depth() != 0 || accepted.Load() != finished.Load() {
		t.Errorf("after close: depth %d, accepted %d, finished %d; want 0 and equal", q.Depth(), accepted.Load(), finished.Load())
	}
	trans.mu.Lock()
	defer trans.mu.Unlock()
	for i, accepting := range trans.seen {
		if want := i%2 == 1; accepting != want {
			t.Fatalf("transition %d: got accepting=%v, want %v (they must alternate)", i, accepting, want)
		}
	}
	t.Logf("%d rounds, %d accepted, %d transitions", rounds, accepted.Load(), len(trans.seen))
}
