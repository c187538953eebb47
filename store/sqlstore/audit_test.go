package sqlstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens"
)

// The audit trail (R17) where it is hard to keep: writers in several OS
// processes, a reader following cursors while they write, and connections
// killed in the middle of a change or during its COMMIT.

const (
	// auditWriters is how many writer processes share the database;
	// auditWorkers how many goroutines each runs, each with an actor and
	// keys of its own, for auditIterations steps.
	auditWriters    = 3
	auditWorkers    = 2
	auditIterations = 100
	// auditSharedKeys is how many keys every worker of every writer
	// changes, besides its own.
	auditSharedKeys    = 3
	auditSharedAccount = "audit-shared"
	// auditMaxTTL bounds how far past tokens.MinOldTokenTTL the writers'
	// renewals set an old token's end (ends themselves are tested with a
	// mock clock elsewhere; these writers run on the wall clock).
	auditMaxTTL = 40 * time.Millisecond
	// auditTailPause is how long the tailer waits after an empty page
	// before it asks again: the writers are other processes, so there is
	// nothing to wait on but the wall clock.
	auditTailPause = 2 * time.Millisecond

	auditConfigEnv = "TOKENS_AUDIT_CHILD"
	auditRoleEnv   = "TOKENS_AUDIT_ROLE"
	auditReportEnv = "TOKENS_AUDIT_REPORT"
	auditOpPrefix  = "audit-op "
	auditReadyLine = "audit-child: ready"
	auditTailer    = "tailer"
)

// auditConfig is what the parent hands its children, in a file.
type auditConfig struct {
	Driver, DSN string
	Seed        uint64
	Shared      []string // the IDs of the keys every worker changes
}

// auditOp is one call a writer made, printed on its stdout as the call
// returns, so that the parent knows each worker's calls in order.
type auditOp struct {
	Actor, KeyID, Account, Call string
	// Event is what the call appended if it succeeded, "" if nothing.
	Event  tokens.EventType
	Policy tokens.OldTokenPolicy
	TTL    time.Duration
	Err    string // "" if it succeeded
	// Maybe marks a call that may have succeeded without a change, and
	// then without an event: an Activate or Deactivate of a shared key,
	// which another worker may have made already.
	Maybe bool
	// Unknown marks an error matching ErrOutcomeUnknown, Unexpected one
	// that no rule explains.
	Unknown, Unexpected bool
}

// auditTail is what the tailer read, written to its report file.
type auditTail struct {
	Events             []tokens.Event
	Pages, EmptyPages  int
	MaxPage, PageLimit int
}

// TestAuditTrailAcrossProcesses runs auditWriters child processes (this
// test binary re-run as TestAuditChild) that create, renew, redeem,
// revoke, undo, deactivate and delete keys on one database, each printing
// its calls, while a fourth child tails Events by cursor in small pages.
// Once the writers are done and the tailer has read an empty page, its
// tail must equal the full list read at the end (no gap, no duplicate,
// same order), every successful call must have exactly its event, in each
// worker's order, and nothing else may have one: no failed call, no write
// without its event, no event without its write.
//
// In the run WithOpenTransaction, an unrelated transaction that has
// written (so it has an xid, which holds every snapshot's xmin back)
// stays open on another connection from before the writers start until
// the tail is read: on PostgreSQL the tail then scans a growing range, and
// still skips nothing.
func TestAuditTrailAcrossProcesses(t *testing.T) {
	for _, run := range []struct {
		name   string
		openTx bool
	}{{"sqlite", false}, {"postgres_lib_pq", false}, {"postgres_pgx", false}, {"postgres_lib_pq", true}} {
		name := run.name
		if run.openTx {
			name += "/WithOpenTransaction"
		}
		t.Run(name, func(t *testing.T) {
			i := slices.IndexFunc(backends, func(b backend) bool { return b.Name == run.name })
			require.GreaterOrEqual(t, i, 0, "no backend %q", run.name)
			runAuditTrail(t, backends[i], run.openTx)
		})
	}
}

