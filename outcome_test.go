package tokens_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens"
)

// nilCtxSpy is a store that records any call made with a nil context.
type nilCtxSpy struct {
	tokens.Store
	mu    sync.Mutex
	calls []string
}

func (s *nilCtxSpy) check(ctx context.Context, method string) {
	if ctx == nil {
		s.mu.Lock()
		s.calls = append(s.calls, method)
		s.mu.Unlock()
	}
}

func (s *nilCtxSpy) InsertKey(ctx context.Context, rec *tokens.KeyRecord) error {
	s.check(ctx, "InsertKey")
	return s.Store.InsertKey(ctx, rec)
}

func (s *nilCtxSpy) Key(ctx context.Context, id string) (tokens.KeyRecord, error) {
	s.check(ctx, "Key")
	return s.Store.Key(ctx, id)
}

func (s *nilCtxSpy) KeyByLink(ctx context.Context, link tokens.Digest) (tokens.KeyRecord, error) {
	s.check(ctx, "KeyByLink")
	return s.Store.KeyByLink(ctx, link)
}

func (s *nilCtxSpy) Keys(ctx context.Context, account string) ([]tokens.KeyRecord, error) {
	s.check(ctx, "Keys")
	return s.Store.Keys(ctx, account)
}

func (s *nilCtxSpy) UpdateKey(ctx context.Context, rec *tokens.KeyRecord) error {
	s.check(ctx, "UpdateKey")
	return s.Store.UpdateKey(ctx, rec)
}

func (s *nilCtxSpy) DeleteKey(ctx context.Context, id string, ev *tokens.Event) error {
	s.check(ctx, "DeleteKey")
	return s.Store.DeleteKey(ctx, id, ev)
}

func (s *nilCtxSpy) RecordUse(ctx context.Context, id string, token tokens.Digest, at, staleBefore time.Time) error {
	s.check(ctx, "RecordUse")
	return s.Store.RecordUse(ctx, id, token, at, staleBefore)
}

func (s *nilCtxSpy) ExpiredLinks(ctx context.Context, now time.Time, limit int) ([]string, error) {
	s.check(ctx, "ExpiredLinks")
	return s.Store.ExpiredLinks(ctx, now, limit)
}

// nilContextCalls calls every exported Manager method that takes a
// context with a nil one and arguments that would otherwise reach the
// store: a key that exists, a pending link, a token of the key. It
// returns each call's error by method name.
func nilContextCalls(m *tokens.Manager, keyID, linkURL, token string) map[string]error {
	var ctx context.Context // nil
	errs := map[string]error{}
	errs["CreateKey"] = second(m.CreateKey(ctx, tokens.KeySpec{Account: "acme", Name: "nil"}))
	errs["Key"] = first(m.Key(ctx, keyID))
	errs["Keys"] = first(m.Keys(ctx, "acme"))
	errs["Verify"] = first(m.Verify(ctx, keyID, token))
	errs["Activate"] = m.Activate(ctx, keyID)
	errs["Deactivate"] = m.Deactivate(ctx, keyID)
	errs["DeleteKey"] = m.DeleteKey(ctx, keyID)
	errs["Renew"] = first(m.Renew(ctx, keyID, tokens.RenewOptions{}))
	errs["DeleteOld"] = m.DeleteOld(ctx, keyID)
	errs["Undo"] = m.Undo(ctx, keyID)
	errs["RedeemLink"] = first(m.RedeemLink(ctx, linkURL))
	errs["LinkStatus"] = first(m.LinkStatus(ctx, linkURL))
	errs["RevokeLink"] = m.RevokeLink(ctx, keyID)
	errs["Events"] = first(m.Events(ctx, tokens.EventQuery{}))
	errs["Accounts"] = first(m.Accounts(ctx))
	errs["ExpireOld"] = m.ExpireOld(ctx, keyID, time.Hour)
	errs["PurgeEvents"] = first(m.PurgeEvents(ctx, time.Hour))
	errs["PurgeExpired"] = first(m.PurgeExpired(ctx))
	errs["VerifyToken"] = first(m.VerifyToken(ctx, token))
	errs["UpdateKey"] = m.UpdateKey(ctx, keyID, tokens.KeyUpdate{Name: new("nil")})
	errs["ImportKey"] = first(m.ImportKey(ctx, tokens.ImportSpec{KeySpec: tokens.KeySpec{Name: "nil"}, Token: token + "x"}))
	errs["ReportLeak"] = first(m.ReportLeak(ctx, token, tokens.Leak{Source: "nil"}))
	return errs
}

