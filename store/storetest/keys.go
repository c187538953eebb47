package storetest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens"
)

var insertKeyTests = []test{
	{"SetsVersionToOne", func(t *testing.T, st tokens.Store) {
		rec := NewRecord("k1")
		rec.Version = 42
		require.NoError(t, st.InsertKey(t.Context(), &rec))
		require.Equal(t, int64(1), rec.Version)
		requireStored(t, st, rec)
	}},
	{"WithoutOldTokenOrLink", func(t *testing.T, st tokens.Store) {
		rec := NewRecord("k1")
		rec.HasLink = false
		rec.Link = tokens.LinkRecord{}
		rec = insert(t, st, rec)
		requireStored(t, st, rec)
	}},
	{"DuplicateID", func(t *testing.T, st tokens.Store) {
		first := insert(t, st, NewRecord("k1"))
		again := renewedRecord("k1")
		again.Link.Digest = DigestOf("another link")
		err := st.InsertKey(t.Context(), &again)
		require.ErrorIs(t, err, tokens.ErrDuplicate)
		requireStored(t, st, first)
		requireNoLink(t, st, again.Link.Digest)
	}},
	{"DuplicateLinkDigest", func(t *testing.T, st tokens.Store) {
		first := insert(t, st, NewRecord("k1"))
		second := NewRecord("k2")
		second.Link.Digest = first.Link.Digest
		err := st.InsertKey(t.Context(), &second)
		require.ErrorIs(t, err, tokens.ErrDuplicate)
		requireNoKey(t, st, "k2")
		got, err := st.KeyByLink(t.Context(), first.Link.Digest)
		require.NoError(t, err)
		requireRecord(t, first, got)

		// Nothing of the failed insert was kept: its tokens are free.
		second.Link.Digest = DigestOf("a fresh link")
		second = insert(t, st, second)
		requireStored(t, st, second)
	}},
	{"StoresACopy", func(t *testing.T, st tokens.Store) {
		rec := insert(t, st, renewedRecord("k1"))
		want := rec
		rec.Name = "changed by the caller"
		rec.Current.LastUsedAt = time.Time{}
		rec.Link.Sealed = []byte("replaced by the caller")
		requireStored(t, st, want)
	}},
}

var keyTests = []test{
	{"RoundTripsANewKey", func(t *testing.T, st tokens.Store) {
		rec := insert(t, st, NewRecord("k1"))
		got := load(t, st, "k1")
		requireRecord(t, rec, got)
		require.False(t, got.HasOld)
		require.True(t, got.HasLink)
		require.True(t, got.Current.LastUsedAt.IsZero())
		require.True(t, got.Link.RedeemedAt.IsZero())
	}},
	{"RoundTripsEveryField", func(t *testing.T, st tokens.Store) {
		rec := insert(t, st, renewedRecord("k1"))
		got := load(t, st, "k1")
		requireRecord(t, rec, got)
		require.Nil(t, got.Link.Sealed, "a redeemed link's sealed secret stays nil")
	}},
	{"RoundTripsSealedBytes", func(t *testing.T, st tokens.Store) {
		rec := NewRecord("k1")
		rec.Link.Sealed = make([]byte, 256)
		for i := range rec.Link.Sealed {
			rec.Link.Sealed[i] = byte(i)
		}
		rec = insert(t, st, rec)
		require.Equal(t, rec.Link.Sealed, load(t, st, "k1").Link.Sealed)
	}},
	{"ReturnsTimesInUTC", func(t *testing.T, st tokens.Store) {
		rec := renewedRecord("k1")
		east := time.FixedZone("UTC+5:30", 5*3600+1800)
		for _, tm := range recordTimes(&rec) {
			*tm = tm.In(east)
		}
		rec = insert(t, st, rec)
		requireStored(t, st, rec) // requireRecord checks the location
	}},
	{"NotFound", func(t *testing.T, st tokens.Store) {
		insert(t, st, NewRecord("k1"))
		_, err := st.Key(t.Context(), "k2")
		require.ErrorIs(t, err, tokens.ErrKeyNotFound)
		_, err = st.Key(t.Context(), "")
		require.ErrorIs(t, err, tokens.ErrKeyNotFound)
	}},
	{"ReturnsACopy", func(t *testing.T, st tokens.Store) {
		want := insert(t, st, NewRecord("k1"))
		got := load(t, st, "k1")
		scribble(&got)
		requireStored(t, st, want)
	}},
}

var keyByLinkTests = []test{
	{"Found", func(t *testing.T, st tokens.Store) {
		insert(t, st, NewRecord("k1"))
		want := insert(t, st, renewedRecord("k2"))
		got, err := st.KeyByLink(t.Context(), want.Link.Digest)
		require.NoError(t, err)
		requireRecord(t, want, got)
	}},
	{"UnknownDigest", func(t *testing.T, st tokens.Store) {
		rec := insert(t, st, NewRecord("k1"))
		requireNoLink(t, st, DigestOf("unknown"))
		requireNoLink(t, st, rec.Current.Digest)
	}},
	{"AfterLinkReplaced", func(t *testing.T, st tokens.Store) {
		rec := insert(t, st, NewRecord("k1"))
		first := rec.Link.Digest
		rec.Link = tokens.LinkRecord{
			Digest:    DigestOf("k1/link/2"),
			Sealed:    []byte("sealed token 2"),
			CreatedAt: T0.Add(time.Hour),
			ExpiresAt: T0.Add(25 * time.Hour),
		}
		rec = update(t, st, rec)
		requireNoLink(t, st, first)
		got, err := st.KeyByLink(t.Context(), rec.Link.Digest)
		require.NoError(t, err)
		requireRecord(t, rec, got)
	}},
	{"AfterLinkRemoved", func(t *testing.T, st tokens.Store) {
		rec := insert(t, st, NewRecord("k1"))
		link := rec.Link.Digest
		rec.HasLink = false
		update(t, st, rec)
		requireNoLink(t, st, link)
	}},
	{"RedeemedLinkStillFound", func(t *testing.T, st tokens.Store) {
		rec := insert(t, st, NewRecord("k1"))
		rec.Link.Sealed = nil
		rec.Link.RedeemedAt = T0.Add(time.Hour)
		rec = update(t, st, rec)
		got, err := st.KeyByLink(t.Context(), rec.Link.Digest)
		require.NoError(t, err)
		requireRecord(t, rec, got)
	}},
	{"AfterDeleteKey", func(t *testing.T, st tokens.Store) {
		rec := insert(t, st, NewRecord("k1"))
		require.NoError(t, st.DeleteKey(t.Context(), "k1", nil))
		requireNoLink(t, st, rec.Link.Digest)
	}},
	{"ReturnsACopy", func(t *testing.T, st tokens.Store) {
		want := insert(t, st, NewRecord("k1"))
		got, err := st.KeyByLink(t.Context(), want.Link.Digest)
		require.NoError(t, err)
		scribble(&got)
		requireStored(t, st, want)
	}},
}

