package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// attackerPage is a web page on attacker.test, a host name whose owner
// answers the first DNS query with their own server, which serves this
// page, and later ones with 127.0.0.1 (DNS rebinding). The page then has
// the origin http://attacker.test:PORT while its requests reach the admin
// server on 127.0.0.1:PORT, so the browser treats the admin screen and the
// link pages as the page's own origin. The operator presses one button.
//
// The page renews the first key in the table and completes the renewal
// with Now, which cuts its integration off, reads the new link from the admin screen, opens it
// in a popup and presses Reveal there. Only a form of the link page itself
// can reveal (its POST carries Origin: null, the page's cookie and form
// token); the popup is same-origin with this page, which reads the token.
// Like the link pages, the page sends Cross-Origin-Opener-Policy:
// same-origin, so that it keeps its hold on the popup.
const attackerPage = `<!doctype html>
<title>You won</title>
<button id="attack-admin">Claim your prize</button>
<button id="attack-link">Claim another prize</button>
<script>
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));
const parse = html => new DOMParser().parseFromString(html, "text/html");

async function until(f, what) {
  for (let i = 0; i < 100; i++) {
    try {
      const v = f();
      if (v) return v;
    } catch (e) {}
    await sleep(50);
  }
  throw new Error("timed out waiting for " + what);
}

function shows(doc) {
  const main = doc.querySelector("main#page");
  return main ? main.className : doc.body.textContent.trim().slice(0, 200);
}

// reveal opens path in the popup w, presses Reveal there and returns the
// token the page shows, if any.
async function reveal(w, path) {
  w.location = path;
  const landing = await until(() => w.location.pathname === path && w.document.readyState === "complete" && w.document.body && w.document, "the landing page");
  const button = landing.getElementById("reveal");
  if (!button) return {step: "landing page", shows: shows(landing)};
  landing.body.dataset.stale = "1";
  button.click();
  const page = await until(() => w.document.readyState === "complete" && w.document.body && !w.document.body.dataset.stale && w.document, "the reveal page");
  const token = page.getElementById("token");
  return {step: "reveal", shows: shows(page), token: token ? token.textContent : ""};
}

async function attackAdmin(w) {
  const list = await fetch("/");
  const row = parse(await list.text()).querySelector("tr.key-row");
  if (list.status !== 200 || !row) return {step: "key table", status: list.status};
  const renewed = await fetch("/keys/" + row.dataset.keyId + "/renew", {method: "POST"});
  const link = parse(await renewed.text()).getElementById("link-url");
  if (renewed.status !== 200 || !link) return {step: "renew", status: renewed.status};
  const completed = await fetch("/keys/" + row.dataset.keyId + "/complete", {method: "POST", body: new URLSearchParams({old: "now"})});
  if (!completed.ok) return {step: "complete", status: completed.status};
  return reveal(w, new URL(link.value).pathname);
}

function start(attack) {
  const w = window.open("about:blank", "_blank");
  window.attack = attack(w)
    .catch(e => ({step: "error", error: String(e)}))
    .finally(() => w.close());
}
document.getElementById("attack-admin").onclick = () => start(attackAdmin);
document.getElementById("attack-link").onclick = () => start(w => reveal(w, window.linkPath));
</script>
`

// attackResult is what the attacker's page got: the step where it stopped,
// the status or page it saw there, and the token it read, if any.
type attackResult struct {
	Step   string `json:"step"`
	Status int    `json:"status"`
	Shows  string `json:"shows"`
	Token  string `json:"token"`
	Error  string `json:"error"`
}

// String leaves the token out of test logs.
func (a attackResult) String() string {
	return fmt.Sprintf("stopped at %q (status %d, page %q, error %q), token read: %t", a.Step, a.Status, a.Shows, a.Error, a.Token != "")
}

// TestDNSRebinding is rule S7 and issue 7 item 1: a web page on a host
// name re-pointed at 127.0.0.1 can neither drive the admin screen nor
// reveal a link, even given its URL; the key and the link stay as they
// were.
func TestDNSRebinding(t *testing.T) {
	b := startBrowser(t)

	t.Run("AdminScreen", func(t *testing.T) {
		s := newSite(t, b, attackerServer)
		keyID, link := s.generate("erp-sync")
		integration := s.reveal(link)

		got := s.attack("#attack-admin", "")
		t.Logf("attack on the admin screen: %s", got)
		if got.Token != "" {
			t.Errorf("the attacker's page renewed key %s and read its new token", keyID)
		}
		if got.Step != "key table" || got.Status != http.StatusMisdirectedRequest {
			t.Errorf("the admin screen answered the attacker's host: %s", got)
		}
		s.mustCall(integration, http.StatusOK) // its token was not deleted
		s.reveal(s.renew(keyID))               // no link was left pending
	})

	t.Run("LinkPage", func(t *testing.T) {
		s := newSite(t, b, attackerServer)
		_, link := s.generate("erp-sync")
		u, err := url.Parse(link)
		if err != nil {
			t.Fatal(err)
		}

		got := s.attack("#attack-link", u.Path)
		t.Logf("attack on the link page: %s", got)
		if got.Token != "" {
			t.Error("the attacker's page revealed the token of a link")
		}
		if got.Step != "landing page" || got.Shows != "card state-misdirected" {
			t.Errorf("the link page answered the attacker's host: %s", got)
		}
		s.mustCall(s.reveal(link), http.StatusOK) // still pending for its owner
	})
}

// attackerServer answers GET /prize.html for the host name attacker.test
// with attackerPage, as the attacker's own server does before the name is
// re-pointed, and gives every other request to the admin server. Serving
// the page from loopback keeps Chromium's Local Network Access prompt, which
// asks the user before a public page reaches loopback, out of the test: an
// operator may click Allow, other browsers do not ask, and the servers
// must refuse the attack on their own.
func attackerServer(admin http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := strings.Cut(r.Host, ":")
		if host != "attacker.test" || r.URL.Path != "/prize.html" {
			admin.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cross-Origin-Opener-Policy", "same-origin")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte(attackerPage))
	})
}

// attack opens the attacker's page in the tab, gives it linkPath, presses
// one of its buttons, as the operator would, and waits for what its script
// got.
func (s *site) attack(button, linkPath string) attackResult {
	s.t.Helper()
	u, err := url.Parse(s.url)
	if err != nil {
		s.t.Fatal(err)
	}
	page := "http://attacker.test:" + u.Port() + "/prize.html"
	if status := s.navigate(page); status != http.StatusOK {
		s.t.Fatalf("attacker's page: status %d", status)
	}
	s.do(
		chromedp.Evaluate[chromedp.Void]("window.linkPath = "+jsString(linkPath)),
		chromedp.Click(chromedp.CSS(button)),
	)
	ctx, cancel := context.WithTimeout(s.tab, actionTimeout)
	defer cancel()
	got, err := chromedp.Run(ctx, chromedp.Evaluate[attackResult]("window.attack", chromedp.EvalAwaitPromise))
	if err != nil {
		s.t.Fatalf("attacker's page: %v", err)
	}
	return got
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
