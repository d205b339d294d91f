package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browserPath finds Chromium. Without one the test is skipped, unless
// COURIER_REQUIRE_BROWSER=1 (as in CI), where it fails.
func browserPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("COURIER_REQUIRE_BROWSER") == "1" {
		t.Fatal("no Chromium found and COURIER_REQUIRE_BROWSER=1 (apt-get install chromium)")
	}
	t.Skip("no Chromium found: apt-get install chromium to run the dashboard test")
	return ""
}

// artifactDir is where the test leaves its screenshot.
func artifactDir(t *testing.T) string {
	dir := os.Getenv("COURIER_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "courier-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// openDashboard starts Chromium on the dashboard at url and returns the
// browser's context; the whole browser lives at most two minutes, so a
// wedged Chromium fails the test instead of hanging the suite.
func openDashboard(t *testing.T, chrome, url string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1300, 1500),
	)
	life, cancelLife := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancelLife)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(life, opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(cancel)
	// The first action starts the browser on ctx; later waits get their
	// own deadlines, derived from it.
	if err := chromedp.Do(ctx, chromedp.Navigate(url+"/")); err != nil {
		t.Fatalf("open the dashboard: %v", err)
	}
	return ctx
}

func TestDashboardShowsTheBuiltInSimulatorInARealBrowser(t *testing.T) {
	chrome := browserPath(t)
	s := startService(t, baseEnv("")) // no MESSAGEAPP_URL: the built-in simulator
	ctx := openDashboard(t, chrome, s.url)
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(wctx, chromedp.WaitVisible(`#messageapp`)); err != nil {
		t.Fatalf("the dashboard never showed the simulator's panel: %v", err)
	}
	eventually(t, 5*time.Second, "the panel to show the overload profile's 8 workers", func() bool {
		full, err1 := chromedp.Run(ctx, chromedp.Text(`#app-full`))
		profile, err2 := chromedp.Run(ctx, chromedp.Text(`#app-profile`))
		return err1 == nil && err2 == nil && full == "8" && profile == "overload"
	})
	if png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
		shot := filepath.Join(artifactDir(t), "dashboard-simulator.png")
		if err := os.WriteFile(shot, png, 0o644); err == nil {
			t.Logf("screenshot: %s", shot)
		}
	}
}

func TestDashboardShowsAnOutageInARealBrowser(t *testing.T) {
	chrome := browserPath(t)
	app := newFakeMessageapp(t, modeOK)
	env := baseEnv(app.URL())
	env["BREAKER_BACKOFF_INITIAL"] = "200ms"
	env["BREAKER_BACKOFF_MAX"] = "200ms"
	env["MAX_ATTEMPTS"] = "100" // failed probes keep their message: the queue stays full at 10
	s := startService(t, env)
	ctx := openDashboard(t, chrome, s.url)
	waitFor := func(what string, selector chromedp.CSS) {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		if err := chromedp.Do(wctx, chromedp.WaitVisible(selector)); err != nil {
			t.Fatalf("the dashboard never showed %s (%s): %v", what, selector, err)
		}
	}
	text := func(selector chromedp.CSS) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(selector))
		if err != nil {
			t.Fatalf("read %s: %v", selector, err)
		}
		return v
	}

	waitFor("the stream connected", `#conn[data-live="true"]`)
	if hidden, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById("messageapp").hidden`)); err != nil || !hidden {
		t.Errorf("the built-in simulator's panel with a real messageapp: hidden %v (%v), want hidden", hidden, err)
	}
	waitFor("a closed circuit", `#circuit-state[data-state="closed"]`)

	// The outage: messageapp fails, the circuit opens, the queue fills.
	app.set(modeError)
	for i := 0; i < 100 && s.status().Queue.Accepting; i++ {
		s.post("d", strconv.Itoa(i))
	}
	s.post("d", "rejected") // one 503 for the counters
	waitFor("the circuit open", `#circuit-state[data-state="open"]`)
	waitFor("the queue rejecting", `#accepting[data-accepting="false"]`)
	waitFor("the circuit_open transition", `#events li[data-event="circuit_open"]`)
	waitFor("the enqueueing_disabled transition", `#events li[data-event="enqueueing_disabled"]`)
	// The failures halved the concurrency limit down to one call.
	waitFor("the concurrency_lowered transition", `#events li[data-event="concurrency_lowered"]`)
	eventually(t, 5*time.Second, "the page to show the limit at 1 of 4", func() bool {
		return text("#limit") == "1" && text("#ceiling") == "4" && text("#limit-mode") == "adaptive"
	})
	// Full: ten messages, one of them out of the queue whenever a sender
	// holds it for the next probe (about half the time with a probe every
	// 200 ms; the page's snapshot every second can keep catching that
	// moment), so the depth shown is 10 or 9.
	eventually(t, 5*time.Second, "the page to show the queue full at 10 (9 while one waits for the probe)", func() bool {
		d := text("#queue-depth")
		return (d == "10" || d == "9") && text("#queue-max") == "10" && text("#accepting") == "REJECTING (503)"
	})
	// Let a snapshot or two draw the charts before the picture.
	eventually(t, 5*time.Second, "the counters to show the accepted messages", func() bool {
		return text("#c-accepted") != "0" && text("#c-rejected") != "0"
	})
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	shot := filepath.Join(artifactDir(t), "dashboard-outage.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the outage: %s", shot)

	// Recovery: the next probe succeeds, the queue drains.
	app.set(modeOK)
	waitFor("the circuit closed again", `#circuit-state[data-state="closed"]`)
	waitFor("the queue accepting again", `#accepting[data-accepting="true"]`)
	waitFor("the enqueueing_enabled transition", `#events li[data-event="enqueueing_enabled"]`)
	waitFor("the concurrency_raised transition", `#events li[data-event="concurrency_raised"]`)
}
