// Package sqlstore keeps keys in SQLite or PostgreSQL, shared safely by
// many processes.
//
// The store takes a *sqlx.DB and imports no driver: the application
// chooses one and imports it, and New picks the SQL dialect from the
// driver name:
//
//	sqlite3   github.com/mattn/go-sqlite3
//	postgres  github.com/lib/pq
//	pgx       github.com/jackc/pgx/v5/stdlib
//
// New never touches the database. Migrate creates or upgrades the schema
// (tables tokens_keys, tokens_tokens, tokens_links and
// tokens_schema_migrations, so they can live in the application's own
// database); teams with their own migration tool can apply the SQL files
// under migrations/ instead.
//
// # SQLite
//
// Open a file with a busy timeout, the WAL journal and immediate
// transactions, so that concurrent writers wait for each other instead of
// failing with "database is locked":
//
//	file:tokens.db?_busy_timeout=10000&_journal_mode=WAL&_txlock=immediate
//
// The store does not rely on SQLite's foreign keys being enabled (they are
// off unless the DSN has _foreign_keys=on): DeleteKey deletes a key's rows
// itself. An in-memory database (:memory:) is one database per
// connection, so it does not work with a connection pool.
//
// # PostgreSQL
//
// Any URL or DSN that lib/pq or pgx accepts works; to keep the tables in
// a schema of their own, set search_path in it. The store locks a key's
// token rows before its key row in every transaction, so concurrent writers
// never deadlock; conflicting writers get tokens.ErrConflict, which the
// Manager retries.
//
// # Errors
//
// A missing key gives tokens.ErrKeyNotFound, a stale version
// tokens.ErrConflict and a unique violation tokens.ErrDuplicate; other
// errors are the driver's, wrapped with the operation. None contains a
// digest or a sealed secret.
package sqlstore
