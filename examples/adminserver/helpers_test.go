package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/jmoiron/sqlx"

	"github.com/keyrenew/tokens/internal/testenv"
)

// start is the mock clock's time when a site starts: a realistic date, so
// that ages, expiry times and alerts read like a real deployment's.
var start = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

// actionTimeout bounds each browser step, so that a page that never shows
// what a step waits for fails the test instead of hanging it.
const actionTimeout = 15 * time.Second

// startBrowser launches one headless Chromium for the whole test; each site
// opens its own tab in it.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(testenv.Chromium(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("lang", "en-US"),
		// attacker.test plays a host name that its owner re-points at
		// 127.0.0.1 (DNS rebinding); see TestDNSRebinding.
		chromedp.Flag("host-resolver-rules", "MAP attacker.test 127.0.0.1"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	// The Copy buttons write to the clipboard and the test reads it back,
	// on every origin (each site has its own port).
	for _, perm := range []*browser.PermissionDescriptor{
		{Name: "clipboard-read"},
		{Name: "clipboard-write", AllowWithoutSanitization: true},
	} {
		_, err := chromedp.CallBrowser(ctx, browser.SetPermission, browser.SetPermissionParams{
			Permission: perm, Setting: browser.PermissionSettingGranted,
		})
		if err != nil {
			t.Fatalf("granting %s: %v", perm.Name, err)
		}
	}
	return ctx
}

// site is one admin server, with its own SQLite database and mock clock,
// and a browser tab to drive it.
type site struct {
	t      *testing.T
	url    string
	clk    *clock.Mock
	client *http.Client
	tab    context.Context
	db     *sqlx.DB
}

// newSite starts a site. Each of fronts, if any, wraps the server's
// handler, to answer some requests in its place.
func newSite(t *testing.T, browserCtx context.Context, fronts ...func(http.Handler) http.Handler) *site {
	t.Helper()
	clk := clock.NewMock()
	clk.Set(start)
	dsn := "file:" + filepath.Join(t.TempDir(), "tokens.db") + "?_busy_timeout=10000&_journal_mode=WAL&_txlock=immediate"
	db, err := sqlx.Open("sqlite3", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })

	// The server needs its origin before it serves: the unstarted server
	// already listens, so its address is known.
	srv := httptest.NewUnstartedServer(nil)
	handler, err := newServer(t.Context(), db, "http://"+srv.Listener.Addr().String(), config{account: "acme"}, clk)
	if err != nil {
		srv.Close()
		t.Fatalf("newServer: %v", err)
	}
	for _, front := range fronts {
		handler = front(handler)
	}
	srv.Config.Handler = handler
	srv.Start()
	t.Cleanup(srv.Close)

	tab, cancel := chromedp.NewContext(browserCtx)
	t.Cleanup(cancel)
	// Focus emulation lets the page use the clipboard as if it were the
	// focused window.
	if _, err := chromedp.Call(tab, emulation.SetFocusEmulationEnabled, emulation.SetFocusEmulationEnabledParams{Enabled: true}); err != nil {
		t.Fatalf("opening a tab: %v", err)
	}
	return &site{t: t, url: srv.URL, clk: clk, client: srv.Client(), tab: tab, db: db}
}

// do runs browser steps on the site's tab.
func (s *site) do(steps ...chromedp.Action[chromedp.Void]) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.tab, actionTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		s.t.Fatalf("browser: %v", err)
	}
}

// get runs one browser action on the site's tab and returns its value.
func get[T any](s *site, a chromedp.Action[T]) T {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.tab, actionTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		s.t.Fatalf("browser: %v", err)
	}
	return v
}

// navigate opens url in the tab (a path is taken relative to the site) and
// returns the status of the page.
func (s *site) navigate(url string) int64 {
	s.t.Helper()
	if strings.HasPrefix(url, "/") {
		url = s.url + url
	}
	resp := get(s, chromedp.NavigateResponse(url))
	return resp.Status
}

// submit clicks the button that sel finds, waits for the page it leads to
// and returns that page's status (after redirects).
func (s *site) submit(sel string) int64 {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.tab, actionTimeout)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(sel)))
	if err != nil {
		s.t.Fatalf("clicking %s: %v", sel, err)
	}
	return resp.Status
}

func (s *site) text(sel string) string {
	s.t.Helper()
	return strings.TrimSpace(get(s, chromedp.Text(chromedp.CSS(sel))))
}

// count returns how many elements sel finds on the page.
func (s *site) count(sel string) int {
	s.t.Helper()
	return get(s, chromedp.Evaluate[int](fmt.Sprintf("document.querySelectorAll(%q).length", sel)))
}

