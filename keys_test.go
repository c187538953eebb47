package tokens_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/store/memstore"
)

// keysFixture is a Manager over a bare memstore (a TokenIndex), for
// R19-R24.
type keysFixture struct {
	t   *testing.T
	ctx context.Context
	clk *clock.Mock
	st  *memstore.Store
	m   *tokens.Manager
}

func newKeysFixture(t *testing.T, opts ...tokens.Option) *keysFixture {
	clk := clock.NewMock()
	clk.Set(testStart)
	st := memstore.New()
	m, err := tokens.NewManager(st, append([]tokens.Option{tokens.WithClock(clk), tokens.WithShareBaseURL(testBase)}, opts...)...)
	require.NoError(t, err)
	return &keysFixture{t: t, ctx: context.Background(), clk: clk, st: st, m: m}
}

// issue creates a key from spec and redeems its link.
func (f *keysFixture) issue(spec tokens.KeySpec) *tokens.Credentials {
	f.t.Helper()
	_, link, err := f.m.CreateKey(f.ctx, spec)
	require.NoError(f.t, err)
	creds, err := f.m.RedeemLink(f.ctx, link.URL)
	require.NoError(f.t, err)
	return creds
}

// snapshot is what the store holds: every key of the accounts used and
// the whole audit trail.
func (f *keysFixture) snapshot() (keys []*tokens.Key, events []tokens.Event) {
	f.t.Helper()
	for _, account := range []string{"", "acme"} {
		ks, err := f.m.Keys(f.ctx, account)
		require.NoError(f.t, err)
		keys = append(keys, ks...)
	}
	events, err := f.m.Events(f.ctx, tokens.EventQuery{Limit: tokens.MaxEventPage})
	require.NoError(f.t, err)
	return keys, events
}

func spec(name string) tokens.KeySpec { return tokens.KeySpec{Account: "acme", Name: name} }

// badSpecs are specs each past one limit of R20-R22 or S9.
func badSpecs(now time.Time) map[string]tokens.KeySpec {
	many := func(n int, f func(i int) string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = f(i)
		}
		return out
	}
	scopes := func(s ...string) tokens.KeySpec { sp := spec("k"); sp.Scopes = s; return sp }
	md := func(m map[string]string) tokens.KeySpec { sp := spec("k"); sp.Metadata = m; return sp }
	bigMD := map[string]string{}
	for i := range tokens.MaxMetadataEntries + 1 {
		bigMD[strings.Repeat("n", i+1)] = "v"
	}
	expires := func(t time.Time) tokens.KeySpec { sp := spec("k"); sp.ExpiresAt = t; return sp }
	return map[string]tokens.KeySpec{
		"empty scope":           scopes(""),
		"scope of 101":          scopes(strings.Repeat("s", 101)),
		"scope with space":      scopes("read write"),
		"scope with star":       scopes("read:*"),
		"scope non-ASCII":       scopes("lesen:größe"),
		"scope invalid UTF-8":   scopes("read\xff"),
		"scope with NUL":        scopes("read\x00"),
		"51 scopes":             scopes(many(51, func(i int) string { return "s" + strings.Repeat("x", i) })...),
		"21 metadata":           md(bigMD),
		"empty name":            md(map[string]string{"": "v"}),
		"name of 65":            md(map[string]string{strings.Repeat("n", 65): "v"}),
		"name with colon":       md(map[string]string{"a:b": "v"}),
		"name with space":       md(map[string]string{"a b": "v"}),
		"value of 513":          md(map[string]string{"n": strings.Repeat("v", 513)}),
		"value invalid UTF-8":   md(map[string]string{"n": "\xc3"}),
		"value with newline":    md(map[string]string{"n": "a\nb"}),
		"value with NUL":        md(map[string]string{"n": "a\x00b"}),
		"value with bidi":       md(map[string]string{"n": "a\u202eb"}),
		"value with ESC":        md(map[string]string{"n": "\x1b[31m"}),
		"expires now":           expires(now),
		"expires in the past":   expires(now.Add(-time.Second)),
		"expires in year 10000": expires(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)),
	}
}

