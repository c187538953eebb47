package sqlstore_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/internal/testenv"
)

// TestRevocationLatency proves C2 across OS processes, on the wall clock:
// this process revokes tokens one by one, each kind of revocation in turn,
// while two children (this test binary re-run as TestRevocationChild)
// verify every token in a loop with the verification cache on. No Verify
// in a child that started more than MaxStaleness after the revoking call
// returned here may accept the token. The _terminated variants also kill
// the children's PostgreSQL connections (pg_terminate_backend) mid-run:
// a child that cannot ask the store what changed must read the store or
// fail, never accept from a cache it could not confirm.
//
// Unlike the other tests it sleeps and reads the real clock, since the
// bound is between processes that share nothing but the database and the
// wall clock.
func TestRevocationLatency(t *testing.T) {
	for _, v := range []struct {
		backend   string
		terminate bool
	}{
		{"sqlite", false},
		{"sqlite_modernc", false},
		{"postgres_lib_pq", false},
		{"postgres_pgx", false},
		{"postgres_lib_pq", true},
		{"postgres_pgx", true},
	} {
		name := v.backend
		if v.terminate {
			name += "_terminated"
		}
		t.Run(name, func(t *testing.T) {
			i := slices.IndexFunc(backends, func(b backend) bool { return b.Name == v.backend })
			require.GreaterOrEqual(t, i, 0, "no backend %q", v.backend)
			runRevocationLatency(t, backends[i], v.terminate)
		})
	}
}

const (
	// revocationStaleness is the children's MaxStaleness.
	revocationStaleness = 200 * time.Millisecond
	// revocationCount is how many tokens each variant revokes, spread
	// evenly over the kinds.
	revocationCount = 200
	// revocationPause separates two revocations, so that the children
	// see them one at a time rather than in a single burst (pacing, as
	// childRoundPause).
	revocationPause = 3 * time.Millisecond
	// childRoundPause separates two rounds of a child over its tokens.
	// It paces load, it waits for nothing: without it the two children
	// take both cores, their rounds stretch to hundreds of milliseconds
	// and the time to refusal measures the rounds, not the cache.
	childRoundPause = 2 * time.Millisecond
	// retireAfter is how long a child keeps verifying a token after
	// its first refusal, to catch an acceptance coming back (a fill that
	// read the store before the revocation, say).
	retireAfter = 2 * revocationStaleness
	// refusedEvery is how often a child verifies a token it saw
	// refused until retireAfter: every refusedEvery rounds.
	refusedEvery = 4
	// terminateEvery is how many revocations apart the _terminated
	// variants end the children's connections.
	terminateEvery = 10
	// verifyChildren is how many children verify.
	verifyChildren = 2

	childConfigEnv = "TOKENS_REVOCATION_CHILD"
	childReportEnv = "TOKENS_REVOCATION_REPORT"
	childReadyLine = "tokens-revocation-child: ready"
	// childDoneLine says a child saw every token refused and watched each
	// for retireAfter since: its report is complete.
	childDoneLine = "tokens-revocation-child: done"
)

// A revocationKind is a call that stops a token verifying (C2). R4's
// discard is not one of them here: it revokes a token whose link expired
// unredeemed (or was revoked, R15), which no process has ever seen, so no
// verifier can hold it in its cache. R14's expiry is exact, not a call.
type revocationKind struct {
	name string
	// prepare makes a key with a token that verifies until revoke is
	// called on the key, and returns both.
	prepare func(ctx context.Context, m *tokens.Manager) (*tokens.Credentials, error)
	revoke  func(ctx context.Context, r revoker, creds tokens.Credentials) error
}

// revoker is what the parent revokes with: its Manager, and a secret
// scanning handler over a Manager with tokens.RevokeLeaked.
type revoker struct {
	m     *tokens.Manager
	leaks *scanService
}