func runAuditTrail(t *testing.T, b backend, openTx bool) {
	began := time.Now()
	ctx := t.Context()
	dsn := b.NewDSN(t)
	db := open(t, b.Driver, dsn)
	st := migrated(t, db)
	if openTx {
		unrelated := open(t, b.Driver, dsn)
		_, err := unrelated.ExecContext(ctx, `CREATE TABLE audit_unrelated (n integer)`)
		require.NoError(t, err)
		tx, err := unrelated.BeginTxx(ctx, nil)
		require.NoError(t, err)
		_, err = tx.ExecContext(ctx, `INSERT INTO audit_unrelated (n) VALUES (1)`)
		require.NoError(t, err)
		var xid string
		require.NoError(t, tx.GetContext(ctx, &xid, `SELECT pg_current_xact_id()::text`))
		t.Logf("audit: %s: transaction %s stays open until the tail is read", b.Name, xid)
		defer func() { require.NoError(t, tx.Rollback()) }() // after the checks below
	}
	m, err := tokens.NewManager(st, tokens.WithShareBaseURL(shareBase))
	require.NoError(t, err)

	cfg := auditConfig{Driver: b.Driver, DSN: dsn, Seed: rand.Uint64()}
	t.Logf("audit: %s: seed %d", b.Name, cfg.Seed)
	var ops []auditOp // the parent's calls, then the writers'
	parent := tokens.WithActor(ctx, "parent")
	for i := range auditSharedKeys {
		key, link, err := m.CreateKey(parent, tokens.KeySpec{Account: auditSharedAccount, Name: fmt.Sprint("shared ", i)})
		require.NoError(t, err)
		_, err = m.RedeemLink(parent, link.URL)
		require.NoError(t, err)
		cfg.Shared = append(cfg.Shared, key.ID)
		ops = append(ops,
			auditOp{Actor: "parent", KeyID: key.ID, Account: auditSharedAccount, Call: "CreateKey", Event: tokens.EventKeyCreated},
			auditOp{Actor: "parent", KeyID: key.ID, Account: auditSharedAccount, Call: "RedeemLink", Event: tokens.EventLinkRedeemed})
	}

	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "audit.json")
	raw, err := json.Marshal(cfg)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(cfgPath, raw, 0o600))

	tailPath := filepath.Join(dir, "tail.json")
	tailer := startAuditChild(t, auditTailer, cfgPath, tailPath)
	tailer.requireReady(t)
	writers := make([]*auditChild, auditWriters)
	for i := range writers {
		writers[i] = startAuditChild(t, fmt.Sprint("writer-", i), cfgPath, "")
	}
	for _, w := range writers {
		w.requireReady(t)
	}
	started := time.Now()
	for _, w := range writers {
		w.wait(t)
	}
	written := time.Now()
	tailer.stdin.Close()
	tailer.wait(t)
	raw, err = os.ReadFile(tailPath)
	require.NoError(t, err, "the tailer wrote no report:\n%s", tailer.output())
	var tail auditTail
	require.NoError(t, json.Unmarshal(raw, &tail))
	for _, w := range writers {
		require.Empty(t, w.badLines, "%s printed calls the parent could not read", w.role)
		ops = append(ops, w.ops...)
	}

	// The full list, in one pass of the store's table and page by page
	// through the Manager.
	var rows []struct {
		Seq   int64  `db:"seq"`
		KeyID string `db:"key_id"`
	}
	require.NoError(t, db.SelectContext(ctx, &rows, "SELECT seq, key_id FROM tokens_events ORDER BY seq"))
	full := auditAllEvents(t, m, tokens.EventQuery{})
	require.Len(t, full, len(rows), "Events and the table hold different events")
	for i, r := range rows {
		require.Equal(t, strconv.FormatInt(r.Seq, 10), auditEventID(full[i].Cursor), "event %d", i)
		require.Equal(t, r.KeyID, full[i].KeyID, "event %d", i)
	}

	requireSameAuditTrail(t, full, tail.Events)
	t.Logf("audit: %s: the tail of %d events, read in %d pages (%d empty, limits 5 to %d, largest %d) while %d processes wrote, equals the full list",
		b.Name, len(tail.Events), tail.Pages, tail.EmptyPages, tail.PageLimit, tail.MaxPage, auditWriters)

	// Each call that succeeded has its event, in each worker's order, and
	// no other event exists.
	calls := map[string][2]int{} // call: successes, failures
	var unexpected []string
	unknown := 0
	want := map[[2]string][]auditExpected{} // key and actor: the events
	for _, op := range ops {
		n := calls[op.Call]
		if op.Err == "" {
			n[0]++
		} else {
			n[1]++
		}
		calls[op.Call] = n
		switch {
		case op.Unexpected:
			unexpected = append(unexpected, fmt.Sprintf("%s %s %s: %s", op.Actor, op.Call, op.KeyID, op.Err))
		case op.Unknown:
			unknown++
		}
		if op.Err == "" && op.Event != "" {
			group := [2]string{op.KeyID, op.Actor}
			want[group] = append(want[group], auditExpected{auditGroupLine(op.Event, op.Account, op.Policy), op.Maybe})
		}
	}
	require.Empty(t, unexpected, "calls failed with errors no rule explains")
	require.Zero(t, unknown, "calls ended with an unknown outcome; nothing interrupted them")
	got := map[[2]string][]string{}
	types := map[tokens.EventType]int{}
	for _, e := range full {
		require.False(t, e.At.IsZero(), "event %s has no time", e.Cursor)
		group := [2]string{e.KeyID, e.Actor}
		got[group] = append(got[group], auditGroupLine(e.Type, e.Account, e.Policy))
		types[e.Type]++
	}
	requireAuditGroups(t, want, got)

	// The writes: every numbered change of a key has its event and the
	// reverse, every key stored was created and not deleted, and its
	// active flag is what its last activation event says.
	var changes []struct {
		Seq   int64  `db:"seq"`
		KeyID string `db:"key_id"`
	}
	require.NoError(t, db.SelectContext(ctx, &changes, "SELECT seq, key_id FROM tokens_changes ORDER BY seq"))
	require.Equal(t, rows, changes, "the numbered changes and the events differ")
	var stored []string
	require.NoError(t, db.SelectContext(ctx, &stored, "SELECT id FROM tokens_keys"))
	created, deleted, active := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, e := range full {
		switch e.Type {
		case tokens.EventKeyCreated:
			created[e.KeyID], active[e.KeyID] = true, true
		case tokens.EventKeyDeleted:
			deleted[e.KeyID] = true
		case tokens.EventKeyActivated:
			active[e.KeyID] = true
		case tokens.EventKeyDeactivated:
			active[e.KeyID] = false
		}
	}
	for _, id := range stored {
		require.True(t, created[id], "key %s is stored without a key_created event", id)
		require.False(t, deleted[id], "key %s is stored after its key_deleted event", id)
		key, err := m.Key(ctx, id)
		require.NoError(t, err)
		require.Equal(t, active[id], key.Active, "key %s: active flag against its last (de)activation event", id)
	}
	require.Len(t, stored, len(created)-len(deleted), "keys created minus keys deleted")

	// The filters page through the same list.
	accounts := map[string]bool{}
	for _, e := range full {
		accounts[e.Account] = true
	}
	for _, account := range slices.Sorted(maps.Keys(accounts)) {
		requireSameAuditTrail(t, auditFilter(full, func(e tokens.Event) bool { return e.Account == account }),
			auditAllEvents(t, m, tokens.EventQuery{Account: account, Limit: 7}))
	}
	for _, id := range append(slices.Clone(cfg.Shared), stored[:min(len(stored), 3)]...) {
		requireSameAuditTrail(t, auditFilter(full, func(e tokens.Event) bool { return e.KeyID == id }),
			auditAllEvents(t, m, tokens.EventQuery{KeyID: id, Limit: 3}))
	}

	var tally []string
	for _, call := range slices.Sorted(maps.Keys(calls)) {
		tally = append(tally, fmt.Sprintf("%s %d ok/%d failed", call, calls[call][0], calls[call][1]))
	}
	var typeTally []string
	for _, typ := range slices.Sorted(maps.Keys(types)) {
		typeTally = append(typeTally, fmt.Sprintf("%s %d", typ, types[typ]))
	}
	t.Logf("audit: %s: %d calls (%s)", b.Name, len(ops), strings.Join(tally, ", "))
	t.Logf("audit: %s: %d events (%s) in %d key/actor groups, each as its calls succeeded; %d keys stored, %d deleted",
		b.Name, len(full), strings.Join(typeTally, ", "), len(got), len(stored), len(deleted))
	t.Logf("audit: %s: writers ran %v, whole run %v", b.Name,
		written.Sub(started).Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
}

