package tokens_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens"
)

// Tests of the rules R11-R13 of docs/rules.md: key administration, the
// times a key carries (R12; source_test.go reads the source for the rest
// of R12) and atomicity under concurrency.

func TestR11_DeactivationBlocksOnlyVerify(t *testing.T) {
	f := newFixture(t)
	old := f.issued()
	require.NoError(t, f.m.Deactivate(f.ctx, old.KeyID))
	require.False(t, f.key(old.KeyID).Active)
	f.rejects(old.KeyID, old.Token, tokens.ErrKeyInactive)

	link := f.renew(old.KeyID, tokens.DeleteLater)
	latest := f.redeem(link)
	f.rejects(old.KeyID, latest.Token, tokens.ErrKeyInactive)
	require.NoError(t, f.m.Undo(f.ctx, old.KeyID))
	f.redeem(f.renew(old.KeyID, tokens.DeleteLater))
	require.NoError(t, f.m.DeleteOld(f.ctx, old.KeyID))
	third := f.redeem(f.renew(old.KeyID, tokens.DeleteNow))
	require.False(t, f.key(old.KeyID).Active, "a change to the key reactivated it")

	require.NoError(t, f.m.Activate(f.ctx, old.KeyID))
	require.True(t, f.key(old.KeyID).Active)
	f.verifies(old.KeyID, third.Token)
	f.rejects(old.KeyID, old.Token, tokens.ErrInvalidCredentials)
	f.rejects(old.KeyID, latest.Token, tokens.ErrInvalidCredentials)
}

func TestR11_DeleteKeyIsIrreversible(t *testing.T) {
	f := newFixture(t)
	old := f.issued()
	link := f.renew(old.KeyID, tokens.DeleteLater)
	latest := f.peek(old.KeyID, link)
	f.verifies(old.KeyID, latest)
	other := f.issued()

	require.NoError(t, f.m.DeleteKey(f.ctx, old.KeyID))
	f.rejects(old.KeyID, old.Token, tokens.ErrInvalidCredentials)
	f.rejects(old.KeyID, latest, tokens.ErrInvalidCredentials)
	_, err := f.m.Verify(f.ctx, old.KeyID, old.Token)
	require.NotErrorIs(t, err, tokens.ErrKeyInactive)
	_, err = f.m.RedeemLink(f.ctx, link.URL)
	require.ErrorIs(t, err, tokens.ErrLinkNotFound)
	_, err = f.m.Key(f.ctx, old.KeyID)
	require.ErrorIs(t, err, tokens.ErrKeyNotFound)
	require.ErrorIs(t, f.m.DeleteKey(f.ctx, old.KeyID), tokens.ErrKeyNotFound)
	_, err = f.m.Renew(f.ctx, old.KeyID, tokens.RenewOptions{})
	require.ErrorIs(t, err, tokens.ErrKeyNotFound)
	require.ErrorIs(t, f.m.DeleteOld(f.ctx, old.KeyID), tokens.ErrKeyNotFound)
	require.ErrorIs(t, f.m.Undo(f.ctx, old.KeyID), tokens.ErrKeyNotFound)
	require.ErrorIs(t, f.m.Activate(f.ctx, old.KeyID), tokens.ErrKeyNotFound)
	require.ErrorIs(t, f.m.Deactivate(f.ctx, old.KeyID), tokens.ErrKeyNotFound)

	keys, err := f.m.Keys(f.ctx, "acme")
	require.NoError(t, err)
	require.Len(t, keys, 1)
	require.Equal(t, other.KeyID, keys[0].ID)
	f.verifies(other.KeyID, other.Token)
}

func TestR11_ActivateAndDeactivate(t *testing.T) {
	f := newFixture(t)
	c := f.issued()
	for range 2 {
		require.NoError(t, f.m.Deactivate(f.ctx, c.KeyID))
		require.False(t, f.key(c.KeyID).Active)
		f.rejects(c.KeyID, c.Token, tokens.ErrKeyInactive)
		require.NoError(t, f.m.Activate(f.ctx, c.KeyID))
		require.True(t, f.key(c.KeyID).Active)
		f.verifies(c.KeyID, c.Token)
	}
}