// mustShow waits until the page shows sel.
func (s *site) mustShow(sel string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.tab, actionTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(sel))); err != nil {
		where, stop := context.WithTimeout(s.tab, 2*time.Second)
		defer stop()
		url, _ := chromedp.Run(where, chromedp.Location())
		s.t.Fatalf("page %s does not show %s: %v", url, sel, err)
	}
}

// copyWith clears the clipboard, clicks the Copy button that sel finds,
// waits until the button says it copied, and returns what the clipboard
// holds then.
func (s *site) copyWith(sel string) string {
	s.t.Helper()
	s.do(
		chromedp.Evaluate[chromedp.Void](`navigator.clipboard.writeText("")`, chromedp.EvalAwaitPromise),
		chromedp.Click(chromedp.CSS(sel)),
		chromedp.WaitVisible(chromedp.CSS(sel+".copied")),
	)
	return get(s, chromedp.Evaluate[string](`navigator.clipboard.readText()`, chromedp.EvalAwaitPromise))
}

// row is the selector of a key's row in the admin table.
func row(keyID string) string {
	return fmt.Sprintf("tr.key-row[data-key-id=%q]", keyID)
}

// generate creates a key from the admin screen and returns its ID and the
// share link shown once.
func (s *site) generate(name string) (keyID, link string) {
	s.t.Helper()
	s.navigate("/")
	s.do(chromedp.SendKeys(chromedp.CSS("#name"), name))
	if status := s.submit("#generate"); status != http.StatusOK {
		s.t.Fatalf("Generate key: status %d", status)
	}
	s.mustShow("#link-url")
	return s.newLink()
}

// newLink reads the share link that the admin screen shows once.
func (s *site) newLink() (keyID, link string) {
	s.t.Helper()
	attrs := get(s, chromedp.Attributes(chromedp.CSS("#new-link")))
	link = get(s, chromedp.Value(chromedp.CSS("#link-url")))
	if !strings.HasPrefix(link, s.url+"/credentials/") {
		s.t.Fatalf("share link %q is not under %s/credentials/", link, s.url)
	}
	return attrs["data-key-id"], link
}

// renew presses Renew token on a key's row and returns the new share
// link. The page then shows the link and, if the renewal kept an old
// token, the choice of what happens to it.
func (s *site) renew(keyID string) string {
	s.t.Helper()
	s.navigate("/")
	if status := s.submit(row(keyID) + " button.renew-btn"); status != http.StatusOK {
		s.t.Fatalf("Renew token: status %d, error %q", status, s.text("#error"))
	}
	s.mustShow("#link-url")
	id, link := s.newLink()
	if id != keyID {
		s.t.Fatalf("renewal link shown for key %s, want %s", id, keyID)
	}
	return link
}

// complete answers the question that follows a renewal, presses Complete
// and returns the notice shown afterwards. choice is "later", "now", or an
// expiry for Later ("1h", "24h", "168h"), picked in its select as an
// operator does, which picks that choice too.
func (s *site) complete(choice string) string {
	s.t.Helper()
	switch choice {
	case "later", "now":
		s.do(chromedp.Click(chromedp.CSS("#complete input[name=old][value=" + choice + "]")))
	default:
		s.do(chromedp.SetValue(chromedp.CSS("#complete select[name=expire]"), choice),
			chromedp.Evaluate[chromedp.Void](`void document.querySelector("#complete select[name=expire]").dispatchEvent(new Event("change", {bubbles: true}))`))
		if !get(s, chromedp.Evaluate[bool](`document.querySelector("#complete input[value=expire]").checked`)) {
			s.t.Fatalf("picking the expiry %s does not pick Later with an expiry", choice)
		}
	}
	if status := s.submit("#complete-btn"); status != http.StatusOK {
		s.t.Fatalf("Complete (%s): status %d, error %q", choice, status, s.text("#error"))
	}
	return s.text("#notice")
}

// confirmed follows a link of a key's row to its confirmation page (Delete
// old token, Undo renewal, Revoke link, Delete key), calls check on that
// page, confirms, and returns the notice shown afterwards.
func (s *site) confirmed(keyID, link string, check func()) string {
	s.t.Helper()
	s.navigate("/")
	if status := s.submit(row(keyID) + " " + link); status != http.StatusOK {
		s.t.Fatalf("%s: status %d", link, status)
	}
	s.mustShow("main.confirm button#confirm")
	if check != nil {
		check()
	}
	if status := s.submit("button#confirm"); status != http.StatusOK {
		s.t.Fatalf("confirming %s: status %d, error %q", link, status, s.text("#error"))
	}
	return s.text("#notice")
}

