package tokenhttp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/keyrenew/tokens"
)

// The headers Authenticate reads unless WithKeyIDHeader or WithTokenHeader
// name others.
const (
	DefaultKeyIDHeader = "X-API-Key-ID"
	DefaultTokenHeader = "X-API-Token"
)

// ErrMissingCredentials is what Authenticate passes to its ErrorHandler
// when a request carries no key ID or no token. It is also a
// tokens.ErrInvalidCredentials, so that one errors.Is test covers every
// request that deserves a 401.
var ErrMissingCredentials error = &credentialsError{"tokenhttp: missing credentials"}

type credentialsError struct{ msg string }

func (e *credentialsError) Error() string { return e.msg }
func (e *credentialsError) Unwrap() error { return tokens.ErrInvalidCredentials }

// An ErrorHandler writes the response to a request that Authenticate
// refused. err is one of:
//
//   - an error matching tokens.ErrInvalidCredentials (ErrMissingCredentials,
//     tokens.ErrMalformedToken or tokens.ErrInvalidCredentials itself): the
//     request deserves a 401, and Authenticate has already set the
//     WWW-Authenticate header;
//   - tokens.ErrKeyInactive: the credentials are right but the key is
//     deactivated, a 403;
//   - tokens.ErrKeyExpired: the credentials are right but the key's
//     ExpiresAt has come, a 401, with the WWW-Authenticate header set, as
//     the client needs a new key;
//   - any other error, from the store or the request's context: a 500.
//
// err never holds a secret, but it may hold store details that a client
// should not see. An ErrorHandler must not echo the request's headers.
type ErrorHandler func(w http.ResponseWriter, r *http.Request, err error)

// WithKeyIDHeader sets the request header that carries the key ID. The
// default is DefaultKeyIDHeader.
func WithKeyIDHeader(name string) AuthOption {
	return authOption(func(a *authSettings) error {
		if !validHeaderName(name) {
			return fmt.Errorf("tokenhttp: WithKeyIDHeader: %q is not a header name", name)
		}
		a.keyIDHeader = http.CanonicalHeaderKey(name)
		return nil
	})
}

// WithTokenHeader sets the request header that carries the token. The
// default is DefaultTokenHeader.
func WithTokenHeader(name string) AuthOption {
	return authOption(func(a *authSettings) error {
		if !validHeaderName(name) {
			return fmt.Errorf("tokenhttp: WithTokenHeader: %q is not a header name", name)
		}
		a.tokenHeader = http.CanonicalHeaderKey(name)
		return nil
	})
}

// WithBearer also accepts "Authorization: Bearer <key ID>:<token>" from
// requests that carry neither the key ID header nor the token header, for
// clients that can set only the Authorization header.
func WithBearer() AuthOption {
	return authOption(func(a *authSettings) error {
		a.bearer = true
		return nil
	})
}

// WithBearerToken also accepts "Authorization: Bearer <token>", the token
// alone, from requests that carry neither the key ID header nor the token
// header: Manager.VerifyToken finds the key by the token, as for APIs whose
// integrations send one secret. The store must be a tokens.TokenIndex, as
// memstore and sqlstore are; otherwise every such request gets a 500. It
// cannot be combined with WithBearer, which reads the same header as
// "<key ID>:<token>".
func WithBearerToken() AuthOption {
	return authOption(func(a *authSettings) error {
		a.bearerToken = true
		return nil
	})
}

// WithErrorHandler replaces the default JSON error responses.
func WithErrorHandler(h ErrorHandler) AuthOption {
	return authOption(func(a *authSettings) error {
		if h == nil {
			return errors.New("tokenhttp: WithErrorHandler: handler is nil")
		}
		a.onError = h
		return nil
	})
}

// authSettings are what the AuthOptions set.
type authSettings struct {
	shared
	keyIDHeader string
	tokenHeader string
	bearer      bool // Authorization: Bearer <key ID>:<token>
	bearerToken bool // Authorization: Bearer <token>
	onError     ErrorHandler
}