func TestR20R21R22_SpecsAtTheirLimitsAreKept(t *testing.T) {
	f := newKeysFixture(t)
	sp := spec("limits")
	for i := range tokens.MaxScopes {
		sp.Scopes = append(sp.Scopes, strings.Repeat("s", i+1)+":._-/"+strings.Repeat("Z9", 0))
	}
	sp.Scopes[0] = strings.Repeat("a", tokens.MaxScopeLen)
	sp.Scopes = append(sp.Scopes, sp.Scopes[3]) // a repeat does not count
	sp.Metadata = map[string]string{}
	for i := range tokens.MaxMetadataEntries {
		sp.Metadata[strings.Repeat("m", i+1)] = "Zürich ✓"
	}
	sp.Metadata[strings.Repeat("m", 1)] = strings.Repeat("é", tokens.MaxMetadataValueLen/2)
	sp.Metadata[strings.Repeat("m", tokens.MaxMetadataNameLen)] = ""
	delete(sp.Metadata, strings.Repeat("m", 20))
	sp.ExpiresAt = testStart.Add(time.Microsecond)
	key, _, err := f.m.CreateKey(f.ctx, sp)
	require.NoError(t, err)
	require.Len(t, key.Scopes, tokens.MaxScopes)
	require.True(t, sortedUnique(key.Scopes))
	require.Len(t, key.Metadata, tokens.MaxMetadataEntries)
	require.True(t, key.ExpiresAt.Equal(testStart.Add(time.Microsecond)))

	// The spec and the returned key are copies.
	sp.Scopes[0], sp.Metadata["m"] = "changed", "changed"
	key.Scopes[1], key.Metadata["mm"] = "scribbled", "scribbled"
	again, err := f.m.Key(f.ctx, key.ID)
	require.NoError(t, err)
	require.Equal(t, strings.Repeat("a", tokens.MaxScopeLen), again.Scopes[0])
	require.NotEqual(t, "scribbled", again.Scopes[1])
	require.Equal(t, "Zürich ✓", again.Metadata["mm"])
}

func sortedUnique(s []string) bool {
	for i := 1; i < len(s); i++ {
		if s[i-1] >= s[i] {
			return false
		}
	}
	return true
}

func TestR20R21R22_BadSpecsStoreNothing(t *testing.T) {
	f := newKeysFixture(t)
	creds := f.issue(spec("existing"))
	keysBefore, eventsBefore := f.snapshot()
	for name, sp := range badSpecs(testStart) {
		_, _, err := f.m.CreateKey(f.ctx, sp)
		require.ErrorIs(t, err, tokens.ErrInvalidKeySpec, "CreateKey: %s", name)
		_, err = f.m.ImportKey(f.ctx, tokens.ImportSpec{KeySpec: sp, Token: "legacy-token-0123456789"})
		require.ErrorIs(t, err, tokens.ErrInvalidKeySpec, "ImportKey: %s", name)
		u := tokens.KeyUpdate{}
		switch {
		case sp.Scopes != nil:
			u.Scopes = &sp.Scopes
		case sp.Metadata != nil:
			u.Metadata = &sp.Metadata
		case sp.ExpiresAt.Year() > 9999:
			u.ExpiresAt = &sp.ExpiresAt
		default:
			continue // UpdateKey may set a past expiry
		}
		require.ErrorIs(t, f.m.UpdateKey(f.ctx, creds.KeyID, u), tokens.ErrInvalidKeySpec, "UpdateKey: %s", name)
		for _, bad := range []string{"", "   ", "a\x00b", "a\u2066b", "\xff", strings.Repeat("n", 201)} {
			require.ErrorIs(t, f.m.UpdateKey(f.ctx, creds.KeyID, tokens.KeyUpdate{Name: &bad}), tokens.ErrInvalidKeySpec)
		}
	}
	keysAfter, eventsAfter := f.snapshot()
	require.Equal(t, keysBefore, keysAfter)
	require.Equal(t, eventsBefore, eventsAfter)
}

