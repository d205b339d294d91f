package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Two clients' tokens, as API_TOKENS holds them.
const (
	tokenA = "client-a-0123456789abcdef"
	tokenB = "client-b-0123456789abcdef"
)

// as sends a request carrying token (none when empty).
func (s *testCourier) as(token, method, path, body string) response {
	s.t.Helper()
	h := http.Header{"Content-Type": {"application/json"}}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	return s.doWith(method, path, body, h)
}

// postAs posts a message as token's client, with key when not empty.
func (s *testCourier) postAs(token, key, dest, body string) response {
	s.t.Helper()
	b, _ := json.Marshal(map[string]string{"destination": dest, "body": body})
	h := http.Header{"Content-Type": {"application/json"}, "Authorization": {"Bearer " + token}, "Idempotency-Key": {key}}
	return s.doWith(http.MethodPost, "/messages", string(b), h)
}

func tokenEnv(t *testing.T) map[string]string {
	env := baseEnv(newFakeMessageapp(t, modeOK).URL())
	env["API_TOKENS"] = tokenA + ", " + tokenB
	return env
}

func TestWithTokensEveryMessagesRouteNeedsOne(t *testing.T) {
	s := startService(t, tokenEnv(t))
	id := s.postAs(tokenA, "", "d", "b").body["id"].(string)
	routes := []struct{ method, path, body string }{
		{http.MethodPost, "/messages", `{"destination":"d","body":"b"}`},
		{http.MethodGet, "/messages", ""},
		{http.MethodGet, "/messages/" + id, ""},
	}
	for _, rt := range routes {
		for _, auth := range []struct{ name, header, wantChallenge string }{
			{"no Authorization", "", `Bearer realm="courier"`},
			{"a wrong token", "Bearer not-a-token-of-courier", `Bearer realm="courier", error="invalid_token"`},
			{"a token in another scheme", "Basic " + tokenA, `Bearer realm="courier", error="invalid_token"`},
			{"a prefix of a token", "Bearer " + tokenA[:len(tokenA)-1], `Bearer realm="courier", error="invalid_token"`},
		} {
			t.Run(rt.method+" "+rt.path+" with "+auth.name, func(t *testing.T) {
				r := s.doWith(rt.method, rt.path, rt.body, http.Header{"Content-Type": {"application/json"}, "Authorization": {auth.header}})
				checkProblem(t, r, http.StatusUnauthorized, "unauthorized")
				if got := r.header.Get("WWW-Authenticate"); got != auth.wantChallenge {
					t.Errorf("WWW-Authenticate: got %q, want %q", got, auth.wantChallenge)
				}
			})
		}
	}
	if st := s.status(); st.Messages.Accepted != 1 {
		t.Errorf("accepted: got %d, want 1 (no refused POST was taken)", st.Messages.Accepted)
	}
	for _, path := range []string{"/healthz", "/readyz", "/status", "/metrics"} {
		if got := s.rawGet(path); got != http.StatusOK {
			t.Errorf("GET %s without a token: got %d, want 200 (it carries no message content)", path, got)
		}
	}
}

