package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/rs/zerolog"
)

// The bench's message: a phone number and a sentence, 56 bytes of payload.
const (
	sizingDestination = "+34600000000"
	sizingBody        = "a message of a usual size, for the benchmark"
)

// liveHeap is the heap still reachable after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// heapPerMessage puts n messages through a fresh queue and store the way
// the POST handler does and returns the live heap they hold per message:
// queued (a queue of n holds them all; its slots count) or retained
// (finished as a sender would, through a queue of one).
func heapPerMessage(n int, finish bool) float64 {
	before := liveHeap()
	q := NewQueue(n, 0, zerolog.Nop(), observers(nil), time.Now)
	s := NewStore(0, time.Now)
	if finish {
		q = NewQueue(1, 0, zerolog.Nop(), observers(nil), time.Now)
		s = NewStore(n, time.Now)
	}
	ids := NewIDs("")
	for range n {
		d := newDelivery(ids.New(), sizingDestination, sizingBody, "")
		if !q.Offer(d, func() bool { s.Insert(d); return true }) {
			panic("queue refused a message")
		}
		if finish {
			d, _ := q.Take(context.Background(), nil, nil)
			s.Move(d.ID(), StatusSending, 0, nil)
			d.Attempts++
			s.Move(d.ID(), StatusSent, int(d.Attempts), nil)
		}
	}
	after := liveHeap()
	runtime.KeepAlive(q)
	runtime.KeepAlive(s)
	return float64(after-before) / float64(n)
}

func TestAMessageCostsAtMost250BytesOfHeapQueuedOrRetained(t *testing.T) {
	for _, tt := range []struct {
		name   string
		finish bool
	}{{"queued", false}, {"retained finished", true}} {
		t.Run(tt.name, func(t *testing.T) {
			for _, n := range []int{10_000, 100_000} {
				if got := heapPerMessage(n, tt.finish); got > 250 {
					t.Errorf("%d messages: got %.0f bytes of live heap per message, want at most 250", n, got)
				} else {
					t.Logf("%d messages: %.0f bytes per message", n, got)
				}
			}
		})
	}
}

func TestDeliveryFitsItsSizeClass(t *testing.T) {
	if got := unsafe.Sizeof(Delivery{}); got != 80 {
		t.Errorf("Delivery is %d bytes, want 80 (a size class; a field more costs 16 bytes a message)", got)
	}
}

func TestMemoryLimitsComeFromTheCgroupElseMemTotal(t *testing.T) {
	meminfo := []byte("MemTotal:        2048 kB\nMemFree:  1024 kB\n")
	tests := []struct {
		name       string
		files      map[string][]byte
		want       int64
		wantSource string
	}{
		{"a cgroup limit", map[string][]byte{"/sys/fs/cgroup/memory.max": []byte("1048576\n"), "/proc/meminfo": meminfo}, 1 << 20, "cgroup memory.max"},
		{"a cgroup without a limit", map[string][]byte{"/sys/fs/cgroup/memory.max": []byte("max\n"), "/proc/meminfo": meminfo}, 2 << 20, "MemTotal"},
		{"no cgroup", map[string][]byte{"/proc/meminfo": meminfo}, 2 << 20, "MemTotal"},
		{"nothing to read", nil, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := readMemoryLimits(func(name string) ([]byte, error) {
				if b, ok := tt.files[name]; ok {
					return b, nil
				}
				return nil, fs.ErrNotExist
			})
			if got.machine != tt.want || got.machineSource != tt.wantSource {
				t.Errorf("got %d from %q, want %d from %q", got.machine, got.machineSource, tt.want, tt.wantSource)
			}
		})
	}
}

func TestStartUpWarnsWhenTheWorstCaseExceedsTheMemoryLimit(t *testing.T) {
	cfg := config{QueueMaxSize: 1000, MessagesRetained: 10_000, RetainedBytes: 1 << 40, MaxConnections: 1024}
	typical, worst := memoryBudget(cfg, typicalPayload), memoryBudget(cfg, worstPayload)
	tests := []struct {
		name     string
		lim      memoryLimits
		wantWarn bool
		wantText string
		wantFrom string
	}{
		{"no limit known", memoryLimits{goMemLimit: math.MaxInt64}, false, "", ""},
		{"the machine holds the worst case", memoryLimits{goMemLimit: math.MaxInt64, machine: worst + 1, machineSource: "MemTotal"}, false, "", ""},
		{"the machine does not", memoryLimits{goMemLimit: math.MaxInt64, machine: worst - 1, machineSource: "MemTotal"},
			true, "64 KiB messages, with every connection open, would need more than the machine's memory (MemTotal)", "the machine's memory (MemTotal)"},
		{"GOMEMLIMIT is lower than the machine", memoryLimits{goMemLimit: worst - 1, machine: 2 * worst, machineSource: "cgroup memory.max"},
			true, "more than GOMEMLIMIT", "GOMEMLIMIT"},
		{"even typical messages do not fit", memoryLimits{goMemLimit: typical - 1, machine: 2 * worst, machineSource: "MemTotal"},
			true, "even 56-byte messages", "GOMEMLIMIT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			logMemoryBudget(zerolog.New(&buf), cfg, tt.lim)
			lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
			var budget map[string]any
			if err := json.Unmarshal([]byte(lines[0]), &budget); err != nil || budget["event"] != "memory_budget" ||
				budget["worst_case_bytes"] != float64(worst) || budget["typical_bytes"] != float64(typical) {
				t.Fatalf("first line: got %s, want memory_budget with worst %d and typical %d", lines[0], worst, typical)
			}
			if gotWarn := len(lines) == 2; gotWarn != tt.wantWarn {
				t.Fatalf("warned: got %v, want %v (%v)", gotWarn, tt.wantWarn, lines)
			}
			if !tt.wantWarn {
				return
			}
			var warn map[string]any
			_ = json.Unmarshal([]byte(lines[1]), &warn)
			if warn["event"] != "memory_at_risk" || warn["level"] != "warn" || warn["limit"] != tt.wantFrom ||
				!strings.Contains(warn["message"].(string), tt.wantText) {
				t.Errorf("warning: got %v, want memory_at_risk against %q saying %q", warn, tt.wantFrom, tt.wantText)
			}
		})
	}
}

func TestAFullQueueOf64KiBMessagesIsTheWorstCase(t *testing.T) {
	// The largest body a POST may carry, with its id and a 255-byte key,
	// is what worstPayload must cover, in the allocation the runtime makes
	// (TotalAlloc counts whole pages for a large object, and never shrinks).
	id, destination, body, key := strings.Repeat("i", 20), "d", strings.Repeat("b", maxBodyBytes-1), strings.Repeat("k", 255)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	d := newDelivery(id, destination, body, key)
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(d)
	text := len(id) + len(destination) + len(body) + len(key)
	if got := after.TotalAlloc - before.TotalAlloc; got > worstPayload+uint64(unsafe.Sizeof(Delivery{})) {
		t.Errorf("a message of %d bytes allocates %d bytes, more than worstPayload %d and its record allow", text, got, worstPayload)
	}
}
