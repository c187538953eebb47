package sqlstore_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/jmoiron/sqlx"

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/internal/testenv"
	"github.com/keyrenew/tokens/store/sqlstore"
)

// The benchmarks run the Manager over each backend, with the sub-benchmark
// levels <operation>/<backend>/<case> so that benchstat puts the backends
// side by side:
//
//	BenchmarkVerify/<backend>/baseline   a prepared primary-key SELECT of one
//	                                     key row (QueryRowContext + Scan),
//	                                     through the same driver and *sqlx.DB
//	BenchmarkVerify/<backend>/store_key  Store.Key alone: the SELECT Verify
//	                                     issues, without the Manager
//	BenchmarkVerify/<backend>/verify     Manager.Verify of a redeemed key
//	BenchmarkRenew/<backend>/delete_now
//	BenchmarkRenew/<backend>/delete_later
//	BenchmarkRedeemLink/<backend>
//
// The target is verify within 1.3x of baseline on every backend. To see
// the cases side by side, with the ratio to baseline:
//
//	go test -run '^$' -bench Verify -benchmem -count 10 ./store/sqlstore/ |
//	  sed -E 's#Verify/([a-z_]+)/([a-z_]+)-#Verify/backend=\1/case=\2-#' |
//	  benchstat -col /case -row /backend -
//
// The PostgreSQL backends need TOKENS_TEST_POSTGRES; without it they are
// skipped (failed in CI).
//
// Verify is measured in its steady state: it is called once before the
// timer runs, which records the token's first use, and the clock does not
// move, so no later call writes (R9 writes LastUsedAt at most once a
// minute). The key's version, unchanged after the loop, proves it.
//
// Renew and RedeemLink change a key, and each can run only once per key
// state (R3: Renew needs the previous link redeemed or expired; R5:
// DeleteLater needs no old token; a link redeems once):
//
//   - Renew/delete_now renews one key over and over, moving the clock on by
//     more than the link TTL before each renewal, so that the previous link
//     has expired unredeemed and R4 discards its unseen token. It issues
//     the same statements as a DeleteNow renewal of a redeemed key: the
//     current token row replaced, the link row upserted. The clock is
//     benchClock, not clock.Mock, whose Add sleeps a millisecond.
//   - Renew/delete_later renews keys whose links were redeemed, prepared
//     benchBatch at a time with the timer stopped: the current token row
//     replaced, the old one inserted, the link upserted.
//   - RedeemLink redeems links created benchBatch at a time with the timer
//     stopped.
//
// Used keys are deleted with the timer stopped too, so the tables stay
// about the same size whatever b.N is. Each backend's tables also hold
// benchFillerKeys other keys, so that look-ups go through real indexes.
const (
	benchShareBase  = "https://share.example.com/credentials/"
	benchFillerKeys = 1000
	benchBatch      = 256
	benchSQLiteDSN  = "_busy_timeout=10000&_journal_mode=WAL&_txlock=immediate"
)

// benchBackend opens a fresh, empty database of one kind for a benchmark.
type benchBackend struct {
	name   string
	driver string
	dsn    func(b *testing.B) string
}

var benchBackends = []benchBackend{
	{name: "sqlite", driver: "sqlite3", dsn: func(b *testing.B) string {
		return "file:" + filepath.Join(b.TempDir(), "tokens.db") + "?" + benchSQLiteDSN
	}},
	{name: "postgres_lib_pq", driver: "postgres", dsn: benchPostgresDSN},
	{name: "postgres_pgx", driver: "pgx", dsn: benchPostgresDSN},
}

// benchPostgresDSN makes a schema of its own for b, dropped when b ends,
// and returns TOKENS_TEST_POSTGRES with search_path set to it. It skips b
// (fails it in CI) when TOKENS_TEST_POSTGRES is not set.
func benchPostgresDSN(b *testing.B) string {
	base := testenv.Postgres(b)
	schema := "tokens_bench_" + strings.ToLower(rand.Text()[:16])
	admin := benchOpen(b, "postgres", base)
	if _, err := admin.Exec("CREATE SCHEMA " + schema); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if _, err := admin.Exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
			b.Error(err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		b.Fatalf("TOKENS_TEST_POSTGRES must be a postgres:// URL: %v", err)
	}
	query := u.Query()
	query.Set("search_path", schema)
	u.RawQuery = query.Encode()
	return u.String()
}

func benchOpen(b *testing.B, driver, dsn string) *sqlx.DB {
	b.Helper()
	db, err := sqlx.Open(driver, dsn)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return db
}

// benchClock is a tokens.Clock that a benchmark moves on without the
// millisecond sleep of clock.Mock.Add.
type benchClock struct{ ns atomic.Int64 }

func newBenchClock() *benchClock {
	c := &benchClock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *benchClock) Now() time.Time      { return time.Unix(0, c.ns.Load()).UTC() }
func (c *benchClock) Add(d time.Duration) { c.ns.Add(int64(d)) }

// benchEnv is a Manager over a migrated store in a fresh database.
type benchEnv struct {
	ctx context.Context
	db  *sqlx.DB
	st  *sqlstore.Store
	m   *tokens.Manager
}

func newBenchEnv(b *testing.B, be benchBackend, clk tokens.Clock) *benchEnv {
	b.Helper()
	ctx := context.Background()
	db := benchOpen(b, be.driver, be.dsn(b))
	st, err := sqlstore.New(db)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	if err := st.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	m, err := tokens.NewManager(st, tokens.WithClock(clk), tokens.WithShareBaseURL(benchShareBase))
	if err != nil {
		b.Fatal(err)
	}
	e := &benchEnv{ctx: ctx, db: db, st: st, m: m}
	for range benchFillerKeys {
		e.createKey(b)
	}
	return e
}

