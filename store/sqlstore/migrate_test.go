package sqlstore_test

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/internal/testenv"
	"github.com/keyrenew/tokens/store/storetest"
)

// TestMigrateFromReleasedSchema fills a database of schema version 1 (the
// first release: keys, tokens and links in three tables) or 2 (plus the
// change log) the way the released store wrote it, migrates it, and
// checks that every key, token, old token, link and last-used time
// survived the move into one row per key (0003_one_row.sql), and that the
// store then reads and writes it.
//
// The released store is frozen here as its statements (releasedV1), not
// as a copy of its Go code: the rows it left are fully determined by those
// statements and by how it encoded values (times as timestamptz in UTC,
// or Unix microseconds on SQLite, both truncated to microseconds; NULL for
// a zero time, a missing old token or link, and a wiped sealed token),
// which releasedWriter repeats. Its InsertKey wrote the key, token and
// link rows; its RecordUse, run here too, is the one write that changes a
// token row in place and bumps the version. The schema is the released
// migration files themselves, applied as the released Migrate did.
func TestMigrateFromReleasedSchema(t *testing.T) {
	for _, b := range backends {
		for _, from := range []int{1, 2} {
			t.Run(fmt.Sprintf("%s/from_version_%d", b.Name, from), func(t *testing.T) {
				db := open(t, b.Driver, b.NewDSN(t))
				w := releasedWriter{t: t, db: db}
				w.applyMigrations(from)
				want := releasedRecords()
				for i := range want {
					w.insertKey(&want[i])
				}
				// Uses recorded by the released RecordUse: of the current
				// token of "redeemed", of the old token of "renewed".
				w.recordUse(&want[2], false, storetest.T0.Add(50*time.Hour+7*time.Microsecond))
				w.recordUse(&want[3], true, storetest.T0.Add(51*time.Hour+9*time.Microsecond))
				if from == 2 {
					w.logChanges(want[0].ID, want[1].ID)
				}

				st := migrated(t, db)
				requireSchemaVersions(t, db, 1, 2, 3, 4, 6)
				ctx := t.Context()
				for _, rec := range want {
					got, err := st.Key(ctx, rec.ID)
					require.NoError(t, err, rec.ID)
					require.Equal(t, rec, got, rec.ID)
					if rec.HasLink {
						byLink, err := st.KeyByLink(ctx, rec.Link.Digest)
						require.NoError(t, err, rec.ID)
						require.Equal(t, rec, byLink, rec.ID)
					}
				}
				var acme []tokens.KeyRecord
				for _, rec := range want {
					if rec.Account == "acme" {
						acme = append(acme, rec)
					}
				}
				got, err := st.Keys(ctx, "acme")
				require.NoError(t, err)
				require.Equal(t, acme, got, "Keys, oldest first")
				expired, err := st.ExpiredLinks(ctx, storetest.T0.Add(100*time.Hour), 10)
				require.NoError(t, err)
				require.ElementsMatch(t, []string{"expired", "pending", "renewal-pending"}, expired)

				changes, err := st.Changes(ctx, 0)
				require.NoError(t, err)
				if from == 2 {
					require.Equal(t, int64(2), changes.Latest)
					require.ElementsMatch(t, []string{want[0].ID, want[1].ID}, changes.Keys)
				} else {
					require.Equal(t, int64(0), changes.Latest)
				}

				// The migrated rows are written like new ones.
				renewed := want[3]
				renewed.HasOld = false
				renewed.Old = tokens.TokenRecord{}
				require.NoError(t, st.UpdateKey(ctx, &renewed))
				require.NoError(t, st.RecordUse(ctx, renewed.ID, renewed.Current.Digest,
					storetest.T0.Add(60*time.Hour), storetest.T0.Add(60*time.Hour)))
				renewed.Version++
				renewed.Current.LastUsedAt = storetest.T0.Add(60 * time.Hour)
				got1, err := st.Key(ctx, renewed.ID)
				require.NoError(t, err)
				require.Equal(t, renewed, got1)
				require.NoError(t, st.DeleteKey(ctx, want[0].ID, nil))
				requireWorks(t, st)
			})
		}
	}
}

