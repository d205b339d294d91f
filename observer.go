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
	Rejected(code string)
}

// observers fans out to each of its members.
type observers []Observer

func (os observers) QueueChanged(accepting bool, depth int) {
	for _, o := range os {
		o.QueueChanged(accepting, depth)
	}
}

func (os observers) CircuitChanged(to CircuitState, openFor time.Duration) {
	for _, o := range os {
		o.CircuitChanged(to, openFor)
	}
}

func (os observers) Attempted(outcome Outcome, took time.Duration) {
	for _, o := range os {
		o.Attempted(outcome, took)
	}
}

func (os observers) Rejected(code string) {
	for _, o := range os {
		o.Rejected(code)
	}
}
