package main

import (
	"fmt"
	"testing"
	"time"
)

// newDelivery builds a delivery of the anonymous client (open access).
func newDelivery(id, destination, body, key string) *Delivery {
	return newClientDelivery("", id, destination, body, key)
}

// Add records a newly accepted message as queued, under idempotency key if
// one is given, and returns its delivery.
func (s *Store) Add(id, destination, body, key string) *Delivery {
	d := newDelivery(id, destination, body, key)
	s.Insert(d)
	return d
}

func TestStoreFollowsAMessageThroughItsLife(t *testing.T) {
	s := NewStore(10, time.Now)
	s.Add("a", "d", "b", "")
	steps := []struct {
		to   Status
		want Counts
	}{
		{StatusSending, Counts{Accepted: 1, Sending: 1}},
		{StatusQueued, Counts{Accepted: 1, Queued: 1}}, // put back while the circuit is open
		{StatusSending, Counts{Accepted: 1, Sending: 1}},
		{StatusSent, Counts{Accepted: 1, Sent: 1}},
		{StatusFailed, Counts{Accepted: 1, Sent: 1}}, // final states are final
	}
	for _, st := range steps {
		s.Move("a", st.to, 1, nil)
		if got := s.Counts(); got != st.want || !got.Balanced() {
			t.Fatalf("after moving to %s: got %+v, want %+v", st.to, got, st.want)
		}
	}
	if m, _ := s.Get("", "a"); m.Status != StatusSent {
		t.Errorf("status: got %s, want sent", m.Status)
	}
}

func TestStoreKeepsOnlyTheRetainedFinishedMessages(t *testing.T) {
	s := NewStore(2, time.Now)
	for i := range 5 {
		s.Add(fmt.Sprint(i), "d", "b", "")
	}
	for _, id := range []string{"3", "0", "4"} {
		s.Move(id, StatusSent, 1, nil)
	}
	// Finished in the order 3, 0, 4 with room for two: 3 goes first.
	if _, ok := s.Get("", "3"); ok {
		t.Error("oldest finished message 3 was kept")
	}
	for _, id := range []string{"0", "1", "2", "4"} {
		if _, ok := s.Get("", id); !ok {
			t.Errorf("message %s evicted, want kept (unfinished or among the newest finished)", id)
		}
	}
	var got []string
	for _, m := range s.List("", 100, "") {
		got = append(got, m.ID)
	}
	if fmt.Sprint(got) != "[4 2 1 0]" {
		t.Errorf("list: got %v, want [4 2 1 0]", got)
	}
	if c := s.Counts(); c.Sent != 3 || !c.Balanced() {
		t.Errorf("counters count evicted messages too: got %+v", c)
	}
	if u := s.Unfinished(); len(u) != 2 || u[0].ID != "1" || u[1].ID != "2" {
		t.Errorf("unfinished: got %v, want 1 and 2", u)
	}
}

func TestStoreWithNothingRetained(t *testing.T) {
	s := NewStore(0, time.Now)
	s.Add("a", "d", "b", "")
	s.Move("a", StatusTimeout, 1, &AttemptError{Kind: OutcomeTimeout, Detail: "slow"})
	if _, ok := s.Get("", "a"); ok {
		t.Error("MESSAGES_RETAINED=0 kept a finished message")
	}
	if c := s.Counts(); c.Timeout != 1 || !c.Balanced() {
		t.Errorf("counts: got %+v", c)
	}
}
