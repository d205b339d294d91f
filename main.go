// Command courier takes messages over HTTP, keeps them in a bounded queue
// and delivers them to messageapp through a circuit breaker, telling clients
// to back off when the queue is full. See README.md and docs/.
package main

// main.go wires courier together: main, run, the logger, the HTTP server
// and the shutdown sequence.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/facebookgo/clock"
	"github.com/rs/zerolog"
)

func main() {
	ctx := stopSignals()
	os.Exit(run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr))
}

// stopSignals returns a context cancelled by the first SIGINT or SIGTERM,
// which starts the drain, and carrying a channel closed by the second: an
// operator who presses Ctrl-C again does not want to wait for the drain.
//
// It also ignores SIGPIPE: when courier's log goes into a pipe whose reader
// has gone (`go run . | tee courier.log` and a Ctrl-C, which stops tee as
// well), Go would otherwise kill the process at its next log line, in the
// middle of the drain, before the spool is written. Ignored, the write fails
// with EPIPE and the shutdown goes on (os/signal: "SIGPIPE").
func stopSignals() context.Context {
	signal.Ignore(syscall.SIGPIPE)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithCancel(context.Background())
	hurry := make(chan struct{})
	go func() { // lives as long as the process
		<-sigs
		cancel()
		<-sigs
		close(hurry)
	}()
	return withHurry(ctx, hurry)
}

// hurryKey is the context key of the channel that cuts a drain short.
type hurryKey struct{}

// withHurry returns ctx carrying hurry: once it is closed, a courier that is
// draining stops at once (still listing what is undelivered).
func withHurry(ctx context.Context, hurry <-chan struct{}) context.Context {
	return context.WithValue(ctx, hurryKey{}, hurry)
}

// hurryOf is the channel withHurry put in ctx, or nil (never closed).
func hurryOf(ctx context.Context) <-chan struct{} {
	h, _ := ctx.Value(hurryKey{}).(<-chan struct{})
	return h
}

func init() {
	// Millisecond timestamps: courier's deadline is a second, and a log
	// that cannot order what happened within one is no help. zerolog keeps
	// this setting in a package variable; it is set once, here.
	zerolog.TimeFieldFormat = "2006-01-02T15:04:05.000Z07:00"
}

// Exit codes of run.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2 // bad configuration or arguments
)

// run is the whole program: it returns when ctx is cancelled and shutdown
// has finished, or when courier cannot start.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) > 1 {
		if code, done := runCommand(ctx, args, getenv, stdout, stderr); done {
			return code
		}
	}
	cfg, err := loadConfig(getenv)
	if err == nil {
		err = cfg.checkSpoolDir()
	}
	if err != nil {
		for line := range strings.Lines(err.Error()) {
			fmt.Fprintf(stderr, "courier: %s\n", strings.TrimSuffix(line, "\n"))
		}
		return exitUsage
	}

	log := newLogger(cfg, stdout)
	// What keeps courier from starting goes to stderr, as configuration
	// errors do; once it runs, everything is in the log on stdout.
	startFailed := func(err error) int {
		errLog := newLogger(cfg, stderr)
		errLog.Error().Str("event", "start_failed").Err(err).Msg("courier could not start")
		return exitFailed
	}
	// Listen before anything else starts: a port in use is one clear line.
	ln, err := listen(&cfg)
	if err != nil {
		return startFailed(err)
	}
	if cfg.MessageappURL == "" {
		sim, url, stopSim, err := startEmbeddedSimulator(log)
		if err != nil {
			ln.Close()
			if cfg.adminListener != nil {
				cfg.adminListener.Close()
			}
			return startFailed(err)
		}
		defer stopSim()
		cfg.MessageappURL = url
		cfg.simulator = sim
	}
	if err := serve(ctx, cfg, ln, log); err != nil {
		var corrupt *spoolError
		var notStarted *startError
		switch {
		case errors.As(err, &corrupt):
			fmt.Fprintf(stderr, "courier: %v\n", corrupt)
			return exitUsage
		case errors.As(err, &notStarted):
			return startFailed(notStarted.err)
		}
		log.Error().Str("event", "failed").Err(err).Msg("courier stopped on an error")
		return exitFailed
	}
	return exitOK
}

