package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestPostMessageRejectsBadInputWithProblemDetails(t *testing.T) {
	app := newFakeMessageapp(t, modeOK)
	s := startService(t, baseEnv(app.URL()))

	tests := []struct {
		name        string
		contentType string
		body        string
		wantStatus  int
		wantCode    string
		wantFields  []string // fields named in `errors`, in order
	}{
		{"malformed JSON", "application/json", `{"destination": "a",`, 400, "invalid_request", nil},
		{"not JSON at all", "application/json", `hello`, 400, "invalid_request", nil},
		{"empty body", "application/json", ``, 400, "invalid_request", nil},
		{"array instead of object", "application/json", `["a","b"]`, 400, "invalid_request", nil},
		{"null body", "application/json", `null`, 400, "invalid_request", nil},
		{"two objects", "application/json", `{"destination":"a","body":"b"} {}`, 400, "invalid_request", nil},
		{"destination missing", "application/json", `{"body":"b"}`, 400, "invalid_request", []string{"destination"}},
		{"body missing", "application/json", `{"destination":"a"}`, 400, "invalid_request", []string{"body"}},
		{"both missing", "application/json", `{}`, 400, "invalid_request", []string{"destination", "body"}},
		{"destination empty", "application/json", `{"destination":"","body":"b"}`, 400, "invalid_request", []string{"destination"}},
		{"body only spaces", "application/json", `{"destination":"a","body":"   "}`, 400, "invalid_request", []string{"body"}},
		{"destination a number", "application/json", `{"destination":42,"body":"b"}`, 400, "invalid_request", []string{"destination"}},
		{"body null", "application/json", `{"destination":"a","body":null}`, 400, "invalid_request", []string{"body"}},
		{"unknown field", "application/json", `{"destination":"a","body":"b","priority":1}`, 400, "invalid_request", []string{"priority"}},
		{"field names are case-sensitive", "application/json", `{"Destination":"a","body":"b"}`, 400, "invalid_request", []string{"destination", "Destination"}},
		{"a field given twice", "application/json", `{"destination":"a","body":"a","body":"b"}`, 400, "invalid_request", []string{"body"}},
		{"body over 64 KiB", "application/json", `{"destination":"a","body":"` + strings.Repeat("x", 64<<10) + `"}`, 413, "payload_too_large", nil},
		{"body over 64 KiB that is not JSON", "application/json", strings.Repeat("a", 1<<20), 413, "payload_too_large", nil},
		{"body over 64 KiB with a content type that is not JSON either", "text/plain", strings.Repeat("a", 200<<10), 413, "payload_too_large", nil},
		{"a flood of unknown fields: ten are named, the rest counted", "application/json",
			`{"destination":"a","body":"b",` + manyFields(500) + `}`, 400, "invalid_request",
			[]string{"f000", "f001", "f002", "f003", "f004", "f005", "f006", "f007", "f008", "f009", "<nil>"}},
		{"form content type (curl -d)", "application/x-www-form-urlencoded", `{"destination":"a","body":"b"}`, 415, "unsupported_media_type", nil},
		{"text/plain", "text/plain", `{"destination":"a","body":"b"}`, 415, "unsupported_media_type", nil},
		{"unparsable content type", "application/", `{"destination":"a","body":"b"}`, 415, "unsupported_media_type", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := s.do(http.MethodPost, "/messages", tt.contentType, tt.body)
			if r.status != tt.wantStatus {
				t.Fatalf("status: got %d, want %d (body %v)", r.status, tt.wantStatus, r.body)
			}
			checkProblem(t, r, tt.wantStatus, tt.wantCode)
			if tt.wantFields != nil {
				var got []string
				errs, _ := r.body["errors"].([]any)
				for _, e := range errs {
					got = append(got, fmt.Sprint(e.(map[string]any)["field"]))
				}
				if strings.Join(got, ",") != strings.Join(tt.wantFields, ",") {
					t.Errorf("errors fields: got %v, want %v", got, tt.wantFields)
				}
				for _, f := range tt.wantFields {
					if f != "<nil>" && !strings.Contains(r.body["detail"].(string), f) {
						t.Errorf("detail %q does not name field %q", r.body["detail"], f)
					}
				}
			}
		})
	}
	if st := s.status(); st.Messages.Accepted != 0 {
		t.Errorf("accepted after only bad requests: got %d, want 0", st.Messages.Accepted)
	}
	if app.calls.Load() != 0 {
		t.Errorf("messageapp calls after only bad requests: got %d, want 0", app.calls.Load())
	}
}

