package main

// load.go is `courier load`: a client that POSTs messages at a set rate (or
// concurrency) and shows, second by second, what clients of courier see —
// and how much a client that honours Retry-After saves.

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/rs/xid"
)

// loadOptions configure one load run.
type loadOptions struct {
	URL               string        // courier's base URL
	AdminURL          string        // where /status is (ADMIN_ADDR); empty: URL
	Token             string        // bearer token of API_TOKENS; empty: none sent
	Rate              float64       // requests per second (rate mode)
	Concurrency       int           // closed-loop clients (used when Rate is 0)
	Duration          time.Duration // how long to send
	MaxRequests       int           // hard cap on requests sent
	RespectRetryAfter bool          // after a 503, delay sends as Retry-After says
	Retries           int           // re-sends of a message after a 503, a 409 or no answer, same Idempotency-Key
	AllowRemote       bool          // permit a non-loopback URL
	Out               io.Writer     // per-second lines; nil for none
}

// maxInFlight bounds the requests a rate-mode run has open at once, so a
// stalled courier cannot make the client grow without bound.
const maxInFlight = 512

// loadStats counts what the client saw, over a second or a whole run.
type loadStats struct {
	Requests  int                 // requests that got an answer or an error
	Accepted  int                 // 202
	Rejected  map[ProblemCode]int // 503 by problem code
	Other     map[int]int         // any other status
	Errors    int                 // no answer: connection refused, timeout
	Retries   int                 // requests that were re-sends of an earlier one
	Replayed  int                 // 202s courier marked Idempotent-Replayed
	HeldBack  int                 // sends delayed because Retry-After said wait
	StillHeld int                 // of those, sends still waiting when the run ended
	Dropped   int                 // sends skipped because maxInFlight were open
	Latencies []time.Duration
}

func newLoadStats() loadStats {
	return loadStats{Rejected: map[ProblemCode]int{}, Other: map[int]int{}}
}

func (s *loadStats) merge(o loadStats) {
	s.Requests += o.Requests
	s.Accepted += o.Accepted
	s.Errors += o.Errors
	s.HeldBack += o.HeldBack
	s.StillHeld += o.StillHeld
	s.Retries += o.Retries
	s.Replayed += o.Replayed
	s.Dropped += o.Dropped
	for k, v := range o.Rejected {
		s.Rejected[k] += v
	}
	for k, v := range o.Other {
		s.Other[k] += v
	}
	s.Latencies = append(s.Latencies, o.Latencies...)
}

func (s loadStats) rejectedTotal() int {
	n := 0
	for _, v := range s.Rejected {
		n += v
	}
	return n
}

// otherTotal counts the answers that were neither 202 nor 503.
func (s loadStats) otherTotal() int {
	n := 0
	for _, v := range s.Other {
		n += v
	}
	return n
}

// percentile returns the p-th percentile (0..100) of the latencies.
func (s loadStats) percentile(p float64) time.Duration {
	if len(s.Latencies) == 0 {
		return 0
	}
	sorted := slices.Clone(s.Latencies)
	slices.Sort(sorted)
	i := int(float64(len(sorted)-1) * p / 100)
	return sorted[i]
}

// loadClient sends the requests and keeps the tallies.
type loadClient struct {
	opt    loadOptions
	http   *http.Client
	target string
	runID  string // prefix of every Idempotency-Key of this run

	// mu guards window, total and notBefore.
	mu        sync.Mutex
	window    loadStats
	total     loadStats
	notBefore time.Time // with RespectRetryAfter: no sends before this
}

// newLoadClient checks opt and builds a client for one run.
func newLoadClient(opt loadOptions) (*loadClient, error) {
	if err := opt.check(); err != nil {
		return nil, err
	}
	transport := &http.Transport{MaxIdleConnsPerHost: max(opt.Concurrency, 64), IdleConnTimeout: 30 * time.Second}
	opt.URL = baseURL(opt.URL)
	return &loadClient{opt: opt, http: &http.Client{Transport: transport, Timeout: 10 * time.Second},
		target: opt.URL + "/messages", runID: "load-" + xid.New().String(),
		window: newLoadStats(), total: newLoadStats()}, nil
}

