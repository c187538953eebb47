package tokens_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens"
)

// renewWithTTL renews id with DeleteLater and a scheduled end of the old
// token, and returns the new link.
func (f *fixture) renewWithTTL(id string, ttl time.Duration) *tokens.ShareLink {
	f.t.Helper()
	link, err := f.m.Renew(f.ctx, id, tokens.RenewOptions{OldToken: tokens.DeleteLater, OldTokenTTL: ttl})
	require.NoError(f.t, err)
	return link
}

func TestR14_OldTokenEndsOnScheduleWithNoCall(t *testing.T) {
	f := newFixture(t)
	old := f.issued()
	renewedAt := f.now()
	renewed := f.redeem(f.renewWithTTL(old.KeyID, time.Hour))
	key := f.key(old.KeyID)
	require.NotNil(t, key.OldToken)
	requireTime(t, renewedAt.Add(time.Hour), key.OldToken.ExpiresAt, "old token's scheduled end")
	require.True(t, key.Token.ExpiresAt.IsZero(), "the current token has a scheduled end")

	f.clk.Add(time.Hour - time.Microsecond)
	f.verifies(old.KeyID, old.Token)
	changes := func() int64 {
		got, err := f.mem.Changes(f.ctx, 0)
		require.NoError(t, err)
		return got.Latest
	}
	before := changes()
	f.clk.Add(time.Microsecond)

	f.rejects(old.KeyID, old.Token, tokens.ErrInvalidCredentials)
	f.verifies(renewed.KeyID, renewed.Token)
	require.Nil(t, f.key(old.KeyID).OldToken)
	require.Equal(t, before, changes(), "the end took a write")
	require.ErrorIs(t, f.m.Undo(f.ctx, old.KeyID), tokens.ErrUndoUnavailable)
	require.ErrorIs(t, f.m.DeleteOld(f.ctx, old.KeyID), tokens.ErrNoOldToken)
	f.renew(old.KeyID, tokens.DeleteLater) // no ErrOldTokenPending
	f.rejects(old.KeyID, old.Token, tokens.ErrInvalidCredentials)
}

func TestR14_ZeroTTLKeepsTheOldTokenUntilDeleted(t *testing.T) {
	f := newFixture(t)
	old := f.issued()
	f.redeem(f.renewWithTTL(old.KeyID, 0))
	require.True(t, f.key(old.KeyID).OldToken.ExpiresAt.IsZero())
	f.clk.Add(5 * 365 * 24 * time.Hour)
	f.verifies(old.KeyID, old.Token)
	require.NoError(t, f.m.DeleteOld(f.ctx, old.KeyID))
	f.rejects(old.KeyID, old.Token, tokens.ErrInvalidCredentials)
}

func TestR14_InvalidTTLIsRefusedAndChangesNothing(t *testing.T) {
	f := newFixture(t)
	creds := f.issued()
	before := f.record(creds.KeyID)
	f.store.reset()
	for name, opts := range map[string]tokens.RenewOptions{
		"negative":        {OldToken: tokens.DeleteLater, OldTokenTTL: -time.Second},
		"with DeleteNow":  {OldToken: tokens.DeleteNow, OldTokenTTL: time.Hour},
		"negative to now": {OldToken: tokens.DeleteNow, OldTokenTTL: -1},
	} {
		link, err := f.m.Renew(f.ctx, creds.KeyID, opts)
		require.ErrorIs(t, err, tokens.ErrInvalidOption, name)
		require.Nil(t, link)
	}
	require.Zero(t, f.store.calls.Load(), "a refused option reached the store")
	require.Equal(t, before, f.record(creds.KeyID))
}

// TestR14_R4KeepsTheExistingExpiry: when a renewal discards an unseen
// token (R4), the old token it keeps keeps its scheduled end.
func TestR14_R4KeepsTheExistingExpiry(t *testing.T) {
	f := newFixture(t)
	old := f.issued()
	f.renewWithTTL(old.KeyID, 7*24*time.Hour) // its link is never opened
	end := f.key(old.KeyID).OldToken.ExpiresAt
	f.clk.Add(25 * time.Hour)
	f.renewWithTTL(old.KeyID, time.Hour)
	key := f.key(old.KeyID)
	require.NotNil(t, key.OldToken)
	requireTime(t, end, key.OldToken.ExpiresAt, "kept old token's end")
	f.verifies(old.KeyID, old.Token)
}

// TestR14_UndoMakesTheTokenCurrentWithNoExpiry: a token restored by Undo
// has no scheduled end.
func TestR14_UndoMakesTheTokenCurrentWithNoExpiry(t *testing.T) {
	f := newFixture(t)
	old := f.issued()
	renewed := f.redeem(f.renewWithTTL(old.KeyID, time.Hour))
	require.NoError(t, f.m.Undo(f.ctx, old.KeyID))
	f.clk.Add(48 * time.Hour)
	f.verifies(old.KeyID, old.Token)
	f.rejects(renewed.KeyID, renewed.Token, tokens.ErrInvalidCredentials)
	key := f.key(old.KeyID)
	require.True(t, key.Token.ExpiresAt.IsZero())
	require.Nil(t, key.OldToken)
}