func TestR19_UpdateKey(t *testing.T) {
	f := newKeysFixture(t)
	creds := f.issue(tokens.KeySpec{Account: "acme", Name: "erp", Scopes: []string{"orders:read", "orders:write"}, Metadata: map[string]string{"team": "a"}})
	before, err := f.m.Key(f.ctx, creds.KeyID)
	require.NoError(t, err)

	name, scopes, md, exp := "erp-sync", []string{"orders:read", "orders:read"}, map[string]string{"team": "b", "env": "prod"}, testStart.Add(time.Hour)
	require.NoError(t, f.m.UpdateKey(tokens.WithActor(f.ctx, "alice"), creds.KeyID, tokens.KeyUpdate{Name: &name, Scopes: &scopes, Metadata: &md, ExpiresAt: &exp}))
	k, err := f.m.Key(f.ctx, creds.KeyID)
	require.NoError(t, err)
	require.Equal(t, "erp-sync", k.Name)
	require.Equal(t, []string{"orders:read"}, k.Scopes)
	require.True(t, k.HasScope("orders:read"))
	require.False(t, k.HasScope("orders:write"))
	require.False(t, k.HasScope("orders"))
	require.Equal(t, md, k.Metadata)
	require.True(t, k.ExpiresAt.Equal(exp))
	require.Equal(t, before.Token, k.Token, "tokens untouched")
	require.Equal(t, before.Link, k.Link, "link untouched")

	events, err := f.m.Events(f.ctx, tokens.EventQuery{KeyID: creds.KeyID})
	require.NoError(t, err)
	last := events[len(events)-1]
	require.Equal(t, tokens.EventKeyUpdated, last.Type)
	require.Equal(t, []string{"expires_at", "metadata", "name", "scopes"}, last.Fields)
	require.Equal(t, "alice", last.Actor)

	// Nothing differs: no write, no event.
	require.NoError(t, f.m.UpdateKey(f.ctx, creds.KeyID, tokens.KeyUpdate{Name: &name, Scopes: &scopes}))
	require.NoError(t, f.m.UpdateKey(f.ctx, creds.KeyID, tokens.KeyUpdate{}))
	again, err := f.m.Events(f.ctx, tokens.EventQuery{KeyID: creds.KeyID})
	require.NoError(t, err)
	require.Len(t, again, len(events))

	// Clearing.
	none, noMD, never := []string{}, map[string]string{}, time.Time{}
	require.NoError(t, f.m.UpdateKey(f.ctx, creds.KeyID, tokens.KeyUpdate{Scopes: &none, Metadata: &noMD, ExpiresAt: &never}))
	k, err = f.m.Key(f.ctx, creds.KeyID)
	require.NoError(t, err)
	require.Nil(t, k.Scopes)
	require.Nil(t, k.Metadata)
	require.True(t, k.ExpiresAt.IsZero())
	again, err = f.m.Events(f.ctx, tokens.EventQuery{KeyID: creds.KeyID})
	require.NoError(t, err)
	require.Equal(t, []string{"expires_at", "metadata", "scopes"}, again[len(again)-1].Fields)

	require.ErrorIs(t, f.m.UpdateKey(f.ctx, "tok_unknown", tokens.KeyUpdate{Name: &name}), tokens.ErrKeyNotFound)
}

