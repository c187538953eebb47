package main

import (
	"encoding/base64"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

var keyIDInLink = regexp.MustCompile(`data-key-id="(key_[0-9A-Za-z]+)"`)

// TestEditKey: the key page shows scopes, metadata and expiry, its form
// changes them through UpdateKey and clears them, the list shows the
// expiry date, the history names the fields changed, a bad form is shown
// again with what is wrong and saves nothing, and a cross-site POST is
// refused as for every other form.
func TestEditKey(t *testing.T) {
	s := newTestServer(t)
	_, body := s.do(t, http.MethodPost, s.host, "/keys", url.Values{"name": {"erp-sync"}})
	m := keyIDInLink.FindStringSubmatch(body)
	if m == nil {
		t.Fatal("POST /keys: no key ID on the page")
	}
	id := m[1]
	page := func() string {
		t.Helper()
		res, body := s.do(t, http.MethodGet, s.host, "/keys/"+id, nil)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET /keys/%s: status %d", id, res.StatusCode)
		}
		return html.UnescapeString(body)
	}
	// edit posts the form and returns the status and the page, or, after
	// a redirect, the notice it carries to the next page.
	edit := func(form url.Values) (int, string) {
		t.Helper()
		res, body := s.do(t, http.MethodPost, s.host, "/keys/"+id+"/edit", form)
		for _, c := range res.Cookies() {
			if c.Name == noticeCookie {
				msg, _ := base64.RawURLEncoding.DecodeString(c.Value)
				return res.StatusCode, string(msg)
			}
		}
		return res.StatusCode, html.UnescapeString(body)
	}
	full := url.Values{
		"name":     {"erp-sync"},
		"scopes":   {"orders:read\ninvoices:read invoices:read"},
		"metadata": {"team=billing\r\nticket=OPS-42\n"},
		"expires":  {"2026-09-01T12:30"},
	}
	if status, notice := edit(full); status != http.StatusSeeOther || notice != "Saved the scopes, metadata, expiry of erp-sync." {
		t.Fatalf("saving the form: status %d, notice %q", status, notice)
	}
	got := page()
	for _, want := range []string{
		`<code class="scope">invoices:read</code> <code class="scope">orders:read</code>`,
		`<th scope="row"><code>team</code></th><td>billing</td>`,
		`<th scope="row"><code>ticket</code></th><td>OPS-42</td>`,
		`<span class="nowrap expires-at">2026-09-01 12:30 UTC</span> (in 184 days)`,
		`value="2026-09-01T12:30"`,
		"invoices:read\norders:read</textarea>",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the key page does not show %q", want)
		}
	}
	_, list := s.do(t, http.MethodGet, s.host, "/", nil)
	if !strings.Contains(list, `expires <span class="nowrap expires-at">2026-09-01 12:30 UTC</span>`) {
		t.Error("the list does not show the key's expiry date")
	}

	// The same form again changes nothing and writes no event.
	if status, notice := edit(full); status != http.StatusSeeOther || notice != "Nothing changed." {
		t.Errorf("saving an unchanged form: status %d, notice %q", status, notice)
	}

	// A bad form saves nothing and keeps what was typed.
	for name, form := range map[string]url.Values{
		"scope with a star":  {"name": {"erp-sync"}, "scopes": {"orders:*"}, "metadata": full["metadata"], "expires": full["expires"]},
		"metadata line":      {"name": {"erp-sync"}, "scopes": full["scopes"], "metadata": {"no equals sign"}, "expires": full["expires"]},
		"metadata name":      {"name": {"erp-sync"}, "scopes": full["scopes"], "metadata": {"bad name=1"}, "expires": full["expires"]},
		"expiry":             {"name": {"erp-sync"}, "scopes": full["scopes"], "metadata": full["metadata"], "expires": {"next week"}},
		"empty name":         {"name": {" "}, "scopes": full["scopes"], "metadata": full["metadata"], "expires": full["expires"]},
		"control in a value": {"name": {"erp-sync"}, "scopes": full["scopes"], "metadata": {"team=a\u0007b"}, "expires": full["expires"]},
	} {
		status, body := edit(form)
		if status != http.StatusBadRequest || !strings.Contains(body, `id="error"`) {
			t.Errorf("%s: status %d, want 400 with an error", name, status)
		}
		if name == "scope with a star" && !strings.Contains(body, ">orders:*</textarea>") {
			t.Errorf("%s: the form does not keep what was typed", name)
		}
	}
	if got := page(); !strings.Contains(got, `<code class="scope">orders:read</code>`) || !strings.Contains(got, "OPS-42") {
		t.Error("a refused form changed the key")
	}

	// Another site's page cannot post the form (CSRF): refused before
	// anything changes.
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.URL+"/keys/"+id+"/edit",
		strings.NewReader(url.Values{"name": {"pwned"}, "scopes": {"admin"}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	req.Header.Set("Origin", "https://attacker.test")
	res, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site POST of the edit form: status %d, want 403", res.StatusCode)
	}
	if got := page(); strings.Contains(got, "pwned") || strings.Contains(got, `<code class="scope">admin</code>`) {
		t.Error("a cross-site POST changed the key")
	}

	// Empty fields clear.
	if status, notice := edit(url.Values{"name": {"erp"}, "scopes": {""}, "metadata": {""}, "expires": {""}}); status != http.StatusSeeOther ||
		notice != "Saved the name, scopes, metadata, expiry of erp." {
		t.Fatalf("clearing: status %d, notice %q", status, notice)
	}
	got = page()
	if strings.Contains(got, `class="scope"`) ||
		strings.Contains(got, "OPS-42") || !strings.Contains(got, `<dd id="expires"><span class="hint">never</span>`) {
		t.Error("clearing every field did not clear them")
	}

	// A past expiry expires the key at once; the list says so.
	if status, _ := edit(url.Values{"name": {"erp"}, "expires": {"2026-01-01T00:00"}}); status != http.StatusSeeOther {
		t.Fatalf("past expiry: status %d", status)
	}
	_, list = s.do(t, http.MethodGet, s.host, "/", nil)
	if !strings.Contains(list, `key-expiry expired">expired <span class="nowrap expires-at">2026-01-01 00:00 UTC</span>`) {
		t.Error("the list does not show that the key expired")
	}

	_, history := s.do(t, http.MethodGet, s.host, "/keys/"+id+"/history", nil)
	for _, want := range []string{"changed: expiry, metadata, scopes<", "changed: expiry, metadata, name, scopes<", "changed: expiry<"} {
		if !strings.Contains(history, want) {
			t.Errorf("the history does not say %q", want)
		}
	}
	if n := strings.Count(history, "Key edited"); n != 3 {
		t.Errorf("the history has %d edits, want 3 (an unchanged form writes none)", n)
	}

	// Another account's key, or none, has no page.
	if res, _ := s.do(t, http.MethodGet, s.host, "/keys/key_000000000000000000000a", nil); res.StatusCode != http.StatusNotFound {
		t.Errorf("GET the page of an unknown key: status %d, want 404", res.StatusCode)
	}
}
