package tokens_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/store/memstore"
)

// TestModel runs random sequences of operations against a Manager on
// memstore with a mock clock and, after every step, compares everything the
// public API shows with a small reference model written from SPEC.md (R1-R11,
// R14-R17), not from the implementation. A failure prints the seed, a replay
// command and the last operations.
//
//	go test -race -count=1 -run TestModel .                          # 10 seeds x 600 steps
//	go test -count=1 -run TestModel . -model.seed=7 -model.steps=900  # replay one seed
//	go test -count=1 -run TestModel . -model.seeds=40 -model.steps=5000
//
// TOKENS_MODEL_SEED and TOKENS_MODEL_STEPS work like the flags.
var (
	modelSeedFlag  = flag.Uint64("model.seed", 0, "TestModel: run only this seed (also TOKENS_MODEL_SEED)")
	modelStepsFlag = flag.Int("model.steps", 0, "TestModel: steps per seed, default 600 (also TOKENS_MODEL_STEPS)")
	modelSeedsFlag = flag.Int("model.seeds", 10, "TestModel: how many seeds, 1 to n, when no seed is given")
)

const (
	modelBase         = "https://share.example.com/credentials/"
	modelDefaultSteps = 600
	modelMaxLiveKeys  = 6
	modelLogSize      = 20
	// modelFullSweep is how many revealed tokens the after-step sweep
	// verifies all of; beyond it (long runs) it samples, so that a step
	// costs the same however long the run.
	modelFullSweep = 400
)

func TestModel(t *testing.T) {
	steps := modelDefaultSteps
	if *modelStepsFlag > 0 {
		steps = *modelStepsFlag
	} else if s := os.Getenv("TOKENS_MODEL_STEPS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("TOKENS_MODEL_STEPS: %v", err)
		}
		steps = n
	}
	var seeds []uint64
	seed := *modelSeedFlag
	if s := os.Getenv("TOKENS_MODEL_SEED"); seed == 0 && s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("TOKENS_MODEL_SEED: %v", err)
		}
		seed = n
	}
	if seed != 0 {
		seeds = []uint64{seed}
	} else {
		for i := 1; i <= *modelSeedsFlag; i++ {
			seeds = append(seeds, uint64(i))
		}
	}

	cover := &modelCoverage{counts: map[string]int{}}
	t.Run("seeds", func(t *testing.T) {
		for _, seed := range seeds {
			t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
				t.Parallel()
				runModel(t, seed, steps, cover, func() tokens.Store { return memstore.New() })
			})
		}
	})
	if testing.Verbose() && !t.Failed() {
		t.Logf("%d seeds x %d steps; outcomes seen:\n%s", len(seeds), steps, cover)
	}
}

// runModel drives one seeded run of steps operations against a Manager on
// the store newStore returns. It depends on nothing but the seed, so the
// first n steps of a run are the same whatever steps is.
func runModel(t *testing.T, seed uint64, steps int, cover *modelCoverage, newStore func() tokens.Store) {
	rng := rand.New(rand.NewPCG(seed, 0x746f6b656e73))
	r := &modelRun{
		t:     t,
		ctx:   context.Background(),
		rng:   rng,
		seed:  seed,
		steps: steps,
		clk:   clock.NewMock(),
		cover: map[string]int{},
	}
	// Start on a random microsecond between 2020 and 2030, often on a
	// month's last day so that R10's calendar months normalise.
	r.start = time.Date(2020+rng.IntN(10), time.Month(1+rng.IntN(12)), 1+rng.IntN(28),
		rng.IntN(24), rng.IntN(60), rng.IntN(60), rng.IntN(1e6)*1e3, time.UTC)
	if rng.IntN(3) == 0 {
		r.start = time.Date(r.start.Year(), r.start.Month()+1, 0, 23, 59, 59, 999999e3, time.UTC)
	}
	r.clk.Set(r.start)

	opts := []tokens.Option{tokens.WithClock(r.clk), tokens.WithShareBaseURL(modelBase)}
	r.alertAfter = 3 // the default
	switch rng.IntN(4) {
	case 1:
		r.alertAfter = 1
	case 2:
		r.alertAfter = 6
	case 3:
		r.alertAfter = []int{3, 12, 24}[rng.IntN(3)]
	}
	if r.alertAfter != 3 || rng.IntN(2) == 0 {
		opts = append(opts, tokens.WithAlertAfter(r.alertAfter))
	}
	r.ttl = 24 * time.Hour // the default
	if rng.IntN(4) == 0 {
		r.ttl = []time.Duration{90 * time.Minute, 24 * time.Hour, 72 * time.Hour}[rng.IntN(3)]
		opts = append(opts, tokens.WithLinkTTL(r.ttl))
	}
	// R16: the default retention, reuse detection off, or a retention of
	// days that the clock crosses, so that both sides of its end are seen.
	r.retention = tokens.DefaultRevokedTokenRetention
	switch rng.IntN(6) {
	case 1:
		opts = append(opts, tokens.WithRevokedTokenRetention(r.retention))
	case 2:
		r.retention = 0
		opts = append(opts, tokens.WithRevokedTokenRetention(0))
	case 3, 4, 5:
		r.retention = []time.Duration{26 * time.Hour, 72 * time.Hour, 7 * 24 * time.Hour}[rng.IntN(3)]
		opts = append(opts, tokens.WithRevokedTokenRetention(r.retention))
	}
	if rng.IntN(2) == 0 {
		r.actor = "model admin"
		r.ctx = tokens.WithActor(r.ctx, r.actor) // R17
	}
	r.store = newStore()
	m, err := tokens.NewManager(r.store, opts...)
	if err != nil {
		t.Fatalf("seed %d: NewManager: %v", seed, err)
	}
	r.m = m

	ops := r.ops()
	total := 0
	for _, op := range ops {
		total += op.weight
	}
	for r.step = 1; r.step <= steps; r.step++ {
		r.light = rng.IntN(4) == 0
		n := rng.IntN(total)
		for _, op := range ops {
			if n < op.weight {
				op.run()
				break
			}
			n -= op.weight
		}
		r.checkAll()
	}
	r.step = steps
	r.checkKeys()
	cover.add(r.cover)
}

type modelToken struct {
	n        int
	key      *modelKey
	secret   string        // "" until a link revealed it
	digest   tokens.Digest // what the store keeps of it, read when issued
	created  time.Time
	lastUsed time.Time
	// revoked is when the token stopped verifying because it was deleted
	// (R16), zero while it is current or old; ended says that it was its
	// scheduled end as old token (R14).
	revoked time.Time
	ended   bool
	why     string // what deleted it, for the coverage counts
}

type modelLink struct {
	n        int
	url      string
	key      *modelKey
	token    *modelToken
	expires  time.Time
	redeemed bool
	revoked  bool // by RevokeLink (R15)
}

type modelKey struct {
	n               int
	id              string
	account, name   string
	created         time.Time
	active, deleted bool
	cur             *modelToken
	curSeen         bool // the current token's link was redeemed, or Undo restored it (R4, R5)
	old             *modelToken
	oldEnds         time.Time   // the old token's scheduled end (R14); zero if none
	ended           *modelToken // the old token R14 ended, until the next Renew, Undo or DeleteOld
	link            *modelLink  // the latest link; nil once Undo revoked it
	tokens          []*modelToken
	revokedUsed     time.Time          // Key.RevokedTokenUsedAt (R16)
	events          []tokens.EventType // every event the key's changes appended (R17)
}

// modelEvent is an event the model expects a change to append (R17).
type modelEvent struct {
	key    *modelKey
	typ    tokens.EventType
	at     time.Time
	policy tokens.OldTokenPolicy
	ttl    time.Duration
}

type modelRun struct {
	t          *testing.T
	ctx        context.Context
	rng        *rand.Rand
	seed       uint64
	steps      int
	step       int
	clk        *clock.Mock
	m          *tokens.Manager
	store      tokens.Store
	start      time.Time
	alertAfter int
	ttl        time.Duration
	retention  time.Duration // of deleted tokens (R16); 0: off
	actor      string        // WithActor of every call (R17); "" for none
	light      bool          // this step's sweep skips the tokens expected to verify or be reported revoked

	keys    []*modelKey
	tokens  []*modelToken
	links   []*modelLink
	secrets map[string]*modelToken

	events []modelEvent // appended since the last check (R17)
	cursor string       // of the last event checked

	log   [modelLogSize]string
	cover map[string]int
}

type modelOp struct {
	weight int
	run    func()
}

