package main

// queue.go holds the bounded queue of deliveries and the watermark controller
// that turns enqueueing off at the max and on again at the recovery
// threshold, and the deliveries waiting for their next attempt, which count
// in its depth. It knows nothing about HTTP or messageapp.

import (
	"container/heap"
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// Queue is a buffered channel of deliveries guarded by a watermark: offers
// are refused from the moment the depth reaches max until it falls to the
// recovery threshold. Its depth also counts the deliveries waiting for a
// retry (Delay), which join the channel when they are due: they are part
// of the backlog, but no sender holds them.
type Queue struct {
	ch       chan *Delivery
	max      int
	recovery int
	log      zerolog.Logger
	obs      Observer
	now      func() time.Time

	accepting atomic.Bool // written under mu; read without it by the cheap reject path
	closed    atomic.Bool // set once, under mu
	drain     rateMeter   // takes per second, for Retry-After; lock-free

	// mu serialises every send on ch and every watermark decision, so depth
	// checks and transitions cannot interleave. Takes shrink ch outside it,
	// and each one then takes mu to decide on what it left.
	mu      sync.Mutex
	drained chan struct{} // closed once the queue is closed and empty

	// Guarded by mu: the deliveries waiting for a retry, soonest first;
	// the timer that moves them into ch when due (nil until the first);
	// whether ch is closed (Close waits for delayed to empty first); and
	// whether Stop has ended the timer's work.
	delayed  dueHeap
	due      *time.Timer
	chClosed bool
	stopped  bool
	waiting  atomic.Int64 // len(delayed), lowered after a move into ch: Depth skips the lock at zero

	// testHookBeforeDisable, set only by a test, runs under mu between
	// reading depth == max and disabling; nil otherwise.
	testHookBeforeDisable func()
}

// NewQueue makes a queue that holds at most max deliveries and accepts again
// at recovery or below.
func NewQueue(max, recovery int, log zerolog.Logger, obs Observer, now func() time.Time) *Queue {
	q := &Queue{
		ch:       make(chan *Delivery, max),
		max:      max,
		recovery: recovery,
		log:      log.With().Str("component", "queue").Logger(),
		obs:      obs,
		now:      now,
		drained:  make(chan struct{}),
	}
	q.accepting.Store(true)
	return q
}

// Offer enqueues d if enqueueing is enabled and onAccept agrees. onAccept
// runs under the queue's lock before d becomes visible to senders, so what
// it records (the store entry) exists before any sender can take d, and two
// offers cannot both pass it; returning false drops d (a duplicate). Offer
// reports whether d was enqueued.
func (q *Queue) Offer(d *Delivery, onAccept func() bool) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed.Load() || !q.accepting.Load() || q.backlog() >= q.max {
		return false
	}
	if !onAccept() {
		return false
	}
	q.ch <- d // cannot block: only this lock's holders send, and len < max
	q.checkFull()
	return true
}

// Requeue puts back a delivery a sender cannot try now. It ignores the
// accepting flag (the message was already accepted) but never exceeds max;
// it reports false when there is no room, and the caller keeps d.
func (q *Queue) Requeue(d *Delivery, onRequeue func()) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed.Load() || q.backlog() >= q.max {
		return false
	}
	onRequeue()
	q.ch <- d
	q.checkFull()
	return true
}

// Restore enqueues messages a spool kept, all of them, before any offer,
// take or requeue (it may replace the channel). A spool can hold more than
// QUEUE_MAX_SIZE (the senders' messages join the queued ones at shutdown,
// and the size may have been lowered since): rather than refuse to start,
// or drop what clients were told was accepted, the queue holds them all
// and refuses new messages until it drains to the recovery threshold.
func (q *Queue) Restore(ds []*Delivery) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if need := len(q.ch) + len(ds); need > cap(q.ch) {
		ch := make(chan *Delivery, need)
		for len(q.ch) > 0 {
			ch <- <-q.ch
		}
		q.ch = ch
	}
	for _, d := range ds {
		q.ch <- d
	}
	q.checkFull()
}

