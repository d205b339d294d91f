package main

// ids.go mints message ids (docs/security.md): unguessable, and telling which run
// of courier minted them.
//
// An id is REPLICA and a dash, when REPLICA is set (haproxy.cfg reads the
// name to send GET /messages/{id} to the replica that holds it), then 26 lowercase
// base32 characters (RFC 4648's alphabet, no padding) encoding 16 bytes:
// the 4-byte run tag, drawn once when courier starts, then 12 bytes
// (96 bits) drawn from crypto/rand for that message alone. Nothing in an id
// says when, where or in what order it was made, and one id tells nothing
// about any other.

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/hex"
	"strings"
)

// idTextLen is the length of an id after its replica prefix: 16 bytes in
// base32 without padding.
const idTextLen = 26

// idEncoding is base32 in lowercase without padding.
var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// RunTag is the random tag of one run of courier (one call of run): the
// first 4 bytes of every id that run mints. A restarted courier draws a new
// one, so an id from before the restart is told from an unknown id of this
// run.
type RunTag [4]byte

// String is the tag in hex, for logs.
func (t RunTag) String() string { return hex.EncodeToString(t[:]) }

// IDs mints the ids of one run. Its fields are set once; it is safe for
// concurrent use.
type IDs struct {
	prefix string // REPLICA and "-", or empty
	tag    RunTag
}

// NewIDs draws a run tag and mints ids for replica (empty: no prefix).
func NewIDs(replica string) *IDs {
	g := &IDs{}
	if replica != "" {
		g.prefix = replica + "-"
	}
	_, _ = rand.Read(g.tag[:]) // never fails: crypto/rand crashes the program instead
	return g
}

// Tag is this run's tag.
func (g *IDs) Tag() RunTag { return g.tag }

// New mints an id: the prefix, then the run tag and 96 fresh random bits.
func (g *IDs) New() string {
	var raw [16]byte
	copy(raw[:4], g.tag[:])
	_, _ = rand.Read(raw[4:])
	var buf [64 + idTextLen]byte // REPLICA is at most 32 bytes
	n := copy(buf[:], g.prefix)
	idEncoding.Encode(buf[n:], raw[:])
	return string(buf[:n+idTextLen])
}

// FromEarlierRun reports whether id is well-formed (see RunTagOf) and was
// minted by another run than this one: a courier that has restarted since.
func (g *IDs) FromEarlierRun(id string) bool {
	tag, ok := RunTagOf(id)
	return ok && tag != g.tag
}

// RunTagOf reads the run tag of an id of courier's shape: 26 canonical
// base32 characters, alone or after a name and a dash. ok is false for any
// other string.
func RunTagOf(id string) (tag RunTag, ok bool) {
	if len(id) < idTextLen {
		return tag, false
	}
	prefix, text := id[:len(id)-idTextLen], id[len(id)-idTextLen:]
	if prefix != "" && (len(prefix) < 2 || !strings.HasSuffix(prefix, "-")) {
		return tag, false
	}
	var raw [16]byte
	if n, err := idEncoding.Decode(raw[:], []byte(text)); err != nil || n != len(raw) {
		return tag, false
	}
	// Base32 leaves 2 spare bits in the last character: only the
	// encoding New writes counts, so one id has one spelling.
	var again [idTextLen]byte
	if idEncoding.Encode(again[:], raw[:]); string(again[:]) != text {
		return tag, false
	}
	copy(tag[:], raw[:4])
	return tag, true
}
