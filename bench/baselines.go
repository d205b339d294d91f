package main

// baselines.go holds what courier is measured against: a server that
// forwards each request synchronously, one that decodes and answers 202,
// and the fake messageapp they and courier call.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"
)

// message is the body both baselines and courier take.
type message struct {
	Destination string `json:"destination"`
	Body        string `json:"body"`
}

func decode(w http.ResponseWriter, r *http.Request) (message, bool) {
	var m message
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil || m.Destination == "" || m.Body == "" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return m, false
	}
	return m, true
}

// forwardHandler does synchronously what courier does asynchronously:
// decode, POST to messageapp with a 1 s deadline, answer.
func forwardHandler(target string) http.Handler {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024, MaxIdleConns: 1024}}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m, ok := decode(w, r)
		if !ok {
			return
		}
		payload, _ := json.Marshal(m)
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(payload))
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			http.Error(w, "messageapp unreachable", http.StatusBadGateway)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"status":"sent"}`)
	})
}

// shedHandler decodes and answers 202: the least a server can do per request.
func shedHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := decode(w, r); !ok {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"status":"queued"}`)
	})
}

func serveBaseline(port int, h http.Handler) {
	mux := http.NewServeMux()
	mux.Handle("POST /messages", h)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	srv := &http.Server{Addr: "127.0.0.1:" + strconv.Itoa(port), Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// fakeApp answers POST /message as its mode says and counts what it gets.
type fakeApp struct {
	srv         *http.Server
	url         string
	received    atomic.Int64
	open        atomic.Int64 // connections open right now
	inflight    atomic.Int64 // calls being answered right now
	maxInflight atomic.Int64
	mode        string       // "ok", "down" or "hang"
	delay       atomic.Int64 // how long "ok" takes to answer, in nanoseconds
	hang        atomic.Bool  // hang whatever the mode: a sudden outage
}

func startApp(mode string) (*fakeApp, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	a := &fakeApp{url: "http://" + ln.Addr().String() + "/message", mode: mode}
	a.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			a.received.Add(1)
			n := a.inflight.Add(1)
			defer a.inflight.Add(-1)
			for m := a.maxInflight.Load(); n > m && !a.maxInflight.CompareAndSwap(m, n); m = a.maxInflight.Load() {
			}
			switch mode := a.mode; {
			case a.hang.Load() || mode == "hang":
				<-r.Context().Done()
			case mode == "ok":
				if d := a.delay.Load(); d > 0 {
					time.Sleep(time.Duration(d)) // a slow messageapp, as the scenario asks
				}
				io.WriteString(w, "OK")
			case mode == "down":
				http.Error(w, "down", http.StatusInternalServerError)
			}
		}),
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				a.open.Add(1)
			case http.StateClosed, http.StateHijacked:
				a.open.Add(-1)
			}
		},
	}
	go a.srv.Serve(ln)
	return a, nil
}

func (a *fakeApp) close() { a.srv.Close() }