// reachable asks courier's /healthz once, within 2s, so that a -url where
// nothing listens is said at once rather than after -duration of silence.
// Only a request that gets no answer at all is an error: what courier (or
// a balancer in front of it) answers is run's to count.
func (c *loadClient) reachable(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.opt.URL+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return errors.Unwrap(err) // the url.Error's cause: the URL is said once, by the caller
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	return resp.Body.Close()
}

// run sends load until the duration, the request cap or ctx ends it, and
// returns the totals. Requests still in flight when the duration ends are
// waited for, so every request courier received is counted; ctx ending
// abandons them.
func (c *loadClient) run(ctx context.Context) loadStats {
	defer c.http.CloseIdleConnections()
	sending, cancel := context.WithTimeout(ctx, c.opt.Duration)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { c.report(sending) })
	if c.opt.Rate > 0 {
		c.openLoop(sending, ctx)
	} else {
		c.closedLoop(sending, ctx)
	}
	cancel()
	wg.Wait()
	return c.soFar()
}

// soFar returns the totals up to now.
func (c *loadClient) soFar() loadStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := newLoadStats()
	s.merge(c.total)
	s.merge(c.window)
	return s
}

func (o loadOptions) check() error {
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("-url %q: want an http:// URL of courier, e.g. http://127.0.0.1:9001", o.URL)
	}
	// Nothing after the host but an optional /messages.
	if baseURL(u.Path) != "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("-url %q: want courier's base URL, e.g. http://%s (or its /messages URL), with nothing else after the port", o.URL, u.Host)
	}
	if !o.AllowRemote && !isLoopback(u.Hostname()) {
		return fmt.Errorf("-url %q is not on this machine; pass -allow-remote to load another host", o.URL)
	}
	switch {
	case o.Rate < 0 || o.Rate > 100_000:
		return errors.New("-rate must be 0..100000 requests per second")
	case o.Rate == 0 && (o.Concurrency < 1 || o.Concurrency > 1024):
		return errors.New("-concurrency must be 1..1024 when -rate is 0")
	case o.Duration <= 0 || o.Duration > time.Hour:
		return errors.New("-duration must be more than 0 and at most 1h")
	case o.MaxRequests < 1 || o.MaxRequests > 10_000_000:
		return errors.New("-max-requests must be 1..10000000")
	case o.Retries < 0 || o.Retries > 100:
		return errors.New("-retries must be 0..100")
	}
	return nil
}

