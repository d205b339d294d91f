package main

// backoff.go says how long a message waits between two of its attempts
// (docs/behaviour.md): never at once, longer after each failure, never less than
// messageapp asked.

import (
	"math/rand/v2"
	"time"
)

// retryBackoff is the wait between attempts of one message: exponential
// from initial, doubling, capped at max, with jitter so that messages
// that failed together do not come back together; at least what
// messageapp's Retry-After asked, capped at max too.
type retryBackoff struct {
	initial, max time.Duration
	random       func() float64 // in [0, 1); rand.Float64 unless a test scripts it
}

// newRetryBackoff is the backoff of RETRY_BACKOFF_INITIAL and
// RETRY_BACKOFF_MAX.
func newRetryBackoff(initial, max time.Duration) retryBackoff {
	return retryBackoff{initial: initial, max: max, random: rand.Float64}
}

// delay is the wait after a message's attempt-th attempt (1 for the first)
// failed, when messageapp asked for retryAfter (zero if it did not). The
// n-th wait is drawn from [b/2, b), b = initial·2^(n-1) capped at max ("equal
// jitter"): spread out, and each longer than the one before until the cap.
func (b retryBackoff) delay(attempt int, retryAfter time.Duration) time.Duration {
	base := b.initial
	for i := 1; i < attempt && base < b.max; i++ {
		base *= 2
	}
	base = min(base, b.max)
	wait := base/2 + time.Duration(b.random()*float64(base/2))
	return min(max(wait, retryAfter), b.max)
}
