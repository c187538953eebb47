package sqlstore_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/internal/testenv"
	"github.com/keyrenew/tokens/store/sqlstore"
)

// These tests run Managers over the SQL store the way a service runs them:
// several processes, each with its own pool and Manager, sharing one
// database.

const (
	shareBase = "https://share.example.com/credentials/"
	// instances is how many processes share a database; racers how many
	// goroutines race, spread over them.
	instances = 3
	racers    = 24
	// interruptWait bounds every wait for another goroutine or backend, so
	// that a broken guarantee fails the test instead of hanging it.
	interruptWait = 30 * time.Second
)

// instance is one process: a pool of its own, a Store and a Manager.
type instance struct {
	db *sqlx.DB
	st *sqlstore.Store
	m  *tokens.Manager
}

// cluster is several instances on one migrated database, reading one mock
// clock.
type cluster struct {
	driver string
	dsn    string
	clk    *clock.Mock
	inst   []instance
}

func newCluster(t *testing.T, b backend, n int) *cluster {
	t.Helper()
	c := &cluster{driver: b.Driver, dsn: b.NewDSN(t), clk: clock.NewMock()}
	c.clk.Set(time.Date(2026, 3, 2, 9, 30, 0, 0, time.UTC))
	for i := range n {
		db := open(t, b.Driver, c.dsn)
		st := newStore(t, db)
		if i == 0 {
			require.NoError(t, st.Migrate(t.Context()))
		}
		m, err := tokens.NewManager(st, tokens.WithClock(c.clk), tokens.WithShareBaseURL(shareBase))
		require.NoError(t, err)
		c.inst = append(c.inst, instance{db: db, st: st, m: m})
	}
	return c
}

// manager returns the Manager of racer i: racers are dealt to the
// instances in turn.
func (c *cluster) manager(i int) *tokens.Manager {
	return c.inst[i%len(c.inst)].m
}

func (c *cluster) sqlite() bool {
	return testenv.IsSQLite(c.driver)
}

type outcome[T any] struct {
	i   int
	v   T
	err error
}

// race calls fn(0) to fn(n-1) on n goroutines released at once and returns
// their results by index, collected over a channel: only the test
// goroutine asserts.
func race[T any](n int, fn func(i int) (T, error)) ([]T, []error) {
	start := make(chan struct{})
	results := make(chan outcome[T], n)
	for i := range n {
		go func() {
			<-start
			v, err := fn(i)
			results <- outcome[T]{i: i, v: v, err: err}
		}()
	}
	close(start)
	vals, errs := make([]T, n), make([]error, n)
	for range n {
		r := <-results
		vals[r.i], errs[r.i] = r.v, r.err
	}
	return vals, errs
}

// redeemedKey creates a key through m and redeems its link: a key that
// Renew accepts.
func redeemedKey(t *testing.T, m *tokens.Manager) *tokens.Credentials {
	t.Helper()
	_, link, err := m.CreateKey(t.Context(), tokens.KeySpec{Account: "acme", Name: "erp-sync"})
	require.NoError(t, err)
	creds, err := m.RedeemLink(t.Context(), link.URL)
	require.NoError(t, err)
	return creds
}

func requireVerifies(t *testing.T, m *tokens.Manager, creds *tokens.Credentials) {
	t.Helper()
	_, err := m.Verify(t.Context(), creds.KeyID, creds.Token)
	require.NoError(t, err)
}

func requireRejected(t *testing.T, m *tokens.Manager, creds *tokens.Credentials) {
	t.Helper()
	_, err := m.Verify(t.Context(), creds.KeyID, creds.Token)
	require.ErrorIs(t, err, tokens.ErrInvalidCredentials)
}

// tokenRows counts the stored tokens of key id, whichever verify.
func tokenRows(t *testing.T, db *sqlx.DB, id string) int {
	t.Helper()
	var n int
	require.NoError(t, db.GetContext(t.Context(), &n, db.Rebind(`SELECT
		CASE WHEN current_digest IS NULL THEN 0 ELSE 1 END + CASE WHEN old_digest IS NULL THEN 0 ELSE 1 END
		FROM tokens_keys WHERE id = ?`), id))
	return n
}

