package main

// timeouts.go: how close to MESSAGEAPP_TIMEOUT a hanging call is
// abandoned, and that nothing is left behind once drained.

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"time"
)

func benchTimeouts(rep *report, dir, courierBin string, d time.Duration) error {
	rep.printf("== timeout precision: messageapp hangs, MESSAGEAPP_TIMEOUT=1s, for %s\n", d)
	app, err := startApp("hang")
	if err != nil {
		return err
	}
	defer app.close()
	// A queue of about two seconds' work for the default senders: it
	// drains soon after the load stops, and then no call should be open.
	c, err := start(dir, "courier-timeouts", courierBin, nil, []string{"MESSAGEAPP_URL=" + app.url,
		"BREAKER_THRESHOLD=10000", "QUEUE_MAX_SIZE=128", "QUEUE_RECOVERY_THRESHOLD=64"})
	if err != nil {
		return err
	}
	idle := c.idleGoroutines()
	var maxOpen int64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			maxOpen = max(maxOpen, app.open.Load())
			select {
			case <-stopSampling:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	load(c.url, 4, d)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		st, err := c.status()
		if err == nil && st.Queue.Depth == 0 && app.open.Load() == 0 && c.metric("courier_messages_pending{status=\"sending\"}") == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond) // polling another process
	}
	close(stopSampling)
	<-sampled
	openAfter := app.open.Load()
	st, _ := c.status()
	goroutinesAfter := c.metric("go_goroutines")
	c.stop()

	var durations []float64
	f, err := os.Open(c.logs)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var line struct {
			Outcome  string  `json:"outcome"`
			Duration float64 `json:"duration_ms"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Outcome == "timeout" {
			durations = append(durations, line.Duration)
		}
	}
	if len(durations) == 0 {
		return errors.New("timeouts: no timeout outcome logged")
	}
	slices.Sort(durations)
	p50, p99, top := durations[len(durations)/2], durations[(len(durations)-1)*99/100], durations[len(durations)-1]
	rep.printf("  %d timed-out attempts: p50 %.0fms p99 %.0fms max %.0fms\n", len(durations), p50, p99, top)
	rep.printf("  calls open at messageapp at once: at most %d for %d senders (an abandoned call ends there a moment after the next begins); connections at most %d\n",
		app.maxInflight.Load(), st.Senders, maxOpen)
	rep.printf("  once the queue drained: %d connections open, %.0f goroutines (idle %.0f)\n", openAfter, goroutinesAfter, idle)
	rep.target(p99 <= 1050, "timeouts: p99 attempt %.0fms (want ≤ 1050ms = 1.05 × MESSAGEAPP_TIMEOUT)", p99)
	rep.target(openAfter == 0 && goroutinesAfter <= idle,
		"timeouts: nothing left behind (%d connections, %.0f goroutines for %.0f idle)", openAfter, goroutinesAfter, idle)
	return nil
}
