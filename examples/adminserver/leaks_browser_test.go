package main

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/keyrenew/tokens"
)

// testBrowserLeakedKey is TestBrowser's LeakedKey: a key reported leaked
// shows in the leaked tokens block above the table, on a desktop and a
// phone, and its button gives a link to a new token while the leaked one
// is refused.
func testBrowserLeakedKey(t *testing.T, b context.Context) {
	s := newSite(t, b)
	s.generate("erp-sync")
	keyID, link := s.generate("billing")
	leaked := s.reveal(link)
	s.clk.Add(time.Hour)
	m := sharedManager(t, s.db, s.clk, s.url)
	if _, err := m.ReportLeak(t.Context(), leaked.token, tokens.Leak{Source: "github/commit", URL: "https://github.com/acme/app/blob/main/.env"}); err != nil {
		t.Fatal(err)
	}
	s.clk.Add(time.Minute)

	s.navigate("/")
	card := "#leaked article.leak[data-key-id=\"" + keyID + "\"]"
	s.mustShow(card + " button.renew-leaked-btn")
	if !get(s, chromedp.Evaluate[bool](`document.querySelector("#leaked").getBoundingClientRect().bottom <= document.querySelector("#keys").getBoundingClientRect().top`)) {
		t.Error("the leaked tokens block is not above the key table")
	}
	if got, want := s.text("#leaked-title"), "Leaked tokens"; got != want {
		t.Errorf("the block's heading is %q, want %q", got, want)
	}
	s.screenshot("admin-leaked.png", "", 0)
	s.mustFit(390, "admin-leaked-390.png", "")
	s.do(chromedp.EmulateReset())

	if status := s.submit(card + " button.renew-leaked-btn"); status != http.StatusOK {
		t.Fatalf("Renew and send the new link: status %d, error %q", status, s.text("#error"))
	}
	s.mustShow("#leak-renewed")
	id, newLink := s.newLink()
	if id != keyID {
		t.Fatalf("the link shown is of key %s, want %s", id, keyID)
	}
	if s.count("#leaked") != 0 {
		t.Error("the leaked tokens block is still shown after the renewal")
	}
	s.mustCall(leaked, http.StatusUnauthorized)
	s.mustCall(s.reveal(newLink), http.StatusOK)
}
