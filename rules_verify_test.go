package tokens_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/store/memstore"
)

// Tests of the rules R9-R10 of docs/rules.md: Verify and renewal alerts.

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
