package main

// replicas.go is the replicas scenario: three couriers behind HAProxy with
// the repository's haproxy.cfg, against one courier direct, same run.

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// startHAProxy runs haproxy with haproxy.cfg in front of the replicas and
// waits until it answers.
func startHAProxy(dir string, replicas []*proc) (*proc, error) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		return nil, errors.New("haproxy not found (apt-get install haproxy)")
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	env := append(os.Environ(), "LISTEN="+listen)
	for i, r := range replicas {
		env = append(env, fmt.Sprintf("COURIER_%d=%s", i+1, strings.TrimPrefix(r.url, "http://")))
	}
	logPath := filepath.Join(dir, "haproxy.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-f", "haproxy.cfg", "-db")
	cmd.Env, cmd.Stdout, cmd.Stderr = env, logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, url: "http://" + listen, logs: logPath}
	client := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, err := client.Get(p.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("haproxy did not come up (log %s)", logPath)
		}
		time.Sleep(50 * time.Millisecond) // waiting for another process to listen
	}
}

func benchReplicas(rep *report, dir, courierBin string, d time.Duration) error {
	rep.printf("== replicas: %d clients for %s, fast messageapp; three couriers behind HAProxy against one direct\n", clients, d)
	if _, err := exec.LookPath("haproxy"); err != nil {
		rep.printf("  skipped: haproxy not found (apt-get install haproxy)\n")
		return nil
	}
	app, err := startApp("ok")
	if err != nil {
		return err
	}
	defer app.close()
	env := []string{"MESSAGEAPP_URL=" + app.url, "QUEUE_MAX_SIZE=1000000", "QUEUE_RECOVERY_THRESHOLD=5"}
	single, err := start(dir, "courier-single", courierBin, nil, env)
	if err != nil {
		return err
	}
	defer single.stop()
	var replicas []*proc
	for _, name := range []string{"c1", "c2", "c3"} {
		r, err := start(dir, "courier-"+name, courierBin, nil, append(env, "REPLICA="+name))
		if err != nil {
			return err
		}
		defer r.stop()
		replicas = append(replicas, r)
	}
	lb, err := startHAProxy(dir, replicas)
	if err != nil {
		return err
	}
	defer lb.stop()
	load(single.url, clients, d/5) // warm both up
	load(lb.url, clients, d/5)
	drain := func(ps ...*proc) {
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
			backlog := 0
			for _, p := range ps {
				st, _ := p.status()
				backlog += st.Queue.Depth
			}
			if backlog == 0 {
				return
			}
			time.Sleep(100 * time.Millisecond) // polling other processes
		}
	}

	// Two rounds each, alternating, so a noisy moment hurts both sides.
	type side struct {
		sent   int64
		took   time.Duration
		cpu    time.Duration
		last   loadResult
		non202 int
		procs  []*proc
		url    string
	}
	one := &side{procs: []*proc{single}, url: single.url}
	three := &side{procs: append([]*proc{lb}, replicas...), url: lb.url}
	var lbCPU time.Duration // HAProxy's part of three.cpu
	for range 2 {
		lb0 := lb.cpu()
		for _, s := range []*side{one, three} {
			before := app.received.Load()
			var cpu0 time.Duration
			for _, p := range s.procs {
				cpu0 += p.cpu()
			}
			s.last = load(s.url, clients, d/2)
			s.sent += app.received.Load() - before
			s.took += s.last.elapsed
			s.non202 += s.last.requests - s.last.byStatus[http.StatusAccepted] + s.last.errors
			for _, p := range s.procs {
				s.cpu += p.cpu()
			}
			s.cpu -= cpu0
			drain(s.procs...)
		}
		lbCPU += lb.cpu() - lb0 // health checks only while one direct runs
	}
	oneRate, threeRate := float64(one.sent)/one.took.Seconds(), float64(three.sent)/three.took.Seconds()
	rep.printf("  one courier, direct:             %8.0f delivered/s, p50 %s p99 %s, %5.1f µs of server CPU per delivered message\n",
		oneRate, one.last.pct(50).Round(10*time.Microsecond), one.last.pct(99).Round(10*time.Microsecond), perReq(one.cpu, int(one.sent)))
	rep.printf("  three couriers behind HAProxy:   %8.0f delivered/s, p50 %s p99 %s, %5.1f µs of server CPU per delivered message (HAProxy included)\n",
		threeRate, three.last.pct(50).Round(10*time.Microsecond), three.last.pct(99).Round(10*time.Microsecond), perReq(three.cpu, int(three.sent)))
	var spread []string
	for i, r := range replicas {
		st, _ := r.status()
		spread = append(spread, fmt.Sprintf("c%d %d", i+1, st.Messages.Accepted))
	}
	rep.printf("  HAProxy's part: %5.1f µs per delivered message; accepted by each replica: %s\n",
		perReq(lbCPU, int(three.sent)), strings.Join(spread, ", "))
	rep.printf("  ratio delivered three-behind-HAProxy ÷ one direct: %.2f\n", threeRate/oneRate)
	rep.target(one.non202 == 0 && three.non202 == 0,
		"replicas: every request answered 202 (one direct: %d others, through HAProxy: %d others)", one.non202, three.non202)
	return nil
}
