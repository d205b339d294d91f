package main

// overload.go is the simulator's overload profile (docs/messageapp.md): messageapp as
// a fixed number of workers in front of a backlog. A call is worked on for
// about the base latency once a worker is free; until then it waits, so
// latency grows with the load. Work goes on after the client hangs up, as
// in a Node server, whose handler knows nothing of the caller leaving.
// Now and then (seeded episodes, calm time between) most workers are lost
// for a few seconds.

import (
	"container/list"
	"errors"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"time"
)

// overloadConfig is the overload profile's knobs; `courier messageapp -h`
// lists them with their variables.
type overloadConfig struct {
	Capacity        int           // workers: calls worked on at once
	Latency         time.Duration // base latency: one call's work takes 0.5..1.5 × this
	EpisodeCapacity int           // workers left during an episode
	EpisodeMin      time.Duration // shortest episode
	EpisodeMax      time.Duration // longest episode; 0 means no episodes
	CalmMin         time.Duration // shortest healthy time before each episode
	CalmMax         time.Duration // longest healthy time before each episode
	GiveUp          time.Duration // a call that has waited this long for a worker is answered 500
}

// defaultOverload is the profile as `courier messageapp` and the embedded
// simulator run it. What is assumed and why is in the README ("messageapp").
var defaultOverload = overloadConfig{
	Capacity:        8,
	Latency:         100 * time.Millisecond,
	EpisodeCapacity: 1,
	EpisodeMin:      3 * time.Second,
	EpisodeMax:      8 * time.Second,
	CalmMin:         15 * time.Second,
	CalmMax:         30 * time.Second,
	GiveUp:          14 * time.Second,
}

// check says what is wrong with c, naming the flag.
func (c overloadConfig) check() error {
	switch {
	case c.Capacity < 1:
		return errors.New("-capacity must be at least 1")
	case c.EpisodeCapacity < 0 || c.EpisodeCapacity > c.Capacity:
		return errors.New("-episode-capacity must be from 0 to -capacity")
	case c.Latency <= 0:
		return errors.New("-latency must be positive")
	case c.GiveUp <= 0:
		return errors.New("-give-up must be positive")
	case c.EpisodeMax < 0 || c.EpisodeMax > 0 && (c.EpisodeMin < 0 || c.EpisodeMin > c.EpisodeMax):
		return errors.New("-episode-min must be from 0 to -episode-max, and -episode-max not negative")
	case c.EpisodeMax > 0 && (c.CalmMin <= 0 || c.CalmMax < c.CalmMin):
		return errors.New("-calm-min must be positive and at most -calm-max")
	}
	return nil
}

// throughput is how many calls per second the workers finish when busy:
// the capacity the bench and the demo quote.
func (c overloadConfig) throughput(workers int) float64 {
	return float64(workers) / c.Latency.Seconds()
}

// episode is one drop in capacity, from the simulator's start.
type episode struct{ start, end time.Duration }

// episodeSchedule draws the episodes from their own random stream, so the
// same seed gives the same episodes however many calls arrive.
type episodeSchedule struct {
	cfg  overloadConfig
	rng  *rand.Rand
	last time.Duration // end of the episode drawn last
}

func newEpisodeSchedule(cfg overloadConfig, seed uint64) *episodeSchedule {
	return &episodeSchedule{cfg: cfg, rng: rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d))}
}

// next is the episode after the one drawn last: a calm spell, then the
// episode. ok is false when the profile has no episodes.
func (s *episodeSchedule) next() (e episode, ok bool) {
	if s.cfg.EpisodeMax <= 0 {
		return episode{}, false
	}
	draw := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(s.rng.Int64N(int64(hi-lo)+1)) }
	e.start = s.last + draw(s.cfg.CalmMin, s.cfg.CalmMax)
	e.end = e.start + draw(s.cfg.EpisodeMin, s.cfg.EpisodeMax)
	s.last = e.end
	return e, true
}

// callState is where a call is in the model.
type callState int

const (
	callWaiting callState = iota // in the backlog
	callWorking                  // a worker has it
	callDone                     // answered (whether or not anyone listened)
)

