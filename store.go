package main

// store.go keeps what courier knows about each message and the counters
// /status reports. Every change to a message and its counter happens under
// one lock, so accepted == the sum of the counters of every status
// (statusRules) holds in every snapshot.
//
// A message costs one Delivery (the record, 80 bytes), one allocation for
// its text (id, destination, body, key and client end to end) and one slot in the
// index by id: no list elements, no per-message maps or timers. The README's
// sizing section and memoryPerMessage hold the measured figures.

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Message is the record of one accepted message as GET returns it.
type Message struct {
	ID          string        `json:"id"`
	Destination string        `json:"destination"`
	Body        string        `json:"body"`
	Status      Status        `json:"status"`
	Attempts    int           `json:"attempts"`
	CreatedAt   time.Time     `json:"created_at"`
	UpdatedAt   time.Time     `json:"updated_at"`
	LastError   *AttemptError `json:"last_error,omitempty"`
}

// AttemptError says why an attempt failed: the error a call to messageapp
// returns, and the record's last_error.
type AttemptError struct {
	Kind   Outcome `json:"kind"`
	Detail string  `json:"detail"`
	Status int     `json:"status,omitempty"` // messageapp's HTTP status, for messageapp_error

	retryAfter time.Duration // how long messageapp's answer asked to wait (Retry-After), or zero
}

func (e *AttemptError) Error() string { return string(e.Kind) + ": " + e.Detail }

// Delivery is one accepted message: what the queue carries, what a sender
// works on, and the store's record of it, in one allocation. Its fields are
// laid out to fit the 80-byte size class; TestDeliveryFitsItsSizeClass
// keeps them there.
//
// Ids are whatever string the caller gives (ids.go's, after REPLICA and a
// dash when that is set): the store only compares and returns them.
type Delivery struct {
	// text is the id, destination, body, idempotency key and client end to
	// end, set once; the lengths below cut it.
	text string

	// Guarded by the store's mu.
	created, updated int64 // unix nanoseconds
	lastErr          *AttemptError
	prev, next       *Delivery // creation order: the store's list
	nextFinished     *Delivery // finish order, oldest first: eviction's queue

	destLen uint32
	// keptIn is owned by the delivery's holder: the circuit's open period
	// (truncated) in which breaker_open was last logged for it.
	keptIn uint32
	// Attempts is owned by the delivery's holder: calls made so far.
	Attempts uint16
	// storedAttempts is the attempt count GET shows, guarded by mu.
	storedAttempts uint16
	idLen, keyLen  uint8
	clientLen      uint8 // 0, or clientID's 16
	status         uint8 // index in statuses, guarded by mu
}

// newClientDelivery builds client's delivery, its strings sharing one
// allocation. Ids, idempotency keys and client ids longer than 255 bytes
// do not fit and panic: courier's ids are at most 59 bytes, client ids 16,
// and the API refuses longer keys.
func newClientDelivery(client, id, destination, body, key string) *Delivery {
	if len(id) > 255 || len(key) > 255 || len(client) > 255 {
		panic("delivery id, key or client longer than 255 bytes")
	}
	var b strings.Builder
	b.Grow(len(id) + len(destination) + len(body) + len(key) + len(client))
	b.WriteString(id)
	b.WriteString(destination)
	b.WriteString(body)
	b.WriteString(key)
	b.WriteString(client)
	return &Delivery{text: b.String(), idLen: uint8(len(id)), destLen: uint32(len(destination)), keyLen: uint8(len(key)),
		clientLen: uint8(len(client))}
}

// ID is the message's id.
func (d *Delivery) ID() string { return d.text[:d.idLen] }

// Destination is where the message goes.
func (d *Delivery) Destination() string { return d.text[d.idLen : uint32(d.idLen)+d.destLen] }

// Body is what the message says.
func (d *Delivery) Body() string {
	return d.text[uint32(d.idLen)+d.destLen : len(d.text)-int(d.clientLen)-int(d.keyLen)]
}

// key is the Idempotency-Key the message was posted with, or empty.
func (d *Delivery) key() string {
	end := len(d.text) - int(d.clientLen)
	return d.text[end-int(d.keyLen) : end]
}

// Client is the client that posted the message (clientID), or "" with
// open access.
func (d *Delivery) Client() string { return d.text[len(d.text)-int(d.clientLen):] }

