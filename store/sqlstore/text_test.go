package sqlstore_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens"
)

// TestS9_KeysRefusesAnInvalidAccountOnEveryBackend: PostgreSQL used to
// fail on a NUL and SQLite to return an empty list; both now give
// ErrInvalidKeySpec, as memstore does, before any query.
func TestS9_KeysRefusesAnInvalidAccountOnEveryBackend(t *testing.T) {
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			c := newCluster(t, b, 1)
			m := c.inst[0].m
			for _, account := range []string{"ac\x00me", "\xc3\x28", "acme\u202e", "acme\x1b[2J"} {
				keys, err := m.Keys(t.Context(), account)
				require.ErrorIs(t, err, tokens.ErrInvalidKeySpec, "%+q", account)
				require.Nil(t, keys)
				_, _, err = m.CreateKey(t.Context(), tokens.KeySpec{Account: account, Name: "erp"})
				require.ErrorIs(t, err, tokens.ErrInvalidKeySpec, "%+q", account)
			}
		})
	}
}
