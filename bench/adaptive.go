package main

// adaptive.go: the adaptive concurrency limit (CONCURRENCY_LIMIT=adaptive,
// the default) against the fixed pool of SENDERS (CONCURRENCY_LIMIT=fixed),
// the same binary in the same run: messages whose delivery is unknown
// after a sudden hang, the overload scenario (overload.go), and delivered
// messages per second and server CPU per delivered message with a healthy
// messageapp.

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// benchAdaptive runs the three goals of the adaptive limit: a sudden
// hang and a healthy messageapp, whose phases last hold, and the overload
// scenario, measured for overload.
func benchAdaptive(rep *report, dir, courierBin string, hold, overload time.Duration) error {
	if err := benchSuddenHang(rep, dir, courierBin, hold); err != nil {
		return err
	}
	if err := benchOverload(rep, dir, courierBin, overload); err != nil {
		return err
	}
	return benchHealthyLimit(rep, dir, courierBin, hold)
}

// hangRun is what one courier went through in the sudden-hang scenario.
type hangRun struct {
	unknown          int64 // messages that ended `timeout`: delivery unknown
	sent             int64
	maxAtApp         int64 // calls open at messageapp at once, during the hang
	accepted, refuse int   // the client's 202s and 503s over the whole run
}

// benchSuddenHang: a 25 ms messageapp under a steady 50 msg/s hangs for
// hold, then answers again; courier at its defaults otherwise.
func benchSuddenHang(rep *report, dir, courierBin string, hold time.Duration) error {
	const rate = 50
	rep.printf("== adaptive limit, sudden hang: 25 ms messageapp, %d msg/s, hangs for %s (defaults: SENDERS=64, BREAKER_THRESHOLD=5, MESSAGEAPP_TIMEOUT=1s)\n", rate, hold)
	runs := map[string]hangRun{}
	for _, mode := range []string{"fixed", "adaptive"} {
		app, err := startApp("ok")
		if err != nil {
			return err
		}
		app.delay.Store(int64(25 * time.Millisecond))
		c, err := start(dir, "courier-hang-"+mode, courierBin, nil, []string{"MESSAGEAPP_URL=" + app.url, "CONCURRENCY_LIMIT=" + mode})
		if err != nil {
			app.close()
			return err
		}
		client := pacedLoad(c.url, rate)
		time.Sleep(hold) // steady load before the hang: the limit settles
		app.maxInflight.Store(app.inflight.Load())
		app.hang.Store(true)
		time.Sleep(hold)
		maxAtApp := app.maxInflight.Load()
		app.hang.Store(false)
		time.Sleep(hold) // messageapp answers again: courier recovers
		accepted, refused := client.stop()
		st := waitDrained(c)
		app.close()
		c.stop()
		runs[mode] = hangRun{unknown: st.Messages.Timeout, sent: st.Messages.Sent, maxAtApp: maxAtApp, accepted: accepted, refuse: refused}
		rep.printf("  %-8s: %3d messages ended timeout (delivery unknown), %4d sent; at most %2d calls open at messageapp during the hang; client: %d accepted, %d refused (503)\n",
			mode, st.Messages.Timeout, st.Messages.Sent, maxAtApp, accepted, refused)
	}
	fixed, adaptive := runs["fixed"], runs["adaptive"]
	rep.printf("  ratio delivery unknown adaptive ÷ fixed: %.2f\n", float64(adaptive.unknown)/float64(max(fixed.unknown, 1)))
	rep.target(adaptive.unknown <= 5+3, "adaptive, sudden hang: %d messages with delivery unknown (want ≤ BREAKER_THRESHOLD + 3 = 8; the fixed pool: %d)", adaptive.unknown, fixed.unknown)
	return nil
}

