package main

// sender.go is the only file that speaks to messageapp: an HTTP client with
// a deadline on every call, and the pool of senders that take deliveries
// from the queue and push them through the breaker.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/time/rate"
)

// errAborted means the call was cut short by courier itself (the shutdown
// deadline), which says nothing about messageapp.
var errAborted = errors.New("attempt aborted by shutdown")

// errAbortedAfterWrite means shutdown cut a call short after its request
// had gone out whole: messageapp may have it, so, as after a timeout, the
// message is final and never sent again, nor spooled to be.
var errAbortedAfterWrite = errors.New("attempt aborted by shutdown after the request went out")

// messageappClient posts messages to messageapp's send endpoint.
type messageappClient struct {
	url     string
	timeout time.Duration
	http    *http.Client
	idle    *idleLimit // what messageapp's keep-alive has shown itself to be
}

// idleConnTimeout is how long a connection to messageapp may stay idle
// before courier closes it: well before messageapp would (a Node server's
// default keep-alive is 5 s), so that courier does not send on a
// connection messageapp is closing.
const idleConnTimeout = 2 * time.Second

// newMessageappClient keeps up to senders idle connections, so every sender
// can reuse one, each for at most idleConnTimeout, and never follows
// redirects.
func newMessageappClient(url string, timeout time.Duration, senders int) *messageappClient {
	idle := &idleLimit{now: time.Now}
	transport := &http.Transport{
		DialContext:         idle.dial((&net.Dialer{KeepAlive: 30 * time.Second}).DialContext),
		MaxIdleConns:        senders,
		MaxIdleConnsPerHost: senders,
		IdleConnTimeout:     idleConnTimeout,
	}
	return &messageappClient{
		url:     url,
		timeout: timeout,
		idle:    idle,
		http: &http.Client{
			Transport: transport,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
	}
}

type sendRequest struct {
	Destination string `json:"destination"`
	Body        string `json:"body"`
}

// encodeSendRequest is d's body for messageapp, the bytes json.Marshal of a
// sendRequest gives, built directly when its strings need no escaping (the
// usual message), through json.Marshal otherwise.
func encodeSendRequest(d *Delivery) ([]byte, error) {
	dst := make([]byte, 0, len(`{"destination":"","body":""}`)+len(d.Destination())+len(d.Body()))
	dst, ok := appendPlainJSONString(append(dst, `{"destination":`...), d.Destination())
	if ok {
		dst, ok = appendPlainJSONString(append(dst, `,"body":`...), d.Body())
	}
	if !ok {
		return json.Marshal(sendRequest{Destination: d.Destination(), Body: d.Body()})
	}
	return append(dst, '}'), nil
}

// Send makes one attempt with a deadline of the configured timeout. When
// the deadline passes, the request and its connection are abandoned.
//
// Every call carries Idempotency-Key: <message id>, the same on every
// attempt, for a messageapp that dedupes. The transport is never left to
// re-send on its own: it would also re-send, on a reused connection, a
// request that went out whole before the connection broke, which
// messageapp may have. Send replays a request itself, at once and within
// the same deadline, only when it provably never went out: it was not
// written whole, on a connection that was reused (messageapp had closed it
// while idle). A request that went out whole and then lost its connection
// is final: connection_lost, delivery unknown.
func (c *messageappClient) Send(ctx context.Context, d *Delivery) error {
	callCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	payload, err := encodeSendRequest(d)
	if err != nil {
		return &AttemptError{Kind: OutcomeUnreachable, Detail: "encode message: " + err.Error()}
	}
	for tries := 1; ; tries++ {
		replay, err := c.try(ctx, callCtx, d, payload)
		if !replay || tries == maxTries {
			return err
		}
	}
}

// maxTries bounds the replays of one attempt. Each gives up a connection
// messageapp had closed, so more than a few in a row mean something else
// is wrong, and the attempt ends unreachable.
const maxTries = 8

// try sends the request once. replay says that it provably never reached
// messageapp, on a reused connection that messageapp had closed or was
// about to close, so it may be sent again at once; err is then what to
// report if it is not. Each replay gives up a connection from the pool,
// so replays end, at the latest, on a fresh one.
func (c *messageappClient) try(ctx, callCtx context.Context, d *Delivery, payload []byte) (replay bool, err error) {
	var progress callProgress
	traced := httptrace.WithClientTrace(callCtx, c.trace(&progress))
	req, err := http.NewRequestWithContext(traced, http.MethodPost, c.url, bytes.NewReader(payload))
	if err != nil {
		return false, &AttemptError{Kind: OutcomeUnreachable, Detail: "build request: " + withoutURL(err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", d.ID())
	// Without GetBody the transport cannot rewind the body, so it never
	// re-sends the request itself (see Send).
	req.GetBody = nil
	resp, err := c.http.Do(req)
	if err != nil {
		return c.unanswered(ctx, callCtx, &progress, err)
	}
	defer resp.Body.Close()
	// Drain a bounded amount so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return false, &AttemptError{Kind: OutcomeMessageappError, Status: resp.StatusCode, Detail: answerDetail(resp.StatusCode),
			retryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now())}
	}
	return false, nil
}

// callProgress is how far one request got. How far decides what a failure
// means: only a request that went out whole may have been delivered. The
// trace says when the transport has the request written into its buffer,
// the connection when the buffer has gone out.
type callProgress struct {
	reached atomic.Int32 // 0 nothing, 1 connected, 2 request written
	reused  atomic.Bool
	conn    atomic.Pointer[watchedConn]
	mark    sentMark // what had gone out on conn before this request
}

// trace follows a request into p, and closes a reused connection that
// messageapp has closed or is about to close before a byte goes out.
func (c *messageappClient) trace(p *callProgress) *httptrace.ClientTrace {
	return &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			if wc := watched(info.Conn); wc != nil {
				p.mark = wc.sent()
				p.conn.Store(wc)
			}
			p.reached.CompareAndSwap(0, 1)
			p.reused.Store(info.Reused)
			if info.Reused && (c.idle.stale(info.IdleTime) || peerClosed(info.Conn)) {
				// messageapp is about to close it, or has: fail the write
				// before a byte goes out, rather than find out after.
				_ = info.Conn.Close()
			}
		},
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err == nil {
				p.reached.Store(2)
			}
		},
	}
}

