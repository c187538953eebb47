package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestBrowserEditKey edits a key's scopes, metadata and expiry in the
// browser, as an operator does: from the row's Edit button, through the
// form, back to the key page and the list; the key then authenticates as
// before, and the history names what changed.
func TestBrowserEditKey(t *testing.T) {
	s := newSite(t, startBrowser(t))
	keyID, link := s.generate("erp-sync")
	creds := s.reveal(link)

	s.navigate("/")
	if status := s.submit(row(keyID) + " a.edit"); status != http.StatusOK {
		t.Fatalf("Edit: status %d", status)
	}
	s.mustShow("form#edit")
	if got := s.text("#scopes"); !strings.Contains(got, "none") {
		t.Errorf("a new key's scopes say %q, want none", got)
	}
	s.do(
		chromedp.SendKeys(chromedp.CSS("#edit-scopes"), "invoices:read\norders:write"),
		chromedp.SendKeys(chromedp.CSS("#edit-metadata"), "team=billing\nticket=OPS-42"),
		chromedp.SetValue(chromedp.CSS("#edit-expires"), "2026-09-01T12:30"),
	)
	if status := s.submit("#save"); status != http.StatusOK {
		t.Fatalf("Save: status %d, error %q", status, s.text("#error"))
	}
	if got, want := s.text("#notice"), "Saved the scopes, metadata, expiry of erp-sync."; got != want {
		t.Errorf("notice after Save = %q, want %q", got, want)
	}
	if got, want := s.text("#scopes"), "invoices:read orders:write"; got != want {
		t.Errorf("scopes = %q, want %q", got, want)
	}
	if got := s.text("#metadata"); !strings.Contains(got, "team") || !strings.Contains(got, "OPS-42") {
		t.Errorf("metadata = %q", got)
	}
	if got, want := s.text("#expires"), "2026-09-01 12:30 UTC (in 184 days)"; got != want {
		t.Errorf("expiry = %q, want %q", got, want)
	}
	s.screenshot("admin-key.png", "", 0)

	s.navigate("/")
	if got, want := s.text(row(keyID)+" .key-expiry"), "expires 2026-09-01 12:30 UTC"; got != want {
		t.Errorf("the list says %q, want %q", got, want)
	}
	if got, want := s.text(row(keyID)+" .scopes"), "invoices:read orders:write"; got != want {
		t.Errorf("the list shows the scopes %q, want %q", got, want)
	}
	s.mustCall(creds, http.StatusOK)

	// A bad scope: the form comes back with what was typed, nothing saved.
	s.navigate("/keys/" + keyID)
	s.do(chromedp.SendKeys(chromedp.CSS("#edit-scopes"), "\norders:*"))
	if status := s.submit("#save"); status != http.StatusBadRequest {
		t.Errorf("Save with a bad scope: status %d, want 400", status)
	}
	if got := get(s, chromedp.Value(chromedp.CSS("#edit-scopes"))); !strings.Contains(got, "orders:*") {
		t.Errorf("the form lost what was typed: %q", got)
	}
	if got, want := s.text("#scopes"), "invoices:read orders:write"; got != want {
		t.Errorf("scopes after a refused save = %q, want %q", got, want)
	}

	s.navigate("/keys/" + keyID + "/history")
	events := s.events()
	if last := events[len(events)-1]; !strings.Contains(last, "Key edited|") || !strings.HasSuffix(last, "|changed: expiry, metadata, scopes") {
		t.Errorf("the history's last event is %q", last)
	}
}