// Delay keeps d, whose last attempt failed, until at (by the queue's
// clock), then puts it in the channel for a sender to take. Meanwhile it
// counts in the depth but holds no sender. Like Requeue it ignores the
// accepting flag but never exceeds max, and it refuses once the queue is
// closed: it reports false, and the caller keeps d. onDelay runs under the
// queue's lock, before d can reach another sender.
func (q *Queue) Delay(d *Delivery, at time.Time, onDelay func()) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed.Load() || q.backlog() >= q.max {
		return false
	}
	onDelay()
	heap.Push(&q.delayed, dueDelivery{d: d, at: at.UnixNano()})
	q.waiting.Store(int64(len(q.delayed)))
	q.arm()
	q.checkFull()
	return true
}

// backlog is every delivery the queue holds, in the channel or waiting
// for a retry. Callers hold mu; takes may only shrink it meanwhile.
func (q *Queue) backlog() int { return len(q.ch) + len(q.delayed) }

// arm sets the timer for the soonest delayed delivery. Callers hold mu.
func (q *Queue) arm() {
	if len(q.delayed) == 0 || q.stopped {
		return
	}
	wait := time.Duration(q.delayed[0].at - q.now().UnixNano())
	if q.due == nil {
		q.due = time.AfterFunc(wait, q.release)
		return
	}
	q.due.Reset(wait)
}

// release moves the delayed deliveries that are due into the channel,
// where senders take them, and sets the timer for the next. Moving one
// changes no depth, so no watermark decision follows. It cannot block:
// the channel and the delayed together hold at most max, its capacity.
func (q *Queue) release() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.stopped {
		return
	}
	now := q.now().UnixNano()
	for len(q.delayed) > 0 && q.delayed[0].at <= now {
		q.ch <- heap.Pop(&q.delayed).(dueDelivery).d
		// Counted out of waiting once it is in ch: Depth reads ch alone
		// only when waiting is zero, and every move is then complete.
		q.waiting.Store(int64(len(q.delayed)))
	}
	if q.closed.Load() && len(q.delayed) == 0 {
		q.closeChannel()
	}
	q.arm()
}

// Stop ends the timer's work, once the senders are done: what is still
// delayed stays where it is (its records say queued).
func (q *Queue) Stop() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.stopped = true
	if q.due != nil {
		q.due.Stop()
	}
}

// dueDelivery is a delivery waiting for its retry, due at (unix nanoseconds).
type dueDelivery struct {
	d  *Delivery
	at int64
}

// dueHeap orders the delayed deliveries, soonest first (container/heap).
type dueHeap []dueDelivery

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)        { *h = append(*h, x.(dueDelivery)) }
func (h *dueHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = dueDelivery{}
	*h = old[:len(old)-1]
	return x
}

// checkFull disables enqueueing when the depth reaches max. Callers hold mu.
func (q *Queue) checkFull() {
	if depth := q.backlog(); depth >= q.max && q.accepting.Load() {
		if q.testHookBeforeDisable != nil {
			q.testHookBeforeDisable()
		}
		q.accepting.Store(false)
		q.log.Warn().Str("event", queueEvent(false)).Int("depth", depth).
			Int("max_size", q.max).Int("recovery_threshold", q.recovery).
			Msg("queue full: rejecting new messages")
		q.obs.QueueChanged(false, depth)
	}
}

// Errors from Take.
var (
	errQueueDrained = errors.New("queue closed and empty")
	errInterrupted  = errors.New("take interrupted")
)