// scrollWidth is how wide the page is laid out, scrolling included.
func (s *site) scrollWidth() int {
	s.t.Helper()
	return get(s, chromedp.Evaluate[int]("document.documentElement.scrollWidth"))
}

// mustFit checks that the page, laid out width pixels wide, needs no
// horizontal scrolling, and saves a screenshot of it at that width.
func (s *site) mustFit(width int64, name, docName string) {
	s.t.Helper()
	s.do(chromedp.EmulateViewport(width, 844))
	got := s.scrollWidth()
	if got > int(width) {
		s.t.Errorf("%s at %d px: the page is %d px wide, it scrolls sideways", name, width, got)
	}
	s.screenshot(name, docName, width)
}

type credentials struct{ keyID, token string }

// reveal opens a share link as its recipient would: the landing page, then
// Reveal. It returns what the reveal page shows.
func (s *site) reveal(link string) credentials {
	s.t.Helper()
	if status := s.navigate(link); status != http.StatusOK {
		s.t.Fatalf("landing page: status %d, want 200", status)
	}
	s.mustShow("main#page.state-pending form#reveal-form button#reveal")
	if status := s.submit("button#reveal"); status != http.StatusOK {
		s.t.Fatalf("Reveal: status %d (%s), want 200", status, s.text("h1"))
	}
	s.mustShow("main#page.state-revealed #once")
	return credentials{keyID: s.text("code#key-id"), token: s.text("code#token")}
}

// press clicks a one-step action on a key's row (Undo, Deactivate, ...)
// and returns the notice the admin screen shows afterwards.
func (s *site) press(keyID, button string) string {
	s.t.Helper()
	s.navigate("/")
	if status := s.submit(row(keyID) + " " + button); status != http.StatusOK {
		s.t.Fatalf("%s: status %d, error %q", button, status, s.text("#error"))
	}
	return s.text("#notice")
}

// call sends GET /api/whoami with the credentials and returns the status
// and the decoded JSON body.
func (s *site) call(c credentials) (int, map[string]string) {
	s.t.Helper()
	req, err := http.NewRequestWithContext(s.t.Context(), http.MethodGet, s.url+"/api/whoami", nil)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("X-API-Key-ID", c.keyID)
	req.Header.Set("X-API-Token", c.token)
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		s.t.Fatalf("GET /api/whoami: status %d, body is not JSON: %v", resp.StatusCode, err)
	}
	return resp.StatusCode, body
}

// mustCall checks that the API answers want to the credentials.
func (s *site) mustCall(c credentials, want int) map[string]string {
	s.t.Helper()
	status, body := s.call(c)
	if status != want {
		s.t.Fatalf("GET /api/whoami with key %s: status %d %v, want %d", c.keyID, status, body, want)
	}
	return body
}

// fetch makes a plain HTTP request, as a link previewer would, and returns
// the status and body.
func (s *site) fetch(method, url, userAgent string) (int, string) {
	s.t.Helper()
	req, err := http.NewRequestWithContext(s.t.Context(), method, url, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("User-Agent", userAgent)
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// screenshot saves a PNG of the whole page under the test output folder
// (TOKENS_TEST_OUTPUT, else testoutput/ at the repository's root) and,
// with TOKENS_UPDATE_SCREENSHOTS=1, as docs/screenshots/<docName> for the
// README. A width other than 0 narrows the window for the shot, and the
// page is taken at its own height, without empty space below.
func (s *site) screenshot(name, docName string, width int64) {
	s.t.Helper()
	if width > 0 {
		s.do(chromedp.EmulateViewport(width, 200))
		defer s.do(chromedp.EmulateReset())
	}
	png := get(s, chromedp.FullScreenshot(100))
	dir := os.Getenv("TOKENS_TEST_OUTPUT")
	if dir == "" {
		dir = filepath.Join("..", "..", "testoutput")
	}
	writeFile(s.t, filepath.Join(dir, name), png)
	if docName != "" && os.Getenv("TOKENS_UPDATE_SCREENSHOTS") == "1" {
		writeFile(s.t, filepath.Join("..", "..", "docs", "screenshots", docName), png)
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", path)
}

// events returns the rows of the history page shown, each as
// "time|what|by|details".
func (s *site) events() []string {
	s.t.Helper()
	return get(s, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#events tr.event")].map(tr =>
		[...tr.querySelectorAll("td")].map(td => td.textContent.trim()).join("|"))`))
}

// post sends a form-less POST to the admin screen, as a script would.
func (s *site) post(path string) {
	s.t.Helper()
	req, err := http.NewRequestWithContext(s.t.Context(), http.MethodPost, s.url+path, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	client := *s.client
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := client.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		s.t.Fatalf("POST %s: status %d, want 303", path, resp.StatusCode)
	}
}
