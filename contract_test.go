package main

// contract_test.go holds courier to openapi.yaml: every request the HTTP
// tests send through a contract client, and every answer, is validated
// against the document, and when the whole suite has run, every status the
// document declares must have been seen in a validated answer.

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"mime"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

func init() {
	// The dashboard is validated as a string, like the other text bodies.
	openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.PlainBodyDecoder)
}

// loadContract parses and validates the embedded openapi.yaml and builds a
// router for it. The servers are dropped so that any test address matches.
var loadContract = sync.OnceValues(func() (routers.Router, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(openAPIDocument)
	if err != nil {
		return nil, fmt.Errorf("openapi.yaml does not load: %w", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("openapi.yaml is not a valid OpenAPI document: %w", err)
	}
	doc.Servers = nil
	return legacy.NewRouter(doc)
})

// contractDocument is the parsed document, for the coverage check.
var contractDocument = sync.OnceValue(func() *openapi3.T {
	doc, err := openapi3.NewLoader().LoadFromData(openAPIDocument)
	if err != nil {
		panic(err)
	}
	return doc
})

// contractSeen records "METHOD /path/template STATUS" for every answer that
// passed validation, across the whole test binary.
var contractSeen = struct {
	mu sync.Mutex // guards m
	m  map[string]bool
}{m: map[string]bool{}}

// contractTransport validates each exchange against openapi.yaml and fails
// t on a mismatch: a response the document does not allow, or a request
// the document forbids that courier nevertheless did not refuse.
type contractTransport struct {
	t    testing.TB
	next http.RoundTripper
}

// contractClient is an HTTP client for courier's tests whose every exchange
// is held to openapi.yaml.
func contractClient(t testing.TB) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Timeout: 10 * time.Second, Transport: &contractTransport{t: t, next: tr}}
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// wrapped transport.
func (c *contractTransport) CloseIdleConnections() {
	if ci, ok := c.next.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

func (c *contractTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var reqBody []byte
	if req.Body != nil {
		var err error
		if reqBody, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
		req.Body.Close()
	}
	out := req.Clone(req.Context())
	if req.Body != nil {
		out.Body = io.NopCloser(bytes.NewReader(reqBody))
	}
	resp, err := c.next.RoundTrip(out)
	if err != nil {
		return nil, err
	}
	seen, problem := c.check(req, reqBody, resp)
	if problem != "" {
		c.t.Errorf("openapi.yaml: %s %s answered %d: %s", req.Method, req.URL.RequestURI(), resp.StatusCode, problem)
	} else if seen != "" {
		contractSeen.mu.Lock()
		contractSeen.m[seen] = true
		contractSeen.mu.Unlock()
	}
	return resp, nil
}

// check validates one exchange and returns what is wrong with it, if
// anything, or else the documented response it showed ("METHOD /path
// STATUS", empty when none). It leaves resp's body readable (a stream is
// not read at all).
func (c *contractTransport) check(req *http.Request, reqBody []byte, resp *http.Response) (seen, problem string) {
	router, err := loadContract()
	if err != nil {
		return "", err.Error()
	}
	// The request as the document sees it: HEAD is GET without a body,
	// and a body with no or a +json media type is read as JSON.
	v := req.Clone(context.Background())
	v.Body = io.NopCloser(bytes.NewReader(reqBody))
	head := req.Method == http.MethodHead
	if head {
		v.Method = http.MethodGet
	}
	if len(reqBody) > 0 {
		if mt, _, err := mime.ParseMediaType(v.Header.Get("Content-Type")); v.Header.Get("Content-Type") == "" || (err == nil && strings.HasSuffix(mt, "+json")) {
			v.Header.Set("Content-Type", "application/json")
		}
	}

	stream := strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
	var body []byte
	if !stream {
		var err error
		if body, err = io.ReadAll(resp.Body); err != nil {
			return "", fmt.Sprintf("reading the body: %v", err)
		}
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
	}
	if head && len(body) > 0 {
		return "", fmt.Sprintf("HEAD answered with a %d-byte body", len(body))
	}

	route, params, err := router.FindRoute(v)
	if err == nil && !pathTemplate(route.Path).MatchString(v.URL.Path) {
		// The router forgives a trailing slash; the document does not.
		err = fmt.Errorf("%s is not exactly %s", v.URL.Path, route.Path)
	}
	if err != nil {
		// Not in the document: courier must say so with a problem.
		if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
			return "", fmt.Sprintf("no operation in the document (%v), yet not answered 404 or 405", err)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
			return "", fmt.Sprintf("undocumented route answered with Content-Type %q, want application/problem+json", ct)
		}
		if head {
			return "", ""
		}
		var p any
		if err := json.Unmarshal(body, &p); err != nil {
			return "", fmt.Sprintf("undocumented route answered with a body that is not JSON: %v", err)
		}
		if err := contractDocument().Components.Schemas["Problem"].Value.VisitJSON(p, openapi3.EnableJSONSchema2020()); err != nil {
			return "", fmt.Sprintf("undocumented route answered with a body that is not a Problem: %v", err)
		}
		return "", ""
	}

	in := &openapi3filter.RequestValidationInput{Request: v, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	// A request the document forbids must be refused: with a 4xx, or with
	// the 503 that a full or stopping courier answers before reading it.
	if reqErr := openapi3filter.ValidateRequest(context.Background(), in); reqErr != nil && resp.StatusCode < 400 {
		return "", fmt.Sprintf("the request breaks the document (%v), yet courier did not refuse it", reqErr)
	}

	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Body: io.NopCloser(bytes.NewReader(body)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true,
			ExcludeResponseBody: stream || head}}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		return "", fmt.Sprintf("the response breaks the document: %v (body %.300q)", err, body)
	}
	if head {
		return "", ""
	}
	seen = fmt.Sprintf("%s %s %d", route.Method, route.Path, resp.StatusCode)
	var p struct{ Code string }
	if resp.Header.Get("Content-Type") == "application/problem+json" && json.Unmarshal(body, &p) == nil {
		seen += " " + p.Code
	}
	return seen, ""
}

