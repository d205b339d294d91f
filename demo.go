package main

// demo.go is `courier demo`: simulator, service and load client in one
// process, messageapp scripted healthy → hanging → down → healthy, with a
// timeline of what happens and a checklist of the phases at the end.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
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

// demoSettings are the variables the demo's courier sets: small limits,
// so every phase happens within seconds. Every other variable is at its
// default, as `courier serve` would have it.
var demoSettings = map[string]string{
	"MESSAGEAPP_TIMEOUT":  "300ms",
	"SENDERS":             "4",
	"MAX_ATTEMPTS":        "2",
	"BREAKER_BACKOFF_MAX": "2s",
	"SHUTDOWN_TIMEOUT":    "5s",
}

// demoConfig is the service the demo runs: demoSettings over courier's
// defaults, parsed and validated as `courier serve` does. The phase limits
// below are derived from it.
func demoConfig() config {
	return presetConfig(demoSettings)
}

// demoRate is the load the demo's client sends, per second.
const demoRate = 40

// demoMinPhase is the least time each phase stays on screen.
const demoMinPhase = 3 * time.Second

// runDemo is `courier demo`.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("courier demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	seed := fs.Uint64("seed", uint64(time.Now().UnixNano()), "random seed of the simulator")
	without := fs.String("without", "", "breaker, timeout or backpressure: run one overload episode twice, with courier's patterns on and with that one off, side by side")
	limit := fs.String("concurrency", "fixed", "with -without: CONCURRENCY_LIMIT of both runs, fixed or adaptive (the adaptive limit backs off on its own)")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return exitOK // -h: the flags were printed
	} else if err != nil {
		return exitUsage
	}
	run := func() (bool, error) { return demo(ctx, *seed, stdout) }
	if *without != "" {
		p, err := findPattern(*without)
		if err != nil {
			fmt.Fprintf(stderr, "courier demo: %v\n", err)
			return exitUsage
		}
		if *limit != "fixed" && *limit != "adaptive" {
			fmt.Fprintf(stderr, "courier demo: -concurrency %q: want fixed or adaptive\n", *limit)
			return exitUsage
		}
		run = func() (bool, error) { return runComparison(ctx, p, *limit, demoScenario, *seed, stdout) }
	}
	ok, err := run()
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
	cfg := demoConfig()
	// The demo's client is the one client of a courier with tokens on,
	// as a team would run it.
	token := rand.Text()
	cfg.clients = NewClients([]string{token})
	fmt.Fprintf(out, "courier demo: messageapp simulator, courier (queue max %d, recovery %d, timeout %s, breaker after %d failures) and a client sending %d msg/s\n\n",
		cfg.QueueMaxSize, cfg.QueueRecovery, cfg.MessageappTimeout, cfg.BreakerThreshold, demoRate)
	w := newDemoWatcher(out)
	st, err := startDemoStack(ctx, cfg, seed, w)
	if err != nil {
		return false, err
	}
	w.printf("watch it live: open %s/ in a browser", st.url)

	// The client reports each second as `courier load` does, on the timeline.
	load, err := newLoadClient(loadOptions{URL: st.url, Token: token, Rate: demoRate, Duration: time.Minute, MaxRequests: 100_000, Out: w.table()})
	if err != nil {
		st.stop()
		return false, err
	}
	loadCtx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan loadStats, 1)
	go func() { loadDone <- load.run(loadCtx) }()

	runDemoPhases(ctx, cfg, st.sim, w, load)
	stopLoad()
	sent := <-loadDone
	w.printf("── the client stops; courier drains its queue, then shuts down")
	// The balance is read once the drain is over, from one snapshot.
	statusClient := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	var final statusResponse
	drained := w.waitUntil(ctx, cfg.ShutdownTimeout, func() bool {
		now, err := getStatus(statusClient, st.url, time.Second)
		if err == nil {
			final = now
		}
		return err == nil && now.Messages.Queued+now.Messages.Sending == 0
	})
	if !drained {
		w.printf("courier had not drained within %s", cfg.ShutdownTimeout)
	}
	if err := st.stop(); err != nil {
		return false, err
	}
	return demoChecklist(out, cfg, w, final.Messages, sent), nil
}

// demoStack is the simulator and the courier the demo runs.
type demoStack struct {
	sim  *Simulator
	url  string       // courier's base URL
	stop func() error // shuts courier down, then the simulator
}