// baseURL is courier's base URL as -url gives it, which may also be the
// POST /messages URL itself: without a trailing "/" or "/messages".
func baseURL(url string) string {
	url = strings.TrimSuffix(url, "/")
	return strings.TrimSuffix(strings.TrimSuffix(url, "/messages"), "/")
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loadJob is one message and how many times it has been sent.
type loadJob struct{ n, attempt int }

// openLoop sends at a fixed rate whatever the answers, as real traffic does,
// until sending ends; each request lives until ctx ends. A send due for a
// retry goes before a new message. With RespectRetryAfter, a send that comes
// due while Retry-After says wait is held, not skipped, and goes later: one
// held send with each tick's own, so a backlog does not land as one burst
// the moment the wait ends. Sends still held at the end are counted.
// Sends come due by the clock, not by the ticker's ticks: a tick the
// client's machine was too busy to deliver (a ticker drops those) is a
// send made late, not one silently never made.
func (c *loadClient) openLoop(sending, ctx context.Context) {
	interval := time.Duration(float64(time.Second) / c.opt.Rate)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	start, due := time.Now(), 0 // due: sends that have come due so far
	slots := make(chan struct{}, maxInFlight)
	retries := make(chan loadJob, maxInFlight)
	var wg sync.WaitGroup
	defer wg.Wait()
	next, held := 0, 0
	defer func() { c.count(func(s *loadStats) { s.StillHeld += held }) }()
	sent := 0
	launch := func() {
		select {
		case slots <- struct{}{}:
		default:
			c.count(func(s *loadStats) { s.Dropped++ })
			return
		}
		sent++
		var job loadJob
		select {
		case job = <-retries:
		default:
			job = loadJob{n: next}
			next++
		}
		wg.Go(func() {
			defer func() { <-slots }()
			if c.send(ctx, job) && job.attempt < c.opt.Retries {
				select {
				case retries <- loadJob{job.n, job.attempt + 1}:
				default: // more retries pending than slots: this one gives up
				}
			}
		})
	}
	for sent < c.opt.MaxRequests {
		select {
		case <-sending.Done():
			return
		case <-tick.C:
		}
		for now := int(time.Since(start) / interval); due < now && sent < c.opt.MaxRequests; due++ {
			if c.heldBack() {
				held++
				continue
			}
			launch()
			if held > 0 && sent < c.opt.MaxRequests {
				held--
				launch()
			}
		}
	}
}

// closedLoop runs Concurrency clients, each sending as soon as it has its
// previous answer (and, if told, after waiting out Retry-After), retrying a
// message up to Retries times before moving on, until sending ends; each
// request lives until ctx ends.
func (c *loadClient) closedLoop(sending, ctx context.Context) {
	var wg sync.WaitGroup
	var mu sync.Mutex // guards sent and next
	sent, next := 0, 0
	for range c.opt.Concurrency {
		wg.Go(func() {
			job := loadJob{n: -1}
			for sending.Err() == nil {
				if wait := c.waitLeft(); wait > 0 {
					t := time.NewTimer(wait)
					select {
					case <-t.C:
					case <-sending.Done():
						t.Stop()
						return
					}
				}
				mu.Lock()
				if job.n < 0 {
					job = loadJob{n: next}
					next++
				}
				ok := sent < c.opt.MaxRequests
				sent++
				mu.Unlock()
				if !ok {
					return
				}
				if c.send(ctx, job) && job.attempt < c.opt.Retries {
					job.attempt++
				} else {
					job = loadJob{n: -1}
				}
			}
		})
	}
	wg.Wait()
}

// heldBack reports (and counts) a send delayed because of Retry-After.
func (c *loadClient) heldBack() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.opt.RespectRetryAfter && time.Now().Before(c.notBefore) {
		c.window.HeldBack++
		return true
	}
	return false
}

func (c *loadClient) waitLeft() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.opt.RespectRetryAfter {
		return 0
	}
	return time.Until(c.notBefore)
}

func (c *loadClient) count(f func(*loadStats)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(&c.window)
}

