package storetest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens"
)

var updateKeyTests = []test{
	{"ReplacesTheRecord", func(t *testing.T, st tokens.Store) {
		rec := insert(t, st, NewRecord("k1"))
		renewed := renewedRecord("k1")
		renewed.Account = rec.Account
		renewed.Version = rec.Version
		renewed = update(t, st, renewed)
		require.Equal(t, int64(2), renewed.Version)
		requireStored(t, st, renewed)
	}},
	{"FollowsTheManagersTransitions", func(t *testing.T, st tokens.Store) {
		rec := insert(t, st, NewRecord("k1"))
		steps := []struct {
			name   string
			change func(rec *tokens.KeyRecord)
		}{
			{"redeem", func(rec *tokens.KeyRecord) {
				rec.Link.Sealed = nil
				rec.Link.RedeemedAt = T0.Add(time.Hour)
			}},
			{"renew keeping the old token", func(rec *tokens.KeyRecord) {
				renewAt := T0.Add(48 * time.Hour)
				rec.Old, rec.HasOld = rec.Current, true
				rec.Current = tokens.TokenRecord{Digest: DigestOf("k1/token/2"), CreatedAt: renewAt}
				rec.Link = tokens.LinkRecord{
					Digest:    DigestOf("k1/link/2"),
					Sealed:    []byte("sealed token 2"),
					CreatedAt: renewAt,
					ExpiresAt: renewAt.Add(24 * time.Hour),
				}
			}},
			{"deactivate and rename", func(rec *tokens.KeyRecord) {
				rec.Active = false
				rec.Name = "renamed"
			}},
			{"undo", func(rec *tokens.KeyRecord) {
				rec.Current, rec.HasOld = rec.Old, false
				rec.Old = tokens.TokenRecord{}
				rec.HasLink = false
				rec.Link = tokens.LinkRecord{}
			}},
			{"renew deleting the old token", func(rec *tokens.KeyRecord) {
				renewAt := T0.Add(72 * time.Hour)
				rec.Current = tokens.TokenRecord{Digest: DigestOf("k1/token/3"), CreatedAt: renewAt}
				rec.HasLink = true
				rec.Link = tokens.LinkRecord{
					Digest:    DigestOf("k1/link/3"),
					Sealed:    []byte("sealed token 3"),
					CreatedAt: renewAt,
					ExpiresAt: renewAt.Add(24 * time.Hour),
				}
			}},
			{"add an old token", func(rec *tokens.KeyRecord) {
				rec.Old = tokens.TokenRecord{Digest: DigestOf("k1/token/2"), CreatedAt: T0}
				rec.HasOld = true
			}},
			{"swap current and old tokens", func(rec *tokens.KeyRecord) {
				rec.Current, rec.Old = rec.Old, rec.Current
			}},
			{"delete the old token", func(rec *tokens.KeyRecord) {
				rec.HasOld = false
				rec.Old = tokens.TokenRecord{}
			}},
		}
		for i, step := range steps {
			step.change(&rec)
			rec = update(t, st, rec)
			require.Equal(t, int64(i+2), rec.Version, step.name)
			requireStored(t, st, rec)
		}
	}},
	{"StaleVersion", func(t *testing.T, st tokens.Store) {
		rec := insert(t, st, NewRecord("k1"))
		stale := rec
		rec.Name = "first writer"
		rec = update(t, st, rec)

		stale.Name = "second writer"
		stale.HasOld, stale.Old = true, stale.Current
		stale.Current.Digest = DigestOf("k1/token/2")
		stale.Link.Digest = DigestOf("k1/link/2")
		err := st.UpdateKey(t.Context(), &stale)
		require.ErrorIs(t, err, tokens.ErrConflict)
		require.Equal(t, int64(1), stale.Version, "a failed UpdateKey must leave rec.Version alone")
		requireStored(t, st, rec)
		requireNoLink(t, st, stale.Link.Digest)

		future := rec
		future.Version++
		future.Name = "from the future"
		require.ErrorIs(t, st.UpdateKey(t.Context(), &future), tokens.ErrConflict)
		requireStored(t, st, rec)
	}},
	{"NotFound", func(t *testing.T, st tokens.Store) {
		rec := insert(t, st, NewRecord("k1"))
		require.NoError(t, st.DeleteKey(t.Context(), "k1", nil))
		err := st.UpdateKey(t.Context(), &rec)
		require.ErrorIs(t, err, tokens.ErrKeyNotFound)
		requireNoKey(t, st, "k1")
		requireNoLink(t, st, rec.Link.Digest)

		missing := NewRecord("k2")
		missing.Version = 1
		require.ErrorIs(t, st.UpdateKey(t.Context(), &missing), tokens.ErrKeyNotFound)
		requireNoKey(t, st, "k2")
	}},
	{"DuplicateLinkDigest", func(t *testing.T, st tokens.Store) {
		k1 := insert(t, st, NewRecord("k1"))
		k2 := insert(t, st, NewRecord("k2"))

		taken := k2
		taken.Name = "renamed"
		taken.Current.Digest = DigestOf("k2/token/2")
		taken.Link.Digest = k1.Link.Digest
		err := st.UpdateKey(t.Context(), &taken)
		require.ErrorIs(t, err, tokens.ErrDuplicate)
		require.Equal(t, int64(1), taken.Version, "a failed UpdateKey must leave rec.Version alone")
		requireStored(t, st, k2)
		got, err := st.KeyByLink(t.Context(), k1.Link.Digest)
		require.NoError(t, err)
		requireRecord(t, k1, got)

		// A superseded link's digest belongs to no key any more.
		superseded := k1.Link.Digest
		k1.Link.Digest = DigestOf("k1/link/2")
		k1 = update(t, st, k1)
		k2.Link.Digest = superseded
		k2 = update(t, st, k2)
		requireStored(t, st, k2)
		requireStored(t, st, k1)
	}},
}

