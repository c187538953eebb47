package tokenhttp_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/tokenhttp"
)

const (
	csrfCookieName = "__Host-tokenhttp-csrf"
	shareOrigin    = "https://share.example.com"
)

var csrfInput = regexp.MustCompile(`<input type="hidden" name="csrf" value="([^"]+)">`)

// linkEnv is an env with a LinkHandler mounted at the share base's path,
// which records every response it gives.
type linkEnv struct {
	*env
	h         *tokenhttp.LinkHandler
	mux       *http.ServeMux
	reported  []error
	responses []*httptest.ResponseRecorder
}

func newLinkEnv(t *testing.T) *linkEnv {
	t.Helper()
	e := &linkEnv{env: newEnv(t, shareBase)}
	h, err := tokenhttp.NewLinkHandler(e.m, tokenhttp.WithErrorReporter(func(_ *http.Request, err error) {
		e.reported = append(e.reported, err)
	}))
	require.NoError(t, err)
	e.h = h
	e.mux = http.NewServeMux()
	e.mux.Handle("/credentials/", h)
	return e
}

// newLink creates a key and returns its link's path and ID.
func (e *linkEnv) newLink(t *testing.T) (path, id string, key *tokens.Key) {
	t.Helper()
	key, link, err := e.m.CreateKey(context.Background(), tokens.KeySpec{Account: "acme", Name: "erp-sync"})
	require.NoError(t, err)
	id = strings.TrimPrefix(link.URL, shareBase)
	return "/credentials/" + id, id, key
}

func (e *linkEnv) do(r *http.Request) *httptest.ResponseRecorder {
	rec := serve(e.mux, r)
	e.responses = append(e.responses, rec)
	return rec
}

func (e *linkEnv) get(path string) *httptest.ResponseRecorder {
	return e.do(httptest.NewRequest(http.MethodGet, shareOrigin+path, nil))
}

// landing GETs the link's landing page as a browser does and returns the
// cookie and form token it sets.
func (e *linkEnv) landing(t *testing.T, path string) (*http.Cookie, string) {
	t.Helper()
	rec := e.get(path)
	requireState(t, rec, http.StatusOK, "pending")
	m := csrfInput.FindStringSubmatch(rec.Body.String())
	require.NotNil(t, m, "no csrf field in the page")
	for _, c := range rec.Result().Cookies() {
		if c.Name == csrfCookieName {
			return c, m[1]
		}
	}
	t.Fatalf("the landing page set no %s cookie", csrfCookieName)
	return nil, ""
}