// send POSTs a job's message with its Idempotency-Key, tallies the answer
// and reports whether it is worth retrying (a 503, a 409 from the balancer
// or no answer).
func (c *loadClient) send(ctx context.Context, job loadJob) (retry bool) {
	body := fmt.Appendf(nil, `{"destination":"+34600000000","body":"load message %d"}`, job.n)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.target, bytes.NewReader(body))
	if err != nil {
		c.count(func(s *loadStats) { s.Errors++ })
		return false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", c.runID+"-"+strconv.Itoa(job.n))
	if c.opt.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.opt.Token)
	}
	start := time.Now()
	resp, err := c.http.Do(req)
	elapsed := time.Since(start)
	if err != nil {
		if ctx.Err() != nil { // the run ending is not an error of courier's
			return false
		}
		c.count(func(s *loadStats) { s.Requests++; s.Errors++; s.Retries += min(job.attempt, 1) })
		return true
	}
	defer resp.Body.Close()
	var problem struct {
		Code ProblemCode `json:"code"`
	}
	if resp.StatusCode != http.StatusAccepted {
		_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&problem)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	retryAfter, _ := strconv.Atoi(resp.Header.Get("Retry-After"))

	c.mu.Lock()
	defer c.mu.Unlock()
	c.window.Requests++
	c.window.Retries += min(job.attempt, 1)
	c.window.Latencies = append(c.window.Latencies, elapsed)
	switch resp.StatusCode {
	case http.StatusAccepted:
		c.window.Accepted++
		if resp.Header.Get("Idempotent-Replayed") == "true" {
			c.window.Replayed++
		}
	case http.StatusServiceUnavailable:
		c.window.Rejected[cmp.Or(problem.Code, "unknown")]++
		if until := time.Now().Add(time.Duration(retryAfter) * time.Second); retryAfter > 0 && until.After(c.notBefore) {
			c.notBefore = until
		}
		return true
	case http.StatusConflict:
		// From the balancer: another POST of this key is being answered
		// (idempotency_key_in_flight); its retry gets that POST's answer.
		c.window.Other[resp.StatusCode]++
		return true
	default:
		c.window.Other[resp.StatusCode]++
	}
	return false
}

// report prints one line per second: the client's view and courier's.
func (c *loadClient) report(ctx context.Context) {
	if c.opt.Out == nil {
		return
	}
	const row = "%5s %5s %5s %8s %9s %6s %5s %8s %8s | %6s %9s %9s\n"
	fmt.Fprintf(c.opt.Out, row, "t", "reqs", "202", "503 full", "503 other", "errors", "held", "p50", "p99", "depth", "accepting", "circuit")
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	start := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		c.mu.Lock()
		w := c.window
		c.total.merge(w)
		c.window = newLoadStats()
		c.mu.Unlock()
		st := fetchStatus(c.http, cmp.Or(c.opt.AdminURL, c.opt.URL))
		fmt.Fprintf(c.opt.Out, row,
			fmt.Sprintf("%ds", int(time.Since(start).Round(time.Second).Seconds())),
			strconv.Itoa(w.Requests), strconv.Itoa(w.Accepted), strconv.Itoa(w.Rejected[CodeQueueFull]),
			strconv.Itoa(w.rejectedTotal()-w.Rejected[CodeQueueFull]), strconv.Itoa(w.Errors+w.otherTotal()), strconv.Itoa(w.HeldBack),
			w.percentile(50).Round(100*time.Microsecond), w.percentile(99).Round(100*time.Microsecond),
			st.depth, st.accepting, st.circuit)
	}
}

// courierView is the part of GET /status the load client prints.
type courierView struct{ depth, accepting, circuit string }

func fetchStatus(client *http.Client, base string) courierView {
	st, err := getStatus(client, base, 500*time.Millisecond)
	if err != nil {
		return courierView{"?", "?", "?"}
	}
	acc := "no"
	if st.Queue.Accepting {
		acc = "yes"
	}
	return courierView{fmt.Sprintf("%d/%d", st.Queue.Depth, st.Queue.MaxSize), acc, string(st.Circuit.State)}
}

