package tokens_test

import (
	"context"
	"errors"
	"hash/crc32"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/store/memstore"
)

// testBase is the share base of every fixture unless a test says otherwise.
const testBase = "https://share.example.com/credentials/"

// testStart is where every fixture's mock clock starts: a whole second, so
// that times survive the Manager's truncation to microseconds unchanged.
var testStart = time.Date(2025, 2, 10, 9, 0, 0, 0, time.UTC)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

var (
	tokenPattern  = regexp.MustCompile(`^([a-z][a-z0-9]{0,15})_([0-9A-Za-z]{43})([0-9A-Za-z]{6})$`)
	linkIDPattern = regexp.MustCompile(`^[0-9A-Za-z]{43}$`)
)

// countingStore wraps the real store of a test and counts what the Manager
// asks of it, so that a test can prove the store was never consulted (an
// invalid link, a malformed token) or was written exactly once (one atomic
// step). It can also run a hook before the next UpdateKey, to put another
// caller's write between a Manager's read and its write, or refuse writes.
type countingStore struct {
	tokens.Store
	calls  atomic.Int64
	writes atomic.Int64

	mu           sync.Mutex
	beforeUpdate func()
	failWrites   error
	// afterKey runs once, after the next Key returns from the store and
	// before its caller sees the record.
	afterKey    func()
	everyKey    func() // runs after every Key, if set
	failChanges error
	keyReads    atomic.Int64
	recordUses  atomic.Int64
}

func (s *countingStore) reset() {
	s.calls.Store(0)
	s.writes.Store(0)
}

func (s *countingStore) write() error {
	s.calls.Add(1)
	s.writes.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failWrites
}

// onNextUpdate runs hook once, before the next UpdateKey reaches the store.
func (s *countingStore) onNextUpdate(hook func()) {
	s.mu.Lock()
	s.beforeUpdate = hook
	s.mu.Unlock()
}

func (s *countingStore) failAllWrites(err error) {
	s.mu.Lock()
	s.failWrites = err
	s.mu.Unlock()
}

func (s *countingStore) InsertKey(ctx context.Context, rec *tokens.KeyRecord) error {
	if err := s.write(); err != nil {
		return err
	}
	return s.Store.InsertKey(ctx, rec)
}

func (s *countingStore) Key(ctx context.Context, id string) (tokens.KeyRecord, error) {
	s.calls.Add(1)
	s.keyReads.Add(1)
	rec, err := s.Store.Key(ctx, id)
	s.mu.Lock()
	hook, every := s.afterKey, s.everyKey
	s.afterKey = nil
	s.mu.Unlock()
	if hook != nil {
		hook()
	}
	if every != nil {
		every()
	}
	return rec, err
}

// onNextKey runs hook once, after the next Key has read the store.
func (s *countingStore) onNextKey(hook func()) {
	s.mu.Lock()
	s.afterKey = hook
	s.mu.Unlock()
}

// Changes passes the store's ChangeLog through, or fails as told.
func (s *countingStore) Changes(ctx context.Context, since tokens.ChangePosition) (tokens.Changes, error) {
	s.calls.Add(1)
	s.mu.Lock()
	err := s.failChanges
	s.mu.Unlock()
	if err != nil {
		return tokens.Changes{}, err
	}
	return s.Store.(tokens.ChangeLog).Changes(ctx, since)
}

func (s *countingStore) setFailChanges(err error) {
	s.mu.Lock()
	s.failChanges = err
	s.mu.Unlock()
}

func (s *countingStore) KeyByLink(ctx context.Context, link tokens.Digest) (tokens.KeyRecord, error) {
	s.calls.Add(1)
	return s.Store.KeyByLink(ctx, link)
}

func (s *countingStore) Keys(ctx context.Context, account string) ([]tokens.KeyRecord, error) {
	s.calls.Add(1)
	return s.Store.Keys(ctx, account)
}

func (s *countingStore) UpdateKey(ctx context.Context, rec *tokens.KeyRecord) error {
	if err := s.write(); err != nil {
		return err
	}
	s.mu.Lock()
	hook := s.beforeUpdate
	s.beforeUpdate = nil
	s.mu.Unlock()
	if hook != nil {
		hook()
	}
	return s.Store.UpdateKey(ctx, rec)
}

func (s *countingStore) DeleteKey(ctx context.Context, id string, ev *tokens.Event) error {
	if err := s.write(); err != nil {
		return err
	}
	return s.Store.DeleteKey(ctx, id, ev)
}

func (s *countingStore) RecordUse(ctx context.Context, id string, token tokens.Digest, at, staleBefore time.Time) error {
	if err := s.write(); err != nil {
		return err
	}
	s.recordUses.Add(1)
	return s.Store.RecordUse(ctx, id, token, at, staleBefore)
}

func (s *countingStore) ExpiredLinks(ctx context.Context, now time.Time, limit int) ([]string, error) {
	s.calls.Add(1)
	return s.Store.ExpiredLinks(ctx, now, limit)
}

// fixture is one Manager over a memstore, behind a countingStore, with a
// mock clock at testStart.
type fixture struct {
	t     testing.TB
	ctx   context.Context
	clk   *clock.Mock
	mem   *memstore.Store
	store *countingStore
	m     *tokens.Manager
	// others are the Managers a test fills the caches of (cache_test.go).
	others []*tokens.Manager
}

func newFixture(t testing.TB, opts ...tokens.Option) *fixture {
	t.Helper()
	clk := clock.NewMock()
	clk.Set(testStart)
	mem := memstore.New()
	f := &fixture{t: t, ctx: context.Background(), clk: clk, mem: mem, store: &countingStore{Store: mem}}
	f.m = f.manager(opts...)
	return f
}

