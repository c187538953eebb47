package sqlstore_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/store/sqlstore"
	"github.com/keyrenew/tokens/store/storetest"
)

// BenchmarkWrites (P1): changes of distinct keys from 1 and 8 writers on
// PostgreSQL, beside their floor in the same round: the same kind of
// transaction without the change log (read the row, a version-checked
// UPDATE and an event INSERT). Rounds interleave subject and floor
// (TOKENS_BENCH_ROUNDS), so that drift hits both alike. ns/op is per
// change: the writers share b.N.
//
//	TOKENS_BENCH_ROUNDS=5 go test ./store/sqlstore -run '^$' -bench '^BenchmarkWrites$' -benchtime 1000x
func BenchmarkWrites(b *testing.B) {
	for _, be := range backends {
		if !strings.HasPrefix(be.Name, "postgres_lib_pq") {
			continue
		}
		ctx := context.Background()
		db := benchOpen(b, be.Driver, be.NewDSN(b))
		st, err := sqlstore.New(db)
		if err != nil {
			b.Fatal(err)
		}
		if err := st.Migrate(ctx); err != nil {
			b.Fatal(err)
		}
		const keys = 64
		for i := range keys {
			rec := storetest.NewRecord(fmt.Sprint("w", i))
			if err := st.InsertKey(ctx, &rec); err != nil {
				b.Fatal(err)
			}
		}
		// The floor's statements are prepared, as the store's are.
		prepare := func(q string) *sql.Stmt {
			stmt, err := db.PrepareContext(ctx, q)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { stmt.Close() })
			return stmt
		}
		floorRead := prepare(`SELECT version FROM tokens_keys WHERE id = $1`)
		floorUpdate := prepare(`UPDATE tokens_keys SET name = name, version = version + 1 WHERE id = $1 AND version = $2`)
		floorEvent := prepare(`INSERT INTO tokens_events (seq, at, key_id, account, type, actor, policy, old_token_ttl)
			VALUES (nextval('tokens_changes_seq'), $1, $2, '', 'floor', '', 0, 0)`)
		db.SetMaxOpenConns(16)
		db.SetMaxIdleConns(16)
		for round := range benchRounds(b) {
			for _, writers := range []int{1, 8} {
				for _, c := range []struct {
					name  string
					write func(id string) error
				}{
					{"store", func(id string) error {
						rec, err := st.Key(ctx, id)
						if err != nil {
							return err
						}
						rec.Name += "+"
						if len(rec.Name) > 100 {
							rec.Name = "w"
						}
						rec.Event = &tokens.Event{At: storetest.T0, KeyID: id, Type: tokens.EventKeyDeactivated}
						return st.UpdateKey(ctx, &rec)
					}},
					{"floor", func(id string) error {
						tx, err := db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
						if err != nil {
							return err
						}
						defer tx.Rollback()
						var version int64
						if err := tx.StmtContext(ctx, floorRead).QueryRowContext(ctx, id).Scan(&version); err != nil {
							return err
						}
						if _, err := tx.StmtContext(ctx, floorUpdate).ExecContext(ctx, id, version); err != nil {
							return err
						}
						if _, err := tx.StmtContext(ctx, floorEvent).ExecContext(ctx, storetest.T0, id); err != nil {
							return err
						}
						return tx.Commit()
					}},
				} {
					b.Run(fmt.Sprintf("%s/writers=%d/%s#%d", be.Name, writers, c.name, round), func(b *testing.B) {
						var done atomic.Int64
						var wg sync.WaitGroup
						for w := range writers {
							wg.Add(1)
							go func() { // each writer changes a key of its own
								defer wg.Done()
								id := fmt.Sprint("w", w)
								for done.Add(1) <= int64(b.N) {
									if err := c.write(id); err != nil {
										b.Error(err)
										return
									}
								}
							}()
						}
						wg.Wait()
					})
				}
			}
		}
	}
}