func TestR11_NamesNeedNotBeUniqueAndAccountMayBeEmpty(t *testing.T) {
	f := newFixture(t)
	a, _ := f.create("acme", "erp-sync")
	b, _ := f.create("acme", "erp-sync")
	require.NotEqual(t, a.ID, b.ID)
	e, link := f.create("", "erp-sync")
	require.Equal(t, "", e.Account)
	f.verifies(e.ID, f.redeem(link).Token)

	keys, err := f.m.Keys(f.ctx, "")
	require.NoError(t, err)
	require.Len(t, keys, 1)
	require.Equal(t, e.ID, keys[0].ID)
}

func TestR11_KeysFiltersByAccountOldestFirst(t *testing.T) {
	f := newFixture(t)
	var want []string
	for i := range 5 {
		k, _ := f.create("acme", "key "+strconv.Itoa(i))
		want = append(want, k.ID)
		f.create("other", "key "+strconv.Itoa(i))
		f.clk.Add(time.Minute)
	}
	keys, err := f.m.Keys(f.ctx, "acme")
	require.NoError(t, err)
	var got []string
	for i, k := range keys {
		require.Equal(t, "acme", k.Account)
		require.Equal(t, "key "+strconv.Itoa(i), k.Name)
		got = append(got, k.ID)
	}
	require.Equal(t, want, got)

	none, err := f.m.Keys(f.ctx, "nobody")
	require.NoError(t, err)
	require.Empty(t, none)
	none, err = f.m.Keys(f.ctx, "ACME")
	require.NoError(t, err)
	require.Empty(t, none)
}

func TestR11_UnknownKey(t *testing.T) {
	f := newFixture(t)
	for _, id := range []string{"key_" + strings.Repeat("Z", 22), "", "a b", strings.Repeat("k", 65)} {
		_, err := f.m.Key(f.ctx, id)
		require.ErrorIs(t, err, tokens.ErrKeyNotFound, "%q", id)
		require.ErrorIs(t, f.m.Activate(f.ctx, id), tokens.ErrKeyNotFound, "%q", id)
		require.ErrorIs(t, f.m.Deactivate(f.ctx, id), tokens.ErrKeyNotFound, "%q", id)
		require.ErrorIs(t, f.m.DeleteKey(f.ctx, id), tokens.ErrKeyNotFound, "%q", id)
	}
}

func TestR12_KeyTimesAreClockTimes(t *testing.T) {
	// A clock far from the wall clock, in another zone: any time that did
	// not come from it stands out.
	clk := clock.NewMock()
	zone := time.FixedZone("UTC+2", 2*60*60)
	clk.Set(time.Date(2091, 7, 4, 13, 14, 15, 0, zone))
	f := newFixture(t)
	f.clk = clk
	f.m = f.manager()

	created := clk.Now()
	key, link := f.create("acme", "erp-sync")
	requireTime(t, created, key.CreatedAt, "key created")
	requireTime(t, created, key.Token.CreatedAt, "token created")
	requireTime(t, created.Add(24*time.Hour), link.ExpiresAt, "link expiry")
	requireTime(t, created.Add(24*time.Hour), key.LinkExpiresAt, "key's link expiry")

	clk.Add(3 * time.Hour)
	redeemed := clk.Now()
	old := f.redeem(link)
	requireTime(t, redeemed, f.record(key.ID).Link.RedeemedAt, "link redeemed")
	clk.Add(time.Hour)
	used := clk.Now()
	k, err := f.m.Verify(f.ctx, key.ID, old.Token)
	require.NoError(t, err)
	requireTime(t, used, k.Token.LastUsedAt, "last used")

	clk.Add(time.Hour)
	renewed := clk.Now()
	next := f.renew(key.ID, tokens.DeleteLater)
	requireTime(t, renewed.Add(24*time.Hour), next.ExpiresAt, "renewal link expiry")
	k = f.key(key.ID)
	requireTime(t, created, k.CreatedAt, "key created, after renewal")
	requireTime(t, renewed, k.Token.CreatedAt, "new token created")
	require.True(t, k.Token.LastUsedAt.IsZero())
	requireTime(t, created, k.OldToken.CreatedAt, "old token created")
	requireTime(t, used, k.OldToken.LastUsedAt, "old token last used")
	requireTime(t, renewed.Add(24*time.Hour), k.LinkExpiresAt, "key's link expiry, after renewal")
}

