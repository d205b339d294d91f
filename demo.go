package main

// demo.go is `courier demo`: simulator, service and load client in one
// process, messageapp scripted healthy → hanging → down → healthy, with a
// timeline of what happens and a checklist of the phases at the end.

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// demoConfig is the service the demo runs: small limits, so every phase
// happens within seconds. The phase waits below are derived from these.
func demoConfig() config {
	return config{
		MessageappTimeout: 300 * time.Millisecond,
		QueueMaxSize:      10, QueueRecovery: 5, Senders: 4, MaxAttempts: 2,
		BreakerThreshold: 5, BackoffInitial: 500 * time.Millisecond, BackoffMax: 2 * time.Second,
		MessagesRetained: 10_000, ShutdownTimeout: 5 * time.Second, LogLevel: "info", LogFormat: "json",
	}
}

// demoRate is the load the demo's client sends, per second.
const demoRate = 40

// demoMinPhase is the least time each phase stays on screen.
const demoMinPhase = 3 * time.Second

// demoStatusLines prints, every second, what courier and its client see.
func demoStatusLines(ctx context.Context, w *demoWatcher, statusClient *http.Client, courierURL string, load *loadClient) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	prev := load.soFar()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		st, err := getStatus(statusClient, courierURL, 2*time.Second)
		if err != nil {
			continue
		}
		now := load.soFar()
		accepting := "accepting"
		if !st.Queue.Accepting {
			accepting = "NOT accepting"
		}
		w.printf("   queue %2d/%d %-13s circuit %-9s | client this second: %2d × 202, %2d × 503",
			st.Queue.Depth, st.Queue.MaxSize, accepting, st.Circuit.State,
			now.Accepted-prev.Accepted, now.rejectedTotal()-prev.rejectedTotal())
		prev = now
	}
}

// demoWatcher reads courier's JSON log lines, prints the transitions as a
// timeline and counts attempt outcomes.
type demoWatcher struct {
	out   io.Writer
	start time.Time

	// mu guards everything below and serialises writes to out.
	mu       sync.Mutex
	events   map[string]int
	outcomes map[Outcome]int
	examples map[Outcome][]byte // the first log line of each outcome, as written
	changed  chan struct{}      // closed and replaced on every line counted
}

func newDemoWatcher(out io.Writer) *demoWatcher {
	return &demoWatcher{out: out, start: time.Now(), events: map[string]int{},
		outcomes: map[Outcome]int{}, examples: map[Outcome][]byte{}, changed: make(chan struct{})}
}

var timelineEvents = map[string]string{
	"circuit_open":        "circuit OPEN: courier stops calling messageapp",
	"circuit_half_open":   "circuit half-open: one probe goes to messageapp",
	"circuit_closed":      "circuit CLOSED: messageapp answers again",
	"enqueueing_disabled": "queue FULL: enqueueing disabled, clients get 503 queue_full",
	"enqueueing_enabled":  "queue drained to the recovery threshold: enqueueing enabled",
	"profile_changed":     "messageapp is now",
}

// Write takes one zerolog line (zerolog writes each event in one call).
func (w *demoWatcher) Write(p []byte) (int, error) {
	var line struct {
		Event     string  `json:"event"`
		Outcome   Outcome `json:"outcome"`
		To        string  `json:"to"`
		Depth     *int    `json:"depth"`
		OpenForMS *int64  `json:"open_for_ms"`
	}
	if json.Unmarshal(p, &line) != nil {
		return len(p), nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if line.Outcome != "" {
		w.outcomes[line.Outcome]++
		if w.examples[line.Outcome] == nil {
			w.examples[line.Outcome] = bytes.Clone(p)
		}
	}
	if msg, ok := timelineEvents[line.Event]; ok {
		w.events[line.Event]++
		switch {
		case line.Event == "profile_changed":
			msg += " " + line.To
		case line.Depth != nil:
			msg += fmt.Sprintf(" (depth %d)", *line.Depth)
		case line.OpenForMS != nil:
			msg += fmt.Sprintf(" for %s", time.Duration(*line.OpenForMS)*time.Millisecond)
		}
		fmt.Fprintf(w.out, "%6.1fs  %-20s %s\n", time.Since(w.start).Seconds(), line.Event, msg)
	}
	close(w.changed)
	w.changed = make(chan struct{})
	return len(p), nil
}

// printf writes a line to the timeline.
func (w *demoWatcher) printf(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fmt.Fprintf(w.out, "%6.1fs  "+format+"\n", append([]any{time.Since(w.start).Seconds()}, args...)...)
}

func (w *demoWatcher) count(event string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.events[event]
}

// example is the first line logged with outcome o, as LOG_FORMAT=console
// prints it, or "" if there was none.
func (w *demoWatcher) example(o Outcome) string {
	w.mu.Lock()
	raw := w.examples[o]
	w.mu.Unlock()
	if raw == nil {
		return ""
	}
	var b strings.Builder
	cw := zerolog.ConsoleWriter{Out: &b, NoColor: true, TimeFormat: "15:04:05.000"}
	if _, err := cw.Write(raw); err != nil {
		return strings.TrimSpace(string(raw))
	}
	return strings.TrimSpace(b.String())
}

func (w *demoWatcher) outcome(o Outcome) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.outcomes[o]
}