// checkProblem asserts an RFC 9457 body with courier's code.
func checkProblem(t *testing.T, r response, status int, code string) {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type: got %q, want application/problem+json", ct)
	}
	if got := r.body["code"]; got != code {
		t.Errorf("code: got %v, want %s", got, code)
	}
	if got := r.body["status"]; got != float64(status) {
		t.Errorf("status member: got %v, want %d", got, status)
	}
	for _, k := range []string{"type", "title", "detail"} {
		if s, _ := r.body[k].(string); s == "" {
			t.Errorf("problem member %q missing or empty in %v", k, r.body)
		}
	}
}

func TestPostMessageProblemDetailSaysWhatIsWrong(t *testing.T) {
	app := newFakeMessageapp(t, modeOK)
	s := startService(t, baseEnv(app.URL()))
	tests := []struct{ body, want string }{
		{``, "request body is empty"},
		{`{"destination": "a",`, "the body ends before the object does"},
		{`{"destination": "a"`, "the body ends before the object does"},
		{`["a"]`, "must be a JSON object, not an array"},
		{`"a"`, "must be a JSON object, not a string"},
		{`null`, "must be a JSON object, not null"},
		{`{"destination":"a","body":"b"} {}`, "exactly one JSON object"},
		{`{"destination":"a","destination":"a","body":"b"}`, `field "destination" is given more than once`},
		{`{"destination":"a",,}`, "malformed JSON at byte"},
	}
	for _, tt := range tests {
		t.Run(tt.body, func(t *testing.T) {
			r := s.do(http.MethodPost, "/messages", "application/json", tt.body)
			if d, _ := r.body["detail"].(string); r.status != 400 || !strings.Contains(d, tt.want) {
				t.Errorf("got %d %q, want 400 with a detail saying %q", r.status, d, tt.want)
			}
		})
	}
}

func TestAFieldOfTheWrongTypeIsToldItMustBeAString(t *testing.T) {
	app := newFakeMessageapp(t, modeOK)
	s := startService(t, baseEnv(app.URL()))
	tests := []struct{ body, field, want string }{
		{`{"destination":34,"body":"x"}`, "destination", "destination must be a string, not a number"},
		{`{"destination":true,"body":"x"}`, "destination", "destination must be a string, not a boolean"},
		{`{"destination":["a"],"body":"x"}`, "destination", "destination must be a string, not an array"},
		{`{"destination":{},"body":"x"}`, "destination", "destination must be a string, not an object"},
		{`{"destination":null,"body":"x"}`, "destination", "destination must be a string, not null"},
		{`{"destination":"a","body":5}`, "body", "body must be a string, not a number"},
		{`{"body":5,"destination":"a"}`, "body", "body must be a string, not a number"},
	}
	for _, tt := range tests {
		t.Run(tt.body, func(t *testing.T) {
			r := s.do(http.MethodPost, "/messages", "application/json", tt.body)
			checkProblem(t, r, 400, "invalid_request")
			errs, _ := r.body["errors"].([]any)
			if len(errs) != 1 {
				t.Fatalf("errors: got %v, want one, about %s", errs, tt.field)
			}
			e := errs[0].(map[string]any)
			if e["field"] != tt.field || e["detail"] != tt.want {
				t.Errorf("error: got %v, want field %s with detail %q", e, tt.field, tt.want)
			}
			if d, _ := r.body["detail"].(string); !strings.Contains(d, tt.want) || strings.Contains(d, "must not be empty") {
				t.Errorf("detail: got %q, want it to say %q and not \"must not be empty\"", d, tt.want)
			}
		})
	}
}

