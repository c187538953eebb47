package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/internal/testenv"
)

// sweepCalls is how many calls of each kind the deadline sweep makes, and
// sweepStep how much longer each call's deadline is than the one before:
// 0 to 4 ms, from before the first statement to after the COMMIT.
const (
	sweepCalls = 400
	sweepStep  = 10 * time.Microsecond
)

// sweepCounts tallies what the calls of a sweep reported, and mismatches
// the reports that the database contradicts.
type sweepCounts struct {
	ok, failed, unknown int
	lost                int64 // writes whose store call could not tell
	mismatches          []string
}

func (c *sweepCounts) String() string {
	return fmt.Sprintf("%d ok, %d failed, %d outcome unknown, %d mismatches (%d writes lost their COMMIT's answer)",
		c.ok, c.failed, c.unknown, len(c.mismatches), c.lost)
}

// lostCommits counts the writes whose store call failed with
// ErrOutcomeUnknown, the Manager's fences included.
type lostCommits struct {
	tokens.Store
	n atomic.Int64
}

func (s *lostCommits) UpdateKey(ctx context.Context, rec *tokens.KeyRecord) error {
	err := s.Store.UpdateKey(ctx, rec)
	if errors.Is(err, tokens.ErrOutcomeUnknown) {
		s.n.Add(1)
	}
	return err
}

func (c *sweepCounts) mismatch(format string, args ...any) {
	c.mismatches = append(c.mismatches, fmt.Sprintf(format, args...))
}

// sweepContext returns a context whose deadline is i steps away, after a
// write through the Manager without a deadline on a key of its own: an
// interrupted call may cost the pool its connection, and a call on a new
// one would spend its deadline connecting and preparing statements.
func sweepContext(t *testing.T, m *tokens.Manager, spare string, i int) (context.Context, context.CancelFunc) {
	t.Helper()
	if i%2 == 0 {
		require.NoError(t, m.Deactivate(t.Context(), spare))
	} else {
		require.NoError(t, m.Activate(t.Context(), spare))
	}
	return context.WithTimeout(t.Context(), time.Duration(i)*sweepStep)
}

