package tokens_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/keyrenew/tokens"
)

// The model of TestModel: what it remembers of keys, tokens, links and
// events, and what each operation should give by the rules.

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
	// scopes (sorted, no repeats), metadata, expires (R20-R22) and leaked
	// (S10, the latest report), with leaks, the source and URL of every
	// report recorded.
	scopes   []string
	metadata map[string]string
	expires  time.Time
	leaked   time.Time
	leaks    map[string]time.Time // source and URL -> the latest leak event's time
}

// modelEvent is an event the model expects a change to append (R17).
type modelEvent struct {
	key    *modelKey
	typ    tokens.EventType
	at     time.Time
	policy tokens.OldTokenPolicy
	ttl    time.Duration
	fields []string // of EventKeyUpdated (R19)
	source string   // and url, of EventTokenLeaked (S10)
	url    string
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
	revoking   *tokens.Manager // m's options and RevokeLeaked (S10)
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
		{4, r.opUpdateKey},
		{4, r.opVerifyToken},
		{2, r.opImport},
		{3, r.opReportLeak},
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
// look-up. It and the other ...Want functions restate the rules of docs/rules.md; they
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
	case !k.expires.IsZero() && !now.Before(k.expires):
		return tokens.ErrKeyExpired // R22, only for a right token
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
