package main

// healthcheck.go is `courier healthcheck`: a container's health check in
// an image that has no curl (distroless), asking this machine's courier.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"time"
)

// runHealthcheck exits 0 when GET -url (by default /healthz on PORT at
// 127.0.0.1) answers 200 within -timeout, 1 otherwise, saying why.
func runHealthcheck(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	fs := flag.NewFlagSet("courier healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	port := getenv("PORT")
	if port == "" {
		port = "9001"
	}
	url := fs.String("url", "http://127.0.0.1:"+port+"/healthz", "what to ask (default: /healthz on PORT)")
	timeout := fs.Duration("timeout", 2*time.Second, "how long to wait for the answer")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return exitOK
	} else if err != nil {
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		fmt.Fprintf(stderr, "courier healthcheck: %v\n", err)
		return exitUsage
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "courier healthcheck: %v\n", withoutURL(err))
		return exitFailed
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "courier healthcheck: %s answered %s\n", *url, resp.Status)
		return exitFailed
	}
	return exitOK
}
