package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestHelpPrintsUsageAndStartsNothing(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}, {"serve", "-h"}, {"serve", "help"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var stdout, stderr logBuffer
			code := run(context.Background(), append([]string{"courier"}, args...), func(string) string { return "" }, &stdout, &stderr)
			if code != 0 {
				t.Errorf("exit code: got %d, want 0", code)
			}
			out := stdout.String()
			for _, want := range []string{"courier messageapp", "courier load", "courier demo", "QUEUE_MAX_SIZE (default 10)", "MESSAGEAPP_URL (default unset)"} {
				if !strings.Contains(out, want) {
					t.Errorf("usage does not mention %q:\n%s", want, out)
				}
			}
			if strings.Contains(out, `"event"`) || stderr.String() != "" {
				t.Errorf("something ran or complained: stdout %q, stderr %q", out, stderr.String())
			}
		})
	}
	var stdout, stderr logBuffer
	if code := run(context.Background(), []string{"courier", "serve", "--port=1"}, func(string) string { return "" }, &stdout, &stderr); code != 2 ||
		!strings.Contains(stderr.String(), "environment variables") {
		t.Errorf("serve with an argument: got exit %d and %q, want 2 pointing at the environment", code, stderr.String())
	}
}

func TestPortInUseFailsBeforeAnythingStartsWithOneLineOnStderr(t *testing.T) {
	taken, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	env := baseEnv("") // no MESSAGEAPP_URL: the simulator would start first
	env["PORT"] = strconv.Itoa(taken.Addr().(*net.TCPAddr).Port)
	var stdout, stderr logBuffer
	if code := run(context.Background(), []string{"courier"}, func(k string) string { return env[k] }, &stdout, &stderr); code != 1 {
		t.Errorf("exit code: got %d, want 1", code)
	}
	// On stderr, where configuration errors go too: whatever keeps courier
	// from starting is one stream to watch.
	lines := stderr.entries(nil)
	if len(lines) != 1 || lines[0]["event"] != "start_failed" || lines[0]["message"] != "courier could not start" ||
		!strings.Contains(lines[0]["error"].(string), "address already in use") {
		t.Errorf("stderr: got %v, want one start_failed line with the listen error", lines)
	}
	if stdout.String() != "" {
		t.Errorf("stdout: got %q, want nothing", stdout.String())
	}
}

func TestLogTimestampsHaveMilliseconds(t *testing.T) {
	app := newFakeMessageapp(t, modeOK)
	s := startService(t, baseEnv(app.URL()))
	ts, _ := s.logs.entries(map[string]any{"event": "listening"})[0]["time"].(string)
	if !regexp.MustCompile(`T\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d)$`).MatchString(ts) {
		t.Errorf("time: got %q, want RFC 3339 with milliseconds", ts)
	}
}

// TestMain's re-exec: with COURIER_TEST_MAIN=1 the test binary is courier.
func runMainIfAsked() {
	if os.Getenv("COURIER_TEST_MAIN") == "1" {
		main()
	}
}

// mainProcess is courier run as a process (the test binary re-executed as
// main), so that real signals reach it.
type mainProcess struct {
	cmd    *exec.Cmd
	base   string              // its URL
	lines  chan map[string]any // its JSON log, closed at exit
	exited chan error          // cmd.Wait's result, once the log is read
}