// TestR19_UpdateKeyLeavesARenewalAsItWas: an UpdateKey in the middle of
// a DeleteLater renewal leaves both tokens, the pending link and Undo as
// they were; and on an expired key (R22) the link is redeemed as any.
func TestR19_UpdateKeyLeavesARenewalAsItWas(t *testing.T) {
	f := newKeysFixture(t)
	old := f.issue(spec("erp"))
	link, err := f.m.Renew(f.ctx, old.KeyID, tokens.RenewOptions{OldTokenTTL: 48 * time.Hour})
	require.NoError(t, err)
	before, err := f.m.Key(f.ctx, old.KeyID)
	require.NoError(t, err)

	name, scopes, past := "erp-sync", []string{"orders:read"}, testStart
	require.NoError(t, f.m.UpdateKey(f.ctx, old.KeyID, tokens.KeyUpdate{Name: &name, Scopes: &scopes, ExpiresAt: &past}))
	k, err := f.m.Key(f.ctx, old.KeyID)
	require.NoError(t, err)
	require.Equal(t, before.Token, k.Token)
	require.Equal(t, before.OldToken, k.OldToken, "the old token and its scheduled end")
	require.Equal(t, tokens.LinkPending, k.Link)
	require.True(t, before.LinkExpiresAt.Equal(k.LinkExpiresAt))

	// Expired (R22), but the renewal works on: the link reveals the new
	// token, which is expired like the old one, and Undo restores the old.
	creds, err := f.m.RedeemLink(f.ctx, link.URL)
	require.NoError(t, err, "an expired key's link is redeemed")
	for _, tok := range []string{old.Token, creds.Token} {
		_, err = f.m.VerifyToken(f.ctx, tok)
		require.ErrorIs(t, err, tokens.ErrKeyExpired)
	}
	never := time.Time{}
	require.NoError(t, f.m.UpdateKey(f.ctx, old.KeyID, tokens.KeyUpdate{ExpiresAt: &never}))
	require.NoError(t, f.m.Undo(f.ctx, old.KeyID))
	got, err := f.m.VerifyToken(f.ctx, old.Token)
	require.NoError(t, err)
	require.Equal(t, "erp-sync", got.Name, "Undo leaves the update")
	require.Equal(t, []string{"orders:read"}, got.Scopes)
	_, err = f.m.VerifyToken(f.ctx, creds.Token)
	require.ErrorIs(t, err, tokens.ErrTokenRevoked)
}

func TestR20_RenewalKeepsScopesAndMetadata(t *testing.T) {
	f := newKeysFixture(t)
	sp := tokens.KeySpec{Name: "k", Scopes: []string{"b", "a"}, Metadata: map[string]string{"x": "y"}}
	creds := f.issue(sp)
	link, err := f.m.Renew(f.ctx, creds.KeyID, tokens.RenewOptions{})
	require.NoError(t, err)
	_, err = f.m.RedeemLink(f.ctx, link.URL)
	require.NoError(t, err)
	require.NoError(t, f.m.Undo(f.ctx, creds.KeyID))
	_, err = f.m.Renew(f.ctx, creds.KeyID, tokens.RenewOptions{})
	require.NoError(t, err)
	require.NoError(t, f.m.DeleteOld(f.ctx, creds.KeyID))
	k, err := f.m.Key(f.ctx, creds.KeyID)
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b"}, k.Scopes)
	require.Equal(t, map[string]string{"x": "y"}, k.Metadata)
}

func TestR22_KeyExpiry(t *testing.T) {
	for _, cached := range []bool{false, true} {
		t.Run(map[bool]string{false: "store", true: "cache"}[cached], func(t *testing.T) {
			var opts []tokens.Option
			if cached {
				opts = append(opts, tokens.WithVerifyCache(tokens.CacheConfig{}))
			}
			f := newKeysFixture(t, opts...)
			sp := spec("expiring")
			sp.ExpiresAt = testStart.Add(time.Hour)
			creds := f.issue(sp)
			_, err := f.m.Verify(f.ctx, creds.KeyID, creds.Token)
			require.NoError(t, err)
			_, err = f.m.VerifyToken(f.ctx, creds.Token)
			require.NoError(t, err)

			f.clk.Set(testStart.Add(time.Hour - time.Microsecond))
			_, err = f.m.VerifyToken(f.ctx, creds.Token)
			require.NoError(t, err)
			f.clk.Set(testStart.Add(time.Hour)) // exact, cached or not
			_, err = f.m.Verify(f.ctx, creds.KeyID, creds.Token)
			require.ErrorIs(t, err, tokens.ErrKeyExpired)
			_, err = f.m.VerifyToken(f.ctx, creds.Token)
			require.ErrorIs(t, err, tokens.ErrKeyExpired)
			require.NotErrorIs(t, err, tokens.ErrInvalidCredentials)

			// A wrong token is wrong, not expired.
			other := f.issue(spec("other"))
			_, err = f.m.Verify(f.ctx, creds.KeyID, other.Token)
			require.ErrorIs(t, err, tokens.ErrInvalidCredentials)
			require.NotErrorIs(t, err, tokens.ErrKeyExpired)

			// Inactive comes first.
			require.NoError(t, f.m.Deactivate(f.ctx, creds.KeyID))
			_, err = f.m.VerifyToken(f.ctx, creds.Token)
			require.ErrorIs(t, err, tokens.ErrKeyInactive)
			require.NoError(t, f.m.Activate(f.ctx, creds.KeyID))

			// Expiry is not deletion: renewal works, and UpdateKey moves it.
			later := testStart.Add(2 * time.Hour)
			require.NoError(t, f.m.UpdateKey(f.ctx, creds.KeyID, tokens.KeyUpdate{ExpiresAt: &later}))
			_, err = f.m.VerifyToken(f.ctx, creds.Token)
			require.NoError(t, err)
			past := testStart
			require.NoError(t, f.m.UpdateKey(f.ctx, creds.KeyID, tokens.KeyUpdate{ExpiresAt: &past}))
			_, err = f.m.VerifyToken(f.ctx, creds.Token)
			require.ErrorIs(t, err, tokens.ErrKeyExpired)
			_, err = f.m.Renew(f.ctx, creds.KeyID, tokens.RenewOptions{OldToken: tokens.DeleteNow})
			require.NoError(t, err)
		})
	}
}

