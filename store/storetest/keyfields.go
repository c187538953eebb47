package storetest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens"
)

// fieldsRecord is NewRecord(id) with every field of R19-R22 and S10 set,
// at their limits where a store could truncate.
func fieldsRecord(id string) tokens.KeyRecord {
	rec := NewRecord(id)
	rec.Scopes = []string{"a", "billing:read", "orders/write.all_-x", string(make100('s'))}
	rec.Metadata = map[string]string{
		"team": "platform", "empty": "", "unicode": "Zürich — 東京 ✓",
		"json-ish": `{"a": "b"}` + "\\", "long": string(make512('v')),
	}
	rec.ExpiresAt = T0.Add(30*24*time.Hour + 7*time.Microsecond)
	rec.LeakedAt = T0.Add(time.Hour + time.Microsecond)
	return rec
}

func make100(c byte) []byte {
	b := make([]byte, 100)
	for i := range b {
		b[i] = c
	}
	return b
}

func make512(c byte) []byte {
	b := make([]byte, 512)
	for i := range b {
		b[i] = c
	}
	return b
}

var keyFieldsTests = []test{
	{"RoundTrip", func(t *testing.T, st tokens.Store) {
		rec := insert(t, st, fieldsRecord("k1"))
		requireStored(t, st, rec)
		got, err := st.KeyByLink(t.Context(), rec.Link.Digest)
		require.NoError(t, err)
		requireRecord(t, rec, got)
		recs, err := st.Keys(t.Context(), rec.Account)
		require.NoError(t, err)
		require.Len(t, recs, 1)
		requireRecord(t, rec, recs[0])
	}},
	{"UpdateChangesAndClears", func(t *testing.T, st tokens.Store) {
		rec := insert(t, st, fieldsRecord("k1"))
		rec.Scopes = []string{"only"}
		rec.Metadata = map[string]string{"k": "v"}
		rec.ExpiresAt = T0.Add(time.Minute)
		rec = update(t, st, rec)
		requireStored(t, st, rec)
		rec.Scopes, rec.Metadata, rec.ExpiresAt, rec.LeakedAt = nil, nil, time.Time{}, time.Time{}
		rec = update(t, st, rec)
		requireStored(t, st, rec)
	}},
	{"EmptyComeBackNil", func(t *testing.T, st tokens.Store) {
		rec := NewRecord("k1")
		rec.Scopes, rec.Metadata = []string{}, map[string]string{}
		insert(t, st, rec)
		got := load(t, st, "k1")
		require.Empty(t, got.Scopes)
		require.Empty(t, got.Metadata)
	}},
	{"ReturnsCopies", func(t *testing.T, st tokens.Store) {
		rec := fieldsRecord("k1")
		insert(t, st, rec)
		want := fieldsRecord("k1")
		want.Version = 1
		rec.Scopes[0] = "changed"
		rec.Metadata["team"] = "changed"
		got := load(t, st, "k1")
		got.Scopes[0] = "scribbled"
		got.Metadata["team"] = "scribbled"
		requireStored(t, st, want)
	}},
	{"EventFields", func(t *testing.T, st tokens.Store) {
		rec := NewRecord("k1")
		rec.Event = &tokens.Event{At: T0, KeyID: "k1", Account: rec.Account, Type: tokens.EventKeyImported}
		rec = insert(t, st, rec)
		rec.Event = &tokens.Event{At: T0.Add(time.Second), KeyID: "k1", Account: rec.Account, Type: tokens.EventKeyUpdated,
			Fields: []string{tokens.FieldExpiresAt, tokens.FieldName, tokens.FieldScopes}}
		rec = update(t, st, rec)
		rec.Event = &tokens.Event{At: T0.Add(2 * time.Second), KeyID: "k1", Account: rec.Account, Type: tokens.EventTokenLeaked,
			Source: "github", URL: "https://github.com/acme/app/blob/main/.env"}
		update(t, st, rec)
		events, err := st.Events(t.Context(), tokens.EventQuery{KeyID: "k1", Limit: 10})
		require.NoError(t, err)
		require.Len(t, events, 3)
		require.Empty(t, events[0].Fields)
		require.Equal(t, []string{"expires_at", "name", "scopes"}, events[1].Fields)
		require.Equal(t, "github", events[2].Source)
		require.Equal(t, "https://github.com/acme/app/blob/main/.env", events[2].URL)
	}},
}

