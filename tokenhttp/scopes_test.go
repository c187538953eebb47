package tokenhttp_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/jmoiron/sqlx"
	_ "github.com/mattn/go-sqlite3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/store/memstore"
	"github.com/keyrenew/tokens/store/sqlstore"
	"github.com/keyrenew/tokens/tokenhttp"
)

// stores are the real stores the scope and bearer-token tests run on:
// memory, and a SQLite file.
var stores = []struct {
	name string
	new  func(t *testing.T) tokens.Store
}{
	{"memstore", func(*testing.T) tokens.Store { return memstore.New() }},
	{"sqlite", func(t *testing.T) tokens.Store {
		db, err := sqlx.Open("sqlite3", "file:"+filepath.Join(t.TempDir(), "tokens.db")+
			"?_busy_timeout=10000&_journal_mode=WAL&_txlock=immediate")
		require.NoError(t, err)
		t.Cleanup(func() { _ = db.Close() })
		st, err := sqlstore.New(db)
		require.NoError(t, err)
		require.NoError(t, st.Migrate(context.Background()))
		return st
	}},
}

// forEachStore runs test with a Manager on each real store and the mock
// clock it reads.
func forEachStore(t *testing.T, test func(t *testing.T, m *tokens.Manager, clk *clock.Mock)) {
	for _, s := range stores {
		t.Run(s.name, func(t *testing.T) {
			clk := clock.NewMock()
			clk.Set(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
			m, err := tokens.NewManager(s.new(t), tokens.WithClock(clk), tokens.WithShareBaseURL(shareBase))
			require.NoError(t, err)
			test(t, m, clk)
		})
	}
}

// scopedKey creates a key of spec and returns its revealed credentials.
func scopedKey(t *testing.T, m *tokens.Manager, spec tokens.KeySpec) *tokens.Credentials {
	t.Helper()
	ctx := context.Background()
	_, link, err := m.CreateKey(ctx, spec)
	require.NoError(t, err)
	creds, err := m.RedeemLink(ctx, link.URL)
	require.NoError(t, err)
	return creds
}

func mustRequireScopes(t *testing.T, scopes []string, opts ...tokenhttp.ScopeOption) func(http.Handler) http.Handler {
	t.Helper()
	mw, err := tokenhttp.RequireScopes(scopes, opts...)
	require.NoError(t, err)
	return mw
}

type scopeErrorBody struct {
	Error         string   `json:"error"`
	Message       string   `json:"message"`
	MissingScopes []string `json:"missing_scopes"`
}

func TestRequireScopes(t *testing.T) {
	forEachStore(t, func(t *testing.T, m *tokens.Manager, _ *clock.Mock) {
		creds := scopedKey(t, m, tokens.KeySpec{Account: "acme", Name: "erp-sync", Scopes: []string{"invoices:read", "orders:read"}})
		auth := mustAuthenticate(t, m)
		var seen *http.Request
		read := auth(mustRequireScopes(t, []string{"invoices:read"})(protected(t, &seen)))
		write := auth(mustRequireScopes(t, []string{"invoices:read", "invoices:write", "admin"})(protected(t, &seen)))
		headers := map[string]string{"X-API-Key-ID": creds.KeyID, "X-API-Token": creds.Token}

		rec := serve(read, apiRequest(headers))
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		assert.Equal(t, creds.KeyID, rec.Body.String())

		seen = nil
		rec = serve(write, apiRequest(headers))
		requireRefused(t, rec, http.StatusForbidden, "insufficient_scope", creds.Token)
		var body scopeErrorBody
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
		assert.Equal(t, []string{"invoices:write", "admin"}, body.MissingScopes)
		assert.Contains(t, body.Message, "invoices:write")
		assert.Nil(t, seen, "the handler ran without the scope")

		// A removed scope stops working at once in the Manager that
		// removed it.
		none := []string{"orders:read"}
		require.NoError(t, m.UpdateKey(context.Background(), creds.KeyID, tokens.KeyUpdate{Scopes: &none}))
		rec = serve(read, apiRequest(headers))
		requireRefused(t, rec, http.StatusForbidden, "insufficient_scope", creds.Token)
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
		assert.Equal(t, []string{"invoices:read"}, body.MissingScopes)

		// Scopes match exactly: no prefix or wildcard reading.
		prefixed := []string{"invoices:read:all", "invoices"}
		require.NoError(t, m.UpdateKey(context.Background(), creds.KeyID, tokens.KeyUpdate{Scopes: &prefixed}))
		rec = serve(read, apiRequest(headers))
		assert.Equal(t, http.StatusForbidden, rec.Code)
	})
}

// TestRequireScopesWithoutAuthenticate: a route guarded by RequireScopes
// alone is the server's mistake: 500 and the reporter, never a 403 that
// would send the client looking for a scope.
func TestRequireScopesWithoutAuthenticate(t *testing.T) {
	var reported []error
	h := mustRequireScopes(t, []string{"invoices:read"}, tokenhttp.WithErrorReporter(func(_ *http.Request, err error) {
		reported = append(reported, err)
	}))(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		t.Error("the handler ran without a key")
	}))

	rec := serve(h, apiRequest(nil))
	requireRefused(t, rec, http.StatusInternalServerError, "internal_error")
	require.Len(t, reported, 1)
	assert.ErrorIs(t, reported[0], tokenhttp.ErrNoAuthenticatedKey)

	// ContextWithKey stands in for Authenticate in tests of handlers.
	key := &tokens.Key{ID: "key_1", Scopes: []string{"invoices:read"}}
	r := apiRequest(nil)
	rec = httptest.NewRecorder()
	mustRequireScopes(t, []string{"invoices:read"})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})).ServeHTTP(rec, r.WithContext(tokenhttp.ContextWithKey(r.Context(), key)))
	assert.Equal(t, http.StatusNoContent, rec.Code)
}

