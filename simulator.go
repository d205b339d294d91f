package main

// simulator.go is a stand-in for messageapp (docs/messageapp.md) with a switchable
// degradation profile, so the whole story can be seen with nothing but Go:
// `courier messageapp` runs it alone, and `courier` starts one in-process
// when MESSAGEAPP_URL is unset.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// Profile is how the simulator behaves.
type Profile string

// The simulator's profiles; what each does is in profiles.
const (
	ProfileOverload Profile = "overload"
	ProfileHealthy  Profile = "healthy"
	ProfileDegraded Profile = "degraded"
	ProfileDown     Profile = "down"
	ProfileHang     Profile = "hang"
	ProfileFlap     Profile = "flap"
)

// nodeKeepAlive is how long the simulator keeps an idle connection open:
// Node's http.Server keepAliveTimeout defaults to 5000 ms, and the real
// messageapp is a Node server.
const nodeKeepAlive = 5 * time.Second

// The flap profile's cycle unless told otherwise: long enough healthy to
// see messages flow, long enough degraded for the circuit to open.
const (
	flapHealthyDefault  = 20 * time.Second
	flapDegradedDefault = 10 * time.Second
)

// profiles is every profile, what it does and how it answers one request,
// in the order help lists them. Adding a profile is adding a row.
var profiles = []struct {
	name   Profile
	about  string
	answer func(s *Simulator, now time.Time) reply // called with s.mu held
}{
	{ProfileOverload, "workers and a backlog: latency grows with the load; capacity drops in seeded episodes", func(*Simulator, time.Time) reply {
		return reply{effective: ProfileOverload}
	}},
	{ProfileHealthy, "200 OK after 5-50 ms", (*Simulator).healthy},
	{ProfileDegraded, "fast 500s, spikes of seconds, 200s 4-14 s late, 500s after ~14 s", (*Simulator).degraded},
	{ProfileDown, "500 at once", func(s *Simulator, _ time.Time) reply {
		return reply{ProfileDown, s.between(time.Millisecond, 10*time.Millisecond), http.StatusInternalServerError}
	}},
	{ProfileHang, "never answers", func(*Simulator, time.Time) reply { return reply{effective: ProfileHang} }},
	{ProfileFlap, "healthy and degraded in turn", (*Simulator).flap},
}

// profileNames lists the profiles for messages: "healthy, degraded, …".
func profileNames(sep string) string {
	names := make([]string, len(profiles))
	for i, p := range profiles {
		names[i] = string(p.name)
	}
	return strings.Join(names, sep)
}

func parseProfile(s string) (Profile, error) {
	for _, p := range profiles {
		if string(p.name) == s {
			return p.name, nil
		}
	}
	return "", fmt.Errorf("unknown profile %q: want one of %s", s, profileNames(", "))
}

// simConfig is how a simulator starts.
type simConfig struct {
	Profile      Profile
	FlapHealthy  time.Duration // flap: time healthy in each cycle
	FlapDegraded time.Duration // flap: time degraded in each cycle
	Overload     overloadConfig
	KeepAlive    time.Duration // idle connections are closed after this
	Seed         uint64        // every random draw, episodes included
}

// defaultSimConfig is `courier messageapp` with no flags, but for the seed.
func defaultSimConfig(seed uint64) simConfig {
	return simConfig{Profile: ProfileOverload, FlapHealthy: flapHealthyDefault, FlapDegraded: flapDegradedDefault,
		Overload: defaultOverload, KeepAlive: nodeKeepAlive, Seed: seed}
}

// Simulator answers POST /message according to its current profile.
type Simulator struct {
	log          zerolog.Logger
	level        zerolog.Level // of the per-request lines
	flapHealthy  time.Duration
	flapDegraded time.Duration
	keepAlive    time.Duration
	start        time.Time
	overload     *overloadModel // runs whatever the profile, so switching back finds its backlog
	recent       *latencyWindow // of every answer, whichever profile gave it
	inFlight     atomic.Int64   // requests whose client is waiting

	// mu guards profile and rng.
	mu      sync.Mutex
	profile Profile
	rng     *rand.Rand
}

