package sqlstore_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens/store/storetest"
)

// TestSQLiteLookupsAreNotReprepared guards the CAST in the SQLite look-ups:
// without it SQLite re-parses and re-plans the Key join on every call
// (see dialect.go), which shows as about 60 more allocations per call, as
// the driver reads the column metadata again.
func TestSQLiteLookupsAreNotReprepared(t *testing.T) {
	st := migrated(t, open(t, "sqlite3", sqliteDSN("_busy_timeout=10000&_journal_mode=WAL&_txlock=immediate")(t)))
	ctx := context.Background()
	rec := storetest.NewRecord("k1")
	require.NoError(t, st.InsertKey(ctx, &rec))
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := st.Key(ctx, rec.ID); err != nil {
			t.Fatal(err)
		}
	})
	require.Less(t, allocs, 50.0, "allocations per Key look-up")
}
