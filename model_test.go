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
// public API shows with a small reference model written from SPEC.md (R1-R11),
// not from the implementation. A failure prints the seed, a replay command
// and the last operations.
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
}

type modelLink struct {
	n        int
	url      string
	key      *modelKey
	token    *modelToken
	expires  time.Time
	redeemed bool
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
	link            *modelLink // the latest link; nil once Undo revoked it
	tokens          []*modelToken
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
	light      bool // this step's sweep skips the tokens expected to verify

	keys    []*modelKey
	tokens  []*modelToken
	links   []*modelLink
	secrets map[string]*modelToken

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
		{12, r.opRedeem},
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
	fmt.Fprintf(&b, "TestModel seed %d, step %d (alert after %d months, link TTL %v, start %s)\n",
		r.seed, r.step, r.alertAfter, r.ttl, r.start.Format(time.RFC3339Nano))
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
	outcome := "ok"
	if want != nil {
		outcome = strings.TrimPrefix(want.Error(), "tokens: ")
		if i := strings.IndexByte(outcome, ':'); i >= 0 {
			outcome = outcome[:i]
		}
	}
	r.cover[kind+" -> "+outcome]++
	r.log[r.step%modelLogSize] = fmt.Sprintf("#%d %s %s -> %s%s", r.step, r.at(r.now()), op, outcome, detail)
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
	}
	if l := k.link; l != nil {
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
	return fmt.Sprintf("t%d(created %s, used %s%s)", t.n, r.at(t.created), r.at(t.lastUsed), known)
}

// renewWant is the reference model's Renew outcome: R3, R5 and the key
// look-up. It and the other ...Want functions restate SPEC.md rules; they
// are the model's only source of expected outcomes.
func (r *modelRun) renewWant(k *modelKey, now time.Time) error {
	switch {
	case k == nil || k.deleted:
		return tokens.ErrKeyNotFound
	case k.link != nil && !k.link.redeemed && now.Before(k.link.expires):
		return tokens.ErrRenewalPending // R3
	case k.old != nil && k.curSeen:
		return tokens.ErrOldTokenPending // R5, whatever the policy
	}
	return nil
}

// linkWant is R8: only a live key's latest link is found.
func (r *modelRun) linkWant(l *modelLink, now time.Time) error {
	switch {
	case l.key.deleted || l.key.link != l:
		return tokens.ErrLinkNotFound
	case l.redeemed:
		return tokens.ErrLinkUsed
	case !now.Before(l.expires):
		return tokens.ErrLinkExpired
	}
	return nil
}

// verifyWant is R9; k is nil for an ID no key has.
func (r *modelRun) verifyWant(k *modelKey, t *modelToken) error {
	switch {
	case k == nil || k.deleted || t == nil || (t != k.cur && t != k.old):
		return tokens.ErrInvalidCredentials
	case !k.active:
		return tokens.ErrKeyInactive
	}
	return nil
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

func (r *modelRun) opRenew(policy tokens.OldTokenPolicy) {
	k, id := r.pickKey(func(k *modelKey) bool { return r.renewWant(k, r.now()) == nil })
	now := r.now()
	want := r.renewWant(k, now)
	opts := tokens.RenewOptions{OldToken: policy}
	name := fmt.Sprintf("Renew(%s, %v)", r.keyName(k), policy)
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
	kind := r.renewed(k, policy, now, link)
	r.record(kind, name, nil, " "+before+" => "+r.describe(k))
}

// renewed applies a successful Renew to the model (R2, R4) and returns the
// case it was, for the coverage counts.
func (r *modelRun) renewed(k *modelKey, policy tokens.OldTokenPolicy, now time.Time, link *tokens.ShareLink) string {
	kind := "Renew(" + policy.String() + ")"
	switch {
	case !k.curSeen && k.old != nil:
		kind += " [R4: unseen token discarded, old token existed]"
	case !k.curSeen:
		kind += " [R4: unseen token discarded]"
	case policy == tokens.DeleteLater:
		kind += " [current token kept as old]"
	}
	switch {
	case !k.curSeen:
		// R4: the current token's link expired unredeemed; the token is
		// discarded and an existing old token stays old, or goes with
		// DeleteNow.
		if k.link == nil || k.link.redeemed || now.Before(k.link.expires) {
			r.failf("model: unseen current token of k%d without an expired link", k.n)
		}
		if policy == tokens.DeleteNow {
			k.old = nil
		}
	case policy == tokens.DeleteLater:
		k.old = k.cur // R2
	default:
		k.old = nil // R2 DeleteNow; R5 said there was none
	}
	r.issue(k, now, link)
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
		kind = "RedeemLink(superseded or revoked)"
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
		r.record("Undo", name, want, "")
		return
	}
	// R7: the new token goes, the renewal's link is revoked, and the old
	// token is current again with its own times; it counts as seen (R4).
	before := r.describe(k)
	k.cur, k.old, k.curSeen, k.link = k.old, nil, true, nil
	r.record("Undo", name, nil, " "+before+" => "+r.describe(k))
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
	err := r.m.DeleteOld(r.ctx, id)
	r.expectErr(err, want, "%s", name)
	if want == nil {
		k.old = nil
	}
	r.record("DeleteOld", name, want, "")
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
	if want == nil {
		k.active = active
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
		k.deleted = true // R11: tokens and link go with it
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
// minute (R9) or an alert threshold (R10).
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
	want := r.verify(k, id, t, t.secret, "%s", name)
	r.record("Verify", name, want, " "+r.describe(t.key))
}

// verify calls Verify, checks the outcome against R9 and applies it to the
// model. t is nil for a token no one issued. It returns the outcome the
// model expected, which the call gave.
func (r *modelRun) verify(k *modelKey, id string, t *modelToken, secret, what string, args ...any) error {
	now := r.now()
	want := r.verifyWant(k, t)
	got, err := r.m.Verify(r.ctx, id, secret)
	r.expectErr(err, want, what, args...)
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
		kind   string
		policy tokens.OldTokenPolicy
		link   *tokens.ShareLink
		creds  *tokens.Credentials
		err    error
	}
	// All calls are alike, so that the state the winner leaves, and with
	// it the rest of the run, does not depend on which call wins.
	same := call{kind: modelPick(r.rng, []string{"Renew", "Renew", "RedeemLink", "Undo", "DeleteOld"})}
	if same.kind == "RedeemLink" && (k == nil || k.link == nil) {
		same.kind = "Renew"
	}
	same.policy = tokens.OldTokenPolicy(r.rng.IntN(2))
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
				c.link, c.err = r.m.Renew(r.ctx, id, tokens.RenewOptions{OldToken: c.policy})
			case "RedeemLink":
				c.creds, c.err = r.m.RedeemLink(r.ctx, k.link.url)
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
		case "Undo":
			return r.undoWant(k)
		}
		return r.deleteOldWant(k)
	}
	name := fmt.Sprintf("%d concurrent %s(%s) calls", len(calls), same.kind, r.keyName(k))
	if same.kind == "Renew" {
		name = fmt.Sprintf("%d concurrent Renew(%s, %v) calls", len(calls), r.keyName(k), same.policy)
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
			kind = "concurrent " + r.renewed(k, c.policy, now, c.link)
		case "RedeemLink":
			r.redeemed(k.link, c.creds, name)
		case "Undo":
			k.cur, k.old, k.curSeen, k.link = k.old, nil, true, nil
		case "DeleteOld":
			k.old = nil
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
}

