package main

import (
	"errors"
	"html"
	"net/http"
	"strings"
	"testing"

	"github.com/keyrenew/tokens"
)

// TestLeakedKeysComeFirst: a key whose token was reported leaked heads the
// page and the table until it is renewed; its button stops every token the
// key had at the report and shows the new link to send.
func TestLeakedKeysComeFirst(t *testing.T) {
	s := newTestServer(t)
	other := s.manager(t)
	ctx := t.Context()
	if _, _, err := other.CreateKey(ctx, tokens.KeySpec{Account: "acme", Name: "quiet"}); err != nil {
		t.Fatal(err)
	}
	const leakedToken = "legacy_token_that_leaked_0123456789"
	key, err := other.ImportKey(ctx, tokens.ImportSpec{KeySpec: tokens.KeySpec{Account: "acme", Name: "leaky"}, Token: leakedToken})
	if err != nil {
		t.Fatal(err)
	}
	list := func() string {
		t.Helper()
		res, body := s.do(t, http.MethodGet, s.host, "/", nil)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET /: status %d", res.StatusCode)
		}
		return html.UnescapeString(body)
	}
	if strings.Contains(list(), `id="leaked"`) {
		t.Fatal("the page lists leaked keys before any report")
	}

	s.clk.Add(1000)
	res, err := other.ReportLeak(ctx, leakedToken, tokens.Leak{Source: "github/content", URL: "https://github.com/octo/app/blob/main/.env"})
	if err != nil || !res.Found {
		t.Fatalf("ReportLeak: %+v, %v", res, err)
	}
	page := list()
	for _, want := range []string{
		`<h2>Leaked tokens</h2>`,
		`<li class="leaked-key" data-key-id="` + key.ID + `">`,
		`by <code class="leak-source">github/content</code> at <code class="leak-url">https://github.com/octo/app/blob/main/.env</code>`,
		`action="/keys/` + key.ID + `/renew-leaked"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the page does not show %q", want)
		}
	}
	if first := strings.Index(page, `<tr id="key-`); !strings.HasPrefix(page[first:], `<tr id="key-`+key.ID+`"`) {
		t.Error("the leaked key is not the table's first row")
	}

	resp, body := s.do(t, http.MethodPost, s.host, "/keys/"+key.ID+"/renew-leaked", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `id="new-link"`) {
		t.Fatalf("renew-leaked: status %d, new link shown: %v", resp.StatusCode, strings.Contains(body, `id="new-link"`))
	}
	if _, err := other.VerifyToken(ctx, leakedToken); !errors.Is(err, tokens.ErrTokenRevoked) {
		t.Errorf("the leaked token after the renewal: %v, want ErrTokenRevoked", err)
	}
	if strings.Contains(list(), `id="leaked"`) {
		t.Error("a renewed key is still listed as leaked")
	}
}

// TestLeakRevokedByTheManagerAsksForANewLink: with RevokeLeaked the report
// itself renewed the key, but that link reached no one: the page says so,
// and its button revokes that link and shows a new one.
func TestLeakRevokedByTheManagerAsksForANewLink(t *testing.T) {
	s := newTestServer(t)
	revoking := s.manager(t, tokens.WithLeakPolicy(tokens.RevokeLeaked))
	ctx := t.Context()
	const leakedToken = "legacy_token_that_leaked_0123456789"
	key, err := revoking.ImportKey(ctx, tokens.ImportSpec{KeySpec: tokens.KeySpec{Account: "acme", Name: "leaky"}, Token: leakedToken})
	if err != nil {
		t.Fatal(err)
	}
	res, err := revoking.ReportLeak(ctx, leakedToken, tokens.Leak{Source: "github/commit"})
	if err != nil || !res.Revoked || res.Link == nil {
		t.Fatalf("ReportLeak: %+v, %v", res, err)
	}
	_, body := s.do(t, http.MethodGet, s.host, "/", nil)
	if !strings.Contains(body, "The leaked token was revoked then and a new one issued, but its link was never opened.") {
		t.Fatal("the page does not say the Manager revoked the token")
	}
	resp, body := s.do(t, http.MethodPost, s.host, "/keys/"+key.ID+"/renew-leaked", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `id="new-link"`) {
		t.Fatalf("renew-leaked: status %d", resp.StatusCode)
	}
	if _, err := revoking.RedeemLink(ctx, res.Link.URL); !errors.Is(err, tokens.ErrLinkNotFound) {
		t.Errorf("the report's link after the new renewal: %v, want ErrLinkNotFound", err)
	}
}

// TestSecretScanningEndpointIsOptIn: the endpoint exists only with
// -secret-scanning, and refuses an unsigned report before anything else.
func TestSecretScanningEndpointIsOptIn(t *testing.T) {
	for _, on := range []bool{false, true} {
		s := newTestServerWith(t, config{account: "acme", secretScanning: on})
		res, _ := s.do(t, http.MethodPost, s.host, "/github/secret-scanning", nil)
		want := http.StatusNotFound
		if on {
			want = http.StatusUnauthorized
		}
		if res.StatusCode != want {
			t.Errorf("secret scanning %v: status %d, want %d", on, res.StatusCode, want)
		}
	}
}
