package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// startWithLimits runs serve directly with short server limits and returns
// courier's address.
func startWithLimits(t *testing.T, limits serverLimits) string {
	t.Helper()
	app := newFakeMessageapp(t, modeOK)
	env := baseEnv(app.URL())
	cfg, err := loadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	cfg.forTests.serverLimits = limits
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, ln, zerolog.Nop()) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}

var testLimits = serverLimits{ReadHeader: 300 * time.Millisecond, Read: 600 * time.Millisecond,
	Write: time.Second, Idle: time.Second, MaxHeaderBytes: 8 << 10}

// healthzPromptly asserts /healthz answers on a fresh connection within d.
func healthzPromptly(t *testing.T, addr string, d time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: d, Transport: &http.Transport{DisableKeepAlives: true}}
	start := time.Now()
	resp, err := client.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("/healthz did not answer within %s: %v", d, err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/healthz: got %d, want 200", resp.StatusCode)
	}
	t.Logf("/healthz answered in %s", time.Since(start))
}

// dialMany opens n connections and writes prefix on each.
func dialMany(t *testing.T, addr string, n int, prefix string) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		if prefix != "" {
			if _, err := io.WriteString(c, prefix); err != nil {
				t.Fatal(err)
			}
		}
		conns = append(conns, c)
	}
	return conns
}

// closedByServer asserts the server hangs up on every conn within d.
func closedByServer(t *testing.T, conns []net.Conn, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for i, c := range conns {
		_ = c.SetReadDeadline(deadline)
		_, err := io.Copy(io.Discard, c) // returns at EOF (server closed) or at the deadline
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("connection %d still open after %s", i, d)
		}
	}
}

func TestSlowHeadersDoNotStarveTheServer(t *testing.T) {
	addr := startWithLimits(t, testLimits)
	conns := dialMany(t, addr, 200, "POST /messages HTTP/1.1\r\nHost: courier\r\nContent-Ty")
	healthzPromptly(t, addr, time.Second)
	closedByServer(t, conns, 3*time.Second)
}

func TestSlowBodiesAreCutOff(t *testing.T) {
	addr := startWithLimits(t, testLimits)
	conns := dialMany(t, addr, 100, "POST /messages HTTP/1.1\r\nHost: courier\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"destination\":")
	healthzPromptly(t, addr, time.Second)
	closedByServer(t, conns, 3*time.Second)
}

func TestIdleConnectionsAreClosed(t *testing.T) {
	addr := startWithLimits(t, testLimits)
	conns := dialMany(t, addr, 300, "")
	healthzPromptly(t, addr, time.Second)
	closedByServer(t, conns, 3*time.Second)
}

func TestOversizedHeadersAreRefused(t *testing.T) {
	addr := startWithLimits(t, testLimits)
	c := dialMany(t, addr, 1, "")[0]
	fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: courier\r\nX-Big: %s\r\n\r\n", strings.Repeat("x", 64<<10))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to an oversized header: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("got %d, want 431", resp.StatusCode)
	}
	healthzPromptly(t, addr, time.Second)
}
