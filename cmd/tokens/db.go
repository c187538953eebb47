package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/user"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq"           // postgres:// URLs
	_ "github.com/mattn/go-sqlite3" // file paths and file: DSNs

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/store/sqlstore"
)

// sqliteParams are the README's: writers wait for each other instead of
// failing, readers run beside a writer, and deleted bytes are zeroed.
const sqliteParams = "_busy_timeout=10000&_journal_mode=WAL&_txlock=immediate&_secure_delete=on"

// placeholderBase stands in for a share base URL left unset, which only
// commands that print no link allow (NewManager requires one, S6). It never
// reaches any output, and RedeemLink is not a command.
const placeholderBase = "http://127.0.0.1/no-share-base-configured/"

// manager is the Manager with the database it runs on.
type manager struct {
	*tokens.Manager
	db    *sqlx.DB
	store *sqlstore.Store
}

func (m *manager) close() {
	m.store.Close()
	m.db.Close()
}

// open connects to c.dsn and builds the Manager. It does not migrate:
// only the migrate command changes the schema.
func (c *cli) open(cmd *command) (*manager, error) {
	driver, dsn, err := driverDSN(c.dsn)
	if err != nil {
		return nil, err
	}
	if driver == "sqlite3" && !strings.HasPrefix(c.dsn, "file:") && cmd.name != "migrate" {
		// go-sqlite3 would make an empty file and fail on a missing table.
		if _, err := os.Stat(c.dsn); errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("tokens: no database at %s: run \"tokens migrate\" to create it", c.dsn)
		}
	}
	db, err := sqlx.Open(driver, dsn)
	if err != nil {
		return nil, fmt.Errorf("tokens: open database: %w", err)
	}
	store, err := sqlstore.New(db)
	if err != nil {
		db.Close()
		return nil, err
	}
	base := c.shareBase
	if base == "" {
		base = placeholderBase // configure made sure that cmd prints no link
	}
	opts := []tokens.Option{tokens.WithShareBaseURL(base)}
	if c.clock != nil {
		opts = append(opts, tokens.WithClock(c.clock))
	}
	if c.alertAfter != 0 {
		opts = append(opts, tokens.WithAlertAfter(c.alertAfter))
	}
	if c.linkTTL != 0 {
		opts = append(opts, tokens.WithLinkTTL(c.linkTTL))
	}
	if c.secret != nil {
		opts = append(opts, tokens.WithSealingSecret(c.secret))
	}
	m, err := tokens.NewManager(store, opts...)
	if err != nil {
		store.Close()
		db.Close()
		if errors.Is(err, tokens.ErrInvalidOption) {
			return nil, usagef("%v", err)
		}
		return nil, err
	}
	return &manager{Manager: m, db: db, store: store}, nil
}

// driverDSN picks the driver for a -db value: a postgres:// or
// postgresql:// URL is PostgreSQL, a file: DSN SQLite as given, anything
// else an SQLite file path, to which the README's parameters are added.
func driverDSN(dsn string) (driver, full string, err error) {
	scheme, _, _ := strings.Cut(dsn, "://")
	switch strings.ToLower(scheme) {
	case "postgres", "postgresql":
		// Checked here so that no driver error can repeat the URL,
		// which may hold a password.
		if _, err := url.Parse(dsn); err != nil {
			return "", "", usagef("-db is not a valid PostgreSQL URL")
		}
		return "postgres", dsn, nil
	}
	if strings.HasPrefix(dsn, "file:") {
		return "sqlite3", dsn, nil
	}
	if strings.Contains(dsn, "://") {
		return "", "", usagef("-db must be an SQLite file path, a file: DSN or a postgres:// URL")
	}
	if strings.ContainsAny(dsn, "?#") {
		return "", "", usagef("-db: an SQLite path with ? or # must be given as a file: DSN")
	}
	return "sqlite3", "file:" + dsn + "?" + sqliteParams, nil
}

// redactDSN removes the password of a PostgreSQL URL from msg, in case a
// driver error repeats it.
func redactDSN(msg, dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.User == nil {
		return msg
	}
	if pw, ok := u.User.Password(); ok && pw != "" {
		msg = strings.ReplaceAll(msg, pw, "xxxxx")
		if esc := url.QueryEscape(pw); esc != pw {
			msg = strings.ReplaceAll(msg, esc, "xxxxx")
		}
	}
	return msg
}

// sealingSecret decodes TOKENS_SEALING_SECRET, if set. The CLI only seals
// (create, renew), so the current secret is all it needs.
func sealingSecret(getenv func(string) string) ([]byte, error) {
	encoded := strings.TrimSpace(getenv("TOKENS_SEALING_SECRET"))
	if encoded == "" {
		return nil, nil
	}
	secret, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		return nil, usagef("TOKENS_SEALING_SECRET is not base64 (make one with: openssl rand -base64 32)")
	}
	if len(secret) < tokens.MinSealingSecretLen {
		return nil, usagef("TOKENS_SEALING_SECRET is shorter than %d bytes", tokens.MinSealingSecretLen)
	}
	return secret, nil
}

func defaultActor(getenv func(string) string) string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	if name := getenv("USER"); name != "" {
		return name
	}
	return fmt.Sprintf("uid:%d", os.Getuid())
}

// validText reports whether s is UTF-8 without control characters (Cc) or
// bidirectional controls, the characters S9 keeps out of names.
func validText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.Is(unicode.Cc, r) || (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069) {
			return false
		}
	}
	return true
}