// revealRequest is the POST the Reveal button's form makes in a browser.
func revealRequest(path string, cookie *http.Cookie, token string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, shareOrigin+path, strings.NewReader(url.Values{"csrf": {token}}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	r.Header.Set("Sec-Fetch-Mode", "navigate")
	r.Header.Set("Origin", "null") // what browsers send under Referrer-Policy: no-referrer
	if cookie != nil {
		r.AddCookie(&http.Cookie{Name: cookie.Name, Value: cookie.Value})
	}
	return r
}

// requireState checks a page's status and state class, and that it is a
// complete page that loads nothing from another origin.
func requireState(t *testing.T, rec *httptest.ResponseRecorder, status int, state string) {
	t.Helper()
	require.Equal(t, status, rec.Code)
	body := rec.Body.String()
	assert.Equal(t, "text/html; charset=utf-8", rec.Header().Get("Content-Type"))
	assert.Contains(t, body, `<main id="page" class="card state-`+state+`">`)
	assert.NotContains(t, body, "://", "the page refers to another origin")
	assert.NotContains(t, body, "<script>", "inline script")
	assert.NotContains(t, body, "<style", "inline style")
	assert.NotContains(t, body, "style=", "inline style")
	assert.Contains(t, body, `<script src="/credentials/_assets/app.js" defer></script>`)
}

func (e *linkEnv) requireRedeemable(t *testing.T, path string) {
	t.Helper()
	requireState(t, e.get(path), http.StatusOK, "pending")
}

func TestLinkGETShowsLandingPageWithoutConsuming(t *testing.T) {
	e := newLinkEnv(t)
	path, _, key := e.newLink(t)

	for range 3 {
		rec := e.get(path)
		requireState(t, rec, http.StatusOK, "pending")
		body := rec.Body.String()
		assert.Contains(t, body, "This link reveals a new API token once")
		assert.Contains(t, body, `<button id="reveal" class="primary" type="submit">Reveal</button>`)
		assert.Contains(t, body, `<form id="reveal-form" method="post" action="`+path+`">`)
		assert.Contains(t, body, `<time id="expires" datetime="1970-01-02T00:00:00Z">`)
		assert.NotContains(t, body, key.ID, "the landing page shows the key ID")
	}

	got, err := e.m.Key(context.Background(), key.ID)
	require.NoError(t, err)
	assert.Equal(t, tokens.LinkPending, got.Link)
}

func TestLinkPreviewRequestsDoNotConsume(t *testing.T) {
	e := newLinkEnv(t)
	path, _, _ := e.newLink(t)

	head := e.do(httptest.NewRequest(http.MethodHead, shareOrigin+path, nil))
	assert.Equal(t, http.StatusOK, head.Code)
	options := e.do(httptest.NewRequest(http.MethodOptions, shareOrigin+path, nil))
	assert.Equal(t, http.StatusNoContent, options.Code)
	assert.Equal(t, "GET, HEAD, POST, OPTIONS", options.Header().Get("Allow"))
	for _, method := range []string{http.MethodPut, http.MethodDelete, http.MethodPatch, "PROPFIND"} {
		rec := e.do(httptest.NewRequest(method, shareOrigin+path, nil))
		requireState(t, rec, http.StatusMethodNotAllowed, "method")
		assert.Equal(t, "GET, HEAD, POST, OPTIONS", rec.Header().Get("Allow"))
	}
	unfurler := httptest.NewRequest(http.MethodGet, shareOrigin+path, nil)
	unfurler.Header.Set("User-Agent", "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)")
	requireState(t, e.do(unfurler), http.StatusOK, "pending")

	cookie, token := e.landing(t, path)
	rec := e.do(revealRequest(path, cookie, token))
	requireState(t, rec, http.StatusOK, "revealed")
}

func TestLinkPOSTRevealsOnce(t *testing.T) {
	e := newLinkEnv(t)
	path, _, key := e.newLink(t)
	cookie, token := e.landing(t, path)

	rec := e.do(revealRequest(path, cookie, token))

	requireState(t, rec, http.StatusOK, "revealed")
	body := rec.Body.String()
	m := regexp.MustCompile(`<code id="token">([^<]+)</code>`).FindStringSubmatch(body)
	require.NotNil(t, m)
	assert.Contains(t, body, `<code id="key-id">`+key.ID+`</code>`)
	assert.Contains(t, body, `<button id="copy-key-id" class="copy" type="button" data-copy="key-id"`)
	assert.Contains(t, body, `<button id="copy-token" class="copy" type="button" data-copy="token"`)
	assert.Contains(t, body, "will not be shown again")
	_, err := e.m.Verify(context.Background(), key.ID, m[1])
	require.NoError(t, err, "the revealed token does not verify")

	again := e.do(revealRequest(path, cookie, token))
	requireState(t, again, http.StatusGone, "used")
	assert.NotContains(t, again.Body.String(), m[1])
	requireState(t, e.get(path), http.StatusGone, "used")
}

func TestLinkRefusesForgedReveal(t *testing.T) {
	e := newLinkEnv(t)
	path, id, _ := e.newLink(t)
	otherPath, _, _ := e.newLink(t)
	cookie, token := e.landing(t, path)
	otherCookie, otherToken := e.landing(t, otherPath)
	require.NotEqual(t, cookie.Value, otherCookie.Value)

	for name, r := range map[string]*http.Request{
		"no cookie":          revealRequest(path, nil, token),
		"no form token":      revealRequest(path, cookie, ""),
		"wrong form token":   revealRequest(path, cookie, strings.Repeat("A", len(token))),
		"garbage form token": revealRequest(path, cookie, "%%%"),
		"other link's token": revealRequest(path, otherCookie, otherToken),
		"other cookie":       revealRequest(path, otherCookie, token),
		"garbage cookie":     revealRequest(path, &http.Cookie{Name: csrfCookieName, Value: "x"}, token),
		"cross-site":         withHeader(revealRequest(path, cookie, token), "Sec-Fetch-Site", "cross-site"),
		"same-site":          withHeader(revealRequest(path, cookie, token), "Sec-Fetch-Site", "same-site"),
		"typed URL":          withHeader(revealRequest(path, cookie, token), "Sec-Fetch-Site", "none"),
		"foreign origin":     withHeader(revealRequest(path, cookie, token), "Origin", "https://evil.example"),
		"sibling origin":     withHeader(revealRequest(path, cookie, token), "Origin", "https://evil.share.example.com"),
		"other scheme":       withHeader(revealRequest(path, cookie, token), "Origin", "http://share.example.com"),
		"text/plain body":    withHeader(revealRequest(path, cookie, token), "Content-Type", "text/plain"),
		"multipart body":     withHeader(revealRequest(path, cookie, token), "Content-Type", "multipart/form-data; boundary=x"),
		"token in query only": func() *http.Request {
			r := revealRequest(path, cookie, "")
			r.URL.RawQuery = url.Values{"csrf": {token}}.Encode()
			return r
		}(),
		"oversized form": func() *http.Request {
			r := revealRequest(path, cookie, token)
			r.Body = io.NopCloser(strings.NewReader("pad=" + strings.Repeat("a", 8<<10) + "&csrf=" + token))
			return r
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			rec := e.do(r)
			requireState(t, rec, http.StatusForbidden, "forbidden")
			assert.Contains(t, rec.Body.String(), "nothing was revealed")
			assert.Contains(t, rec.Body.String(), `<a id="retry" href="/credentials/`+id+`">`)
			e.requireRedeemable(t, path)
		})
	}

	requireState(t, e.do(revealRequest(path, cookie, token)), http.StatusOK, "revealed")
}

