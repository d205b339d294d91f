package main

// connections.go caps the HTTP connections courier keeps open
// (MAX_CONNECTIONS, docs/security.md), through the servers' ConnState hook.

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// connLimit keeps at most max connections open across the listeners it
// watches. A connection that arrives at the cap displaces the one idle
// longest: between requests on keep-alive, or open with no request yet
// (the header read timeout would end those within seconds anyway). So a
// client that holds every connection it can does not keep anyone else
// out, /healthz included. Only when every open connection is busy with a
// request is the arrival itself closed. Courier cannot refuse a TCP
// connection before it is accepted; closing at once keeps it from holding
// a goroutine and buffers.
type connLimit struct {
	max int // zero (a config built by hand): no cap
	now func() time.Time

	mu    sync.Mutex // guards conns
	conns map[net.Conn]connState
}

// connState is what connLimit knows of an open connection.
type connState struct {
	busy  bool      // serving a request
	since time.Time // when it last became idle
}

func newConnLimit(max int, now func() time.Time) *connLimit {
	return &connLimit{max: max, now: now, conns: make(map[net.Conn]connState)}
}

// track is an http.Server's ConnState.
func (l *connLimit) track(c net.Conn, state http.ConnState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch state {
	case http.StateNew:
		l.conns[c] = connState{since: l.now()}
		if l.max > 0 && len(l.conns) > l.max {
			victim := l.idleLongest() // c itself when every other one is busy
			delete(l.conns, victim)
			_ = victim.Close()
		}
	case http.StateActive, http.StateIdle:
		if _, open := l.conns[c]; open { // not one displaced a moment ago
			l.conns[c] = connState{busy: state == http.StateActive, since: l.now()}
		}
	case http.StateHijacked, http.StateClosed:
		delete(l.conns, c)
	}
}

// idleLongest is the open connection idle for the longest time, or nil
// when all are busy. Callers hold mu. It looks at every connection, which
// happens only at the cap.
func (l *connLimit) idleLongest() net.Conn {
	var oldest net.Conn
	var since time.Time
	for c, s := range l.conns {
		if !s.busy && (oldest == nil || s.since.Before(since)) {
			oldest, since = c, s.since
		}
	}
	return oldest
}
