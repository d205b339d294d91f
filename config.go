package main

// config.go turns environment variables into one validated config. Nothing
// else in courier reads the environment.

import (
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/rs/zerolog"
)

// config is every setting courier reads, parsed and checked once at start.
// The `env` tag names the variable, `envDefault` its default and `allowed`
// the sentence a user sees when the value is refused.
type config struct {
	Port              int           `env:"PORT" envDefault:"9001" allowed:"a TCP port, 0..65535"`
	MessageappURL     string        `env:"MESSAGEAPP_URL" allowed:"an absolute http:// or https:// URL, e.g. http://messageapp:3000/message, or unset for the built-in simulator"`
	MessageappTimeout time.Duration `env:"MESSAGEAPP_TIMEOUT" envDefault:"1s" allowed:"a Go duration from 1ms to 5m, e.g. 1s"`
	QueueMaxSize      int           `env:"QUEUE_MAX_SIZE" envDefault:"10" allowed:"a whole number from 1 to 1000000"`
	QueueRecovery     int           `env:"QUEUE_RECOVERY_THRESHOLD" envDefault:"5" allowed:"a whole number from 0 to QUEUE_MAX_SIZE-1"`
	Senders           int           `env:"SENDERS" envDefault:"64" allowed:"a whole number from 1 to 1024"`
	MaxAttempts       int           `env:"MAX_ATTEMPTS" envDefault:"3" allowed:"a whole number from 1 to 100"`
	BreakerThreshold  int           `env:"BREAKER_THRESHOLD" envDefault:"5" allowed:"a whole number from 1 to 10000"`
	BackoffInitial    time.Duration `env:"BREAKER_BACKOFF_INITIAL" envDefault:"500ms" allowed:"a Go duration from 1ms to 10m, e.g. 500ms"`
	BackoffMax        time.Duration `env:"BREAKER_BACKOFF_MAX" envDefault:"10s" allowed:"a Go duration from BREAKER_BACKOFF_INITIAL to 1h, e.g. 10s"`
	MessagesRetained  int           `env:"MESSAGES_RETAINED" envDefault:"10000" allowed:"a whole number from 0 to 10000000"`
	ShutdownTimeout   time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"10s" allowed:"a Go duration from 0s to 10m, e.g. 10s"`
	LogLevel          string        `env:"LOG_LEVEL" envDefault:"info" allowed:"one of trace, debug, info, warn, error, fatal, panic, disabled"`
	LogFormat         string        `env:"LOG_FORMAT" envDefault:"json" allowed:"json or console"`

	// Not from the environment: set by the demo and by tests.
	listenHost string        // empty is every interface; the demo uses loopback
	limits     serverLimits  // zero means defaultServerLimits
	snapEvery  time.Duration // dashboard snapshot interval; zero means one second
}

// configError says which variable is wrong, what it held and what would do.
type configError struct {
	Var     string
	Value   string
	Allowed string
}

func (e *configError) Error() string {
	return fmt.Sprintf("invalid configuration: %s=%q: must be %s", e.Var, e.Value, e.Allowed)
}

// loadConfig parses and validates every variable through getenv. An empty
// value counts as unset, so `PORT=` means the default. The first problem is
// returned as a *configError.
func loadConfig(getenv func(string) string) (config, error) {
	var cfg config
	t := reflect.TypeFor[config]()
	environ := make(map[string]string)
	for i := range t.NumField() {
		name := t.Field(i).Tag.Get("env")
		if v := getenv(name); v != "" {
			environ[name] = v
		}
	}
	if err := env.ParseWithOptions(&cfg, env.Options{Environment: environ}); err != nil {
		return config{}, parseProblem(err, t, environ)
	}
	if err := cfg.validate(); err != nil {
		return config{}, err
	}
	return cfg, nil
}

// parseProblem maps the env library's error, which names a struct field, back
// to the variable the user wrote.
func parseProblem(err error, t reflect.Type, environ map[string]string) error {
	var agg env.AggregateError
	if errors.As(err, &agg) && len(agg.Errors) > 0 {
		err = agg.Errors[0]
	}
	var pe env.ParseError
	if errors.As(err, &pe) {
		if f, ok := t.FieldByName(pe.Name); ok {
			name := f.Tag.Get("env")
			return &configError{Var: name, Value: environ[name], Allowed: f.Tag.Get("allowed")}
		}
	}
	return fmt.Errorf("invalid configuration: %w", err)
}

// validate checks ranges and the rules between variables.
func (c config) validate() error {
	problem := func(field string, value any) error {
		f, _ := reflect.TypeFor[config]().FieldByName(field)
		return &configError{Var: f.Tag.Get("env"), Value: fmt.Sprint(value), Allowed: f.Tag.Get("allowed")}
	}
	intRanges := []struct {
		field    string
		v        int
		min, max int
	}{
		{"Port", c.Port, 0, 65535},
		{"QueueMaxSize", c.QueueMaxSize, 1, 1_000_000},
		{"QueueRecovery", c.QueueRecovery, 0, c.QueueMaxSize - 1},
		{"Senders", c.Senders, 1, 1024},
		{"MaxAttempts", c.MaxAttempts, 1, 100},
		{"BreakerThreshold", c.BreakerThreshold, 1, 10_000},
		{"MessagesRetained", c.MessagesRetained, 0, 10_000_000},
	}
	for _, r := range intRanges {
		if r.v < r.min || r.v > r.max {
			return problem(r.field, r.v)
		}
	}
	durRanges := []struct {
		field    string
		v        time.Duration
		min, max time.Duration
	}{
		{"MessageappTimeout", c.MessageappTimeout, time.Millisecond, 5 * time.Minute},
		{"BackoffInitial", c.BackoffInitial, time.Millisecond, 10 * time.Minute},
		{"BackoffMax", c.BackoffMax, c.BackoffInitial, time.Hour},
		{"ShutdownTimeout", c.ShutdownTimeout, 0, 10 * time.Minute},
	}
	for _, r := range durRanges {
		if r.v < r.min || r.v > r.max {
			return problem(r.field, r.v)
		}
	}
	// Unset means "start the built-in simulator".
	if u, err := url.Parse(c.MessageappURL); c.MessageappURL != "" && (err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "") {
		return problem("MessageappURL", c.MessageappURL)
	}
	if _, err := zerolog.ParseLevel(strings.ToLower(c.LogLevel)); err != nil {
		return problem("LogLevel", c.LogLevel)
	}
	if c.LogFormat != "json" && c.LogFormat != "console" {
		return problem("LogFormat", c.LogFormat)
	}
	return nil
}