func TestABodyDeclaredTooLargeIsRefusedBeforeItIsSent(t *testing.T) {
	app := newFakeMessageapp(t, modeOK)
	s := startService(t, baseEnv(app.URL()))
	// What curl does with a large body: announce it and wait for 100 Continue.
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "POST /messages HTTP/1.1\r\nHost: courier\r\nContent-Type: application/json\r\n"+
		"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n", 20<<20)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to the announced body: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("got %s %q, want 413 as problem+json before any of the body is sent", resp.Status, resp.Header.Get("Content-Type"))
	}
}

func TestPostMessageAcceptsJSONVariants(t *testing.T) {
	app := newFakeMessageapp(t, modeOK)
	s := startService(t, baseEnv(app.URL()))
	for _, ct := range []string{"", "application/json", "application/json; charset=utf-8", "application/vnd.courier+json"} {
		t.Run("Content-Type "+strconv.Quote(ct), func(t *testing.T) {
			r := s.do(http.MethodPost, "/messages", ct, `{"destination":"+34600000000","body":"hi"}`)
			if r.status != http.StatusAccepted {
				t.Fatalf("status: got %d, want 202 (%v)", r.status, r.body)
			}
		})
	}
}

func TestAcceptedMessageIsQueuedThenSent(t *testing.T) {
	app := newFakeMessageapp(t, modeOK)
	s := startService(t, baseEnv(app.URL()))

	r := s.post("+34600000000", "hello")
	if r.status != http.StatusAccepted {
		t.Fatalf("status: got %d, want 202", r.status)
	}
	id, _ := r.body["id"].(string)
	if id == "" || r.body["status"] != "queued" {
		t.Fatalf("body: got %v, want an id and status queued", r.body)
	}
	if loc := r.header.Get("Location"); loc != "/messages/"+id {
		t.Errorf("Location: got %q, want /messages/%s", loc, id)
	}
	m := s.waitStatus(id, StatusSent)
	if m.Attempts != 1 || m.Destination != "+34600000000" || m.Body != "hello" || m.LastError != nil {
		t.Errorf("message: got %+v, want 1 attempt, the posted fields, no last_error", m)
	}
	if m.CreatedAt.IsZero() || m.UpdatedAt.Before(m.CreatedAt) {
		t.Errorf("timestamps: created %v updated %v", m.CreatedAt, m.UpdatedAt)
	}
	app.mu.Lock()
	got := app.bodies
	app.mu.Unlock()
	if len(got) != 1 || got[0] != (sendRequest{Destination: "+34600000000", Body: "hello"}) {
		t.Errorf("messageapp received %v, want one {+34600000000 hello}", got)
	}
	lines := s.logs.entries(map[string]any{"id": id, "outcome": "sent"})
	if len(lines) != 1 || lines[0]["attempt"] != float64(1) || lines[0]["duration_ms"] == nil || lines[0]["level"] != "info" {
		t.Errorf("attempt log: got %v, want one info line with attempt 1 and duration_ms", lines)
	}
}

func TestGetUnknownMessageIsNotFound(t *testing.T) {
	app := newFakeMessageapp(t, modeOK)
	s := startService(t, baseEnv(app.URL()))
	r := s.do(http.MethodGet, "/messages/nope", "", "")
	if r.status != http.StatusNotFound {
		t.Fatalf("status: got %d, want 404", r.status)
	}
	checkProblem(t, r, 404, "not_found")
}

func TestUnknownRoutesAndMethodsAreProblems(t *testing.T) {
	app := newFakeMessageapp(t, modeOK)
	s := startService(t, baseEnv(app.URL()))
	checkProblem(t, s.do(http.MethodGet, "/nowhere", "", ""), 404, "not_found")
	r := s.do(http.MethodDelete, "/messages", "", "")
	if r.status != http.StatusMethodNotAllowed {
		t.Fatalf("status: got %d, want 405", r.status)
	}
	checkProblem(t, r, 405, "method_not_allowed")
}

