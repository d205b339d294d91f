package main

import (
	"bufio"
	"context"
	"encoding/json"
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

func TestSecondSignalStopsTheDrainAtOnceAndStillListsUndelivered(t *testing.T) {
	app := newFakeMessageapp(t, modeHang)
	port := freePort(t)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "COURIER_TEST_MAIN=1", "PORT="+port, "MESSAGEAPP_URL="+app.URL(),
		"MESSAGEAPP_TIMEOUT=1m", "SHUTDOWN_TIMEOUT=1m", "SENDERS=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan map[string]any, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var l map[string]any
			if json.Unmarshal(sc.Bytes(), &l) == nil {
				lines <- l
			}
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	base := "http://127.0.0.1:" + port
	client := &http.Client{Timeout: time.Second}
	eventually(t, 10*time.Second, "courier to answer /healthz", func() bool {
		resp, err := client.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
	for range 3 { // one hangs in messageapp, two wait in the queue
		resp, err := client.Post(base+"/messages", "application/json", strings.NewReader(`{"destination":"d","body":"b"}`))
		if err != nil || resp.StatusCode != 202 {
			t.Fatalf("POST: %v %v", resp, err)
		}
		resp.Body.Close()
	}
	waitLine := func(event string) {
		t.Helper()
		for l := range lines {
			if l["event"] == event {
				return
			}
		}
		t.Fatalf("courier's log ended before %s", event)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	waitLine("shutting_down")
	start := time.Now()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	undelivered, unknown := 0, 0
	for l := range lines {
		if l["event"] == "undelivered" {
			undelivered++
		}
		if l["outcome"] == "timeout" {
			unknown++
		}
	}
	if err := <-exited; err != nil {
		t.Errorf("exit: %v, want status 0", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("stopped %s after the second signal, want at once (SHUTDOWN_TIMEOUT is 1m)", took)
	}
	if undelivered != 2 || unknown != 1 {
		t.Errorf("undelivered lines: got %d, want 2; timeout lines: got %d, want 1 (the call in messageapp)", undelivered, unknown)
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
