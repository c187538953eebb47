package tokens_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/store/memstore"
)

// staleness is the MaxStaleness of the cache tests.
const staleness = 500 * time.Millisecond

func cached() tokens.Option {
	return tokens.WithVerifyCache(tokens.CacheConfig{MaxStaleness: staleness})
}

func TestC1_AcceptanceIsServedFromMemory(t *testing.T) {
	f := newFixture(t, cached())
	creds := f.issued()
	f.verifies(creds.KeyID, creds.Token) // fills the cache
	before := f.store.keyReads.Load()
	for range 10 {
		f.verifies(creds.KeyID, creds.Token)
	}
	require.Equal(t, before, f.store.keyReads.Load(), "a cached acceptance read the store")

	// Past MaxStaleness one small question to the store confirms the
	// cache; the key itself is not read again.
	f.clk.Add(staleness)
	f.verifies(creds.KeyID, creds.Token)
	require.Equal(t, before, f.store.keyReads.Load())
}

func TestC1_RefusalsAreConfirmedByTheStore(t *testing.T) {
	f := newFixture(t, cached())
	creds := f.issued()
	other := f.issued()
	f.verifies(creds.KeyID, creds.Token)
	before := f.store.keyReads.Load()
	for range 5 {
		f.rejects(creds.KeyID, other.Token, tokens.ErrInvalidCredentials)
	}
	require.Equal(t, before+5, f.store.keyReads.Load(), "a refusal came from memory")
}

// TestC1_NewTokenFromAnotherProcessVerifiesAtOnce: the cache of one Manager
// never refuses what the store accepts, here a token renewed by another
// Manager a moment ago, while the cache still holds the key.
func TestC1_NewTokenFromAnotherProcessVerifiesAtOnce(t *testing.T) {
	f := newFixture(t, cached())
	creds := f.issued()
	f.verifies(creds.KeyID, creds.Token)
	operator := f.manager()
	link, err := operator.Renew(f.ctx, creds.KeyID, tokens.RenewOptions{OldToken: tokens.DeleteLater})
	require.NoError(t, err)
	renewed, err := operator.RedeemLink(f.ctx, link.URL)
	require.NoError(t, err)
	f.verifies(renewed.KeyID, renewed.Token)
	f.verifies(creds.KeyID, creds.Token)
}

// revocations are the calls that stop a token verifying (C2), each with a
// token it stops.
var revocations = []struct {
	name   string
	revoke func(t *testing.T, f *fixture, m *tokens.Manager) (keyID, token string)
}{
	{"DeleteOld", func(t *testing.T, f *fixture, m *tokens.Manager) (string, string) {
		old, _ := renewedPair(t, f)
		require.NoError(t, m.DeleteOld(f.ctx, old.KeyID))
		return old.KeyID, old.Token
	}},
	{"Undo", func(t *testing.T, f *fixture, m *tokens.Manager) (string, string) {
		_, renewed := renewedPair(t, f)
		require.NoError(t, m.Undo(f.ctx, renewed.KeyID))
		return renewed.KeyID, renewed.Token
	}},
	{"RenewDeleteNow", func(t *testing.T, f *fixture, m *tokens.Manager) (string, string) {
		creds := f.issued()
		verifyEverywhere(t, f, creds)
		_, err := m.Renew(f.ctx, creds.KeyID, tokens.RenewOptions{OldToken: tokens.DeleteNow})
		require.NoError(t, err)
		return creds.KeyID, creds.Token
	}},
	{"Deactivate", func(t *testing.T, f *fixture, m *tokens.Manager) (string, string) {
		creds := f.issued()
		verifyEverywhere(t, f, creds)
		require.NoError(t, m.Deactivate(f.ctx, creds.KeyID))
		return creds.KeyID, creds.Token
	}},
	{"DeleteKey", func(t *testing.T, f *fixture, m *tokens.Manager) (string, string) {
		creds := f.issued()
		verifyEverywhere(t, f, creds)
		require.NoError(t, m.DeleteKey(f.ctx, creds.KeyID))
		return creds.KeyID, creds.Token
	}},
}