func tokenIndex(t *testing.T, st tokens.Store) tokens.TokenIndex {
	t.Helper()
	index, ok := st.(tokens.TokenIndex)
	if !ok {
		t.Fatalf("%T is not a tokens.TokenIndex: its group should not have run", st)
	}
	return index
}

var tokenIndexTests = []test{
	{"KeyByToken", func(t *testing.T, st tokens.Store) {
		index := tokenIndex(t, st)
		insert(t, st, NewRecord("k1"))
		pending := renewedRecord("k2")
		pending.Link.RedeemedAt, pending.Link.Sealed = time.Time{}, []byte("sealed new token")
		rec := insert(t, st, pending)
		want := rec
		want.Link.Sealed = nil // left in the store: only a redemption reads it
		for _, d := range []tokens.Digest{rec.Current.Digest, rec.Old.Digest} {
			got, err := index.KeyByToken(t.Context(), d)
			require.NoError(t, err)
			require.Nil(t, got.Link.Sealed, "the look-up by token brought the sealed link token out of the store")
			requireRecord(t, want, got)
		}
		_, err := index.KeyByToken(t.Context(), DigestOf("unknown"))
		require.ErrorIs(t, err, tokens.ErrKeyNotFound)
		_, err = index.KeyByToken(t.Context(), rec.Link.Digest)
		require.ErrorIs(t, err, tokens.ErrKeyNotFound, "a link digest is no token")
	}},
	{"FollowsUpdatesAndDeletes", func(t *testing.T, st tokens.Store) {
		index := tokenIndex(t, st)
		rec := insert(t, st, renewedRecord("k1"))
		old := rec.Old.Digest
		rec.HasOld, rec.Old = false, tokens.TokenRecord{}
		rec = update(t, st, rec)
		_, err := index.KeyByToken(t.Context(), old)
		require.ErrorIs(t, err, tokens.ErrKeyNotFound)
		require.NoError(t, st.DeleteKey(t.Context(), "k1", nil))
		_, err = index.KeyByToken(t.Context(), rec.Current.Digest)
		require.ErrorIs(t, err, tokens.ErrKeyNotFound)
	}},
	{"InsertRefusesAnotherKeysToken", func(t *testing.T, st tokens.Store) {
		tokenIndex(t, st)
		first := insert(t, st, renewedRecord("k1"))
		for name, d := range map[string]tokens.Digest{"current": first.Current.Digest, "old": first.Old.Digest} {
			for _, slot := range []string{"current", "old"} {
				rec := NewRecord("k2")
				if slot == "current" {
					rec.Current.Digest = d
				} else {
					rec.HasOld, rec.Old = true, tokens.TokenRecord{Digest: d, CreatedAt: T0}
				}
				err := st.InsertKey(t.Context(), &rec)
				require.ErrorIs(t, err, tokens.ErrDuplicate, "%s as %s", name, slot)
				requireNoKey(t, st, "k2")
			}
		}
		requireStored(t, st, first)
	}},
	{"UpdateRefusesAnotherKeysToken", func(t *testing.T, st tokens.Store) {
		tokenIndex(t, st)
		first := insert(t, st, renewedRecord("k1"))
		second := insert(t, st, NewRecord("k2"))
		for name, d := range map[string]tokens.Digest{"current": first.Current.Digest, "old": first.Old.Digest} {
			for _, slot := range []string{"current", "old"} {
				rec := second
				if slot == "current" {
					rec.Current.Digest = d
				} else {
					rec.HasOld, rec.Old = true, tokens.TokenRecord{Digest: d, CreatedAt: T0}
				}
				err := st.UpdateKey(t.Context(), &rec)
				require.ErrorIs(t, err, tokens.ErrDuplicate, "%s as %s", name, slot)
				require.Equal(t, second.Version, rec.Version)
			}
		}
		requireStored(t, st, first)
		requireStored(t, st, second)
	}},
	{"OwnTokensMoveBetweenSlots", func(t *testing.T, st tokens.Store) {
		tokenIndex(t, st)
		rec := insert(t, st, renewedRecord("k1"))
		rec.Current, rec.Old = rec.Old, rec.Current // an undo and a renewal, in one
		rec = update(t, st, rec)
		requireStored(t, st, rec)
	}},
	{"RevokedTokenOwner", func(t *testing.T, st tokens.Store) {
		index := tokenIndex(t, st)
		rec := insert(t, st, renewedRecord("k1"))
		gone := DigestOf("revoked digest")
		rec.Revoked = []tokens.RevokedToken{{Digest: gone, RevokedAt: T0.Add(time.Hour)}}
		update(t, st, rec)
		id, r, ok, err := index.RevokedTokenOwner(t.Context(), gone)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, "k1", id)
		require.True(t, r.RevokedAt.Equal(T0.Add(time.Hour)))
		_, _, ok, err = index.RevokedTokenOwner(t.Context(), DigestOf("never"))
		require.NoError(t, err)
		require.False(t, ok)
		require.NoError(t, st.DeleteKey(t.Context(), "k1", nil))
		_, _, ok, err = index.RevokedTokenOwner(t.Context(), gone)
		require.NoError(t, err)
		require.False(t, ok, "DeleteKey forgets the key's revoked tokens")
	}},
	{"RevokedTokenOwnerIsTheLatest", func(t *testing.T, st tokens.Store) {
		// A token that one key deleted long ago, not yet purged, may be
		// imported by another key and deleted again (R24): the owner is
		// the key that deleted it last, whatever the order of the rows.
		index := tokenIndex(t, st)
		gone := DigestOf("deleted twice")
		for i, id := range []string{"k1", "k2", "k3"} {
			rec := insert(t, st, NewRecord(id))
			at := T0.Add(time.Duration([]int{5, 30, 1}[i]) * time.Hour)
			rec.Revoked = []tokens.RevokedToken{{Digest: gone, RevokedAt: at}}
			update(t, st, rec)
		}
		for range 20 { // memstore's maps come in any order
			id, r, ok, err := index.RevokedTokenOwner(t.Context(), gone)
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, "k2", id)
			require.True(t, r.RevokedAt.Equal(T0.Add(30*time.Hour)))
		}
	}},
}

var keyViewerTests = []test{
	{"LentRecordNeverChanges", func(t *testing.T, st tokens.Store) {
		viewer, ok := st.(tokens.KeyViewer)
		if !ok {
			t.Fatalf("%T is not a tokens.KeyViewer: its group should not have run", st)
		}
		rec := insert(t, st, fieldsRecord("k1"))
		lent, err := viewer.ViewKey(t.Context(), "k1")
		require.NoError(t, err)
		before := *lent
		before.Scopes = append([]string(nil), lent.Scopes...)
		before.Metadata = map[string]string{}
		for k, v := range lent.Metadata {
			before.Metadata[k] = v
		}
		rec.Name, rec.Scopes, rec.Metadata = "renamed", []string{"other"}, map[string]string{"x": "y"}
		rec.ExpiresAt = time.Time{}
		update(t, st, rec)
		require.NoError(t, st.RecordUse(t.Context(), "k1", rec.Current.Digest, T0.Add(time.Hour), T0.Add(time.Hour)))
		requireRecord(t, before, *lent)
	}},
}
