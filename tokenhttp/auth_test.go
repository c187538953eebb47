package tokenhttp_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/benbjohnson/clock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/store/memstore"
	"github.com/keyrenew/tokens/tokenhttp"
)

const shareBase = "https://share.example.com/credentials/"

var errStoreDown = errors.New("store down")

// flakyStore is a memstore whose look-ups fail while down is set.
type flakyStore struct {
	*memstore.Store
	down atomic.Bool
}

func (s *flakyStore) Key(ctx context.Context, id string) (tokens.KeyRecord, error) {
	if s.down.Load() {
		return tokens.KeyRecord{}, errStoreDown
	}
	return s.Store.Key(ctx, id)
}

// ViewKey hides the memstore's, which Verify would use instead of Key.
func (s *flakyStore) ViewKey(ctx context.Context, id string) (*tokens.KeyRecord, error) {
	rec, err := s.Key(ctx, id)
	if err != nil {
		return nil, err
	}
	return &rec, nil
}

func (s *flakyStore) KeyByLink(ctx context.Context, link tokens.Digest) (tokens.KeyRecord, error) {
	if s.down.Load() {
		return tokens.KeyRecord{}, errStoreDown
	}
	return s.Store.KeyByLink(ctx, link)
}

type env struct {
	clk   *clock.Mock
	store *flakyStore
	m     *tokens.Manager
}

func newEnv(t *testing.T, base string) *env {
	t.Helper()
	e := &env{clk: clock.NewMock(), store: &flakyStore{Store: memstore.New()}}
	m, err := tokens.NewManager(e.store, tokens.WithClock(e.clk), tokens.WithShareBaseURL(base))
	require.NoError(t, err)
	e.m = m
	return e
}

// newKey creates a key and returns it with its revealed credentials.
func (e *env) newKey(t *testing.T) (*tokens.Key, *tokens.Credentials) {
	t.Helper()
	ctx := context.Background()
	key, link, err := e.m.CreateKey(ctx, tokens.KeySpec{Account: "acme", Name: "erp-sync"})
	require.NoError(t, err)
	creds, err := e.m.RedeemLink(ctx, link.URL)
	require.NoError(t, err)
	return key, creds
}

type errorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// protected answers 200 with the authenticated key's ID and reports what
// reached it.
func protected(t *testing.T, seen **http.Request) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, ok := tokenhttp.KeyFromContext(r.Context())
		if !assert.True(t, ok, "no key in the context") {
			return
		}
		*seen = r
		_, _ = w.Write([]byte(key.ID))
	})
}

func serve(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

func apiRequest(headers map[string]string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/api/orders", nil)
	for k, v := range headers {
		r.Header.Set(k, v)
	}
	return r
}

// wrongToken is token with its last character changed: never token
// itself, whatever that character was.
func wrongToken(token string) string {
	last := byte('x')
	if token[len(token)-1] == last {
		last = 'y'
	}
	return token[:len(token)-1] + string(last)
}

// requireRefused checks a JSON refusal and that it repeats none of secrets.
func requireRefused(t *testing.T, rec *httptest.ResponseRecorder, status int, code string, secrets ...string) {
	t.Helper()
	require.Equal(t, status, rec.Code, rec.Body.String())
	assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	assert.Equal(t, "no-store", rec.Header().Get("Cache-Control"))
	var body errorBody
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
	assert.Equal(t, code, body.Error)
	assert.NotEmpty(t, body.Message)
	for _, s := range secrets {
		if s != "" {
			assert.NotContains(t, rec.Body.String(), s)
			for name, values := range rec.Header() {
				for _, v := range values {
					assert.NotContains(t, v, s, "header %s", name)
				}
			}
		}
	}
	if status == http.StatusUnauthorized {
		assert.Contains(t, rec.Header().Get("WWW-Authenticate"), "APIKey")
	} else {
		assert.Empty(t, rec.Header().Get("WWW-Authenticate"))
	}
}

func TestAuthenticateLetsValidKeyThrough(t *testing.T) {
	e := newEnv(t, shareBase)
	key, creds := e.newKey(t)
	var seen *http.Request
	h := mustAuthenticate(t, e.m)(protected(t, &seen))

	r := apiRequest(map[string]string{"X-API-Key-ID": creds.KeyID, "X-API-Token": creds.Token})
	rec := serve(h, r)

	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, key.ID, rec.Body.String())
	require.NotNil(t, seen)
	assert.Empty(t, seen.Header.Get("X-API-Token"), "the token header reached the next handler")
	assert.Equal(t, creds.KeyID, seen.Header.Get("X-API-Key-ID"))
	assert.Equal(t, creds.Token, r.Header.Get("X-API-Token"), "the caller's request was modified")
	got, err := e.m.Key(context.Background(), key.ID)
	require.NoError(t, err)
	assert.Equal(t, e.clk.Now().UTC(), got.Token.LastUsedAt, "Verify did not record the use")
}

