package main

// proc.go runs a server under test as its own process and reads what it
// costs: RSS, CPU, goroutines, metrics, /status.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// proc is a server under test, running as its own process.
type proc struct {
	cmd  *exec.Cmd
	url  string
	logs string
}

// freePort is a loopback port nothing listens on right now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// start runs bin with args and env, logging to a file, and waits for /healthz.
func start(dir, name, bin string, args, env []string) (*proc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, append(args, "-port", strconv.Itoa(port))...)
	if name == "courier" || strings.HasPrefix(name, "courier-") {
		cmd = exec.Command(bin)
		env = append(env, "PORT="+strconv.Itoa(port))
	}
	cmd.Env = append(append(os.Environ(), env...), strings.Fields(os.Getenv("BENCH_COURIER_ENV"))...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, url: "http://127.0.0.1:" + strconv.Itoa(port), logs: logPath}
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, err := http.Get(p.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			return p, nil
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("%s did not come up: %v (log %s)", name, err, logPath)
		}
		time.Sleep(50 * time.Millisecond) // waiting for another process to listen
	}
}

func (p *proc) stop() {
	_ = p.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

func (p *proc) rss() int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// cpu is the CPU time the process has used so far (user + system).
func (p *proc) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses: utime and
	// stime are the 12th and 13th of them, in clock ticks (100 a second).
	rest := string(b[strings.LastIndexByte(string(b), ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// idleGoroutines waits for courier's goroutine count to hold still for a
// few readings and returns it.
func (p *proc) idleGoroutines() float64 {
	last, same := -1.0, 0
	for range 50 {
		g := p.metric("go_goroutines")
		if g == last {
			if same++; same == 3 {
				return g
			}
		} else {
			last, same = g, 0
		}
		time.Sleep(100 * time.Millisecond) // polling another process
	}
	return last
}

// metric reads one unlabelled sample from courier's /metrics.
func (p *proc) metric(name string) float64 {
	resp, err := http.Get(p.url + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}

// status is the part of courier's GET /status the bench reads.
type status struct {
	Queue struct {
		Depth     int  `json:"depth"`
		Accepting bool `json:"accepting"`
	} `json:"queue"`
	Circuit struct {
		State string `json:"state"`
	} `json:"circuit"`
	Concurrency struct {
		Limit      int     `json:"limit"`
		Ceiling    int     `json:"ceiling"`
		InFlight   int     `json:"in_flight"`
		LatencyMS  float64 `json:"latency_ms"`
		BaselineMS float64 `json:"baseline_ms"`
	} `json:"concurrency"`
	Messages struct {
		Accepted int64 `json:"accepted"`
		Queued   int64 `json:"queued"`
		Sent     int64 `json:"sent"`
		Sending  int64 `json:"sending"`
		Timeout  int64 `json:"timeout"`
	} `json:"messages"`
	Senders int `json:"senders"`
}

func (p *proc) status() (status, error) {
	var st status
	resp, err := http.Get(p.url + "/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// fill posts until courier holds n messages: queued (or held by a sender)
// for "queued", sent and retained for "retained". It returns how many it
// holds then.
func (p *proc) fill(kind string, n int) (int64, error) {
	held := func(st status) int64 {
		if kind == "queued" {
			return st.Messages.Queued + st.Messages.Sending
		}
		return st.Messages.Sent
	}
	for deadline := time.Now().Add(10 * time.Minute); ; {
		st, err := p.status()
		if err != nil {
			return 0, err
		}
		have := held(st)
		if have >= int64(n) {
			return have, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("fill %s: %d of %d messages after 10 minutes", kind, have, n)
		}
		missing := int64(n) - have
		if kind == "retained" {
			missing -= st.Messages.Queued + st.Messages.Sending // on their way
		}
		if missing > 0 {
			loadN(p.url, 16, missing)
		} else {
			time.Sleep(100 * time.Millisecond) // polling another process: the queue is draining
		}
	}
}

// liveHeap forces collections in courier, by reading small pages of
// messages from one connection, and returns the least live heap three of
// them found: what a read has in flight while a collection marks is noise.
func (p *proc) liveHeap() (float64, error) {
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	least := math.Inf(1)
	last := p.metric("go_gc_duration_seconds_count")
	for found, deadline := 0, time.Now().Add(2*time.Minute); found < 3; {
		if time.Now().After(deadline) {
			return 0, errors.New("memory: courier did not collect three times within 2 minutes of reads")
		}
		for range 20 {
			resp, err := client.Get(p.url + "/messages?limit=100")
			if err != nil {
				return 0, err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		if gcs := p.metric("go_gc_duration_seconds_count"); gcs > last {
			last = gcs
			found++
			least = min(least, p.metric("go_gc_heap_live_bytes"))
		}
	}
	return least, nil
}