// runCommand runs the command args name, other than serving, and reports
// whether it did; serving is left to run.
func runCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) (code int, done bool) {
	if isHelp(args[1]) {
		fmt.Fprint(stdout, usage())
		return exitOK, true
	}
	switch args[1] {
	case "serve":
		return serveArgs(args[2:], stdout, stderr)
	case "messageapp":
		return runMessageapp(ctx, args[2:], getenv, stdout, stderr), true
	case "load":
		return runLoad(ctx, args[2:], stdout, stderr), true
	case "demo":
		return runDemo(ctx, args[2:], stdout, stderr), true
	case "healthcheck":
		return runHealthcheck(ctx, args[2:], getenv, stderr), true
	}
	if strings.HasPrefix(args[1], "-") {
		fmt.Fprintf(stderr, "courier: unknown flag %q: %s\n", args[1], configuredByEnvironment(args[1:]))
	} else {
		fmt.Fprintf(stderr, "courier: unknown command %q\n", args[1])
	}
	fmt.Fprintln(stderr, "usage: courier [serve | messageapp | load | demo | healthcheck | help] (courier -h says more)")
	return exitUsage, true
}

// serveArgs answers arguments after `courier serve`, which takes none but
// help, and reports whether it did.
func serveArgs(args []string, stdout, stderr io.Writer) (code int, done bool) {
	switch {
	case len(args) == 0:
		return exitOK, false
	case isHelp(args[0]):
		fmt.Fprint(stdout, usage())
		return exitOK, true
	default:
		fmt.Fprintf(stderr, "courier serve: unexpected argument %q: %s\n", args[0], configuredByEnvironment(args))
		return exitUsage, true
	}
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help" || arg == "help"
}

// listen listens on PORT and, when it is set, on ADMIN_ADDR (into cfg),
// closing the first if the second fails.
func listen(cfg *config) (net.Listener, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(cfg.Port)))
	if err != nil {
		return nil, fmt.Errorf("listen on port %d: %w", cfg.Port, err)
	}
	if cfg.AdminAddr != "" {
		if cfg.adminListener, err = net.Listen("tcp", cfg.AdminAddr); err != nil {
			ln.Close()
			return nil, fmt.Errorf("listen on ADMIN_ADDR %s: %w", cfg.AdminAddr, err)
		}
	}
	return ln, nil
}

// configuredByEnvironment answers arguments given to courier serve: it is
// configured by environment variables, and when args start with a flag
// that names one, the answer says which, as --port 1 or --log-level=debug
// becomes PORT=1 or LOG_LEVEL=debug.
func configuredByEnvironment(args []string) string {
	const hint = "courier serve is configured by environment variables, not arguments"
	flag, value, hasValue := strings.Cut(args[0], "=")
	name := strings.ToUpper(strings.ReplaceAll(strings.TrimLeft(flag, "-"), "-", "_"))
	if !hasValue && len(args) > 1 {
		value = args[1]
	}
	t := reflect.TypeFor[config]()
	for i := range t.NumField() {
		if strings.HasPrefix(flag, "-") && t.Field(i).Tag.Get("env") == name {
			return fmt.Sprintf("%s: set %s=%s instead (courier -h lists them)", hint, name, cmp.Or(value, "..."))
		}
	}
	return hint + " (courier -h lists them)"
}

// usage is what `courier -h` prints: the commands, then the service's
// environment variables with their defaults, from config's own tags.
func usage() string {
	var b strings.Builder
	b.WriteString(`courier takes messages over HTTP, keeps them in a bounded queue and
delivers them to messageapp through a circuit breaker.

usage:
  courier [serve]      run the service, configured by the environment below
  courier messageapp   run the messageapp simulator (courier messageapp -h)
  courier load         send load to a running courier (courier load -h)
  courier demo         the whole story, scripted, in about 15 seconds
  courier demo -without breaker|timeout|backpressure
                       one overload episode twice, that pattern on and off, side by side
  courier healthcheck  exit 0 if the courier on PORT here answers /healthz (for containers)
  courier help         this text

environment of courier serve (empty counts as unset):
`)
	t := reflect.TypeFor[config]()
	for i := range t.NumField() {
		f := t.Field(i)
		name := f.Tag.Get("env")
		if name == "" {
			continue
		}
		def := f.Tag.Get("envDefault")
		if def == "" {
			def = "unset"
		}
		fmt.Fprintf(&b, "  %s (default %s)\n      %s; %s\n", name, def, f.Tag.Get("help"), f.Tag.Get("allowed"))
	}
	return b.String()
}

