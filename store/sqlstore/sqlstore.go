package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/keyrenew/tokens"
)

// Store is a tokens.Store in a SQLite or PostgreSQL database. It is safe for
// concurrent use, also by many processes sharing the database.
//
// A write whose COMMIT fails returns an error that wraps both the driver's
// error and tokens.ErrOutcomeUnknown: the database may have committed it
// (a connection lost, or a deadline hit, while the COMMIT was in flight).
// A write that fails before its COMMIT wrote nothing, and its error does
// not wrap ErrOutcomeUnknown. Given a nil context, the methods of
// tokens.Store return an error wrapping tokens.ErrNilContext before any
// call into database/sql.
type Store struct {
	db  *sqlx.DB
	d   dialect
	log changeLog

	stmts   [numStmts]atomic.Pointer[sql.Stmt]
	txReady atomic.Bool // the statements of transactions are prepared
}

var (
	_ tokens.Store         = (*Store)(nil)
	_ tokens.ChangeLog     = (*Store)(nil)
	_ tokens.AccountLister = (*Store)(nil)
	_ tokens.TokenIndex    = (*Store)(nil)
)

// New returns a store in db, choosing the SQL dialect from db.DriverName():
// "sqlite3" (github.com/mattn/go-sqlite3), "sqlite" (modernc.org/sqlite),
// "postgres" (github.com/lib/pq) or "pgx" (github.com/jackc/pgx/v5/stdlib). It does not touch the
// database: call Migrate, or apply the schema with your own tool.
func New(db *sqlx.DB) (*Store, error) {
	if db == nil {
		return nil, errors.New("sqlstore: nil database")
	}
	d, ok := dialectFor(db.DriverName())
	if !ok {
		return nil, fmt.Errorf("%w (got %q)", ErrUnsupportedDriver, db.DriverName())
	}
	return &Store{db: db, d: d, log: d.changeLog()}, nil
}

// Close releases the store's prepared statements. It does not close the
// database, which belongs to the caller.
func (s *Store) Close() error {
	return s.closeStatements()
}

// InsertKey implements tokens.Store: in one transaction, the INSERT of the
// key's row, then the change log's append with its event.
func (s *Store) InsertKey(ctx context.Context, rec *tokens.KeyRecord) error {
	var logged logged
	err := s.inTx(ctx, func(tx *sql.Tx) (err error) {
		if _, err := s.exec(ctx, tx, insertKey, keyArgs(s.d, rec, false)...); err != nil {
			return err
		}
		if err := s.checkTokens(ctx, tx, rec); err != nil {
			return err
		}
		logged, err = s.log.append(ctx, s, tx, rec.ID, rec.Event)
		return err
	})
	if err != nil {
		return s.fail("insert key", err)
	}
	s.log.committed(ctx, s, logged)
	rec.Version = 1
	return nil
}

// Key implements tokens.Store: one prepared SELECT of the key's row by
// primary key.
func (s *Store) Key(ctx context.Context, id string) (tokens.KeyRecord, error) {
	stmt, err := s.stmt(ctx, selectKey)
	if err != nil {
		return tokens.KeyRecord{}, s.fail("key", err)
	}
	rec, err := scanKey(stmt.QueryRowContext(ctx, id))
	if err != nil {
		return tokens.KeyRecord{}, s.fail("key", err)
	}
	return rec, nil
}

// KeyByLink implements tokens.Store with one prepared SELECT.
func (s *Store) KeyByLink(ctx context.Context, link tokens.Digest) (tokens.KeyRecord, error) {
	stmt, err := s.stmt(ctx, selectKeyByLink)
	if err != nil {
		return tokens.KeyRecord{}, s.fail("key by link", err)
	}
	rec, err := scanKey(stmt.QueryRowContext(ctx, link[:]))
	if err != nil {
		return tokens.KeyRecord{}, s.fail("key by link", err)
	}
	return rec, nil
}

// Keys implements tokens.Store with one prepared SELECT.
func (s *Store) Keys(ctx context.Context, account string) ([]tokens.KeyRecord, error) {
	recs, err := s.keys(ctx, account)
	if err != nil {
		return nil, s.fail("keys", err)
	}
	return recs, nil
}

func (s *Store) keys(ctx context.Context, account string) ([]tokens.KeyRecord, error) {
	rows, err := s.query(ctx, nil, selectKeys, account)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	recs := []tokens.KeyRecord{}
	for rows.Next() {
		rec, err := scanKey(rows)
		if err != nil {
			return nil, err
		}
		recs = append(recs, rec)
	}
	return recs, rows.Err()
}