// TestDeadlineSweepOutcomes interrupts RedeemLink and Renew calls with
// deadlines from 0 to 4 ms, so that some fire during the COMMIT, and then
// checks every reported outcome against the database: a success must have
// committed and an error must have left the key as it was (R18). An
// ErrOutcomeUnknown is allowed, and counted. The database is read only
// after the sweep, when every interrupted transaction has ended.
func TestDeadlineSweepOutcomes(t *testing.T) {
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			c := newCluster(t, b, 1)
			in := c.inst[0]
			ctx := t.Context()
			lost := &lostCommits{Store: in.st}
			m, err := tokens.NewManager(lost, tokens.WithClock(c.clk), tokens.WithShareBaseURL(shareBase))
			require.NoError(t, err)
			in.m = m

			keys := make([]*tokens.Key, sweepCalls)
			links := make([]*tokens.ShareLink, sweepCalls)
			for i := range sweepCalls {
				var err error
				keys[i], links[i], err = in.m.CreateKey(ctx, tokens.KeySpec{Account: "sweep", Name: fmt.Sprint("key ", i)})
				require.NoError(t, err)
			}

			spare, _, err := in.m.CreateKey(ctx, tokens.KeySpec{Account: "sweep", Name: "spare"})
			require.NoError(t, err)

			var redeem sweepCounts
			lost.n.Store(0)
			creds := make([]*tokens.Credentials, sweepCalls)
			errs := make([]error, sweepCalls)
			for i := range sweepCalls {
				callCtx, cancel := sweepContext(t, in.m, spare.ID, i)
				creds[i], errs[i] = in.m.RedeemLink(callCtx, links[i].URL)
				cancel()
			}
			redeem.lost = lost.n.Load()
			for i, err := range errs {
				rec, loadErr := in.st.Key(ctx, keys[i].ID)
				require.NoError(t, loadErr)
				redeemed := !rec.Link.RedeemedAt.IsZero()
				switch {
				case err == nil:
					redeem.ok++
					if !redeemed {
						redeem.mismatch("RedeemLink %d succeeded but the link is not redeemed", i)
					} else if creds[i].KeyID != keys[i].ID {
						redeem.mismatch("RedeemLink %d returned the credentials of another key", i)
					} else if _, err := in.m.Verify(ctx, creds[i].KeyID, creds[i].Token); err != nil {
						redeem.mismatch("RedeemLink %d returned a token that does not verify: %v", i, err)
					}
				case errors.Is(err, tokens.ErrOutcomeUnknown):
					redeem.unknown++
				default:
					redeem.failed++
					if redeemed {
						redeem.mismatch("RedeemLink %d failed (%v) but the link was redeemed", i, err)
					}
				}
			}

			// Every link is now redeemed or expired, so every key renews.
			c.clk.Add(25 * time.Hour)
			before := make([]tokens.KeyRecord, sweepCalls)
			for i := range sweepCalls {
				var err error
				before[i], err = in.st.Key(ctx, keys[i].ID)
				require.NoError(t, err)
			}
			var renew sweepCounts
			lost.n.Store(0)
			renewed := make([]*tokens.ShareLink, sweepCalls)
			for i := range sweepCalls {
				callCtx, cancel := sweepContext(t, in.m, spare.ID, i)
				renewed[i], errs[i] = in.m.Renew(callCtx, keys[i].ID, tokens.RenewOptions{})
				cancel()
			}
			renew.lost = lost.n.Load()
			for i, err := range errs {
				rec, loadErr := in.st.Key(ctx, keys[i].ID)
				require.NoError(t, loadErr)
				switch {
				case err == nil:
					renew.ok++
					// Only a key's latest link is found at all.
					status, err := in.m.LinkStatus(ctx, renewed[i].URL)
					require.NoError(t, err)
					if status.State != tokens.LinkPending {
						renew.mismatch("Renew %d succeeded but its link is %v, not the key's latest", i, status.State)
					}
				case errors.Is(err, tokens.ErrOutcomeUnknown):
					renew.unknown++
				default:
					renew.failed++
					// A failed call may leave the version bumped (the
					// Manager's fence write) but nothing else.
					was := before[i]
					was.Version, rec.Version = 0, 0
					if !equalRecords(was, rec) {
						renew.mismatch("Renew %d failed (%v) but the key changed", i, err)
					}
				}
			}

			t.Logf("sweep %s RedeemLink: %v", b.Name, &redeem)
			t.Logf("sweep %s Renew: %v", b.Name, &renew)
			for _, m := range append(redeem.mismatches, renew.mismatches...) {
				t.Error(m)
			}
		})
	}
}

func equalRecords(a, b tokens.KeyRecord) bool {
	return reflect.DeepEqual(a, b)
}

// nilContextCalls calls every exported Manager method that takes a
// context with a nil one, with arguments that would otherwise reach the
// store, and returns each call's error by method name. The root package's
// TestNilContext checks that the list is complete.
func nilContextCalls(m *tokens.Manager, keyID, linkURL, token string) map[string]error {
	var ctx context.Context // nil
	errs := map[string]error{}
	_, _, errs["CreateKey"] = m.CreateKey(ctx, tokens.KeySpec{Account: "acme", Name: "nil"})
	_, errs["Key"] = m.Key(ctx, keyID)
	_, errs["Keys"] = m.Keys(ctx, "acme")
	_, errs["Verify"] = m.Verify(ctx, keyID, token)
	errs["Activate"] = m.Activate(ctx, keyID)
	errs["Deactivate"] = m.Deactivate(ctx, keyID)
	errs["DeleteKey"] = m.DeleteKey(ctx, keyID)
	_, errs["Renew"] = m.Renew(ctx, keyID, tokens.RenewOptions{})
	errs["DeleteOld"] = m.DeleteOld(ctx, keyID)
	errs["Undo"] = m.Undo(ctx, keyID)
	_, errs["RedeemLink"] = m.RedeemLink(ctx, linkURL)
	_, errs["LinkStatus"] = m.LinkStatus(ctx, linkURL)
	_, errs["PurgeExpired"] = m.PurgeExpired(ctx)
	return errs
}

