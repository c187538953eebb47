package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"html"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keyrenew/tokens"
)

// post sends a form POST as the admin screen's own page does (the browser
// says same-origin), or as another site's page does if crossSite, and
// returns the response and its body.
func (s *server) post(t *testing.T, path string, crossSite bool) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.URL+path, strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Origin", s.URL)
	if crossSite {
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		req.Header.Set("Origin", "https://attacker.test")
	}
	client := *s.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(b)
}

// notice returns the notice that a redirect carries to the next page.
func notice(res *http.Response) string {
	for _, c := range res.Cookies() {
		if c.Name == noticeCookie {
			msg, _ := base64.RawURLEncoding.DecodeString(c.Value)
			return string(msg)
		}
	}
	return ""
}

// leakBlock returns the leaked tokens block of the list page, "" if it
// has none, and fails unless the block comes before the key table.
func leakBlock(t *testing.T, page string) string {
	t.Helper()
	start, table := strings.Index(page, `<section class="leaked-block" id="leaked"`), strings.Index(page, `<table id="keys">`)
	if start < 0 {
		return ""
	}
	if table < start {
		t.Fatal("the leaked tokens block is not above the key table")
	}
	return page[start:table]
}

// TestRenewLeakedKey reports a leak with ReportLeak, as the secret
// scanning endpoint does from another process, in each state a leak
// leaves a key in, and presses the block's "Renew and send the new link":
// the key is listed first, in the block, until the button has stopped
// every token from before the leak and shown a link to a new one.
func TestRenewLeakedKey(t *testing.T) {
	leak := tokens.Leak{Source: "github/commit", URL: "https://github.com/acme/app/blob/main/.env"}
	for _, c := range []struct {
		name   string
		policy tokens.LeakPolicy
		// setup makes the key and reports a leak; it returns the tokens
		// and links of the key that must stop working, and the state
		// the block shows.
		setup func(t *testing.T, s *server, m *tokens.Manager) (keyID string, stop, links []string, kind string)
	}{{
		name: "current token",
		setup: func(t *testing.T, s *server, m *tokens.Manager) (string, []string, []string, string) {
			creds := redeem(t, m, s.createKey(t, "billing"))
			s.clk.Add(time.Hour)
			if res, err := m.ReportLeak(t.Context(), creds.Token, leak); err != nil || !res.Found || res.Revoked {
				t.Fatalf("ReportLeak = %+v, %v", res, err)
			}
			return creds.KeyID, []string{creds.Token}, nil, "current"
		},
	}, {
		// The renewal before the leak kept the old token and its link is
		// pending: Renew alone would give ErrRenewalPending.
		name: "old token and a pending link",
		setup: func(t *testing.T, s *server, m *tokens.Manager) (string, []string, []string, string) {
			creds := redeem(t, m, s.createKey(t, "billing"))
			s.clk.Add(time.Hour)
			pending, err := m.Renew(t.Context(), creds.KeyID, tokens.RenewOptions{})
			if err != nil {
				t.Fatal(err)
			}
			s.clk.Add(time.Hour)
			if _, err := m.ReportLeak(t.Context(), creds.Token, leak); err != nil {
				t.Fatal(err)
			}
			return creds.KeyID, []string{creds.Token}, []string{pending.URL}, "current"
		},
	}, {
		// RevokeLeaked replaced the token; the replacement's link went
		// to nobody.
		name:   "revoked, link unsent",
		policy: tokens.RevokeLeaked,
		setup: func(t *testing.T, s *server, m *tokens.Manager) (string, []string, []string, string) {
			creds := redeem(t, m, s.createKey(t, "billing"))
			s.clk.Add(time.Hour)
			res, err := m.ReportLeak(t.Context(), creds.Token, leak)
			if err != nil || !res.Revoked || res.Link == nil {
				t.Fatalf("ReportLeak = %+v, %v", res, err)
			}
			return creds.KeyID, nil, []string{res.Link.URL}, "unsent"
		},
	}, {
		// RevokeLeaked keeps an old token: it is from before the leak.
		name:   "revoked, old token kept",
		policy: tokens.RevokeLeaked,
		setup: func(t *testing.T, s *server, m *tokens.Manager) (string, []string, []string, string) {
			first := redeem(t, m, s.createKey(t, "billing"))
			s.clk.Add(time.Hour)
			renewed, err := m.Renew(t.Context(), first.KeyID, tokens.RenewOptions{})
			if err != nil {
				t.Fatal(err)
			}
			second := redeem(t, m, renewed.URL)
			s.clk.Add(time.Hour)
			res, err := m.ReportLeak(t.Context(), second.Token, leak)
			if err != nil || !res.Revoked || res.Link == nil {
				t.Fatalf("ReportLeak = %+v, %v", res, err)
			}
			return first.KeyID, []string{first.Token}, []string{res.Link.URL}, "unsent"
		},
	}} {
		t.Run(c.name, func(t *testing.T) {
			s := newTestServer(t)
			m := s.manager(t, tokens.WithLeakPolicy(c.policy))
			other := redeem(t, m, s.createKey(t, "erp-sync"))
			keyID, stop, links, kind := c.setup(t, s, m)
			s.clk.Add(time.Minute)

			_, page := s.do(t, http.MethodGet, s.host, "/", nil)
			block := leakBlock(t, page)
			for _, want := range []string{
				"<h2 id=\"leaked-title\">Leaked tokens</h2>",
				`data-key-id="` + keyID + `" data-leak="` + kind + `"`,
				`<form method="post" action="/keys/` + keyID + `/renew-leaked" class="renew-leaked">`,
				"Renew and send the new link</button>",
				`by <strong class="leak-source">github/commit</strong>`,
			} {
				if !strings.Contains(block, want) {
					t.Errorf("the leaked tokens block does not hold %q", want)
				}
			}
			if strings.Contains(block, other.KeyID) {
				t.Error("the leaked tokens block lists a key that did not leak")
			}
			if leaked, ok := strings.Index(page, `id="key-`+keyID+`"`), strings.Index(page, `id="key-`+other.KeyID+`"`); leaked < 0 || leaked > ok {
				t.Error("the leaked key is not the table's first row")
			}

			// Another site's page cannot press it: refused before
			// anything changes.
			if res, _ := s.post(t, "/keys/"+keyID+"/renew-leaked", true); res.StatusCode != http.StatusForbidden {
				t.Errorf("cross-site POST: status %d, want 403", res.StatusCode)
			}
			for _, token := range stop {
				if _, err := m.Verify(t.Context(), keyID, token); err != nil {
					t.Fatalf("after a refused cross-site POST the token is refused: %v", err)
				}
			}

			res, page := s.post(t, "/keys/"+keyID+"/renew-leaked", false)
			found := linkURL.FindStringSubmatch(page)
			if res.StatusCode != http.StatusOK || found == nil {
				t.Fatalf("Renew and send the new link: status %d, no link shown", res.StatusCode)
			}
			if !strings.Contains(page, `id="leak-renewed"`) || strings.Contains(page, `id="complete"`) {
				t.Error("the new link's box does not say that the leaked tokens were deleted, or asks about an old token")
			}
			if leakBlock(t, page) != "" {
				t.Error("the key is still in the leaked tokens block after its renewal")
			}
			for _, token := range stop {
				if _, err := m.Verify(t.Context(), keyID, token); !errors.Is(err, tokens.ErrTokenRevoked) {
					t.Errorf("a token from before the leak: Verify = %v, want ErrTokenRevoked", err)
				}
			}
			for _, link := range links {
				if _, err := m.RedeemLink(t.Context(), link); !errors.Is(err, tokens.ErrLinkNotFound) {
					t.Errorf("a link from before the renewal: RedeemLink = %v, want ErrLinkNotFound", err)
				}
			}
			fresh := redeem(t, m, html.UnescapeString(found[1]))
			key, err := m.Verify(t.Context(), keyID, fresh.Token)
			if err != nil {
				t.Fatalf("the new token: %v", err)
			}
			if key.OldToken != nil {
				t.Error("the key kept an old token")
			}
			if _, err := m.Verify(t.Context(), other.KeyID, other.Token); err != nil {
				t.Errorf("the key that did not leak: %v", err)
			}
			if _, page := s.do(t, http.MethodGet, s.host, "/", nil); leakBlock(t, page) != "" {
				t.Error("the list still shows a leaked tokens block")
			}

			// A second press, as from a stale page, changes nothing: it
			// would kill the link just shown.
			res, _ = s.post(t, "/keys/"+keyID+"/renew-leaked", false)
			if got := notice(res); res.StatusCode != http.StatusSeeOther || !strings.Contains(got, "already dealt with") {
				t.Errorf("second press: status %d, notice %q", res.StatusCode, got)
			}
			if _, err := m.Verify(t.Context(), keyID, fresh.Token); err != nil {
				t.Errorf("a second press stopped the new token: %v", err)
			}
		})
	}
}

