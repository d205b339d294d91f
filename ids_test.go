package main

import (
	"math/bits"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestMessageIDsRevealNothingOfTheirNeighbours posts messages back to back
// and checks each id is the replica prefix and 26 base32 characters whose
// last 96 bits share nothing with the previous id's: an xid-like id (time,
// host, pid, counter) would give its neighbour away.
func TestMessageIDsRevealNothingOfTheirNeighbours(t *testing.T) {
	app := newFakeMessageapp(t, modeOK)
	for _, replica := range []string{"", "c2"} {
		t.Run("REPLICA="+strconv.Quote(replica), func(t *testing.T) {
			env := baseEnv(app.URL())
			env["REPLICA"] = replica
			s := startService(t, env)
			prefix := ""
			if replica != "" {
				prefix = replica + "-"
			}
			shape := regexp.MustCompile("^" + prefix + "[a-z2-7]{26}$")
			var prev [16]byte
			var tag RunTag
			for i := range 8 {
				id, _ := s.post("d", "b").body["id"].(string)
				if !shape.MatchString(id) {
					t.Fatalf("id: got %q, want %s", id, shape)
				}
				raw := decodeID(t, id[len(prefix):])
				if i == 0 {
					copy(tag[:], raw[:4])
				} else {
					if got := RunTag(raw[:4]); got != tag {
						t.Errorf("run tag of id %d: got %s, want %s, the first id's", i, got, tag)
					}
					// 96 fair coins agree in at most 72 places but once in 10^7.
					if same := 96 - hammingDistance(raw[4:], prev[4:]); same > 72 {
						t.Errorf("ids %d and %d agree in %d of their 96 random bits", i-1, i, same)
					}
				}
				prev = raw
			}
		})
	}
}

func TestEachRunHasItsOwnTagAndKnowsItsIDs(t *testing.T) {
	a, b := NewIDs("c1"), NewIDs("c1")
	if a.Tag() == b.Tag() {
		t.Fatalf("two runs drew the same tag %s", a.Tag())
	}
	id := a.New()
	if tag, ok := RunTagOf(id); !ok || tag != a.Tag() {
		t.Errorf("RunTagOf(%q): got %s, %v, want %s, true", id, tag, ok, a.Tag())
	}
	if a.FromEarlierRun(id) {
		t.Errorf("run a says its own id %q is from an earlier run", id)
	}
	if !b.FromEarlierRun(id) {
		t.Errorf("run b does not see that %q is from another run", id)
	}
	if b.FromEarlierRun("c1-nosuchid") {
		t.Errorf("a malformed id counts as from an earlier run")
	}
}

func TestRunTagOfTakesOnlyWellFormedIDs(t *testing.T) {
	good := NewIDs("").New()
	tests := []struct {
		name, id string
		ok       bool
	}{
		{"bare", good, true},
		{"after a replica name", "c2-" + good, true},
		{"an xid", "d4n5mfpksducd034qebg", false},
		{"too short", good[1:], false},
		{"uppercase", strings.ToUpper(good), false},
		{"name without its dash", "c2" + good, false},
		{"a dash alone", "-" + good, false},
		{"not base32", "c2-" + good[:25] + "1", false},
		{"spare bits set", good[:25] + nonCanonicalLast(good[25]), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, ok := RunTagOf(tt.id); ok != tt.ok {
				t.Errorf("RunTagOf(%q): got ok %v, want %v", tt.id, ok, tt.ok)
			}
		})
	}
}

// nonCanonicalLast is a last character that decodes to the same bytes as
// c with one of base32's two spare bits set.
func nonCanonicalLast(c byte) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	for i := range len(alphabet) {
		if alphabet[i] == c {
			return string(alphabet[i|1])
		}
	}
	panic("not a base32 character")
}

func decodeID(t *testing.T, text string) [16]byte {
	t.Helper()
	var raw [16]byte
	if n, err := idEncoding.Decode(raw[:], []byte(text)); err != nil || n != 16 {
		t.Fatalf("decode %q: %d bytes, %v", text, n, err)
	}
	return raw
}

func hammingDistance(a, b []byte) int {
	d := 0
	for i := range a {
		d += bits.OnesCount8(a[i] ^ b[i])
	}
	return d
}

func BenchmarkNewID(b *testing.B) {
	ids := NewIDs("c2")
	b.ReportAllocs()
	for b.Loop() {
		_ = ids.New()
	}
}
