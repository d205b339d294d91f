package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// TestEveryStatusIsCountedReportedAndDrawn holds what a row of statusRules
// promises: adding a status there (with its const and Counts field) is all
// it takes for the store, /status, /metrics, the dashboard, the shutdown
// log, openapi.yaml and the accounting invariant to know it.
func TestEveryStatusIsCountedReportedAndDrawn(t *testing.T) {
	t.Run("each status has its own counter, named as the status in /status", eachStatusHasItsOwnCounter)
	t.Run("the accounting invariant sums every status", theInvariantSumsEveryStatus)
	t.Run("the store counts a message moved to each status once", theStoreCountsEachStatus)

	app := newFakeMessageapp(t, modeOK)
	logs := &logBuffer{}
	s := startServiceLogging(t, baseEnv(app.URL()), logs)
	s.waitStatus(s.post("d", "b").body["id"].(string), StatusSent)
	t.Run("/status, /metrics and the ?status= filter know every status", func(t *testing.T) { theAPIKnowsEveryStatus(t, s) })
	t.Run("the dashboard has a place for every counter of /status", func(t *testing.T) { theDashboardDrawsEveryStatus(t, s) })
	t.Run("openapi.yaml lists every status", openAPIListsEveryStatus)
	t.Run("the shutdown log counts every final status", func(t *testing.T) { theShutdownLogCountsEveryFinalStatus(t, s, logs) })
}

func eachStatusHasItsOwnCounter(t *testing.T) {
	for _, r := range statusRules {
		var c Counts
		*r.count(&c) = 1
		b, _ := json.Marshal(c)
		var fields map[string]int64
		if err := json.Unmarshal(b, &fields); err != nil {
			t.Fatal(err)
		}
		for name, n := range fields {
			want := int64(0)
			if name == string(r.status) {
				want = 1
			}
			if n != want {
				t.Errorf("%s counted once: JSON field %q got %d, want %d", r.status, name, n, want)
			}
		}
		if _, ok := fields[string(r.status)]; !ok {
			t.Errorf("%s: /status's messages has no field %q", r.status, r.status)
		}
	}
}

func theInvariantSumsEveryStatus(t *testing.T) {
	for _, r := range statusRules {
		c := Counts{Accepted: 1}
		*r.count(&c) = 1
		if !c.Balanced() {
			t.Errorf("one accepted message %s: not balanced, want balanced (%s)", r.status, c.Balance())
		}
		if !strings.Contains(c.Balance(), string(r.status)+" 1") {
			t.Errorf("balance %q does not show %s", c.Balance(), r.status)
		}
		if want := map[bool]int64{true: 1}[r.unknown]; c.deliveryUnknown() != want {
			t.Errorf("one message %s: delivery unknown for %d, want %d", r.status, c.deliveryUnknown(), want)
		}
		c.Accepted = 2
		if c.Balanced() {
			t.Errorf("two accepted, one %s: balanced, want not", r.status)
		}
	}
}

func theStoreCountsEachStatus(t *testing.T) {
	for _, r := range statusRules[1:] { // a new message is queued
		s := NewStore(10, time.Now)
		s.Insert(newDelivery("a", "d", "b", ""))
		s.Move("a", r.status, 1, nil)
		if got := s.Counts(); got.Of(r.status) != 1 || got.Of(StatusQueued) != 0 || !got.Balanced() {
			t.Errorf("after moving to %s: got %+v, want one %s", r.status, got, r.status)
		}
		if m, _ := s.Get("", "a"); m.Status != r.status {
			t.Errorf("after moving to %s: GET shows %s", r.status, m.Status)
		}
	}
}

func theAPIKnowsEveryStatus(t *testing.T, s *testCourier) {
	var raw struct{ Messages map[string]int64 }
	resp := s.do(http.MethodGet, "/status", "", "")
	b, _ := json.Marshal(resp.body)
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	_, series := s.scrape()
	for _, r := range statusRules {
		if _, ok := raw.Messages[string(r.status)]; !ok {
			t.Errorf("/status messages: no %s", r.status)
		}
		metric := `courier_messages_pending{status="` + string(r.status) + `"}`
		if r.final {
			metric = `courier_messages_finished_total{status="` + string(r.status) + `"}`
		}
		if _, ok := series[metric]; !ok {
			t.Errorf("/metrics: no %s", metric)
		}
		if got := s.do(http.MethodGet, "/messages?status="+string(r.status), "", ""); got.status != http.StatusOK {
			t.Errorf("GET /messages?status=%s: got %d, want 200", r.status, got.status)
		}
	}
}

func theDashboardDrawsEveryStatus(t *testing.T, s *testCourier) {
	resp, err := s.client.Get(s.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{"accepted", "rejected"} {
		if !strings.Contains(string(page), `id="c-`+name+`"`) {
			t.Errorf("dashboard: no element for %s", name)
		}
	}
	for _, r := range statusRules {
		if n := strings.Count(string(page), `id="c-`+string(r.status)+`"`); n != 1 {
			t.Errorf("dashboard: %d elements for %s, want 1", n, r.status)
		}
		if !strings.Contains(string(page), r.text) {
			t.Errorf("dashboard: %s's words %q are not shown", r.status, r.text)
		}
	}
	if strings.Contains(string(page), "status rows") {
		t.Error("dashboard: the status rows mark was not replaced")
	}
}

func openAPIListsEveryStatus(t *testing.T) {
	doc, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if enum := "enum: [" + statusNames() + "]"; !strings.Contains(string(doc), enum) {
		t.Errorf("openapi.yaml: Message status lacks %q", enum)
	}
	if counts := "required: [accepted, rejected, " + statusNames() + "]"; !strings.Contains(string(doc), counts) {
		t.Errorf("openapi.yaml: Counts lacks %q", counts)
	}
}

func theShutdownLogCountsEveryFinalStatus(t *testing.T, s *testCourier, logs *logBuffer) {
	if code := s.stop(); code != 0 {
		t.Fatalf("stop: exit %d", code)
	}
	stopped := logs.entries(map[string]any{"event": "stopped"})
	if len(stopped) != 1 {
		t.Fatalf("stopped lines: got %d, want 1", len(stopped))
	}
	for _, r := range statusRules {
		if _, ok := stopped[0][string(r.status)]; ok != r.final {
			t.Errorf("courier stopped: field %s present %v, want %v (final)", r.status, ok, r.final)
		}
	}
}