// newLogger builds the one logger everything else gets a child of.
func newLogger(cfg config, out io.Writer) zerolog.Logger {
	level, _ := zerolog.ParseLevel(cfg.LogLevel) // validated, and lowered, in loadConfig
	if cfg.LogFormat == "console" {
		// Colours for a person at a terminal; a file or pipe gets plain text.
		out = zerolog.ConsoleWriter{Out: out, TimeFormat: "15:04:05.000", NoColor: !isTerminal(out)}
	}
	return zerolog.New(out).Level(level).With().Timestamp().Logger()
}

// serve runs courier on ln until ctx is done, then shuts it down in order.
func serve(ctx context.Context, cfg config, ln net.Listener, log zerolog.Logger) error {
	in, err := start(ctx, cfg, ln, log)
	if err != nil {
		ln.Close()
		return &startError{err}
	}
	var runErr error
	select {
	case <-ctx.Done():
	case err := <-in.serveErr:
		runErr = fmt.Errorf("http server: %w", err)
		in.serveErr <- err // for shutdown, which waits for it
	}
	return errors.Join(runErr, in.shutdown(hurryOf(ctx)))
}

// startError is why serve could not start courier.
type startError struct{ err error }

func (e *startError) Error() string { return e.err.Error() }
func (e *startError) Unwrap() error { return e.err }

// instance is a running courier: what shutdown stops, in order.
type instance struct {
	cfg         config
	log         zerolog.Logger
	svc         *service
	client      *messageappClient
	senders     *Senders
	stopSenders context.CancelFunc
	stopHub     chan struct{}
	srv         *http.Server
	serveErr    chan error   // Serve's result, once
	adminSrv    *http.Server // on ADMIN_ADDR, or nil
	adminErr    chan error   // its Serve's result, once
}

// start builds courier, takes back what a spool kept, and starts its
// senders, its event hub and its HTTP server on ln.
func start(ctx context.Context, cfg config, ln net.Listener, log zerolog.Logger) (*instance, error) {
	svc := newService(cfg, log)
	if cfg.SpoolDir != "" {
		if err := svc.restore(spoolPath(cfg.SpoolDir, cfg.Replica), log); err != nil {
			return nil, err
		}
	}
	client := newMessageappClient(cfg.MessageappURL, cfg.MessageappTimeout, cfg.Senders)
	in := &instance{cfg: cfg, log: log, svc: svc, client: client,
		senders:  NewSenders(svc.limiter, cfg.MaxAttempts, newRetryBackoff(cfg.RetryInitial, cfg.RetryMax), svc.queue, svc.breaker, svc.store, client, log, svc.obs),
		stopHub:  make(chan struct{}),
		srv:      newHTTPServer(svc.routes(), cmp.Or(cfg.forTests.serverLimits, defaultServerLimits), log),
		serveErr: make(chan error, 1)}

	// Senders outlive the signal: they stop at the drain deadline.
	var sendCtx context.Context
	sendCtx, in.stopSenders = context.WithCancel(context.WithoutCancel(ctx))
	in.senders.Start(sendCtx)
	go svc.hub.Run(in.stopHub)
	// Both listeners share MAX_CONNECTIONS.
	conns := newConnLimit(cfg.MaxConnections, time.Now)
	in.srv.ConnState = conns.track
	dashboardAddr := ln.Addr()
	if cfg.adminListener != nil {
		in.adminSrv = newHTTPServer(in.srv.Handler, cmp.Or(cfg.forTests.serverLimits, defaultServerLimits), log)
		in.adminSrv.BaseContext, in.adminSrv.ConnState = adminBaseContext, conns.track
		in.adminErr = make(chan error, 1)
		dashboardAddr = cfg.adminListener.Addr()
	}
	logMemoryBudget(log, cfg, readMemoryLimits(os.ReadFile))
	_, port, _ := net.SplitHostPort(dashboardAddr.String())
	dashboard := "http://localhost:" + port + "/"
	ev := log.Info().Str("event", "listening").Str("addr", ln.Addr().String()).
		Str("dashboard", dashboard).
		Str("messageapp_url", redactURL(cfg.MessageappURL)).Int("queue_max_size", cfg.QueueMaxSize).
		Int("queue_recovery_threshold", cfg.QueueRecovery).Int("senders", cfg.Senders).Str("concurrency_limit", cfg.ConcurrencyLimit)
	if cfg.Replica != "" {
		ev = ev.Str("replica", cfg.Replica)
	}
	if cfg.adminListener != nil {
		ev = ev.Str("admin_addr", cfg.adminListener.Addr().String())
	}
	ev.Bool("tokens", cfg.clients != nil).Msg("courier is listening; the live dashboard is at " + dashboard)
	warnIfOpen(log, cfg, ln.Addr())
	// Served once the start-up lines are written: whoever gets an answer
	// (a test polling /healthz, an operator reading the log) finds them.
	go func() { in.serveErr <- in.srv.Serve(ln) }()
	if in.adminSrv != nil {
		go func() { in.adminErr <- in.adminSrv.Serve(cfg.adminListener) }()
	}
	return in, nil
}