func first[T any](_ T, err error) error { return err }

func second[T, U any](_ T, _ U, err error) error { return err }

// requireContextMethodsCovered checks that calls names every exported
// Manager method whose first argument is a context, so that a method
// added later is not left out.
func requireContextMethodsCovered(t *testing.T, calls map[string]error) {
	t.Helper()
	ctxType := reflect.TypeFor[context.Context]()
	mt := reflect.TypeFor[*tokens.Manager]()
	for i := range mt.NumMethod() {
		method := mt.Method(i)
		if method.Type.NumIn() > 1 && method.Type.In(1) == ctxType {
			require.Contains(t, calls, method.Name, "add %s to nilContextCalls", method.Name)
		}
	}
}

// TestNilContext calls every Manager method that takes a context with a
// nil one (R18): each returns ErrNilContext, without a panic and without
// a store call, and the key is untouched.
func TestNilContext(t *testing.T) {
	f := newFixture(t)
	spy := &nilCtxSpy{Store: f.mem}
	f.store.Store = spy
	creds := f.issued()
	f.renew(creds.KeyID, tokens.DeleteLater) // an old token, for DeleteOld and Undo
	_, pending := f.create("acme", "pending")
	before := f.record(creds.KeyID)

	calls := nilContextCalls(f.m, creds.KeyID, pending.URL, creds.Token)
	requireContextMethodsCovered(t, calls)
	for method, err := range calls {
		require.ErrorIs(t, err, tokens.ErrNilContext, method)
	}
	require.Empty(t, spy.calls, "store methods called with a nil context")
	require.Equal(t, before, f.record(creds.KeyID))
}

// errLost is what a store returns for a write whose COMMIT got no answer.
var errLost = fmt.Errorf("lossy store: commit: %w (%w)", context.DeadlineExceeded, tokens.ErrOutcomeUnknown)

// lossyStore delegates to a real store, except that it hands its next
// write to a plan: the plan decides whether the write reaches the store
// and what the Manager is told. Like a real store, it leaves the record's
// version as it was when it returns an error.
type lossyStore struct {
	tokens.Store
	mu   sync.Mutex
	plan func(write func() error) error
	down error // every read fails with it, when set
}

// loseNext makes the next write go through plan.
func (s *lossyStore) loseNext(plan func(write func() error) error) {
	s.mu.Lock()
	s.plan = plan
	s.mu.Unlock()
}

func (s *lossyStore) goDown(err error) {
	s.mu.Lock()
	s.down = err
	s.mu.Unlock()
}

func (s *lossyStore) write(rec *tokens.KeyRecord, write func() error) error {
	s.mu.Lock()
	plan := s.plan
	s.plan = nil
	s.mu.Unlock()
	if plan == nil {
		return write()
	}
	var version int64
	if rec != nil {
		version = rec.Version
	}
	err := plan(write)
	if err != nil && rec != nil {
		rec.Version = version
	}
	return err
}

func (s *lossyStore) InsertKey(ctx context.Context, rec *tokens.KeyRecord) error {
	return s.write(rec, func() error { return s.Store.InsertKey(ctx, rec) })
}

func (s *lossyStore) UpdateKey(ctx context.Context, rec *tokens.KeyRecord) error {
	return s.write(rec, func() error { return s.Store.UpdateKey(ctx, rec) })
}

func (s *lossyStore) DeleteKey(ctx context.Context, id string, ev *tokens.Event) error {
	return s.write(nil, func() error { return s.Store.DeleteKey(ctx, id, ev) })
}

func (s *lossyStore) Key(ctx context.Context, id string) (tokens.KeyRecord, error) {
	s.mu.Lock()
	down := s.down
	s.mu.Unlock()
	if down != nil {
		return tokens.KeyRecord{}, down
	}
	return s.Store.Key(ctx, id)
}

// committedThenLost writes, and then says the outcome is unknown.
func committedThenLost(write func() error) error {
	if err := write(); err != nil {
		return err
	}
	return errLost
}

// lostBeforeCommit writes nothing, and says the outcome is unknown.
func lostBeforeCommit(func() error) error {
	return errLost
}

// lossyFixture is a fixture whose store can lose the answer of a write.
func lossyFixture(t *testing.T) (*fixture, *lossyStore) {
	f := newFixture(t)
	lossy := &lossyStore{Store: f.mem}
	f.store.Store = lossy
	return f, lossy
}

