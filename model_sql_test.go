package tokens_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq"
	_ "github.com/mattn/go-sqlite3"
	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/internal/testenv"
	"github.com/keyrenew/tokens/store/sqlstore"
)

// TestModelSQL runs the model-based test on the SQL stores too, shorter
// than on memstore: the rules live in the Manager, but a store that loses
// or mangles a field would show here as a disagreement with the model.
func TestModelSQL(t *testing.T) {
	const seeds, steps = 2, 250
	backends := []struct {
		name, driver string
		dsn          func(t *testing.T) string
	}{
		{"sqlite", "sqlite3", func(t *testing.T) string {
			return "file:" + filepath.Join(t.TempDir(), "model.db") + "?_busy_timeout=10000&_journal_mode=WAL&_txlock=immediate"
		}},
		{"postgres_lib_pq", "postgres", func(t *testing.T) string { return testenv.PostgresSchema(t) }},
		{"postgres_pgx", "pgx", func(t *testing.T) string { return testenv.PostgresSchema(t) }},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			for seed := uint64(1); seed <= seeds; seed++ {
				t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
					db, err := sqlx.Open(b.driver, b.dsn(t))
					require.NoError(t, err)
					t.Cleanup(func() { db.Close() })
					st, err := sqlstore.New(db)
					require.NoError(t, err)
					require.NoError(t, st.Migrate(context.Background()))
					runModel(t, seed, steps, &modelCoverage{counts: map[string]int{}}, func() tokens.Store { return st })
				})
			}
		})
	}
}
