package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func (s *testCourier) postKeyed(key, dest, body string) response {
	s.t.Helper()
	b, _ := json.Marshal(map[string]string{"destination": dest, "body": body})
	return s.doWith(http.MethodPost, "/messages", string(b),
		http.Header{"Content-Type": {"application/json"}, "Idempotency-Key": {key}})
}

func TestRepeatedIdempotencyKeyReturnsTheFirstMessage(t *testing.T) {
	app := newFakeMessageapp(t, modeOK)
	s := startService(t, baseEnv(app.URL()))
	first := s.postKeyed("order-42", "d", "hello")
	if first.status != 202 || first.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("first POST: got %d %v", first.status, first.header)
	}
	id := first.body["id"].(string)
	s.waitStatus(id, StatusSent)

	again := s.postKeyed("order-42", "d", "hello")
	if again.status != 202 || again.body["id"] != id || again.header.Get("Idempotent-Replayed") != "true" ||
		again.header.Get("Location") != "/messages/"+id {
		t.Errorf("repeat: got %d %v %v, want the first 202 and id, marked replayed", again.status, again.body, again.header)
	}
	if st := s.status(); st.Messages.Accepted != 1 || app.calls.Load() != 1 {
		t.Errorf("accepted %d, messageapp calls %d; want 1 and 1", st.Messages.Accepted, app.calls.Load())
	}

	reused := s.postKeyed("order-42", "d", "a different body")
	checkProblem(t, reused, 422, "idempotency_key_reused")
	if _, named := reused.body["id"]; named || strings.Contains(fmt.Sprint(reused.body), id) {
		t.Errorf("422 names the message that holds the key: %v", reused.body)
	}
}

func TestConcurrentPostsWithOneKeyEnqueueOnce(t *testing.T) {
	app := newFakeMessageapp(t, modeOK)
	env := baseEnv(app.URL())
	env["QUEUE_MAX_SIZE"] = "100"
	s := startService(t, env)
	var wg sync.WaitGroup
	ids := make(chan any, 50)
	for range 50 {
		wg.Go(func() {
			r := s.postKeyed("same", "d", "b")
			if r.status != 202 {
				t.Errorf("got %d, want 202", r.status)
			}
			ids <- r.body["id"]
		})
	}
	wg.Wait()
	close(ids)
	distinct := map[any]bool{}
	for id := range ids {
		distinct[id] = true
	}
	if len(distinct) != 1 {
		t.Errorf("distinct ids: got %d, want 1", len(distinct))
	}
	if st := s.status(); st.Messages.Accepted != 1 {
		t.Errorf("accepted: got %d, want 1", st.Messages.Accepted)
	}
}

func TestRetryOfAnAcceptedMessageIsAnsweredEvenWhileTheQueueIsFull(t *testing.T) {
	app := newFakeMessageapp(t, modeHang)
	env := baseEnv(app.URL())
	env["SENDERS"] = "1"
	env["MESSAGEAPP_TIMEOUT"] = "1m"
	s := startService(t, env)
	s.post("d", "occupies the sender")
	eventually(t, 5*time.Second, "the sender to be busy", func() bool { return s.status().Messages.Sending == 1 })
	first := s.postKeyed("k1", "d", "b")
	for i := range 9 {
		s.post("d", strconv.Itoa(i))
	}
	if st := s.status(); st.Queue.Accepting {
		t.Fatal("queue should be full")
	}
	checkProblem(t, s.postKeyed("k2", "d", "b"), 503, "queue_full")
	again := s.postKeyed("k1", "d", "b")
	if again.status != 202 || again.body["id"] != first.body["id"] {
		t.Errorf("retry while full: got %d %v, want the original 202", again.status, again.body)
	}
}

