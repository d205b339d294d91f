package main

// overload.go: courier in front of the lab's overload profile (`courier
// messageapp -profile overload`, the simulator in the binary under test,
// without episodes), offered more than messageapp can do: messageapp's
// capacity, courier's goodput and the share of its attempts that timed
// out, for the fixed pool of SENDERS and the adaptive limit in one run.

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The overload scenario's messageapp: 4 workers at 50-150 ms a call finish
// 40 calls a second; 64 calls in flight wait about 1.6 s, past courier's
// 1 s deadline, so a client that keeps SENDERS calls open gets timeouts
// while messageapp stays busy with calls nobody waits for.
const (
	overloadWorkers  = 4
	overloadLatency  = 100 * time.Millisecond
	overloadCapacity = float64(overloadWorkers) / 0.1 // calls a second
	overloadOffered  = 60                             // msg/s: 1.5 × the capacity
)

// overloadRun is what one courier did over the measured window.
type overloadRun struct {
	goodput    float64 // messages delivered a second
	attempts   float64 // calls to messageapp
	timeouts   float64 // of them, timed out
	appOK      float64 // calls messageapp finished with 200 a second, waited for or not
	opens      float64 // circuit openings
	refusedPct float64 // client POSTs answered 503
}

func benchOverload(rep *report, dir, courierBin string, d time.Duration) error {
	rep.printf("== overload: messageapp `-profile overload -capacity %d -latency %s -episode-max 0` (capacity %.0f calls/s), %d msg/s offered for %s after 5 s of warm-up; courier at its defaults (SENDERS=64, MESSAGEAPP_TIMEOUT=1s)\n",
		overloadWorkers, overloadLatency, overloadCapacity, overloadOffered, d)
	runs := map[string]overloadRun{}
	for _, mode := range []string{"fixed", "adaptive"} {
		r, err := overloadOnce(dir, courierBin, mode, d)
		if err != nil {
			return err
		}
		runs[mode] = r
		rep.printf("  %-8s: goodput %5.1f msg/s = %.2f × capacity; %4.1f %% of %5.0f attempts timed out; messageapp finished %5.1f calls/s (%.1f for no one); circuit opened %.0f times; %2.0f %% of POSTs refused\n",
			mode, r.goodput, r.goodput/overloadCapacity, 100*r.timeouts/max(r.attempts, 1), r.attempts, r.appOK,
			max(0, r.appOK-r.goodput), r.opens, r.refusedPct)
	}
	fixed, adaptive := runs["fixed"], runs["adaptive"]
	rep.printf("  ratio goodput adaptive ÷ fixed: %.2f\n", adaptive.goodput/max(fixed.goodput, 0.1))
	timedOut := 100 * adaptive.timeouts / max(adaptive.attempts, 1)
	rep.target(adaptive.goodput >= 0.9*overloadCapacity, "overload: goodput %.2f × messageapp's capacity (want ≥ 0.90; the fixed pool: %.2f)",
		adaptive.goodput/overloadCapacity, fixed.goodput/overloadCapacity)
	rep.target(timedOut < 2, "overload: %.1f %% of attempts timed out (want < 2 %%; the fixed pool: %.1f %%)",
		timedOut, 100*fixed.timeouts/max(fixed.attempts, 1))
	return nil
}

// overloadOnce runs a fresh messageapp, so no backlog is left from the
// other run, and one courier with CONCURRENCY_LIMIT=mode in front of it.
func overloadOnce(dir, courierBin, mode string, d time.Duration) (overloadRun, error) {
	app, err := start(dir, "messageapp-overload-"+mode, courierBin, []string{"messageapp", "-profile", "overload",
		"-capacity", strconv.Itoa(overloadWorkers), "-latency", overloadLatency.String(), "-episode-max", "0", "-seed", "1"}, nil)
	if err != nil {
		return overloadRun{}, err
	}
	defer app.stop()
	c, err := start(dir, "courier-overload-"+mode, courierBin, nil, []string{"MESSAGEAPP_URL=" + app.url + "/message",
		"CONCURRENCY_LIMIT=" + mode, "QUEUE_MAX_SIZE=1000", "QUEUE_RECOVERY_THRESHOLD=500"})
	if err != nil {
		return overloadRun{}, err
	}
	defer c.stop()
	client := pacedLoad(c.url, overloadOffered)
	time.Sleep(5 * time.Second) // warm-up: the queue fills, the limit finds its level
	opens := `courier_circuit_transitions_total{state="open"}`
	sent0, att0, app0, opens0 := c.sentCount(), c.attempts(), appAnswered(app.url), c.metric(opens)
	time.Sleep(d)
	sent1, att1, app1, opens1 := c.sentCount(), c.attempts(), appAnswered(app.url), c.metric(opens)
	accepted, refused := client.stop()
	r := overloadRun{goodput: (sent1 - sent0) / d.Seconds(), appOK: (app1 - app0) / d.Seconds(),
		timeouts: att1["timeout"] - att0["timeout"], opens: opens1 - opens0,
		refusedPct: 100 * float64(refused) / float64(max(accepted+refused, 1))}
	for outcome, n := range att1 {
		if outcome != "breaker_open" { // not an attempt: nothing was sent
			r.attempts += n - att0[outcome]
		}
	}
	return r, nil
}

// sentCount is courier's sent messages so far.
func (p *proc) sentCount() float64 {
	st, err := p.status()
	if err != nil {
		return 0
	}
	return float64(st.Messages.Sent)
}

// attempts reads courier_attempts_total by outcome from /metrics.
func (p *proc) attempts() map[string]float64 {
	counts := map[string]float64{}
	resp, err := http.Get(p.url + "/metrics")
	if err != nil {
		return counts
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), `courier_attempts_total{outcome="`)
		if !ok {
			continue
		}
		outcome, value, ok := strings.Cut(rest, `"} `)
		if n, err := strconv.ParseFloat(value, 64); ok && err == nil {
			counts[outcome] = n
		}
	}
	return counts
}

// appAnswered is how many calls the simulator at base has answered 200,
// whether or not their client still waited, from its GET /control.
func appAnswered(base string) float64 {
	resp, err := http.Get(base + "/control")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var body struct {
		Overload struct {
			Answered map[string]float64 `json:"answered"`
		} `json:"overload"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0
	}
	return body.Overload.Answered[http.StatusText(http.StatusOK)]
}
