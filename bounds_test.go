package main

// Memory and connections bounded in bytes and numbers (docs/security.md): each
// test asserts a ceiling, never a time.

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestFinishedMessagesAreEvictedByBytesToo(t *testing.T) {
	s := NewStore(1000, time.Now)
	body := strings.Repeat("b", 40<<10)
	cost := retainedCost(newDelivery("id0", "d", body, ""))
	s.CapBytes(3 * cost)
	for i := range 5 {
		id := "id" + strconv.Itoa(i)
		s.Insert(newDelivery(id, "d", body, ""))
		s.Move(id, StatusSent, 1, nil)
	}
	for i := range 5 {
		_, kept := s.Get("", "id"+strconv.Itoa(i))
		if want := i >= 2; kept != want {
			t.Errorf("message %d kept: got %v, want %v (three fit in the bytes, the oldest go first)", i, kept, want)
		}
	}
	if c := s.Counts(); !c.Balanced() || c.Sent != 5 {
		t.Errorf("counts: got %+v, want 5 sent and balanced (eviction forgets records, not counts)", c)
	}
}

// liveHeapNow is the heap in use after a collection.
func liveHeapNow() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func TestRetainedMessagesOf64KiBStayWithinMESSAGES_RETAINED_BYTES(t *testing.T) {
	const capBytes = 8 << 20
	s := NewStore(10_000, time.Now)
	s.CapBytes(capBytes)
	body := strings.Repeat("b", maxBodyBytes-100)
	ids := NewIDs("")
	before := liveHeapNow()
	for range 1000 { // 72 MiB of messages, were they all kept
		d := newDelivery(ids.New(), "+34600000000", strings.Clone(body), "")
		s.Insert(d)
		s.Move(d.ID(), StatusSent, 1, nil)
	}
	grew := int64(liveHeapNow()) - int64(before)
	runtime.KeepAlive(s)
	if grew > capBytes+capBytes/4 {
		t.Errorf("1000 finished 64 KiB messages hold %d bytes of heap, want at most MESSAGES_RETAINED_BYTES (%d) and a quarter", grew, capBytes)
	}
}

// chunkWriter is a ResponseWriter that keeps nothing of the body but its
// size and its largest write: an answer built whole is written at once.
type chunkWriter struct {
	h              http.Header
	total, largest int
}

func (w *chunkWriter) Header() http.Header { return w.h }
func (w *chunkWriter) WriteHeader(int)     {}
func (w *chunkWriter) Write(p []byte) (int, error) {
	w.total += len(p)
	w.largest = max(w.largest, len(p))
	return len(p), nil
}

// retainThousand64KiB fills svc's store with a thousand sent 64 KiB messages.
func retainThousand64KiB(svc *service) {
	body := strings.Repeat("b", maxBodyBytes-100)
	for range 1000 {
		d := newDelivery(svc.ids.New(), "+34600000000", body, "")
		svc.store.Insert(d)
		svc.store.Move(d.ID(), StatusSent, 1, nil)
	}
}

func TestListingAThousand64KiBMessagesHoldsOneAtATime(t *testing.T) {
	svc := newTestService(t, map[string]string{"MESSAGES_RETAINED_BYTES": "1GiB"})
	retainThousand64KiB(svc)
	req, _ := http.NewRequest(http.MethodGet, "/messages?limit=1000", nil)
	w := &chunkWriter{h: http.Header{}}
	svc.routes().ServeHTTP(w, req)
	// The whole answer is 64 MiB; it must reach the connection a message
	// at a time, never built whole in memory first.
	if w.total < 1000*(maxBodyBytes-100) || w.largest > 1<<20 {
		t.Errorf("GET /messages?limit=1000 of 64 KiB messages: %d bytes, the largest write %d; want all of it, no write over 1 MiB",
			w.total, w.largest)
	}
}

// BenchmarkListThousand64KiBMessages reports what one GET /messages of a
// thousand 64 KiB messages allocates (B/op): about one message's encoding
// at a time, not the 64 MiB answer.
func BenchmarkListThousand64KiBMessages(b *testing.B) {
	svc := newTestService(b, map[string]string{"MESSAGES_RETAINED_BYTES": "1GiB"})
	retainThousand64KiB(svc)
	h := svc.routes()
	req, _ := http.NewRequest(http.MethodGet, "/messages?limit=1000", nil)
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(&chunkWriter{h: http.Header{}}, req)
	}
}

