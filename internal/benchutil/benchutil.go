// Package benchutil holds what the benchmarks of the root package and of
// store/sqlstore share: the calls that prepare their keys, failing the
// benchmark on error, and the floor that Verify is measured against, so
// that the floor on memstore and on each SQL backend is the same code.
package benchutil

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"sync"
	"testing"

	"github.com/benbjohnson/clock"

	"github.com/keyrenew/tokens"
)

// CreateKey creates a key and returns its ID and its link.
func CreateKey(b *testing.B, ctx context.Context, m *tokens.Manager) (string, *tokens.ShareLink) {
	b.Helper()
	key, link, err := m.CreateKey(ctx, tokens.KeySpec{Account: "acme", Name: "erp-sync"})
	if err != nil {
		b.Fatal(err)
	}
	return key.ID, link
}

// Redeem redeems link.
func Redeem(b *testing.B, ctx context.Context, m *tokens.Manager, link *tokens.ShareLink) *tokens.Credentials {
	b.Helper()
	creds, err := m.RedeemLink(ctx, link.URL)
	if err != nil {
		b.Fatal(err)
	}
	return creds
}

// Issued returns the credentials of a new key whose link was redeemed, as
// an integration holds them.
func Issued(b *testing.B, ctx context.Context, m *tokens.Manager) *tokens.Credentials {
	b.Helper()
	_, link := CreateKey(b, ctx, m)
	return Redeem(b, ctx, m, link)
}

// DeleteKeys deletes the keys ids.
func DeleteKeys(b *testing.B, ctx context.Context, m *tokens.Manager, ids []string) {
	b.Helper()
	for _, id := range ids {
		if err := m.DeleteKey(ctx, id); err != nil {
			b.Fatal(err)
		}
	}
}

// Version returns the stored version of key id, which changes with every
// write: a benchmark of the steady state checks it did not move.
func Version(b *testing.B, ctx context.Context, s tokens.Store, id string) int64 {
	b.Helper()
	rec, err := s.Key(ctx, id)
	if err != nil {
		b.Fatal(err)
	}
	return rec.Version
}

// Paused runs f with the benchmark timer stopped.
func Paused(b *testing.B, f func()) {
	b.StopTimer()
	f()
	b.StartTimer()
}

// keySink keeps the floor's *Key on the heap, as Verify's result is.
var keySink *tokens.Key

// Floor is the least a Verify from process memory can cost: a look-up of
// the record by key ID in recs under a read lock, one SHA-256 of the token
// and one constant-time comparison. With clk it adds what the API makes
// every Verify pay on top: a read of the clock and the *Key it returns.
func Floor(b *testing.B, recs map[string]tokens.KeyRecord, creds *tokens.Credentials, clk *clock.Mock) {
	b.ReportAllocs()
	var mu sync.RWMutex
	for b.Loop() {
		mu.RLock()
		rec, ok := recs[creds.KeyID]
		mu.RUnlock()
		// Copied to the stack, as Verify does, so that the floor does not
		// allocate: a 53-byte []byte(token) would.
		var buf [64]byte
		digest := sha256.Sum256(buf[:copy(buf[:], creds.Token)])
		if !ok || subtle.ConstantTimeCompare(rec.Current.Digest[:], digest[:]) != 1 {
			b.Fatal("floor: token does not match")
		}
		if clk != nil {
			// Verify's one allocation for a key without an old token.
			keySink = &tokens.Key{
				ID: rec.ID, Account: rec.Account, Name: rec.Name, Active: rec.Active, CreatedAt: rec.CreatedAt,
				Token: tokens.TokenInfo{CreatedAt: rec.Current.CreatedAt, LastUsedAt: clk.Now()},
			}
		}
	}
	if clk != nil && keySink == nil {
		b.Fatal("floor: no key was made")
	}
}
