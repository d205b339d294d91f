package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestConfigDefaults(t *testing.T) {
	cfg, err := loadConfig(func(k string) string {
		return map[string]string{"MESSAGEAPP_URL": "http://localhost:3000/message"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	want := config{Port: 9001, MessageappURL: "http://localhost:3000/message", MessageappTimeout: time.Second,
		QueueMaxSize: 10, QueueRecovery: 5, Senders: 64, ConcurrencyLimit: "adaptive", MaxAttempts: 3, BreakerThreshold: 5,
		BackoffInitial: 500 * time.Millisecond, BackoffMax: 10 * time.Second,
		RetryInitial: 100 * time.Millisecond, RetryMax: 5 * time.Second, MessagesRetained: 10000, RetainedBytes: 32 << 20, MaxConnections: 1024,
		ShutdownTimeout: 10 * time.Second, LogLevel: "info", LogFormat: "json"}
	if cfg != want {
		t.Errorf("defaults: got %+v, want %+v", cfg, want)
	}
}

func TestBadConfigurationExits2NamingTheVariable(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantVar string
	}{
		{"port not a number", map[string]string{"PORT": "http"}, "PORT"},
		{"port too large", map[string]string{"PORT": "70000"}, "PORT"},
		{"timeout not a duration", map[string]string{"MESSAGEAPP_TIMEOUT": "1"}, "MESSAGEAPP_TIMEOUT"},
		{"timeout zero", map[string]string{"MESSAGEAPP_TIMEOUT": "0s"}, "MESSAGEAPP_TIMEOUT"},
		{"negative queue size", map[string]string{"QUEUE_MAX_SIZE": "-1"}, "QUEUE_MAX_SIZE"},
		{"zero queue size", map[string]string{"QUEUE_MAX_SIZE": "0"}, "QUEUE_MAX_SIZE"},
		{"huge queue size", map[string]string{"QUEUE_MAX_SIZE": "99999999999"}, "QUEUE_MAX_SIZE"},
		{"recovery equal to max", map[string]string{"QUEUE_MAX_SIZE": "10", "QUEUE_RECOVERY_THRESHOLD": "10"}, "QUEUE_RECOVERY_THRESHOLD"},
		{"recovery above max", map[string]string{"QUEUE_RECOVERY_THRESHOLD": "11"}, "QUEUE_RECOVERY_THRESHOLD"},
		{"negative recovery", map[string]string{"QUEUE_RECOVERY_THRESHOLD": "-1"}, "QUEUE_RECOVERY_THRESHOLD"},
		{"no senders", map[string]string{"SENDERS": "0"}, "SENDERS"},
		{"no attempts", map[string]string{"MAX_ATTEMPTS": "0"}, "MAX_ATTEMPTS"},
		{"threshold not a number", map[string]string{"BREAKER_THRESHOLD": "five"}, "BREAKER_THRESHOLD"},
		{"backoff max below initial", map[string]string{"BREAKER_BACKOFF_INITIAL": "2s", "BREAKER_BACKOFF_MAX": "1s"}, "BREAKER_BACKOFF_MAX"},
		{"retry backoff not a duration", map[string]string{"RETRY_BACKOFF_INITIAL": "100"}, "RETRY_BACKOFF_INITIAL"},
		{"retry backoff zero", map[string]string{"RETRY_BACKOFF_INITIAL": "0s"}, "RETRY_BACKOFF_INITIAL"},
		{"retry backoff max below initial", map[string]string{"RETRY_BACKOFF_INITIAL": "2s", "RETRY_BACKOFF_MAX": "1s"}, "RETRY_BACKOFF_MAX"},
		{"retry backoff max too long", map[string]string{"RETRY_BACKOFF_MAX": "1h"}, "RETRY_BACKOFF_MAX"},
		{"negative retained", map[string]string{"MESSAGES_RETAINED": "-5"}, "MESSAGES_RETAINED"},
		{"negative shutdown timeout", map[string]string{"SHUTDOWN_TIMEOUT": "-1s"}, "SHUTDOWN_TIMEOUT"},
		{"URL without scheme", map[string]string{"MESSAGEAPP_URL": "messageapp:3000/message"}, "MESSAGEAPP_URL"},
		{"URL not http", map[string]string{"MESSAGEAPP_URL": "ftp://messageapp/message"}, "MESSAGEAPP_URL"},
		{"URL unparsable", map[string]string{"MESSAGEAPP_URL": "http://[::1"}, "MESSAGEAPP_URL"},
		{"log level unknown", map[string]string{"LOG_LEVEL": "loud"}, "LOG_LEVEL"},
		{"log format unknown", map[string]string{"LOG_FORMAT": "xml"}, "LOG_FORMAT"},
		{"replica with a dash", map[string]string{"REPLICA": "c-1"}, "REPLICA"},
		{"replica in capitals", map[string]string{"REPLICA": "C1"}, "REPLICA"},
		{"replica too long", map[string]string{"REPLICA": strings.Repeat("c", 33)}, "REPLICA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"MESSAGEAPP_URL": "http://localhost:3000/message", "PORT": "0"}
			for k, v := range tt.env {
				env[k] = v
			}
			var stdout, stderr logBuffer
			code := run(context.Background(), []string{"courier"}, func(k string) string { return env[k] }, &stdout, &stderr)
			if code != 2 {
				t.Fatalf("exit code: got %d, want 2", code)
			}
			msg := stderr.String()
			if strings.Count(msg, "\n") != 1 || !strings.Contains(msg, tt.wantVar+"=") || !strings.Contains(msg, "must be") {
				t.Errorf("stderr: got %q, want one line naming %s, its value and what is allowed", msg, tt.wantVar)
			}
			if v := tt.env[tt.wantVar]; v != "" && !strings.Contains(msg, v) {
				t.Errorf("stderr %q does not show the value %q", msg, v)
			}
			if stdout.String() != "" {
				t.Errorf("something started before the configuration was checked: %q", stdout.String())
			}
		})
	}
}

func TestConfigErrorsNameEveryBadVariableAndSayWhenADefaultIsToBlame(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want []string // one line each, in this order
	}{
		{"a default that no longer fits", map[string]string{"QUEUE_MAX_SIZE": "3"},
			[]string{`QUEUE_RECOVERY_THRESHOLD is not set and its default "5" does not fit: must be a whole number from 0 to QUEUE_MAX_SIZE-1 (QUEUE_MAX_SIZE is 3)`}},
		{"three bad variables", map[string]string{"PORT": "http", "SENDERS": "0", "LOG_FORMAT": "xml"},
			[]string{`PORT="http"`, `SENDERS="0"`, `LOG_FORMAT="xml"`}},
		{"a bad limit is the problem, not what depends on it", map[string]string{"QUEUE_MAX_SIZE": "0", "BREAKER_BACKOFF_INITIAL": "soon"},
			[]string{`QUEUE_MAX_SIZE="0"`, `BREAKER_BACKOFF_INITIAL="soon"`}},
		{"a value is shown as it was written, not as parsed", map[string]string{"MESSAGEAPP_TIMEOUT": "0", "LOG_FORMAT": "XML"},
			[]string{`MESSAGEAPP_TIMEOUT="0": must be`, `LOG_FORMAT="XML": must be`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr logBuffer
			env := tt.env
			env["MESSAGEAPP_URL"] = "http://localhost:3000/message"
			if code := run(context.Background(), []string{"courier"}, func(k string) string { return env[k] }, &stdout, &stderr); code != 2 {
				t.Fatalf("exit code: got %d, want 2", code)
			}
			lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("stderr: got %q, want %d lines", stderr.String(), len(tt.want))
			}
			for i, want := range tt.want {
				if !strings.HasPrefix(lines[i], "courier: invalid configuration: ") || !strings.Contains(lines[i], want) {
					t.Errorf("line %d: got %q, want it to say %q", i, lines[i], want)
				}
			}
		})
	}
}