func TestEachClientReadsListsAndKeysOnlyItsOwnMessages(t *testing.T) {
	s := startService(t, tokenEnv(t))
	a := s.postAs(tokenA, "order-1", "+34600000001", "a's secret")
	b := s.postAs(tokenB, "order-1", "+34600000002", "b's secret")
	if a.status != 202 || b.status != 202 || a.body["id"] == b.body["id"] {
		t.Fatalf("one key, two clients: got %d %v and %d %v, want two 202s with two ids", a.status, a.body, b.status, b.body)
	}
	idA, idB := a.body["id"].(string), b.body["id"].(string)

	if r := s.as(tokenA, http.MethodGet, "/messages/"+idA, ""); r.status != 200 || r.body["body"] != "a's secret" {
		t.Errorf("A reads its message: got %d %v", r.status, r.body)
	}
	r := s.as(tokenB, http.MethodGet, "/messages/"+idA, "")
	checkProblem(t, r, http.StatusNotFound, "not_found")
	if strings.Contains(fmt.Sprint(r.body), "secret") {
		t.Errorf("B's 404 shows A's message: %v", r.body)
	}
	for token, want := range map[string]string{tokenA: idA, tokenB: idB} {
		list := s.as(token, http.MethodGet, "/messages?limit=1000", "")
		msgs, _ := list.body["messages"].([]any)
		if len(msgs) != 1 || msgs[0].(map[string]any)["id"] != want {
			t.Errorf("list: got %v, want only %s", list.body, want)
		}
	}

	again := s.postAs(tokenB, "order-1", "+34600000002", "b's secret")
	if again.status != 202 || again.body["id"] != idB || again.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("B's retry: got %d %v, want B's own 202 replayed", again.status, again.body)
	}
	conflict := s.postAs(tokenB, "order-1", "d", "another text")
	checkProblem(t, conflict, http.StatusUnprocessableEntity, "idempotency_key_reused")
	if text := fmt.Sprint(conflict.body); strings.Contains(text, idA) || strings.Contains(text, idB) {
		t.Errorf("422 names a message: %v", conflict.body)
	}
	if st := s.status(); st.Messages.Accepted != 2 {
		t.Errorf("accepted: got %d, want 2", st.Messages.Accepted)
	}
}

func TestAdminAddrMovesOperatorsRoutesOffTheClientsListener(t *testing.T) {
	env := tokenEnv(t)
	env["ADMIN_ADDR"] = "127.0.0.1:" + freePort(t)
	s := startService(t, env)
	admin := *s
	admin.url = "http://" + env["ADMIN_ADDR"]

	for _, path := range []string{"/status", "/metrics", "/events", "/", "/openapi.yaml"} {
		checkProblem(t, s.as("", http.MethodGet, path, ""), http.StatusNotFound, "not_found")
		if path == "/events" {
			continue // a stream: read below
		}
		if r := admin.rawGet(path); r != http.StatusOK {
			t.Errorf("admin GET %s: got %d, want 200", path, r)
		}
	}
	resp, err := http.Get(admin.url + "/events")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Errorf("admin GET /events: got %d %q, want the stream", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if r := s.as("", http.MethodGet, path, ""); r.status != http.StatusOK {
			t.Errorf("GET %s on PORT: got %d, want 200", path, r.status)
		}
		if r := admin.rawGet(path); r != http.StatusOK {
			t.Errorf("GET %s on ADMIN_ADDR: got %d, want 200", path, r)
		}
	}
	if got := admin.rawGet("/messages"); got != http.StatusNotFound {
		t.Errorf("GET /messages on ADMIN_ADDR: got %d, want 404 (the clients' API is on PORT)", got)
	}
	if r := s.postAs(tokenA, "", "d", "b"); r.status != http.StatusAccepted {
		t.Errorf("POST on PORT: got %d, want 202", r.status)
	}
	listening := s.logs.entries(map[string]any{"event": "listening"})
	if len(listening) != 1 || listening[0]["admin_addr"] != env["ADMIN_ADDR"] ||
		listening[0]["dashboard"] != "http://localhost:"+strings.Split(env["ADMIN_ADDR"], ":")[1]+"/" {
		t.Errorf("listening line: got %v, want admin_addr and the dashboard on it", listening)
	}
}

