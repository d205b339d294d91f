package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestASpoolReadsBackWhatWasWritten(t *testing.T) {
	created := time.Date(2026, 12, 5, 23, 0, 0, 123456789, time.UTC)
	recs := []spoolRecord{
		{ID: "c1-aaaaaaaaaaaaaaaaaaaaaaaaaa", Key: "order-1", Destination: "+34600000000", Body: "hello", Attempts: 2, CreatedAt: created},
		{ID: "c1-bbbbbbbbbbbbbbbbbbbbbbbbbb", Destination: "café ☕", Body: "<b>\"quoted\"</b>\n\x00\u2028", CreatedAt: created.Add(time.Second)},
		{ID: "c1-cccccccccccccccccccccccccc", Key: "k", Client: clientID("a token of the shop client"), Destination: "d", Body: strings.Repeat("\x01", maxBodyBytes-100), CreatedAt: created},
	}
	path := filepath.Join(t.TempDir(), "spool.jsonl")
	if err := writeSpool(path, recs, time.Now()); err != nil {
		t.Fatal(err)
	}
	got, err := readSpool(path)
	if err != nil {
		t.Fatal(err)
	}
	same := func(a, b spoolRecord) bool {
		ta, tb := a.CreatedAt, b.CreatedAt
		a.CreatedAt, b.CreatedAt = time.Time{}, time.Time{}
		return a == b && ta.Equal(tb)
	}
	if !slices.EqualFunc(got, recs, same) {
		t.Errorf("read back: got %+v, want %+v", got, recs)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*")); len(leftovers) != 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
	if none, err := readSpool(filepath.Join(t.TempDir(), "spool.jsonl")); none != nil || err != nil {
		t.Errorf("no file: got %v, %v; want no spool and no error", none, err)
	}
}

func TestACorruptSpoolIsRefusedNamingTheLine(t *testing.T) {
	header := func(n int) string {
		return fmt.Sprintf(`{"courier_spool":1,"messages":%d,"written_at":"2026-12-05T23:00:00Z"}`, n)
	}
	rec := func(id, key string) string {
		return fmt.Sprintf(`{"id":%q,"idempotency_key":%q,"destination":"d","body":"b","attempts":0,"created_at":"2026-12-05T23:00:00Z"}`, id, key)
	}
	tests := []struct {
		name     string
		lines    []string
		wantLine int
		want     string
	}{
		{"an empty file", nil, 1, "empty file"},
		{"a header that is not JSON", []string{"hello"}, 1, "invalid character"},
		{"another version", []string{`{"courier_spool":2,"messages":0,"written_at":"2026-12-05T23:00:00Z"}`}, 1, "version 1"},
		{"a record that is not JSON", []string{header(2), rec("a", ""), `{"id":"b",`}, 3, "unexpected EOF"},
		{"a record cut short, with the file", []string{header(3), rec("a", ""), rec("b", "")}, 4, "ends after 2 of the header's 3"},
		{"more records than the header says", []string{header(1), rec("a", ""), rec("b", "")}, 3, "more messages than the header's 1"},
		{"an unknown field", []string{header(1), `{"id":"a","destination":"d","body":"b","attempts":0,"created_at":"2026-12-05T23:00:00Z","status":"sent"}`}, 2, "unknown field"},
		{"a record without its body", []string{header(1), `{"id":"a","destination":"d","attempts":0,"created_at":"2026-12-05T23:00:00Z"}`}, 2, "body is missing"},
		{"a record without its created_at", []string{header(1), `{"id":"a","destination":"d","body":"b","attempts":0}`}, 2, "created_at is missing"},
		{"one id twice", []string{header(2), rec("a", ""), rec("a", "")}, 3, "id a is there twice"},
		{"one key twice", []string{header(2), rec("a", "k"), rec("b", "k")}, 3, `idempotency_key "k" is there twice`},
		{"a bad key", []string{header(1), rec("a", "with space")}, 2, "idempotency_key"},
		{"a token where the client's id goes", []string{header(1), `{"id":"a","client":"the-first-clients-token","destination":"d","body":"b","attempts":0,"created_at":"2026-12-05T23:00:00Z"}`}, 2, "not a client id"},
		{"invalid UTF-8", []string{header(1), `{"id":"a","destination":"d","body":"` + "\xff" + `","attempts":0,"created_at":"2026-12-05T23:00:00Z"}`}, 2, "not valid UTF-8"},
		{"negative attempts", []string{header(1), `{"id":"a","destination":"d","body":"b","attempts":-1,"created_at":"2026-12-05T23:00:00Z"}`}, 2, "attempts is -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "spool.jsonl")
			content := strings.Join(tt.lines, "\n")
			if len(tt.lines) > 0 {
				content += "\n"
			}
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			recs, err := readSpool(path)
			var se *spoolError
			if !errors.As(err, &se) || se.File != path || se.Line != tt.wantLine || !strings.Contains(se.Reason, tt.want) {
				t.Fatalf("got %v, %v; want a spool error at %s line %d saying %q", recs, err, path, tt.wantLine, tt.want)
			}
		})
	}
}