func TestCrossInstanceRedeemOnce(t *testing.T) {
	const rounds = 3
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			c := newCluster(t, b, instances)
			ctx := t.Context()
			for round := range rounds {
				key, link, err := c.inst[round%instances].m.CreateKey(ctx, tokens.KeySpec{Name: fmt.Sprintf("round %d", round)})
				require.NoError(t, err)

				creds, errs := race(racers, func(i int) (*tokens.Credentials, error) {
					return c.manager(i).RedeemLink(ctx, link.URL)
				})
				won := creds[testenv.RequireOneWinner(t, errs, testenv.Always(tokens.ErrLinkUsed))]

				require.Equal(t, key.ID, won.KeyID)
				for _, in := range c.inst {
					requireVerifies(t, in.m, won)
				}
				rec, err := c.inst[1].st.Key(ctx, key.ID)
				require.NoError(t, err)
				require.Nil(t, rec.Link.Sealed, "a redeemed link keeps no sealed token")
				require.False(t, rec.Link.RedeemedAt.IsZero(), "the link is marked redeemed")
				require.Equal(t, 1, tokenRows(t, c.inst[2].db, key.ID))
			}
		})
	}
}

func TestCrossInstanceRenewOnce(t *testing.T) {
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			c := newCluster(t, b, instances)
			ctx := t.Context()
			renewRace := func(id string, opts tokens.RenewOptions) *tokens.ShareLink {
				t.Helper()
				links, errs := race(racers, func(i int) (*tokens.ShareLink, error) {
					return c.manager(i).Renew(ctx, id, opts)
				})
				// A loser either loads the key after the winner's write
				// or fails its compare-and-swap and loads it again: either
				// way it finds the winner's link pending (R3), a check
				// that comes before the old token's (R5).
				return links[testenv.RequireOneWinner(t, errs, testenv.Always(tokens.ErrRenewalPending))]
			}

			t.Run("DeleteLater", func(t *testing.T) {
				first := redeemedKey(t, c.inst[0].m)
				link := renewRace(first.KeyID, tokens.RenewOptions{OldToken: tokens.DeleteLater})
				second, err := c.inst[1].m.RedeemLink(ctx, link.URL)
				require.NoError(t, err)

				for _, in := range c.inst {
					requireVerifies(t, in.m, first)
					requireVerifies(t, in.m, second)
				}
				require.Equal(t, 2, tokenRows(t, c.inst[2].db, first.KeyID), "only the winner's token was added")
				key, err := c.inst[2].m.Key(ctx, first.KeyID)
				require.NoError(t, err)
				require.NotNil(t, key.OldToken)
				_, err = c.inst[0].m.Renew(ctx, first.KeyID, tokens.RenewOptions{})
				require.ErrorIs(t, err, tokens.ErrOldTokenPending)
			})

			t.Run("DeleteNow", func(t *testing.T) {
				first := redeemedKey(t, c.inst[1].m)
				link := renewRace(first.KeyID, tokens.RenewOptions{OldToken: tokens.DeleteNow})
				second, err := c.inst[2].m.RedeemLink(ctx, link.URL)
				require.NoError(t, err)

				for _, in := range c.inst {
					requireVerifies(t, in.m, second)
					requireRejected(t, in.m, first)
				}
				require.Equal(t, 1, tokenRows(t, c.inst[0].db, first.KeyID))
				key, err := c.inst[0].m.Key(ctx, first.KeyID)
				require.NoError(t, err)
				require.Nil(t, key.OldToken)
			})

			t.Run("UnseenTokenAfterExpiry", func(t *testing.T) {
				key, expired, err := c.inst[2].m.CreateKey(ctx, tokens.KeySpec{Name: "never redeemed"})
				require.NoError(t, err)
				c.clk.Add(tokens.DefaultLinkTTL)
				link := renewRace(key.ID, tokens.RenewOptions{OldToken: tokens.DeleteLater})
				creds, err := c.inst[0].m.RedeemLink(ctx, link.URL)
				require.NoError(t, err)

				requireVerifies(t, c.inst[1].m, creds)
				// The token nobody saw was discarded, not kept as old (R4).
				require.Equal(t, 1, tokenRows(t, c.inst[1].db, key.ID))
				got, err := c.inst[1].m.Key(ctx, key.ID)
				require.NoError(t, err)
				require.Nil(t, got.OldToken)
				_, err = c.inst[1].m.RedeemLink(ctx, expired.URL)
				require.ErrorIs(t, err, tokens.ErrLinkNotFound)
			})
		})
	}
}

