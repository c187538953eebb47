package tokens_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/store/memstore"
)

var seenOnGitHub = tokens.Leak{Source: "github/content", URL: "https://github.com/acme/app/blob/main/.env"}

func (f *keysFixture) reportLeak(token string, leak tokens.Leak) tokens.LeakResult {
	f.t.Helper()
	res, err := f.m.ReportLeak(f.ctx, token, leak)
	require.NoError(f.t, err)
	return res
}

// leakEvents are the EventTokenLeaked events of the key.
func (f *keysFixture) leakEvents(id string) []tokens.Event {
	f.t.Helper()
	events, err := f.m.Events(f.ctx, tokens.EventQuery{KeyID: id, Limit: tokens.MaxEventPage})
	require.NoError(f.t, err)
	var leaks []tokens.Event
	for _, ev := range events {
		if ev.Type == tokens.EventTokenLeaked {
			leaks = append(leaks, ev)
		}
	}
	return leaks
}

func TestS10_AlertOnLeakRecordsAndLeavesTheTokenWorking(t *testing.T) {
	f := newKeysFixture(t)
	creds := f.issue(spec("erp"))
	f.clk.Add(time.Hour)

	res := f.reportLeak(creds.Token, seenOnGitHub)
	require.Equal(t, tokens.LeakResult{KeyID: creds.KeyID, Found: true}, res)
	k, err := f.m.Key(f.ctx, creds.KeyID)
	require.NoError(t, err)
	requireTime(t, f.clk.Now(), k.LeakedAt, "LeakedAt")
	leaks := f.leakEvents(creds.KeyID)
	require.Len(t, leaks, 1)
	require.Equal(t, seenOnGitHub.Source, leaks[0].Source)
	require.Equal(t, seenOnGitHub.URL, leaks[0].URL)
	_, err = f.m.Verify(f.ctx, creds.KeyID, creds.Token)
	require.NoError(t, err, "AlertOnLeak only records")
}

func TestS10_RevokeLeakedCurrentTokenIsARenewalWithDeleteNow(t *testing.T) {
	f := newKeysFixture(t, tokens.WithLeakPolicy(tokens.RevokeLeaked))
	creds := f.issue(spec("erp"))
	// The key also has an old token, which did not leak: it stays.
	link, err := f.m.Renew(f.ctx, creds.KeyID, tokens.RenewOptions{})
	require.NoError(t, err)
	renewed, err := f.m.RedeemLink(f.ctx, link.URL)
	require.NoError(t, err)

	res := f.reportLeak(renewed.Token, seenOnGitHub)
	require.True(t, res.Found)
	require.True(t, res.Revoked)
	require.NotNil(t, res.Link, "the new token's link reaches the operator")
	_, err = f.m.Verify(f.ctx, creds.KeyID, renewed.Token)
	require.ErrorIs(t, err, tokens.ErrTokenRevoked, "the leaked token stops at once")
	_, err = f.m.VerifyToken(f.ctx, renewed.Token)
	require.ErrorIs(t, err, tokens.ErrTokenRevoked)
	_, err = f.m.Verify(f.ctx, creds.KeyID, creds.Token)
	require.NoError(t, err, "the old token did not leak")

	fresh, err := f.m.RedeemLink(f.ctx, res.Link.URL)
	require.NoError(t, err)
	_, err = f.m.Verify(f.ctx, creds.KeyID, fresh.Token)
	require.NoError(t, err)
	require.Len(t, f.leakEvents(creds.KeyID), 1)
}

func TestS10_RevokeLeakedOldTokenIsDeleteOld(t *testing.T) {
	f := newKeysFixture(t, tokens.WithLeakPolicy(tokens.RevokeLeaked))
	creds := f.issue(spec("erp"))
	link, err := f.m.Renew(f.ctx, creds.KeyID, tokens.RenewOptions{})
	require.NoError(t, err)
	renewed, err := f.m.RedeemLink(f.ctx, link.URL)
	require.NoError(t, err)

	res := f.reportLeak(creds.Token, seenOnGitHub)
	require.Equal(t, tokens.LeakResult{KeyID: creds.KeyID, Found: true, Revoked: true}, res)
	_, err = f.m.Verify(f.ctx, creds.KeyID, creds.Token)
	require.ErrorIs(t, err, tokens.ErrTokenRevoked)
	_, err = f.m.Verify(f.ctx, creds.KeyID, renewed.Token)
	require.NoError(t, err, "the current token did not leak")
	k, err := f.m.Key(f.ctx, creds.KeyID)
	require.NoError(t, err)
	require.Nil(t, k.OldToken)
}