func TestSpoolDirMustBeADirectoryCourierCanWriteIn(t *testing.T) {
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	env := baseEnv(refusedURL(t))
	env["SPOOL_DIR"] = filepath.Join(file, "spool")
	var stdout, stderr logBuffer
	code := run(t.Context(), []string{"courier"}, func(k string) string { return env[k] }, &stdout, &stderr)
	if msg := stderr.String(); code != exitUsage || !strings.HasPrefix(msg, `courier: invalid configuration: SPOOL_DIR="`+env["SPOOL_DIR"]+`"`) ||
		strings.Count(msg, "\n") != 1 {
		t.Errorf("SPOOL_DIR under a file: got exit %d, stderr %q; want 2 and one line naming SPOOL_DIR", code, msg)
	}

	missing := filepath.Join(t.TempDir(), "new", "spool")
	if err := (config{SpoolDir: missing}).checkSpoolDir(); err != nil {
		t.Fatalf("SPOOL_DIR that does not exist yet: got %v, want it made", err)
	}
	if info, err := os.Stat(missing); err != nil || !info.IsDir() {
		t.Errorf("SPOOL_DIR not made: %v", err)
	}
}

// refusedURL is a messageapp URL where nothing listens: every call is
// refused, and nothing can have been delivered.
func refusedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	return "http://" + ln.Addr().String() + "/message"
}

// spoolEnv is a courier whose messageapp is down (calls refused): the first
// failure opens the circuit for ten minutes, so everything accepted waits
// in the queue or with a sender, and a short drain leaves it all for the
// spool in dir.
func spoolEnv(messageappURL, dir string) map[string]string {
	env := baseEnv(messageappURL)
	for k, v := range map[string]string{"SPOOL_DIR": dir, "SENDERS": "2", "MAX_ATTEMPTS": "50", "BREAKER_THRESHOLD": "1",
		"QUEUE_MAX_SIZE": "20", "QUEUE_RECOVERY_THRESHOLD": "5", "SHUTDOWN_TIMEOUT": "300ms", "LOG_LEVEL": "info"} {
		env[k] = v
	}
	return env
}

// courierProcess is the courier binary (the test binary, re-executed as
// courier: COURIER_TEST_MAIN) running as a user would run it.
type courierProcess struct {
	t      *testing.T
	cmd    *exec.Cmd
	url    string
	logs   *logBuffer // stdout: the JSON log
	stderr *logBuffer
	exited chan struct{}
	client *http.Client
	token  string // sent as a bearer token, if set
}

