package tokenhttp_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/internal/scantest"
	"github.com/keyrenew/tokens/store/memstore"
	"github.com/keyrenew/tokens/tokenhttp"
)

type scanEnv struct {
	t       testing.TB
	clk     *clock.Mock
	m       *tokens.Manager
	key     *scantest.Key
	keys    *scantest.KeysServer
	h       http.Handler
	reports []error
	leaks   []tokens.LeakResult
	mu      sync.Mutex
}

func newScanEnv(t testing.TB, store tokens.Store, opts ...tokens.Option) *scanEnv {
	t.Helper()
	e := &scanEnv{t: t, clk: clock.NewMock(), key: scantest.NewKey(t, "key-1")}
	e.clk.Set(time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC))
	m, err := tokens.NewManager(store, append([]tokens.Option{tokens.WithClock(e.clk), tokens.WithShareBaseURL(shareBase)}, opts...)...)
	require.NoError(t, err)
	e.m = m
	e.keys = scantest.NewKeysServer(t, e.key)
	e.h, err = tokenhttp.NewSecretScanningHandler(m,
		tokenhttp.WithPublicKeysURL(e.keys.URL),
		tokenhttp.WithHTTPClient(e.keys.Client()), // the Manager's clock is the handler's by default
		tokenhttp.WithErrorReporter(func(_ *http.Request, err error) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.reports = append(e.reports, err)
		}),
		tokenhttp.WithLeakNotifier(func(_ context.Context, _ tokens.Leak, res tokens.LeakResult) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.leaks = append(e.leaks, res)
		}))
	require.NoError(t, err)
	return e
}

type scanEntry struct {
	Token  string `json:"token"`
	Type   string `json:"type"`
	URL    string `json:"url"`
	Source string `json:"source"`
}

func entries(tokens ...string) []scanEntry {
	out := make([]scanEntry, len(tokens))
	for i, tok := range tokens {
		out[i] = scanEntry{Token: tok, Type: "keyrenew_token", URL: fmt.Sprintf("https://github.com/octo/app/blob/main/f%d", i), Source: "content"}
	}
	return out
}

func body(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

// post sends raw with the given key identifier and signature headers
// ("" leaves a header out).
func (e *scanEnv) post(raw []byte, keyID, sig string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "/github/secret-scanning", bytes.NewReader(raw))
	r.Header.Set("Content-Type", "application/json")
	if keyID != "" {
		r.Header.Set("Github-Public-Key-Identifier", keyID)
	}
	if sig != "" {
		r.Header.Set("Github-Public-Key-Signature", sig)
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	return w
}

func (e *scanEnv) postSigned(raw []byte) *httptest.ResponseRecorder {
	return e.post(raw, e.key.ID, e.key.Sign(raw))
}

type feedback struct {
	TokenRaw  string `json:"token_raw"`
	TokenHash string `json:"token_hash"`
	TokenType string `json:"token_type"`
	Label     string `json:"label"`
}

func labels(t testing.TB, w *httptest.ResponseRecorder) map[string]string {
	t.Helper()
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	var got []feedback
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &got))
	out := map[string]string{}
	for _, f := range got {
		require.Empty(t, f.TokenRaw, "the answer never repeats a token")
		require.Equal(t, "keyrenew_token", f.TokenType)
		out[f.TokenHash] = f.Label
	}
	return out
}

func hashOf(token string) string {
	d := sha256.Sum256([]byte(token))
	return hex.EncodeToString(d[:])
}

func (e *scanEnv) issue() *tokens.Credentials {
	e.t.Helper()
	_, link, err := e.m.CreateKey(context.Background(), tokens.KeySpec{Account: "acme", Name: "erp"})
	require.NoError(e.t, err)
	creds, err := e.m.RedeemLink(context.Background(), link.URL)
	require.NoError(e.t, err)
	return creds
}

