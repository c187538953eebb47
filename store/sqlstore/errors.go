package sqlstore

import (
	"database/sql"
	"errors"
	"fmt"

	"github.com/keyrenew/tokens"
)

// ErrUnsupportedDriver is returned by New for a database whose driver is
// none of sqlite3, sqlite, postgres and pgx.
var ErrUnsupportedDriver = errors.New("sqlstore: unsupported driver: use sqlite3 (mattn/go-sqlite3), sqlite (modernc.org/sqlite), postgres (lib/pq) or pgx (jackc/pgx/v5/stdlib)")

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
	case s.d.isConflict(err) && !errors.Is(err, tokens.ErrOutcomeUnknown):
		return fmt.Errorf("sqlstore: %s: %w (%w)", op, tokens.ErrConflict, err)
	case s.d.isUniqueViolation(err):
		return fmt.Errorf("sqlstore: %s: %w", op, tokens.ErrDuplicate)
	}
	return fmt.Errorf("sqlstore: %s: %w", op, err)
}