// TestR14_ExpiryIsExactWithTheCache: the cache never stretches a scheduled
// end, not even by MaxStaleness.
func TestR14_ExpiryIsExactWithTheCache(t *testing.T) {
	f := newFixture(t, cached())
	old := f.issued()
	f.redeem(f.renewWithTTL(old.KeyID, time.Hour))
	f.verifies(old.KeyID, old.Token) // cached
	f.clk.Add(time.Hour)
	f.rejects(old.KeyID, old.Token, tokens.ErrInvalidCredentials)
}

func TestR15_RevokeLinkEndsThePendingLink(t *testing.T) {
	f := newFixture(t)
	old := f.issued()
	link := f.renew(old.KeyID, tokens.DeleteLater)
	unseen := f.peek(old.KeyID, link)
	require.NoError(t, f.m.RevokeLink(f.ctx, old.KeyID))

	_, err := f.m.RedeemLink(f.ctx, link.URL)
	require.ErrorIs(t, err, tokens.ErrLinkNotFound)
	status, err := f.m.LinkStatus(f.ctx, link.URL)
	require.NoError(t, err)
	require.Equal(t, tokens.LinkNotFound, status.State)
	require.Equal(t, tokens.LinkNotFound, f.key(old.KeyID).Link)
	require.Nil(t, f.record(old.KeyID).Link.Sealed, "the revoked link's sealed token was kept")

	// Its token counts as never seen: the next Renew is not blocked (R3)
	// and discards it, keeping the old token (R4).
	f.verifies(old.KeyID, unseen) // revoking the link changes no token's validity
	next := f.redeem(f.renew(old.KeyID, tokens.DeleteLater))
	f.rejects(old.KeyID, unseen, tokens.ErrInvalidCredentials)
	f.verifies(old.KeyID, old.Token)
	f.verifies(next.KeyID, next.Token)
}

func TestR15_RevokedCreationLinkAndDeleteNow(t *testing.T) {
	f := newFixture(t)
	key, link := f.create("acme", "lost link")
	unseen := f.peek(key.ID, link)
	require.NoError(t, f.m.RevokeLink(f.ctx, key.ID))
	renewed := f.redeem(f.renew(key.ID, tokens.DeleteNow))
	f.rejects(key.ID, unseen, tokens.ErrInvalidCredentials)
	f.verifies(key.ID, renewed.Token)
	require.Nil(t, f.key(key.ID).OldToken)
}

func TestR15_OnlyAPendingLinkCanBeRevoked(t *testing.T) {
	f := newFixture(t)
	redeemed := f.issued()
	require.ErrorIs(t, f.m.RevokeLink(f.ctx, redeemed.KeyID), tokens.ErrNoPendingLink)

	expired, _ := f.create("acme", "expired")
	revoked, _ := f.create("acme", "revoked")
	require.NoError(t, f.m.RevokeLink(f.ctx, revoked.ID))
	require.ErrorIs(t, f.m.RevokeLink(f.ctx, revoked.ID), tokens.ErrNoPendingLink)
	f.clk.Add(tokens.DefaultLinkTTL)
	require.ErrorIs(t, f.m.RevokeLink(f.ctx, expired.ID), tokens.ErrNoPendingLink)

	undone := f.issued()
	f.renew(undone.KeyID, tokens.DeleteLater)
	require.NoError(t, f.m.Undo(f.ctx, undone.KeyID))
	require.ErrorIs(t, f.m.RevokeLink(f.ctx, undone.KeyID), tokens.ErrNoPendingLink)

	require.ErrorIs(t, f.m.RevokeLink(f.ctx, "key_"+"0123456789012345678901"), tokens.ErrKeyNotFound)
	require.ErrorIs(t, f.m.RevokeLink(f.ctx, "not a key"), tokens.ErrKeyNotFound)
}

func TestR15_ConcurrentRevokeAndRedeemHaveOneWinner(t *testing.T) {
	for range 20 {
		f := newFixture(t)
		key, link := f.create("acme", "race")
		other := f.manager()
		var revokeErr, redeemErr error
		collect(2, func(i int) error {
			if i == 0 {
				revokeErr = f.m.RevokeLink(f.ctx, key.ID)
			} else {
				_, redeemErr = other.RedeemLink(f.ctx, link.URL)
			}
			return nil
		})
		switch {
		case revokeErr == nil:
			require.ErrorIs(t, redeemErr, tokens.ErrLinkNotFound)
		case redeemErr == nil:
			require.ErrorIs(t, revokeErr, tokens.ErrNoPendingLink)
		default:
			t.Fatalf("neither won: %v, %v", revokeErr, redeemErr)
		}
	}
}
