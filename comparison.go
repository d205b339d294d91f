package main

// comparison.go is `courier demo -without breaker|timeout|backpressure`:
// one seeded overload episode of the simulator, run twice, once with
// courier's patterns on and once with one of them switched off by
// configuration alone, printed side by side, and judged by what that
// pattern is for.

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime/metrics"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// comparisonScenario is the episode and the load both runs get.
type comparisonScenario struct {
	Rate       float64       // client POSTs a second
	Calm       time.Duration // healthy time before the episode
	EpisodeMin time.Duration // the episode's length is drawn from the seed in these bounds
	EpisodeMax time.Duration
	After      time.Duration // how long the run goes on after the episode
	Drain      time.Duration // then, the most time courier gets to finish what it holds
}

// demoScenario is `courier demo -without`'s; the tests run a shorter one.
var demoScenario = comparisonScenario{Rate: 50, Calm: 4 * time.Second, EpisodeMin: 5 * time.Second, EpisodeMax: 8 * time.Second,
	After: 10 * time.Second, Drain: 20 * time.Second}

// comparisonOverload is messageapp in both runs: the overload profile's
// defaults (8 workers at about 100 ms, so 80 calls/s; one worker in the
// episode), with the episode where the scenario puts it.
func (sc comparisonScenario) overload() overloadConfig {
	o := defaultOverload
	o.CalmMin, o.CalmMax, o.EpisodeMin, o.EpisodeMax = sc.Calm, sc.Calm, sc.EpisodeMin, sc.EpisodeMax
	return o
}

// withoutPattern is one pattern the comparison can switch off: how, what
// it is for, and the test of whether the two runs show it.
type withoutPattern struct {
	name    string
	off     string // the configuration that switches it off, as a user would write it
	switchX func(*config)
	purpose string
	shows   func(on, off comparisonRun) (bool, string)
}

var withoutPatterns = []withoutPattern{
	{"breaker", "BREAKER_THRESHOLD=10000 (a threshold never reached)",
		func(c *config) { c.BreakerThreshold = 10_000 },
		"stop calling a degraded messageapp, so that its backlog drains",
		func(on, off comparisonRun) (bool, string) {
			// A fifth less at least: a difference of a few calls is noise.
			fewer := float64(on.episode().callsIn) <= 0.8*float64(off.episode().callsIn)
			lower := float64(on.peakBacklog) <= 0.8*float64(off.peakBacklog)
			return fewer && lower, fmt.Sprintf("with the breaker, courier sent %s calls into messageapp while it was degraded (%d against %d) and its backlog peaked %s (%d against %d)",
				word(fewer, "a fifth or more fewer", "NOT a fifth fewer"), on.episode().callsIn, off.episode().callsIn,
				word(lower, "a fifth or more lower", "NOT a fifth lower"), on.peakBacklog, off.peakBacklog)
		}},
	{"timeout", "MESSAGEAPP_TIMEOUT=5m (a very long deadline)",
		func(c *config) { c.MessageappTimeout = 5 * time.Minute },
		"give up on a call at a known time, so a slow messageapp is seen as failing and no sender waits on it for long",
		func(on, off comparisonRun) (bool, string) {
			bounded := on.longestAttempt <= on.cfg.MessageappTimeout+on.cfg.MessageappTimeout/2
			longer := off.longestAttempt > on.cfg.MessageappTimeout+on.cfg.MessageappTimeout/2
			return bounded && longer, fmt.Sprintf("with the timeout the longest call lasted %s (deadline %s), %s; without it %s",
				round(on.longestAttempt), on.cfg.MessageappTimeout, word(bounded, "within it", "NOT within it"), round(off.longestAttempt))
		}},
	{"backpressure", "QUEUE_MAX_SIZE=1000000 QUEUE_RECOVERY_THRESHOLD=999999 (a queue as large as memory allows)",
		func(c *config) { c.QueueMaxSize, c.QueueRecovery = 1_000_000, 999_999 },
		"refuse what cannot be delivered soon (503 with Retry-After), so courier's backlog, memory and the age of what it delivers stay bounded",
		func(on, off comparisonRun) (bool, string) {
			bounded := on.peakQueue <= on.cfg.QueueMaxSize && on.rejected() > 0
			older := off.peakQueue > 2*on.cfg.QueueMaxSize && off.ageMaxAll() > on.ageMaxAll()
			return bounded && older, fmt.Sprintf("with backpressure the queue peaked at %d (max %d) and %d POSTs were told to come back later; without it the queue peaked at %d and the oldest message delivered was %s old, against %s",
				on.peakQueue, on.cfg.QueueMaxSize, on.rejected(), off.peakQueue, round(off.ageMaxAll()), round(on.ageMaxAll()))
		}},
}

