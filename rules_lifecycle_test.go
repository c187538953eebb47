package tokens_test

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens"
)

// Tests of the life-cycle rules R1-R8 of docs/rules.md (CreateKey, Renew,
// DeleteOld, Undo, RedeemLink), one rule per name prefix, so that
// "go test -run R7_" runs the tests of R7.

func TestR1_CreateKeyIsActiveAndItsLinkRevealsAVerifyingToken(t *testing.T) {
	f := newFixture(t)
	now := f.now()
	key, link := f.create("acme", "erp-sync")

	require.True(t, key.Active)
	require.Equal(t, "acme", key.Account)
	require.Equal(t, "erp-sync", key.Name)
	requireTime(t, now, key.CreatedAt, "key created")
	requireTime(t, now, key.Token.CreatedAt, "token created")
	require.True(t, key.Token.LastUsedAt.IsZero())
	require.Nil(t, key.OldToken)
	require.Equal(t, tokens.AlertNone, key.Alert)
	require.Equal(t, tokens.LinkPending, key.Link)

	require.True(t, strings.HasPrefix(link.URL, testBase), "link %q is not under the share base", link.URL)
	require.Regexp(t, linkIDPattern, linkID(t, link.URL))
	requireTime(t, now.Add(tokens.DefaultLinkTTL), link.ExpiresAt, "link expiry")
	requireTime(t, now.Add(24*time.Hour), key.LinkExpiresAt, "key's link expiry")

	stored := f.key(key.ID)
	require.Equal(t, key.ID, stored.ID)
	require.True(t, stored.Active)

	creds := f.redeem(link)
	require.Equal(t, key.ID, creds.KeyID)
	require.Regexp(t, tokenPattern, creds.Token)
	f.verifies(key.ID, creds.Token)
}

func TestR1_CreateKeyLinkLastsTheLinkTTL(t *testing.T) {
	f := newFixture(t, tokens.WithLinkTTL(2*time.Hour))
	now := f.now()
	_, early := f.create("acme", "a")
	_, late := f.create("acme", "b")
	requireTime(t, now.Add(2*time.Hour), early.ExpiresAt, "link expiry")

	f.clk.Add(2*time.Hour - time.Second)
	f.redeem(early)
	f.clk.Add(time.Second)
	_, err := f.m.RedeemLink(f.ctx, late.URL)
	require.ErrorIs(t, err, tokens.ErrLinkExpired)
}

func TestR1_InvalidKeySpecIsRefusedAndNothingStored(t *testing.T) {
	cases := []struct {
		name string
		spec tokens.KeySpec
	}{
		{"empty name", tokens.KeySpec{Account: "acme"}},
		{"name of 201 bytes", tokens.KeySpec{Account: "acme", Name: strings.Repeat("x", 201)}},
		{"name of 67 three-byte runes", tokens.KeySpec{Account: "acme", Name: strings.Repeat("€", 67)}},
		{"name not UTF-8", tokens.KeySpec{Account: "acme", Name: "erp\xffsync"}},
		{"name truncated rune", tokens.KeySpec{Account: "acme", Name: "erp\xe2\x82"}},
		{"name with NUL", tokens.KeySpec{Account: "acme", Name: "erp\x00sync"}},
		{"account of 201 bytes", tokens.KeySpec{Account: strings.Repeat("a", 201), Name: "erp-sync"}},
		{"account not UTF-8", tokens.KeySpec{Account: "\xc3\x28", Name: "erp-sync"}},
		{"account with NUL", tokens.KeySpec{Account: "ac\x00me", Name: "erp-sync"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			key, link, err := f.m.CreateKey(f.ctx, c.spec)
			require.ErrorIs(t, err, tokens.ErrInvalidKeySpec)
			require.Nil(t, key)
			require.Nil(t, link)
			require.Zero(t, f.store.writes.Load(), "a refused spec reached the store")
			keys, err := f.m.Keys(f.ctx, c.spec.Account)
			if strings.HasPrefix(c.name, "account") {
				require.ErrorIs(t, err, tokens.ErrInvalidKeySpec) // S9
			} else {
				require.NoError(t, err)
			}
			require.Empty(t, keys)
		})
	}
}

func TestR1_KeySpecAtTheLimitsIsAccepted(t *testing.T) {
	f := newFixture(t)
	for _, spec := range []tokens.KeySpec{
		{Account: "acme", Name: strings.Repeat("x", 200)},
		{Account: "acme", Name: strings.Repeat("é", 100)}, // 200 bytes, 100 runes
		{Account: strings.Repeat("a", 200), Name: "erp"},
		{Account: "", Name: "no account"},
		{Account: "東京", Name: "Synchronisation ERP — 会計"},
		{Account: "acme", Name: " padded name "},
	} {
		key, _, err := f.m.CreateKey(f.ctx, spec)
		require.NoError(t, err, "%q", spec.Name)
		require.Equal(t, spec.Name, key.Name)
		require.Equal(t, spec.Account, key.Account)
	}
}

