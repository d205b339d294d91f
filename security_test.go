package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
)

// The secrets a MESSAGEAPP_URL may carry, in the tests below.
const (
	secretUser     = "alice-the-user"
	secretPassword = "pw-s3cret"
	secretQuery    = "key-s3cret"
)

// secretURL is messageapp at base with a user, a password and an API key
// in its query.
func secretURL(base string) string {
	return strings.Replace(base, "://", "://"+secretUser+":"+secretPassword+"@", 1) + "?api_key=" + secretQuery
}

// leaked names the first secret found in text, or "".
func leaked(text string) string {
	for _, s := range []string{secretUser, secretPassword, secretQuery} {
		if strings.Contains(text, s) {
			return s
		}
	}
	return ""
}

func TestMessageappURLSecretsAreShownNowhere(t *testing.T) {
	closed := newFakeMessageapp(t, modeOK)
	closedURL := closed.URL()
	closed.Server.Close() // connection refused: the error names the URL it dialled

	env := baseEnv(secretURL(closedURL))
	env["MAX_ATTEMPTS"] = "1"
	s := startService(t, env)
	id := s.post("d", "b").body["id"].(string)
	m := s.waitStatus(id, StatusFailed)

	if m.LastError == nil {
		t.Fatal("no last_error")
	}
	if d := m.LastError.Detail; leaked(d) != "" || strings.Contains(d, "://") || strings.Contains(d, "/message") {
		t.Errorf("last_error.detail: got %q, want the failure told without the URL", d)
	}
	if !strings.Contains(m.LastError.Detail, "connection refused") {
		t.Errorf("last_error.detail: got %q, want it to say the connection was refused", m.LastError.Detail)
	}
	for _, path := range []string{"/status", "/messages", "/messages/" + id, "/metrics"} {
		if body := s.get(path); leaked(body) != "" {
			t.Errorf("GET %s shows %q: %s", path, leaked(body), body)
		}
	}
	s.stop()
	if l := leaked(s.logs.String()); l != "" {
		t.Errorf("the log shows %q:\n%s", l, s.logs.String())
	}
	listening := s.logs.entries(map[string]any{"event": "listening"})
	if len(listening) != 1 || !strings.Contains(listening[0]["messageapp_url"].(string), "REDACTED@") {
		t.Errorf("listening line: got %v, want messageapp_url with its user information redacted", listening)
	}
}

func TestConfigErrorsDoNotEchoMessageappURLSecrets(t *testing.T) {
	for name, url := range map[string]string{
		"not http":   "ftp://" + secretUser + ":" + secretPassword + "@host/message?api_key=" + secretQuery,
		"no host":    "http://" + secretUser + ":" + secretPassword + "@/message?api_key=" + secretQuery,
		"unparsable": "http://" + secretUser + ":" + secretPassword + "@host:port/message?api_key=" + secretQuery,
	} {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			code := run(context.Background(), []string{"courier"}, func(k string) string {
				return map[string]string{"MESSAGEAPP_URL": url, "PORT": "0"}[k]
			}, &stdout, &stderr)
			if code != exitUsage || !strings.Contains(stderr.String(), "MESSAGEAPP_URL") {
				t.Fatalf("got exit %d and %q, want %d naming MESSAGEAPP_URL", code, stderr.String(), exitUsage)
			}
			if l := leaked(stderr.String()); l != "" {
				t.Errorf("stderr shows %q: %s", l, stderr.String())
			}
		})
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"http://messageapp:3000/message", "http://messageapp:3000/message"},
		{"http://u:p@messageapp:3000/message?api_key=T#frag", "http://REDACTED@messageapp:3000/message?REDACTED"},
		{"https://u@h/m", "https://REDACTED@h/m"},
		{"http://h/m?", "http://h/m?REDACTED"},
		{"u:p@h:3000/m", "u:REDACTED"},
		{"http://u:p@h:port/m", "(unparsable; not shown, since it may hold a secret)"},
	}
	for _, tt := range tests {
		if got := redactURL(tt.in); got != tt.want {
			t.Errorf("redactURL(%q): got %q, want %q", tt.in, got, tt.want)
		}
	}
}

// get returns the body of GET path.
func (s *testCourier) get(path string) string {
	s.t.Helper()
	resp, err := s.client.Get(s.url + path)
	if err != nil {
		s.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		s.t.Errorf("GET %s: got %d, want 200", path, resp.StatusCode)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("GET %s: %v", path, err)
	}
	return string(b)
}

func TestMessageappSimulatorListensOnLoopbackUnlessTold(t *testing.T) {
	tests := []struct {
		args         []string
		wantLoopback bool
	}{
		{[]string{"-port", "0"}, true},
		{[]string{"-port", "0", "-host", "0.0.0.0"}, false},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errOut logBuffer
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan int, 1)
			go func() { done <- runMessageapp(ctx, tt.args, func(string) string { return "" }, &out, &errOut) }()
			defer func() { cancel(); <-done }()
			var lines []map[string]any
			eventually(t, 5*time.Second, "the simulator's listening line", func() bool {
				lines = out.entries(map[string]any{"event": "listening"})
				return len(lines) == 1 || errOut.String() != ""
			})
			if len(lines) != 1 {
				t.Fatalf("no listening line; stderr: %s", errOut.String())
			}
			u, err := url.Parse(lines[0]["url"].(string))
			if err != nil || net.ParseIP(u.Hostname()).IsLoopback() != tt.wantLoopback {
				t.Errorf("listening on %v, want loopback %v", lines[0]["url"], tt.wantLoopback)
			}
		})
	}
}

