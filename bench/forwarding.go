package main

// forwarding.go: delivered messages per second and server CPU per
// delivered message, courier against the synchronous forwarder.

import (
	"slices"
	"time"
)

func benchForwarding(rep *report, dir, courierBin, self string, d time.Duration) error {
	rep.printf("== forwarding: %d clients for %s, fast messageapp\n", clients, d)
	app, err := startApp("ok")
	if err != nil {
		return err
	}
	defer app.close()

	base, err := start(dir, "baseline-forward", self, []string{"-role", "baseline-forward", "-messageapp", app.url}, nil)
	if err != nil {
		return err
	}
	defer base.stop()
	c, err := start(dir, "courier-forward", courierBin, nil, []string{"MESSAGEAPP_URL=" + app.url,
		"QUEUE_MAX_SIZE=1000000", "QUEUE_RECOVERY_THRESHOLD=5"})
	if err != nil {
		return err
	}
	defer c.stop()
	load(base.url, clients, d/5) // warm both up
	load(c.url, clients, d/5)

	// Five rounds each, alternating, so a noisy moment hurts both sides;
	// the targets are on the medians of the per-round ratios.
	var baseSent, courierSent, courierAccepted, unexplained int64
	var baseTime, courierTime, baseCPU, courierCPU time.Duration
	var rateRatios, cpuRatios []float64
	var b, r loadResult
	var st1 status
	for range 5 {
		before, cpu0 := app.received.Load(), base.cpu()
		b = load(base.url, clients, d/5)
		bSent, bCPU := app.received.Load()-before, base.cpu()-cpu0
		baseSent += bSent
		baseTime += b.elapsed
		baseCPU += bCPU

		s0, _ := c.status()
		before, cpu0 = app.received.Load(), c.cpu()
		r = load(c.url, clients, d/5)
		sent, cCPU := app.received.Load()-before, c.cpu()-cpu0
		courierCPU += cCPU
		courierSent += sent
		courierTime += r.elapsed
		st1, _ = c.status()
		acc := st1.Messages.Accepted - s0.Messages.Accepted
		courierAccepted += acc
		rateRatios = append(rateRatios, (float64(sent)/r.elapsed.Seconds())/(float64(bSent)/b.elapsed.Seconds()))
		cpuRatios = append(cpuRatios, perReq(cCPU, int(sent))/perReq(bCPU, int(bSent)))
		// Whatever was accepted and not delivered must be in the queue or
		// in a sender's hands: the backlog is visible, not hidden.
		backlog := int64(st1.Queue.Depth-s0.Queue.Depth) + st1.Messages.Sending - s0.Messages.Sending
		unexplained += max(acc-sent-backlog, sent+backlog-acc)
		// Let the backlog drain before the baseline's turn.
		for i := 0; i < 100 && st1.Queue.Depth > 0; i++ {
			time.Sleep(100 * time.Millisecond) // polling another process
			st1, _ = c.status()
		}
	}
	slices.Sort(rateRatios)
	slices.Sort(cpuRatios)
	baseRate := float64(baseSent) / baseTime.Seconds()
	delivered := float64(courierSent) / courierTime.Seconds()
	accepted := float64(courierAccepted) / courierTime.Seconds()
	rep.printf("  baseline (decode, POST to messageapp, answer): %8.0f delivered/s, p50 %s p99 %s\n", baseRate, b.pct(50), b.pct(99))
	rep.printf("  courier (defaults: %d senders; queue 1000000): %8.0f delivered/s, %8.0f accepted/s, p50 %s p99 %s\n",
		st1.Senders, delivered, accepted, r.pct(50), r.pct(99))
	rep.printf("  server CPU per delivered message: baseline %.1f µs, courier %.1f µs (accepting included; courier logs each attempt to a file)\n",
		perReq(baseCPU, int(baseSent)), perReq(courierCPU, int(courierSent)))
	rateRatio, cpuRatio := rateRatios[2], cpuRatios[2]
	rep.printf("  ratio delivered/s courier ÷ baseline, median of 5 rounds: %.2f (rounds from %.2f to %.2f)\n", rateRatio, rateRatios[0], rateRatios[4])
	rep.printf("  ratio CPU per delivered message courier ÷ baseline, median of 5 rounds: %.2f (rounds from %.2f to %.2f)\n", cpuRatio, cpuRatios[0], cpuRatios[4])
	rep.target(rateRatio >= 0.95, "forwarding: courier delivers %.2f × the baseline (want ≥ 0.95)", rateRatio)
	rep.target(cpuRatio <= 1.05, "forwarding: courier spends %.2f × the baseline's CPU per delivered message (want ≤ 1.05)", cpuRatio)
	// Each round may read a message messageapp already has as still
	// sending: at most one sender's worth per round.
	rep.target(unexplained <= int64(5*st1.Senders),
		"forwarding: accepted %.0f/s, delivered %.0f/s; the difference is in the queue depth (unaccounted: %d messages)", accepted, delivered, unexplained)
	return nil
}
