package main

// conn.go watches the connections sender.go's client keeps to messageapp,
// to learn how long messageapp lets one stay idle: a request written as
// messageapp closes its connection is lost in a way no client can tell
// from a delivery, so courier stops reusing a connection well before
// messageapp would close it.

import (
	"context"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// idleLimit is what courier has learned of messageapp's keep-alive: the
// shortest idle time after which messageapp closed a connection, among the
// closes of the last idleMemory. The shortest, because a close is noticed
// late, never early, when the machine is busy; of the last minute, so that
// a messageapp restart, which closes connections however briefly they had
// been idle, is forgotten soon (meanwhile courier only reuses connections
// less, it does not fail). A short keep-alive keeps teaching it: whenever
// traffic pauses longer than it, messageapp closes the idle connections.
type idleLimit struct {
	now func() time.Time

	// The shortest idle time remembered (nanoseconds; zero when none) and
	// when its sample is forgotten (unix nanoseconds): read on every
	// reused connection, without the lock.
	closedAfter, until atomic.Int64

	mu      sync.Mutex   // guards samples and orders the updates of the two above
	samples []idleSample // the closes of the last idleMemory, oldest first
}

// idleSample is one idle close: after how long, and when (unix nanoseconds).
type idleSample struct{ idle, at int64 }

// idleMemory is how long idleLimit remembers an idle close.
const idleMemory = time.Minute

// closed records that messageapp closed a connection idle for idle.
func (l *idleLimit) closed(idle time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.samples = append(l.samples, idleSample{idle: int64(idle), at: l.now().UnixNano()})
	l.recount()
}

// recount forgets the samples older than idleMemory and publishes the
// shortest of the rest. Callers hold mu.
func (l *idleLimit) recount() {
	now := l.now()
	old := now.Add(-idleMemory).UnixNano()
	l.samples = slices.DeleteFunc(l.samples, func(s idleSample) bool { return s.at <= old })
	shortest := idleSample{}
	for _, s := range l.samples {
		if shortest.idle == 0 || s.idle <= shortest.idle {
			shortest = s
		}
	}
	l.closedAfter.Store(shortest.idle)
	l.until.Store(time.Unix(0, shortest.at).Add(idleMemory).UnixNano())
}

// stale reports whether a connection idle for idle should not carry
// another request: it has been idle for half of what messageapp allowed,
// or more (the other half is the margin for the time the request takes to
// get there and for messageapp's own timer).
func (l *idleLimit) stale(idle time.Duration) bool {
	closedAfter := time.Duration(l.closedAfter.Load())
	if closedAfter == 0 {
		return false
	}
	if l.now().UnixNano() > l.until.Load() {
		l.mu.Lock()
		l.recount()
		closedAfter = time.Duration(l.closedAfter.Load())
		l.mu.Unlock()
	}
	return closedAfter > 0 && idle >= closedAfter/2
}

// dial wraps dial so that every connection it makes reports to l.
func (l *idleLimit) dial(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &watchedConn{Conn: conn, limit: l}, nil
	}
}

// watchedConn is a connection to messageapp that tells its idleLimit when
// messageapp closes it while it is idle: the transport always has a read
// waiting on an idle connection, which ends when messageapp closes it.
type watchedConn struct {
	net.Conn
	limit               *idleLimit
	lastRead, lastWrite atomic.Int64 // unix nanoseconds of the last read that returned data, of the last write
	closedHere          atomic.Bool  // courier closed it: what its reads say then is not messageapp's doing

	// What went out on it: bytes the socket took, and writes that failed.
	// The transport's trace says a request was written once it is in the
	// transport's buffer; only these say it left.
	written, failedWrites atomic.Int64
}

func (c *watchedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	now := time.Now().UnixNano()
	if n > 0 {
		c.lastRead.Store(now)
	}
	if err != nil && n == 0 && !c.closedHere.Load() {
		// The last thing on it was an answer: it was idle, and messageapp
		// closed it.
		if read := c.lastRead.Load(); read > 0 && read >= c.lastWrite.Load() {
			c.limit.closed(time.Duration(now - read))
		}
	}
	return n, err
}

func (c *watchedConn) Write(p []byte) (int, error) {
	c.lastWrite.Store(time.Now().UnixNano())
	n, err := c.Conn.Write(p)
	c.written.Add(int64(n))
	if err != nil {
		c.failedWrites.Add(1)
	}
	return n, err
}

// sent is what has gone out on c so far, to compare with later.
func (c *watchedConn) sent() sentMark {
	return sentMark{written: c.written.Load(), failed: c.failedWrites.Load()}
}

// sentMark is a count of what went out on a connection at one moment.
type sentMark struct{ written, failed int64 }

// wroteSince reports whether bytes went out on c since mark, and every
// write since then succeeded: a request buffered in between is then out
// whole.
func (c *watchedConn) wroteSince(mark sentMark) bool {
	now := c.sent()
	return now.written > mark.written && now.failed == mark.failed
}

// watched is the watchedConn under conn (which may be TLS over it), or nil.
func watched(conn net.Conn) *watchedConn {
	for {
		switch c := conn.(type) {
		case *watchedConn:
			return c
		case interface{ NetConn() net.Conn }:
			conn = c.NetConn()
		default:
			return nil
		}
	}
}

func (c *watchedConn) Close() error {
	c.closedHere.Store(true)
	return c.Conn.Close()
}

// NetConn is the connection under c, for a look at its socket.
func (c *watchedConn) NetConn() net.Conn { return c.Conn }
