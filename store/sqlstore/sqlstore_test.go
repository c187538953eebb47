package sqlstore_test

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq"
	_ "github.com/mattn/go-sqlite3"
	"github.com/stretchr/testify/require"
	_ "modernc.org/sqlite"

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/internal/testenv"
	"github.com/keyrenew/tokens/store/sqlstore"
	"github.com/keyrenew/tokens/store/storetest"
)

// backends are the databases the store supports, each opened every way
// the store must work with.
var backends = testenv.SQLBackends

type backend = testenv.SQLBackend

func TestStore(t *testing.T) {
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) tokens.Store {
				return migrated(t, open(t, b.Driver, b.NewDSN(t)))
			})
		})
	}
}

func TestMigrateIsIdempotent(t *testing.T) {
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			db := open(t, b.Driver, b.NewDSN(t))
			st := newStore(t, db)
			for range 3 {
				require.NoError(t, st.Migrate(t.Context()))
			}
			requireSchemaVersions(t, db, schemaVersions(b.Driver)...)
			requireWorks(t, st)
		})
	}
}

func TestMigrateConcurrently(t *testing.T) {
	const processes = 4
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			dsn := b.NewDSN(t)
			stores := make([]*sqlstore.Store, processes)
			for i := range stores {
				stores[i] = newStore(t, open(t, b.Driver, dsn))
			}
			errs := make(chan error, processes)
			start := make(chan struct{})
			for _, st := range stores {
				go func() {
					<-start
					errs <- st.Migrate(t.Context())
				}()
			}
			close(start)
			for range processes {
				require.NoError(t, <-errs)
			}
			requireSchemaVersions(t, open(t, b.Driver, dsn), schemaVersions(b.Driver)...)
			for _, st := range stores {
				requireWorks(t, st)
			}
		})
	}
}

func TestPreparesOnFirstUseAfterMigrate(t *testing.T) {
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			st := newStore(t, open(t, b.Driver, b.NewDSN(t)))
			_, err := st.Key(t.Context(), "k1")
			require.Error(t, err, "no table before Migrate")
			require.NotErrorIs(t, err, tokens.ErrKeyNotFound)
			require.NoError(t, st.Migrate(t.Context()))
			requireWorks(t, st)
		})
	}
}

func TestTruncatesTimesToMicroseconds(t *testing.T) {
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			st := migrated(t, open(t, b.Driver, b.NewDSN(t)))
			rec := storetest.NewRecord("k1")
			rec.CreatedAt = time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
			rec.Current.LastUsedAt = time.Date(2026, 1, 2, 3, 4, 5, 999999999, time.UTC)
			require.NoError(t, st.InsertKey(t.Context(), &rec))
			got, err := st.Key(t.Context(), "k1")
			require.NoError(t, err)
			require.Equal(t, time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC), got.CreatedAt)
			require.Equal(t, time.Date(2026, 1, 2, 3, 4, 5, 999999000, time.UTC), got.Current.LastUsedAt)

			// An update with the same times at nanosecond precision
			// rewrites the same instants.
			rec.Name = "renamed"
			require.NoError(t, st.UpdateKey(t.Context(), &rec))
			again, err := st.Key(t.Context(), "k1")
			require.NoError(t, err)
			require.Equal(t, got.Current, again.Current)
		})
	}
}

func TestErrorsHideDigests(t *testing.T) {
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			st := migrated(t, open(t, b.Driver, b.NewDSN(t)))
			first := storetest.NewRecord("k1")
			require.NoError(t, st.InsertKey(t.Context(), &first))
			second := storetest.NewRecord("k2")
			second.Link.Digest = first.Link.Digest
			err := st.InsertKey(t.Context(), &second)
			require.ErrorIs(t, err, tokens.ErrDuplicate)
			for _, form := range []string{"%v", "%+v", "%#v", "%s"} {
				msg := fmt.Sprintf(form, err)
				require.NotContains(t, strings.ToLower(msg), hex.EncodeToString(first.Link.Digest[:]))
				require.NotContains(t, msg, string(first.Link.Digest[:]))
				require.NotContains(t, msg, string(second.Link.Sealed))
			}
		})
	}
}

