package sqlstore_test

import (
	"crypto/sha256"
	"crypto/subtle"
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
//	.../baseline  a prepared SELECT of one key row by current_digest
//	    (id, account, name, active, created_at, version), the floor of an
//	    uncached VerifyToken
//	.../verify_token  Manager.VerifyToken, no cache
//	.../floor  a map look-up by digest under a read lock, one SHA-256 and
//	    one constant-time compare
//	.../cached  Manager.VerifyToken with WithVerifyCache(CacheConfig{})
//	.../paired  baseline and verify_token in turn in each iteration:
//	    reports verify_token/baseline with drift cancelled per iteration
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
							baseline := newDigestBaseline(b, e)
							for b.Loop() {
								baseline(digest)
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

func newDigestBaseline(b *testing.B, e *benchEnv) func(d tokens.Digest) {
	stmt, err := e.db.PreparexContext(e.ctx, e.db.Rebind(
		`SELECT id, account, name, active, created_at, version FROM tokens_keys WHERE current_digest = ?`))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stmt.Close() })
	var (
		id, account, name string
		active            bool
		createdAt         benchTime
		version           int64
	)
	return func(d tokens.Digest) {
		if err := stmt.QueryRowContext(e.ctx, d[:]).Scan(&id, &account, &name, &active, &createdAt, &version); err != nil {
			b.Fatal(err)
		}
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

func benchPairedToken(b *testing.B, e *benchEnv, creds *tokens.Credentials, digest tokens.Digest) {
	baseline := newDigestBaseline(b, e)
	verify := func() {
		key, err := e.m.VerifyToken(e.ctx, creds.Token)
		if err != nil {
			b.Fatal(err)
		}
		benchKeySink = key
	}
	verify()
	var baseTime, verifyTime time.Duration
	i := 0
	for b.Loop() {
		t0 := time.Now()
		if i%2 == 0 {
			baseline(digest)
		} else {
			verify()
		}
		t1 := time.Now()
		if i%2 == 0 {
			verify()
		} else {
			baseline(digest)
		}
		t2 := time.Now()
		if i%2 == 0 {
			baseTime, verifyTime = baseTime+t1.Sub(t0), verifyTime+t2.Sub(t1)
		} else {
			verifyTime, baseTime = verifyTime+t1.Sub(t0), baseTime+t2.Sub(t1)
		}
		i++
	}
	b.ReportMetric(float64(verifyTime)/float64(baseTime), "verify_token/baseline")
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