func word(ok bool, yes, no string) string {
	if ok {
		return yes
	}
	return no
}

func round(d time.Duration) time.Duration { return d.Round(10 * time.Millisecond) }

// findPattern returns the pattern called name.
func findPattern(name string) (withoutPattern, error) {
	names := make([]string, len(withoutPatterns))
	for i, p := range withoutPatterns {
		if p.name == name {
			return p, nil
		}
		names[i] = p.name
	}
	return withoutPattern{}, fmt.Errorf("-without %q: want one of %s", name, strings.Join(names, ", "))
}

// phaseTally is what one phase of a run saw.
type phaseTally struct {
	callsIn   int64 // calls messageapp received
	delivered int64 // messages courier sent
	unknown   int64 // messages that ended timeout or connection_lost: delivery unknown
	failed    int64
	rejected  int             // client POSTs answered 503
	posts     int             // client POSTs answered
	latencies []time.Duration // of the client's POSTs
	ages      []time.Duration // of the messages delivered in the phase, from acceptance
}

// comparisonRun is one run of the scenario.
type comparisonRun struct {
	cfg            config
	ep             episode
	phases         [3]phaseTally // before, during and after the episode
	peakBacklog    int           // messageapp's calls waiting for a worker, at most
	recovered      time.Duration // after the episode's end, when messageapp's backlog was first empty; -1 never
	peakQueue      int           // courier's queue depth, at most
	peakHeap       uint64        // the demo process's live heap, at most
	longestAttempt time.Duration
	opens          int // circuit openings
}

func (r comparisonRun) episode() phaseTally { return r.phases[1] }

func (r comparisonRun) rejected() int {
	n := 0
	for _, p := range r.phases {
		n += p.rejected
	}
	return n
}

// total sums a field over the phases.
func (r comparisonRun) total(f func(phaseTally) int64) int64 {
	var n int64
	for _, p := range r.phases {
		n += f(p)
	}
	return n
}

// ageMaxAll is the oldest message at delivery, over the run.
func (r comparisonRun) ageMaxAll() time.Duration {
	var m time.Duration
	for _, p := range r.phases {
		for _, a := range p.ages {
			m = max(m, a)
		}
	}
	return m
}

// comparisonWatcher is the run's Observer: the longest attempt and the
// circuit's openings.
type comparisonWatcher struct {
	observers
	mu      sync.Mutex // guards longest and opens
	longest time.Duration
	opens   int
}

func (w *comparisonWatcher) Attempted(o Outcome, took time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if o != OutcomeBreakerOpen {
		w.longest = max(w.longest, took)
	}
}

func (w *comparisonWatcher) CircuitChanged(to CircuitState, _ time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if to == CircuitOpen {
		w.opens++
	}
}

// runComparison runs the scenario with the patterns on, then with p off,
// prints both and reports whether they show what p is for.
// limit is CONCURRENCY_LIMIT in both runs: fixed by default, because the
// adaptive limit backs off from a slow messageapp on its own and so hides
// what the exercise's three patterns do.
func runComparison(ctx context.Context, p withoutPattern, limit string, sc comparisonScenario, seed uint64, out io.Writer) (bool, error) {
	on := demoComparisonConfig(limit)
	off := on
	p.switchX(&off)
	fmt.Fprintf(out, "courier demo -without %s: the same messageapp episode twice (seed %d), courier at its defaults with CONCURRENCY_LIMIT=%s, then the same with the %s off: %s\n",
		p.name, seed, limit, p.name, p.off)
	fmt.Fprintf(out, "what the %s is for: %s\n", p.name, p.purpose)
	o := sc.overload()
	fmt.Fprintf(out, "messageapp: overload profile, %d workers at about %s a call (%.0f calls/s), one worker (%.0f calls/s) during the episode; a client sends %.0f msg/s\n",
		o.Capacity, o.Latency, o.throughput(o.Capacity), o.throughput(o.EpisodeCapacity), sc.Rate)
	var runs [2]comparisonRun
	for i, cfg := range []config{on, off} {
		fmt.Fprintf(out, "  run %d of 2 (%s %s)…\n", i+1, p.name, word(i == 0, "on", "off"))
		r, err := compareOnce(ctx, cfg, sc, seed)
		if err != nil {
			return false, err
		}
		runs[i] = r
	}
	printComparison(out, p, runs[0], runs[1])
	ok, why := p.shows(runs[0], runs[1])
	fmt.Fprintf(out, "\n%s %s\n", word(ok, "✓", "✗"), why)
	if !ok {
		fmt.Fprintf(out, "this run does not show what the %s is for: courier demo -without %s failed\n", p.name, p.name)
	}
	return ok, nil
}