func TestR2_RenewDeleteLaterKeepsBothTokens(t *testing.T) {
	for _, opts := range []tokens.RenewOptions{{}, {OldToken: tokens.DeleteLater}} {
		t.Run(opts.OldToken.String(), func(t *testing.T) {
			f := newFixture(t)
			created := f.now()
			old := f.issued()
			f.clk.Add(time.Hour)
			renewed := f.now()
			link, err := f.m.Renew(f.ctx, old.KeyID, opts)
			require.NoError(t, err)
			requireTime(t, renewed.Add(24*time.Hour), link.ExpiresAt, "renewal link expiry")

			latest := f.redeem(link)
			require.Equal(t, old.KeyID, latest.KeyID)
			require.NotEqual(t, old.Token, latest.Token)
			f.verifies(old.KeyID, old.Token)
			f.verifies(old.KeyID, latest.Token)

			k := f.key(old.KeyID)
			requireTime(t, renewed, k.Token.CreatedAt, "current token created")
			require.NotNil(t, k.OldToken)
			requireTime(t, created, k.OldToken.CreatedAt, "old token created")
		})
	}
}

func TestR2_DeleteLaterIsTheZeroValue(t *testing.T) {
	var opts tokens.RenewOptions
	require.Equal(t, tokens.DeleteLater, opts.OldToken)
	require.Equal(t, tokens.OldTokenPolicy(0), tokens.DeleteLater)
}

func TestR2_RenewDeleteNowKeepsOnlyTheNewToken(t *testing.T) {
	f := newFixture(t)
	old := f.issued()
	link := f.renew(old.KeyID, tokens.DeleteNow)
	f.rejects(old.KeyID, old.Token, tokens.ErrInvalidCredentials)
	require.Nil(t, f.key(old.KeyID).OldToken)

	latest := f.redeem(link)
	require.Equal(t, old.KeyID, latest.KeyID)
	require.NotEqual(t, old.Token, latest.Token)
	f.verifies(old.KeyID, latest.Token)
	f.rejects(old.KeyID, old.Token, tokens.ErrInvalidCredentials)
	require.Nil(t, f.key(old.KeyID).OldToken)
}

func TestR2_NewTokenIsCurrentAtOnce(t *testing.T) {
	f := newFixture(t)
	old := f.issued()
	link := f.renew(old.KeyID, tokens.DeleteNow)
	latest := f.peek(old.KeyID, link)
	f.verifies(old.KeyID, latest) // before anyone redeemed the link
	f.rejects(old.KeyID, old.Token, tokens.ErrInvalidCredentials)
	require.Equal(t, latest, f.redeem(link).Token)
}

func TestR2_RenewUnknownKey(t *testing.T) {
	f := newFixture(t)
	for _, id := range []string{"key_" + strings.Repeat("Z", 22), "", "not a key id", strings.Repeat("k", 65)} {
		_, err := f.m.Renew(f.ctx, id, tokens.RenewOptions{})
		require.ErrorIs(t, err, tokens.ErrKeyNotFound, "%q", id)
	}
}

func TestR3_RenewRefusedWhileCreateLinkPending(t *testing.T) {
	f := newFixture(t)
	key, _ := f.create("acme", "erp-sync")
	before := f.record(key.ID)
	for _, at := range []time.Duration{0, 24*time.Hour - time.Second} {
		f.clk.Set(testStart.Add(at))
		for _, policy := range []tokens.OldTokenPolicy{tokens.DeleteLater, tokens.DeleteNow} {
			link, err := f.m.Renew(f.ctx, key.ID, tokens.RenewOptions{OldToken: policy})
			require.ErrorIs(t, err, tokens.ErrRenewalPending, "at +%s, %s", at, policy)
			require.Nil(t, link)
		}
	}
	require.Equal(t, before, f.record(key.ID), "a refused Renew changed the key")

	f.clk.Set(testStart.Add(24 * time.Hour)) // now >= ExpiresAt: no longer pending
	f.redeem(f.renew(key.ID, tokens.DeleteLater))
}