func TestRequireScopesRefusesMisconfiguration(t *testing.T) {
	for name, scopes := range map[string][]string{
		"none":        nil,
		"empty":       {""},
		"space":       {"invoices read"},
		"wildcard":    {"invoices:*"},
		"non-ASCII":   {"rechnungen:lésen"},
		"one too big": {string(make([]byte, tokens.MaxScopeLen+1))},
	} {
		t.Run(name, func(t *testing.T) {
			mw, err := tokenhttp.RequireScopes(scopes)
			assert.Error(t, err)
			assert.Nil(t, mw)
		})
	}
	_, err := tokenhttp.RequireScopes([]string{"a"}, nil)
	assert.Error(t, err)
	_, err = tokenhttp.RequireScopes([]string{"a"}, tokenhttp.WithErrorReporter(nil))
	assert.Error(t, err)
	long := make([]byte, tokens.MaxScopeLen)
	for i := range long {
		long[i] = 'a'
	}
	_, err = tokenhttp.RequireScopes([]string{string(long), "a-Z_0.9/x:y"})
	assert.NoError(t, err, "the longest scope and every allowed character")
}

func TestAuthenticateWithBearerToken(t *testing.T) {
	forEachStore(t, func(t *testing.T, m *tokens.Manager, _ *clock.Mock) {
		creds := scopedKey(t, m, tokens.KeySpec{Account: "acme", Name: "erp-sync"})
		var seen *http.Request
		h := mustAuthenticate(t, m, tokenhttp.WithBearerToken())(protected(t, &seen))

		rec := serve(h, apiRequest(map[string]string{"Authorization": "Bearer " + creds.Token}))
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		assert.Equal(t, creds.KeyID, rec.Body.String())
		assert.Empty(t, seen.Header.Get("Authorization"), "the token reached the handler")

		rec = serve(h, apiRequest(map[string]string{"X-API-Key-ID": creds.KeyID, "X-API-Token": creds.Token}))
		assert.Equal(t, http.StatusOK, rec.Code, "the headers still work")

		for name, auth := range map[string]string{
			"wrong token":      "Bearer " + wrongToken(creds.Token),
			"key ID and token": "Bearer " + creds.KeyID + ":" + creds.Token,
			"empty":            "Bearer  ",
		} {
			t.Run(name, func(t *testing.T) {
				rec := serve(h, apiRequest(map[string]string{"Authorization": auth}))
				requireRefused(t, rec, http.StatusUnauthorized, "invalid_credentials", creds.Token)
				assert.Contains(t, rec.Header().Get("WWW-Authenticate"), "Bearer")
			})
		}
		rec = serve(h, apiRequest(nil))
		requireRefused(t, rec, http.StatusUnauthorized, "invalid_credentials")
		var body errorBody
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
		assert.Contains(t, body.Message, "Authorization: Bearer <token>")
	})
}

