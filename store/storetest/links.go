package storetest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens"
)

var expiredLinksTests = []test{
	{"OnlyUnredeemedSealedAndExpired", func(t *testing.T, st tokens.Store) {
		now := T0.Add(48 * time.Hour)
		expiresAt := map[string]time.Time{
			"expired-long-ago": now.Add(-24 * time.Hour),
			"expired-now":      now,
			"expires-soon":     now.Add(time.Microsecond),
			"redeemed":         now.Add(-time.Hour),
			"purged":           now.Add(-time.Hour),
		}
		var stored []tokens.KeyRecord
		for id, exp := range expiresAt {
			rec := NewRecord(id)
			rec.Link.ExpiresAt = exp
			switch id {
			case "redeemed":
				rec.Link.Sealed = nil
				rec.Link.RedeemedAt = exp.Add(-time.Hour)
			case "purged":
				rec.Link.Sealed = nil
			}
			stored = append(stored, insert(t, st, rec))
		}
		noLink := NewRecord("no-link")
		noLink.HasLink = false
		stored = append(stored, insert(t, st, noLink))

		got, err := st.ExpiredLinks(t.Context(), now, 100)
		require.NoError(t, err)
		require.ElementsMatch(t, []string{"expired-long-ago", "expired-now"}, got)
		for _, rec := range stored {
			requireStored(t, st, rec) // ExpiredLinks writes nothing
		}
	}},
	{"RespectsLimit", func(t *testing.T, st tokens.Store) {
		var all []string
		for _, id := range []string{"k1", "k2", "k3", "k4", "k5"} {
			insert(t, st, NewRecord(id))
			all = append(all, id)
		}
		now := T0.Add(24 * time.Hour)
		got, err := st.ExpiredLinks(t.Context(), now, 2)
		require.NoError(t, err)
		require.Len(t, got, 2)
		require.Subset(t, all, got)
		require.NotEqual(t, got[0], got[1])

		got, err = st.ExpiredLinks(t.Context(), now, 5)
		require.NoError(t, err)
		require.ElementsMatch(t, all, got)
	}},
	{"None", func(t *testing.T, st tokens.Store) {
		insert(t, st, NewRecord("k1"))
		got, err := st.ExpiredLinks(t.Context(), T0, 10)
		require.NoError(t, err)
		require.Empty(t, got)
	}},
}
