package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	runMainIfAsked()
	goleak.VerifyTestMain(coverageM{m})
}

// newTestService is courier's service, with no senders and no HTTP server,
// configured by env on top of the defaults (then by tune, for what no
// variable sets) and logging nowhere: what a request does up to the queue.
func newTestService(tb testing.TB, env map[string]string, tune ...func(*config)) *service {
	tb.Helper()
	cfg, err := loadConfig(func(k string) string { return env[k] })
	if err != nil {
		tb.Fatalf("test configuration %v: %v", env, err)
	}
	for _, f := range tune {
		f(&cfg)
	}
	return newService(cfg, zerolog.Nop())
}

// fakeMode is how the fake messageapp answers.
type fakeMode int32

const (
	modeOK    fakeMode = iota // 200 OK at once
	modeError                 // 500 at once
	modeHang                  // never answers (until the caller gives up)
	modeSlow                  // 200 OK after the fake's delay
	modeReset                 // drops the connection without an answer
)

// fakeMessageapp is an httptest messageapp whose behaviour a test switches,
// as outyet's test does with its status handler.
type fakeMessageapp struct {
	*httptest.Server
	mode    atomic.Int32
	delay   atomic.Int64 // for modeSlow
	calls   atomic.Int64
	release chan struct{} // closed at cleanup so hung handlers return

	mu      sync.Mutex // guards bodies
	bodies  []sendRequest
	arrived chan struct{} // one value per call, never blocks
}

func newFakeMessageapp(t *testing.T, mode fakeMode) *fakeMessageapp {
	t.Helper()
	f := &fakeMessageapp{release: make(chan struct{}), arrived: make(chan struct{}, 10000)}
	f.mode.Store(int32(mode))
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(func() {
		close(f.release)
		f.Server.Close()
	})
	return f
}

func (f *fakeMessageapp) URL() string { return f.Server.URL + "/message" }

func (f *fakeMessageapp) set(m fakeMode) { f.mode.Store(int32(m)) }

func (f *fakeMessageapp) serve(w http.ResponseWriter, r *http.Request) {
	var req sendRequest
	if r.Method != http.MethodPost || r.URL.Path != "/message" || json.NewDecoder(r.Body).Decode(&req) != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	f.calls.Add(1)
	f.mu.Lock()
	f.bodies = append(f.bodies, req)
	f.mu.Unlock()
	select {
	case f.arrived <- struct{}{}:
	default:
	}
	switch fakeMode(f.mode.Load()) {
	case modeOK:
		io.WriteString(w, "OK")
	case modeError:
		http.Error(w, "messageapp is unwell", http.StatusInternalServerError)
	case modeHang:
		select {
		case <-r.Context().Done():
		case <-f.release:
		}
	case modeReset:
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
			}
		}
	case modeSlow:
		select {
		case <-time.After(time.Duration(f.delay.Load())):
			io.WriteString(w, "OK")
		case <-r.Context().Done():
		case <-f.release:
		}
	}
}

// logBuffer collects courier's JSON log lines, in memory or, for long
// runs whose memory is measured, in a file; safe for concurrent use.
type logBuffer struct {
	mu   sync.Mutex // guards buf and file
	buf  bytes.Buffer
	file *os.File
}

// fileLog is a logBuffer kept in a file under the test's temp dir.
func fileLog(t *testing.T) *logBuffer {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "courier.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &logBuffer{file: f}
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.file != nil {
		return b.file.Write(p)
	}
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.file != nil {
		data, _ := os.ReadFile(b.file.Name())
		return string(data)
	}
	return b.buf.String()
}

// entries returns every log line whose fields include all of match.
func (b *logBuffer) entries(match map[string]any) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e map[string]any
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		ok := true
		for k, v := range match {
			if fmt.Sprint(e[k]) != fmt.Sprint(v) {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, e)
		}
	}
	return out
}

// events returns the `event` values of the log, in order, among names.
func (b *logBuffer) events(names ...string) []string {
	var out []string
	for _, e := range b.entries(nil) {
		ev, _ := e["event"].(string)
		for _, n := range names {
			if ev == n {
				out = append(out, ev)
			}
		}
	}
	return out
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(2 * time.Millisecond) // polling a condition, not standing in for one
	}
}

// service is courier started through run, as a user would, on a free port.
type testCourier struct {
	t      *testing.T
	url    string
	logs   *logBuffer
	stderr *logBuffer
	cancel context.CancelFunc
	exit   chan int
	client *http.Client // holds every exchange to openapi.yaml
}

// baseEnv is the configuration tests start from: small, fast, verbose.
func baseEnv(messageappURL string) map[string]string {
	return map[string]string{
		"PORT":                     "0",
		"MESSAGEAPP_URL":           messageappURL,
		"MESSAGEAPP_TIMEOUT":       "200ms",
		"QUEUE_MAX_SIZE":           "10",
		"QUEUE_RECOVERY_THRESHOLD": "5",
		"SENDERS":                  "4",
		"MAX_ATTEMPTS":             "3",
		"BREAKER_THRESHOLD":        "5",
		"BREAKER_BACKOFF_INITIAL":  "10m",
		"BREAKER_BACKOFF_MAX":      "10m",
		"SHUTDOWN_TIMEOUT":         "2s",
		"LOG_LEVEL":                "debug",
	}
}

func startService(t *testing.T, env map[string]string) *testCourier {
	t.Helper()
	return startServiceLogging(t, env, &logBuffer{})
}