var recordUseTests = []test{
	{"FirstUseOfCurrentToken", func(t *testing.T, st tokens.Store) {
		rec := insert(t, st, NewRecord("k1"))
		at := T0.Add(time.Hour)
		require.NoError(t, st.RecordUse(t.Context(), "k1", rec.Current.Digest, at, at.Add(-time.Minute)))
		rec.Current.LastUsedAt = at
		rec.Version++
		requireStored(t, st, rec)
	}},
	{"FirstUseOfOldToken", func(t *testing.T, st tokens.Store) {
		rec := renewedRecord("k1")
		rec.Old.LastUsedAt = time.Time{}
		rec = insert(t, st, rec)
		at := T0.Add(100 * 24 * time.Hour)
		require.NoError(t, st.RecordUse(t.Context(), "k1", rec.Old.Digest, at, at.Add(-time.Minute)))
		rec.Old.LastUsedAt = at
		rec.Version++
		requireStored(t, st, rec)
	}},
	{"OnlyWhenStale", func(t *testing.T, st tokens.Store) {
		rec := renewedRecord("k1")
		rec = insert(t, st, rec)
		for _, tok := range []*tokens.TokenRecord{&rec.Current, &rec.Old} {
			last := tok.LastUsedAt

			// Used after staleBefore: recent enough, nothing is written.
			at := last.Add(30 * time.Second)
			require.NoError(t, st.RecordUse(t.Context(), "k1", tok.Digest, at, last.Add(-time.Microsecond)))
			requireStored(t, st, rec)

			// Used exactly at staleBefore: stale, written.
			at = last.Add(time.Minute)
			require.NoError(t, st.RecordUse(t.Context(), "k1", tok.Digest, at, last))
			tok.LastUsedAt = at
			rec.Version++
			requireStored(t, st, rec)

			// Used before staleBefore: stale, written.
			at = at.Add(time.Hour)
			require.NoError(t, st.RecordUse(t.Context(), "k1", tok.Digest, at, at.Add(-time.Minute)))
			tok.LastUsedAt = at
			rec.Version++
			requireStored(t, st, rec)
		}
	}},
	{"NothingToRecord", func(t *testing.T, st tokens.Store) {
		k1 := insert(t, st, renewedRecord("k1"))
		k2 := insert(t, st, NewRecord("k2"))
		at := T0.Add(365 * 24 * time.Hour)
		for name, c := range map[string]struct {
			id    string
			token tokens.Digest
		}{
			"unknown token":            {"k1", DigestOf("unknown")},
			"link digest":              {"k2", k2.Link.Digest},
			"token of another key":     {"k1", k2.Current.Digest},
			"missing key":              {"k3", k1.Current.Digest},
			"token of a key not there": {"k3", DigestOf("k3/token/1")},
		} {
			require.NoError(t, st.RecordUse(t.Context(), c.id, c.token, at, at), name)
		}
		requireStored(t, st, k1)
		requireStored(t, st, k2)
		requireNoKey(t, st, "k3")
	}},
}