func (e *benchEnv) createKey(b *testing.B) (string, *tokens.ShareLink) {
	b.Helper()
	key, link, err := e.m.CreateKey(e.ctx, tokens.KeySpec{Account: "acme", Name: "erp-sync"})
	if err != nil {
		b.Fatal(err)
	}
	return key.ID, link
}

func (e *benchEnv) redeem(b *testing.B, link *tokens.ShareLink) *tokens.Credentials {
	b.Helper()
	creds, err := e.m.RedeemLink(e.ctx, link.URL)
	if err != nil {
		b.Fatal(err)
	}
	return creds
}

// issued returns the credentials of a new key whose link was redeemed, as
// an integration holds them.
func (e *benchEnv) issued(b *testing.B) *tokens.Credentials {
	b.Helper()
	_, link := e.createKey(b)
	return e.redeem(b, link)
}

func (e *benchEnv) deleteKeys(b *testing.B, ids []string) {
	b.Helper()
	for _, id := range ids {
		if err := e.m.DeleteKey(e.ctx, id); err != nil {
			b.Fatal(err)
		}
	}
}

func (e *benchEnv) version(b *testing.B, id string) int64 {
	b.Helper()
	rec, err := e.st.Key(e.ctx, id)
	if err != nil {
		b.Fatal(err)
	}
	return rec.Version
}

// benchPaused runs f with the benchmark timer stopped.
func benchPaused(b *testing.B, f func()) {
	b.StopTimer()
	f()
	b.StartTimer()
}

// benchTime scans a time the way the store stores it: Unix microseconds on
// SQLite, timestamptz on PostgreSQL.
type benchTime time.Time

func (t *benchTime) Scan(src any) error {
	switch src := src.(type) {
	case time.Time:
		*t = benchTime(src.UTC())
	case int64:
		*t = benchTime(time.UnixMicro(src).UTC())
	default:
		return fmt.Errorf("cannot scan %T into a time", src)
	}
	return nil
}

var (
	benchKeySink    *tokens.Key
	benchRecordSink tokens.KeyRecord
)

func BenchmarkVerify(b *testing.B) {
	for _, be := range benchBackends {
		b.Run(be.name, func(b *testing.B) {
			e := newBenchEnv(b, be, clock.NewMock())
			creds := e.issued(b)

			b.Run("baseline", func(b *testing.B) {
				b.ReportAllocs()
				stmt, err := e.db.PreparexContext(e.ctx, e.db.Rebind(
					`SELECT id, account, name, active, created_at, version FROM tokens_keys WHERE id = ?`))
				if err != nil {
					b.Fatal(err)
				}
				defer stmt.Close()
				var (
					id, account, name string
					active            bool
					createdAt         benchTime
					version           int64
				)
				for b.Loop() {
					err := stmt.QueryRowContext(e.ctx, creds.KeyID).
						Scan(&id, &account, &name, &active, &createdAt, &version)
					if err != nil {
						b.Fatal(err)
					}
				}
				if id != creds.KeyID {
					b.Fatalf("baseline read key %q, want %q", id, creds.KeyID)
				}
			})

			b.Run("store_key", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					rec, err := e.st.Key(e.ctx, creds.KeyID)
					if err != nil {
						b.Fatal(err)
					}
					benchRecordSink = rec
				}
			})

			b.Run("verify", func(b *testing.B) {
				b.ReportAllocs()
				if _, err := e.m.Verify(e.ctx, creds.KeyID, creds.Token); err != nil {
					b.Fatal(err)
				}
				before := e.version(b, creds.KeyID)
				for b.Loop() {
					key, err := e.m.Verify(e.ctx, creds.KeyID, creds.Token)
					if err != nil {
						b.Fatal(err)
					}
					benchKeySink = key
				}
				if e.version(b, creds.KeyID) != before {
					b.Fatal("Verify wrote to the store in the timed loop: not the steady state")
				}
			})
		})
	}
}

func BenchmarkRenew(b *testing.B) {
	for _, be := range benchBackends {
		b.Run(be.name, func(b *testing.B) {
			b.Run("delete_now", func(b *testing.B) {
				b.ReportAllocs()
				clk := newBenchClock()
				e := newBenchEnv(b, be, clk)
				id, _ := e.createKey(b)
				opts := tokens.RenewOptions{OldToken: tokens.DeleteNow}
				for b.Loop() {
					clk.Add(tokens.DefaultLinkTTL + time.Hour) // the previous link expired
					if _, err := e.m.Renew(e.ctx, id, opts); err != nil {
						b.Fatal(err)
					}
				}
			})

			b.Run("delete_later", func(b *testing.B) {
				b.ReportAllocs()
				e := newBenchEnv(b, be, clock.NewMock())
				opts := tokens.RenewOptions{OldToken: tokens.DeleteLater}
				var ready, used []string
				for b.Loop() {
					if len(ready) == 0 {
						benchPaused(b, func() {
							e.deleteKeys(b, used)
							used = used[:0]
							for range benchBatch {
								ready = append(ready, e.issued(b).KeyID)
							}
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
		})
	}
}

func BenchmarkRedeemLink(b *testing.B) {
	for _, be := range benchBackends {
		b.Run(be.name, func(b *testing.B) {
			b.ReportAllocs()
			e := newBenchEnv(b, be, clock.NewMock())
			var ready []*tokens.ShareLink
			var used []string
			for b.Loop() {
				if len(ready) == 0 {
					benchPaused(b, func() {
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
	}
}