// nilContextStoreCalls calls every tokens.Store method of st with a nil
// context.
func nilContextStoreCalls(st tokens.Store, rec tokens.KeyRecord) map[string]error {
	var ctx context.Context // nil
	now := time.Now()
	errs := map[string]error{}
	again := rec
	errs["InsertKey"] = st.InsertKey(ctx, &again)
	_, errs["Key"] = st.Key(ctx, rec.ID)
	_, errs["KeyByLink"] = st.KeyByLink(ctx, rec.Link.Digest)
	_, errs["Keys"] = st.Keys(ctx, rec.Account)
	errs["UpdateKey"] = st.UpdateKey(ctx, &again)
	errs["DeleteKey"] = st.DeleteKey(ctx, rec.ID, nil)
	errs["RecordUse"] = st.RecordUse(ctx, rec.ID, rec.Current.Digest, now, now)
	_, errs["ExpiredLinks"] = st.ExpiredLinks(ctx, now, 10)
	return errs
}

// withinWait runs fn and fails the test if it does not return within
// interruptWait: a panic inside database/sql while it holds its pool's
// lock would leave every later call of the process waiting.
func withinWait(t *testing.T, what string, fn func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		require.NoError(t, err, what)
	case <-time.After(interruptWait):
		t.Fatalf("%s hangs: the process is wedged", what)
	}
}

// TestNilContext calls every Manager method and every Store method with a
// nil context on a real database (R18): each returns ErrNilContext, none
// panics, nothing changes, and the process works on afterwards, on a pool
// of one connection that a leaked connection or lock would block.
func TestNilContext(t *testing.T) {
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			c := newCluster(t, b, 1)
			in := c.inst[0]
			in.db.SetMaxOpenConns(1)
			ctx := t.Context()
			creds := redeemedKey(t, in.m)
			renewal, err := in.m.Renew(ctx, creds.KeyID, tokens.RenewOptions{})
			require.NoError(t, err)
			_, pending, err := in.m.CreateKey(ctx, tokens.KeySpec{Account: "acme", Name: "pending"})
			require.NoError(t, err)
			before := renderedDump(t, in.db)
			rec, err := in.st.Key(ctx, creds.KeyID)
			require.NoError(t, err)

			for method, err := range nilContextCalls(in.m, creds.KeyID, pending.URL, creds.Token) {
				require.ErrorIs(t, err, tokens.ErrNilContext, "Manager.%s", method)
			}
			for method, err := range nilContextStoreCalls(in.st, rec) {
				require.ErrorIs(t, err, tokens.ErrNilContext, "Store.%s", method)
			}
			require.Equal(t, before, renderedDump(t, in.db), "the database changed")

			withinWait(t, "the next calls", func() error {
				ctx, cancel := context.WithTimeout(ctx, interruptWait)
				defer cancel()
				renewed, err := in.m.RedeemLink(ctx, renewal.URL)
				if err != nil {
					return err
				}
				if err := in.m.DeleteOld(ctx, creds.KeyID); err != nil {
					return err
				}
				if _, err := in.m.Verify(ctx, renewed.KeyID, renewed.Token); err != nil {
					return err
				}
				_, err = in.m.Renew(ctx, creds.KeyID, tokens.RenewOptions{OldToken: tokens.DeleteNow})
				return err
			})
		})
	}
}

// lossyStore delegates to a real store but hands its next write to a
// plan, which decides whether and when the write reaches the database and
// what the Manager is told. Like the store, it leaves the record's version
// as it was when it returns an error. Its plan is set between calls, on
// the test goroutine.
type lossyStore struct {
	tokens.Store
	plan func(write func() error) error
}

// errLost is what the store returns when the answer to a COMMIT is lost.
var errLost = fmt.Errorf("lossy: commit: %w (%w)", context.DeadlineExceeded, tokens.ErrOutcomeUnknown)

func committedThenLost(write func() error) error {
	if err := write(); err != nil {
		return err
	}
	return errLost
}

func lostBeforeCommit(func() error) error { return errLost }