func TestR23_VerifyToken(t *testing.T) {
	for _, cached := range []bool{false, true} {
		t.Run(map[bool]string{false: "store", true: "cache"}[cached], func(t *testing.T) {
			var opts []tokens.Option
			if cached {
				opts = append(opts, tokens.WithVerifyCache(tokens.CacheConfig{}))
			}
			f := newKeysFixture(t, opts...)
			first := f.issue(spec("first"))
			k, err := f.m.VerifyToken(f.ctx, first.Token)
			require.NoError(t, err)
			require.Equal(t, first.KeyID, k.ID)
			require.True(t, k.Token.LastUsedAt.Equal(testStart), "R9: the first use is recorded")

			// Old and current tokens verify; a deleted one is revoked (R16).
			link, err := f.m.Renew(f.ctx, first.KeyID, tokens.RenewOptions{})
			require.NoError(t, err)
			latest, err := f.m.RedeemLink(f.ctx, link.URL)
			require.NoError(t, err)
			for _, tok := range []string{first.Token, latest.Token} {
				k, err = f.m.VerifyToken(f.ctx, tok)
				require.NoError(t, err)
				require.Equal(t, first.KeyID, k.ID)
			}
			require.NoError(t, f.m.DeleteOld(f.ctx, first.KeyID))
			_, err = f.m.VerifyToken(f.ctx, first.Token)
			require.ErrorIs(t, err, tokens.ErrTokenRevoked)
			require.ErrorIs(t, err, tokens.ErrInvalidCredentials)

			// Unknown and malformed.
			other := f.issue(spec("other"))
			require.NoError(t, f.m.DeleteKey(f.ctx, other.KeyID))
			_, err = f.m.VerifyToken(f.ctx, other.Token)
			require.Equal(t, tokens.ErrInvalidCredentials, err, "a token of a deleted key")
			_, err = f.m.VerifyToken(f.ctx, latest.Token[:len(latest.Token)-1]+flipChar(latest.Token[len(latest.Token)-1]))
			require.ErrorIs(t, err, tokens.ErrMalformedToken)
			_, err = f.m.VerifyToken(f.ctx, "short")
			require.ErrorIs(t, err, tokens.ErrMalformedToken)
			_, err = f.m.VerifyToken(f.ctx, "legacy-token-never-imported")
			require.Equal(t, tokens.ErrInvalidCredentials, err)

			// Deactivation is honoured at once by the Manager that made it.
			require.NoError(t, f.m.Deactivate(f.ctx, first.KeyID))
			_, err = f.m.VerifyToken(f.ctx, latest.Token)
			require.ErrorIs(t, err, tokens.ErrKeyInactive)
		})
	}
}

func TestR20_RemovedScopeIsHonouredAtOnceInTheCache(t *testing.T) {
	f := newKeysFixture(t, tokens.WithVerifyCache(tokens.CacheConfig{}))
	creds := f.issue(tokens.KeySpec{Name: "k", Scopes: []string{"a", "b"}})
	k, err := f.m.VerifyToken(f.ctx, creds.Token)
	require.NoError(t, err)
	require.True(t, k.HasScope("b"))
	only := []string{"a"}
	require.NoError(t, f.m.UpdateKey(f.ctx, creds.KeyID, tokens.KeyUpdate{Scopes: &only}))
	k, err = f.m.VerifyToken(f.ctx, creds.Token)
	require.NoError(t, err)
	require.False(t, k.HasScope("b"))
}

