package tokens_test

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/store/memstore"
)

// Tests of the lifecycle rules R1-R13 of SPEC.md, one rule per name
// prefix, so that "go test -run R7" runs the tests of R7.

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

func TestR9_UnknownKeyAndWrongTokenGiveTheSameError(t *testing.T) {
	f := newFixture(t)
	c := f.issued()
	other := f.issued()
	deleted := f.issued()
	require.NoError(t, f.m.DeleteKey(f.ctx, deleted.KeyID))
	forged := forgeToken("tok", strings.Repeat("x", 43))
	require.True(t, wellFormedToken(forged))

	cases := []struct{ name, keyID, token string }{
		{"wrong token", c.KeyID, forged},
		{"another key's token", c.KeyID, other.Token},
		{"unknown key", "key_" + strings.Repeat("Z", 22), c.Token},
		{"deleted key", deleted.KeyID, deleted.Token},
		{"empty key ID", "", c.Token},
		{"key ID too long", strings.Repeat("k", 200), c.Token},
		{"key ID with path", "../" + c.KeyID, c.Token},
	}
	var first error
	for _, cs := range cases {
		k, err := f.m.Verify(f.ctx, cs.keyID, cs.token)
		require.Nil(t, k, cs.name)
		require.ErrorIs(t, err, tokens.ErrInvalidCredentials, cs.name)
		require.NotErrorIs(t, err, tokens.ErrMalformedToken, cs.name)
		require.NotErrorIs(t, err, tokens.ErrKeyNotFound, cs.name)
		if first == nil {
			first = err
		}
		require.Equal(t, first.Error(), err.Error(), "%s: the message tells the cases apart", cs.name)
	}
}

func TestR9_KeyInactiveOnlyWithTheRightToken(t *testing.T) {
	f := newFixture(t)
	old := f.issued()
	latest := f.redeem(f.renew(old.KeyID, tokens.DeleteLater))
	require.NoError(t, f.m.Deactivate(f.ctx, old.KeyID))

	f.rejects(old.KeyID, latest.Token, tokens.ErrKeyInactive)
	f.rejects(old.KeyID, old.Token, tokens.ErrKeyInactive)
	k, err := f.m.Verify(f.ctx, old.KeyID, forgeToken("tok", strings.Repeat("y", 43)))
	require.ErrorIs(t, err, tokens.ErrInvalidCredentials)
	require.NotErrorIs(t, err, tokens.ErrKeyInactive)
	require.Nil(t, k)
	_, err = f.m.Verify(f.ctx, old.KeyID, latest.Token+"x")
	require.ErrorIs(t, err, tokens.ErrMalformedToken)
	require.NotErrorIs(t, err, tokens.ErrKeyInactive)
	_, err = f.m.Verify(f.ctx, old.KeyID, f.issued().Token)
	require.ErrorIs(t, err, tokens.ErrInvalidCredentials)
	require.NotErrorIs(t, err, tokens.ErrKeyInactive)
}

func TestR9_CurrentAndOldTokensVerify(t *testing.T) {
	f := newFixture(t)
	old := f.issued()
	latest := f.redeem(f.renew(old.KeyID, tokens.DeleteLater))
	for _, tok := range []string{old.Token, latest.Token} {
		k, err := f.m.Verify(f.ctx, old.KeyID, tok)
		require.NoError(t, err)
		require.Equal(t, old.KeyID, k.ID)
		require.Equal(t, "acme", k.Account)
		require.True(t, k.Active)
		require.NotNil(t, k.OldToken)
	}
}

