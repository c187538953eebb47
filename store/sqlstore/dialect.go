package sqlstore

import (
	"errors"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

// dialect is what differs between PostgreSQL and SQLite: placeholders, how
// times are stored, row locking and error codes.
type dialect struct {
	name string // also the directory of its migrations
	q    queries

	// unixMicros stores times as INTEGER Unix microseconds (SQLite)
	// rather than timestamptz (PostgreSQL).
	unixMicros bool
	// rowLocks: the database locks rows (PostgreSQL), not the whole
	// database (SQLite). RecordUse is then one statement that updates a
	// token row and after it the key's row, so every transaction that
	// writes a key locks the key's token rows first, in slot order, and
	// the key's row after them. Writers never wait for each other in a
	// cycle, a deadlock PostgreSQL would break by failing one of them.
	rowLocks bool
}

// queries are the statements of one dialect. Those left empty are not used
// by it.
type queries struct {
	selectKey, selectKeyByLink, selectKeys, keyExists string

	insertKey, casKey, deleteKey string

	selectTokens, insertToken, updateToken, deleteToken, deleteTokens string

	insertLink, upsertLink, deleteLink string

	// recordUse is PostgreSQL's one statement; SQLite runs touchToken then,
	// if a row changed, bumpVersion in a transaction.
	recordUse, touchToken, bumpVersion string

	expiredLinks string

	// countChange takes the next change number, insertChange records the
	// key under it and trimChanges forgets old ones (tokens.ChangeLog).
	countChange, insertChange, trimChanges, selectChanges string

	createMigrations, selectMigrations, insertMigration string
	lockMigrations                                      string // empty: the transaction itself locks
}

const keyColumns = `SELECT k.id, k.account, k.name, k.active, k.created_at, k.version,
	c.digest, c.created_at, c.last_used_at,
	o.digest, o.created_at, o.last_used_at,
	l.digest, l.sealed, l.created_at, l.expires_at, l.redeemed_at`

const tokenJoins = `
	LEFT JOIN tokens_tokens c ON c.key_id = k.id AND c.slot = 'current'
	LEFT JOIN tokens_tokens o ON o.key_id = k.id AND o.slot = 'old'`

// commonQueries are written with ? placeholders.
var commonQueries = queries{
	selectKey: keyColumns + `
	FROM tokens_keys k` + tokenJoins + `
	LEFT JOIN tokens_links l ON l.key_id = k.id
	WHERE k.id = ?`,
	selectKeyByLink: keyColumns + `
	FROM tokens_links l
	JOIN tokens_keys k ON k.id = l.key_id` + tokenJoins + `
	WHERE l.digest = ?`,
	selectKeys: keyColumns + `
	FROM tokens_keys k` + tokenJoins + `
	LEFT JOIN tokens_links l ON l.key_id = k.id
	WHERE k.account = ?
	ORDER BY k.created_at, k.id`,
	keyExists: `SELECT 1 FROM tokens_keys WHERE id = ?`,

	insertKey: `INSERT INTO tokens_keys (id, account, name, active, created_at, version)
	VALUES (?, ?, ?, ?, ?, 1)`,
	casKey: `UPDATE tokens_keys SET name = ?, active = ?, version = version + 1
	WHERE id = ? AND version = ?`,
	deleteKey: `DELETE FROM tokens_keys WHERE id = ?`,

	selectTokens: `SELECT slot, digest, created_at, last_used_at
	FROM tokens_tokens WHERE key_id = ? ORDER BY slot`,
	insertToken: `INSERT INTO tokens_tokens (key_id, slot, digest, created_at, last_used_at)
	VALUES (?, ?, ?, ?, ?)`,
	updateToken: `UPDATE tokens_tokens SET created_at = ?, last_used_at = ?
	WHERE key_id = ? AND slot = ?`,
	deleteToken:  `DELETE FROM tokens_tokens WHERE key_id = ? AND slot = ?`,
	deleteTokens: `DELETE FROM tokens_tokens WHERE key_id = ?`,

	insertLink: `INSERT INTO tokens_links (key_id, digest, sealed, created_at, expires_at, redeemed_at)
	VALUES (?, ?, ?, ?, ?, ?)`,
	upsertLink: `INSERT INTO tokens_links (key_id, digest, sealed, created_at, expires_at, redeemed_at)
	VALUES (?, ?, ?, ?, ?, ?)
	ON CONFLICT (key_id) DO UPDATE SET digest = excluded.digest, sealed = excluded.sealed,
		created_at = excluded.created_at, expires_at = excluded.expires_at,
		redeemed_at = excluded.redeemed_at`,
	deleteLink: `DELETE FROM tokens_links WHERE key_id = ?`,

	expiredLinks: `SELECT key_id FROM tokens_links
	WHERE redeemed_at IS NULL AND sealed IS NOT NULL AND expires_at <= ?
	ORDER BY expires_at, key_id
	LIMIT ?`,

	countChange:  `UPDATE tokens_change_counter SET seq = seq + 1 RETURNING seq`,
	insertChange: `INSERT INTO tokens_changes (seq, key_id) VALUES (?, ?)`,
	trimChanges:  `DELETE FROM tokens_changes WHERE seq <= ?`,
	// One statement, so that the counter and the changes come from one
	// snapshot.
	selectChanges: `SELECT c.seq, ch.key_id
	FROM tokens_change_counter c
	LEFT JOIN tokens_changes ch ON ch.seq > ? AND ch.seq <= c.seq`,

	insertMigration:  `INSERT INTO tokens_schema_migrations (version, name) VALUES (?, ?)`,
	selectMigrations: `SELECT version FROM tokens_schema_migrations`,
}

var postgres = func() *dialect {
	q := rebind(commonQueries, sqlx.DOLLAR)
	q.selectTokens += ` FOR UPDATE`
	// The token row is updated, and locked, before the key's row: the
	// order every writer follows.
	q.recordUse = `WITH used AS (
		UPDATE tokens_tokens SET last_used_at = $3
		WHERE key_id = $1 AND digest = $2 AND (last_used_at IS NULL OR last_used_at <= $4)
		RETURNING key_id
	)
	UPDATE tokens_keys SET version = version + 1
	WHERE id = $1 AND EXISTS (SELECT 1 FROM used)`
	q.createMigrations = `CREATE TABLE IF NOT EXISTS tokens_schema_migrations (
		version integer PRIMARY KEY,
		name    text    NOT NULL
	)`
	// Serialises migrations of the whole database until the transaction
	// ends; the number is an arbitrary constant owned by this package.
	q.lockMigrations = `SELECT pg_advisory_xact_lock(7386409271203512391)`
	return &dialect{name: "postgres", q: q, rowLocks: true}
}()

var sqlite = func() *dialect {
	q := commonQueries
	// A bare parameter compared with = in a query SQLite plans in full (a
	// join, or an index it does not use whole) is marked "re-prepare when
	// rebound" by the planner, and mattn/go-sqlite3 clears the bindings
	// before every execution, which expires such a statement: each
	// execution re-parsed and re-planned it, 5-10x the cost of the look-up.
	// A CAST is not a bare parameter, and the indexes are used the same way.
	q.selectKey = castParam(q.selectKey, "k.id = ?", "k.id = CAST(? AS TEXT)")
	q.selectKeyByLink = castParam(q.selectKeyByLink, "l.digest = ?", "l.digest = CAST(? AS BLOB)")
	q.selectKeys = castParam(q.selectKeys, "k.account = ?", "k.account = CAST(? AS TEXT)")
	q.selectTokens = castParam(q.selectTokens, "key_id = ?", "key_id = CAST(? AS TEXT)")
	q.touchToken = `UPDATE tokens_tokens SET last_used_at = ?
	WHERE key_id = ? AND digest = ? AND (last_used_at IS NULL OR last_used_at <= ?)`
	q.bumpVersion = `UPDATE tokens_keys SET version = version + 1 WHERE id = ?`
	q.createMigrations = `CREATE TABLE IF NOT EXISTS tokens_schema_migrations (
		version INTEGER NOT NULL PRIMARY KEY,
		name    TEXT    NOT NULL
	) STRICT`
	return &dialect{name: "sqlite", q: q, unixMicros: true}
}()

func rebind(q queries, bindType int) queries {
	for _, s := range []*string{
		&q.selectKey, &q.selectKeyByLink, &q.selectKeys, &q.keyExists,
		&q.insertKey, &q.casKey, &q.deleteKey,
		&q.selectTokens, &q.insertToken, &q.updateToken, &q.deleteToken, &q.deleteTokens,
		&q.insertLink, &q.upsertLink, &q.deleteLink,
		&q.touchToken, &q.bumpVersion, &q.expiredLinks,
		&q.countChange, &q.insertChange, &q.trimChanges, &q.selectChanges,
		&q.insertMigration, &q.selectMigrations,
	} {
		*s = sqlx.Rebind(bindType, *s)
	}
	return q
}

// castParam rewrites the comparison bare in query as cast; it panics at
// start-up if the query no longer has it, so the rewrite cannot silently
// stop applying.
func castParam(query, bare, cast string) string {
	if !strings.Contains(query, bare) {
		panic("sqlstore: query lacks " + bare)
	}
	return strings.Replace(query, bare, cast, 1)
}

// dialectFor picks the dialect of a database/sql driver name.
func dialectFor(driverName string) (*dialect, bool) {
	switch driverName {
	case "sqlite3":
		return sqlite, true
	case "postgres", "pgx", "pgx/v5":
		return postgres, true
	}
	return nil, false
}

// time returns t as the dialect stores it, truncated to microseconds on
// both so that every backend keeps the same instant.
func (d *dialect) time(t time.Time) any {
	if d.unixMicros {
		return t.UnixMicro()
	}
	return t.UTC().Truncate(time.Microsecond)
}

// nullTime is time for a column where NULL stands for the zero time.
func (d *dialect) nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return d.time(t)
}

// isUniqueViolation reports whether err is a unique or primary key
// violation. The drivers are not imported: lib/pq and pgx errors report
// their SQLSTATE through a method, mattn/go-sqlite3 only through its
// message (and fields of a type this package cannot name).
func (d *dialect) isUniqueViolation(err error) bool {
	if d == sqlite {
		return strings.Contains(err.Error(), "UNIQUE constraint failed")
	}
	var coded interface{ SQLState() string }
	return errors.As(err, &coded) && coded.SQLState() == "23505"
}