func TestR3_RenewRefusedWhileRenewalLinkPending(t *testing.T) {
	f := newFixture(t)
	old := f.issued()
	link := f.renew(old.KeyID, tokens.DeleteLater)
	before := f.record(old.KeyID)
	for _, policy := range []tokens.OldTokenPolicy{tokens.DeleteLater, tokens.DeleteNow} {
		_, err := f.m.Renew(f.ctx, old.KeyID, tokens.RenewOptions{OldToken: policy})
		require.ErrorIs(t, err, tokens.ErrRenewalPending, "%s", policy)
	}
	require.Equal(t, before, f.record(old.KeyID))
	f.verifies(old.KeyID, old.Token)
	f.verifies(old.KeyID, f.redeem(link).Token) // the pending link is still the key's latest
}

func TestR3_RenewAllowedAfterRedeem(t *testing.T) {
	f := newFixture(t)
	c := f.issued()
	f.redeem(f.renew(c.KeyID, tokens.DeleteNow))
	f.redeem(f.renew(c.KeyID, tokens.DeleteNow))
}

func TestR4_ExpiredUnredeemedTokenIsDiscarded(t *testing.T) {
	for _, policy := range []tokens.OldTokenPolicy{tokens.DeleteLater, tokens.DeleteNow} {
		t.Run(policy.String(), func(t *testing.T) {
			f := newFixture(t)
			key, link := f.create("acme", "erp-sync")
			unseen := f.peek(key.ID, link)
			f.verifies(key.ID, unseen) // current, though nobody has it

			f.clk.Add(24 * time.Hour)
			next := f.renew(key.ID, policy)
			f.rejects(key.ID, unseen, tokens.ErrInvalidCredentials)
			require.Nil(t, f.key(key.ID).OldToken, "an unseen token was kept as old")
			f.verifies(key.ID, f.redeem(next).Token)
			f.rejects(key.ID, unseen, tokens.ErrInvalidCredentials)
		})
	}
}

func TestR4_ExistingOldTokenStaysOldWithDeleteLater(t *testing.T) {
	f := newFixture(t)
	created := f.now()
	old := f.issued()
	link := f.renew(old.KeyID, tokens.DeleteLater)
	unseen := f.peek(old.KeyID, link)

	f.clk.Add(24 * time.Hour)
	next := f.renew(old.KeyID, tokens.DeleteLater)
	f.rejects(old.KeyID, unseen, tokens.ErrInvalidCredentials)
	f.verifies(old.KeyID, old.Token)
	k := f.key(old.KeyID)
	require.NotNil(t, k.OldToken)
	requireTime(t, created, k.OldToken.CreatedAt, "old token created")
	f.verifies(old.KeyID, f.redeem(next).Token)
	f.verifies(old.KeyID, old.Token)
}

func TestR4_ExistingOldTokenDeletedWithDeleteNow(t *testing.T) {
	f := newFixture(t)
	old := f.issued()
	link := f.renew(old.KeyID, tokens.DeleteLater)
	unseen := f.peek(old.KeyID, link)

	f.clk.Add(24 * time.Hour)
	next := f.renew(old.KeyID, tokens.DeleteNow)
	f.rejects(old.KeyID, unseen, tokens.ErrInvalidCredentials)
	f.rejects(old.KeyID, old.Token, tokens.ErrInvalidCredentials)
	require.Nil(t, f.key(old.KeyID).OldToken)
	f.verifies(old.KeyID, f.redeem(next).Token)
}

func TestR4_TokenRestoredByUndoCountsAsSeen(t *testing.T) {
	f := newFixture(t)
	created := f.now()
	old := f.issued()
	f.renew(old.KeyID, tokens.DeleteLater)
	f.clk.Add(24 * time.Hour) // the renewal link expires unredeemed
	require.NoError(t, f.m.Undo(f.ctx, old.KeyID))

	next := f.renew(old.KeyID, tokens.DeleteLater)
	f.verifies(old.KeyID, old.Token) // kept as old, not discarded as unseen
	k := f.key(old.KeyID)
	require.NotNil(t, k.OldToken)
	requireTime(t, created, k.OldToken.CreatedAt, "old token created")

	f.verifies(old.KeyID, f.redeem(next).Token)
	_, err := f.m.Renew(f.ctx, old.KeyID, tokens.RenewOptions{})
	require.ErrorIs(t, err, tokens.ErrOldTokenPending)
}

