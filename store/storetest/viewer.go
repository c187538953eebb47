package storetest

import (
	"bytes"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens"
)

// viewerTests check tokens.KeyViewer, for stores that implement it. Verify
// reads a lent record without a lock while other calls write the key, so a
// store that changed a record in place, instead of storing a new one, would
// hand Verify a record half old and half new: each test keeps what it was
// lent and checks it after later writes of the same key.
var viewerTests = []test{
	{"UnknownKey", func(t *testing.T, st tokens.Store) {
		v := viewer(t, st)
		rec, err := v.ViewKey(t.Context(), "nope")
		require.ErrorIs(t, err, tokens.ErrKeyNotFound)
		require.Nil(t, rec)
	}},
	{"LendsTheStoredRecord", func(t *testing.T, st tokens.Store) {
		v := viewer(t, st)
		rec := insert(t, st, renewedRecord("k1"))
		requireRecord(t, rec, *view(t, v, "k1"))
	}},
	{"ALentRecordOutlivesUpdateKey", func(t *testing.T, st tokens.Store) {
		v := viewer(t, st)
		rec := insert(t, st, NewRecord("k1"))
		pending := lend(t, v, "k1")
		clear(rec.Link.Sealed) // the caller wipes its own copy, as a redemption does
		rec.Link.Sealed = nil
		rec.Link.RedeemedAt = T0.Add(time.Hour)
		rec = update(t, st, rec)
		pending.requireUnchanged(t, "the sealed token was wiped")
		requireRecord(t, rec, *view(t, v, "k1"))

		redeemed := lend(t, v, "k1")
		renewed := renewedRecord("k1") // every field changes
		renewed.Account, renewed.Version = rec.Account, rec.Version
		renewed = update(t, st, renewed)
		pending.requireUnchanged(t, "a second UpdateKey")
		redeemed.requireUnchanged(t, "UpdateKey")
		requireRecord(t, renewed, *view(t, v, "k1"))
	}},
	{"ALentRecordOutlivesARecordedUse", func(t *testing.T, st tokens.Store) {
		v := viewer(t, st)
		rec := insert(t, st, renewedRecord("k1"))
		lent := lend(t, v, "k1")
		at := rec.Current.LastUsedAt.Add(time.Hour)
		require.NoError(t, st.RecordUse(t.Context(), "k1", rec.Current.Digest, at, at.Add(-time.Minute)))
		lent.requireUnchanged(t, "RecordUse")
		require.True(t, at.Equal(view(t, v, "k1").Current.LastUsedAt), "the use is not recorded")
	}},
	{"ALentRecordOutlivesDeleteKey", func(t *testing.T, st tokens.Store) {
		v := viewer(t, st)
		insert(t, st, renewedRecord("k1"))
		lent := lend(t, v, "k1")
		require.NoError(t, st.DeleteKey(t.Context(), "k1", nil))
		lent.requireUnchanged(t, "DeleteKey")
		_, err := v.ViewKey(t.Context(), "k1")
		require.ErrorIs(t, err, tokens.ErrKeyNotFound)
	}},
	{"ReadingALentRecordRacesNoWrite", func(t *testing.T, st tokens.Store) {
		// Under -race, a store that writes a lent record in place fails
		// here even where the write happens to restore every field.
		v := viewer(t, st)
		insert(t, st, NewRecord("k1"))
		l := lend(t, v, "k1")
		done := make(chan bool)
		go func() {
			unchanged := true
			for range 200 {
				unchanged = unchanged && l.matches()
			}
			done <- unchanged
		}()
		for i := range 20 {
			rec := load(t, st, "k1")
			rec.Name = "renamed " + string(rune('a'+i))
			update(t, st, rec)
		}
		require.True(t, <-done, "a lent record changed while it was read")
		l.requireUnchanged(t, "UpdateKey")
	}},
}

func viewer(t *testing.T, st tokens.Store) tokens.KeyViewer {
	t.Helper()
	v, ok := st.(tokens.KeyViewer)
	if !ok {
		t.Fatalf("%T is not a tokens.KeyViewer: its group should not have run", st)
	}
	return v
}

func view(t *testing.T, v tokens.KeyViewer, id string) *tokens.KeyRecord {
	t.Helper()
	rec, err := v.ViewKey(t.Context(), id)
	require.NoError(t, err)
	require.NotNil(t, rec)
	return rec
}

// A lentRecord is a record a KeyViewer lent and a deep copy of it as it
// was lent.
type lentRecord struct {
	rec    *tokens.KeyRecord
	asLent tokens.KeyRecord
}

func lend(t *testing.T, v tokens.KeyViewer, id string) lentRecord {
	t.Helper()
	rec := view(t, v, id)
	asLent := *rec
	asLent.Link.Sealed = bytes.Clone(rec.Link.Sealed)
	return lentRecord{rec: rec, asLent: asLent}
}

// matches reports whether the lent record is still as it was lent; unlike
// requireUnchanged it may run on another goroutine.
func (l lentRecord) matches() bool {
	return reflect.DeepEqual(l.asLent, *l.rec)
}

func (l lentRecord) requireUnchanged(t *testing.T, after string) {
	t.Helper()
	require.Equal(t, l.asLent, *l.rec, "the record lent before %s changed", after)
}
