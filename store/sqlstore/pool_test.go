package sqlstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens"
)

// TestOneConnection runs the whole life cycle on a pool of one connection,
// a common setting for SQLite. A statement prepared inside a transaction
// would need a second connection while the transaction holds the only one,
// and wait forever; the store prepares them before it begins.
func TestOneConnection(t *testing.T) {
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			db := open(t, b.Driver, b.NewDSN(t))
			db.SetMaxOpenConns(1)
			m, err := tokens.NewManager(migrated(t, db), tokens.WithShareBaseURL(shareBase))
			require.NoError(t, err)
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()

			_, link, err := m.CreateKey(ctx, tokens.KeySpec{Name: "one-connection"})
			require.NoError(t, err)
			creds, err := m.RedeemLink(ctx, link.URL)
			require.NoError(t, err)
			_, err = m.Verify(ctx, creds.KeyID, creds.Token)
			require.NoError(t, err)
			_, err = m.Renew(ctx, creds.KeyID, tokens.RenewOptions{})
			require.NoError(t, err)
			require.NoError(t, m.Undo(ctx, creds.KeyID))
			require.NoError(t, m.DeleteKey(ctx, creds.KeyID))
		})
	}
}
