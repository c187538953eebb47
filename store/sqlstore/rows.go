package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/keyrenew/tokens"
)

const (
	slotCurrent = "current"
	slotOld     = "old"
)

// slots are the token slots in the order their rows are locked.
var slots = [2]string{slotCurrent, slotOld}

// storedToken is a token row as a transaction found it.
type storedToken struct {
	ok  bool
	rec tokens.TokenRecord
}

// lockTokens reads the token rows of key id, by slot; on PostgreSQL it also
// locks them until the transaction ends.
func (s *Store) lockTokens(ctx context.Context, tx *sqlx.Tx, id string) ([2]storedToken, error) {
	var stored [2]storedToken
	rows, err := s.query(ctx, tx, s.d.q.selectTokens, id)
	if err != nil {
		return stored, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			slot   string
			digest nullDigest
			tok    tokens.TokenRecord
		)
		err := rows.Scan(&slot, &digest,
			(*timeColumn)(&tok.CreatedAt), (*timeColumn)(&tok.LastUsedAt))
		if err != nil {
			return stored, err
		}
		tok.Digest = digest.d
		switch slot {
		case slotCurrent:
			stored[0] = storedToken{ok: true, rec: tok}
		case slotOld:
			stored[1] = storedToken{ok: true, rec: tok}
		default:
			return stored, fmt.Errorf("unknown token slot %q", slot)
		}
	}
	return stored, rows.Err()
}