func TestR5_RenewRefusedWhileOldTokenPendingWhateverTheOptions(t *testing.T) {
	f := newFixture(t)
	old := f.issued()
	latest := f.redeem(f.renew(old.KeyID, tokens.DeleteLater))
	before := f.record(old.KeyID)
	for _, opts := range []tokens.RenewOptions{{}, {OldToken: tokens.DeleteLater}, {OldToken: tokens.DeleteNow}} {
		link, err := f.m.Renew(f.ctx, old.KeyID, opts)
		require.ErrorIs(t, err, tokens.ErrOldTokenPending, "%s", opts.OldToken)
		require.Nil(t, link)
	}
	f.clk.Add(30 * 24 * time.Hour) // time changes nothing
	_, err := f.m.Renew(f.ctx, old.KeyID, tokens.RenewOptions{OldToken: tokens.DeleteNow})
	require.ErrorIs(t, err, tokens.ErrOldTokenPending)
	require.Equal(t, before, f.record(old.KeyID), "a refused Renew changed the key")
	f.verifies(old.KeyID, old.Token)
	f.verifies(old.KeyID, latest.Token)

	require.NoError(t, f.m.DeleteOld(f.ctx, old.KeyID))
	f.redeem(f.renew(old.KeyID, tokens.DeleteLater))
}

func TestR5_UndoAlsoUnblocksRenew(t *testing.T) {
	f := newFixture(t)
	old := f.issued()
	f.redeem(f.renew(old.KeyID, tokens.DeleteLater))
	require.NoError(t, f.m.Undo(f.ctx, old.KeyID))
	next := f.redeem(f.renew(old.KeyID, tokens.DeleteLater))
	f.verifies(old.KeyID, old.Token)
	f.verifies(old.KeyID, next.Token)
}

// TestR5_NeverMoreThanTwoTokensVerify walks a key through a seeded random
// sequence of operations and checks after every step, over every token the
// key ever had, that exactly the current token and the old one (if any)
// verify, and that a token that stopped verifying never comes back.
func TestR5_NeverMoreThanTwoTokensVerify(t *testing.T) {
	f := newFixture(t)
	rng := rand.New(rand.NewPCG(7, 13))
	key, link := f.create("acme", "erp-sync")
	latest := link
	alive := map[string]bool{f.peek(key.ID, link): true}
	var dead []string
	renewals, twice := 0, 0

	for step := range 400 {
		var err error
		switch op := rng.IntN(8); op {
		case 0, 1:
			policy := tokens.OldTokenPolicy(op)
			var l *tokens.ShareLink
			l, err = f.m.Renew(f.ctx, key.ID, tokens.RenewOptions{OldToken: policy})
			if err == nil {
				latest = l
				alive[f.peek(key.ID, l)] = true
				renewals++
			} else if !errors.Is(err, tokens.ErrRenewalPending) && !errors.Is(err, tokens.ErrOldTokenPending) {
				t.Fatalf("step %d: Renew: %v", step, err)
			}
		case 2, 3:
			_, err = f.m.RedeemLink(f.ctx, latest.URL)
			if err != nil && !errors.Is(err, tokens.ErrLinkUsed) && !errors.Is(err, tokens.ErrLinkExpired) && !errors.Is(err, tokens.ErrLinkNotFound) {
				t.Fatalf("step %d: RedeemLink: %v", step, err)
			}
		case 4:
			if err = f.m.DeleteOld(f.ctx, key.ID); err != nil && !errors.Is(err, tokens.ErrNoOldToken) {
				t.Fatalf("step %d: DeleteOld: %v", step, err)
			}
		case 5:
			if err = f.m.Undo(f.ctx, key.ID); err != nil && !errors.Is(err, tokens.ErrUndoUnavailable) {
				t.Fatalf("step %d: Undo: %v", step, err)
			}
		case 6:
			f.clk.Add(13 * time.Hour)
		case 7:
			f.clk.Add(time.Hour)
		}

		verifying := 0
		for tok := range alive {
			_, err := f.m.Verify(f.ctx, key.ID, tok)
			switch {
			case err == nil:
				verifying++
			case errors.Is(err, tokens.ErrInvalidCredentials):
				delete(alive, tok)
				dead = append(dead, tok)
			default:
				t.Fatalf("step %d: Verify: %v", step, err)
			}
		}
		want := 1
		if f.key(key.ID).OldToken != nil {
			want = 2
			twice++
		}
		require.Equal(t, want, verifying, "step %d: tokens that verify", step)
		if step%50 == 0 {
			for _, tok := range dead {
				_, err := f.m.Verify(f.ctx, key.ID, tok)
				require.ErrorIs(t, err, tokens.ErrInvalidCredentials, "step %d: a deleted token verifies again", step)
			}
		}
	}
	require.Greater(t, renewals, 20, "the walk renewed too rarely to test anything")
	require.Greater(t, twice, 20, "the walk rarely had an old token")
}