func TestBadIdempotencyKeysAreRefused(t *testing.T) {
	app := newFakeMessageapp(t, modeOK)
	s := startService(t, baseEnv(app.URL()))
	for _, key := range []string{strings.Repeat("k", 256), "has space", "tab\there"} {
		checkProblem(t, s.postKeyed(key, "d", "b"), 400, "invalid_request")
	}
	t.Run("two keys are refused, not taken for the first", func(t *testing.T) {
		r := s.doWith(http.MethodPost, "/messages", `{"destination":"d","body":"b"}`,
			http.Header{"Content-Type": {"application/json"}, "Idempotency-Key": {"k1", "k2"}})
		checkProblem(t, r, 400, "invalid_request")
	})
	t.Run("an empty key is refused, not taken for no key", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, s.url+"/messages", strings.NewReader(`{"destination":"d","body":"b"}`))
		req.Header["Idempotency-Key"] = []string{""}
		resp, err := s.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("status: got %d, want 400", resp.StatusCode)
		}
	})
	if st := s.status(); st.Messages.Accepted != 0 {
		t.Errorf("accepted: got %d, want 0", st.Messages.Accepted)
	}
}

func TestKeysAreForgottenWithTheirMessages(t *testing.T) {
	app := newFakeMessageapp(t, modeOK)
	env := baseEnv(app.URL())
	env["MESSAGES_RETAINED"] = "1"
	s := startService(t, env)
	first := s.postKeyed("k", "d", "b").body["id"].(string)
	s.waitStatus(first, StatusSent)
	s.waitStatus(s.post("d", "pushes the first out").body["id"].(string), StatusSent)
	again := s.postKeyed("k", "d", "b")
	if again.status != 202 || again.body["id"] == first {
		t.Errorf("after eviction: got %d %v, want a new message", again.status, again.body)
	}
}

func TestRetryOfAnAcceptedMessageIsAnsweredWhileShuttingDown(t *testing.T) {
	s := startStuckCourier(t)
	first := s.postKeyed("order-7", "d", "hello")
	id, _ := first.body["id"].(string)
	exit := make(chan int, 1)
	go func() { exit <- s.stop() }()
	s.waitEvent("shutting_down", 1)

	// Behind a balancer a 503 here would send the retry to another
	// replica, which would accept the message a second time.
	again := s.postKeyed("order-7", "d", "hello")
	if again.status != 202 || again.body["id"] != id || again.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("retry while draining: got %d %v, want the first 202 with id %s", again.status, again.body, id)
	}
	checkProblem(t, s.postKeyed("order-8", "d", "hello"), 503, "shutting_down")
	checkProblem(t, s.postKeyed("order-7", "d", "another body"), 422, "idempotency_key_reused")
	if code := <-exit; code != 0 {
		t.Fatalf("exit code: got %d, want 0", code)
	}
	if st := s.logs.entries(map[string]any{"event": "stopped"}); len(st) != 1 || st[0]["accepted"] != float64(1) {
		t.Errorf("stopped line: got %v, want accepted 1", st)
	}
}

func TestReplicaNameStartsEveryID(t *testing.T) {
	app := newFakeMessageapp(t, modeOK)
	tests := []struct {
		replica, wantPrefix string
	}{
		{"", ""},
		{"c2", "c2-"},
	}
	for _, tt := range tests {
		t.Run("REPLICA="+strconv.Quote(tt.replica), func(t *testing.T) {
			env := baseEnv(app.URL())
			env["REPLICA"] = tt.replica
			s := startService(t, env)
			r := s.post("d", "b")
			id, _ := r.body["id"].(string)
			if !strings.HasPrefix(id, tt.wantPrefix) || strings.Count(id, "-") != len(tt.wantPrefix)/3 {
				t.Errorf("id: got %q, want it to start with %q and hold no other dash", id, tt.wantPrefix)
			}
			if got := r.header.Get("Location"); got != "/messages/"+id {
				t.Errorf("Location: got %q, want /messages/%s", got, id)
			}
			if got := s.message(id).ID; got != id {
				t.Errorf("GET by id: got %q, want %q", got, id)
			}
			if got := s.status().Replica; got != tt.replica {
				t.Errorf("/status replica: got %q, want %q", got, tt.replica)
			}
		})
	}
}
