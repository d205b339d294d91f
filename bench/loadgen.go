package main

// loadgen.go is the load generator every scenario uses, closed-loop, and
// its latency percentiles.

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// loadResult is what one load run saw.
type loadResult struct {
	requests int
	byStatus map[int]int
	errors   int
	elapsed  time.Duration
	lat      []time.Duration
}

func (r loadResult) rps() float64 { return float64(r.requests) / r.elapsed.Seconds() }

func (r loadResult) pct(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	return r.lat[int(float64(len(r.lat)-1)*p/100)]
}

var body = []byte(`{"destination":"+34600000000","body":"a message of a usual size, for the benchmark"}`)

// load runs c closed-loop clients against url for d.
func load(url string, c int, d time.Duration) loadResult {
	tr := &http.Transport{MaxIdleConnsPerHost: c, MaxIdleConns: c, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var mu sync.Mutex
	res := loadResult{byStatus: map[int]int{}}
	var wg sync.WaitGroup
	start := time.Now()
	for range c {
		wg.Go(func() {
			lat := make([]time.Duration, 0, 4096)
			codes := map[int]int{}
			errs := 0
			for ctx.Err() == nil {
				t0 := time.Now()
				status, err := postMessage(ctx, client, url)
				if err != nil {
					if ctx.Err() == nil {
						errs++
					}
					continue
				}
				lat = append(lat, time.Since(t0))
				codes[status]++
			}
			mu.Lock()
			res.lat = append(res.lat, lat...)
			for k, v := range codes {
				res.byStatus[k] += v
				res.requests += v
			}
			res.errors += errs
			mu.Unlock()
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	slices.Sort(res.lat)
	return res
}

// loadN posts until n messages were accepted (a few more, at most one per
// client), then closes its connections.
func loadN(url string, c int, n int64) {
	tr := &http.Transport{MaxIdleConnsPerHost: c, MaxIdleConns: c, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var accepted atomic.Int64
	var wg sync.WaitGroup
	for range c {
		wg.Go(func() {
			for accepted.Load() < n {
				status, err := postMessage(context.Background(), client, url)
				if err != nil {
					return
				}
				if status == http.StatusAccepted {
					accepted.Add(1)
				} else if status == http.StatusServiceUnavailable {
					time.Sleep(10 * time.Millisecond) // the queue is full: give it a moment, as a client would
				}
			}
		})
	}
	wg.Wait()
}

// postMessage POSTs the bench's message to courier (or a baseline) at url
// and drains the answer, so the connection is reused. It returns the
// answer's status, or the error of a request that got none.
func postMessage(ctx context.Context, client *http.Client, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/messages", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Body.Close()
}