// pathTemplate turns a document path such as /messages/{id} into a
// regular expression that matches it exactly.
func pathTemplate(path string) *regexp.Regexp {
	return regexp.MustCompile("^" + regexp.MustCompile(`\\\{[^}]+\\\}`).ReplaceAllString(regexp.QuoteMeta(path), "[^/]+") + "$")
}

// uncoveredResponses lists what the document declares and no validated
// answer showed, as "METHOD /path STATUS", followed by the problem code for
// each code a problem response lists.
func uncoveredResponses() []string {
	doc := contractDocument()
	contractSeen.mu.Lock()
	defer contractSeen.mu.Unlock()
	var missing []string
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			for status, resp := range op.Responses.Map() {
				keys := []string{fmt.Sprintf("%s %s %s", method, path, status)}
				if mt := resp.Value.Content.Get("application/problem+json"); mt != nil {
					keys = nil
					for _, code := range problemCodes(mt.Schema) {
						keys = append(keys, fmt.Sprintf("%s %s %s %s", method, path, status, code))
					}
				}
				for _, key := range keys {
					if !contractSeen.m[key] {
						missing = append(missing, key)
					}
				}
			}
		}
	}
	slices.Sort(missing)
	return missing
}

// problemCodes returns the values a problem schema allows for `code`:
// what the schema's own `code` allows, narrowed by each allOf (where the
// keywords next to a $ref land) and by the union of its oneOf or anyOf.
// Nil means the schema does not constrain `code`.
func problemCodes(s *openapi3.SchemaRef) []string {
	if s == nil || s.Value == nil {
		return nil
	}
	var codes []string
	if code := s.Value.Properties["code"]; code != nil && code.Value != nil {
		var own []string
		if c, ok := code.Value.Const.(string); ok {
			own = append(own, c)
		}
		for _, e := range code.Value.Enum {
			own = append(own, fmt.Sprint(e))
		}
		codes = narrow(codes, own)
	}
	for _, sub := range s.Value.AllOf {
		codes = narrow(codes, problemCodes(sub))
	}
	for _, alternatives := range []openapi3.SchemaRefs{s.Value.OneOf, s.Value.AnyOf} {
		var union []string
		for _, sub := range alternatives {
			c := problemCodes(sub)
			if c == nil {
				union = nil
				break
			}
			union = append(union, c...)
		}
		codes = narrow(codes, union)
	}
	slices.Sort(codes)
	return slices.Compact(codes)
}

// narrow intersects two code lists, where nil means "any code".
func narrow(a, b []string) []string {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	var out []string
	for _, c := range a {
		if slices.Contains(b, c) {
			out = append(out, c)
		}
	}
	return out
}

// wholeSuite reports whether every test was asked to run, which is when
// the coverage of the document can be judged.
func wholeSuite() bool {
	for _, name := range []string{"test.run", "test.skip", "test.list"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" {
			return false
		}
	}
	return true
}

// coverageM runs the tests, then, when they all ran and passed, fails the
// binary if the document declares a response that no test exercised.
type coverageM struct{ m *testing.M }

func (c coverageM) Run() int {
	code := c.m.Run()
	if code != 0 || !wholeSuite() {
		return code
	}
	if missing := uncoveredResponses(); len(missing) > 0 {
		fmt.Printf("--- FAIL: openapi.yaml coverage: %d declared responses no test exercised:\n\t%s\n",
			len(missing), strings.Join(missing, "\n\t"))
		return 1
	}
	return code
}

