package main

// simulator.go is a stand-in for messageapp (SPEC §7) with a switchable
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
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Profile is how the simulator behaves.
type Profile string

// The simulator's profiles; what each does is in profiles.
const (
	ProfileHealthy  Profile = "healthy"
	ProfileDegraded Profile = "degraded"
	ProfileDown     Profile = "down"
	ProfileHang     Profile = "hang"
	ProfileFlap     Profile = "flap"
)

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

// Simulator answers POST /message according to its current profile.
type Simulator struct {
	log          zerolog.Logger
	level        zerolog.Level // of the per-request lines
	flapHealthy  time.Duration
	flapDegraded time.Duration
	start        time.Time

	// mu guards profile and rng.
	mu      sync.Mutex
	profile Profile
	rng     *rand.Rand
}

// NewSimulator starts in profile p; flap spends flapHealthy then
// flapDegraded in turn, counted from now.
func NewSimulator(p Profile, flapHealthy, flapDegraded time.Duration, seed uint64, log zerolog.Logger, level zerolog.Level) *Simulator {
	return &Simulator{
		log: log.With().Str("component", "messageapp").Logger(), level: level,
		flapHealthy: flapHealthy, flapDegraded: flapDegraded, start: time.Now(),
		profile: p, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
	}
}

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

// reply is what the simulator decided for one request; status 0 = no answer.
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
	rep := s.decide(time.Now())
	ev := s.log.WithLevel(s.level).Str("profile", string(rep.effective)).Int64("latency_ms", rep.delay.Milliseconds())
	if rep.status == 0 {
		<-r.Context().Done()
		ev.Bool("abandoned", true).Msg("hung until the caller gave up")
		return
	}
	t := time.NewTimer(rep.delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
		ev.Int("status", rep.status).Bool("abandoned", true).Msg("caller gave up before the answer")
		return
	}
	ev.Int("status", rep.status).Msg("answered")
	if rep.status == http.StatusOK {
		io.WriteString(w, "OK")
		return
	}
	http.Error(w, "Internal Server Error", rep.status)
}

// controlBody is the body of GET and PUT /control.
type controlBody struct {
	Profile Profile `json:"profile"`
}

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
	writeJSON(w, http.StatusOK, controlBody{Profile: s.Profile()})
}

// startSimulator listens on addr and serves sim until Close. It returns the
// base URL.
func startSimulator(addr string, sim *Simulator) (baseURL string, stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("messageapp simulator: listen on %s: %w", addr, err)
	}
	srv := newSimulatorServer(sim.routes())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	stop = func() {
		_ = srv.Close() // hung and slow requests end with their connections
		<-done
	}
	return "http://" + ln.Addr().String(), stop, nil
}

// newSimulatorServer serves h with every timeout set, so a client that
// trickles its request or never reads the answer cannot hold a connection
// for ever. Writing may take 5 minutes, the longest deadline courier gives
// a call (MESSAGEAPP_TIMEOUT), so no answer a client still waits for is cut.
func newSimulatorServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 5 * time.Minute, IdleTimeout: 60 * time.Second, MaxHeaderBytes: 32 << 10}
}

// startEmbeddedSimulator starts the flapping simulator on a loopback port
// for a courier run without MESSAGEAPP_URL, and returns its send URL.
func startEmbeddedSimulator(log zerolog.Logger) (url string, stop func(), err error) {
	sim := NewSimulator(ProfileFlap, flapHealthyDefault, flapDegradedDefault, uint64(time.Now().UnixNano()), log, zerolog.DebugLevel)
	base, stop, err := startSimulator("127.0.0.1:0", sim)
	if err != nil {
		return "", nil, err
	}
	log.Info().Str("event", "simulator_started").Str("url", base+"/message").Str("profile", string(ProfileFlap)).
		Str("control", base+"/control").
		Msg(fmt.Sprintf("MESSAGEAPP_URL is unset: using the built-in messageapp simulator (healthy %s, degraded %s, in turn); "+
			"set MESSAGEAPP_URL to use a real messageapp", flapHealthyDefault, flapDegradedDefault))
	return base + "/message", stop, nil
}

// runMessageapp is `courier messageapp`: the simulator on its own.
func runMessageapp(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("courier messageapp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	defPort, err := envInt(getenv, "PORT", 3000)
	if err != nil {
		fmt.Fprintf(stderr, "courier messageapp: %v\n", err)
		return exitUsage
	}
	port := fs.Int("port", defPort, "TCP port (env PORT)")
	host := fs.String("host", "127.0.0.1",
		"address to listen on; 0.0.0.0 or :: for every interface, where anyone who reaches the port can switch the profile")
	profile := fs.String("profile", envOr(getenv, "MESSAGEAPP_PROFILE", string(ProfileFlap)),
		"one of "+profileNames(", ")+" (env MESSAGEAPP_PROFILE)")
	flapHealthy := fs.Duration("flap-healthy", flapHealthyDefault, "time healthy in each flap cycle")
	flapDegraded := fs.Duration("flap-degraded", flapDegradedDefault, "time degraded in each flap cycle")
	seed := fs.Uint64("seed", uint64(time.Now().UnixNano()), "random seed, for repeatable runs")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return exitOK // -h: the flags were printed
	} else if err != nil {
		return exitUsage
	}
	p, err := parseProfile(*profile)
	if err != nil {
		fmt.Fprintf(stderr, "courier messageapp: -profile: %v\n", err)
		return exitUsage
	}
	if *port < 0 || *port > 65535 || *flapHealthy < 0 || *flapDegraded < 0 {
		fmt.Fprintln(stderr, "courier messageapp: -port must be 0..65535 and flap durations must not be negative")
		return exitUsage
	}
	log := zerolog.New(stdout).With().Timestamp().Logger()
	sim := NewSimulator(p, *flapHealthy, *flapDegraded, *seed, log, zerolog.InfoLevel)
	url, stop, err := startSimulator(net.JoinHostPort(*host, strconv.Itoa(*port)), sim)
	if err != nil {
		fmt.Fprintf(stderr, "courier messageapp: %v\n", err)
		return exitFailed
	}
	log.Info().Str("event", "listening").Str("url", url+"/message").Str("profile", string(p)).
		Msg(`messageapp simulator listening; switch with: curl -X PUT --json '{"profile":"down"}' ` + url + "/control")
	<-ctx.Done()
	stop()
	return exitOK
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

func envInt(getenv func(string) string, key string, def int) (int, error) {
	v := getenv(key)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, &configError{Var: key, Value: v, Allowed: "a whole number"}
	}
	return n, nil
}
