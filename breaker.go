package main

// breaker.go wraps github.com/rubyist/circuitbreaker v2.2.1 so that it
// behaves as docs/behaviour.md says, working around the library's traps:
//   - the trip rule is ours and compares with >=, so concurrent failures
//     cannot skip past the threshold;
//   - Ready() claims the half-open probe, so it is called exactly once per
//     call, here, and state is read with Tripped();
//   - a successful probe closes the circuit with Reset(), instead of relying
//     on Success() re-checking a freshly reset backoff (which can leave it
//     open, and otherwise advances the backoff past the initial period);
//   - the backoff is ours: exponential from BREAKER_BACKOFF_INITIAL, doubling,
//     capped at BREAKER_BACKOFF_MAX, without jitter;
//   - we never use Call's timeout (it leaks the wrapped goroutine): callers
//     put a context deadline on the request instead;
//   - we never Subscribe (each subscription leaks a goroutine): transitions
//     are detected here, under one lock, and logged once each.

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenk/backoff"
	"github.com/facebookgo/clock"
	"github.com/rs/zerolog"
	circuit "github.com/rubyist/circuitbreaker"
)

// CircuitState is what the circuit is doing, as /status reports it.
type CircuitState string

// The three circuit states.
const (
	CircuitClosed   CircuitState = "closed"
	CircuitOpen     CircuitState = "open"
	CircuitHalfOpen CircuitState = "half_open"
)

// ErrCircuitOpen is returned by Breaker.Call when the call was not made.
var ErrCircuitOpen = errors.New("circuit open: call not made")

// Breaker guards calls to messageapp.
type Breaker struct {
	cb        *circuit.Breaker
	backoff   *recordingBackOff
	threshold int64
	clock     clock.Clock
	log       zerolog.Logger
	obs       Observer

	// mu orders every Ready/Success/Fail/Reset on cb and every change of
	// view, so that a transition is seen, and logged, exactly once.
	mu sync.Mutex
	// view is the state; it is replaced, never changed, under mu and read
	// without it: every 503 and every sender's next take read it.
	view atomic.Pointer[circuitView]
}

// circuitView is the circuit's state at one moment.
type circuitView struct {
	state    CircuitState
	openedAt time.Time     // last time a failure (re)opened the circuit
	period   uint64        // how many times the circuit has opened: names the current open period
	changed  chan struct{} // closed when this view is replaced by a transition
}

// NewBreaker builds a breaker that opens after threshold consecutive
// failures and stays open for an exponential backoff from initial to max.
func NewBreaker(threshold int, initial, max time.Duration, clk clock.Clock, log zerolog.Logger, obs Observer) *Breaker {
	return newBreaker(threshold, &backoff.ExponentialBackOff{
		InitialInterval:     initial,
		RandomizationFactor: 0,
		Multiplier:          2,
		MaxInterval:         max,
		MaxElapsedTime:      0, // never give up probing
		Clock:               clk,
	}, clk, log, obs)
}

// newBreaker takes any backoff policy; tests script one.
func newBreaker(threshold int, policy backoff.BackOff, clk clock.Clock, log zerolog.Logger, obs Observer) *Breaker {
	rb := &recordingBackOff{inner: policy}
	rb.Reset()
	b := &Breaker{
		backoff:   rb,
		threshold: int64(threshold),
		clock:     clk,
		log:       log.With().Str("component", "breaker").Logger(),
		obs:       obs,
	}
	b.view.Store(&circuitView{state: CircuitClosed, changed: make(chan struct{})})
	b.cb = circuit.NewBreakerWithOptions(&circuit.Options{
		BackOff:    rb,
		Clock:      clk,
		ShouldTrip: tripAtLeast(b.threshold),
	})
	return b
}

// tripAtLeast is the trip rule the library's ConsecutiveTripFunc should have
// been: it compares with >= so that a failure counted past the threshold by
// a concurrent caller still trips.
func tripAtLeast(threshold int64) circuit.TripFunc {
	return func(cb *circuit.Breaker) bool { return cb.ConsecFailures() >= threshold }
}

// callRole is what a call through the breaker is: an ordinary call, made
// while the circuit is closed, or the half-open period's one probe, whose
// result decides the circuit.
type callRole int

const (
	ordinaryCall callRole = iota
	probeCall
)

// Call runs fn if the circuit lets it: always while closed, and as the one
// half-open probe once the open period has passed. It returns ErrCircuitOpen
// without running fn otherwise. fn's error counts as a failure unless
// isFailure says it does not (for example, a call aborted by shutdown).
func (b *Breaker) Call(ctx context.Context, fn func(context.Context) error, isFailure func(error) bool) error {
	// Closed (not tripped): Ready() would say yes with no side effect, so
	// the common case skips admit and its lock. A trip that lands right
	// after this check is the same race as one that lands right after Ready().
	role := ordinaryCall
	if b.cb.Tripped() {
		var err error
		if role, err = b.admit(); err != nil {
			return err
		}
	}
	err := fn(ctx)
	switch {
	case role == probeCall:
		b.settleProbe(err, isFailure)
	case err == nil && !b.cb.Tripped() && b.cb.ConsecFailures() == 0:
		// A success on a closed circuit with no failures to forget changes
		// nothing, and skips the lock: the backoff was reset when the count
		// last went to zero.
	default:
		b.settleCall(err, isFailure)
	}
	return err
}