// renewedPair makes a key renewed with DeleteLater whose old and new tokens
// both verify, in every Manager of the test (so both are cached).
func renewedPair(t *testing.T, f *fixture) (old, renewed *tokens.Credentials) {
	old = f.issued()
	renewed = f.redeem(f.renew(old.KeyID, tokens.DeleteLater))
	verifyEverywhere(t, f, old)
	verifyEverywhere(t, f, renewed)
	return old, renewed
}

// verifyEverywhere verifies creds in every Manager in f.others, filling
// their caches.
func verifyEverywhere(t *testing.T, f *fixture, creds *tokens.Credentials) {
	t.Helper()
	for _, m := range f.others {
		_, err := m.Verify(f.ctx, creds.KeyID, creds.Token)
		require.NoError(t, err)
	}
}

// TestC2_RevocationIsHonouredAtOnceHereAndWithinMaxStalenessElsewhere: the
// Manager that revokes refuses the token at once; another Manager sharing
// the store may accept it until MaxStaleness has passed on the clock, and
// never after.
func TestC2_RevocationIsHonouredAtOnceHereAndWithinMaxStalenessElsewhere(t *testing.T) {
	for _, r := range revocations {
		t.Run(r.name, func(t *testing.T) {
			f := newFixture(t, cached())
			elsewhere := f.manager(cached())
			f.others = []*tokens.Manager{f.m, elsewhere}
			keyID, token := r.revoke(t, f, f.m)
			_, err := f.m.Verify(f.ctx, keyID, token)
			require.Error(t, err, "the revoking Manager accepted the token")

			f.clk.Add(staleness - time.Microsecond)
			_, err = elsewhere.Verify(f.ctx, keyID, token)
			require.NoError(t, err, "within MaxStaleness the cache may still accept: the test shows it does")
			f.clk.Add(time.Microsecond)
			_, err = elsewhere.Verify(f.ctx, keyID, token)
			require.Error(t, err, "accepted MaxStaleness after the revocation returned")
			require.True(t, errors.Is(err, tokens.ErrInvalidCredentials) || errors.Is(err, tokens.ErrKeyInactive), "%v", err)
		})
	}
}

// TestC2_FailsClosedWhenTheStoreCannotConfirm: while the change log cannot
// be read (a database down, a connection killed), a Manager whose cache is
// older than MaxStaleness reads the store instead of trusting memory.
func TestC2_FailsClosedWhenTheStoreCannotConfirm(t *testing.T) {
	f := newFixture(t, cached())
	elsewhere := f.manager(cached())
	f.others = []*tokens.Manager{elsewhere}
	creds := f.issued()
	verifyEverywhere(t, f, creds)
	f.store.setFailChanges(errors.New("connection refused"))
	require.NoError(t, f.manager().Deactivate(f.ctx, creds.KeyID))

	f.clk.Add(staleness)
	before := f.store.keyReads.Load()
	_, err := elsewhere.Verify(f.ctx, creds.KeyID, creds.Token)
	require.ErrorIs(t, err, tokens.ErrKeyInactive)
	require.Greater(t, f.store.keyReads.Load(), before, "the store was not read")

	// Valid tokens keep verifying, from the store, until the log answers.
	valid := f.issued()
	for range 3 {
		before := f.store.keyReads.Load()
		_, err := elsewhere.Verify(f.ctx, valid.KeyID, valid.Token)
		require.NoError(t, err)
		require.Equal(t, before+1, f.store.keyReads.Load())
	}
	f.store.setFailChanges(nil)
	_, err = elsewhere.Verify(f.ctx, valid.KeyID, valid.Token)
	require.NoError(t, err)
	before = f.store.keyReads.Load()
	_, err = elsewhere.Verify(f.ctx, valid.KeyID, valid.Token)
	require.NoError(t, err)
	require.Equal(t, before, f.store.keyReads.Load(), "the cache did not resume")
}

