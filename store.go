package main

// store.go keeps what courier knows about each message and the counters
// /status reports. Every change to a message and its counter happens under
// one lock, so accepted == queued + sending + sent + failed + timeout holds
// in every snapshot.

import (
	"container/list"
	"sync"
	"sync/atomic"
	"time"
)

// Status is where a message is in its life.
type Status string

// Message statuses; sent, failed and timeout are final.
const (
	StatusQueued  Status = "queued"
	StatusSending Status = "sending"
	StatusSent    Status = "sent"
	StatusFailed  Status = "failed"
	StatusTimeout Status = "timeout"
)

// Final reports whether no further attempt will be made.
func (s Status) Final() bool {
	return s == StatusSent || s == StatusFailed || s == StatusTimeout
}

// validStatus reports whether s names a status, for the ?status= filter.
func validStatus(s Status) bool {
	return s == StatusQueued || s == StatusSending || s.Final()
}

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
}

func (e *AttemptError) Error() string { return string(e.Kind) + ": " + e.Detail }

// Counts are totals since start; see the store's invariant.
type Counts struct {
	Accepted int64 `json:"accepted"`
	Rejected int64 `json:"rejected"`
	Queued   int64 `json:"queued"`
	Sending  int64 `json:"sending"`
	Sent     int64 `json:"sent"`
	Failed   int64 `json:"failed"`
	Timeout  int64 `json:"timeout"`
}

// Balanced reports whether every accepted message is accounted for.
func (c Counts) Balanced() bool {
	return c.Accepted == c.Queued+c.Sending+c.Sent+c.Failed+c.Timeout
}

// Store holds messages by id, newest last, keeping at most retained
// finished ones (the oldest finished are evicted first).
type Store struct {
	retained int
	now      func() time.Time

	// mu guards everything below.
	mu       sync.Mutex
	byID     map[string]*storeEntry
	byKey    map[string]*storeEntry // by Idempotency-Key; forgotten with its message
	created  *list.List             // of *storeEntry, in creation order
	finished *list.List             // of *storeEntry, in the order they finished
	counts   Counts

	rejected atomic.Int64
}

type storeEntry struct {
	msg      Message
	key      string // Idempotency-Key, if the POST had one
	created  *list.Element
	finished *list.Element
}

// NewStore makes an empty store.
func NewStore(retained int, now func() time.Time) *Store {
	return &Store{
		retained: retained,
		now:      now,
		byID:     make(map[string]*storeEntry),
		byKey:    make(map[string]*storeEntry),
		created:  list.New(),
		finished: list.New(),
	}
}

// Add records a newly accepted message as queued, under idempotency key if
// one is given.
func (s *Store) Add(id, destination, body, key string) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	e := &storeEntry{key: key, msg: Message{ID: id, Destination: destination, Body: body,
		Status: StatusQueued, CreatedAt: now, UpdatedAt: now}}
	e.created = s.created.PushBack(e)
	s.byID[id] = e
	if key != "" {
		s.byKey[key] = e
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

// HasKey reports whether key stands for a retained message.
func (s *Store) HasKey(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.byKey[key]
	return ok
}

// LookupKey says whether key was already used, and for which message.
func (s *Store) LookupKey(key, destination, body string) (KeyUse, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.byKey[key]
	switch {
	case !ok:
		return KeyUnused, ""
	case e.msg.Destination == destination && e.msg.Body == body:
		return KeySame, e.msg.ID
	default:
		return KeyConflict, e.msg.ID
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
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.byID[id]
	if !ok || e.msg.Status.Final() {
		return
	}
	s.count(e.msg.Status, -1)
	s.count(to, +1)
	e.msg.Status = to
	e.msg.Attempts = attempts
	e.msg.UpdatedAt = now
	if lastErr != nil {
		e.msg.LastError = lastErr
	}
	if to.Final() {
		e.finished = s.finished.PushBack(e)
		for s.finished.Len() > s.retained {
			old := s.finished.Remove(s.finished.Front()).(*storeEntry)
			s.created.Remove(old.created)
			delete(s.byID, old.msg.ID)
			if old.key != "" {
				delete(s.byKey, old.key)
			}
		}
	}
}

func (s *Store) count(st Status, d int64) {
	switch st {
	case StatusQueued:
		s.counts.Queued += d
	case StatusSending:
		s.counts.Sending += d
	case StatusSent:
		s.counts.Sent += d
	case StatusFailed:
		s.counts.Failed += d
	case StatusTimeout:
		s.counts.Timeout += d
	}
}

// Get returns a copy of the message with id.
func (s *Store) Get(id string) (Message, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.byID[id]
	if !ok {
		return Message{}, false
	}
	return e.msg, true
}

// List returns up to limit messages, newest first, optionally only those
// with status (empty means any).
func (s *Store) List(limit int, status Status) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Message, 0, min(limit, s.created.Len()))
	for el := s.created.Back(); el != nil && len(out) < limit; el = el.Prev() {
		m := el.Value.(*storeEntry).msg
		if status == "" || m.Status == status {
			out = append(out, m)
		}
	}
	return out
}

// Unfinished returns the messages still queued or sending, oldest first.
func (s *Store) Unfinished() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Message
	for el := s.created.Front(); el != nil; el = el.Next() {
		if m := el.Value.(*storeEntry).msg; !m.Status.Final() {
			out = append(out, m)
		}
	}
	return out
}

// Counts returns a consistent snapshot of the counters.
func (s *Store) Counts() Counts {
	s.mu.Lock()
	c := s.counts
	s.mu.Unlock()
	c.Rejected = s.rejected.Load()
	return c
}