// expectErr checks that got is want (nil for success) and no other sentinel.
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
	for _, s := range modelSentinels {
		if s != want && errors.Is(got, s) {
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
	HasOld            bool
	OldCreatedAt      string
	OldLastUsedAt     string
	Alert             tokens.AlertLevel
	Link              tokens.LinkState
	LinkExpiresAt     string
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
		OldCreatedAt:    modelTime(time.Time{}),
		OldLastUsedAt:   modelTime(time.Time{}),
		Alert:           r.alertWant(k.cur.created, now),
		Link:            r.linkState(k, now),
		LinkExpiresAt:   modelTime(time.Time{}),
	}
	if k.old != nil {
		v.HasOld = true
		v.OldCreatedAt, v.OldLastUsedAt = modelTime(k.old.created), modelTime(k.old.lastUsed)
	}
	if k.link != nil {
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
		OldCreatedAt:    modelTime(time.Time{}),
		OldLastUsedAt:   modelTime(time.Time{}),
		Alert:           key.Alert,
		Link:            key.Link,
		LinkExpiresAt:   modelTime(key.LinkExpiresAt),
	}
	if key.OldToken != nil {
		v.HasOld = true
		v.OldCreatedAt, v.OldLastUsedAt = modelTime(key.OldToken.CreatedAt), modelTime(key.OldToken.LastUsedAt)
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
// very tokens the model says (R4, R7), and a link's sealed token must be
// gone once it was redeemed (R8, S2).
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
	switch {
	case k.old == nil && rec.HasOld:
		r.failf("store: k%d has old token %s, the model expects none", k.n, tokenOf(rec.Old.Digest))
	case k.old != nil && !rec.HasOld:
		r.failf("store: k%d has no old token, the model expects t%d", k.n, k.old.n)
	case k.old != nil && rec.Old.Digest != k.old.digest:
		r.failf("store: k%d's old token is %s, the model expects t%d", k.n, tokenOf(rec.Old.Digest), k.old.n)
	}
	if l := k.link; rec.HasLink && l != nil {
		switch state := r.linkWant(l, now); {
		case state == tokens.ErrLinkUsed && rec.Link.Sealed != nil:
			r.failf("store: k%d's redeemed link l%d still holds its sealed token", k.n, l.n)
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
// (R5). On light steps it leaves out the tokens expected to verify, so that
// LastUsedAt is not always refreshed at once.
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
		if !(r.light && r.verifyWant(k, t) == nil) {
			want := r.verify(k, k.id, t, t.secret, "sweep: Verify(k%d, t%d)", k.n, t.n)
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