func TestAPathWithATrailingSlashIsANotFoundProblemNotARedirect(t *testing.T) {
	app := newFakeMessageapp(t, modeOK)
	s := startService(t, baseEnv(app.URL()))
	s.client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	for _, path := range []string{"/messages/", "/status/", "/healthz/", "/STATUS"} {
		t.Run(path, func(t *testing.T) {
			r := s.do(http.MethodGet, path, "", "")
			if r.status != http.StatusNotFound {
				t.Fatalf("status: got %d (Location %q), want 404", r.status, r.header.Get("Location"))
			}
			checkProblem(t, r, 404, "not_found")
		})
	}
}

func TestAPostToMessageSingularPointsAtMessages(t *testing.T) {
	app := newFakeMessageapp(t, modeOK)
	s := startService(t, baseEnv(app.URL()))
	r := s.do(http.MethodPost, "/message", "application/json", `{"destination":"d","body":"b"}`)
	checkProblem(t, r, 404, "not_found")
	if detail, _ := r.body["detail"].(string); !strings.Contains(detail, "POST /messages") {
		t.Errorf("detail: got %q, want it to point at POST /messages", detail)
	}
}

func TestHeadIsAnsweredLikeGetWithoutABody(t *testing.T) {
	app := newFakeMessageapp(t, modeOK)
	s := startService(t, baseEnv(app.URL()))
	id := s.post("d", "b").body["id"].(string)
	call := func(method, path string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, s.url+path, nil)
		resp, err := s.client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, body
	}
	for _, path := range []string{"/messages", "/messages/" + id, "/messages/unknown", "/status", "/healthz", "/readyz", "/", "/metrics", "/events"} {
		t.Run(path, func(t *testing.T) {
			head, body := call(http.MethodHead, path)
			if len(body) != 0 {
				t.Errorf("HEAD body: got %d bytes, want none", len(body))
			}
			wantStatus, wantType := http.StatusOK, "text/event-stream"
			if path != "/events" { // GET streams for ever
				get, _ := call(http.MethodGet, path)
				wantStatus, wantType = get.StatusCode, get.Header.Get("Content-Type")
			}
			if head.StatusCode != wantStatus || head.Header.Get("Content-Type") != wantType {
				t.Errorf("HEAD: got %d %q, want %d %q as GET answers", head.StatusCode, head.Header.Get("Content-Type"), wantStatus, wantType)
			}
		})
	}
	r := s.do(http.MethodHead, "/messages/"+id+"/x", "", "")
	if r.status != http.StatusNotFound {
		t.Errorf("HEAD on no route: got %d, want 404", r.status)
	}
}

func TestListMessagesNewestFirstWithLimitAndStatus(t *testing.T) {
	app := newFakeMessageapp(t, modeOK)
	s := startService(t, baseEnv(app.URL()))
	var ids []string
	for i := range 5 {
		r := s.post("d", fmt.Sprint("m", i))
		ids = append(ids, r.body["id"].(string))
	}
	for _, id := range ids {
		s.waitStatus(id, StatusSent)
	}
	list := func(query string) ([]string, response) {
		r := s.do(http.MethodGet, "/messages"+query, "", "")
		var got []string
		msgs, _ := r.body["messages"].([]any)
		for _, m := range msgs {
			got = append(got, m.(map[string]any)["id"].(string))
		}
		return got, r
	}
	got, _ := list("")
	want := []string{ids[4], ids[3], ids[2], ids[1], ids[0]}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("newest first: got %v, want %v", got, want)
	}
	if got, _ := list("?limit=2"); strings.Join(got, ",") != strings.Join(want[:2], ",") {
		t.Errorf("limit 2: got %v, want %v", got, want[:2])
	}
	if got, _ := list("?status=sent&limit=1000"); len(got) != 5 {
		t.Errorf("status=sent: got %d messages, want 5", len(got))
	}
	if got, r := list("?status=failed"); len(got) != 0 || r.status != 200 {
		t.Errorf("status=failed: got %v (%d), want none", got, r.status)
	}
	for _, q := range []string{"?limit=0", "?limit=1001", "?limit=x", "?status=lost"} {
		if _, r := list(q); r.status != 400 {
			t.Errorf("%s: got %d, want 400", q, r.status)
		} else {
			checkProblem(t, r, 400, "invalid_request")
		}
	}
}