// startDemoStack starts the simulator, healthy, and a courier on a loopback
// port that reports to w, both as observer and through its log.
func startDemoStack(ctx context.Context, cfg config, seed uint64, w *demoWatcher) (*demoStack, error) {
	log := zerolog.New(w.logLines()).Level(zerolog.InfoLevel).With().Timestamp().Logger()
	simCfg := defaultSimConfig(seed)
	simCfg.Profile = ProfileHealthy
	sim := NewSimulator(simCfg, zerolog.Nop(), zerolog.DebugLevel)
	base, stopSim, err := startSimulator("127.0.0.1:0", sim)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		stopSim()
		return nil, err
	}
	cfg.MessageappURL, cfg.observer = base+"/message", w
	cfg.simulator = sim
	svcCtx, stopSvc := context.WithCancel(ctx)
	svcErr := make(chan error, 1)
	go func() { svcErr <- serve(svcCtx, cfg, ln, log) }()
	return &demoStack{sim: sim, url: "http://" + ln.Addr().String(), stop: func() error {
		stopSvc()
		err := <-svcErr
		stopSim()
		return err
	}}, nil
}

// runDemoPhases switches messageapp through the story. Each phase lasts
// until what it is meant to show has happened, bounded by a generous
// multiple of the configured times (the open periods grow to BackoffMax;
// each timeout takes MessageappTimeout), and at least demoMinPhase.
func runDemoPhases(ctx context.Context, cfg config, sim *Simulator, w *demoWatcher, load *loadClient) {
	limit := 4*cfg.BackoffMax + 10*cfg.MessageappTimeout + 5*time.Second
	rejected := func() int { return load.soFar().Rejected[CodeQueueFull] }
	phases := []struct {
		profile Profile
		title   string
		done    func() bool
	}{
		{ProfileHealthy, "messageapp is healthy: messages flow", func() bool { return w.outcome(OutcomeSent) >= 2*demoRate }},
		{ProfileHang, "messageapp hangs: calls time out, the concurrency limit halves, the circuit opens, the queue fills and clients are told to back off", func() bool {
			return w.outcome(OutcomeTimeout) > 0 && w.count(circuitEvent(CircuitOpen)) > 0 && w.count(queueEvent(false)) > 0 && rejected() > 0
		}},
		{ProfileDown, "messageapp answers 500 at once: each probe fails fast and the open circuit keeps the rest back", func() bool {
			return w.outcome(OutcomeMessageappError) > 0 && w.outcome(OutcomeBreakerOpen) > 0
		}},
		{ProfileHealthy, "messageapp recovers: a probe succeeds, the limit doubles back, the queue drains, enqueueing resumes", func() bool {
			return w.count(circuitEvent(CircuitClosed)) > 0 && w.count(queueEvent(true)) > 0
		}},
	}
	for _, ph := range phases {
		w.printf("── %s", ph.title)
		sim.SetProfile(ph.profile)
		shown := time.Now().Add(demoMinPhase)
		if !w.waitUntil(ctx, limit, ph.done) {
			w.printf("this phase did not complete within %s", limit)
			return
		}
		if wait := time.Until(shown); wait > 0 {
			w.waitUntil(ctx, wait, func() bool { return false })
		}
	}
}

