// Command quickstart walks through an operator's renewal of an API key's
// token, end to end, and prints each step: create a key, hand its token
// over through a single-access link, renew without breaking the
// integration, delete the old token, and undo a renewal made by mistake.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq"
	_ "modernc.org/sqlite" // pure Go: the first build needs no C compiler

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/store/sqlstore"
)

const shareBase = "https://share.example.com/credentials/"

// storeConfig says where the keys live: an SQLite file unless a
// PostgreSQL URL is given.
type storeConfig struct {
	sqliteFile  string
	postgresURL string
}

func main() {
	var cfg storeConfig
	flag.StringVar(&cfg.sqliteFile, "db", "quickstart.db", "SQLite database file")
	flag.StringVar(&cfg.postgresURL, "postgres", os.Getenv("TOKENS_POSTGRES"),
		"PostgreSQL URL, such as postgres://postgres@127.0.0.1:5432/test?sslmode=disable; overrides -db (default $TOKENS_POSTGRES)")
	flag.Parse()
	if err := run(context.Background(), os.Stdout, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

// openStore opens the database, creates or upgrades the schema, and
// returns the store with a function that closes the database.
func openStore(ctx context.Context, cfg storeConfig) (tokens.Store, func(), error) {
	var db *sqlx.DB
	var err error
	if cfg.postgresURL != "" {
		db, err = sqlx.Open("postgres", cfg.postgresURL)
	} else {
		db, err = sqlx.Open("sqlite", "file:"+cfg.sqliteFile+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate")
	}
	if err != nil {
		return nil, nil, err
	}
	store, err := sqlstore.New(db)
	if err == nil {
		err = store.Migrate(ctx)
	}
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return store, func() { db.Close() }, nil
}

func run(ctx context.Context, w io.Writer, cfg storeConfig) error {
	store, closeStore, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeStore()
	clk := &simClock{now: time.Now()}
	m, err := tokens.NewManager(store, tokens.WithClock(clk), tokens.WithShareBaseURL(shareBase))
	if err != nil {
		return err
	}
	d := &demo{ctx: ctx, w: w, m: m, clk: clk}

	where := "SQLite file " + filepath.Base(cfg.sqliteFile)
	if cfg.postgresURL != "" {
		where = "PostgreSQL"
	}
	d.say("Renewing an API key's token, step by step, on a simulated clock; keys in %s", where)
	d.say("1. Create a key for account %q named %q", "acme", "erp-sync")
	key, link, err := m.CreateKey(ctx, tokens.KeySpec{Account: "acme", Name: "erp-sync"})
	if err != nil {
		return err
	}
	d.keyID = key.ID
	d.say("   key ID %s (public)", key.ID)
	d.sayLink(link)

	clk.advance(10 * time.Minute)
	d.say("2. 10m later the integration's owner opens the link")
	first, err := m.RedeemLink(ctx, link.URL)
	if err != nil {
		return err
	}
	d.say("   it reveals token %s", mask(first.Token))
	_, err = m.RedeemLink(ctx, link.URL)
	d.say("   opening it again: %v", err)
	d.verify("the integration sends token", first.Token)
	clk.advance(95 * 24 * time.Hour)
	d.verify("95d later it still sends", first.Token)
	clk.advance(30 * time.Minute)
	if err := d.describe(); err != nil {
		return err
	}

	d.say("3. Renew, keeping the old token until the integration has switched")
	link, err = m.Renew(ctx, key.ID, tokens.RenewOptions{OldToken: tokens.DeleteLater})
	if err != nil {
		return err
	}
	d.sayLink(link)
	clk.advance(time.Hour)
	second, err := m.RedeemLink(ctx, link.URL)
	if err != nil {
		return err
	}
	d.say("   1h later the owner opens it: token %s", mask(second.Token))
	d.verify("the integration still sends the old token", first.Token)
	clk.advance(2 * time.Hour)
	d.verify("2h later, redeployed, it sends the new token", second.Token)
	clk.advance(time.Hour)
	if err := d.describe(); err != nil {
		return err
	}

	clk.advance(24 * time.Hour)
	d.say("4. A day later the old token is still unused: delete it")
	if err := m.DeleteOld(ctx, key.ID); err != nil {
		return err
	}
	d.verify("old token", first.Token)
	d.verify("current token", second.Token)

	clk.advance(24 * time.Hour)
	d.say("5. A day later someone renews by mistake, then undoes it")
	link, err = m.Renew(ctx, key.ID, tokens.RenewOptions{})
	if err != nil {
		return err
	}
	third, err := m.RedeemLink(ctx, link.URL)
	if err != nil {
		return err
	}
	d.verify("new token", third.Token)
	if err := m.Undo(ctx, key.ID); err != nil {
		return err
	}
	d.say("   undo: the previous token is current again, with its own times")
	if err := d.describe(); err != nil {
		return err
	}
	d.verify("new token", third.Token)
	d.verify("previous token", second.Token)
	return nil
}

// demo prints the steps of the walk-through.
type demo struct {
	ctx   context.Context
	w     io.Writer
	m     *tokens.Manager
	clk   *simClock
	keyID string
}

func (d *demo) say(format string, args ...any) {
	fmt.Fprintf(d.w, format+"\n", args...)
}

// sayLink prints a share link masked: until it is opened, its URL is as
// secret as the token it reveals. A real program would send link.URL to
// the integration's owner by mail or ticket; here it is opened at once.
func (d *demo) sayLink(link *tokens.ShareLink) {
	id := strings.TrimPrefix(link.URL, shareBase)
	d.say("   share link %s%s, single use, expires in %s", shareBase, mask(id), age(link.ExpiresAt.Sub(d.clk.Now())))
}

func (d *demo) verify(what, token string) {
	result := "ok"
	if _, err := d.m.Verify(d.ctx, d.keyID, token); err != nil {
		result = err.Error()
	}
	d.say("   %s %s: %s", what, mask(token), result)
}

// describe prints what the Manager knows of a key's tokens: never the
// tokens themselves, only their ages and the renewal alert.
func (d *demo) describe() error {
	k, err := d.m.Key(d.ctx, d.keyID)
	if err != nil {
		return err
	}
	now := d.clk.Now()
	d.say("   key %s: renewal alert %s", k.Name, k.Alert)
	d.say("     current token %s", ages(k.Token, now))
	if k.OldToken != nil {
		d.say("     old token     %s", ages(*k.OldToken, now))
	}
	return nil
}

func ages(t tokens.TokenInfo, now time.Time) string {
	used := "never used"
	if !t.LastUsedAt.IsZero() {
		used = "last used " + ago(now.Sub(t.LastUsedAt))
	}
	return "created " + ago(now.Sub(t.CreatedAt)) + ", " + used
}

// mask shows enough of a secret to tell it apart from another, like
// "tok_AbCd…", and never the whole of it: terminal output ends up in
// scrollback, CI logs and screen shares, and a printed token is a leaked
// one. Four base62 characters are 24 of its 256 bits.
func mask(secret string) string {
	prefix, body, found := strings.Cut(secret, "_")
	if !found {
		prefix, body = "", secret
	} else {
		prefix += "_"
	}
	if len(body) > 4 {
		body = body[:4]
	}
	return prefix + body + "…"
}

func ago(d time.Duration) string {
	if d < time.Minute {
		return "just now"
	}
	return age(d) + " ago"
}

// age prints a duration to the minute, the way people say it: "10m",
// "1h30m", "95d".
func age(d time.Duration) string {
	d = d.Round(time.Minute)
	switch h, m := int(d.Hours()), int(d.Minutes())%60; {
	case h >= 48:
		return fmt.Sprintf("%dd", h/24)
	case h == 0:
		return fmt.Sprintf("%dm", m)
	case m == 0:
		return fmt.Sprintf("%dh", h)
	default:
		return fmt.Sprintf("%dh%dm", h, m)
	}
}

// simClock is a clock that the walk-through moves on by hand. A real
// program passes no clock, and the Manager reads the system time; this one
// starts at the system time but jumps days ahead between steps, so that a
// run that takes milliseconds shows tokens that are days old, last-used
// times that differ, and a renewal alert. tokens.WithClock accepts anything
// with a Now method.
type simClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *simClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *simClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
