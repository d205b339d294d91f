package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
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