func TestCrossInstanceUndoOrDeleteOldOnce(t *testing.T) {
	const (
		undo      = "undo"
		deleteOld = "delete old"
	)
	variants := []struct {
		name string
		op   func(i int) string
	}{
		{"Undo", func(int) string { return undo }},
		{"DeleteOld", func(int) string { return deleteOld }},
		{"UndoAgainstDeleteOld", func(i int) string { return [2]string{undo, deleteOld}[i%2] }},
	}
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			c := newCluster(t, b, instances)
			ctx := t.Context()
			for _, v := range variants {
				t.Run(v.name, func(t *testing.T) {
					old := redeemedKey(t, c.inst[0].m)
					link, err := c.inst[1].m.Renew(ctx, old.KeyID, tokens.RenewOptions{})
					require.NoError(t, err)
					renewed, err := c.inst[2].m.RedeemLink(ctx, link.URL)
					require.NoError(t, err)

					_, errs := race(racers, func(i int) (struct{}, error) {
						m := c.manager(i)
						if v.op(i) == undo {
							return struct{}{}, m.Undo(ctx, old.KeyID)
						}
						return struct{}{}, m.DeleteOld(ctx, old.KeyID)
					})
					// Both need the old token and both remove it: whichever
					// writes first leaves the others nothing to do.
					winner := testenv.RequireOneWinner(t, errs, func(i int) error {
						if v.op(i) == undo {
							return tokens.ErrUndoUnavailable
						}
						return tokens.ErrNoOldToken
					})

					survivor, gone := renewed, old
					if v.op(winner) == undo {
						survivor, gone = old, renewed
					}
					for _, in := range c.inst {
						requireVerifies(t, in.m, survivor)
						requireRejected(t, in.m, gone)
					}
					require.Equal(t, 1, tokenRows(t, c.inst[0].db, old.KeyID))
					key, err := c.inst[1].m.Key(ctx, old.KeyID)
					require.NoError(t, err)
					require.Nil(t, key.OldToken)
					if v.op(winner) == undo {
						require.Equal(t, tokens.LinkNotFound, key.Link, "Undo revokes the renewal's link")
						_, err = c.inst[2].m.RedeemLink(ctx, link.URL)
						require.ErrorIs(t, err, tokens.ErrLinkNotFound)
					}
				})
			}
		})
	}
}

// secret is a token or link ID the test was given, with where it came from
// for failure messages, which never print a secret.
type secret struct {
	label string
	value string
}

// secretWindow is the shortest part of a secret a dump must not contain:
// any longer part contains one of these.
const secretWindow = 16