var revocationKinds = []revocationKind{
	{
		name: "DeleteOld",
		prepare: func(ctx context.Context, m *tokens.Manager) (*tokens.Credentials, error) {
			old, err := issueForRevocation(ctx, m)
			if err != nil {
				return nil, err
			}
			if _, err := renewAndRedeem(ctx, m, old.KeyID); err != nil {
				return nil, err
			}
			return old, nil
		},
		revoke: func(ctx context.Context, r revoker, creds tokens.Credentials) error {
			return r.m.DeleteOld(ctx, creds.KeyID)
		},
	},
	{
		name:    "RenewDeleteNow",
		prepare: issueForRevocation,
		revoke: func(ctx context.Context, r revoker, creds tokens.Credentials) error {
			_, err := r.m.Renew(ctx, creds.KeyID, tokens.RenewOptions{OldToken: tokens.DeleteNow})
			return err
		},
	},
	{
		name: "Undo",
		prepare: func(ctx context.Context, m *tokens.Manager) (*tokens.Credentials, error) {
			old, err := issueForRevocation(ctx, m)
			if err != nil {
				return nil, err
			}
			return renewAndRedeem(ctx, m, old.KeyID)
		},
		revoke: func(ctx context.Context, r revoker, creds tokens.Credentials) error {
			return r.m.Undo(ctx, creds.KeyID)
		},
	},
	{
		name:    "Deactivate",
		prepare: issueForRevocation,
		revoke: func(ctx context.Context, r revoker, creds tokens.Credentials) error {
			return r.m.Deactivate(ctx, creds.KeyID)
		},
	},
	{
		name:    "DeleteKey",
		prepare: issueForRevocation,
		revoke: func(ctx context.Context, r revoker, creds tokens.Credentials) error {
			return r.m.DeleteKey(ctx, creds.KeyID)
		},
	},
	{
		// S10, S11: GitHub reports the token; the handler's Manager
		// revokes it as Renew with DeleteNow would.
		name:    "LeakReported",
		prepare: issueForRevocation,
		revoke: func(ctx context.Context, r revoker, creds tokens.Credentials) error {
			labels, err := r.leaks.report(ctx, creds.Token)
			if err == nil && labels[0] != "true_positive" {
				err = fmt.Errorf("the leaked token was labelled %s", labels[0])
			}
			return err
		},
	},
}

// issueForRevocation creates a key and redeems its link, as an integration
// that received its token would.
func issueForRevocation(ctx context.Context, m *tokens.Manager) (*tokens.Credentials, error) {
	_, link, err := m.CreateKey(ctx, tokens.KeySpec{Account: "revocation", Name: "child-verified"})
	if err != nil {
		return nil, err
	}
	return m.RedeemLink(ctx, link.URL)
}

// renewAndRedeem renews key id with DeleteLater and redeems the new link.
func renewAndRedeem(ctx context.Context, m *tokens.Manager, id string) (*tokens.Credentials, error) {
	link, err := m.Renew(ctx, id, tokens.RenewOptions{OldToken: tokens.DeleteLater})
	if err != nil {
		return nil, err
	}
	return m.RedeemLink(ctx, link.URL)
}

// childConfig is what the parent hands its children, in a file of the
// parent's temporary directory: it holds the tokens.
type childConfig struct {
	Driver       string
	DSN          string
	MaxStaleness time.Duration
	Tokens       []tokens.Credentials // by index; the kind is revocationKinds[i%len]
}

// childReport is what a child saw, written to its report file when its
// stdin closes. Times are wall-clock Unix nanoseconds read just before
// Verify was called (Start) or just after it returned (End); 0: never.
type childReport struct {
	Verifies, Accepted, Refused, Errors int
	ErrorSamples                        []string // a few distinct messages
	Rounds                              int
	LongestRound                        time.Duration
	Tokens                              []tokenSeen
}

type tokenSeen struct {
	LastAcceptStart   int64
	FirstRefusalStart int64
	FirstRefusalEnd   int64
	// AcceptedAfterRefusal counts acceptances that started after the
	// first refusal: allowed within the bound, but worth seeing.
	AcceptedAfterRefusal int
}