// Take waits for the next delivery. It fails with errQueueDrained once the
// queue is closed and empty, errInterrupted when interrupt or also fires
// (either may be nil), or the context's error.
func (q *Queue) Take(ctx context.Context, interrupt, also <-chan struct{}) (*Delivery, error) {
	// A select picks at random among ready cases: once ctx is done, take
	// nothing more, rather than start what cannot be finished.
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case d, ok := <-q.ch:
		if !ok {
			return nil, errQueueDrained
		}
		q.took()
		return d, nil
	case <-interrupt:
		return nil, errInterrupted
	case <-also:
		return nil, errInterrupted
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// took records a dequeue and re-enables enqueueing at the recovery
// threshold. It always takes the lock: the receive that shrank the queue
// happened before it, so the last of any set of offers, takes and requeues
// to hold the lock sees the final depth and leaves the flag right. (A
// lock-free shortcut while accepting read true lost that race: an offer
// that had just read depth == max could store false after every message was
// taken, leaving an empty queue that never accepted again.)
func (q *Queue) took() {
	q.drain.add(q.now())
	q.mu.Lock()
	defer q.mu.Unlock()
	depth := q.backlog()
	if q.closed.Load() {
		if depth == 0 && q.chClosed {
			q.markDrained()
		}
		return
	}
	if depth <= q.recovery && !q.accepting.Load() {
		q.accepting.Store(true)
		q.log.Info().Str("event", queueEvent(true)).Int("depth", depth).
			Int("max_size", q.max).Int("recovery_threshold", q.recovery).
			Msg("queue drained: accepting messages again")
		q.obs.QueueChanged(true, depth)
	}
}

// Close stops all further offers, requeues and delays; senders drain what
// is left, the delayed included once they are due, and then see Take
// return false.
func (q *Queue) Close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed.Load() {
		q.closed.Store(true)
		q.accepting.Store(false)
		if len(q.delayed) == 0 {
			q.closeChannel()
		}
	}
}

// closeChannel closes ch, once nothing more can join it. Callers hold mu.
func (q *Queue) closeChannel() {
	if q.chClosed {
		return
	}
	q.chClosed = true
	close(q.ch)
	if len(q.ch) == 0 {
		q.markDrained()
	}
}

// markDrained closes drained once. Callers hold mu.
func (q *Queue) markDrained() {
	select {
	case <-q.drained:
	default:
		close(q.drained)
	}
}

// Drained is closed once the queue is closed and every delivery was taken.
func (q *Queue) Drained() <-chan struct{} { return q.drained }

// Accepting reports whether offers are currently enabled.
func (q *Queue) Accepting() bool { return q.accepting.Load() }

// Depth is the number of deliveries the queue holds: in the channel, and
// waiting for a retry.
func (q *Queue) Depth() int {
	if q.waiting.Load() == 0 {
		return len(q.ch) // the usual case, without the lock
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.backlog()
}

// Max is the depth at which enqueueing is disabled.
func (q *Queue) Max() int { return q.max }

// Recovery is the depth at or below which enqueueing is enabled again.
func (q *Queue) Recovery() int { return q.recovery }

// DrainRate is the fastest drain of the last rateWindow seconds, in takes
// per second: while the circuit is open the queue hardly moves, and what
// matters for Retry-After is how fast it empties once messageapp is back.
func (q *Queue) DrainRate() float64 { return q.drain.peak(q.now()) }

// rateMeter counts events in one-second buckets over the last rateWindow
// seconds, without a lock. A count can be lost when two events race into
// a bucket being recycled: it feeds an estimate, and that is fine.
type rateMeter struct {
	buckets [rateWindow]struct{ sec, n atomic.Int64 }
}

const rateWindow = 10

func (m *rateMeter) add(now time.Time) {
	sec := now.Unix()
	b := &m.buckets[sec%rateWindow]
	if old := b.sec.Load(); old != sec && b.sec.CompareAndSwap(old, sec) {
		b.n.Store(0)
	}
	b.n.Add(1)
}

// peak is the largest one-second count in the window.
func (m *rateMeter) peak(now time.Time) float64 {
	sec := now.Unix()
	var best int64
	for i := range m.buckets {
		if b := &m.buckets[i]; sec-b.sec.Load() < rateWindow {
			best = max(best, b.n.Load())
		}
	}
	return float64(best)
}

// estimateRetryAfter estimates how long until enqueueing is enabled again: the time
// left before the circuit lets a probe through, plus the time to drain from
// depth down to recovery at the given drain rate. With no drain observed it
// falls back to the open time plus one second. The result is whole seconds
// in 1..60, as Retry-After wants.
func estimateRetryAfter(depth, recovery int, drainPerSec float64, openLeft time.Duration) int {
	wait := openLeft.Seconds()
	backlog := float64(depth - recovery)
	switch {
	case backlog <= 0:
	case drainPerSec > 0:
		wait += backlog / drainPerSec
	default:
		wait++
	}
	secs := int(math.Ceil(wait))
	return max(1, min(60, secs))
}
