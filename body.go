package main

// body.go reads POST /messages bodies: the usual one straight from its
// bytes, any other through encoding/json member by member, with a clear
// sentence for what is wrong.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// maxBodyBytes is the largest POST /messages body courier reads.
const maxBodyBytes = 64 << 10

// postMessageRequest is the body of POST /messages.
type postMessageRequest struct {
	Destination string
	Body        string
}

// decodePostMessage reads the whole body, at most maxBodyBytes of it (a
// larger body is a *http.MaxBytesError whatever it holds), then one JSON
// object. It returns the field problems found, or an error when the body is
// not one JSON object at all.
func decodePostMessage(w http.ResponseWriter, r *http.Request) (postMessageRequest, []fieldProblem, error) {
	var buf bytes.Buffer
	if n := r.ContentLength; n > 0 && n <= maxBodyBytes {
		// ReadFrom wants MinRead bytes free before each read: with them,
		// a body of known length takes one allocation.
		buf.Grow(int(n) + bytes.MinRead)
	}
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, maxBodyBytes)); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return postMessageRequest{}, nil, err
		}
		return postMessageRequest{}, nil, fmt.Errorf("unreadable request body: %v", err)
	}
	if req, ok := decodePlain(buf.Bytes()); ok {
		return req, nil, nil
	}
	return decodeGeneral(buf.Bytes())
}

// decodeGeneral reads any body: one JSON object, its field problems, or an
// error when it is not one JSON object at all.
func decodeGeneral(b []byte) (postMessageRequest, []fieldProblem, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	req, problems, err := decodeObject(dec)
	if err != nil {
		return postMessageRequest{}, nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return postMessageRequest{}, nil, errors.New("request body must hold exactly one JSON object")
	}
	return req, problems, nil
}

// maxListed is how many unknown fields a 400 names before it only counts
// them.
const maxListed = 10

// postFields are the members of POST /messages, in the order problems
// about them are listed.
var postFields = [...]string{"destination", "body"}

// decodeObject reads one JSON object member by member, straight into the
// request, and returns a problem for each missing, non-string, empty or
// non-text (textProblem) field, then each unknown one (sorted), then each given more than once
// (which of two values a client meant is not for courier to guess). Its
// error says why the body is not a JSON object at all.
func decodeObject(dec *json.Decoder) (postMessageRequest, []fieldProblem, error) {
	tok, err := dec.Token()
	if err != nil {
		return postMessageRequest{}, nil, jsonProblem(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return postMessageRequest{}, nil, fmt.Errorf("request body must be a JSON object, not %s", jsonKind(tok))
	}
	var r postReading
	for dec.More() {
		if err := r.member(dec); err != nil {
			return postMessageRequest{}, nil, insideObject(err)
		}
	}
	if _, err := dec.Token(); err != nil {
		return postMessageRequest{}, nil, insideObject(err)
	}
	if problems := r.problems(); len(problems) > 0 {
		return postMessageRequest{}, problems, nil
	}
	return postMessageRequest{Destination: *r.values[0], Body: *r.values[1]}, nil, nil
}

// insideObject is jsonProblem for an error past the opening brace, where
// the end of the body is always too early.
func insideObject(err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return jsonProblem(err)
}

// postReading is what decodeObject has read of a body's members so far.
type postReading struct {
	values    [len(postFields)]*string // nil: missing, or not a string
	notString [len(postFields)]string  // what a field given but not a string held: "a number", "null"…
	seen      [len(postFields)]bool
	notText   [len(postFields)]string // why a string value is not text as sent
	unknown   []string                // at most maxListed
	repeated  []string
	unlisted  int // unknown names past maxListed
}

// member reads one member of the object, its name and its value.
func (r *postReading) member(dec *json.Decoder) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	name, _ := tok.(string) // inside an object the decoder yields only names here
	i := slices.Index(postFields[:], name)
	if i >= 0 && !r.seen[i] {
		return r.field(dec, i)
	}
	r.other(name, i >= 0)
	var skip json.RawMessage
	return dec.Decode(&skip)
}