func applyAuth(opts []AuthOption) (*authSettings, error) {
	s := &authSettings{
		shared:      newShared(),
		keyIDHeader: DefaultKeyIDHeader,
		tokenHeader: DefaultTokenHeader,
	}
	for _, opt := range opts {
		if opt == nil {
			return nil, errors.New("tokenhttp: Authenticate: nil option")
		}
		if err := opt.applyAuth(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

type authenticator struct {
	m *tokens.Manager
	*authSettings
}

// Authenticate returns middleware that lets a request through only if it
// carries the ID and token of an active key, which Manager.Verify checks.
// The key ID is read from the X-API-Key-ID header and the token from
// X-API-Token, unless options say otherwise: WithBearerToken also takes
// the token alone, which Manager.VerifyToken checks.
//
// The next handler gets the *tokens.Key from KeyFromContext, and a request
// whose token header (or, with WithBearer or WithBearerToken, the
// Authorization header) is removed, so that handlers that log or forward
// headers cannot leak the token. RequireScopes, after it, lets through
// only keys with the scopes a route needs.
//
// A refused request gets, unless WithErrorHandler says otherwise, a JSON
// body {"error": code, "message": text} that never repeats what the client
// sent:
//
//   - 401 invalid_credentials, with a WWW-Authenticate challenge, when a
//     header is missing or the key ID and token do not match an existing
//     key;
//   - 403 key_inactive when they match a deactivated key;
//   - 401 key_expired, with the challenge, when they match a key whose
//     ExpiresAt has come;
//   - 500 internal_error when the store fails; the error also goes to
//     WithErrorReporter.
//
// Like NewLinkHandler, it returns an error if m is nil or an option is
// invalid. Its options are AuthOptions; one that applies only to another
// handler does not compile.
func Authenticate(m *tokens.Manager, opts ...AuthOption) (func(http.Handler) http.Handler, error) {
	if m == nil {
		return nil, errors.New("tokenhttp: Authenticate: Manager is nil")
	}
	set, err := applyAuth(opts)
	if err != nil {
		return nil, err
	}
	a := &authenticator{m: m, authSettings: set}
	if a.keyIDHeader == a.tokenHeader {
		return nil, errors.New("tokenhttp: Authenticate: the key ID and the token need two different headers")
	}
	if a.bearer && a.bearerToken {
		// A token may hold a colon (an imported one), so the two
		// readings of one header could disagree.
		return nil, errors.New("tokenhttp: Authenticate: WithBearer and WithBearerToken read the same header; choose one")
	}
	respond := a.onError
	if respond == nil {
		respond = a.writeError
	}
	a.onError = func(w http.ResponseWriter, r *http.Request, err error) {
		// A client that hung up is not the server's failure either.
		if !errors.Is(err, tokens.ErrInvalidCredentials) && !errors.Is(err, tokens.ErrKeyInactive) &&
			!errors.Is(err, tokens.ErrKeyExpired) && !errors.Is(err, context.Canceled) {
			a.report(r, err)
		}
		respond(w, r, err)
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := a.credentials(r)
			if err == nil {
				var key *tokens.Key
				key, err = a.verify(r, c)
				if err == nil {
					next.ServeHTTP(w, a.authenticated(r, key, c.fromBearer))
					return
				}
			}
			if errors.Is(err, tokens.ErrInvalidCredentials) || errors.Is(err, tokens.ErrKeyExpired) {
				w.Header().Set("WWW-Authenticate", a.challenge())
			}
			a.onError(w, r, err)
		})
	}, nil
}

// credentials are what a request sent: a key ID and a token, or, from
// "Authorization: Bearer <token>" under WithBearerToken, a token alone.
type credentials struct {
	keyID, token string
	fromBearer   bool
}

// verify checks c with Verify, or with VerifyToken when c has no key ID.
func (a *authenticator) verify(r *http.Request, c credentials) (*tokens.Key, error) {
	if c.keyID == "" {
		return a.m.VerifyToken(r.Context(), c.token)
	}
	return a.m.Verify(r.Context(), c.keyID, c.token)
}

// credentials reads the credentials of r. A request with either header
// uses the headers; only a request with neither falls back to the
// Authorization header.
func (a *authenticator) credentials(r *http.Request) (credentials, error) {
	keyID, token := r.Header.Get(a.keyIDHeader), r.Header.Get(a.tokenHeader)
	switch {
	case keyID != "" && token != "":
		return credentials{keyID: keyID, token: token}, nil
	case keyID != "" || token != "" || !a.bearer && !a.bearerToken:
		return credentials{}, ErrMissingCredentials
	}
	scheme, value, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return credentials{}, ErrMissingCredentials
	}
	value = strings.TrimSpace(value)
	if a.bearerToken {
		if value == "" {
			return credentials{}, tokens.ErrInvalidCredentials
		}
		return credentials{token: value, fromBearer: true}, nil
	}
	keyID, token, ok = strings.Cut(value, ":")
	if !ok || keyID == "" || token == "" {
		return credentials{}, tokens.ErrInvalidCredentials
	}
	return credentials{keyID: keyID, token: token, fromBearer: true}, nil
}

