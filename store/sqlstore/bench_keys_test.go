package sqlstore_test

import (
	"crypto/sha256"
	"crypto/subtle"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/internal/testenv"
)

// BenchmarkVerifyToken measures VerifyToken (R23) beside its floors, in
// the levels of BenchmarkVerify:
//
//	.../baseline  a prepared SELECT by current_digest of the columns that
//	    the returned *Key is made of (keyFloorColumns), the floor of an
//	    uncached VerifyToken
//	.../narrow  the same SELECT of six columns (id, account, name, active,
//	    created_at, version), the floor before R19-R22 added to a key:
//	    for reference
//	.../verify_token  Manager.VerifyToken, no cache
//	.../floor  a map look-up by digest under a read lock, one SHA-256, one
//	    constant-time compare and the *Key that the API returns
//	.../cached  Manager.VerifyToken with WithVerifyCache(CacheConfig{})
//	.../paired  narrow, baseline and verify_token in turn in each
//	    iteration, in an order that rotates: reports verify_token/baseline
//	    and verify_token/narrow with drift cancelled per iteration
//
// TOKENS_BENCH_1M and TOKENS_BENCH_ROUNDS apply as to BenchmarkVerify;
// each round runs every case once, interleaved.
func BenchmarkVerifyToken(b *testing.B) {
	rounds := benchRounds(b)
	for _, be := range testenv.BenchSQLBackends {
		b.Run(be.Name, func(b *testing.B) {
			for _, size := range benchSizes() {
				b.Run(sizeName(size), func(b *testing.B) {
					e := newBenchEnv(b, be, clock.NewMock(), size)
					creds := e.issued(b)
					cached, err := tokens.NewManager(e.st, tokens.WithShareBaseURL(benchShareBase),
						tokens.WithVerifyCache(tokens.CacheConfig{}))
					if err != nil {
						b.Fatal(err)
					}
					b.Cleanup(func() { cached.Close() })
					floor := benchDigestFloor(b, e, creds.KeyID)
					digest := sha256.Sum256([]byte(creds.Token))
					for range rounds {
						b.Run("baseline", func(b *testing.B) {
							baseline := newDigestBaseline(b, e, keyFloorColumns)
							for b.Loop() {
								baseline(digest)
							}
						})
						b.Run("narrow", func(b *testing.B) {
							narrow := newDigestBaseline(b, e, narrowFloorColumns)
							for b.Loop() {
								narrow(digest)
							}
						})
						b.Run("verify_token", func(b *testing.B) { benchVerifyToken(b, e, e.m, creds) })
						b.Run("floor", func(b *testing.B) {
							b.ReportAllocs()
							var mu sync.RWMutex
							for b.Loop() {
								var buf [64]byte
								d := sha256.Sum256(buf[:copy(buf[:], creds.Token)])
								mu.RLock()
								rec, ok := floor[d]
								mu.RUnlock()
								if !ok || subtle.ConstantTimeCompare(rec.Current.Digest[:], d[:]) != 1 {
									b.Fatal("floor: token does not match")
								}
								benchKeySink = floorKey(&rec)
							}
						})
						b.Run("cached", func(b *testing.B) { benchVerifyToken(b, e, cached, creds) })
						b.Run("paired", func(b *testing.B) { benchPairedToken(b, e, creds, digest) })
					}
				})
			}
		})
	}
}

// keyFloorColumns are the columns of tokens_keys that a *Key is made of:
// what any look-up that returns one must read. VerifyToken reads these
// and the token digests and the link's (its sealed token is left out, as
// NULL).
var keyFloorColumns = []string{
	"id", "account", "name", "active", "created_at",
	"current_created_at", "current_last_used_at",
	"old_created_at", "old_last_used_at", "old_expires_at",
	"link_created_at", "link_expires_at", "link_redeemed_at", "link_revoked_at",
	"revoked_used_at", "scopes", "metadata", "expires_at", "leaked_at",
}

// narrowFloorColumns are the six columns of the floor before R19-R22.
var narrowFloorColumns = []string{"id", "account", "name", "active", "created_at", "version"}