func TestR9_LastUsedAtRecordedAtMostOnceAMinute(t *testing.T) {
	f := newFixture(t)
	c := f.issued()
	first := f.now()
	k, err := f.m.Verify(f.ctx, c.KeyID, c.Token)
	require.NoError(t, err)
	requireTime(t, first, k.Token.LastUsedAt, "first use, returned")
	requireTime(t, first, f.key(c.KeyID).Token.LastUsedAt, "first use, stored")
	version := f.record(c.KeyID).Version

	for _, after := range []time.Duration{30 * time.Second, 59 * time.Second} {
		f.clk.Set(first.Add(after))
		k, err = f.m.Verify(f.ctx, c.KeyID, c.Token)
		require.NoError(t, err)
		requireTime(t, first, k.Token.LastUsedAt, "use at +"+after.String()+", returned")
		requireTime(t, first, f.key(c.KeyID).Token.LastUsedAt, "use at +"+after.String()+", stored")
		require.Equal(t, version, f.record(c.KeyID).Version, "use at +%s was written", after)
	}

	f.clk.Set(first.Add(time.Minute))
	k, err = f.m.Verify(f.ctx, c.KeyID, c.Token)
	require.NoError(t, err)
	requireTime(t, first.Add(time.Minute), k.Token.LastUsedAt, "use a minute later, returned")
	requireTime(t, first.Add(time.Minute), f.key(c.KeyID).Token.LastUsedAt, "use a minute later, stored")
	require.Equal(t, version+1, f.record(c.KeyID).Version)

	f.clk.Set(first.Add(time.Minute + 30*time.Second))
	_, err = f.m.Verify(f.ctx, c.KeyID, c.Token)
	require.NoError(t, err)
	requireTime(t, first.Add(time.Minute), f.key(c.KeyID).Token.LastUsedAt, "use 30s after the second")

	f.clk.Set(first.Add(5 * time.Hour))
	_, err = f.m.Verify(f.ctx, c.KeyID, c.Token)
	require.NoError(t, err)
	requireTime(t, first.Add(5*time.Hour), f.key(c.KeyID).Token.LastUsedAt, "use hours later")
}

func TestR9_InactiveUsesAreNotRecorded(t *testing.T) {
	f := newFixture(t)
	c := f.issued()
	first := f.now()
	f.verifies(c.KeyID, c.Token)
	require.NoError(t, f.m.Deactivate(f.ctx, c.KeyID))
	version := f.record(c.KeyID).Version

	f.clk.Add(10 * time.Minute)
	f.rejects(c.KeyID, c.Token, tokens.ErrKeyInactive)
	requireTime(t, first, f.key(c.KeyID).Token.LastUsedAt, "last used")
	require.Equal(t, version, f.record(c.KeyID).Version, "a refused use was written")

	require.NoError(t, f.m.Activate(f.ctx, c.KeyID))
	f.verifies(c.KeyID, c.Token)
	requireTime(t, f.now(), f.key(c.KeyID).Token.LastUsedAt, "last used after activation")
}

func TestR9_OldTokenLastUsedAtIsTrackedSeparately(t *testing.T) {
	f := newFixture(t)
	old := f.issued()
	f.clk.Add(time.Hour)
	latest := f.redeem(f.renew(old.KeyID, tokens.DeleteLater))

	f.clk.Add(time.Minute)
	oldUse := f.now()
	k, err := f.m.Verify(f.ctx, old.KeyID, old.Token)
	require.NoError(t, err)
	requireTime(t, oldUse, k.OldToken.LastUsedAt, "old token last used, returned")
	require.True(t, k.Token.LastUsedAt.IsZero(), "the old token's use was recorded on the current one")

	f.clk.Add(30 * time.Second) // less than a minute after the old token's use
	newUse := f.now()
	k, err = f.m.Verify(f.ctx, old.KeyID, latest.Token)
	require.NoError(t, err)
	requireTime(t, newUse, k.Token.LastUsedAt, "current token last used, returned")
	requireTime(t, oldUse, k.OldToken.LastUsedAt, "old token last used, after a use of the current one")

	stored := f.key(old.KeyID)
	requireTime(t, newUse, stored.Token.LastUsedAt, "current token last used, stored")
	requireTime(t, oldUse, stored.OldToken.LastUsedAt, "old token last used, stored")
}