func TestAuthenticateAcceptsOldAndNewTokenDuringRenewal(t *testing.T) {
	e := newEnv(t, shareBase)
	key, oldCreds := e.newKey(t)
	link, err := e.m.Renew(context.Background(), key.ID, tokens.RenewOptions{})
	require.NoError(t, err)
	newCreds, err := e.m.RedeemLink(context.Background(), link.URL)
	require.NoError(t, err)
	var seen *http.Request
	h := mustAuthenticate(t, e.m)(protected(t, &seen))

	for _, c := range []*tokens.Credentials{oldCreds, newCreds} {
		rec := serve(h, apiRequest(map[string]string{"X-API-Key-ID": c.KeyID, "X-API-Token": c.Token}))
		assert.Equal(t, http.StatusOK, rec.Code)
	}
}

func TestAuthenticateRefusesMissingCredentials(t *testing.T) {
	e := newEnv(t, shareBase)
	_, creds := e.newKey(t)
	var seen *http.Request
	h := mustAuthenticate(t, e.m)(protected(t, &seen))

	for name, headers := range map[string]map[string]string{
		"no headers":     {},
		"key ID only":    {"X-API-Key-ID": creds.KeyID},
		"token only":     {"X-API-Token": creds.Token},
		"empty key ID":   {"X-API-Key-ID": "", "X-API-Token": creds.Token},
		"bearer ignored": {"Authorization": "Bearer " + creds.KeyID + ":" + creds.Token},
	} {
		t.Run(name, func(t *testing.T) {
			rec := serve(h, apiRequest(headers))
			requireRefused(t, rec, http.StatusUnauthorized, "invalid_credentials", creds.Token)
			assert.Contains(t, rec.Body.String(), "X-API-Key-ID", "the message should name the headers")
		})
	}
	assert.Nil(t, seen)
}

func TestAuthenticateRefusesWrongCredentials(t *testing.T) {
	e := newEnv(t, shareBase)
	key, creds := e.newKey(t)
	_, other := e.newKey(t)
	var seen *http.Request
	h := mustAuthenticate(t, e.m)(protected(t, &seen))

	for name, c := range map[string][2]string{
		"another key's token": {creds.KeyID, other.Token},
		"unknown key":         {"key_unknownunknownunknow", creds.Token},
		"malformed token":     {creds.KeyID, wrongToken(creds.Token)},
		"garbage":             {"<script>", "'; drop table keys; --"},
		"long key ID":         {strings.Repeat("k", 10_000), creds.Token},
	} {
		t.Run(name, func(t *testing.T) {
			rec := serve(h, apiRequest(map[string]string{"X-API-Key-ID": c[0], "X-API-Token": c[1]}))
			requireRefused(t, rec, http.StatusUnauthorized, "invalid_credentials", c[0], c[1], creds.Token, other.Token)
		})
	}
	assert.Nil(t, seen)
	got, err := e.m.Key(context.Background(), key.ID)
	require.NoError(t, err)
	assert.True(t, got.Token.LastUsedAt.IsZero(), "a refused request recorded a use")
}

func TestAuthenticateRefusesInactiveKey(t *testing.T) {
	e := newEnv(t, shareBase)
	key, creds := e.newKey(t)
	require.NoError(t, e.m.Deactivate(context.Background(), key.ID))
	var seen *http.Request
	h := mustAuthenticate(t, e.m)(protected(t, &seen))

	rec := serve(h, apiRequest(map[string]string{"X-API-Key-ID": creds.KeyID, "X-API-Token": creds.Token}))

	requireRefused(t, rec, http.StatusForbidden, "key_inactive", creds.Token)
	assert.Nil(t, seen)
}

func TestAuthenticateHidesStoreErrors(t *testing.T) {
	e := newEnv(t, shareBase)
	_, creds := e.newKey(t)
	e.store.down.Store(true)
	var seen *http.Request
	h := mustAuthenticate(t, e.m)(protected(t, &seen))

	rec := serve(h, apiRequest(map[string]string{"X-API-Key-ID": creds.KeyID, "X-API-Token": creds.Token}))

	requireRefused(t, rec, http.StatusInternalServerError, "internal_error", creds.Token, errStoreDown.Error())
	assert.Nil(t, seen)
}