// auditEventLine renders what a key's event must hold besides its key
// and actor.
func auditEventLine(typ tokens.EventType, account string, policy tokens.OldTokenPolicy, ttl time.Duration) string {
	return fmt.Sprintf("%s account=%q policy=%d ttl=%v", typ, account, int(policy), ttl)
}

// auditGroupLine renders what a writer knows of the event its call
// appends: a renewal's event names the end it set, which a renewal that
// discards an unseen token (R4) does not set, and the writer cannot tell
// which it made (the model test checks that exactly).
func auditGroupLine(typ tokens.EventType, account string, policy tokens.OldTokenPolicy) string {
	return auditEventLine(typ, account, policy, 0)
}

// auditEventID is what identifies an event in its Cursor: the order
// number, the whole Cursor on SQLite, its last part on PostgreSQL, whose
// Cursor also names the snapshots of the batch the reader met it in.
func auditEventID(cursor string) string {
	return cursor[strings.LastIndex(cursor, "/")+1:]
}

// auditTrailLine renders an event whole, for comparing trails.
func auditTrailLine(e tokens.Event) string {
	return fmt.Sprintf("%s %s %s %q", auditEventID(e.Cursor), e.At.UTC().Format(time.RFC3339Nano), e.KeyID,
		auditEventLine(e.Type, e.Account, e.Policy, e.OldTokenTTL)+" actor="+e.Actor)
}

// auditAllEvents reads every event q selects, following cursors.
func auditAllEvents(t *testing.T, m *tokens.Manager, q tokens.EventQuery) []tokens.Event {
	t.Helper()
	if q.Limit == 0 {
		q.Limit = tokens.MaxEventPage
	}
	events := []tokens.Event{}
	for {
		page, err := m.Events(t.Context(), q)
		require.NoError(t, err)
		require.LessOrEqual(t, len(page), q.Limit)
		if len(page) == 0 {
			return events
		}
		events = append(events, page...)
		q.After = page[len(page)-1].Cursor
	}
}

func auditFilter(events []tokens.Event, keep func(tokens.Event) bool) []tokens.Event {
	var kept []tokens.Event
	for _, e := range events {
		if keep(e) {
			kept = append(kept, e)
		}
	}
	return kept
}

// requireSameAuditTrail checks that got holds the events of want, each
// once, each key's in their order, and says where they part: a gap, a
// duplicate or a reordering. Events of different keys whose writes
// overlapped may come in either order: a tail meets an event that commits
// late after events numbered above it, a reader of the whole list later in
// number order.
func requireSameAuditTrail(t *testing.T, want, got []tokens.Event) {
	t.Helper()
	byKey := func(events []tokens.Event) map[string][]string {
		lines := map[string][]string{}
		for _, e := range events {
			lines[e.KeyID] = append(lines[e.KeyID], auditTrailLine(e))
		}
		return lines
	}
	w, g := byKey(want), byKey(got)
	if maps.EqualFunc(w, g, slices.Equal) {
		return
	}
	seen := map[string]int{}
	for _, e := range got {
		seen[auditEventID(e.Cursor)]++
	}
	var missing, duplicated, reordered []string
	for _, e := range want {
		if seen[auditEventID(e.Cursor)] == 0 {
			missing = append(missing, auditEventID(e.Cursor))
		}
	}
	for id, n := range seen {
		if n > 1 {
			duplicated = append(duplicated, id)
		}
	}
	for key, lines := range w {
		if !slices.Equal(lines, g[key]) {
			reordered = append(reordered, key)
		}
	}
	slices.Sort(reordered)
	show := func(lines []string) string { return strings.Join(lines[:min(5, len(lines))], "\n") }
	var first string
	if len(reordered) > 0 {
		first = reordered[0]
	}
	require.Fail(t, "the trails differ",
		"want %d events, got %d; missing %v, duplicated %v; keys that differ %v; the first:\nwant:\n%s\ngot:\n%s",
		len(want), len(got), missing[:min(len(missing), 20)], duplicated[:min(len(duplicated), 20)],
		reordered[:min(len(reordered), 20)], show(w[first]), show(g[first]))
}

// auditExpected is an event a successful call appended, or may have if
// maybe.
type auditExpected struct {
	line  string
	maybe bool
}

func (e auditExpected) String() string {
	if e.maybe {
		return e.line + " (or none)"
	}
	return e.line
}

// auditMatches reports whether got is want, less some of the events that
// want marks maybe.
func auditMatches(want []auditExpected, got []string) bool {
	// matched[i][j]: want[i:] matches got[j:].
	matched := make([][]bool, len(want)+1)
	for i := range matched {
		matched[i] = make([]bool, len(got)+1)
	}
	matched[len(want)][len(got)] = true
	for i := len(want) - 1; i >= 0; i-- {
		for j := len(got); j >= 0; j-- {
			matched[i][j] = want[i].maybe && matched[i+1][j] ||
				j < len(got) && want[i].line == got[j] && matched[i+1][j+1]
		}
	}
	return matched[0][0]
}