func TestDumpHoldsNoSecret(t *testing.T) {
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			c := newCluster(t, b, 1)
			in := c.inst[0]
			ctx := t.Context()
			var secrets []secret
			keep := func(label, value string) {
				secrets = append(secrets, secret{label: label, value: value})
			}
			keepLink := func(label string, link *tokens.ShareLink) string {
				id, ok := strings.CutPrefix(link.URL, shareBase)
				require.True(t, ok)
				keep(label+" link ID", id)
				return link.URL
			}
			create := func(name string) (string, string) {
				key, link, err := in.m.CreateKey(ctx, tokens.KeySpec{Account: "acme", Name: name})
				require.NoError(t, err)
				return key.ID, keepLink(name, link)
			}
			redeem := func(label, url string) *tokens.Credentials {
				creds, err := in.m.RedeemLink(ctx, url)
				require.NoError(t, err)
				keep(label+" token", creds.Token)
				requireVerifies(t, in.m, creds)
				return creds
			}
			renew := func(label, id string, policy tokens.OldTokenPolicy) string {
				link, err := in.m.Renew(ctx, id, tokens.RenewOptions{OldToken: policy})
				require.NoError(t, err)
				return keepLink(label, link)
			}

			// Links that expire unredeemed: one is renewed afterwards,
			// which discards its unseen token (R4); one keeps its sealed
			// token until PurgeExpired.
			expiredRenewed, _ := create("expired then renewed")
			expiredLeft, _ := create("expired")
			c.clk.Add(tokens.DefaultLinkTTL)
			pending := []string{renew("expired then renewed: renewal", expiredRenewed, tokens.DeleteLater)}

			_, url := create("redeemed")
			redeem("redeemed", url)

			id, url := create("renewed later")
			redeem("renewed later: first", url)
			redeem("renewed later: second", renew("renewed later", id, tokens.DeleteLater))

			id, url = create("renewed now")
			redeem("renewed now: first", url)
			redeem("renewed now: second", renew("renewed now", id, tokens.DeleteNow))

			id, url = create("undone after redemption")
			redeem("undone after redemption: first", url)
			redeem("undone after redemption: second", renew("undone after redemption", id, tokens.DeleteLater))
			require.NoError(t, in.m.Undo(ctx, id))

			id, url = create("undone while pending")
			redeem("undone while pending: first", url)
			renew("undone while pending", id, tokens.DeleteLater)
			require.NoError(t, in.m.Undo(ctx, id))

			id, url = create("deactivated")
			redeem("deactivated", url)
			require.NoError(t, in.m.Deactivate(ctx, id))

			id, url = create("deleted")
			redeem("deleted", url)
			require.NoError(t, in.m.DeleteKey(ctx, id))

			_, url = create("pending")
			pending = append(pending, url)

			id, url = create("renewal pending")
			redeem("renewal pending: first", url)
			pending = append(pending, renew("renewal pending", id, tokens.DeleteLater))

			withPending := dumpDatabase(t, in.db)
			var sealed int
			require.NoError(t, in.db.GetContext(ctx, &sealed,
				"SELECT count(*) FROM tokens_keys WHERE link_sealed IS NOT NULL"))
			require.Equal(t, len(pending)+1, sealed,
				"the pending links and the expired one hold their token sealed in the dump")
			var files map[string][]byte
			if c.sqlite() {
				files = sqliteFiles(t, c.dsn)
			}

			// The tokens of the pending links were in the database, sealed,
			// when it was dumped: redeem them to learn what to look for.
			for i, url := range pending {
				redeem(fmt.Sprintf("pending link %d", i), url)
			}
			requireNoSecret(t, withPending, secrets)
			for name, data := range files {
				requireNoSecretInFile(t, name, data, secrets)
			}

			purged, err := in.m.PurgeExpired(ctx)
			require.NoError(t, err)
			require.Equal(t, 1, purged)
			rec, err := in.st.Key(ctx, expiredLeft)
			require.NoError(t, err)
			require.Nil(t, rec.Link.Sealed, "PurgeExpired wipes an expired link's sealed token")

			requireNoSecret(t, dumpDatabase(t, in.db), secrets)
			if c.sqlite() {
				for name, data := range sqliteFiles(t, c.dsn) {
					requireNoSecretInFile(t, name, data, secrets)
				}
			}
			var redeemed, redeemedSealed int
			require.NoError(t, in.db.GetContext(ctx, &redeemed,
				"SELECT count(*) FROM tokens_keys WHERE link_redeemed_at IS NOT NULL"))
			require.NoError(t, in.db.GetContext(ctx, &redeemedSealed,
				"SELECT count(*) FROM tokens_keys WHERE link_redeemed_at IS NOT NULL AND link_sealed IS NOT NULL"))
			require.Equal(t, 7, redeemed)
			require.Zero(t, redeemedSealed, "a redeemed link keeps no sealed token")
			require.NoError(t, in.db.GetContext(ctx, &sealed,
				"SELECT count(*) FROM tokens_keys WHERE link_sealed IS NOT NULL"))
			require.Zero(t, sealed, "no link is pending any more")
		})
	}
}

// dumpRow is one row of a table, every column rendered as bytes.
type dumpRow struct {
	table   string
	columns []string
	values  [][]byte
}

func (r dumpRow) String() string {
	var b strings.Builder
	b.WriteString(r.table)
	for i, col := range r.columns {
		if r.values[i] == nil {
			fmt.Fprintf(&b, " %s=NULL", col)
		} else {
			fmt.Fprintf(&b, " %s=%x", col, r.values[i])
		}
	}
	return b.String()
}

// dumpDatabase reads every column of every row of every table of the
// store's schema, tables found in the catalogue rather than listed.
func dumpDatabase(t *testing.T, db *sqlx.DB) []dumpRow {
	t.Helper()
	ctx := t.Context()
	query := `SELECT table_name FROM information_schema.tables
		WHERE table_schema = current_schema() ORDER BY table_name`
	if testenv.IsSQLite(db.DriverName()) {
		query = `SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`
	}
	var tables []string
	require.NoError(t, db.SelectContext(ctx, &tables, query))
	for _, want := range []string{"tokens_keys", "tokens_changes", "tokens_events"} {
		require.Contains(t, tables, want)
	}
	var dump []dumpRow
	for _, table := range tables {
		rows, err := db.QueryContext(ctx, `SELECT * FROM "`+strings.ReplaceAll(table, `"`, `""`)+`"`)
		require.NoError(t, err)
		columns, err := rows.Columns()
		require.NoError(t, err)
		for rows.Next() {
			vals := make([]any, len(columns))
			ptrs := make([]any, len(columns))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			require.NoError(t, rows.Scan(ptrs...))
			row := dumpRow{table: table, columns: columns, values: make([][]byte, len(vals))}
			for i, v := range vals {
				row.values[i] = renderValue(v)
			}
			dump = append(dump, row)
		}
		require.NoError(t, rows.Err())
		require.NoError(t, rows.Close())
	}
	return dump
}