func (r *modelRun) ops() []modelOp {
	return []modelOp{
		{6, r.opCreate},
		{1, r.opCreateInvalid},
		{7, func() { r.opRenew(tokens.DeleteLater) }},
		{5, func() { r.opRenew(tokens.DeleteNow) }},
		{1, r.opRenewInvalid},
		{12, r.opRedeem},
		{2, r.opRevokeLink},
		{4, r.opUndo},
		{4, r.opDeleteOld},
		{2, func() { r.opSetActive(true) }},
		{2, func() { r.opSetActive(false) }},
		{1, r.opDeleteKey},
		{8, r.opAdvance},
		{3, r.opAdvanceToBoundary},
		{5, r.opVerify},
		{1, r.opPurge},
		{2, r.opConcurrent},
	}
}

func (r *modelRun) now() time.Time { return r.clk.Now().UTC() }

func (r *modelRun) at(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return "T+" + t.Sub(r.start).String()
}

func (r *modelRun) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "TestModel seed %d, step %d (alert after %d months, link TTL %v, revoked tokens kept %v, actor %q, start %s)\n",
		r.seed, r.step, r.alertAfter, r.ttl, r.retention, r.actor, r.start.Format(time.RFC3339Nano))
	fmt.Fprintf(&b, "replay: go test -count=1 -run 'TestModel/seeds/seed=%d$' . -model.seed=%d -model.steps=%d\n",
		r.seed, r.seed, r.step)
	b.WriteString("last operations, oldest first:\n")
	for i := range modelLogSize {
		if e := r.log[(r.step+1+i)%modelLogSize]; e != "" {
			b.WriteString("  " + e + "\n")
		}
	}
	b.WriteString("model now (" + r.at(r.now()) + "):\n")
	deleted := 0
	for _, k := range r.keys {
		if k.deleted {
			deleted++
			continue
		}
		b.WriteString("  " + r.describe(k) + "\n")
	}
	fmt.Fprintf(&b, "  and %d deleted keys\n", deleted)
	return b.String()
}

func (r *modelRun) failf(format string, args ...any) {
	r.t.Helper()
	r.t.Fatalf("%s\n%s", fmt.Sprintf(format, args...), r)
}

// record logs the step's operation and counts its kind and outcome.
func (r *modelRun) record(kind, op string, want error, detail string) {
	outcome := modelOutcome(want)
	r.cover[kind+" -> "+outcome]++
	r.log[r.step%modelLogSize] = fmt.Sprintf("#%d %s %s -> %s%s", r.step, r.at(r.now()), op, outcome, detail)
}

// modelOutcome names the outcome want for the log and coverage counts.
func modelOutcome(want error) string {
	if want == nil {
		return "ok"
	}
	if want == tokens.ErrTokenRevoked {
		return "token revoked"
	}
	outcome := strings.TrimPrefix(want.Error(), "tokens: ")
	if i := strings.IndexByte(outcome, ':'); i >= 0 {
		outcome = outcome[:i]
	}
	return outcome
}

func (r *modelRun) describe(k *modelKey) string {
	if k == nil {
		return "unknown key"
	}
	if k.deleted {
		return fmt.Sprintf("k%d deleted", k.n)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "k%d{active=%t cur=%s", k.n, k.active, r.describeToken(k.cur))
	if k.curSeen {
		b.WriteString(" seen")
	}
	if k.old != nil {
		b.WriteString(" old=" + r.describeToken(k.old))
		if !k.oldEnds.IsZero() {
			b.WriteString(" ending " + r.at(k.oldEnds))
		}
	}
	if !k.revokedUsed.IsZero() {
		b.WriteString(" revoked token used " + r.at(k.revokedUsed))
	}
	if l := k.link; l != nil && l.revoked {
		fmt.Fprintf(&b, " link=l%d(revoked by RevokeLink)", l.n)
	} else if l != nil {
		fmt.Fprintf(&b, " link=l%d(%v, expires %s)", l.n, r.linkState(k, r.now()), r.at(l.expires))
	} else {
		b.WriteString(" link=revoked")
	}
	b.WriteString("}")
	return b.String()
}

func (r *modelRun) describeToken(t *modelToken) string {
	known := ""
	if t.secret == "" {
		known = " unrevealed"
	}
	if !t.revoked.IsZero() {
		known += " revoked " + r.at(t.revoked)
	}
	return fmt.Sprintf("t%d(created %s, used %s%s)", t.n, r.at(t.created), r.at(t.lastUsed), known)
}

// renewWant is the reference model's Renew outcome: R3, R5 and the key
// look-up. It and the other ...Want functions restate SPEC.md rules; they
// are the model's only source of expected outcomes.
func (r *modelRun) renewWant(k *modelKey, now time.Time) error {
	switch {
	case k == nil || k.deleted:
		return tokens.ErrKeyNotFound
	case k.link != nil && r.linkWant(k.link, now) == nil:
		return tokens.ErrRenewalPending // R3; not after RevokeLink (R15)
	case k.old != nil && k.curSeen:
		return tokens.ErrOldTokenPending // R5, whatever the policy
	}
	return nil
}

// linkWant is R8: only a live key's latest link is found, unless
// RevokeLink ended it (R15).
func (r *modelRun) linkWant(l *modelLink, now time.Time) error {
	switch {
	case l.key.deleted || l.key.link != l || l.revoked:
		return tokens.ErrLinkNotFound
	case l.redeemed:
		return tokens.ErrLinkUsed
	case !now.Before(l.expires):
		return tokens.ErrLinkExpired
	}
	return nil
}

// verifyWant is R9 and R16; k is nil for an ID no key has, t nil for a
// token no one issued.
func (r *modelRun) verifyWant(k *modelKey, t *modelToken, now time.Time) error {
	switch {
	case k == nil || k.deleted || t == nil:
		return tokens.ErrInvalidCredentials
	case t != k.cur && t != k.old:
		if t.key == k && t.revoked.IsZero() {
			r.failf("model: t%d of k%d is neither current, old nor revoked", t.n, k.n)
		}
		if t.key == k && r.remembered(t, now) {
			return tokens.ErrTokenRevoked // R16, whether or not the key is active
		}
		return tokens.ErrInvalidCredentials
	case !k.active:
		return tokens.ErrKeyInactive
	}
	return nil
}

// remembered is R16's retention: a deleted token is known as such while
// now < its deletion + the retention.
func (r *modelRun) remembered(t *modelToken, now time.Time) bool {
	return r.retention > 0 && now.Before(t.revoked.Add(r.retention))
}

// revoke applies R16 to a token that stops verifying because it was
// deleted at at: DeleteOld, DeleteNow, an R4 discard, Undo, an R14 end.
func (r *modelRun) revoke(t *modelToken, at time.Time, why string) {
	if !t.revoked.IsZero() {
		r.failf("model: t%d of k%d revoked twice", t.n, t.key.n)
	}
	t.revoked, t.why = at, why
}

// revokedUsed is R16's record of a revoked token's use: the latest, at
// most once a minute per key, each record appending an event (R17).
func (r *modelRun) revokedUsed(k *modelKey, now time.Time) {
	switch since := now.Sub(k.revokedUsed); {
	case k.revokedUsed.IsZero():
		r.cover["R16 boundary: first use of a revoked token"]++
	case since == time.Minute:
		r.cover["R16 boundary: revoked token used again exactly a minute later"]++
	case since == time.Minute-time.Microsecond:
		r.cover["R16 boundary: revoked token used again a microsecond short of a minute"]++
	}
	if k.revokedUsed.IsZero() || now.Sub(k.revokedUsed) >= time.Minute {
		k.revokedUsed = now
		r.expectEvent(k, tokens.EventRevokedTokenUsed)
	}
}

// endOld applies R14 at now: an old token whose scheduled end has come is
// gone as if DeleteOld had run then. Only advance moves the clock, so it
// runs there.
func (r *modelRun) endOld(now time.Time) {
	for _, k := range r.live() {
		if k.old == nil || k.oldEnds.IsZero() || now.Before(k.oldEnds) {
			continue
		}
		r.cover["R14 old token reached its end"]++
		r.revoke(k.old, k.oldEnds, "its end (R14)")
		k.old.ended = true
		k.ended, k.old, k.oldEnds = k.old, nil, time.Time{}
	}
}

// expectEvent notes that k's change at the current time appended an event
// of type typ (R17).
func (r *modelRun) expectEvent(k *modelKey, typ tokens.EventType) {
	r.events = append(r.events, modelEvent{key: k, typ: typ, at: r.now()})
	k.events = append(k.events, typ)
}

// used is R9's throttle: the first use at once, later ones when the last
// recorded is at least a minute old.
func (r *modelRun) used(t *modelToken, now time.Time) {
	switch since := now.Sub(t.lastUsed); {
	case t.lastUsed.IsZero():
		r.cover["R9 boundary: first use"]++
	case since == time.Minute:
		r.cover["R9 boundary: used again exactly a minute later"]++
	case since == time.Minute-time.Microsecond:
		r.cover["R9 boundary: used again a microsecond short of a minute"]++
	}
	if t.lastUsed.IsZero() || now.Sub(t.lastUsed) >= time.Minute {
		t.lastUsed = now
	}
}

