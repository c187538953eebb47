package sqlstore_test

import (
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens"
)

// TestKeyChangesReachOtherCachesWithinMaxStaleness: two Managers share a
// database with the cache on; a removed scope, an earlier expiry and a
// deactivation made by one are honoured by the other once MaxStaleness
// has passed on the mock clock (R20, R22, C2), by Verify and VerifyToken.
func TestKeyChangesReachOtherCachesWithinMaxStaleness(t *testing.T) {
	const staleness = time.Second
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			ctx := t.Context()
			dsn := b.NewDSN(t)
			clk := clock.NewMock()
			clk.Set(time.Date(2026, 3, 2, 9, 30, 0, 0, time.UTC))
			var ms []*tokens.Manager
			for i := range 2 {
				st := newStore(t, open(t, b.Driver, dsn))
				if i == 0 {
					require.NoError(t, st.Migrate(ctx))
				}
				m, err := tokens.NewManager(st, tokens.WithClock(clk), tokens.WithShareBaseURL(shareBase),
					tokens.WithVerifyCache(tokens.CacheConfig{MaxStaleness: staleness}))
				require.NoError(t, err)
				t.Cleanup(func() { m.Close() })
				ms = append(ms, m)
			}
			writer, reader := ms[0], ms[1]
			issue := func() *tokens.Credentials {
				_, link, err := writer.CreateKey(ctx, tokens.KeySpec{Name: "k", Scopes: []string{"read", "write"},
					ExpiresAt: clk.Now().Add(time.Hour)})
				require.NoError(t, err)
				creds, err := writer.RedeemLink(ctx, link.URL)
				require.NoError(t, err)
				return creds
			}
			warm := func(creds *tokens.Credentials) {
				k, err := reader.VerifyToken(ctx, creds.Token)
				require.NoError(t, err)
				require.True(t, k.HasScope("write"))
				_, err = reader.Verify(ctx, creds.KeyID, creds.Token)
				require.NoError(t, err)
			}

			scoped, expiring, inactive := issue(), issue(), issue()
			for _, c := range []*tokens.Credentials{scoped, expiring, inactive} {
				warm(c)
			}
			only := []string{"read"}
			require.NoError(t, writer.UpdateKey(ctx, scoped.KeyID, tokens.KeyUpdate{Scopes: &only}))
			soon := clk.Now().Add(staleness / 2)
			require.NoError(t, writer.UpdateKey(ctx, expiring.KeyID, tokens.KeyUpdate{ExpiresAt: &soon}))
			require.NoError(t, writer.Deactivate(ctx, inactive.KeyID))

			clk.Add(staleness + time.Microsecond)
			for _, verify := range []func(c *tokens.Credentials) (*tokens.Key, error){
				func(c *tokens.Credentials) (*tokens.Key, error) { return reader.VerifyToken(ctx, c.Token) },
				func(c *tokens.Credentials) (*tokens.Key, error) { return reader.Verify(ctx, c.KeyID, c.Token) },
			} {
				k, err := verify(scoped)
				require.NoError(t, err)
				require.False(t, k.HasScope("write"), "a removed scope outlived MaxStaleness")
				_, err = verify(expiring)
				require.ErrorIs(t, err, tokens.ErrKeyExpired)
				_, err = verify(inactive)
				require.ErrorIs(t, err, tokens.ErrKeyInactive)
			}
		})
	}
}

// TestImportedTokensVerifyOnEveryBackend: plain and SHA-256 imports verify
// by Verify and VerifyToken, and a token held by another key is refused
// by the database's index as well as the Manager's look-up (R23, R24).
func TestImportedTokensVerifyOnEveryBackend(t *testing.T) {
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			c := newCluster(t, b, 2)
			ctx := t.Context()
			k, err := c.inst[0].m.ImportKey(ctx, tokens.ImportSpec{KeySpec: tokens.KeySpec{Name: "legacy", Metadata: map[string]string{"from": "v1"}},
				Token: "ghp_0123456789abcdefghijABCDEFGHIJ012345"})
			require.NoError(t, err)
			for _, m := range []*tokens.Manager{c.inst[0].m, c.inst[1].m} {
				got, err := m.VerifyToken(ctx, "ghp_0123456789abcdefghijABCDEFGHIJ012345")
				require.NoError(t, err)
				require.Equal(t, k.ID, got.ID)
				require.Equal(t, map[string]string{"from": "v1"}, got.Metadata)
				_, err = m.Verify(ctx, k.ID, "ghp_0123456789abcdefghijABCDEFGHIJ012345")
				require.NoError(t, err)
			}
			_, err = c.inst[1].m.ImportKey(ctx, tokens.ImportSpec{KeySpec: tokens.KeySpec{Name: "again"},
				Token: "ghp_0123456789abcdefghijABCDEFGHIJ012345"})
			require.ErrorIs(t, err, tokens.ErrKeyExists)
		})
	}
}
