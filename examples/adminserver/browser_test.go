package main

import (
	"net/http"
	"slices"
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
		if n := s.count(row(keyID) + " select, " + row(keyID) + " form.renew input"); n != 0 {
			t.Errorf("Renew token asks %d questions before renewing, want none (the seed's flow asks after)", n)
		}
		link = s.renew(keyID)
		// The seed's flow: the link is shown at once, then the choice
		// (Later, Later with an expiry, Now), with Later preselected.
		s.mustShow("#new-link #link-url")
		s.mustShow("#complete")
		choices := get(s, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#complete input[name=old]")].map(i => i.value + (i.checked ? "*" : ""))`))
		if got, want := strings.Join(choices, " "), "later* expire now"; got != want {
			t.Errorf("the choices after Renew token are %q, want %q (* preselected)", got, want)
		}
		expiries := get(s, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#complete select[name=expire] option")].map(o => o.textContent)`))
		if got, want := strings.Join(expiries, ", "), "1 hour, 24 hours, 7 days"; got != want {
			t.Errorf("the expiries offered for the old token are %q, want %q", got, want)
		}
		s.screenshot("admin-renew.png", "admin-renew.png", 0)
		// Leaving without pressing Complete keeps the old token (Later).
		second := s.reveal(link)
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
			r + " .current-age":      "2 hours",
			r + " .current-used":     "just now",
			r + " .old-age":          "2 hours",
			r + " .old-used":         "2 hours ago",
			r + " .pending-deletion": "Pending deletion - old token",
			r + " .old-expires":      "No expiry: delete it once unused",
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

		s.confirmed(keyID, "a.delete-old", func() {
			if got := s.text("#old-last-used"); !strings.Contains(got, "2 hours ago") {
				t.Errorf("confirmation says %q, want when the old token was last used (2 hours ago)", got)
			}
		})
		if n := s.count(r + " .old-age"); n != 0 {
			t.Error("the table still shows an old token after Delete old token")
		}
		s.mustCall(first, http.StatusUnauthorized)
		s.mustCall(second, http.StatusOK)

		link = s.renew(keyID)
		third := s.reveal(link)
		s.mustCall(third, http.StatusOK)
		s.mustCall(second, http.StatusOK)

		// Undo asks first; Cancel changes nothing.
		s.navigate("/")
		if status := s.submit(r + " a.undo"); status != http.StatusOK {
			t.Fatalf("Undo renewal: status %d", status)
		}
		if got := s.text("#new-last-used"); !strings.Contains(got, "just now") || !strings.Contains(got, "stops working") {
			t.Errorf("Undo confirmation says %q, want when the new token was last used and that it stops working", got)
		}
		s.screenshot("confirm-undo.png", "", 880)
		if status := s.submit("#cancel"); status != http.StatusOK {
			t.Fatalf("Cancel: status %d", status)
		}
		s.mustShow(r + " .old-age")
		s.mustCall(third, http.StatusOK)

		if got := s.confirmed(keyID, "a.undo", nil); !strings.Contains(got, "undone") {
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
		link = s.renew(keyID)
		if got := s.complete("now"); !strings.Contains(got, "old token was deleted") {
			t.Errorf("Complete with Now: notice %q", got)
		}
		s.mustCall(first, http.StatusUnauthorized)
		second := s.reveal(link)
		s.mustCall(second, http.StatusOK)
		s.navigate("/")
		if n := s.count(row(keyID) + " .old-age, " + row(keyID) + " a.delete-old"); n != 0 {
			t.Error("the table shows an old token after renewing with Now")
		}
	})

	t.Run("RenewLaterWithExpiry", func(t *testing.T) {
		s := newSite(t, b)
		keyID, link := s.generate("erp-sync")
		first := s.reveal(link)
		s.clk.Add(time.Hour)
		link = s.renew(keyID)
		// The renewal itself gives the old token no expiry: Complete does.
		if got := s.text("#complete label"); !strings.Contains(got, "until you delete it") {
			t.Errorf("Later after Renew token says %q, want that the old token has no expiry yet", got)
		}
		if got := s.complete("24h"); !strings.Contains(got, "until 2026-03-02 10:00 UTC, then it is deleted by itself") {
			t.Errorf("Complete with Later and 24 hours: notice %q, want the expiry", got)
		}
		r := row(keyID)
		if got, want := s.text(r+" .old-expires"), "Expires 2026-03-02 10:00 UTC (in 24 hours)"; got != want {
			t.Errorf("old token expiry after Complete = %q, want %q", got, want)
		}
		second := s.reveal(link)
		s.clk.Add(23 * time.Hour)
		s.mustCall(first, http.StatusOK)
		s.navigate("/")
		if got, want := s.text(r+" .old-expires"), "Expires 2026-03-02 10:00 UTC (in 1 hour)"; got != want {
			t.Errorf("old token expiry = %q, want %q", got, want)
		}
		s.mustShow(r + " .pending-deletion")

		// The scheduled end, with no call: the old token is gone, and its
		// integration's next call shows on the screen with the date.
		s.clk.Add(time.Hour)
		s.mustCall(first, http.StatusUnauthorized)
		s.mustCall(second, http.StatusOK)
		s.navigate("/")
		if n := s.count(r + " .old-age"); n != 0 {
			t.Error("the table shows the old token after its expiry")
		}
		if got := s.text(r + " .reuse-warning"); !strings.Contains(got, "token deleted on 2026-03-02 10:00 UTC") {
			t.Errorf("warning after the expired token was used: %q", got)
		}

		s.navigate("/keys/" + keyID + "/history")
		want := "2026-03-01 10:00 UTC|Old token expiry set|admin|old token set to expire after 24 hours, at 2026-03-02 10:00 UTC"
		if got := s.events(); !slices.Contains(got, want) {
			t.Errorf("history shows\n%s\nwant a row\n%s", strings.Join(got, "\n"), want)
		}
	})

	t.Run("CompleteWithoutOldToken", func(t *testing.T) {
		s := newSite(t, b)
		keyID, link := s.generate("erp-sync")
		s.reveal(link)
		s.renew(keyID)
		// Another operator deleted the old token meanwhile.
		s.post("/keys/" + keyID + "/delete-old")
		s.do(chromedp.Click(chromedp.CSS("#complete input[name=old][value=expire]")))
		if status := s.submit("#complete-btn"); status != http.StatusConflict {
			t.Errorf("Complete with an expiry and no old token: status %d, want 409", status)
		}
		if got := s.text("#error"); !strings.Contains(got, "no old token") {
			t.Errorf("Complete with an expiry and no old token shows %q", got)
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

	t.Run("RevokeLink", func(t *testing.T) {
		s := newSite(t, b)
		keyID, link := s.generate("sent-to-wrong-person")
		r := row(keyID)
		s.navigate("/")
		s.mustShow(r + " .link-pending")
		got := s.confirmed(keyID, "a.revoke-link", func() {
			if got := s.text("h1"); !strings.Contains(got, "Revoke the link of sent-to-wrong-person") {
				t.Errorf("confirmation title %q", got)
			}
		})
		if !strings.Contains(got, "was revoked") {
			t.Errorf("Revoke link notice = %q", got)
		}
		if n := s.count(r + " .link-pending, " + r + " a.revoke-link"); n != 0 {
			t.Error("the table still shows a pending link after Revoke link")
		}
		if status := s.navigate(link); status != http.StatusNotFound {
			t.Errorf("revoked link: status %d, want 404", status)
		}
		s.mustShow("main#page.state-notfound")

		// R3 no longer blocks, and R4 discards the token nobody saw.
		link = s.renew(keyID)
		if n := s.count("#complete"); n != 0 {
			t.Error("the renewal asks about an old token that was never revealed")
		}
		s.mustShow("#no-old")
		creds := s.reveal(link)
		s.mustCall(creds, http.StatusOK)

		// A renewal's link revoked: the old token keeps working.
		link = s.renew(keyID)
		s.complete("later")
		s.confirmed(keyID, "a.revoke-link", func() {
			if got := s.text("main.confirm"); !strings.Contains(got, "old token keeps working") {
				t.Errorf("confirmation for a renewal's link says %q", got)
			}
		})
		s.mustCall(creds, http.StatusOK)
		if status := s.navigate(link); status != http.StatusNotFound {
			t.Errorf("revoked renewal link: status %d, want 404", status)
		}
		// A stale confirmation page: the link is no longer pending.
		if status := s.navigate("/keys/" + keyID + "/revoke-link"); status != http.StatusConflict {
			t.Errorf("Revoke link without a pending link: status %d, want 409", status)
		}
	})

	t.Run("RevokedTokenWarning", func(t *testing.T) {
		s := newSite(t, b)
		keyID, link := s.generate("billing-export")
		old := s.reveal(link)
		s.clk.Add(time.Hour)
		link = s.renew(keyID)
		s.complete("now")
		s.reveal(link)
		s.navigate("/")
		if n := s.count(".reuse-warning"); n != 0 {
			t.Error("a warning shows before any deleted token was used")
		}

		// The integration was not switched: it still sends the deleted
		// token to the API.
		s.clk.Add(5 * time.Hour)
		if body := s.mustCall(old, http.StatusUnauthorized); strings.Contains(body["error"], "tok_") {
			t.Errorf("the API's refusal echoes a token: %v", body)
		}
		s.clk.Add(10 * time.Minute)
		s.navigate("/")
		got := s.text(row(keyID) + " .reuse-warning")
		if want := "An integration still uses the token deleted on 2026-03-01 10:00 UTC: it was refused, most recently 10 minutes ago."; !strings.HasPrefix(got, want) {
			t.Errorf("warning = %q, want it to start %q", got, want)
		}
		s.mustShow(row(keyID) + " .reuse-warning")

		// A week later, with no further use, the warning is gone.
		s.clk.Add(7 * 24 * time.Hour)
		s.navigate("/")
		if n := s.count(".reuse-warning"); n != 0 {
			t.Error("the warning still shows a week after the last use")
		}
	})

	t.Run("History", func(t *testing.T) {
		s := newSite(t, b)
		keyID, link := s.generate("erp-sync")
		s.clk.Add(time.Minute)
		old := s.reveal(link)
		s.clk.Add(time.Hour)
		link = s.renew(keyID)
		s.complete("168h")
		s.clk.Add(time.Minute)
		s.reveal(link)
		s.clk.Add(time.Minute)
		s.confirmed(keyID, "a.delete-old", nil)
		s.clk.Add(time.Minute)
		s.mustCall(old, http.StatusUnauthorized)
		s.press(keyID, "button.deactivate")

		s.navigate("/")
		if status := s.submit(row(keyID) + " a.history"); status != http.StatusOK {
			t.Fatalf("History: status %d", status)
		}
		want := []string{
			"2026-03-01 09:00 UTC|Key created|admin|",
			"2026-03-01 09:01 UTC|Link opened, token revealed|the link's recipient|",
			"2026-03-01 10:01 UTC|Token renewed|admin|old token kept until deleted",
			"2026-03-01 10:01 UTC|Old token expiry set|admin|old token set to expire after 7 days, at 2026-03-08 10:01 UTC",
			"2026-03-01 10:02 UTC|Link opened, token revealed|the link's recipient|",
			"2026-03-01 10:03 UTC|Old token deleted|admin|",
			"2026-03-01 10:04 UTC|Deleted token used|an integration|an integration sent a token that was deleted; it was refused",
			"2026-03-01 10:04 UTC|Key deactivated|admin|",
		}
		if got := s.events(); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("history shows\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		s.screenshot("admin-history.png", "admin-history.png", 0)
		if n := s.count("#next-page, #first-page"); n != 0 {
			t.Error("a history of one page offers other pages")
		}

		// Enough changes for three pages: each is read once, in order.
		for range 12 {
			s.clk.Add(time.Minute)
			s.post("/keys/" + keyID + "/activate")
			s.post("/keys/" + keyID + "/deactivate")
		}
		s.navigate("/keys/" + keyID + "/history")
		var all []string
		for page := 1; ; page++ {
			got := s.events()
			all = append(all, got...)
			if page == 1 && s.count("#first-page") != 0 {
				t.Error("the first page offers to go to the first page")
			}
			if s.count("#next-page") == 0 {
				if page != 2 || len(got) != 32-historyPageSize {
					t.Errorf("last page is page %d with %d events, want page 2 with %d", page, len(got), 32-historyPageSize)
				}
				s.mustShow("#first-page")
				break
			}
			if len(got) != historyPageSize {
				t.Errorf("page %d shows %d events, want %d", page, len(got), historyPageSize)
			}
			if status := s.submit("#next-page"); status != http.StatusOK {
				t.Fatalf("Later events: status %d", status)
			}
		}
		if len(all) != 32 || strings.Join(all[:len(want)], "\n") != strings.Join(want, "\n") {
			t.Errorf("paging showed %d events, want 32 starting with the 8 above", len(all))
		}
		for i := 1; i < len(all); i++ {
			if all[i] < all[i-1][:20] {
				t.Errorf("event %d (%s) is older than the one before it", i, all[i])
			}
		}
		if status := s.navigate("/keys/" + keyID + "/history?after=bogus"); status != http.StatusBadRequest {
			t.Errorf("history with a bad cursor: status %d, want 400", status)
		}

		// The history of a deleted key stays readable.
		s.confirmed(keyID, "a.delete-key", nil)
		if status := s.navigate("/keys/" + keyID + "/history"); status != http.StatusOK {
			t.Fatalf("history of a deleted key: status %d", status)
		}
		s.mustShow("#next-page")
		if status := s.navigate("/keys/key_unknown/history"); status != http.StatusNotFound {
			t.Errorf("history of an unknown key: status %d, want 404", status)
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
		// R10 with the default period of 3 months: orange after 3, red
		// after 6, counted from the token's creation.
		alertDates := func(keyID, warn, critical string) {
			t.Helper()
			for sel, want := range map[string]string{row(keyID) + " .warn-at": warn, row(keyID) + " .critical-at": critical} {
				if got := s.text(sel); got != want {
					t.Errorf("%s = %q, want %q", sel, got, want)
				}
			}
		}

		s.clk.Set(start.AddDate(0, 3, 0).Add(-time.Minute))
		s.navigate("/")
		s.mustShow(row(legacyID) + " .alert.none")
		alertDates(legacyID, "orange from 2026-06-01 09:00 UTC", "red from 2026-09-01 09:00 UTC")
		s.clk.Set(start.AddDate(0, 3, 0))
		s.navigate("/")
		s.mustShow(row(legacyID) + " .alert.warning")
		alertDates(legacyID, "orange since 2026-06-01 09:00 UTC", "red from 2026-09-01 09:00 UTC")
		billingID, link := s.generate("billing-export")
		billing := s.reveal(link)
		s.clk.Add(time.Minute) // the table lists keys oldest first
		erpID, link := s.generate("erp-sync")
		old := s.reveal(link)
		s.mustCall(old, http.StatusOK)

		s.clk.Set(start.AddDate(0, 6, 0).Add(time.Minute))
		s.navigate("/")
		s.mustShow(row(legacyID) + " .alert.critical")
		alertDates(legacyID, "orange since 2026-06-01 09:00 UTC", "red since 2026-09-01 09:00 UTC")
		s.mustShow(row(billingID) + " .alert.warning")
		s.mustShow(row(erpID) + " .alert.warning")
		if n := s.count(".alert.warning, .alert.critical"); n != 3 {
			t.Errorf("%d alerts shown, want 3", n)
		}

		link = s.renew(erpID)
		s.complete("168h")
		renewed := s.reveal(link)
		s.mustCall(old, http.StatusOK)
		// billing-export renewed with Now, and its integration not told.
		link = s.renew(billingID)
		s.complete("now")
		s.reveal(link)
		s.clk.Add(3 * time.Hour)
		s.mustCall(renewed, http.StatusOK)
		s.mustCall(billing, http.StatusUnauthorized)
		crmID, _ := s.generate("crm-webhook")
		s.press(crmID, "button.deactivate")

		s.navigate("/")
		for sel, want := range map[string]string{
			row(erpID) + " .current-age":  "3 hours",
			row(erpID) + " .current-used": "just now",
			row(erpID) + " .old-age":      "92 days",
			row(erpID) + " .old-used":     "3 hours ago",
			row(erpID) + " .old-expires":  "Expires 2026-09-08 09:01 UTC (in 6 days)",
		} {
			if got := s.text(sel); got != want {
				t.Errorf("%s = %q, want %q", sel, got, want)
			}
		}
		s.mustShow(row(erpID) + " .alert.none")
		alertDates(erpID, "orange from 2026-12-01 09:01 UTC", "red from 2027-03-01 09:01 UTC")
		s.mustShow(row(billingID) + " .reuse-warning")
		s.mustShow(row(crmID) + ".inactive")
		s.mustShow(row(crmID) + " a.revoke-link")
		s.screenshot("admin-keys.png", "admin-keys.png", 0)
		if got := s.scrollWidth(); got > 1280 {
			t.Errorf("the key table is %d px wide in a 1280 px window", got)
		}

		// A phone: every key is a card, nothing scrolls sideways.
		s.mustFit(390, "admin-keys-390.png", "admin-keys-390.png")
		if got := get(s, chromedp.Evaluate[string]("getComputedStyle(document.querySelector('#keys thead')).display")); got != "none" {
			t.Errorf("at 390 px the table keeps its header row (display %s), want cards", got)
		}
		s.renew(legacyID)
		s.mustFit(390, "admin-renew-390.png", "")
		s.navigate("/keys/" + erpID + "/history")
		s.mustFit(390, "admin-history-390.png", "")
		s.navigate("/keys/" + erpID + "/undo")
		s.mustFit(390, "confirm-undo-390.png", "")
	})

	t.Run("LeakedKey", func(t *testing.T) { testBrowserLeakedKey(t, b) })

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