// NewSimulator starts as cfg says; flap's cycle and the overload
// profile's episodes are counted from now. Close stops it.
func NewSimulator(cfg simConfig, log zerolog.Logger, level zerolog.Level) *Simulator {
	start, recent := time.Now(), &latencyWindow{}
	return &Simulator{
		log: log.With().Str("component", "messageapp").Logger(), level: level,
		flapHealthy: cfg.FlapHealthy, flapDegraded: cfg.FlapDegraded, keepAlive: cfg.KeepAlive, start: start,
		overload: newOverloadModel(cfg.Overload, cfg.Seed, start, recent), recent: recent,
		profile: cfg.Profile, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
	}
}

// Close stops the overload profile's episodes and answers what is inside it.
func (s *Simulator) Close() { s.overload.close() }

// SetProfile switches the behaviour for every request that arrives next.
func (s *Simulator) SetProfile(p Profile) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p != s.profile {
		s.log.Info().Str("event", "profile_changed").Str("from", string(s.profile)).
			Str("to", string(p)).Msg("messageapp simulator changed profile")
		s.profile = p
	}
}

// Profile returns the current profile.
func (s *Simulator) Profile() Profile {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.profile
}

// reply is what the simulator decided for one request; status 0 = no
// answer. For overload it is only the profile: its model answers.
type reply struct {
	effective Profile
	delay     time.Duration
	status    int
}

// decide picks the answer for a request arriving at now.
func (s *Simulator) decide(now time.Time) reply {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.answer(s.profile, now)
}

// answer is what profile p says to a request at now. Callers hold mu.
func (s *Simulator) answer(p Profile, now time.Time) reply {
	for _, row := range profiles {
		if row.name == p {
			return row.answer(s, now)
		}
	}
	panic(fmt.Sprintf("messageapp simulator: profile %q has no row in profiles", p))
}

// between is a random duration in [lo, hi]. Callers hold mu.
func (s *Simulator) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(s.rng.Int64N(int64(hi-lo)+1))
}

// healthy answers 200 OK within 50 ms.
func (s *Simulator) healthy(time.Time) reply {
	return reply{ProfileHealthy, s.between(5*time.Millisecond, 50*time.Millisecond), http.StatusOK}
}

// flap answers as healthy or degraded, by where now falls in the cycle.
func (s *Simulator) flap(now time.Time) reply {
	if cycle := s.flapHealthy + s.flapDegraded; cycle > 0 && now.Sub(s.start)%cycle >= s.flapHealthy {
		return s.degraded(now)
	}
	return s.healthy(now)
}

// degraded draws one of degradedBands.
func (s *Simulator) degraded(time.Time) reply {
	r := s.rng.Float64()
	for _, b := range degradedBands {
		if r -= b.share; r < 0 {
			return reply{ProfileDegraded, s.between(b.lo, b.hi), b.status}
		}
	}
	last := degradedBands[len(degradedBands)-1]
	return reply{ProfileDegraded, s.between(last.lo, last.hi), last.status}
}

// degradedBands is the degraded profile, shares adding up to one: what
// people saw from the exercise's image (spikes of seconds, 200s arriving
// 4–14 s late, 500s after ~14 s), plus errors answered at once, so that
// all three failure kinds show: a fast 500 is a messageapp_error, anything
// slower than the deadline a timeout, and the failures together open the
// circuit.
var degradedBands = []struct {
	share  float64
	lo, hi time.Duration
	status int
}{
	{0.40, 20 * time.Millisecond, 200 * time.Millisecond, http.StatusOK},
	{0.20, 5 * time.Millisecond, 50 * time.Millisecond, http.StatusInternalServerError},
	{0.20, time.Second, 3 * time.Second, http.StatusOK},
	{0.10, 4 * time.Second, 14 * time.Second, http.StatusOK},
	{0.10, 13 * time.Second, 15 * time.Second, http.StatusInternalServerError},
}