// requireAuditGroups checks that each key and actor has exactly the events
// its calls should have appended, in order.
func requireAuditGroups(t *testing.T, want map[[2]string][]auditExpected, got map[[2]string][]string) {
	t.Helper()
	var diffs []string
	for group := range maps.Keys(want) {
		if !auditMatches(want[group], got[group]) {
			diffs = append(diffs, fmt.Sprintf("key %s, actor %q:\n  calls:  %v\n  events: %q", group[0], group[1], want[group], got[group]))
		}
	}
	for group := range maps.Keys(got) {
		if _, ok := want[group]; !ok {
			diffs = append(diffs, fmt.Sprintf("key %s, actor %q: events of no successful call: %q", group[0], group[1], got[group]))
		}
	}
	slices.Sort(diffs)
	require.Empty(t, diffs[:min(len(diffs), 10)], "%d key/actor groups whose events differ from their successful calls", len(diffs))
}

// auditChild is a running child process of TestAuditTrailAcrossProcesses.
type auditChild struct {
	*childProcess
	role     string
	ready    chan struct{} // closed when it printed auditReadyLine
	ops      []auditOp     // set when exited is closed
	badLines []string
}

func startAuditChild(t *testing.T, role, cfgPath, reportPath string) *auditChild {
	t.Helper()
	c := &auditChild{role: role, ready: make(chan struct{})}
	env := []string{auditConfigEnv + "=" + cfgPath, auditRoleEnv + "=" + role, auditReportEnv + "=" + reportPath}
	c.childProcess = startChild(t, "TestAuditChild", env, func(line string) bool {
		if js, ok := strings.CutPrefix(line, auditOpPrefix); ok {
			var op auditOp
			if err := json.Unmarshal([]byte(js), &op); err != nil {
				c.badLines = append(c.badLines, line)
			} else {
				c.ops = append(c.ops, op)
			}
			return true
		}
		if line == auditReadyLine {
			close(c.ready)
		}
		return false
	})
	return c
}

func (c *auditChild) requireReady(t *testing.T) {
	t.Helper()
	select {
	case <-c.ready:
	case <-c.exited:
		require.FailNow(t, "child exited before it was ready", "%s: %v\n%s", c.role, c.waitErr, c.output())
	case <-time.After(interruptWait):
		require.FailNow(t, "child not ready", "%s, after %v\n%s", c.role, interruptWait, c.output())
	}
}

// wait waits for the child to exit, successfully.
func (c *auditChild) wait(t *testing.T) {
	t.Helper()
	select {
	case <-c.exited:
	case <-time.After(interruptWait):
		require.FailNow(t, "child did not end", "%s, after %v\n%s", c.role, interruptWait, c.output())
	}
	require.NoError(t, c.waitErr, "%s failed:\n%s", c.role, c.output())
}

// TestAuditChild is a child process of TestAuditTrailAcrossProcesses: the
// tailer or a writer, as its environment says. Run by itself it has
// nothing to do.
func TestAuditChild(t *testing.T) {
	cfgPath := os.Getenv(auditConfigEnv)
	if cfgPath == "" {
		return // runs only as a child process of TestAuditTrailAcrossProcesses
	}
	raw, err := os.ReadFile(cfgPath)
	require.NoError(t, err)
	var cfg auditConfig
	require.NoError(t, json.Unmarshal(raw, &cfg))
	st := newStore(t, open(t, cfg.Driver, cfg.DSN))
	m, err := tokens.NewManager(st, tokens.WithShareBaseURL(shareBase))
	require.NoError(t, err)
	// The first call prepares the statements and opens a connection.
	_, err = m.Events(t.Context(), tokens.EventQuery{Limit: 1})
	require.NoError(t, err)

	role := os.Getenv(auditRoleEnv)
	if role == auditTailer {
		runAuditTailer(t, m, cfg.Seed)
		return
	}
	index, err := strconv.Atoi(strings.TrimPrefix(role, "writer-"))
	require.NoError(t, err, "role %q", role)
	fmt.Println(auditReadyLine)
	runAuditWriter(m, cfg, index)
}

// runAuditTailer follows the trail from its start in pages of 5 to 20
// events until its stdin closes (the writers are done) and a page read
// after that is empty, then writes what it read.
func runAuditTailer(t *testing.T, m *tokens.Manager, seed uint64) {
	stop := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(stop)
	}()
	rng := rand.New(rand.NewPCG(seed, 0))
	tail := auditTail{PageLimit: 20}
	fmt.Println(auditReadyLine)
	after := ""
	for {
		stopped := false
		select {
		case <-stop:
			stopped = true // before the read: it sees every event
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), interruptWait)
		page, err := m.Events(ctx, tokens.EventQuery{After: after, Limit: 5 + rng.IntN(16)})
		cancel()
		require.NoError(t, err)
		tail.Pages++
		tail.MaxPage = max(tail.MaxPage, len(page))
		if len(page) > 0 {
			tail.Events = append(tail.Events, page...)
			after = page[len(page)-1].Cursor
			continue
		}
		tail.EmptyPages++
		if stopped {
			break
		}
		select {
		case <-stop:
		case <-time.After(auditTailPause):
		}
	}
	raw, err := json.Marshal(tail)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(os.Getenv(auditReportEnv), raw, 0o600))
}

// runAuditWriter runs the workers of writer index and returns when they
// are done. The workers print each call they make.
func runAuditWriter(m *tokens.Manager, cfg auditConfig, index int) {
	var mu sync.Mutex
	emit := func(op auditOp) {
		raw, err := json.Marshal(op)
		if err != nil {
			raw, _ = json.Marshal(auditOp{Actor: op.Actor, Call: op.Call, Err: err.Error(), Unexpected: true})
		}
		mu.Lock()
		defer mu.Unlock()
		os.Stdout.Write(append(append([]byte(auditOpPrefix), raw...), '\n'))
	}
	var wg sync.WaitGroup
	for g := range auditWorkers {
		actor := fmt.Sprintf("writer-%d/%d", index, g)
		w := &auditWorker{
			m:       m,
			ctx:     tokens.WithActor(context.Background(), actor),
			actor:   actor,
			account: fmt.Sprint("audit-writer-", index),
			rng:     rand.New(rand.NewPCG(cfg.Seed, uint64(index*auditWorkers+g+1))),
			shared:  cfg.Shared,
			emit:    emit,
		}
		wg.Go(func() {
			for range auditIterations {
				w.ownStep()
				if w.rng.IntN(2) == 0 {
					w.sharedStep()
				}
			}
			if g == 0 {
				// The writers race to delete the shared keys: one
				// DeleteKey of each succeeds.
				for _, id := range w.shared {
					w.call(auditOp{KeyID: id, Account: auditSharedAccount, Call: "DeleteKey", Event: tokens.EventKeyDeleted},
						w.m.DeleteKey(w.ctx, id))
				}
			}
		})
	}
	wg.Wait()
}

