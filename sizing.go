package main

// sizing.go works out how much memory courier's configuration lets its
// messages take, logs it at start-up, and warns when that is more than
// GOMEMLIMIT or the machine (its cgroup, where one limits it) allows.

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/rs/zerolog"
)

// What one message costs in live heap beyond its payload (destination,
// body and idempotency key): the record, the 26-byte id, the allocator's
// rounding, a slot in the index by id and, for a queued one, its queue
// slot. With 56-byte payloads, `go run ./bench -only memory` measured 210
// to 236 bytes in all per queued message and 194 to 240 per retained one
// (bench/memory-2026-12-05.txt), the spread being mostly where the index
// is in its growth; these allow for the upper ends. README's sizing
// section shows the runs.
const (
	heapPerQueued   = 180
	heapPerRetained = 185
)

// Payload sizes for the estimates: the bench's message, and the largest a
// POST can carry. A payload over 32 KiB is allocated in whole 8 KiB
// pages, so a 64 KiB body with its id and key takes nine.
const (
	typicalPayload = 56
	worstPayload   = 9 * 8 << 10
)

// memoryLimits are the ceilings courier's memory runs into.
type memoryLimits struct {
	goMemLimit    int64  // GOMEMLIMIT; math.MaxInt64 when unset
	machine       int64  // the cgroup's memory.max, or MemTotal; 0 when unknown
	machineSource string // where machine came from
}

// readMemoryLimits reads GOMEMLIMIT from the runtime, and the machine's
// memory from cgroup v2's memory.max when it sets one, else from
// /proc/meminfo. readFile is os.ReadFile but for tests.
func readMemoryLimits(readFile func(string) ([]byte, error)) memoryLimits {
	lim := memoryLimits{goMemLimit: debug.SetMemoryLimit(-1)}
	if b, err := readFile("/sys/fs/cgroup/memory.max"); err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && n > 0 {
			lim.machine, lim.machineSource = n, "cgroup memory.max"
			return lim
		}
	}
	if b, err := readFile("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
				if f := strings.Fields(rest); len(f) == 2 && f[1] == "kB" {
					if kb, err := strconv.ParseInt(f[0], 10, 64); err == nil {
						lim.machine, lim.machineSource = kb<<10, "MemTotal"
					}
				}
			}
		}
	}
	return lim
}

// What a client connection and an /events stream may hold. An idle
// connection: its read and write buffers (4 KiB each), its goroutine's
// stack and the connection itself. A busy one, at worst: reading the
// largest POST (64 KiB body, the decoded strings as much again, headers
// up to 32 KiB), or writing one listed message. A stream: its buffer of
// 64 events and the five minutes of history it starts with, encoded.
const (
	heapPerIdleConnection = 20 << 10
	heapPerBusyConnection = 192 << 10
	heapPerStream         = 384 << 10
)

// messageMemory is the live heap held by a full queue and a full
// retention (MESSAGES_RETAINED messages, at most MESSAGES_RETAINED_BYTES),
// each message carrying payload bytes.
func messageMemory(cfg config, payload int64) int64 {
	retained := min(int64(cfg.MessagesRetained)*(heapPerRetained+payload), int64(cfg.RetainedBytes))
	return int64(cfg.QueueMaxSize)*(heapPerQueued+payload) + retained
}

// connectionMemory is the live heap held by MAX_CONNECTIONS connections,
// idle or each busy with the largest request, and the most /events
// streams.
func connectionMemory(cfg config, busy bool) int64 {
	perConn := int64(heapPerIdleConnection)
	if busy {
		perConn = heapPerBusyConnection
	}
	return int64(cfg.MaxConnections)*perConn + maxStreams*heapPerStream
}

// memoryBudget is what the configuration lets courier's heap hold beyond
// its fixed start-up cost: messages of payload bytes, and connections
// (busy at the 64 KiB worst case, idle otherwise).
func memoryBudget(cfg config, payload int64) int64 {
	return messageMemory(cfg, payload) + connectionMemory(cfg, payload == worstPayload)
}

// logMemoryBudget says what the configuration lets messages cost, and
// warns when the worst case is more than GOMEMLIMIT or the machine allows.
func logMemoryBudget(log zerolog.Logger, cfg config, lim memoryLimits) {
	typical, worst := memoryBudget(cfg, typicalPayload), memoryBudget(cfg, worstPayload)
	ev := log.Info().Str("event", "memory_budget").Int("queue_max_size", cfg.QueueMaxSize).
		Int("messages_retained", cfg.MessagesRetained).Int64("messages_retained_bytes", int64(cfg.RetainedBytes)).
		Int("max_connections", cfg.MaxConnections).Int64("typical_bytes", typical).Int64("worst_case_bytes", worst)
	if lim.goMemLimit != math.MaxInt64 {
		ev = ev.Int64("gomemlimit_bytes", lim.goMemLimit)
	}
	if lim.machine > 0 {
		ev = ev.Int64("machine_bytes", lim.machine).Str("machine_source", lim.machineSource)
	}
	ev.Msg(fmt.Sprintf("messages and connections may hold %s of heap with %d-byte payloads, %s at the 64 KiB limit (a full queue, a full retention, every connection and event stream open)",
		byteSize(typical), typicalPayload, byteSize(worst)))

	limit, name := lim.machine, "the machine's memory ("+lim.machineSource+")"
	if lim.goMemLimit < limit || limit <= 0 {
		limit, name = lim.goMemLimit, "GOMEMLIMIT"
	}
	if limit <= 0 || limit == math.MaxInt64 || worst <= limit {
		return
	}
	what := "64 KiB messages"
	if typical > limit {
		what = "even " + strconv.Itoa(typicalPayload) + "-byte messages"
	}
	log.Warn().Str("event", "memory_at_risk").Int64("worst_case_bytes", worst).Int64("typical_bytes", typical).
		Int64("limit_bytes", limit).Str("limit", name).
		Msg(fmt.Sprintf("a full queue and retention of %s, with every connection open, would need more than %s (%s): lower QUEUE_MAX_SIZE, MESSAGES_RETAINED_BYTES or MAX_CONNECTIONS, or give courier more memory",
			what, name, byteSize(limit)))
}

// byteSize writes n in the largest binary unit that keeps it at least one.
func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