func TestSecretScanningLabelsEachReportedToken(t *testing.T) {
	e := newScanEnv(t, memstore.New())
	ctx := context.Background()
	found := e.issue()
	renewed := e.issue()
	link, err := e.m.Renew(ctx, renewed.KeyID, tokens.RenewOptions{})
	require.NoError(t, err)
	_, err = e.m.RedeemLink(ctx, link.URL)
	require.NoError(t, err)
	deleted := e.issue()
	_, err = e.m.Renew(ctx, deleted.KeyID, tokens.RenewOptions{OldToken: tokens.DeleteNow})
	require.NoError(t, err)
	otherFormat := newScanEnv(t, memstore.New(), tokens.WithTokenPrefix("zz")).issue().Token
	unknown := "tok_" + strings.Repeat("A", 49)

	reported := []string{found.Token, renewed.Token, deleted.Token, otherFormat, unknown, "ghp_notours0123456789abcdefghijklmnopqrstu"}
	got := labels(t, e.postSigned(body(t, entries(reported...))))
	require.Equal(t, map[string]string{
		hashOf(found.Token):   "true_positive",
		hashOf(renewed.Token): "true_positive", // the old token of a renewal
		hashOf(deleted.Token): "true_positive", // deleted, remembered (R16)
		hashOf(otherFormat):   "false_positive",
		hashOf(unknown):       "false_positive",
		hashOf(reported[5]):   "false_positive",
	}, got)

	for _, id := range []string{found.KeyID, renewed.KeyID, deleted.KeyID} {
		k, err := e.m.Key(ctx, id)
		require.NoError(t, err)
		require.False(t, k.LeakedAt.IsZero(), "LeakedAt of %s", id)
	}
	events, err := e.m.Events(ctx, tokens.EventQuery{KeyID: found.KeyID})
	require.NoError(t, err)
	last := events[len(events)-1]
	require.Equal(t, tokens.EventTokenLeaked, last.Type)
	require.Equal(t, "github/content", last.Source)
	require.Equal(t, "https://github.com/octo/app/blob/main/f0", last.URL)
	require.Len(t, e.leaks, 3, "the notifier hears of each found token")
	require.Empty(t, e.reports)

	// GitHub sends a report again when it got no answer: nothing changes.
	_, before := snapshotEvents(t, e.m)
	require.Equal(t, got, labels(t, e.postSigned(body(t, entries(reported...)))))
	_, after := snapshotEvents(t, e.m)
	require.Equal(t, before, after)
}

func snapshotEvents(t testing.TB, m *tokens.Manager) (int, []tokens.Event) {
	t.Helper()
	events, err := m.Events(context.Background(), tokens.EventQuery{Limit: tokens.MaxEventPage})
	require.NoError(t, err)
	return len(events), events
}

func TestSecretScanningRevokesWithRevokeLeaked(t *testing.T) {
	e := newScanEnv(t, memstore.New(), tokens.WithLeakPolicy(tokens.RevokeLeaked))
	creds := e.issue()
	got := labels(t, e.postSigned(body(t, entries(creds.Token))))
	require.Equal(t, "true_positive", got[hashOf(creds.Token)])
	_, err := e.m.Verify(context.Background(), creds.KeyID, creds.Token)
	require.ErrorIs(t, err, tokens.ErrTokenRevoked)
	require.Len(t, e.leaks, 1)
	require.True(t, e.leaks[0].Revoked)
	require.NotNil(t, e.leaks[0].Link, "the new token's link reaches the notifier")
	fresh, err := e.m.RedeemLink(context.Background(), e.leaks[0].Link.URL)
	require.NoError(t, err)
	_, err = e.m.Verify(context.Background(), creds.KeyID, fresh.Token)
	require.NoError(t, err)
}

// TestSecretScanningRefusesUnsignedReports: every way a signature can be
// wrong gets 401 and records nothing.
func TestSecretScanningRefusesUnsignedReports(t *testing.T) {
	e := newScanEnv(t, memstore.New())
	creds := e.issue()
	raw := body(t, entries(creds.Token))
	stranger := scantest.NewKey(t, e.key.ID)
	flipped := bytes.Clone(raw)
	flipped[len(flipped)/2] ^= 0x01
	var reparsed []map[string]any
	require.NoError(t, json.Unmarshal(raw, &reparsed))
	reserialised, err := json.MarshalIndent(reparsed, "", " ")
	require.NoError(t, err)
	retired := scantest.NewKey(t, "key-0")
	retired.Current = false
	e.keys.SetKeys(e.key, retired)

	for name, w := range map[string]*httptest.ResponseRecorder{
		"no headers":           e.post(raw, "", ""),
		"no signature":         e.post(raw, e.key.ID, ""),
		"no key identifier":    e.post(raw, "", e.key.Sign(raw)),
		"signed by a stranger": e.post(raw, e.key.ID, stranger.Sign(raw)),
		"a flipped body byte":  e.post(flipped, e.key.ID, e.key.Sign(raw)),
		"re-serialised JSON":   e.post(reserialised, e.key.ID, e.key.Sign(raw)),
		"a key not current":    e.post(raw, retired.ID, retired.Sign(raw)),
		"an unknown key":       e.post(raw, "key-9", e.key.Sign(raw)),
		"signature not base64": e.post(raw, e.key.ID, "%%%"),
		"signature not DER":    e.post(raw, e.key.ID, base64.StdEncoding.EncodeToString([]byte("not a signature"))),
	} {
		require.Equal(t, http.StatusUnauthorized, w.Code, name)
		require.NotContains(t, w.Body.String(), creds.Token, name)
	}
	k, err := e.m.Key(context.Background(), creds.KeyID)
	require.NoError(t, err)
	require.True(t, k.LeakedAt.IsZero(), "an unsigned report recorded a leak")
	require.Empty(t, e.reports, "a bad signature is the sender's doing, not reported")
}

