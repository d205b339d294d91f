package main

// memory.go: RSS and goroutines under a flood with messageapp hanging, and
// the live heap each queued and retained message costs.

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

func benchMemory(rep *report, dir, courierBin string, d time.Duration) error {
	rep.printf("== memory under flood: messageapp hangs, %d clients for %s\n", clients, d)
	app, err := startApp("hang")
	if err != nil {
		return err
	}
	defer app.close()
	c, err := start(dir, "courier-flood", courierBin, nil, []string{"MESSAGEAPP_URL=" + app.url})
	if err != nil {
		return err
	}
	defer c.stop()
	idle := c.idleGoroutines()

	var peak, at20, atEnd int64
	done := make(chan loadResult)
	go func() { done <- load(c.url, clients, d) }()
	start := time.Now()
	tick := time.NewTicker(time.Second)
	var r loadResult
sample:
	for {
		select {
		case r = <-done:
			break sample
		case <-tick.C:
			rss := c.rss()
			peak = max(peak, rss)
			if el := time.Since(start); el >= d/3 && at20 == 0 {
				at20 = rss
			}
			atEnd = rss
		}
	}
	tick.Stop()
	afterFlood := time.Now()
	back := -1.0
	for time.Since(afterFlood) < 2*time.Second {
		if g := c.metric("go_goroutines"); g >= 0 && g <= idle {
			back = time.Since(afterFlood).Seconds()
			break
		}
		time.Sleep(100 * time.Millisecond) // polling another process
	}
	growth := 100 * float64(atEnd-at20) / float64(max(at20, 1))
	rep.printf("  %d requests (%v), RSS peak %.1f MiB, at %s %.1f MiB, at the end %.1f MiB (%+.1f%%)\n",
		r.requests, r.byStatus, mib(peak), d/3, mib(at20), mib(atEnd), growth)
	rep.printf("  goroutines idle %.0f; back to idle after the flood in %.1fs\n", idle, back)
	rep.target(peak <= 32<<20, "memory: peak RSS %.1f MiB (want ≤ 32 MiB)", mib(peak))
	rep.target(growth <= 5, "memory: RSS growth %.1f%% from %s to the end (want ≤ 5%%)", growth, d/3)
	rep.target(back >= 0, "memory: goroutines back to their idle %.0f within 2s (took %.1fs)", idle, back)
	return nil
}

// benchPerMessage measures what each message courier holds costs, queued
// and retained, at growing counts in one process each: the live heap
// (go_gc_heap_live_bytes after collections forced by reads) above the
// warmed-up process's, per message, and the RSS.
func benchPerMessage(rep *report, dir, courierBin string, sizes []int) error {
	var payload message
	_ = json.Unmarshal(body, &payload)
	largest := sizes[len(sizes)-1]
	rep.printf("== memory per message: %d-byte payloads, live heap after a forced GC, at %v messages\n",
		len(payload.Destination)+len(payload.Body), sizes)
	sink, err := startApp("ok")
	if err != nil {
		return err
	}
	defer sink.close()
	closed, err := freePort() // nothing listens there: messageapp unreachable
	if err != nil {
		return err
	}
	kinds := []struct {
		name, what string
		env        []string
	}{
		{"queued", "messageapp unreachable, circuit held open, MESSAGES_RETAINED=0", []string{
			fmt.Sprintf("MESSAGEAPP_URL=http://127.0.0.1:%d/message", closed), "MESSAGES_RETAINED=0",
			"QUEUE_MAX_SIZE=" + strconv.Itoa(largest), "BREAKER_BACKOFF_INITIAL=10m", "BREAKER_BACKOFF_MAX=10m"}},
		{"retained", "fast messageapp, every message sent and kept", []string{
			"MESSAGEAPP_URL=" + sink.url, "MESSAGES_RETAINED=" + strconv.Itoa(largest), "MESSAGES_RETAINED_BYTES=1024GiB", "QUEUE_MAX_SIZE=100000"}},
	}
	for _, k := range kinds {
		rep.printf("  %s (%s):\n", k.name, k.what)
		c, err := start(dir, "courier-"+k.name, courierBin, nil, k.env)
		if err != nil {
			return err
		}
		// The first thousand messages warm courier up, and, for
		// "retained", through a messageapp slow enough that every sender
		// is busy at once and opens its connection (8 KiB of buffers
		// each): the cost per message is counted from there.
		sink.delay.Store(int64(50 * time.Millisecond))
		warm, err := c.fill(k.name, 1000)
		sink.delay.Store(0)
		if err != nil {
			c.stop()
			return err
		}
		idle, err := c.liveHeap()
		if err != nil {
			c.stop()
			return err
		}
		rep.printf("    %9d  live heap %6.1f MiB, RSS %6.1f MiB (warmed up)\n", warm, mib(int64(idle)), mib(c.rss()))
		for _, n := range sizes {
			held, err := c.fill(k.name, n)
			if err != nil {
				c.stop()
				return err
			}
			live, err := c.liveHeap()
			if err != nil {
				c.stop()
				return err
			}
			per := (live - idle) / float64(held-warm)
			rep.printf("    %9d  live heap %6.1f MiB, RSS %6.1f MiB: %3.0f B of live heap a message\n",
				held, mib(int64(live)), mib(c.rss()), per)
			rep.target(per <= 250, "memory: %s, %d messages: %.0f B of live heap each (want ≤ 250)", k.name, held, per)
		}
		c.stop()
	}
	return nil
}
