package main

// config.go turns environment variables into one validated config. Nothing
// else in courier reads the environment.

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/rs/zerolog"
)

// config is every setting courier reads, parsed and checked once at start.
// The `env` tag names the variable, `envDefault` its default, `help` what it
// does and `allowed` the sentence a user sees when the value is refused.
type config struct {
	Port              int           `env:"PORT" envDefault:"9001" allowed:"a TCP port, 0..65535" help:"HTTP port, on every interface"`
	MessageappURL     string        `env:"MESSAGEAPP_URL" allowed:"an absolute http:// or https:// URL, e.g. http://messageapp:3000/message, or unset for the built-in simulator" help:"messageapp's send endpoint"`
	MessageappTimeout time.Duration `env:"MESSAGEAPP_TIMEOUT" envDefault:"1s" allowed:"a Go duration from 1ms to 5m, e.g. 1s" help:"deadline of every call to messageapp"`
	QueueMaxSize      int           `env:"QUEUE_MAX_SIZE" envDefault:"10" allowed:"a whole number from 1 to 1000000" help:"queue depth at which enqueueing is disabled"`
	QueueRecovery     int           `env:"QUEUE_RECOVERY_THRESHOLD" envDefault:"5" allowed:"a whole number from 0 to QUEUE_MAX_SIZE-1" help:"depth at or below which enqueueing is enabled again"`
	Senders           int           `env:"SENDERS" envDefault:"64" allowed:"a whole number from 1 to 1024" help:"the most concurrent calls to messageapp: the ceiling of the concurrency limit"`
	ConcurrencyLimit  string        `env:"CONCURRENCY_LIMIT" envDefault:"adaptive" allowed:"adaptive or fixed" help:"adaptive: the calls in flight to messageapp follow its latency and failures, between 1 and SENDERS; fixed: always SENDERS"`
	MaxAttempts       int           `env:"MAX_ATTEMPTS" envDefault:"3" allowed:"a whole number from 1 to 100" help:"attempts per message, the first included, for errors and unreachability"`
	BreakerThreshold  int           `env:"BREAKER_THRESHOLD" envDefault:"5" allowed:"a whole number from 1 to 10000" help:"consecutive failures that open the circuit"`
	BackoffInitial    time.Duration `env:"BREAKER_BACKOFF_INITIAL" envDefault:"500ms" allowed:"a Go duration from 1ms to 10m, e.g. 500ms" help:"first open period before a probe"`
	BackoffMax        time.Duration `env:"BREAKER_BACKOFF_MAX" envDefault:"10s" allowed:"a Go duration from BREAKER_BACKOFF_INITIAL to 1h, e.g. 10s" help:"longest open period (they double up to it)"`
	RetryInitial      time.Duration `env:"RETRY_BACKOFF_INITIAL" envDefault:"100ms" allowed:"a Go duration from 1ms to 1m, e.g. 100ms" help:"first wait before a message's next attempt (with jitter, doubling)"`
	RetryMax          time.Duration `env:"RETRY_BACKOFF_MAX" envDefault:"5s" allowed:"a Go duration from RETRY_BACKOFF_INITIAL to 10m, e.g. 5s" help:"longest wait between attempts of a message, messageapp's Retry-After included"`
	MessagesRetained  int           `env:"MESSAGES_RETAINED" envDefault:"10000" allowed:"a whole number from 0 to 10000000" help:"finished messages kept for GET"`
	RetainedBytes     byteCount     `env:"MESSAGES_RETAINED_BYTES" envDefault:"32MiB" allowed:"a size from 0 to 1TiB: bytes, or a whole number of KiB, MiB or GiB, e.g. 32MiB" help:"and at most this much memory of them (oldest evicted first)"`
	MaxConnections    int           `env:"MAX_CONNECTIONS" envDefault:"1024" allowed:"a whole number from 1 to 1000000" help:"open client connections; one arriving at the limit displaces the connection idle longest"`
	ShutdownTimeout   time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"10s" allowed:"a Go duration from 0s to 10m, e.g. 10s" help:"how long shutdown may spend draining"`
	LogLevel          string        `env:"LOG_LEVEL" envDefault:"info" allowed:"one of trace, debug, info, warn, error, fatal, panic, disabled (in any case)" help:"least level logged"`
	LogFormat         string        `env:"LOG_FORMAT" envDefault:"json" allowed:"json or console (in any case)" help:"json lines, or console for people"`
	APITokens         string        `env:"API_TOKENS" allowed:"comma-separated bearer tokens of at least 16 characters each (letters, digits, -._~+/ and = at the end), or unset for open access" help:"each token is one client: /messages then needs Authorization: Bearer <token>, and a client sees only its own messages"`
	APITokensFile     string        `env:"API_TOKENS_FILE" allowed:"a readable file of tokens as API_TOKENS takes them, one per line (# comments and blank lines skipped), or unset; not with API_TOKENS" help:"API_TOKENS from a file (a mounted secret)"`
	AdminAddr         string        `env:"ADMIN_ADDR" allowed:"host:port, e.g. 127.0.0.1:9002, or unset" help:"a second listener for /status, /metrics, /events, the dashboard and /openapi.yaml, which then leave PORT"`
	SpoolDir          string        `env:"SPOOL_DIR" allowed:"a directory courier can create files in (made if missing), one per replica, or unset" help:"where shutdown keeps undelivered messages for the next start"`
	Replica           string        `env:"REPLICA" allowed:"1 to 32 lowercase letters or digits (a server name in haproxy.cfg: c1, c2, c3), or unset" help:"this replica's name behind HAProxy; starts its message ids"`

	// clients are the bearer tokens of API_TOKENS or API_TOKENS_FILE;
	// nil means open access.
	clients *Clients

	// adminListener is ADMIN_ADDR's, listened on by run before anything
	// starts, like PORT's.
	adminListener net.Listener

	// observer hears what courier does, besides metrics and the
	// dashboard: the demo's watcher. Not from the environment.
	observer Observer

	// simulator is the built-in simulator, whose report the dashboard
	// shows; nil for a real messageapp. Set by run and the demo.
	simulator SelfReporter

	// forTests is what only tests change; production keeps its zero.
	forTests testSettings
}

// testSettings are settings no variable reaches, which tests shorten. The
// zero value, which production keeps, means the defaults.
type testSettings struct {
	serverLimits serverLimits  // the HTTP server's limits; zero: defaultServerLimits
	snapEvery    time.Duration // the dashboard's snapshot interval; zero: one second
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

// configError says which variable is wrong, what it held and what would do.
// Default says the value was not set but came from the default, which a
// user who never wrote the variable needs to be told.
type configError struct {
	Var     string
	Value   string
	Allowed string
	Default bool
}

func (e *configError) Error() string {
	if e.Default {
		return fmt.Sprintf("invalid configuration: %s is not set and its default %q does not fit: must be %s", e.Var, e.Value, e.Allowed)
	}
	return fmt.Sprintf("invalid configuration: %s=%q: must be %s", e.Var, e.Value, e.Allowed)
}

// configErrors is every problem found, one per variable, one line each.
type configErrors []*configError

func (es configErrors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// loadConfig parses and validates every variable through getenv. An empty
// value counts as unset, so `PORT=` means the default. Every problem is
// reported, as configErrors.
func loadConfig(getenv func(string) string) (config, error) {
	t := reflect.TypeFor[config]()
	environ := make(map[string]string)
	durations := make(map[string]bool) // the variables that hold a time.Duration
	for i := range t.NumField() {
		name := t.Field(i).Tag.Get("env")
		if v := getenv(name); v != "" {
			environ[name] = v
		}
		durations[name] = t.Field(i).Type == reflect.TypeFor[time.Duration]()
	}
	var cfg config
	var errs configErrors
	if err := env.ParseWithOptions(&cfg, env.Options{Environment: environ}); err != nil {
		// Report what does not parse, then check the rest as if those
		// were at their defaults, so one typo does not hide another.
		errs = parseProblems(err, t, environ)
		for _, e := range errs {
			delete(environ, e.Var)
		}
		cfg = config{}
		if err := env.ParseWithOptions(&cfg, env.Options{Environment: environ}); err != nil {
			return config{}, fmt.Errorf("invalid configuration: %w", err)
		}
	}
	tokens, tokenErr := readTokens(cfg.APITokens, cfg.APITokensFile, os.ReadFile)
	if tokenErr != nil {
		errs = append(errs, tokenErr)
	}
	cfg.clients = NewClients(tokens)
	for _, e := range cfg.validate() {
		if !slices.ContainsFunc(errs, func(p *configError) bool { return p.Var == e.Var }) {
			typed, set := environ[e.Var]
			if set && durations[e.Var] {
				e.Value = typed // as written: 0, not its parsed 0s
			}
			e.Default = !set
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		// In the order the variables are documented.
		order := make(map[string]int, t.NumField())
		for i := range t.NumField() {
			order[t.Field(i).Tag.Get("env")] = i
		}
		slices.SortFunc(errs, func(a, b *configError) int { return order[a.Var] - order[b.Var] })
		return config{}, errs
	}
	// Levels and formats are taken in any case: LOG_FORMAT=JSON as LOG_LEVEL=INFO.
	cfg.LogLevel, cfg.LogFormat = strings.ToLower(cfg.LogLevel), strings.ToLower(cfg.LogFormat)
	cfg.ConcurrencyLimit = strings.ToLower(cfg.ConcurrencyLimit)
	return cfg, nil
}

// presetConfig is the config loadConfig gives when the environment holds
// only vars (name to value), for the lab's couriers: every other variable
// is at its default and every rule applies. It panics if vars do not
// validate, a mistake in the code that the demo's tests catch.
func presetConfig(vars map[string]string) config {
	cfg, err := loadConfig(func(name string) string { return vars[name] })
	if err != nil {
		panic("courier's preset configuration does not load: " + err.Error())
	}
	return cfg
}

// parseProblems maps the env library's errors, which name struct fields,
// back to the variables the user wrote.
func parseProblems(err error, t reflect.Type, environ map[string]string) configErrors {
	var errs configErrors
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		agg.Errors = []error{err}
	}
	for _, err := range agg.Errors {
		var pe env.ParseError
		if errors.As(err, &pe) {
			if f, ok := t.FieldByName(pe.Name); ok {
				name := f.Tag.Get("env")
				errs = append(errs, &configError{Var: name, Value: environ[name], Allowed: f.Tag.Get("allowed")})
			}
		}
	}
	return errs
}

// validate checks ranges and the rules between variables, and returns a
// problem for each variable that breaks one.
func (c config) validate() []*configError {
	var v validation
	checkRanges(&v, []rangeRule[int]{
		{"Port", c.Port, 0, 65535, ""},
		{"QueueMaxSize", c.QueueMaxSize, 1, 1_000_000, ""},
		{"QueueRecovery", c.QueueRecovery, 0, c.QueueMaxSize - 1, fmt.Sprintf("QUEUE_MAX_SIZE is %d", c.QueueMaxSize)},
		{"Senders", c.Senders, 1, 1024, ""},
		{"MaxAttempts", c.MaxAttempts, 1, 100, ""},
		{"BreakerThreshold", c.BreakerThreshold, 1, 10_000, ""},
		{"MessagesRetained", c.MessagesRetained, 0, 10_000_000, ""},
		{"MaxConnections", c.MaxConnections, 1, 1_000_000, ""},
	})
	checkRanges(&v, []rangeRule[time.Duration]{
		{"MessageappTimeout", c.MessageappTimeout, time.Millisecond, 5 * time.Minute, ""},
		{"BackoffInitial", c.BackoffInitial, time.Millisecond, 10 * time.Minute, ""},
		{"BackoffMax", c.BackoffMax, c.BackoffInitial, time.Hour, fmt.Sprintf("BREAKER_BACKOFF_INITIAL is %s", c.BackoffInitial)},
		{"RetryInitial", c.RetryInitial, time.Millisecond, time.Minute, ""},
		{"RetryMax", c.RetryMax, c.RetryInitial, 10 * time.Minute, fmt.Sprintf("RETRY_BACKOFF_INITIAL is %s", c.RetryInitial)},
		{"ShutdownTimeout", c.ShutdownTimeout, 0, 10 * time.Minute, ""},
	})
	// Unset means "start the built-in simulator".
	v.check(c.MessageappURL == "" || validMessageappURL(c.MessageappURL), "MessageappURL", redactURL(c.MessageappURL))
	_, err := zerolog.ParseLevel(strings.ToLower(c.LogLevel))
	v.check(err == nil, "LogLevel", c.LogLevel)
	v.check(strings.EqualFold(c.ConcurrencyLimit, "adaptive") || strings.EqualFold(c.ConcurrencyLimit, "fixed"), "ConcurrencyLimit", c.ConcurrencyLimit)
	v.check(strings.EqualFold(c.LogFormat, "json") || strings.EqualFold(c.LogFormat, "console"), "LogFormat", c.LogFormat)
	v.check(c.AdminAddr == "" || validAddr(c.AdminAddr), "AdminAddr", c.AdminAddr)
	v.check(c.Replica == "" || validReplica(c.Replica), "Replica", c.Replica)
	return v.errs
}

// validation collects validate's problems, one per variable.
type validation struct{ errs []*configError }

// bad reports whether variable name already has a problem.
func (v *validation) bad(name string) bool {
	return slices.ContainsFunc(v.errs, func(e *configError) bool { return e.Var == name })
}

// problem records that field's value does not fit its allowed tag, with
// the other variable a limit comes from (relative), if any.
func (v *validation) problem(field string, value any, relative string) {
	f, _ := reflect.TypeFor[config]().FieldByName(field)
	allowed := f.Tag.Get("allowed")
	if relative != "" {
		allowed += " (" + relative + ")"
	}
	v.errs = append(v.errs, &configError{Var: f.Tag.Get("env"), Value: fmt.Sprint(value), Allowed: allowed})
}

// check records a problem with field's value unless ok.
func (v *validation) check(ok bool, field string, value any) {
	if !ok {
		v.problem(field, value, "")
	}
}

// rangeRule is a variable's range: its field, value and bounds, and the
// other variable a bound comes from, named first ("QUEUE_MAX_SIZE is 10").
type rangeRule[T cmp.Ordered] struct {
	field    string
	v        T
	min, max T
	relative string
}

// checkRanges records a problem for each value outside its range; a bound
// taken from a variable that is itself wrong is not checked, since that
// variable is the problem to fix.
func checkRanges[T cmp.Ordered](v *validation, rules []rangeRule[T]) {
	for _, r := range rules {
		if r.relative != "" && v.bad(strings.Fields(r.relative)[0]) {
			continue
		}
		if r.v < r.min || r.v > r.max {
			v.problem(r.field, r.v, r.relative)
		}
	}
}

// validMessageappURL accepts an absolute http:// or https:// URL.
func validMessageappURL(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// validAddr accepts host:port with a valid port.
func validAddr(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	return err == nil && validPort(port)
}

// checkSpoolDir checks what loadConfig leaves alone, since it touches the
// filesystem: that courier can keep a spool in SPOOL_DIR, if set (making
// the directory if it is missing). run calls it before starting anything.
func (c config) checkSpoolDir() error {
	if c.SpoolDir == "" {
		return nil
	}
	if err := checkSpoolDir(c.SpoolDir); err != nil {
		f, _ := reflect.TypeFor[config]().FieldByName("SpoolDir")
		return &configError{Var: "SPOOL_DIR", Value: c.SpoolDir, Allowed: f.Tag.Get("allowed") + " (" + err.Error() + ")"}
	}
	return nil
}

// validReplica accepts 1..32 lowercase letters and digits: a replica's name
// starts its message ids, so it must not hold the "-" that ends it.
func validReplica(name string) bool {
	if len(name) > 32 {
		return false
	}
	for _, r := range name {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') {
			return false
		}
	}
	return name != ""
}

// redactURL is raw fit to log or print: its user information (user and
// password) and its query (where API keys go) replaced by REDACTED, its
// fragment dropped. A URL without "@" or "?" holds neither and is shown
// whole; one that has them but does not parse is not shown at all, since
// where a secret starts and ends in it is anyone's guess.
func redactURL(raw string) string {
	if !strings.ContainsAny(raw, "@?") {
		return raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable; not shown, since it may hold a secret)"
	}
	if u.Opaque != "" { // no "//": all after the scheme may be a secret
		return u.Scheme + ":REDACTED"
	}
	if u.User != nil {
		u.User = url.User("REDACTED")
	}
	if u.RawQuery != "" || u.ForceQuery {
		u.RawQuery, u.ForceQuery = "REDACTED", false
	}
	u.Fragment, u.RawFragment = "", ""
	return u.String()
}

// validPort accepts a TCP port number, 0..65535 (0: any free port).
func validPort(port string) bool {
	n, err := strconv.Atoi(port)
	return err == nil && n >= 0 && n <= 65535
}

// minTokenLen is the shortest token courier takes: 16 characters of the
// b64token alphabet carry at least 96 bits when drawn at random (e.g.
// `openssl rand -base64 24`), and a short word would be guessed.
const minTokenLen = 16

// readTokens reads the clients' tokens from API_TOKENS (comma-separated)
// or from the file API_TOKENS_FILE names (one a line), never both. Its
// error names the variable and the entry, never a token: a config error
// goes to stderr.
func readTokens(list, file string, readFile func(string) ([]byte, error)) ([]string, *configError) {
	name, entries := "API_TOKENS", strings.Split(list, ",")
	allowed := func(n string) string {
		f, _ := reflect.TypeFor[config]().FieldByName(n)
		return f.Tag.Get("allowed")
	}
	switch {
	case list != "" && file != "":
		return nil, &configError{Var: "API_TOKENS_FILE", Value: file, Allowed: allowed("APITokensFile")}
	case file != "":
		b, err := readFile(file)
		if err != nil {
			return nil, &configError{Var: "API_TOKENS_FILE", Value: file, Allowed: allowed("APITokensFile") + " (" + err.Error() + ")"}
		}
		name, entries = "API_TOKENS_FILE", tokenLines(b)
	case list == "":
		return nil, nil
	}
	var tokens []string
	for i, t := range entries {
		t = strings.TrimSpace(t)
		if t == "" && name == "API_TOKENS" {
			continue // a trailing comma
		}
		if what := tokenProblem(t, tokens); what != "" {
			return nil, &configError{Var: name, Value: fmt.Sprintf("(not shown) token %d of %d %s", i+1, len(entries), what),
				Allowed: allowed("APITokens")}
		}
		tokens = append(tokens, t)
	}
	if len(tokens) == 0 {
		return nil, &configError{Var: name, Value: "(no token)", Allowed: allowed("APITokens")}
	}
	return tokens, nil
}

// tokenLines are the lines of a tokens file that hold one, trimmed: not
// blank, not a # comment.
func tokenLines(b []byte) []string {
	var lines []string
	for line := range strings.Lines(string(b)) {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			lines = append(lines, line)
		}
	}
	return lines
}

// tokenProblem says what is wrong with token t, given the ones before it,
// without showing it, or "" when nothing is.
func tokenProblem(t string, earlier []string) string {
	switch {
	case len(t) < minTokenLen:
		return fmt.Sprintf("is %d characters", len(t))
	case !validToken(t):
		return "holds a character a bearer token may not"
	case slices.Contains(earlier, t):
		return "repeats an earlier one"
	}
	return ""
}

// validToken accepts RFC 6750's b64token: letters, digits, "-._~+/", then
// any number of "=".
func validToken(t string) bool {
	body := strings.TrimRight(t, "=")
	for i := range len(body) {
		c := body[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~+/", c) >= 0) {
			return false
		}
	}
	return body != ""
}

// byteCount is a size in bytes, written as a whole number of B (or no
// unit), KiB, MiB or GiB: MESSAGES_RETAINED_BYTES.
type byteCount int64

// UnmarshalText reads "32MiB", "512KiB", "1048576".
func (b *byteCount) UnmarshalText(text []byte) error {
	s := string(text)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"B", 1}} {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = rest, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<40)/mult {
		return fmt.Errorf("not a size from 0 to 1TiB: %q", text)
	}
	*b = byteCount(n * mult)
	return nil
}