// waitUntil waits for cond, re-checking on every log line and every 100ms
// (for conditions on the load client's tallies), up to within.
func (w *demoWatcher) waitUntil(ctx context.Context, within time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		w.mu.Lock()
		changed := w.changed
		w.mu.Unlock()
		if cond() {
			return true
		}
		select {
		case <-changed:
		case <-tick.C:
		case <-deadline.C:
			return cond()
		case <-ctx.Done():
			return false
		}
	}
}

// runDemo is `courier demo`.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("courier demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	seed := fs.Uint64("seed", uint64(time.Now().UnixNano()), "random seed of the simulator")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	ok, err := demo(ctx, *seed, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "courier demo: %v\n", err)
		return exitFailed
	}
	if !ok {
		return exitFailed
	}
	return exitOK
}

// demo runs the story and reports whether every phase was observed.
func demo(ctx context.Context, seed uint64, out io.Writer) (bool, error) {
	w := newDemoWatcher(out)
	log := zerolog.New(w).Level(zerolog.InfoLevel).With().Timestamp().Logger()
	cfg := demoConfig()

	sim := NewSimulator(ProfileHealthy, 0, 0, seed, log, zerolog.DebugLevel)
	base, stopSim, err := startSimulator("127.0.0.1:0", sim)
	if err != nil {
		return false, err
	}
	defer stopSim()
	cfg.MessageappURL = base + "/message"

	fmt.Fprintf(out, "courier demo: messageapp simulator, courier (queue max %d, recovery %d, timeout %s, breaker after %d failures) and a client sending %d msg/s\n\n",
		cfg.QueueMaxSize, cfg.QueueRecovery, cfg.MessageappTimeout, cfg.BreakerThreshold, demoRate)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return false, err
	}
	courierURL := "http://" + ln.Addr().String()
	svcCtx, stopSvc := context.WithCancel(ctx)
	defer stopSvc()
	svcErr := make(chan error, 1)
	go func() { svcErr <- serve(svcCtx, cfg, ln, log) }()
	w.printf("watch it live: open %s/ in a browser", courierURL)

	load, err := newLoadClient(loadOptions{URL: courierURL, Rate: demoRate, Duration: time.Minute, MaxRequests: 100_000})
	if err != nil {
		stopSvc()
		<-svcErr
		return false, err
	}
	loadCtx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan loadStats, 1)
	go func() { loadDone <- load.run(loadCtx) }()

	// Each phase lasts until what it is meant to show has happened, bounded
	// by a generous multiple of the configured times (the open periods
	// grow to BackoffMax; each timeout takes MessageappTimeout).
	phaseLimit := 4*cfg.BackoffMax + 10*cfg.MessageappTimeout + 5*time.Second
	rejected := func() int { return load.soFar().Rejected["queue_full"] }
	phases := []struct {
		profile Profile
		title   string
		done    func() bool
	}{
		{ProfileHealthy, "messageapp is healthy: messages flow", func() bool { return w.outcome(OutcomeSent) >= 2*demoRate }},
		{ProfileHang, "messageapp hangs: calls time out, the circuit opens, the queue fills and clients are told to back off", func() bool {
			return w.outcome(OutcomeTimeout) > 0 && w.count("circuit_open") > 0 && w.count("enqueueing_disabled") > 0 && rejected() > 0
		}},
		{ProfileDown, "messageapp answers 500 at once: each probe fails fast and the open circuit keeps the rest back", func() bool {
			return w.outcome(OutcomeMessageappError) > 0 && w.outcome(OutcomeBreakerOpen) > 0
		}},
		{ProfileHealthy, "messageapp recovers: a probe succeeds, the queue drains, enqueueing resumes", func() bool {
			return w.count("circuit_closed") > 0 && w.count("enqueueing_enabled") > 0
		}},
	}
	tickerCtx, stopTicker := context.WithCancel(ctx)
	var ticker sync.WaitGroup
	// Its own client, without keep-alives: nothing is left open when the
	// demo returns.
	statusClient := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	ticker.Go(func() { demoStatusLines(tickerCtx, w, statusClient, courierURL, load) })
	for _, ph := range phases {
		w.printf("── %s", ph.title)
		sim.SetProfile(ph.profile)
		shown := time.Now().Add(demoMinPhase)
		if !w.waitUntil(ctx, phaseLimit, ph.done) {
			w.printf("this phase did not complete within %s", phaseLimit)
			break
		}
		// Give every phase a few seconds on screen.
		if wait := time.Until(shown); wait > 0 {
			w.waitUntil(ctx, wait, func() bool { return false })
		}
	}
	stopLoad()
	sent := <-loadDone
	stopTicker()
	ticker.Wait()
	w.printf("── the client stops; courier drains and shuts down")
	final, err := getStatus(statusClient, courierURL, 2*time.Second)
	if err != nil {
		w.printf("could not read /status: %v", err)
	}
	stopSvc()
	if err := <-svcErr; err != nil {
		return false, err
	}

	m := final.Messages // one snapshot, so the lines below agree
	checks := []struct {
		ok   bool
		text string
	}{
		{m.Sent > 0, fmt.Sprintf("messages delivered (sent: %d)", m.Sent)},
		{m.Timeout > 0, fmt.Sprintf("calls abandoned at the %s deadline (timeout: %d)", cfg.MessageappTimeout, m.Timeout)},
		{w.outcome(OutcomeMessageappError) > 0, fmt.Sprintf("messageapp answered errors (messageapp_error: %d)", w.outcome(OutcomeMessageappError))},
		{w.count("circuit_open") > 0, "circuit opened " + times(w.count("circuit_open"))},
		{w.outcome(OutcomeBreakerOpen) > 0, fmt.Sprintf("messages refused by the open circuit, nothing sent (breaker_open: %d)", w.outcome(OutcomeBreakerOpen))},
		{w.count("enqueueing_disabled") > 0 && sent.Rejected["queue_full"] > 0,
			fmt.Sprintf("queue filled: enqueueing disabled %s, clients got %d × 503 queue_full", times(w.count("enqueueing_disabled")), sent.Rejected["queue_full"])},
		{w.count("circuit_closed") > 0, "circuit closed again after a successful probe"},
		{w.count("enqueueing_enabled") > 0, "enqueueing resumed " + times(w.count("enqueueing_enabled"))},
		{m.Balanced() && m.Accepted > 0,
			fmt.Sprintf("nothing lost: accepted %d = queued %d + sending %d + sent %d + failed %d + timeout %d",
				m.Accepted, m.Queued, m.Sending, m.Sent, m.Failed, m.Timeout)},
	}
	fmt.Fprintln(out, "\nphases observed:")
	all := true
	for _, c := range checks {
		mark := "✓"
		if !c.ok {
			mark, all = "✗", false
		}
		fmt.Fprintf(out, "  %s %s\n", mark, c.text)
	}

	fmt.Fprintln(out, "\nwhat the log says (the first line of each failure kind, as LOG_FORMAT=console prints it):")
	for _, o := range []Outcome{OutcomeMessageappError, OutcomeTimeout, OutcomeBreakerOpen} {
		line := w.example(o)
		if line == "" {
			all = false
			line = fmt.Sprintf("✗ no %s line was logged", o)
		}
		fmt.Fprintf(out, "  %s\n", line)
	}
	if !all {
		fmt.Fprintln(out, "\nnot every phase was observed: courier demo failed")
	}
	return all, nil
}

// times says how often: "once", "twice", "3 times".
func times(n int) string {
	switch n {
	case 1:
		return "once"
	case 2:
		return "twice"
	}
	return fmt.Sprintf("%d times", n)
}