// demoComparisonConfig is courier at its documented defaults, as `go run .`
// starts it, but for CONCURRENCY_LIMIT set to limit.
func demoComparisonConfig(limit string) config {
	return presetConfig(map[string]string{"CONCURRENCY_LIMIT": limit})
}

// compareOnce runs the scenario once against courier configured as cfg.
func compareOnce(ctx context.Context, cfg config, sc comparisonScenario, seed uint64) (comparisonRun, error) {
	r := comparisonRun{cfg: cfg, recovered: -1}
	simCfg := defaultSimConfig(seed)
	simCfg.Overload = sc.overload()
	r.ep, _ = newEpisodeSchedule(simCfg.Overload, seed).next() // the draw the simulator makes
	sim := NewSimulator(simCfg, zerolog.Nop(), zerolog.DebugLevel)
	base, stopSim, err := startSimulator("127.0.0.1:0", sim)
	if err != nil {
		return r, err
	}
	defer stopSim()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return r, err
	}
	token := rand.Text()
	watcher := &comparisonWatcher{}
	cfg.MessageappURL, cfg.observer, cfg.clients = base+"/message", watcher, NewClients([]string{token})
	svcCtx, stopSvc := context.WithCancel(ctx)
	svcErr := make(chan error, 1)
	go func() { svcErr <- serve(svcCtx, cfg, ln, zerolog.Nop()) }()
	stopped := false
	stopCourier := func() error {
		if stopped {
			return nil
		}
		stopped = true
		stopSvc()
		return <-svcErr
	}
	defer stopCourier()
	url := "http://" + ln.Addr().String()

	end := r.ep.end + sc.After
	load, err := newLoadClient(loadOptions{URL: url, Token: token, Rate: sc.Rate, Duration: end - time.Since(sim.start),
		MaxRequests: 1_000_000})
	if err != nil {
		return r, err
	}
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	loadDone := make(chan loadStats, 1)
	go func() { loadDone <- load.run(loadCtx) }()

	statusClient := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	type mark struct {
		received int64
		counts   Counts
		load     loadStats
	}
	snap := func() (mark, statusResponse) {
		st, _ := getStatus(statusClient, url, time.Second)
		return mark{sim.Report().Overload.Received, st.Messages, load.soFar()}, st
	}
	heap := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	marks := []mark{}
	first, _ := snap()
	marks = append(marks, first)
	bounds := []time.Duration{r.ep.start, r.ep.end}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var final loadStats
	sending := true
	for sending {
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case final = <-loadDone:
			sending = false
		case <-tick.C:
		}
		at := time.Since(sim.start)
		m, st := snap()
		rep := sim.Report().Overload
		r.peakBacklog = max(r.peakBacklog, rep.Backlog)
		if at > r.ep.end && r.recovered < 0 && rep.Backlog == 0 {
			r.recovered = at - r.ep.end
		}
		r.peakQueue = max(r.peakQueue, st.Queue.Depth)
		metrics.Read(heap)
		r.peakHeap = max(r.peakHeap, heap[0].Value.Uint64())
		if len(bounds) > 0 && at >= bounds[0] {
			marks, bounds = append(marks, m), bounds[1:]
		}
	}
	// What courier still holds is delivered (or not) after the load: it
	// counts in the last phase.
	deadline := time.Now().Add(sc.Drain)
	for time.Now().Before(deadline) {
		if st, err := getStatus(statusClient, url, time.Second); err == nil && st.Messages.Queued+st.Messages.Sending == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-tick.C:
		}
	}
	last, _ := snap()
	last.load = final
	marks = append(marks, last)
	for len(marks) < 4 { // the run ended before a phase began
		marks = append(marks, last)
	}
	ages, err := deliveryAges(url, token, sim.start)
	if err != nil {
		return r, err
	}
	phaseOf := func(at time.Duration) int {
		switch {
		case at < r.ep.start:
			return 0
		case at < r.ep.end:
			return 1
		}
		return 2
	}
	for _, a := range ages {
		r.phases[phaseOf(a.at)].ages = append(r.phases[phaseOf(a.at)].ages, a.age)
	}
	for i := range 3 {
		a, b := marks[i], marks[i+1]
		ph := &r.phases[i]
		ph.callsIn = b.received - a.received
		ph.delivered = b.counts.Sent - a.counts.Sent
		ph.failed = b.counts.Failed - a.counts.Failed
		ph.unknown = b.counts.deliveryUnknown() - a.counts.deliveryUnknown()
		ph.rejected = b.load.rejectedTotal() - a.load.rejectedTotal()
		ph.posts = b.load.Requests - a.load.Requests
		ph.latencies = b.load.Latencies[min(len(a.load.Latencies), len(b.load.Latencies)):]
	}
	watcher.mu.Lock()
	r.longestAttempt, r.opens = watcher.longest, watcher.opens
	watcher.mu.Unlock()
	return r, stopCourier()
}