func TestR23_VerifyTokenNeedsATokenIndex(t *testing.T) {
	m, err := tokens.NewManager(struct{ tokens.Store }{memstore.New()}, tokens.WithShareBaseURL(testBase))
	require.NoError(t, err)
	_, err = m.VerifyToken(context.Background(), "legacy-token-0123456789")
	require.ErrorIs(t, err, errors.ErrUnsupported)
	_, err = m.ImportKey(context.Background(), tokens.ImportSpec{KeySpec: spec("k"), Token: "legacy-token-0123456789"})
	require.ErrorIs(t, err, errors.ErrUnsupported)
}

func TestR24_ImportKey(t *testing.T) {
	f := newKeysFixture(t)
	plain := "sk_live_" + strings.Repeat("9aZ", 10)
	k, err := f.m.ImportKey(f.ctx, tokens.ImportSpec{KeySpec: tokens.KeySpec{Account: "acme", Name: "legacy", Scopes: []string{"x"}},
		ID: "legacy-1", Token: plain, CreatedAt: testStart.Add(-100 * 24 * time.Hour)})
	require.NoError(t, err)
	require.Equal(t, "legacy-1", k.ID)
	require.Equal(t, tokens.AlertWarning, k.Alert, "R10 from CreatedAt")
	require.Equal(t, []string{"x"}, k.Scopes)

	hashedToken := strings.Repeat("f0", 20) // a hex token, as many systems issue
	h, err := f.m.ImportKey(f.ctx, tokens.ImportSpec{KeySpec: spec("hashed"), TokenSHA256: sha256.Sum256([]byte(hashedToken))})
	require.NoError(t, err)
	require.NotEmpty(t, h.ID)

	for _, c := range []struct{ id, tok string }{{k.ID, plain}, {h.ID, hashedToken}} {
		got, err := f.m.Verify(f.ctx, c.id, c.tok)
		require.NoError(t, err)
		require.Equal(t, c.id, got.ID)
		got, err = f.m.VerifyToken(f.ctx, c.tok)
		require.NoError(t, err)
		require.Equal(t, c.id, got.ID)
	}

	// No link: the imported token counts as seen, and a renewal with
	// DeleteLater keeps it as old until it is deleted.
	link, err := f.m.Renew(f.ctx, k.ID, tokens.RenewOptions{})
	require.NoError(t, err)
	creds, err := f.m.RedeemLink(f.ctx, link.URL)
	require.NoError(t, err)
	_, err = f.m.VerifyToken(f.ctx, plain)
	require.NoError(t, err)
	_, err = f.m.VerifyToken(f.ctx, creds.Token)
	require.NoError(t, err)
	require.NoError(t, f.m.DeleteOld(f.ctx, k.ID))
	_, err = f.m.VerifyToken(f.ctx, plain)
	require.ErrorIs(t, err, tokens.ErrTokenRevoked)

	events, err := f.m.Events(f.ctx, tokens.EventQuery{KeyID: h.ID})
	require.NoError(t, err)
	require.Equal(t, tokens.EventKeyImported, events[0].Type)

	keysBefore, eventsBefore := f.snapshot()
	refused := map[string]struct {
		spec tokens.ImportSpec
		want error
	}{
		"taken ID":          {tokens.ImportSpec{KeySpec: spec("x"), ID: h.ID, Token: "another-legacy-token-1"}, tokens.ErrKeyExists},
		"held token":        {tokens.ImportSpec{KeySpec: spec("x"), Token: hashedToken}, tokens.ErrKeyExists},
		"held digest":       {tokens.ImportSpec{KeySpec: spec("x"), TokenSHA256: sha256.Sum256([]byte(creds.Token))}, tokens.ErrKeyExists},
		"neither":           {tokens.ImportSpec{KeySpec: spec("x")}, tokens.ErrInvalidKeySpec},
		"both":              {tokens.ImportSpec{KeySpec: spec("x"), Token: "another-legacy-token-1", TokenSHA256: sha256.Sum256([]byte("a"))}, tokens.ErrInvalidKeySpec},
		"token of 15":       {tokens.ImportSpec{KeySpec: spec("x"), Token: strings.Repeat("t", 15)}, tokens.ErrInvalidKeySpec},
		"token of 513":      {tokens.ImportSpec{KeySpec: spec("x"), Token: strings.Repeat("t", 513)}, tokens.ErrInvalidKeySpec},
		"token with space":  {tokens.ImportSpec{KeySpec: spec("x"), Token: "legacy token 0123456"}, tokens.ErrInvalidKeySpec},
		"token non-ASCII":   {tokens.ImportSpec{KeySpec: spec("x"), Token: "legacy-token-größe-1"}, tokens.ErrInvalidKeySpec},
		"token with NUL":    {tokens.ImportSpec{KeySpec: spec("x"), Token: "legacy-token\x00-0123"}, tokens.ErrInvalidKeySpec},
		"bad checksum":      {tokens.ImportSpec{KeySpec: spec("x"), Token: creds.Token[:len(creds.Token)-1] + flipChar(creds.Token[len(creds.Token)-1])}, tokens.ErrInvalidKeySpec},
		"malformed ID":      {tokens.ImportSpec{KeySpec: spec("x"), ID: "has space", Token: "another-legacy-token-1"}, tokens.ErrInvalidKeySpec},
		"ID of 65":          {tokens.ImportSpec{KeySpec: spec("x"), ID: strings.Repeat("i", 65), Token: "another-legacy-token-1"}, tokens.ErrInvalidKeySpec},
		"created in future": {tokens.ImportSpec{KeySpec: spec("x"), Token: "another-legacy-token-1", CreatedAt: testStart.Add(time.Second)}, tokens.ErrInvalidKeySpec},
		"no name":           {tokens.ImportSpec{Token: "another-legacy-token-1"}, tokens.ErrInvalidKeySpec},
	}
	for name, c := range refused {
		_, err := f.m.ImportKey(f.ctx, c.spec)
		require.ErrorIs(t, err, c.want, name)
		require.NotContains(t, err.Error(), "legacy-token", "%s: the error holds the token", name)
	}
	keysAfter, eventsAfter := f.snapshot()
	require.Equal(t, keysBefore, keysAfter)
	require.Equal(t, eventsBefore, eventsAfter)
}

