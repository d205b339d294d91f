package main

// queue.go holds the bounded queue of deliveries and the watermark controller
// that turns enqueueing off at the max and on again at the recovery
// threshold. It knows nothing about HTTP or messageapp.

import (
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
// recovery threshold.
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

	beforeDisable func() // test hook: runs under mu between reading depth == max and disabling
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
	if q.closed.Load() || !q.accepting.Load() || len(q.ch) >= q.max {
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
	if q.closed.Load() || len(q.ch) >= q.max {
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

// checkFull disables enqueueing when the depth reaches max. Callers hold mu.
func (q *Queue) checkFull() {
	if depth := len(q.ch); depth >= q.max && q.accepting.Load() {
		if q.beforeDisable != nil {
			q.beforeDisable()
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
	depth := len(q.ch)
	if q.closed.Load() {
		if depth == 0 {
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

// Close stops all further offers and requeues; senders drain what is left
// and then see Take return false.
func (q *Queue) Close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed.Load() {
		q.closed.Store(true)
		q.accepting.Store(false)
		close(q.ch)
		if len(q.ch) == 0 {
			q.markDrained()
		}
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

// Depth is the number of deliveries waiting in the queue.
func (q *Queue) Depth() int { return len(q.ch) }

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