// TestC2_AFillThatReadBeforeARevocationNeverOverwritesIt is the race that
// caches are known for: a Verify reads the store, the key is revoked and
// the cache told so, and then the Verify puts what it read back.
func TestC2_AFillThatReadBeforeARevocationNeverOverwritesIt(t *testing.T) {
	f := newFixture(t, cached())
	elsewhere := f.manager(cached())
	creds := f.issued()
	unrelated := f.issued()
	_, err := elsewhere.Verify(f.ctx, unrelated.KeyID, unrelated.Token) // a confirmed cache
	require.NoError(t, err)

	read, resume := make(chan struct{}), make(chan struct{})
	f.store.onNextKey(func() {
		close(read)
		<-resume
	})
	done := make(chan error, 1)
	go func() {
		_, err := elsewhere.Verify(f.ctx, creds.KeyID, creds.Token)
		done <- err
	}()
	<-read // the Verify has read the key as active
	require.NoError(t, f.m.Deactivate(f.ctx, creds.KeyID))
	f.clk.Add(staleness)
	_, err = elsewhere.Verify(f.ctx, unrelated.KeyID, unrelated.Token) // confirms: the key changed
	require.NoError(t, err)
	close(resume)
	require.NoError(t, <-done, "the Verify began before the revocation")

	_, err = elsewhere.Verify(f.ctx, creds.KeyID, creds.Token)
	require.ErrorIs(t, err, tokens.ErrKeyInactive, "a fill older than the revocation was cached")
}

// TestC2_FillsRacingRevocationsNeverAcceptLate races verifiers that fill
// the cache against revocations made by another Manager: once a revocation
// has returned and MaxStaleness has passed on the clock, no Verify that
// starts accepts the token.
func TestC2_FillsRacingRevocationsNeverAcceptLate(t *testing.T) {
	f := newFixture(t, cached())
	verifier := f.manager(cached())
	operator := f.manager()
	const rounds, verifiers = 100, 4
	for round := range rounds {
		creds := f.issued()
		var (
			mu       sync.Mutex
			deadline time.Time // zero until the revocation returned
			late     []time.Time
			stop     = make(chan struct{})
			wg       sync.WaitGroup
		)
		for range verifiers {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					start := f.clk.Now()
					_, err := verifier.Verify(f.ctx, creds.KeyID, creds.Token)
					mu.Lock()
					if err == nil && !deadline.IsZero() && !start.Before(deadline) {
						late = append(late, start)
					}
					mu.Unlock()
				}
			})
		}
		var err error
		switch round % 3 {
		case 0:
			err = operator.Deactivate(f.ctx, creds.KeyID)
		case 1:
			err = operator.DeleteKey(f.ctx, creds.KeyID)
		default:
			_, err = operator.Renew(f.ctx, creds.KeyID, tokens.RenewOptions{OldToken: tokens.DeleteNow})
		}
		require.NoError(t, err)
		mu.Lock()
		deadline = f.clk.Now().Add(staleness)
		mu.Unlock()
		f.clk.Add(staleness / 2)
		f.clk.Add(staleness / 2)
		for range 20 { // let the verifiers run past the deadline
			_, err := verifier.Verify(f.ctx, creds.KeyID, creds.Token)
			require.Error(t, err, "round %d: accepted after the bound", round)
		}
		close(stop)
		wg.Wait()
		require.Empty(t, late, "round %d: Verify started at or after %v accepted", round, deadline)
	}
}

func TestC3_MemoryIsBoundedAndBadCredentialsTakeNone(t *testing.T) {
	f := newFixture(t, tokens.WithVerifyCache(tokens.CacheConfig{MaxKeys: 3, MaxStaleness: staleness}))
	var all []*tokens.Credentials
	for range 10 {
		creds := f.issued()
		all = append(all, creds)
		f.verifies(creds.KeyID, creds.Token)
	}
	// Every token still verifies; only 3 keys come from memory.
	before := f.store.keyReads.Load()
	for _, creds := range all {
		f.verifies(creds.KeyID, creds.Token)
	}
	require.GreaterOrEqual(t, f.store.keyReads.Load()-before, int64(len(all)-3))
	for _, creds := range all {
		f.rejects(creds.KeyID, all[0].Token[:len(all[0].Token)-1]+flipChar(all[0].Token[len(all[0].Token)-1]), tokens.ErrInvalidCredentials)
	}
}