// alertWant is R10.
func (r *modelRun) alertWant(ref, now time.Time) tokens.AlertLevel {
	ref = ref.UTC()
	switch {
	case !now.Before(ref.AddDate(0, r.alertAfter+3, 0)):
		return tokens.AlertCritical
	case !now.Before(ref.AddDate(0, r.alertAfter, 0)):
		return tokens.AlertWarning
	}
	return tokens.AlertNone
}

func (r *modelRun) linkState(k *modelKey, now time.Time) tokens.LinkState {
	if k.link == nil {
		return tokens.LinkNotFound
	}
	switch r.linkWant(k.link, now) {
	case tokens.ErrLinkUsed:
		return tokens.LinkUsed
	case tokens.ErrLinkExpired:
		return tokens.LinkExpired
	case nil:
		return tokens.LinkPending
	}
	return tokens.LinkNotFound
}

func (r *modelRun) issue(k *modelKey, now time.Time, link *tokens.ShareLink) {
	t := &modelToken{n: len(r.tokens), key: k, created: now}
	rec, err := r.store.Key(r.ctx, k.id)
	r.expectErr(err, nil, "store.Key(k%d) after issuing t%d", k.n, t.n)
	t.digest = rec.Current.Digest
	for _, prev := range k.tokens {
		if prev.digest == t.digest {
			r.failf("store: k%d's new token t%d has the digest of t%d", k.n, t.n, prev.n)
		}
	}
	r.tokens = append(r.tokens, t)
	k.tokens = append(k.tokens, t)
	k.cur, k.curSeen = t, false
	if link == nil {
		r.failf("no share link returned")
	}
	if !strings.HasPrefix(link.URL, modelBase) || len(link.URL) == len(modelBase) {
		r.failf("share link %q does not start with the base %q", link.URL, modelBase)
	}
	if !link.ExpiresAt.Equal(now.Add(r.ttl)) {
		r.failf("share link expires at %s, want issue time + TTL %s", r.at(link.ExpiresAt), r.at(now.Add(r.ttl)))
	}
	for _, l := range r.links {
		if l.url == link.URL {
			r.failf("share link of k%d repeats link l%d", k.n, l.n)
		}
	}
	l := &modelLink{n: len(r.links), url: link.URL, key: k, token: t, expires: now.Add(r.ttl)}
	r.links = append(r.links, l)
	k.link = l
}

func (r *modelRun) live() []*modelKey {
	var ks []*modelKey
	for _, k := range r.keys {
		if !k.deleted {
			ks = append(ks, k)
		}
	}
	return ks
}

func modelPick[T any](rng *rand.Rand, s []T) T {
	return s[rng.IntN(len(s))]
}

// pickKey returns a key and the ID to pass: most often a live key, with
// preference for one where pref holds; sometimes a deleted key or an ID no
// key has (k nil).
func (r *modelRun) pickKey(pref func(*modelKey) bool) (*modelKey, string) {
	live := r.live()
	var deleted []*modelKey
	for _, k := range r.keys {
		if k.deleted {
			deleted = append(deleted, k)
		}
	}
	n := r.rng.IntN(100)
	switch {
	case n < 8 || len(r.keys) == 0:
		return nil, r.unknownID()
	case len(live) == 0:
		k := modelPick(r.rng, r.keys)
		return k, k.id
	case n < 18 && len(deleted) > 0:
		k := modelPick(r.rng, deleted)
		return k, k.id
	case n < 60 && pref != nil:
		var fit []*modelKey
		for _, k := range live {
			if pref(k) {
				fit = append(fit, k)
			}
		}
		if len(fit) > 0 {
			k := modelPick(r.rng, fit)
			return k, k.id
		}
	}
	k := modelPick(r.rng, live)
	return k, k.id
}

func (r *modelRun) unknownID() string {
	return modelPick(r.rng, []string{
		"key_0000000000000000000000",
		"key_" + strings.Repeat("Z", 22),
		"",
		"not a key id",
		"key_../../etc",
		strings.Repeat("k", 65),
	})
}

func (r *modelRun) keyName(k *modelKey) string {
	if k == nil {
		return "unknown"
	}
	return fmt.Sprintf("k%d", k.n)
}

var (
	modelAccounts = []string{"acme", "globex", ""}
	modelNames    = []string{"erp-sync", "erp-sync", "backup", "Zürich nightly export", strings.Repeat("é", 100), "x"}
)

func (r *modelRun) opCreate() {
	if len(r.live()) >= modelMaxLiveKeys {
		r.opAdvance()
		return
	}
	spec := tokens.KeySpec{Account: modelPick(r.rng, modelAccounts), Name: modelPick(r.rng, modelNames)}
	now := r.now()
	key, link, err := r.m.CreateKey(r.ctx, spec)
	r.expectErr(err, nil, "CreateKey")
	if key == nil {
		r.failf("CreateKey returned no key")
	}
	for _, k := range r.keys {
		if k.id == key.ID {
			r.failf("CreateKey repeated the ID of k%d", k.n)
		}
	}
	k := &modelKey{n: len(r.keys), id: key.ID, account: spec.Account, name: spec.Name, created: now, active: true}
	r.keys = append(r.keys, k)
	r.issue(k, now, link) // R1
	r.expectEvent(k, tokens.EventKeyCreated)
	r.expectView(k, key, now, "CreateKey result")
	r.record("CreateKey", fmt.Sprintf("CreateKey(%q) = k%d", spec.Account, k.n), nil, " "+r.describe(k))
}

// opCreateInvalid tries a spec R11 refuses; nothing may be stored, which
// the after-step Keys check sees.
func (r *modelRun) opCreateInvalid() {
	spec := modelPick(r.rng, []tokens.KeySpec{
		{Account: "acme"},
		{Account: "acme", Name: strings.Repeat("n", 201)},
		{Account: "globex", Name: strings.Repeat("é", 100) + "x"},
		{Account: "acme", Name: "bad \xff utf-8"},
		{Account: "bad \xfe account", Name: "ok"},
	})
	key, link, err := r.m.CreateKey(r.ctx, spec)
	r.expectErr(err, tokens.ErrInvalidKeySpec, "CreateKey(%q)", spec)
	if key != nil || link != nil {
		r.failf("CreateKey(invalid spec) returned a key or link")
	}
	r.record("CreateKey(invalid)", fmt.Sprintf("CreateKey(%q)", spec), tokens.ErrInvalidKeySpec, "")
}

// modelOldTokenTTLs are the OldTokenTTLs of DeleteLater renewals (R14):
// mostly none, else ends shorter and longer than a link's lifetime, so
// that R4 sometimes finds an old token with an end.
var modelOldTokenTTLs = []time.Duration{
	0, 0, 0, time.Minute, 90 * time.Minute, 24 * time.Hour, 72 * time.Hour, 7 * 24 * time.Hour,
}

func (r *modelRun) opRenew(policy tokens.OldTokenPolicy) {
	k, id := r.pickKey(func(k *modelKey) bool { return r.renewWant(k, r.now()) == nil })
	now := r.now()
	want := r.renewWant(k, now)
	opts := tokens.RenewOptions{OldToken: policy}
	if policy == tokens.DeleteLater {
		opts.OldTokenTTL = modelPick(r.rng, modelOldTokenTTLs)
	}
	name := fmt.Sprintf("Renew(%s, %v, TTL %v)", r.keyName(k), policy, opts.OldTokenTTL)
	link, err := r.m.Renew(r.ctx, id, opts)
	r.expectErr(err, want, "%s", name)
	if want != nil {
		if link != nil {
			r.failf("%s failed but returned a link", name)
		}
		r.record("Renew("+policy.String()+")", name, want, "")
		return
	}
	before := r.describe(k)
	kind := r.renewed(k, opts, now, link)
	r.record(kind, name, nil, " "+before+" => "+r.describe(k))
}

// opRenewInvalid renews a live key with options R14 refuses, whatever the
// key's state: nothing may change, which the after-step checks see.
func (r *modelRun) opRenewInvalid() {
	live := r.live()
	if len(live) == 0 {
		r.opAdvance()
		return
	}
	k := modelPick(r.rng, live)
	opts := modelPick(r.rng, []tokens.RenewOptions{
		{OldToken: tokens.DeleteLater, OldTokenTTL: -time.Microsecond},
		{OldToken: tokens.DeleteLater, OldTokenTTL: -24 * time.Hour},
		{OldToken: tokens.DeleteNow, OldTokenTTL: time.Hour},
		{OldToken: tokens.DeleteNow, OldTokenTTL: -time.Hour},
	})
	name := fmt.Sprintf("Renew(k%d, %v, TTL %v)", k.n, opts.OldToken, opts.OldTokenTTL)
	link, err := r.m.Renew(r.ctx, k.id, opts)
	r.expectErr(err, tokens.ErrInvalidOption, "%s", name)
	if link != nil {
		r.failf("%s failed but returned a link", name)
	}
	r.record("Renew(invalid options)", name, tokens.ErrInvalidOption, "")
}