// routes serves messageapp's endpoint and the control endpoint.
func (s *Simulator) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /message", s.handleMessage)
	mux.HandleFunc("GET /control", s.handleControl)
	mux.HandleFunc("PUT /control", s.handleControl)
	return mux
}

func (s *Simulator) handleMessage(w http.ResponseWriter, r *http.Request) {
	var req sendRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	if err := dec.Decode(&req); err != nil || req.Destination == "" || req.Body == "" {
		http.Error(w, "bad request: want JSON {\"destination\": \"...\", \"body\": \"...\"}", http.StatusBadRequest)
		return
	}
	s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	arrived := time.Now()
	rep := s.decide(arrived)
	ev := s.log.WithLevel(s.level).Str("profile", string(rep.effective))
	switch {
	case rep.effective == ProfileOverload:
		call := s.overload.submit(arrived)
		select {
		case rep.status = <-call.answer:
		case <-r.Context().Done():
			s.overload.abandon(call)
			ev.Bool("abandoned", true).Int64("waited_ms", time.Since(arrived).Milliseconds()).
				Msg("caller gave up; the call stays in messageapp's backlog or with its worker")
			return
		}
		ev = ev.Int64("latency_ms", time.Since(arrived).Milliseconds())
	case rep.status == 0:
		<-r.Context().Done()
		ev.Int64("latency_ms", 0).Bool("abandoned", true).Msg("hung until the caller gave up")
		return
	default:
		ev = ev.Int64("latency_ms", rep.delay.Milliseconds())
		t := time.NewTimer(rep.delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			ev.Int("status", rep.status).Bool("abandoned", true).Msg("caller gave up before the answer")
			return
		}
		s.recent.add(time.Now(), rep.delay)
	}
	ev.Int("status", rep.status).Msg("answered")
	if rep.status == http.StatusOK {
		io.WriteString(w, "OK")
		return
	}
	http.Error(w, http.StatusText(rep.status), rep.status)
}

// controlBody is the body of PUT /control, and the first field of GET's.
type controlBody struct {
	Profile Profile `json:"profile"`
}

// controlReport is what GET and PUT /control answer: the profile, the
// requests open now, the latency of recent answers and the overload
// model's workers and backlog (kept whatever the profile, so a switch away
// from overload shows its backlog draining).
type controlReport struct {
	Profile  Profile        `json:"profile"`
	InFlight int64          `json:"in_flight"` // requests whose client is waiting for the answer
	Recent   latencySummary `json:"recent"`    // answers of the last 10 s, the abandoned included
	Overload overloadReport `json:"overload"`
}

// Report is the simulator's state now.
func (s *Simulator) Report() controlReport {
	return controlReport{Profile: s.Profile(), InFlight: s.inFlight.Load(),
		Recent: s.recent.summary(time.Now()), Overload: s.overload.report()}
}

// SelfReport is Report for the dashboard, which knows nothing of its type.
func (s *Simulator) SelfReport() any { return s.Report() }

func (s *Simulator) handleControl(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPut {
		var body controlBody
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<10)).Decode(&body); err != nil {
			http.Error(w, `want JSON {"profile": "`+profileNames("|")+`"}`, http.StatusBadRequest)
			return
		}
		p, err := parseProfile(string(body.Profile))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.SetProfile(p)
	}
	writeJSON(w, http.StatusOK, s.Report())
}

// startSimulator listens on addr and serves sim until stop, which also
// closes sim. It returns the base URL.
func startSimulator(addr string, sim *Simulator) (baseURL string, stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("messageapp simulator: listen on %s: %w", addr, err)
	}
	srv := newSimulatorServer(sim.routes(), sim.keepAlive)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	stop = func() {
		sim.Close()
		_ = srv.Close() // hung and slow requests end with their connections
		<-done
	}
	return "http://" + ln.Addr().String(), stop, nil
}

// newSimulatorServer serves h with every timeout set, so a client that
// trickles its request or never reads the answer cannot hold a connection
// for ever. Writing may take 5 minutes, the longest deadline courier gives
// a call (MESSAGEAPP_TIMEOUT), so no answer a client still waits for is cut.
// Idle connections close after keepAlive, as a Node server's do
// (keepAliveTimeout), so a client that keeps them longer meets the race it
// would meet in front of the real messageapp.
func newSimulatorServer(h http.Handler, keepAlive time.Duration) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 5 * time.Minute, IdleTimeout: keepAlive, MaxHeaderBytes: 32 << 10}
}

