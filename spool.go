package main

// spool.go keeps undelivered messages across a restart (docs/behaviour.md, Restarts): at
// shutdown, what is still queued or waiting after the drain is written
// whole to a file in SPOOL_DIR; the next start reads it back before it
// accepts anything. It knows files and their format, nothing of HTTP or
// messageapp.
//
// A spool is JSON lines: a header, then one line per message, oldest
// first:
//
//	{"courier_spool":1,"messages":2,"written_at":"2026-12-05T23:10:22.123Z"}
//	{"id":"c1-…","idempotency_key":"order-7","destination":"+34600000000","body":"hi","attempts":1,"created_at":"…"}
//	{"id":"c1-…","destination":"+34600000001","body":"hello","attempts":0,"created_at":"…"}

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"
)

// spoolVersion is the format written in the header's courier_spool.
const spoolVersion = 1

// spoolHeader is a spool's first line.
type spoolHeader struct {
	Spool     int       `json:"courier_spool"` // the format's version
	Messages  int       `json:"messages"`      // lines that follow
	WrittenAt time.Time `json:"written_at"`
}

// spoolRecord is one undelivered message, everything needed to deliver it
// and to answer for it again: its id, its Idempotency-Key (empty if none),
// the client that owns it (empty when API tokens are off; a client's name,
// never its token), its text, the attempts made so far (MAX_ATTEMPTS
// counts them) and when it was first accepted.
type spoolRecord struct {
	ID          string    `json:"id"`
	Key         string    `json:"idempotency_key,omitempty"`
	Client      string    `json:"client,omitempty"`
	Destination string    `json:"destination"`
	Body        string    `json:"body"`
	Attempts    int       `json:"attempts"`
	CreatedAt   time.Time `json:"created_at"`
}

// spoolPath is the spool file of replica in dir: spool.jsonl, or
// spool-c2.jsonl with REPLICA=c2, so that replicas sharing a directory do
// not share a spool.
func spoolPath(dir, replica string) string {
	if replica == "" {
		return filepath.Join(dir, "spool.jsonl")
	}
	return filepath.Join(dir, "spool-"+replica+".jsonl")
}

// checkSpoolDir makes dir if it is missing and checks that courier can
// create a file in it, so that a spool that cannot be written is found at
// start, not at the shutdown that needs it.
func checkSpoolDir(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".courier-probe-*")
	if err != nil {
		return err
	}
	f.Close()
	return os.Remove(f.Name())
}