// overloadCall is one POST /message inside the model.
type overloadCall struct {
	arrived time.Time
	work    time.Duration // how long a worker takes with it
	state   callState
	elem    *list.Element // in the backlog or the working list
	timer   *time.Timer   // work done, or the give-up while waiting
	gone    bool          // its client hung up; it is still worked on
	answer  chan int      // the status, sent once; buffered, so no one has to read it
}

// overloadModel is the workers, the backlog and the episodes.
type overloadModel struct {
	cfg   overloadConfig
	start time.Time

	// mu guards everything below, and every overloadCall's fields but
	// answer.
	mu         sync.Mutex
	rng        *rand.Rand // draws each call's work
	schedule   *episodeSchedule
	capacity   int  // workers now
	inEpisode  bool // capacity is cfg.EpisodeCapacity
	working    list.List
	backlog    list.List
	abandoned  int // calls in working or backlog whose client has gone
	received   int64
	answered   map[int]int64
	recent     *latencyWindow // shared with the simulator's other profiles
	transition *time.Timer    // the next episode's start or end
	closed     bool
}

// newOverloadModel starts the episode clock at start; answers are
// recorded in recent.
func newOverloadModel(cfg overloadConfig, seed uint64, start time.Time, recent *latencyWindow) *overloadModel {
	m := &overloadModel{cfg: cfg, start: start, rng: rand.New(rand.NewPCG(seed^0x2545f4914f6cdd1d, seed)),
		schedule: newEpisodeSchedule(cfg, seed), capacity: cfg.Capacity, answered: map[int]int64{}, recent: recent}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.scheduleNextLocked()
	return m
}

// scheduleNextLocked sets timers for the next episode's start and end.
// Callers hold mu.
func (m *overloadModel) scheduleNextLocked() {
	e, ok := m.schedule.next()
	if !ok || m.closed {
		return
	}
	m.transition = time.AfterFunc(time.Until(m.start.Add(e.start)), func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.closed {
			return
		}
		m.setCapacityLocked(m.cfg.EpisodeCapacity, true)
		m.transition = time.AfterFunc(time.Until(m.start.Add(e.end)), func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			if m.closed {
				return
			}
			m.setCapacityLocked(m.cfg.Capacity, false)
			m.scheduleNextLocked()
		})
	})
}

// setCapacityLocked changes the number of workers. Workers lost take the
// call they had with them: it is answered 500 at once, the newest first
// (the least work is lost). Callers hold mu.
func (m *overloadModel) setCapacityLocked(n int, inEpisode bool) {
	m.capacity, m.inEpisode = n, inEpisode
	now := time.Now()
	for m.working.Len() > n {
		c := m.working.Back().Value.(*overloadCall)
		c.timer.Stop()
		m.working.Remove(c.elem)
		m.doneLocked(c, http.StatusInternalServerError, now)
	}
	m.fillLocked(now)
}

// submit takes a call arriving at now: a free worker starts on it, or it
// joins the backlog. Its status comes on the call's answer channel.
func (m *overloadModel) submit(now time.Time) *overloadCall {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := &overloadCall{arrived: now, answer: make(chan int, 1),
		work: m.cfg.Latency/2 + time.Duration(m.rng.Int64N(int64(m.cfg.Latency)+1))}
	m.received++
	if m.closed {
		c.state = callDone
		c.answer <- http.StatusServiceUnavailable
		return c
	}
	c.elem = m.backlog.PushBack(c)
	c.timer = time.AfterFunc(m.cfg.GiveUp, func() { m.giveUp(c) })
	m.fillLocked(now)
	return c
}

// fillLocked gives free workers the oldest waiting calls. Callers hold mu.
func (m *overloadModel) fillLocked(now time.Time) {
	for m.working.Len() < m.capacity && m.backlog.Len() > 0 {
		c := m.backlog.Remove(m.backlog.Front()).(*overloadCall)
		c.timer.Stop() // its give-up; giveUp checks the state if it already fired
		c.state = callWorking
		c.elem = m.working.PushBack(c)
		c.timer = time.AfterFunc(c.work, func() { m.finish(c) })
	}
}

// finish answers a call whose work is done and frees its worker.
func (m *overloadModel) finish(c *overloadCall) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c.state != callWorking {
		return // its worker was lost in an episode
	}
	now := time.Now()
	m.working.Remove(c.elem)
	m.doneLocked(c, http.StatusOK, now)
	m.fillLocked(now)
}