// TestC3_LastUseIsRecordedOncePerMinuteAndOncePerProcess: many goroutines
// verifying one key as its last use goes stale write it once, with the
// cache and without it.
func TestC3_LastUseIsRecordedOncePerMinuteAndOncePerProcess(t *testing.T) {
	t.Run("cached", func(t *testing.T) { testLastUseOncePerProcess(t, cached()) })
	t.Run("uncached", func(t *testing.T) { testLastUseOncePerProcess(t) })
}

func testLastUseOncePerProcess(t *testing.T, opts ...tokens.Option) {
	const herd = 32
	f := newFixture(t, opts...)
	creds := f.issued()
	f.verifies(creds.KeyID, creds.Token) // the first use, recorded at once
	require.Equal(t, int64(1), f.store.recordUses.Load())
	requireTime(t, f.now(), f.key(creds.KeyID).Token.LastUsedAt, "first use")

	f.clk.Add(30 * time.Second)
	f.verifies(creds.KeyID, creds.Token)
	require.Equal(t, int64(1), f.store.recordUses.Load(), "recorded within the minute")

	f.clk.Add(30 * time.Second)
	if len(opts) == 0 {
		// Every goroutine reads the stale last use before any writes it.
		var read sync.WaitGroup
		read.Add(herd)
		f.store.mu.Lock()
		f.store.everyKey = func() { read.Done(); read.Wait() }
		f.store.mu.Unlock()
	}
	errs := collect(herd, func(int) error {
		_, err := f.m.Verify(f.ctx, creds.KeyID, creds.Token)
		return err
	})
	f.store.mu.Lock()
	f.store.everyKey = nil
	f.store.mu.Unlock()
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, int64(2), f.store.recordUses.Load(), "a herd of writes at the minute boundary")
	requireTime(t, f.now(), f.key(creds.KeyID).Token.LastUsedAt, "use a minute later")
}

func TestC4_CloseEmptiesTheCacheAndVerifyReadsTheStore(t *testing.T) {
	f := newFixture(t, cached())
	creds := f.issued()
	f.verifies(creds.KeyID, creds.Token)
	require.NoError(t, f.m.Close())
	for range 3 {
		before := f.store.keyReads.Load()
		f.verifies(creds.KeyID, creds.Token)
		require.Equal(t, before+1, f.store.keyReads.Load())
	}
	require.NoError(t, f.m.Close(), "Close twice")
	require.NoError(t, f.manager().Close(), "Close without the cache")
}

func TestC_CacheOptionIsChecked(t *testing.T) {
	for name, cc := range map[string]tokens.CacheConfig{
		"negative MaxKeys":      {MaxKeys: -1},
		"negative MaxStaleness": {MaxStaleness: -time.Second},
	} {
		_, err := tokens.NewManager(memstore.New(), tokens.WithShareBaseURL(testBase), tokens.WithVerifyCache(cc))
		require.ErrorIs(t, err, tokens.ErrInvalidOption, name)
	}
	_, err := tokens.NewManager(plainStore{memstore.New()}, tokens.WithShareBaseURL(testBase), cached())
	require.ErrorIs(t, err, tokens.ErrInvalidOption, "a store without a ChangeLog")
}

// plainStore hides every method but those of tokens.Store.
type plainStore struct{ tokens.Store }

// TestC3_LastUseAtTheUnixEpochIsAUse: a use recorded at 1970-01-01, where
// a mock clock starts, counts as one; the cache once took it for "never"
// and wrote on every Verify.
func TestC3_LastUseAtTheUnixEpochIsAUse(t *testing.T) {
	f := newFixture(t, cached())
	f.clk.Set(time.Unix(0, 0))
	creds := f.issued()
	for range 3 {
		f.verifies(creds.KeyID, creds.Token)
	}
	require.Equal(t, int64(1), f.store.recordUses.Load())
	requireTime(t, time.Unix(0, 0), f.key(creds.KeyID).Token.LastUsedAt, "first use")
}