// admit says whether a call may go now that the circuit has tripped, and
// as what; ErrCircuitOpen if not.
func (b *Breaker) admit() (callRole, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.view.Load().state == CircuitHalfOpen || !b.cb.Ready() {
		return ordinaryCall, ErrCircuitOpen
	}
	if !b.cb.Tripped() {
		return ordinaryCall, nil // closed meanwhile
	}
	// Ready() said yes while tripped: this call holds the probe.
	b.transition(CircuitHalfOpen)
	return probeCall, nil
}

// settleProbe closes the circuit after a successful probe and reopens it
// after a failed one; a probe cut short without a verdict (!isFailure)
// leaves it open for the next probe.
func (b *Breaker) settleProbe(err error, isFailure func(error) bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case err == nil:
		// Close deterministically: Reset() first, whatever Success()'s
		// re-check of the backoff would say, then Success() on the closed
		// breaker restarts the open periods from the initial one.
		b.cb.Reset()
		b.cb.Success()
		b.transition(CircuitClosed)
	case isFailure(err):
		b.fail()
	default:
		b.transition(CircuitOpen)
	}
}

// settleCall counts an ordinary call's result while the circuit is closed.
// Once it is open, a late result (from a call that started before it
// opened) changes nothing: the circuit stays open until its own probe says
// otherwise, and a late failure must not end a probe's half-open period
// (the probe decides) nor restart the open period as the library's Fail
// would: the probe is due when the log said it would be.
func (b *Breaker) settleCall(err error, isFailure func(error) bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.cb.Tripped(): // a late result: nothing to count
	case err == nil:
		b.cb.Success()
	case isFailure(err):
		b.fail()
	}
}

// fail counts a failure. When it opens the circuit, or a failed probe
// reopens it, the library's open period starts now, and so does ours.
// Callers hold mu.
func (b *Breaker) fail() {
	b.cb.Fail()
	if b.cb.Tripped() {
		v := *b.view.Load()
		v.openedAt = b.clock.Now()
		b.view.Store(&v)
		b.transition(CircuitOpen)
	}
}

// transition records and logs a state change. Callers hold mu.
func (b *Breaker) transition(to CircuitState) {
	old := b.view.Load()
	if old.state == to {
		return
	}
	// Publish the new state before waking anyone, so a woken reader sees it.
	period := old.period
	if to == CircuitOpen {
		period++
	}
	b.view.Store(&circuitView{state: to, openedAt: old.openedAt, period: period, changed: make(chan struct{})})
	close(old.changed)
	switch to {
	case CircuitOpen:
		b.log.Warn().Str("event", circuitEvent(CircuitOpen)).Int64("consecutive_failures", b.cb.ConsecFailures()).
			Int64("open_for_ms", b.backoff.current().Milliseconds()).Msg("CIRCUIT OPENED: courier stops calling messageapp")
	case CircuitHalfOpen:
		b.log.Info().Str("event", circuitEvent(CircuitHalfOpen)).Msg("CIRCUIT HALF-OPEN: one probe goes to messageapp")
	case CircuitClosed:
		b.log.Info().Str("event", circuitEvent(CircuitClosed)).Msg("CIRCUIT CLOSED: messageapp answers again")
	}
	var openFor time.Duration
	if to == CircuitOpen {
		openFor = b.backoff.current()
	}
	b.obs.CircuitChanged(to, openFor)
}

// State returns the current state and a channel closed at the next change.
func (b *Breaker) State() (CircuitState, <-chan struct{}) {
	v := b.view.Load()
	return v.state, v.changed
}

// OpenPeriod numbers the circuit's open periods: it grows by one each time
// the circuit opens, and stays while it is open or half-open after that.
func (b *Breaker) OpenPeriod() uint64 { return b.view.Load().period }

// ConsecutiveFailures is the library's count of failures since the last success.
func (b *Breaker) ConsecutiveFailures() int64 { return b.cb.ConsecFailures() }

// OpenLeft is how long until the open circuit lets a probe through; zero
// while closed, half-open, or already due.
func (b *Breaker) OpenLeft() time.Duration {
	v := b.view.Load()
	if v.state != CircuitOpen {
		return 0
	}
	return max(0, v.openedAt.Add(b.backoff.current()).Sub(b.clock.Now()))
}

// recordingBackOff remembers the interval it last handed out, which is the
// library's current open period, so OpenLeft can say when the probe is due.
// The library calls it under its own lock; current is read from anywhere.
type recordingBackOff struct {
	inner backoff.BackOff
	last  atomic.Int64
}

// NextBackOff returns the next open period and records it.
func (r *recordingBackOff) NextBackOff() time.Duration {
	d := r.inner.NextBackOff()
	r.last.Store(int64(d))
	return d
}

// Reset starts the exponential sequence again from the initial interval.
func (r *recordingBackOff) Reset() { r.inner.Reset() }

func (r *recordingBackOff) current() time.Duration { return time.Duration(r.last.Load()) }