func TestR13_ConcurrentRenewHasExactlyOneWinner(t *testing.T) {
	for _, after := range []string{"redeemed", "expired"} {
		t.Run(after, func(t *testing.T) {
			f := newFixture(t)
			key, link := f.create("acme", "erp-sync")
			if after == "redeemed" {
				f.redeem(link)
			} else {
				f.clk.Add(24 * time.Hour)
			}
			const n = 32
			links := make([]*tokens.ShareLink, n)
			errs := collect(n, func(i int) error {
				var err error
				links[i], err = f.m.Renew(f.ctx, key.ID, tokens.RenewOptions{OldToken: tokens.OldTokenPolicy(i % 2)})
				return err
			})
			ok, pending, others := tally(errs, tokens.ErrRenewalPending)
			require.Empty(t, others)
			require.Equal(t, 1, ok, "successful renewals")
			require.Equal(t, n-1, pending)
			for _, l := range links {
				if l != nil {
					f.verifies(key.ID, f.redeem(l).Token)
				}
			}
		})
	}
}

func TestR13_ConcurrentRenewAcrossManagers(t *testing.T) {
	f := newFixture(t)
	managers := []*tokens.Manager{f.m, f.manager(), f.manager()}
	var ids []string
	for range 8 {
		ids = append(ids, f.issued().KeyID)
	}
	const perKey = 24
	errs := collect(len(ids)*perKey, func(i int) error {
		_, err := managers[i%len(managers)].Renew(f.ctx, ids[i%len(ids)], tokens.RenewOptions{})
		return err
	})
	ok, pending, others := tally(errs, tokens.ErrRenewalPending)
	require.Empty(t, others)
	require.Equal(t, len(ids), ok, "one successful renewal per key")
	require.Equal(t, len(ids)*(perKey-1), pending)
	for _, id := range ids {
		require.NotNil(t, f.key(id).OldToken)
	}
}

// TestR13_ConcurrentDeleteOldOrUndoHasExactlyOneWinner races one of the
// ways out of "old token pending" against itself, in two Managers: one call
// wins, the others find the old token gone, and the winner's outcome stands.
func TestR13_ConcurrentDeleteOldOrUndoHasExactlyOneWinner(t *testing.T) {
	for _, tc := range []struct {
		name     string
		call     func(m *tokens.Manager, ctx context.Context, id string) error
		loserErr error
		oldStays bool
	}{
		{"DeleteOld", (*tokens.Manager).DeleteOld, tokens.ErrNoOldToken, false},
		{"Undo", (*tokens.Manager).Undo, tokens.ErrUndoUnavailable, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			old := f.issued()
			latest := f.redeem(f.renew(old.KeyID, tokens.DeleteLater))
			managers := []*tokens.Manager{f.m, f.manager()}
			errs := collect(32, func(i int) error { return tc.call(managers[i%2], f.ctx, old.KeyID) })
			ok, lost, others := tally(errs, tc.loserErr)
			require.Empty(t, others)
			require.Equal(t, 1, ok)
			require.Equal(t, 31, lost)
			kept, gone := latest.Token, old.Token
			if tc.oldStays {
				kept, gone = old.Token, latest.Token
			}
			f.rejects(old.KeyID, gone, tokens.ErrInvalidCredentials)
			f.verifies(old.KeyID, kept)
		})
	}
}