// benchHealthyLimit: 64 closed-loop clients and a fast messageapp, the
// fixed pool and the adaptive limit in alternating rounds, as forwarding
// does; the targets are on the medians of the per-round ratios.
func benchHealthyLimit(rep *report, dir, courierBin string, d time.Duration) error {
	rep.printf("== adaptive limit, healthy messageapp: %d clients, fast messageapp, 5 rounds of %s each\n", clients, d)
	app, err := startApp("ok")
	if err != nil {
		return err
	}
	defer app.close()
	couriers := map[string]*proc{}
	for _, mode := range []string{"fixed", "adaptive"} {
		c, err := start(dir, "courier-healthy-"+mode, courierBin, nil, []string{"MESSAGEAPP_URL=" + app.url,
			"QUEUE_MAX_SIZE=1000000", "QUEUE_RECOVERY_THRESHOLD=5", "CONCURRENCY_LIMIT=" + mode})
		if err != nil {
			return err
		}
		defer c.stop()
		couriers[mode] = c
		load(c.url, clients, d) // warm up; the adaptive limit finds its level
		waitDrained(c)
	}
	type tally struct {
		sent int64
		took time.Duration
		cpu  time.Duration
	}
	round := func(c *proc) tally {
		before, cpu0 := app.received.Load(), c.cpu()
		r := load(c.url, clients, d)
		waitDrained(c) // what was accepted is delivered, and counted, before the other's turn
		return tally{sent: app.received.Load() - before, took: r.elapsed, cpu: c.cpu() - cpu0}
	}
	var rates, cpus []float64
	var sums [2]tally
	for range 5 {
		f := round(couriers["fixed"])
		a := round(couriers["adaptive"])
		rates = append(rates, (float64(a.sent)/a.took.Seconds())/(float64(f.sent)/f.took.Seconds()))
		cpus = append(cpus, perReq(a.cpu, int(a.sent))/perReq(f.cpu, int(f.sent)))
		for i, t := range []tally{f, a} {
			sums[i].sent, sums[i].took, sums[i].cpu = sums[i].sent+t.sent, sums[i].took+t.took, sums[i].cpu+t.cpu
		}
	}
	st, _ := couriers["adaptive"].status()
	for i, mode := range []string{"fixed", "adaptive"} {
		rep.printf("  %-8s: %8.0f delivered/s, %5.1f µs of server CPU per delivered message\n", mode,
			float64(sums[i].sent)/sums[i].took.Seconds(), perReq(sums[i].cpu, int(sums[i].sent)))
	}
	rep.printf("  the adaptive limit after the rounds: %d of %d (latency it steers by %.1f ms, baseline %.1f ms)\n",
		st.Concurrency.Limit, st.Concurrency.Ceiling, st.Concurrency.LatencyMS, st.Concurrency.BaselineMS)
	slices.Sort(rates)
	slices.Sort(cpus)
	rep.printf("  ratio delivered/s adaptive ÷ fixed, median of 5 rounds: %.2f (rounds from %.2f to %.2f)\n", rates[2], rates[0], rates[4])
	rep.printf("  ratio CPU per delivered message adaptive ÷ fixed, median of 5 rounds: %.2f (rounds from %.2f to %.2f)\n", cpus[2], cpus[0], cpus[4])
	rep.target(rates[2] >= 0.95, "adaptive, healthy: delivers %.2f × the fixed pool (want ≥ 0.95)", rates[2])
	rep.target(cpus[2] <= 1.05, "adaptive, healthy: %.2f × the fixed pool's CPU per delivered message (want ≤ 1.05)", cpus[2])
	return nil
}

// waitDrained waits, up to 30 s, for courier to hold no message, and
// returns its status then.
func waitDrained(c *proc) status {
	var st status
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		var err error
		if st, err = c.status(); err == nil && st.Messages.Queued+st.Messages.Sending == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond) // polling another process
	}
	return st
}

// paced is an open-loop client: one POST every 1/rate seconds, each on
// its own, whatever courier answers, as a steady stream of users would.
type paced struct {
	stopped           chan struct{}
	wg                sync.WaitGroup
	accepted, refused atomic.Int64
}

func pacedLoad(url string, rate int) *paced {
	p := &paced{stopped: make(chan struct{})}
	tr := &http.Transport{MaxIdleConnsPerHost: 64, MaxIdleConns: 64}
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	p.wg.Go(func() {
		defer tr.CloseIdleConnections()
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		var posts sync.WaitGroup
		defer posts.Wait()
		for {
			select {
			case <-p.stopped:
				return
			case <-tick.C:
			}
			posts.Go(func() {
				status, err := postMessage(context.Background(), client, url)
				if err != nil {
					return
				}
				switch status {
				case http.StatusAccepted:
					p.accepted.Add(1)
				case http.StatusServiceUnavailable:
					p.refused.Add(1)
				}
			})
		}
	})
	return p
}

// stop ends the stream and returns the 202s and 503s it got.
func (p *paced) stop() (accepted, refused int) {
	close(p.stopped)
	p.wg.Wait()
	return int(p.accepted.Load()), int(p.refused.Load())
}