func TestR6_DeleteOldDeletesTheOldTokenIrreversibly(t *testing.T) {
	f := newFixture(t)
	old := f.issued()
	latest := f.redeem(f.renew(old.KeyID, tokens.DeleteLater))
	require.NoError(t, f.m.DeleteOld(f.ctx, old.KeyID))

	f.rejects(old.KeyID, old.Token, tokens.ErrInvalidCredentials)
	f.verifies(old.KeyID, latest.Token)
	require.Nil(t, f.key(old.KeyID).OldToken)
	require.ErrorIs(t, f.m.Undo(f.ctx, old.KeyID), tokens.ErrUndoUnavailable)
	require.ErrorIs(t, f.m.DeleteOld(f.ctx, old.KeyID), tokens.ErrNoOldToken)
	f.rejects(old.KeyID, old.Token, tokens.ErrInvalidCredentials)
}

func TestR6_DeleteOldWithoutOldToken(t *testing.T) {
	f := newFixture(t)
	key, link := f.create("acme", "erp-sync")
	require.ErrorIs(t, f.m.DeleteOld(f.ctx, key.ID), tokens.ErrNoOldToken) // link pending
	f.redeem(link)
	require.ErrorIs(t, f.m.DeleteOld(f.ctx, key.ID), tokens.ErrNoOldToken)
	f.redeem(f.renew(key.ID, tokens.DeleteNow))
	require.ErrorIs(t, f.m.DeleteOld(f.ctx, key.ID), tokens.ErrNoOldToken)
	require.ErrorIs(t, f.m.DeleteOld(f.ctx, "key_"+strings.Repeat("Z", 22)), tokens.ErrKeyNotFound)
}

func TestR6_DeleteOldAllowedWhileLinkPending(t *testing.T) {
	f := newFixture(t)
	old := f.issued()
	link := f.renew(old.KeyID, tokens.DeleteLater)
	require.NoError(t, f.m.DeleteOld(f.ctx, old.KeyID))
	f.rejects(old.KeyID, old.Token, tokens.ErrInvalidCredentials)

	status, err := f.m.LinkStatus(f.ctx, link.URL)
	require.NoError(t, err)
	require.Equal(t, tokens.LinkPending, status.State)
	f.verifies(old.KeyID, f.redeem(link).Token)
}

func TestR7_UndoRestoresOldTokenWithItsTimes(t *testing.T) {
	f := newFixture(t)
	created := f.now()
	old := f.issued()
	f.clk.Add(time.Hour)
	f.verifies(old.KeyID, old.Token)

	f.clk.Add(time.Hour)
	link := f.renew(old.KeyID, tokens.DeleteLater)
	latest := f.redeem(link)
	f.clk.Add(time.Hour)
	f.verifies(old.KeyID, latest.Token)
	f.clk.Add(time.Hour)
	lastOldUse := f.now()
	f.verifies(old.KeyID, old.Token)

	f.clk.Add(time.Hour)
	require.NoError(t, f.m.Undo(f.ctx, old.KeyID))

	k := f.key(old.KeyID)
	requireTime(t, created, k.Token.CreatedAt, "restored token created")
	requireTime(t, lastOldUse, k.Token.LastUsedAt, "restored token last used")
	require.Nil(t, k.OldToken)
	require.Equal(t, tokens.LinkNotFound, k.Link)
	f.verifies(old.KeyID, old.Token)
	f.rejects(old.KeyID, latest.Token, tokens.ErrInvalidCredentials)

	_, err := f.m.RedeemLink(f.ctx, link.URL)
	require.ErrorIs(t, err, tokens.ErrLinkNotFound)
}

func TestR7_UndoRevokesThePendingLink(t *testing.T) {
	f := newFixture(t)
	old := f.issued()
	link := f.renew(old.KeyID, tokens.DeleteLater)
	latest := f.peek(old.KeyID, link)
	f.verifies(old.KeyID, latest)

	require.NoError(t, f.m.Undo(f.ctx, old.KeyID))
	_, err := f.m.RedeemLink(f.ctx, link.URL)
	require.ErrorIs(t, err, tokens.ErrLinkNotFound)
	status, err := f.m.LinkStatus(f.ctx, link.URL)
	require.NoError(t, err)
	require.Equal(t, tokens.LinkNotFound, status.State)
	f.rejects(old.KeyID, latest, tokens.ErrInvalidCredentials)
	f.verifies(old.KeyID, old.Token)
}

