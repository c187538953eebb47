package tokenhttp

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/keyrenew/tokens"
)

// ErrNoAuthenticatedKey is what RequireScopes reports, with a 500, for a
// request whose context carries no key: the handler was not wrapped in
// Authenticate (or ContextWithKey), a mistake of the server's wiring and
// not of the client.
var ErrNoAuthenticatedKey = errors.New("tokenhttp: no authenticated key in the request's context; wrap the handler in Authenticate")

// A ScopeOption configures RequireScopes: WithErrorReporter.
type ScopeOption interface {
	applyScope(*scopeSettings) error
}

type scopeSettings struct {
	shared
}

func (o Option) applyScope(s *scopeSettings) error { return o.applyShared(&s.shared) }

// RequireScopes returns middleware that lets a request through only if the
// key that Authenticate put in its context has every one of scopes
// (tokens.Key.HasScope: matched exactly, no wildcards). Put it inside
// Authenticate:
//
//	auth, _ := tokenhttp.Authenticate(m)
//	canWrite, _ := tokenhttp.RequireScopes([]string{"invoices:write"})
//	mux.Handle("POST /invoices", auth(canWrite(createInvoice)))
//
// A key without them gets 403 with the JSON body
// {"error": "insufficient_scope", "message": text, "missing_scopes": [...]},
// which names the scopes it lacks (scopes are not secrets) and nothing
// the client sent. A request with no key in its context is the server's
// wiring mistake: it gets 500 internal_error, and ErrNoAuthenticatedKey
// goes to WithErrorReporter.
//
// The key is the one Verify returned for this request, so a scope removed
// with UpdateKey stops working as the Manager's cache allows (R20: at once
// in the process that removed it, within MaxStaleness in others).
//
// It returns an error if scopes is empty or holds a string that is not a
// scope (1 to 100 ASCII letters, digits and ":._-/"), which no key could
// have.
func RequireScopes(scopes []string, opts ...ScopeOption) (func(http.Handler) http.Handler, error) {
	if len(scopes) == 0 {
		return nil, errors.New("tokenhttp: RequireScopes: no scope given")
	}
	for _, s := range scopes {
		if !validScope(s) {
			return nil, fmt.Errorf("tokenhttp: RequireScopes: %q is not a scope: 1 to %d ASCII letters, digits and \":._-/\"", s, tokens.MaxScopeLen)
		}
	}
	set := &scopeSettings{shared: newShared()}
	for _, opt := range opts {
		if opt == nil {
			return nil, errors.New("tokenhttp: RequireScopes: nil option")
		}
		if err := opt.applyScope(set); err != nil {
			return nil, err
		}
	}
	required := append([]string(nil), scopes...)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			key, ok := KeyFromContext(r.Context())
			if !ok {
				set.report(r, ErrNoAuthenticatedKey)
				writeJSONError(w, http.StatusInternalServerError, "internal_error", "authorisation is unavailable, try again later")
				return
			}
			var missing []string
			for _, s := range required {
				if !key.HasScope(s) {
					missing = append(missing, s)
				}
			}
			if missing != nil {
				writeScopeError(w, missing)
				return
			}
			next.ServeHTTP(w, r)
		})
	}, nil
}

func writeScopeError(w http.ResponseWriter, missing []string) {
	body, err := json.Marshal(struct {
		Error         string   `json:"error"`
		Message       string   `json:"message"`
		MissingScopes []string `json:"missing_scopes"`
	}{"insufficient_scope", "the key lacks the scope " + strings.Join(missing, ", "), missing})
	if err != nil {
		panic("tokenhttp: encoding an error body: " + err.Error()) // strings always encode
	}
	writeJSON(w, http.StatusForbidden, body)
}

// validScope is R20's scope syntax, the same that tokens.KeySpec checks.
func validScope(s string) bool {
	if s == "" || len(s) > tokens.MaxScopeLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(":._-/", c) >= 0) {
			return false
		}
	}
	return true
}
