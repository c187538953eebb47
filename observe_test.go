package tokens_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/store/memstore"
)

// recorder collects observations.
type recorder struct {
	mu  sync.Mutex
	got []tokens.Observation
}

func (r *recorder) observe(_ context.Context, o tokens.Observation) {
	r.mu.Lock()
	r.got = append(r.got, o)
	r.mu.Unlock()
}

// take returns what was observed since the last take, as "op outcome"
// strings (with "cached" for cache hits).
func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := []string{}
	for _, o := range r.got {
		s := string(o.Op) + " " + string(o.Outcome)
		if o.Cached {
			s += " cached"
		}
		out = append(out, s)
	}
	r.got = nil
	return out
}

func TestObserverSeesVerifyOutcomesChangesAndRetries(t *testing.T) {
	rec := &recorder{}
	f := newFixture(t, tokens.WithObserver(rec.observe), cached())
	creds := f.issued()
	require.Equal(t, []string{"key_created ok", "link_redeemed ok"}, rec.take())

	f.verifies(creds.KeyID, creds.Token)
	f.verifies(creds.KeyID, creds.Token)
	f.rejects(creds.KeyID, replaceAt(creds.Token, len(creds.Token)-1), tokens.ErrMalformedToken)
	f.rejects(creds.KeyID, f.issued().Token, tokens.ErrInvalidCredentials)
	require.Equal(t, []string{"verify ok", "verify ok cached", "verify malformed",
		"key_created ok", "link_redeemed ok", "verify invalid"}, rec.take())

	_, err := f.m.Renew(f.ctx, creds.KeyID, tokens.RenewOptions{OldToken: tokens.DeleteNow})
	require.NoError(t, err)
	f.rejects(creds.KeyID, creds.Token, tokens.ErrTokenRevoked)
	_, err = f.m.Renew(f.ctx, creds.KeyID, tokens.RenewOptions{})
	require.ErrorIs(t, err, tokens.ErrRenewalPending)
	require.Equal(t, []string{"token_renewed ok", "revoked_token_used ok", "verify revoked", "token_renewed refused"}, rec.take())

	// A compare-and-swap lost to another writer is retried, and said so.
	other := f.issued()
	require.NoError(t, f.m.Deactivate(f.ctx, other.KeyID))
	rec.take()
	f.store.onNextUpdate(func() { require.NoError(t, f.manager().Activate(f.ctx, other.KeyID)) })
	require.NoError(t, f.m.Activate(f.ctx, other.KeyID))
	require.Equal(t, []string{"key_activated conflict_retried", "key_activated ok"}, rec.take())

	f.store.failAllWrites(errors.New("disk full"))
	require.Error(t, f.m.Deactivate(f.ctx, other.KeyID))
	got := rec.take()
	require.Equal(t, []string{"key_deactivated error"}, got)
}

func TestObserverSeesCacheChecksFail(t *testing.T) {
	rec := &recorder{}
	f := newFixture(t, tokens.WithObserver(rec.observe), cached())
	creds := f.issued()
	f.verifies(creds.KeyID, creds.Token)
	f.store.setFailChanges(errors.New("connection refused"))
	f.clk.Add(time.Hour)
	rec.take()
	f.verifies(creds.KeyID, creds.Token) // from the store: the cache cannot confirm
	require.Equal(t, []string{"cache_check error", "verify ok"}, rec.take())

	_, err := tokens.NewManager(memstore.New(), tokens.WithShareBaseURL(testBase), tokens.WithObserver(nil))
	require.ErrorIs(t, err, tokens.ErrInvalidOption)
}

// WithObserver is where metrics and logs plug in; here every outcome that
// is not ok goes to log/slog, and a map stands in for a Prometheus counter
// vector labelled by op and outcome.
func ExampleWithObserver() {
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	counts := map[string]int{}
	var mu sync.Mutex
	observe := func(ctx context.Context, o tokens.Observation) {
		mu.Lock()
		counts[string(o.Op)+"/"+string(o.Outcome)]++
		mu.Unlock()
		if o.Outcome != tokens.OutcomeOK {
			logger.Warn("tokens", "op", o.Op, "outcome", o.Outcome, "err", o.Err)
		}
	}

	ctx := context.Background()
	m, _ := tokens.NewManager(memstore.New(),
		tokens.WithShareBaseURL("https://share.example.com/credentials/"),
		tokens.WithObserver(observe))
	key, link, _ := m.CreateKey(ctx, tokens.KeySpec{Account: "acme", Name: "erp-sync"})
	creds, _ := m.RedeemLink(ctx, link.URL)
	m.Verify(ctx, creds.KeyID, creds.Token)
	m.Verify(ctx, creds.KeyID, "tok_wrong")
	m.Renew(ctx, key.ID, tokens.RenewOptions{})
	m.Renew(ctx, key.ID, tokens.RenewOptions{})
	fmt.Println(counts["verify/ok"], counts["token_renewed/ok"], counts["token_renewed/refused"])
	// Output:
	// level=WARN msg=tokens op=verify outcome=malformed err="tokens: invalid credentials: malformed token"
	// level=WARN msg=tokens op=token_renewed outcome=refused err="tokens: renewal pending: the latest share link has not been redeemed or expired"
	// 1 1 1
}
