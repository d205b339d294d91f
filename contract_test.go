package main

// contract_test.go holds courier to openapi.yaml: every request the HTTP
// tests send through a contract client, and every answer, is validated
// against the document, and when the whole suite has run, every status the
// document declares must have been seen in a validated answer.

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"mime"
	"net/http"
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

func markSeen(method, path string, status int) {
	contractSeen.mu.Lock()
	defer contractSeen.mu.Unlock()
	contractSeen.m[fmt.Sprintf("%s %s %d", method, path, status)] = true
}

// contractTransport validates each exchange against openapi.yaml and fails
// t on a mismatch: a response the document does not allow, or a request
// the document forbids that courier nevertheless did not refuse with a 4xx.
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
	if problem := c.check(req, reqBody, resp); problem != "" {
		c.t.Errorf("openapi.yaml: %s %s answered %d: %s", req.Method, req.URL.RequestURI(), resp.StatusCode, problem)
	}
	return resp, nil
}

// check validates one exchange and returns what is wrong with it, if
// anything. It leaves resp's body readable (a stream is not read at all).
func (c *contractTransport) check(req *http.Request, reqBody []byte, resp *http.Response) string {
	router, err := loadContract()
	if err != nil {
		return err.Error()
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

	route, params, err := router.FindRoute(v)
	if err != nil {
		// Not in the document: courier must say so with a problem.
		if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
			return fmt.Sprintf("no operation in the document (%v), yet not answered 404 or 405", err)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
			return fmt.Sprintf("undocumented route answered with Content-Type %q, want application/problem+json", ct)
		}
		return ""
	}

	in := &openapi3filter.RequestValidationInput{Request: v, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	if reqErr := openapi3filter.ValidateRequest(context.Background(), in); reqErr != nil &&
		(resp.StatusCode < 400 || resp.StatusCode > 499) {
		return fmt.Sprintf("the request breaks the document (%v), yet courier did not refuse it with a 4xx", reqErr)
	}

	stream := strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
	var body []byte
	if !stream {
		if body, err = io.ReadAll(resp.Body); err != nil {
			return fmt.Sprintf("reading the body: %v", err)
		}
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
	}
	if head && len(body) > 0 {
		return fmt.Sprintf("HEAD answered with a %d-byte body", len(body))
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Body: io.NopCloser(bytes.NewReader(body)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true,
			ExcludeResponseBody: stream || head}}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		return fmt.Sprintf("the response breaks the document: %v (body %.300q)", err, body)
	}
	if !head {
		markSeen(route.Method, route.Path, resp.StatusCode)
	}
	return ""
}

// uncoveredResponses lists what the document declares and no validated
// answer showed, as "METHOD /path STATUS".
func uncoveredResponses() []string {
	doc := contractDocument()
	contractSeen.mu.Lock()
	defer contractSeen.mu.Unlock()
	var missing []string
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			for status := range op.Responses.Map() {
				key := fmt.Sprintf("%s %s %s", method, path, status)
				if !contractSeen.m[key] {
					missing = append(missing, key)
				}
			}
		}
	}
	slices.Sort(missing)
	return missing
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
