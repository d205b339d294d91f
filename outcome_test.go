package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

func TestEveryOutcomeHasItsOwnLogText(t *testing.T) {
	texts := outcomeTexts(time.Second)
	seen := map[string]Outcome{}
	for _, o := range outcomeKinds {
		text := texts[o]
		if text == "" {
			t.Errorf("outcome %s has no log text", o)
		}
		if other, dup := seen[text]; dup {
			t.Errorf("outcomes %s and %s share the log text %q", o, other, text)
		}
		seen[text] = o
	}
	if got := texts[OutcomeTimeout]; !strings.Contains(got, "within 1s") {
		t.Errorf("timeout text %q does not name the deadline", got)
	}
}

func TestAMessageHeldBackReadsUnlikeTheCircuitChangingState(t *testing.T) {
	// Scanning a console log, the circuit's transitions are the few lines
	// in capitals; a message the open circuit holds back starts otherwise.
	b, clk, logs := newTestBreaker(1, time.Second, time.Second)
	trip(t, b, 1)
	clk.Add(2 * time.Second)
	if err := b.Call(context.Background(), succeeding, always); err != nil {
		t.Fatal(err)
	}
	held := outcomeTexts(time.Second)[OutcomeBreakerOpen]
	transitions := logs.entries(nil)
	if len(transitions) != 3 {
		t.Fatalf("breaker lines: got %v, want open, half-open, closed", transitions)
	}
	for _, l := range transitions {
		text, _ := l["message"].(string)
		first := strings.Fields(text)[0]
		if first != strings.ToUpper(first) || strings.EqualFold(first, strings.Fields(held)[0]) {
			t.Errorf("%s line %q: want it to start with a word in capitals that the held-back line %q does not start with", l["event"], text, held)
		}
	}
}

func TestEveryOutcomeSaysWhatBecomesOfTheMessage(t *testing.T) {
	for _, r := range outcomes {
		if r.waits == (r.final != "") {
			t.Errorf("%s: waits %v, final %q: want exactly one of them", r.outcome, r.waits, r.final)
		}
		if r.final != "" && !r.final.Final() {
			t.Errorf("%s ends as %q, which is not a final status", r.outcome, r.final)
		}
		if r.retryable && r.final != StatusFailed {
			t.Errorf("%s is retryable but ends as %q, want failed once out of attempts", r.outcome, r.final)
		}
	}
	if r := OutcomeTimeout.rule(); r.retryable {
		t.Error("a timeout is retried: messageapp may have delivered it")
	}
}

func TestEveryOutcomeIsDrawnOnTheDashboard(t *testing.T) {
	page, err := os.ReadFile("dashboard.html")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range outcomeKinds {
		if !strings.Contains(string(page), `["`+string(o)+`",`) {
			t.Errorf("dashboard.html has no series for outcome %s", o)
		}
	}
}