func TestEventStreamsAreCappedAt64(t *testing.T) {
	s := startService(t, baseEnv(newFakeMessageapp(t, modeOK).URL()))
	var open []*http.Response
	defer func() {
		for _, r := range open {
			r.Body.Close()
		}
	}()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for i := range maxStreams {
		resp, err := client.Get(s.url + "/events")
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("stream %d: %v %v", i+1, err, resp)
		}
		open = append(open, resp)
	}
	r := s.as("", http.MethodGet, "/events", "")
	checkProblem(t, r, http.StatusServiceUnavailable, "too_many_streams")
	if r.header.Get("Retry-After") == "" {
		t.Error("no Retry-After on the refused stream")
	}
	open[0].Body.Close()
	open = open[1:]
	eventually(t, 5*time.Second, "a stream's place to be free again", func() bool {
		resp, err := client.Get(s.url + "/events")
		if err != nil {
			return false
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return false
		}
		open = append(open, resp)
		return true
	})
}

func TestAClientHoldingEveryConnectionDoesNotLockOutHealthz(t *testing.T) {
	env := baseEnv(newFakeMessageapp(t, modeOK).URL())
	env["MAX_CONNECTIONS"] = "8"
	s := startService(t, env)
	// /healthz below must come on a new connection, queued behind the 20
	// for courier to accept, not on the one kept alive since startService
	// asked it: that one could answer before courier had accepted all 20,
	// and be displaced after, as the oldest idle, in place of one of them.
	s.client.CloseIdleConnections()
	var held []net.Conn
	for range 20 { // connected, never a request: what a slow or hostile client holds
		c, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	if r := s.as("", http.MethodGet, "/healthz", ""); r.status != http.StatusOK {
		t.Fatalf("GET /healthz: got %d, want 200", r.status)
	}
	// Every connection accepted before /healthz's is settled by now:
	// those displaced read EOF at once, the others nothing until the
	// header timeout (5 s), long after the wait below.
	closed := len(held) - stillOpen(held, 300*time.Millisecond)
	if closed < len(held)-8+1 {
		t.Errorf("%d of %d idle connections were closed, want at least %d (MAX_CONNECTIONS=8, /healthz's included)", closed, len(held), len(held)-8+1)
	}
}

// stillOpen is how many of conns neither send nor close within wait: each
// is read at once, side by side (a read past its deadline would not look
// at the connection at all).
func stillOpen(conns []net.Conn, wait time.Duration) int {
	deadline := time.Now().Add(wait)
	timedOut := make(chan bool, len(conns))
	for _, c := range conns {
		go func() {
			_ = c.SetReadDeadline(deadline)
			var b [1]byte
			_, err := c.Read(b[:])
			timedOut <- errors.Is(err, os.ErrDeadlineExceeded)
		}()
	}
	open := 0
	for range conns {
		if <-timedOut {
			open++
		}
	}
	return open
}

func TestConnLimitDisplacesTheIdleLongestAndNeverABusyOne(t *testing.T) {
	now := time.Unix(0, 0)
	l := newConnLimit(2, func() time.Time { now = now.Add(time.Second); return now })
	pipe := func() net.Conn {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		go func() { _, _ = io.Copy(io.Discard, b) }()
		return a
	}
	isClosed := func(c net.Conn) bool {
		_, err := c.Write([]byte{0})
		return errors.Is(err, io.ErrClosedPipe)
	}
	busy, idle, arrival := pipe(), pipe(), pipe()
	l.track(busy, http.StateNew)
	l.track(idle, http.StateNew)
	l.track(busy, http.StateActive)
	l.track(idle, http.StateIdle)
	l.track(arrival, http.StateNew)
	if isClosed(busy) || !isClosed(idle) || isClosed(arrival) {
		t.Errorf("closed: busy %v, idle %v, arrival %v; want only the idle one", isClosed(busy), isClosed(idle), isClosed(arrival))
	}
	l.track(arrival, http.StateActive)
	late := pipe()
	l.track(late, http.StateNew)
	if !isClosed(late) || isClosed(busy) || isClosed(arrival) {
		t.Errorf("with every other connection busy, the arrival must be the one closed")
	}
	if len(l.conns) != 2 {
		t.Errorf("open: got %d, want 2", len(l.conns))
	}
}
