package tokens_test

import (
	"context"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/store/memstore"
)

// Tests of the rules R14-R18 of docs/rules.md, which came after R1-R13:
// scheduled expiry of the old token, RevokeLink, reuse detection, the audit
// trail and known outcomes (outcome_test.go holds the rest of R18).

// renewWithTTL renews id with DeleteLater and a scheduled end of the old
// token, and returns the new link.
func (f *fixture) renewWithTTL(id string, ttl time.Duration) *tokens.ShareLink {
	f.t.Helper()
	link, err := f.m.Renew(f.ctx, id, tokens.RenewOptions{OldToken: tokens.DeleteLater, OldTokenTTL: ttl})
	require.NoError(f.t, err)
	return link
}

func TestR14_OldTokenEndsOnScheduleWithNoCall(t *testing.T) {
	f := newFixture(t, tokens.WithRevokedTokenRetention(0)) // R16 would record the refused use
	old := f.issued()
	renewedAt := f.now()
	renewed := f.redeem(f.renewWithTTL(old.KeyID, time.Hour))
	key := f.key(old.KeyID)
	require.NotNil(t, key.OldToken)
	requireTime(t, renewedAt.Add(time.Hour), key.OldToken.ExpiresAt, "old token's scheduled end")
	require.True(t, key.Token.ExpiresAt.IsZero(), "the current token has a scheduled end")

	f.clk.Add(time.Hour - time.Microsecond)
	f.verifies(old.KeyID, old.Token)
	changes := func() tokens.ChangePosition {
		got, err := f.mem.Changes(f.ctx, "")
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

// deletions are the ways a token stops verifying because it is deleted
// (R16), each returning the key and the deleted token.
var deletions = []struct {
	name   string
	delete func(t *testing.T, f *fixture) (keyID, token string)
}{
	{"DeleteOld", func(t *testing.T, f *fixture) (string, string) {
		old := f.issued()
		f.redeem(f.renew(old.KeyID, tokens.DeleteLater))
		require.NoError(t, f.m.DeleteOld(f.ctx, old.KeyID))
		return old.KeyID, old.Token
	}},
	{"DeleteNow", func(t *testing.T, f *fixture) (string, string) {
		old := f.issued()
		f.renew(old.KeyID, tokens.DeleteNow)
		return old.KeyID, old.Token
	}},
	{"R4Discard", func(t *testing.T, f *fixture) (string, string) {
		key, link := f.create("acme", "never opened")
		unseen := f.peek(key.ID, link)
		f.clk.Add(tokens.DefaultLinkTTL)
		f.renew(key.ID, tokens.DeleteLater)
		return key.ID, unseen
	}},
	{"Undo", func(t *testing.T, f *fixture) (string, string) {
		old := f.issued()
		renewed := f.redeem(f.renew(old.KeyID, tokens.DeleteLater))
		require.NoError(t, f.m.Undo(f.ctx, old.KeyID))
		return old.KeyID, renewed.Token
	}},
	{"R14End", func(t *testing.T, f *fixture) (string, string) {
		old := f.issued()
		f.redeem(f.renewWithTTL(old.KeyID, time.Hour))
		f.clk.Add(time.Hour)
		return old.KeyID, old.Token
	}},
}

func TestR16_DeletedTokensAreRecognisedAndTheirUseRecorded(t *testing.T) {
	for _, d := range deletions {
		t.Run(d.name, func(t *testing.T) {
			f := newFixture(t)
			keyID, token := d.delete(t, f)
			require.True(t, f.key(keyID).RevokedTokenUsedAt.IsZero())

			_, err := f.m.Verify(f.ctx, keyID, token)
			require.ErrorIs(t, err, tokens.ErrTokenRevoked)
			require.ErrorIs(t, err, tokens.ErrInvalidCredentials)
			first := f.now()
			requireTime(t, first, f.key(keyID).RevokedTokenUsedAt, "revoked token use")

			f.clk.Add(30 * time.Second)
			_, err = f.m.Verify(f.ctx, keyID, token)
			require.ErrorIs(t, err, tokens.ErrTokenRevoked)
			requireTime(t, first, f.key(keyID).RevokedTokenUsedAt, "written again within the minute")
			f.clk.Add(30 * time.Second)
			_, err = f.m.Verify(f.ctx, keyID, token)
			require.ErrorIs(t, err, tokens.ErrTokenRevoked)
			requireTime(t, f.now(), f.key(keyID).RevokedTokenUsedAt, "use a minute later")

			used, err := f.m.Events(f.ctx, tokens.EventQuery{KeyID: keyID})
			require.NoError(t, err)
			n := 0
			for _, e := range used {
				if e.Type == tokens.EventRevokedTokenUsed {
					n++
				}
			}
			require.Equal(t, 2, n, "one event per recorded use")
		})
	}
}

func TestR16_OtherRefusalsAreNotRevocations(t *testing.T) {
	f := newFixture(t)
	creds := f.issued()
	other := f.issued()
	_, err := f.m.Verify(f.ctx, creds.KeyID, other.Token)
	require.ErrorIs(t, err, tokens.ErrInvalidCredentials)
	require.NotErrorIs(t, err, tokens.ErrTokenRevoked)

	// A deleted token presented with another key's ID is not that key's.
	keyID, token := deletions[0].delete(t, f)
	_, err = f.m.Verify(f.ctx, creds.KeyID, token)
	require.NotErrorIs(t, err, tokens.ErrTokenRevoked)
	require.True(t, f.key(creds.KeyID).RevokedTokenUsedAt.IsZero())

	// DeleteKey forgets them.
	require.NoError(t, f.m.DeleteKey(f.ctx, keyID))
	_, err = f.m.Verify(f.ctx, keyID, token)
	require.ErrorIs(t, err, tokens.ErrInvalidCredentials)
	require.NotErrorIs(t, err, tokens.ErrTokenRevoked)
}

func TestR16_RetentionBoundsTheMemory(t *testing.T) {
	f := newFixture(t, tokens.WithRevokedTokenRetention(48*time.Hour))
	keyID, token := deletions[0].delete(t, f)
	digest := sha256.Sum256([]byte(token))
	_, ok, err := f.mem.RevokedToken(f.ctx, keyID, digest)
	require.NoError(t, err)
	require.False(t, ok, "the store keeps the deleted token's own digest")

	f.clk.Add(48*time.Hour - time.Microsecond)
	_, err = f.m.Verify(f.ctx, keyID, token)
	require.ErrorIs(t, err, tokens.ErrTokenRevoked)
	f.clk.Add(time.Microsecond)
	_, err = f.m.Verify(f.ctx, keyID, token)
	require.NotErrorIs(t, err, tokens.ErrTokenRevoked, "recognised past the retention")

	_, err = f.m.PurgeExpired(f.ctx)
	require.NoError(t, err)
	n, err := f.mem.PurgeRevoked(f.ctx, f.now())
	require.NoError(t, err)
	require.Zero(t, n, "PurgeExpired left a token older than the retention")
}

func TestR16_RetentionZeroTurnsItOff(t *testing.T) {
	f := newFixture(t, tokens.WithRevokedTokenRetention(0))
	keyID, token := deletions[0].delete(t, f)
	_, err := f.m.Verify(f.ctx, keyID, token)
	require.ErrorIs(t, err, tokens.ErrInvalidCredentials)
	require.NotErrorIs(t, err, tokens.ErrTokenRevoked)
	n, err := f.mem.PurgeRevoked(f.ctx, f.now().Add(time.Hour))
	require.NoError(t, err)
	require.Zero(t, n, "a deleted token was remembered with retention 0")

	_, err = tokens.NewManager(memstore.New(), tokens.WithShareBaseURL(testBase), tokens.WithRevokedTokenRetention(-time.Second))
	require.ErrorIs(t, err, tokens.ErrInvalidOption)
}

func TestR17_EveryChangeAppendsOneEventWithItsActor(t *testing.T) {
	f := newFixture(t)
	ctx := tokens.WithActor(f.ctx, "ops@example.com")
	key, link, err := f.m.CreateKey(ctx, tokens.KeySpec{Account: "acme", Name: "erp-sync"})
	require.NoError(t, err)
	_, err = f.m.RedeemLink(ctx, link.URL)
	require.NoError(t, err)
	renewal, err := f.m.Renew(ctx, key.ID, tokens.RenewOptions{OldToken: tokens.DeleteLater, OldTokenTTL: 7 * 24 * time.Hour})
	require.NoError(t, err)
	require.NoError(t, f.m.RevokeLink(ctx, key.ID))
	_, err = f.m.Renew(ctx, key.ID, tokens.RenewOptions{})
	require.NoError(t, err)
	require.NoError(t, f.m.Undo(ctx, key.ID))
	require.NoError(t, f.m.Deactivate(ctx, key.ID))
	require.NoError(t, f.m.Activate(ctx, key.ID))
	_, err = f.m.Renew(ctx, key.ID, tokens.RenewOptions{OldToken: tokens.DeleteLater})
	require.NoError(t, err)
	require.NoError(t, f.m.DeleteOld(ctx, key.ID))
	require.NoError(t, f.m.DeleteKey(ctx, key.ID))
	_ = renewal

	// Refused and unchanged calls append nothing.
	require.ErrorIs(t, f.m.DeleteOld(ctx, key.ID), tokens.ErrKeyNotFound)
	other := f.issued()
	require.NoError(t, f.m.Activate(ctx, other.KeyID)) // already active: no change

	got, err := f.m.Events(f.ctx, tokens.EventQuery{KeyID: key.ID})
	require.NoError(t, err)
	require.Equal(t, []tokens.EventType{
		tokens.EventKeyCreated, tokens.EventLinkRedeemed, tokens.EventTokenRenewed, tokens.EventLinkRevoked,
		tokens.EventTokenRenewed, tokens.EventRenewalUndone, tokens.EventKeyDeactivated, tokens.EventKeyActivated,
		tokens.EventTokenRenewed, tokens.EventOldTokenDeleted, tokens.EventKeyDeleted,
	}, eventTypes(got))
	for _, e := range got {
		require.Equal(t, "ops@example.com", e.Actor)
		require.Equal(t, key.ID, e.KeyID)
		require.Equal(t, "acme", e.Account)
		requireTime(t, f.now(), e.At, string(e.Type))
	}
	require.Equal(t, tokens.DeleteLater, got[2].Policy)
	require.Equal(t, 7*24*time.Hour, got[2].OldTokenTTL)
	others, err := f.m.Events(f.ctx, tokens.EventQuery{KeyID: other.KeyID})
	require.NoError(t, err)
	require.Equal(t, []tokens.EventType{tokens.EventKeyCreated, tokens.EventLinkRedeemed}, eventTypes(others))
	require.Empty(t, others[0].Actor, "an actor without WithActor")
}

func TestR17_ActorAndQueryAreChecked(t *testing.T) {
	f := newFixture(t)
	creds := f.issued()
	f.store.reset()
	bad := tokens.WithActor(f.ctx, "ops\x1b[2J")
	_, _, err := f.m.CreateKey(bad, tokens.KeySpec{Account: "acme", Name: "x"})
	require.ErrorIs(t, err, tokens.ErrInvalidOption)
	require.ErrorIs(t, f.m.Deactivate(bad, creds.KeyID), tokens.ErrInvalidOption)
	require.ErrorIs(t, f.m.DeleteKey(bad, creds.KeyID), tokens.ErrInvalidOption)
	require.Zero(t, f.store.writes.Load(), "a call with a bad actor wrote")

	for name, q := range map[string]tokens.EventQuery{
		"negative limit": {Limit: -1},
		"limit too big":  {Limit: tokens.MaxEventPage + 1},
	} {
		_, err := f.m.Events(f.ctx, q)
		require.ErrorIs(t, err, tokens.ErrInvalidOption, name)
	}
	_, err = f.m.Events(f.ctx, tokens.EventQuery{Account: "ac\x00me"})
	require.ErrorIs(t, err, tokens.ErrInvalidKeySpec)
	_, err = f.m.Events(f.ctx, tokens.EventQuery{After: "nope"})
	require.ErrorIs(t, err, tokens.ErrInvalidCursor)
}

// TestR17_ATailerFollowingCursorsSeesEveryEventOnce runs writers on many
// Managers sharing a store while a reader follows cursors: at the end what
// it read is the whole trail, in order, with no gap and no repeat.
func TestR17_ATailerFollowingCursorsSeesEveryEventOnce(t *testing.T) {
	f := newFixture(t)
	const writers, rounds = 4, 15
	done := make(chan struct{})
	tailed := make(chan []tokens.Event, 1)
	go func() {
		var seen []tokens.Event
		after := ""
		for finished := false; ; {
			select {
			case <-done:
				finished = true
			default:
			}
			page, err := f.m.Events(f.ctx, tokens.EventQuery{After: after, Limit: 7})
			if err != nil {
				tailed <- nil
				return
			}
			seen = append(seen, page...)
			if len(page) > 0 {
				after = page[len(page)-1].Cursor
			} else if finished {
				tailed <- seen
				return
			}
		}
	}()
	errs := collect(writers, func(i int) error {
		m := f.manager()
		for range rounds {
			key, link, err := m.CreateKey(f.ctx, tokens.KeySpec{Account: "acme", Name: "tail"})
			if err != nil {
				return err
			}
			if _, err := m.RedeemLink(f.ctx, link.URL); err != nil {
				return err
			}
			if err := m.DeleteKey(f.ctx, key.ID); err != nil {
				return err
			}
		}
		return nil
	})
	close(done)
	for _, err := range errs {
		require.NoError(t, err)
	}
	seen := <-tailed
	all, err := f.m.Events(f.ctx, tokens.EventQuery{Limit: tokens.MaxEventPage})
	require.NoError(t, err)
	require.Len(t, all, 3*writers*rounds)
	require.Equal(t, all, seen)
}

func TestR17_PurgeEventsKeepsTheRecentOnes(t *testing.T) {
	f := newFixture(t)
	f.issued()
	f.clk.Add(48 * time.Hour)
	recent := f.issued()
	n, err := f.m.PurgeEvents(f.ctx, 24*time.Hour)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	got, err := f.m.Events(f.ctx, tokens.EventQuery{})
	require.NoError(t, err)
	require.Len(t, got, 2)
	require.Equal(t, recent.KeyID, got[0].KeyID)
}

func eventTypes(events []tokens.Event) []tokens.EventType {
	out := []tokens.EventType{}
	for _, e := range events {
		out = append(out, e.Type)
	}
	return out
}

// TestR14_ExpireOldSchedulesTheEndAfterTheRenewal: the operator sees the
// new link first, then gives the old token an end.
func TestR14_ExpireOldSchedulesTheEndAfterTheRenewal(t *testing.T) {
	f := newFixture(t, tokens.WithRevokedTokenRetention(0))
	old := f.issued()
	f.redeem(f.renew(old.KeyID, tokens.DeleteLater))
	f.clk.Add(10 * time.Minute)
	require.NoError(t, f.m.ExpireOld(tokens.WithActor(f.ctx, "ops"), old.KeyID, 24*time.Hour))
	requireTime(t, f.now().Add(24*time.Hour), f.key(old.KeyID).OldToken.ExpiresAt, "scheduled end")
	// A later call replaces the end.
	require.NoError(t, f.m.ExpireOld(f.ctx, old.KeyID, time.Hour))
	end := f.now().Add(time.Hour)
	requireTime(t, end, f.key(old.KeyID).OldToken.ExpiresAt, "replaced end")
	f.clk.Add(time.Hour - time.Microsecond)
	f.verifies(old.KeyID, old.Token)
	f.clk.Add(time.Microsecond)
	f.rejects(old.KeyID, old.Token, tokens.ErrInvalidCredentials)
	require.ErrorIs(t, f.m.ExpireOld(f.ctx, old.KeyID, time.Hour), tokens.ErrNoOldToken)

	events, err := f.m.Events(f.ctx, tokens.EventQuery{KeyID: old.KeyID})
	require.NoError(t, err)
	var set []tokens.Event
	for _, e := range events {
		if e.Type == tokens.EventOldTokenExpirySet {
			set = append(set, e)
		}
	}
	require.Len(t, set, 2)
	require.Equal(t, "ops", set[0].Actor)
	require.Equal(t, 24*time.Hour, set[0].OldTokenTTL)

	for _, ttl := range []time.Duration{0, -time.Hour} {
		require.ErrorIs(t, f.m.ExpireOld(f.ctx, old.KeyID, ttl), tokens.ErrInvalidOption)
	}
	plain := f.issued()
	require.ErrorIs(t, f.m.ExpireOld(f.ctx, plain.KeyID, time.Hour), tokens.ErrNoOldToken)
	require.ErrorIs(t, f.m.ExpireOld(f.ctx, "key_0123456789012345678901", time.Hour), tokens.ErrKeyNotFound)
}

// TestR14_EndsAreFarEnoughForEveryCache: an end under a minute is refused,
// and MaxStaleness is at most half of that, so every cache has seen the
// change that set an end before the end comes (C2: R14's end is exact).
func TestR14_EndsAreFarEnoughForEveryCache(t *testing.T) {
	f := newFixture(t)
	creds := f.issued()
	_, err := f.m.Renew(f.ctx, creds.KeyID, tokens.RenewOptions{OldTokenTTL: tokens.MinOldTokenTTL - time.Microsecond})
	require.ErrorIs(t, err, tokens.ErrInvalidOption)
	f.redeem(f.renew(creds.KeyID, tokens.DeleteLater))
	require.ErrorIs(t, f.m.ExpireOld(f.ctx, creds.KeyID, 100*time.Millisecond), tokens.ErrInvalidOption)
	_, err = tokens.NewManager(memstore.New(), tokens.WithShareBaseURL(testBase),
		tokens.WithVerifyCache(tokens.CacheConfig{MaxStaleness: tokens.MaxMaxStaleness + time.Millisecond}))
	require.ErrorIs(t, err, tokens.ErrInvalidOption)
	require.LessOrEqual(t, 2*tokens.MaxMaxStaleness, tokens.MinOldTokenTTL)

	// The shortest end set in one process is honoured exactly in another
	// whose cache holds the token as current.
	g := newFixture(t, tokens.WithVerifyCache(tokens.CacheConfig{MaxStaleness: tokens.MaxMaxStaleness}))
	c := g.issued()
	g.verifies(c.KeyID, c.Token)
	operator := g.manager()
	_, err = operator.Renew(g.ctx, c.KeyID, tokens.RenewOptions{OldTokenTTL: tokens.MinOldTokenTTL})
	require.NoError(t, err)
	g.clk.Add(tokens.MinOldTokenTTL)
	_, err = g.m.Verify(g.ctx, c.KeyID, c.Token)
	require.ErrorIs(t, err, tokens.ErrInvalidCredentials, "a cache accepted an old token past its end")
}

// TestR17_ARenewalEventTellsOnlyTheEndItSet: when R4 discards an unseen
// token, the TTL asked for sets no end, and the event says none.
func TestR17_ARenewalEventTellsOnlyTheEndItSet(t *testing.T) {
	f := newFixture(t)
	creds := f.issued()
	f.renew(creds.KeyID, tokens.DeleteLater)
	f.clk.Add(25 * time.Hour)
	_, err := f.m.Renew(f.ctx, creds.KeyID, tokens.RenewOptions{OldTokenTTL: time.Hour})
	require.NoError(t, err)
	require.True(t, f.key(creds.KeyID).OldToken.ExpiresAt.IsZero())
	events, err := f.m.Events(f.ctx, tokens.EventQuery{KeyID: creds.KeyID})
	require.NoError(t, err)
	require.Zero(t, events[len(events)-1].OldTokenTTL)
}

func TestR18_WithActorOnANilContextDoesNotPanic(t *testing.T) {
	f := newFixture(t)
	var ctx context.Context // nil
	require.NotPanics(t, func() { ctx = tokens.WithActor(ctx, "alice") })
	require.ErrorIs(t, f.m.Deactivate(ctx, "key_0123456789012345678901"), tokens.ErrNilContext)
}

func TestR15_ARevokedLinkTellsNoExpiry(t *testing.T) {
	f := newFixture(t)
	key, _ := f.create("acme", "erp")
	require.NoError(t, f.m.RevokeLink(f.ctx, key.ID))
	require.True(t, f.key(key.ID).LinkExpiresAt.IsZero())
}

func TestR16_RetentionZeroForgetsWhatWasRemembered(t *testing.T) {
	f := newFixture(t)
	keyID, token := deletions[0].delete(t, f)
	off := f.manager(tokens.WithRevokedTokenRetention(0))
	_, err := off.PurgeExpired(f.ctx)
	require.NoError(t, err)
	_, err = f.m.Verify(f.ctx, keyID, token)
	require.NotErrorIs(t, err, tokens.ErrTokenRevoked, "remembered after a purge with reuse detection off")
}