// renderedDump is dump as sorted text, to compare two dumps whatever order
// the database returned rows in.
func renderedDump(t *testing.T, db *sqlx.DB) []string {
	t.Helper()
	var out []string
	for _, row := range dumpDatabase(t, db) {
		out = append(out, row.String())
	}
	slices.Sort(out)
	return out
}

func renderValue(v any) []byte {
	switch v := v.(type) {
	case nil:
		return nil
	case []byte:
		return bytes.Clone(v)
	case string:
		return []byte(v)
	case time.Time:
		return []byte(v.UTC().Format(time.RFC3339Nano))
	default:
		return []byte(fmt.Sprint(v))
	}
}

var base64Encodings = []*base64.Encoding{
	base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding,
}

// valueForms are the ways a value could carry a secret: as it is, hex and
// base64 encoded, and with any hex or base64 text in it decoded.
func valueForms(v []byte) [][]byte {
	forms := [][]byte{v, []byte(hex.EncodeToString(v)), []byte(strings.ToUpper(hex.EncodeToString(v)))}
	for _, enc := range base64Encodings {
		forms = append(forms, []byte(enc.EncodeToString(v)))
	}
	return append(forms, decodedRuns(v)...)
}

// decodedRuns decodes every run of hex or base64 (standard or URL)
// characters in data long enough to encode secretWindow bytes, from each
// offset the encoding could start at, since a run may begin with plain
// text that happens to use the same characters.
func decodedRuns(data []byte) [][]byte {
	var out [][]byte
	for _, run := range runs(data, isHexDigit, 2*secretWindow) {
		for offset := range 2 {
			text := run[offset:]
			if decoded, err := hex.DecodeString(string(text[:len(text)/2*2])); err == nil {
				out = append(out, decoded)
			}
		}
	}
	for _, run := range runs(data, isBase64Char, base64.RawStdEncoding.EncodedLen(secretWindow)) {
		std := strings.NewReplacer("-", "+", "_", "/").Replace(string(run))
		for offset := range 4 {
			text := std[offset:]
			if len(text)%4 == 1 {
				text = text[:len(text)-1]
			}
			if decoded, err := base64.RawStdEncoding.DecodeString(text); err == nil {
				out = append(out, decoded)
			}
		}
	}
	return out
}