// TestR7_UndoRevokesTheRedeemedLink: Undo works whether or not the link
// was redeemed, and the renewal's link goes with it either way, so a
// redeemed one then gives ErrLinkNotFound (R8: revoked by Undo), not
// ErrLinkUsed.
func TestR7_UndoRevokesTheRedeemedLink(t *testing.T) {
	f := newFixture(t)
	old := f.issued()
	link := f.renew(old.KeyID, tokens.DeleteLater)
	latest := f.redeem(link)
	f.verifies(old.KeyID, latest.Token)

	require.NoError(t, f.m.Undo(f.ctx, old.KeyID))
	_, err := f.m.RedeemLink(f.ctx, link.URL)
	require.ErrorIs(t, err, tokens.ErrLinkNotFound)
	f.rejects(old.KeyID, latest.Token, tokens.ErrInvalidCredentials)
	f.verifies(old.KeyID, old.Token)
}

func TestR7_UndoRevokesTheExpiredLink(t *testing.T) {
	f := newFixture(t)
	old := f.issued()
	link := f.renew(old.KeyID, tokens.DeleteLater)
	latest := f.peek(old.KeyID, link)
	f.clk.Add(24 * time.Hour)
	_, err := f.m.LinkStatus(f.ctx, link.URL)
	require.NoError(t, err)

	require.NoError(t, f.m.Undo(f.ctx, old.KeyID))
	_, err = f.m.RedeemLink(f.ctx, link.URL)
	require.ErrorIs(t, err, tokens.ErrLinkNotFound)
	f.rejects(old.KeyID, latest, tokens.ErrInvalidCredentials)
	f.verifies(old.KeyID, old.Token)
}

func TestR7_UndoUnavailableWithoutOldToken(t *testing.T) {
	f := newFixture(t)
	key, link := f.create("acme", "erp-sync")
	require.ErrorIs(t, f.m.Undo(f.ctx, key.ID), tokens.ErrUndoUnavailable, "fresh key, link pending")
	c := f.redeem(link)
	require.ErrorIs(t, f.m.Undo(f.ctx, key.ID), tokens.ErrUndoUnavailable, "fresh key")

	c2 := f.redeem(f.renew(key.ID, tokens.DeleteNow))
	before := f.record(key.ID)
	require.ErrorIs(t, f.m.Undo(f.ctx, key.ID), tokens.ErrUndoUnavailable, "after DeleteNow")
	require.Equal(t, before, f.record(key.ID))
	f.rejects(key.ID, c.Token, tokens.ErrInvalidCredentials)
	f.verifies(key.ID, c2.Token)

	f.redeem(f.renew(key.ID, tokens.DeleteLater))
	require.NoError(t, f.m.DeleteOld(f.ctx, key.ID))
	require.ErrorIs(t, f.m.Undo(f.ctx, key.ID), tokens.ErrUndoUnavailable, "after DeleteOld")
	f.rejects(key.ID, c2.Token, tokens.ErrInvalidCredentials)

	f.redeem(f.renew(key.ID, tokens.DeleteLater))
	require.NoError(t, f.m.Undo(f.ctx, key.ID))
	require.ErrorIs(t, f.m.Undo(f.ctx, key.ID), tokens.ErrUndoUnavailable, "second Undo")

	require.ErrorIs(t, f.m.Undo(f.ctx, "key_"+strings.Repeat("Z", 22)), tokens.ErrKeyNotFound)
}

func TestR8_InvalidLinkNeverTouchesTheStore(t *testing.T) {
	f := newFixture(t)
	_, link := f.create("acme", "erp-sync")
	id := linkID(t, link.URL)
	for _, url := range []string{
		"",
		id,
		"https://share.example.com/credentials/",
		"https://share.example.com/credentials/" + id[:42],
		"https://share.example.com/credentials/" + id + "x",
		"https://share.example.com/credentials/" + id[:42] + "-",
		"http://share.example.com/credentials/" + id,
		"https://share.example.com/credentials/" + id + "?",
	} {
		f.store.reset()
		creds, err := f.m.RedeemLink(f.ctx, url)
		require.ErrorIs(t, err, tokens.ErrInvalidLink, "%q", url)
		require.Nil(t, creds)
		_, err = f.m.LinkStatus(f.ctx, url)
		require.ErrorIs(t, err, tokens.ErrInvalidLink, "%q", url)
		require.Zero(t, f.store.calls.Load(), "%q reached the store", url)
	}
	f.redeem(link) // the attempts consumed nothing
}

