package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// clientFrom is an HTTP client whose connections come from the loopback
// address ip (all of 127.0.0.0/8 is this machine): another client address,
// as the balancer sees it.
func clientFrom(t *testing.T, ip string) *http.Client {
	tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}).DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Timeout: 10 * time.Second, Transport: tr}
}

func TestOneClientAddressCannotLockOthersOutThroughTheBalancer(t *testing.T) {
	f := startFleet(t, nil)
	addr := strings.TrimPrefix(f.lb.url, "http://")

	// 300 connections from 127.0.0.1 that never send a request. The
	// balancer accepts each one over its limit and resets it, which a
	// dial can already see (the reset came before the dialer looked at
	// its socket): that connection is refused, not held.
	var held []net.Conn
	for range 300 {
		c, err := net.Dial("tcp", addr)
		if errors.Is(err, syscall.ECONNRESET) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	// Another address is answered.
	resp, err := clientFrom(t, "127.0.0.2").Get(f.lb.url + "/healthz")
	if err != nil {
		t.Fatalf("GET /healthz from 127.0.0.2 with 127.0.0.1 holding 300 connections: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz from 127.0.0.2: got %d, want 200", resp.StatusCode)
	}
	open := stillOpen(held, 300*time.Millisecond)
	if open > 256 {
		t.Errorf("127.0.0.1 holds %d connections to the balancer, want at most 256", open)
	}
}

func TestEventStreamsThroughTheBalancerAreBoundedPerClientAddress(t *testing.T) {
	f := startFleet(t, nil)
	client := clientFrom(t, "127.0.0.3")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	streams, refused := 0, 0
	for range 12 {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, f.lb.url+"/events", nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusOK:
			streams++
		case resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Content-Type") == "application/problem+json":
			refused++
		default:
			t.Errorf("GET /events: got %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
	if streams != 8 || refused != 4 {
		t.Errorf("12 streams from one address: got %d open and %d refused, want 8 and 4", streams, refused)
	}
	// Another address still gets its stream.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, f.lb.url+"/events", nil)
	resp, err := clientFrom(t, "127.0.0.4").Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /events from another address: got %d, want 200", resp.StatusCode)
	}
}

func TestTokensPassThroughTheBalancer(t *testing.T) {
	f := startFleet(t, map[string]string{"API_TOKENS": tokenA + "," + tokenB})
	r := f.lb.postAs(tokenA, "through-1", "+34600000000", "a's text")
	if r.status != http.StatusAccepted {
		t.Fatalf("POST with A's token through the balancer: got %d %v, want 202", r.status, r.body)
	}
	id := r.body["id"].(string)
	if got := f.lb.as(tokenA, http.MethodGet, "/messages/"+id, ""); got.status != http.StatusOK {
		t.Errorf("A reads its message through the balancer: got %d %v", got.status, got.body)
	}
	if got := f.lb.as(tokenB, http.MethodGet, "/messages/"+id, ""); got.status != http.StatusNotFound {
		t.Errorf("B reads A's message through the balancer: got %d, want 404", got.status)
	}
	unauthorized := f.lb.as("", http.MethodPost, "/messages", `{"destination":"d","body":"b"}`)
	checkProblem(t, unauthorized, http.StatusUnauthorized, "unauthorized")
	if !strings.HasPrefix(unauthorized.header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("WWW-Authenticate through the balancer: got %q", unauthorized.header.Get("WWW-Authenticate"))
	}
}

// TestTwoClientsMayUseOneKeyAtOnceThroughTheBalancer: courier scopes an
// Idempotency-Key by client, so the balancer's key tables must too. While
// A's POST of key K is on its way (its body not yet sent), B's POST of K
// is B's own: answered 202, not 409 idempotency_key_in_flight, which
// would also tell B that someone else is using K right now.
func TestTwoClientsMayUseOneKeyAtOnceThroughTheBalancer(t *testing.T) {
	f := startFleet(t, map[string]string{"API_TOKENS": tokenA + "," + tokenB})
	body := `{"destination":"+34600000000","body":"a's text"}`
	// startA sends A's headers and part of its body: once HAProxy has read
	// them, A's key is in flight, and stays so while the body does not come.
	startA := func() net.Conn {
		c, err := net.Dial("tcp", strings.TrimPrefix(f.lb.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := c.Write([]byte("POST /messages HTTP/1.1\r\nHost: courier\r\nContent-Type: application/json\r\n" +
			"Authorization: Bearer " + tokenA + "\r\nIdempotency-Key: shared-key\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" +
			body[:10])); err != nil {
			t.Fatal(err)
		}
		return c
	}
	startA()
	// A second one is answered 409 if the first is in flight, or is left
	// waiting for its body, in flight itself: either way, A's key is.
	second := startA()
	_ = second.SetReadDeadline(time.Now().Add(time.Second))
	_, _ = second.Read(make([]byte, 512))
	if r := f.lb.postAs(tokenB, "shared-key", "+34600000001", "b's text"); r.status != http.StatusAccepted {
		t.Errorf("B's POST of the key A has in flight: got %d %v, want 202 (keys are per client)", r.status, r.body)
	}
}
