// Command courier takes messages over HTTP, keeps them in a bounded queue
// and delivers them to messageapp through a circuit breaker, telling clients
// to back off when the queue is full. See README.md and SPEC.md.
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
func stopSignals() context.Context {
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
		switch args[1] {
		case "-h", "-help", "--help", "help":
			fmt.Fprint(stdout, usage())
			return exitOK
		case "serve":
			if len(args) > 2 {
				if h := args[2]; h == "-h" || h == "-help" || h == "--help" || h == "help" {
					fmt.Fprint(stdout, usage())
					return exitOK
				}
				fmt.Fprintf(stderr, "courier serve: unexpected argument %q: it is configured by environment variables (courier -h lists them)\n", args[2])
				return exitUsage
			}
		case "messageapp":
			return runMessageapp(ctx, args[2:], getenv, stdout, stderr)
		case "load":
			return runLoad(ctx, args[2:], stdout, stderr)
		case "demo":
			return runDemo(ctx, args[2:], stdout, stderr)
		default:
			fmt.Fprintf(stderr, "courier: unknown command %q; usage: courier [serve | messageapp | load | demo | help] (courier -h says more)\n", args[1])
			return exitUsage
		}
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		for line := range strings.Lines(err.Error()) {
			fmt.Fprintf(stderr, "courier: %s\n", strings.TrimSuffix(line, "\n"))
		}
		return exitUsage
	}

	log := newLogger(cfg, stdout)
	if err := serve(ctx, cfg, log, nil); err != nil {
		var se *startError
		if errors.As(err, &se) {
			log.Error().Str("event", "start_failed").Err(se.err).Msg("courier could not start")
		} else {
			log.Error().Str("event", "failed").Err(err).Msg("courier stopped on an error")
		}
		return exitFailed
	}
	return exitOK
}

// startError is a failure before courier served anything: nothing was
// accepted, so there is nothing to drain or list.
type startError struct{ err error }

func (e *startError) Error() string { return e.err.Error() }
func (e *startError) Unwrap() error { return e.err }

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
	level, _ := zerolog.ParseLevel(strings.ToLower(cfg.LogLevel)) // validated in loadConfig
	if cfg.LogFormat == "console" {
		out = zerolog.ConsoleWriter{Out: out, TimeFormat: "15:04:05.000"}
	}
	return zerolog.New(out).Level(level).With().Timestamp().Logger()
}

