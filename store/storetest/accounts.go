package storetest

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens"
)

// accountsTests check tokens.AccountLister, for stores that implement it.
var accountsTests = []test{
	{"EveryAccountOnceInByteOrder", func(t *testing.T, st tokens.Store) {
		lister, ok := st.(tokens.AccountLister)
		if !ok {
			t.Fatalf("%T is not a tokens.AccountLister: its group should not have run", st)
		}
		accounts := func() []string {
			t.Helper()
			got, err := lister.Accounts(t.Context())
			require.NoError(t, err)
			return got
		}
		require.Empty(t, accounts())
		require.NotNil(t, accounts(), "none is an empty slice, not nil")
		for _, k := range []struct{ id, account string }{
			{"k1", "globex"}, {"k2", "acme"}, {"k3", "acme"}, {"k4", ""}, {"k5", "Zeta"}, {"k6", "été"},
		} {
			rec := NewRecord(k.id)
			rec.Account = k.account
			insert(t, st, rec)
		}
		require.Equal(t, []string{"", "Zeta", "acme", "globex", "été"}, accounts())
		require.NoError(t, st.DeleteKey(t.Context(), "k1", nil))
		require.NoError(t, st.DeleteKey(t.Context(), "k2", nil))
		require.Equal(t, []string{"", "Zeta", "acme", "été"}, accounts(), "an account with no key left is listed")
	}},
}