// startEmbeddedSimulator starts the simulator as `courier messageapp` would
// with no flags, on a loopback port, for a courier run without
// MESSAGEAPP_URL, and returns it and its send URL.
func startEmbeddedSimulator(log zerolog.Logger) (sim *Simulator, url string, stop func(), err error) {
	cfg := defaultSimConfig(uint64(time.Now().UnixNano()))
	sim = NewSimulator(cfg, log, zerolog.DebugLevel)
	base, stop, err := startSimulator("127.0.0.1:0", sim)
	if err != nil {
		sim.Close()
		return nil, "", nil, err
	}
	o := cfg.Overload
	log.Info().Str("event", "simulator_started").Str("url", base+"/message").Str("profile", string(cfg.Profile)).
		Str("control", base+"/control").Uint64("seed", cfg.Seed).
		Msg(fmt.Sprintf("MESSAGEAPP_URL is unset: using the built-in messageapp simulator (%d workers at about %s a call, "+
			"so about %.0f calls/s; every %s-%s it drops to %d for %s-%s); set MESSAGEAPP_URL to use a real messageapp",
			o.Capacity, o.Latency, o.throughput(o.Capacity), o.CalmMin, o.CalmMax, o.EpisodeCapacity, o.EpisodeMin, o.EpisodeMax))
	return sim, base + "/message", stop, nil
}

// messageappFlags defines the flags of `courier messageapp` on fs, each
// defaulting to its environment variable when that is set. It returns the
// configuration the flags fill in, and the variables that do not parse.
func messageappFlags(fs *flag.FlagSet, getenv func(string) string) (*simConfig, *int, []error) {
	cfg := defaultSimConfig(uint64(time.Now().UnixNano()))
	var errs []error
	fromEnv := func(name, allowed string, parse func(string) error) {
		if v := getenv(name); v != "" {
			if err := parse(v); err != nil {
				errs = append(errs, &configError{Var: name, Value: v, Allowed: allowed})
			}
		}
	}
	duration := func(p *time.Duration, flagName, env, usage string) {
		fromEnv(env, messageappAllowed[env], func(v string) (err error) { *p, err = time.ParseDuration(v); return err })
		fs.DurationVar(p, flagName, *p, usage+" (env "+env+")")
	}
	integer := func(p *int, flagName, env, usage string) {
		fromEnv(env, messageappAllowed[env], func(v string) (err error) { *p, err = strconv.Atoi(v); return err })
		fs.IntVar(p, flagName, *p, usage+" (env "+env+")")
	}
	port := 3000
	integer(&port, "port", "PORT", "TCP port")
	profile := string(cfg.Profile)
	fromEnv("MESSAGEAPP_PROFILE", messageappAllowed["MESSAGEAPP_PROFILE"], func(v string) error { _, err := parseProfile(v); profile = v; return err })
	fs.Func("profile", "one of "+profileNames(", ")+" (env MESSAGEAPP_PROFILE; default "+profile+")", func(v string) error {
		p, err := parseProfile(v)
		cfg.Profile = p
		return err
	})
	cfg.Profile = Profile(profile)
	fromEnv("MESSAGEAPP_SEED", messageappAllowed["MESSAGEAPP_SEED"], func(v string) (err error) { cfg.Seed, err = strconv.ParseUint(v, 10, 64); return err })
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "random seed of every draw, episodes included, for repeatable runs; unset, the clock (env MESSAGEAPP_SEED)")
	o := &cfg.Overload
	integer(&o.Capacity, "capacity", "MESSAGEAPP_CAPACITY", "overload: workers, the calls worked on at once")
	duration(&o.Latency, "latency", "MESSAGEAPP_LATENCY", "overload: base latency; one call's work takes 0.5 to 1.5 times this")
	integer(&o.EpisodeCapacity, "episode-capacity", "MESSAGEAPP_EPISODE_CAPACITY", "overload: workers left during an episode")
	duration(&o.EpisodeMin, "episode-min", "MESSAGEAPP_EPISODE_MIN", "overload: shortest episode")
	duration(&o.EpisodeMax, "episode-max", "MESSAGEAPP_EPISODE_MAX", "overload: longest episode; 0 for none")
	duration(&o.CalmMin, "calm-min", "MESSAGEAPP_CALM_MIN", "overload: shortest healthy time before an episode")
	duration(&o.CalmMax, "calm-max", "MESSAGEAPP_CALM_MAX", "overload: longest healthy time before an episode")
	duration(&o.GiveUp, "give-up", "MESSAGEAPP_GIVE_UP", "overload: a call that waited this long for a worker is answered 500")
	duration(&cfg.KeepAlive, "keep-alive", "MESSAGEAPP_KEEP_ALIVE", "idle connections are closed after this (Node's default)")
	duration(&cfg.FlapHealthy, "flap-healthy", "MESSAGEAPP_FLAP_HEALTHY", "flap: time healthy in each cycle")
	duration(&cfg.FlapDegraded, "flap-degraded", "MESSAGEAPP_FLAP_DEGRADED", "flap: time degraded in each cycle")
	return &cfg, &port, errs
}