// outcomeCase is a change whose outcome the store loses: prepare makes
// the key it needs (none for CreateKey), change makes the change, and
// applied checks that it took effect. An insert is settled by inserting
// again, so that it succeeds also when the first one did not commit.
type outcomeCase struct {
	name    string
	prepare func(f *fixture) string
	change  func(f *fixture, id string) (applied func(t *testing.T), err error)
	insert  bool
}

func outcomeCases() []outcomeCase {
	issued := func(f *fixture) string { return f.issued().KeyID }
	renewed := func(f *fixture) string {
		id := f.issued().KeyID
		f.renew(id, tokens.DeleteLater)
		return id
	}
	renew := func(policy tokens.OldTokenPolicy) func(f *fixture, id string) (func(*testing.T), error) {
		return func(f *fixture, id string) (func(*testing.T), error) {
			link, err := f.m.Renew(f.ctx, id, tokens.RenewOptions{OldToken: policy})
			return func(t *testing.T) {
				creds := f.redeem(link)
				f.verifies(id, creds.Token)
			}, err
		}
	}
	return []outcomeCase{
		{
			name: "CreateKey", insert: true,
			change: func(f *fixture, _ string) (func(*testing.T), error) {
				key, link, err := f.m.CreateKey(f.ctx, tokens.KeySpec{Account: "lossy", Name: "created"})
				return func(t *testing.T) {
					require.Equal(t, key.ID, f.redeem(link).KeyID)
				}, err
			},
		},
		{name: "RenewDeleteLater", prepare: issued, change: renew(tokens.DeleteLater)},
		{name: "RenewDeleteNow", prepare: issued, change: renew(tokens.DeleteNow)},
		{
			name: "RedeemLink",
			prepare: func(f *fixture) string {
				_, link := f.create("acme", "pending")
				return link.URL // the case's "id" is the link
			},
			change: func(f *fixture, url string) (func(*testing.T), error) {
				creds, err := f.m.RedeemLink(f.ctx, url)
				return func(t *testing.T) {
					f.verifies(creds.KeyID, creds.Token)
					_, err := f.m.RedeemLink(f.ctx, url)
					require.ErrorIs(t, err, tokens.ErrLinkUsed)
				}, err
			},
		},
		{
			name: "DeleteOld", prepare: renewed,
			change: func(f *fixture, id string) (func(*testing.T), error) {
				return func(t *testing.T) { require.Nil(t, f.key(id).OldToken) }, f.m.DeleteOld(f.ctx, id)
			},
		},
		{
			name: "Undo", prepare: renewed,
			change: func(f *fixture, id string) (func(*testing.T), error) {
				return func(t *testing.T) {
					require.Nil(t, f.key(id).OldToken)
					require.Equal(t, tokens.LinkNotFound, f.key(id).Link)
				}, f.m.Undo(f.ctx, id)
			},
		},
		{
			name: "Deactivate", prepare: issued,
			change: func(f *fixture, id string) (func(*testing.T), error) {
				return func(t *testing.T) { require.False(t, f.key(id).Active) }, f.m.Deactivate(f.ctx, id)
			},
		},
		{
			name: "Activate",
			prepare: func(f *fixture) string {
				id := f.issued().KeyID
				require.NoError(f.t, f.m.Deactivate(f.ctx, id))
				return id
			},
			change: func(f *fixture, id string) (func(*testing.T), error) {
				return func(t *testing.T) { require.True(t, f.key(id).Active) }, f.m.Activate(f.ctx, id)
			},
		},
		{
			name: "DeleteKey", prepare: issued,
			change: func(f *fixture, id string) (func(*testing.T), error) {
				return func(t *testing.T) {
					_, err := f.m.Key(f.ctx, id)
					require.ErrorIs(t, err, tokens.ErrKeyNotFound)
				}, f.m.DeleteKey(f.ctx, id)
			},
		},
		{
			name: "PurgeExpired",
			prepare: func(f *fixture) string {
				key, _ := f.create("acme", "expiring")
				f.clk.Add(25 * time.Hour)
				return key.ID
			},
			change: func(f *fixture, id string) (func(*testing.T), error) {
				_, err := f.m.PurgeExpired(f.ctx)
				return func(t *testing.T) { require.Nil(t, f.record(id).Link.Sealed) }, err
			},
		},
	}
}

