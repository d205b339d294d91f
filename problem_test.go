package main

import (
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestEveryProblemCodeHasAStatusAndIsInTheContract(t *testing.T) {
	var ours []string
	for code := range maps.Keys(problemStatus) {
		ours = append(ours, string(code))
	}
	slices.Sort(ours)
	documented := problemCodes(contractDocument().Components.Schemas["Problem"])
	if strings.Join(ours, ",") != strings.Join(documented, ",") {
		t.Errorf("problem codes: courier has %v, openapi.yaml documents %v", ours, documented)
	}
}

func TestARefusedRequestIsOneDebugLineAndNothingAtInfo(t *testing.T) {
	refuse := func(t *testing.T, level string) (*testCourier, []response) {
		app := newFakeMessageapp(t, modeHang)
		env := baseEnv(app.URL())
		env["SENDERS"], env["MESSAGEAPP_TIMEOUT"], env["LOG_LEVEL"] = "1", "1m", level
		env["QUEUE_MAX_SIZE"], env["QUEUE_RECOVERY_THRESHOLD"], env["SHUTDOWN_TIMEOUT"] = "1", "0", "0s"
		s := startService(t, env)
		s.post("d", "carried") // the sender hangs with it
		eventually(t, 5*time.Second, "the sender to be busy", func() bool { return s.status().Messages.Sending == 1 })
		s.post("d", "queued") // fills the queue
		return s, []response{
			s.post("d", "refused"),
			s.do(http.MethodGet, "/messages?limit=0", "", ""),
			s.do(http.MethodGet, "/nowhere", "", ""),
		}
	}
	want := []struct {
		status int
		code   ProblemCode
	}{{503, CodeQueueFull}, {400, CodeInvalidRequest}, {404, CodeNotFound}}

	s, got := refuse(t, "debug")
	lines := s.logs.entries(map[string]any{"event": "refused"})
	if len(lines) != len(want) {
		t.Fatalf("refused lines: got %v, want %d", lines, len(want))
	}
	for i, w := range want {
		checkProblem(t, got[i], w.status, string(w.code))
		if l := lines[i]; l["level"] != "debug" || l["status"] != float64(w.status) || l["code"] != string(w.code) || l["message"] == "" {
			t.Errorf("refused line %d: got %v, want debug, status %d, code %s and a sentence", i, l, w.status, w.code)
		}
	}

	s, _ = refuse(t, "info")
	if lines := s.logs.entries(map[string]any{"event": "refused"}); len(lines) != 0 {
		t.Errorf("at info: got %v, want no refused line", lines)
	}
}