// messageappAllowed is what each of `courier messageapp`'s variables takes,
// the sentence a user sees when its value is refused, as courier's
// `allowed` tags are for `courier serve`.
var messageappAllowed = map[string]string{
	"PORT":                        "a TCP port, 0..65535",
	"MESSAGEAPP_PROFILE":          "one of " + profileNames(", "),
	"MESSAGEAPP_SEED":             "a whole number from 0 to 18446744073709551615",
	"MESSAGEAPP_CAPACITY":         "a whole number from 1",
	"MESSAGEAPP_LATENCY":          "a Go duration above 0, e.g. 100ms",
	"MESSAGEAPP_EPISODE_CAPACITY": "a whole number from 0 to MESSAGEAPP_CAPACITY",
	"MESSAGEAPP_EPISODE_MIN":      "a Go duration from 0s to MESSAGEAPP_EPISODE_MAX, e.g. 3s",
	"MESSAGEAPP_EPISODE_MAX":      "a Go duration from 0s (no episodes), e.g. 8s",
	"MESSAGEAPP_CALM_MIN":         "a Go duration above 0, e.g. 15s",
	"MESSAGEAPP_CALM_MAX":         "a Go duration from MESSAGEAPP_CALM_MIN, e.g. 30s",
	"MESSAGEAPP_GIVE_UP":          "a Go duration above 0, e.g. 14s",
	"MESSAGEAPP_KEEP_ALIVE":       "a Go duration above 0, e.g. 5s",
	"MESSAGEAPP_FLAP_HEALTHY":     "a Go duration from 0s, e.g. 20s",
	"MESSAGEAPP_FLAP_DEGRADED":    "a Go duration from 0s, e.g. 10s",
}