// restore takes back the messages of the spool at path, if there is one,
// into the store and the queue, and only then removes the file: a crash
// before that leaves it to be read again, and none after it can make it be
// read twice. Called before the senders and the HTTP server start.
func (s *service) restore(path string, log zerolog.Logger) error {
	recs, err := readSpool(path)
	if err != nil || len(recs) == 0 {
		return err
	}
	ds, err := s.store.Restore(recs)
	if err != nil {
		return fmt.Errorf("restore the spool %s: %w", path, err)
	}
	s.queue.Restore(ds)
	if err := removeSpool(path); err != nil {
		return fmt.Errorf("read the spool %s but could not remove it, so its messages would be delivered again at the next start: %w", path, err)
	}
	log.Info().Str("event", "restored").Str("file", path).Int("count", len(ds)).
		Msg("took back the messages the last shutdown spooled; they are queued again under their own ids")
	return nil
}

// warnIfOpen warns, once, that anyone who reaches addr reads every
// message, when no API_TOKENS guard it and it is not loopback only.
func warnIfOpen(log zerolog.Logger, cfg config, addr net.Addr) {
	if tcp, ok := addr.(*net.TCPAddr); cfg.clients != nil || (ok && tcp.IP.IsLoopback()) {
		return
	}
	log.Warn().Str("event", "open_access").Str("addr", addr.String()).
		Msg("API_TOKENS is unset: anyone who can reach this port can post, read and list every message; set API_TOKENS (README: Security)")
}

// newHTTPServer serves h within limits, its own complaints (bad TLS, accept
// errors) going to the structured log instead of stderr.
func newHTTPServer(h http.Handler, limits serverLimits, log zerolog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: limits.ReadHeader,
		ReadTimeout:       limits.Read,
		WriteTimeout:      limits.Write,
		IdleTimeout:       limits.Idle,
		MaxHeaderBytes:    limits.MaxHeaderBytes,
		ErrorLog:          stdlog.New(logWriter{log.With().Str("component", "http").Logger()}, "", 0),
	}
}

// shutdown stops courier in order: refuse new messages, let the senders
// drain until SHUTDOWN_TIMEOUT (or until hurry closes), end the event
// streams and the HTTP server, and log every message left undelivered.
func (in *instance) shutdown(hurry <-chan struct{}) error {
	svc, log := in.svc, in.log
	defer in.client.Close()
	svc.shuttingDown.Store(true)
	svc.queue.Close()
	log.Info().Str("event", "shutting_down").Int("queued", svc.queue.Depth()).
		Int64("shutdown_timeout_ms", in.cfg.ShutdownTimeout.Milliseconds()).Msg("shutting down: draining the queue")

	hurried := in.drain(hurry)
	svc.queue.Stop() // the senders are gone: nothing more is due

	close(in.stopHub) // event streams end first
	<-svc.hub.done
	err := in.stopHTTP(hurried, hurry)
	undelivered, spooled := in.keepUndelivered()
	counts := svc.store.Counts()
	stopped := log.Info().Str("event", "stopped").Int("undelivered", undelivered).Int("spooled", spooled).Int64("accepted", counts.Accepted)
	for _, r := range statusRules {
		if r.final {
			stopped = stopped.Int64(string(r.status), counts.Of(r.status))
		}
	}
	stopped.Msg("courier stopped")
	return err
}

// stopHTTP shuts the HTTP servers down, giving the requests in flight a
// last moment to finish (none if hurried, or once hurry closes); POSTs
// among them were already answered 503 shutting_down.
func (in *instance) stopHTTP(hurried bool, hurry <-chan struct{}) error {
	httpCtx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if hurried {
		cancel()
	}
	go func() { // a second signal during that moment cuts it short too
		select {
		case <-hurry:
			cancel()
		case <-httpCtx.Done():
		}
	}()
	if err := in.srv.Shutdown(httpCtx); err != nil {
		_ = in.srv.Close()
	}
	var err error
	if serveErr := <-in.serveErr; !errors.Is(serveErr, http.ErrServerClosed) {
		err = fmt.Errorf("http server: %w", serveErr)
	}
	if in.adminSrv != nil {
		if err := in.adminSrv.Shutdown(httpCtx); err != nil {
			_ = in.adminSrv.Close()
		}
		if serveErr := <-in.adminErr; !errors.Is(serveErr, http.ErrServerClosed) {
			err = errors.Join(err, fmt.Errorf("admin http server: %w", serveErr))
		}
	}
	return err
}