func TestLinkAcceptsRevealFromOwnOrigin(t *testing.T) {
	e := newLinkEnv(t)
	for name, edit := range map[string]func(*http.Request){
		"own origin":        func(r *http.Request) { r.Header.Set("Origin", shareOrigin) },
		"no origin":         func(r *http.Request) { r.Header.Del("Origin") },
		"no fetch metadata": func(r *http.Request) { r.Header.Del("Sec-Fetch-Site") },
		"charset": func(r *http.Request) {
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=UTF-8")
		},
	} {
		t.Run(name, func(t *testing.T) {
			path, _, _ := e.newLink(t)
			cookie, token := e.landing(t, path)
			r := revealRequest(path, cookie, token)
			edit(r)
			requireState(t, e.do(r), http.StatusOK, "revealed")
		})
	}
}

func TestLinkKeepsCookieAcrossLinks(t *testing.T) {
	e := newLinkEnv(t)
	path, _, _ := e.newLink(t)
	otherPath, _, _ := e.newLink(t)
	cookie, token := e.landing(t, path)

	r := httptest.NewRequest(http.MethodGet, shareOrigin+otherPath, nil)
	r.AddCookie(&http.Cookie{Name: cookie.Name, Value: cookie.Value})
	rec := e.do(r)
	requireState(t, rec, http.StatusOK, "pending")
	assert.Empty(t, rec.Result().Cookies(), "a landing page replaced the cookie of a page open in another tab")

	requireState(t, e.do(revealRequest(path, cookie, token)), http.StatusOK, "revealed")
}