// messageappEnvProblems checks the values the flags left to the
// environment, as courier's validate does its variables: one problem per
// variable that was set and does not fit, naming it, its value as written
// and what would do. A value given as a flag is the flag checks' business.
func messageappEnvProblems(fs *flag.FlagSet, cfg simConfig, port int, getenv func(string) string) configErrors {
	flagged := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { flagged[f.Name] = true })
	o := cfg.Overload
	episodes := o.EpisodeMax > 0
	rules := []struct {
		flag, env string
		ok        bool
		relative  string // the other variable a bound comes from, and its value
	}{
		{"port", "PORT", port >= 0 && port <= 65535, ""},
		{"capacity", "MESSAGEAPP_CAPACITY", o.Capacity >= 1, ""},
		{"latency", "MESSAGEAPP_LATENCY", o.Latency > 0, ""},
		{"episode-capacity", "MESSAGEAPP_EPISODE_CAPACITY", o.EpisodeCapacity >= 0 && o.EpisodeCapacity <= o.Capacity,
			fmt.Sprintf("MESSAGEAPP_CAPACITY is %d", o.Capacity)},
		{"episode-max", "MESSAGEAPP_EPISODE_MAX", o.EpisodeMax >= 0, ""},
		{"episode-min", "MESSAGEAPP_EPISODE_MIN", !episodes || o.EpisodeMin >= 0 && o.EpisodeMin <= o.EpisodeMax,
			fmt.Sprintf("MESSAGEAPP_EPISODE_MAX is %s", o.EpisodeMax)},
		{"calm-min", "MESSAGEAPP_CALM_MIN", !episodes || o.CalmMin > 0, ""},
		{"calm-max", "MESSAGEAPP_CALM_MAX", !episodes || o.CalmMax >= o.CalmMin, fmt.Sprintf("MESSAGEAPP_CALM_MIN is %s", o.CalmMin)},
		{"give-up", "MESSAGEAPP_GIVE_UP", o.GiveUp > 0, ""},
		{"keep-alive", "MESSAGEAPP_KEEP_ALIVE", cfg.KeepAlive > 0, ""},
		{"flap-healthy", "MESSAGEAPP_FLAP_HEALTHY", cfg.FlapHealthy >= 0, ""},
		{"flap-degraded", "MESSAGEAPP_FLAP_DEGRADED", cfg.FlapDegraded >= 0, ""},
	}
	var errs configErrors
	for _, r := range rules {
		v := getenv(r.env)
		if r.ok || flagged[r.flag] || v == "" {
			continue
		}
		if r.relative != "" && slices.ContainsFunc(errs, func(e *configError) bool { return e.Var == strings.Fields(r.relative)[0] }) {
			continue // the bound's own variable is the problem to fix
		}
		allowed := messageappAllowed[r.env]
		if r.relative != "" {
			allowed += " (" + r.relative + ")"
		}
		errs = append(errs, &configError{Var: r.env, Value: v, Allowed: allowed})
	}
	return errs
}

// runMessageapp is `courier messageapp`: the simulator on its own.
func runMessageapp(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("courier messageapp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg, port, errs := messageappFlags(fs, getenv)
	if len(errs) > 0 {
		for _, err := range errs {
			fmt.Fprintf(stderr, "courier messageapp: %v\n", err)
		}
		return exitUsage
	}
	host := fs.String("host", "127.0.0.1",
		"address to listen on; 0.0.0.0 or :: for every interface, where anyone who reaches the port can switch the profile")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return exitOK // -h: the flags were printed
	} else if err != nil {
		return exitUsage
	}
	if errs := messageappEnvProblems(fs, *cfg, *port, getenv); len(errs) > 0 {
		for _, err := range errs {
			fmt.Fprintf(stderr, "courier messageapp: %v\n", err)
		}
		return exitUsage
	}
	if err := cfg.Overload.check(); err != nil {
		fmt.Fprintf(stderr, "courier messageapp: %v\n", err)
		return exitUsage
	}
	if *port < 0 || *port > 65535 || cfg.FlapHealthy < 0 || cfg.FlapDegraded < 0 || cfg.KeepAlive <= 0 {
		fmt.Fprintln(stderr, "courier messageapp: -port must be 0..65535, flap durations must not be negative and -keep-alive must be positive")
		return exitUsage
	}
	log := zerolog.New(stdout).With().Timestamp().Logger()
	sim := NewSimulator(*cfg, log, zerolog.InfoLevel)
	url, stop, err := startSimulator(net.JoinHostPort(*host, strconv.Itoa(*port)), sim)
	if err != nil {
		sim.Close()
		fmt.Fprintf(stderr, "courier messageapp: %v\n", err)
		return exitFailed
	}
	log.Info().Str("event", "listening").Str("url", url+"/message").Str("profile", string(cfg.Profile)).Uint64("seed", cfg.Seed).
		Msg(`messageapp simulator listening; see it with: curl ` + url + `/control; switch with: curl -X PUT --json '{"profile":"down"}' ` + url + "/control")
	<-ctx.Done()
	stop()
	return exitOK
}