// manager returns another Manager over the same store and clock, as a
// second process sharing the database would have.
func (f *fixture) manager(opts ...tokens.Option) *tokens.Manager {
	f.t.Helper()
	all := append([]tokens.Option{tokens.WithClock(f.clk), tokens.WithShareBaseURL(testBase)}, opts...)
	m, err := tokens.NewManager(f.store, all...)
	require.NoError(f.t, err)
	return m
}

func (f *fixture) now() time.Time { return f.clk.Now() }

func (f *fixture) create(account, name string) (*tokens.Key, *tokens.ShareLink) {
	f.t.Helper()
	key, link, err := f.m.CreateKey(f.ctx, tokens.KeySpec{Account: account, Name: name})
	require.NoError(f.t, err)
	return key, link
}

func (f *fixture) redeem(link *tokens.ShareLink) *tokens.Credentials {
	f.t.Helper()
	creds, err := f.m.RedeemLink(f.ctx, link.URL)
	require.NoError(f.t, err)
	return creds
}

// issued creates a key and redeems its link: the state of a key whose
// owner has its token.
func (f *fixture) issued() *tokens.Credentials {
	f.t.Helper()
	_, link := f.create("acme", "erp-sync")
	return f.redeem(link)
}

func (f *fixture) renew(id string, policy tokens.OldTokenPolicy) *tokens.ShareLink {
	f.t.Helper()
	link, err := f.m.Renew(f.ctx, id, tokens.RenewOptions{OldToken: policy})
	require.NoError(f.t, err)
	return link
}

func (f *fixture) key(id string) *tokens.Key {
	f.t.Helper()
	k, err := f.m.Key(f.ctx, id)
	require.NoError(f.t, err)
	return k
}

// record is the memstore's raw record of a key: what a database dump holds.
func (f *fixture) record(id string) tokens.KeyRecord {
	f.t.Helper()
	rec, err := f.mem.Key(f.ctx, id)
	require.NoError(f.t, err)
	return rec
}

func (f *fixture) verifies(keyID, token string) {
	f.t.Helper()
	k, err := f.m.Verify(f.ctx, keyID, token)
	require.NoError(f.t, err)
	require.Equal(f.t, keyID, k.ID)
}

func (f *fixture) rejects(keyID, token string, want error) {
	f.t.Helper()
	k, err := f.m.Verify(f.ctx, keyID, token)
	require.ErrorIs(f.t, err, want)
	require.Nil(f.t, k)
}

// peek reveals the token behind the key's pending link without touching
// the key: it copies the stored record into a scratch store and redeems
// the link there, at the time the link was issued. It needs the link's
// URL, the secret, so it is no way around S2; it lets tests check tokens
// whose links are never redeemed (R4) or not redeemed yet (R8).
func (f *fixture) peek(id string, link *tokens.ShareLink) string {
	f.t.Helper()
	rec := f.record(id)
	scratch := memstore.New()
	require.NoError(f.t, scratch.InsertKey(f.ctx, &rec))
	clk := clock.NewMock()
	clk.Set(rec.Link.CreatedAt)
	m, err := tokens.NewManager(scratch, tokens.WithClock(clk), tokens.WithShareBaseURL(testBase))
	require.NoError(f.t, err)
	creds, err := m.RedeemLink(f.ctx, link.URL)
	require.NoError(f.t, err)
	require.Equal(f.t, id, creds.KeyID)
	return creds.Token
}

// linkID is the secret part of a share link.
func linkID(t testing.TB, url string) string {
	t.Helper()
	id, ok := strings.CutPrefix(url, testBase)
	require.True(t, ok, "link does not start with the share base")
	return id
}

// tokenChecksum is the documented token checksum: the CRC32 (IEEE) of
// everything before it, as 6 base62 digits, most significant first.
// TestS1_TokenFormat checks it against real tokens.
func tokenChecksum(head string) string {
	v := uint64(crc32.ChecksumIEEE([]byte(head)))
	var out [6]byte
	for i := len(out) - 1; i >= 0; i-- {
		out[i] = base62[v%62]
		v /= 62
	}
	return string(out[:])
}

// forgeToken returns a well-formed token (right form, right checksum) that
// the Manager never issued.
func forgeToken(prefix, body string) string {
	head := prefix + "_" + body
	return head + tokenChecksum(head)
}

// wellFormedToken is a reference for what the Manager accepts as a token
// before it looks at the store.
func wellFormedToken(token string) bool {
	m := tokenPattern.FindStringSubmatch(token)
	return m != nil && tokenChecksum(m[1]+"_"+m[2]) == m[3]
}

// replaceAt returns s with the byte at i replaced by another base62
// character.
func replaceAt(s string, i int) string {
	c := byte('A')
	if s[i] == 'A' {
		c = 'B'
	}
	return s[:i] + string(c) + s[i+1:]
}

// collect runs n copies of op at once, released together, and returns
// their errors for the test goroutine to check.
func collect(n int, op func(i int) error) []error {
	start := make(chan struct{})
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs <- op(i)
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	out := make([]error, 0, n)
	for err := range errs {
		out = append(out, err)
	}
	return out
}

// tally counts nil errors and errors matching want, and returns any other.
func tally(errs []error, want error) (ok, matched int, others []error) {
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case want != nil && errors.Is(err, want):
			matched++
		default:
			others = append(others, err)
		}
	}
	return ok, matched, others
}

// requireTime fails unless got is the same instant as want.
func requireTime(t testing.TB, want, got time.Time, what string) {
	t.Helper()
	require.Truef(t, want.Equal(got), "%s: want %s, got %s", what, want, got)
}

// flipChar is a character other than c, for a token one character off.
func flipChar(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}