// getStatus reads courier's GET /status at base, giving up after within.
func getStatus(client *http.Client, base string, within time.Duration) (statusResponse, error) {
	var st statusResponse
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/status", nil)
	if err != nil {
		return st, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET /status: %s", resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// printLoadSummary writes the end-of-run table.
func printLoadSummary(w io.Writer, opt loadOptions, s loadStats) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nsummary\t")
	fmt.Fprintf(tw, "requests sent\t%d\n", s.Requests)
	fmt.Fprintf(tw, "accepted (202)\t%d\n", s.Accepted)
	for _, code := range slices.Sorted(maps.Keys(s.Rejected)) {
		fmt.Fprintf(tw, "rejected (503 %s)\t%d\n", code, s.Rejected[code])
	}
	for status, n := range s.Other {
		fmt.Fprintf(tw, "other answers (%d)\t%d\n", status, n)
	}
	fmt.Fprintf(tw, "errors (no answer)\t%d\n", s.Errors)
	if opt.Retries > 0 {
		fmt.Fprintf(tw, "re-sends (same Idempotency-Key)\t%d\n", s.Retries)
		fmt.Fprintf(tw, "202s replayed by courier\t%d\n", s.Replayed)
	}
	if opt.RespectRetryAfter {
		fmt.Fprintf(tw, "sends delayed by Retry-After\t%d (%d still waiting when the run ended)\n", s.HeldBack, s.StillHeld)
	}
	if s.Dropped > 0 {
		fmt.Fprintf(tw, "not sent (%d already open)\t%d\n", maxInFlight, s.Dropped)
	}
	wasted := 0.0
	if s.Requests > 0 {
		wasted = 100 * float64(s.rejectedTotal()) / float64(s.Requests)
	}
	fmt.Fprintf(tw, "requests wasted on 503\t%d (%.0f%%)\n", s.rejectedTotal(), wasted)
	fmt.Fprintf(tw, "latency p50 / p99\t%s / %s\n", s.percentile(50).Round(100*time.Microsecond), s.percentile(99).Round(100*time.Microsecond))
	if !opt.RespectRetryAfter && s.rejectedTotal() > 0 {
		fmt.Fprintln(tw, "\t(run again with -respect-retry-after to see a client that backs off)")
	}
	tw.Flush()
}

// runLoad is `courier load`.
func runLoad(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("courier load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	opt := loadOptions{Out: stdout}
	fs.StringVar(&opt.URL, "url", "http://127.0.0.1:9001", "courier's base URL")
	fs.Float64Var(&opt.Rate, "rate", 20, "requests per second; 0 to use -concurrency instead")
	fs.IntVar(&opt.Concurrency, "concurrency", 0, "clients sending back to back (with -rate 0)")
	fs.DurationVar(&opt.Duration, "duration", 10*time.Second, "how long to send")
	fs.IntVar(&opt.MaxRequests, "max-requests", 100_000, "stop after this many requests")
	fs.BoolVar(&opt.RespectRetryAfter, "respect-retry-after", false, "after a 503, delay sends until Retry-After has passed (they go later, not never)")
	fs.IntVar(&opt.Retries, "retries", 0, "re-send a message up to this many times after a 503, a 409 or no answer, with the same Idempotency-Key")
	fs.BoolVar(&opt.AllowRemote, "allow-remote", false, "allow a -url that is not on this machine")
	fs.StringVar(&opt.Token, "token", "", "bearer token, when courier has API_TOKENS")
	fs.StringVar(&opt.AdminURL, "admin-url", "", "where courier's /status is, when ADMIN_ADDR moves it off -url")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return exitOK // -h: the flags were printed
	} else if err != nil {
		return exitUsage
	}
	client, err := newLoadClient(opt)
	if err != nil {
		fmt.Fprintf(stderr, "courier load: %v\n", err)
		return exitUsage
	}
	if err := client.reachable(ctx); err != nil {
		fmt.Fprintf(stderr, "courier load: nothing answers at %s (%v); is courier running at %s? (go run . starts it)\n", client.opt.URL, err, client.opt.URL)
		return exitFailed
	}
	total := client.run(ctx)
	printLoadSummary(stdout, opt, total)
	switch {
	case total.Requests > 0 && total.Errors == total.Requests:
		fmt.Fprintf(stderr, "courier load: no request got an answer; is courier running at %s?\n", opt.URL)
		return exitFailed
	case total.Requests > 0 && total.Accepted+total.rejectedTotal() == 0:
		fmt.Fprintf(stderr, "courier load: no answer was courier's 202 or 503 (see other answers); is %s courier's base URL?\n", opt.URL)
		return exitFailed
	}
	return exitOK
}