// TestR24_ImportOfADeletedToken: a token that a key deleted and still
// remembers (R16) stays deleted: ImportKey refuses it with ErrKeyExists,
// whether DeleteNow deleted it or its scheduled end (R14) came, which no
// write has dropped from the store yet. Once forgotten, it is no key's and
// imports; the old key's stale copy is dropped without an event.
func TestR24_ImportOfADeletedToken(t *testing.T) {
	renewed := func(f *keysFixture, opts tokens.RenewOptions) *tokens.Credentials {
		t.Helper()
		old := f.issue(spec("erp"))
		link, err := f.m.Renew(f.ctx, old.KeyID, opts)
		require.NoError(t, err)
		_, err = f.m.RedeemLink(f.ctx, link.URL)
		require.NoError(t, err)
		return old
	}
	importing := func(token string) tokens.ImportSpec {
		return tokens.ImportSpec{KeySpec: spec("moved"), Token: token}
	}

	f := newKeysFixture(t, tokens.WithRevokedTokenRetention(48*time.Hour))
	ended := renewed(f, tokens.RenewOptions{OldTokenTTL: time.Hour})
	deleted := renewed(f, tokens.RenewOptions{OldToken: tokens.DeleteNow})
	f.clk.Add(time.Hour - time.Microsecond)
	_, err := f.m.ImportKey(f.ctx, importing(ended.Token))
	require.ErrorIs(t, err, tokens.ErrKeyExists, "before its end the old token is held")
	f.clk.Add(time.Microsecond)
	keysBefore, eventsBefore := f.snapshot()
	for name, tok := range map[string]string{"ended (R14)": ended.Token, "deleted now": deleted.Token} {
		_, err := f.m.ImportKey(f.ctx, importing(tok))
		require.ErrorIs(t, err, tokens.ErrKeyExists, name)
		require.Contains(t, err.Error(), "deleted", name)
	}
	keysAfter, eventsAfter := f.snapshot()
	require.Equal(t, keysBefore, keysAfter)
	require.Equal(t, eventsBefore, eventsAfter)

	f.clk.Add(48 * time.Hour) // both forgotten now
	for _, tok := range []string{ended.Token, deleted.Token} {
		k, err := f.m.ImportKey(f.ctx, importing(tok))
		require.NoError(t, err, "a forgotten token is no key's")
		got, err := f.m.VerifyToken(f.ctx, tok)
		require.NoError(t, err)
		require.Equal(t, k.ID, got.ID)
	}
	_, err = f.m.Verify(f.ctx, ended.KeyID, ended.Token)
	require.Equal(t, tokens.ErrInvalidCredentials, err, "the old key's stale copy of its ended token was dropped")
	_, eventsAfter = f.snapshot()
	require.Len(t, eventsAfter, len(eventsBefore)+2, "the imports' events, and none for the upkeep")

	// Without reuse detection an ended token is forgotten at its end, and
	// a deleted one at once. The new key's first use is recorded though
	// the old key's was a moment before (the last-use throttle is per key).
	g := newKeysFixture(t, tokens.WithRevokedTokenRetention(0))
	old := renewed(g, tokens.RenewOptions{OldTokenTTL: time.Hour})
	g.clk.Add(time.Hour)
	_, err = g.m.ImportKey(g.ctx, importing(old.Token))
	require.NoError(t, err)
	used := renewed(g, tokens.RenewOptions{OldToken: tokens.DeleteLater})
	_, err = g.m.VerifyToken(g.ctx, used.Token)
	require.NoError(t, err)
	require.NoError(t, g.m.DeleteOld(g.ctx, used.KeyID))
	g.clk.Add(time.Second)
	moved, err := g.m.ImportKey(g.ctx, importing(used.Token))
	require.NoError(t, err)
	_, err = g.m.VerifyToken(g.ctx, used.Token)
	require.NoError(t, err)
	stored, err := g.m.Key(g.ctx, moved.ID)
	require.NoError(t, err)
	requireTime(t, g.clk.Now().UTC(), stored.Token.LastUsedAt, "the imported key's first use, as stored")
}