func runRevocationLatency(t *testing.T, b backend, terminate bool) {
	began := time.Now()
	ctx := t.Context()
	dsn := b.NewDSN(t)
	st := migrated(t, open(t, b.Driver, dsn))
	m, err := tokens.NewManager(st, tokens.WithShareBaseURL(shareBase))
	require.NoError(t, err)

	leakM, err := tokens.NewManager(st, tokens.WithShareBaseURL(shareBase), tokens.WithLeakPolicy(tokens.RevokeLeaked))
	require.NoError(t, err)
	rev := revoker{m: m, leaks: newScanService(t, leakM)}

	kinds := make([]revocationKind, revocationCount)
	cfg := childConfig{Driver: b.Driver, DSN: dsn, MaxStaleness: revocationStaleness}
	for i := range revocationCount {
		kinds[i] = revocationKinds[i%len(revocationKinds)]
		creds, err := kinds[i].prepare(ctx, m)
		require.NoError(t, err, "prepare token %d (%s)", i, kinds[i].name)
		cfg.Tokens = append(cfg.Tokens, *creds)
	}
	prepared := time.Now()

	var admin *sql.DB
	appName := "tokens_revocation_child_" + strings.ToLower(rand.Text()[:10])
	if strings.HasPrefix(dsn, "postgres") {
		// The name lets the parent find the children's connections, and
		// only theirs: other test runs may share the server.
		u, err := url.Parse(dsn)
		require.NoError(t, err)
		q := u.Query()
		q.Set("application_name", appName)
		u.RawQuery = q.Encode()
		cfg.DSN = u.String()
		if terminate {
			admin, err = sql.Open("postgres", testenv.Postgres(t))
			require.NoError(t, err)
			t.Cleanup(func() { admin.Close() })
		}
	}
	require.False(t, terminate && admin == nil, "terminating connections needs PostgreSQL")

	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "children.json")
	raw, err := json.Marshal(cfg)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(cfgPath, raw, 0o600))

	children := make([]*revocationChild, verifyChildren)
	for i := range children {
		children[i] = startRevocationChild(t, cfgPath, filepath.Join(dir, fmt.Sprintf("report-%d.json", i)))
	}
	for i, c := range children {
		select {
		case <-c.ready:
		case <-c.exited:
			require.FailNow(t, "child exited before it was ready", "child %d: %v\n%s", i, c.waitErr, c.output())
		case <-time.After(interruptWait):
			require.FailNow(t, "child not ready", "child %d did not verify every token within %v\n%s", i, interruptWait, c.output())
		}
	}
	ready := time.Now()

	// Ending the children's connections often makes it likely that some
	// check of a child's cache, not only its store reads, meets a dead
	// connection: lib/pq and database/sql retry some of these silently.
	terminateAt := func(i int) bool { return terminate && i%terminateEvery == terminateEvery/2 }
	called := make([]int64, revocationCount)   // just before the revoking call
	returned := make([]int64, revocationCount) // just after it returned
	terminated := 0
	for i := range revocationCount {
		if terminateAt(i) {
			// A child served from its cache may hold no connection
			// at a given moment: only the total must be positive.
			terminated += terminateBackends(t, admin, appName)
		}
		called[i] = time.Now().UnixNano()
		err := kinds[i].revoke(ctx, rev, cfg.Tokens[i])
		returned[i] = time.Now().UnixNano()
		require.NoError(t, err, "revocation %d (%s)", i, kinds[i].name)
		time.Sleep(revocationPause)
	}
	revoked := time.Now()
	if terminate {
		require.Positive(t, terminated, "no connection of the children was terminated")
	}

	// Each child says when it has seen every token refused and watched it
	// for retireAfter; then it is stopped.
	for i, c := range children {
		select {
		case <-c.done:
		case <-c.exited:
			require.FailNow(t, "child exited before it was done", "child %d: %v\n%s", i, c.waitErr, c.output())
		case <-time.After(interruptWait):
			require.FailNow(t, "child not done", "child %d did not see every token refused within %v\n%s", i, interruptWait, c.output())
		}
	}
	for _, c := range children {
		c.stdin.Close()
	}
	reports := make([]childReport, len(children))
	for i, c := range children {
		reports[i] = c.stop(t, i)
	}

	type lateAcceptance struct {
		child, token int
		kind         string
		late         time.Duration // after returned + MaxStaleness
	}
	var late []lateAcceptance
	var problems []string
	toRefusal := map[string][]time.Duration{}
	var gaps []time.Duration // between a token's last acceptance and first refusal
	for ci, rep := range reports {
		require.Len(t, rep.Tokens, revocationCount, "child %d reported on every token", ci)
		for i, seen := range rep.Tokens {
			kind := kinds[i].name
			if seen.LastAcceptStart == 0 {
				problems = append(problems, fmt.Sprintf("child %d never accepted token %d (%s)", ci, i, kind))
			}
			bound := returned[i] + int64(revocationStaleness)
			// The Manager's clock is truncated to microseconds, so it
			// may read up to 1µs before the child's clock did.
			if over := seen.LastAcceptStart - bound; over > int64(time.Microsecond) {
				late = append(late, lateAcceptance{ci, i, kind, time.Duration(over)})
			}
			switch {
			case seen.FirstRefusalStart == 0:
				problems = append(problems, fmt.Sprintf("child %d never saw token %d (%s) refused", ci, i, kind))
			case seen.FirstRefusalEnd < called[i]:
				// C1: before the revocation the store accepts it.
				problems = append(problems, fmt.Sprintf("child %d refused token %d (%s) %v before its revocation began",
					ci, i, kind, time.Duration(called[i]-seen.FirstRefusalEnd)))
			default:
				d := time.Duration(seen.FirstRefusalStart - returned[i])
				toRefusal[kind] = append(toRefusal[kind], d)
				toRefusal[""] = append(toRefusal[""], d)
				gaps = append(gaps, time.Duration(seen.FirstRefusalStart-seen.LastAcceptStart))
			}
		}
	}

	t.Logf("revocation: %d keys prepared in %v, children ready in %v, %d revocations in %v, %d connections terminated, total %v",
		revocationCount, prepared.Sub(began).Round(time.Millisecond), ready.Sub(prepared).Round(time.Millisecond),
		revocationCount, revoked.Sub(ready).Round(time.Millisecond), terminated, time.Since(began).Round(time.Millisecond))
	for ci, rep := range reports {
		after := 0
		for _, seen := range rep.Tokens {
			after += seen.AcceptedAfterRefusal
		}
		t.Logf("revocation: child %d: %d verifies (%d accepted, %d refused) in %d rounds (longest %v), %d errors %q, %d acceptances after a refusal",
			ci, rep.Verifies, rep.Accepted, rep.Refused, rep.Rounds, rep.LongestRound.Round(10*time.Microsecond),
			rep.Errors, rep.ErrorSamples, after)
	}
	for _, kind := range append([]string{""}, kindNames()...) {
		d := toRefusal[kind]
		if len(d) == 0 {
			continue
		}
		slices.Sort(d)
		label := kind
		if label == "" {
			label = "all kinds"
		}
		t.Logf("revocation: time to refusal, %s (%d): p50 %v, p99 %v, max %v (MaxStaleness %v)", label, len(d),
			percentile(d, 0.50).Round(10*time.Microsecond), percentile(d, 0.99).Round(10*time.Microsecond),
			d[len(d)-1].Round(10*time.Microsecond), revocationStaleness)
	}

	if len(gaps) > 0 {
		slices.Sort(gaps)
		t.Logf("revocation: resolution, from a token's last acceptance to its first refusal: p50 %v, p99 %v, max %v",
			percentile(gaps, 0.50).Round(10*time.Microsecond), percentile(gaps, 0.99).Round(10*time.Microsecond),
			gaps[len(gaps)-1].Round(10*time.Microsecond))
	}

	if len(late) > 0 {
		slices.SortFunc(late, func(a, b lateAcceptance) int { return int(b.late - a.late) })
		var lines []string
		for _, l := range late[:min(len(late), 20)] {
			lines = append(lines, fmt.Sprintf("child %d accepted token %d (%s) in a Verify that started %v after returned+MaxStaleness",
				l.child, l.token, l.kind, l.late))
		}
		require.Fail(t, "a revoked token was accepted after the bound (C2)",
			"%d late acceptances, latest first:\n%s", len(late), strings.Join(lines, "\n"))
	}
	require.Empty(t, problems)
}

