package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"
)

// newFuzzAPI is the real HTTP API over a real queue, breaker and store,
// with no senders: what a POST does up to the queue.
func newFuzzAPI(t *testing.T) http.Handler {
	return newTestService(t, map[string]string{"QUEUE_MAX_SIZE": "4", "QUEUE_RECOVERY_THRESHOLD": "1"}).routes()
}

// FuzzPostMessage: whatever arrives, POST /messages answers 202 or a
// problem+json 4xx/503 with a code; never a panic, never another 5xx.
func FuzzPostMessage(f *testing.F) {
	f.Add("application/json", "", []byte(`{"destination":"+34600000000","body":"hi"}`))
	f.Add("application/json", "k-1", []byte(`{"destination":"a","body":"b","x":1}`))
	f.Add("", "", []byte(`{"destination":"","body":null}`))
	f.Add("text/plain", "", []byte(`hello`))
	f.Add("application/json; charset=utf-8", "key with space", []byte(`[1,2]`))
	f.Add("application/problem+json", "", []byte(`{"destination":"\u0000","body":"\ud800"} {}`))
	f.Fuzz(func(t *testing.T, contentType, key string, body []byte) {
		h := newFuzzAPI(t)
		for range 2 { // the second POST exercises the key's replay or conflict path
			req := httptest.NewRequest(http.MethodPost, "/messages", bytes.NewReader(body))
			if contentType != "" {
				req.Header.Set("Content-Type", contentType)
			}
			if key != "" {
				req.Header.Set("Idempotency-Key", key)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			checkFuzzAnswer(t, rec)
		}
	})
}

func checkFuzzAnswer(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("status %d with a body that is not a JSON object: %q", rec.Code, rec.Body.String())
	}
	switch rec.Code {
	case http.StatusAccepted:
		if id, _ := got["id"].(string); id == "" {
			t.Fatalf("202 without an id: %v", got)
		}
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType,
		http.StatusUnprocessableEntity, http.StatusServiceUnavailable:
		if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
			t.Fatalf("%d with Content-Type %q", rec.Code, ct)
		}
		if code, _ := got["code"].(string); code == "" || got["status"] != float64(rec.Code) {
			t.Fatalf("%d problem without its code or status: %v", rec.Code, got)
		}
	default:
		t.Fatalf("unexpected status %d: %s", rec.Code, rec.Body.String())
	}
}

// FuzzLoadConfig: any values either make a config that keeps its own rules
// or are refused with one line for each bad variable, naming it.
func FuzzLoadConfig(f *testing.F) {
	f.Add("9001", "10", "5", "1s", "500ms", "10s", "16", "http://localhost:3000/message")
	f.Add("0", "1", "0", "1ms", "1ms", "1ms", "1", "")
	f.Add("-1", "0", "-1", "0", "-1s", "1h1m", "0", "ftp://x")
	f.Add("65536", "1000001", "1000000", "1", "10m1s", "10m", "1025", "http://[::1")
	f.Add("  9001 ", "1e3", "0x10", "1.5s", "2h", "1µs", "+4", "http:///message")
	f.Fuzz(func(t *testing.T, port, max, recovery, timeout, initial, maxBackoff, senders, url string) {
		env := map[string]string{"PORT": port, "QUEUE_MAX_SIZE": max, "QUEUE_RECOVERY_THRESHOLD": recovery,
			"MESSAGEAPP_TIMEOUT": timeout, "BREAKER_BACKOFF_INITIAL": initial, "BREAKER_BACKOFF_MAX": maxBackoff,
			"SENDERS": senders, "MESSAGEAPP_URL": url}
		cfg, err := loadConfig(func(k string) string { return env[k] })
		if err != nil {
			var errs configErrors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error without a variable: %v", err)
			}
			seen := map[string]bool{}
			for _, ce := range errs {
				if ce.Var == "" || ce.Allowed == "" || seen[ce.Var] {
					t.Fatalf("problem without its variable, or a variable named twice: %v", err)
				}
				seen[ce.Var] = true
				if _, ok := env[ce.Var]; !ok {
					t.Fatalf("error names %s, which was not among the inputs: %v", ce.Var, err)
				}
				if strings.ContainsAny(ce.Error(), "\n\r") {
					t.Fatalf("one problem spans lines: %q", ce)
				}
			}
			return
		}
		if cfg.QueueRecovery >= cfg.QueueMaxSize || cfg.QueueMaxSize < 1 || cfg.QueueRecovery < 0 ||
			cfg.Senders < 1 || cfg.MessageappTimeout <= 0 || cfg.BackoffInitial <= 0 || cfg.BackoffMax < cfg.BackoffInitial ||
			cfg.Port < 0 || cfg.Port > 65535 {
			t.Fatalf("accepted a config that breaks its rules: %+v", cfg)
		}
	})
}

// FuzzDecodePlainAgreesWithTheGeneralDecoder: whatever the fast decoder
// accepts, the general one accepts too, with the same fields and no problem.
func FuzzDecodePlainAgreesWithTheGeneralDecoder(f *testing.F) {
	for _, b := range []string{
		`{"destination":"+34600000000","body":"hi"}`,
		` { "body" : "b" ,` + "\n\t" + `"destination":"d" } `,
		`{"destination":"d","body":"b","body":"c"}`,
		`{"destination":"d","destination":"e"}`,
		`{"destination":"d\u0041","body":"b"}`,
		`{"destination":"d","body":"caf` + "\xc3\xa9" + `"}`,
		`{"destination":"d","body":"` + "\xff" + `"}`,
		`{"destination":" ","body":"b"}`,
		`{"destination":"d","body":"b"} {}`,
		`{"Destination":"d","body":"b"}`,
	} {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, ok := decodePlain(b)
		if !ok {
			return
		}
		general, problems, err := decodeGeneral(b)
		if err != nil || len(problems) > 0 || general != fast {
			t.Fatalf("%q: fast decoder read %+v; general read %+v, %v, %v", b, fast, general, problems, err)
		}
	})
}