// releasedRecords are keys in every state the released schema could hold
// them, with distinct times, so that a column moved to the wrong place
// shows.
func releasedRecords() []tokens.KeyRecord {
	at := func(hours int, micros int) time.Time {
		return storetest.T0.Add(time.Duration(hours)*time.Hour + time.Duration(micros)*time.Microsecond)
	}
	sealed := func() []byte {
		b := make([]byte, 81) // the size of a sealed token
		_, _ = rand.Read(b)
		return b
	}
	rec := func(id string, created time.Time) tokens.KeyRecord {
		r := storetest.NewRecord(id)
		r.Name = "key " + id
		r.CreatedAt = created
		r.Version = 1
		r.Current.CreatedAt = created
		r.Link = tokens.LinkRecord{
			Digest:    storetest.DigestOf(id + "/link"),
			Sealed:    sealed(),
			CreatedAt: created,
			ExpiresAt: created.Add(tokens.DefaultLinkTTL),
		}
		return r
	}
	old := func(r *tokens.KeyRecord, created, lastUsed time.Time) {
		r.HasOld = true
		r.Old = tokens.TokenRecord{Digest: storetest.DigestOf(r.ID + "/old"), CreatedAt: created, LastUsedAt: lastUsed}
	}
	redeemed := func(r *tokens.KeyRecord, at time.Time) {
		r.Link.Sealed = nil
		r.Link.RedeemedAt = at
	}

	noLink := rec("no-link", at(0, 1))
	noLink.HasLink = false
	noLink.Link = tokens.LinkRecord{}

	pending := rec("pending", at(1, 2))

	used := rec("redeemed", at(2, 3))
	redeemed(&used, at(2, 4))

	renewed := rec("renewed", at(3, 5))
	renewed.Current.CreatedAt = at(30, 6)
	renewed.Current.LastUsedAt = at(31, 7)
	old(&renewed, at(3, 5), at(29, 8))
	renewed.Link.CreatedAt = at(30, 6)
	renewed.Link.ExpiresAt = at(54, 6)
	redeemed(&renewed, at(30, 9))

	renewalPending := rec("renewal-pending", at(4, 10))
	renewalPending.Current.CreatedAt = at(40, 11)
	old(&renewalPending, at(4, 10), time.Time{})
	renewalPending.Link.CreatedAt = at(40, 11)
	renewalPending.Link.ExpiresAt = at(64, 11)

	expired := rec("expired", at(5, 12))

	purged := rec("purged", at(6, 13))
	purged.Link.Sealed = nil

	inactive := rec("inactive", at(7, 14))
	inactive.Active = false
	inactive.Current.LastUsedAt = at(8, 15)
	redeemed(&inactive, at(7, 16))

	other := rec("other-account", at(8, 17))
	other.Account = "globex"
	redeemed(&other, at(8, 18))

	return []tokens.KeyRecord{noLink, pending, used, renewed, renewalPending, expired, purged, inactive, other}
}

// releasedV1 are the statements of the released store (schema versions 1
// and 2) that releasedWriter runs, as it ran them, with ? placeholders
// rebound for PostgreSQL.
var releasedV1 = struct {
	createMigrations                                       map[string]string
	insertMigration, insertKey, insertToken, insertLink    string
	recordUsePostgres, touchTokenSQLite, bumpVersionSQLite string
	countChange, insertChange                              string
}{
	createMigrations: map[string]string{
		"postgres": `CREATE TABLE IF NOT EXISTS tokens_schema_migrations (
		version integer PRIMARY KEY,
		name    text    NOT NULL
	)`,
		"sqlite": `CREATE TABLE IF NOT EXISTS tokens_schema_migrations (
		version INTEGER NOT NULL PRIMARY KEY,
		name    TEXT    NOT NULL
	) STRICT`,
	},
	insertMigration: `INSERT INTO tokens_schema_migrations (version, name) VALUES (?, ?)`,
	insertKey: `INSERT INTO tokens_keys (id, account, name, active, created_at, version)
	VALUES (?, ?, ?, ?, ?, 1)`,
	insertToken: `INSERT INTO tokens_tokens (key_id, slot, digest, created_at, last_used_at)
	VALUES (?, ?, ?, ?, ?)`,
	insertLink: `INSERT INTO tokens_links (key_id, digest, sealed, created_at, expires_at, redeemed_at)
	VALUES (?, ?, ?, ?, ?, ?)`,
	recordUsePostgres: `WITH used AS (
		UPDATE tokens_tokens SET last_used_at = $3
		WHERE key_id = $1 AND digest = $2 AND (last_used_at IS NULL OR last_used_at <= $4)
		RETURNING key_id
	)
	UPDATE tokens_keys SET version = version + 1
	WHERE id = $1 AND EXISTS (SELECT 1 FROM used)`,
	touchTokenSQLite: `UPDATE tokens_tokens SET last_used_at = ?
	WHERE key_id = ? AND digest = ? AND (last_used_at IS NULL OR last_used_at <= ?)`,
	bumpVersionSQLite: `UPDATE tokens_keys SET version = version + 1 WHERE id = ?`,
	countChange:       `UPDATE tokens_change_counter SET seq = seq + 1 RETURNING seq`,
	insertChange:      `INSERT INTO tokens_changes (seq, key_id) VALUES (?, ?)`,
}