func TestR8_RedeemExactlyOnceUnderConcurrency(t *testing.T) {
	f := newFixture(t)
	key, link := f.create("acme", "erp-sync")
	managers := []*tokens.Manager{f.m, f.manager()} // two processes, one database
	const n = 32
	got := make([]*tokens.Credentials, n)
	errs := collect(n, func(i int) error {
		creds, err := managers[i%2].RedeemLink(f.ctx, link.URL)
		got[i] = creds
		return err
	})
	ok, used, others := tally(errs, tokens.ErrLinkUsed)
	require.Empty(t, others)
	require.Equal(t, 1, ok, "successful redemptions")
	require.Equal(t, n-1, used)
	var winner *tokens.Credentials
	for _, c := range got {
		if c != nil {
			require.Nil(t, winner, "two callers got credentials")
			winner = c
		}
	}
	require.Equal(t, key.ID, winner.KeyID)
	f.verifies(key.ID, winner.Token)
}

func TestR8_UsedLinkStaysUsedAfterItsExpiry(t *testing.T) {
	f := newFixture(t)
	_, link := f.create("acme", "erp-sync")
	f.redeem(link)
	for _, after := range []time.Duration{0, 24 * time.Hour, 48 * time.Hour, 365 * 24 * time.Hour} {
		f.clk.Set(testStart.Add(after))
		creds, err := f.m.RedeemLink(f.ctx, link.URL)
		require.ErrorIs(t, err, tokens.ErrLinkUsed, "at +%s", after)
		require.Nil(t, creds)
		status, err := f.m.LinkStatus(f.ctx, link.URL)
		require.NoError(t, err)
		require.Equal(t, tokens.LinkUsed, status.State, "at +%s", after)
	}
	_, err := f.m.PurgeExpired(f.ctx)
	require.NoError(t, err)
	_, err = f.m.RedeemLink(f.ctx, link.URL)
	require.ErrorIs(t, err, tokens.ErrLinkUsed)
}

func TestR8_LinkExpiresExactlyAtExpiresAt(t *testing.T) {
	f := newFixture(t)
	_, justBefore := f.create("acme", "a")
	_, microBefore := f.create("acme", "b")
	_, atExpiry := f.create("acme", "c")
	expires := justBefore.ExpiresAt
	requireTime(t, testStart.Add(24*time.Hour), expires, "expiry")

	f.clk.Set(expires.Add(-time.Second))
	f.redeem(justBefore)
	f.clk.Set(expires.Add(-time.Microsecond))
	f.redeem(microBefore)

	f.clk.Set(expires)
	creds, err := f.m.RedeemLink(f.ctx, atExpiry.URL)
	require.ErrorIs(t, err, tokens.ErrLinkExpired)
	require.Nil(t, creds)
	status, err := f.m.LinkStatus(f.ctx, atExpiry.URL)
	require.NoError(t, err)
	require.Equal(t, tokens.LinkExpired, status.State)
	requireTime(t, expires, status.ExpiresAt, "status expiry")

	f.clk.Add(7 * 24 * time.Hour)
	_, err = f.m.RedeemLink(f.ctx, atExpiry.URL)
	require.ErrorIs(t, err, tokens.ErrLinkExpired, "a week later")
}

func TestR8_SupersededLinkIsNotFound(t *testing.T) {
	f := newFixture(t)
	key, expired := f.create("acme", "erp-sync")
	f.clk.Add(24 * time.Hour)
	redeemed := f.renew(key.ID, tokens.DeleteNow)
	_, err := f.m.RedeemLink(f.ctx, expired.URL)
	require.ErrorIs(t, err, tokens.ErrLinkNotFound, "expired link superseded by a renewal")

	f.redeem(redeemed)
	latest := f.renew(key.ID, tokens.DeleteNow)
	_, err = f.m.RedeemLink(f.ctx, redeemed.URL)
	require.ErrorIs(t, err, tokens.ErrLinkNotFound, "redeemed link superseded by a renewal")
	status, err := f.m.LinkStatus(f.ctx, redeemed.URL)
	require.NoError(t, err)
	require.Equal(t, tokens.LinkNotFound, status.State)
	f.redeem(latest)
}

func TestR8_LinkRevokedByUndoIsNotFound(t *testing.T) {
	f := newFixture(t)
	c := f.issued()
	link := f.renew(c.KeyID, tokens.DeleteLater)
	require.NoError(t, f.m.Undo(f.ctx, c.KeyID))
	_, err := f.m.RedeemLink(f.ctx, link.URL)
	require.ErrorIs(t, err, tokens.ErrLinkNotFound)
}

func TestR8_LinkOfDeletedKeyIsNotFound(t *testing.T) {
	f := newFixture(t)
	key, link := f.create("acme", "erp-sync")
	require.NoError(t, f.m.DeleteKey(f.ctx, key.ID))
	_, err := f.m.RedeemLink(f.ctx, link.URL)
	require.ErrorIs(t, err, tokens.ErrLinkNotFound)
}