// startCourierProcess starts the binary with env (PORT picked here) and,
// unless it exits first, waits for /healthz. Cleanup kills it.
func startCourierProcess(t *testing.T, env map[string]string) *courierProcess {
	t.Helper()
	env = maps.Clone(env)
	env["PORT"] = freePort(t)
	p := &courierProcess{t: t, cmd: exec.Command(os.Args[0]), url: "http://127.0.0.1:" + env["PORT"], logs: &logBuffer{},
		stderr: &logBuffer{}, exited: make(chan struct{}), client: &http.Client{Timeout: 5 * time.Second}}
	p.cmd.Env = append(os.Environ(), "COURIER_TEST_MAIN=1")
	for k, v := range env {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
		p.client.CloseIdleConnections()
	})
	eventually(t, 10*time.Second, "the courier process to answer /healthz or exit", func() bool {
		select {
		case <-p.exited:
			return true
		default:
		}
		resp, err := p.client.Get(p.url + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if portTaken(p.stderr.String()) { // since freePort: another port, another process
		return startCourierProcess(t, env)
	}
	return p
}

// stop sends sig and returns the exit status.
func (p *courierProcess) stop(sig os.Signal) int {
	p.t.Helper()
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.t.Fatal("the courier process did not exit within 30s")
	}
	return p.cmd.ProcessState.ExitCode()
}

// request sends a request with a JSON body (if not empty) and headers
// (name, value pairs) and decodes the answer.
func (p *courierProcess) request(method, path, body string, headers ...string) response {
	p.t.Helper()
	req, err := http.NewRequest(method, p.url+path, strings.NewReader(body))
	if err != nil {
		p.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if p.token != "" {
		req.Header.Set("Authorization", "Bearer "+p.token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := p.client.Do(req)
	if err != nil {
		p.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, header: resp.Header}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			p.t.Fatalf("%s %s: not JSON: %q", method, path, raw)
		}
	}
	return r
}

// message is GET /messages/{id}; ok is false for a 404.
func (p *courierProcess) message(id string) (Message, bool) {
	p.t.Helper()
	r := p.request(http.MethodGet, "/messages/"+id, "")
	if r.status != http.StatusOK {
		return Message{}, false
	}
	raw, _ := json.Marshal(r.body)
	var m Message
	_ = json.Unmarshal(raw, &m)
	return m, true
}

func TestUndeliveredMessagesSurviveARestartThroughTheSpool(t *testing.T) {
	dir := t.TempDir()
	env := spoolEnv(refusedURL(t), dir)
	env["REPLICA"] = "c1"
	// Two clients: the messages are the first's, and stay its own.
	owner, other := "the-first-clients-token", "the-second-clients-token"
	env["API_TOKENS"] = owner + "," + other
	first := startCourierProcess(t, env)
	first.token = owner

	// Accepted while messageapp is down: 12 messages, every third keyed.
	type sent struct{ id, key, body string }
	var accepted []sent
	for i := range 12 {
		m := sent{body: fmt.Sprintf("message %d of the first run", i)}
		var headers []string
		if i%3 == 0 {
			m.key = "order-" + strconv.Itoa(i)
			headers = []string{"Idempotency-Key", m.key}
		}
		r := first.request(http.MethodPost, "/messages", fmt.Sprintf(`{"destination":"+34600000000","body":%q}`, m.body), headers...)
		if r.status != http.StatusAccepted {
			t.Fatalf("POST %d: got %d %v, want 202", i, r.status, r.body)
		}
		m.id = r.body["id"].(string)
		accepted = append(accepted, m)
	}
	if code := first.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("first run's exit status: got %d, want 0: %s", code, first.stderr.String())
	}
	file := filepath.Join(dir, "spool-c1.jsonl")
	spooled := first.logs.entries(map[string]any{"event": "spooled"})
	if len(spooled) != 1 || spooled[0]["file"] != file || spooled[0]["count"] != float64(12) {
		t.Fatalf("spooled line: got %v, want one naming %s with count 12", spooled, file)
	}
	if lines := first.logs.entries(map[string]any{"event": "undelivered"}); len(lines) != 0 {
		t.Errorf("undelivered lines with a spool: got %d, want 0", len(lines))
	}
	recs, err := readSpool(file)
	if err != nil || len(recs) != 12 {
		t.Fatalf("the spool: got %d records, %v; want 12", len(recs), err)
	}
	spooledAttempts := map[string]int{}
	for _, r := range recs {
		spooledAttempts[r.ID] = r.Attempts
		if r.Client != clientID(owner) {
			t.Errorf("spooled %s with client %q, want the owner's id %q", r.ID, r.Client, clientID(owner))
		}
	}
	if raw, _ := os.ReadFile(file); strings.Contains(string(raw), owner) {
		t.Error("the spool holds a client's token")
	}

	// messageapp is back; so is courier.
	app := newFakeMessageapp(t, modeOK)
	env["MESSAGEAPP_URL"] = app.URL()
	second := startCourierProcess(t, env)
	second.token = owner
	eventually(t, 5*time.Second, "the listening line", func() bool { return len(second.logs.events("listening")) == 1 })
	events := second.logs.events("restored", "listening")
	restored := second.logs.entries(map[string]any{"event": "restored"})
	if !slices.Equal(events, []string{"restored", "listening"}) || restored[0]["count"] != float64(12) || restored[0]["file"] != file {
		t.Fatalf("restart: got events %v and %v, want one restored line with count 12, before listening", events, restored)
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the spool after the restart: %v, want it removed", err)
	}
	for _, m := range accepted {
		var got Message
		eventually(t, 10*time.Second, "message "+m.id+" to be sent", func() bool {
			got, _ = second.message(m.id)
			return got.Status == StatusSent
		})
		if got.Body != m.body || got.Attempts != spooledAttempts[m.id]+1 {
			t.Errorf("message %s: got body %q, %d attempts; want %q, the spooled %d and one more", m.id, got.Body, got.Attempts, m.body, spooledAttempts[m.id])
		}
		if m.key != "" {
			r := second.request(http.MethodPost, "/messages", fmt.Sprintf(`{"destination":"+34600000000","body":%q}`, m.body), "Idempotency-Key", m.key)
			if r.status != http.StatusAccepted || r.body["id"] != m.id || r.header.Get("Idempotent-Replayed") != "true" {
				t.Errorf("key %s after the restart: got %d %v, want its first id %s, replayed", m.key, r.status, r.body, m.id)
			}
		}
	}
	second.token = other
	if _, ok := second.message(accepted[0].id); ok {
		t.Errorf("message %s after the restart: another client reads it", accepted[0].id)
	}
	second.token = owner
	app.mu.Lock()
	atMessageapp := map[string]int{}
	for _, b := range app.bodies {
		atMessageapp[b.Body]++
	}
	app.mu.Unlock()
	for _, m := range accepted {
		if atMessageapp[m.body] != 1 {
			t.Errorf("%q reached messageapp %d times, want exactly once", m.body, atMessageapp[m.body])
		}
	}
	if len(atMessageapp) != len(accepted) {
		t.Errorf("messageapp got %d distinct messages, want %d", len(atMessageapp), len(accepted))
	}

	// A crash keeps nothing, and says so: after SIGKILL, an id of the run
	// that was killed is told from an id this run evicted.
	app.set(modeHang)
	r := second.request(http.MethodPost, "/messages", `{"destination":"+34600000000","body":"lost in the crash"}`)
	lost := r.body["id"].(string)
	second.stop(syscall.SIGKILL)
	app.set(modeOK)
	env["MESSAGES_RETAINED"] = "1"
	third := startCourierProcess(t, env)
	third.token = owner
	var evicted string
	for i := range 2 {
		id := third.request(http.MethodPost, "/messages", fmt.Sprintf(`{"destination":"+34600000000","body":"third run %d"}`, i)).body["id"].(string)
		eventually(t, 10*time.Second, "message "+id+" to be sent", func() bool { m, _ := third.message(id); return m.Status == StatusSent })
		if i == 0 {
			evicted = id
		}
	}
	if r := third.request(http.MethodGet, "/messages/"+evicted, ""); r.status != 404 || r.body["code"] != "not_found" {
		t.Errorf("GET of an id this run evicted: got %d %v, want 404 not_found", r.status, r.body)
	}
	for _, id := range []string{lost, accepted[0].id} {
		if r := third.request(http.MethodGet, "/messages/"+id, ""); r.status != 404 || r.body["code"] != "from_earlier_run" {
			t.Errorf("GET of %s, from a run before the crash: got %d %v, want 404 from_earlier_run", id, r.status, r.body)
		}
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a spool after SIGKILL: %v, want none", err)
	}
}

func TestACorruptSpoolStopsTheStartWithStatus2NamingFileAndLine(t *testing.T) {
	dir := t.TempDir()
	file := spoolPath(dir, "")
	content := `{"courier_spool":1,"messages":1,"written_at":"2026-12-05T23:00:00Z"}` + "\n" + `{"id":"a","destination":"d",` + "\n"
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	env := spoolEnv(refusedURL(t), dir)
	env["PORT"] = freePort(t)
	var stdout, stderr logBuffer
	code := run(t.Context(), []string{"courier"}, func(k string) string { return env[k] }, &stdout, &stderr)
	if msg := stderr.String(); code != exitUsage || !strings.HasPrefix(msg, "courier: spool "+file+" line 2: ") || strings.Count(msg, "\n") != 1 {
		t.Errorf("got exit %d and stderr %q, want 2 and one line naming %s line 2", code, msg, file)
	}
	if data, _ := os.ReadFile(file); string(data) != content {
		t.Errorf("the corrupt spool was changed: %q", data)
	}
}

func TestAnUnwritableSpoolFallsBackToListingTheUndelivered(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	s := startService(t, spoolEnv(refusedURL(t), dir))
	var ids []string
	for i := range 3 {
		ids = append(ids, s.post("d", strconv.Itoa(i)).body["id"].(string))
	}
	// The directory is gone and a file is in its place: nothing can be
	// created there (permissions would not stop root).
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if code := s.stop(); code != 0 {
		t.Fatalf("exit status: got %d, want 0", code)
	}
	if failed := s.logs.entries(map[string]any{"event": "spool_failed", "level": "error"}); len(failed) != 1 || failed[0]["file"] != spoolPath(dir, "") {
		t.Errorf("spool_failed line: got %v, want one error naming the file", failed)
	}
	for _, id := range ids {
		if len(s.logs.entries(map[string]any{"event": "undelivered", "id": id})) != 1 {
			t.Errorf("message %s not listed as undelivered", id)
		}
	}
}

func TestMessagesWhoseDeliveryIsUnknownAreNotSpooled(t *testing.T) {
	app := newFakeMessageapp(t, modeHang)
	dir := t.TempDir()
	env := spoolEnv(app.URL(), dir)
	env["SENDERS"], env["MESSAGEAPP_TIMEOUT"] = "1", "1m"
	s := startService(t, env)
	var ids []string
	for i := range 4 {
		ids = append(ids, s.post("d", strconv.Itoa(i)).body["id"].(string))
	}
	<-app.arrived // the first is in messageapp, which does not answer
	if code := s.stop(); code != 0 {
		t.Fatalf("exit status: got %d, want 0", code)
	}
	recs, err := readSpool(spoolPath(dir, ""))
	if err != nil {
		t.Fatal(err)
	}
	var spooled []string
	for _, r := range recs {
		spooled = append(spooled, r.ID)
	}
	if !slices.Equal(spooled, ids[1:]) {
		t.Errorf("spooled: got %v, want %v, all but the one messageapp may have", spooled, ids[1:])
	}
	if got := s.logs.entries(map[string]any{"id": ids[0], "outcome": "timeout"}); len(got) != 1 {
		t.Errorf("the message in messageapp at shutdown: got %v, want a timeout line (delivery unknown)", got)
	}
}

func TestASpoolLargerThanTheQueueIsTakenBackWhole(t *testing.T) {
	dir := t.TempDir()
	var recs []spoolRecord
	ids := NewIDs("")
	for i := range 25 {
		recs = append(recs, spoolRecord{ID: ids.New(), Destination: "d", Body: "spooled " + strconv.Itoa(i), CreatedAt: time.Now()})
	}
	if err := writeSpool(spoolPath(dir, ""), recs, time.Now()); err != nil {
		t.Fatal(err)
	}
	app := newFakeMessageapp(t, modeOK)
	env := spoolEnv(app.URL(), dir)
	env["QUEUE_MAX_SIZE"], env["QUEUE_RECOVERY_THRESHOLD"] = "10", "5"
	s := startService(t, env)
	if got := s.logs.entries(map[string]any{"event": "restored"}); len(got) != 1 || got[0]["count"] != float64(25) {
		t.Fatalf("restored line: got %v, want count 25", got)
	}
	s.waitEvent("listening", 1)
	if got := s.logs.events("enqueueing_disabled", "listening"); len(got) < 2 || got[0] != "enqueueing_disabled" {
		t.Errorf("events: got %v, want enqueueing disabled by the restore, before listening", got)
	}
	for _, r := range recs {
		s.waitStatus(r.ID, StatusSent)
	}
	if st := s.status(); st.Messages.Accepted != 25 || st.Messages.Sent != 25 || !st.Messages.Balanced() || !st.Queue.Accepting {
		t.Errorf("status: got %+v, want 25 accepted and sent, accepting again", st)
	}
}

func TestAnIDFromAnEarlierRunIsToldFromAnUnknownOne(t *testing.T) {
	app := newFakeMessageapp(t, modeOK)
	env := baseEnv(app.URL())
	env["REPLICA"] = "c2"
	s := startService(t, env)
	ours := s.post("d", "b").body["id"].(string)
	earlier := NewIDs("c2").New() // another run's tag: a restart ago
	tests := []struct {
		name, id, code string
	}{
		{"an id an earlier run minted", earlier, "from_earlier_run"},
		{"an id of this run never issued", ours[:len(ours)-4] + "aaaa", "not_found"},
		{"another replica's id", NewIDs("c3").New(), "not_found"},
		{"an id without the replica", NewIDs("").New(), "not_found"},
		{"not an id at all", "hello", "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkProblem(t, s.do(http.MethodGet, "/messages/"+tt.id, "", ""), 404, tt.code)
		})
	}
}