func TestS10_DeletedTokenIsFoundAndRecorded(t *testing.T) {
	f := newKeysFixture(t, tokens.WithLeakPolicy(tokens.RevokeLeaked))
	creds := f.issue(spec("erp"))
	link, err := f.m.Renew(f.ctx, creds.KeyID, tokens.RenewOptions{OldToken: tokens.DeleteNow})
	require.NoError(t, err)
	f.clk.Add(time.Minute)
	before, err := f.m.Key(f.ctx, creds.KeyID)
	require.NoError(t, err)

	res := f.reportLeak(creds.Token, seenOnGitHub)
	require.Equal(t, tokens.LeakResult{KeyID: creds.KeyID, Found: true}, res, "a deleted token of ours is a true positive, nothing to revoke")
	after, err := f.m.Key(f.ctx, creds.KeyID)
	require.NoError(t, err)
	requireTime(t, f.clk.Now(), after.LeakedAt, "LeakedAt")
	require.Equal(t, before.Link, after.Link, "the pending renewal is untouched")
	require.Len(t, f.leakEvents(creds.KeyID), 1)
	_, err = f.m.RedeemLink(f.ctx, link.URL)
	require.NoError(t, err)
}

func TestS10_DeletedKeyAndUnrememberedTokensAreNotFound(t *testing.T) {
	f := newKeysFixture(t, tokens.WithRevokedTokenRetention(0))
	creds := f.issue(spec("erp"))
	_, err := f.m.Renew(f.ctx, creds.KeyID, tokens.RenewOptions{OldToken: tokens.DeleteNow})
	require.NoError(t, err)
	require.Equal(t, tokens.LeakResult{}, f.reportLeak(creds.Token, seenOnGitHub), "retention 0 remembers no deleted token")

	g := newKeysFixture(t)
	gone := g.issue(spec("erp"))
	require.NoError(t, g.m.DeleteKey(g.ctx, gone.KeyID))
	require.Equal(t, tokens.LeakResult{}, g.reportLeak(gone.Token, seenOnGitHub), "DeleteKey forgets the key's tokens")
}

func TestS10_ForeignTokensRecordNothing(t *testing.T) {
	f := newKeysFixture(t, tokens.WithLeakPolicy(tokens.RevokeLeaked))
	creds := f.issue(spec("erp"))
	other := newKeysFixture(t, tokens.WithTokenPrefix("zz"))
	foreign := other.issue(spec("elsewhere"))
	keysBefore, eventsBefore := f.snapshot()

	for name, token := range map[string]string{
		"another system's token":      "ghp_0123456789abcdefghijABCDEFGHIJ012345",
		"another Manager's format":    foreign.Token,
		"ours with a wrong checksum":  creds.Token[:len(creds.Token)-1] + string(creds.Token[len(creds.Token)-1]^1),
		"empty":                       "",
		"a well-formed unknown token": forgeToken("tok", strings.Repeat("a", 43)),
	} {
		require.Equal(t, tokens.LeakResult{}, f.reportLeak(token, seenOnGitHub), name)
	}
	keysAfter, eventsAfter := f.snapshot()
	require.Equal(t, keysBefore, keysAfter)
	require.Equal(t, eventsBefore, eventsAfter)
}

func TestS10_ImportedTokensOfAnyFormatAreFound(t *testing.T) {
	f := newKeysFixture(t)
	legacy := "sk_live_" + strings.Repeat("4Qx", 10)
	k, err := f.m.ImportKey(f.ctx, tokens.ImportSpec{KeySpec: spec("legacy"), Token: legacy})
	require.NoError(t, err)
	require.Equal(t, tokens.LeakResult{KeyID: k.ID, Found: true}, f.reportLeak(legacy, seenOnGitHub))
}

