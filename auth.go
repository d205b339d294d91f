package main

// auth.go says who a request comes from (docs/security.md): the bearer tokens of
// API_TOKENS, each one a client, and which listener a request came in on
// when ADMIN_ADDR splits them.

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net"
	"net/http"
	"strings"
)

// Clients knows the clients' tokens. A nil *Clients is open access: every
// request is the one anonymous client "".
type Clients struct {
	digests [][sha256.Size]byte // SHA-256 of each token
	ids     []string            // the client each token stands for
}

// NewClients knows tokens; none means open access (nil).
func NewClients(tokens []string) *Clients {
	if len(tokens) == 0 {
		return nil
	}
	c := &Clients{}
	for _, t := range tokens {
		c.digests = append(c.digests, sha256.Sum256([]byte(t)))
		c.ids = append(c.ids, clientID(t))
	}
	return c
}

// clientID is the identity courier keeps with a client's messages and
// keys: 16 hex characters of a hash of its token, the same on every start
// and whatever the tokens' order, so a spooled message keeps its owner.
// It is never shown to anyone, and the token cannot be read back from it.
func clientID(token string) string {
	sum := sha256.Sum256([]byte("courier client\x00" + token))
	return hex.EncodeToString(sum[:8])
}

// Identify returns the client whose token authorization (the request's
// Authorization header) carries, and whether there is one. The token is
// compared with every known one in constant time, through their digests,
// so neither which token nor how much of it matched shows in the timing.
func (c *Clients) Identify(authorization string) (client string, ok bool) {
	if c == nil {
		return "", true
	}
	scheme, token, found := strings.Cut(authorization, " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	digest := sha256.Sum256([]byte(strings.TrimSpace(token)))
	match := -1
	for i := range c.digests {
		if subtle.ConstantTimeCompare(digest[:], c.digests[i][:]) == 1 {
			match = i
		}
	}
	if match < 0 {
		return "", false
	}
	return c.ids[match], true
}

// clientHandle is a handler of the clients' API: it is given the client
// the request comes from ("" with open access).
type clientHandle func(w http.ResponseWriter, r *http.Request, client string)

// forClients serves h on the clients' listener to an identified client,
// and answers anyone else 401 unauthorized with a Bearer challenge
// (RFC 6750 §3).
func (s *service) forClients(h clientHandle) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.adminSplit && onAdminListener(r) {
			s.notHere(w, r, "PORT")
			return
		}
		client, ok := s.clients.Identify(r.Header.Get("Authorization"))
		if !ok {
			challenge := `Bearer realm="courier"`
			if r.Header.Get("Authorization") != "" {
				challenge += `, error="invalid_token"`
			}
			w.Header().Set("WWW-Authenticate", challenge)
			s.writeProblem(w, CodeUnauthorized,
				"send Authorization: Bearer <token> with one of courier's API tokens (API_TOKENS)", nil)
			return
		}
		h(w, r, client)
	})
}

// forOperators serves h where operators look: on the admin listener when
// ADMIN_ADDR is set, else on the one listener there is.
func (s *service) forOperators(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.adminSplit && !onAdminListener(r) {
			s.notHere(w, r, "ADMIN_ADDR")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// notHere answers 404 for a route that is served on the other listener.
func (s *service) notHere(w http.ResponseWriter, r *http.Request, where string) {
	s.writeProblem(w, CodeNotFound, "no route for "+r.Method+" "+r.URL.Path+" on this listener: it is served on "+where, nil)
}

// adminListenerKey marks the context of requests that came in on the admin
// listener.
type adminListenerKey struct{}

// adminBaseContext is the admin server's BaseContext.
func adminBaseContext(net.Listener) context.Context {
	return context.WithValue(context.Background(), adminListenerKey{}, true)
}

// onAdminListener reports whether r came in on the admin listener.
func onAdminListener(r *http.Request) bool {
	admin, _ := r.Context().Value(adminListenerKey{}).(bool)
	return admin
}