func TestLinkCookieAttributes(t *testing.T) {
	e := newLinkEnv(t)
	path, _, _ := e.newLink(t)
	cookie, _ := e.landing(t, path)

	assert.True(t, cookie.HttpOnly)
	assert.True(t, cookie.Secure)
	assert.Equal(t, http.SameSiteLaxMode, cookie.SameSite)
	assert.Equal(t, "/", cookie.Path)
	assert.Empty(t, cookie.Domain)
	assert.Zero(t, cookie.MaxAge)
	assert.Len(t, cookie.Value, 43)
}

func TestLinkExpired(t *testing.T) {
	e := newLinkEnv(t)
	path, _, _ := e.newLink(t)
	cookie, token := e.landing(t, path)
	e.clk.Add(24 * time.Hour)

	rec := e.get(path)
	requireState(t, rec, http.StatusGone, "expired")
	assert.Contains(t, rec.Body.String(), `<time id="expires" datetime="1970-01-02T00:00:00Z">Fri 2 Jan 1970, 00:00 UTC</time>`)
	assert.Contains(t, rec.Body.String(), "renew the key again")

	requireState(t, e.do(revealRequest(path, cookie, token)), http.StatusGone, "expired")
}

func TestLinkNotFound(t *testing.T) {
	e := newLinkEnv(t)
	path, id, key := e.newLink(t)
	unknown := "/credentials/" + strings.Repeat("Z", len(id))

	rec := e.get(unknown)
	requireState(t, rec, http.StatusNotFound, "notfound")
	assert.Contains(t, rec.Body.String(), "Ask your operator")

	cookie, token := e.landing(t, path)
	requireState(t, e.do(revealRequest(path, cookie, token)), http.StatusOK, "revealed")
	newLink, err := e.m.Renew(context.Background(), key.ID, tokens.RenewOptions{})
	require.NoError(t, err)
	require.NotEqual(t, shareBase+id, newLink.URL)
	requireState(t, e.get(path), http.StatusNotFound, "notfound")
	requireState(t, e.do(revealRequest(path, cookie, token)), http.StatusNotFound, "notfound")

	require.NoError(t, e.m.DeleteKey(context.Background(), key.ID))
	requireState(t, e.get("/credentials/"+strings.TrimPrefix(newLink.URL, shareBase)), http.StatusNotFound, "notfound")
}

func TestLinkInvalidPaths(t *testing.T) {
	e := newLinkEnv(t)
	_, id, _ := e.newLink(t)

	for _, path := range []string{
		"/credentials/",
		"/credentials/short",
		"/credentials/" + id + "x",
		"/credentials/" + id[1:],
		"/credentials/" + id + "/",
		"/credentials/" + id + "/extra",
		"/credentials/nested/" + id,
		"/credentials/" + strings.Repeat("-", len(id)),
		"/credentials/_assets/",
		"/credentials/_assets/missing.js",
	} {
		t.Run(path, func(t *testing.T) {
			rec := e.get(path)
			assert.Equal(t, http.StatusNotFound, rec.Code)
			if !strings.Contains(path, "_assets") {
				requireState(t, rec, http.StatusNotFound, "notfound")
			}
			rec = e.do(httptest.NewRequest(http.MethodPost, shareOrigin+path, nil))
			assert.Contains(t, []int{http.StatusForbidden, http.StatusNotFound, http.StatusMethodNotAllowed}, rec.Code)
		})
	}
	e.requireRedeemable(t, "/credentials/"+id)
}

func TestLinkBehindStripPrefix(t *testing.T) {
	e := newLinkEnv(t)
	path, id, _ := e.newLink(t)
	for _, prefix := range []string{"/credentials", "/credentials/"} {
		stripped := http.StripPrefix(prefix, e.h)
		rec := serve(stripped, httptest.NewRequest(http.MethodGet, shareOrigin+path, nil))
		requireState(t, rec, http.StatusOK, "pending")
		assert.Contains(t, rec.Body.String(), `action="/credentials/`+id+`"`, "the form must post to the public path")
	}
	rec := serve(http.StripPrefix("/credentials/", e.h), httptest.NewRequest(http.MethodGet, shareOrigin+"/credentials/_assets/app.css", nil))
	assert.Equal(t, http.StatusOK, rec.Code)
}