// FuzzReadSpool: whatever a spool file holds, reading it either fails with
// a spoolError naming a line of it, or gives messages fit to deliver, each
// id and key once.
func FuzzReadSpool(f *testing.F) {
	f.Add([]byte(`{"courier_spool":1,"messages":1,"written_at":"2026-12-05T23:00:00Z"}` + "\n" +
		`{"id":"a","idempotency_key":"k","destination":"d","body":"b","attempts":1,"created_at":"2026-12-05T23:00:00Z"}` + "\n"))
	f.Add([]byte(`{"courier_spool":1,"messages":0,"written_at":"2026-12-05T23:00:00Z"}`))
	f.Add([]byte(`{"courier_spool":1,"messages":2}` + "\n" + `{"id":"a"}` + "\n"))
	f.Add([]byte("\n\n"))
	f.Fuzz(func(t *testing.T, content []byte) {
		path := filepath.Join(t.TempDir(), "spool.jsonl")
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		recs, err := readSpool(path)
		var se *spoolError
		switch {
		case err != nil && (!errors.As(err, &se) || se.File != path || se.Line < 1 || se.Line > strings.Count(string(content), "\n")+2):
			// A file cut short is named at the line where its next message should be.
			t.Fatalf("%q: got %v, want a spool error naming a line of the file, or the one after", content, err)
		case err != nil:
			return
		}
		ids, keys := map[string]bool{}, map[string]bool{}
		for _, r := range recs {
			if why := r.problem(); why != "" || ids[r.ID] || (r.Key != "" && keys[r.Client+" "+r.Key]) {
				t.Fatalf("%q: read %+v (%s), which is unfit or repeated", content, r, why)
			}
			ids[r.ID], keys[r.Client+" "+r.Key] = true, true
		}
	})
}
