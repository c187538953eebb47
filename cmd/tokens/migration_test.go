package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/internal/testenv"
	"github.com/keyrenew/tokens/store/sqlstore"
)

// legacyKeys is how many keys the hand-made legacy table holds.
const legacyKeys = 10_000

// legacyTable is a keys table as teams write it by hand before they adopt
// a library: half the rows keep the token's SHA-256 in hex, the other
// half (an older scheme) the token itself.
const legacyTable = `CREATE TABLE legacy_api_keys (
	id           VARCHAR(64) PRIMARY KEY,
	customer     VARCHAR(200) NOT NULL,
	label        VARCHAR(200) NOT NULL,
	token        VARCHAR(512),
	token_sha256 CHAR(64),
	created_at   TIMESTAMP NOT NULL
)`

// exportQuery turns the legacy table into the import format, per dialect:
// the README's migration guide runs the same query with sqlite3 -csv or
// psql's \copy.
var exportQuery = map[string]string{
	"sqlite3": `SELECT id, customer AS account, label AS name,
		COALESCE('sha256:' || token_sha256, token) AS token,
		strftime('%Y-%m-%dT%H:%M:%SZ', created_at) AS created_at
		FROM legacy_api_keys ORDER BY id`,
	"postgres": `SELECT id, customer AS account, label AS name,
		COALESCE('sha256:' || token_sha256, token) AS token,
		to_char(created_at, 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS created_at
		FROM legacy_api_keys ORDER BY id`,
}

// TestMigrationFromLegacyTable is issue 15's migration: a legacy table of
// 10,000 keys, exported with a query and imported through the command;
// every legacy token then verifies by VerifyToken, and a second run of the
// same import changes nothing and says so.
func TestMigrationFromLegacyTable(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "app.db")
		testMigration(t, "sqlite3", "file:"+path+"?"+sqliteParams, path)
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		// The test's writes need no durability: without a flush at
		// each commit, 10,000 imports take seconds, not a minute. lib/pq
		// passes the parameter on to the server.
		dsn := testenv.PostgresSchema(t) + "&synchronous_commit=off" // skips locally, fails in CI, when unset
		testMigration(t, "postgres", dsn, dsn)
	})
}

