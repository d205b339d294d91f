package main

// shedding.go: 503s per second with the queue full and the circuit open,
// against a server that decodes and answers 202.

import (
	"errors"
	"slices"
	"time"
)

func benchShedding(rep *report, dir, courierBin, self string, d time.Duration) error {
	rep.printf("== shedding: queue full and circuit open, against decode-and-202\n")
	base, err := start(dir, "baseline-shed", self, []string{"-role", "baseline-shed"}, nil)
	if err != nil {
		return err
	}
	// Two sweeps, the second in reverse order, so drift evens out.
	counts := []int{4, 8, 16, 32, 64}
	reqs, took := map[int]int{}, map[int]time.Duration{}
	p99 := map[int]time.Duration{}
	for pass := range 2 {
		for i := range counts {
			c := counts[i]
			if pass == 1 {
				c = counts[len(counts)-1-i]
			}
			r := load(base.url, c, d/2)
			reqs[c], took[c] = reqs[c]+r.requests, took[c]+r.elapsed
			p99[c] = max(p99[c], r.pct(99))
		}
	}
	best, bestC := 0.0, 0
	for _, c := range counts {
		rate := float64(reqs[c]) / took[c].Seconds()
		rep.printf("  baseline, %3d clients: %8.0f req/s, p99 %s\n", c, rate, p99[c])
		best = max(best, rate)
	}
	// Saturation: the fewest clients that get within 10% of the best rate.
	for _, c := range counts {
		if float64(reqs[c])/took[c].Seconds() >= 0.9*best {
			bestC = c
			break
		}
	}
	defer base.stop()
	rep.printf("  baseline saturates at %d clients (p99 there: %s)\n", bestC, p99[bestC])

	app, err := startApp("down")
	if err != nil {
		return err
	}
	defer app.close()
	c, err := start(dir, "courier-shed", courierBin, nil, []string{"MESSAGEAPP_URL=" + app.url,
		"BREAKER_BACKOFF_INITIAL=10m", "BREAKER_BACKOFF_MAX=10m"})
	if err != nil {
		return err
	}
	defer c.stop()
	for i := 0; i < 1000; i++ {
		st, err := c.status()
		if err == nil && !st.Queue.Accepting && st.Circuit.State == "open" {
			break
		}
		load(c.url, 1, 20*time.Millisecond)
	}
	if st, _ := c.status(); st.Queue.Accepting || st.Circuit.State != "open" {
		return errors.New("shedding: could not fill courier's queue and open its circuit")
	}
	load(c.url, bestC, d/4) // warm up
	// Five rounds each at that concurrency, alternating, so a noisy
	// moment hurts both sides; the spread of the per-round ratios shows
	// how far to trust the mean.
	var baseN, courierN, courier503 int
	var baseT, courierT, baseCPU, courierCPU time.Duration
	var r loadResult
	var lats []time.Duration
	var roundRatios []float64
	for range 5 {
		cpu0 := base.cpu()
		b := load(base.url, bestC, d/2)
		baseN, baseT, baseCPU = baseN+b.requests, baseT+b.elapsed, baseCPU+base.cpu()-cpu0
		cpu0 = c.cpu()
		r = load(c.url, bestC, d/2)
		courierN, courierT, courier503 = courierN+r.requests, courierT+r.elapsed, courier503+r.byStatus[503]
		courierCPU += c.cpu() - cpu0
		lats = append(lats, r.lat...)
		roundRatios = append(roundRatios, r.rps()/b.rps())
	}
	slices.Sort(roundRatios)
	slices.Sort(lats)
	all := loadResult{lat: lats}
	baseRate, courierRate := float64(baseN)/baseT.Seconds(), float64(courierN)/courierT.Seconds()
	rep.printf("  baseline, %3d clients:  %8.0f req/s (202), %5.1f µs of server CPU per request\n", bestC, baseRate, perReq(baseCPU, baseN))
	rep.printf("  courier,  %3d clients:  %8.0f req/s (503), %5.1f µs of server CPU per request, p50 %s p99 %s\n",
		bestC, courierRate, perReq(courierCPU, courierN), all.pct(50), all.pct(99))
	rep.printf("  ratio server CPU per request courier ÷ baseline: %.2f (lower is cheaper)\n", perReq(courierCPU, courierN)/perReq(baseCPU, baseN))
	r = loadResult{requests: courierN, byStatus: map[int]int{503: courier503}, lat: lats}
	ratio := courierRate / baseRate
	rep.printf("  ratio 503/s courier ÷ 202/s baseline: %.2f (rounds from %.2f to %.2f)\n", ratio, roundRatios[0], roundRatios[len(roundRatios)-1])
	rep.target(ratio >= 1.0, "shedding: courier rejects at %.2f × the baseline's accept rate (want ≥ 1.00)", ratio)
	rep.target(r.pct(99) < 5*time.Millisecond, "shedding: p99 %s at %d clients (want < 5ms)", r.pct(99), bestC)
	rep.target(r.byStatus[503] == r.requests, "shedding: every answer a 503 (%d of %d)", r.byStatus[503], r.requests)
	return nil
}