// UpdateKey implements tokens.Store: in one transaction, an UPDATE of the
// key's row on its version (compare-and-swap), an INSERT of each token it
// revokes, then the change log's append with its event.
func (s *Store) UpdateKey(ctx context.Context, rec *tokens.KeyRecord) error {
	var logged logged
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		n, err := s.exec(ctx, tx, updateKey, keyArgs(s.d, rec, true)...)
		if err != nil {
			return err
		}
		if n == 0 {
			return s.conflictOrMissing(ctx, tx, rec.ID)
		}
		if err := s.checkTokens(ctx, tx, rec); err != nil {
			return err
		}
		for _, r := range rec.Revoked {
			if _, err := s.exec(ctx, tx, insertRevoked, rec.ID, r.Digest[:], s.d.time(r.RevokedAt)); err != nil {
				return err
			}
		}
		logged, err = s.log.append(ctx, s, tx, rec.ID, rec.Event)
		return err
	})
	if err != nil {
		return s.fail("update key", err)
	}
	s.log.committed(ctx, s, logged)
	rec.Version++
	return nil
}

// checkTokens refuses, with ErrDuplicate, a record whose current digest is
// another key's old one or whose old digest is another key's current one
// (tokens.TokenIndex); the unique indexes refuse a digest in the same
// slot of two keys. It runs after the write, which takes the locks first:
// a deferred SQLite transaction that read first could not upgrade.
func (s *Store) checkTokens(ctx context.Context, tx *sql.Tx, rec *tokens.KeyRecord) error {
	stmt, err := s.txStmt(ctx, tx, tokenTaken)
	if err != nil {
		return err
	}
	var old any // NULL: matches nothing
	if rec.HasOld {
		old = rec.Old.Digest[:]
	}
	var one int
	switch err := stmt.QueryRowContext(ctx, rec.ID, rec.Current.Digest[:], old).Scan(&one); {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return err
	}
	return tokens.ErrDuplicate
}

// KeyByToken implements tokens.TokenIndex with one prepared SELECT of two
// unique index look-ups, which leaves the sealed link token in the
// database.
func (s *Store) KeyByToken(ctx context.Context, digest tokens.Digest) (tokens.KeyRecord, error) {
	stmt, err := s.stmt(ctx, selectKeyByToken)
	if err != nil {
		return tokens.KeyRecord{}, s.fail("key by token", err)
	}
	rec, err := scanKey(stmt.QueryRowContext(ctx, digest[:]))
	if err != nil {
		return tokens.KeyRecord{}, s.fail("key by token", err)
	}
	return rec, nil
}

// RevokedTokenOwner implements tokens.TokenIndex with one prepared SELECT.
func (s *Store) RevokedTokenOwner(ctx context.Context, revoked tokens.Digest) (string, tokens.RevokedToken, bool, error) {
	stmt, err := s.stmt(ctx, selectRevokedOwner)
	if err != nil {
		return "", tokens.RevokedToken{}, false, s.fail("revoked token owner", err)
	}
	var (
		id string
		at timeColumn
	)
	err = stmt.QueryRowContext(ctx, revoked[:]).Scan(&id, &at)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", tokens.RevokedToken{}, false, nil
	case err != nil:
		return "", tokens.RevokedToken{}, false, s.fail("revoked token owner", err)
	}
	return id, tokens.RevokedToken{Digest: revoked, RevokedAt: time.Time(at)}, true, nil
}

// conflictOrMissing tells why a compare-and-swap of key id changed nothing.
func (s *Store) conflictOrMissing(ctx context.Context, tx *sql.Tx, id string) error {
	stmt, err := s.txStmt(ctx, tx, keyExists)
	if err != nil {
		return err
	}
	var one int
	if err := stmt.QueryRowContext(ctx, id).Scan(&one); err != nil {
		return err // sql.ErrNoRows: the key does not exist
	}
	return tokens.ErrConflict
}