// snapshot is every key of the fixture's store, versions aside: a fence
// write bumps a version and changes nothing else.
func snapshot(t *testing.T, f *fixture) map[string]tokens.KeyRecord {
	t.Helper()
	recs := map[string]tokens.KeyRecord{}
	for _, account := range []string{"acme", "lossy"} {
		list, err := f.mem.Keys(f.ctx, account)
		require.NoError(t, err)
		for _, rec := range list {
			rec.Version = 0
			recs[rec.ID] = rec
		}
	}
	return recs
}

// TestOutcomeOfLostCommit makes the store lose the answer to each kind of
// write, once after the write committed and once before (R18): the first
// is reported as a success, with its link, the second as an error that is
// not ErrOutcomeUnknown, and leaves every key as it was; but CreateKey
// inserts its key again and succeeds.
func TestOutcomeOfLostCommit(t *testing.T) {
	for _, c := range outcomeCases() {
		t.Run(c.name, func(t *testing.T) {
			t.Run("Committed", func(t *testing.T) {
				f, lossy := lossyFixture(t)
				var id string
				if c.prepare != nil {
					id = c.prepare(f)
				}
				lossy.loseNext(committedThenLost)
				applied, err := c.change(f, id)
				require.NoError(t, err)
				applied(t)
			})
			t.Run("NotCommitted", func(t *testing.T) {
				f, lossy := lossyFixture(t)
				var id string
				if c.prepare != nil {
					id = c.prepare(f)
				}
				before := snapshot(t, f)
				lossy.loseNext(lostBeforeCommit)
				applied, err := c.change(f, id)
				if c.insert {
					require.NoError(t, err)
					applied(t)
					require.Len(t, snapshot(t, f), len(before)+1)
					return
				}
				require.Error(t, err)
				require.NotErrorIs(t, err, tokens.ErrOutcomeUnknown)
				require.ErrorIs(t, err, context.DeadlineExceeded, "the store's error is kept")
				require.Equal(t, before, snapshot(t, f))
			})
		})
	}
}

// TestOutcomeAnotherWriteWon loses a renewal whose compare-and-swap lost
// to another process's write: the key holds the other write, and Renew
// reports an error, not a success.
func TestOutcomeAnotherWriteWon(t *testing.T) {
	f, lossy := lossyFixture(t)
	other := f.manager()
	creds := f.issued()
	lossy.loseNext(func(func() error) error {
		require.NoError(t, other.Deactivate(f.ctx, creds.KeyID))
		return errLost
	})
	_, err := f.m.Renew(f.ctx, creds.KeyID, tokens.RenewOptions{})
	require.Error(t, err)
	require.NotErrorIs(t, err, tokens.ErrOutcomeUnknown)
	require.Nil(t, f.key(creds.KeyID).OldToken, "the renewal did not happen")
	require.False(t, f.key(creds.KeyID).Active)
}

// TestOutcomeChangedAgain commits a write and lets another process change
// the key before the Manager looks: a renewal is still recognised by its
// new link; a deactivation, which holds nothing random, cannot be, and
// gives ErrOutcomeUnknown.
func TestOutcomeChangedAgain(t *testing.T) {
	t.Run("Renew", func(t *testing.T) {
		f, lossy := lossyFixture(t)
		other := f.manager()
		creds := f.issued()
		lossy.loseNext(func(write func() error) error {
			require.NoError(t, write())
			require.NoError(t, other.Deactivate(f.ctx, creds.KeyID))
			return errLost
		})
		link, err := f.m.Renew(f.ctx, creds.KeyID, tokens.RenewOptions{})
		require.NoError(t, err)
		require.Equal(t, creds.KeyID, f.redeem(link).KeyID)
	})
	t.Run("Deactivate", func(t *testing.T) {
		f, lossy := lossyFixture(t)
		other := f.manager()
		creds := f.issued()
		lossy.loseNext(func(write func() error) error {
			require.NoError(t, write())
			require.NoError(t, other.Activate(f.ctx, creds.KeyID))
			return errLost
		})
		// Nothing random in the record, but the trail has its event.
		require.NoError(t, f.m.Deactivate(f.ctx, creds.KeyID))
	})
	t.Run("DeletedSince", func(t *testing.T) {
		f, lossy := lossyFixture(t)
		other := f.manager()
		creds := f.issued()
		lossy.loseNext(func(write func() error) error {
			require.NoError(t, write())
			require.NoError(t, other.DeleteKey(f.ctx, creds.KeyID))
			return errLost
		})
		// The key is gone, but its renewal's event is in the trail.
		_, err := f.m.Renew(f.ctx, creds.KeyID, tokens.RenewOptions{})
		require.NoError(t, err)
	})
}