func TestLinkStoreFailure(t *testing.T) {
	e := newLinkEnv(t)
	path, _, _ := e.newLink(t)
	cookie, token := e.landing(t, path)
	e.store.down.Store(true)

	rec := e.get(path)
	requireState(t, rec, http.StatusInternalServerError, "error")
	assert.NotContains(t, rec.Body.String(), errStoreDown.Error())
	requireState(t, e.do(revealRequest(path, cookie, token)), http.StatusInternalServerError, "error")
	require.Len(t, e.reported, 2)
	assert.ErrorIs(t, e.reported[0], errStoreDown)

	e.store.down.Store(false)
	requireState(t, e.do(revealRequest(path, cookie, token)), http.StatusOK, "revealed")
}

func TestLinkAssets(t *testing.T) {
	e := newLinkEnv(t)
	for name, contentType := range map[string]string{
		"app.css":  "text/css; charset=utf-8",
		"app.js":   "text/javascript; charset=utf-8",
		"icon.svg": "image/svg+xml",
	} {
		rec := e.get("/credentials/_assets/" + name)
		require.Equal(t, http.StatusOK, rec.Code, name)
		assert.Equal(t, contentType, rec.Header().Get("Content-Type"), name)
		assert.NotEmpty(t, rec.Body.String(), name)
	}
	js := e.get("/credentials/_assets/app.js").Body.String()
	assert.NotContains(t, js, "innerHTML")
	assert.NotContains(t, js, "fetch(")

	rec := e.do(httptest.NewRequest(http.MethodPost, shareOrigin+"/credentials/_assets/app.js", nil))
	assert.Equal(t, http.StatusMethodNotAllowed, rec.Code)
}

func TestLinkSecurityHeadersOnEveryResponse(t *testing.T) {
	e := newLinkEnv(t)
	path, _, _ := e.newLink(t)
	usedPath, _, _ := e.newLink(t)
	cookie, token := e.landing(t, usedPath)
	e.do(revealRequest(usedPath, cookie, token))
	e.do(revealRequest(usedPath, cookie, token))
	e.do(revealRequest(path, nil, token))
	e.get(path)
	e.get("/credentials/nope")
	e.get("/credentials/_assets/app.js")
	e.get("/credentials/_assets/app.css")
	e.get("/credentials/_assets/none")
	e.do(httptest.NewRequest(http.MethodHead, shareOrigin+path, nil))
	e.do(httptest.NewRequest(http.MethodOptions, shareOrigin+path, nil))
	e.do(httptest.NewRequest(http.MethodDelete, shareOrigin+path, nil))
	e.store.down.Store(true)
	e.get(path)

	want := map[string]string{
		"Cache-Control":           "no-store",
		"Referrer-Policy":         "no-referrer",
		"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
		"X-Content-Type-Options":  "nosniff",
		"X-Frame-Options":         "DENY",
	}
	codes := map[int]bool{}
	for i, rec := range e.responses {
		codes[rec.Code] = true
		for name, value := range want {
			assert.Equal(t, value, rec.Header().Get(name), "response %d (%d): %s", i, rec.Code, name)
		}
	}
	for _, code := range []int{200, 204, 403, 404, 405, 410, 500} {
		assert.True(t, codes[code], "no response with status %d was checked", code)
	}
}