// unanswered is what a request that got no answer (err) means, by how far
// it got (p), whether shutdown cut it (ctx) and whether its deadline passed
// (callCtx); replay as try says.
func (c *messageappClient) unanswered(ctx, callCtx context.Context, p *callProgress, err error) (replay bool, _ error) {
	if wc := p.conn.Load(); wc != nil && p.reached.Load() == 2 && !wc.wroteSince(p.mark) {
		p.reached.Store(1) // in the transport's buffer, but it never left
	}
	written := p.reached.Load() == 2
	deadline := errors.Is(callCtx.Err(), context.DeadlineExceeded)
	switch {
	case ctx.Err() != nil && written:
		return false, errAbortedAfterWrite
	case ctx.Err() != nil:
		return false, errAborted
	case written && deadline:
		return false, &AttemptError{Kind: OutcomeTimeout, Detail: fmt.Sprintf("no answer within %s", c.timeout)}
	case written:
		return false, &AttemptError{Kind: OutcomeConnectionLost,
			Detail: "the connection broke after the request was sent, before an answer: delivery unknown (" + withoutURL(err) + ")"}
	case !deadline:
		return p.reused.Load(), &AttemptError{Kind: OutcomeUnreachable, Detail: withoutURL(err)}
	case p.reached.Load() == 1:
		return false, &AttemptError{Kind: OutcomeUnreachable, Detail: fmt.Sprintf("connected but could not send the request within %s", c.timeout)}
	default:
		return false, &AttemptError{Kind: OutcomeUnreachable, Detail: fmt.Sprintf("could not connect within %s", c.timeout)}
	}
}

// retryAfter is how long a Retry-After header asks to wait (RFC 9110
// §10.2.3): delay-seconds or an HTTP date, measured from now. Anything
// else, or a date already past, is zero. delay-seconds has no upper
// bound: more seconds than a Duration holds is the longest Duration (the
// backoff caps every wait at RETRY_BACKOFF_MAX).
func retryAfter(value string, now time.Time) time.Duration {
	if value == "" {
		return 0
	}
	secs, err := strconv.ParseUint(value, 10, 64)
	if err == nil && secs <= math.MaxInt64/uint64(time.Second) {
		return time.Duration(secs) * time.Second
	}
	if err == nil || errors.Is(err, strconv.ErrRange) {
		return math.MaxInt64
	}
	if at, err := http.ParseTime(value); err == nil {
		return max(0, at.Sub(now))
	}
	return 0
}