// TestR13_ConcurrentDeleteOldUndoAndRenew races the ways out of "old token
// pending": exactly one of DeleteOld and Undo wins; a Renew (DeleteNow)
// succeeds only after it, at most once, and then only its token verifies.
func TestR13_ConcurrentDeleteOldUndoAndRenew(t *testing.T) {
	for round := range 10 {
		f := newFixture(t)
		old := f.issued()
		latest := f.redeem(f.renew(old.KeyID, tokens.DeleteLater))
		m2 := f.manager()
		const n = 24
		links := make([]*tokens.ShareLink, n)
		errs := make([]error, n)
		collect(n, func(i int) error {
			m := f.m
			if i%2 == 1 {
				m = m2
			}
			switch i % 3 {
			case 0:
				errs[i] = m.DeleteOld(f.ctx, old.KeyID)
			case 1:
				errs[i] = m.Undo(f.ctx, old.KeyID)
			default:
				links[i], errs[i] = m.Renew(f.ctx, old.KeyID, tokens.RenewOptions{OldToken: tokens.DeleteNow})
			}
			return nil
		})
		deleted, undone := 0, 0
		var renewal *tokens.ShareLink
		for i, err := range errs {
			switch {
			case err == nil && i%3 == 0:
				deleted++
			case err == nil && i%3 == 1:
				undone++
			case err == nil:
				require.Nil(t, renewal, "round %d: two renewals succeeded", round)
				renewal = links[i]
			default:
				require.True(t, errors.Is(err, tokens.ErrNoOldToken) || errors.Is(err, tokens.ErrUndoUnavailable) ||
					errors.Is(err, tokens.ErrOldTokenPending) || errors.Is(err, tokens.ErrRenewalPending), "round %d: %v", round, err)
			}
		}
		require.Equal(t, 1, deleted+undone, "round %d: DeleteOld and Undo successes", round)
		require.Nil(t, f.key(old.KeyID).OldToken)

		switch {
		case renewal != nil:
			f.rejects(old.KeyID, old.Token, tokens.ErrInvalidCredentials)
			f.rejects(old.KeyID, latest.Token, tokens.ErrInvalidCredentials)
			f.verifies(old.KeyID, f.redeem(renewal).Token)
		case undone == 1:
			f.verifies(old.KeyID, old.Token)
			f.rejects(old.KeyID, latest.Token, tokens.ErrInvalidCredentials)
		default:
			f.rejects(old.KeyID, old.Token, tokens.ErrInvalidCredentials)
			f.verifies(old.KeyID, latest.Token)
		}
	}
}

// TestR13_ConflictingWriteBetweenReadAndWrite puts another Manager's
// write between a Manager's read of the key and its write, every time, so
// that the compare-and-swap must catch it: the late writer re-reads and
// applies the rules to what the other wrote.
func TestR13_ConflictingWriteBetweenReadAndWrite(t *testing.T) {
	t.Run("renew vs renew", func(t *testing.T) {
		f := newFixture(t)
		c := f.issued()
		other := f.manager()
		var otherLink *tokens.ShareLink
		var otherErr error
		f.store.onNextUpdate(func() {
			otherLink, otherErr = other.Renew(f.ctx, c.KeyID, tokens.RenewOptions{OldToken: tokens.DeleteNow})
		})
		_, err := f.m.Renew(f.ctx, c.KeyID, tokens.RenewOptions{})
		require.NoError(t, otherErr)
		require.ErrorIs(t, err, tokens.ErrRenewalPending)
		f.verifies(c.KeyID, f.redeem(otherLink).Token)
		f.rejects(c.KeyID, c.Token, tokens.ErrInvalidCredentials) // the winner's DeleteNow stands
	})
	t.Run("redeem vs redeem", func(t *testing.T) {
		f := newFixture(t)
		key, link := f.create("acme", "erp-sync")
		other := f.manager()
		var otherCreds *tokens.Credentials
		var otherErr error
		f.store.onNextUpdate(func() { otherCreds, otherErr = other.RedeemLink(f.ctx, link.URL) })
		creds, err := f.m.RedeemLink(f.ctx, link.URL)
		require.NoError(t, otherErr)
		require.ErrorIs(t, err, tokens.ErrLinkUsed)
		require.Nil(t, creds)
		f.verifies(key.ID, otherCreds.Token)
	})
	t.Run("delete old vs undo", func(t *testing.T) {
		f := newFixture(t)
		old := f.issued()
		latest := f.redeem(f.renew(old.KeyID, tokens.DeleteLater))
		other := f.manager()
		var otherErr error
		f.store.onNextUpdate(func() { otherErr = other.Undo(f.ctx, old.KeyID) })
		err := f.m.DeleteOld(f.ctx, old.KeyID)
		require.NoError(t, otherErr)
		require.ErrorIs(t, err, tokens.ErrNoOldToken)
		f.verifies(old.KeyID, old.Token)
		f.rejects(old.KeyID, latest.Token, tokens.ErrInvalidCredentials)
	})
	t.Run("renew vs recorded use", func(t *testing.T) {
		f := newFixture(t)
		c := f.issued()
		f.clk.Add(time.Hour)
		used := f.now()
		f.store.onNextUpdate(func() { f.verifies(c.KeyID, c.Token) })
		link := f.renew(c.KeyID, tokens.DeleteLater) // a use is no reason to fail
		k := f.key(c.KeyID)
		require.NotNil(t, k.OldToken)
		requireTime(t, used, k.OldToken.LastUsedAt, "the use recorded during the renewal survived it")
		f.verifies(c.KeyID, f.redeem(link).Token)
	})
	t.Run("renew vs delete key", func(t *testing.T) {
		f := newFixture(t)
		c := f.issued()
		f.store.onNextUpdate(func() { require.NoError(t, f.mem.DeleteKey(f.ctx, c.KeyID, nil)) })
		_, err := f.m.Renew(f.ctx, c.KeyID, tokens.RenewOptions{})
		require.ErrorIs(t, err, tokens.ErrKeyNotFound)
	})
}