func TestLinkTokenOnlyInRevealResponse(t *testing.T) {
	e := newLinkEnv(t)
	path, id, key := e.newLink(t)
	cookie, token := e.landing(t, path)
	e.do(httptest.NewRequest(http.MethodHead, shareOrigin+path, nil))
	e.do(revealRequest(path, nil, token))
	e.do(withHeader(revealRequest(path, cookie, token), "Sec-Fetch-Site", "cross-site"))
	e.get(path)

	reveal := e.do(revealRequest(path, cookie, token))
	requireState(t, reveal, http.StatusOK, "revealed")
	e.get(path)
	e.do(revealRequest(path, cookie, token))
	e.clk.Add(24 * time.Hour)
	e.get(path)

	secret := regexp.MustCompile(`<code id="token">([^<]+)</code>`).FindStringSubmatch(reveal.Body.String())[1]
	for i, rec := range e.responses {
		wantSecret := rec == reveal
		assert.Equal(t, wantSecret, strings.Contains(rec.Body.String(), secret), "response %d (%d) body", i, rec.Code)
		assert.Equal(t, wantSecret, strings.Contains(rec.Body.String(), key.ID), "response %d (%d) key ID", i, rec.Code)
		for name, values := range rec.Header() {
			for _, v := range values {
				assert.NotContains(t, v, secret, "response %d header %s", i, name)
			}
		}
	}
	assert.NotContains(t, reveal.Body.String(), id, "the reveal page repeats the link ID")
}

func TestNewLinkHandlerRefusesBadInput(t *testing.T) {
	e := newEnv(t, shareBase)
	_, err := tokenhttp.NewLinkHandler(nil)
	assert.Error(t, err)
	_, err = tokenhttp.NewLinkHandler(e.m, nil)
	assert.Error(t, err)
	_, err = tokenhttp.NewLinkHandler(e.m, tokenhttp.WithErrorReporter(nil))
	assert.Error(t, err)
}

// TestLinkOverHTTP walks through a link the way a browser does, over a real
// connection with a cookie jar, on a loopback http base.
func TestLinkOverHTTP(t *testing.T) {
	var handler http.Handler
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	defer srv.Close()
	base := srv.URL + "/credentials/"
	e := newEnv(t, base)
	h, err := tokenhttp.NewLinkHandler(e.m)
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("/credentials/", h)
	handler = mux
	key, link, err := e.m.CreateKey(context.Background(), tokens.KeySpec{Name: "browser"})
	require.NoError(t, err)
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	client := &http.Client{Jar: jar}

	res, err := client.Get(link.URL)
	require.NoError(t, err)
	page := readBody(t, res)
	require.Equal(t, http.StatusOK, res.StatusCode)
	cookies := jar.Cookies(res.Request.URL)
	require.Len(t, cookies, 1)
	assert.Equal(t, "tokenhttp-csrf", cookies[0].Name)
	m := csrfInput.FindStringSubmatch(page)
	require.NotNil(t, m)

	post := func() (*http.Response, string) {
		req, err := http.NewRequest(http.MethodPost, link.URL, strings.NewReader(url.Values{"csrf": {m[1]}}.Encode()))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", srv.URL)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		res, err := client.Do(req)
		require.NoError(t, err)
		return res, readBody(t, res)
	}
	res, page = post()
	require.Equal(t, http.StatusOK, res.StatusCode, page)
	assert.Contains(t, page, `<code id="key-id">`+key.ID+`</code>`)
	res, page = post()
	assert.Equal(t, http.StatusGone, res.StatusCode)
	assert.Contains(t, page, "state-used")
}

func withHeader(r *http.Request, name, value string) *http.Request {
	r.Header.Set(name, value)
	return r
}

func readBody(t *testing.T, res *http.Response) string {
	t.Helper()
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return string(b)
}