// withoutURL is what went wrong in a call, without the URL that net/http
// puts in front (its user, password and query may be secrets; docs/security.md):
// "dial tcp 10.0.0.7:3000: connect: connection refused".
func withoutURL(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// Close drops idle connections so nothing outlives the service.
func (c *messageappClient) Close() { c.http.CloseIdleConnections() }

// Senders is the pool that delivers queued messages.
type Senders struct {
	limiter     *Limiter // how many of them may call messageapp at once
	maxAttempts int
	retry       retryBackoff // the wait between attempts of a message
	queue       *Queue
	breaker     *Breaker
	store       *Store
	client      *messageappClient
	log         zerolog.Logger
	texts       map[Outcome]string // log message of each outcome
	obs         Observer

	// keptLines budgets the breaker_open lines of the whole pool, so that a
	// flood of messages kept back by a long outage cannot flood the log;
	// keptUnlogged counts the ones the budget held back, reported on the
	// next line that is written.
	keptLines    *rate.Limiter
	keptUnlogged atomic.Int64

	// probe is a one-slot semaphore: while the circuit is not closed, only
	// the sender holding it may keep a message out of the queue. Each
	// sender knows whether it holds it through its probeHold.
	probe chan struct{}
	wg    sync.WaitGroup
}

// keptLinesPerSecond caps the breaker_open lines courier writes, in a
// burst and per second after it: enough to see every message an outage
// holds back at the default queue size, not enough to drown the log.
const keptLinesPerSecond = 20

// requeuePoll is how often a sender that kept a message, because the queue
// was full when the circuit opened, tries again to put it back.
const requeuePoll = 100 * time.Millisecond

// minOpenPoll is the shortest wait between two tries of an open circuit,
// so that a probe refused at the edge of its backoff cannot turn into a spin.
const minOpenPoll = 5 * time.Millisecond

// NewSenders builds a pool of as many senders as lim's ceiling; lim
// decides how many of them call messageapp at once.
func NewSenders(lim *Limiter, maxAttempts int, retry retryBackoff, q *Queue, b *Breaker, s *Store, c *messageappClient, log zerolog.Logger, obs Observer) *Senders {
	l := log.With().Str("component", "sender").Logger()
	return &Senders{
		limiter: lim, maxAttempts: maxAttempts, retry: retry, queue: q, breaker: b, store: s, client: c, log: l,
		texts:     outcomeTexts(c.timeout),
		keptLines: rate.NewLimiter(keptLinesPerSecond, keptLinesPerSecond),
		probe:     make(chan struct{}, 1),
		obs:       obs,
	}
}

// Start runs the senders until the queue is drained or ctx is done.
func (p *Senders) Start(ctx context.Context) {
	for range p.limiter.Ceiling() {
		p.wg.Go(func() { p.run(ctx) })
	}
}

// Wait blocks until every sender has returned.
func (p *Senders) Wait() { p.wg.Wait() }

func (p *Senders) run(ctx context.Context) {
	probe := &probeHold{slot: p.probe}
	for {
		d, s, ok := p.next(ctx, probe)
		if !ok {
			return
		}
		p.deliver(ctx, d, probe, &s)
		probe.release()
		p.limiter.release(&s)
	}
}

// probeHold is one sender's hold on the pool's probe slot. The sender
// carries it from taking a message to being done with it; whoever holds
// the slot while the circuit is not closed is the sender whose message
// goes as the next probe.
type probeHold struct {
	slot chan struct{} // the pool's one-slot semaphore
	held bool          // this sender holds it
}

// tryClaim takes the slot if it is free, and reports whether this sender
// holds it.
func (h *probeHold) tryClaim() bool {
	if !h.held {
		select {
		case h.slot <- struct{}{}:
			h.held = true
		default:
		}
	}
	return h.held
}

// claim is the slot to send on in a select that waits for it (the case
// then sets held), or nil, which never fires, when this sender holds it.
func (h *probeHold) claim() chan<- struct{} {
	if h.held {
		return nil
	}
	return h.slot
}

// release gives the slot back if this sender holds it.
func (h *probeHold) release() {
	if h.held {
		<-h.slot
		h.held = false
	}
}

// next waits until this sender may take a message. While the circuit is
// closed, it first takes a slot of the concurrency limit, so that waiting
// for room holds nothing back from the queue, then a message. While it is
// not, it takes a message only once it holds the probe slot, and no slot
// of the limit: holding the message for the probe needs none, only the
// probe's call does (deliver waits for one then). A sender that waited for
// a slot while the circuit is open, behind calls that hang, would leave
// the next probe's message in the queue, never seen to be kept back by
// the open circuit. next reports false when the queue is drained or ctx
// is done.
func (p *Senders) next(ctx context.Context, probe *probeHold) (d *Delivery, s slot, ok bool) {
	for {
		state, changed := p.breaker.State()
		if state != CircuitClosed {
			d, err := p.takeForProbe(ctx, probe, changed)
			if err == nil {
				return d, slot{}, true
			}
			if !errors.Is(err, errInterrupted) {
				return nil, slot{}, false
			}
			continue
		}
		s, lowered, err := p.limiter.acquire(ctx, changed, p.queue.Drained())
		if errors.Is(err, errInterrupted) {
			continue
		}
		if err != nil {
			return nil, slot{}, false
		}
		if d, err = p.queue.Take(ctx, changed, lowered); err == nil {
			return d, s, true
		}
		p.limiter.release(&s)
		if !errors.Is(err, errInterrupted) {
			return nil, slot{}, false
		}
	}
}

// takeForProbe waits for the probe slot, then takes a message to hold for
// the probe. It fails with errInterrupted when the circuit changes
// (changed), errQueueDrained, or the context's error, holding nothing.
func (p *Senders) takeForProbe(ctx context.Context, probe *probeHold, changed <-chan struct{}) (*Delivery, error) {
	select {
	case probe.claim() <- struct{}{}:
		probe.held = true
	case <-changed:
		return nil, errInterrupted
	case <-p.queue.Drained():
		return nil, errQueueDrained
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	d, err := p.queue.Take(ctx, changed, nil)
	if err != nil {
		probe.release()
	}
	return d, err
}

// deliver tries d until it reaches a final status, goes back to the queue
// (to wait for the circuit, or for its next attempt), or ctx ends. It may
// claim the probe slot, or give it back, through probe; the caller
// releases what probe and s still hold.
func (p *Senders) deliver(ctx context.Context, d *Delivery, probe *probeHold, s *slot) {
	p.store.Move(d.ID(), StatusSending, int(d.Attempts), nil)
	wasOpen := false
	for {
		if !p.awaitTurn(ctx, d, probe, s, wasOpen) {
			return
		}
		if !s.held {
			// The call needs a slot of the limit, which a message held
			// while the circuit was open does not have.
			ns, _, err := p.limiter.acquire(ctx, nil, nil)
			if err != nil {
				return // shutdown: d stays sending, to be spooled or listed as undelivered
			}
			*s = ns
		}
		outcome, lastErr, retryIn := p.attempt(ctx, d, s)
		if outcome == "" {
			// Aborted by shutdown before its request went out (one that
			// went out is a timeout): stays sending, to be spooled or
			// listed as undelivered with its attempts.
			p.store.Move(d.ID(), StatusSending, int(d.Attempts), nil)
			return
		}
		rule := attemptRule(outcome, lastErr)
		wasOpen = rule.waits
		switch {
		case rule.waits: // awaitTurn keeps it until the circuit lets it go
		case rule.retryable && int(d.Attempts) < p.maxAttempts:
			if p.retryLater(ctx, d, lastErr, retryIn, probe, s) {
				return
			}
			p.store.Move(d.ID(), StatusSending, int(d.Attempts), nil)
		default:
			p.store.Move(d.ID(), rule.final, int(d.Attempts), lastErr)
			return
		}
	}
}

// retryLater makes d, whose attempt failed with lastErr, wait for its next
// attempt for wait (the backoff, or messageapp's Retry-After) without
// holding a call slot. Normally the queue keeps it meanwhile and later reports true:
// d is no longer this sender's. When the queue has no room (it is full,
// or closed by shutdown), this sender keeps d, gives back its slot of the
// limit and the probe slot, waits, looking for room now and then, and
// reports false once d is due and the sender holds a slot again; or true
// if ctx ended first, d staying queued.
func (p *Senders) retryLater(ctx context.Context, d *Delivery, lastErr *AttemptError, wait time.Duration, probe *probeHold, s *slot) (later bool) {
	due := time.Now().Add(wait)
	waiting := func() { p.store.Move(d.ID(), StatusQueued, int(d.Attempts), lastErr) }
	if p.queue.Delay(d, due, waiting) {
		return true
	}
	waiting()
	probe.release()
	hadSlot := s.held
	p.limiter.release(s)
	for left := time.Until(due); left > 0; left = time.Until(due) {
		if _, err := waitFor(ctx, min(left, requeuePoll), nil); err != nil {
			return true
		}
		if p.queue.Delay(d, due, waiting) {
			return true
		}
	}
	if hadSlot {
		ns, _, err := p.limiter.acquire(ctx, nil, nil)
		if err != nil {
			return true
		}
		*s = ns
	}
	return false
}

// awaitTurn reports whether d may be tried now. While the circuit is not
// closed, who holds the probe slot decides what d does: the holder waits
// for the probe to be due (holdForProbe); any other sender puts d back in
// the queue or, if it cannot, keeps it until the circuit changes or the
// slot is free (putBackOrKeep); while a call is the half-open probe, even
// the holder keeps d (keepUntilChange). Each of these is the open circuit
// keeping d from messageapp, and is logged as breaker_open. Waiting
// needs no call slot: the sender gives back s's slot while the circuit is
// not closed, and its caller takes one again for the call.
func (p *Senders) awaitTurn(ctx context.Context, d *Delivery, probe *probeHold, s *slot, wasOpen bool) bool {
	for {
		state, changed := p.breaker.State()
		if state == CircuitClosed {
			return true
		}
		p.limiter.release(s)
		holder := probe.tryClaim()
		left := p.breaker.OpenLeft()
		var next turn
		switch {
		case holder && state == CircuitOpen:
			next = p.holdForProbe(ctx, d, left, wasOpen, changed)
		case holder:
			next = p.keepUntilChange(ctx, d, probe, state, left, changed)
		default:
			next = p.putBackOrKeep(ctx, d, probe, state, left, changed)
		}
		if next != waitAgain {
			return next == tryNow
		}
		wasOpen = false
	}
}

// turn is what a sender whose message the circuit keeps does next.
type turn int

const (
	waitAgain turn = iota // the circuit or the probe slot changed: look again
	tryNow                // the circuit lets the message go: try it
	letGo                 // the message is back in the queue, or ctx ended: stop
)

// holdForProbe waits, as the probe slot's holder, until the open circuit's
// probe is due (at least minOpenPoll after a refused try, wasOpen, so that
// a probe refused at the edge of its backoff cannot spin).
func (p *Senders) holdForProbe(ctx context.Context, d *Delivery, left time.Duration, wasOpen bool, changed <-chan struct{}) turn {
	why := keptError(CircuitOpen, left)
	if wasOpen {
		left = max(left, minOpenPoll)
	}
	if left <= 0 {
		return tryNow
	}
	p.store.Move(d.ID(), StatusSending, int(d.Attempts), why)
	p.kept(d, keptForProbe, left)
	// A millisecond past the library's strict "since > backoff".
	due, err := waitFor(ctx, left+time.Millisecond, changed)
	switch {
	case err != nil:
		return letGo
	case due:
		return tryNow
	default:
		return waitAgain
	}
}

// putBackOrKeep, for a sender without the probe slot, puts d back in the
// queue, so that it waits there for the circuit; if the queue has no room
// (it is full, or closed by shutdown), the sender keeps d.
func (p *Senders) putBackOrKeep(ctx context.Context, d *Delivery, probe *probeHold, state CircuitState, left time.Duration, changed <-chan struct{}) turn {
	putBack := p.queue.Requeue(d, func() {
		// Under the queue's lock, before another sender can take d:
		// once Requeue returns, d is no longer this sender's to touch.
		p.store.Move(d.ID(), StatusQueued, int(d.Attempts), keptError(state, left))
		p.kept(d, keptInQueue, left)
	})
	if putBack {
		return letGo
	}
	return p.keepUntilChange(ctx, d, probe, state, left, changed)
}

// keepUntilChange keeps d with this sender until the circuit changes. A
// sender without the probe slot also waits for the slot to be free, so
// that d gets its own probe even when the holder had nothing to carry and
// left; and, while the queue is open, it looks again for room every
// requeuePoll, since nothing signals it.
func (p *Senders) keepUntilChange(ctx context.Context, d *Delivery, probe *probeHold, state CircuitState, left time.Duration, changed <-chan struct{}) turn {
	p.store.Move(d.ID(), StatusSending, int(d.Attempts), keptError(state, left))
	p.kept(d, keptBySender, left)
	var room <-chan time.Time
	if !probe.held {
		poll := time.NewTimer(requeuePoll)
		defer poll.Stop()
		room = poll.C
	}
	select {
	case <-changed:
	case probe.claim() <- struct{}{}:
		probe.held = true
	case <-room:
	case <-ctx.Done():
	}
	if ctx.Err() != nil {
		return letGo
	}
	return waitAgain
}

// Where a message waits while the circuit keeps it from messageapp: the
// `then` field of a breaker_open line.
const (
	keptForProbe = "held for the next probe"
	keptInQueue  = "put back in the queue"
	keptBySender = "kept by its sender until the circuit changes"
)

// keptError is the message record's last_error while the circuit keeps it
// back: why it waits, and until when.
func keptError(state CircuitState, probeIn time.Duration) *AttemptError {
	detail := "circuit half-open: waiting for the probe in flight"
	if state == CircuitOpen {
		detail = fmt.Sprintf("circuit open: not sent to messageapp; next probe due in %s (at %s)",
			probeIn.Round(time.Millisecond), time.Now().Add(probeIn).UTC().Format("15:04:05.000Z"))
	}
	return &AttemptError{Kind: OutcomeBreakerOpen, Detail: detail}
}

// kept counts, and logs within the pool's budget, that the open circuit
// keeps d from messageapp: once per message per open period, whatever the
// loop around it does meanwhile.
func (p *Senders) kept(d *Delivery, then string, probeIn time.Duration) {
	period := p.breaker.OpenPeriod()
	if d.keptIn == uint32(period) {
		return
	}
	d.keptIn = uint32(period)
	p.obs.Attempted(OutcomeBreakerOpen, 0)
	if !p.keptLines.Allow() {
		p.keptUnlogged.Add(1)
		return
	}
	ev := p.log.WithLevel(OutcomeBreakerOpen.rule().level).Str("id", d.ID()).Int("attempt", int(d.Attempts)).Str("outcome", string(OutcomeBreakerOpen)).
		Str("then", then).Int64("probe_in_ms", probeIn.Milliseconds())
	if n := p.keptUnlogged.Swap(0); n > 0 {
		ev = ev.Int64("unlogged_before", n)
	}
	ev.Msg(p.texts[OutcomeBreakerOpen])
}

// waitFor waits until d has passed (true), changed fires (false) or ctx is
// done (its error).
func waitFor(ctx context.Context, d time.Duration, changed <-chan struct{}) (bool, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true, nil
	case <-changed:
		return false, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// attempt makes one call through the breaker, counted by the concurrency
// limit in s, and logs its outcome, with how long until the next attempt
// when there is one (retry_in_ms), which it also returns. It returns an
// empty outcome when shutdown cut the call short.
func (p *Senders) attempt(ctx context.Context, d *Delivery, s *slot) (Outcome, *AttemptError, time.Duration) {
	start := time.Now()
	err := p.breaker.Call(ctx, func(ctx context.Context) error {
		if ctx.Err() != nil {
			return errAborted // cut before it started: not an attempt
		}
		d.Attempts++
		p.limiter.begin(s)
		err := p.client.Send(ctx, d)
		p.limiter.end(s, callResultOf(err))
		return err
	}, isBreakerFailure)
	elapsed := time.Since(start)
	if errors.Is(err, errAbortedAfterWrite) {
		err = &AttemptError{Kind: OutcomeTimeout, Detail: "courier shut down before messageapp answered; the request had gone out, so delivery is unknown"}
	}

	var ae *AttemptError
	switch {
	case errors.Is(err, ErrCircuitOpen):
		// The circuit refused at the last moment: no call was made.
		p.kept(d, keptForProbe, p.breaker.OpenLeft())
		return OutcomeBreakerOpen, nil, 0
	case err == nil || errors.As(err, &ae):
		outcome := OutcomeSent
		if ae != nil {
			outcome = ae.Kind
		}
		p.obs.Attempted(outcome, elapsed)
		ev := p.log.WithLevel(outcome.rule().level).Str("id", d.ID()).Int("attempt", int(d.Attempts)).Str("outcome", string(outcome)).
			Int64("duration_ms", elapsed.Milliseconds())
		if ae != nil {
			ev = ev.Str("error", ae.Detail)
		}
		if ae != nil && ae.Status != 0 {
			ev = ev.Int("status", ae.Status)
		}
		var retryIn time.Duration
		if attemptRule(outcome, ae).retryable && int(d.Attempts) < p.maxAttempts {
			retryIn = p.retry.delay(int(d.Attempts), ae.retryAfter)
			ev = ev.Int64("retry_in_ms", retryIn.Milliseconds())
		}
		ev.Msg(p.texts[outcome])
		return outcome, ae, retryIn
	default:
		p.log.Warn().Str("id", d.ID()).Int("attempt", int(d.Attempts)).Err(err).
			Int64("duration_ms", elapsed.Milliseconds()).Msg("attempt cut short by shutdown")
		return "", nil, 0
	}
}
