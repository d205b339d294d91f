package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// startOverloadSimulator serves the overload profile with cfg on a loopback
// port and returns it and its base URL.
func startOverloadSimulator(t *testing.T, o overloadConfig, keepAlive time.Duration) (*Simulator, string) {
	t.Helper()
	cfg := defaultSimConfig(1)
	cfg.Overload, cfg.KeepAlive = o, keepAlive
	sim := NewSimulator(cfg, zerolog.Nop(), zerolog.InfoLevel)
	base, stop, err := startSimulator("127.0.0.1:0", sim)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return sim, base
}

// timedPost is postSim that also says how long the answer took.
func timedPost(t *testing.T, url string, deadline time.Duration) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	status, _ := postSim(t, url, simMessage, deadline)
	return status, time.Since(start)
}

func TestOverloadLatencyGrowsWithLoadAndFallsBackWhenItStops(t *testing.T) {
	// One worker, 20-60 ms a call, no episodes: what a call waits is
	// the work of the calls ahead of it, whether their clients still
	// wait or not. One worker, so that the wait behind the backlog (at
	// least 20 ms a call ahead) stands well clear of a lone call's
	// latency with the slack a loaded machine running -race needs.
	o := overloadConfig{Capacity: 1, Latency: 40 * time.Millisecond, GiveUp: time.Minute}
	sim, base := startOverloadSimulator(t, o, nodeKeepAlive)
	const slack = 300 * time.Millisecond // scheduling on a busy machine

	if status, took := timedPost(t, base+"/message", 5*time.Second); status != 200 || took > 60*time.Millisecond+slack {
		t.Fatalf("alone: got %d after %s, want 200 within the base latency (60ms + %s)", status, took, slack)
	}

	// 40 clients call at once, and hang up once messageapp has them all.
	// The worker answers a few of them while the rest are still arriving
	// (more the busier the machine): those are not abandoned, and what
	// follows counts only the calls still inside at the hang-up.
	const clients = 40
	ctx, hangUp := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/message", strings.NewReader(simMessage))
			if resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req); err == nil {
				resp.Body.Close()
			}
		})
	}
	eventually(t, 5*time.Second, "messageapp to receive every call", func() bool { return sim.Report().Overload.Received == clients+1 })
	hangUp()
	wg.Wait()
	var r overloadReport
	eventually(t, 5*time.Second, "messageapp to notice the clients left", func() bool {
		r = sim.Report().Overload
		return r.Abandoned == r.Backlog+r.Working
	})
	if r.Backlog+r.Working < clients-10 {
		t.Fatalf("after the clients hung up: %+v, want about %d calls still inside, all abandoned", r, clients)
	}
	ahead := r.Backlog + r.Working
	least := time.Duration(ahead/o.Capacity) * o.Latency / 2
	status, took := timedPost(t, base+"/message", 10*time.Second)
	if status != 200 || took < least {
		t.Errorf("behind %d abandoned calls: got %d after %s, want 200 after at least %s (their work goes on)", ahead, status, took, least)
	}

	eventually(t, 10*time.Second, "the backlog to drain", func() bool {
		r := sim.Report().Overload
		return r.Backlog == 0 && r.Working == 0 && r.Abandoned == 0
	})
	if n := sim.Report().Overload.Answered["OK"]; n != clients+2 {
		t.Errorf("answered OK: got %d, want %d (every abandoned call was worked on)", n, clients+2)
	}
	if status, took := timedPost(t, base+"/message", 5*time.Second); status != 200 || took > 60*time.Millisecond+slack || took >= least {
		t.Errorf("once the load stopped: got %d after %s, want 200 within the base latency again (60ms + %s), under the %s behind the backlog", status, took, slack, least)
	}
	if rec := sim.Report().Recent; rec.Answered != clients+3 || rec.Max < least.Milliseconds() {
		t.Errorf("recent latency: got %+v, want %d answers, the slowest at least as slow as the call behind the backlog", rec, clients+3)
	}
}

func TestOverloadCallThatWaitsPastGiveUpIsAnswered500(t *testing.T) {
	o := overloadConfig{Capacity: 1, Latency: 2 * time.Second, GiveUp: 150 * time.Millisecond}
	sim, base := startOverloadSimulator(t, o, nodeKeepAlive)
	go postSim(t, base+"/message", simMessage, 100*time.Millisecond) // takes the one worker for 1-3 s
	eventually(t, 2*time.Second, "the first call to take the worker", func() bool { return sim.Report().Overload.Working == 1 })
	status, took := timedPost(t, base+"/message", 5*time.Second)
	if status != 500 || took < o.GiveUp || took > time.Second {
		t.Errorf("got %d after %s, want 500 after the give-up (%s), long before the worker is free", status, took, o.GiveUp)
	}
}