// demoChecklist prints what was observed, and one real log line of each
// failure kind, and reports whether all of it was there. Message counts
// come from one /status snapshot, so they agree with each other.
func demoChecklist(out io.Writer, cfg config, w *demoWatcher, m Counts, sent loadStats) bool {
	checks := []struct {
		ok   bool
		text string
	}{
		{m.Sent > 0, fmt.Sprintf("messages delivered (sent: %d)", m.Sent)},
		{m.Timeout > 0, fmt.Sprintf("calls abandoned at the %s deadline, never sent again: delivery unknown (%s)",
			cfg.MessageappTimeout, m.unknownTerms())},
		{w.outcome(OutcomeMessageappError) > 0, fmt.Sprintf("messageapp answered errors, retried after a backoff (messageapp_error: %d)", w.outcome(OutcomeMessageappError))},
		{w.count(circuitEvent(CircuitOpen)) > 0, "circuit opened " + times(w.count(circuitEvent(CircuitOpen)))},
		{w.outcome(OutcomeBreakerOpen) > 0, fmt.Sprintf("messages refused by the open circuit, nothing sent (breaker_open: %d)", w.outcome(OutcomeBreakerOpen))},
		{w.count(queueEvent(false)) > 0 && sent.Rejected[CodeQueueFull] > 0,
			fmt.Sprintf("queue filled: enqueueing disabled %s, clients got %d × 503 queue_full", times(w.count(queueEvent(false))), sent.Rejected[CodeQueueFull])},
		{w.count(limitEvent(false)) > 0 && w.count(limitEvent(true)) > 0,
			fmt.Sprintf("concurrency limit lowered %s as calls failed, raised %s as they succeeded again (at most %d calls at once)",
				times(w.count(limitEvent(false))), times(w.count(limitEvent(true))), cfg.Senders)},
		{w.count(circuitEvent(CircuitClosed)) > 0, "circuit closed again after a successful probe"},
		{w.count(queueEvent(true)) > 0, "enqueueing resumed " + times(w.count(queueEvent(true)))},
		{m.Balanced() && m.Accepted > 0, "nothing lost: " + m.Balance()},
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
	return all
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

// demoWatcher hears courier as an Observer, prints the transitions as a
// timeline and counts them and the attempt outcomes; it also keeps the
// first log line of each outcome, to show what the log says.
type demoWatcher struct {
	observers // the Observer methods it does not need
	out       io.Writer
	start     time.Time

	// mu guards everything below and serialises writes to out.
	mu       sync.Mutex
	events   map[string]int
	outcomes map[Outcome]int
	examples map[Outcome][]byte // the first log line of each outcome, as written
	changed  chan struct{}      // closed and replaced on every event counted
}

func newDemoWatcher(out io.Writer) *demoWatcher {
	return &demoWatcher{out: out, start: time.Now(), events: map[string]int{},
		outcomes: map[Outcome]int{}, examples: map[Outcome][]byte{}, changed: make(chan struct{})}
}

// QueueChanged prints and counts an enqueueing transition.
func (w *demoWatcher) QueueChanged(accepting bool, depth int) {
	if accepting {
		w.event(queueEvent(true), fmt.Sprintf("queue drained to the recovery threshold: enqueueing enabled (depth %d)", depth))
		return
	}
	w.event(queueEvent(false), fmt.Sprintf("queue FULL: enqueueing disabled, clients get 503 queue_full (depth %d)", depth))
}

// CircuitChanged prints and counts a circuit transition.
func (w *demoWatcher) CircuitChanged(to CircuitState, openFor time.Duration) {
	text := map[CircuitState]string{
		CircuitOpen:     fmt.Sprintf("circuit OPEN: courier stops calling messageapp for %s", openFor),
		CircuitHalfOpen: "circuit half-open: one probe goes to messageapp",
		CircuitClosed:   "circuit CLOSED: messageapp answers again",
	}[to]
	w.event(circuitEvent(to), text)
}

// LimitChanged prints and counts a concurrency limit transition.
func (w *demoWatcher) LimitChanged(limit, from int, cause string) {
	if limit < from {
		w.event(limitEvent(false), fmt.Sprintf("concurrency limit %d → %d (%s): fewer calls to messageapp at once", from, limit, cause))
		return
	}
	w.event(limitEvent(true), fmt.Sprintf("concurrency limit %d → %d (%s): more calls to messageapp at once", from, limit, cause))
}

// Attempted counts an outcome.
func (w *demoWatcher) Attempted(o Outcome, _ time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.outcomes[o]++
	w.notify()
}

func (w *demoWatcher) event(name, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.events[name]++
	fmt.Fprintf(w.out, "%6.1fs  %-20s %s\n", time.Since(w.start).Seconds(), name, text)
	w.notify()
}

// notify wakes waitUntil. Callers hold mu.
func (w *demoWatcher) notify() {
	close(w.changed)
	w.changed = make(chan struct{})
}

// printf writes a line to the timeline.
func (w *demoWatcher) printf(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fmt.Fprintf(w.out, "%6.1fs  "+format+"\n", append([]any{time.Since(w.start).Seconds()}, args...)...)
}

// table returns a writer for the load client's per-second rows: each
// line goes on the timeline, indented under the transitions.
func (w *demoWatcher) table() io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		for line := range strings.Lines(string(p)) {
			w.printf("   %s", strings.TrimSuffix(line, "\n"))
		}
		return len(p), nil
	})
}

// logLines returns the writer courier's log goes to: it keeps the first
// line of each outcome and shows nothing else.
func (w *demoWatcher) logLines() io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		var line struct {
			Outcome Outcome `json:"outcome"`
		}
		if json.Unmarshal(p, &line) == nil && line.Outcome != "" {
			w.mu.Lock()
			if w.examples[line.Outcome] == nil {
				w.examples[line.Outcome] = bytes.Clone(p)
			}
			w.mu.Unlock()
		}
		return len(p), nil
	})
}

// writerFunc is a function as an io.Writer.
type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

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

func (w *demoWatcher) count(event string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.events[event]
}

func (w *demoWatcher) outcome(o Outcome) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.outcomes[o]
}

// waitUntil waits for cond, re-checking on every event and every 100ms
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
