// Package sqlstore keeps keys in SQLite or PostgreSQL, shared safely by
// many processes.
//
// The store takes a *sqlx.DB and imports no driver: the application
// chooses one and imports it, and New picks the SQL dialect from the
// driver name:
//
//	sqlite3   github.com/mattn/go-sqlite3 (cgo)
//	sqlite    modernc.org/sqlite (pure Go: builds without a C compiler)
//	postgres  github.com/lib/pq
//	pgx       github.com/jackc/pgx/v5/stdlib
//
// New never touches the database. Migrate creates or upgrades the schema
// (tables tokens_keys, tokens_changes, tokens_events, tokens_revoked,
// tokens_schema_migrations, and tokens_change_counter on SQLite or
// tokens_changes_horizon on PostgreSQL, so they can live in the
// application's own database); teams with their own migration tool can apply the SQL files
// under migrations/ instead.
//
// A key is one row of tokens_keys: its current token, its old token and
// its latest share link are columns of that row (digests and a sealed
// token, never a secret). Verify reads that row by primary key with one
// prepared SELECT; every write of a key is one statement on it, plus, for
// InsertKey, UpdateKey and DeleteKey, the logging of the change and its
// event in the same transaction (tokens.ChangeLog): numbered by a counter
// on SQLite, by transaction ID and snapshots on PostgreSQL.
//
// # Pool sizing
//
// database/sql keeps at most two idle connections unless told otherwise
// (SetMaxIdleConns). With more concurrent callers than that, connections
// that finish while two others are idle are closed, and the next callers
// open new ones and prepare the store's statements on them again: the
// pool churns. Measured with uncached Verify from 8 goroutines on a
// 2-core machine (BenchmarkVerifyPool, bench.sh), against a pool that
// keeps 8 idle connections, throughput drops by a third to a half on
// PostgreSQL (each Verify takes 1.5-2.0x as long, with lib/pq and pgx
// alike) and by about 7% on SQLite. Keep as many idle connections as you
// expect concurrent requests, within what the database allows:
//
//	db.SetMaxOpenConns(16)
//	db.SetMaxIdleConns(16) // as many as may be open: no churn
//
// The verification cache (tokens.WithVerifyCache) takes most Verify
// calls off the pool altogether.
//
// # Upgrading
//
// Migrate applies the migrations a database lacks, all in one
// transaction. Migration 3 (0003_one_row.sql) moves each key's tokens
// and link into the key's row and drops the tables tokens_tokens and
// tokens_links: stop processes running an older release before it runs,
// as they read and write those tables.
//
// # SQLite
//
// Open a file with a busy timeout, the WAL journal and immediate
// transactions, so that concurrent writers wait for each other instead of
// failing with "database is locked". With mattn/go-sqlite3:
//
//	file:tokens.db?_busy_timeout=10000&_journal_mode=WAL&_txlock=immediate
//
// With modernc.org/sqlite, which takes any pragma as _pragma=name(value)
// and silently ignores parameters it does not know (such as
// _secure_delete=on, which is _pragma=secure_delete(on) there):
//
//	file:tokens.db?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate
//
// The two drivers read and write the same files, so a database can move
// from one to the other. A cancelled context ends a wait for SQLite's
// write lock at once with modernc.org/sqlite; mattn/go-sqlite3 waits out
// the busy timeout.
//
// The store works whether or not the DSN enables SQLite's foreign keys
// (_foreign_keys=on); its tables have none. An in-memory database (:memory:) is one database per
// connection, so it does not work with a connection pool.
//
// # PostgreSQL
//
// Any URL or DSN that lib/pq or pgx accepts works; to keep the tables in
// a schema of their own, set search_path in it. A transaction locks only
// the key's row; the change log takes no lock that another writer waits
// for, so writers of different keys never wait for each other (P1) and
// concurrent writers never deadlock; conflicting writers of one key get
// tokens.ErrConflict, which the Manager retries. PostgreSQL 13 or later
// (xid8, pg_current_snapshot).
//
// # Errors
//
// A missing key gives tokens.ErrKeyNotFound, a stale version
// tokens.ErrConflict and a unique violation tokens.ErrDuplicate; other
// errors are the driver's, wrapped with the operation. None contains a
// digest or a sealed secret.
package sqlstore