// renewed applies a successful Renew to the model (R2, R4, R14, R16) and
// returns the case it was, for the coverage counts.
func (r *modelRun) renewed(k *modelKey, opts tokens.RenewOptions, now time.Time, link *tokens.ShareLink) string {
	policy := opts.OldToken
	kind := "Renew(" + policy.String() + ")"
	var setTTL time.Duration // the end this renewal sets, if any
	switch {
	case !k.curSeen && k.link != nil && k.link.revoked && k.old != nil:
		kind += " [R4 after RevokeLink: unseen token discarded, old token existed]"
	case !k.curSeen && k.link != nil && k.link.revoked:
		kind += " [R4 after RevokeLink: unseen token discarded]"
	case !k.curSeen && k.old != nil && policy == tokens.DeleteLater && !k.oldEnds.IsZero():
		kind += " [R4: unseen token discarded, old token kept with its end]"
	case !k.curSeen && k.old != nil:
		kind += " [R4: unseen token discarded, old token existed]"
	case !k.curSeen:
		kind += " [R4: unseen token discarded]"
	case policy == tokens.DeleteLater && opts.OldTokenTTL > 0:
		kind += " [current token kept as old with an end]"
	case policy == tokens.DeleteLater:
		kind += " [current token kept as old]"
	}
	if k.curSeen && k.ended != nil {
		kind += " [after the old token's end]"
	}
	switch {
	case !k.curSeen:
		// R4: the current token's link expired unredeemed or was revoked
		// (R15); the token is discarded and an existing old token stays
		// old with its end (R14), or goes with DeleteNow.
		if k.link == nil || k.link.redeemed || (!k.link.revoked && now.Before(k.link.expires)) {
			r.failf("model: unseen current token of k%d without an expired or revoked link", k.n)
		}
		r.revoke(k.cur, now, "an R4 discard")
		if policy == tokens.DeleteNow && k.old != nil {
			r.revoke(k.old, now, "DeleteNow")
			k.old, k.oldEnds = nil, time.Time{}
		}
	case policy == tokens.DeleteLater:
		k.old, k.oldEnds = k.cur, time.Time{} // R2
		if opts.OldTokenTTL > 0 {
			k.oldEnds = now.Add(opts.OldTokenTTL) // R14
			setTTL = opts.OldTokenTTL
		}
	default:
		r.revoke(k.cur, now, "DeleteNow") // R2; R5 said there was no old token
	}
	k.ended = nil
	r.issue(k, now, link)
	r.expectEvent(k, tokens.EventTokenRenewed)
	ev := &r.events[len(r.events)-1]
	ev.policy, ev.ttl = policy, setTTL // the event tells the end this renewal set
	return kind
}

func (r *modelRun) opRedeem() {
	var l *modelLink
	n := r.rng.IntN(100)
	switch {
	case len(r.links) == 0:
		r.opAdvance()
		return
	case n < 60:
		// Mostly a link that is still redeemable, so that tokens get seen.
		var latest, pending []*modelLink
		for _, k := range r.live() {
			if k.link != nil {
				latest = append(latest, k.link)
				if r.linkWant(k.link, r.now()) == nil {
					pending = append(pending, k.link)
				}
			}
		}
		if len(pending) > 0 && n < 45 {
			l = modelPick(r.rng, pending)
		} else if len(latest) > 0 {
			l = modelPick(r.rng, latest)
		}
	case n < 70:
		l = modelPick(r.rng, r.links)
		bad := r.mangle(l.url)
		creds, err := r.m.RedeemLink(r.ctx, bad)
		r.expectErr(err, tokens.ErrInvalidLink, "RedeemLink(%q)", bad)
		if creds != nil {
			r.failf("RedeemLink(%q) returned credentials", bad)
		}
		r.record("RedeemLink(mangled)", fmt.Sprintf("RedeemLink(mangled l%d: %q)", l.n, bad), tokens.ErrInvalidLink, "")
		return
	}
	if l == nil {
		l = modelPick(r.rng, r.links)
	}
	now := r.now()
	want := r.linkWant(l, now)
	name := fmt.Sprintf("RedeemLink(l%d of k%d for t%d)", l.n, l.key.n, l.token.n)
	kind := "RedeemLink(latest)"
	if l.key.deleted {
		kind = "RedeemLink(deleted key's)"
	} else if l.key.link != l {
		kind = "RedeemLink(superseded or revoked by Undo)"
	} else if l.revoked {
		kind = "RedeemLink(revoked by RevokeLink)"
	}
	switch l.expires.Sub(now) {
	case 0:
		r.cover["R8 boundary: redeem at the expiry instant"]++
	case time.Microsecond:
		r.cover["R8 boundary: redeem a microsecond before expiry"]++
	}
	creds, err := r.m.RedeemLink(r.ctx, l.url)
	r.expectErr(err, want, "%s", name)
	if want != nil {
		if creds != nil {
			r.failf("%s failed but returned credentials", name)
		}
		r.record(kind, name, want, "")
		return
	}
	k := l.key
	r.redeemed(l, creds, name)
	// The token revealed must be the one the link was issued for: the
	// key's current token, created when the link was.
	if r.rng.IntN(2) == 0 {
		r.verify(k, k.id, l.token, creds.Token, "%s then Verify", name)
	}
	r.record(kind, name, nil, " "+r.describe(k))
}

// redeemed applies a successful RedeemLink of l to the model (R8): the
// link is used and the current token it revealed is seen.
func (r *modelRun) redeemed(l *modelLink, creds *tokens.Credentials, name string) {
	k := l.key
	if l.token != k.cur || k.curSeen {
		r.failf("model: pending link l%d does not reveal k%d's unseen current token", l.n, k.n)
	}
	if creds == nil || creds.KeyID != k.id || creds.Token == "" {
		r.failf("%s returned %+v, want k%d's ID and a token", name, creds, k.n)
	}
	if prev, ok := r.secrets[creds.Token]; ok {
		r.failf("%s revealed t%d again", name, prev.n)
	}
	if r.secrets == nil {
		r.secrets = map[string]*modelToken{}
	}
	l.redeemed = true
	l.token.secret = creds.Token
	r.secrets[creds.Token] = l.token
	k.curSeen = true
	r.expectEvent(k, tokens.EventLinkRedeemed)
}

// opRevokeLink is R15: the key's pending link ends at once and its token
// counts as never seen.
func (r *modelRun) opRevokeLink() {
	k, id := r.pickKey(func(k *modelKey) bool { return k.link != nil && r.linkWant(k.link, r.now()) == nil })
	now := r.now()
	want := r.revokeLinkWant(k, now)
	name := "RevokeLink(" + r.keyName(k) + ")"
	kind := "RevokeLink"
	if want == tokens.ErrNoPendingLink && k.link != nil && k.link.revoked {
		kind = "RevokeLink(revoked link)"
	}
	err := r.m.RevokeLink(r.ctx, id)
	r.expectErr(err, want, "%s", name)
	if want != nil {
		r.record(kind, name, want, "")
		return
	}
	r.revokedLink(k)
	r.record(kind, name, nil, " "+r.describe(k))
}

func (r *modelRun) revokeLinkWant(k *modelKey, now time.Time) error {
	switch {
	case k == nil || k.deleted:
		return tokens.ErrKeyNotFound
	case k.link == nil || r.linkWant(k.link, now) != nil:
		return tokens.ErrNoPendingLink
	}
	return nil
}

// revokedLink applies a successful RevokeLink of k's link to the model.
func (r *modelRun) revokedLink(k *modelKey) {
	if k.curSeen || k.link.token != k.cur {
		r.failf("model: k%d's pending link l%d does not reveal its unseen current token", k.n, k.link.n)
	}
	k.link.revoked = true
	r.expectEvent(k, tokens.EventLinkRevoked)
}

// mangle returns url changed so that R8/S5 must refuse it.
func (r *modelRun) mangle(url string) string {
	id := strings.TrimPrefix(url, modelBase)
	switch r.rng.IntN(9) {
	case 0:
		return url + "?x=1"
	case 1:
		return url + "/"
	case 2:
		return url[:len(url)-1]
	case 3:
		return "https://share.example.com.evil.test/credentials/" + id
	case 4:
		return "http://share.example.com/credentials/" + id
	case 5:
		return "https://share.example.com:8443/credentials/" + id
	case 6:
		return "https://share.example.com/credentials/./" + id
	case 7:
		return url + "#frag"
	default:
		return "https://user@share.example.com/credentials/" + id
	}
}

