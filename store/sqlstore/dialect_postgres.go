package sqlstore

import (
	"context"
	"errors"
	"strconv"
	"time"

	"database/sql"
)

// postgres is the dialect of PostgreSQL, through lib/pq or pgx: $n
// placeholders, timestamptz times, row locks.
//
// Every write of a key is one statement on its row, so a transaction
// locks that row first and the change counter's row last (logChange):
// writers never wait for each other in a cycle.
type postgres struct{}

func (postgres) name() string { return "postgres" }

func (postgres) query(id stmtID) string { return postgresQueries[id] }

func (postgres) time(t time.Time) any { return t.UTC().Truncate(time.Microsecond) }

// isUniqueViolation: lib/pq and pgx report the SQLSTATE through a method,
// so neither driver is imported.
func (postgres) isUniqueViolation(err error) bool {
	var coded interface{ SQLState() string }
	return errors.As(err, &coded) && coded.SQLState() == "23505"
}

// isConflict: 40001 serialization_failure, 40P01 deadlock_detected.
func (postgres) isConflict(err error) bool {
	var coded interface{ SQLState() string }
	return errors.As(err, &coded) && (coded.SQLState() == "40001" || coded.SQLState() == "40P01")
}

// txOptions asks for READ COMMITTED whatever the database's or role's
// default_transaction_isolation: the change counter, which every write
// updates, relies on a waiting UPDATE seeing the row its predecessor
// committed; under REPEATABLE READ or SERIALIZABLE writers of different
// keys would fail each other.
func (postgres) txOptions() *sql.TxOptions {
	return &sql.TxOptions{Isolation: sql.LevelReadCommitted}
}

// inMigrationTx serialises migrations of the whole database with a
// transaction-scoped advisory lock, whose number is an arbitrary constant
// owned by this package.
func (postgres) inMigrationTx(ctx context.Context, s *Store, fn func(tx execQuerier) error) error {
	return s.inUnpreparedTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(7386409271203512391)`); err != nil {
			return err
		}
		return fn(tx)
	})
}

func (postgres) migrationStatements() migrationStatements {
	return migrationStatements{
		create: `CREATE TABLE IF NOT EXISTS tokens_schema_migrations (
			version integer PRIMARY KEY,
			name    text    NOT NULL
		)`,
		selectVersions: `SELECT version FROM tokens_schema_migrations`,
		insert:         `INSERT INTO tokens_schema_migrations (version, name) VALUES ($1, $2)`,
	}
}

var postgresKeyColumns = keySelect()

func postgresParam(n int) string { return "$" + strconv.Itoa(n) }

var postgresQueries = [numStmts]string{
	selectKey:       postgresKeyColumns + ` WHERE id = $1`,
	selectKeyByLink: postgresKeyColumns + ` WHERE link_digest = $1`,
	selectKeys:      postgresKeyColumns + ` WHERE account = $1 ORDER BY created_at, id`,
	keyExists:       `SELECT 1 FROM tokens_keys WHERE id = $1`,

	insertKey: keyInsert(postgresParam),
	updateKey: keyUpdate(postgresParam, func(id, version int) string {
		return "id = " + postgresParam(id) + " AND version = " + postgresParam(version)
	}),
	deleteKey: `DELETE FROM tokens_keys WHERE id = $1 RETURNING account`,

	// $1 key, $2 token digest, $3 time of use, $4 stale before.
	recordUse: `UPDATE tokens_keys SET
	current_last_used_at = CASE WHEN current_digest = $2 THEN $3::timestamptz ELSE current_last_used_at END,
	old_last_used_at = CASE WHEN old_digest = $2 THEN $3::timestamptz ELSE old_last_used_at END,
	version = version + 1
WHERE id = $1 AND (
	(current_digest = $2 AND (current_last_used_at IS NULL OR current_last_used_at <= $4)) OR
	(old_digest = $2 AND (old_last_used_at IS NULL OR old_last_used_at <= $4)))`,

	expiredLinks: `SELECT id FROM tokens_keys
WHERE link_redeemed_at IS NULL AND link_sealed IS NOT NULL AND link_expires_at <= $1
ORDER BY link_expires_at, id
LIMIT $2`,

	countChange:  `UPDATE tokens_change_counter SET seq = seq + 1 RETURNING seq`,
	insertChange: `INSERT INTO tokens_changes (seq, key_id) VALUES ($1, $2)`,
	trimChanges:  `DELETE FROM tokens_changes WHERE seq <= $1`,
	// One statement, so that the counter and the changes come from one
	// snapshot.
	selectChanges: `SELECT c.seq, ch.key_id
FROM tokens_change_counter c
LEFT JOIN tokens_changes ch ON ch.seq > $1 AND ch.seq <= c.seq`,

	insertRevoked: `INSERT INTO tokens_revoked (key_id, digest, revoked_at) VALUES ($1, $2, $3)
ON CONFLICT (key_id, digest) DO NOTHING`,
	deleteRevoked: `DELETE FROM tokens_revoked WHERE key_id = $1`,
	selectRevoked: `SELECT revoked_at FROM tokens_revoked WHERE key_id = $1 AND digest = $2`,
	purgeRevoked:  `DELETE FROM tokens_revoked WHERE revoked_at <= $1`,

	insertEvent: `INSERT INTO tokens_events (seq, at, key_id, account, type, actor, policy, old_token_ttl, fields, source, url)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
	selectEvents: `SELECT seq, at, key_id, account, type, actor, policy, old_token_ttl, fields, source, url FROM tokens_events
WHERE seq > $1 ORDER BY seq LIMIT $2`,
	// $3: an account to keep, or '' for any.
	selectKeyEvents: `SELECT seq, at, key_id, account, type, actor, policy, old_token_ttl, fields, source, url FROM tokens_events
WHERE key_id = $4 AND seq > $1 AND ($3 = '' OR account = $3) ORDER BY seq LIMIT $2`,
	selectAccountEvents: `SELECT seq, at, key_id, account, type, actor, policy, old_token_ttl, fields, source, url FROM tokens_events
WHERE account = $3 AND seq > $1 ORDER BY seq LIMIT $2`,
	purgeEvents: `DELETE FROM tokens_events WHERE at < $1`,

	// The account index serves it: a skip over distinct values.
	selectAccounts: `SELECT DISTINCT account FROM tokens_keys ORDER BY account`,

	// Each branch is a look-up of a unique index; a digest is in one of
	// them at most.
	selectKeyByToken: `(` + postgresKeyColumns + ` WHERE current_digest = $1)
UNION ALL (` + postgresKeyColumns + ` WHERE old_digest = $1) LIMIT 1`,
	selectRevokedOwner: `SELECT key_id, revoked_at FROM tokens_revoked WHERE digest = $1 LIMIT 1`,
	// $1 the key, $2 its current digest, $3 its old digest or NULL: is a
	// digest of the key the other slot's of another key? (Same slots
	// collide in the unique indexes.)
	tokenTaken: `SELECT 1 FROM tokens_keys WHERE id <> $1 AND (old_digest = $2 OR current_digest = $3) LIMIT 1`,
}
