package sqlstore_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens/internal/testenv"
	"github.com/keyrenew/tokens/store/storetest"
)

// TestSQLiteLookupsAreNotReprepared guards the CAST in the SQLite look-ups:
// without it SQLite may re-parse and re-plan a look-up on every call (see
// dialect_sqlite.go), which shows as about 60 more allocations per call,
// as the driver reads the column metadata again.
func TestSQLiteLookupsAreNotReprepared(t *testing.T) {
	st := migrated(t, open(t, "sqlite3", testenv.SQLite(testenv.SQLiteParams)(t)))
	ctx := context.Background()
	rec := storetest.NewRecord("k1")
	require.NoError(t, st.InsertKey(ctx, &rec))
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := st.Key(ctx, rec.ID); err != nil {
			t.Fatal(err)
		}
	})
	require.Less(t, allocs, 50.0, "allocations per Key look-up")
	allocs = testing.AllocsPerRun(100, func() {
		if _, err := st.KeyByLink(ctx, rec.Link.Digest); err != nil {
			t.Fatal(err)
		}
	})
	require.Less(t, allocs, 50.0, "allocations per KeyByLink look-up")
}