func kindNames() []string {
	var names []string
	for _, k := range revocationKinds {
		names = append(names, k.name)
	}
	return names
}

// percentile returns the nearest-rank q-quantile of sorted d.
func percentile(d []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(d))+0.999999) - 1
	return d[min(max(i, 0), len(d)-1)]
}

// terminateBackends ends every connection named appName and returns how
// many it ended.
func terminateBackends(t *testing.T, admin *sql.DB, appName string) int {
	t.Helper()
	var n int
	err := admin.QueryRowContext(t.Context(),
		// MATERIALIZED: the name is matched before any connection is
		// ended, whatever order the planner would pick.
		`WITH children AS MATERIALIZED (
			SELECT pid FROM pg_stat_activity WHERE application_name = $1
		)
		SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM children`,
		appName).Scan(&n)
	require.NoError(t, err)
	return n
}

// revocationChild is a running child process.
type revocationChild struct {
	*childProcess
	reportPath string
	ready      chan struct{} // closed when it printed childReadyLine
	done       chan struct{} // closed when it printed childDoneLine
}

func startRevocationChild(t *testing.T, cfgPath, reportPath string) *revocationChild {
	t.Helper()
	c := &revocationChild{reportPath: reportPath, ready: make(chan struct{}), done: make(chan struct{})}
	env := []string{childConfigEnv + "=" + cfgPath, childReportEnv + "=" + reportPath}
	c.childProcess = startChild(t, "TestRevocationChild", env, func(line string) bool {
		switch line {
		case childReadyLine:
			close(c.ready)
		case childDoneLine:
			close(c.done)
		}
		return false
	})
	return c
}