func (r *modelRun) opUndo() {
	k, id := r.pickKey(func(k *modelKey) bool { return k.old != nil })
	name := "Undo(" + r.keyName(k) + ")"
	want := r.undoWant(k)
	err := r.m.Undo(r.ctx, id)
	r.expectErr(err, want, "%s", name)
	if want != nil {
		kind := "Undo"
		if want == tokens.ErrUndoUnavailable && k.ended != nil {
			kind = "Undo after the old token's end (R14)"
		}
		r.record(kind, name, want, "")
		return
	}
	before := r.describe(k)
	kind := "Undo"
	if !k.oldEnds.IsZero() {
		kind = "Undo of a renewal with an old token's end (R14)"
	}
	r.undone(k)
	r.record(kind, name, nil, " "+before+" => "+r.describe(k))
}

// undone applies a successful Undo to the model. R7: the new token goes
// (R16), the renewal's link is revoked, and the old token is current again
// with its own times and no end (R14); it counts as seen (R4).
func (r *modelRun) undone(k *modelKey) {
	r.revoke(k.cur, r.now(), "Undo")
	k.cur, k.old, k.oldEnds, k.curSeen, k.link, k.ended = k.old, nil, time.Time{}, true, nil, nil
	r.expectEvent(k, tokens.EventRenewalUndone)
}

// deletedOld applies a successful DeleteOld to the model (R6, R16).
func (r *modelRun) deletedOld(k *modelKey) {
	r.revoke(k.old, r.now(), "DeleteOld")
	k.old, k.oldEnds, k.ended = nil, time.Time{}, nil
	r.expectEvent(k, tokens.EventOldTokenDeleted)
}

func (r *modelRun) undoWant(k *modelKey) error {
	switch {
	case k == nil || k.deleted:
		return tokens.ErrKeyNotFound
	case k.old == nil:
		return tokens.ErrUndoUnavailable // R7
	}
	return nil
}

func (r *modelRun) deleteOldWant(k *modelKey) error {
	switch {
	case k == nil || k.deleted:
		return tokens.ErrKeyNotFound
	case k.old == nil:
		return tokens.ErrNoOldToken // R6
	}
	return nil
}

func (r *modelRun) opDeleteOld() {
	k, id := r.pickKey(func(k *modelKey) bool { return k.old != nil })
	name := "DeleteOld(" + r.keyName(k) + ")"
	want := r.deleteOldWant(k)
	kind := "DeleteOld"
	if want == tokens.ErrNoOldToken && k.ended != nil {
		kind = "DeleteOld after the old token's end (R14)"
	}
	err := r.m.DeleteOld(r.ctx, id)
	r.expectErr(err, want, "%s", name)
	if want == nil {
		r.deletedOld(k)
	}
	r.record(kind, name, want, "")
}

func (r *modelRun) opSetActive(active bool) {
	k, id := r.pickKey(func(k *modelKey) bool { return k.active != active })
	var want error
	if k == nil || k.deleted {
		want = tokens.ErrKeyNotFound
	}
	var err error
	name := "Activate(" + r.keyName(k) + ")"
	if active {
		err = r.m.Activate(r.ctx, id)
	} else {
		name = "Deactivate(" + r.keyName(k) + ")"
		err = r.m.Deactivate(r.ctx, id)
	}
	r.expectErr(err, want, "%s", name)
	// A call that changes nothing appends no event (R17).
	if want == nil && k.active != active {
		k.active = active
		if active {
			r.expectEvent(k, tokens.EventKeyActivated)
		} else {
			r.expectEvent(k, tokens.EventKeyDeactivated)
		}
	}
	r.record(strings.TrimSuffix(name, "("+r.keyName(k)+")"), name, want, "")
}

func (r *modelRun) opDeleteKey() {
	k, id := r.pickKey(nil)
	name := "DeleteKey(" + r.keyName(k) + ")"
	var want error
	if k == nil || k.deleted {
		want = tokens.ErrKeyNotFound
	}
	err := r.m.DeleteKey(r.ctx, id)
	r.expectErr(err, want, "%s", name)
	if want == nil {
		k.deleted = true // R11: tokens, link and remembered tokens (R16) go with it
		r.expectEvent(k, tokens.EventKeyDeleted)
	}
	r.record("DeleteKey", name, want, "")
}

// modelSteps are the clock's usual steps: mostly around R9's minute and
// R8's hour scale, sometimes past a link's lifetime.
var modelSteps = []time.Duration{
	time.Microsecond, time.Second, 30 * time.Second, 30 * time.Second, 30 * time.Second,
	59 * time.Second, time.Minute, time.Minute, 61 * time.Second, 10 * time.Minute,
	time.Hour, time.Hour, 6 * time.Hour, 24*time.Hour - time.Microsecond, 24 * time.Hour, 25 * time.Hour,
}

func (r *modelRun) opAdvance() {
	d := modelPick(r.rng, modelSteps)
	if r.rng.IntN(40) == 0 {
		d = modelPick(r.rng, []time.Duration{7 * 24 * time.Hour, 31 * 24 * time.Hour, 92 * 24 * time.Hour})
	}
	r.advance(d, "")
}

// opAdvanceToBoundary moves the clock to, or just before, an instant where
// the model changes: a link's expiry (R8), the end of a LastUsedAt throttle
// minute (R9), an alert threshold (R10), an old token's end (R14), the end
// of a revoked token's retention or of its key's throttle minute (R16).
func (r *modelRun) opAdvanceToBoundary() {
	now := r.now()
	var targets []time.Time
	var what []string
	for _, k := range r.live() {
		if k.link != nil && now.Before(k.link.expires) {
			targets = append(targets, k.link.expires)
			what = append(what, fmt.Sprintf("expiry of l%d", k.link.n))
		}
		for _, t := range []*modelToken{k.cur, k.old} {
			if t != nil && !t.lastUsed.IsZero() {
				targets = append(targets, t.lastUsed.Add(time.Minute))
				what = append(what, fmt.Sprintf("throttle minute of t%d", t.n))
			}
		}
		if !k.oldEnds.IsZero() {
			targets = append(targets, k.oldEnds)
			what = append(what, fmt.Sprintf("end of old t%d", k.old.n))
		}
		if !k.revokedUsed.IsZero() {
			targets = append(targets, k.revokedUsed.Add(time.Minute))
			what = append(what, fmt.Sprintf("revoked-token throttle minute of k%d", k.n))
		}
		for _, t := range k.tokens {
			if t.secret != "" && r.retention > 0 && r.remembered(t, now) && t != k.cur && t != k.old {
				targets = append(targets, t.revoked.Add(r.retention))
				what = append(what, fmt.Sprintf("end of revoked t%d's retention", t.n))
			}
		}
		if r.rng.IntN(20) == 0 {
			ref := k.cur.created.UTC()
			targets = append(targets, ref.AddDate(0, r.alertAfter, 0), ref.AddDate(0, r.alertAfter+3, 0))
			what = append(what, fmt.Sprintf("warning of t%d", k.cur.n), fmt.Sprintf("critical of t%d", k.cur.n))
		}
	}
	if len(targets) == 0 {
		r.opAdvance()
		return
	}
	i := r.rng.IntN(len(targets))
	target := targets[i]
	label := what[i]
	if r.rng.IntN(2) == 0 {
		target = target.Add(-time.Microsecond)
		label += " - 1µs"
	}
	if !target.After(now) {
		r.advance(30*time.Second, "")
		return
	}
	r.advance(target.Sub(now), " to "+label)
}

func (r *modelRun) advance(d time.Duration, why string) {
	r.clk.Add(d)
	r.endOld(r.now())
	r.record("advance", fmt.Sprintf("advance %v%s", d, why), nil, "")
}

func (r *modelRun) opVerify() {
	var known []*modelToken
	for _, t := range r.tokens {
		if t.secret != "" {
			known = append(known, t)
		}
	}
	if len(known) == 0 {
		r.opAdvance()
		return
	}
	t := modelPick(r.rng, known)
	k, id := t.key, t.key.id
	switch n := r.rng.IntN(100); {
	case n < 20:
		k, id = r.pickKey(nil)
	case n < 30:
		// A token changed in one character, cut short or lengthened is
		// nobody's token.
		secret := t.secret
		switch r.rng.IntN(3) {
		case 0:
			b := []byte(secret)
			i := len(b) - 1 - r.rng.IntN(40)
			if b[i] == 'a' {
				b[i] = 'b'
			} else {
				b[i] = 'a'
			}
			secret = string(b)
		case 1:
			secret = secret[:len(secret)-1]
		default:
			secret += "0"
		}
		name := fmt.Sprintf("Verify(%s, altered t%d)", r.keyName(k), t.n)
		want := r.verify(k, id, nil, secret, "%s", name)
		r.record("Verify(altered token)", name, want, "")
		return
	}
	name := fmt.Sprintf("Verify(%s, t%d of k%d)", r.keyName(k), t.n, t.key.n)
	kind := "Verify"
	if t.ended && k == t.key {
		kind = "Verify(old token after its end)"
	}
	want := r.verify(k, id, t, t.secret, "%s", name)
	r.record(kind, name, want, " "+r.describe(t.key))
}