// serve runs the service until ctx is done, then shuts down in order: stop
// accepting, let the senders drain until SHUTDOWN_TIMEOUT, close the HTTP
// server, and log every message left undelivered. If listening is not nil
// it is told the address once courier listens.
func serve(ctx context.Context, cfg config, log zerolog.Logger, listening func(net.Addr)) error {
	// Listen before anything else starts: a port in use is one clear error.
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.listenHost, strconv.Itoa(cfg.Port)))
	if err != nil {
		return &startError{fmt.Errorf("listen on port %d: %w", cfg.Port, err)}
	}
	defer ln.Close() // for the returns below; Serve closes it otherwise
	if cfg.MessageappURL == "" {
		sim := NewSimulator(ProfileFlap, 20*time.Second, 10*time.Second, uint64(time.Now().UnixNano()), log, zerolog.DebugLevel)
		base, stopSim, err := startSimulator("127.0.0.1:0", sim)
		if err != nil {
			return &startError{err}
		}
		defer stopSim()
		cfg.MessageappURL = base + "/message"
		log.Info().Str("event", "simulator_started").Str("url", cfg.MessageappURL).Str("profile", string(ProfileFlap)).
			Str("control", base+"/control").
			Msg("MESSAGEAPP_URL is unset: using the built-in messageapp simulator (healthy 20s, degraded 10s, in turn); " +
				"set MESSAGEAPP_URL to use a real messageapp")
	}
	a := newAPI(cfg, log)
	queue, store, shuttingDown := a.queue, a.store, a.shuttingDown
	client := newMessageappClient(cfg.MessageappURL, cfg.MessageappTimeout, cfg.Senders)
	defer client.Close()
	senders := NewSenders(cfg.Senders, cfg.MaxAttempts, queue, a.breaker, store, client, log, a.obs)

	limits := cmp.Or(cfg.limits, defaultServerLimits)
	srv := &http.Server{
		Handler:           a.routes(),
		ReadHeaderTimeout: limits.ReadHeader,
		ReadTimeout:       limits.Read,
		WriteTimeout:      limits.Write,
		IdleTimeout:       limits.Idle,
		MaxHeaderBytes:    limits.MaxHeaderBytes,
		// The server's own complaints (bad TLS, accept errors) go to the
		// structured log instead of stderr.
		ErrorLog: stdlog.New(logWriter{log.With().Str("component", "http").Logger()}, "", 0),
	}

	// Senders outlive the signal: they stop at the drain deadline.
	sendCtx, stopSenders := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSenders()
	senders.Start(sendCtx)
	stopHub := make(chan struct{})
	go a.hub.Run(stopHub)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	log.Info().Str("event", "listening").Str("addr", ln.Addr().String()).
		Str("dashboard", "http://localhost:"+port+"/").
		Str("messageapp_url", cfg.MessageappURL).Int("queue_max_size", cfg.QueueMaxSize).
		Int("queue_recovery_threshold", cfg.QueueRecovery).Int("senders", cfg.Senders).Str("replica", cfg.Replica).
		Msg("courier is listening; the live dashboard is at the dashboard URL")
	if listening != nil {
		listening(ln.Addr())
	}

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		runErr = fmt.Errorf("http server: %w", err)
		serveErr <- err // for the shutdown below, which waits for it
	}

	deadline := time.Now().Add(cfg.ShutdownTimeout)
	shuttingDown.Store(true)
	queue.Close()
	log.Info().Str("event", "shutting_down").Int("queued", queue.Depth()).
		Int64("shutdown_timeout_ms", cfg.ShutdownTimeout.Milliseconds()).Msg("shutting down: draining the queue")

	drained := make(chan struct{})
	go func() { senders.Wait(); close(drained) }()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	hurried := false
	select {
	case <-drained:
	case <-timer.C:
		stopSenders()
		<-drained
	case <-hurryOf(ctx):
		hurried = true
		log.Warn().Str("event", "drain_cut_short").Int("queued", queue.Depth()).
			Msg("asked again to stop: not waiting for the drain")
		stopSenders()
		<-drained
	}

	// Event streams end, then in-flight requests get a last moment to
	// finish (none if hurried); POSTs among them were already answered 503
	// shutting_down.
	close(stopHub)
	<-a.hub.done
	httpCtx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if hurried {
		cancel()
	}
	if err := srv.Shutdown(httpCtx); err != nil {
		_ = srv.Close()
	}
	if err := <-serveErr; runErr == nil && !errors.Is(err, http.ErrServerClosed) {
		runErr = fmt.Errorf("http server: %w", err)
	}

	undelivered := store.Unfinished()
	for _, m := range undelivered {
		log.Warn().Str("event", "undelivered").Str("id", m.ID).Str("status", string(m.Status)).
			Int("attempts", m.Attempts).Msg("message not delivered before shutdown")
	}
	counts := store.Counts()
	log.Info().Str("event", "stopped").Int("undelivered", len(undelivered)).Int64("accepted", counts.Accepted).
		Int64("sent", counts.Sent).Int64("failed", counts.Failed).Int64("timeout", counts.Timeout).
		Msg("courier stopped")
	return runErr
}

// serverLimits are the HTTP server's timeouts and header limit.
type serverLimits struct {
	ReadHeader, Read, Write, Idle time.Duration
	MaxHeaderBytes                int
}

// defaultServerLimits keep slow or idle clients from holding connections
// for ever: a header has 5 s to arrive and may be 32 KiB, a whole request
// (at most 64 KiB of body) 10 s, an answer 10 s to be written, and an idle
// keep-alive connection lives 60 s.
var defaultServerLimits = serverLimits{ReadHeader: 5 * time.Second, Read: 10 * time.Second,
	Write: 10 * time.Second, Idle: 60 * time.Second, MaxHeaderBytes: 32 << 10}

// newAPI builds the store, queue, breaker, metrics and dashboard hub the
// API serves. Metrics and the hub read state through a.snapshot and hear
// transitions and attempts as observers.
func newAPI(cfg config, log zerolog.Logger) *api {
	a := &api{log: log.With().Str("component", "http").Logger(), store: NewStore(cfg.MessagesRetained, time.Now),
		senders: cfg.Senders, replica: cfg.Replica, shuttingDown: new(atomic.Bool), shutdownWait: clampSeconds(cfg.ShutdownTimeout)}
	a.metrics = NewMetrics(cfg.MessageappTimeout, a.snapshot)
	a.hub = NewHub(cmp.Or(cfg.snapEvery, time.Second), a.snapshot)
	a.obs = observers{a.metrics, a.hub}
	a.queue = NewQueue(cfg.QueueMaxSize, cfg.QueueRecovery, log, a.obs, time.Now)
	a.breaker = NewBreaker(cfg.BreakerThreshold, cfg.BackoffInitial, cfg.BackoffMax, clock.New(), log, a.obs)
	return a
}

// clampSeconds turns d into whole seconds for Retry-After, in 1..60.
func clampSeconds(d time.Duration) int {
	return max(1, min(60, int(math.Ceil(d.Seconds()))))
}

// logWriter lets the standard library's logger write into zerolog.
type logWriter struct{ log zerolog.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.log.Warn().Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}
