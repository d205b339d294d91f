// Command bench measures courier against bare baselines on this machine, in
// one run, under the same Go load generator, and prints ratios:
//
//	go run ./bench [-short] [-out bench/results.txt]
//
// Forwarding: courier (default settings, large queue) in front of a fast
// messageapp, against a server that forwards each request synchronously.
// Shedding: courier with the queue full and the circuit open, against a
// server that decodes and answers 202. Memory: courier's RSS and goroutines
// while clients flood it and messageapp hangs, then the live heap each
// message costs, queued and retained, at 10 000, 100 000 and 1 000 000
// messages (-short stops at 100 000). Timeouts: how close to
// MESSAGEAPP_TIMEOUT a hanging call is abandoned, and that no connection
// is left behind. Replicas: three couriers behind HAProxy (haproxy.cfg)
// against one courier direct, delivered messages per second. Overload:
// courier offered more than the lab's overload profile can do: its
// goodput against messageapp's capacity and the share of attempts that
// timed out, the fixed pool against the adaptive limit. Adaptive: the
// adaptive concurrency limit's three goals, each against the fixed pool of
// SENDERS in the same run: messages with delivery unknown after a sudden
// hang, the overload scenario, and delivered messages per second and CPU
// per delivered message with a healthy messageapp.
//
// courier and the baselines run as separate processes; messageapp and the
// load generator run in this one, but for the overload scenario's, which
// is the simulator in the binary under test (`courier messageapp`).
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	role := flag.String("role", "", "internal: run as baseline-forward or baseline-shed")
	port := flag.Int("port", 0, "internal: baseline port")
	target := flag.String("messageapp", "", "internal: messageapp URL for baseline-forward")
	short := flag.Bool("short", false, "shorter phases (a smoke run, not for the record)")
	out := flag.String("out", "", "also write the report to this file")
	only := flag.String("only", "", "run one scenario: forwarding, shedding, memory, timeouts, replicas, adaptive or overload")
	flag.Parse()
	switch *role {
	case "baseline-forward":
		serveBaseline(*port, forwardHandler(*target))
		return
	case "baseline-shed":
		serveBaseline(*port, shedHandler())
		return
	}
	if err := runAll(*short, *only, *out); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// report writes the results, and tallies the targets met and missed.
type report struct {
	w     io.Writer
	fails []string
}

func (r *report) printf(format string, args ...any) { fmt.Fprintf(r.w, format, args...) }

func (r *report) target(ok bool, format string, args ...any) {
	mark := "met"
	if !ok {
		mark = "MISSED"
		r.fails = append(r.fails, fmt.Sprintf(format, args...))
	}
	r.printf("  target %-6s %s\n", mark, fmt.Sprintf(format, args...))
}

func runAll(short bool, only, outPath string) error {
	dir, err := os.MkdirTemp("", "courier-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	courierBin := filepath.Join(dir, "courier")
	if out, err := exec.Command("go", "build", "-o", courierBin, ".").CombinedOutput(); err != nil {
		return fmt.Errorf("build courier (run from the repository root): %v\n%s", err, out)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}

	var buf bytes.Buffer
	rep := &report{w: io.MultiWriter(os.Stdout, &buf)}
	host, _ := os.Hostname()
	cpu := "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	rep.printf("courier bench, %s, %s, %d CPUs (%s), host %s\n\n", time.Now().UTC().Format(time.RFC3339), goVersion(), numCPU(), cpu, host)

	phase := func(long, quick time.Duration) time.Duration {
		if short {
			return quick
		}
		return long
	}
	steps := []struct {
		name string
		run  func() error
	}{
		{"forwarding", func() error { return benchForwarding(rep, dir, courierBin, self, phase(20*time.Second, 5*time.Second)) }},
		{"shedding", func() error { return benchShedding(rep, dir, courierBin, self, phase(4*time.Second, 2*time.Second)) }},
		{"memory", func() error {
			if err := benchMemory(rep, dir, courierBin, phase(60*time.Second, 15*time.Second)); err != nil {
				return err
			}
			sizes := []int{10_000, 100_000, 1_000_000}
			if short {
				sizes = sizes[:2]
			}
			return benchPerMessage(rep, dir, courierBin, sizes)
		}},
		{"timeouts", func() error { return benchTimeouts(rep, dir, courierBin, phase(15*time.Second, 5*time.Second)) }},
		{"replicas", func() error { return benchReplicas(rep, dir, courierBin, phase(10*time.Second, 3*time.Second)) }},
		{"adaptive", func() error {
			return benchAdaptive(rep, dir, courierBin, phase(5*time.Second, 3*time.Second), phase(30*time.Second, 10*time.Second))
		}},
		{"overload", func() error { return benchOverload(rep, dir, courierBin, phase(30*time.Second, 10*time.Second)) }},
	}
	for _, step := range steps {
		if only != "" && step.name != only {
			continue
		}
		if only == "" && step.name == "overload" {
			continue // a full run has it within adaptive
		}
		if err := step.run(); err != nil {
			return err
		}
		rep.printf("\n")
	}
	if len(rep.fails) == 0 {
		rep.printf("all targets met\n")
	} else {
		rep.printf("%d target(s) missed:\n  %s\n", len(rep.fails), strings.Join(rep.fails, "\n  "))
	}
	if outPath != "" {
		if err := os.WriteFile(outPath, buf.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func goVersion() string {
	out, err := exec.Command("go", "env", "GOVERSION").Output()
	if err != nil {
		return "go ?"
	}
	return strings.TrimSpace(string(out))
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return max(1, strings.Count(string(b), "processor\t:"))
}

const clients = 64 // closed-loop clients for forwarding and flooding

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func perReq(cpu time.Duration, n int) float64 {
	return float64(cpu.Microseconds()) / float64(max(n, 1))
}