func TestS10_RepeatedReportsRecordOneEventPerSourceAndURL(t *testing.T) {
	f := newKeysFixture(t)
	creds := f.issue(spec("erp"))
	f.reportLeak(creds.Token, seenOnGitHub)
	first := f.clk.Now()
	f.clk.Add(time.Hour)
	f.reportLeak(creds.Token, seenOnGitHub)
	k, err := f.m.Key(f.ctx, creds.KeyID)
	require.NoError(t, err)
	requireTime(t, first, k.LeakedAt, "a repeat changes nothing")
	require.Len(t, f.leakEvents(creds.KeyID), 1)

	elsewhere := tokens.Leak{Source: "github/gist_content", URL: "https://gist.github.com/x/1"}
	f.reportLeak(creds.Token, elsewhere)
	k, err = f.m.Key(f.ctx, creds.KeyID)
	require.NoError(t, err)
	requireTime(t, f.clk.Now(), k.LeakedAt, "LeakedAt is the latest report")
	require.Len(t, f.leakEvents(creds.KeyID), 2)
}

// TestS10_ANewTokenLeakedWhereTheOldOneWasIsNoRepeat: the one-event rule
// is per token. The key's next token, reported from the same source and
// URL after the renewal that made it, is a new leak; the deleted token
// reported again there is still a repeat.
func TestS10_ANewTokenLeakedWhereTheOldOneWasIsNoRepeat(t *testing.T) {
	f := newKeysFixture(t)
	first := f.issue(spec("erp"))
	f.reportLeak(first.Token, seenOnGitHub)
	f.clk.Add(time.Hour)
	link, err := f.m.Renew(f.ctx, first.KeyID, tokens.RenewOptions{OldToken: tokens.DeleteNow})
	require.NoError(t, err)
	next, err := f.m.RedeemLink(f.ctx, link.URL)
	require.NoError(t, err)
	f.clk.Add(24 * time.Hour)

	require.Equal(t, tokens.LeakResult{KeyID: first.KeyID, Found: true}, f.reportLeak(next.Token, seenOnGitHub))
	k, err := f.m.Key(f.ctx, first.KeyID)
	require.NoError(t, err)
	requireTime(t, f.clk.Now(), k.LeakedAt, "the new token's leak")
	require.Len(t, f.leakEvents(first.KeyID), 2)

	f.clk.Add(time.Hour)
	f.reportLeak(first.Token, seenOnGitHub)
	f.reportLeak(next.Token, seenOnGitHub)
	require.Len(t, f.leakEvents(first.KeyID), 2, "each token's repeat")
}

// TestS10_TheTokenInALeaksAddressIsRedacted: a source or URL that holds
// the token itself, as it is or percent-encoded, is recorded with the
// token replaced, so that no event holds a secret.
func TestS10_TheTokenInALeaksAddressIsRedacted(t *testing.T) {
	f := newKeysFixture(t)
	creds := f.issue(spec("erp"))
	f.reportLeak(creds.Token, tokens.Leak{Source: "paste " + creds.Token, URL: "https://paste.example/raw?k=" + creds.Token + "&v=1"})
	legacy := "legacy-token/with+specials=1&x"
	_, err := f.m.ImportKey(f.ctx, tokens.ImportSpec{KeySpec: spec("legacy"), ID: "legacy-1", TokenSHA256: sha256.Sum256([]byte(legacy))})
	require.NoError(t, err)
	_, err = f.m.ReportLeak(f.ctx, legacy, tokens.Leak{Source: "paste", URL: "https://paste.example/raw?k=" + url.QueryEscape(legacy)})
	require.NoError(t, err)

	events := append(f.leakEvents(creds.KeyID), f.leakEvents("legacy-1")...)
	require.Len(t, events, 2)
	require.Equal(t, "paste [REDACTED]", events[0].Source)
	require.Equal(t, "https://paste.example/raw?k=[REDACTED]&v=1", events[0].URL)
	require.Equal(t, "https://paste.example/raw?k=[REDACTED]", events[1].URL)
}