// newDigestBaseline prepares the SELECT of columns by current_digest and
// returns a call of it that scans the row into plain values: text as
// strings, times as benchTime, the flag as a bool, numbers as int64.
func newDigestBaseline(b *testing.B, e *benchEnv, columns []string) func(d tokens.Digest) {
	stmt, err := e.db.PreparexContext(e.ctx, e.db.Rebind(
		`SELECT `+strings.Join(columns, ", ")+` FROM tokens_keys WHERE current_digest = ?`))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stmt.Close() })
	var (
		text    [4]string // id, account, name, then scopes and metadata in turn
		active  bool
		version int64
		times   = make([]benchTime, len(columns))
	)
	dest := make([]any, len(columns))
	nText := 0
	for i, c := range columns {
		switch {
		case c == "active":
			dest[i] = &active
		case c == "version":
			dest[i] = &version
		case strings.HasSuffix(c, "_at"):
			dest[i] = &times[i]
		default:
			dest[i] = &text[nText%len(text)]
			nText++
		}
	}
	return func(d tokens.Digest) {
		if err := stmt.QueryRowContext(e.ctx, d[:]).Scan(dest...); err != nil {
			b.Fatal(err)
		}
	}
}

// floorKey is the *Key of rec that the in-memory floor returns, as the
// API does: the caller owns it, scopes and metadata too.
func floorKey(rec *tokens.KeyRecord) *tokens.Key {
	return &tokens.Key{
		ID: rec.ID, Account: rec.Account, Name: rec.Name, Active: rec.Active, CreatedAt: rec.CreatedAt,
		Token:  tokens.TokenInfo{CreatedAt: rec.Current.CreatedAt, LastUsedAt: rec.Current.LastUsedAt},
		Scopes: slices.Clone(rec.Scopes), Metadata: maps.Clone(rec.Metadata),
		ExpiresAt: rec.ExpiresAt, LeakedAt: rec.LeakedAt,
	}
}

func benchVerifyToken(b *testing.B, e *benchEnv, m *tokens.Manager, creds *tokens.Credentials) {
	b.ReportAllocs()
	if _, err := m.VerifyToken(e.ctx, creds.Token); err != nil {
		b.Fatal(err)
	}
	before := e.version(b, creds.KeyID)
	for b.Loop() {
		key, err := m.VerifyToken(e.ctx, creds.Token)
		if err != nil {
			b.Fatal(err)
		}
		benchKeySink = key
	}
	if e.version(b, creds.KeyID) != before {
		b.Fatal("VerifyToken wrote to the store in the timed loop: not the steady state")
	}
}

// benchPairedToken runs the narrow floor, the baseline and an uncached
// VerifyToken in each iteration, the first of them rotating, and reports
// VerifyToken's total time against each floor's.
func benchPairedToken(b *testing.B, e *benchEnv, creds *tokens.Credentials, digest tokens.Digest) {
	baseline := newDigestBaseline(b, e, keyFloorColumns)
	narrow := newDigestBaseline(b, e, narrowFloorColumns)
	verify := func() {
		key, err := e.m.VerifyToken(e.ctx, creds.Token)
		if err != nil {
			b.Fatal(err)
		}
		benchKeySink = key
	}
	verify()
	cases := []func(){verify, func() { baseline(digest) }, func() { narrow(digest) }}
	var spent [3]time.Duration
	i := 0
	for b.Loop() {
		for j := range cases {
			c := (i + j) % len(cases)
			t0 := time.Now()
			cases[c]()
			spent[c] += time.Since(t0)
		}
		i++
	}
	b.ReportMetric(float64(spent[0])/float64(spent[1]), "verify_token/baseline")
	b.ReportMetric(float64(spent[0])/float64(spent[2]), "verify_token/narrow")
}

// benchDigestFloor is benchFloorRecords keyed by current digest.
func benchDigestFloor(b *testing.B, e *benchEnv, keyID string) map[tokens.Digest]tokens.KeyRecord {
	b.Helper()
	byID := benchFloorRecords(b, e, keyID)
	out := make(map[tokens.Digest]tokens.KeyRecord, len(byID))
	for _, rec := range byID {
		out[rec.Current.Digest] = rec
	}
	return out
}
