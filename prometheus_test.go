package main

// prometheus_test.go checks courier against the real Prometheus: the alert
// rules pass promtool's checks and their unit tests, they name only metrics
// courier exports, and a Prometheus server scraping a running courier sees
// an outage in the series the alerts watch.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// prometheusTool finds a binary of Debian's prometheus package. Without it
// the test is skipped, unless COURIER_REQUIRE_PROMETHEUS=1 (as in CI),
// where it fails.
func prometheusTool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if os.Getenv("COURIER_REQUIRE_PROMETHEUS") == "1" {
		t.Fatalf("no %s found and COURIER_REQUIRE_PROMETHEUS=1 (apt-get install prometheus)", name)
	}
	t.Skipf("no %s found: apt-get install prometheus to run this test", name)
	return ""
}

func TestAlertRulesPassPromtool(t *testing.T) {
	promtool := prometheusTool(t, "promtool")
	for _, args := range [][]string{
		{"check", "rules", "prometheus/alerts.yml"},
		{"test", "rules", "prometheus/alerts_test.yml"},
		{"check", "config", "prometheus/prometheus.yml"},
		{"check", "config", "prometheus/replicas.yml"},
	} {
		t.Run(fmt.Sprint(args), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, promtool, args...).CombinedOutput()
			if err != nil {
				t.Errorf("promtool %v: %v\n%s", args, err, out)
			}
		})
	}
}

func TestAlertRulesNameOnlyMetricsCourierExports(t *testing.T) {
	cfg, err := loadConfig(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	families, err := newService(cfg, zerolog.Nop()).metrics.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{}
	for _, f := range families {
		exported[f.GetName()] = true
	}
	rules, err := os.ReadFile("prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile(`\bcourier_[a-z_]+`).FindAllString(string(rules), -1)
	if len(names) == 0 {
		t.Fatal("alerts.yml names no courier metric")
	}
	for _, name := range names {
		if !exported[name] {
			t.Errorf("alerts.yml uses %s, which courier does not export", name)
		}
	}
}

func TestPrometheusScrapesAnOutage(t *testing.T) {
	bin := prometheusTool(t, "prometheus")
	app := newFakeMessageapp(t, modeOK)
	s := startService(t, baseEnv(app.URL()))
	prom := startPrometheus(t, bin, s.url)

	// Prometheus hands new targets to its scrapers every 5s, so the
	// first scrape comes about 5s after it starts.
	prom.waitFor(t, `up{job="courier"} == 1`)
	prom.waitFor(t, `courier_queue_accepting == 1 and on (instance) courier_circuit_state{state="closed"} == 1`)
	app.set(modeError)
	for i := 0; s.status().Queue.Accepting && i < 100; i++ {
		s.post("d", strconv.Itoa(i))
	}
	prom.waitFor(t, `courier_queue_accepting == 0`)
	prom.waitFor(t, `courier_circuit_state{state="open"} == 1`)
	prom.waitFor(t, `courier_attempts_total{outcome="messageapp_error"} >= 5`)

	// The server loaded courier's alert rules, and they evaluate cleanly.
	var rules struct {
		Groups []struct {
			Rules []struct {
				Name   string `json:"name"`
				Health string `json:"health"`
			} `json:"rules"`
		} `json:"groups"`
	}
	prom.get(t, "/api/v1/rules", nil, &rules)
	healthy := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Health == "ok" {
				healthy++
			}
		}
	}
	if healthy != 7 {
		t.Errorf("alert rules evaluated ok by Prometheus: got %d, want 7 (%+v)", healthy, rules)
	}
}

// promServer is a Prometheus process started for one test.
type promServer struct {
	url    string
	client *http.Client
}

// startPrometheus runs Prometheus with courier's alert rules, scraping
// courierURL four times a second, and stops it when the test ends.
func startPrometheus(t *testing.T, bin, courierURL string) *promServer {
	t.Helper()
	dir := t.TempDir()
	rules, err := filepath.Abs("prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	target := courierURL[len("http://"):]
	cfg := fmt.Sprintf(`global:
  scrape_interval: 250ms
  scrape_timeout: 250ms
  evaluation_interval: 250ms
rule_files: [%q]
scrape_configs:
  - job_name: courier
    static_configs:
      - targets: [%q]
`, rules, target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn")
	logs := &logBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	p := &promServer{url: "http://" + addr, client: &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{}}}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		p.client.CloseIdleConnections()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", logs)
		}
	})
	return p
}

// get decodes the `data` of a Prometheus API answer into v; it reports
// whether Prometheus answered with success.
func (p *promServer) get(t *testing.T, path string, query url.Values, v any) bool {
	t.Helper()
	resp, err := p.client.Get(p.url + path + "?" + query.Encode())
	if err != nil {
		return false // not up yet
	}
	defer resp.Body.Close()
	var answer struct {
		Status string          `json:"status"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil || answer.Status != "success" {
		return false
	}
	if err := json.Unmarshal(answer.Data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return true
}

// waitFor polls an instant query, a few times a scrape, until it returns
// at least one series.
func (p *promServer) waitFor(t *testing.T, query string) {
	t.Helper()
	start := time.Now()
	deadline := time.NewTimer(15 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		var data struct {
			Result []json.RawMessage `json:"result"`
		}
		if p.get(t, "/api/v1/query", url.Values{"query": {query}}, &data) && len(data.Result) > 0 {
			t.Logf("Prometheus saw %s after %s", query, time.Since(start).Round(time.Millisecond))
			return
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("Prometheus did not see %s within 15s", query)
		}
	}
}