// TestOutcomeCannotBeChecked loses a write's answer while the store stays
// down: the error matches ErrOutcomeUnknown, the write's error and the
// error that stopped the Manager from finding out.
func TestOutcomeCannotBeChecked(t *testing.T) {
	errDown := errors.New("database down")
	for _, plan := range []func(func() error) error{committedThenLost, lostBeforeCommit} {
		f, lossy := lossyFixture(t)
		creds := f.issued()
		lossy.loseNext(func(write func() error) error {
			lossy.goDown(errDown)
			return plan(write)
		})
		_, err := f.m.Renew(f.ctx, creds.KeyID, tokens.RenewOptions{})
		require.ErrorIs(t, err, tokens.ErrOutcomeUnknown)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.ErrorIs(t, err, errDown)
	}
}

// TestOutcomeCheckOutlivesCallerDeadline loses a write's answer after the
// caller's context has ended: the Manager still finds out, on a context of
// its own.
func TestOutcomeCheckOutlivesCallerDeadline(t *testing.T) {
	f, lossy := lossyFixture(t)
	creds := f.issued()
	ctx, cancel := context.WithCancel(f.ctx)
	lossy.loseNext(func(write func() error) error {
		require.NoError(t, write())
		cancel()
		return errLost
	})
	link, err := f.m.Renew(ctx, creds.KeyID, tokens.RenewOptions{})
	require.NoError(t, err)
	require.Equal(t, creds.KeyID, f.redeem(link).KeyID)
}

// TestOutcomeOfAnotherCallersSameChange: Undo, DeleteOld and DeleteKey
// write no random value, so another caller's identical change looks like
// ours in the record; its event, with its own actor and time, does not.
// The lost call is then refused, as it would have been with its answer,
// and the trail keeps one event, the other caller's.
func TestOutcomeOfAnotherCallersSameChange(t *testing.T) {
	for _, tc := range []struct {
		name string
		prep func(f *fixture, id string)
		do   func(m *tokens.Manager, f *fixture, actor, id string) error
		want error
	}{
		{"Undo", func(f *fixture, id string) { f.renew(id, tokens.DeleteLater) },
			func(m *tokens.Manager, f *fixture, a, id string) error { return m.Undo(tokens.WithActor(f.ctx, a), id) },
			nil},
		{"DeleteOld", func(f *fixture, id string) { f.renew(id, tokens.DeleteLater) },
			func(m *tokens.Manager, f *fixture, a, id string) error {
				return m.DeleteOld(tokens.WithActor(f.ctx, a), id)
			},
			nil},
		{"DeleteKey", func(*fixture, string) {},
			func(m *tokens.Manager, f *fixture, a, id string) error {
				return m.DeleteKey(tokens.WithActor(f.ctx, a), id)
			},
			tokens.ErrKeyNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, lossy := lossyFixture(t)
			other := f.manager()
			creds := f.issued()
			tc.prep(f, creds.KeyID)
			lossy.loseNext(func(func() error) error {
				f.clk.Add(time.Millisecond)
				require.NoError(t, tc.do(other, f, "bob", creds.KeyID))
				return errLost
			})
			err := tc.do(f.m, f, "alice", creds.KeyID)
			require.Error(t, err, "another caller's change was reported as this one's")
			require.NotErrorIs(t, err, tokens.ErrOutcomeUnknown)
			if tc.want != nil {
				require.ErrorIs(t, err, tc.want)
			}
			events, err := f.m.Events(f.ctx, tokens.EventQuery{KeyID: creds.KeyID})
			require.NoError(t, err)
			last := events[len(events)-1]
			require.Equal(t, "bob", last.Actor)
		})
	}
}

// TestOutcomeAfterALastUseWrite: a Verify's last-use write moves the
// version on without a change of the key; the lost write is still found
// by its event.
func TestOutcomeAfterALastUseWrite(t *testing.T) {
	f, lossy := lossyFixture(t)
	old := f.issued()
	renewed := f.redeem(f.renew(old.KeyID, tokens.DeleteLater))
	f.clk.Add(2 * time.Minute)
	lossy.loseNext(func(write func() error) error {
		require.NoError(t, write())
		f.clk.Add(2 * time.Minute)
		f.verifies(renewed.KeyID, renewed.Token) // a last use: a version bump
		return errLost
	})
	require.NoError(t, f.m.DeleteOld(f.ctx, old.KeyID))
	f.rejects(old.KeyID, old.Token, tokens.ErrInvalidCredentials)
}