// stop closes the child's stdin, waits for it to exit and returns its
// report.
func (c *revocationChild) stop(t *testing.T, i int) childReport {
	t.Helper()
	c.stdin.Close()
	select {
	case <-c.exited:
	case <-time.After(interruptWait):
		require.FailNow(t, "child did not stop", "child %d\n%s", i, c.output())
	}
	require.NoError(t, c.waitErr, "child %d failed:\n%s", i, c.output())
	raw, err := os.ReadFile(c.reportPath)
	require.NoError(t, err, "child %d wrote no report:\n%s", i, c.output())
	var rep childReport
	require.NoError(t, json.Unmarshal(raw, &rep))
	return rep
}

// TestRevocationChild is a child process of TestRevocationLatency: it
// verifies the tokens the parent prepared with the cache on, on the real
// clock, until its stdin closes, then writes what it saw. Run by itself it
// has nothing to do.
func TestRevocationChild(t *testing.T) {
	cfgPath := os.Getenv(childConfigEnv)
	if cfgPath == "" {
		return // runs only as a child process of TestRevocationLatency
	}
	raw, err := os.ReadFile(cfgPath)
	require.NoError(t, err)
	var cfg childConfig
	require.NoError(t, json.Unmarshal(raw, &cfg))

	st := newStore(t, open(t, cfg.Driver, cfg.DSN))
	m, err := tokens.NewManager(st, tokens.WithShareBaseURL(shareBase),
		tokens.WithVerifyCache(tokens.CacheConfig{MaxStaleness: cfg.MaxStaleness}))
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })

	stop := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(stop)
	}()

	rep := childReport{Tokens: make([]tokenSeen, len(cfg.Tokens))}
	samples := map[string]bool{}
	verify := func(i int) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		creds, seen := cfg.Tokens[i], &rep.Tokens[i]
		start := time.Now().UnixNano()
		_, err := m.Verify(ctx, creds.KeyID, creds.Token)
		end := time.Now().UnixNano()
		rep.Verifies++
		switch {
		case err == nil:
			rep.Accepted++
			seen.LastAcceptStart = max(seen.LastAcceptStart, start)
			if seen.FirstRefusalStart != 0 && start > seen.FirstRefusalStart {
				seen.AcceptedAfterRefusal++
			}
		case errors.Is(err, tokens.ErrInvalidCredentials) || errors.Is(err, tokens.ErrKeyInactive):
			rep.Refused++
			if seen.FirstRefusalStart == 0 {
				seen.FirstRefusalStart, seen.FirstRefusalEnd = start, end
			}
		default:
			rep.Errors++
			if msg := err.Error(); len(samples) < 3 && !samples[msg] {
				samples[msg] = true
				rep.ErrorSamples = append(rep.ErrorSamples, msg)
			}
		}
		return err
	}

	// Every token verifies (and is cached) before the parent revokes any.
	for i := range cfg.Tokens {
		for attempt := 1; ; attempt++ {
			err := verify(i)
			if err == nil {
				break
			}
			require.Less(t, attempt, 10, "token %d did not verify before any revocation: %v", i, err)
		}
	}
	fmt.Println(childReadyLine)

	for round := 0; ; round++ {
		select {
		case <-stop:
		default:
			start := time.Now()
			retired := 0
			for i, seen := range rep.Tokens {
				// A refused token needs the store on every Verify:
				// watching it in every round would slow the rounds
				// down, and with them the watch on the others.
				if seen.FirstRefusalEnd != 0 && start.UnixNano()-seen.FirstRefusalEnd > int64(retireAfter) {
					retired++
					continue
				}
				if seen.FirstRefusalEnd != 0 && round%refusedEvery != 0 {
					continue
				}
				verify(i)
			}
			rep.Rounds++
			rep.LongestRound = max(rep.LongestRound, time.Since(start))
			if retired < len(rep.Tokens) {
				time.Sleep(childRoundPause)
				continue
			}
			fmt.Println(childDoneLine)
			<-stop
		}
		break
	}

	raw, err = json.Marshal(rep)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(os.Getenv(childReportEnv), raw, 0o600))
}