// TestLinkRefusesOtherHosts is rule S7: a request whose Host is not the
// share base URL's, such as a page on a host name re-pointed at the server
// (DNS rebinding), gets the misdirected page, with the link pages'
// headers, and the handler asks the store nothing.
func TestLinkRefusesOtherHosts(t *testing.T) {
	e := newLinkEnv(t)
	path, id, key := e.newLink(t)
	cookie, token := e.landing(t, path)

	for _, host := range []string{
		"attacker.test",
		"attacker.test:443",
		"127.0.0.1",
		"localhost",
		"share.example.com.",
		"share.example.com.attacker.test",
		"evil.share.example.com",
		"share.example.com:8443",
		"share.example.com:80",
		"share.example.com:",
		"share.example.com:0443",
		"\u017fhare.example.com", // long s, which Unicode case folding equates with "s"
		"",
	} {
		t.Run(host, func(t *testing.T) {
			e.store.down.Store(true) // a store call would answer 500
			defer e.store.down.Store(false)
			for _, r := range []*http.Request{
				httptest.NewRequest(http.MethodGet, shareOrigin+path, nil),
				httptest.NewRequest(http.MethodHead, shareOrigin+path, nil),
				revealRequest(path, cookie, token),
				withHeader(revealRequest(path, cookie, token), "Origin", shareOrigin),
				httptest.NewRequest(http.MethodGet, shareOrigin+"/credentials/_assets/app.js", nil),
			} {
				r.Host = host
				rec := e.do(r)
				if r.Method == http.MethodHead {
					assert.Equal(t, http.StatusMisdirectedRequest, rec.Code)
					continue
				}
				requireState(t, rec, http.StatusMisdirectedRequest, "misdirected")
				assert.Contains(t, rec.Body.String(), "nothing was shown or revealed")
				assert.NotContains(t, rec.Body.String(), id)
				assert.Equal(t, "no-store", rec.Header().Get("Cache-Control"))
				assert.Equal(t, "no-referrer", rec.Header().Get("Referrer-Policy"))
				assert.Equal(t, tokenhttp.ContentSecurityPolicy, rec.Header().Get("Content-Security-Policy"))
				assert.Empty(t, rec.Result().Cookies())
			}
		})
	}
	assert.Empty(t, e.reported, "a refused host reached the store")

	got, err := e.m.Key(context.Background(), key.ID)
	require.NoError(t, err)
	assert.Equal(t, tokens.LinkPending, got.Link, "a refused host changed the link")
	requireState(t, e.do(revealRequest(path, cookie, token)), http.StatusOK, "revealed")
}

// TestLinkAcceptsBaseHostForms shows which Host headers name the base
// URL's host: any ASCII case, and the scheme's default port written or
// left out, since browsers leave it out even when the base URL has it.
func TestLinkAcceptsBaseHostForms(t *testing.T) {
	for _, tc := range []struct {
		base  string
		hosts []string
	}{
		{"https://share.example.com/credentials/", []string{"share.example.com", "SHARE.Example.COM", "share.example.com:443"}},
		{"https://share.example.com:443/credentials/", []string{"share.example.com", "share.example.com:443"}},
		{"https://share.example.com:8443/credentials/", []string{"share.example.com:8443", "Share.Example.Com:8443"}},
		{"http://127.0.0.1:8080/credentials/", []string{"127.0.0.1:8080"}},
		{"http://localhost/credentials/", []string{"localhost", "LOCALHOST:80"}},
		{"http://[::1]:8080/credentials/", []string{"[::1]:8080"}},
	} {
		t.Run(tc.base, func(t *testing.T) {
			e := newEnv(t, tc.base)
			h, err := tokenhttp.NewLinkHandler(e.m)
			require.NoError(t, err)
			_, link, err := e.m.CreateKey(context.Background(), tokens.KeySpec{Name: "erp-sync"})
			require.NoError(t, err)
			for _, host := range tc.hosts {
				r := httptest.NewRequest(http.MethodGet, link.URL, nil)
				r.Host = host
				requireState(t, serve(h, r), http.StatusOK, "pending")
			}
		})
	}

	e := newEnv(t, "http://127.0.0.1:8080/credentials/")
	h, err := tokenhttp.NewLinkHandler(e.m)
	require.NoError(t, err)
	_, link, err := e.m.CreateKey(context.Background(), tokens.KeySpec{Name: "erp-sync"})
	require.NoError(t, err)
	for _, host := range []string{"localhost:8080", "127.0.0.1", "127.0.0.1:80", "127.0.0.2:8080", "[::1]:8080"} {
		r := httptest.NewRequest(http.MethodGet, link.URL, nil)
		r.Host = host
		assert.Equal(t, http.StatusMisdirectedRequest, serve(h, r).Code, "Host %q", host)
	}
}