// TestS10_ConcurrentRepeatsRecordOneEvent: reports of one leak racing
// from many goroutines and two Managers record one event.
func TestS10_ConcurrentRepeatsRecordOneEvent(t *testing.T) {
	f := newKeysFixture(t)
	creds := f.issue(spec("erp"))
	second, err := tokens.NewManager(f.st, tokens.WithClock(f.clk), tokens.WithShareBaseURL(testBase))
	require.NoError(t, err)
	errs := collect(16, func(i int) error {
		m := f.m
		if i%2 == 1 {
			m = second
		}
		res, err := m.ReportLeak(f.ctx, creds.Token, seenOnGitHub)
		if err == nil && !res.Found {
			return errors.New("not found")
		}
		return err
	})
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.Len(t, f.leakEvents(creds.KeyID), 1)
}

// TestS10_RepeatUnderRevokeLeakedRevokesAStillWorkingToken: a token first
// reported to a Manager that only alerts, then to one that revokes, is
// revoked; the second report's event is the renewal's, not another leak.
func TestS10_RepeatUnderRevokeLeakedRevokesAStillWorkingToken(t *testing.T) {
	f := newKeysFixture(t)
	creds := f.issue(spec("erp"))
	f.reportLeak(creds.Token, seenOnGitHub)
	revoking, err := tokens.NewManager(f.st, tokens.WithClock(f.clk), tokens.WithShareBaseURL(testBase),
		tokens.WithLeakPolicy(tokens.RevokeLeaked))
	require.NoError(t, err)
	res, err := revoking.ReportLeak(f.ctx, creds.Token, seenOnGitHub)
	require.NoError(t, err)
	require.True(t, res.Revoked)
	require.NotNil(t, res.Link)
	events, err := f.m.Events(f.ctx, tokens.EventQuery{KeyID: creds.KeyID})
	require.NoError(t, err)
	last := events[len(events)-1]
	require.Equal(t, tokens.EventTokenRenewed, last.Type)
	require.Equal(t, tokens.DeleteNow, last.Policy)
	require.Len(t, f.leakEvents(creds.KeyID), 1)
	_, err = f.m.Verify(f.ctx, creds.KeyID, creds.Token)
	require.ErrorIs(t, err, tokens.ErrTokenRevoked)
}

func TestS10_BadLeaksRecordNothing(t *testing.T) {
	f := newKeysFixture(t)
	creds := f.issue(spec("erp"))
	keysBefore, eventsBefore := f.snapshot()
	for name, leak := range map[string]tokens.Leak{
		"no source":           {URL: seenOnGitHub.URL},
		"source of 101":       {Source: strings.Repeat("s", tokens.MaxLeakSourceLen+1)},
		"URL of 2049":         {Source: "github", URL: "https://x/" + strings.Repeat("u", tokens.MaxLeakURLLen-9)},
		"source invalid":      {Source: "git\xffhub"},
		"URL with a newline":  {Source: "github", URL: "https://x/\nSet-Cookie: a"},
		"URL with an ESC":     {Source: "github", URL: "https://x/\x1b[31m"},
		"source with a bidi":  {Source: "github\u202e"},
		"source with NUL":     {Source: "git\x00hub"},
		"URL of invalid UTF8": {Source: "github", URL: "https://x/\xc3"},
	} {
		res, err := f.m.ReportLeak(f.ctx, creds.Token, leak)
		require.ErrorIs(t, err, tokens.ErrInvalidLeak, name)
		require.Equal(t, tokens.LeakResult{}, res, name)
		require.NotContains(t, err.Error(), creds.Token, name)
	}
	at := tokens.Leak{Source: strings.Repeat("s", tokens.MaxLeakSourceLen), URL: "https://x/" + strings.Repeat("u", tokens.MaxLeakURLLen-10)}
	keysAfter, eventsAfter := f.snapshot()
	require.Equal(t, keysBefore, keysAfter)
	require.Equal(t, eventsBefore, eventsAfter)
	require.True(t, f.reportLeak(creds.Token, at).Found, "a leak at its limits is taken")
}

