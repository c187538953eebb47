package sqlstore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/keyrenew/tokens"
)

// inTx runs fn in a transaction, committed if fn returns nil. The
// statements a transaction runs are prepared before it begins: preparing
// one inside it would take a second connection from the pool while the
// transaction holds one, which a pool limited by SetMaxOpenConns may never
// give, and would wait on other connections while holding row locks.
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
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
func (s *Store) inUnpreparedTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if ctx == nil {
		return tokens.ErrNilContext
	}
	tx, err := s.db.BeginTx(ctx, s.d.txOptions())
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

// exec runs statement id in tx (nil: outside a transaction) and returns
// the number of rows it changed.
func (s *Store) exec(ctx context.Context, tx *sql.Tx, id stmtID, args ...any) (int64, error) {
	stmt, err := s.txStmt(ctx, tx, id)
	if err != nil {
		return 0, err
	}
	res, err := stmt.ExecContext(ctx, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// query runs statement id in tx (nil: outside a transaction).
func (s *Store) query(ctx context.Context, tx *sql.Tx, id stmtID, args ...any) (*sql.Rows, error) {
	stmt, err := s.txStmt(ctx, tx, id)
	if err != nil {
		return nil, err
	}
	return stmt.QueryContext(ctx, args...)
}