// TestR24_FormatCheckStillGuardsTheStore: a token claiming the library's
// format with a wrong checksum, and anything that is not printable ASCII
// of 16-512 bytes, is malformed without a store call, also on a
// TokenIndex store.
func TestR24_FormatCheckStillGuardsTheStore(t *testing.T) {
	f := newKeysFixture(t)
	creds := f.issue(spec("k"))
	tok := creds.Token
	for name, bad := range map[string]string{
		"wrong checksum": tok[:len(tok)-1] + flipChar(tok[len(tok)-1]),
		"flipped body":   tok[:10] + flipChar(tok[10]) + tok[11:],
		"15 bytes":       strings.Repeat("a", 15),
		"513 bytes":      strings.Repeat("a", 513),
		"space":          tok[:20] + " " + tok[21:],
		"newline":        tok + "\n",
		"NUL":            tok[:20] + "\x00" + tok[21:],
		"non-ASCII":      tok[:20] + "é" + tok[22:],
		"invalid UTF-8":  tok[:20] + "\xff" + tok[21:],
		"empty":          "",
		"huge":           strings.Repeat("A", 1<<20),
	} {
		_, err := f.m.Verify(f.ctx, creds.KeyID, bad)
		require.ErrorIs(t, err, tokens.ErrMalformedToken, name)
		_, err = f.m.VerifyToken(f.ctx, bad)
		require.ErrorIs(t, err, tokens.ErrMalformedToken, name)
	}
	// Near misses of the format that could be another system's tokens go
	// to the store and are wrong, not malformed.
	for name, other := range map[string]string{
		"truncated": tok[:len(tok)-1],
		"hex":       strings.Repeat("ab", 32),
		"body only": tok[4:47],
	} {
		_, err := f.m.Verify(f.ctx, creds.KeyID, other)
		require.Equal(t, tokens.ErrInvalidCredentials, err, name)
	}
}
