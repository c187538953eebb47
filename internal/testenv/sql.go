package testenv

import (
	"path/filepath"
	"testing"
)

// SQLiteParams are the DSN parameters the README recommends for SQLite
// through mattn/go-sqlite3: writers wait for each other instead of
// failing, readers run beside a writer.
const SQLiteParams = "_busy_timeout=10000&_journal_mode=WAL&_txlock=immediate"

// ModerncSQLiteParams are SQLiteParams for modernc.org/sqlite, which takes
// any pragma as _pragma=name(value) and ignores parameters it does not
// know (such as _secure_delete).
const ModerncSQLiteParams = "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate"

// IsSQLite reports whether driverName is one of the SQLite drivers the
// store supports: sqlite3 (mattn/go-sqlite3) or sqlite (modernc.org/sqlite).
func IsSQLite(driverName string) bool {
	return driverName == "sqlite3" || driverName == "sqlite"
}

// A SQLBackend makes empty databases of one kind for the SQL store. The
// tests that use it import its driver.
type SQLBackend struct {
	Name   string // sub-test name: sqlite, postgres_lib_pq, ...
	Driver string // database/sql driver name
	// NewDSN makes an empty database, dropped when t ends, and returns
	// its data source name. It skips t (fails it in CI) when the backend
	// cannot run.
	NewDSN func(t testing.TB) string
}

// SQLite returns a function that makes a SQLite database file in a
// temporary directory of t, opened with params.
func SQLite(params string) func(t testing.TB) string {
	return func(t testing.TB) string {
		return "file:" + filepath.Join(t.TempDir(), "tokens.db") + "?" + params
	}
}

// SQLBackends are the databases and drivers the SQL store supports, plus
// SQLite opened the ways the README does not recommend, which must work
// too.
var SQLBackends = []SQLBackend{
	{Name: "sqlite", Driver: "sqlite3", NewDSN: SQLite(SQLiteParams)},
	{Name: "sqlite_modernc", Driver: "sqlite", NewDSN: SQLite(ModerncSQLiteParams)},
	{
		// Deferred transactions: the store must not depend on
		// _txlock=immediate. Foreign keys on: nor on their being off.
		Name:   "sqlite_deferred_foreign_keys",
		Driver: "sqlite3",
		NewDSN: SQLite("_busy_timeout=10000&_journal_mode=WAL&_foreign_keys=on"),
	},
	{Name: "postgres_lib_pq", Driver: "postgres", NewDSN: PostgresSchema},
	{Name: "postgres_pgx", Driver: "pgx", NewDSN: PostgresSchema},
}

// BenchSQLBackends are SQLBackends without the variants: one per database
// and driver.
var BenchSQLBackends = []SQLBackend{SQLBackends[0], SQLBackends[1], SQLBackends[3], SQLBackends[4]}