// giveUp answers 500 to a call that has waited GiveUp for a worker.
func (m *overloadModel) giveUp(c *overloadCall) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c.state != callWaiting {
		return
	}
	m.backlog.Remove(c.elem)
	m.doneLocked(c, http.StatusInternalServerError, time.Now())
}

// doneLocked records the answer and sends it. Callers hold mu and have
// taken c out of its list.
func (m *overloadModel) doneLocked(c *overloadCall, status int, now time.Time) {
	c.state, c.elem = callDone, nil
	if c.gone {
		m.abandoned--
	}
	m.answered[status]++
	m.recent.add(now, now.Sub(c.arrived))
	c.answer <- status
}

// abandon notes that c's client hung up; the work goes on.
func (m *overloadModel) abandon(c *overloadCall) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c.state != callDone && !c.gone {
		c.gone = true
		m.abandoned++
	}
}

// close stops the episodes and answers every call still inside 503.
func (m *overloadModel) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	if m.transition != nil {
		m.transition.Stop()
	}
	now := time.Now()
	for _, l := range []*list.List{&m.working, &m.backlog} {
		for l.Len() > 0 {
			c := l.Remove(l.Front()).(*overloadCall)
			c.timer.Stop()
			m.doneLocked(c, http.StatusServiceUnavailable, now)
		}
	}
}

// overloadReport is the model's state, as GET /control shows it.
type overloadReport struct {
	Capacity     int              `json:"capacity"`      // workers now
	FullCapacity int              `json:"full_capacity"` // workers outside episodes
	Episode      bool             `json:"episode"`       // capacity is down
	Working      int              `json:"working"`       // calls a worker has
	Backlog      int              `json:"backlog"`       // calls waiting for a worker
	Abandoned    int              `json:"abandoned"`     // of working and backlog, calls whose client hung up
	Received     int64            `json:"received"`      // calls since start
	Answered     map[string]int64 `json:"answered"`      // since start, by status text
}

func (m *overloadModel) report() overloadReport {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := overloadReport{Capacity: m.capacity, FullCapacity: m.cfg.Capacity, Episode: m.inEpisode,
		Working: m.working.Len(), Backlog: m.backlog.Len(), Abandoned: m.abandoned, Received: m.received,
		Answered: map[string]int64{}}
	for status, n := range m.answered {
		r.Answered[http.StatusText(status)] = n
	}
	return r
}

// latencyWindow keeps the latencies of the calls answered in the last
// latencyWindowSpan, at most latencyWindowMax of them.
type latencyWindow struct {
	mu      sync.Mutex // guards samples
	samples []latencySample
}

type latencySample struct {
	at   time.Time
	took time.Duration
}

const (
	latencyWindowSpan = 10 * time.Second
	latencyWindowMax  = 4096
)

func (w *latencyWindow) add(at time.Time, took time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.trim(at)
	if len(w.samples) == latencyWindowMax {
		w.samples = w.samples[1:]
	}
	w.samples = append(w.samples, latencySample{at, took})
}

// trim drops the samples older than the span before now. Callers hold mu.
func (w *latencyWindow) trim(now time.Time) {
	i := 0
	for i < len(w.samples) && now.Sub(w.samples[i].at) > latencyWindowSpan {
		i++
	}
	w.samples = w.samples[i:]
}

// latencySummary is the recent latency GET /control reports, in
// milliseconds, over the calls answered in the last ten seconds.
type latencySummary struct {
	Answered int   `json:"answered"`
	P50      int64 `json:"p50_ms"`
	P99      int64 `json:"p99_ms"`
	Max      int64 `json:"max_ms"`
}

func (w *latencyWindow) summary(now time.Time) latencySummary {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.trim(now)
	if len(w.samples) == 0 {
		return latencySummary{}
	}
	took := make([]time.Duration, len(w.samples))
	for i, s := range w.samples {
		took[i] = s.took
	}
	slices.Sort(took)
	at := func(p int) int64 { return took[(len(took)-1)*p/100].Milliseconds() }
	return latencySummary{Answered: len(took), P50: at(50), P99: at(99), Max: took[len(took)-1].Milliseconds()}
}