// field reads the value of postFields[i], given for the first time.
func (r *postReading) field(dec *json.Decoder, i int) error {
	r.seen[i] = true
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return err
	}
	r.notText[i] = textProblem(raw)
	// A number, boolean, object or array is a type error, but not
	// before the decoder has pointed values[i] at an empty string;
	// null leaves values[i] nil.
	var typ *json.UnmarshalTypeError
	err := json.Unmarshal(raw, &r.values[i])
	switch {
	case errors.As(err, &typ):
		r.values[i], r.notString[i] = nil, jsonTypeName(typ.Value)
	case err != nil:
		return err
	case r.values[i] == nil:
		r.notString[i] = "null"
	}
	return nil
}

// other notes a member that is not a field's first: a field given again
// (known), or an unknown name.
func (r *postReading) other(name string, known bool) {
	switch {
	case known || slices.Contains(r.unknown, name):
		if !slices.Contains(r.repeated, name) {
			r.repeated = append(r.repeated, name)
		}
	case len(r.unknown) < maxListed:
		r.unknown = append(r.unknown, name)
	default:
		r.unlisted++ // an answer need not list a flood of names
	}
}

// problems are the field problems of what was read, in the order
// decodeObject gives them.
func (r *postReading) problems() []fieldProblem {
	var problems []fieldProblem
	for i, name := range postFields {
		if detail := r.fieldProblem(i); detail != "" {
			problems = append(problems, fieldProblem{Field: name, Detail: name + " " + detail})
		}
	}
	slices.Sort(r.unknown)
	for _, name := range r.unknown {
		problems = append(problems, fieldProblem{Field: name, Detail: fmt.Sprintf("unknown field %q", name)})
	}
	if r.unlisted > 0 {
		problems = append(problems, fieldProblem{Detail: fmt.Sprintf("and %d more unknown fields", r.unlisted)})
	}
	for _, name := range r.repeated {
		problems = append(problems, fieldProblem{Field: name, Detail: fmt.Sprintf("field %q is given more than once", name)})
	}
	return problems
}

// fieldProblem says what is wrong with postFields[i], after its name, or
// "" when nothing is.
func (r *postReading) fieldProblem(i int) string {
	switch {
	case !r.seen[i]:
		return "is required"
	case r.values[i] == nil:
		return "must be a string, not " + r.notString[i]
	case r.notText[i] != "":
		return r.notText[i]
	case strings.TrimSpace(*r.values[i]) == "":
		return "must not be empty"
	}
	return ""
}

// textProblem says why raw, a JSON string as it arrived, is not text that
// courier can keep and deliver byte for byte, or "" when it is (or when raw
// is not a string at all). encoding/json would quietly turn invalid UTF-8
// and unpaired UTF-16 surrogate escapes (RFC 8259 §8.2) into U+FFFD, three
// bytes each: what messageapp got would differ from what was accepted,
// and be up to three times as large.
func textProblem(raw []byte) string {
	if len(raw) < 2 || raw[0] != '"' {
		return ""
	}
	s := raw[1 : len(raw)-1]
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRune(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			return fmt.Sprintf("is not valid UTF-8 (byte %d of its value, 0x%02x); send text, or encode binary data (e.g. base64)", i, s[i])
		case r == '\\' && s[i+1] == 'u':
			// The decoder already checked the escape's four hex digits.
			if hi := hex4(s[i+2:]); utf16.IsSurrogate(rune(hi)) {
				if hi >= 0xdc00 || i+12 > len(s) || s[i+6] != '\\' || s[i+7] != 'u' || !isLowSurrogate(hex4(s[i+8:])) {
					return fmt.Sprintf("holds an unpaired UTF-16 surrogate escape (%s), which is not text", s[i:i+6])
				}
				size = 12
			} else {
				size = 6
			}
		case r == '\\':
			size = 2
		}
		i += size
	}
	return ""
}

