package main

// metrics.go exposes courier on GET /metrics in the Prometheus text format:
// the state of the queue, the circuit and the messages (read from a status
// snapshot at scrape time), counters and histograms fed as an Observer,
// and the standard Go and process collectors.

import (
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics owns courier's Prometheus registry.
type Metrics struct {
	registry           *prometheus.Registry
	queueTransitions   *prometheus.CounterVec
	circuitTransitions *prometheus.CounterVec
	limitTransitions   *prometheus.CounterVec
	attempts           *prometheus.CounterVec
	attemptDuration    prometheus.Histogram
	rejected           *prometheus.CounterVec
	httpDuration       *prometheus.HistogramVec

	// Series resolved once, so the hot paths skip the label lookup.
	attemptsBy map[Outcome]prometheus.Counter
	rejectedBy map[ProblemCode]prometheus.Counter
}

// NewMetrics registers every courier metric; state comes from snapshot,
// read once per scrape. timeout places the attempt-duration buckets so the
// deadline is visible.
func NewMetrics(timeout time.Duration, snapshot func() statusResponse) *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		queueTransitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "courier_queue_transitions_total",
			Help: "Times enqueueing was switched, by direction (disabled at the max size, enabled at the recovery threshold).",
		}, []string{"direction"}),
		circuitTransitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "courier_circuit_transitions_total",
			Help: "Circuit breaker transitions, by the state entered.",
		}, []string{"state"}),
		limitTransitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "courier_concurrency_limit_transitions_total",
			Help: "Times the concurrency limit halved (lowered) or doubled (raised) since the last such change, as the log's concurrency_* lines.",
		}, []string{"direction"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "courier_attempts_total",
			Help: "Attempts to deliver a message, by outcome (breaker_open: a message the open circuit kept from messageapp, once per message per open period; nothing sent).",
		}, []string{"outcome"}),
		attemptDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "courier_attempt_duration_seconds",
			Help:    "Duration of calls to messageapp; timeouts pile up in the bucket of MESSAGEAPP_TIMEOUT.",
			Buckets: attemptBuckets(timeout),
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "courier_messages_rejected_total",
			Help: "POST /messages answered 503, by problem code.",
		}, []string{"code"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "courier_http_request_duration_seconds",
			Help:    "Duration of HTTP requests served, by route and status code.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}, []string{"route", "code"}),
	}
	m.attemptsBy = map[Outcome]prometheus.Counter{}
	for _, o := range outcomeKinds {
		m.attemptsBy[o] = m.attempts.WithLabelValues(string(o))
	}
	m.rejectedBy = map[ProblemCode]prometheus.Counter{}
	for _, c := range []ProblemCode{CodeQueueFull, CodeShuttingDown} {
		m.rejectedBy[c] = m.rejected.WithLabelValues(string(c))
	}
	for _, d := range []string{"disabled", "enabled"} {
		m.queueTransitions.WithLabelValues(d)
	}
	for _, s := range []CircuitState{CircuitOpen, CircuitHalfOpen, CircuitClosed} {
		m.circuitTransitions.WithLabelValues(string(s))
	}
	for _, d := range []string{"lowered", "raised"} {
		m.limitTransitions.WithLabelValues(d)
	}
	m.registry.MustRegister(
		m.queueTransitions, m.circuitTransitions, m.limitTransitions, m.attempts, m.attemptDuration, m.rejected, m.httpDuration,
		stateCollector{snapshot},
		// The live heap as of the last collection (go_gc_heap_live_bytes)
		// is what each held message costs; README's sizing reads it.
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(
			collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/gc/heap/live:bytes$`)})),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// attemptBuckets are a few absolute fast buckets and a fine grid around
// the timeout.
func attemptBuckets(timeout time.Duration) []float64 {
	t := timeout.Seconds()
	b := []float64{.001, .005, .01, .025, .05, .1, .25}
	for _, f := range []float64{0.5, 0.75, 0.9, 0.95, 1, 1.05, 1.25, 1.5, 2} {
		b = append(b, f*t)
	}
	slices.Sort(b)
	return slices.Compact(b)
}

// Handler serves the registry.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

// instrument records the duration of each request to route. Each status
// code's series is looked up once and kept, so a request costs one small
// writer wrapper and one Observe.
func (m *Metrics) instrument(route string, h http.Handler) http.Handler {
	vec := m.httpDuration.MustCurryWith(prometheus.Labels{"route": route})
	var byCode [600]atomic.Pointer[prometheus.Observer]
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(rec, r)
		code := rec.status
		if code < 100 || code >= len(byCode) {
			vec.WithLabelValues(strconv.Itoa(code)).Observe(time.Since(start).Seconds())
			return
		}
		o := byCode[code].Load()
		if o == nil {
			obs := vec.WithLabelValues(strconv.Itoa(code))
			o = &obs
			byCode[code].Store(o)
		}
		(*o).Observe(time.Since(start).Seconds())
	})
}

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the real writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// QueueChanged counts an enqueueing transition.
func (m *Metrics) QueueChanged(accepting bool, _ int) {
	dir := "disabled"
	if accepting {
		dir = "enabled"
	}
	m.queueTransitions.WithLabelValues(dir).Inc()
}

// CircuitChanged counts a circuit transition.
func (m *Metrics) CircuitChanged(to CircuitState, _ time.Duration) {
	m.circuitTransitions.WithLabelValues(string(to)).Inc()
}

// LimitChanged counts a concurrency limit transition.
func (m *Metrics) LimitChanged(limit, from int, _ string) {
	dir := "lowered"
	if limit > from {
		dir = "raised"
	}
	m.limitTransitions.WithLabelValues(dir).Inc()
}

// Attempted counts an attempt and, if messageapp was called, its duration.
func (m *Metrics) Attempted(outcome Outcome, took time.Duration) {
	m.attemptsBy[outcome].Inc()
	if outcome != OutcomeBreakerOpen {
		m.attemptDuration.Observe(took.Seconds())
	}
}

// Rejected counts a 503.
func (m *Metrics) Rejected(code ProblemCode) { m.rejectedBy[code].Inc() }

// stateCollector turns one status snapshot per scrape into gauges and the
// message counters, so they agree with each other and with GET /status.
type stateCollector struct{ snapshot func() statusResponse }

var (
	descDepth       = prometheus.NewDesc("courier_queue_depth", "Messages the queue holds: waiting to be taken, or waiting for their next attempt.", nil, nil)
	descMaxSize     = prometheus.NewDesc("courier_queue_max_size", "Queue depth at which enqueueing is disabled (QUEUE_MAX_SIZE).", nil, nil)
	descRecovery    = prometheus.NewDesc("courier_queue_recovery_threshold", "Queue depth at or below which enqueueing is enabled again (QUEUE_RECOVERY_THRESHOLD).", nil, nil)
	descAccepting   = prometheus.NewDesc("courier_queue_accepting", "1 while POST /messages is accepted, 0 while it is answered 503.", nil, nil)
	descCircuit     = prometheus.NewDesc("courier_circuit_state", "1 for the circuit's current state, 0 for the others.", []string{"state"}, nil)
	descConsecutive = prometheus.NewDesc("courier_circuit_consecutive_failures", "Failures since the last success.", nil, nil)
	descLimit       = prometheus.NewDesc("courier_concurrency_limit", "Calls to messageapp allowed in flight now: the adaptive limit, 1..SENDERS (SENDERS when CONCURRENCY_LIMIT=fixed).", nil, nil)
	descCeiling     = prometheus.NewDesc("courier_concurrency_ceiling", "The most calls to messageapp ever in flight (SENDERS).", nil, nil)
	descInFlight    = prometheus.NewDesc("courier_calls_in_flight", "Calls to messageapp in flight now.", nil, nil)
	descSteering    = prometheus.NewDesc("courier_concurrency_latency_seconds", "The latency the adaptive limit steers by, by window: recent (smoothed p90 of the last sampling windows) and baseline (its long-run average); 0 until measured.", []string{"window"}, nil)
	descAccepted    = prometheus.NewDesc("courier_messages_accepted_total", "Messages accepted (202).", nil, nil)
	descFinished    = prometheus.NewDesc("courier_messages_finished_total", "Messages that reached a final status, by status.", []string{"status"}, nil)
	descPending     = prometheus.NewDesc("courier_messages_pending", "Accepted messages not yet final, by status.", []string{"status"}, nil)
)

// Describe sends every descriptor.
func (stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDepth, descMaxSize, descRecovery, descAccepting, descCircuit,
		descConsecutive, descLimit, descCeiling, descInFlight, descSteering, descAccepted, descFinished, descPending} {
		ch <- d
	}
}

// Collect reads one snapshot and reports it.
func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.snapshot()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(descDepth, float64(st.Queue.Depth))
	gauge(descMaxSize, float64(st.Queue.MaxSize))
	gauge(descRecovery, float64(st.Queue.RecoveryThreshold))
	gauge(descAccepting, boolFloat(st.Queue.Accepting))
	for _, s := range []CircuitState{CircuitClosed, CircuitOpen, CircuitHalfOpen} {
		gauge(descCircuit, boolFloat(st.Circuit.State == s), string(s))
	}
	gauge(descConsecutive, float64(st.Circuit.ConsecutiveFailures))
	gauge(descLimit, float64(st.Concurrency.Limit))
	gauge(descCeiling, float64(st.Concurrency.Ceiling))
	gauge(descInFlight, float64(st.Concurrency.InFlight))
	gauge(descSteering, st.Concurrency.LatencyMS/1000, "recent")
	gauge(descSteering, st.Concurrency.BaselineMS/1000, "baseline")
	counter(descAccepted, st.Messages.Accepted)
	for _, r := range statusRules {
		if n := st.Messages.Of(r.status); r.final {
			counter(descFinished, n, string(r.status))
		} else {
			gauge(descPending, float64(n), string(r.status))
		}
	}
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