// runs returns the maximal runs of bytes of data that are in, at least
// minLen long.
func runs(data []byte, in func(byte) bool, minLen int) [][]byte {
	var out [][]byte
	start := -1
	for i := 0; i <= len(data); i++ {
		if i < len(data) && in(data[i]) {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 && i-start >= minLen {
			out = append(out, data[start:i])
		}
		start = -1
	}
	return out
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isBase64Char(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || strings.IndexByte("+/-_", c) >= 0
}

// requireNoSecret checks that no part of any secret of secretWindow bytes
// or more appears in any form of any value of dump.
func requireNoSecret(t *testing.T, dump []dumpRow, secrets []secret) {
	t.Helper()
	var where []string
	var forms [][]byte
	for _, row := range dump {
		for i, v := range row.values {
			if v == nil {
				continue
			}
			for _, form := range valueForms(v) {
				where = append(where, row.table+"."+row.columns[i])
				forms = append(forms, form)
			}
		}
	}
	require.NotEmpty(t, forms)
	requireNoSecretIn(t, where, forms, secrets)
}

func requireNoSecretInFile(t *testing.T, name string, data []byte, secrets []secret) {
	t.Helper()
	forms := append([][]byte{data}, decodedRuns(data)...)
	where := make([]string, len(forms))
	for i := range where {
		where[i] = "file " + name
	}
	requireNoSecretIn(t, where, forms, secrets)
}

// requireNoSecretIn checks that no form holds a part of a secret.
func requireNoSecretIn(t *testing.T, where []string, forms [][]byte, secrets []secret) {
	t.Helper()
	require.NotEmpty(t, secrets)
	parts := make(map[string]string)
	for _, s := range secrets {
		require.GreaterOrEqual(t, len(s.value), secretWindow)
		for i := 0; i+secretWindow <= len(s.value); i++ {
			parts[s.value[i:i+secretWindow]] = fmt.Sprintf("bytes %d-%d of the %s", i, i+secretWindow, s.label)
		}
	}
	for i, form := range forms {
		for j := 0; j+secretWindow <= len(form); j++ {
			if part, found := parts[string(form[j:j+secretWindow])]; found {
				t.Fatalf("%s holds %s", where[i], part)
			}
		}
	}
}

// sqliteFiles reads the files of the SQLite database at dsn: the database,
// its write-ahead log and shared memory, free pages and all.
func sqliteFiles(t *testing.T, dsn string) map[string][]byte {
	t.Helper()
	path, _, _ := strings.Cut(strings.TrimPrefix(dsn, "file:"), "?")
	matches, err := filepath.Glob(path + "*")
	require.NoError(t, err)
	require.Contains(t, matches, path)
	files := make(map[string][]byte)
	for _, name := range matches {
		data, err := os.ReadFile(name)
		require.NoError(t, err)
		files[filepath.Base(name)] = data
	}
	return files
}

// renewable is a key whose token was redeemed and used, so that Renew
// accepts it, with its state as stored.
type renewable struct {
	in     instance
	creds  *tokens.Credentials
	record tokens.KeyRecord
	dump   []string
}

func newRenewable(t *testing.T, in instance) *renewable {
	t.Helper()
	creds := redeemedKey(t, in.m)
	requireVerifies(t, in.m, creds) // records the first use now, not later
	rec, err := in.st.Key(t.Context(), creds.KeyID)
	require.NoError(t, err)
	return &renewable{in: in, creds: creds, record: rec, dump: renderedDump(t, in.db)}
}

// requireUnchanged checks that the key, and the whole database, are
// exactly as they were before the interrupted renewal.
func (r *renewable) requireUnchanged(t *testing.T) {
	t.Helper()
	rec, err := r.in.st.Key(t.Context(), r.creds.KeyID)
	require.NoError(t, err)
	require.Equal(t, r.record, rec, "the key record changed")
	require.Equal(t, r.dump, renderedDump(t, r.in.db), "the database changed")
	requireVerifies(t, r.in.m, r.creds) // used within the minute: writes nothing
	key, err := r.in.m.Key(t.Context(), r.creds.KeyID)
	require.NoError(t, err)
	require.Equal(t, tokens.LinkUsed, key.Link)
	require.Nil(t, key.OldToken)
	require.Equal(t, 1, tokenRows(t, r.in.db, r.creds.KeyID))
}

// requireRenews checks that the key renews now, through the same pool.
func (r *renewable) requireRenews(t *testing.T) {
	t.Helper()
	link, err := r.in.m.Renew(t.Context(), r.creds.KeyID, tokens.RenewOptions{})
	require.NoError(t, err)
	renewed, err := r.in.m.RedeemLink(t.Context(), link.URL)
	require.NoError(t, err)
	requireVerifies(t, r.in.m, r.creds)
	requireVerifies(t, r.in.m, renewed)
	require.Equal(t, 2, tokenRows(t, r.in.db, r.creds.KeyID))
}

// pgLockPoints are rows a PostgreSQL transaction can lock to stop a
// renewal at a chosen statement of UpdateKey's transaction, and the text
// of that statement.
var pgLockPoints = []struct {
	name, lock, statement string
}{
	{
		// The transaction's first statement writes the key's row.
		name:      "BeforeItsWrites",
		lock:      `SELECT 1 FROM tokens_keys WHERE id = $1 FOR UPDATE`,
		statement: "UPDATE tokens_keys",
	},
	{
		// The change is logged last, after the key's row was written:
		// stopping there interrupts a transaction that has written.
		name:      "AfterKeyWrite",
		lock:      pgNextChange,
		statement: "INSERT INTO tokens_changes",
	},
}

// pgNextChange inserts, uncommitted, a change under the order number that
// the next change will take, so that the next writer waits for it at its
// INSERT into tokens_changes. No writer waits for another there: only a
// row that takes a number out of turn stops one.
const pgNextChange = `INSERT INTO tokens_changes (seq, key_id)
	SELECT coalesce(pg_sequence_last_value('tokens_changes_seq'), 0) + 1, $1`

// pgLock locks rows with query (given keyID as $1, if it has one) in a
// transaction on admin, rolled back when t ends if release was not called
// first, and returns the backend's pid.
func pgLock(t *testing.T, admin *sqlx.DB, query, keyID string) (pid int, release func()) {
	t.Helper()
	tx, err := admin.BeginTxx(t.Context(), nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tx.Rollback() })
	require.NoError(t, tx.GetContext(t.Context(), &pid, "SELECT pg_backend_pid()"))
	var args []any
	if strings.Contains(query, "$1") {
		args = append(args, keyID)
	}
	_, err = tx.ExecContext(t.Context(), query, args...)
	require.NoError(t, err)
	return pid, func() { require.NoError(t, tx.Rollback()) }
}

// waitForBlockedBackend waits until a backend waits for a lock that
// backend blocker holds, and returns its pid and the statement it is
// running. There is no notification of a lock wait to wait on, so it polls
// pg_stat_activity every few milliseconds, for at most interruptWait. done
// reports the renewal ending, which must not happen first.
func waitForBlockedBackend(t *testing.T, admin *sqlx.DB, blocker int, done <-chan error) (pid int, statement string) {
	t.Helper()
	deadline := time.NewTimer(interruptWait)
	defer deadline.Stop()
	for {
		// pg_blocking_pids reads the lock table as it is now, while the
		// statement of each row comes from a snapshot taken before:
		// possibly the statement before the one that waits.
		err := admin.GetContext(t.Context(), &pid,
			`SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))`, blocker)
		if err == nil {
			break
		}
		require.ErrorIs(t, err, sql.ErrNoRows)
		select {
		case err := <-done:
			t.Fatalf("the renewal ended before it waited for the lock: %v", err)
		case <-deadline.C:
			t.Fatal("the renewal never waited for the lock")
		case <-time.After(5 * time.Millisecond):
		}
	}
	// It waits until the blocker lets go, so a snapshot taken now shows
	// the statement that waits.
	require.NoError(t, admin.GetContext(t.Context(), &statement,
		`SELECT query FROM pg_stat_activity WHERE pid = $1`, pid))
	return pid, statement
}

// awaitPostgres waits until query, a boolean SELECT on PostgreSQL's
// catalog, is true, for at most interruptWait. PostgreSQL tells no client
// that a backend waits for a lock or has ended, so the catalog is read
// every few milliseconds; the wait ends at once when it is true.
func awaitPostgres(ctx context.Context, admin *sqlx.DB, what, query string, args ...any) error {
	deadline := time.NewTimer(interruptWait)
	defer deadline.Stop()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		var ok bool
		if err := admin.GetContext(ctx, &ok, query, args...); err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("%s: not after %v", what, interruptWait)
		case <-tick.C:
		}
	}
}