func TestHealthAndReadiness(t *testing.T) {
	app := newFakeMessageapp(t, modeOK)
	s := startService(t, baseEnv(app.URL()))
	if r := s.do(http.MethodGet, "/healthz", "", ""); r.status != 200 {
		t.Errorf("/healthz: got %d, want 200", r.status)
	}
	if r := s.do(http.MethodGet, "/readyz", "", ""); r.status != 200 {
		t.Errorf("/readyz: got %d, want 200", r.status)
	}
}

func TestStatusReportsConfigurationAndCounters(t *testing.T) {
	app := newFakeMessageapp(t, modeOK)
	s := startService(t, baseEnv(app.URL()))
	id := s.post("d", "b").body["id"].(string)
	s.waitStatus(id, StatusSent)
	st := s.status()
	want := statusResponse{
		Queue:   queueStatus{Depth: 0, MaxSize: 10, RecoveryThreshold: 5, Accepting: true},
		Circuit: circuitStatus{State: CircuitClosed},
		// One call is too few for the law to move the limit, or measure.
		Concurrency: concurrencyStatus{Mode: "adaptive", Limit: 4, Ceiling: 4},
		Messages:    Counts{Accepted: 1, Sent: 1},
		Senders:     4,
	}
	if st != want {
		t.Errorf("status: got %+v, want %+v", st, want)
	}
}

func TestConcurrentPostsNeverOverfillTheQueue(t *testing.T) {
	app := newFakeMessageapp(t, modeHang)
	env := baseEnv(app.URL())
	env["SENDERS"] = "2"
	env["MESSAGEAPP_TIMEOUT"] = "1m"
	s := startService(t, env)
	// Both senders hang on messageapp, so nothing drains: exactly
	// 2 (held by senders) + 10 (the queue) POSTs can be accepted.
	s.post("d", "1")
	s.post("d", "2")
	eventually(t, 5*time.Second, "both senders to be busy", func() bool { return s.status().Messages.Sending == 2 })

	const clients = 150
	var wg sync.WaitGroup
	codes := make(chan int, clients)
	for i := range clients {
		wg.Go(func() { codes <- s.post("d", strconv.Itoa(i)).status })
	}
	wg.Wait()
	close(codes)
	counts := map[int]int{}
	for c := range codes {
		counts[c]++
	}
	if counts[202] != 10 || counts[503] != clients-10 {
		t.Errorf("answers: got %v, want 10×202 and %d×503", counts, clients-10)
	}
	st := s.status()
	if st.Queue.Depth != 10 || st.Queue.Accepting {
		t.Errorf("queue: got %+v, want depth 10, not accepting", st.Queue)
	}
	if st.Messages.Rejected != clients-10 || !st.Messages.Balanced() {
		t.Errorf("counters: got %+v, want %d rejected and balanced", st.Messages, clients-10)
	}
	if got := s.logs.events("enqueueing_disabled"); len(got) != 1 {
		t.Errorf("enqueueing_disabled lines: got %d, want exactly 1", len(got))
	}
	r := s.post("d", "late")
	checkProblem(t, r, 503, "queue_full")
	ra, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || ra < 1 || ra > 60 || r.body["retry_after_seconds"] != float64(ra) {
		t.Errorf("Retry-After: got header %q body %v, want the same whole seconds in 1..60", r.header.Get("Retry-After"), r.body["retry_after_seconds"])
	}
	q, _ := r.body["queue"].(map[string]any)
	c, _ := r.body["circuit"].(map[string]any)
	if q["depth"] != float64(10) || q["max_size"] != float64(10) || q["recovery_threshold"] != float64(5) || c["state"] != "closed" {
		t.Errorf("queue_full body: got queue %v circuit %v", q, c)
	}
	ready := s.do(http.MethodGet, "/readyz", "", "")
	checkProblem(t, ready, 503, "queue_full")
	if ready.header.Get("Retry-After") == "" {
		t.Error("/readyz 503 has no Retry-After")
	}
	if hz := s.do(http.MethodGet, "/healthz", "", ""); hz.status != 200 {
		t.Errorf("/healthz while full: got %d, want 200", hz.status)
	}
}

