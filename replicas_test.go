package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// haproxyPath finds Debian's haproxy. Without it the test is skipped, unless
// COURIER_REQUIRE_HAPROXY=1 (as in CI), where it fails.
func haproxyPath(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p
	}
	if os.Getenv("COURIER_REQUIRE_HAPROXY") == "1" {
		t.Fatal("no haproxy found and COURIER_REQUIRE_HAPROXY=1 (apt-get install haproxy)")
	}
	t.Skip("no haproxy found: apt-get install haproxy to run the replicas test")
	return ""
}

// fleet is three couriers started through run, each with its own fake
// messageapp, behind the repository's haproxy.cfg.
type fleet struct {
	t        *testing.T
	lb       *testCourier // the balancer, spoken to with the service helpers
	replicas map[string]*testCourier
	apps     map[string]*fakeMessageapp
	haproxy  *logBuffer

	mu  sync.Mutex      // guards ids
	ids map[string]bool // every id a 202 returned, through the balancer or not
}

var replicaNames = []string{"c1", "c2", "c3"}

// startFleet starts the fleet, each replica configured as the story below
// needs, then by env.
func startFleet(t *testing.T, env map[string]string) *fleet {
	t.Helper()
	bin := haproxyPath(t)
	f := &fleet{t: t, replicas: map[string]*testCourier{}, apps: map[string]*fakeMessageapp{},
		haproxy: &logBuffer{}, ids: map[string]bool{}}
	cmdEnv := os.Environ()
	for i, name := range replicaNames {
		f.apps[name] = newFakeMessageapp(t, modeOK)
		replicaEnv := baseEnv(f.apps[name].URL())
		for k, v := range map[string]string{"REPLICA": name, "QUEUE_MAX_SIZE": "10", "QUEUE_RECOVERY_THRESHOLD": "2",
			// One timeout opens the circuit, and a probe a second keeps
			// a full queue full for a few seconds of a hanging messageapp.
			"BREAKER_THRESHOLD": "1", "BREAKER_BACKOFF_INITIAL": "1s", "BREAKER_BACKOFF_MAX": "1s",
			"SHUTDOWN_TIMEOUT": "3s", "LOG_LEVEL": "info"} {
			replicaEnv[k] = v
		}
		maps.Copy(replicaEnv, env)
		f.replicas[name] = startService(t, replicaEnv)
		cmdEnv = append(cmdEnv, fmt.Sprintf("COURIER_%d=%s", i+1, strings.TrimPrefix(f.replicas[name].url, "http://")))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "-f", "haproxy.cfg", "-db")
	cmd.Env = append(cmdEnv, "LISTEN="+addr)
	cmd.Stdout, cmd.Stderr = f.haproxy, f.haproxy
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	f.lb = &testCourier{t: t, url: "http://" + addr, client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}}
	t.Cleanup(func() {
		f.lb.client.CloseIdleConnections()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("haproxy said:\n%s", f.haproxy.String())
		}
	})
	eventually(t, 5*time.Second, "haproxy to listen", func() bool {
		select {
		case <-exited:
			t.Fatalf("haproxy exited: %s", f.haproxy.String())
		default:
		}
		resp, err := f.lb.client.Get(f.lb.url + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return f
}

// post sends a message through the balancer, with key if not empty, and
// records the id of a 202.
func (f *fleet) post(key string) response {
	f.t.Helper()
	return f.record(f.lb.postKeyed(key, "+34600000000", "through the balancer "+key))
}

// record notes the id of a 202 and returns r.
func (f *fleet) record(r response) response {
	if id, _ := r.body["id"].(string); r.status == http.StatusAccepted && id != "" {
		f.mu.Lock()
		f.ids[id] = true
		f.mu.Unlock()
	}
	return r
}

// fill makes replica name's queue full, posting to it directly, with its
// messageapp hanging so the circuit opens and the queue stays full.
func (f *fleet) fill(name string) {
	f.t.Helper()
	f.apps[name].set(modeHang)
	s := f.replicas[name]
	eventually(f.t, 5*time.Second, name+" to refuse", func() bool {
		r := f.record(s.post("+34600000000", "straight to "+name))
		return r.status == http.StatusServiceUnavailable && s.do(http.MethodGet, "/readyz", "", "").status == http.StatusServiceUnavailable
	})
}

// rejected is how many POSTs replica name has answered 503.
func (f *fleet) rejected(name string) int64 { return f.replicas[name].status().Messages.Rejected }

// untouched posts a burst through the balancer, each answered 202, and
// reports whether none of it reached replica name.
func (f *fleet) untouched(name string) bool {
	f.t.Helper()
	before := f.rejected(name)
	for range 9 {
		if r := f.post(""); r.status != http.StatusAccepted {
			f.t.Fatalf("POST through the balancer with %s out: got %d %v, want 202", name, r.status, r.body)
		} else if id := r.body["id"].(string); strings.HasPrefix(id, name+"-") {
			return false
		}
	}
	return f.rejected(name) == before
}

func replicaOf(id string) string { name, _, _ := strings.Cut(id, "-"); return name }

// TestReplicasBehindHAProxy drives three replicas through the repository's
// haproxy.cfg, one story in order: healthy, one replica full, every replica
// full, recovered, one replica shut down. Each step needs the one before.
func TestReplicasBehindHAProxy(t *testing.T) {
	f := startFleet(t, nil)

	// POSTs spread over the three replicas and every Location leads to its record.
	seen := map[string]int{}
	var locations, c3IDs []string
	for range 30 {
		r := f.post("")
		if r.status != http.StatusAccepted {
			t.Fatalf("POST: got %d %v, want 202", r.status, r.body)
		}
		id := r.body["id"].(string)
		seen[replicaOf(id)]++
		locations = append(locations, r.header.Get("Location"))
		if replicaOf(id) == "c3" {
			c3IDs = append(c3IDs, id)
		}
	}
	for _, name := range replicaNames {
		if seen[name] == 0 {
			t.Errorf("replica %s took none of 30 POSTs (%v)", name, seen)
		}
	}
	for _, loc := range locations {
		r := f.lb.do(http.MethodGet, loc, "", "")
		if r.status != http.StatusOK || "/messages/"+r.body["id"].(string) != loc {
			t.Errorf("GET %s through the balancer: got %d %v, want its record", loc, r.status, r.body)
		}
	}

	// A retried Idempotency-Key yields one message, even sent at once.
	first := f.post("order-1")
	var wg sync.WaitGroup
	ids := make(chan string, 8)
	for range 8 {
		wg.Go(func() {
			status, id, _, err := rawPost(f.lb.client, f.lb.url, "order-1", "through the balancer order-1")
			if err != nil || status != http.StatusAccepted {
				t.Errorf("concurrent retry: got %d %v, want 202", status, err)
			}
			ids <- id
		})
	}
	wg.Wait()
	close(ids)
	for id := range ids {
		if id != first.body["id"] {
			t.Errorf("retry: got id %s, want %v", id, first.body["id"])
		}
	}

	// A key that c2 took while it accepted, to retry once it is full.
	var c2Key, c2KeyID string
	for i := 0; c2Key == ""; i++ {
		key := "before-" + strconv.Itoa(i)
		if id := f.post(key).body["id"].(string); replicaOf(id) == "c2" {
			c2Key, c2KeyID = key, id
		}
	}
	retry := func(when, key, id string) {
		t.Helper()
		if r := f.post(key); r.status != http.StatusAccepted || r.body["id"] != id {
			t.Errorf("retry of key %s %s: got %d %v, want 202 with id %s", key, when, r.status, r.body, id)
		}
	}

	// One replica full: POSTs keep getting 202 from the others. Before the
	// balancer's check sees c2 full, c2's 503s are retried on the others;
	// after, c2 gets nothing.
	f.fill("c2")
	eventually(t, 3*time.Second, "the balancer to stop sending to c2", func() bool { return f.untouched("c2") })
	keysWhileFull := map[string]string{}
	for i := range 20 {
		key := "while-c2-full-" + strconv.Itoa(i)
		r := f.post(key)
		if r.status != http.StatusAccepted || replicaOf(r.body["id"].(string)) == "c2" {
			t.Fatalf("keyed POST with c2 full: got %d %v, want 202 from c1 or c3", r.status, r.body)
		}
		keysWhileFull[key] = r.body["id"].(string)
	}
	for key, id := range keysWhileFull {
		retry("with c2 full", key, id)
	}
	retry("that c2 took, with c2 full", c2Key, c2KeyID)

	// Every replica full: problem+json 503 with Retry-After, from a replica
	// until the balancer's checks catch up, then from the balancer.
	f.fill("c1")
	f.fill("c3")
	var r response
	eventually(t, 3*time.Second, "the balancer to answer no_replica_accepting", func() bool {
		r = f.post("")
		if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
			t.Fatalf("POST with every replica full: got %d %v (Retry-After %q), want 503 with Retry-After",
				r.status, r.body, r.header.Get("Retry-After"))
		}
		return r.body["code"] == "no_replica_accepting"
	})
	checkProblem(t, r, 503, "no_replica_accepting")
	checkProblem(t, f.post("a-new-key"), 503, "no_replica_accepting")
	retry("that c2 took, with every replica full", c2Key, c2KeyID)

	// Recovered: keys are still answered by the replica that took them,
	// though c2, where their hash points, accepts again.
	for _, name := range replicaNames {
		f.apps[name].set(modeOK)
	}
	eventually(t, 5*time.Second, "c2 to accept through the balancer", func() bool {
		id, _ := f.post("").body["id"].(string)
		return replicaOf(id) == "c2"
	})
	for key, id := range keysWhileFull {
		retry("after recovery", key, id)
	}

	// A replica shut down drains, leaves rotation, and its records answer
	// 503 once it is gone.
	c3 := f.replicas["c3"]
	f.apps["c3"].set(modeHang)
	for range 9 { // four held by hanging calls, five left in the queue
		f.record(c3.post("+34600000000", "left in c3's queue"))
	}
	exit := make(chan int, 1)
	go func() { exit <- c3.stop() }() // what SIGTERM does
	c3.waitEvent("shutting_down", 1)
	eventually(t, 2*time.Second, "the balancer to stop sending to c3", func() bool { return f.untouched("c3") })
	if r := f.lb.do(http.MethodGet, "/messages/"+c3IDs[0], "", ""); r.status != http.StatusOK {
		t.Errorf("GET of a c3 record while c3 drains: got %d %v, want 200", r.status, r.body)
	}
	if code := <-exit; code != 0 {
		t.Fatalf("c3's exit code: got %d, want 0", code)
	}
	r = f.lb.do(http.MethodGet, "/messages/"+c3IDs[0], "", "")
	checkProblem(t, r, 503, "replica_unavailable")
	if r.header.Get("Retry-After") == "" {
		t.Error("replica_unavailable without Retry-After")
	}
	if r := f.post(""); r.status != http.StatusAccepted {
		t.Errorf("POST with c3 gone: got %d %v, want 202", r.status, r.body)
	}

	// Nothing accepted is lost or accepted twice: each replica balances,
	// and the replicas together accepted exactly the ids clients were given.
	var accepted int64
	for _, name := range []string{"c1", "c2"} {
		st := f.replicas[name].status()
		if !st.Messages.Balanced() {
			t.Errorf("%s: %+v does not balance", name, st.Messages)
		}
		accepted += st.Messages.Accepted
	}
	stopped := c3.logs.entries(map[string]any{"event": "stopped"})
	if len(stopped) != 1 {
		t.Fatalf("c3's stopped line: got %v, want one", stopped)
	}
	c3Counts := map[string]int64{}
	for _, k := range []string{"accepted", "sent", "failed", "timeout", "undelivered"} {
		v, _ := stopped[0][k].(float64)
		c3Counts[k] = int64(v)
	}
	if c3Counts["accepted"] != c3Counts["sent"]+c3Counts["failed"]+c3Counts["timeout"]+c3Counts["undelivered"] {
		t.Errorf("c3 at exit: %v does not balance", c3Counts)
	}
	accepted += c3Counts["accepted"]
	f.mu.Lock()
	defer f.mu.Unlock()
	if accepted != int64(len(f.ids)) {
		t.Errorf("accepted over the replicas: got %d, want %d, the distinct ids clients got a 202 for", accepted, len(f.ids))
	}
}

// TestAKeyIsAcceptedByOneReplicaOnly: replicas whose queues fill and drain
// all the time (one sender, six places, a slow messageapp), each key POSTed
// by eight concurrent clients that retry until 202 and then once more. The
// replica that takes a key answers every later POST of it, so every client
// of a key gets one id.
func TestAKeyIsAcceptedByOneReplicaOnly(t *testing.T) {
	f := startFleet(t, map[string]string{"SENDERS": "1", "QUEUE_MAX_SIZE": "6", "QUEUE_RECOVERY_THRESHOLD": "3",
		"BREAKER_THRESHOLD": "1000", "MESSAGEAPP_TIMEOUT": "1s"})
	for _, app := range f.apps {
		app.delay.Store(int64(2 * time.Millisecond))
		app.set(modeSlow)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	t.Cleanup(client.CloseIdleConnections)

	var mu sync.Mutex // guards idsOf and answers
	idsOf := map[string]map[string]bool{}
	answers := map[int]int{}
	// post sends one POST of key and notes its answer; it reports a 202.
	post := func(key string) bool {
		status, id, _, err := rawPost(client, f.lb.url, key, "one message for key "+key)
		mu.Lock()
		defer mu.Unlock()
		answers[status]++
		if err != nil || status != http.StatusAccepted {
			return false
		}
		if idsOf[key] == nil {
			idsOf[key] = map[string]bool{}
		}
		idsOf[key][id] = true
		return true
	}
	keys := keyedRounds()
	sem := make(chan struct{}, 16) // keys in flight at once
	var wg sync.WaitGroup
	for k := range keys {
		key := "key-" + strconv.Itoa(k)
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			var clients sync.WaitGroup
			for range 8 {
				clients.Go(func() {
					deadline := time.Now().Add(10 * time.Second)
					for !post(key) {
						if time.Now().After(deadline) {
							t.Errorf("key %s: no 202 within 10s", key)
							return
						}
					}
					post(key)
				})
			}
			clients.Wait()
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	doubled := 0
	for key, ids := range idsOf {
		if len(ids) > 1 {
			doubled++
			t.Errorf("key %s: got ids %v, want one", key, slices.Sorted(maps.Keys(ids)))
		}
	}
	t.Logf("%d keys, %d with more than one id; answers by status %v", len(idsOf), doubled, answers)
}

// keyedRounds is how many keys TestAKeyIsAcceptedByOneReplicaOnly posts:
// COURIER_KEYS, or enough that today's haproxy.cfg without the in-flight
// rule gives some keys two ids in every run.
func keyedRounds() int {
	if n, err := strconv.Atoi(os.Getenv("COURIER_KEYS")); err == nil && n > 0 {
		return n
	}
	return 300
}

// TestLargeBodiesAreReroutedFromAFullReplica: with c1 full and the others
// with room, keyed POSTs of every size courier accepts are all accepted:
// the balancer can re-send a refused POST only if it holds the whole
// request, 64 KiB body and headers.
func TestLargeBodiesAreReroutedFromAFullReplica(t *testing.T) {
	f := startFleet(t, nil)
	f.fill("c1")
	envelope := len(`{"destination":"+34600000000","body":""}`)
	tests := []struct {
		size    int // of the request body
		headers int // bytes of headers besides the usual few
	}{{100, 0}, {16 << 10, 0}, {30_000, 0}, {40_000, 0}, {maxBodyBytes, 0}, {maxBodyBytes, 24 << 10}, {maxBodyBytes, 35 << 10}}
	for _, tt := range tests {
		size := tt.size
		t.Run(fmt.Sprintf("%d bytes, %d bytes of headers more", tt.size, tt.headers), func(t *testing.T) {
			body, _ := json.Marshal(map[string]string{"destination": "+34600000000", "body": strings.Repeat("x", size-envelope)})
			refused := 0
			for i := range 20 {
				key := fmt.Sprintf("large-%d-%d-%d", size, tt.headers, i)
				req, _ := http.NewRequest(http.MethodPost, f.lb.url+"/messages", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Idempotency-Key", key)
				if tt.headers > 0 {
					req.Header.Set("X-Padding", strings.Repeat("p", tt.headers))
				}
				status, id, err := postFor(f.lb.client, req)
				switch {
				case err != nil:
					t.Fatalf("POST of %d bytes: %v", size, err)
				case status == http.StatusServiceUnavailable:
					refused++
				case status != http.StatusAccepted || replicaOf(id) == "c1":
					t.Errorf("POST of %d bytes: got %d %s, want 202 from c2 or c3", size, status, id)
				}
			}
			if refused > 0 {
				t.Errorf("POSTs of %d bytes answered 503 while c2 and c3 accept: got %d of 20, want 0", size, refused)
			}
		})
	}
}

// postFor sends req and returns its status and the id of a 202.
func postFor(client *http.Client, req *http.Request) (status int, id string, err error) {
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var out struct {
		ID string `json:"id"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out.ID, nil
}

func TestReplicasScriptSaysWhatFailedAndWhy(t *testing.T) {
	haproxyPath(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := strconv.Itoa(taken.Addr().(*net.TCPAddr).Port)
	tests := []struct {
		name  string
		env   []string
		short bool     // runs without building courier
		want  []string // regular expressions, all matched on stderr
	}{
		{"a replica's port is taken", []string{"REPLICA_PORTS=" + freePort(t) + " " + takenPort + " " + freePort(t)}, true,
			[]string{"already in use", regexp.QuoteMeta(takenPort + " (replica c2; REPLICA_PORTS)")}},
		{"the simulator's port is taken", []string{"MESSAGEAPP_PORT=" + takenPort}, true,
			[]string{"already in use", regexp.QuoteMeta(takenPort + " (messageapp simulator; MESSAGEAPP_PORT)")}},
		{"two ports for three replicas", []string{"REPLICA_PORTS=9101 9102"}, true, []string{"want three ports"}},
		// All three refuse it; whichever exits first is named, with its log.
		{"a replica refuses its configuration", []string{"QUEUE_MAX_SIZE=0"}, false,
			[]string{`replica (c1 exited; the end of \S*/c1\.log|c2 exited; the end of \S*/c2\.log|c3 exited; the end of \S*/c3\.log)`,
				regexp.QuoteMeta(`QUEUE_MAX_SIZE="0": must be`)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if testing.Short() && !tt.short {
				t.Skip("builds courier")
			}
			cmd := exec.Command("bash", "scripts/replicas.sh")
			cmd.Env = append(os.Environ(), "MESSAGEAPP_PORT="+freePort(t), "LISTEN=127.0.0.1:"+freePort(t),
				"REPLICA_PORTS="+freePort(t)+" "+freePort(t)+" "+freePort(t))
			cmd.Env = append(cmd.Env, tt.env...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			done := make(chan error, 1)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go func() { done <- cmd.Wait() }()
			select {
			case err = <-done:
			case <-time.After(time.Minute):
				_ = cmd.Process.Signal(syscall.SIGTERM)
				t.Fatalf("replicas.sh still running after 1m; stderr %q", stderr.String())
			}
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Errorf("exit: got %v, want status 1", err)
			}
			for _, want := range tt.want {
				if !regexp.MustCompile(want).MatchString(stderr.String()) {
					t.Errorf("stderr: got %q, want it to match %q", stderr.String(), want)
				}
			}
		})
	}
}

func TestReplicasScriptStopsDrainingOnASecondSignal(t *testing.T) {
	haproxyPath(t)
	if testing.Short() {
		t.Skip("builds courier")
	}
	listen := "127.0.0.1:" + freePort(t)
	replicaPorts := []string{freePort(t), freePort(t), freePort(t)}
	cmd := exec.Command("bash", "scripts/replicas.sh")
	cmd.Env = append(os.Environ(), "MESSAGEAPP_PORT="+freePort(t), "LISTEN="+listen,
		"REPLICA_PORTS="+strings.Join(replicaPorts, " "), "SPOOL_DIR="+t.TempDir(),
		// A messageapp that hangs and outlives the script: the drains would
		// take a minute.
		"MESSAGEAPP_URL="+newFakeMessageapp(t, modeHang).URL(), "MESSAGEAPP_TIMEOUT=1m", "SHUTDOWN_TIMEOUT=1m")
	// Its output through a pipe that Wait closes at most a second after
	// the script exits, even if a child it left behind still holds it.
	out, outW := io.Pipe()
	var stderr logBuffer
	cmd.Stdout, cmd.Stderr, cmd.WaitDelay = outW, &stderr, time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1000)
	exited := make(chan error, 1)
	go func() {
		exited <- cmd.Wait()
		outW.Close()
	}()
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default: // nobody reads any more
			}
		}
		close(lines)
	}()
	t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Process.Signal(syscall.SIGTERM) })
	waitFor := func(prefix string) {
		t.Helper()
		for l := range lines {
			if strings.HasPrefix(l, prefix) {
				return
			}
		}
		t.Fatalf("replicas.sh ended before %q; stderr %q", prefix, stderr.String())
	}
	waitFor("balancer:")
	client := &http.Client{Timeout: 5 * time.Second}
	for i := range 3 { // each hangs in messageapp
		resp, err := client.Post("http://"+listen+"/messages", "application/json", strings.NewReader(`{"destination":"d","body":"`+strconv.Itoa(i)+`"}`))
		if err != nil || resp.StatusCode != http.StatusAccepted {
			t.Fatalf("POST through the balancer: %v %v", resp, err)
		}
		resp.Body.Close()
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	waitFor("stopping everything")
	// Each replica has its first SIGTERM (two pending at once would be one).
	for i, port := range replicaPorts {
		eventually(t, 10*time.Second, fmt.Sprintf("replica c%d to be draining", i+1), func() bool {
			resp, err := client.Get("http://127.0.0.1:" + port + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusServiceUnavailable
		})
	}
	start := time.Now()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("replicas.sh still draining 30s after the second signal (SHUTDOWN_TIMEOUT is 1m)")
	}
	// The script waited for them: no replica is left draining behind it.
	for i, port := range replicaPorts {
		if c, err := net.Dial("tcp", "127.0.0.1:"+port); err == nil {
			c.Close()
			t.Errorf("replica c%d still listens on %s after replicas.sh exited", i+1, port)
		}
	}
	t.Logf("stopped %s after the second signal", time.Since(start))
}