func (s *lossyStore) write(rec *tokens.KeyRecord, write func(rec *tokens.KeyRecord) error) error {
	plan := s.plan
	s.plan = nil
	if plan == nil {
		return write(rec)
	}
	// The plan may run the write after the call returns: it writes a copy.
	var copied tokens.KeyRecord
	if rec != nil {
		copied = *rec
	}
	err := plan(func() error { return write(&copied) })
	if err == nil && rec != nil {
		rec.Version = copied.Version
	}
	return err
}

func (s *lossyStore) InsertKey(ctx context.Context, rec *tokens.KeyRecord) error {
	return s.write(rec, func(rec *tokens.KeyRecord) error { return s.Store.InsertKey(ctx, rec) })
}

func (s *lossyStore) UpdateKey(ctx context.Context, rec *tokens.KeyRecord) error {
	return s.write(rec, func(rec *tokens.KeyRecord) error { return s.Store.UpdateKey(ctx, rec) })
}

func (s *lossyStore) DeleteKey(ctx context.Context, id string, ev *tokens.Event) error {
	return s.write(nil, func(*tokens.KeyRecord) error { return s.Store.DeleteKey(ctx, id, ev) })
}

// TestLostCommitOutcomes loses the answer of a real write on each backend,
// once after it committed and once before (R18): CreateKey, Renew,
// RedeemLink and DeleteKey report what the database holds.
func TestLostCommitOutcomes(t *testing.T) {
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			c := newCluster(t, b, 1)
			in := c.inst[0]
			lossy := &lossyStore{Store: in.st}
			m, err := tokens.NewManager(lossy, tokens.WithClock(c.clk), tokens.WithShareBaseURL(shareBase))
			require.NoError(t, err)
			ctx := t.Context()
			requireNotApplied := func(t *testing.T, err error) {
				t.Helper()
				require.Error(t, err)
				require.NotErrorIs(t, err, tokens.ErrOutcomeUnknown)
				require.ErrorIs(t, err, context.DeadlineExceeded)
			}
			for _, plan := range []struct {
				name      string
				lose      func(write func() error) error
				committed bool
			}{
				{"Committed", committedThenLost, true},
				{"NotCommitted", lostBeforeCommit, false},
			} {
				t.Run(plan.name, func(t *testing.T) {
					lossy.plan = plan.lose
					key, link, err := m.CreateKey(ctx, tokens.KeySpec{Account: "lossy", Name: plan.name})
					require.NoError(t, err, "an insert is settled by inserting again")

					lossy.plan = plan.lose
					creds, err := m.RedeemLink(ctx, link.URL)
					status, statusErr := m.LinkStatus(ctx, link.URL)
					require.NoError(t, statusErr)
					if plan.committed {
						require.NoError(t, err)
						require.Equal(t, key.ID, creds.KeyID)
						requireVerifies(t, m, creds)
						require.Equal(t, tokens.LinkUsed, status.State)
					} else {
						requireNotApplied(t, err)
						require.Equal(t, tokens.LinkPending, status.State)
						creds, err = m.RedeemLink(ctx, link.URL)
						require.NoError(t, err)
					}

					before, err := in.st.Key(ctx, key.ID)
					require.NoError(t, err)
					lossy.plan = plan.lose
					renewal, err := m.Renew(ctx, key.ID, tokens.RenewOptions{OldToken: tokens.DeleteNow})
					if plan.committed {
						require.NoError(t, err)
						renewed, err := m.RedeemLink(ctx, renewal.URL)
						require.NoError(t, err)
						requireVerifies(t, m, renewed)
						requireRejected(t, m, creds)
					} else {
						requireNotApplied(t, err)
						after, err := in.st.Key(ctx, key.ID)
						require.NoError(t, err)
						before.Version, after.Version = 0, 0
						require.Equal(t, before, after)
						requireVerifies(t, m, creds)
					}

					lossy.plan = plan.lose
					err = m.DeleteKey(ctx, key.ID)
					_, keyErr := m.Key(ctx, key.ID)
					if plan.committed {
						require.NoError(t, err)
						require.ErrorIs(t, keyErr, tokens.ErrKeyNotFound)
					} else {
						requireNotApplied(t, err)
						require.NoError(t, keyErr)
					}
				})
			}
		})
	}
}