func testMigration(t *testing.T, driver, dsn, cliDB string) {
	ctx := t.Context()
	db, err := sqlx.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	legacy := fillLegacyTable(t, db, legacyKeys)

	exported := filepath.Join(t.TempDir(), "keys.csv")
	exportLegacyTable(t, db, exportQuery[driver], exported)

	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	run := func(args ...string) (code int, stdout, stderr string) {
		t.Helper()
		var out, errOut bytes.Buffer
		clk := fixedClock(now)
		c := &cli{
			stdin: strings.NewReader(""), stdout: &out, stderr: &errOut,
			getenv:   func(string) string { return "" },
			terminal: func() bool { return false },
			clock:    &clk,
		}
		code = c.run(ctx, append([]string{"-db", cliDB, "-actor", "migration"}, args...))
		return code, out.String(), errOut.String()
	}
	if code, _, stderr := run("migrate"); code != exitOK {
		t.Fatalf("migrate: exit status %d: %s", code, stderr)
	}

	start := time.Now()
	code, stdout, stderr := run("import", "-parallel", "8", "-file", exported)
	t.Logf("first import: %v", time.Since(start))
	if code != exitOK || stdout != fmt.Sprintf("imported %d keys; 0 already imported, 0 failed\n", legacyKeys) {
		t.Fatalf("first import: exit status %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	if lines := strings.Count(stderr, "\n"); lines != legacyKeys/progressEvery ||
		!strings.Contains(stderr, "tokens import: 1000 lines: ") ||
		!strings.Contains(stderr, fmt.Sprintf("tokens import: %d lines: %d imported, 0 already imported, 0 failed\n", legacyKeys, legacyKeys)) {
		t.Errorf("first import: want a progress line every %d lines on stderr, have:\n%s", progressEvery, stderr)
	}
	for _, tok := range legacy {
		if strings.Contains(stderr+stdout, tok.token) {
			t.Fatal("the import printed a token")
		}
	}

	store, err := sqlstore.New(db)
	if err != nil {
		t.Fatal(err)
	}
	clk := fixedClock(now)
	m, err := tokens.NewManager(store, tokens.WithClock(&clk), tokens.WithShareBaseURL("https://share.example.com/credentials/"))
	if err != nil {
		t.Fatal(err)
	}
	events, err := m.Events(ctx, tokens.EventQuery{Limit: tokens.MaxEventPage})
	if err != nil || len(events) == 0 {
		t.Fatalf("events: %v", err)
	}
	start = time.Now()
	verifyLegacyTokens(t, m, legacy)
	t.Logf("VerifyToken of every legacy token: %v", time.Since(start))

	// The same file again.
	start = time.Now()
	code, stdout, stderr = run("import", "-file", exported)
	t.Logf("second import: %v", time.Since(start))
	if code != exitOK || stdout != fmt.Sprintf("nothing changed: all %d keys were already imported\n", legacyKeys) {
		t.Fatalf("second import: exit status %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	if strings.Contains(stderr, "imported,") && !strings.Contains(stderr, " 0 imported,") {
		t.Errorf("second import: progress says something was imported:\n%s", stderr)
	}
	last := lastEvent(t, m)
	code, _, stderr = run("import", "-file", exported)
	if code != exitOK {
		t.Fatalf("third import: exit status %d: %s", code, stderr)
	}
	if after := lastEvent(t, m); after != last {
		t.Errorf("a repeated import wrote events: the last was %s, is %s", last, after)
	}
}

type legacyKey struct {
	id, account, name, token string
	hashed                   bool
	createdAt                time.Time
}

// fillLegacyTable makes the legacy table with n rows, in one transaction,
// and returns them with their tokens.
func fillLegacyTable(t *testing.T, db *sqlx.DB, n int) []legacyKey {
	t.Helper()
	db.MustExec(legacyTable)
	tx := db.MustBegin()
	insert, err := tx.Preparex(tx.Rebind(`INSERT INTO legacy_api_keys (id, customer, label, token, token_sha256, created_at) VALUES (?, ?, ?, ?, ?, ?)`))
	if err != nil {
		t.Fatal(err)
	}
	keys := make([]legacyKey, n)
	base := time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range keys {
		k := legacyKey{
			id:        fmt.Sprintf("legacy_%05d", i),
			account:   fmt.Sprintf("customer-%d", i%37),
			name:      fmt.Sprintf("integration %d", i),
			token:     fmt.Sprintf("sk_live_%032x", sha256.Sum256([]byte(fmt.Sprint("legacy", i)))),
			hashed:    i%2 == 0,
			createdAt: base.Add(time.Duration(i) * time.Hour),
		}
		var token, digest any
		if k.hashed {
			sum := sha256.Sum256([]byte(k.token))
			digest = hex.EncodeToString(sum[:])
		} else {
			token = k.token
		}
		if _, err := insert.Exec(k.id, k.account, k.name, token, digest, k.createdAt); err != nil {
			t.Fatal(err)
		}
		keys[i] = k
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	return keys
}

// exportLegacyTable writes the rows of query, with a header, as CSV.
func exportLegacyTable(t *testing.T, db *sqlx.DB, query, path string) {
	t.Helper()
	rows, err := db.Query(query)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := csv.NewWriter(f)
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	_ = w.Write(cols)
	rec := make([]string, len(cols))
	ptrs := make([]any, len(cols))
	for i := range rec {
		ptrs[i] = &rec[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		_ = w.Write(rec)
	}
	w.Flush()
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if err := w.Error(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// verifyLegacyTokens checks that every legacy token verifies by
// VerifyToken as its key, with its creation time, a few goroutines at a
// time; the failures are collected and reported on the test goroutine.
func verifyLegacyTokens(t *testing.T, m *tokens.Manager, legacy []legacyKey) {
	t.Helper()
	ctx := t.Context()
	const workers = 8
	failures := make(chan string, len(legacy))
	next := make(chan legacyKey)
	done := make(chan struct{})
	for range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			for k := range next {
				key, err := m.VerifyToken(ctx, k.token)
				switch {
				case err != nil:
					failures <- fmt.Sprintf("%s (hashed %v): %v", k.id, k.hashed, err)
				case key.ID != k.id || key.Account != k.account || key.Name != k.name || !key.Token.CreatedAt.Equal(k.createdAt):
					failures <- fmt.Sprintf("%s: verified as %s %q %q created %v", k.id, key.ID, key.Account, key.Name, key.Token.CreatedAt)
				}
			}
		}()
	}
	for _, k := range legacy {
		next <- k
	}
	close(next)
	for range workers {
		<-done
	}
	close(failures)
	n := 0
	for f := range failures {
		if n++; n <= 10 {
			t.Error(f)
		}
	}
	if n > 0 {
		t.Fatalf("%d of %d legacy tokens do not verify", n, len(legacy))
	}
}

func lastEvent(t *testing.T, m *tokens.Manager) string {
	t.Helper()
	// Not the cursor: on PostgreSQL a position names the reader's snapshot
	// too, which moves as the cluster's other transactions commit.
	var cursor, last string
	n := 0
	for {
		page, err := m.Events(t.Context(), tokens.EventQuery{After: cursor, Limit: tokens.MaxEventPage})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			return fmt.Sprintf("%d events, the last %s", n, last)
		}
		n += len(page)
		e := page[len(page)-1]
		cursor, last = e.Cursor, fmt.Sprintf("%s of %s at %s", e.Type, e.KeyID, e.At.Format(time.RFC3339Nano))
	}
}