// TestLeakedOldTokenAfterRenewal: a renewal after the leak that kept the
// old token leaves the leaked token working, so the key stays in the
// block, which offers to delete the old token rather than renew again.
func TestLeakedOldTokenAfterRenewal(t *testing.T) {
	s := newTestServer(t)
	m := s.manager(t)
	creds := redeem(t, m, s.createKey(t, "billing"))
	s.clk.Add(time.Hour)
	if _, err := m.ReportLeak(t.Context(), creds.Token, tokens.Leak{Source: "github/commit"}); err != nil {
		t.Fatal(err)
	}
	s.clk.Add(time.Minute)
	if res, _ := s.post(t, "/keys/"+creds.KeyID+"/renew", false); res.StatusCode != http.StatusOK {
		t.Fatalf("Renew token: status %d", res.StatusCode)
	}
	_, page := s.do(t, http.MethodGet, s.host, "/", nil)
	block := leakBlock(t, page)
	if !strings.Contains(block, `data-leak="old"`) || !strings.Contains(block, `action="/keys/`+creds.KeyID+`/delete-old"`) {
		t.Fatal("the block does not offer to delete the old token from before the leak")
	}
	res, _ := s.post(t, "/keys/"+creds.KeyID+"/renew-leaked", false)
	if got := notice(res); res.StatusCode != http.StatusSeeOther || !strings.Contains(got, "Nothing was changed") {
		t.Errorf("Renew and send the new link after a renewal: status %d, notice %q", res.StatusCode, got)
	}
	if res, _ := s.post(t, "/keys/"+creds.KeyID+"/delete-old", false); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("Delete the old token now: status %d", res.StatusCode)
	}
	if _, err := m.Verify(t.Context(), creds.KeyID, creds.Token); !errors.Is(err, tokens.ErrTokenRevoked) {
		t.Errorf("the leaked token: Verify = %v, want ErrTokenRevoked", err)
	}
	if _, page := s.do(t, http.MethodGet, s.host, "/", nil); leakBlock(t, page) != "" {
		t.Error("the key is still in the leaked tokens block")
	}
}