// releasedWriter writes a database the way the released store did.
type releasedWriter struct {
	t  *testing.T
	db *sqlx.DB
}

func (w releasedWriter) sqlite() bool { return testenv.IsSQLite(w.db.DriverName()) }

func (w releasedWriter) dialect() string {
	if w.sqlite() {
		return "sqlite"
	}
	return "postgres"
}

// time encodes t as the released store did.
func (w releasedWriter) time(t time.Time) any {
	if w.sqlite() {
		return t.UnixMicro()
	}
	return t.UTC().Truncate(time.Microsecond)
}

func (w releasedWriter) nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return w.time(t)
}

func (w releasedWriter) exec(query string, args ...any) int64 {
	w.t.Helper()
	res, err := w.db.ExecContext(w.t.Context(), w.db.Rebind(query), args...)
	require.NoError(w.t, err)
	n, err := res.RowsAffected()
	require.NoError(w.t, err)
	return n
}

// applyMigrations applies the released migration files up to version,
// recording them as the released Migrate did.
func (w releasedWriter) applyMigrations(version int) {
	w.t.Helper()
	files := []string{"0001_init.sql", "0002_changes.sql"}[:version]
	w.exec(releasedV1.createMigrations[w.dialect()])
	for i, name := range files {
		body, err := os.ReadFile(filepath.Join("migrations", w.dialect(), name))
		require.NoError(w.t, err)
		_, err = w.db.ExecContext(w.t.Context(), string(body))
		require.NoError(w.t, err, name)
		w.exec(releasedV1.insertMigration, i+1, name[len("0001_"):len(name)-len(".sql")])
	}
}

// insertKey is the released InsertKey, in one transaction as it was.
func (w releasedWriter) insertKey(rec *tokens.KeyRecord) {
	w.t.Helper()
	tx, err := w.db.BeginTxx(w.t.Context(), nil)
	require.NoError(w.t, err)
	defer tx.Rollback()
	exec := func(query string, args ...any) {
		_, err := tx.ExecContext(w.t.Context(), tx.Rebind(query), args...)
		require.NoError(w.t, err)
	}
	exec(releasedV1.insertKey, rec.ID, rec.Account, rec.Name, rec.Active, w.time(rec.CreatedAt))
	exec(releasedV1.insertToken, rec.ID, "current", rec.Current.Digest[:],
		w.time(rec.Current.CreatedAt), w.nullTime(rec.Current.LastUsedAt))
	if rec.HasOld {
		exec(releasedV1.insertToken, rec.ID, "old", rec.Old.Digest[:],
			w.time(rec.Old.CreatedAt), w.nullTime(rec.Old.LastUsedAt))
	}
	if rec.HasLink {
		var sealed any
		if rec.Link.Sealed != nil {
			sealed = rec.Link.Sealed
		}
		exec(releasedV1.insertLink, rec.ID, rec.Link.Digest[:], sealed,
			w.time(rec.Link.CreatedAt), w.time(rec.Link.ExpiresAt), w.nullTime(rec.Link.RedeemedAt))
	}
	require.NoError(w.t, tx.Commit())
	rec.Version = 1
}

// recordUse is the released RecordUse of rec's current or old token at
// at, with a staleness limit that always writes; it updates rec to what
// it wrote.
func (w releasedWriter) recordUse(rec *tokens.KeyRecord, old bool, at time.Time) {
	w.t.Helper()
	tok := &rec.Current
	if old {
		tok = &rec.Old
	}
	if w.sqlite() {
		require.Equal(w.t, int64(1), w.exec(releasedV1.touchTokenSQLite, w.time(at), rec.ID, tok.Digest[:], w.time(at)))
		w.exec(releasedV1.bumpVersionSQLite, rec.ID)
	} else {
		require.Equal(w.t, int64(1), w.exec(releasedV1.recordUsePostgres, rec.ID, tok.Digest[:], w.time(at), w.time(at)))
	}
	tok.LastUsedAt = at
	rec.Version++
}

// logChanges numbers a change of each key as the version-2 store did.
func (w releasedWriter) logChanges(ids ...string) {
	w.t.Helper()
	for _, id := range ids {
		var seq int64
		require.NoError(w.t, w.db.GetContext(w.t.Context(), &seq, releasedV1.countChange))
		w.exec(releasedV1.insertChange, seq, id)
	}
}