func TestAuthenticateWithCustomHeaders(t *testing.T) {
	e := newEnv(t, shareBase)
	key, creds := e.newKey(t)
	var seen *http.Request
	h := mustAuthenticate(t, e.m,
		tokenhttp.WithKeyIDHeader("x-client-id"),
		tokenhttp.WithTokenHeader("X-Client-Secret"),
	)(protected(t, &seen))

	rec := serve(h, apiRequest(map[string]string{"X-Client-Id": creds.KeyID, "X-Client-Secret": creds.Token}))
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, key.ID, rec.Body.String())
	assert.Empty(t, seen.Header.Get("X-Client-Secret"))

	rec = serve(h, apiRequest(map[string]string{"X-API-Key-ID": creds.KeyID, "X-API-Token": creds.Token}))
	requireRefused(t, rec, http.StatusUnauthorized, "invalid_credentials", creds.Token)
	assert.Contains(t, rec.Body.String(), "X-Client-Id")
	assert.Contains(t, rec.Header().Get("WWW-Authenticate"), `token_header="X-Client-Secret"`)
}

func TestAuthenticateWithBearer(t *testing.T) {
	e := newEnv(t, shareBase)
	key, creds := e.newKey(t)
	var seen *http.Request
	h := mustAuthenticate(t, e.m, tokenhttp.WithBearer())(protected(t, &seen))

	rec := serve(h, apiRequest(map[string]string{"Authorization": "Bearer " + creds.KeyID + ":" + creds.Token}))
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, key.ID, rec.Body.String())
	assert.Empty(t, seen.Header.Get("Authorization"))

	rec = serve(h, apiRequest(map[string]string{"X-API-Key-ID": creds.KeyID, "X-API-Token": creds.Token}))
	assert.Equal(t, http.StatusOK, rec.Code, "the headers still work")

	for name, auth := range map[string]string{
		"no colon":     "Bearer " + creds.Token,
		"wrong token":  "bearer " + creds.KeyID + ":" + creds.Token + "x",
		"empty key ID": "Bearer :" + creds.Token,
	} {
		t.Run(name, func(t *testing.T) {
			rec := serve(h, apiRequest(map[string]string{"Authorization": auth}))
			requireRefused(t, rec, http.StatusUnauthorized, "invalid_credentials", creds.Token)
			assert.Contains(t, rec.Header().Get("WWW-Authenticate"), "Bearer")
		})
	}
	rec = serve(h, apiRequest(map[string]string{"Authorization": "Basic " + creds.Token}))
	requireRefused(t, rec, http.StatusUnauthorized, "invalid_credentials", creds.Token)
}

func TestAuthenticateWithErrorHandler(t *testing.T) {
	e := newEnv(t, shareBase)
	key, creds := e.newKey(t)
	var got []error
	h := mustAuthenticate(t, e.m, tokenhttp.WithErrorHandler(func(w http.ResponseWriter, _ *http.Request, err error) {
		got = append(got, err)
		w.WriteHeader(http.StatusTeapot)
	}))(http.NotFoundHandler())

	rec := serve(h, apiRequest(nil))
	assert.Equal(t, http.StatusTeapot, rec.Code)
	assert.NotEmpty(t, rec.Header().Get("WWW-Authenticate"))
	serve(h, apiRequest(map[string]string{"X-API-Key-ID": creds.KeyID, "X-API-Token": creds.Token + "x"}))
	require.NoError(t, e.m.Deactivate(context.Background(), key.ID))
	serve(h, apiRequest(map[string]string{"X-API-Key-ID": creds.KeyID, "X-API-Token": creds.Token}))
	e.store.down.Store(true)
	serve(h, apiRequest(map[string]string{"X-API-Key-ID": creds.KeyID, "X-API-Token": creds.Token}))

	require.Len(t, got, 4)
	assert.ErrorIs(t, got[0], tokenhttp.ErrMissingCredentials)
	assert.ErrorIs(t, got[0], tokens.ErrInvalidCredentials)
	assert.ErrorIs(t, got[1], tokens.ErrInvalidCredentials)
	assert.ErrorIs(t, got[2], tokens.ErrKeyInactive)
	assert.ErrorIs(t, got[3], errStoreDown)
}

func TestAuthenticateRefusesMisconfiguration(t *testing.T) {
	e := newEnv(t, shareBase)
	for name, opts := range map[string][]tokenhttp.AuthOption{
		"empty header":       {tokenhttp.WithKeyIDHeader("")},
		"invalid header":     {tokenhttp.WithTokenHeader("X Token")},
		"same headers":       {tokenhttp.WithKeyIDHeader("x-key"), tokenhttp.WithTokenHeader("X-Key")},
		"nil error handler":  {tokenhttp.WithErrorHandler(nil)},
		"nil error reporter": {tokenhttp.WithErrorReporter(nil)},
		"nil option":         {nil},
	} {
		t.Run(name, func(t *testing.T) {
			mw, err := tokenhttp.Authenticate(e.m, opts...)
			assert.Error(t, err)
			assert.Nil(t, mw)
		})
	}
	_, err := tokenhttp.Authenticate(nil)
	assert.Error(t, err)
}