// renewInBackground starts a renewal of key id with ctx and returns a
// channel that reports its error.
func renewInBackground(ctx context.Context, m *tokens.Manager, id string) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := m.Renew(ctx, id, tokens.RenewOptions{})
		done <- err
	}()
	return done
}

func requireEnded(t *testing.T, done <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(interruptWait):
		t.Fatalf("the renewal did not end after %s", what)
		return nil
	}
}

// TestKilledConnectionMidRenewal kills the connection of a renewal whose
// transaction waits for a lock, with pg_terminate_backend: before any of
// its writes, and after it wrote the key's row. The
// key stays exactly as it was, and the pool recovers.
func TestKilledConnectionMidRenewal(t *testing.T) {
	for _, b := range backends {
		if testenv.IsSQLite(b.Driver) {
			continue // one process: nothing can kill its connection mid-way
		}
		t.Run(b.Name, func(t *testing.T) {
			c := newCluster(t, b, 1)
			admin := open(t, b.Driver, c.dsn)
			for _, at := range pgLockPoints {
				t.Run(at.name, func(t *testing.T) {
					key := newRenewable(t, c.inst[0])
					blocker, release := pgLock(t, admin, at.lock, key.creds.KeyID)
					done := renewInBackground(t.Context(), key.in.m, key.creds.KeyID)
					pid, statement := waitForBlockedBackend(t, admin, blocker, done)
					require.Contains(t, statement, at.statement, "the renewal waits at another statement")

					var terminated bool
					require.NoError(t, admin.GetContext(t.Context(), &terminated,
						"SELECT pg_terminate_backend($1, 10000)", pid))
					require.True(t, terminated)
					err := requireEnded(t, done, "its connection was killed")
					require.Error(t, err)
					t.Logf("renewal on a killed connection: %v", err)
					release()

					key.requireUnchanged(t)
					key.requireRenews(t)
				})
			}
		})
	}
}