func TestR9_MalformedTokensAreRejectedWithoutTheStore(t *testing.T) {
	f := newFixture(t)
	c := f.issued()
	tok := c.Token
	body := tok[4 : 4+43]
	cases := map[string]string{
		"flipped body char":         replaceAt(tok, 10),
		"flipped last body char":    replaceAt(tok, len(tok)-7),
		"wrong checksum":            replaceAt(tok, len(tok)-1),
		"truncated":                 tok[:len(tok)-1],
		"one char more":             tok + "A",
		"body only":                 body,
		"no checksum":               tok[:len(tok)-6],
		"no underscore":             "tok" + tok[4:],
		"dash for underscore":       "tok-" + tok[4:],
		"uppercase prefix":          "TOK" + tok[3:],
		"prefix of 17 characters":   forgeToken(strings.Repeat("a", 17), body),
		"prefix starting with 0":    forgeToken("0ok", body),
		"body of 42":                forgeToken("tok", body[:42]),
		"body of 44":                forgeToken("tok", body+"A"),
		"body with dash":            forgeToken("tok", body[:42]+"-"),
		"leading space":             " " + tok,
		"trailing newline":          tok + "\n",
		"NUL inside":                tok[:20] + "\x00" + tok[21:],
		"non-ASCII":                 tok[:20] + "é" + tok[22:],
		"empty":                     "",
		"garbage":                   "hello, world",
		"hex digest":                strings.Repeat("ab", 32),
		"huge":                      strings.Repeat("A", 1<<20),
		"huge with a token at head": tok + strings.Repeat("A", 1<<16),
	}
	for name, bad := range cases {
		require.False(t, wellFormedToken(bad), name)
		f.store.reset()
		k, err := f.m.Verify(f.ctx, c.KeyID, bad)
		require.Nil(t, k, name)
		require.ErrorIs(t, err, tokens.ErrMalformedToken, name)
		require.ErrorIs(t, err, tokens.ErrInvalidCredentials, name)
		require.Zero(t, f.store.calls.Load(), "%s: Verify consulted the store", name)
	}
	f.verifies(c.KeyID, tok)
}

// alertAt sets the clock to at and returns the key's alert there.
func alertAt(f *fixture, id string, at time.Time) tokens.AlertLevel {
	f.t.Helper()
	f.clk.Set(at)
	return f.key(id).Alert
}

func TestR10_DefaultAlertAfterThreeMonths(t *testing.T) {
	f := newFixture(t)
	c := f.issued()
	ref := testStart
	warn, crit := ref.UTC().AddDate(0, 3, 0), ref.UTC().AddDate(0, 6, 0)
	require.Equal(t, tokens.AlertNone, alertAt(f, c.KeyID, ref))
	require.Equal(t, tokens.AlertNone, alertAt(f, c.KeyID, warn.Add(-time.Second)))
	require.Equal(t, tokens.AlertNone, alertAt(f, c.KeyID, warn.Add(-time.Microsecond)))
	require.Equal(t, tokens.AlertWarning, alertAt(f, c.KeyID, warn))
	require.Equal(t, tokens.AlertWarning, alertAt(f, c.KeyID, crit.Add(-time.Second)))
	require.Equal(t, tokens.AlertCritical, alertAt(f, c.KeyID, crit))
	require.Equal(t, tokens.AlertCritical, alertAt(f, c.KeyID, ref.AddDate(5, 0, 0)))

	f.clk.Set(warn)
	k, err := f.m.Verify(f.ctx, c.KeyID, c.Token)
	require.NoError(t, err)
	require.Equal(t, tokens.AlertWarning, k.Alert)
	keys, err := f.m.Keys(f.ctx, "acme")
	require.NoError(t, err)
	require.Equal(t, tokens.AlertWarning, keys[0].Alert)
}

func TestR10_AlertAfterSixMonths(t *testing.T) {
	f := newFixture(t, tokens.WithAlertAfter(6))
	c := f.issued()
	warn, crit := testStart.AddDate(0, 6, 0), testStart.AddDate(0, 9, 0)
	require.Equal(t, tokens.AlertNone, alertAt(f, c.KeyID, testStart.AddDate(0, 3, 0)))
	require.Equal(t, tokens.AlertNone, alertAt(f, c.KeyID, warn.Add(-time.Second)))
	require.Equal(t, tokens.AlertWarning, alertAt(f, c.KeyID, warn))
	require.Equal(t, tokens.AlertWarning, alertAt(f, c.KeyID, crit.Add(-time.Second)))
	require.Equal(t, tokens.AlertCritical, alertAt(f, c.KeyID, crit))
}

func TestR10_AlertPeriodsOfOneAndTwentyFourMonths(t *testing.T) {
	for _, months := range []int{1, 24} {
		f := newFixture(t, tokens.WithAlertAfter(months))
		c := f.issued()
		warn, crit := testStart.AddDate(0, months, 0), testStart.AddDate(0, months+3, 0)
		require.Equal(t, tokens.AlertNone, alertAt(f, c.KeyID, warn.Add(-time.Second)), "%d months", months)
		require.Equal(t, tokens.AlertWarning, alertAt(f, c.KeyID, warn), "%d months", months)
		require.Equal(t, tokens.AlertWarning, alertAt(f, c.KeyID, crit.Add(-time.Second)), "%d months", months)
		require.Equal(t, tokens.AlertCritical, alertAt(f, c.KeyID, crit), "%d months", months)
	}
}