// TestR13_FailedWriteChangesNothing makes every store write fail and
// checks that each operation then leaves the key exactly as it was: each
// change is one write, all or nothing.
func TestR13_FailedWriteChangesNothing(t *testing.T) {
	storeDown := errors.New("store down")
	f := newFixture(t)
	old := f.issued()
	link := f.renew(old.KeyID, tokens.DeleteLater)
	f.clk.Add(time.Hour)
	before := f.record(old.KeyID)

	f.store.failAllWrites(storeDown)
	ops := map[string]func() error{
		"DeleteOld":  func() error { return f.m.DeleteOld(f.ctx, old.KeyID) },
		"Undo":       func() error { return f.m.Undo(f.ctx, old.KeyID) },
		"Deactivate": func() error { return f.m.Deactivate(f.ctx, old.KeyID) },
		"DeleteKey":  func() error { return f.m.DeleteKey(f.ctx, old.KeyID) },
		"RedeemLink": func() error { _, err := f.m.RedeemLink(f.ctx, link.URL); return err },
	}
	for name, op := range ops {
		require.ErrorIs(t, op(), storeDown, name)
		require.Equal(t, before, f.record(old.KeyID), "%s changed the key though its write failed", name)
	}
	// Whether a use that cannot be recorded fails Verify is not specified.
	_, _ = f.m.Verify(f.ctx, old.KeyID, old.Token)
	require.Equal(t, before, f.record(old.KeyID), "Verify changed the key though its write failed")
	f.store.failAllWrites(nil)

	latest := f.redeem(link)
	f.verifies(old.KeyID, old.Token)
	f.verifies(old.KeyID, latest.Token)
	require.NoError(t, f.m.DeleteOld(f.ctx, old.KeyID))
	before = f.record(old.KeyID)
	f.store.failAllWrites(storeDown)
	_, err := f.m.Renew(f.ctx, old.KeyID, tokens.RenewOptions{OldToken: tokens.DeleteNow})
	require.ErrorIs(t, err, storeDown)
	require.Equal(t, before, f.record(old.KeyID), "Renew changed the key though its write failed")
	_, _, err = f.m.CreateKey(f.ctx, tokens.KeySpec{Account: "down", Name: "x"})
	require.ErrorIs(t, err, storeDown)
	f.store.failAllWrites(nil)
	keys, err := f.m.Keys(f.ctx, "down")
	require.NoError(t, err)
	require.Empty(t, keys)
	f.verifies(old.KeyID, latest.Token)
}

// TestR13_EachChangeIsOneWrite counts the store writes of each operation:
// one, so that no change can be half done.
func TestR13_EachChangeIsOneWrite(t *testing.T) {
	f := newFixture(t)
	count := func(name string, op func()) {
		t.Helper()
		f.store.reset()
		op()
		require.Equal(t, int64(1), f.store.writes.Load(), "%s: store writes", name)
	}
	var key *tokens.Key
	var link *tokens.ShareLink
	count("CreateKey", func() { key, link = f.create("acme", "erp-sync") })
	count("RedeemLink", func() { f.redeem(link) })
	count("Renew", func() { link = f.renew(key.ID, tokens.DeleteLater) })
	count("DeleteOld", func() { require.NoError(t, f.m.DeleteOld(f.ctx, key.ID)) })
	f.redeem(link)
	f.clk.Add(time.Hour)
	link = f.renew(key.ID, tokens.DeleteLater)
	count("Undo", func() { require.NoError(t, f.m.Undo(f.ctx, key.ID)) })
	count("Deactivate", func() { require.NoError(t, f.m.Deactivate(f.ctx, key.ID)) })
	count("Activate", func() { require.NoError(t, f.m.Activate(f.ctx, key.ID)) })
	count("DeleteKey", func() { require.NoError(t, f.m.DeleteKey(f.ctx, key.ID)) })
}