// deliveredAge is one sent message: when (on the simulator's clock) it
// was delivered, and how long after courier accepted it.
type deliveredAge struct {
	at, age time.Duration
}

// deliveryAges lists the sent messages (the newest 1000) and their ages.
func deliveryAges(base, token string, start time.Time) ([]deliveredAge, error) {
	req, err := http.NewRequest(http.MethodGet, base+"/messages?status=sent&limit=1000", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var page struct {
		Messages []Message `json:"messages"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		return nil, fmt.Errorf("GET /messages: %w", err)
	}
	ages := make([]deliveredAge, 0, len(page.Messages))
	for _, m := range page.Messages {
		ages = append(ages, deliveredAge{at: m.UpdatedAt.Sub(start), age: m.UpdatedAt.Sub(m.CreatedAt)})
	}
	return ages, nil
}

// percentile is the p-th percentile of ds (0 for none).
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*p/100)]
}

// printComparison writes the two runs side by side, phase by phase, then
// a summary.
func printComparison(out io.Writer, p withoutPattern, on, off comparisonRun) {
	row := func(label string, a, b any) { fmt.Fprintf(out, "  %-44s %22v %22v\n", label, a, b) }
	fmt.Fprintf(out, "\n  %-44s %22s %22s\n", "", p.name+" on", p.name+" off")
	titles := []string{
		fmt.Sprintf("before the episode (0–%.1fs)", on.ep.start.Seconds()),
		fmt.Sprintf("the episode (%.1f–%.1fs: 1 worker)", on.ep.start.Seconds(), on.ep.end.Seconds()),
		fmt.Sprintf("after it (from %.1fs, and the drain)", on.ep.end.Seconds()),
	}
	for i, title := range titles {
		a, b := on.phases[i], off.phases[i]
		fmt.Fprintf(out, "%s\n", title)
		row("calls into messageapp", a.callsIn, b.callsIn)
		row("messages delivered", a.delivered, b.delivered)
		row("delivery unknown (timeout, lost)", a.unknown, b.unknown)
		row("failed (errors, MAX_ATTEMPTS spent)", a.failed, b.failed)
		row("client POSTs / of them 503", fmt.Sprintf("%d / %d", a.posts, a.rejected), fmt.Sprintf("%d / %d", b.posts, b.rejected))
		row("client POST latency p99", percentile(a.latencies, 99).Round(100*time.Microsecond), percentile(b.latencies, 99).Round(100*time.Microsecond))
		row("age at delivery p50 / max", ages(a.ages), ages(b.ages))
	}
	recovered := func(r comparisonRun) string {
		if r.recovered < 0 {
			return "not within the run"
		}
		return fmt.Sprintf("%s after", round(r.recovered))
	}
	fmt.Fprintf(out, "summary\n")
	row("calls into messageapp while degraded", on.episode().callsIn, off.episode().callsIn)
	row("messageapp's peak backlog (calls waiting)", on.peakBacklog, off.peakBacklog)
	row("backlog empty again, after the episode", recovered(on), recovered(off))
	delivered := func(t phaseTally) int64 { return t.delivered }
	unknown := func(t phaseTally) int64 { return t.unknown }
	failed := func(t phaseTally) int64 { return t.failed }
	row("messages delivered", on.total(delivered), off.total(delivered))
	row("delivery unknown", on.total(unknown), off.total(unknown))
	row("failed", on.total(failed), off.total(failed))
	row("client 503s", on.rejected(), off.rejected())
	row("circuit opened", on.opens, off.opens)
	row("longest call to messageapp", round(on.longestAttempt), round(off.longestAttempt))
	row("oldest message at delivery", round(on.ageMaxAll()), round(off.ageMaxAll()))
	row("courier's peak queue depth", on.peakQueue, off.peakQueue)
	row("peak live heap (whole demo process)", fmt.Sprintf("%.1f MiB", float64(on.peakHeap)/(1<<20)), fmt.Sprintf("%.1f MiB", float64(off.peakHeap)/(1<<20)))
}

func ages(as []time.Duration) string {
	if len(as) == 0 {
		return "–"
	}
	return fmt.Sprintf("%s / %s", round(percentile(as, 50)), round(percentile(as, 100)))
}
