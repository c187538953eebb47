package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

// sqlite is the dialect of SQLite through mattn/go-sqlite3 (driver name
// sqlite3) or modernc.org/sqlite (sqlite): ? and ?NNN placeholders, times
// as INTEGER Unix microseconds, one writer at a time. Both drivers run the
// same SQLite, so the dialect is one: the statements, the times (the
// columns are INTEGER, so neither driver converts them) and the BEGIN
// IMMEDIATE of migrations are the same; only the shape of their errors
// differs (isUniqueViolation).
//
// Every parameter compared in a WHERE clause is wrapped in a CAST to the
// column's type. A bare parameter that the planner looks at (to test a
// partial index, or an index it does not use whole) marks the statement
// "re-prepare when rebound", and mattn/go-sqlite3 clears the bindings
// before every execution, which expires such a statement: each execution
// re-parsed and re-planned it, 5-10x the cost of the look-up. A CAST is
// not a bare parameter, and the indexes are used the same way
// (TestSQLiteLookupsAreNotReprepared). modernc.org/sqlite unbinds text
// and blob parameters after each execution too, and runs the same
// statements.
type sqlite struct{}

func (sqlite) changeLog() changeLog { return counterLog{} }

func (sqlite) name() string { return "sqlite" }

func (sqlite) query(id stmtID) string { return sqliteQueries[id] }

func (sqlite) time(t time.Time) any { return t.UnixMicro() }

// isUniqueViolation: modernc.org/sqlite reports the extended result code
// through a method; mattn/go-sqlite3 only in its message and in fields of
// a type this package cannot name without importing the driver.
func (sqlite) isUniqueViolation(err error) bool {
	var coded interface{ Code() int }
	if errors.As(err, &coded) {
		code := coded.Code()
		return code == sqliteConstraintUnique || code == sqliteConstraintPrimaryKey
	}
	return strings.Contains(err.Error(), "UNIQUE constraint failed")
}

// SQLite's extended result codes of a unique violation.
const (
	sqliteConstraintPrimaryKey = 1555
	sqliteConstraintUnique     = 2067
)

// isConflict: SQLite has one writer at a time; a busy database waits for
// the busy timeout and then fails, which is not a conflict to retry.
func (sqlite) isConflict(error) bool { return false }

// txOptions: SQLite's transactions are serializable already.
func (sqlite) txOptions() *sql.TxOptions { return nil }

// inMigrationTx takes the write lock at once (BEGIN IMMEDIATE), whatever
// the DSN's _txlock: a deferred transaction that reads first could fail
// to upgrade its lock when another process migrates concurrently.
func (sqlite) inMigrationTx(ctx context.Context, s *Store, fn func(tx execQuerier) error) error {
	conn, err := sqliteConn(ctx, s.db)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	err = fn(conn)
	if err == nil {
		_, err = conn.ExecContext(ctx, "COMMIT")
	}
	if err != nil {
		if _, rbErr := conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK"); rbErr != nil {
			// Still inside the transaction, maybe: discard the
			// connection rather than return it to the pool.
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
		return err
	}
	return nil
}

func (sqlite) migrationStatements() migrationStatements {
	return migrationStatements{
		create: `CREATE TABLE IF NOT EXISTS tokens_schema_migrations (
			version INTEGER NOT NULL PRIMARY KEY,
			name    TEXT    NOT NULL
		) STRICT`,
		selectVersions: `SELECT version FROM tokens_schema_migrations`,
		insert:         `INSERT INTO tokens_schema_migrations (version, name) VALUES (?, ?)`,
	}
}

// sqliteConn connects to SQLite for a migration. Processes that open a
// brand-new file at once race to switch it to WAL, and SQLite answers the
// losers "database is locked" at once, without waiting for the busy
// timeout; so a connection that fails that way is retried for a few
// seconds (both drivers put those words in the message). This is the one
// wait in the package, and it reads no time.
func sqliteConn(ctx context.Context, db *sqlx.DB) (*sql.Conn, error) {
	const attempts = 60
	for attempt := 1; ; attempt++ {
		conn, err := db.Conn(ctx)
		if err == nil || attempt == attempts || !strings.Contains(err.Error(), "database is locked") {
			return conn, err
		}
		wait := time.NewTimer(time.Duration(attempt) * 2 * time.Millisecond)
		select {
		case <-ctx.Done():
			wait.Stop()
			return nil, ctx.Err()
		case <-wait.C:
		}
	}
}

var (
	sqliteKeyColumns      = keySelect(true)
	sqliteTokenKeyColumns = keySelect(false) // for the look-up by token
)

func sqliteParam(n int) string { return "?" + strconv.Itoa(n) }