// rawGet is GET path's status, outside the contract client (the admin
// listener's answers to the clients' routes are not in openapi.yaml).
func (s *testCourier) rawGet(path string) int {
	s.t.Helper()
	resp, err := http.Get(s.url + path)
	if err != nil {
		s.t.Fatalf("GET %s: %v", path, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestOpenAccessIsWarnedOnceWhenListeningBeyondLoopback(t *testing.T) {
	app := newFakeMessageapp(t, modeOK)
	for _, tt := range []struct {
		name   string
		tokens string
		want   int
	}{{"API_TOKENS unset", "", 1}, {"API_TOKENS set", tokenA, 0}} {
		t.Run(tt.name, func(t *testing.T) {
			env := baseEnv(app.URL())
			env["API_TOKENS"] = tt.tokens
			s := startService(t, env) // PORT: every interface
			s.post("d", "b")
			if got := len(s.logs.entries(map[string]any{"event": "open_access", "level": "warn"})); got != tt.want {
				t.Errorf("open_access warnings: got %d, want %d", got, tt.want)
			}
		})
	}
}

func TestTokenConfiguration(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "tokens")
	if err := os.WriteFile(file, []byte("# clients\n"+tokenA+"\n\n  "+tokenB+"  \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	read := func(name string) ([]byte, error) {
		if name == file {
			return os.ReadFile(file)
		}
		return nil, errors.New("no such file")
	}
	tests := []struct {
		name, list, file string
		want             int // tokens; -1: refused
		wantVar          string
	}{
		{"unset", "", "", 0, ""},
		{"a list", tokenA + "," + tokenB + ",", "", 2, ""},
		{"a file", "", file, 2, ""},
		{"both", tokenA, file, -1, "API_TOKENS_FILE"},
		{"a missing file", "", filepath.Join(dir, "nope"), -1, "API_TOKENS_FILE"},
		{"a short token", tokenA + ",short", "", -1, "API_TOKENS"},
		{"a token with a space", "client-a 0123456789abcdef", "", -1, "API_TOKENS"},
		{"the same token twice", tokenA + "," + tokenA, "", -1, "API_TOKENS"},
		{"only commas", ",,", "", -1, "API_TOKENS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tokens, err := readTokens(tt.list, tt.file, read)
			switch {
			case tt.want < 0 && (err == nil || err.Var != tt.wantVar):
				t.Fatalf("got %v, want an error naming %s", err, tt.wantVar)
			case tt.want >= 0 && (err != nil || len(tokens) != tt.want):
				t.Fatalf("got %d tokens, %v; want %d", len(tokens), err, tt.want)
			case err != nil && (strings.Contains(err.Error(), "short") || strings.Contains(err.Error(), "0123456789abcdef")):
				t.Errorf("the error shows a token: %v", err)
			}
		})
	}
}

func TestClientsIdentifyByTokenAndKeepNoToken(t *testing.T) {
	c := NewClients([]string{tokenA, tokenB})
	a, okA := c.Identify("Bearer " + tokenA)
	b, okB := c.Identify("bearer " + tokenB)
	if !okA || !okB || a == b || a == "" {
		t.Fatalf("got %q %v and %q %v, want two distinct clients", a, okA, b, okB)
	}
	if a != clientID(tokenA) || strings.Contains(a, tokenA) || len(a) != 16 {
		t.Errorf("client of A: got %q, want 16 hex characters that are not the token", a)
	}
	if again, _ := NewClients([]string{tokenB, tokenA}).Identify("Bearer " + tokenA); again != a {
		t.Errorf("A's client changed with the tokens' order: %q, then %q", a, again)
	}
	for _, h := range []string{"", "Bearer", "Bearer ", tokenA, "Token " + tokenA, "Bearer " + tokenA + "x"} {
		if _, ok := c.Identify(h); ok {
			t.Errorf("Identify(%q) let it in", h)
		}
	}
	if client, ok := (*Clients)(nil).Identify(""); !ok || client != "" {
		t.Errorf("open access: got %q %v, want the anonymous client", client, ok)
	}
}

func TestLoadClientSendsItsTokenAndReadsStatusOnTheAdminListener(t *testing.T) {
	env := tokenEnv(t)
	env["ADMIN_ADDR"] = "127.0.0.1:" + freePort(t)
	s := startService(t, env)
	c, err := newLoadClient(loadOptions{URL: s.url, AdminURL: "http://" + env["ADMIN_ADDR"], Token: tokenA,
		Concurrency: 1, Duration: 10 * time.Second, MaxRequests: 5})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.run(context.Background()); got.Accepted != 5 {
		t.Errorf("accepted: got %d of 5 (%+v), want all", got.Accepted, got)
	}
	if v := fetchStatus(c.http, c.opt.AdminURL); v.depth == "?" {
		t.Errorf("load's status view: got %+v, want it read from the admin listener", v)
	}
	list := s.as(tokenA, http.MethodGet, "/messages", "")
	if msgs, _ := list.body["messages"].([]any); len(msgs) != 5 {
		t.Errorf("client A's list: got %d messages, want the 5 the load client sent as A", len(msgs))
	}
}
