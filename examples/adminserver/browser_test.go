package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowser drives the admin screen and the share link pages in headless
// Chromium, the way an operator and a key's owner use them, and calls the
// protected API with what the browser revealed. Each subtest has its own
// server, database and mock clock, in a tab of one browser.
func TestBrowser(t *testing.T) {
	b := startBrowser(t)

	t.Run("GenerateRevealCopyCall", func(t *testing.T) {
		s := newSite(t, b)
		keyID, link := s.generate("erp-sync")
		if got := s.text("#new-link h2"); !strings.Contains(got, "erp-sync") {
			t.Errorf("link box heading %q does not name the key", got)
		}
		if got, want := s.text("#link-expires"), "2026-03-02 09:00 UTC"; got != want {
			t.Errorf("link box says the link expires %q, want %q", got, want)
		}
		if got := s.copyWith("#new-link button.copy"); got != link {
			t.Fatalf("clipboard after Copy = %q, want the link %q", got, link)
		}
		s.navigate("/")
		s.mustShow(row(keyID))
		if n := s.count("#new-link, #link-url"); n != 0 {
			t.Error("the admin screen shows the link again after a reload")
		}

		if status := s.navigate(link); status != http.StatusOK {
			t.Fatalf("landing page: status %d", status)
		}
		s.mustShow("main#page.state-pending form#reveal-form button#reveal")
		s.screenshot("landing.png", "", 880)
		if status := s.submit("button#reveal"); status != http.StatusOK {
			t.Fatalf("Reveal: status %d", status)
		}
		s.mustShow("main#page.state-revealed")
		if got := s.text("#once"); !strings.Contains(got, "will not be shown again") {
			t.Errorf("reveal page says %q, want that it is shown once", got)
		}
		if got := s.text("code#key-id"); got != keyID {
			t.Errorf("reveal page key ID = %q, want %q", got, keyID)
		}
		s.screenshot("reveal.png", "reveal.png", 880)
		token := s.copyWith("button.copy#copy-token")
		if token == "" || token != s.text("code#token") {
			t.Fatalf("clipboard after Copy token = %q, want the token shown", token)
		}
		if got := s.copyWith("button.copy#copy-key-id"); got != keyID {
			t.Errorf("clipboard after Copy key ID = %q, want %q", got, keyID)
		}

		body := s.mustCall(credentials{keyID, token}, http.StatusOK)
		if body["key_id"] != keyID || body["name"] != "erp-sync" {
			t.Errorf("whoami = %v, want key %s named erp-sync", body, keyID)
		}
		s.mustCall(credentials{keyID, token[:len(token)-1] + flip(token[len(token)-1])}, http.StatusUnauthorized)
		s.mustCall(credentials{keyID, ""}, http.StatusUnauthorized)
	})

	t.Run("RenewLaterDeleteOldThenUndo", func(t *testing.T) {
		s := newSite(t, b)
		keyID, link := s.generate("erp-sync")
		first := s.reveal(link)

		s.navigate("/")
		later := row(keyID) + " input[name=old][value=later]"
		now := row(keyID) + " input[name=old][value=now]"
		if !get(s, chromedp.Evaluate[bool]("document.querySelector('"+later+"').checked")) ||
			get(s, chromedp.Evaluate[bool]("document.querySelector('"+now+"').checked")) {
			t.Fatal("Renew token does not preselect keeping the old token (Later)")
		}
		second := s.reveal(s.renew(keyID, "later"))
		if second.keyID != keyID || second.token == first.token {
			t.Fatalf("renewal revealed key %s token equal to the first: %v", second.keyID, second.token == first.token)
		}
		s.mustCall(first, http.StatusOK)
		s.mustCall(second, http.StatusOK)

		s.clk.Add(2 * time.Hour)
		s.mustCall(second, http.StatusOK)
		s.navigate("/")
		r := row(keyID)
		for sel, want := range map[string]string{
			r + " .current-age":  "2 hours",
			r + " .current-used": "just now",
			r + " .old-age":      "2 hours",
			r + " .old-used":     "2 hours ago",
		} {
			if got := s.text(sel); got != want {
				t.Errorf("%s = %q, want %q", sel, got, want)
			}
		}

		if status := s.submit(r + " button.renew-btn"); status != http.StatusConflict {
			t.Errorf("renewing with an old token pending: status %d, want 409", status)
		}
		if got := s.text("#error"); !strings.Contains(got, "still has an old token") {
			t.Errorf("renewing with an old token pending shows %q", got)
		}

		s.navigate("/")
		if status := s.submit(r + " a.delete-old"); status != http.StatusOK {
			t.Fatalf("Delete old token: status %d", status)
		}
		if got := s.text("#old-last-used"); !strings.Contains(got, "2 hours ago") {
			t.Errorf("confirmation says %q, want when the old token was last used (2 hours ago)", got)
		}
		if status := s.submit("button#confirm"); status != http.StatusOK {
			t.Fatalf("confirming Delete old token: status %d", status)
		}
		s.mustShow("#notice")
		if n := s.count(r + " .old-age"); n != 0 {
			t.Error("the table still shows an old token after Delete old token")
		}
		s.mustCall(first, http.StatusUnauthorized)
		s.mustCall(second, http.StatusOK)

		link = s.renew(keyID, "later")
		third := s.reveal(link)
		s.mustCall(third, http.StatusOK)
		s.mustCall(second, http.StatusOK)
		if got := s.press(keyID, "button.undo"); !strings.Contains(got, "undone") {
			t.Errorf("Undo renewal notice = %q", got)
		}
		if n := s.count(r + " .old-age"); n != 0 {
			t.Error("the table still shows an old token after Undo")
		}
		s.mustCall(third, http.StatusUnauthorized)
		s.mustCall(second, http.StatusOK)
		if status := s.navigate(link); status != http.StatusNotFound {
			t.Errorf("undone renewal's link: status %d, want 404", status)
		}
		s.mustShow("main#page.state-notfound")
	})

	t.Run("RenewNow", func(t *testing.T) {
		s := newSite(t, b)
		keyID, link := s.generate("nightly-backup")
		first := s.reveal(link)
		second := s.reveal(s.renew(keyID, "now"))
		s.mustCall(first, http.StatusUnauthorized)
		s.mustCall(second, http.StatusOK)
		s.navigate("/")
		if n := s.count(row(keyID) + " .old-age, " + row(keyID) + " a.delete-old"); n != 0 {
			t.Error("the table shows an old token after renewing with Now")
		}
	})

	t.Run("RenewWhileLinkPending", func(t *testing.T) {
		s := newSite(t, b)
		keyID, _ := s.generate("crm-webhook")
		s.navigate("/")
		if status := s.submit(row(keyID) + " button.renew-btn"); status != http.StatusConflict {
			t.Errorf("renewing while the link is pending: status %d, want 409", status)
		}
		got := s.text("#error")
		if !strings.Contains(got, "has not been opened yet") || !strings.HasSuffix(got, ".") ||
			strings.Contains(got, "Err") || strings.Contains(got, "tokens:") {
			t.Errorf("error banner %q is not a plain sentence about the pending link", got)
		}
		if n := s.count("#new-link"); n != 0 {
			t.Error("a failed renewal shows a link")
		}
	})

	t.Run("PreviewersLeaveLinkRedeemable", func(t *testing.T) {
		s := newSite(t, b)
		keyID, link := s.generate("chat-bot")
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			for _, ua := range []string{
				"Go-http-client/1.1",
				"Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
				"Mozilla/5.0 (compatible; Microsoft Office Protocol Discovery)",
			} {
				status, body := s.fetch(method, link, ua)
				if status != http.StatusOK {
					t.Errorf("%s %s: status %d, want 200", method, ua, status)
				}
				if method == http.MethodGet && (!strings.Contains(body, `id="reveal"`) || strings.Contains(body, `id="token"`)) {
					t.Errorf("GET by %s does not show the landing page with Reveal", ua)
				}
			}
		}
		// A scanner that submits forms has no cookie and no form token.
		if status, _ := s.fetch(http.MethodPost, link, "mail-scanner"); status != http.StatusForbidden {
			t.Errorf("POST without the page's form: status %d, want 403", status)
		}
		creds := s.reveal(link)
		if creds.keyID != keyID {
			t.Fatalf("revealed key %s, want %s", creds.keyID, keyID)
		}
		s.mustCall(creds, http.StatusOK)
	})

	t.Run("ExpiredAndUsedLinks", func(t *testing.T) {
		s := newSite(t, b)
		_, used := s.generate("used-link")
		_, expiring := s.generate("expiring-link")

		s.reveal(used)
		if status := s.navigate(used); status != http.StatusGone {
			t.Errorf("used link: status %d, want 410", status)
		}
		s.mustShow("main#page.state-used")
		if got := s.text("h1"); !strings.Contains(got, "already used") {
			t.Errorf("used link page title %q", got)
		}

		s.clk.Add(24*time.Hour - time.Second)
		if status := s.navigate(expiring); status != http.StatusOK {
			t.Errorf("link a second before expiry: status %d, want 200", status)
		}
		s.mustShow("main#page.state-pending")
		// Reveal on a landing page loaded before the expiry, pressed after it.
		s.clk.Add(time.Second)
		if status := s.submit("button#reveal"); status != http.StatusGone {
			t.Errorf("Reveal after expiry: status %d, want 410", status)
		}
		s.mustShow("main#page.state-expired")
		if status := s.navigate(expiring); status != http.StatusGone {
			t.Errorf("expired link: status %d, want 410", status)
		}
		s.mustShow("main#page.state-expired")
		if got := s.text("h1"); !strings.Contains(got, "expired") {
			t.Errorf("expired link page title %q", got)
		}
		if status := s.navigate(used); status != http.StatusGone {
			t.Errorf("used link after its expiry: status %d, want 410 (used)", status)
		}
		s.mustShow("main#page.state-used")
		s.navigate("/")
		s.mustShow(".link-expired")
	})

	t.Run("AlertsAndKeyTable", func(t *testing.T) {
		s := newSite(t, b)
		legacyID, link := s.generate("legacy-ftp")
		s.reveal(link)

		s.clk.Set(start.AddDate(0, 3, 0).Add(-time.Minute))
		s.navigate("/")
		s.mustShow(row(legacyID) + " .alert.none")
		s.clk.Set(start.AddDate(0, 3, 0))
		s.navigate("/")
		s.mustShow(row(legacyID) + " .alert.warning")
		billingID, link := s.generate("billing-export")
		s.reveal(link)
		s.clk.Add(time.Minute) // the table lists keys oldest first
		erpID, link := s.generate("erp-sync")
		old := s.reveal(link)
		s.mustCall(old, http.StatusOK)

		s.clk.Set(start.AddDate(0, 6, 0).Add(time.Minute))
		s.navigate("/")
		s.mustShow(row(legacyID) + " .alert.critical")
		s.mustShow(row(billingID) + " .alert.warning")
		s.mustShow(row(erpID) + " .alert.warning")
		if n := s.count(".alert.warning, .alert.critical"); n != 3 {
			t.Errorf("%d alerts shown, want 3", n)
		}

		renewed := s.reveal(s.renew(erpID, "later"))
		s.mustCall(old, http.StatusOK)
		s.clk.Add(3 * time.Hour)
		s.mustCall(renewed, http.StatusOK)
		crmID, _ := s.generate("crm-webhook")
		s.press(crmID, "button.deactivate")

		s.navigate("/")
		for sel, want := range map[string]string{
			row(erpID) + " .current-age":  "3 hours",
			row(erpID) + " .current-used": "just now",
			row(erpID) + " .old-age":      "92 days",
			row(erpID) + " .old-used":     "3 hours ago",
		} {
			if got := s.text(sel); got != want {
				t.Errorf("%s = %q, want %q", sel, got, want)
			}
		}
		s.mustShow(row(erpID) + " .alert.none")
		s.mustShow(row(crmID) + ".inactive")
		s.screenshot("admin-keys.png", "admin-keys.png", 0)
	})

	t.Run("DeactivateActivateDelete", func(t *testing.T) {
		s := newSite(t, b)
		keyID, link := s.generate("ops-agent")
		creds := s.reveal(link)
		s.mustCall(creds, http.StatusOK)

		if got := s.press(keyID, "button.deactivate"); got != "ops-agent is deactivated: its tokens are refused until you activate it." {
			t.Errorf("Deactivate notice = %q", got)
		}
		s.mustShow(row(keyID) + ".inactive button.activate")
		if body := s.mustCall(creds, http.StatusForbidden); body["error"] != "key_inactive" {
			t.Errorf("inactive key: body %v, want error key_inactive", body)
		}
		s.press(keyID, "button.activate")
		s.mustShow(row(keyID) + " button.deactivate")
		// A notice shows once, and never from the URL.
		s.navigate("/?notice=Your+session+expired")
		if n := s.count("#notice"); n != 0 {
			t.Errorf("the admin screen shows a notice on a reload or from the URL: %q", s.text("#notice"))
		}
		s.mustCall(creds, http.StatusOK)

		s.navigate("/")
		if status := s.submit(row(keyID) + " a.delete-key"); status != http.StatusOK {
			t.Fatalf("Delete key: status %d", status)
		}
		if status := s.submit("button#confirm"); status != http.StatusOK {
			t.Fatalf("confirming Delete key: status %d", status)
		}
		s.mustShow("#notice")
		if n := s.count(row(keyID)); n != 0 {
			t.Error("the deleted key is still in the table")
		}
		s.mustCall(creds, http.StatusUnauthorized)
	})
}

// flip returns a different character of the same alphabet.
func flip(c byte) string {
	if c == 'a' {
		return "b"
	}
	return "a"
}