var keysTests = []test{
	{"OneAccountOldestFirst", func(t *testing.T, st tokens.Store) {
		// Inserted out of order; equal CreatedAt is ordered by ID, byte
		// by byte ("B" < "a"), as Go compares strings.
		specs := []struct {
			id, account string
			created     time.Duration
		}{
			{"k5", "acme", 3 * time.Hour},
			{"k4", "globex", time.Hour},
			{"k3", "acme", time.Hour},
			{"k1-a", "acme", 2 * time.Hour},
			{"k1-B", "acme", 2 * time.Hour},
			{"k2", "acme", -time.Hour},
		}
		stored := map[string]tokens.KeyRecord{}
		for _, s := range specs {
			rec := NewRecord(s.id)
			rec.Account = s.account
			rec.CreatedAt = T0.Add(s.created)
			stored[s.id] = insert(t, st, rec)
		}
		got, err := st.Keys(t.Context(), "acme")
		require.NoError(t, err)
		require.Equal(t, []string{"k2", "k3", "k1-B", "k1-a", "k5"}, ids(got))
		for _, rec := range got {
			requireRecord(t, stored[rec.ID], rec)
		}
	}},
	{"NoKeys", func(t *testing.T, st tokens.Store) {
		insert(t, st, NewRecord("k1"))
		got, err := st.Keys(t.Context(), "initech")
		require.NoError(t, err)
		require.Empty(t, got)
	}},
	{"EmptyAccountIsAnAccount", func(t *testing.T, st tokens.Store) {
		rec := NewRecord("k1")
		rec.Account = ""
		rec = insert(t, st, rec)
		insert(t, st, NewRecord("k2"))
		got, err := st.Keys(t.Context(), "")
		require.NoError(t, err)
		require.Len(t, got, 1)
		requireRecord(t, rec, got[0])
	}},
	{"ReturnsCopies", func(t *testing.T, st tokens.Store) {
		want := insert(t, st, NewRecord("k1"))
		got, err := st.Keys(t.Context(), want.Account)
		require.NoError(t, err)
		require.Len(t, got, 1)
		scribble(&got[0])
		requireStored(t, st, want)
	}},
}

var deleteKeyTests = []test{
	{"DeletesKeyTokensAndLink", func(t *testing.T, st tokens.Store) {
		rec := renewedRecord("k1")
		rec.Link.Sealed = []byte("sealed")
		rec.Link.RedeemedAt = time.Time{}
		rec = insert(t, st, rec)
		other := insert(t, st, NewRecord("k2"))

		require.NoError(t, st.DeleteKey(t.Context(), "k1", nil))
		requireNoKey(t, st, "k1")
		requireNoLink(t, st, rec.Link.Digest)
		keys, err := st.Keys(t.Context(), rec.Account)
		require.NoError(t, err)
		require.Empty(t, keys)
		expired, err := st.ExpiredLinks(t.Context(), rec.Link.ExpiresAt.Add(time.Hour), 10)
		require.NoError(t, err)
		require.Equal(t, []string{"k2"}, expired)
		requireStored(t, st, other)

		// Nothing of the key is left: its ID, tokens and link are free.
		again := insert(t, st, rec)
		requireStored(t, st, again)
	}},
	{"NotFound", func(t *testing.T, st tokens.Store) {
		rec := insert(t, st, NewRecord("k1"))
		require.ErrorIs(t, st.DeleteKey(t.Context(), "k2", nil), tokens.ErrKeyNotFound)
		require.NoError(t, st.DeleteKey(t.Context(), "k1", nil))
		require.ErrorIs(t, st.DeleteKey(t.Context(), "k1", nil), tokens.ErrKeyNotFound)
		requireNoLink(t, st, rec.Link.Digest)
	}},
}

// scribble changes every field of rec, the sealed secret in place too, as
// a careless caller would to a record it owns.
func scribble(rec *tokens.KeyRecord) {
	rec.Name = "scribbled"
	rec.Active = !rec.Active
	rec.Version++
	rec.Current.Digest[0] ^= 0xff
	rec.Current.LastUsedAt = T0.Add(time.Hour)
	rec.HasOld = !rec.HasOld
	rec.Link.Digest[0] ^= 0xff
	rec.Link.RedeemedAt = T0.Add(time.Hour)
	for i := range rec.Link.Sealed {
		rec.Link.Sealed[i] ^= 0xff
	}
}

func ids(recs []tokens.KeyRecord) []string {
	out := make([]string, len(recs))
	for i, rec := range recs {
		out[i] = rec.ID
	}
	return out
}
