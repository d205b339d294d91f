package main

import (
	"cmp"
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// simTestConfig is the default simulator in profile p with a fixed seed
// (flap: 20 s healthy, 10 s degraded).
func simTestConfig(p Profile, seed uint64) simConfig {
	cfg := defaultSimConfig(seed)
	cfg.Profile = p
	return cfg
}

func startTestSimulator(t *testing.T, p Profile) (*Simulator, string, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	sim := NewSimulator(simTestConfig(p, 1), zerolog.New(logs), zerolog.InfoLevel)
	base, stop, err := startSimulator("127.0.0.1:0", sim)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return sim, base, logs
}

// postSim sends one message with a client deadline and returns the status
// (0 when the deadline passed first) and body.
func postSim(t *testing.T, url, body string, deadline time.Duration) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

const simMessage = `{"destination":"+34600000000","body":"hi"}`

func TestSimulatorProfilesAnswerAsSpecified(t *testing.T) {
	tests := []struct {
		profile    Profile
		wantStatus int
		wantBody   string
	}{
		{ProfileHealthy, 200, "OK"},
		{ProfileDown, 500, "Internal Server Error"},
		{ProfileHang, 0, ""}, // the caller's 300ms deadline passes first
	}
	for _, tt := range tests {
		t.Run(string(tt.profile), func(t *testing.T) {
			_, base, logs := startTestSimulator(t, tt.profile)
			status, body := postSim(t, base+"/message", simMessage, 300*time.Millisecond)
			if status != tt.wantStatus || body != tt.wantBody {
				t.Errorf("got %d %q, want %d %q", status, body, tt.wantStatus, tt.wantBody)
			}
			eventually(t, 2*time.Second, "the request to be logged", func() bool {
				return len(logs.entries(map[string]any{"profile": string(tt.profile)})) == 1
			})
			if l := logs.entries(map[string]any{"profile": string(tt.profile)})[0]; l["latency_ms"] == nil {
				t.Errorf("log line without the chosen latency: %v", l)
			}
		})
	}
}

func TestSimulatorValidatesLikeARealService(t *testing.T) {
	_, base, _ := startTestSimulator(t, ProfileHealthy)
	for _, body := range []string{`{`, `[]`, `{"destination":"a"}`, `{"body":"b"}`} {
		if status, _ := postSim(t, base+"/message", body, time.Second); status != 400 {
			t.Errorf("%s: got %d, want 400", body, status)
		}
	}
}

func TestSimulatorProfileSwitchesAtRunTime(t *testing.T) {
	sim, base, _ := startTestSimulator(t, ProfileHealthy)
	put := func(body string) int {
		req, _ := http.NewRequest(http.MethodPut, base+"/control", strings.NewReader(body))
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	if got := put(`{"profile":"down"}`); got != 200 || sim.Profile() != ProfileDown {
		t.Fatalf("PUT down: got %d and profile %s, want 200 and down", got, sim.Profile())
	}
	if status, _ := postSim(t, base+"/message", simMessage, time.Second); status != 500 {
		t.Errorf("after switching to down: got %d, want 500", status)
	}
	for _, bad := range []string{`{"profile":"sideways"}`, `nope`} {
		if got := put(bad); got != 400 || sim.Profile() != ProfileDown {
			t.Errorf("PUT %s: got %d and profile %s, want 400 and unchanged", bad, got, sim.Profile())
		}
	}
}

func TestDegradedProfileMatchesWhatPeopleSawFromTheRealImagePlusFastErrors(t *testing.T) {
	sim := NewSimulator(simTestConfig(ProfileDegraded, 42), zerolog.Nop(), zerolog.InfoLevel)
	const n = 4000
	var fast, fastError, spike, late, lateError int
	for range n {
		r := sim.decide(time.Now())
		switch {
		case r.status == 500 && r.delay <= 50*time.Millisecond:
			fastError++
		case r.status == 500 && r.delay >= 13*time.Second && r.delay <= 15*time.Second:
			lateError++
		case r.status != 200:
			t.Fatalf("unexpected answer %+v", r)
		case r.delay <= 200*time.Millisecond:
			fast++
		case r.delay >= time.Second && r.delay <= 3*time.Second:
			spike++
		case r.delay >= 4*time.Second && r.delay <= 14*time.Second:
			late++
		default:
			t.Fatalf("delay %s outside every band", r.delay)
		}
	}
	within := func(got int, share float64) bool { return float64(got) > share*n*0.8 && float64(got) < share*n*1.2 }
	if !within(fast, 0.4) || !within(fastError, 0.2) || !within(spike, 0.2) || !within(late, 0.1) || !within(lateError, 0.1) {
		t.Errorf("shares of %d: fast %d, fast 500s %d, spikes %d, late 200s %d, late 500s %d; want about 40/20/20/10/10 %%",
			n, fast, fastError, spike, late, lateError)
	}
}

func TestFlapShowsEveryFailureKindWithin35Seconds(t *testing.T) {
	// What `go run .` + `go run . load -rate 50` met with flap, replayed on the
	// simulator's own clock: requests every 20ms from its start, each
	// judged as courier would with its default 1s deadline and circuit
	// (five consecutive failures, in the order the answers come back).
	sim := NewSimulator(simTestConfig(ProfileFlap, 1), zerolog.Nop(), zerolog.InfoLevel)
	const deadline = time.Second
	type answer struct {
		at   time.Duration
		kind Outcome
	}
	var answers []answer
	first := map[Outcome]time.Duration{}
	for at := time.Duration(0); at < 35*time.Second; at += 20 * time.Millisecond {
		r := sim.decide(sim.start.Add(at))
		a := answer{at + r.delay, OutcomeSent}
		switch {
		case r.status == 0 || r.delay >= deadline:
			a = answer{at + deadline, OutcomeTimeout}
		case r.status != http.StatusOK:
			a.kind = OutcomeMessageappError
		}
		answers = append(answers, a)
	}
	slices.SortFunc(answers, func(a, b answer) int { return cmp.Compare(a.at, b.at) })
	run := 0
	for _, a := range answers {
		if _, seen := first[a.kind]; !seen {
			first[a.kind] = a.at
		}
		if run = run + 1; a.kind == OutcomeSent {
			run = 0
		}
		if _, opened := first[OutcomeBreakerOpen]; run >= 5 && !opened {
			first[OutcomeBreakerOpen] = a.at // the next message is kept back
		}
	}
	for _, kind := range []Outcome{OutcomeMessageappError, OutcomeTimeout, OutcomeBreakerOpen} {
		at, ok := first[kind]
		if !ok || at > 35*time.Second {
			t.Errorf("%s: first at %v (seen %v), want within the first 35s", kind, at, ok)
		}
	}
	t.Logf("first messageapp_error %v, timeout %v, circuit open %v", first[OutcomeMessageappError], first[OutcomeTimeout], first[OutcomeBreakerOpen])
}

func TestFlapCyclesHealthyAndDegraded(t *testing.T) {
	sim := NewSimulator(simTestConfig(ProfileFlap, 7), zerolog.Nop(), zerolog.InfoLevel)
	tests := []struct {
		at   time.Duration
		want Profile
	}{{0, ProfileHealthy}, {19 * time.Second, ProfileHealthy}, {21 * time.Second, ProfileDegraded},
		{29 * time.Second, ProfileDegraded}, {31 * time.Second, ProfileHealthy}, {55 * time.Second, ProfileDegraded}}
	for _, tt := range tests {
		if got := sim.decide(sim.start.Add(tt.at)).effective; got != tt.want {
			t.Errorf("at %s: got %s, want %s", tt.at, got, tt.want)
		}
	}
}

func TestMessageappSubcommandRefusesBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-profile", "sideways"}, {"-port", "-3"}, {"-nope"}} {
		var out, errOut logBuffer
		if code := runMessageapp(context.Background(), args, func(string) string { return "" }, &out, &errOut); code != 2 {
			t.Errorf("%v: got exit %d, want 2", args, code)
		}
	}
	var out, errOut logBuffer
	if code := runMessageapp(context.Background(), nil, func(string) string { return "x" }, &out, &errOut); code != 2 ||
		!strings.Contains(errOut.String(), "PORT") {
		t.Errorf("PORT=x: got exit %d and %q, want 2 naming PORT", code, errOut.String())
	}
}

