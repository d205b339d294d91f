package main

// snapshot.go is courier at one moment: the body of GET /status, built
// from the queue, the breaker, the limiter and the store. Metrics, the
// dashboard's stream and the queue_full problem read the same snapshot;
// the load client and the demo decode it.

// queueStatus is the queue part of /status and of a queue_full problem.
type queueStatus struct {
	Depth             int  `json:"depth"`
	MaxSize           int  `json:"max_size"`
	RecoveryThreshold int  `json:"recovery_threshold"`
	Accepting         bool `json:"accepting"`
}

// circuitStatus is the circuit part of /status and of a queue_full problem.
type circuitStatus struct {
	State               CircuitState `json:"state"`
	ConsecutiveFailures int64        `json:"consecutive_failures"`
}

// concurrencyStatus is the concurrency limit part of /status (docs/behaviour.md).
type concurrencyStatus struct {
	Mode       string  `json:"mode"`        // "adaptive" or "fixed" (CONCURRENCY_LIMIT)
	Limit      int     `json:"limit"`       // calls to messageapp allowed in flight now, 1..ceiling
	Ceiling    int     `json:"ceiling"`     // SENDERS
	InFlight   int     `json:"in_flight"`   // calls to messageapp in flight now
	LatencyMS  float64 `json:"latency_ms"`  // the recent latency the limit steers by (smoothed p90); 0 until measured
	BaselineMS float64 `json:"baseline_ms"` // the baseline it is compared with; 0 until measured
}

// statusResponse is the body of GET /status.
type statusResponse struct {
	Queue       queueStatus       `json:"queue"`
	Circuit     circuitStatus     `json:"circuit"`
	Concurrency concurrencyStatus `json:"concurrency"`
	Messages    Counts            `json:"messages"`
	Senders     int               `json:"senders"`
	Replica     string            `json:"replica,omitempty"` // REPLICA, when set
}

func (s *service) queueStatus() queueStatus {
	return queueStatus{Depth: s.queue.Depth(), MaxSize: s.queue.Max(),
		RecoveryThreshold: s.queue.Recovery(), Accepting: s.queue.Accepting() && !s.shuttingDown.Load()}
}

func (s *service) circuitStatus() circuitStatus {
	state, _ := s.breaker.State()
	return circuitStatus{State: state, ConsecutiveFailures: s.breaker.ConsecutiveFailures()}
}

func (s *service) concurrencyStatus() concurrencyStatus {
	mode := "fixed"
	if s.limiter.Adaptive() {
		mode = "adaptive"
	}
	recent, baseline := s.limiter.Steering()
	return concurrencyStatus{Mode: mode, Limit: s.limiter.Limit(), Ceiling: s.limiter.Ceiling(),
		InFlight: s.limiter.InFlight(), LatencyMS: ms(recent), BaselineMS: ms(baseline)}
}

// snapshot is the body of GET /status, also read by metrics and the dashboard.
func (s *service) snapshot() statusResponse {
	return statusResponse{Queue: s.queueStatus(), Circuit: s.circuitStatus(), Concurrency: s.concurrencyStatus(),
		Messages: s.store.Counts(), Senders: s.senders, Replica: s.replica}
}