// keepUndelivered spools the messages shutdown leaves undelivered
// (SPOOL_DIR), or else logs each of them; it returns how many there are
// and how many were spooled.
func (in *instance) keepUndelivered() (undelivered, spooled int) {
	svc, log := in.svc, in.log
	messages := svc.store.Unfinished()
	if in.cfg.SpoolDir != "" && len(messages) > 0 {
		path := spoolPath(in.cfg.SpoolDir, in.cfg.Replica)
		if err := writeSpool(path, svc.store.Pending(), time.Now()); err != nil {
			log.Error().Str("event", "spool_failed").Str("file", path).Err(err).
				Msg("could not spool the undelivered messages for the next start; listing them instead")
		} else {
			spooled = len(messages)
			log.Info().Str("event", "spooled").Str("file", path).Int("count", spooled).
				Msg("kept the undelivered messages for the next start")
		}
	}
	if spooled == 0 {
		for _, m := range messages {
			log.Warn().Str("event", "undelivered").Str("id", m.ID).Str("status", string(m.Status)).
				Int("attempts", m.Attempts).Msg("message not delivered before shutdown")
		}
	}
	return len(messages), spooled
}

// drain waits for the senders to finish what is queued, at most until
// SHUTDOWN_TIMEOUT or until hurry closes; calls still in flight then are
// abandoned. It reports whether it was hurried.
func (in *instance) drain(hurry <-chan struct{}) (hurried bool) {
	defer in.stopSenders()
	drained := make(chan struct{})
	go func() { in.senders.Wait(); close(drained) }()
	timer := time.NewTimer(in.cfg.ShutdownTimeout)
	defer timer.Stop()
	select {
	case <-drained:
		return false
	case <-timer.C:
	case <-hurry:
		hurried = true
		in.log.Warn().Str("event", "drain_cut_short").Int("queued", in.svc.queue.Depth()).
			Msg("asked again to stop: not waiting for the drain")
	}
	in.stopSenders()
	<-drained
	return hurried
}

// newService builds courier's store, queue, breaker, metrics and event
// hub. Metrics and the hub read state through s.snapshot and hear
// transitions and attempts as observers.
func newService(cfg config, log zerolog.Logger) *service {
	s := &service{log: log.With().Str("component", "http").Logger(), store: NewStore(cfg.MessagesRetained, time.Now),
		senders: cfg.Senders, replica: cfg.Replica, ids: NewIDs(cfg.Replica), clients: cfg.clients, adminSplit: cfg.AdminAddr != "", shuttingDown: new(atomic.Bool), shutdownWait: clampSeconds(cfg.ShutdownTimeout)}
	s.store.CapBytes(int64(cfg.RetainedBytes))
	s.metrics = NewMetrics(cfg.MessageappTimeout, s.snapshot)
	s.hub = NewHub(cmp.Or(cfg.forTests.snapEvery, time.Second), s.snapshot)
	s.hub.messageapp = cfg.simulator
	obs := observers{s.metrics, s.hub}
	if cfg.observer != nil {
		obs = append(obs, cfg.observer)
	}
	s.obs = obs
	s.queue = NewQueue(cfg.QueueMaxSize, cfg.QueueRecovery, log, s.obs, time.Now)
	s.breaker = NewBreaker(cfg.BreakerThreshold, cfg.BackoffInitial, cfg.BackoffMax, clock.New(), log, s.obs)
	s.limiter = NewLimiter(cfg.Senders, cfg.ConcurrencyLimit == "adaptive", defaultLimiterTuning, log, s.obs)
	return s
}

// clampSeconds turns d into whole seconds for Retry-After, in 1..60.
func clampSeconds(d time.Duration) int {
	return max(1, min(60, int(math.Ceil(d.Seconds()))))
}

// isTerminal reports whether w is a character device, such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}

// logWriter lets the standard library's logger write into zerolog.
type logWriter struct{ log zerolog.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.log.Warn().Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}