// TestLostCommitStillRunning loses the answer of a renewal whose
// transaction is still running on the PostgreSQL server, holding the key's
// row while it waits for a lock another session holds. The
// Manager's fence waits for it: if it then commits, Renew succeeds with
// its link; if it is cancelled, Renew fails and the key is unchanged.
func TestLostCommitStillRunning(t *testing.T) {
	for _, b := range backends {
		if testenv.IsSQLite(b.Driver) {
			continue // one writer at a time: no transaction outlives its call
		}
		t.Run(b.Name, func(t *testing.T) {
			c := newCluster(t, b, 1)
			in := c.inst[0]
			admin := open(t, b.Driver, c.dsn)
			lossy := &lossyStore{Store: in.st}
			m, err := tokens.NewManager(lossy, tokens.WithClock(c.clk), tokens.WithShareBaseURL(shareBase))
			require.NoError(t, err)
			for _, commits := range []bool{true, false} {
				t.Run(fmt.Sprint("Commits=", commits), func(t *testing.T) {
					key := newRenewable(t, in)
					// The lost transaction waits at its last write, holding the
					// key's row.
					blocker, release := pgLock(t, admin, pgLockPoints[1].lock, key.creds.KeyID)
					ctx, cancel := context.WithCancel(t.Context())
					defer cancel()
					// The plan returns once the transaction holds the key's
					// rows and waits; it runs on Renew's goroutine, so it
					// reports a failure to wait as its error.
					orphan := make(chan error, 1)
					lossy.plan = func(write func() error) error {
						go func() { orphan <- write() }()
						if err := waitBlockedBy(admin, blocker); err != nil {
							return err
						}
						return errLost
					}
					type result struct {
						link *tokens.ShareLink
						err  error
					}
					done := make(chan result, 1)
					go func() {
						link, err := m.Renew(ctx, key.creds.KeyID, tokens.RenewOptions{})
						done <- result{link, err}
					}()
					waitForFenceBehind(t, admin, blocker)
					require.Len(t, done, 0, "Renew returned while its transaction was running")
					if !commits {
						cancel()
						require.Error(t, requireEnded(t, orphan, "its context was cancelled"))
					}
					release()
					var r result
					select {
					case r = <-done:
					case <-time.After(interruptWait):
						t.Fatal("Renew did not return")
					}
					if commits {
						require.NoError(t, requireEnded(t, orphan, "its lock was released"))
						require.NoError(t, r.err)
						renewed, err := m.RedeemLink(t.Context(), r.link.URL)
						require.NoError(t, err)
						requireVerifies(t, m, renewed)
						return
					}
					require.Error(t, r.err)
					require.NotErrorIs(t, r.err, tokens.ErrOutcomeUnknown)
					rec, err := in.st.Key(t.Context(), key.creds.KeyID)
					require.NoError(t, err)
					was := key.record
					was.Version, rec.Version = 0, 0
					require.Equal(t, was, rec, "only the fence's version changed")
					requireVerifies(t, m, key.creds)
				})
			}
		})
	}
}

// waitBlockedBy waits until a backend waits for a lock that backend
// blocker holds.
func waitBlockedBy(admin *sqlx.DB, blocker int) error {
	return awaitPostgres(context.Background(), admin, "the lost transaction never waited for the lock",
		`SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid)))`, blocker)
}

// waitForFenceBehind waits until a backend waits for a lock that backend
// blocker holds (the lost transaction) and another for a lock that one
// holds (the fence).
func waitForFenceBehind(t *testing.T, admin *sqlx.DB, blocker int) {
	t.Helper()
	require.NoError(t, awaitPostgres(t.Context(), admin, "no fence waited behind the lost transaction",
		`SELECT EXISTS (SELECT 1 FROM pg_stat_activity w
		WHERE EXISTS (SELECT 1 FROM pg_stat_activity o
			WHERE $1 = ANY(pg_blocking_pids(o.pid)) AND o.pid = ANY(pg_blocking_pids(w.pid))))`, blocker))
}