// startMain starts courier as a process with env on top of the test's own
// and waits until it answers /healthz.
func startMain(t *testing.T, env ...string) *mainProcess {
	t.Helper()
	port := freePort(t)
	p := &mainProcess{cmd: exec.Command(os.Args[0]), base: "http://127.0.0.1:" + port,
		lines: make(chan map[string]any, 100), exited: make(chan error, 1)}
	// A -race binary sleeps a second at exit (GORACE atexit_sleep_ms): not
	// courier's time, and not what these tests measure.
	p.cmd.Env = append(append(os.Environ(), "COURIER_TEST_MAIN=1", "PORT="+port,
		"GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0")), env...)
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &logBuffer{} // where a courier that cannot start says why
	p.cmd.Stderr = stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var l map[string]any
			if json.Unmarshal(sc.Bytes(), &l) == nil {
				p.lines <- l
			}
		}
		close(p.lines)
		p.exited <- p.cmd.Wait()
	}()
	t.Cleanup(func() { _ = p.cmd.Process.Kill() })
	client := &http.Client{Timeout: time.Second}
	taken := false
	eventually(t, 10*time.Second, "courier to answer /healthz", func() bool {
		if msg := stderr.String(); msg != "" {
			if portTaken(msg) {
				taken = true // since freePort: another port, another process
				return true
			}
			t.Fatalf("courier did not start: %s", msg)
		}
		resp, err := client.Get(p.base + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
	if taken {
		<-p.exited
		return startMain(t, env...)
	}
	return p
}

// waitLine reads p's log up to the first line of event.
func (p *mainProcess) waitLine(t *testing.T, event string) {
	t.Helper()
	for l := range p.lines {
		if l["event"] == event {
			return
		}
	}
	t.Fatalf("courier's log ended before %s", event)
}

func TestSecondSignalStopsTheDrainAtOnceAndStillListsUndelivered(t *testing.T) {
	app := newFakeMessageapp(t, modeHang)
	p := startMain(t, "MESSAGEAPP_URL="+app.URL(), "MESSAGEAPP_TIMEOUT=1m", "SHUTDOWN_TIMEOUT=1m", "SENDERS=1")
	client := &http.Client{Timeout: time.Second}
	for range 3 { // one hangs in messageapp, two wait in the queue
		resp, err := client.Post(p.base+"/messages", "application/json", strings.NewReader(`{"destination":"d","body":"b"}`))
		if err != nil || resp.StatusCode != 202 {
			t.Fatalf("POST: %v %v", resp, err)
		}
		resp.Body.Close()
	}
	select { // the first is in messageapp before the signals
	case <-app.arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("no call reached messageapp")
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	p.waitLine(t, "shutting_down")
	start := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	undelivered, unknown := 0, 0
	for l := range p.lines {
		if l["event"] == "undelivered" {
			undelivered++
		}
		if l["outcome"] == "timeout" {
			unknown++
		}
	}
	if err := <-p.exited; err != nil {
		t.Errorf("exit: %v, want status 0", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("stopped %s after the second signal, want at once (SHUTDOWN_TIMEOUT is 1m)", took)
	}
	if undelivered != 2 || unknown != 1 {
		t.Errorf("undelivered lines: got %d, want 2; timeout lines: got %d, want 1 (the call in messageapp)", undelivered, unknown)
	}
}

func TestSecondSignalAlsoCutsTheLastMomentOfRequestsInFlight(t *testing.T) {
	p := startMain(t, "MESSAGEAPP_URL="+newFakeMessageapp(t, modeOK).URL())
	// A POST whose body is still on its way keeps the HTTP server's last
	// moment (a second) busy after the drain, which has nothing to do.
	conn, err := net.Dial("tcp", strings.TrimPrefix(p.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Expect: 100-continue makes courier say when its handler starts reading.
	if _, err := io.WriteString(conn, "POST /messages HTTP/1.1\r\nHost: courier\r\nContent-Type: application/json\r\n"+
		"Content-Length: 40\r\nExpect: 100-continue\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, err := bufio.NewReader(conn).ReadString('\n'); err != nil || !strings.Contains(line, "100 Continue") {
		t.Fatalf("got %q, %v; want 100 Continue", line, err)
	}
	if _, err := io.WriteString(conn, `{"destination":`); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	p.waitLine(t, "shutting_down")
	// The listener closes when the HTTP server's shutdown begins, after
	// the drain: from then on the server waits up to a second for the POST.
	eventually(t, 5*time.Second, "courier to stop listening", func() bool {
		c, err := net.Dial("tcp", strings.TrimPrefix(p.base, "http://"))
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	start := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	for range p.lines {
	}
	if err := <-p.exited; err != nil {
		t.Errorf("exit: %v, want status 0", err)
	}
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Errorf("exited %s after the second signal, want at once, not at the end of the second it gives requests", took)
	}
}

func TestConsoleLogToAFileHasNoColourCodes(t *testing.T) {
	var out logBuffer
	log := newLogger(config{LogLevel: "info", LogFormat: "console"}, &out)
	log.Warn().Str("event", "x").Msg("held back")
	if got := out.String(); strings.Contains(got, "\x1b[") || !strings.Contains(got, "WRN held back") {
		t.Errorf("console line: got %q, want plain text", got)
	}
}

// TestAStopGoesOnWhenTheLogsReaderIsGone: Ctrl-C on `go run . | tee
// courier.log` stops tee too. courier must still drain and exit 0, not die
// of SIGPIPE at its next log line.
func TestAStopGoesOnWhenTheLogsReaderIsGone(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "COURIER_TEST_MAIN=1", "PORT=0",
		"GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	cmd.Stdout = w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	listening := false
	for sc := bufio.NewScanner(r); !listening && sc.Scan(); {
		listening = strings.Contains(sc.Text(), `"event":"listening"`)
	}
	if !listening {
		t.Fatal("courier's log ended before its listening line")
	}
	r.Close() // tee is gone
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("courier after SIGINT with its log's reader gone: got %v, want exit status 0", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("courier did not exit within 15s of SIGINT")
	}
}