func TestR10_MonthEndFollowsGoNormalisation(t *testing.T) {
	f := newFixture(t)
	ref := time.Date(2024, 1, 31, 10, 0, 0, 0, time.UTC)
	f.clk.Set(ref)
	c := f.issued()
	// January 31 plus three months is "April 31", which Go normalises to
	// May 1; plus six months is July 31.
	warn, crit := ref.AddDate(0, 3, 0), ref.AddDate(0, 6, 0)
	require.Equal(t, time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC), warn)
	require.Equal(t, tokens.AlertNone, alertAt(f, c.KeyID, time.Date(2024, 4, 30, 10, 0, 0, 0, time.UTC)))
	require.Equal(t, tokens.AlertNone, alertAt(f, c.KeyID, warn.Add(-time.Second)))
	require.Equal(t, tokens.AlertWarning, alertAt(f, c.KeyID, warn))
	require.Equal(t, tokens.AlertWarning, alertAt(f, c.KeyID, crit.Add(-time.Second)))
	require.Equal(t, tokens.AlertCritical, alertAt(f, c.KeyID, crit))
}

func TestR10_CalendarMonthsAreCountedInUTC(t *testing.T) {
	f := newFixture(t, tokens.WithAlertAfter(1))
	zone := time.FixedZone("UTC-5", -5*60*60)
	// March 31 22:00 at UTC-5 is April 1 03:00 UTC. A month later in UTC is
	// May 1 03:00 UTC; counted in the local zone it would be a day later.
	f.clk.Set(time.Date(2024, 3, 31, 22, 0, 0, 0, zone))
	c := f.issued()
	warn := time.Date(2024, 5, 1, 3, 0, 0, 0, time.UTC)
	require.Equal(t, tokens.AlertNone, alertAt(f, c.KeyID, warn.Add(-time.Second).In(zone)))
	require.Equal(t, tokens.AlertWarning, alertAt(f, c.KeyID, warn.In(zone)))
}

func TestR10_RenewalResetsTheReference(t *testing.T) {
	f := newFixture(t)
	c := f.issued()
	require.Equal(t, tokens.AlertCritical, alertAt(f, c.KeyID, testStart.AddDate(0, 7, 0)))
	renewed := f.now()
	f.redeem(f.renew(c.KeyID, tokens.DeleteLater))
	require.Equal(t, tokens.AlertNone, f.key(c.KeyID).Alert, "the old token's age counts")
	require.Equal(t, tokens.AlertNone, alertAt(f, c.KeyID, renewed.AddDate(0, 3, 0).Add(-time.Second)))
	require.Equal(t, tokens.AlertWarning, alertAt(f, c.KeyID, renewed.AddDate(0, 3, 0)))
}

func TestR10_UndoRestoresTheOldTokensReference(t *testing.T) {
	f := newFixture(t)
	c := f.issued()
	require.Equal(t, tokens.AlertWarning, alertAt(f, c.KeyID, testStart.AddDate(0, 4, 0)))
	f.renew(c.KeyID, tokens.DeleteLater)
	require.Equal(t, tokens.AlertNone, f.key(c.KeyID).Alert)
	require.NoError(t, f.m.Undo(f.ctx, c.KeyID))
	require.Equal(t, tokens.AlertWarning, f.key(c.KeyID).Alert)
	require.Equal(t, tokens.AlertCritical, alertAt(f, c.KeyID, testStart.AddDate(0, 6, 0)))
}

func TestR10_AlertNeverDisablesAToken(t *testing.T) {
	f := newFixture(t)
	old := f.issued()
	f.clk.Set(testStart.AddDate(10, 0, 0))
	k, err := f.m.Verify(f.ctx, old.KeyID, old.Token)
	require.NoError(t, err)
	require.Equal(t, tokens.AlertCritical, k.Alert)

	latest := f.redeem(f.renew(old.KeyID, tokens.DeleteLater))
	f.clk.Set(testStart.AddDate(20, 0, 0))
	for _, tok := range []string{old.Token, latest.Token} {
		k, err := f.m.Verify(f.ctx, old.KeyID, tok)
		require.NoError(t, err)
		require.Equal(t, tokens.AlertCritical, k.Alert)
	}
}