// verify calls Verify, checks the outcome against R9 and applies it to the
// model. t is nil for a token no one issued. It returns the outcome the
// model expected, which the call gave.
func (r *modelRun) verify(k *modelKey, id string, t *modelToken, secret, what string, args ...any) error {
	now := r.now()
	want := r.verifyWant(k, t, now)
	if t != nil && k == t.key {
		switch {
		case k.old == t && now.Equal(k.oldEnds.Add(-time.Microsecond)):
			r.cover["R14 boundary: Verify of an old token a microsecond before its end"]++
		case t.ended && now.Equal(t.revoked):
			r.cover["R14 boundary: Verify of an old token at its end"]++
		case !t.revoked.IsZero() && r.retention > 0 && now.Equal(t.revoked.Add(r.retention)):
			r.cover["R16 boundary: Verify of a revoked token at the end of its retention"]++
		case !t.revoked.IsZero() && r.retention > 0 && now.Equal(t.revoked.Add(r.retention-time.Microsecond)):
			r.cover["R16 boundary: Verify of a revoked token a microsecond before the end of its retention"]++
		}
		switch {
		case t.revoked.IsZero():
		case k.deleted:
			r.cover["R16 Verify of a deleted key's revoked token -> "+modelOutcome(want)]++
		case r.retention == 0:
			r.cover["R16 Verify of a revoked token, reuse detection off -> "+modelOutcome(want)]++
		default:
			r.cover["R16 Verify of a token deleted by "+t.why+" -> "+modelOutcome(want)]++
		}
	}
	got, err := r.m.Verify(r.ctx, id, secret)
	r.expectErr(err, want, what, args...)
	if want == tokens.ErrTokenRevoked {
		r.revokedUsed(k, now)
	}
	if want != nil {
		if got != nil {
			r.failf("%s failed but returned a key", fmt.Sprintf(what, args...))
		}
	} else {
		r.used(t, now)
		r.expectView(k, got, now, what+" result", args...)
	}
	return want
}