// TestSecretScanningEndpoint: the endpoint is served only when turned on,
// under any Host, answers a signed report, and logs the key and source of
// a leak but neither the token nor a link; -leak-policy revoke stops the
// token.
func TestSecretScanningEndpoint(t *testing.T) {
	if res, _ := newTestServer(t).post(t, secretScanningPath, false); res.StatusCode != http.StatusNotFound {
		t.Errorf("without -secret-scanning: status %d, want 404", res.StatusCode)
	}
	if _, err := newServer(t.Context(), nil, "http://127.0.0.1:1", config{leakPolicy: "delete"}, systemClock{}); err == nil {
		t.Error("newServer accepted -leak-policy delete")
	}

	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	keys := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"public_keys": []map[string]any{{
			"key_identifier": "test-key", "is_current": true,
			"key": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})),
		}}})
	}))
	t.Cleanup(keys.Close)

	var logged bytes.Buffer
	defer log.SetOutput(log.Writer())
	log.SetOutput(&logged)

	for _, policy := range []string{"alert", "revoke"} {
		t.Run(policy, func(t *testing.T) {
			logged.Reset()
			s := newTestServerWith(t, config{account: "acme", secretScanning: true, leakPolicy: policy, scanKeysURL: keys.URL})
			m := s.manager(t)
			link := s.createKey(t, "billing")
			creds := redeem(t, m, link)
			s.clk.Add(time.Hour)

			report, _ := json.Marshal([]map[string]string{{
				"token": creds.Token, "type": "keyrenew_token", "url": "https://github.com/acme/app/blob/main/.env", "source": "commit",
			}})
			digest := sha256.Sum256(report)
			sig, err := ecdsa.SignASN1(rand.Reader, priv, digest[:])
			if err != nil {
				t.Fatal(err)
			}
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.URL+secretScanningPath, bytes.NewReader(report))
			if err != nil {
				t.Fatal(err)
			}
			// GitHub comes through a proxy, under a public name.
			req.Host = "tokens.example.com"
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Github-Public-Key-Identifier", "test-key")
			req.Header.Set("Github-Public-Key-Signature", base64.StdEncoding.EncodeToString(sig))
			res, err := s.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK || !strings.Contains(string(body), `"label":"true_positive"`) {
				t.Fatalf("signed report: status %d, body %s", res.StatusCode, body)
			}

			line := logged.String()
			if !strings.Contains(line, creds.KeyID) || !strings.Contains(line, "github/commit") {
				t.Errorf("the log does not name the key and the source: %q", line)
			}
			if strings.Contains(line, creds.Token) || strings.Contains(line, "/credentials/") || strings.Contains(line, ".env") {
				t.Errorf("the log holds the token, a link or the leak's URL: %q", line)
			}
			_, err = m.Verify(t.Context(), creds.KeyID, creds.Token)
			switch {
			case policy == "alert" && err != nil:
				t.Errorf("alert: the leaked token is refused: %v", err)
			case policy == "revoke" && !errors.Is(err, tokens.ErrTokenRevoked):
				t.Errorf("revoke: Verify = %v, want ErrTokenRevoked", err)
			}
			_, history := s.do(t, http.MethodGet, s.host, "/keys/"+creds.KeyID+"/history", nil)
			if !strings.Contains(history, "Token reported leaked") || !strings.Contains(history, scanActor) {
				t.Error("the history does not show the leak in the name of the secret scanning endpoint")
			}
		})
	}
}

// redeem opens a share link as its recipient's browser would, and fails
// the test if it does not reveal credentials.
func redeem(t *testing.T, m *tokens.Manager, link string) *tokens.Credentials {
	t.Helper()
	creds, err := m.RedeemLink(t.Context(), link)
	if err != nil {
		t.Fatalf("RedeemLink: %v", err)
	}
	return creds
}
