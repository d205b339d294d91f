package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// soakDuration is how long clients POST during the chaos soak: short in
// CI, longer with COURIER_SOAK=2m.
func soakDuration(t *testing.T) time.Duration {
	if v := os.Getenv("COURIER_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("COURIER_SOAK=%q: %v", v, err)
		}
		return d
	}
	return 3 * time.Second
}

// rawPost POSTs without failing the test, for use from client goroutines.
func rawPost(client *http.Client, url, key, body string) (status int, id string, retryAfter time.Duration, err error) {
	b, _ := json.Marshal(map[string]string{"destination": "+34600000000", "body": body})
	req, _ := http.NewRequest(http.MethodPost, url+"/messages", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", 0, err
	}
	defer resp.Body.Close()
	var out struct {
		ID string `json:"id"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	ra, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	return resp.StatusCode, out.ID, time.Duration(ra) * time.Second, nil
}

func TestChaosSoakLosesNothing(t *testing.T) {
	duration := soakDuration(t)
	app := newFakeMessageapp(t, modeOK)
	env := baseEnv(app.URL())
	for k, v := range map[string]string{"QUEUE_MAX_SIZE": "20", "QUEUE_RECOVERY_THRESHOLD": "5", "SENDERS": "8",
		"MESSAGEAPP_TIMEOUT": "100ms", "BREAKER_BACKOFF_INITIAL": "20ms", "BREAKER_BACKOFF_MAX": "200ms",
		"SHUTDOWN_TIMEOUT": "1s", "LOG_LEVEL": "info"} {
		env[k] = v
	}
	// The log goes to a file, so the heap measured below is courier's.
	s := startServiceLogging(t, env, fileLog(t))
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	seed := rng.Uint64()
	t.Logf("chaos for %s, seed %d", duration, seed)

	stop := make(chan struct{})
	var bg sync.WaitGroup
	// messageapp flaps between every way of failing.
	bg.Go(func() {
		chaos := rand.New(rand.NewPCG(seed, 2))
		for {
			app.set(fakeMode(chaos.IntN(int(modeReset) + 1)))
			app.delay.Store(int64(chaos.IntN(200)) * int64(time.Millisecond))
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(20+chaos.IntN(280)) * time.Millisecond):
			}
		}
	})
	// A sampler checks the contract at every instant it can see.
	var samples int
	bg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			resp, err := s.client.Get(s.url + "/status")
			if err != nil {
				t.Errorf("GET /status: %v", err)
				return
			}
			var st statusResponse
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if err != nil || !st.Messages.Balanced() || st.Queue.Depth > st.Queue.MaxSize {
				t.Errorf("status broke the contract (%v): %+v", err, st)
				return
			}
			samples++
		}
	})

	// Clients: half send each message once, half retry with a key.
	var mu sync.Mutex // guards accepted and keyed
	accepted := map[string]bool{}
	keyed := map[string]string{}
	var clients sync.WaitGroup
	deadline := time.Now().Add(duration)
	var heapAtThird uint64
	bg.Go(func() {
		select {
		case <-stop:
		case <-time.After(duration / 3):
			heapAtThird = heapInUse()
		}
	})
	for c := range 16 {
		clients.Go(func() {
			for i := 0; time.Now().Before(deadline); i++ {
				key := ""
				if c%2 == 0 {
					key = fmt.Sprintf("c%d-%d", c, i)
				}
				for attempt := 0; attempt < 4; attempt++ {
					status, id, ra, err := rawPost(s.client, s.url, key, fmt.Sprintf("c%d m%d", c, i))
					if err != nil {
						t.Errorf("POST: %v", err)
						return
					}
					if status == http.StatusAccepted {
						mu.Lock()
						if prev, ok := keyed[key]; key != "" && ok && prev != id {
							t.Errorf("key %s: first id %s, now %s", key, prev, id)
						}
						if key != "" {
							keyed[key] = id
						}
						accepted[id] = true
						mu.Unlock()
					} else if status != http.StatusServiceUnavailable {
						t.Errorf("POST answered %d", status)
						return
					}
					if key == "" || status == http.StatusAccepted && attempt > 0 {
						break
					}
					// A client backing off, not synchronisation: wait a
					// little of what Retry-After says.
					time.Sleep(min(ra/20, 50*time.Millisecond))
				}
			}
		})
	}
	clients.Wait()
	heapAtEnd := heapInUse() // courier still running, its queue still busy
	close(stop)
	bg.Wait()
	if code := s.stop(); code != 0 {
		t.Fatalf("exit code %d", code)
	}

	// Every accepted id ended final or was listed as undelivered.
	undelivered := map[string]bool{}
	for _, e := range s.logs.entries(map[string]any{"event": "undelivered"}) {
		undelivered[e["id"].(string)] = true
	}
	last := map[string]map[string]any{}
	for _, e := range s.logs.entries(map[string]any{"component": "sender"}) {
		if id, ok := e["id"].(string); ok && e["outcome"] != nil && e["outcome"] != "breaker_open" {
			last[id] = e
		}
	}
	for id := range accepted {
		if undelivered[id] {
			continue
		}
		e := last[id]
		final := e != nil && (e["outcome"] == "sent" || e["outcome"] == "timeout" || e["outcome"] == "connection_lost" ||
			e["attempt"] == float64(3))
		if !final {
			t.Errorf("message %s: neither final (last attempt %v) nor listed as undelivered", id, e)
		}
	}
	stopped := s.logs.entries(map[string]any{"event": "stopped"})[0]
	if stopped["accepted"] != float64(len(accepted)) {
		t.Errorf("courier accepted %v, clients saw %d distinct ids", stopped["accepted"], len(accepted))
	}
	if sum := stopped["sent"].(float64) + stopped["failed"].(float64) + stopped["timeout"].(float64) +
		stopped["connection_lost"].(float64) + stopped["undelivered"].(float64); sum != stopped["accepted"] {
		t.Errorf("at the end: sent+failed+timeout+connection_lost+undelivered = %v, accepted %v", sum, stopped["accepted"])
	}

	// Transitions alternate.
	queueEvents := s.logs.events("enqueueing_disabled", "enqueueing_enabled")
	for i, ev := range queueEvents {
		if want := []string{"enqueueing_disabled", "enqueueing_enabled"}[i%2]; ev != want {
			t.Fatalf("queue transition %d is %s, want %s: %v", i, ev, want, queueEvents)
		}
	}
	circuit := s.logs.events("circuit_open", "circuit_half_open", "circuit_closed")
	allowed := map[string]string{"": "circuit_open", "circuit_open": "circuit_half_open",
		"circuit_half_open": "circuit_open circuit_closed", "circuit_closed": "circuit_open"}
	prev := ""
	for i, ev := range circuit {
		if !strings.Contains(allowed[prev], ev) {
			t.Fatalf("circuit transition %d: %s after %q: %v", i, ev, prev, circuit)
		}
		prev = ev
	}

	t.Logf("%d accepted, %d undelivered, %d status samples, %d queue and %d circuit transitions, heap %d MiB at a third, %d MiB at the end",
		len(accepted), len(undelivered), samples, len(queueEvents), len(circuit), heapAtThird>>20, heapAtEnd>>20)
	// Retention caps what courier keeps: the heap may grow until
	// MESSAGES_RETAINED fill up, not with the length of the run. (Not the
	// RSS: under -race most of it is the detector's shadow memory, which
	// grows with every goroutine and allocation the run has seen.)
	if heapAtThird > 0 && heapAtEnd > max(2*heapAtThird, heapAtThird+32<<20) {
		t.Errorf("heap grew from %d MiB at a third of the run to %d MiB at the end", heapAtThird>>20, heapAtEnd>>20)
	}
	if len(accepted) == 0 || len(queueEvents) == 0 || len(circuit) == 0 {
		t.Errorf("the chaos did not exercise courier: %d accepted, %d queue and %d circuit transitions",
			len(accepted), len(queueEvents), len(circuit))
	}
}

// heapInUse is the live heap after a collection.
func heapInUse() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}