// opConcurrent starts two to four calls that change one key at the same
// instant (R8, R13): exactly one of them may win where the model allows
// the change, and every other call must then fail the way the model says
// for the state the winner left.
func (r *modelRun) opConcurrent() {
	k, id := r.pickKey(func(k *modelKey) bool {
		return r.renewWant(k, r.now()) == nil || k.old != nil || (k.link != nil && r.linkWant(k.link, r.now()) == nil)
	})
	now := r.now()
	type call struct {
		kind  string
		opts  tokens.RenewOptions
		link  *tokens.ShareLink
		creds *tokens.Credentials
		err   error
	}
	// All calls are alike, so that the state the winner leaves, and with
	// it the rest of the run, does not depend on which call wins.
	same := call{kind: modelPick(r.rng, []string{"Renew", "Renew", "RedeemLink", "RevokeLink", "Undo", "DeleteOld"})}
	if same.kind == "RedeemLink" && (k == nil || k.link == nil) {
		same.kind = "Renew"
	}
	same.opts.OldToken = tokens.OldTokenPolicy(r.rng.IntN(2))
	if same.opts.OldToken == tokens.DeleteLater {
		same.opts.OldTokenTTL = modelPick(r.rng, modelOldTokenTTLs)
	}
	calls := make([]call, 2+r.rng.IntN(3))
	for i := range calls {
		calls[i] = same
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range calls {
		c := &calls[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			switch c.kind {
			case "Renew":
				c.link, c.err = r.m.Renew(r.ctx, id, c.opts)
			case "RedeemLink":
				c.creds, c.err = r.m.RedeemLink(r.ctx, k.link.url)
			case "RevokeLink":
				c.err = r.m.RevokeLink(r.ctx, id)
			case "Undo":
				c.err = r.m.Undo(r.ctx, id)
			case "DeleteOld":
				c.err = r.m.DeleteOld(r.ctx, id)
			}
		}()
	}
	close(start)
	wg.Wait()

	want := func(c call) error {
		switch c.kind {
		case "Renew":
			return r.renewWant(k, now)
		case "RedeemLink":
			return r.linkWant(k.link, now)
		case "RevokeLink":
			return r.revokeLinkWant(k, now)
		case "Undo":
			return r.undoWant(k)
		}
		return r.deleteOldWant(k)
	}
	name := fmt.Sprintf("%d concurrent %s(%s) calls", len(calls), same.kind, r.keyName(k))
	if same.kind == "Renew" {
		name = fmt.Sprintf("%d concurrent Renew(%s, %v, TTL %v) calls", len(calls), r.keyName(k), same.opts.OldToken, same.opts.OldTokenTTL)
	}
	winner := -1
	for i, c := range calls {
		if c.err == nil {
			if winner >= 0 {
				r.failf("%s: calls %d and %d both succeeded", name, winner, i)
			}
			winner = i
		}
	}
	if winner < 0 {
		for i, c := range calls {
			if want(c) == nil {
				r.failf("%s: all calls failed, but the model lets call %d (%s) succeed; it got %v", name, i, c.kind, c.err)
			}
		}
	} else {
		c := calls[winner]
		r.expectErr(c.err, want(c), "%s: winning call %d (%s)", name, winner, c.kind)
		kind := "concurrent " + c.kind
		switch c.kind {
		case "Renew":
			kind = "concurrent " + r.renewed(k, c.opts, now, c.link)
		case "RedeemLink":
			r.redeemed(k.link, c.creds, name)
		case "RevokeLink":
			r.revokedLink(k)
		case "Undo":
			r.undone(k)
		case "DeleteOld":
			r.deletedOld(k)
		}
		r.cover[kind+" won"]++
	}
	for i, c := range calls {
		if i == winner {
			continue
		}
		r.expectErr(c.err, want(c), "%s: losing call %d (%s)", name, i, c.kind)
		if c.link != nil || c.creds != nil {
			r.failf("%s: failed call %d returned a link or credentials", name, i)
		}
	}
	var outcome error
	if winner < 0 {
		outcome = want(calls[0])
	}
	r.record("concurrent "+same.kind, name, outcome, " "+r.describe(k))
}

func (r *modelRun) opPurge() {
	now := r.now()
	expired := 0
	for _, k := range r.live() {
		if k.link != nil && r.linkWant(k.link, now) == tokens.ErrLinkExpired {
			expired++
		}
	}
	purged, err := r.m.PurgeExpired(r.ctx)
	r.expectErr(err, nil, "PurgeExpired")
	if purged < 0 || purged > expired {
		r.failf("PurgeExpired wiped %d links; only %d links are expired", purged, expired)
	}
	for _, k := range r.live() {
		if k.link == nil || r.linkWant(k.link, now) != tokens.ErrLinkExpired {
			continue
		}
		if rec, err := r.store.Key(r.ctx, k.id); err != nil || rec.Link.Sealed != nil {
			r.failf("store: after PurgeExpired, k%d's expired link l%d still holds its sealed token (error %v)", k.n, k.link.n, err)
		}
	}
	n, err := r.m.PurgeExpired(r.ctx)
	r.expectErr(err, nil, "PurgeExpired again")
	if n != 0 {
		r.failf("PurgeExpired right after PurgeExpired wiped %d more links", n)
	}
	r.record("PurgeExpired", "PurgeExpired", nil, fmt.Sprintf(" (%d of %d expired)", purged, expired))
}

var modelSentinels = []error{
	tokens.ErrKeyNotFound, tokens.ErrRenewalPending, tokens.ErrOldTokenPending,
	tokens.ErrNoOldToken, tokens.ErrUndoUnavailable, tokens.ErrInvalidLink,
	tokens.ErrLinkNotFound, tokens.ErrLinkUsed, tokens.ErrLinkExpired,
	tokens.ErrInvalidCredentials, tokens.ErrKeyInactive, tokens.ErrInvalidKeySpec,
	tokens.ErrNoPendingLink, tokens.ErrTokenRevoked, tokens.ErrInvalidOption,
}

// expectErr checks that got is want (nil for success) and no other sentinel,
// except that ErrTokenRevoked must also be ErrInvalidCredentials (R16).
func (r *modelRun) expectErr(got, want error, what string, args ...any) {
	if want == nil {
		if got != nil {
			r.failf("%s: got error %q, the model expects success", fmt.Sprintf(what, args...), got)
		}
		return
	}
	if !errors.Is(got, want) {
		r.failf("%s: got error %v, the model expects %q", fmt.Sprintf(what, args...), got, want)
	}
	revoked := want == tokens.ErrTokenRevoked
	if revoked && !errors.Is(got, tokens.ErrInvalidCredentials) {
		r.failf("%s: error %q is %q but not %q", fmt.Sprintf(what, args...), got, want, tokens.ErrInvalidCredentials)
	}
	for _, s := range modelSentinels {
		if s != want && !(revoked && s == tokens.ErrInvalidCredentials) && errors.Is(got, s) {
			r.failf("%s: error %q is %q as expected but also %q", fmt.Sprintf(what, args...), got, want, s)
		}
	}
}

// modelView is what the public API shows of a key, in comparable form.
type modelView struct {
	ID, Account, Name string
	Active            bool
	CreatedAt         string
	TokenCreatedAt    string
	TokenLastUsedAt   string
	TokenExpiresAt    string
	HasOld            bool
	OldCreatedAt      string
	OldLastUsedAt     string
	OldExpiresAt      string
	Alert             tokens.AlertLevel
	Link              tokens.LinkState
	LinkExpiresAt     string
	RevokedUsedAt     string
}

func modelTime(t time.Time) string {
	if t.IsZero() {
		return "zero"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func (r *modelRun) wantView(k *modelKey, now time.Time) modelView {
	v := modelView{
		ID: k.id, Account: k.account, Name: k.name, Active: k.active,
		CreatedAt:       modelTime(k.created),
		TokenCreatedAt:  modelTime(k.cur.created),
		TokenLastUsedAt: modelTime(k.cur.lastUsed),
		TokenExpiresAt:  modelTime(time.Time{}), // R14: only an old token ends by itself
		OldCreatedAt:    modelTime(time.Time{}),
		OldLastUsedAt:   modelTime(time.Time{}),
		OldExpiresAt:    modelTime(time.Time{}),
		Alert:           r.alertWant(k.cur.created, now),
		Link:            r.linkState(k, now),
		LinkExpiresAt:   modelTime(time.Time{}),
		RevokedUsedAt:   modelTime(k.revokedUsed),
	}
	if k.old != nil {
		v.HasOld = true
		v.OldCreatedAt, v.OldLastUsedAt = modelTime(k.old.created), modelTime(k.old.lastUsed)
		v.OldExpiresAt = modelTime(k.oldEnds)
	}
	if k.link != nil && !k.link.revoked { // a revoked link tells no expiry
		v.LinkExpiresAt = modelTime(k.link.expires)
	}
	return v
}

func modelGotView(key *tokens.Key) modelView {
	v := modelView{
		ID: key.ID, Account: key.Account, Name: key.Name, Active: key.Active,
		CreatedAt:       modelTime(key.CreatedAt),
		TokenCreatedAt:  modelTime(key.Token.CreatedAt),
		TokenLastUsedAt: modelTime(key.Token.LastUsedAt),
		TokenExpiresAt:  modelTime(key.Token.ExpiresAt),
		OldCreatedAt:    modelTime(time.Time{}),
		OldLastUsedAt:   modelTime(time.Time{}),
		OldExpiresAt:    modelTime(time.Time{}),
		Alert:           key.Alert,
		Link:            key.Link,
		LinkExpiresAt:   modelTime(key.LinkExpiresAt),
		RevokedUsedAt:   modelTime(key.RevokedTokenUsedAt),
	}
	if key.OldToken != nil {
		v.HasOld = true
		v.OldCreatedAt, v.OldLastUsedAt = modelTime(key.OldToken.CreatedAt), modelTime(key.OldToken.LastUsedAt)
		v.OldExpiresAt = modelTime(key.OldToken.ExpiresAt)
	}
	return v
}

// modelDiff lists the fields where got differs from want.
func modelDiff(want, got modelView) string {
	var b strings.Builder
	w, g := reflect.ValueOf(want), reflect.ValueOf(got)
	for i := range w.NumField() {
		if wf, gf := w.Field(i).Interface(), g.Field(i).Interface(); wf != gf {
			fmt.Fprintf(&b, "  %s: got %v, the model expects %v\n", w.Type().Field(i).Name, gf, wf)
		}
	}
	return b.String()
}

func (r *modelRun) expectView(k *modelKey, got *tokens.Key, now time.Time, what string, args ...any) {
	if got == nil {
		r.failf("%s: no key returned for k%d", fmt.Sprintf(what, args...), k.n)
	}
	if d := modelDiff(r.wantView(k, now), modelGotView(got)); d != "" {
		r.failf("%s: k%d differs from the model:\n%s", fmt.Sprintf(what, args...), k.n, d)
	}
}

func (r *modelRun) checkAll() {
	r.checkKeys()
	r.checkLinks()
	r.sweep()
	r.checkEvents()
}

// checkKeys compares Key and Keys with the model for every key ever made.
func (r *modelRun) checkKeys() {
	now := r.now()
	for _, k := range r.keys {
		if k.old != nil && k.old.secret == "" {
			r.failf("model: k%d's old token t%d was never seen", k.n, k.old.n)
		}
		if k.deleted {
			if r.rng.IntN(4) == 0 {
				_, err := r.m.Key(r.ctx, k.id)
				r.expectErr(err, tokens.ErrKeyNotFound, "Key(k%d)", k.n)
			}
			continue
		}
		ref := k.cur.created
		switch {
		case now.Equal(ref.AddDate(0, r.alertAfter, 0)), now.Equal(ref.AddDate(0, r.alertAfter+3, 0)):
			r.cover["R10 boundary: Key at an alert threshold"]++
		case now.Equal(ref.AddDate(0, r.alertAfter, 0).Add(-time.Microsecond)),
			now.Equal(ref.AddDate(0, r.alertAfter+3, 0).Add(-time.Microsecond)):
			r.cover["R10 boundary: Key a microsecond before an alert threshold"]++
		}
		r.cover["R10 Key alert "+r.alertWant(ref, now).String()]++
		got, err := r.m.Key(r.ctx, k.id)
		r.expectErr(err, nil, "Key(k%d)", k.n)
		r.expectView(k, got, now, "Key(k%d)", k.n)
		r.checkRecord(k, now)
	}
	if r.step%16 == 0 {
		_, err := r.m.Key(r.ctx, r.unknownID())
		r.expectErr(err, tokens.ErrKeyNotFound, "Key(unknown)")
	}
	for _, account := range modelAccounts {
		var want []modelView
		var live []*modelKey
		for _, k := range r.keys {
			if !k.deleted && k.account == account {
				live = append(live, k)
			}
		}
		slices.SortStableFunc(live, func(a, b *modelKey) int {
			if c := a.created.Compare(b.created); c != 0 {
				return c
			}
			return strings.Compare(a.id, b.id)
		})
		for _, k := range live {
			want = append(want, r.wantView(k, now))
		}
		keys, err := r.m.Keys(r.ctx, account)
		r.expectErr(err, nil, "Keys(%q)", account)
		var have []modelView
		for _, key := range keys {
			have = append(have, modelGotView(key))
		}
		if !slices.Equal(want, have) {
			var d strings.Builder
			for i := range max(len(want), len(have)) {
				switch {
				case i >= len(want):
					fmt.Fprintf(&d, "  [%d] unexpected key %s\n", i, have[i].ID)
				case i >= len(have):
					fmt.Fprintf(&d, "  [%d] missing key %s\n", i, want[i].ID)
				default:
					d.WriteString(modelDiff(want[i], have[i]))
				}
			}
			r.failf("Keys(%q) differs from the model:\n%s", account, d.String())
		}
	}
}

// checkRecord looks at what the store keeps of k, which is where tokens
// nobody has seen can be told apart: the current and old token must be the
// very tokens the model says (R4, R7), with the old token's end (R14), and a
// link's sealed token must be gone once it was redeemed or revoked (R8, R15,
// S2). An old token past its end may stay in the record until the key's
// next write, as long as it stays past its end.
func (r *modelRun) checkRecord(k *modelKey, now time.Time) {
	rec, err := r.store.Key(r.ctx, k.id)
	r.expectErr(err, nil, "store.Key(k%d)", k.n)
	tokenOf := func(d tokens.Digest) string {
		for _, t := range k.tokens {
			if t.digest == d {
				return fmt.Sprintf("t%d", t.n)
			}
		}
		return "a token the model never issued"
	}
	if rec.Current.Digest != k.cur.digest {
		r.failf("store: k%d's current token is %s, the model expects t%d", k.n, tokenOf(rec.Current.Digest), k.cur.n)
	}
	if !rec.Current.ExpiresAt.IsZero() {
		r.failf("store: k%d's current token t%d has an end, %s", k.n, k.cur.n, r.at(rec.Current.ExpiresAt))
	}
	ended := func(d tokens.Digest, end time.Time) bool {
		for _, t := range k.tokens {
			if t.digest == d {
				return t.ended && t.revoked.Equal(end) && !now.Before(end)
			}
		}
		return false
	}
	switch {
	case k.old == nil && rec.HasOld && ended(rec.Old.Digest, rec.Old.ExpiresAt):
		r.cover["R14 old token past its end still in the record"]++
	case k.old == nil && rec.HasOld:
		r.failf("store: k%d has old token %s ending %s, the model expects none", k.n, tokenOf(rec.Old.Digest), r.at(rec.Old.ExpiresAt))
	case k.old != nil && !rec.HasOld:
		r.failf("store: k%d has no old token, the model expects t%d", k.n, k.old.n)
	case k.old != nil && rec.Old.Digest != k.old.digest:
		r.failf("store: k%d's old token is %s, the model expects t%d", k.n, tokenOf(rec.Old.Digest), k.old.n)
	case k.old != nil && !rec.Old.ExpiresAt.Equal(k.oldEnds):
		r.failf("store: k%d's old token t%d ends %s, the model expects %s", k.n, k.old.n, r.at(rec.Old.ExpiresAt), r.at(k.oldEnds))
	}
	if l := k.link; rec.HasLink && l != nil {
		switch state := r.linkWant(l, now); {
		case state == tokens.ErrLinkUsed && rec.Link.Sealed != nil:
			r.failf("store: k%d's redeemed link l%d still holds its sealed token", k.n, l.n)
		case l.revoked && rec.Link.Sealed != nil:
			r.failf("store: k%d's revoked link l%d still holds its sealed token", k.n, l.n)
		case state == nil && rec.Link.Sealed == nil:
			r.failf("store: k%d's pending link l%d lost its sealed token", k.n, l.n)
		}
	}
}

// checkLinks asks LinkStatus, which must not consume a link, what some
// links would give now (R8): every live key's latest link, the newest
// links and a few from the whole history.
func (r *modelRun) checkLinks() {
	now := r.now()
	var links []*modelLink
	for _, k := range r.live() {
		if k.link != nil {
			links = append(links, k.link)
		}
	}
	links = append(links, r.links[max(0, len(r.links)-2):]...)
	for range min(3, len(r.links)) {
		links = append(links, modelPick(r.rng, r.links))
	}
	for _, l := range links {
		var want tokens.LinkStatus
		switch r.linkWant(l, now) {
		case nil:
			want = tokens.LinkStatus{State: tokens.LinkPending, ExpiresAt: l.expires}
		case tokens.ErrLinkUsed:
			want = tokens.LinkStatus{State: tokens.LinkUsed, ExpiresAt: l.expires}
		case tokens.ErrLinkExpired:
			want = tokens.LinkStatus{State: tokens.LinkExpired, ExpiresAt: l.expires}
		}
		got, err := r.m.LinkStatus(r.ctx, l.url)
		r.expectErr(err, nil, "LinkStatus(l%d)", l.n)
		if got.State != want.State || !got.ExpiresAt.Equal(want.ExpiresAt) {
			r.failf("LinkStatus(l%d of k%d) = %v expiring %s, the model expects %v expiring %s",
				l.n, l.key.n, got.State, r.at(got.ExpiresAt), want.State, r.at(want.ExpiresAt))
		}
	}
}

// sweep verifies every revealed token against its own key, and a third of
// them against another key, applying R9's LastUsedAt throttle to the model for each
// success, and checks that no key has more than two tokens that verify
// (R5). On light steps it leaves out the tokens expected to verify or to be
// reported revoked, so that LastUsedAt and RevokedTokenUsedAt (R16) are not
// always refreshed at once.
func (r *modelRun) sweep() {
	var known []*modelToken
	for _, t := range r.tokens {
		if t.secret != "" {
			known = append(known, t)
		}
	}
	if len(known) > modelFullSweep {
		var sample []*modelToken
		for _, k := range r.keys {
			if k.deleted {
				continue
			}
			n := 0
			for i := len(k.tokens) - 1; i >= 0 && n < 6; i-- {
				if k.tokens[i].secret != "" {
					sample = append(sample, k.tokens[i])
					n++
				}
			}
		}
		for range 32 {
			if t := modelPick(r.rng, known); !slices.Contains(sample, t) {
				sample = append(sample, t)
			}
		}
		known = sample
	}
	right := map[*modelKey]int{}
	for _, t := range known {
		k := t.key
		if want := r.verifyWant(k, t, r.now()); !r.light || (want != nil && want != tokens.ErrTokenRevoked) {
			want = r.verify(k, k.id, t, t.secret, "sweep: Verify(k%d, t%d)", k.n, t.n)
			if want == nil || want == tokens.ErrKeyInactive {
				right[k]++
				if right[k] > 2 {
					r.failf("k%d has %d tokens that verify; R5 allows two", k.n, right[k])
				}
			}
		}
		if len(r.keys) > 1 && r.rng.IntN(3) == 0 {
			other := modelPick(r.rng, r.keys)
			if other == k {
				other = r.keys[(other.n+1)%len(r.keys)]
			}
			r.verify(other, other.id, nil, t.secret, "sweep: Verify(k%d, t%d of k%d)", other.n, t.n, k.n)
		}
	}
}

// checkEvents reads the events appended since the last check, which must
// be exactly those of the changes the model saw succeed, in order (R17):
// no change without its event, no event without its change. Now and then
// it also reads one key's whole trail, page by page, deleted keys
// included, whose events outlive them.
func (r *modelRun) checkEvents() {
	got, err := r.m.Events(r.ctx, tokens.EventQuery{After: r.cursor, Limit: tokens.MaxEventPage})
	r.expectErr(err, nil, "Events(after %q)", r.cursor)
	want := r.events
	r.events = nil
	describe := func(keyID string, typ tokens.EventType, at time.Time) string {
		name := "unknown key"
		for _, k := range r.keys {
			if k.id == keyID {
				name = fmt.Sprintf("k%d", k.n)
			}
		}
		return fmt.Sprintf("%s of %s at %s", typ, name, r.at(at))
	}
	for i := range max(len(got), len(want)) {
		switch {
		case i >= len(want):
			r.failf("Events: unexpected event %s", describe(got[i].KeyID, got[i].Type, got[i].At))
		case i >= len(got):
			r.failf("Events: missing event %s", describe(want[i].key.id, want[i].typ, want[i].at))
		}
		g, w := got[i], want[i]
		if g.KeyID != w.key.id || g.Type != w.typ || !g.At.Equal(w.at) {
			r.failf("Events: event %d of the step is %s, the model expects %s", i,
				describe(g.KeyID, g.Type, g.At), describe(w.key.id, w.typ, w.at))
		}
		if g.Account != w.key.account || g.Actor != r.actor || g.Cursor == "" {
			r.failf("Events: %s has account %q, actor %q and cursor %q; the model expects %q, %q and a cursor",
				describe(g.KeyID, g.Type, g.At), g.Account, g.Actor, g.Cursor, w.key.account, r.actor)
		}
		if g.Type == tokens.EventTokenRenewed && (g.Policy != w.policy || g.OldTokenTTL != w.ttl) {
			r.failf("Events: %s says %v with TTL %v, the renewal was %v with TTL %v",
				describe(g.KeyID, g.Type, g.At), g.Policy, g.OldTokenTTL, w.policy, w.ttl)
		}
	}
	if len(got) > 0 {
		r.cursor = got[len(got)-1].Cursor
	}
	if r.step%50 != 0 || len(r.keys) == 0 {
		return
	}
	k := modelPick(r.rng, r.keys)
	var types []tokens.EventType
	q := tokens.EventQuery{KeyID: k.id, Limit: 1 + r.rng.IntN(8)}
	for {
		page, err := r.m.Events(r.ctx, q)
		r.expectErr(err, nil, "Events(k%d after %q)", k.n, q.After)
		for _, ev := range page {
			types = append(types, ev.Type)
		}
		if len(page) < q.Limit {
			break
		}
		q.After = page[len(page)-1].Cursor
	}
	if !slices.Equal(types, k.events) {
		r.failf("Events(k%d), %d at a time: got %v, the model expects %v", k.n, q.Limit, types, k.events)
	}
	r.cover[fmt.Sprintf("R17 whole trail of a key read (deleted %t)", k.deleted)]++
}

type modelCoverage struct {
	mu     sync.Mutex
	counts map[string]int
}

func (c *modelCoverage) add(counts map[string]int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, n := range counts {
		c.counts[k] += n
	}
}

func (c *modelCoverage) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	lines := make([]string, 0, len(c.counts))
	for k, n := range c.counts {
		lines = append(lines, fmt.Sprintf("%8d  %s", n, k))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}