// TestOptionsApplyWhereTheySay: an option of the middleware given to the
// link handler does not compile, because it is not a LinkOption; the
// shared option is both. The compiler checks the calls; this test checks
// the types, so that a change that made every option fit everywhere again
// fails here.
func TestOptionsApplyWhereTheySay(t *testing.T) {
	authOption := reflect.TypeFor[tokenhttp.AuthOption]()
	linkOption := reflect.TypeFor[tokenhttp.LinkOption]()
	scanOption := reflect.TypeFor[tokenhttp.ScanOption]()
	for name, opt := range map[string]tokenhttp.ScanOption{
		"WithPublicKeysURL": tokenhttp.WithPublicKeysURL("https://example.com/keys"),
		"WithHTTPClient":    tokenhttp.WithHTTPClient(http.DefaultClient),
		"WithScanLimits":    tokenhttp.WithScanLimits(10, 1),
	} {
		assert.False(t, reflect.TypeOf(opt).Implements(authOption), "%s is an AuthOption", name)
		assert.False(t, reflect.TypeOf(opt).Implements(linkOption), "%s is a LinkOption", name)
	}
	for name, opt := range map[string]tokenhttp.AuthOption{
		"WithKeyIDHeader":  tokenhttp.WithKeyIDHeader("X-Key"),
		"WithTokenHeader":  tokenhttp.WithTokenHeader("X-Secret"),
		"WithBearer":       tokenhttp.WithBearer(),
		"WithErrorHandler": tokenhttp.WithErrorHandler(func(http.ResponseWriter, *http.Request, error) {}),
	} {
		assert.False(t, reflect.TypeOf(opt).Implements(linkOption), "%s is a LinkOption", name)
	}
	shared := reflect.TypeOf(tokenhttp.WithErrorReporter(func(*http.Request, error) {}))
	assert.True(t, shared.Implements(authOption))
	assert.True(t, shared.Implements(linkOption))
	assert.True(t, shared.Implements(scanOption))
}

func TestZeroOptionIsRefused(t *testing.T) {
	e := newEnv(t, shareBase)
	_, err := tokenhttp.Authenticate(e.m, tokenhttp.Option{})
	assert.Error(t, err)
	_, err = tokenhttp.NewLinkHandler(e.m, tokenhttp.Option{})
	assert.Error(t, err)
	_, err = tokenhttp.NewSecretScanningHandler(e.m, tokenhttp.Option{})
	assert.Error(t, err)
}

// TestAuthenticateReportsStoreErrors: WithErrorReporter works the same on
// the middleware as on the link pages: it sees what made the answer a 500,
// not the clients' bad credentials, and the response stays the default.
func TestAuthenticateReportsStoreErrors(t *testing.T) {
	e := newEnv(t, shareBase)
	_, creds := e.newKey(t)
	var reported []error
	var seen *http.Request
	h := mustAuthenticate(t, e.m, tokenhttp.WithErrorReporter(func(_ *http.Request, err error) {
		reported = append(reported, err)
	}))(protected(t, &seen))
	for _, token := range []string{creds.Token + "x", ""} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, apiRequest(map[string]string{"X-API-Key-ID": creds.KeyID, "X-API-Token": token}))
		assert.Equal(t, http.StatusUnauthorized, rec.Code)
	}
	assert.Empty(t, reported, "bad credentials were reported as errors")
	e.store.down.Store(true)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, apiRequest(map[string]string{"X-API-Key-ID": creds.KeyID, "X-API-Token": creds.Token}))
	assert.Equal(t, http.StatusInternalServerError, rec.Code)
	require.Len(t, reported, 1)
	assert.ErrorIs(t, reported[0], errStoreDown)
	assert.NotContains(t, reported[0].Error(), creds.Token)
}

func mustAuthenticate(t *testing.T, m *tokens.Manager, opts ...tokenhttp.AuthOption) func(http.Handler) http.Handler {
	t.Helper()
	mw, err := tokenhttp.Authenticate(m, opts...)
	require.NoError(t, err)
	return mw
}

func TestKeyFromContext(t *testing.T) {
	_, ok := tokenhttp.KeyFromContext(context.Background())
	assert.False(t, ok)
	_, ok = tokenhttp.KeyFromContext(tokenhttp.ContextWithKey(context.Background(), nil))
	assert.False(t, ok)
	key := &tokens.Key{ID: "key_1"}
	got, ok := tokenhttp.KeyFromContext(tokenhttp.ContextWithKey(context.Background(), key))
	assert.True(t, ok)
	assert.Same(t, key, got)
}