// TestAuthenticateWithBearerTokenImported: a token that an integration
// held before the move to this library, in no format of the library's,
// authenticates as one string, whether the import had it or only its
// SHA-256.
func TestAuthenticateWithBearerTokenImported(t *testing.T) {
	forEachStore(t, func(t *testing.T, m *tokens.Manager, _ *clock.Mock) {
		ctx := context.Background()
		plain, hashed := "legacy-7f3a9c2e1b4d8a6f", "sk_live:0123456789abcdef"
		_, err := m.ImportKey(ctx, tokens.ImportSpec{KeySpec: tokens.KeySpec{Name: "plain", Scopes: []string{"orders:read"}}, ID: "legacy_1", Token: plain})
		require.NoError(t, err)
		_, err = m.ImportKey(ctx, tokens.ImportSpec{KeySpec: tokens.KeySpec{Name: "hashed"}, ID: "legacy_2", TokenSHA256: tokens.Digest(sha256.Sum256([]byte(hashed)))})
		require.NoError(t, err)

		h := mustAuthenticate(t, m, tokenhttp.WithBearerToken())(mustRequireScopes(t, []string{"orders:read"})(http.HandlerFunc(
			func(w http.ResponseWriter, r *http.Request) {
				key, _ := tokenhttp.KeyFromContext(r.Context())
				_, _ = w.Write([]byte(key.ID))
			})))
		rec := serve(h, apiRequest(map[string]string{"Authorization": "Bearer " + plain}))
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		assert.Equal(t, "legacy_1", rec.Body.String())
		rec = serve(h, apiRequest(map[string]string{"Authorization": "Bearer " + hashed}))
		requireRefused(t, rec, http.StatusForbidden, "insufficient_scope", hashed)
	})
}

// TestAuthenticateRefusesExpiredKey: an expired key is refused like an
// inactive one, only for the right token, and not reported as the
// server's failure; a 401, since the client needs a new key.
func TestAuthenticateRefusesExpiredKey(t *testing.T) {
	forEachStore(t, func(t *testing.T, m *tokens.Manager, clk *clock.Mock) {
		creds := scopedKey(t, m, tokens.KeySpec{Name: "erp-sync", ExpiresAt: clk.Now().Add(time.Hour)})
		var reported []error
		var seen *http.Request
		h := mustAuthenticate(t, m, tokenhttp.WithBearerToken(), tokenhttp.WithErrorReporter(func(_ *http.Request, err error) {
			reported = append(reported, err)
		}))(protected(t, &seen))
		bearer := map[string]string{"Authorization": "Bearer " + creds.Token}
		headers := map[string]string{"X-API-Key-ID": creds.KeyID, "X-API-Token": creds.Token}

		clk.Add(time.Hour - time.Nanosecond)
		assert.Equal(t, http.StatusOK, serve(h, apiRequest(bearer)).Code)
		clk.Add(time.Nanosecond)
		for _, r := range []map[string]string{bearer, headers} {
			rec := serve(h, apiRequest(r))
			requireRefused(t, rec, http.StatusUnauthorized, "key_expired", creds.Token)
			assert.NotEmpty(t, rec.Header().Get("WWW-Authenticate"))
		}
		rec := serve(h, apiRequest(map[string]string{"X-API-Key-ID": creds.KeyID, "X-API-Token": wrongToken(creds.Token)}))
		requireRefused(t, rec, http.StatusUnauthorized, "invalid_credentials", creds.Token)
		assert.Empty(t, reported)

		never := time.Time{}
		require.NoError(t, m.UpdateKey(context.Background(), creds.KeyID, tokens.KeyUpdate{ExpiresAt: &never}))
		assert.Equal(t, http.StatusOK, serve(h, apiRequest(bearer)).Code, "expiry is not deletion")
	})
}

func TestAuthenticateRefusesBothBearerForms(t *testing.T) {
	e := newEnv(t, shareBase)
	_, err := tokenhttp.Authenticate(e.m, tokenhttp.WithBearer(), tokenhttp.WithBearerToken())
	assert.ErrorContains(t, err, "choose one")
}
