package main

// limiter.go decides how many calls to messageapp may be in flight
// (docs/behaviour.md): an adaptive limit between 1 and SENDERS.
// failsafe-go's adaptivelimiter moves it with the latency of the calls; a failed call
// halves what is allowed until calls succeed again. While the circuit is
// closed, a sender holds a slot from before it takes a message until it is
// done with it, so a sender waiting for room holds nothing of the queue's;
// while it is not, the message held for the probe waits without a slot,
// and its sender takes one for the probe's call (Senders.next, deliver).

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/failsafe-go/failsafe-go/adaptivelimiter"
	"github.com/rs/zerolog"
)

// limiterTuning is how the law samples latency. Its windows are short so
// that the limit follows a change within a second or two at the rates
// courier sees; the library's own defaults (1 s windows of at least 50
// calls) suit a server taking thousands of requests a second.
type limiterTuning struct {
	initial    int           // limit at start, within 1..ceiling
	window     time.Duration // shortest sampling window (the library also waits two fastest calls)
	maxWindow  time.Duration // longest sampling window
	minSamples uint          // calls a window needs before the limit moves
	headroom   float64       // the limit rises to at most this many times the calls in flight
}

// defaultLimiterTuning starts at 8 calls, looks at latency every 100 ms
// (or every 10 calls, whichever is later), and leaves room for twice the
// calls in flight, so that a burst finds slots while a hang finds few.
var defaultLimiterTuning = limiterTuning{initial: 8, window: 100 * time.Millisecond,
	maxWindow: time.Second, minSamples: 10, headroom: 2}

// callResult is what a finished call tells the limit.
type callResult int

const (
	// callAnswered: messageapp answered, a success or a refusal of the
	// request itself (4xx); its time is a latency sample.
	callAnswered callResult = iota
	// callTimedOut: no answer within the deadline; a latency sample of the
	// whole deadline, and a failure.
	callTimedOut
	// callFailed: messageapp answered that it is failing, or could not be
	// reached; a failure, and its (often short) time says nothing of load.
	callFailed
	// callCut: shutdown cut the call; it tells nothing.
	callCut
)

// callResultOf is what err, from messageappClient.Send, tells the limit.
func callResultOf(err error) callResult {
	var ae *AttemptError
	switch {
	case err == nil:
		return callAnswered
	case !errors.As(err, &ae):
		return callCut
	case ae.Kind == OutcomeTimeout:
		return callTimedOut
	case isBreakerFailure(err):
		return callFailed
	}
	return callAnswered // a refusal of the request itself: messageapp answered
}

// Limiter is the limit on calls in flight to messageapp.
type Limiter struct {
	law     adaptivelimiter.AdaptiveLimiter[any] // nil: a fixed limit of ceiling
	ceiling int
	log     zerolog.Logger
	obs     Observer

	slots chan struct{} // a token for each slot free now
	calls atomic.Int64  // calls in flight
	// The latency the law steers by, in nanoseconds, as of its last
	// update: its smoothed recent p90, and the baseline it compares it to.
	recent, baseline atomic.Int64
	capped           atomic.Bool // failCap > 0; written under mu, read without it by every success

	// mu guards everything below, and every send to slots.
	mu       sync.Mutex
	lawLimit int           // the law's limit
	failCap  int           // 0, or the most calls that failures allow until calls succeed again
	limit    int           // min(lawLimit, failCap)
	tokens   int           // slots that exist: free, being taken, or held
	lowered  chan struct{} // closed and replaced when the limit falls
	logged   int           // the limit the last transition line gave
}

// NewLimiter makes a limit of ceiling calls, fixed or adaptive.
func NewLimiter(ceiling int, adaptive bool, t limiterTuning, log zerolog.Logger, obs Observer) *Limiter {
	l := &Limiter{ceiling: ceiling, log: log.With().Str("component", "limiter").Logger(), obs: obs,
		slots: make(chan struct{}, ceiling), lowered: make(chan struct{})}
	start := ceiling
	if adaptive {
		start = max(1, min(ceiling, t.initial))
		l.law = adaptivelimiter.NewBuilder[any]().
			WithLimits(1, uint(ceiling), uint(start)).
			WithRecentWindow(t.window, t.maxWindow, t.minSamples).
			WithMaxLimitFactor(t.headroom).
			OnLimitChanged(func(e adaptivelimiter.LimitChangedEvent) { l.lawChanged(int(e.NewLimit)) }).
			// The library reports the latency it steers by only in its
			// debug log: steeringHandler reads it from there.
			WithLogger(slog.New(steeringHandler{l})).
			Build()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lawLimit, l.logged = start, start
	l.apply("start")
	return l
}

// Adaptive reports whether the limit moves; a fixed one stays at Ceiling.
func (l *Limiter) Adaptive() bool { return l.law != nil }

// Ceiling is the most calls ever in flight: SENDERS.
func (l *Limiter) Ceiling() int { return l.ceiling }

// Limit is how many calls may be in flight now, 1..Ceiling.
func (l *Limiter) Limit() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.limit
}

// InFlight is the number of calls to messageapp in flight now.
func (l *Limiter) InFlight() int { return int(l.calls.Load()) }

// Steering is the latency the limit steers by: the law's smoothed recent
// p90 and its baseline, zero until it has seen enough calls.
func (l *Limiter) Steering() (recent, baseline time.Duration) {
	return time.Duration(l.recent.Load()), time.Duration(l.baseline.Load())
}

