package tokens_test

import (
	"context"
	"strings"
	"testing"

	"github.com/benbjohnson/clock"

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/internal/benchutil"
	"github.com/keyrenew/tokens/store/memstore"
)

// The benchmarks run on memstore with a mock clock that never moves while
// the timer runs: clock.Mock.Add sleeps a millisecond to let timers fire,
// which would swamp every operation measured here. Its Now takes a mutex;
// that cost is part of what Verify pays.
//
// Operations that change a key can run only once per key in a row (R3:
// Renew needs the previous link redeemed or expired; R5: DeleteLater needs
// no old token; a link redeems once), so those benchmarks work through
// fresh keys prepared benchBatch at a time with the timer stopped, and
// delete used keys the same way, so the store stays the same size whatever
// b.N is.
const (
	benchBase = "https://share.example.com/credentials/"
	// benchKeys is how many keys the store holds in the Verify
	// benchmarks, and how many records the floor's map holds.
	benchKeys  = 1000
	benchBatch = 1024
)

type benchEnv struct {
	ctx   context.Context
	store *memstore.Store
	m     *tokens.Manager
}

func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	store := memstore.New()
	m, err := tokens.NewManager(store, tokens.WithClock(clock.NewMock()), tokens.WithShareBaseURL(benchBase))
	if err != nil {
		b.Fatal(err)
	}
	return &benchEnv{ctx: context.Background(), store: store, m: m}
}

// benchEnv's helpers call internal/benchutil, which store/sqlstore's
// benchmarks share.
func (e *benchEnv) createKey(b *testing.B) (string, *tokens.ShareLink) {
	b.Helper()
	return benchutil.CreateKey(b, e.ctx, e.m)
}

func (e *benchEnv) redeem(b *testing.B, link *tokens.ShareLink) *tokens.Credentials {
	b.Helper()
	return benchutil.Redeem(b, e.ctx, e.m, link)
}

func (e *benchEnv) issued(b *testing.B) *tokens.Credentials {
	b.Helper()
	return benchutil.Issued(b, e.ctx, e.m)
}

// redeemedKeys creates n keys and redeems their links, so that each can be
// renewed once.
func (e *benchEnv) redeemedKeys(b *testing.B, n int) []string {
	b.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = e.issued(b).KeyID
	}
	return ids
}

func (e *benchEnv) deleteKeys(b *testing.B, ids []string) {
	b.Helper()
	benchutil.DeleteKeys(b, e.ctx, e.m, ids)
}

func (e *benchEnv) version(b *testing.B, id string) int64 {
	b.Helper()
	return benchutil.Version(b, e.ctx, e.store, id)
}

func paused(b *testing.B, f func()) { benchutil.Paused(b, f) }

// BenchmarkVerify measures Verify in its steady state: each sub-benchmark
// calls it once before timing, so that the first use is recorded, and the
// clock does not move, so no later call writes (R9 writes at most once a
// minute). The check of the key's version after the loop proves it.
//
// Verify/floor is the least any Verify on memstore can cost: a look-up of
// the stored record by key ID under the store's read lock, one SHA-256 of
// the token and one constant-time comparison, over the same records. The
// targets are Verify/valid within 1.5x of it and Verify/cached (a second
// Manager over the same store, with WithVerifyCache) within 2x, at most 2
// allocs/op each. scripts/bench.sh runs them and the floor side by side in
// short interleaved rounds and prints the ratios.
func BenchmarkVerify(b *testing.B) {
	e := newBenchEnv(b)
	ids := make([]string, 0, benchKeys)
	for range benchKeys - 3 {
		id, _ := e.createKey(b)
		ids = append(ids, id)
	}
	current := e.issued(b)
	other := e.issued(b) // its token is well formed but wrong for current's key
	renewed := e.issued(b)
	link, err := e.m.Renew(e.ctx, renewed.KeyID, tokens.RenewOptions{OldToken: tokens.DeleteLater})
	if err != nil {
		b.Fatal(err)
	}
	e.redeem(b, link)
	ids = append(ids, current.KeyID, other.KeyID, renewed.KeyID)

	unknownKey := "key_" + strings.Repeat("Z", 22)
	badChecksum := current.Token[:len(current.Token)-1] + flipChar(current.Token[len(current.Token)-1])

	cases := []struct {
		name, keyID, token string
		want               error // nil: valid
	}{
		{"valid", current.KeyID, current.Token, nil},
		{"valid_old", renewed.KeyID, renewed.Token, nil},
		{"wrong", current.KeyID, other.Token, tokens.ErrInvalidCredentials},
		{"malformed", current.KeyID, badChecksum, tokens.ErrMalformedToken},
		{"unknown_key", unknownKey, current.Token, tokens.ErrInvalidCredentials},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			if _, err := e.m.Verify(e.ctx, c.keyID, c.token); err != c.want {
				b.Fatalf("Verify: got %v, want %v", err, c.want)
			}
			var before int64
			if c.want == nil {
				before = e.version(b, c.keyID)
			}
			for b.Loop() {
				if _, err := e.m.Verify(e.ctx, c.keyID, c.token); err != c.want {
					b.Fatalf("Verify: got %v, want %v", err, c.want)
				}
			}
			if c.want == nil && e.version(b, c.keyID) != before {
				b.Fatal("Verify wrote to the store in the timed loop: not the steady state")
			}
		})
	}

	b.Run("cached", func(b *testing.B) {
		b.ReportAllocs()
		m, err := tokens.NewManager(e.store, tokens.WithClock(clock.NewMock()), tokens.WithShareBaseURL(benchBase),
			tokens.WithVerifyCache(tokens.CacheConfig{}))
		if err != nil {
			b.Fatal(err)
		}
		defer m.Close()
		if _, err := m.Verify(e.ctx, current.KeyID, current.Token); err != nil {
			b.Fatal(err)
		}
		before := e.version(b, current.KeyID)
		for b.Loop() {
			if _, err := m.Verify(e.ctx, current.KeyID, current.Token); err != nil {
				b.Fatal(err)
			}
		}
		if e.version(b, current.KeyID) != before {
			b.Fatal("Verify wrote to the store in the timed loop: not the steady state")
		}
	})

	recs := make(map[string]tokens.KeyRecord, len(ids))
	for _, id := range ids {
		rec, err := e.store.Key(e.ctx, id)
		if err != nil {
			b.Fatal(err)
		}
		recs[id] = rec
	}
	b.Run("floor", func(b *testing.B) {
		benchutil.Floor(b, recs, current, nil)
	})
	// floor_api adds what the fixed API makes every Verify pay on top of
	// the floor: a read of the clock and the *Key it returns.
	b.Run("floor_api", func(b *testing.B) {
		benchutil.Floor(b, recs, current, clock.NewMock())
	})
}