func TestOpenAPIDocumentIsServedAsEmbedded(t *testing.T) {
	if _, err := loadContract(); err != nil {
		t.Fatal(err)
	}
	app := newFakeMessageapp(t, modeOK)
	s := startService(t, baseEnv(app.URL()))
	resp, err := s.client.Get(s.url + "/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/yaml" {
		t.Errorf("GET /openapi.yaml: got %d %q, want 200 application/yaml", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if !bytes.Equal(got, openAPIDocument) {
		t.Errorf("GET /openapi.yaml: got %d bytes, want the %d of openapi.yaml", len(got), len(openAPIDocument))
	}
}

// TestContractCatchesDrift shows the validator failing on answers that
// break the document, so that a passing suite means something.
func TestContractCatchesDrift(t *testing.T) {
	problemJSON := "application/problem+json"
	tests := []struct {
		name        string
		method      string
		path        string
		contentType string
		reqBody     string
		status      int
		header      http.Header
		body        string
		wantOK      bool
	}{
		{"a documented answer passes", "GET", "/healthz", "", "", 200,
			http.Header{"Content-Type": {"application/json"}}, `{"status":"ok"}`, true},
		{"a field the document does not know", "GET", "/healthz", "", "", 200,
			http.Header{"Content-Type": {"application/json"}}, `{"status":"ok","uptime":3}`, false},
		{"a value outside its enum", "GET", "/status", "", "", 200, http.Header{"Content-Type": {"application/json"}},
			`{"queue":{"depth":0,"max_size":10,"recovery_threshold":5,"accepting":true},"circuit":{"state":"ajar","consecutive_failures":0},` +
				`"messages":{"accepted":0,"rejected":0,"queued":0,"sending":0,"sent":0,"failed":0,"timeout":0},"senders":4}`, false},
		{"a 202 without Location", "POST", "/messages", "application/json", `{"destination":"d","body":"b"}`, 202,
			http.Header{"Content-Type": {"application/json"}}, `{"id":"x","status":"queued"}`, false},
		{"a 503 without Retry-After", "POST", "/messages", "application/json", `{"destination":"d","body":"b"}`, 503,
			http.Header{"Content-Type": {problemJSON}},
			`{"type":"urn:courier:problem:shutting_down","title":"t","status":503,"detail":"d","code":"shutting_down","retry_after_seconds":1}`, false},
		{"a problem code the response does not list", "GET", "/messages/x", "", "", 404, http.Header{"Content-Type": {problemJSON}},
			`{"type":"urn:courier:problem:gone","title":"t","status":404,"detail":"d","code":"gone"}`, false},
		{"a status the operation does not declare", "GET", "/status", "", "", 418,
			http.Header{"Content-Type": {problemJSON}}, `{}`, false},
		{"an unknown route answered with a problem passes", "GET", "/nowhere", "", "", 404, http.Header{"Content-Type": {problemJSON}},
			`{"type":"urn:courier:problem:not_found","title":"Not Found","status":404,"detail":"d","code":"not_found"}`, true},
		{"an unknown route answered with something else", "GET", "/nowhere", "", "", 404,
			http.Header{"Content-Type": {problemJSON}}, `{"error":"no such route"}`, false},
		{"a trailing slash answered as the route without it", "GET", "/messages/", "", "", 200,
			http.Header{"Content-Type": {"application/json"}}, `{"messages":[]}`, false},
		{"an undocumented route answered 200", "GET", "/secret", "", "", 200,
			http.Header{"Content-Type": {"application/json"}}, `{}`, false},
		{"a request the document forbids, accepted", "POST", "/messages", "application/json", `{"destination":"d"}`, 202,
			http.Header{"Content-Type": {"application/json"}, "Location": {"/messages/x"}}, `{"id":"x","status":"queued"}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptestRequest(t, tt.method, tt.path, tt.contentType, tt.reqBody)
			resp := &http.Response{StatusCode: tt.status, Header: tt.header, Body: io.NopCloser(strings.NewReader(tt.body))}
			_, problem := (&contractTransport{t: t}).check(req, []byte(tt.reqBody), resp)
			if ok := problem == ""; ok != tt.wantOK {
				t.Errorf("valid: got %v (%s), want %v", ok, problem, tt.wantOK)
			}
		})
	}
}

func httptestRequest(t *testing.T, method, path, contentType, body string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, "http://courier.test"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return req
}

func TestEveryProblemResponseListsItsCodes(t *testing.T) {
	allCodes := problemCodes(contractDocument().Components.Schemas["Problem"])
	if len(allCodes) < 9 {
		t.Fatalf("Problem's code enum: got %v, want every code courier answers with", allCodes)
	}
	for path, item := range contractDocument().Paths.Map() {
		for method, op := range item.Operations() {
			for status, resp := range op.Responses.Map() {
				if mt := resp.Value.Content.Get("application/problem+json"); mt != nil {
					if codes := problemCodes(mt.Schema); len(codes) == 0 || len(codes) >= len(allCodes) {
						t.Errorf("%s %s %s: got codes %v, want the few this response can carry", method, path, status, codes)
					}
				}
			}
		}
	}
	// The list a client generator sees for the 503 of POST /messages.
	post := contractDocument().Paths.Value("/messages").Post.Responses.Status(503).Value
	if got := problemCodes(post.Content.Get("application/problem+json").Schema); strings.Join(got, ",") != "queue_full,shutting_down" {
		t.Errorf("POST /messages 503 codes: got %v, want [queue_full shutting_down]", got)
	}
}