// writeTokens makes the token rows of rec.ID those of rec, given the stored
// ones. A row whose digest is unchanged is updated in place, and only if
// something else changed; the others are deleted and inserted, all
// deletions first, so that a digest moving to the other slot never meets
// itself in the unique index.
func (s *Store) writeTokens(ctx context.Context, tx *sqlx.Tx, rec *tokens.KeyRecord, stored [2]storedToken) error {
	want := [2]*tokens.TokenRecord{&rec.Current, nil}
	if rec.HasOld {
		want[1] = &rec.Old
	}
	for i, have := range stored {
		if have.ok && (want[i] == nil || want[i].Digest != have.rec.Digest) {
			if _, err := s.exec(ctx, tx, s.d.q.deleteToken, rec.ID, slots[i]); err != nil {
				return err
			}
		}
	}
	for i, tok := range want {
		have := stored[i]
		var err error
		switch {
		case tok == nil:
		case !have.ok || have.rec.Digest != tok.Digest:
			err = s.insertToken(ctx, tx, rec.ID, slots[i], tok)
		case !sameToken(have.rec, tok):
			_, err = s.exec(ctx, tx, s.d.q.updateToken,
				s.d.time(tok.CreatedAt), s.d.nullTime(tok.LastUsedAt), rec.ID, slots[i])
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// sameToken reports whether writing tok over the stored token would change
// nothing, at the microsecond precision of the database.
func sameToken(stored tokens.TokenRecord, tok *tokens.TokenRecord) bool {
	return stored.CreatedAt.Equal(tok.CreatedAt.Truncate(time.Microsecond)) &&
		stored.LastUsedAt.Equal(tok.LastUsedAt.Truncate(time.Microsecond))
}

func (s *Store) insertToken(ctx context.Context, tx *sqlx.Tx, id, slot string, tok *tokens.TokenRecord) error {
	_, err := s.exec(ctx, tx, s.d.q.insertToken, id, slot, tok.Digest[:],
		s.d.time(tok.CreatedAt), s.d.nullTime(tok.LastUsedAt))
	return err
}

// linkArgs are the arguments of insertLink and upsertLink.
func (s *Store) linkArgs(rec *tokens.KeyRecord) []any {
	var sealed any // NULL
	if rec.Link.Sealed != nil {
		sealed = rec.Link.Sealed
	}
	return []any{rec.ID, rec.Link.Digest[:], sealed,
		s.d.time(rec.Link.CreatedAt), s.d.time(rec.Link.ExpiresAt), s.d.nullTime(rec.Link.RedeemedAt)}
}

// scanKey scans a row of the selectKey family.
func scanKey(row interface{ Scan(dest ...any) error }) (tokens.KeyRecord, error) {
	var (
		rec                tokens.KeyRecord
		current, old, link nullDigest
	)
	err := row.Scan(
		&rec.ID, &rec.Account, &rec.Name, &rec.Active, (*timeColumn)(&rec.CreatedAt), &rec.Version,
		&current, (*timeColumn)(&rec.Current.CreatedAt), (*timeColumn)(&rec.Current.LastUsedAt),
		&old, (*timeColumn)(&rec.Old.CreatedAt), (*timeColumn)(&rec.Old.LastUsedAt),
		&link, &rec.Link.Sealed, (*timeColumn)(&rec.Link.CreatedAt), (*timeColumn)(&rec.Link.ExpiresAt),
		(*timeColumn)(&rec.Link.RedeemedAt),
	)
	if err != nil {
		return tokens.KeyRecord{}, err
	}
	rec.Current.Digest = current.d
	rec.Old.Digest, rec.HasOld = old.d, old.valid
	rec.Link.Digest, rec.HasLink = link.d, link.valid
	return rec, nil
}

// nullDigest scans a digest column, NULL when its row is missing from an
// outer join.
type nullDigest struct {
	d     tokens.Digest
	valid bool
}

func (n *nullDigest) Scan(src any) error {
	switch src := src.(type) {
	case nil:
		*n = nullDigest{}
	case []byte:
		if len(src) != len(n.d) {
			return fmt.Errorf("stored digest has %d bytes, want %d", len(src), len(n.d))
		}
		copy(n.d[:], src)
		n.valid = true
	default:
		return fmt.Errorf("cannot scan %T into a digest", src)
	}
	return nil
}

// timeColumn scans a time: a time.Time from PostgreSQL, Unix microseconds
// from SQLite, and NULL as the zero time. The result is in UTC.
type timeColumn time.Time

func (c *timeColumn) Scan(src any) error {
	switch src := src.(type) {
	case nil:
		*c = timeColumn{}
	case time.Time:
		*c = timeColumn(src.UTC())
	case int64:
		*c = timeColumn(time.UnixMicro(src).UTC())
	default:
		return fmt.Errorf("cannot scan %T into a time", src)
	}
	return nil
}

// inTx runs fn in a transaction, committed if fn returns nil. The
// statements a transaction runs are prepared before it begins: preparing
// one inside it would take a second connection from the pool while the
// transaction holds one, which a pool limited by SetMaxOpenConns may never
// give, and would wait on other connections while holding row locks.
func (s *Store) inTx(ctx context.Context, fn func(tx *sqlx.Tx) error) error {
	if err := s.prepareTxStatements(ctx); err != nil {
		return err
	}
	return s.inUnpreparedTx(ctx, fn)
}

// inUnpreparedTx runs fn in a transaction, committed if fn returns nil; fn
// prepares no statement of the store.
//
// An error before the COMMIT means nothing was written. A failed COMMIT
// does not say that: the connection may have been lost, or the deadline
// hit, after the database committed (pgx gives up on a COMMIT in flight
// when the context ends). Its error also wraps tokens.ErrOutcomeUnknown,
// the Store contract's mark of a write that may have committed, and the
// Manager finds out which it was (R18).
func (s *Store) inUnpreparedTx(ctx context.Context, fn func(tx *sqlx.Tx) error) error {
	if ctx == nil {
		return tokens.ErrNilContext
	}
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback() // fn's error says what went wrong
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w (%w)", err, tokens.ErrOutcomeUnknown)
	}
	return nil
}

// prepareTxStatements prepares every statement that runs in a transaction,
// once.
func (s *Store) prepareTxStatements(ctx context.Context) error {
	if s.txReady.Load() {
		return nil
	}
	q := &s.d.q
	for _, query := range []string{
		q.insertKey, q.casKey, q.deleteKey, q.keyExists,
		q.selectTokens, q.insertToken, q.updateToken, q.deleteToken, q.deleteTokens,
		q.insertLink, q.upsertLink, q.deleteLink, q.touchToken, q.bumpVersion,
		q.countChange, q.insertChange, q.trimChanges,
	} {
		if query == "" {
			continue
		}
		if _, err := s.stmt(ctx, query); err != nil {
			return err
		}
	}
	s.txReady.Store(true)
	return nil
}

// stmt returns query prepared on the database. Statements are prepared on
// first use, not in New, because their tables may not exist before
// Migrate; a failed preparation is not remembered.
func (s *Store) stmt(ctx context.Context, query string) (*sqlx.Stmt, error) {
	// Every statement of the store passes here or through inUnpreparedTx.
	// database/sql dereferences a nil context while it holds the lock of
	// its pool, so that the panic would leave every later call waiting.
	if ctx == nil {
		return nil, tokens.ErrNilContext
	}
	s.mu.Lock()
	stmt, ok := s.stmts[query]
	s.mu.Unlock()
	if ok {
		return stmt, nil
	}
	stmt, err := s.db.PreparexContext(ctx, query)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	prev, dup := s.stmts[query]
	if !dup {
		s.stmts[query] = stmt
	}
	s.mu.Unlock()
	if dup { // prepared concurrently
		// Close waits for the connection stmt was prepared on to finish
		// the statement it runs, which may wait for a row lock: never
		// under s.mu, which every statement of the store takes.
		_ = stmt.Close()
		return prev, nil
	}
	return stmt, nil
}

// txStmt returns query prepared for tx, or on the database if tx is nil.
func (s *Store) txStmt(ctx context.Context, tx *sqlx.Tx, query string) (*sqlx.Stmt, error) {
	stmt, err := s.stmt(ctx, query)
	if err != nil || tx == nil {
		return stmt, err
	}
	return tx.StmtxContext(ctx, stmt), nil
}

// exec runs a prepared query in tx (nil: outside a transaction) and returns
// the number of rows it changed.
func (s *Store) exec(ctx context.Context, tx *sqlx.Tx, query string, args ...any) (int64, error) {
	stmt, err := s.txStmt(ctx, tx, query)
	if err != nil {
		return 0, err
	}
	res, err := stmt.ExecContext(ctx, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// query runs a prepared query in tx (nil: outside a transaction).
func (s *Store) query(ctx context.Context, tx *sqlx.Tx, query string, args ...any) (*sql.Rows, error) {
	stmt, err := s.txStmt(ctx, tx, query)
	if err != nil {
		return nil, err
	}
	return stmt.QueryContext(ctx, args...)
}

// fail turns err into the store's error for operation op: the sentinel a
// tokens.Store promises, or err wrapped with the operation. Driver errors
// carry no value of a row (no digest, no sealed secret): neither lib/pq,
// pgx nor SQLite put the values of a constraint violation in their
// messages.
func (s *Store) fail(op string, err error) error {
	switch {
	case errors.Is(err, sql.ErrNoRows), errors.Is(err, tokens.ErrKeyNotFound):
		return tokens.ErrKeyNotFound
	case errors.Is(err, tokens.ErrConflict):
		return fmt.Errorf("sqlstore: %s: %w", op, tokens.ErrConflict)
	case s.d.isUniqueViolation(err):
		return fmt.Errorf("sqlstore: %s: %w", op, tokens.ErrDuplicate)
	}
	return fmt.Errorf("sqlstore: %s: %w", op, err)
}
