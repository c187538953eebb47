package storetest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens"
)

// contenders is how many goroutines race for one key in the concurrency
// tests.
const contenders = 24

var concurrencyTests = []test{
	{"OneCompareAndSwapWins", func(t *testing.T, st tokens.Store) {
		loaded := insert(t, st, NewRecord("k1"))
		errs := concurrently(contenders, func(i int) error {
			rec := loaded
			rec.Name = writerName(i)
			rec.Current.LastUsedAt = T0.Add(time.Duration(i) * time.Second)
			return st.UpdateKey(t.Context(), &rec)
		})
		winner := requireOneWinner(t, errs, tokens.ErrConflict)
		loaded.Name = writerName(winner)
		loaded.Current.LastUsedAt = T0.Add(time.Duration(winner) * time.Second)
		loaded.Version = 2
		requireStored(t, st, loaded)
	}},
	{"ReadModifyWriteLosesNoUpdate", func(t *testing.T, st tokens.Store) {
		const writers, increments = 8, 10
		rec := NewRecord("k1")
		rec.Name = "0"
		rec = insert(t, st, rec)
		errs := concurrently(writers, func(int) error {
			for range increments {
				if err := updateWithRetry(t.Context(), st, "k1", incrementName); err != nil {
					return err
				}
			}
			return nil
		})
		requireNoErrors(t, errs)
		got := load(t, st, "k1")
		require.Equal(t, strconv.Itoa(writers*increments), got.Name)
		require.Equal(t, int64(1+writers*increments), got.Version)
		require.Equal(t, rec.Active, got.Active, "toggled an even number of times")
		require.Equal(t, rec.Current.CreatedAt, got.Current.CreatedAt, "toggled an even number of times")
	}},
	{"RecordUseDuringUpdates", func(t *testing.T, st tokens.Store) {
		// Every RecordUse below is stale by the time it runs, so each must
		// write exactly once, and the updaters, which copy what they read,
		// must not undo it.
		const updaters, increments, uses = 4, 6, 12
		rec := renewedRecord("k1")
		rec.Name = "0"
		rec.Current.LastUsedAt = time.Time{}
		rec.Old.LastUsedAt = time.Time{}
		rec = insert(t, st, rec)
		lastUse := T0.Add(uses * time.Minute)

		errs := concurrently(updaters+2, func(i int) error {
			if i >= updaters {
				token := []tokens.Digest{rec.Current.Digest, rec.Old.Digest}[i-updaters]
				for n := 1; n <= uses; n++ {
					at := T0.Add(time.Duration(n) * time.Minute)
					if err := st.RecordUse(t.Context(), "k1", token, at, at.Add(-time.Minute)); err != nil {
						return err
					}
				}
				return nil
			}
			for range increments {
				if err := updateWithRetry(t.Context(), st, "k1", incrementName); err != nil {
					return err
				}
			}
			return nil
		})
		requireNoErrors(t, errs)
		got := load(t, st, "k1")
		require.Equal(t, strconv.Itoa(updaters*increments), got.Name)
		require.Equal(t, lastUse, got.Current.LastUsedAt)
		require.Equal(t, lastUse, got.Old.LastUsedAt)
		require.Equal(t, int64(1+updaters*increments+2*uses), got.Version)
	}},
	{"OneInsertWins", func(t *testing.T, st tokens.Store) {
		recs := make([]tokens.KeyRecord, contenders)
		for i := range recs {
			recs[i] = renewedRecord(writerName(i))
			recs[i].ID = "k1"
		}
		errs := concurrently(contenders, func(i int) error {
			return st.InsertKey(t.Context(), &recs[i])
		})
		winner := requireOneWinner(t, errs, tokens.ErrDuplicate)
		requireStored(t, st, recs[winner])
		for i, rec := range recs {
			if i != winner {
				requireNoLink(t, st, rec.Link.Digest)
			}
		}
	}},
	{"OneKeyTakesALinkDigest", func(t *testing.T, st tokens.Store) {
		recs := make([]tokens.KeyRecord, contenders)
		for i := range recs {
			recs[i] = insert(t, st, NewRecord(writerName(i)))
		}
		link := DigestOf("wanted by all")
		errs := concurrently(contenders, func(i int) error {
			rec := recs[i]
			rec.Link.Digest = link
			return st.UpdateKey(t.Context(), &rec)
		})
		winner := requireOneWinner(t, errs, tokens.ErrDuplicate)
		got, err := st.KeyByLink(t.Context(), link)
		require.NoError(t, err)
		require.Equal(t, recs[winner].ID, got.ID)
		for i, rec := range recs {
			if i != winner {
				requireStored(t, st, rec)
			}
		}
	}},
	{"OneDeleteWins", func(t *testing.T, st tokens.Store) {
		insert(t, st, NewRecord("k1"))
		errs := concurrently(contenders, func(int) error {
			return st.DeleteKey(t.Context(), "k1", nil)
		})
		requireOneWinner(t, errs, tokens.ErrKeyNotFound)
		requireNoKey(t, st, "k1")
	}},
}

// concurrently calls fn(0) to fn(n-1) on n goroutines released at once and
// returns their errors by index. It only collects: the test goroutine
// asserts.
func concurrently(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = fn(i)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// requireOneWinner checks that exactly one call succeeded and every other
// failed with loss, and returns the winner's index.
func requireOneWinner(t *testing.T, errs []error, loss error) int {
	t.Helper()
	winner := -1
	for i, err := range errs {
		if err == nil {
			require.Equal(t, -1, winner, "calls %d and %d both succeeded", winner, i)
			winner = i
			continue
		}
		require.ErrorIs(t, err, loss, "call %d", i)
	}
	require.NotEqual(t, -1, winner, "no call succeeded")
	return winner
}

func requireNoErrors(t *testing.T, errs []error) {
	t.Helper()
	for i, err := range errs {
		require.NoError(t, err, "goroutine %d", i)
	}
}

// updateWithRetry reads key id, applies change and writes it back, starting
// over on ErrConflict as the Manager does.
func updateWithRetry(ctx context.Context, st tokens.Store, id string, change func(*tokens.KeyRecord)) error {
	// Each conflict means another writer succeeded, so a few hundred
	// attempts are plenty for the suite's writers.
	const attempts = 1000
	for range attempts {
		rec, err := st.Key(ctx, id)
		if err != nil {
			return err
		}
		change(&rec)
		err = st.UpdateKey(ctx, &rec)
		if !errors.Is(err, tokens.ErrConflict) {
			return err
		}
	}
	return fmt.Errorf("key %q: still conflicting after %d attempts", id, attempts)
}

// incrementName treats the key's name as a counter and adds one to it. It
// also toggles the active flag and the current token's creation time, so
// that an update writes more than the key's own row.
func incrementName(rec *tokens.KeyRecord) {
	n, _ := strconv.Atoi(rec.Name)
	rec.Name = strconv.Itoa(n + 1)
	rec.Active = !rec.Active
	if rec.Current.CreatedAt.Equal(T0) {
		rec.Current.CreatedAt = T0.Add(time.Second)
	} else {
		rec.Current.CreatedAt = T0
	}
}

func writerName(i int) string {
	return fmt.Sprintf("writer %02d", i)
}
