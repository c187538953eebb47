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
// Every write of a key is one statement on its row, which it locks first;
// the change log (snapshotLog) then adds rows and takes no lock that
// another writer waits for, so writers of different keys never wait for
// each other.
type postgres struct{}

func (postgres) changeLog() changeLog { return snapshotLog{} }

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
// default_transaction_isolation: a compare-and-swap UPDATE that waited
// for a writer of the same key then sees its row and changes nothing
// (a conflict the Manager retries), where REPEATABLE READ or SERIALIZABLE
// would fail with a serialization error. The change log needs no
// isolation: its reads are single statements, each on one snapshot.
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

var (
	postgresKeyColumns      = keySelect(true)
	postgresTokenKeyColumns = keySelect(false) // for the look-up by token
)

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

	// The change log (snapshotLog): seq and xid come from the columns'
	// defaults, nextval('tokens_changes_seq') and pg_current_xact_id().
	insertChange: `INSERT INTO tokens_changes (key_id) VALUES ($1) RETURNING seq`,
	// One round trip for the change and its event, which takes the
	// change's number.
	insertChangeEvent: `WITH c AS (INSERT INTO tokens_changes (key_id) VALUES ($2) RETURNING seq)
INSERT INTO tokens_events (seq, at, key_id, account, type, actor, policy, old_token_ttl, fields, source, url)
SELECT c.seq, $1::timestamptz, $3::text, $4::text, $5::text, $6::text, $7::smallint, $8::bigint, $9::text, $10::text, $11::text FROM c
RETURNING seq`,
	// $1 how many changes to keep at least. It keeps as well every change
	// of a transaction that a snapshot taken now does not see as committed
	// (xid >= the snapshot's xmin), so a long transaction elsewhere holds
	// the trim back rather than the readers' completeness. The horizon
	// moves in the same statement as the DELETE, under a row lock taken
	// with SKIP LOCKED: a second trimmer does nothing, and no writer ever
	// takes that row.
	trimChanges: `WITH h AS (
	SELECT xid FROM tokens_changes_horizon FOR UPDATE SKIP LOCKED
), cut AS (
	SELECT least(
		(SELECT c.xid FROM tokens_changes c ORDER BY c.xid DESC OFFSET $1 LIMIT 1),
		pg_snapshot_xmin(pg_current_snapshot())) AS xid
	FROM h
), moved AS (
	UPDATE tokens_changes_horizon SET xid = cut.xid FROM cut
	WHERE tokens_changes_horizon.xid < cut.xid
	RETURNING cut.xid
)
DELETE FROM tokens_changes WHERE xid < (SELECT xid FROM moved)`,
	// $1 the reader's snapshot S0. One statement, so that S1 (the
	// statement's own snapshot), the horizon and the changes come from
	// one snapshot. Complete unless a trim passed S0's xmin or S0 is
	// ahead of S1 (not a snapshot this database gave).
	selectChanges: `WITH s AS (SELECT $1::pg_snapshot AS s0, pg_current_snapshot() AS s1)
SELECT s.s1::text,
	h.xid <= pg_snapshot_xmin(s.s0) AND pg_snapshot_xmax(s.s0) <= pg_snapshot_xmax(s.s1),
	c.key_id
FROM s CROSS JOIN tokens_changes_horizon h
LEFT JOIN tokens_changes c ON c.xid >= pg_snapshot_xmin(s.s0) AND c.xid < pg_snapshot_xmax(s.s1)
	AND NOT pg_visible_in_snapshot(c.xid, s.s0) AND pg_visible_in_snapshot(c.xid, s.s1)`,

	insertRevoked: `INSERT INTO tokens_revoked (key_id, digest, revoked_at) VALUES ($1, $2, $3)
ON CONFLICT (key_id, digest) DO NOTHING`,
	deleteRevoked: `DELETE FROM tokens_revoked WHERE key_id = $1`,
	selectRevoked: `SELECT revoked_at FROM tokens_revoked WHERE key_id = $1 AND digest = $2`,
	purgeRevoked:  `DELETE FROM tokens_revoked WHERE revoked_at <= $1`,

	// The batch of events visible in S1 and not in S0, after seq $3, at
	// most $4: $1 S0, $2 S1 or NULL for the statement's own snapshot,
	// which is returned on every row (one row with NULL events if none).
	selectEvents: postgresBatch(``),
	// $5: an account to keep, or '' for any.
	selectKeyEvents:     postgresBatch(`AND e.key_id = $6 AND ($5 = '' OR e.account = $5)`),
	selectAccountEvents: postgresBatch(`AND e.account = $5`),
	purgeEvents:         `DELETE FROM tokens_events WHERE at < $1`,

	// The account index serves it: a skip over distinct values.
	selectAccounts: `SELECT DISTINCT account FROM tokens_keys ORDER BY account`,

	// Each branch is a look-up of a unique index; a digest is in one of
	// them at most.
	selectKeyByToken: `(` + postgresTokenKeyColumns + ` WHERE current_digest = $1)
UNION ALL (` + postgresTokenKeyColumns + ` WHERE old_digest = $1) LIMIT 1`,
	selectRevokedOwner: `SELECT key_id, revoked_at FROM tokens_revoked WHERE digest = $1 ORDER BY revoked_at DESC LIMIT 1`,
	// $1 the key, $2 its current digest, $3 its old digest or NULL: is a
	// digest of the key the other slot's of another key? (Same slots
	// collide in the unique indexes.)
	tokenTaken: `SELECT 1 FROM tokens_keys WHERE id <> $1 AND (old_digest = $2 OR current_digest = $3) LIMIT 1`,
}

// postgresBatch is the select of a batch of events (snapshotLog.events),
// with filter added to its conditions.
func postgresBatch(filter string) string {
	return `WITH s AS (SELECT $1::pg_snapshot AS s0, coalesce($2::text::pg_snapshot, pg_current_snapshot()) AS s1)
SELECT s.s1::text, e.seq, e.at, e.key_id, e.account, e.type, e.actor, e.policy, e.old_token_ttl, e.fields, e.source, e.url
FROM s LEFT JOIN LATERAL (
	SELECT * FROM tokens_events e
	WHERE e.xid >= pg_snapshot_xmin(s.s0) AND e.xid < pg_snapshot_xmax(s.s1)
		AND NOT pg_visible_in_snapshot(e.xid, s.s0) AND pg_visible_in_snapshot(e.xid, s.s1)
		AND e.seq > $3 ` + filter + `
	ORDER BY e.seq LIMIT $4
) e ON true
ORDER BY e.seq`
}