// flip returns a base62 character other than c, so that a token keeps its
// form but fails its checksum.
// BenchmarkRenew measures Renew of a key whose link was redeemed, with
// each policy. Each iteration renews a different key (see the comment at
// the top of this file).
func BenchmarkRenew(b *testing.B) {
	for _, policy := range []tokens.OldTokenPolicy{tokens.DeleteNow, tokens.DeleteLater} {
		name := strings.ReplaceAll(policy.String(), " ", "_")
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			e := newBenchEnv(b)
			opts := tokens.RenewOptions{OldToken: policy}
			var ready, used []string
			for b.Loop() {
				if len(ready) == 0 {
					paused(b, func() {
						e.deleteKeys(b, used)
						used = used[:0]
						ready = e.redeemedKeys(b, benchBatch)
					})
				}
				id := ready[0]
				ready = ready[1:]
				if _, err := e.m.Renew(e.ctx, id, opts); err != nil {
					b.Fatal(err)
				}
				used = append(used, id)
			}
		})
	}
}

// BenchmarkRedeemLink measures RedeemLink alone (redeem, on links prepared
// with the timer stopped) and CreateKey followed by RedeemLink
// (create_and_redeem), the same work with nothing set aside.
func BenchmarkRedeemLink(b *testing.B) {
	b.Run("redeem", func(b *testing.B) {
		b.ReportAllocs()
		e := newBenchEnv(b)
		var ready []*tokens.ShareLink
		var used []string
		for b.Loop() {
			if len(ready) == 0 {
				paused(b, func() {
					e.deleteKeys(b, used)
					used = used[:0]
					for range benchBatch {
						_, link := e.createKey(b)
						ready = append(ready, link)
					}
				})
			}
			creds, err := e.m.RedeemLink(e.ctx, ready[0].URL)
			if err != nil {
				b.Fatal(err)
			}
			ready = ready[1:]
			used = append(used, creds.KeyID)
		}
	})
	b.Run("create_and_redeem", func(b *testing.B) {
		b.ReportAllocs()
		e := newBenchEnv(b)
		var used []string
		for b.Loop() {
			_, link, err := e.m.CreateKey(e.ctx, tokens.KeySpec{Account: "acme", Name: "erp-sync"})
			if err != nil {
				b.Fatal(err)
			}
			creds, err := e.m.RedeemLink(e.ctx, link.URL)
			if err != nil {
				b.Fatal(err)
			}
			used = append(used, creds.KeyID)
			if len(used) == benchBatch {
				paused(b, func() {
					e.deleteKeys(b, used)
					used = used[:0]
				})
			}
		}
	})
}

// BenchmarkCreateKey measures CreateKey: two draws from crypto/rand, the
// sealing of the token, and the insert.
func BenchmarkCreateKey(b *testing.B) {
	b.ReportAllocs()
	e := newBenchEnv(b)
	var used []string
	for b.Loop() {
		key, _, err := e.m.CreateKey(e.ctx, tokens.KeySpec{Account: "acme", Name: "erp-sync"})
		if err != nil {
			b.Fatal(err)
		}
		used = append(used, key.ID)
		if len(used) == benchBatch {
			paused(b, func() {
				e.deleteKeys(b, used)
				used = used[:0]
			})
		}
	}
}