// message is d as GET shows it. Callers hold the store's mu.
func (d *Delivery) message() Message {
	return Message{ID: d.ID(), Destination: d.Destination(), Body: d.Body(), Status: statuses[d.status],
		Attempts: int(d.storedAttempts), CreatedAt: time.Unix(0, d.created), UpdatedAt: time.Unix(0, d.updated),
		LastError: d.lastErr}
}

// Store holds messages by id, newest last, keeping at most retained
// finished ones, and at most retainedBytes of them (retainedCost each);
// the oldest finished are evicted first.
type Store struct {
	retained      int
	retainedBytes int64
	now           func() time.Time

	// mu guards everything below and the store's fields of every
	// delivery it holds.
	mu             sync.Mutex
	byID           map[string]*Delivery
	byKey          map[clientKey]*Delivery // by client and Idempotency-Key; forgotten with its message
	oldest, newest *Delivery               // the list in creation order
	finishedFirst  *Delivery               // the finished, in the order they finished
	finishedLast   *Delivery
	finished       int
	finishedBytes  int64 // retainedCost of the finished
	counts         Counts

	rejected atomic.Int64
}

// NewStore makes an empty store.
func NewStore(retained int, now func() time.Time) *Store {
	return &Store{
		retained:      retained,
		retainedBytes: math.MaxInt64,
		now:           now,
		byID:          make(map[string]*Delivery),
		byKey:         make(map[clientKey]*Delivery),
	}
}

// CapBytes limits the finished messages kept to n bytes (retainedCost
// each): MESSAGES_RETAINED_BYTES. Call it before the store is used.
func (s *Store) CapBytes(n int64) { s.retainedBytes = n }

// retainedCost is what a finished message is counted as against
// MESSAGES_RETAINED_BYTES: its text as the allocator gives it (a text over
// 32 KiB takes whole 8 KiB pages) and its record.
func retainedCost(d *Delivery) int64 {
	n := int64(len(d.text))
	if n > 32<<10 {
		n = (n + 8<<10 - 1) &^ (8<<10 - 1)
	}
	return n + heapPerRetained
}

// Insert records d, newly accepted, as queued.
func (s *Store) Insert(d *Delivery) {
	now := s.now().UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	d.created, d.updated = now, now
	s.add(d)
}

// add records d as queued, newest, under its id and key. Callers hold mu.
func (s *Store) add(d *Delivery) {
	d.status = statusIndex(StatusQueued)
	d.prev = s.newest
	if s.newest != nil {
		s.newest.next = d
	} else {
		s.oldest = d
	}
	s.newest = d
	s.byID[d.ID()] = d
	if d.keyLen > 0 {
		s.byKey[clientKey{d.Client(), d.key()}] = d
	}
	s.counts.Accepted++
	s.counts.Queued++
}

// KeyUse is what an idempotency key already stands for.
type KeyUse int

// The answers of Store.LookupKey.
const (
	KeyUnused   KeyUse = iota // never seen, or its message was evicted
	KeySame                   // seen with the same destination and body
	KeyConflict               // seen with a different payload
)

// clientKey is an Idempotency-Key in the only scope it has: its client's.
// Two clients may use the same key for different messages.
type clientKey struct{ client, key string }

// HasKey reports whether client's key stands for a retained message.
func (s *Store) HasKey(client, key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.byKey[clientKey{client, key}]
	return ok
}

// LookupKey says whether client already used key, and for which message.
func (s *Store) LookupKey(client, key, destination, body string) (KeyUse, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.byKey[clientKey{client, key}]
	switch {
	case !ok:
		return KeyUnused, ""
	case d.Destination() == destination && d.Body() == body:
		return KeySame, d.ID()
	default:
		return KeyConflict, d.ID()
	}
}

// Reject counts a POST turned away by backpressure or shutdown. It is an
// atomic outside mu: rejections are not part of the balance, and under
// overload they are the hot path.
func (s *Store) Reject() { s.rejected.Add(1) }

// Move changes a message that is not final to status to, with the attempt
// count and last error so far. Moving to a final status may evict the oldest
// finished message.
func (s *Store) Move(id string, to Status, attempts int, lastErr *AttemptError) {
	now := s.now().UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.byID[id]
	if !ok || statuses[d.status].Final() {
		return
	}
	s.count(statuses[d.status], -1)
	s.count(to, +1)
	d.status = statusIndex(to)
	d.storedAttempts = uint16(min(attempts, 1<<16-1))
	d.updated = now
	if lastErr != nil {
		d.lastErr = lastErr
	}
	if to.Final() {
		s.finish(d)
	}
}