// slot is a sender's hold on the limit, for one message, and the call it
// is making, if any.
type slot struct {
	held    bool                   // until released
	calling bool                   // between begin and end
	permit  adaptivelimiter.Permit // the law's sample of this call; nil without one
}

// acquire waits for a free slot. It returns the slot and a channel that is
// closed if the limit falls meanwhile; a sender waiting at the queue with
// it then gives it back and waits again. Holding nothing, it fails with
// errInterrupted when interrupt fires, errQueueDrained once drained is
// closed, or the context's error.
func (l *Limiter) acquire(ctx context.Context, interrupt, drained <-chan struct{}) (slot, <-chan struct{}, error) {
	// Read before taking a slot, so a fall after this closes it.
	l.mu.Lock()
	lowered := l.lowered
	l.mu.Unlock()
	select {
	case <-l.slots:
		return slot{held: true}, lowered, nil
	case <-interrupt:
		return slot{}, nil, errInterrupted
	case <-drained:
		return slot{}, nil, errQueueDrained
	case <-ctx.Done():
		return slot{}, nil, ctx.Err()
	}
}

// release gives s's slot back: free again, or gone if the limit has fallen
// below the slots that exist.
func (l *Limiter) release(s *slot) {
	if !s.held {
		return
	}
	s.held = false
	l.mu.Lock()
	defer l.mu.Unlock()
	l.giveBack()
}

// giveBack returns one held slot. Callers hold mu.
func (l *Limiter) giveBack() {
	if l.tokens > l.limit {
		l.tokens--
		return
	}
	l.slots <- struct{}{} // cannot block: the channel holds ceiling, and tokens <= ceiling
}

// begin marks the start of a call through s.
func (l *Limiter) begin(s *slot) {
	l.calls.Add(1)
	s.calling = true
	if l.law != nil {
		// Slots never outnumber the law's limit when they are handed out,
		// but one taken just before the law lowered it finds no permit:
		// that call goes unsampled.
		if p, ok := l.law.TryAcquirePermit(); ok {
			s.permit = p
		}
	}
}

// end records how the call through s ended.
func (l *Limiter) end(s *slot, r callResult) {
	if !s.calling {
		return
	}
	s.calling = false
	l.calls.Add(-1)
	if s.permit != nil {
		// Outside mu: the law may call lawChanged from here.
		if r == callAnswered || r == callTimedOut {
			s.permit.Record()
		} else {
			s.permit.Drop()
		}
		s.permit = nil
	}
	if l.law == nil || r == callCut || (r == callAnswered && !l.capped.Load()) {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch r {
	case callAnswered:
		// Each success doubles what failures allowed, until it is no cap.
		if l.failCap > 0 {
			if l.failCap *= 2; l.failCap >= l.lawLimit {
				l.failCap = 0
			}
			l.apply("calls succeed")
		}
	default:
		// A failure halves the calls in flight (this one included) that
		// may continue, and each further one halves it again.
		inFlight := int(l.calls.Load()) + 1
		if l.failCap == 0 {
			l.failCap = min(l.limit, inFlight)
		}
		l.failCap = max(1, l.failCap/2)
		l.apply("calls fail")
	}
}

// lawChanged takes the law's new limit.
func (l *Limiter) lawChanged(limit int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lawLimit = max(1, min(l.ceiling, limit))
	if l.failCap >= l.lawLimit {
		l.failCap = 0
	}
	l.apply("latency")
}

// apply sets the limit from the law and the failures, makes the free
// slots match it, and writes a transition line when it has halved or
// doubled since the last one. Callers hold mu.
func (l *Limiter) apply(cause string) {
	limit := l.lawLimit
	l.capped.Store(l.failCap > 0)
	if l.failCap > 0 {
		limit = min(limit, l.failCap)
	}
	if limit < l.limit {
		close(l.lowered)
		l.lowered = make(chan struct{})
	}
	l.limit = limit
	for l.tokens < limit {
		l.tokens++
		l.slots <- struct{}{}
	}
drain:
	for l.tokens > limit {
		select {
		case <-l.slots:
			l.tokens--
		default:
			break drain // the rest are held: they go as they are given back
		}
	}
	if limit*2 > l.logged && limit < l.logged*2 {
		return
	}
	from := l.logged
	l.logged = limit
	recent, baseline := l.Steering()
	ev := l.log.Info().Str("event", limitEvent(limit > from))
	msg := "concurrency limit raised: more calls to messageapp at once"
	if limit < from {
		ev = l.log.Warn().Str("event", limitEvent(false))
		msg = "concurrency limit lowered: fewer calls to messageapp at once"
	}
	ev.Int("limit", limit).Int("from", from).Int("ceiling", l.ceiling).Str("cause", cause).
		Int64("calls_in_flight", l.calls.Load()).
		Float64("latency_ms", ms(recent)).Float64("baseline_ms", ms(baseline)).Msg(msg)
	l.obs.LimitChanged(limit, from, cause)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// steeringHandler is the law's slog handler: it keeps the latency of each
// limit update ("recentRTT", "baselineRTT") and discards the rest.
type steeringHandler struct{ l *Limiter }

func (steeringHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h steeringHandler) Handle(_ context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if a.Value.Kind() != slog.KindDuration {
			return true
		}
		switch a.Key {
		case "recentRTT":
			h.l.recent.Store(int64(a.Value.Duration()))
		case "baselineRTT":
			h.l.baseline.Store(int64(a.Value.Duration()))
		}
		return true
	})
	return nil
}

func (h steeringHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h steeringHandler) WithGroup(string) slog.Handler      { return h }
