package storetest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens"
)

// changeLogTests check tokens.ChangeLog, for stores that implement it.
var changeLogTests = []test{
	{"WritesAreNumberedWithTheirKeys", func(t *testing.T, st tokens.Store) {
		log := changeLog(t, st)
		ctx := t.Context()
		start := changes(t, log, 0)
		require.True(t, start.Complete)
		require.Empty(t, start.Keys)
		base := start.Latest

		a := insert(t, st, NewRecord("a"))
		insert(t, st, NewRecord("b"))
		insert(t, st, NewRecord("c"))
		inserted := changes(t, log, base)
		require.Equal(t, base+3, inserted.Latest, "InsertKey was not numbered")
		require.ElementsMatch(t, []string{"a", "b", "c"}, inserted.Keys)
		base = inserted.Latest

		a.Name = "renamed"
		update(t, st, a)
		require.NoError(t, st.DeleteKey(ctx, "b", nil))
		got := changes(t, log, base)
		require.Equal(t, base+2, got.Latest)
		require.True(t, got.Complete)
		require.ElementsMatch(t, []string{"a", "b"}, got.Keys)

		after := changes(t, log, base+1)
		require.True(t, after.Complete)
		require.Equal(t, []string{"b"}, after.Keys)

		require.NoError(t, st.RecordUse(ctx, "c", DigestOf("current c"), T0.Add(time.Hour), T0.Add(time.Hour)))
		now := changes(t, log, base+2)
		require.Equal(t, base+2, now.Latest, "RecordUse was numbered")
		require.True(t, now.Complete)
		require.Empty(t, now.Keys)
	}},
	{"RefusedWritesAreNotNumbered", func(t *testing.T, st tokens.Store) {
		log := changeLog(t, st)
		ctx := t.Context()
		a := insert(t, st, NewRecord("a"))
		base := changes(t, log, 0).Latest
		stale := a
		update(t, st, a)
		require.ErrorIs(t, st.UpdateKey(ctx, &stale), tokens.ErrConflict)
		require.ErrorIs(t, st.DeleteKey(ctx, "missing", nil), tokens.ErrKeyNotFound)
		got := changes(t, log, base)
		require.Equal(t, base+1, got.Latest)
		require.Equal(t, []string{"a"}, got.Keys)
	}},
	{"UnknownNumberIsNotComplete", func(t *testing.T, st tokens.Store) {
		log := changeLog(t, st)
		latest := changes(t, log, 0).Latest
		require.False(t, changes(t, log, latest+5).Complete)
		require.False(t, changes(t, log, -1).Complete)
	}},
	{"ConcurrentWritersAreAllNumbered", func(t *testing.T, st tokens.Store) {
		log := changeLog(t, st)
		const writers = 12
		for i := range writers {
			insert(t, st, NewRecord(writerName(i)))
		}
		base := changes(t, log, 0).Latest
		errs := concurrently(writers, func(i int) error {
			for range 3 {
				if err := updateWithRetry(t.Context(), st, writerName(i), incrementName); err != nil {
					return err
				}
			}
			return nil
		})
		requireNoErrors(t, errs)
		got := changes(t, log, base)
		require.True(t, got.Complete)
		require.Equal(t, base+3*writers, got.Latest)
		keys := slices.Clone(got.Keys)
		slices.Sort(keys)
		require.Len(t, slices.Compact(keys), writers)
	}},
	{"NumbersCommitInOrder", func(t *testing.T, st tokens.Store) {
		// A reader polling while writers commit must never be told of a
		// number whose predecessors it has not been told of: the count of
		// changes it has seen always equals the numbers it passed.
		log := changeLog(t, st)
		const writers = 6
		for i := range writers {
			insert(t, st, NewRecord(writerName(i)))
		}
		base := changes(t, log, 0).Latest
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		seen := make(chan error, 1)
		go func() {
			since, count := base, int64(0)
			for ctx.Err() == nil {
				got, err := log.Changes(ctx, since)
				if err != nil {
					seen <- nil // the writers' end cancels the reader's last call
					return
				}
				if !got.Complete {
					seen <- fmt.Errorf("changes after %d not complete", since)
					return
				}
				count += int64(len(got.Keys))
				since = got.Latest
				if count != since-base {
					seen <- fmt.Errorf("saw %d changes up to number %d", count, since)
					return
				}
			}
			seen <- nil
		}()
		errs := concurrently(writers, func(i int) error {
			for range 10 {
				if err := updateWithRetry(t.Context(), st, writerName(i), incrementName); err != nil {
					return err
				}
			}
			return nil
		})
		cancel()
		requireNoErrors(t, errs)
		require.NoError(t, <-seen)
	}},
}

func changeLog(t *testing.T, st tokens.Store) tokens.ChangeLog {
	log, ok := st.(tokens.ChangeLog)
	if !ok {
		t.Skipf("%T does not implement tokens.ChangeLog", st)
	}
	return log
}

func changes(t *testing.T, log tokens.ChangeLog, since int64) tokens.Changes {
	t.Helper()
	got, err := log.Changes(t.Context(), since)
	require.NoError(t, err)
	return got
}