func TestEpisodesAreReproducibleFromASeed(t *testing.T) {
	o := defaultOverload
	draw := func(seed uint64) []episode {
		s := newEpisodeSchedule(o, seed)
		var eps []episode
		for range 50 {
			e, ok := s.next()
			if !ok {
				t.Fatal("the default profile has no episodes")
			}
			eps = append(eps, e)
		}
		return eps
	}
	a, b, other := draw(7), draw(7), draw(8)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("episode %d: seed 7 gave %v, then %v", i, a[i], b[i])
		}
		calm, length := a[i].start, a[i].end-a[i].start
		if i > 0 {
			calm -= a[i-1].end
		}
		if calm < o.CalmMin || calm > o.CalmMax || length < o.EpisodeMin || length > o.EpisodeMax {
			t.Errorf("episode %d: calm %s and length %s, want %s-%s and %s-%s", i, calm, length, o.CalmMin, o.CalmMax, o.EpisodeMin, o.EpisodeMax)
		}
	}
	if a[0] == other[0] && a[1] == other[1] {
		t.Errorf("seeds 7 and 8 drew the same episodes: %v", a[:2])
	}
	if _, ok := newEpisodeSchedule(overloadConfig{}, 7).next(); ok {
		t.Error("-episode-max 0: got an episode, want none")
	}
}

func TestEpisodeDropsCapacityAndTheCallsOfLostWorkersFail(t *testing.T) {
	o := overloadConfig{Capacity: 4, Latency: time.Second, EpisodeCapacity: 1,
		EpisodeMin: 300 * time.Millisecond, EpisodeMax: 300 * time.Millisecond,
		CalmMin: 200 * time.Millisecond, CalmMax: 200 * time.Millisecond, GiveUp: time.Minute}
	m := newOverloadModel(o, 1, time.Now(), &latencyWindow{})
	defer m.close()
	calls := make([]*overloadCall, 4)
	for i := range calls {
		calls[i] = m.submit(time.Now())
	}
	if r := m.report(); r.Capacity != 4 || r.Working != 4 || r.Episode {
		t.Fatalf("before the episode: got %+v, want 4 workers busy", r)
	}
	failed := 0
	for _, c := range calls[1:] {
		select {
		case status := <-c.answer:
			if status != 500 {
				t.Errorf("a call whose worker was lost: got %d, want 500", status)
			}
			failed++
		case <-time.After(2 * time.Second):
			t.Fatal("the episode did not come")
		}
	}
	if r := m.report(); r.Capacity != 1 || r.Working != 1 || !r.Episode {
		t.Errorf("in the episode: got %+v, want one worker left with the oldest call", r)
	}
	eventually(t, 2*time.Second, "the episode to end", func() bool { return !m.report().Episode })
	if r := m.report(); r.Capacity != 4 {
		t.Errorf("after the episode: got %+v, want 4 workers again", r)
	}
	if status := <-calls[0].answer; status != 200 {
		t.Errorf("the call that kept its worker: got %d, want 200", status)
	}
}

func TestKeepAliveClosesIdleConnections(t *testing.T) {
	if got := defaultSimConfig(0).KeepAlive; got != 5*time.Second {
		t.Errorf("default keep-alive: got %s, want 5s, Node's keepAliveTimeout", got)
	}
	const keepAlive = 200 * time.Millisecond
	_, base := startOverloadSimulator(t, overloadConfig{Capacity: 1, Latency: time.Millisecond, GiveUp: time.Second}, keepAlive)
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req, _ := http.NewRequest(http.MethodPost, base+"/message", strings.NewReader(simMessage))
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	rd := bufio.NewReader(conn)
	resp, err := http.ReadResponse(rd, req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	answered := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = rd.ReadByte()
	idle := time.Since(answered)
	if !errors.Is(err, io.EOF) || idle < keepAlive*3/4 || idle > keepAlive+time.Second {
		t.Errorf("idle connection: got %v after %s, want EOF after about %s", err, idle, keepAlive)
	}
}

func TestControlReportsBacklogInFlightAndLatency(t *testing.T) {
	o := overloadConfig{Capacity: 1, Latency: time.Second, GiveUp: time.Minute}
	_, base := startOverloadSimulator(t, o, nodeKeepAlive)
	for range 3 {
		go postSim(t, base+"/message", simMessage, 3*time.Second)
	}
	var r controlReport
	eventually(t, 2*time.Second, "three calls inside", func() bool {
		resp, err := http.Get(base + "/control")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		r = controlReport{}
		return json.NewDecoder(resp.Body).Decode(&r) == nil && r.InFlight == 3
	})
	if r.Profile != ProfileOverload || r.Overload.Working != 1 || r.Overload.Backlog != 2 || r.Overload.Capacity != 1 {
		t.Errorf("GET /control: got %+v, want overload with 1 working and 2 in the backlog", r)
	}
}