// writeSpool writes recs to path so that, whatever happens, path holds
// either the whole spool or nothing new: a temporary file in the same
// directory is written and fsynced, renamed over path, and the directory
// fsynced so the rename itself survives a power cut.
func writeSpool(path string, recs []spoolRecord, now time.Time) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(spoolHeader{Spool: spoolVersion, Messages: len(recs), WrittenAt: now.UTC()}); err != nil {
		return err
	}
	for _, r := range recs {
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

// removeSpool deletes the spool at path, durably: after it returns, a
// crash cannot bring the file back to be read a second time.
func removeSpool(path string) error {
	if err := os.Remove(path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// syncDir fsyncs a directory, which makes the creation, renaming or
// removal of a file in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// spoolError says which line of which spool is wrong and how. courier
// does not start on a spool it cannot read whole: dropping its messages
// would lose what clients were told was accepted.
type spoolError struct {
	File   string
	Line   int // 1 is the header
	Reason string
}

func (e *spoolError) Error() string {
	return fmt.Sprintf("spool %s line %d: %s; courier will not start without its messages (repair or move the file)", e.File, e.Line, e.Reason)
}

// maxSpoolLine is the longest line a spool can hold: a 64 KiB request's
// text with every byte escaped as \u00XX, and the rest of the record.
const maxSpoolLine = 6*maxBodyBytes + 4096

// readSpool reads the spool at path. No file is no spool: nil, nil. A file
// that is not a whole spool, as writeSpool writes it, is a *spoolError.
func readSpool(path string) ([]spoolRecord, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sr := &spoolReader{path: path, sc: bufio.NewScanner(f)}
	sr.sc.Buffer(make([]byte, 0, 64<<10), maxSpoolLine)
	h, err := sr.header()
	if err != nil {
		return nil, err
	}
	recs := make([]spoolRecord, 0, min(h.Messages, 1<<16))
	seen := spoolSeen{ids: make(map[string]bool), keys: make(map[string]bool)}
	for {
		var r spoolRecord
		err := sr.next(&r)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if len(recs) == h.Messages {
			return nil, sr.bad("more messages than the header's %d", h.Messages)
		}
		if why := r.problem(); why != "" {
			return nil, sr.bad("%s", why)
		}
		if why := seen.add(r); why != "" {
			return nil, sr.bad("%s", why)
		}
		recs = append(recs, r)
	}
	if len(recs) != h.Messages {
		return nil, sr.bad("the file ends after %d of the header's %d messages", len(recs), h.Messages)
	}
	return recs, nil
}

// spoolReader reads a spool one line, one JSON value, at a time.
type spoolReader struct {
	path string
	sc   *bufio.Scanner
	line int // the line last read, from 1
}

// bad is a *spoolError at the line last read.
func (sr *spoolReader) bad(format string, args ...any) error {
	return &spoolError{File: sr.path, Line: sr.line, Reason: fmt.Sprintf(format, args...)}
}

// next decodes the next line into v, or returns io.EOF at the end.
func (sr *spoolReader) next(v any) error {
	sr.line++
	if !sr.sc.Scan() {
		if err := sr.sc.Err(); err != nil {
			return sr.bad("%v", err)
		}
		return io.EOF
	}
	if !utf8.Valid(sr.sc.Bytes()) {
		return sr.bad("not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(sr.sc.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return sr.bad("%v", err)
	}
	if dec.More() {
		return sr.bad("more than one JSON value")
	}
	return nil
}

// header reads the first line, which says the spool's version and how
// many messages follow.
func (sr *spoolReader) header() (spoolHeader, error) {
	var h spoolHeader
	switch err := sr.next(&h); {
	case errors.Is(err, io.EOF):
		return h, sr.bad("empty file, not a spool")
	case err != nil:
		return h, err
	case h.Spool != spoolVersion:
		return h, sr.bad("courier_spool is %d; this courier reads version %d", h.Spool, spoolVersion)
	case h.Messages < 0:
		return h, sr.bad("messages is %d", h.Messages)
	}
	return h, nil
}

// spoolSeen is the ids and the client's idempotency keys a spool has
// held so far: each may be there once.
type spoolSeen struct{ ids, keys map[string]bool }

// add records r's id and key, or says which of them is there twice.
func (s spoolSeen) add(r spoolRecord) string {
	if s.ids[r.ID] {
		return fmt.Sprintf("id %s is there twice", r.ID)
	}
	s.ids[r.ID] = true
	if r.Key == "" {
		return ""
	}
	k := r.Client + "\x00" + r.Key
	if s.keys[k] {
		return fmt.Sprintf("idempotency_key %q is there twice", r.Key)
	}
	s.keys[k] = true
	return ""
}

// validClientID accepts what clientID makes: 16 lowercase hex characters.
func validClientID(c string) bool {
	if len(c) != 16 {
		return false
	}
	for i := range len(c) {
		if (c[i] < '0' || c[i] > '9') && (c[i] < 'a' || c[i] > 'f') {
			return false
		}
	}
	return true
}

// problem says what makes r unfit to deliver, or "".
func (r spoolRecord) problem() string {
	switch {
	case r.ID == "" || len(r.ID) > 255 || strings.ContainsAny(r.ID, "/ ") || !utf8.ValidString(r.ID):
		return fmt.Sprintf("id %q is not a message id", r.ID)
	case r.Client != "" && !validClientID(r.Client):
		return fmt.Sprintf("client %q is not a client id", r.Client)
	case r.Key != "" && !validIdempotencyKey(r.Key):
		return fmt.Sprintf("idempotency_key %q is not 1 to 255 visible ASCII characters", r.Key)
	case strings.TrimSpace(r.Destination) == "":
		return "destination is missing or empty"
	case strings.TrimSpace(r.Body) == "":
		return "body is missing or empty"
	case len(r.Destination)+len(r.Body) > maxBodyBytes:
		return "destination and body are larger than any request courier accepts"
	case r.Attempts < 0 || r.Attempts > 1<<16-1:
		return fmt.Sprintf("attempts is %d", r.Attempts)
	case r.CreatedAt.IsZero():
		return "created_at is missing"
	}
	return ""
}