// TestCancelledRenewal cancels the context of a renewal that waits for a
// lock another process holds. On PostgreSQL it waits inside its
// transaction, before or after its writes; on SQLite for the database's
// write lock. The key stays exactly as it was, and the pool recovers.
func TestCancelledRenewal(t *testing.T) {
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			c := newCluster(t, b, 1)
			if c.sqlite() {
				key := newRenewable(t, c.inst[0])
				release := sqliteWriteLock(t, open(t, b.Driver, c.dsn))
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				done := renewInBackground(ctx, key.in.m, key.creds.KeyID)
				waitInSQLite(t, done)
				cancel()
				var err error
				if b.Driver == "sqlite" {
					// modernc.org/sqlite's busy handler gives up once the
					// context is done: the renewal ends while the lock is
					// still held.
					err = requireEnded(t, done, "its context was cancelled")
					release()
				} else {
					// SQLite's own busy handler, which mattn/go-sqlite3
					// keeps, does not heed the interruption a cancelled
					// context sends: the renewal would wait out the busy
					// timeout. The cancellation happened before the lock
					// was released, so the renewal cannot commit.
					release()
					err = requireEnded(t, done, "its context was cancelled")
				}
				require.ErrorIs(t, err, context.Canceled)
				key.requireUnchanged(t)
				key.requireRenews(t)
				return
			}
			admin := open(t, b.Driver, c.dsn)
			for _, at := range pgLockPoints {
				t.Run(at.name, func(t *testing.T) {
					key := newRenewable(t, c.inst[0])
					blocker, release := pgLock(t, admin, at.lock, key.creds.KeyID)
					ctx, cancel := context.WithCancel(t.Context())
					defer cancel()
					done := renewInBackground(ctx, key.in.m, key.creds.KeyID)
					_, statement := waitForBlockedBackend(t, admin, blocker, done)
					require.Contains(t, statement, at.statement, "the renewal waits at another statement")

					cancel()
					err := requireEnded(t, done, "its context was cancelled")
					require.Error(t, err)
					t.Logf("cancelled renewal: %v", err)
					release()

					key.requireUnchanged(t)
					key.requireRenews(t)
				})
			}
		})
	}
}

// sqliteWriteLock takes the write lock of the SQLite database of db, as
// another process would, until release or the end of t.
func sqliteWriteLock(t *testing.T, db *sqlx.DB) (release func()) {
	t.Helper()
	conn, err := db.Conn(t.Context())
	require.NoError(t, err)
	_, err = conn.ExecContext(t.Context(), "BEGIN IMMEDIATE")
	require.NoError(t, err)
	released := false
	release = func() {
		if !released {
			released = true
			_, err := conn.ExecContext(context.Background(), "ROLLBACK")
			require.NoError(t, err)
			require.NoError(t, conn.Close())
		}
	}
	t.Cleanup(release)
	return release
}

// waitInSQLite waits until the renewal is inside a statement of UpdateKey
// in the SQLite driver (mattn/go-sqlite3), or in the busy handler
// (modernc.org/sqlite), where it waits for the write lock. SQLite offers
// no view of its lock waiters, so it polls the goroutines' stacks every
// millisecond, for at most interruptWait.
func waitInSQLite(t *testing.T, done <-chan error) {
	t.Helper()
	deadline := time.NewTimer(interruptWait)
	defer deadline.Stop()
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		for g := range bytes.SplitSeq(buf[:n], []byte("\n\n")) {
			if bytes.Contains(g, []byte("sqlstore.(*Store).UpdateKey")) &&
				(bytes.Contains(g, []byte("go-sqlite3.(*SQLiteStmt).exec")) ||
					bytes.Contains(g, []byte("modernc.org/sqlite.busyHandler"))) {
				return
			}
		}
		select {
		case err := <-done:
			t.Fatalf("the renewal ended before it waited for the lock: %v", err)
		case <-deadline.C:
			t.Fatal("the renewal never waited for the lock")
		case <-time.After(time.Millisecond):
		}
	}
}