func TestR8_UnknownLinkIsNotFound(t *testing.T) {
	f := newFixture(t)
	_, link := f.create("acme", "erp-sync")
	id := linkID(t, link.URL)
	for _, other := range []string{strings.Repeat("A", 43), replaceAt(id, 0), replaceAt(id, 42), strings.ToUpper(id[:1]) + strings.ToLower(id[1:])} {
		if other == id {
			continue
		}
		_, err := f.m.RedeemLink(f.ctx, testBase+other)
		require.ErrorIs(t, err, tokens.ErrLinkNotFound, "%q", other)
	}
	f.redeem(link)
}

func TestR8_RedemptionChangesNoTokensValidity(t *testing.T) {
	for _, policy := range []tokens.OldTokenPolicy{tokens.DeleteLater, tokens.DeleteNow} {
		t.Run(policy.String(), func(t *testing.T) {
			f := newFixture(t)
			old := f.issued()
			link := f.renew(old.KeyID, policy)
			latest := f.peek(old.KeyID, link)
			check := func() {
				t.Helper()
				f.verifies(old.KeyID, latest)
				if policy == tokens.DeleteLater {
					f.verifies(old.KeyID, old.Token)
				} else {
					f.rejects(old.KeyID, old.Token, tokens.ErrInvalidCredentials)
				}
			}
			check()
			require.Equal(t, latest, f.redeem(link).Token)
			check()
		})
	}
}

func TestR8_RedemptionWipesTheSealedTokenButKeepsTheLink(t *testing.T) {
	f := newFixture(t)
	key, link := f.create("acme", "erp-sync")
	before := f.record(key.ID)
	require.True(t, before.HasLink)
	require.NotEmpty(t, before.Link.Sealed)

	f.clk.Add(time.Minute)
	f.redeem(link)
	after := f.record(key.ID)
	require.True(t, after.HasLink)
	require.Empty(t, after.Link.Sealed)
	require.Equal(t, before.Link.Digest, after.Link.Digest)
	requireTime(t, f.now(), after.Link.RedeemedAt, "redeemed at")
	requireTime(t, before.Link.ExpiresAt, after.Link.ExpiresAt, "expiry")
	byLink, err := f.mem.KeyByLink(f.ctx, after.Link.Digest)
	require.NoError(t, err)
	require.Equal(t, key.ID, byLink.ID)
}

func TestR8_LinkOfInactiveKeyRedeems(t *testing.T) {
	f := newFixture(t)
	key, link := f.create("acme", "erp-sync")
	require.NoError(t, f.m.Deactivate(f.ctx, key.ID))
	creds := f.redeem(link)
	require.Equal(t, key.ID, creds.KeyID)
	f.rejects(key.ID, creds.Token, tokens.ErrKeyInactive) // redeeming does not activate
	require.NoError(t, f.m.Activate(f.ctx, key.ID))
	f.verifies(key.ID, creds.Token)
}

func TestR8_LinkStatusDoesNotConsumeTheLink(t *testing.T) {
	f := newFixture(t)
	key, link := f.create("acme", "erp-sync")
	for range 3 {
		status, err := f.m.LinkStatus(f.ctx, link.URL)
		require.NoError(t, err)
		require.Equal(t, tokens.LinkPending, status.State)
		requireTime(t, link.ExpiresAt, status.ExpiresAt, "status expiry")
	}
	require.Equal(t, tokens.LinkPending, f.key(key.ID).Link)
	f.redeem(link)
	status, err := f.m.LinkStatus(f.ctx, link.URL)
	require.NoError(t, err)
	require.Equal(t, tokens.LinkUsed, status.State)
	require.Equal(t, tokens.LinkUsed, f.key(key.ID).Link)

	key2, expired := f.create("acme", "other")
	f.clk.Add(24 * time.Hour)
	status, err = f.m.LinkStatus(f.ctx, expired.URL)
	require.NoError(t, err)
	require.Equal(t, tokens.LinkExpired, status.State)
	require.Equal(t, tokens.LinkExpired, f.key(key2.ID).Link)

	status, err = f.m.LinkStatus(f.ctx, testBase+strings.Repeat("Q", 43))
	require.NoError(t, err)
	require.Equal(t, tokens.LinkNotFound, status.State)
	require.True(t, status.ExpiresAt.IsZero())

	_, err = f.m.LinkStatus(f.ctx, testBase+"short")
	require.ErrorIs(t, err, tokens.ErrInvalidLink)
}