// DeleteKey implements tokens.Store: in one transaction, a DELETE of the
// key's row, which holds its tokens and link, and of its revoked tokens,
// then the change log's append with ev.
func (s *Store) DeleteKey(ctx context.Context, id string, ev *tokens.Event) error {
	var logged logged
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		stmt, err := s.txStmt(ctx, tx, deleteKey)
		if err != nil {
			return err
		}
		var account string
		if err := stmt.QueryRowContext(ctx, id).Scan(&account); err != nil {
			return err // sql.ErrNoRows: no such key
		}
		if _, err := s.exec(ctx, tx, deleteRevoked, id); err != nil {
			return err
		}
		if ev != nil {
			withAccount := *ev
			withAccount.Account = account
			ev = &withAccount
		}
		logged, err = s.log.append(ctx, s, tx, id, ev)
		return err
	})
	if err != nil {
		return s.fail("delete key", err)
	}
	s.log.committed(ctx, s, logged)
	return nil
}

// RecordUse implements tokens.Store with one UPDATE of the key's row.
func (s *Store) RecordUse(ctx context.Context, id string, token tokens.Digest, at, staleBefore time.Time) error {
	if _, err := s.exec(ctx, nil, recordUse, id, token[:], s.d.time(at), s.d.time(staleBefore)); err != nil {
		return s.fail("record use", err)
	}
	return nil
}

// ExpiredLinks implements tokens.Store, earliest expiry first.
func (s *Store) ExpiredLinks(ctx context.Context, now time.Time, limit int) ([]string, error) {
	if limit <= 0 {
		return []string{}, nil
	}
	ids, err := s.expiredLinks(ctx, now, limit)
	if err != nil {
		return nil, s.fail("expired links", err)
	}
	return ids, nil
}

func (s *Store) expiredLinks(ctx context.Context, now time.Time, limit int) ([]string, error) {
	rows, err := s.query(ctx, nil, expiredLinks, s.d.time(now), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	ids := []string{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// Changes implements tokens.ChangeLog with one prepared SELECT: see the
// dialect's changeLog for what a position is.
func (s *Store) Changes(ctx context.Context, since tokens.ChangePosition) (tokens.Changes, error) {
	changes, err := s.log.changes(ctx, s, since)
	if err != nil {
		return tokens.Changes{}, s.fail("changes", err)
	}
	return changes, nil
}

// RevokedToken implements tokens.Store with one prepared SELECT.
func (s *Store) RevokedToken(ctx context.Context, id string, digest tokens.Digest) (tokens.RevokedToken, bool, error) {
	stmt, err := s.stmt(ctx, selectRevoked)
	if err != nil {
		return tokens.RevokedToken{}, false, s.fail("revoked token", err)
	}
	var at timeColumn
	err = stmt.QueryRowContext(ctx, id, digest[:]).Scan(&at)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return tokens.RevokedToken{}, false, nil
	case err != nil:
		return tokens.RevokedToken{}, false, s.fail("revoked token", err)
	}
	return tokens.RevokedToken{Digest: digest, RevokedAt: time.Time(at)}, true, nil
}

// PurgeRevoked implements tokens.Store with one DELETE.
func (s *Store) PurgeRevoked(ctx context.Context, cutoff time.Time) (int, error) {
	n, err := s.exec(ctx, nil, purgeRevoked, s.d.time(cutoff))
	if err != nil {
		return 0, s.fail("purge revoked tokens", err)
	}
	return int(n), nil
}

// Events implements tokens.Store with one or two prepared SELECTs: see
// the dialect's changeLog for what a Cursor is.
func (s *Store) Events(ctx context.Context, q tokens.EventQuery) ([]tokens.Event, error) {
	events, err := s.log.events(ctx, s, q)
	if err != nil {
		return nil, s.fail("events", err)
	}
	return events, nil
}

// PurgeEvents implements tokens.Store with one DELETE.
func (s *Store) PurgeEvents(ctx context.Context, before time.Time) (int, error) {
	n, err := s.exec(ctx, nil, purgeEvents, s.d.time(before))
	if err != nil {
		return 0, s.fail("purge events", err)
	}
	return int(n), nil
}

// Accounts implements tokens.AccountLister with one prepared SELECT.
func (s *Store) Accounts(ctx context.Context) ([]string, error) {
	accounts, err := s.accounts(ctx)
	if err != nil {
		return nil, s.fail("accounts", err)
	}
	return accounts, nil
}

func (s *Store) accounts(ctx context.Context) ([]string, error) {
	rows, err := s.query(ctx, nil, selectAccounts)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	accounts := []string{}
	for rows.Next() {
		var account string
		if err := rows.Scan(&account); err != nil {
			return nil, err
		}
		accounts = append(accounts, account)
	}
	return accounts, rows.Err()
}