// TestSecretScanningFollowsAKeyRotation: a request signed with a key the
// cached document does not have fetches it again, at most every 10 s.
func TestSecretScanningFollowsAKeyRotation(t *testing.T) {
	e := newScanEnv(t, memstore.New())
	creds := e.issue()
	raw := body(t, entries(creds.Token))
	labels(t, e.postSigned(raw))
	require.Equal(t, int32(1), e.keys.Fetches.Load())

	rotated := scantest.NewKey(t, "key-2")
	e.keys.SetKeys(rotated)
	// Within 10 s of the fetch, an unknown identifier does not fetch again.
	require.Equal(t, http.StatusUnauthorized, e.post(raw, rotated.ID, rotated.Sign(raw)).Code)
	require.Equal(t, int32(1), e.keys.Fetches.Load())
	e.clk.Add(10 * time.Second)
	labels(t, e.post(raw, rotated.ID, rotated.Sign(raw)))
	require.Equal(t, int32(2), e.keys.Fetches.Load(), "one fetch for the rotation")
	// The retired key is gone from the new document.
	require.Equal(t, http.StatusUnauthorized, e.postSigned(raw).Code)
	// Made-up identifiers do not hammer the scanner.
	for i := range 20 {
		e.post(raw, fmt.Sprintf("made-up-%d", i), rotated.Sign(raw))
	}
	require.Equal(t, int32(2), e.keys.Fetches.Load())
	// After an hour the document is fetched again for a known key too.
	e.clk.Add(time.Hour)
	labels(t, e.post(raw, rotated.ID, rotated.Sign(raw)))
	require.Equal(t, int32(3), e.keys.Fetches.Load())
}

func TestSecretScanningWithoutItsKeysDocument(t *testing.T) {
	e := newScanEnv(t, memstore.New())
	creds := e.issue()
	e.keys.Close()
	w := e.postSigned(body(t, entries(creds.Token)))
	require.Equal(t, http.StatusServiceUnavailable, w.Code)
	require.Len(t, e.reports, 1)
	require.NotContains(t, e.reports[0].Error(), creds.Token)
}

func TestSecretScanningBoundsTheReport(t *testing.T) {
	e := newScanEnv(t, memstore.New())
	h, err := tokenhttp.NewSecretScanningHandler(e.m,
		tokenhttp.WithPublicKeysURL(e.keys.URL), tokenhttp.WithHTTPClient(e.keys.Client()),
		tokenhttp.WithClock(e.clk), tokenhttp.WithScanLimits(1000, 3))
	require.NoError(t, err)
	e.h = h
	creds := e.issue()
	for name, raw := range map[string][]byte{
		"over the body limit":  body(t, entries(strings.Repeat("x", 1000))),
		"over the batch limit": body(t, entries(creds.Token, "a", "b", "c")),
	} {
		w := e.postSigned(raw)
		require.Equal(t, http.StatusRequestEntityTooLarge, w.Code, name)
	}
	for name, raw := range map[string][]byte{
		"an object":         []byte(`{"token":"x"}`),
		"null":              []byte(`null`),
		"two arrays":        []byte(`[][]`),
		"a token of number": []byte(`[{"token":1}]`),
		"trailing garbage":  []byte(`[] x`),
		"not JSON":          []byte(`tok_`),
	} {
		w := e.postSigned(raw)
		require.Equal(t, http.StatusBadRequest, w.Code, name)
	}
	labels(t, e.postSigned([]byte(`[]`)))
	k, err := e.m.Key(context.Background(), creds.KeyID)
	require.NoError(t, err)
	require.True(t, k.LeakedAt.IsZero())
	require.Equal(t, http.StatusMethodNotAllowed, func() int {
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
		return w.Code
	}())
}

