package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"

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
	migrations, err := dialectMigrations(s.d)
	if err != nil {
		return fmt.Errorf("sqlstore: migrate: %w", err)
	}
	err = s.d.inMigrationTx(ctx, s, func(tx execQuerier) error {
		return s.applyMigrations(ctx, tx, migrations)
	})
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
	q := s.d.migrationStatements()
	if _, err := tx.ExecContext(ctx, q.create); err != nil {
		return err
	}
	applied, err := appliedMigrations(ctx, tx, q.selectVersions)
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
		if _, err := tx.ExecContext(ctx, q.insert, m.version, m.name); err != nil {
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

// dialectMigrations returns the migrations of d in version order.
func dialectMigrations(d dialect) ([]migration, error) {
	dir := path.Join("migrations", d.name())
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