func TestR10_AlertPeriodOutOfRangeIsRefused(t *testing.T) {
	for _, months := range []int{0, -1, -3, 25, 36} {
		_, err := tokens.NewManager(memstore.New(), tokens.WithShareBaseURL(testBase), tokens.WithAlertAfter(months))
		require.ErrorIs(t, err, tokens.ErrInvalidOption, "%d months", months)
	}
	for _, months := range []int{1, 3, 6, 24} {
		_, err := tokens.NewManager(memstore.New(), tokens.WithShareBaseURL(testBase), tokens.WithAlertAfter(months))
		require.NoError(t, err, "%d months", months)
	}
}

func TestR10_AlertLevelNames(t *testing.T) {
	require.Equal(t, "none", tokens.AlertNone.String())
	require.Equal(t, "warning", tokens.AlertWarning.String())
	require.Equal(t, "critical", tokens.AlertCritical.String())
}

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

// timeReaders read the wall clock; timeWaiters wait on it.
var (
	timeReaders = map[string]bool{"Now": true, "Since": true, "Until": true}
	timeWaiters = map[string]bool{"Sleep": true, "NewTimer": true, "NewTicker": true, "After": true, "AfterFunc": true, "Tick": true}
)

// timeUse is a reference to a function of package time in library code.
type timeUse struct {
	path, fn, name, pos string
}

// timeUses returns every use of the functions of package time that read
// or wait on the wall clock in the library's non-test files, with the
// function that holds it.
func timeUses(t *testing.T) []timeUse {
	t.Helper()
	files := libraryFiles(t)
	memstore := filepath.Join("store", "memstore")
	require.True(t, slices.ContainsFunc(files, func(f string) bool { return filepath.Dir(f) == memstore }),
		"the check does not read memstore: it checks less than it says")
	var uses []timeUse
	for _, path := range files {
		fset := token.NewFileSet()
		file, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		require.NoError(t, err)
		names := map[string]bool{}
		for _, imp := range file.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); p == "time" {
				switch {
				case imp.Name == nil:
					names["time"] = true
				case imp.Name.Name == ".":
					uses = append(uses, timeUse{path: path, name: "dot import", pos: fset.Position(imp.Pos()).String()})
				case imp.Name.Name != "_":
					names[imp.Name.Name] = true
				}
			}
		}
		for _, decl := range file.Decls {
			fn := ""
			if d, ok := decl.(*ast.FuncDecl); ok {
				fn = d.Name.Name
			}
			ast.Inspect(decl, func(n ast.Node) bool {
				sel, ok := n.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				pkg, ok := sel.X.(*ast.Ident)
				if ok && names[pkg.Name] && (timeReaders[sel.Sel.Name] || timeWaiters[sel.Sel.Name]) {
					uses = append(uses, timeUse{path: path, fn: fn, name: sel.Sel.Name, pos: fset.Position(sel.Pos()).String()})
				}
				return true
			})
		}
	}
	return uses
}

func TestR12_OnlyTheClockReadsTheTime(t *testing.T) {
	var violations []string
	clockReads := 0
	for _, use := range timeUses(t) {
		switch {
		case filepath.Dir(use.path) == "." && use.fn == "Now" && use.name == "Now": // systemClock.Now
			clockReads++
		case !timeWaiters[use.name]:
			violations = append(violations, use.pos+": time."+use.name)
		}
	}
	require.Empty(t, violations, "only the default clock's Now may read the time")
	require.Positive(t, clockReads, "the check did not find the default clock's time.Now: it checks nothing")
}

// waitsAllowed lists the waits that drive no rule: functions in which
// library code may wait on a wall-clock timer, with their package's
// directory.
var waitsAllowed = map[string]string{
	// Migrate backs off while processes race to switch a new SQLite file
	// to WAL; no key state depends on it.
	"sqliteConn": filepath.Join("store", "sqlstore"),
}

func TestR12_NothingElseWaitsOnTheWallClock(t *testing.T) {
	var violations []string
	for _, use := range timeUses(t) {
		if timeWaiters[use.name] && waitsAllowed[use.fn] != filepath.Dir(use.path) {
			violations = append(violations, use.pos+": time."+use.name+" in "+use.fn)
		}
	}
	require.Empty(t, violations, "library code waits on the wall clock; expiry must follow the injected clock")
}