// startServiceLogging is startService with the log going to logs. Unless
// env sets PORT, courier gets a free port, and another one if something
// else took that port between freePort and courier's listen (other tests'
// servers and clients draw from the same ephemeral range); it is up once
// /healthz answers.
func startServiceLogging(t *testing.T, env map[string]string, logs *logBuffer) *testCourier {
	t.Helper()
	pick := env["PORT"] == "" || env["PORT"] == "0"
	for try := 1; ; try++ {
		if pick {
			env = maps.Clone(env)
			env["PORT"] = freePort(t)
		}
		s, taken := launchService(t, env, logs, pick && try < 5)
		if !taken {
			return s
		}
		s.stop()
	}
}

// launchService runs courier with env and waits until it answers /healthz.
// When portMayBeTaken, a port already in use is not a failure: taken
// reports it, and courier has exited.
func launchService(t *testing.T, env map[string]string, logs *logBuffer, portMayBeTaken bool) (s *testCourier, taken bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s = &testCourier{t: t, url: "http://127.0.0.1:" + env["PORT"], logs: logs, stderr: &logBuffer{}, cancel: cancel,
		exit: make(chan int, 1), client: contractClient(t)}
	go func() {
		s.exit <- run(ctx, []string{"courier"}, func(k string) string { return env[k] }, s.logs, s.stderr)
	}()
	t.Cleanup(func() {
		s.stop()
		s.client.CloseIdleConnections()
	})
	eventually(t, 5*time.Second, "courier to answer /healthz", func() bool {
		if msg := s.stderr.String(); msg != "" {
			if portMayBeTaken && portTaken(msg) {
				taken = true
				return true
			}
			t.Fatalf("courier refused to start: %s", msg)
		}
		select {
		case code := <-s.exit:
			s.exit <- code // for stop, at cleanup
			t.Fatalf("courier exited with %d before it served: %s", code, s.logs.String())
		default:
		}
		resp, err := s.client.Get(s.url + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return s, taken
}

// startStuckCourier starts courier with one sender whose call to a hanging
// messageapp never ends, and a one-second drain: whatever is posted after
// the first message stays queued through shutdown.
func startStuckCourier(t *testing.T) *testCourier {
	t.Helper()
	app := newFakeMessageapp(t, modeHang)
	env := baseEnv(app.URL())
	env["SENDERS"] = "1"
	env["MESSAGEAPP_TIMEOUT"] = "1m"
	env["SHUTDOWN_TIMEOUT"] = "1s"
	return startService(t, env)
}

// portTaken reports whether courier's stderr says PORT was in use: what
// can happen to a port from freePort, and is worth another one.
func portTaken(stderr string) bool {
	return strings.Contains(stderr, "listen on port") && strings.Contains(stderr, "address already in use")
}

// freePort is a loopback TCP port nothing listens on right now (for a
// server that cannot listen on port 0 and say which port it got).
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// stop signals shutdown and returns run's exit code (once; later calls return -1).
func (s *testCourier) stop() int {
	s.cancel()
	select {
	case code, ok := <-s.exit:
		if !ok {
			return -1
		}
		close(s.exit)
		return code
	case <-time.After(30 * time.Second):
		s.t.Fatal("courier did not stop within 30s")
		return -1
	}
}

// response is a decoded answer.
type response struct {
	status int
	header http.Header
	body   map[string]any
}

func (s *testCourier) do(method, path, contentType, body string) response {
	s.t.Helper()
	return s.doWith(method, path, body, http.Header{"Content-Type": {contentType}})
}

// doWith sends a request with headers (empty values are left out).
func (s *testCourier) doWith(method, path, body string, header http.Header) response {
	s.t.Helper()
	req, err := http.NewRequest(method, s.url+path, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	for k, vs := range header {
		if len(vs) > 0 && vs[0] != "" {
			req.Header[k] = vs
		}
	}
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	r := response{status: resp.StatusCode, header: resp.Header}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			s.t.Fatalf("%s %s: body is not a JSON object: %v: %q", method, path, err, raw)
		}
	}
	return r
}

func (s *testCourier) post(dest, body string) response {
	s.t.Helper()
	b, _ := json.Marshal(map[string]string{"destination": dest, "body": body})
	return s.do(http.MethodPost, "/messages", "application/json", string(b))
}

// status returns GET /status decoded.
func (s *testCourier) status() statusResponse {
	s.t.Helper()
	resp, err := s.client.Get(s.url + "/status")
	if err != nil {
		s.t.Fatalf("GET /status: %v", err)
	}
	defer resp.Body.Close()
	var st statusResponse
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		s.t.Fatalf("GET /status: %v", err)
	}
	return st
}

// message returns GET /messages/{id} decoded.
func (s *testCourier) message(id string) Message {
	s.t.Helper()
	resp, err := s.client.Get(s.url + "/messages/" + id)
	if err != nil {
		s.t.Fatalf("GET /messages/%s: %v", id, err)
	}
	defer resp.Body.Close()
	var m Message
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		s.t.Fatalf("GET /messages/%s: %v", id, err)
	}
	return m
}

// waitStatus waits until message id has status want.
func (s *testCourier) waitStatus(id string, want Status) Message {
	s.t.Helper()
	var m Message
	eventually(s.t, 10*time.Second, fmt.Sprintf("message %s to be %s", id, want), func() bool {
		m = s.message(id)
		return m.Status == want
	})
	return m
}

// waitEvent waits until the log holds n lines with event.
func (s *testCourier) waitEvent(event string, n int) {
	s.t.Helper()
	eventually(s.t, 10*time.Second, fmt.Sprintf("%d %s event(s)", n, event), func() bool {
		return len(s.logs.entries(map[string]any{"event": event})) >= n
	})
}
