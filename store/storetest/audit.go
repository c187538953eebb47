package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens"
)

// lifecycleTests check what the stores keep for R14-R17: scheduled ends,
// revoked links, remembered revoked tokens and the audit trail.
var lifecycleTests = []test{
	{"ScheduledEndAndRevocationRoundTrip", func(t *testing.T, st tokens.Store) {
		rec := renewedRecord("k1")
		rec.Old.ExpiresAt = T0.Add(100*24*time.Hour + 5*time.Microsecond)
		rec.RevokedTokenUsedAt = T0.Add(time.Hour + 3*time.Microsecond)
		rec = insert(t, st, rec)
		requireStored(t, st, rec)

		rec.Link.RedeemedAt = time.Time{}
		rec.Link.RevokedAt = T0.Add(92*24*time.Hour + 9*time.Microsecond)
		rec.Link.Sealed = nil
		rec.Old.ExpiresAt = time.Time{}
		rec = update(t, st, rec)
		requireStored(t, st, rec)
		got, err := st.KeyByLink(t.Context(), rec.Link.Digest)
		require.NoError(t, err)
		requireRecord(t, rec, got)
	}},
	{"RevokedTokensAreRememberedUntilDeleteOrPurge", func(t *testing.T, st tokens.Store) {
		ctx := t.Context()
		a := insert(t, st, NewRecord("a"))
		insert(t, st, NewRecord("b"))
		first := tokens.RevokedToken{Digest: DigestOf("revoked 1"), RevokedAt: T0.Add(time.Hour)}
		second := tokens.RevokedToken{Digest: DigestOf("revoked 2"), RevokedAt: T0.Add(48 * time.Hour)}
		a.Revoked = []tokens.RevokedToken{first, second}
		a.Name = "renamed"
		a = update(t, st, a)
		requireStored(t, st, a) // Revoked is not part of the record

		for _, want := range []tokens.RevokedToken{first, second} {
			got, ok, err := st.RevokedToken(ctx, "a", want.Digest)
			require.NoError(t, err)
			require.True(t, ok)
			require.True(t, want.RevokedAt.Equal(got.RevokedAt))
			require.Equal(t, want.Digest, got.Digest)
		}
		_, ok, err := st.RevokedToken(ctx, "b", first.Digest)
		require.NoError(t, err)
		require.False(t, ok, "a revoked token of another key matched")

		n, err := st.PurgeRevoked(ctx, T0.Add(24*time.Hour))
		require.NoError(t, err)
		require.Equal(t, 1, n)
		_, ok, _ = st.RevokedToken(ctx, "a", first.Digest)
		require.False(t, ok, "purged token still remembered")
		_, ok, _ = st.RevokedToken(ctx, "a", second.Digest)
		require.True(t, ok)

		require.NoError(t, st.DeleteKey(ctx, "a", nil))
		_, ok, err = st.RevokedToken(ctx, "a", second.Digest)
		require.NoError(t, err)
		require.False(t, ok, "DeleteKey kept the key's revoked tokens")
	}},
	{"EventsAreAppendedWithTheirWrites", func(t *testing.T, st tokens.Store) {
		ctx := t.Context()
		ev := func(typ tokens.EventType, id string, at time.Duration) *tokens.Event {
			return &tokens.Event{At: T0.Add(at), KeyID: id, Account: "acme", Type: typ, Actor: "ops@example.com"}
		}
		a := NewRecord("a")
		a.Event = ev(tokens.EventKeyCreated, "a", 0)
		a = insert(t, st, a)
		b := NewRecord("b")
		b.Account = "globex"
		b.Event = ev(tokens.EventKeyCreated, "b", time.Second)
		b.Event.Account = "globex"
		insert(t, st, b)
		a.Event = &tokens.Event{At: T0.Add(2 * time.Second), KeyID: "a", Account: "acme",
			Type: tokens.EventTokenRenewed, Policy: tokens.DeleteLater, OldTokenTTL: 36 * time.Hour}
		a = update(t, st, a)
		a.Event = nil // a write with no event appends none
		a = update(t, st, a)
		stale := a
		stale.Version--
		stale.Event = ev(tokens.EventKeyDeactivated, "a", 3*time.Second)
		require.ErrorIs(t, st.UpdateKey(ctx, &stale), tokens.ErrConflict)
		require.ErrorIs(t, st.DeleteKey(ctx, "missing", ev(tokens.EventKeyDeleted, "missing", 4*time.Second)), tokens.ErrKeyNotFound)
		deleted := ev(tokens.EventKeyDeleted, "a", 5*time.Second)
		deleted.Account = "" // the store fills it from the key it deletes
		require.NoError(t, st.DeleteKey(ctx, "a", deleted))

		all := events(t, st, tokens.EventQuery{Limit: 100})
		require.Equal(t, []tokens.EventType{tokens.EventKeyCreated, tokens.EventKeyCreated, tokens.EventTokenRenewed, tokens.EventKeyDeleted}, types(all))
		require.Equal(t, "ops@example.com", all[0].Actor)
		require.True(t, T0.Equal(all[0].At))
		require.Same(t, time.UTC, all[0].At.Location())
		require.Equal(t, tokens.DeleteLater, all[2].Policy)
		require.Equal(t, 36*time.Hour, all[2].OldTokenTTL)
		require.Equal(t, "acme", all[3].Account, "the deleted key's account")
		for _, e := range all {
			require.NotEmpty(t, e.Cursor)
		}

		require.Equal(t, []tokens.EventType{tokens.EventKeyCreated, tokens.EventTokenRenewed, tokens.EventKeyDeleted},
			types(events(t, st, tokens.EventQuery{KeyID: "a", Limit: 100})), "events outlive DeleteKey")
		require.Equal(t, []string{"b"}, keyIDs(events(t, st, tokens.EventQuery{Account: "globex", Limit: 100})))
		require.Empty(t, events(t, st, tokens.EventQuery{KeyID: "nobody", Limit: 100}))
	}},
	{"CursorsPageWithoutGapOrRepeat", func(t *testing.T, st tokens.Store) {
		for i := range 7 {
			rec := NewRecord(fmt.Sprintf("k%d", i))
			rec.Event = &tokens.Event{At: T0.Add(time.Duration(i) * time.Second), KeyID: rec.ID, Account: "acme", Type: tokens.EventKeyCreated}
			insert(t, st, rec)
		}
		var seen []string
		after := ""
		for {
			page := events(t, st, tokens.EventQuery{After: after, Limit: 3})
			if len(page) == 0 {
				break
			}
			require.LessOrEqual(t, len(page), 3)
			seen = append(seen, keyIDs(page)...)
			after = page[len(page)-1].Cursor
		}
		require.Equal(t, []string{"k0", "k1", "k2", "k3", "k4", "k5", "k6"}, seen)
		_, err := st.Events(t.Context(), tokens.EventQuery{After: "not a cursor", Limit: 3})
		require.ErrorIs(t, err, tokens.ErrInvalidCursor)
	}},
	{"PurgeEventsByTime", func(t *testing.T, st tokens.Store) {
		for i := range 4 {
			rec := NewRecord(fmt.Sprintf("k%d", i))
			rec.Event = &tokens.Event{At: T0.Add(time.Duration(i) * time.Hour), KeyID: rec.ID, Account: "acme", Type: tokens.EventKeyCreated}
			insert(t, st, rec)
		}
		n, err := st.PurgeEvents(t.Context(), T0.Add(2*time.Hour))
		require.NoError(t, err)
		require.Equal(t, 2, n)
		require.Equal(t, []string{"k2", "k3"}, keyIDs(events(t, st, tokens.EventQuery{Limit: 10})))
	}},
	{"ConcurrentWritersAppendEveryEventOnce", func(t *testing.T, st tokens.Store) {
		const writers = 8
		for i := range writers {
			insert(t, st, NewRecord(writerName(i)))
		}
		errs := concurrently(writers, func(i int) error {
			for range 3 {
				err := updateWithRetry(t.Context(), st, writerName(i), func(rec *tokens.KeyRecord) {
					incrementName(rec)
					rec.Event = &tokens.Event{At: T0, KeyID: rec.ID, Account: rec.Account, Type: tokens.EventKeyActivated}
				})
				if err != nil {
					return err
				}
			}
			return nil
		})
		requireNoErrors(t, errs)
		all := events(t, st, tokens.EventQuery{Limit: 1000})
		require.Len(t, all, 3*writers, "a conflicting write appended its event, or a write lost it")
	}},
}

func events(t *testing.T, st tokens.Store, q tokens.EventQuery) []tokens.Event {
	t.Helper()
	got, err := st.Events(t.Context(), q)
	require.NoError(t, err)
	return got
}

func types(events []tokens.Event) []tokens.EventType {
	out := []tokens.EventType{}
	for _, e := range events {
		out = append(out, e.Type)
	}
	return out
}

func keyIDs(events []tokens.Event) []string {
	out := []string{}
	for _, e := range events {
		out = append(out, e.KeyID)
	}
	return out
}