func TestSimulatorServerHasEveryTimeout(t *testing.T) {
	srv := newSimulatorServer(http.NotFoundHandler(), nodeKeepAlive)
	for name, d := range map[string]time.Duration{"ReadHeaderTimeout": srv.ReadHeaderTimeout, "ReadTimeout": srv.ReadTimeout,
		"WriteTimeout": srv.WriteTimeout, "IdleTimeout": srv.IdleTimeout} {
		if d <= 0 {
			t.Errorf("%s: got %s, want a limit", name, d)
		}
	}
	if srv.WriteTimeout < 5*time.Minute {
		t.Errorf("WriteTimeout %s would cut answers courier may still wait for (MESSAGEAPP_TIMEOUT up to 5m)", srv.WriteTimeout)
	}
}

// TestComposePublishesOnLoopbackChecksHealthAndLimitsMemory holds
// docker-compose.yml to docs/security.md: ports on 127.0.0.1, a health check on
// every service and dependencies that wait for it, and every courier with
// a memory limit, a GOMEMLIMIT below it, and a start-up memory_budget
// worst case below that.
func TestComposePublishesOnLoopbackChecksHealthAndLimitsMemory(t *testing.T) {
	p := loadCompose(t)
	for _, s := range p.Services {
		t.Run(s.Name, func(t *testing.T) {
			for _, port := range s.Ports {
				if port.HostIP != "127.0.0.1" {
					t.Errorf("publishes %s on %q, want 127.0.0.1", port.Published, port.HostIP)
				}
			}
			if s.HealthCheck == nil || len(s.HealthCheck.Test) == 0 || s.HealthCheck.Disable {
				t.Error("no health check")
			}
			for name, dep := range s.DependsOn {
				if dep.Condition != types.ServiceConditionHealthy {
					t.Errorf("depends on %s with condition %q, want service_healthy", name, dep.Condition)
				}
			}
			if s.MemLimit <= 0 {
				t.Error("no memory limit")
			}
		})
	}
	for _, s := range courierServices(t, p) {
		t.Run(s.Name+" GOMEMLIMIT", func(t *testing.T) {
			env := map[string]string{}
			for k, v := range s.Environment {
				if v != nil {
					env[k] = *v
				}
			}
			var goMemLimit byteCount
			if err := goMemLimit.UnmarshalText([]byte(env["GOMEMLIMIT"])); err != nil || goMemLimit <= 0 {
				t.Fatalf("GOMEMLIMIT %q: want a size", env["GOMEMLIMIT"])
			}
			limit := int64(s.MemLimit)
			if int64(goMemLimit) > limit*95/100 || int64(goMemLimit) < limit*80/100 {
				t.Errorf("GOMEMLIMIT %d for a memory limit of %d: want 80 to 95 %% of it, room for the runtime and stacks", goMemLimit, limit)
			}
			cfg, err := loadConfig(func(k string) string { return env[k] })
			if err != nil {
				t.Fatal(err)
			}
			if worst := memoryBudget(cfg, worstPayload); worst > int64(goMemLimit) {
				t.Errorf("memory_budget worst case %d is above GOMEMLIMIT %d", worst, goMemLimit)
			}
		})
	}
}

func TestHealthcheckSubcommandAsksHealthzOnPORT(t *testing.T) {
	s := startService(t, baseEnv(newFakeMessageapp(t, modeOK).URL()))
	port := strings.TrimPrefix(s.url, "http://127.0.0.1:")
	var errOut strings.Builder
	if code := runHealthcheck(context.Background(), nil, func(k string) string { return map[string]string{"PORT": port}[k] }, &errOut); code != exitOK {
		t.Errorf("against a running courier: got exit %d (%s), want 0", code, errOut.String())
	}
	closed := freePort(t)
	errOut.Reset()
	if code := runHealthcheck(context.Background(), nil, func(k string) string { return map[string]string{"PORT": closed}[k] }, &errOut); code != exitFailed || errOut.Len() == 0 {
		t.Errorf("against nothing: got exit %d (%q), want 1 saying why", code, errOut.String())
	}
}

func TestOperatorsRoutesCarryNoMessageContent(t *testing.T) {
	s := startService(t, baseEnv(newFakeMessageapp(t, modeOK).URL()))
	const dest, body, key = "+34699999999", "the-private-text", "the-private-key"
	b, _ := json.Marshal(map[string]string{"destination": dest, "body": body})
	r := s.doWith(http.MethodPost, "/messages", string(b), http.Header{"Content-Type": {"application/json"}, "Idempotency-Key": {key}})
	id, _ := r.body["id"].(string)
	s.waitStatus(id, StatusSent)
	secrets := []string{id, dest, body, key}
	for _, path := range []string{"/status", "/metrics", "/", "/openapi.yaml", "/healthz", "/readyz"} {
		got := s.get(path)
		for _, secret := range secrets {
			if strings.Contains(got, secret) {
				t.Errorf("GET %s shows %q", path, secret)
			}
		}
	}
	resp, err := http.Get(s.url + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// The first event is the history: every snapshot and transition so far.
	var history string
	rd := bufio.NewReader(resp.Body)
	for !strings.HasPrefix(history, "data: ") {
		if history, err = rd.ReadString('\n'); err != nil {
			t.Fatalf("reading /events: %v", err)
		}
	}
	for _, secret := range secrets {
		if strings.Contains(history, secret) {
			t.Errorf("/events' history shows %q", secret)
		}
	}
}
