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
	{"WritesAreLoggedWithTheirKeys", func(t *testing.T, st tokens.Store) {
		log := changeLog(t, st)
		ctx := t.Context()
		start := changes(t, log, "")
		require.True(t, start.Complete)
		require.Empty(t, start.Keys)

		a := insert(t, st, NewRecord("a"))
		insert(t, st, NewRecord("b"))
		insert(t, st, NewRecord("c"))
		inserted := changes(t, log, start.Latest)
		require.True(t, inserted.Complete)
		require.ElementsMatch(t, []string{"a", "b", "c"}, inserted.Keys, "InsertKey was not logged")

		a.Name = "renamed"
		update(t, st, a)
		between := changes(t, log, inserted.Latest)
		require.NoError(t, st.DeleteKey(ctx, "b", nil))
		got := changes(t, log, inserted.Latest)
		require.True(t, got.Complete)
		require.ElementsMatch(t, []string{"a", "b"}, got.Keys)
		require.Equal(t, []string{"a"}, between.Keys)

		after := changes(t, log, between.Latest)
		require.True(t, after.Complete)
		require.Equal(t, []string{"b"}, after.Keys)

		require.NoError(t, st.RecordUse(ctx, "c", DigestOf("current c"), T0.Add(time.Hour), T0.Add(time.Hour)))
		now := changes(t, log, got.Latest)
		require.True(t, now.Complete)
		require.Empty(t, now.Keys, "RecordUse was logged")
		again := changes(t, log, now.Latest)
		require.True(t, again.Complete)
		require.Empty(t, again.Keys)
	}},
	{"RefusedWritesAreNotLogged", func(t *testing.T, st tokens.Store) {
		log := changeLog(t, st)
		ctx := t.Context()
		a := insert(t, st, NewRecord("a"))
		base := changes(t, log, "").Latest
		stale := a
		update(t, st, a)
		require.ErrorIs(t, st.UpdateKey(ctx, &stale), tokens.ErrConflict)
		require.ErrorIs(t, st.DeleteKey(ctx, "missing", nil), tokens.ErrKeyNotFound)
		got := changes(t, log, base)
		require.True(t, got.Complete)
		require.Equal(t, []string{"a"}, got.Keys)
	}},
	{"UnknownPositionIsNotComplete", func(t *testing.T, st tokens.Store) {
		log := changeLog(t, st)
		insert(t, st, NewRecord("a"))
		latest := changes(t, log, "").Latest
		for _, p := range []tokens.ChangePosition{"-1", "+1", " 1", "not a position", "1:2:3:4", "9:1:", latest + "x", "\x00"} {
			got := changes(t, log, p)
			require.False(t, got.Complete, "%q", p)
			require.NotEmpty(t, got.Latest, "%q", p)
			require.True(t, changes(t, log, got.Latest).Complete, "the Latest given for %q", p)
		}
	}},
	{"ConcurrentWritersAreAllLogged", func(t *testing.T, st tokens.Store) {
		log := changeLog(t, st)
		const writers = 12
		for i := range writers {
			insert(t, st, NewRecord(writerName(i)))
		}
		base := changes(t, log, "").Latest
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
		require.Len(t, got.Keys, 3*writers)
		keys := slices.Clone(got.Keys)
		slices.Sort(keys)
		require.Len(t, slices.Compact(keys), writers)
	}},
	{"PollingSeesEveryWriteOnce", func(t *testing.T, st tokens.Store) {
		// A reader polling while writers commit, each poll from the
		// position the previous one gave, is told of every write exactly
		// once: none that commits late is skipped, none is told twice.
		log := changeLog(t, st)
		const writers, writes = 6, 10
		for i := range writers {
			insert(t, st, NewRecord(writerName(i)))
		}
		base := changes(t, log, "").Latest
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		type seen struct {
			since tokens.ChangePosition
			keys  []string
			err   error
		}
		done := make(chan seen, 1)
		go func() {
			since, keys := base, []string(nil)
			for ctx.Err() == nil {
				got, err := log.Changes(ctx, since)
				if err != nil {
					break // the writers' end cancels the reader's last call
				}
				if !got.Complete {
					done <- seen{err: fmt.Errorf("changes after %q not complete", since)}
					return
				}
				keys = append(keys, got.Keys...)
				since = got.Latest
			}
			done <- seen{since: since, keys: keys}
		}()
		errs := concurrently(writers, func(i int) error {
			for range writes {
				if err := updateWithRetry(t.Context(), st, writerName(i), incrementName); err != nil {
					return err
				}
			}
			return nil
		})
		cancel()
		requireNoErrors(t, errs)
		r := <-done
		require.NoError(t, r.err)
		last := changes(t, log, r.since)
		require.True(t, last.Complete)
		all := append(r.keys, last.Keys...)
		require.Len(t, all, writers*writes, "a write was skipped or told twice")
		for i := range writers {
			require.Equal(t, writes, countOf(all, writerName(i)), writerName(i))
		}
	}},
}

func countOf(keys []string, id string) int {
	n := 0
	for _, k := range keys {
		if k == id {
			n++
		}
	}
	return n
}

func changeLog(t *testing.T, st tokens.Store) tokens.ChangeLog {
	log, ok := st.(tokens.ChangeLog)
	if !ok {
		t.Fatalf("%T is not a tokens.ChangeLog: its group should not have run", st)
	}
	return log
}

func changes(t *testing.T, log tokens.ChangeLog, since tokens.ChangePosition) tokens.Changes {
	t.Helper()
	got, err := log.Changes(t.Context(), since)
	require.NoError(t, err)
	return got
}
