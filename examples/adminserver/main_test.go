package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/jmoiron/sqlx"

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/store/memstore"
	"github.com/keyrenew/tokens/store/sqlstore"
	"github.com/keyrenew/tokens/tokenhttp"
)

// server is the admin server on a loopback port, without a browser.
type server struct {
	*httptest.Server
	host string // such as 127.0.0.1:40123
	db   *sqlx.DB
	clk  *clock.Mock
}

func newTestServer(t *testing.T) *server {
	t.Helper()
	return newTestServerWith(t, config{account: "acme"})
}

// newTestServerWith starts a server with cfg.
func newTestServerWith(t *testing.T, cfg config) *server {
	t.Helper()
	db, err := sqlx.Open("sqlite3", "file:"+filepath.Join(t.TempDir(), "tokens.db")+"?_busy_timeout=10000&_journal_mode=WAL&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	clk := clock.NewMock()
	clk.Set(start)
	srv := httptest.NewUnstartedServer(nil)
	handler, err := newServer(t.Context(), db, "http://"+srv.Listener.Addr().String(), cfg, clk)
	if err != nil {
		srv.Close()
		t.Fatalf("newServer: %v", err)
	}
	srv.Config.Handler = handler
	srv.Start()
	t.Cleanup(srv.Close)
	return &server{Server: srv, host: srv.Listener.Addr().String(), db: db, clk: clk}
}

// manager returns a Manager of the server's database and clock, as
// another process sharing them would have, with opts.
func (s *server) manager(t *testing.T, opts ...tokens.Option) *tokens.Manager {
	t.Helper()
	return sharedManager(t, s.db, s.clk, s.URL, opts...)
}

// sharedManager returns a Manager of db and clk for the server at origin,
// as another process sharing them would have, with opts.
func sharedManager(t *testing.T, db *sqlx.DB, clk tokens.Clock, origin string, opts ...tokens.Option) *tokens.Manager {
	t.Helper()
	store, err := sqlstore.New(db)
	if err != nil {
		t.Fatal(err)
	}
	m, err := tokens.NewManager(store, append([]tokens.Option{
		tokens.WithClock(clk), tokens.WithShareBaseURL(origin + "/credentials/"),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// do sends a request for path (sent as is, not cleaned) with the Host
// header host, follows no redirect, and returns the response and its body.
func (s *server) do(t *testing.T, method, host, path string, form url.Values) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(t.Context(), method, s.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
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

var linkURL = regexp.MustCompile(`<input id="link-url"[^>]* value="([^"]+)"`)

// createKey generates a key on the admin screen and returns its share
// link.
func (s *server) createKey(t *testing.T, name string) string {
	t.Helper()
	res, body := s.do(t, http.MethodPost, s.host, "/keys", url.Values{"name": {name}})
	m := linkURL.FindStringSubmatch(body)
	if res.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("POST /keys: status %d, no link", res.StatusCode)
	}
	return m[1]
}

// TestOnlyServedHosts shows that the admin server answers under its own
// address and the localhost form of it, and refuses any other Host (DNS
// rebinding) before it changes anything.
func TestOnlyServedHosts(t *testing.T) {
	s := newTestServer(t)
	_, port, _ := strings.Cut(s.host, ":")

	for _, host := range []string{s.host, "localhost:" + port, "LocalHost:" + port} {
		if res, _ := s.do(t, http.MethodGet, host, "/", nil); res.StatusCode != http.StatusOK {
			t.Errorf("GET / with Host %s: status %d, want 200", host, res.StatusCode)
		}
	}
	link := s.createKey(t, "erp-sync")
	linkPath := strings.TrimPrefix(link, s.URL)

	for _, host := range []string{
		"attacker.test:" + port,
		"attacker.test",
		"127.0.0.1",
		"localhost",
		"127.0.0.2:" + port,
		"[::1]:" + port,
		"localhost.:" + port,
		"localhost:" + port + "0",
	} {
		for _, req := range []struct{ method, path string }{
			{http.MethodGet, "/"},
			{http.MethodPost, "/keys"},
			{http.MethodGet, "/api/whoami"},
			{http.MethodGet, "/static/admin.css"},
			{http.MethodGet, linkPath},
			{http.MethodPost, linkPath},
		} {
			res, body := s.do(t, req.method, host, req.path, url.Values{"name": {"attacker"}})
			if res.StatusCode != http.StatusMisdirectedRequest {
				t.Errorf("%s %s with Host %q: status %d, want 421", req.method, req.path, host, res.StatusCode)
			}
			if res.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("%s %s with Host %q: Cache-Control %q, want no-store", req.method, req.path, host, res.Header.Get("Cache-Control"))
			}
			if strings.Contains(body, linkPath) {
				t.Errorf("%s %s with Host %q: the answer holds the link", req.method, req.path, host)
			}
		}
	}

	_, body := s.do(t, http.MethodGet, s.host, "/", nil)
	if n := strings.Count(body, `class="key-row`); n != 1 {
		t.Errorf("the admin screen lists %d keys, want the one made under the right Host", n)
	}
	if res, _ := s.do(t, http.MethodGet, s.host, linkPath, nil); res.StatusCode != http.StatusOK {
		t.Errorf("the link after the refused requests: status %d, want 200 (pending)", res.StatusCode)
	}
	// The link pages answer only the share base URL's own host.
	if res, _ := s.do(t, http.MethodGet, "localhost:"+port, linkPath, nil); res.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("the link under localhost: status %d, want 421", res.StatusCode)
	}
}

// TestUncleanLinkPaths is issue 7 item 6 on the admin server: unclean
// forms of a link's path get the link pages' not-found page, with their
// headers, instead of ServeMux's redirect, which named the link ID.
func TestUncleanLinkPaths(t *testing.T) {
	s := newTestServer(t)
	link := s.createKey(t, "erp-sync")
	id := link[strings.LastIndex(link, "/")+1:]

	for _, path := range []string{
		"//credentials/" + id,
		"/credentials/./" + id,
		"/credentials/x/../" + id,
		"/credentials/" + id,
	} {
		res, body := s.do(t, http.MethodGet, s.host, path, nil)
		clean := path == "/credentials/"+id
		switch {
		case clean && res.StatusCode != http.StatusOK:
			t.Errorf("GET %s: status %d, want 200", path, res.StatusCode)
		case !clean && res.StatusCode != http.StatusNotFound:
			t.Errorf("GET %s: status %d, want 404", path, res.StatusCode)
		}
		for name, want := range map[string]string{
			"Cache-Control":           "no-store",
			"Referrer-Policy":         "no-referrer",
			"Content-Security-Policy": tokenhttp.ContentSecurityPolicy,
		} {
			if got := res.Header.Get(name); got != want {
				t.Errorf("GET %s: %s %q, want %q", path, name, got, want)
			}
		}
		for name, values := range res.Header {
			for _, v := range values {
				if strings.Contains(v, id) {
					t.Errorf("GET %s: header %s holds the link ID", path, name)
				}
			}
		}
		if !clean && strings.Contains(body, id) {
			t.Errorf("GET %s: the page holds the link ID", path)
		}
	}
}

// TestPurgeExpired shows that the examples' purge job wipes the sealed
// token of an expired link at once and at every tick, and stops with its
// context.
func TestPurgeExpired(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewMock()
	store := memstore.New()
	m, err := tokens.NewManager(store, tokens.WithClock(clk), tokens.WithShareBaseURL("http://127.0.0.1:8080/credentials/"))
	if err != nil {
		t.Fatal(err)
	}
	sealed := func(keyID string) bool {
		t.Helper()
		rec, err := store.Key(ctx, keyID)
		if err != nil {
			t.Fatal(err)
		}
		return rec.Link.Sealed != nil
	}
	expiredLink := func() string {
		t.Helper()
		key, _, err := m.CreateKey(ctx, tokens.KeySpec{Name: "never-opened"})
		if err != nil {
			t.Fatal(err)
		}
		clk.Add(tokens.DefaultLinkTTL)
		if !sealed(key.ID) {
			t.Fatal("an expired link lost its sealed token before any purge")
		}
		return key.ID
	}

	first := expiredLink()
	jobCtx, stop := context.WithCancel(ctx)
	ticks := make(chan time.Time)
	purged := make(chan struct{}) // unbuffered: a receive means a purge is over
	done := make(chan struct{})
	go func() {
		defer close(done)
		purgeExpired(jobCtx, m, ticks, func(context.Context) { purged <- struct{}{} })
	}()
	<-purged // the purge at start
	if sealed(first) {
		t.Error("the job did not purge at start")
	}
	// The job now waits for a tick: nothing purges the next link before it.
	second := expiredLink()
	ticks <- time.Time{}
	<-purged
	if sealed(second) {
		t.Error("the job did not purge at a tick")
	}
	stop()
	<-done
}

func TestSealingSecretFile(t *testing.T) {
	t.Setenv("TOKENS_SEALING_SECRET", "")
	path := filepath.Join(t.TempDir(), "admin.secret")
	first, err := sealingSecret(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 32 {
		t.Fatalf("made a secret of %d bytes, want 32", len(first))
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("secret file mode %v, want 0600", info.Mode().Perm())
	}
	again, err := sealingSecret(path)
	if err != nil || !bytes.Equal(first, again) {
		t.Fatalf("the secret was not reused: %v", err)
	}
	t.Setenv("TOKENS_SEALING_SECRET", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 32)))
	fromEnv, err := sealingSecret(path)
	if err != nil || !bytes.Equal(fromEnv, bytes.Repeat([]byte{9}, 32)) {
		t.Fatalf("TOKENS_SEALING_SECRET was not used: %v", err)
	}
	t.Setenv("TOKENS_SEALING_SECRET", "not base64!")
	if _, err := sealingSecret(path); err == nil {
		t.Error("a secret that is not base64 was accepted")
	}
}

// TestDeletedBefore checks the date the revoked-token warning names: when
// the latest token deleted before the use stopped verifying, by each way a
// token is deleted (R16).
func TestDeletedBefore(t *testing.T) {
	at := func(h int) time.Time { return start.Add(time.Duration(h) * time.Hour) }
	created := tokens.Event{Type: tokens.EventKeyCreated, At: at(0)}
	redeemed := func(h int) tokens.Event { return tokens.Event{Type: tokens.EventLinkRedeemed, At: at(h)} }
	renewed := func(h int, p tokens.OldTokenPolicy, ttl time.Duration) tokens.Event {
		return tokens.Event{Type: tokens.EventTokenRenewed, At: at(h), Policy: p, OldTokenTTL: ttl}
	}
	expirySet := func(h int, ttl time.Duration) tokens.Event {
		return tokens.Event{Type: tokens.EventOldTokenExpirySet, At: at(h), OldTokenTTL: ttl}
	}
	kept := []tokens.Event{created, redeemed(1), renewed(2, tokens.DeleteLater, 0)}
	for _, c := range []struct {
		name   string
		events []tokens.Event
		used   time.Time
		want   time.Time
	}{
		{"never deleted", []tokens.Event{created, redeemed(1), renewed(2, tokens.DeleteLater, 0)}, at(9), time.Time{}},
		{"DeleteOld", []tokens.Event{created, redeemed(1), renewed(2, tokens.DeleteLater, 0), {Type: tokens.EventOldTokenDeleted, At: at(3)}}, at(9), at(3)},
		{"DeleteNow", []tokens.Event{created, redeemed(1), renewed(2, tokens.DeleteNow, 0)}, at(9), at(2)},
		{"unseen token discarded (R4)", []tokens.Event{created, {Type: tokens.EventLinkRevoked, At: at(1)}, renewed(2, tokens.DeleteLater, 0)}, at(9), at(2)},
		{"Undo deletes the new token", []tokens.Event{created, redeemed(1), renewed(2, tokens.DeleteLater, 0), {Type: tokens.EventRenewalUndone, At: at(4)}}, at(9), at(4)},
		{"scheduled end (R14)", []tokens.Event{created, redeemed(1), renewed(2, tokens.DeleteLater, 3*time.Hour)}, at(9), at(5)},
		{"scheduled end not reached", []tokens.Event{created, redeemed(1), renewed(2, tokens.DeleteLater, 24*time.Hour)}, at(9), time.Time{}},
		{"scheduled end, then a renewal", []tokens.Event{created, redeemed(1), renewed(2, tokens.DeleteLater, time.Hour), redeemed(4), renewed(5, tokens.DeleteLater, 0)}, at(9), at(3)},
		{"deleted before the scheduled end", []tokens.Event{created, redeemed(1), renewed(2, tokens.DeleteLater, 24*time.Hour), {Type: tokens.EventOldTokenDeleted, At: at(3)}}, at(48), at(3)},
		{"expiry set by ExpireOld (R14)", append(kept, expirySet(3, 24*time.Hour)), at(30), at(27)},
		{"expiry set by ExpireOld, not reached", append(kept, expirySet(3, 24*time.Hour)), at(26), time.Time{}},
		{"ExpireOld replaces the end", append(kept, expirySet(3, 24*time.Hour), expirySet(4, time.Hour)), at(9), at(5)},
		{"ExpireOld replaces the renewal's end", []tokens.Event{created, redeemed(1), renewed(2, tokens.DeleteLater, time.Hour), expirySet(2, 7*24*time.Hour)}, at(9), time.Time{}},
		{"DeleteOld before the end ExpireOld set", append(kept, expirySet(3, 24*time.Hour), tokens.Event{Type: tokens.EventOldTokenDeleted, At: at(4)}), at(48), at(4)},
		{"Undo before the end ExpireOld set", append(kept, expirySet(3, 24*time.Hour), tokens.Event{Type: tokens.EventRenewalUndone, At: at(4)}), at(48), at(4)},
		{"the latest deletion before the use", []tokens.Event{created, redeemed(1), renewed(2, tokens.DeleteNow, 0), redeemed(3), renewed(10, tokens.DeleteNow, 0)}, at(9), at(2)},
	} {
		if got := deletedBefore(c.events, c.used); !got.Equal(c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestValidActor(t *testing.T) {
	for actor, want := range map[string]bool{
		"admin": true, "Ana María": true, "": false, "  ": false,
		"ops\nadmin": false, "admin\u202e": false, strings.Repeat("a", 201): false,
	} {
		if got := validActor(actor); got != want {
			t.Errorf("validActor(%q) = %t, want %t", actor, got, want)
		}
	}
}
