package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/store/sqlstore"
)

// writerCounts are the numbers of concurrent writers the write mode
// measures.
var writerCounts = []int{1, 2, 4, 8, 16}

// runWrites is the write mode (-writes, PostgreSQL): for each number of
// writers, each changing a key of its own with Deactivate and Activate,
// it measures changes/s for step, then the same for the floor, the same
// kind of transaction without the change log (a read of the row, a
// version-checked UPDATE and an event INSERT, prepared), and prints both
// side by side. Subject and floor alternate in short steps, so that drift
// on a shared machine hits both alike. The keys it made are deleted.
func runWrites(ctx context.Context, postgresURL string, step time.Duration, out io.Writer) error {
	if postgresURL == "" {
		return errors.New("-writes needs -postgres: SQLite has one writer at a time")
	}
	db, err := sqlx.Open("postgres", postgresURL)
	if err != nil {
		return err
	}
	defer db.Close()
	maxWriters := writerCounts[len(writerCounts)-1]
	db.SetMaxOpenConns(maxWriters)
	db.SetMaxIdleConns(maxWriters)
	st, err := sqlstore.New(db)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		return err
	}
	m, err := tokens.NewManager(st, tokens.WithShareBaseURL("http://127.0.0.1/credentials/"))
	if err != nil {
		return err
	}
	var ids []string
	defer func() {
		for _, id := range ids {
			_ = m.DeleteKey(context.WithoutCancel(ctx), id)
		}
	}()
	for i := range maxWriters {
		key, _, err := m.CreateKey(ctx, tokens.KeySpec{Account: "loadtest-writes", Name: fmt.Sprint("writer ", i)})
		if err != nil {
			return err
		}
		ids = append(ids, key.ID)
	}
	floor, err := newWriteFloor(ctx, db)
	if err != nil {
		return err
	}
	defer floor.close()

	fmt.Fprintf(out, "changes/s of distinct keys, %v per measurement\n", step)
	fmt.Fprintf(out, "%8s %12s %12s %8s\n", "writers", "library", "floor", "ratio")
	for _, n := range writerCounts {
		lib, err := changesPerSecond(ctx, n, step, func(ctx context.Context, w, i int) error {
			if i%2 == 0 {
				return m.Deactivate(ctx, ids[w])
			}
			return m.Activate(ctx, ids[w])
		})
		if err != nil {
			return err
		}
		fl, err := changesPerSecond(ctx, n, step, func(ctx context.Context, w, _ int) error {
			return floor.write(ctx, ids[w])
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%8d %12.0f %12.0f %7.2fx\n", n, lib, fl, lib/fl)
	}
	return nil
}

// changesPerSecond runs write from n writers for d and returns how many
// changes per second they made.
func changesPerSecond(ctx context.Context, n int, d time.Duration, write func(ctx context.Context, writer, i int) error) (float64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		count atomic.Int64
		wg    sync.WaitGroup
		errs  = make(chan error, n)
	)
	start := time.Now()
	deadline := start.Add(d)
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				if err := write(ctx, w, i); err != nil {
					errs <- err
					cancel()
					return
				}
				count.Add(1)
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	return float64(count.Load()) / time.Since(start).Seconds(), nil
}

// writeFloor is the floor of a change: what any compare-and-swap store
// with an audit trail does, without a change log.
type writeFloor struct {
	db                  *sqlx.DB
	read, update, event *sql.Stmt
}

func newWriteFloor(ctx context.Context, db *sqlx.DB) (*writeFloor, error) {
	f := &writeFloor{db: db}
	for _, p := range []struct {
		stmt  **sql.Stmt
		query string
	}{
		{&f.read, `SELECT version FROM tokens_keys WHERE id = $1`},
		{&f.update, `UPDATE tokens_keys SET active = active, version = version + 1 WHERE id = $1 AND version = $2`},
		{&f.event, `INSERT INTO tokens_events (seq, at, key_id, account, type, actor, policy, old_token_ttl)
			VALUES (nextval('tokens_changes_seq'), $1, $2, 'loadtest-writes', 'loadtest_floor', '', 0, 0)`},
	} {
		stmt, err := db.PrepareContext(ctx, p.query)
		if err != nil {
			f.close()
			return nil, err
		}
		*p.stmt = stmt
	}
	return f, nil
}

func (f *writeFloor) write(ctx context.Context, id string) error {
	tx, err := f.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var version int64
	if err := tx.StmtContext(ctx, f.read).QueryRowContext(ctx, id).Scan(&version); err != nil {
		return err
	}
	if _, err := tx.StmtContext(ctx, f.update).ExecContext(ctx, id, version); err != nil {
		return err
	}
	if _, err := tx.StmtContext(ctx, f.event).ExecContext(ctx, time.Unix(0, 0).UTC(), id); err != nil {
		return err
	}
	return tx.Commit()
}

func (f *writeFloor) close() {
	for _, s := range []*sql.Stmt{f.read, f.update, f.event} {
		if s != nil {
			s.Close()
		}
	}
	_, _ = f.db.Exec(`DELETE FROM tokens_events WHERE type = 'loadtest_floor'`)
}
