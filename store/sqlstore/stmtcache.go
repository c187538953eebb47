package sqlstore

import (
	"context"
	"database/sql"
	"errors"

	"github.com/keyrenew/tokens"
)

// stmt returns statement id prepared on the database. Statements are
// prepared on first use, not in New, because their tables may not exist
// before Migrate; a failed preparation is not remembered. database/sql
// prepares a statement again on each connection it runs on, so a pool
// that keeps its connections (see the package documentation on pool
// sizing) prepares each statement once per connection.
func (s *Store) stmt(ctx context.Context, id stmtID) (*sql.Stmt, error) {
	// Every statement of the store passes here or through inUnpreparedTx.
	// database/sql dereferences a nil context while it holds the lock of
	// its pool, so that the panic would leave every later call waiting.
	if ctx == nil {
		return nil, tokens.ErrNilContext
	}
	if stmt := s.stmts[id].Load(); stmt != nil {
		return stmt, nil
	}
	stmt, err := s.db.PrepareContext(ctx, s.d.query(id))
	if err != nil {
		return nil, err
	}
	if !s.stmts[id].CompareAndSwap(nil, stmt) { // prepared concurrently
		// Close waits for the connection stmt was prepared on to finish
		// the statement it runs, which may wait for a row lock: it runs
		// here, outside any lock of the store.
		_ = stmt.Close()
		return s.stmt(ctx, id)
	}
	return stmt, nil
}

// txStmt returns statement id prepared for tx, or on the database if tx
// is nil.
func (s *Store) txStmt(ctx context.Context, tx *sql.Tx, id stmtID) (*sql.Stmt, error) {
	stmt, err := s.stmt(ctx, id)
	if err != nil || tx == nil {
		return stmt, err
	}
	return tx.StmtContext(ctx, stmt), nil
}

// prepareTxStatements prepares every statement that runs in a
// transaction, once.
func (s *Store) prepareTxStatements(ctx context.Context) error {
	if s.txReady.Load() {
		return nil
	}
	for id, st := range statements {
		if !st.inTx || !used(s.d, stmtID(id)) {
			continue
		}
		if _, err := s.stmt(ctx, stmtID(id)); err != nil {
			return err
		}
	}
	s.txReady.Store(true)
	return nil
}

// closeStatements closes the prepared statements; the next use prepares
// them again.
func (s *Store) closeStatements() error {
	s.txReady.Store(false)
	var errs []error
	for i := range s.stmts {
		if stmt := s.stmts[i].Swap(nil); stmt != nil {
			errs = append(errs, stmt.Close())
		}
	}
	return errors.Join(errs...)
}