// TestSQLiteDriversShareFiles writes a database through one SQLite driver
// and reads and writes it through the other: an application can change
// drivers without migrating its data.
func TestSQLiteDriversShareFiles(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "tokens.db")
	mattn := migrated(t, open(t, "sqlite3", "file:"+path+"?"+testenv.SQLiteParams))
	rec := storetest.NewRecord("k1")
	require.NoError(t, mattn.InsertKey(ctx, &rec))

	modernc := migrated(t, open(t, "sqlite", "file:"+path+"?"+testenv.ModerncSQLiteParams))
	got, err := modernc.Key(ctx, rec.ID)
	require.NoError(t, err)
	require.Equal(t, rec.CreatedAt, got.CreatedAt)
	require.Equal(t, rec.Current, got.Current)
	require.Equal(t, rec.Link, got.Link)
	got.Name = "renamed"
	require.NoError(t, modernc.UpdateKey(ctx, &got))

	back, err := mattn.Key(ctx, rec.ID)
	require.NoError(t, err)
	require.Equal(t, "renamed", back.Name)
	require.Equal(t, got.Version, back.Version)
	require.Equal(t, rec.Current, back.Current)
}

func TestNewRefusesUnknownDriver(t *testing.T) {
	raw, err := sql.Open("sqlite3", filepath.Join(t.TempDir(), "unused.db"))
	require.NoError(t, err)
	t.Cleanup(func() { raw.Close() })
	for _, name := range []string{"mysql", "sqlite4", "", "pgx/v4"} {
		_, err := sqlstore.New(sqlx.NewDb(raw, name))
		require.ErrorIs(t, err, sqlstore.ErrUnsupportedDriver, "driver %q", name)
	}
	_, err = sqlstore.New(nil)
	require.Error(t, err)
}

// open opens a handle to dsn, closed when t ends.
func open(t *testing.T, driver, dsn string) *sqlx.DB {
	t.Helper()
	db, err := sqlx.Open(driver, dsn)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

func newStore(t *testing.T, db *sqlx.DB) *sqlstore.Store {
	t.Helper()
	st, err := sqlstore.New(db)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, st.Close()) })
	return st
}

func migrated(t *testing.T, db *sqlx.DB) *sqlstore.Store {
	t.Helper()
	st := newStore(t, db)
	require.NoError(t, st.Migrate(t.Context()))
	return st
}

func requireSchemaVersions(t *testing.T, db *sqlx.DB, want ...int) {
	t.Helper()
	var got []int
	require.NoError(t, db.SelectContext(t.Context(), &got,
		"SELECT version FROM tokens_schema_migrations ORDER BY version"))
	require.Equal(t, want, got)
}

// schemaVersions are the migrations of the dialect of driver: PostgreSQL
// has 0005 (the snapshot change log), SQLite keeps its counter.
func schemaVersions(driver string) []int {
	if testenv.IsSQLite(driver) {
		return []int{1, 2, 3, 4, 6}
	}
	return []int{1, 2, 3, 4, 5, 6}
}

// requireWorks checks that st reads and writes its tables.
func requireWorks(t *testing.T, st *sqlstore.Store) {
	t.Helper()
	_, err := st.Key(t.Context(), "missing")
	require.ErrorIs(t, err, tokens.ErrKeyNotFound)
	rec := storetest.NewRecord("works-" + rand.Text())
	require.NoError(t, st.InsertKey(t.Context(), &rec))
	got, err := st.Key(t.Context(), rec.ID)
	require.NoError(t, err)
	require.Equal(t, rec.Name, got.Name)
}

// TestKeepsOldTokenExpiryAndLinkRevocation round-trips the times of R14
// and R15 through the key's row, and their absence.
func TestKeepsOldTokenExpiryAndLinkRevocation(t *testing.T) {
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			st := migrated(t, open(t, b.Driver, b.NewDSN(t)))
			rec := storetest.NewRecord("k1")
			rec.HasOld = true
			rec.Old = tokens.TokenRecord{
				Digest:    storetest.DigestOf("k1/token/0"),
				CreatedAt: storetest.T0.Add(-time.Hour),
				ExpiresAt: storetest.T0.Add(7 * 24 * time.Hour),
			}
			rec.Link.Sealed = nil
			rec.Link.RevokedAt = storetest.T0.Add(time.Minute)
			require.NoError(t, st.InsertKey(t.Context(), &rec))
			got, err := st.Key(t.Context(), "k1")
			require.NoError(t, err)
			require.Equal(t, rec, got)

			rec.Old.ExpiresAt = time.Time{}
			rec.Link.RevokedAt = time.Time{}
			require.NoError(t, st.UpdateKey(t.Context(), &rec))
			got, err = st.Key(t.Context(), "k1")
			require.NoError(t, err)
			require.Equal(t, rec, got)
		})
	}
}
