package main

// status.go names where a message can be in its life (docs/behaviour.md) and, next
// to each status, everything that follows from it: whether it is final,
// whether messageapp's delivery is known, its counter and its words. The
// store, /status, the metrics, the dashboard, the demo and the shutdown
// log all read this one table; adding a status is a row here, a const and
// its field in Counts (TestEveryStatusIsCountedReportedAndDrawn).

import (
	"fmt"
	"strings"
)

// Status is where a message is in its life.
type Status string

// Message statuses; what follows from each is in statusRules.
const (
	StatusQueued  Status = "queued"
	StatusSending Status = "sending"
	StatusSent    Status = "sent"
	StatusFailed  Status = "failed"
	StatusTimeout Status = "timeout"
	// StatusConnectionLost: the connection broke after the request went
	// out, before an answer; like timeout, delivery is unknown.
	StatusConnectionLost Status = "connection_lost"
)

// statusRule is what follows from a status.
type statusRule struct {
	status Status
	final  bool // no further attempt will be made
	// unknown: final, and messageapp may or may not have delivered it;
	// courier must not send it again.
	unknown bool
	// count is its counter in Counts: /status's messages, the metrics
	// (courier_messages_finished_total for a final status,
	// courier_messages_pending otherwise, labelled with the status) and
	// the accounting invariant.
	count func(*Counts) *int64
	text  string // its words on the dashboard
}

// statusRules is every status, in the order reports show them; a record
// keeps its status as its index here.
var statusRules = [...]statusRule{
	{StatusQueued, false, false, func(c *Counts) *int64 { return &c.Queued }, "queued"},
	{StatusSending, false, false, func(c *Counts) *int64 { return &c.Sending }, "sending"},
	{StatusSent, true, false, func(c *Counts) *int64 { return &c.Sent }, "sent"},
	{StatusFailed, true, false, func(c *Counts) *int64 { return &c.Failed }, "failed"},
	{StatusTimeout, true, true, func(c *Counts) *int64 { return &c.Timeout }, "timeout"},
	{StatusConnectionLost, true, true, func(c *Counts) *int64 { return &c.ConnectionLost }, "connection lost"},
}

// statuses lists the statuses, in the order of statusRules.
var statuses = func() (all [len(statusRules)]Status) {
	for i, r := range statusRules {
		all[i] = r.status
	}
	return all
}()

// statusIndex is s's place in statusRules.
func statusIndex(s Status) uint8 {
	for i, r := range statusRules {
		if r.status == s {
			return uint8(i)
		}
	}
	panic("unknown status " + string(s))
}

// rule is what follows from s. A status without a row is a programming
// error, and fails loudly.
func (s Status) rule() statusRule { return statusRules[statusIndex(s)] }

// Final reports whether no further attempt will be made.
func (s Status) Final() bool {
	for _, r := range statusRules {
		if r.status == s {
			return r.final
		}
	}
	return false
}

// validStatus reports whether s names a status, for the ?status= filter.
func validStatus(s Status) bool {
	for _, r := range statusRules {
		if r.status == s {
			return true
		}
	}
	return false
}

// statusNames is the statuses as a list for people: "queued, sending, …".
func statusNames() string {
	names := make([]string, len(statuses))
	for i, s := range statuses {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

// Counts are totals since start; see the store's invariant.
type Counts struct {
	Accepted int64 `json:"accepted"`
	Rejected int64 `json:"rejected"`
	Queued   int64 `json:"queued"`
	Sending  int64 `json:"sending"`
	Sent     int64 `json:"sent"`
	Failed   int64 `json:"failed"`
	Timeout  int64 `json:"timeout"`
	// ConnectionLost counts the messages whose connection broke after
	// the request went out: delivery unknown, like Timeout.
	ConnectionLost int64 `json:"connection_lost"`
}

// Of is the number of messages in status s.
func (c Counts) Of(s Status) int64 { return *s.rule().count(&c) }

// Balanced reports whether every accepted message is accounted for: the
// accounting invariant, accepted == the sum over every status.
func (c Counts) Balanced() bool {
	var sum int64
	for _, s := range statuses {
		sum += c.Of(s)
	}
	return c.Accepted == sum
}

// Balance is the accounting invariant with c's figures, for people:
// "accepted 9 = queued 0 + sending 0 + sent 5 + …".
func (c Counts) Balance() string {
	terms := make([]string, len(statuses))
	for i, s := range statuses {
		terms[i] = fmt.Sprintf("%s %d", s, c.Of(s))
	}
	return fmt.Sprintf("accepted %d = %s", c.Accepted, strings.Join(terms, " + "))
}

// deliveryUnknown is how many messages ended in a status whose delivery
// is unknown.
func (c Counts) deliveryUnknown() int64 {
	var n int64
	for _, r := range statusRules {
		if r.unknown {
			n += c.Of(r.status)
		}
	}
	return n
}

// unknownTerms is c's final statuses whose delivery is unknown, for
// people: "timeout: 3, and connection_lost: 1".
func (c Counts) unknownTerms() string {
	var terms []string
	for _, r := range statusRules {
		if r.unknown {
			terms = append(terms, fmt.Sprintf("%s: %d", r.status, c.Of(r.status)))
		}
	}
	return strings.Join(terms, ", and ")
}