// auditWorker is one goroutine of a writer: its keys are its own, and it
// changes the shared keys with the other workers.
type auditWorker struct {
	m       *tokens.Manager
	ctx     context.Context // carries actor
	actor   string
	account string
	rng     *rand.Rand
	shared  []string
	emit    func(auditOp)

	keys    []*auditKey
	deleted []string
}

// auditKey is a key of one worker and what it was given of it.
type auditKey struct {
	id     string
	links  []string // every link issued, the latest last
	tokens []string // every token revealed
	active bool
}

// auditRuleErrors are the errors the rules give the writers' calls.
var auditRuleErrors = []error{
	tokens.ErrKeyNotFound, tokens.ErrRenewalPending, tokens.ErrOldTokenPending, tokens.ErrNoOldToken,
	tokens.ErrUndoUnavailable, tokens.ErrLinkNotFound, tokens.ErrLinkUsed, tokens.ErrLinkExpired,
	tokens.ErrNoPendingLink, tokens.ErrInvalidCredentials, tokens.ErrKeyInactive, tokens.ErrConflict,
}

// call completes op with err and prints it.
func (w *auditWorker) call(op auditOp, err error) {
	op.Actor = w.actor
	if err != nil {
		op.Err = err.Error()
		op.Unknown = errors.Is(err, tokens.ErrOutcomeUnknown)
		op.Unexpected = !slices.ContainsFunc(auditRuleErrors, func(rule error) bool { return errors.Is(err, rule) })
	}
	w.emit(op)
}

func (w *auditWorker) ownStep() {
	if len(w.keys) == 0 || len(w.keys) < 3 && w.rng.IntN(5) == 0 {
		w.create()
		return
	}
	k := w.keys[w.rng.IntN(len(w.keys))]
	op := auditOp{KeyID: k.id, Account: w.account}
	switch n := w.rng.IntN(100); {
	case n < 25:
		w.redeem(k)
	case n < 45:
		link := w.renew(op)
		if link != nil {
			k.links = append(k.links, link.URL)
		}
	case n < 53:
		op.Call, op.Event = "DeleteOld", tokens.EventOldTokenDeleted
		w.call(op, w.m.DeleteOld(w.ctx, k.id))
	case n < 61:
		op.Call, op.Event = "Undo", tokens.EventRenewalUndone
		w.call(op, w.m.Undo(w.ctx, k.id))
	case n < 68:
		op.Call, op.Event = "RevokeLink", tokens.EventLinkRevoked
		w.call(op, w.m.RevokeLink(w.ctx, k.id))
	case n < 82:
		// Only a call that changes the flag changes the key.
		active := n < 75
		var err error
		if active {
			op.Call, op.Event = "Activate", tokens.EventKeyActivated
			err = w.m.Activate(w.ctx, k.id)
		} else {
			op.Call, op.Event = "Deactivate", tokens.EventKeyDeactivated
			err = w.m.Deactivate(w.ctx, k.id)
		}
		if k.active == active {
			op.Event = ""
		}
		if err == nil {
			k.active = active
		}
		w.call(op, err)
	case n < 91:
		w.verifyRevealed(k)
	case n < 96:
		op.Call, op.Event = "DeleteKey", tokens.EventKeyDeleted
		err := w.m.DeleteKey(w.ctx, k.id)
		w.call(op, err)
		if err == nil {
			w.keys = slices.DeleteFunc(w.keys, func(other *auditKey) bool { return other == k })
			w.deleted = append(w.deleted, k.id)
		}
	default:
		if len(w.deleted) == 0 {
			w.redeem(k)
			return
		}
		op.KeyID = w.deleted[w.rng.IntN(len(w.deleted))]
		w.renew(op) // ErrKeyNotFound
	}
}

func (w *auditWorker) create() {
	key, link, err := w.m.CreateKey(w.ctx, tokens.KeySpec{Account: w.account, Name: "audited"})
	op := auditOp{Account: w.account, Call: "CreateKey", Event: tokens.EventKeyCreated}
	if err == nil {
		op.KeyID = key.ID
		w.keys = append(w.keys, &auditKey{id: key.ID, links: []string{link.URL}, active: true})
	}
	w.call(op, err)
}

// renew renews op.KeyID with a policy drawn at random and returns the
// link, nil if it failed.
func (w *auditWorker) renew(op auditOp) *tokens.ShareLink {
	opts := tokens.RenewOptions{}
	switch w.rng.IntN(3) {
	case 1:
		opts.OldToken = tokens.DeleteNow
	case 2:
		opts.OldTokenTTL = tokens.MinOldTokenTTL + time.Duration(w.rng.Int64N(int64(auditMaxTTL)))
	}
	op.Call, op.Event, op.Policy, op.TTL = "Renew", tokens.EventTokenRenewed, opts.OldToken, opts.OldTokenTTL
	link, err := w.m.Renew(w.ctx, op.KeyID, opts)
	w.call(op, err)
	return link
}

// redeem redeems the key's latest link, or now and then an earlier one.
func (w *auditWorker) redeem(k *auditKey) {
	url := k.links[len(k.links)-1]
	if w.rng.IntN(8) == 0 {
		url = k.links[w.rng.IntN(len(k.links))]
	}
	creds, err := w.m.RedeemLink(w.ctx, url)
	if err == nil {
		k.tokens = append(k.tokens, creds.Token)
		if creds.KeyID != k.id {
			err = fmt.Errorf("redeemed the credentials of key %s", creds.KeyID)
		}
	}
	w.call(auditOp{KeyID: k.id, Account: w.account, Call: "RedeemLink", Event: tokens.EventLinkRedeemed}, err)
}

