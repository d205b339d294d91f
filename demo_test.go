package main

import (
	"bytes"
	"context"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDemoObservesEveryPhase(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo takes about 15 s")
	}
	var out bytes.Buffer
	ok, err := demo(context.Background(), 1, &out)
	if err != nil {
		t.Fatal(err)
	}
	if !ok || strings.Contains(out.String(), "✗") {
		t.Fatalf("demo did not observe every phase:\n%s", out.String())
	}
	texts := outcomeTexts(demoConfig().MessageappTimeout)
	for _, o := range []Outcome{OutcomeMessageappError, OutcomeTimeout, OutcomeBreakerOpen} {
		if !strings.Contains(out.String(), texts[o]) {
			t.Errorf("what the log says lacks a %s line (%q):\n%s", o, texts[o], out.String())
		}
	}
	for _, event := range []string{"circuit_open", "circuit_half_open", "circuit_closed", "enqueueing_disabled", "enqueueing_enabled"} {
		if !strings.Contains(out.String(), event) {
			t.Errorf("timeline lacks %s:\n%s", event, out.String())
		}
	}
	t.Logf("demo output:\n%s", out.String())
}

// shortScenario is the overload episode the tests run: a few seconds, so
// each comparison takes about twenty.
var shortScenario = comparisonScenario{Rate: 50, Calm: time.Second, EpisodeMin: 2500 * time.Millisecond,
	EpisodeMax: 2500 * time.Millisecond, After: 3 * time.Second, Drain: 5 * time.Second}

func TestDemoWithoutEachPatternShowsWhatItIsFor(t *testing.T) {
	for _, p := range withoutPatterns {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			ok, err := runComparison(context.Background(), p, "fixed", shortScenario, 1, &out)
			if err != nil {
				t.Fatal(err)
			}
			if !ok || !strings.Contains(out.String(), "✓") {
				t.Errorf("-without %s: the comparison does not show what the %s is for:\n%s", p.name, p.name, out.String())
			}
			for _, want := range []string{p.name + " on", p.name + " off", "calls into messageapp while degraded", "delivery unknown", "client 503s", "oldest message at delivery", "peak live heap"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("the comparison lacks %q:\n%s", want, out.String())
				}
			}
			t.Logf("courier demo -without %s, short episode:\n%s", p.name, out.String())
		})
	}
}

func TestDemoWithoutFailsWhenTheRunsShowNoDifference(t *testing.T) {
	same := comparisonRun{cfg: demoComparisonConfig("fixed"), peakBacklog: 50, peakQueue: 10, longestAttempt: time.Second,
		phases: [3]phaseTally{{}, {callsIn: 100, rejected: 5, ages: []time.Duration{time.Second}}, {}}}
	for _, p := range withoutPatterns {
		if ok, why := p.shows(same, same); ok {
			t.Errorf("-without %s: two equal runs pass (%s), want exit 1", p.name, why)
		}
	}
}

func TestDemoWithoutRefusesAnUnknownPattern(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := runDemo(context.Background(), []string{"-without", "retries"}, &out, &errOut); code != exitUsage ||
		!strings.Contains(errOut.String(), "breaker, timeout, backpressure") {
		t.Errorf("got exit %d and %q, want 2 naming the patterns", code, errOut.String())
	}
}

// The demo's courier is `courier serve` with a few variables set: every
// other setting, a new variable's included, is that variable's default,
// without the demo naming it.
func TestTheDemosCourierHasEveryDefaultItDoesNotSet(t *testing.T) {
	defaults, err := loadConfig(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	got := demoConfig()
	typ := reflect.TypeFor[config]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		name := f.Tag.Get("env")
		if name == "" {
			continue
		}
		want := reflect.ValueOf(defaults).Field(i).Interface()
		if v, set := demoSettings[name]; set {
			one, err := loadConfig(func(n string) string { return map[string]string{name: v}[n] })
			if err != nil {
				t.Fatalf("the demo's %s=%q does not validate: %v", name, v, err)
			}
			want = reflect.ValueOf(one).Field(i).Interface()
		}
		if g := reflect.ValueOf(got).Field(i).Interface(); g != want {
			t.Errorf("the demo's %s is %v, want %v", name, g, want)
		}
	}
}