// TestLinkWrapOwnsEveryPathUnderBase is issue 7 item 6: a bare ServeMux
// redirects unclean paths under the base to the clean one, with the link
// ID in Location and none of the link pages' headers. Wrapped, the link
// handler answers them itself, and never with a redirect.
func TestLinkWrapOwnsEveryPathUnderBase(t *testing.T) {
	e := newLinkEnv(t)
	path, id, key := e.newLink(t)
	app := http.NewServeMux()
	app.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("the application"))
	})
	site := e.h.Wrap(app)

	for _, unclean := range []string{
		"//credentials/" + id,
		"/credentials/./" + id,
		"/credentials/x/../" + id,
		"/x/../credentials/" + id,
		"/credentials//" + id,
		"/credentials/" + id + "/.",
		"/credentials/" + id + "/x/..",
		"/credentials%2F" + id,
		"/credentials/%2E/" + id,
		"/credentials",
	} {
		t.Run(unclean, func(t *testing.T) {
			for _, method := range []string{http.MethodGet, http.MethodPost} {
				rec := serve(site, httptest.NewRequest(method, shareOrigin+unclean, nil))
				assert.Equal(t, http.StatusNotFound, rec.Code, method)
				assert.Contains(t, rec.Body.String(), "state-notfound", method)
				assert.Empty(t, rec.Header().Get("Location"), method)
				assert.Equal(t, "no-store", rec.Header().Get("Cache-Control"), method)
				assert.Equal(t, "no-referrer", rec.Header().Get("Referrer-Policy"), method)
				assert.Equal(t, tokenhttp.ContentSecurityPolicy, rec.Header().Get("Content-Security-Policy"), method)
				assert.NotContains(t, rec.Body.String(), id, method)
				for name, values := range rec.Header() {
					for _, v := range values {
						assert.NotContains(t, v, id, "%s header %s", method, name)
					}
				}
			}
		})
	}

	rec := serve(site, httptest.NewRequest(http.MethodGet, shareOrigin+path, nil))
	requireState(t, rec, http.StatusOK, "pending")
	assert.Equal(t, "no-store", rec.Header().Get("Cache-Control"))
	assert.Equal(t, tokenhttp.ContentSecurityPolicy, rec.Header().Get("Content-Security-Policy"))
	assert.Equal(t, http.StatusOK, serve(site, httptest.NewRequest(http.MethodGet, shareOrigin+"/credentials/_assets/app.css", nil)).Code)
	requireState(t, serve(site, httptest.NewRequest(http.MethodGet, shareOrigin+"/credentials/..", nil)), http.StatusNotFound, "notfound")
	for _, other := range []string{"/", "/api/orders", "/credentials-old/" + id, "/x/../api/orders"} {
		rec := serve(site, httptest.NewRequest(http.MethodGet, shareOrigin+other, nil))
		assert.NotContains(t, rec.Body.String(), "state-", "%s reached the link handler", other)
		assert.NotContains(t, rec.Header().Get("Location"), id, other)
	}
	rec = serve(site, httptest.NewRequest(http.MethodGet, shareOrigin+"/api/orders", nil))
	assert.Equal(t, "the application", rec.Body.String())

	got, err := e.m.Key(context.Background(), key.ID)
	require.NoError(t, err)
	assert.Equal(t, tokens.LinkPending, got.Link)
}

// TestLinkServeMuxRedirectsWithoutWrap records why Wrap exists: mounted on
// a ServeMux alone, an unclean path gets ServeMux's redirect, which names
// the link ID and lacks the link pages' headers.
func TestLinkServeMuxRedirectsWithoutWrap(t *testing.T) {
	e := newLinkEnv(t)
	_, id, _ := e.newLink(t)
	rec := e.get("/credentials/./" + id)
	assert.True(t, rec.Code >= 300 && rec.Code < 400, "status %d, want a redirect", rec.Code)
	assert.Contains(t, rec.Header().Get("Location"), id)
	assert.Empty(t, rec.Header().Get("Cache-Control"))
}