// verifyRevealed verifies a token the key revealed, current or not. A
// deleted one may record its use (R16), an event: only this worker
// changes the key, so reading the key before and after tells whether it
// did.
func (w *auditWorker) verifyRevealed(k *auditKey) {
	if len(k.tokens) == 0 {
		w.redeem(k)
		return
	}
	op := auditOp{KeyID: k.id, Account: w.account, Call: "Verify"}
	before, err := w.m.Key(w.ctx, k.id)
	if err != nil {
		w.call(op, err)
		return
	}
	_, verr := w.m.Verify(w.ctx, k.id, k.tokens[w.rng.IntN(len(k.tokens))])
	after, err := w.m.Key(w.ctx, k.id)
	switch {
	case err != nil:
		w.call(op, err)
	case !after.RevokedTokenUsedAt.Equal(before.RevokedTokenUsedAt):
		op.Event = tokens.EventRevokedTokenUsed
		if !errors.Is(verr, tokens.ErrTokenRevoked) {
			verr = fmt.Errorf("recorded a use of a deleted token, but Verify said %v", verr)
		} else {
			verr = nil
		}
		w.call(op, verr)
	default:
		// No event whatever Verify said; a refusal is no failure here.
		w.call(op, nil)
	}
}

func (w *auditWorker) sharedStep() {
	id := w.shared[w.rng.IntN(len(w.shared))]
	op := auditOp{KeyID: id, Account: auditSharedAccount}
	switch n := w.rng.IntN(100); {
	case n < 40:
		link := w.renew(op)
		if link != nil && w.rng.IntN(5) != 0 {
			creds, err := w.m.RedeemLink(w.ctx, link.URL)
			if err == nil && creds.KeyID != id {
				err = fmt.Errorf("redeemed the credentials of key %s", creds.KeyID)
			}
			op.Call, op.Event = "RedeemLink", tokens.EventLinkRedeemed
			w.call(op, err)
		}
	case n < 55:
		op.Call, op.Event = "DeleteOld", tokens.EventOldTokenDeleted
		w.call(op, w.m.DeleteOld(w.ctx, id))
	case n < 65:
		op.Call, op.Event = "Undo", tokens.EventRenewalUndone
		w.call(op, w.m.Undo(w.ctx, id))
	case n < 80:
		op.Call, op.Event = "RevokeLink", tokens.EventLinkRevoked
		w.call(op, w.m.RevokeLink(w.ctx, id))
	case n < 90:
		op.Call, op.Event, op.Maybe = "Deactivate", tokens.EventKeyDeactivated, true
		w.call(op, w.m.Deactivate(w.ctx, id))
	default:
		op.Call, op.Event, op.Maybe = "Activate", tokens.EventKeyActivated, true
		w.call(op, w.m.Activate(w.ctx, id))
	}
}

// auditKillLocks are rows a PostgreSQL session can hold to stop a change
// inside its transaction: the key's row stops it before its writes, an
// uncommitted change under the order number it will take after them, at
// the logging that comes last, and an uncommitted event under the number
// it will take in its last statement, which inserts its change and event.
var auditKillLocks = []struct {
	name, lock, statement string
	needsKey              bool
}{
	{
		name:      "KeyRow",
		lock:      `SELECT 1 FROM tokens_keys WHERE id = $1 FOR UPDATE`,
		statement: "tokens_keys",
		needsKey:  true,
	},
	{
		name:      "ChangeLog",
		lock:      pgNextChange,
		statement: "INSERT INTO tokens_changes",
	},
	{
		name: "EventInsert",
		lock: `INSERT INTO tokens_events (seq, at, key_id, account, type, actor, policy, old_token_ttl)
			SELECT coalesce(pg_sequence_last_value('tokens_changes_seq'), 0) + 1,
				'2026-03-02T09:30:00Z', $1, '', 'blocker', '', 0, 0`,
		statement: "INSERT INTO tokens_events",
	},
}

// auditKillCall is a change whose connection is killed mid-way.
type auditKillCall struct {
	name  string
	event tokens.EventType
	// prepare makes a key that call changes, and returns its ID and the
	// link call needs, if any. call returns the ID of the key it changed.
	prepare func(t *testing.T, m *tokens.Manager) (id, link string)
	call    func(ctx context.Context, m *tokens.Manager, id, link string) (string, error)
}

// auditKillAccount holds the keys of TestAuditKilledConnection.
const auditKillAccount = "audit-killed"

func auditKillCalls() []auditKillCall {
	created := func(t *testing.T, m *tokens.Manager) (string, string) {
		key, link, err := m.CreateKey(t.Context(), tokens.KeySpec{Account: auditKillAccount, Name: "killed"})
		require.NoError(t, err)
		return key.ID, link.URL
	}
	redeemed := func(t *testing.T, m *tokens.Manager) (string, string) {
		id, link := created(t, m)
		_, err := m.RedeemLink(t.Context(), link)
		require.NoError(t, err)
		return id, ""
	}
	renewed := func(t *testing.T, m *tokens.Manager) (string, string) {
		id, _ := redeemed(t, m)
		link, err := m.Renew(t.Context(), id, tokens.RenewOptions{})
		require.NoError(t, err)
		return id, link.URL
	}
	keyCall := func(fn func(m *tokens.Manager, ctx context.Context, id string) error) func(context.Context, *tokens.Manager, string, string) (string, error) {
		return func(ctx context.Context, m *tokens.Manager, id, _ string) (string, error) {
			return id, fn(m, ctx, id)
		}
	}
	return []auditKillCall{
		{
			name: "CreateKey", event: tokens.EventKeyCreated,
			prepare: func(*testing.T, *tokens.Manager) (string, string) { return "", "" },
			call: func(ctx context.Context, m *tokens.Manager, _, _ string) (string, error) {
				key, _, err := m.CreateKey(ctx, tokens.KeySpec{Account: auditKillAccount, Name: "created"})
				if err != nil {
					return "", err
				}
				return key.ID, nil
			},
		},
		{
			name: "RedeemLink", event: tokens.EventLinkRedeemed, prepare: created,
			call: func(ctx context.Context, m *tokens.Manager, id, link string) (string, error) {
				_, err := m.RedeemLink(ctx, link)
				return id, err
			},
		},
		{
			name: "Renew", event: tokens.EventTokenRenewed, prepare: redeemed,
			call: keyCall(func(m *tokens.Manager, ctx context.Context, id string) error {
				_, err := m.Renew(ctx, id, tokens.RenewOptions{OldTokenTTL: time.Hour})
				return err
			}),
		},
		{name: "RevokeLink", event: tokens.EventLinkRevoked, prepare: created, call: keyCall((*tokens.Manager).RevokeLink)},
		{name: "DeleteOld", event: tokens.EventOldTokenDeleted, prepare: renewed, call: keyCall((*tokens.Manager).DeleteOld)},
		{name: "Undo", event: tokens.EventRenewalUndone, prepare: renewed, call: keyCall((*tokens.Manager).Undo)},
		{name: "Deactivate", event: tokens.EventKeyDeactivated, prepare: redeemed, call: keyCall((*tokens.Manager).Deactivate)},
		{name: "DeleteKey", event: tokens.EventKeyDeleted, prepare: redeemed, call: keyCall((*tokens.Manager).DeleteKey)},
	}
}