func TestS10_LeakPolicyIsValidated(t *testing.T) {
	_, err := tokens.NewManager(memstore.New(), tokens.WithShareBaseURL(testBase), tokens.WithLeakPolicy(tokens.LeakPolicy(7)))
	require.ErrorIs(t, err, tokens.ErrInvalidOption)
	require.Equal(t, "revoke leaked", tokens.RevokeLeaked.String())
}

func TestS10_ReportLeakNeedsATokenIndex(t *testing.T) {
	m, err := tokens.NewManager(struct{ tokens.Store }{memstore.New()}, tokens.WithShareBaseURL(testBase))
	require.NoError(t, err)
	_, err = m.ReportLeak(context.Background(), "legacy-token-0123456789", seenOnGitHub)
	require.ErrorIs(t, err, errors.ErrUnsupported)
}

// TestS10_RevokedLeakIsRefusedAtOnceInTheCache: the Manager that revoked
// refuses the token at once from its cache (C2's bound for others is
// tested on the SQL stores).
func TestS10_RevokedLeakIsRefusedAtOnceInTheCache(t *testing.T) {
	f := newKeysFixture(t, tokens.WithVerifyCache(tokens.CacheConfig{}), tokens.WithLeakPolicy(tokens.RevokeLeaked))
	creds := f.issue(spec("erp"))
	_, err := f.m.VerifyToken(f.ctx, creds.Token)
	require.NoError(t, err)
	require.True(t, f.reportLeak(creds.Token, seenOnGitHub).Revoked)
	_, err = f.m.VerifyToken(f.ctx, creds.Token)
	require.ErrorIs(t, err, tokens.ErrTokenRevoked)
	_, err = f.m.Verify(f.ctx, creds.KeyID, creds.Token)
	require.ErrorIs(t, err, tokens.ErrTokenRevoked)
}

// TestS10_ForgottenTokensAreNotFound: a deleted token past the retention
// (not yet purged) and an old token past its R14 end with reuse detection
// off are no longer the key's: ReportLeak records nothing, as VerifyToken
// says ErrInvalidCredentials for them.
func TestS10_ForgottenTokensAreNotFound(t *testing.T) {
	f := newKeysFixture(t, tokens.WithRevokedTokenRetention(48*time.Hour))
	creds := f.issue(spec("erp"))
	_, err := f.m.Renew(f.ctx, creds.KeyID, tokens.RenewOptions{OldToken: tokens.DeleteNow})
	require.NoError(t, err)
	f.clk.Add(48 * time.Hour)
	_, err = f.m.VerifyToken(f.ctx, creds.Token)
	require.NotErrorIs(t, err, tokens.ErrTokenRevoked)
	require.Equal(t, tokens.LeakResult{}, f.reportLeak(creds.Token, seenOnGitHub), "past the retention")

	g := newKeysFixture(t, tokens.WithRevokedTokenRetention(0))
	old := g.issue(spec("erp"))
	link, err := g.m.Renew(g.ctx, old.KeyID, tokens.RenewOptions{OldTokenTTL: time.Hour})
	require.NoError(t, err)
	_, err = g.m.RedeemLink(g.ctx, link.URL)
	require.NoError(t, err)
	g.clk.Add(time.Hour)
	require.Equal(t, tokens.LeakResult{}, g.reportLeak(old.Token, seenOnGitHub), "an old token past its end, not remembered")

	h := newKeysFixture(t)
	kept := h.issue(spec("erp"))
	link, err = h.m.Renew(h.ctx, kept.KeyID, tokens.RenewOptions{OldTokenTTL: time.Hour})
	require.NoError(t, err)
	_, err = h.m.RedeemLink(h.ctx, link.URL)
	require.NoError(t, err)
	h.clk.Add(time.Hour)
	require.Equal(t, tokens.LeakResult{KeyID: kept.KeyID, Found: true}, h.reportLeak(kept.Token, seenOnGitHub), "an old token past its end, remembered")
}
