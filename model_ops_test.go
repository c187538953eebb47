package tokens_test

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/keyrenew/tokens"
)

// The operations TestModel picks at random, each applied to the Manager
// and to the model.

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
	return r.verifyWith(func() (*tokens.Key, error) { return r.m.Verify(r.ctx, id, secret) }, k, t, what, args...)
}

// verifyWith is verify of a call to Verify or VerifyToken (R23), which
// give the same outcomes for k, the key found, and t.
func (r *modelRun) verifyWith(call func() (*tokens.Key, error), k *modelKey, t *modelToken, what string, args ...any) error {
	now := r.now()
	t = r.tokenOf(k, t)
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
	got, err := call()
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

// tokenOf is k's own token with t's secret if t is another key's and k
// has one, else t: an import gives a forgotten token of one key to a new
// one (R24), and the secret is then that key's token too.
func (r *modelRun) tokenOf(k *modelKey, t *modelToken) *modelToken {
	if t == nil || k == nil || t.key == k || t.secret == "" {
		return t
	}
	for i := len(k.tokens) - 1; i >= 0; i-- {
		if k.tokens[i].secret == t.secret {
			return k.tokens[i]
		}
	}
	return t
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