// finish appends d to the finished and evicts the oldest of them beyond
// the retained number. Callers hold mu.
func (s *Store) finish(d *Delivery) {
	if s.finishedLast != nil {
		s.finishedLast.nextFinished = d
	} else {
		s.finishedFirst = d
	}
	s.finishedLast = d
	s.finished++
	s.finishedBytes += retainedCost(d)
	for s.finished > s.retained || s.finishedBytes > s.retainedBytes {
		old := s.finishedFirst
		s.finishedFirst = old.nextFinished
		if s.finishedFirst == nil {
			s.finishedLast = nil
		}
		s.finished--
		s.finishedBytes -= retainedCost(old)
		s.unlink(old)
		delete(s.byID, old.ID())
		if old.keyLen > 0 {
			delete(s.byKey, clientKey{old.Client(), old.key()})
		}
	}
}

// unlink takes d out of the creation-order list. Callers hold mu.
func (s *Store) unlink(d *Delivery) {
	if d.prev != nil {
		d.prev.next = d.next
	} else {
		s.oldest = d.next
	}
	if d.next != nil {
		d.next.prev = d.prev
	} else {
		s.newest = d.prev
	}
	d.prev, d.next, d.nextFinished = nil, nil, nil
}

// count adds d to the counter of status st. Callers hold mu.
func (s *Store) count(st Status, d int64) {
	*st.rule().count(&s.counts) += d
}

// Get returns a copy of client's message with id: another client's is
// not found, as if it did not exist.
func (s *Store) Get(client, id string) (Message, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.byID[id]
	if !ok || d.Client() != client {
		return Message{}, false
	}
	return d.message(), true
}

// List returns up to limit of client's messages, newest first, optionally
// only those with status (empty means any).
func (s *Store) List(client string, limit int, status Status) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Message, 0, min(limit, len(s.byID)))
	for d := s.newest; d != nil && len(out) < limit; d = d.prev {
		if (status == "" || statuses[d.status] == status) && d.Client() == client {
			out = append(out, d.message())
		}
	}
	return out
}

// Unfinished returns the messages still queued or sending, oldest first.
func (s *Store) Unfinished() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Message
	for d := s.oldest; d != nil; d = d.next {
		if !statuses[d.status].Final() {
			out = append(out, d.message())
		}
	}
	return out
}

// Pending returns the messages still queued or sending, oldest first,
// whole: what a spool keeps of them.
func (s *Store) Pending() []spoolRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []spoolRecord
	for d := s.oldest; d != nil; d = d.next {
		if !statuses[d.status].Final() {
			out = append(out, spoolRecord{ID: d.ID(), Key: d.key(), Client: d.Client(), Destination: d.Destination(), Body: d.Body(),
				Attempts: int(d.storedAttempts), CreatedAt: time.Unix(0, d.created).UTC()})
		}
	}
	return out
}

// Restore records messages a spool kept, oldest first, as queued again
// under their own ids, keys, attempts and creation times, and returns
// their deliveries for the queue. They count as accepted by this run. An
// id or key the store already holds is an error, and nothing is restored.
func (s *Store) Restore(recs []spoolRecord) ([]*Delivery, error) {
	now := s.now().UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range recs {
		if _, ok := s.byID[r.ID]; ok {
			return nil, fmt.Errorf("message %s is already known", r.ID)
		}
		if _, ok := s.byKey[clientKey{r.Client, r.Key}]; ok && r.Key != "" {
			return nil, fmt.Errorf("idempotency key %q is already known", r.Key)
		}
	}
	ds := make([]*Delivery, len(recs))
	for i, r := range recs {
		d := newClientDelivery(r.Client, r.ID, r.Destination, r.Body, r.Key)
		d.Attempts = uint16(r.Attempts)
		d.storedAttempts = d.Attempts
		d.created, d.updated = r.CreatedAt.UnixNano(), now
		s.add(d)
		ds[i] = d
	}
	return ds, nil
}

// Counts returns a consistent snapshot of the counters.
func (s *Store) Counts() Counts {
	s.mu.Lock()
	c := s.counts
	s.mu.Unlock()
	c.Rejected = s.rejected.Load()
	return c
}