func TestConfigEdgeCasesThatWork(t *testing.T) {
	tests := []map[string]string{
		{"QUEUE_MAX_SIZE": "1", "QUEUE_RECOVERY_THRESHOLD": "0"},
		{"QUEUE_MAX_SIZE": "1000000", "QUEUE_RECOVERY_THRESHOLD": "999999"},
		{"SHUTDOWN_TIMEOUT": "0s"},
		{"MESSAGES_RETAINED": "0"},
		{"PORT": "", "LOG_LEVEL": "DEBUG"}, // empty means default; levels in any case
		{"LOG_FORMAT": "JSON"},             // formats too
		{"LOG_FORMAT": "Console", "LOG_LEVEL": "Warn"},
		{"MESSAGEAPP_URL": "https://messageapp.internal/message"},
		{"MESSAGEAPP_URL": ""}, // the built-in simulator
		{"REPLICA": "c2"},
		{"REPLICA": "replica10"},
	}
	for _, extra := range tests {
		env := map[string]string{"MESSAGEAPP_URL": "http://localhost:3000/message"}
		for k, v := range extra {
			env[k] = v
		}
		if _, err := loadConfig(func(k string) string { return env[k] }); err != nil {
			t.Errorf("%v: got %v, want accepted", extra, err)
		}
	}
}

func TestUnknownCommandIsAUsageErrorThatPointsAtTheEnvironment(t *testing.T) {
	tests := []struct {
		args []string
		want []string // all in stderr
	}{
		{[]string{"fly"}, []string{`unknown command "fly"`, "serve | messageapp | load | demo | healthcheck | help"}},
		{[]string{"--port", "1"}, []string{`unknown flag "--port"`, "environment variables", "set PORT=1 instead", "serve | messageapp | load | demo | healthcheck | help"}},
		{[]string{"-log-level=debug"}, []string{"set LOG_LEVEL=debug instead"}},
		{[]string{"--verbose"}, []string{`unknown flag "--verbose"`, "environment variables", "courier -h lists them"}},
		{[]string{"serve", "--queue-max-size", "50"}, []string{"set QUEUE_MAX_SIZE=50 instead"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr logBuffer
			if code := run(context.Background(), append([]string{"courier"}, tt.args...), func(string) string { return "" }, &stdout, &stderr); code != 2 {
				t.Errorf("exit code: got %d, want 2", code)
			}
			for _, want := range tt.want {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr: got %q, want it to say %q", stderr.String(), want)
				}
			}
			if stdout.String() != "" {
				t.Errorf("stdout: got %q, want nothing", stdout.String())
			}
		})
	}
}