// manyFields is n unknown members, "f000":0 and on, comma-separated.
func manyFields(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf(`"f%03d":%d`, i, i)
	}
	return strings.Join(parts, ",")
}

func TestTextThatIsNotUTF8IsRefusedNamingTheField(t *testing.T) {
	app := newFakeMessageapp(t, modeOK)
	s := startService(t, baseEnv(app.URL()))
	tests := []struct {
		name, body, field, want string
	}{
		{"an invalid byte in the body", `{"destination":"a","body":"caf` + "\xe9 \xff\xfe" + ` ok"}`, "body", "not valid UTF-8"},
		{"an invalid byte in the destination", `{"destination":"+34` + "\xff" + `","body":"b"}`, "destination", "not valid UTF-8"},
		{"a surrogate encoded as UTF-8", `{"destination":"a","body":"` + "\xed\xa0\x80" + `"}`, "body", "not valid UTF-8"},
		{"a lone high surrogate escape", `{"destination":"a","body":"x\ud83dy"}`, "body", `unpaired UTF-16 surrogate escape (\ud83d)`},
		{"a lone low surrogate escape", `{"destination":"\uDE00","body":"b"}`, "destination", `unpaired UTF-16 surrogate escape (\uDE00)`},
		{"a high surrogate before a letter", `{"destination":"a","body":"\ud83d\u0041"}`, "body", "unpaired UTF-16 surrogate"},
		{"a high surrogate at the end", `{"destination":"a","body":"\ud83d"}`, "body", "unpaired UTF-16 surrogate"},
		{"64 KiB of 0xFF, which would be stored threefold", `{"destination":"a","body":"` + strings.Repeat("\xff", 65525-len(`{"destination":"a","body":""}`)) + `"}`, "body", "not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := s.do(http.MethodPost, "/messages", "application/json", tt.body)
			checkProblem(t, r, 400, "invalid_request")
			errs, _ := r.body["errors"].([]any)
			if len(errs) != 1 || errs[0].(map[string]any)["field"] != tt.field {
				t.Errorf("errors: got %v, want one naming %s", errs, tt.field)
			}
			if d, _ := r.body["detail"].(string); !strings.Contains(d, tt.field) || !strings.Contains(d, tt.want) {
				t.Errorf("detail: got %q, want it to name %s and say %q", d, tt.field, tt.want)
			}
		})
	}
	if st := s.status(); st.Messages.Accepted != 0 {
		t.Errorf("accepted: got %d, want 0", st.Messages.Accepted)
	}
}

func TestTextIsStoredAndDeliveredAsSent(t *testing.T) {
	app := newFakeMessageapp(t, modeOK)
	s := startService(t, baseEnv(app.URL()))
	tests := []struct{ name, json, want string }{
		{"UTF-8 as is", `"café ☕ 日本"`, "café ☕ 日本"},
		{"escaped", `"caf\u00e9 \u2615"`, "café ☕"},
		{"a surrogate pair", `"\ud83d\ude00 and ` + "\U0001F600" + `"`, "\U0001F600 and \U0001F600"},
		{"a replacement character that was sent", `"\ufffd` + "\ufffd" + `"`, "\ufffd\ufffd"},
		{"separators and NUL", `"a\u2028b\u0000c"`, "a\u2028b\x00c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := s.do(http.MethodPost, "/messages", "application/json", `{"destination":"+34600000000","body":`+tt.json+`}`)
			if r.status != http.StatusAccepted {
				t.Fatalf("got %d %v, want 202", r.status, r.body)
			}
			if m := s.waitStatus(r.body["id"].(string), StatusSent); m.Body != tt.want {
				t.Errorf("GET body: got %q, want %q", m.Body, tt.want)
			}
			app.mu.Lock()
			got := app.bodies[len(app.bodies)-1].Body
			app.mu.Unlock()
			if got != tt.want {
				t.Errorf("at messageapp: got %q, want %q", got, tt.want)
			}
		})
	}
}