// hex4 is the value of the four hex digits at the start of b.
func hex4(b []byte) uint16 {
	var v uint16
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		default:
			c -= 'A' - 10
		}
		v = v<<4 | uint16(c)
	}
	return v
}

// isLowSurrogate reports whether v is the second half of a UTF-16 pair.
func isLowSurrogate(v uint16) bool { return v >= 0xdc00 && v <= 0xdfff }

// jsonKind names the kind of JSON value that starts with tok.
func jsonKind(tok json.Token) string {
	switch tok.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case float64, json.Number:
		return "a number"
	case string:
		return "a string"
	default:
		return "an array"
	}
}

// jsonTypeName names the kind of JSON value an UnmarshalTypeError's Value
// describes ("number", "number 34", "bool", "array", "object").
func jsonTypeName(value string) string {
	kind, _, _ := strings.Cut(value, " ")
	switch kind {
	case "bool":
		return "a boolean"
	case "array", "object":
		return "an " + kind
	default:
		return "a " + kind
	}
}

// jsonProblem turns a decoding error into a sentence for the client.
func jsonProblem(err error) error {
	var syntax *json.SyntaxError
	switch {
	case errors.Is(err, io.EOF):
		return errors.New("request body is empty; send a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("malformed JSON: the body ends before the object does")
	case errors.As(err, &syntax):
		return fmt.Errorf("malformed JSON at byte %d: %v", syntax.Offset, syntax)
	default:
		return fmt.Errorf("malformed JSON: %v", err)
	}
}

// decodePlain reads the body nearly every client sends,
// {"destination":"...","body":"..."} in either order, when its strings need
// no unescaping, without the general decoder's tokens and reflection. It
// reports false for anything else, which the general decoder then reads and
// judges; for what decodePlain accepts, both agree
// (FuzzDecodePlainAgreesWithTheGeneralDecoder).
func decodePlain(b []byte) (req postMessageRequest, ok bool) {
	i := skipJSONSpace(b, 0)
	if i == len(b) || b[i] != '{' {
		return req, false
	}
	var seen [2]bool
	for n := range 2 {
		name, value, end, ok := plainMember(b, skipJSONSpace(b, i+1))
		switch {
		case !ok:
			return req, false
		case string(name) == "destination" && !seen[0]:
			seen[0], req.Destination = true, string(value)
		case string(name) == "body" && !seen[1]:
			seen[1], req.Body = true, string(value)
		default:
			return req, false
		}
		i = skipJSONSpace(b, end)
		if i == len(b) || b[i] != ",}"[n] {
			return req, false
		}
	}
	if skipJSONSpace(b, i+1) != len(b) || strings.TrimSpace(req.Destination) == "" || strings.TrimSpace(req.Body) == "" {
		return req, false
	}
	return req, true
}

// plainMember reads the member "name": "value" that starts at b[i] when
// both strings are plain (plainJSONString), and returns the index just
// past the value.
func plainMember(b []byte, i int) (name, value []byte, end int, ok bool) {
	ks, ke, ok := plainJSONString(b, i)
	if !ok {
		return nil, nil, 0, false
	}
	i = skipJSONSpace(b, ke+1)
	if i == len(b) || b[i] != ':' {
		return nil, nil, 0, false
	}
	vs, ve, ok := plainJSONString(b, skipJSONSpace(b, i+1))
	if !ok {
		return nil, nil, 0, false
	}
	return b[ks:ke], b[vs:ve], ve + 1, true
}

// skipJSONSpace returns the index of the first byte at or after i that is
// not JSON whitespace.
func skipJSONSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// plainJSONString finds the JSON string starting at b[i] when it holds no
// escapes or control characters and is valid UTF-8, so its bytes are its
// value: start and end of the contents (end is the closing quote).
func plainJSONString(b []byte, i int) (start, end int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return 0, 0, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return i + 1, j, utf8.Valid(b[i+1 : j])
		case c == '\\' || c < 0x20:
			return 0, 0, false
		}
	}
	return 0, 0, false
}