// TestAuditKilledConnection kills, with pg_terminate_backend, the
// connection of a change whose transaction waits for a lock: before its
// writes (the key's row), after them (the change log), or at its last
// statement, the INSERT of its event. Neither the change nor its event
// may remain, nor any logged write. The same call made again commits
// with exactly one event and one logged write.
func TestAuditKilledConnection(t *testing.T) {
	for _, b := range backends {
		if !strings.HasPrefix(b.Name, "postgres") {
			continue // SQLite runs in the process: no connection to kill
		}
		t.Run(b.Name, func(t *testing.T) {
			c := newCluster(t, b, 1)
			in := c.inst[0]
			admin := open(t, b.Driver, c.dsn)
			killed := 0
			for _, call := range auditKillCalls() {
				for _, at := range auditKillLocks {
					if at.needsKey && call.name == "CreateKey" {
						continue
					}
					t.Run(call.name+"/"+at.name, func(t *testing.T) {
						runAuditKill(t, in, admin, call, at.lock, at.statement)
						killed++
					})
				}
			}
			t.Logf("audit: %s: %d changes killed mid-way left no change and no event; each made again has one event", b.Name, killed)
		})
	}
}

func runAuditKill(t *testing.T, in instance, admin *sqlx.DB, call auditKillCall, lock, statement string) {
	ctx := t.Context()
	id, link := call.prepare(t, in.m)
	before := auditSnapshot(t, in, id)

	blocker, release := pgLock(t, admin, lock, id)
	done := make(chan error, 1)
	go func() {
		_, err := call.call(tokens.WithActor(ctx, "killed"), in.m, id, link)
		done <- err
	}()
	pid, waiting := waitForBlockedBackend(t, admin, blocker, done)
	require.Contains(t, waiting, statement, "the change waits at another statement")
	var terminated bool
	require.NoError(t, admin.GetContext(ctx, &terminated, "SELECT pg_terminate_backend($1)", pid))
	require.True(t, terminated)
	auditWaitForExit(t, admin, pid)
	err := requireEnded(t, done, "its connection was killed")
	require.Error(t, err, "the change succeeded on a killed connection")
	require.NotErrorIs(t, err, tokens.ErrOutcomeUnknown, "the change failed before its COMMIT")
	release()
	require.Equal(t, before, auditSnapshot(t, in, id), "the killed change left something behind")

	changed, err := call.call(tokens.WithActor(ctx, "again"), in.m, id, link)
	require.NoError(t, err, "the change made again")
	after := auditSnapshot(t, in, changed)
	require.Equal(t, before.changes+1, after.changes, "one logged write")
	require.Len(t, after.events, len(before.events)+1, "one event")
	require.Equal(t, before.events, after.events[:len(before.events)])
	e := after.events[len(after.events)-1]
	require.Equal(t, changed, e.KeyID)
	require.Equal(t, call.event, e.Type)
	require.Equal(t, "again", e.Actor)
	require.Equal(t, auditKillAccount, e.Account)
}

// auditWaitForExit waits until backend pid has ended, and with it its
// transaction. pg_terminate_backend's own wait checks every 100 ms;
// awaitPostgres looks more often.
func auditWaitForExit(t *testing.T, admin *sqlx.DB, pid int) {
	t.Helper()
	require.NoError(t, awaitPostgres(t.Context(), admin, fmt.Sprintf("backend %d still runs after it was terminated", pid),
		`SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)`, pid))
}

// auditState is what a killed change must leave as it was.
type auditState struct {
	record  string // the key's record, "" if none
	keys    int    // keys of auditKillAccount
	changes int    // numbered writes kept
	events  []tokens.Event
}

func auditSnapshot(t *testing.T, in instance, id string) auditState {
	t.Helper()
	var s auditState
	if id != "" {
		rec, err := in.st.Key(t.Context(), id)
		if !errors.Is(err, tokens.ErrKeyNotFound) {
			require.NoError(t, err)
			s.record = fmt.Sprintf("%#v", rec)
		}
	}
	keys, err := in.m.Keys(t.Context(), auditKillAccount)
	require.NoError(t, err)
	s.keys = len(keys)
	require.NoError(t, in.db.GetContext(t.Context(), &s.changes, "SELECT count(*) FROM tokens_changes"))
	s.events = auditAllEvents(t, in.m, tokens.EventQuery{})
	for i := range s.events { // a Cursor names the snapshot it was read in
		s.events[i].Cursor = auditEventID(s.events[i].Cursor)
	}
	return s
}

// auditSweepCalls is how many calls of each kind TestAuditDeadlineSweep
// makes, with deadlines spread over 0 to auditSweepSpan.
const (
	auditSweepCalls = 120
	auditSweepSpan  = 4 * time.Millisecond
)