var sqliteQueries = [numStmts]string{
	selectKey:       sqliteKeyColumns + ` WHERE id = CAST(? AS TEXT)`,
	selectKeyByLink: sqliteKeyColumns + ` WHERE link_digest = CAST(? AS BLOB)`,
	selectKeys:      sqliteKeyColumns + ` WHERE account = CAST(? AS TEXT) ORDER BY created_at, id`,
	keyExists:       `SELECT 1 FROM tokens_keys WHERE id = CAST(? AS TEXT)`,

	insertKey: keyInsert(sqliteParam),
	updateKey: keyUpdate(sqliteParam, func(id, version int) string {
		return "id = CAST(" + sqliteParam(id) + " AS TEXT) AND version = CAST(" + sqliteParam(version) + " AS INTEGER)"
	}),
	deleteKey: `DELETE FROM tokens_keys WHERE id = CAST(? AS TEXT) RETURNING account`,

	// ?1 key, ?2 token digest, ?3 time of use, ?4 stale before.
	recordUse: `UPDATE tokens_keys SET
	current_last_used_at = CASE WHEN current_digest = CAST(?2 AS BLOB) THEN ?3 ELSE current_last_used_at END,
	old_last_used_at = CASE WHEN old_digest = CAST(?2 AS BLOB) THEN ?3 ELSE old_last_used_at END,
	version = version + 1
WHERE id = CAST(?1 AS TEXT) AND (
	(current_digest = CAST(?2 AS BLOB) AND (current_last_used_at IS NULL OR current_last_used_at <= CAST(?4 AS INTEGER))) OR
	(old_digest = CAST(?2 AS BLOB) AND (old_last_used_at IS NULL OR old_last_used_at <= CAST(?4 AS INTEGER))))`,

	expiredLinks: `SELECT id FROM tokens_keys
WHERE link_redeemed_at IS NULL AND link_sealed IS NOT NULL AND link_expires_at <= CAST(? AS INTEGER)
ORDER BY link_expires_at, id
LIMIT ?`,

	countChange:  `UPDATE tokens_change_counter SET seq = seq + 1 RETURNING seq`,
	insertChange: `INSERT INTO tokens_changes (seq, key_id) VALUES (?, ?)`,
	trimChanges:  `DELETE FROM tokens_changes WHERE seq <= CAST(? AS INTEGER)`,
	// One statement, so that the counter and the changes come from one
	// snapshot.
	selectChanges: `SELECT c.seq, ch.key_id
FROM tokens_change_counter c
LEFT JOIN tokens_changes ch ON ch.seq > CAST(? AS INTEGER) AND ch.seq <= c.seq`,

	insertRevoked: `INSERT INTO tokens_revoked (key_id, digest, revoked_at) VALUES (?, ?, ?)
ON CONFLICT (key_id, digest) DO NOTHING`,
	deleteRevoked: `DELETE FROM tokens_revoked WHERE key_id = CAST(? AS TEXT)`,
	selectRevoked: `SELECT revoked_at FROM tokens_revoked WHERE key_id = CAST(? AS TEXT) AND digest = CAST(? AS BLOB)`,
	purgeRevoked:  `DELETE FROM tokens_revoked WHERE revoked_at <= CAST(? AS INTEGER)`,

	insertEvent: `INSERT INTO tokens_events (seq, at, key_id, account, type, actor, policy, old_token_ttl, fields, source, url)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
	selectEvents: `SELECT seq, at, key_id, account, type, actor, policy, old_token_ttl, fields, source, url FROM tokens_events
WHERE seq > CAST(?1 AS INTEGER) ORDER BY seq LIMIT ?2`,
	// ?3: an account to keep, or '' for any.
	selectKeyEvents: `SELECT seq, at, key_id, account, type, actor, policy, old_token_ttl, fields, source, url FROM tokens_events
WHERE key_id = CAST(?4 AS TEXT) AND seq > CAST(?1 AS INTEGER) AND (CAST(?3 AS TEXT) = '' OR account = CAST(?3 AS TEXT))
ORDER BY seq LIMIT ?2`,
	selectAccountEvents: `SELECT seq, at, key_id, account, type, actor, policy, old_token_ttl, fields, source, url FROM tokens_events
WHERE account = CAST(?3 AS TEXT) AND seq > CAST(?1 AS INTEGER) ORDER BY seq LIMIT ?2`,
	purgeEvents: `DELETE FROM tokens_events WHERE at < CAST(? AS INTEGER)`,

	selectAccounts: `SELECT DISTINCT account FROM tokens_keys ORDER BY account`,

	selectKeyByToken: sqliteTokenKeyColumns + ` WHERE current_digest = CAST(?1 AS BLOB)
UNION ALL ` + sqliteTokenKeyColumns + ` WHERE old_digest = CAST(?1 AS BLOB) LIMIT 1`,
	selectRevokedOwner: `SELECT key_id, revoked_at FROM tokens_revoked WHERE digest = CAST(? AS BLOB) ORDER BY revoked_at DESC LIMIT 1`,
	tokenTaken: `SELECT 1 FROM tokens_keys
WHERE id <> CAST(?1 AS TEXT) AND (old_digest = CAST(?2 AS BLOB) OR current_digest = CAST(?3 AS BLOB)) LIMIT 1`,
}