// TestSecretScanningKeepsAReportWithABadURL: a URL that ReportLeak cannot
// record is dropped, the leak is not.
func TestSecretScanningKeepsAReportWithABadURL(t *testing.T) {
	e := newScanEnv(t, memstore.New())
	creds := e.issue()
	raw := body(t, []scanEntry{{Token: creds.Token, Type: "keyrenew_token", URL: "https://x/\n" + strings.Repeat("u", 3000), Source: "weird source\x00"}})
	require.Equal(t, "true_positive", labels(t, e.postSigned(raw))[hashOf(creds.Token)])
	events, err := e.m.Events(context.Background(), tokens.EventQuery{KeyID: creds.KeyID})
	require.NoError(t, err)
	last := events[len(events)-1]
	require.Equal(t, "github/unknown", last.Source)
	require.Empty(t, last.URL)
}

func TestSecretScanningRefusesMisconfiguration(t *testing.T) {
	m, err := tokens.NewManager(memstore.New(), tokens.WithShareBaseURL(shareBase))
	require.NoError(t, err)
	_, err = tokenhttp.NewSecretScanningHandler(nil)
	require.Error(t, err)
	for name, opt := range map[string]tokenhttp.ScanOption{
		"nil option":       nil,
		"relative URL":     tokenhttp.WithPublicKeysURL("/keys"),
		"ftp URL":          tokenhttp.WithPublicKeysURL("ftp://example.com/keys"),
		"nil client":       tokenhttp.WithHTTPClient(nil),
		"nil clock":        tokenhttp.WithClock(nil),
		"zero limits":      tokenhttp.WithScanLimits(0, 0),
		"nil notifier":     tokenhttp.WithLeakNotifier(nil),
		"unnamed scanner":  tokenhttp.WithScanner(tokenhttp.Scanner{PublicKeysURL: "https://x/k", KeyIDHeader: "A", SignatureHeader: "B"}),
		"scanner bad head": tokenhttp.WithScanner(tokenhttp.Scanner{Name: "x", PublicKeysURL: "https://x/k", KeyIDHeader: "A B", SignatureHeader: "B"}),
	} {
		_, err := tokenhttp.NewSecretScanningHandler(m, opt)
		require.Error(t, err, name)
	}
}

// TestSecretScanningServesAnotherScanner: a Scanner of another name and
// headers with the same scheme.
func TestSecretScanningServesAnotherScanner(t *testing.T) {
	e := newScanEnv(t, memstore.New())
	h, err := tokenhttp.NewSecretScanningHandler(e.m, tokenhttp.WithScanner(tokenhttp.Scanner{
		Name: "gitlab", PublicKeysURL: e.keys.URL, KeyIDHeader: "X-Key-Id", SignatureHeader: "X-Signature",
	}), tokenhttp.WithHTTPClient(e.keys.Client()), tokenhttp.WithClock(e.clk))
	require.NoError(t, err)
	creds := e.issue()
	raw := body(t, entries(creds.Token))
	r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(raw))
	r.Header.Set("X-Key-Id", e.key.ID)
	r.Header.Set("X-Signature", e.key.Sign(raw))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	require.Equal(t, "true_positive", labels(t, w)[hashOf(creds.Token)])
	events, err := e.m.Events(context.Background(), tokens.EventQuery{KeyID: creds.KeyID})
	require.NoError(t, err)
	require.Equal(t, "gitlab/content", events[len(events)-1].Source)
}

// FuzzSecretScanningHandler: whatever the body and headers, an unsigned
// report gets 401, a signed one 200, 400 or 413, and a 200 labels every
// reported token; nothing is reported to the application.
//
//	go test -fuzz FuzzSecretScanningHandler ./tokenhttp
func FuzzSecretScanningHandler(f *testing.F) {
	e := newScanEnv(f, memstore.New())
	creds := e.issue()
	f.Add(body(f, entries(creds.Token, "tok_unknown")), "key-1", "", true)
	f.Add([]byte(`[]`), "key-1", "MEUCIQ==", false)
	f.Add([]byte(`[{"token":"`+creds.Token+`","type":"t","url":"u","source":"s"}]`), "", "", true)
	f.Add([]byte("\x00\xff["), "key-1\r\n", "%%", false)
	f.Fuzz(func(t *testing.T, raw []byte, keyID, sig string, signIt bool) {
		if signIt {
			keyID, sig = e.key.ID, e.key.Sign(raw)
		}
		w := e.post(raw, keyID, sig)
		switch {
		case !signIt:
			require.Equal(t, http.StatusUnauthorized, w.Code)
		case w.Code == http.StatusOK:
			var sent []json.RawMessage
			require.NoError(t, json.Unmarshal(raw, &sent))
			var got []feedback
			require.NoError(t, json.Unmarshal(w.Body.Bytes(), &got))
			require.Len(t, got, len(sent))
		default:
			require.Contains(t, []int{http.StatusBadRequest, http.StatusRequestEntityTooLarge}, w.Code)
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		require.Empty(t, e.reports)
	})
}