// auditLostCommits counts the writes whose store call failed with
// ErrOutcomeUnknown, the Manager's own checks included.
type auditLostCommits struct {
	tokens.Store
	n atomic.Int64
}

func (s *auditLostCommits) count(err error) error {
	if errors.Is(err, tokens.ErrOutcomeUnknown) {
		s.n.Add(1)
	}
	return err
}

func (s *auditLostCommits) InsertKey(ctx context.Context, rec *tokens.KeyRecord) error {
	return s.count(s.Store.InsertKey(ctx, rec))
}

func (s *auditLostCommits) UpdateKey(ctx context.Context, rec *tokens.KeyRecord) error {
	return s.count(s.Store.UpdateKey(ctx, rec))
}

func (s *auditLostCommits) DeleteKey(ctx context.Context, id string, ev *tokens.Event) error {
	return s.count(s.Store.DeleteKey(ctx, id, ev))
}

// auditSweepBackends are the backends TestAuditDeadlineSweep sweeps: one
// SQLite driver, whose transactions run in the process, and both
// PostgreSQL drivers, whose COMMIT a deadline can cut off on the wire.
var auditSweepBackends = []string{"sqlite", "postgres_lib_pq", "postgres_pgx"}

// TestAuditDeadlineSweep interrupts RedeemLink, Renew and DeleteKey calls
// with deadlines from 0 to 4 ms, so that some fire while the COMMIT is in
// flight, when the connection is dropped and the store cannot tell what
// happened. Whatever each call reported, its key must hold exactly one
// event of the call's type if the change is in the database, and none if
// it is not.
func TestAuditDeadlineSweep(t *testing.T) {
	for _, b := range backends {
		if !slices.Contains(auditSweepBackends, b.Name) {
			continue
		}
		t.Run(b.Name, func(t *testing.T) {
			c := newCluster(t, b, 1)
			in := c.inst[0]
			ctx := t.Context()
			lost := &auditLostCommits{Store: in.st}
			m, err := tokens.NewManager(lost, tokens.WithClock(c.clk), tokens.WithShareBaseURL(shareBase))
			require.NoError(t, err)
			spare, _, err := m.CreateKey(ctx, tokens.KeySpec{Account: "spare", Name: "spare"})
			require.NoError(t, err)
			ids := make([]string, auditSweepCalls)
			links := make([]string, auditSweepCalls)
			for i := range ids {
				key, link, err := m.CreateKey(ctx, tokens.KeySpec{Account: "sweep", Name: "swept"})
				require.NoError(t, err)
				ids[i], links[i] = key.ID, link.URL
			}
			sweep := func(name string, typ tokens.EventType, call func(ctx context.Context, i int) error, done func(i int) bool) {
				lost.n.Store(0)
				began := time.Now()
				errs := make([]error, auditSweepCalls)
				for i := range auditSweepCalls {
					// A write without a deadline first, so that the call
					// does not spend its deadline on a new connection.
					if i%2 == 0 {
						require.NoError(t, m.Deactivate(ctx, spare.ID))
					} else {
						require.NoError(t, m.Activate(ctx, spare.ID))
					}
					callCtx, cancel := context.WithTimeout(ctx, time.Duration(i)*auditSweepSpan/auditSweepCalls)
					errs[i] = call(callCtx, i)
					cancel()
				}
				var committed, ok, failed, unknown int
				var mismatches []string
				for i, err := range errs {
					applied := done(i)
					events := auditFilter(auditAllEvents(t, m, tokens.EventQuery{KeyID: ids[i], Limit: 50}),
						func(e tokens.Event) bool { return e.Type == typ })
					if applied {
						committed++
					}
					if want := map[bool]int{true: 1, false: 0}[applied]; len(events) != want {
						mismatches = append(mismatches, fmt.Sprintf("%s %d (%v): applied %v, %d %s events", name, i, err, applied, len(events), typ))
					}
					switch {
					case err == nil:
						ok++
						if !applied {
							mismatches = append(mismatches, fmt.Sprintf("%s %d succeeded but is not applied", name, i))
						}
					case errors.Is(err, tokens.ErrOutcomeUnknown):
						unknown++
					default:
						failed++
						if applied {
							mismatches = append(mismatches, fmt.Sprintf("%s %d failed (%v) but is applied", name, i, err))
						}
					}
				}
				t.Logf("audit: sweep %s %s: %d calls, %d applied with one event each, %d not applied with none (%d ok, %d failed, %d outcome unknown; %d writes lost their COMMIT's answer) in %v",
					b.Name, name, auditSweepCalls, committed, auditSweepCalls-committed, ok, failed, unknown, lost.n.Load(),
					time.Since(began).Round(time.Millisecond))
				require.Empty(t, mismatches)
			}

			sweep("RedeemLink", tokens.EventLinkRedeemed, func(ctx context.Context, i int) error {
				_, err := m.RedeemLink(ctx, links[i])
				return err
			}, func(i int) bool {
				rec, err := in.st.Key(ctx, ids[i])
				require.NoError(t, err)
				return !rec.Link.RedeemedAt.IsZero()
			})

			// Every link is now redeemed or expired, so every key renews.
			c.clk.Add(25 * time.Hour)
			before := make([]tokens.KeyRecord, auditSweepCalls)
			for i, id := range ids {
				before[i], err = in.st.Key(ctx, id)
				require.NoError(t, err)
			}
			sweep("Renew", tokens.EventTokenRenewed, func(ctx context.Context, i int) error {
				_, err := m.Renew(ctx, ids[i], tokens.RenewOptions{})
				return err
			}, func(i int) bool {
				rec, err := in.st.Key(ctx, ids[i])
				require.NoError(t, err)
				return rec.Link.Digest != before[i].Link.Digest
			})

			sweep("DeleteKey", tokens.EventKeyDeleted, func(ctx context.Context, i int) error {
				return m.DeleteKey(ctx, ids[i])
			}, func(i int) bool {
				_, err := in.st.Key(ctx, ids[i])
				if errors.Is(err, tokens.ErrKeyNotFound) {
					return true
				}
				require.NoError(t, err)
				return false
			})
		})
	}
}
