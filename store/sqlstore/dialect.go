package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// dialect is what differs between PostgreSQL and SQLite: the text of each
// statement, how times are stored, how a unique violation is reported and
// how migrations are serialised. The store's methods have one path for
// both; each difference is a method here.
type dialect interface {
	// name is also the directory of the dialect's migrations.
	name() string
	// query returns the text of statement id, written out in full.
	query(id stmtID) string
	// time returns t as the dialect stores it, truncated to microseconds,
	// so that every backend keeps the same instant.
	time(t time.Time) any
	// isUniqueViolation reports whether err is a unique or primary key
	// violation.
	isUniqueViolation(err error) bool
	// isConflict reports whether err is the database giving up on a
	// transaction that met another (a serialization failure or a
	// deadlock), which the Manager retries like a lost compare-and-swap.
	isConflict(err error) bool
	// txOptions are the options of every transaction of the store.
	txOptions() *sql.TxOptions
	// inMigrationTx runs fn in a transaction that no other migration of
	// the database runs beside, committed if fn returns nil.
	inMigrationTx(ctx context.Context, s *Store, fn func(tx execQuerier) error) error
	// migrationStatements are the statements that keep
	// tokens_schema_migrations.
	migrationStatements() migrationStatements
	// changeLog is the dialect's design of the change log and audit trail.
	changeLog() changeLog
}

// stmtID names a statement of the store.
type stmtID int

const (
	selectKey stmtID = iota
	selectKeyByLink
	selectKeys
	keyExists
	insertKey
	updateKey
	deleteKey
	recordUse
	expiredLinks
	countChange
	insertChange
	insertChangeEvent
	trimChanges
	selectChanges
	insertRevoked
	deleteRevoked
	selectRevoked
	purgeRevoked
	insertEvent
	selectEvents
	selectKeyEvents
	selectAccountEvents
	purgeEvents
	selectAccounts
	selectKeyByToken
	selectRevokedOwner
	tokenTaken
	numStmts
)

// statements describes every statement of the store, the one list that
// preparation, closing and tests go by. Those run inside a transaction
// are prepared, all at once, before the first transaction (see inTx).
// A statement of only one dialect's change log names it in only; the
// other dialect has no text for it.
var statements = [numStmts]struct {
	name string
	inTx bool
	only string
}{
	selectKey:           {name: "select key"},
	selectKeyByLink:     {name: "select key by link"},
	selectKeys:          {name: "select keys"},
	keyExists:           {name: "key exists", inTx: true},
	insertKey:           {name: "insert key", inTx: true},
	updateKey:           {name: "update key", inTx: true},
	deleteKey:           {name: "delete key", inTx: true},
	recordUse:           {name: "record use"},
	expiredLinks:        {name: "expired links"},
	countChange:         {name: "count change", inTx: true, only: "sqlite"},
	insertChange:        {name: "insert change", inTx: true},
	insertChangeEvent:   {name: "insert change and event", inTx: true, only: "postgres"},
	trimChanges:         {name: "trim changes", inTx: true}, // on PostgreSQL, after the COMMIT
	selectChanges:       {name: "select changes"},
	insertRevoked:       {name: "insert revoked token", inTx: true},
	deleteRevoked:       {name: "delete revoked tokens", inTx: true},
	selectRevoked:       {name: "select revoked token"},
	purgeRevoked:        {name: "purge revoked tokens"},
	insertEvent:         {name: "insert event", inTx: true, only: "sqlite"},
	selectEvents:        {name: "select events"},
	selectKeyEvents:     {name: "select events of a key"},
	selectAccountEvents: {name: "select events of an account"},
	purgeEvents:         {name: "purge events"},
	selectAccounts:      {name: "select accounts"},
	selectKeyByToken:    {name: "select key by token"},
	selectRevokedOwner:  {name: "select revoked token owner"},
	tokenTaken:          {name: "token taken", inTx: true},
}

// migrationStatements keep tokens_schema_migrations. They run unprepared,
// once per Migrate.
type migrationStatements struct {
	create, selectVersions, insert string
}

// dialectFor picks the dialect of a database/sql driver name.
func dialectFor(driverName string) (dialect, bool) {
	switch driverName {
	case "sqlite3", "sqlite":
		return sqlite{}, true
	case "postgres", "pgx", "pgx/v5":
		return postgres{}, true
	}
	return nil, false
}

func init() {
	for _, d := range []dialect{postgres{}, sqlite{}} {
		for id := range numStmts {
			if used(d, id) != (d.query(id) != "") {
				panic(fmt.Sprintf("sqlstore: %s lacks the statement %q, or has one it does not use", d.name(), statements[id].name))
			}
		}
	}
}

// used reports whether dialect d runs statement id.
func used(d dialect, id stmtID) bool {
	only := statements[id].only
	return only == "" || only == d.name()
}

// nullTime is d.time for a column where NULL stands for the zero time.
func nullTime(d dialect, t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return d.time(t)
}