// FuzzAcceptedTextIsKeptAsSent: whatever body either decoder accepts, its
// strings are valid UTF-8 that JSON carries unchanged (so messageapp gets
// what was accepted), and they are no larger than the request (so the
// 64 KiB limit holds on what is stored).
func FuzzAcceptedTextIsKeptAsSent(f *testing.F) {
	for _, b := range []string{
		`{"destination":"d","body":"caf` + "\xc3\xa9" + `"}`,
		`{"destination":"d","body":"caf` + "\xe9 \xff\xfe" + ` ok"}`,
		`{"destination":"\u00e9\ud83d\ude00","body":"\ud800"}`,
		`{"destination":"d","body":"\udc00\ud800"}`,
		`{"destination":"d","body":"\ud83d\u0041"}`,
		`{"destination":"d","body":"\ufffd` + "\xef\xbf\xbd" + `"}`,
		`{"destination":"d","body":"` + "\xed\xa0\x80" + `"}`,
		`{"destination":"d","body":"` + strings.Repeat("\xff", 40) + `"}`,
	} {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, problems, err := decodeGeneral(b)
		if fast, ok := decodePlain(b); ok {
			req, problems, err = fast, nil, nil
		}
		if err != nil || len(problems) > 0 {
			return
		}
		// U+FFFD is what a decoder puts for what is not text: an accepted
		// one must have been sent as one.
		sent := bytes.Count(b, []byte("\uFFFD")) + bytes.Count(bytes.ToLower(b), []byte(`\ufffd`))
		if got := strings.Count(req.Destination+req.Body, "\uFFFD"); got > sent {
			t.Fatalf("%q: accepted %+v with %d U+FFFD, the request had %d", b, req, got, sent)
		}
		for _, s := range []string{req.Destination, req.Body} {
			again, _ := json.Marshal(s)
			var back string
			if !utf8.ValidString(s) || json.Unmarshal(again, &back) != nil || back != s {
				t.Fatalf("%q: accepted %q, which JSON does not carry unchanged", b, s)
			}
		}
		if n := len(req.Destination) + len(req.Body); n > len(b) {
			t.Fatalf("%q: stores %d bytes from a %d-byte request", b, n, len(b))
		}
	})
}

func TestDecodePlainTakesOnlyThePlainShape(t *testing.T) {
	tests := []struct {
		body string
		want bool
	}{
		{`{"destination":"+34600000000","body":"hi"}`, true},
		{` { "body" : "b" , "destination" : "d" } `, true},
		{`{"destination":"d","body":"caf` + "\xc3\xa9" + `"}`, true},
		{`{"destination":"d","body":"b","body":"c"}`, false},   // repeated: a 400
		{`{"destination":"d","body":"b","x":1}`, false},        // unknown field: a 400
		{`{"destination":"d\n","body":"b"}`, false},            // escaped: the general decoder unescapes
		{`{"destination":"d","body":"` + "\xff" + `"}`, false}, // invalid UTF-8: a 400 from the general decoder
		{`{"destination":" ","body":"b"}`, false},              // blank: a 400
		{`{"destination":"d","body":"b"} {}`, false},           // two values: a 400
		{`{"destination":"d"}`, false},                         // missing: a 400
	}
	for _, tt := range tests {
		if _, got := decodePlain([]byte(tt.body)); got != tt.want {
			t.Errorf("%q: got %v, want %v", tt.body, got, tt.want)
		}
	}
}

// FuzzEncodeSendRequestIsJSONMarshal: the body courier sends messageapp is
// byte for byte what json.Marshal gives, on the fast path or off it.
func FuzzEncodeSendRequestIsJSONMarshal(f *testing.F) {
	for _, s := range [][2]string{
		{"+34600000000", "a message of a usual size"},
		{"d", `say "hi"`},
		{"d", "tab\there"},
		{"d", "<b>&amp;</b>"},
		{"d", "café ☕"},
		{"d", "\xff"},
		{"d", "\u2028"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, destination, body string) {
		want, _ := json.Marshal(sendRequest{Destination: destination, Body: body})
		got, err := encodeSendRequest(newDelivery("id", destination, body, ""))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("got %s, %v; want %s", got, err, want)
		}
	})
}

func TestThe202BodyIsWhatTheJSONEncoderWrites(t *testing.T) {
	for _, id := range []string{"d4jq2bhksducd034pvm0", "c2-d4jq2bhksducd034pvm0"} {
		rec := httptest.NewRecorder()
		writeJSON(rec, http.StatusAccepted, postMessageResponse{ID: id, Status: StatusQueued})
		b, ok := appendPlainJSONString([]byte(`{"id":`), id)
		if got := string(append(b, `,"status":"queued"}`+"\n"...)); !ok || got != rec.Body.String() {
			t.Errorf("id %s: got %q (%v), want %q", id, got, ok, rec.Body.String())
		}
	}
}