func TestCourierWithoutMessageappURLStartsTheSimulator(t *testing.T) {
	env := baseEnv("")
	s := startService(t, env)
	started := s.logs.entries(map[string]any{"event": "simulator_started"})
	if len(started) != 1 || !strings.HasPrefix(started[0]["url"].(string), "http://127.0.0.1:") {
		t.Fatalf("simulator_started: got %v, want one line with a loopback URL", started)
	}
	if !strings.Contains(started[0]["message"].(string), "MESSAGEAPP_URL") {
		t.Errorf("the line does not say how to use a real messageapp: %v", started[0]["message"])
	}
	// overload starts with at least 15 s of calm: a message goes through.
	id := s.post("d", "b").body["id"].(string)
	s.waitStatus(id, StatusSent)
}

// A bad variable reads the same whichever command reads it: exit 2 and one
// line naming the variable, its value as written and what would do.
func TestABadMessageappVariableIsRefusedLikeABadCourierVariable(t *testing.T) {
	tests := []struct {
		command  []string
		env      map[string]string
		variable string
		allowed  string
	}{
		{[]string{"courier"}, map[string]string{"QUEUE_MAX_SIZE": "0"}, `QUEUE_MAX_SIZE="0"`, "a whole number from 1 to 1000000"},
		{[]string{"courier"}, map[string]string{"PORT": "70000"}, `PORT="70000"`, "a TCP port, 0..65535"},
		{[]string{"courier", "messageapp"}, map[string]string{"PORT": "70000"}, `PORT="70000"`, "a TCP port, 0..65535"},
		{[]string{"courier", "messageapp"}, map[string]string{"MESSAGEAPP_PROFILE": "sideways"}, `MESSAGEAPP_PROFILE="sideways"`, "one of overload, healthy"},
		{[]string{"courier", "messageapp"}, map[string]string{"MESSAGEAPP_CAPACITY": "0"}, `MESSAGEAPP_CAPACITY="0"`, "a whole number from 1"},
		{[]string{"courier", "messageapp"}, map[string]string{"MESSAGEAPP_CAPACITY": "many"}, `MESSAGEAPP_CAPACITY="many"`, "a whole number from 1"},
		{[]string{"courier", "messageapp"}, map[string]string{"MESSAGEAPP_LATENCY": "0"}, `MESSAGEAPP_LATENCY="0"`, "a Go duration above 0"},
		{[]string{"courier", "messageapp"}, map[string]string{"MESSAGEAPP_EPISODE_CAPACITY": "9"}, `MESSAGEAPP_EPISODE_CAPACITY="9"`,
			"a whole number from 0 to MESSAGEAPP_CAPACITY (MESSAGEAPP_CAPACITY is 8)"},
		{[]string{"courier", "messageapp"}, map[string]string{"MESSAGEAPP_CALM_MAX": "1s"}, `MESSAGEAPP_CALM_MAX="1s"`,
			"a Go duration from MESSAGEAPP_CALM_MIN, e.g. 30s (MESSAGEAPP_CALM_MIN is 15s)"},
		{[]string{"courier", "messageapp"}, map[string]string{"MESSAGEAPP_KEEP_ALIVE": "-1s"}, `MESSAGEAPP_KEEP_ALIVE="-1s"`, "a Go duration above 0"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.command, " ")+" "+tt.variable, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var out, errOut logBuffer
			code := run(ctx, tt.command, func(k string) string { return tt.env[k] }, &out, &errOut)
			want := strings.Join(tt.command, " ") + ": invalid configuration: " + tt.variable + ": must be " + tt.allowed
			if code != exitUsage || !strings.HasPrefix(errOut.String(), want) || strings.Count(errOut.String(), "\n") != 1 {
				t.Errorf("got exit %d and %q, want %d and one line starting %q", code, errOut.String(), exitUsage, want)
			}
		})
	}
}
