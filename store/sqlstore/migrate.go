package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/keyrenew/tokens"
)

// migrationFiles holds the schema of each dialect as numbered SQL files,
// migrations/<dialect>/NNNN_<name>.sql, applied in order. Teams that run
// their own migration tool can apply these files instead of Migrate.
//
//go:embed migrations
var migrationFiles embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

// Migrate creates the store's tables, or upgrades them to this version of
// the package, recording applied migrations in tokens_schema_migrations.
// It is idempotent and safe to run from many processes at once: on
// PostgreSQL a transaction-scoped advisory lock serialises migrations, on
// SQLite a BEGIN IMMEDIATE transaction. All pending migrations are applied
// in one transaction, so a failure leaves the schema as it was.
func (s *Store) Migrate(ctx context.Context) error {
	if ctx == nil {
		return fmt.Errorf("sqlstore: migrate: %w", tokens.ErrNilContext)
	}
	migrations, err := s.d.migrations()
	if err != nil {
		return fmt.Errorf("sqlstore: migrate: %w", err)
	}
	apply := func(tx execQuerier) error {
		return s.applyMigrations(ctx, tx, migrations)
	}
	if s.d == sqlite {
		err = s.inImmediateTx(ctx, apply)
	} else {
		err = s.inUnpreparedTx(ctx, func(tx *sqlx.Tx) error {
			if _, err := tx.ExecContext(ctx, s.d.q.lockMigrations); err != nil {
				return err
			}
			return apply(tx)
		})
	}
	if err != nil {
		return fmt.Errorf("sqlstore: migrate: %w", err)
	}
	return nil
}

type execQuerier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func (s *Store) applyMigrations(ctx context.Context, tx execQuerier, migrations []migration) error {
	q := &s.d.q
	if _, err := tx.ExecContext(ctx, q.createMigrations); err != nil {
		return err
	}
	applied, err := appliedMigrations(ctx, tx, q.selectMigrations)
	if err != nil {
		return err
	}
	for _, m := range migrations {
		if applied[m.version] {
			continue
		}
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("%04d_%s: %w", m.version, m.name, err)
		}
		if _, err := tx.ExecContext(ctx, q.insertMigration, m.version, m.name); err != nil {
			return err
		}
	}
	return nil
}

func appliedMigrations(ctx context.Context, tx execQuerier, query string) (map[int]bool, error) {
	rows, err := tx.QueryContext(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	applied := make(map[int]bool)
	for rows.Next() {
		var version int
		if err := rows.Scan(&version); err != nil {
			return nil, err
		}
		applied[version] = true
	}
	return applied, rows.Err()
}

// inImmediateTx runs fn in a SQLite transaction that takes the write lock
// at once, whatever the DSN's _txlock: a deferred transaction that reads
// first could fail to upgrade its lock when another process migrates
// concurrently.
func (s *Store) inImmediateTx(ctx context.Context, fn func(tx execQuerier) error) error {
	conn, err := s.sqliteConn(ctx)
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

// sqliteConn connects to SQLite for a migration. Processes that open a
// brand-new file at once race to switch it to WAL, and SQLite answers the
// losers "database is locked" at once, without waiting for the busy
// timeout; so a connection that fails that way is retried for a few
// seconds. This is the one wait in the package, and it reads no time.
func (s *Store) sqliteConn(ctx context.Context) (*sql.Conn, error) {
	const attempts = 60
	for attempt := 1; ; attempt++ {
		conn, err := s.db.Conn(ctx)
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

// migrations returns the dialect's migrations in version order.
func (d *dialect) migrations() ([]migration, error) {
	dir := path.Join("migrations", d.name)
	entries, err := fs.ReadDir(migrationFiles, dir)
	if err != nil {
		return nil, err
	}
	var migrations []migration
	for _, e := range entries {
		number, name, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".sql"), "_")
		version, err := strconv.Atoi(number)
		if !ok || err != nil || version <= 0 || !strings.HasSuffix(e.Name(), ".sql") {
			return nil, fmt.Errorf("malformed migration file name %s", path.Join(dir, e.Name()))
		}
		if n := len(migrations); n > 0 && migrations[n-1].version >= version {
			return nil, fmt.Errorf("migration %s is out of order", path.Join(dir, e.Name()))
		}
		body, err := fs.ReadFile(migrationFiles, path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		migrations = append(migrations, migration{version: version, name: name, sql: string(body)})
	}
	return migrations, nil
}
