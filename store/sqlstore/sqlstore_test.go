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

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/internal/testenv"
	"github.com/keyrenew/tokens/store/sqlstore"
	"github.com/keyrenew/tokens/store/storetest"
)

// A backend makes empty databases of one kind.
type backend struct {
	name   string
	driver string
	// available skips (in CI: fails) t when the backend cannot run.
	available func(t *testing.T)
	// newDSN makes an empty database, dropped when t ends, and returns
	// its data source name.
	newDSN func(t *testing.T) string
}

var backends = []backend{
	{
		name:      "sqlite",
		driver:    "sqlite3",
		available: func(*testing.T) {},
		newDSN:    sqliteDSN("_busy_timeout=10000&_journal_mode=WAL&_txlock=immediate"),
	},
	{
		// Deferred transactions: the store must not depend on
		// _txlock=immediate. Foreign keys on: nor on their being off.
		name:      "sqlite_deferred_foreign_keys",
		driver:    "sqlite3",
		available: func(*testing.T) {},
		newDSN:    sqliteDSN("_busy_timeout=10000&_journal_mode=WAL&_foreign_keys=on"),
	},
	{
		name:      "postgres_lib_pq",
		driver:    "postgres",
		available: func(t *testing.T) { testenv.Postgres(t) },
		newDSN:    postgresDSN,
	},
	{
		name:      "postgres_pgx",
		driver:    "pgx",
		available: func(t *testing.T) { testenv.Postgres(t) },
		newDSN:    postgresDSN,
	},
}

func TestStore(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			b.available(t)
			storetest.Run(t, func(t *testing.T) tokens.Store {
				return migrated(t, open(t, b.driver, b.newDSN(t)))
			})
		})
	}
}

func TestMigrateIsIdempotent(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			b.available(t)
			db := open(t, b.driver, b.newDSN(t))
			st := newStore(t, db)
			for range 3 {
				require.NoError(t, st.Migrate(t.Context()))
			}
			requireSchemaVersions(t, db, 1, 2)
			requireWorks(t, st)
		})
	}
}

func TestMigrateConcurrently(t *testing.T) {
	const processes = 4
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			b.available(t)
			dsn := b.newDSN(t)
			stores := make([]*sqlstore.Store, processes)
			for i := range stores {
				stores[i] = newStore(t, open(t, b.driver, dsn))
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
			requireSchemaVersions(t, open(t, b.driver, dsn), 1, 2)
			for _, st := range stores {
				requireWorks(t, st)
			}
		})
	}
}

func TestPreparesOnFirstUseAfterMigrate(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			b.available(t)
			st := newStore(t, open(t, b.driver, b.newDSN(t)))
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
		t.Run(b.name, func(t *testing.T) {
			b.available(t)
			st := migrated(t, open(t, b.driver, b.newDSN(t)))
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
		t.Run(b.name, func(t *testing.T) {
			b.available(t)
			st := migrated(t, open(t, b.driver, b.newDSN(t)))
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

func TestNewRefusesUnknownDriver(t *testing.T) {
	raw, err := sql.Open("sqlite3", filepath.Join(t.TempDir(), "unused.db"))
	require.NoError(t, err)
	t.Cleanup(func() { raw.Close() })
	for _, name := range []string{"mysql", "sqlite", "", "pgx/v4"} {
		_, err := sqlstore.New(sqlx.NewDb(raw, name))
		require.ErrorIs(t, err, sqlstore.ErrUnsupportedDriver, "driver %q", name)
	}
	_, err = sqlstore.New(nil)
	require.Error(t, err)
}

func sqliteDSN(params string) func(t *testing.T) string {
	return func(t *testing.T) string {
		return "file:" + filepath.Join(t.TempDir(), "tokens.db") + "?" + params
	}
}

// postgresDSN makes a schema of its own for t, dropped when t ends, and
// returns TOKENS_TEST_POSTGRES with search_path set to it.
func postgresDSN(t *testing.T) string {
	return testenv.PostgresSchema(t)
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