func (a *authenticator) authenticated(r *http.Request, key *tokens.Key, fromBearer bool) *http.Request {
	r = r.WithContext(ContextWithKey(r.Context(), key))
	r.Header = r.Header.Clone()
	if fromBearer {
		r.Header.Del("Authorization")
	} else {
		r.Header.Del(a.tokenHeader)
	}
	return r
}

func (a *authenticator) challenge() string {
	c := fmt.Sprintf("APIKey key_id_header=%q, token_header=%q", a.keyIDHeader, a.tokenHeader)
	if a.bearer || a.bearerToken {
		c += ", Bearer"
	}
	return c
}

func (a *authenticator) writeError(w http.ResponseWriter, _ *http.Request, err error) {
	switch {
	case errors.Is(err, ErrMissingCredentials):
		how := fmt.Sprintf("send the key ID in the %s header and the token in the %s header", a.keyIDHeader, a.tokenHeader)
		switch {
		case a.bearer:
			how += ", or Authorization: Bearer <key ID>:<token>"
		case a.bearerToken:
			how += ", or Authorization: Bearer <token>"
		}
		writeJSONError(w, http.StatusUnauthorized, "invalid_credentials", how)
	case errors.Is(err, tokens.ErrInvalidCredentials):
		writeJSONError(w, http.StatusUnauthorized, "invalid_credentials", "the key ID or the token is wrong")
	case errors.Is(err, tokens.ErrKeyInactive):
		writeJSONError(w, http.StatusForbidden, "key_inactive", "the key is deactivated")
	case errors.Is(err, tokens.ErrKeyExpired):
		writeJSONError(w, http.StatusUnauthorized, "key_expired", "the key has expired")
	default:
		writeJSONError(w, http.StatusInternalServerError, "internal_error", "authentication is unavailable, try again later")
	}
}

func writeJSONError(w http.ResponseWriter, status int, code, message string) {
	body, err := json.Marshal(struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}{code, message})
	if err != nil {
		panic("tokenhttp: encoding an error body: " + err.Error()) // two strings always encode
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

type contextKey struct{}

// ContextWithKey returns a copy of ctx that carries key, as Authenticate
// gives it to the next handler. It lets tests of such handlers do without
// the middleware.
func ContextWithKey(ctx context.Context, key *tokens.Key) context.Context {
	return context.WithValue(ctx, contextKey{}, key)
}

// KeyFromContext returns the key that Authenticate verified for the
// request whose context is ctx, and false if there is none.
func KeyFromContext(ctx context.Context) (*tokens.Key, bool) {
	key, ok := ctx.Value(contextKey{}).(*tokens.Key)
	return key, ok && key != nil
}

// validHeaderName reports whether name is an HTTP field name (an RFC 9110
// token).
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}