// libraryFiles returns the non-test Go files of the root package and of
// every package under store/.
func libraryFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	err = filepath.WalkDir("store", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".go") {
			files = append(files, path)
		}
		return nil
	})
	require.NoError(t, err)
	var out []string
	for _, f := range files {
		if !strings.HasSuffix(f, "_test.go") {
			out = append(out, f)
		}
	}
	return out
}

// sqlTimeFuncs are SQL expressions that read the database server's clock.
var sqlTimeFuncs = regexp.MustCompile(`(?i)\b(now\s*\(|current_timestamp|current_date|current_time|localtimestamp|localtime\b|clock_timestamp|statement_timestamp|transaction_timestamp|sysdate|getdate|unixepoch\s*\(|'now')`)

func TestR12_StoresNeverReadTheDatabaseClock(t *testing.T) {
	var violations []string
	err := filepath.WalkDir("store", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		switch {
		case strings.HasSuffix(path, ".sql"):
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for i, line := range strings.Split(string(data), "\n") {
				code, _, _ := strings.Cut(line, "--")
				if sqlTimeFuncs.MatchString(code) {
					violations = append(violations, path+":"+strconv.Itoa(i+1)+": "+strings.TrimSpace(line))
				}
			}
		case strings.HasSuffix(path, ".go"):
			fset := token.NewFileSet()
			file, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			ast.Inspect(file, func(n ast.Node) bool {
				if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING && sqlTimeFuncs.MatchString(lit.Value) {
					violations = append(violations, fset.Position(lit.Pos()).String()+": "+lit.Value)
				}
				return true
			})
		}
		return nil
	})
	require.NoError(t, err)
	require.Empty(t, violations, "SQL must take every time from the Manager")
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

func TestR13_ConcurrentDeleteOldHasExactlyOneWinner(t *testing.T) {
	f := newFixture(t)
	old := f.issued()
	latest := f.redeem(f.renew(old.KeyID, tokens.DeleteLater))
	m2 := f.manager()
	errs := collect(32, func(i int) error {
		if i%2 == 0 {
			return f.m.DeleteOld(f.ctx, old.KeyID)
		}
		return m2.DeleteOld(f.ctx, old.KeyID)
	})
	ok, none, others := tally(errs, tokens.ErrNoOldToken)
	require.Empty(t, others)
	require.Equal(t, 1, ok)
	require.Equal(t, 31, none)
	f.rejects(old.KeyID, old.Token, tokens.ErrInvalidCredentials)
	f.verifies(old.KeyID, latest.Token)
}

func TestR13_ConcurrentUndoHasExactlyOneWinner(t *testing.T) {
	f := newFixture(t)
	old := f.issued()
	latest := f.redeem(f.renew(old.KeyID, tokens.DeleteLater))
	m2 := f.manager()
	errs := collect(32, func(i int) error {
		if i%2 == 0 {
			return f.m.Undo(f.ctx, old.KeyID)
		}
		return m2.Undo(f.ctx, old.KeyID)
	})
	ok, unavailable, others := tally(errs, tokens.ErrUndoUnavailable)
	require.Empty(t, others)
	require.Equal(t, 1, ok)
	require.Equal(t, 31, unavailable)
	f.verifies(old.KeyID, old.Token)
	f.rejects(old.KeyID, latest.Token, tokens.ErrInvalidCredentials)
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

// TestAPI_SentinelErrorsAreDistinct checks that every error the SPEC
// names is its own sentinel, prefixed like the package's other errors.
func TestAPI_SentinelErrorsAreDistinct(t *testing.T) {
	sentinels := []error{
		tokens.ErrKeyNotFound, tokens.ErrRenewalPending, tokens.ErrOldTokenPending, tokens.ErrNoOldToken,
		tokens.ErrUndoUnavailable, tokens.ErrInvalidLink, tokens.ErrLinkNotFound, tokens.ErrLinkUsed,
		tokens.ErrLinkExpired, tokens.ErrInvalidCredentials, tokens.ErrKeyInactive,
	}
	for i, a := range sentinels {
		require.True(t, strings.HasPrefix(a.Error(), "tokens: "), a.Error())
		for j, b := range sentinels {
			if i != j {
				require.False(t, errors.Is(a, b), "%v is %v", a, b)
			}
		}
	}
}
