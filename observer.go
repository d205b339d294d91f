package main

// observer.go is how the rest of courier hears what happens inside the
// queue, the breaker, the senders and the API, without any of them knowing
// who listens: metrics and the dashboard's event stream.

import "time"

// Observer is told about transitions and attempts as they happen. Its
// methods may be called under the caller's locks: they must not block.
type Observer interface {
	QueueChanged(accepting bool, depth int)
	CircuitChanged(to CircuitState, openFor time.Duration)
	Attempted(outcome Outcome, took time.Duration)
	Rejected(code ProblemCode)
	// LimitChanged: the concurrency limit has halved or doubled since the
	// last time it was reported (from), because of cause.
	LimitChanged(limit, from int, cause string)
}

// queueEvent names an enqueueing transition, as the log's `event` field,
// the dashboard and the demo call it.
func queueEvent(accepting bool) string {
	if accepting {
		return "enqueueing_enabled"
	}
	return "enqueueing_disabled"
}

// circuitEvent names a circuit transition: circuit_open, circuit_half_open
// or circuit_closed.
func circuitEvent(to CircuitState) string { return "circuit_" + string(to) }

// limitEvent names a concurrency limit transition: concurrency_raised or
// concurrency_lowered.
func limitEvent(raised bool) string {
	if raised {
		return "concurrency_raised"
	}
	return "concurrency_lowered"
}

// observers fans out to each of its members.
type observers []Observer

func (all observers) QueueChanged(accepting bool, depth int) {
	for _, o := range all {
		o.QueueChanged(accepting, depth)
	}
}

func (all observers) CircuitChanged(to CircuitState, openFor time.Duration) {
	for _, o := range all {
		o.CircuitChanged(to, openFor)
	}
}

func (all observers) Attempted(outcome Outcome, took time.Duration) {
	for _, o := range all {
		o.Attempted(outcome, took)
	}
}

func (all observers) Rejected(code ProblemCode) {
	for _, o := range all {
		o.Rejected(code)
	}
}

func (all observers) LimitChanged(limit, from int, cause string) {
	for _, o := range all {
		o.LimitChanged(limit, from, cause)
	}
}
