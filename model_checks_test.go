package tokens_test

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/keyrenew/tokens"
)

// The checks TestModel makes after every step: everything the public API
// shows against the model.

var modelSentinels = []error{
	tokens.ErrKeyNotFound, tokens.ErrRenewalPending, tokens.ErrOldTokenPending,
	tokens.ErrNoOldToken, tokens.ErrUndoUnavailable, tokens.ErrInvalidLink,
	tokens.ErrLinkNotFound, tokens.ErrLinkUsed, tokens.ErrLinkExpired,
	tokens.ErrInvalidCredentials, tokens.ErrKeyInactive, tokens.ErrInvalidKeySpec,
	tokens.ErrNoPendingLink, tokens.ErrTokenRevoked, tokens.ErrInvalidOption,
	tokens.ErrKeyExpired, tokens.ErrKeyExists, tokens.ErrInvalidLeak,
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
	Scopes, Metadata  string
	ExpiresAt         string
	LeakedAt          string
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
		Scopes:          modelScopes(k.scopes),
		Metadata:        modelMetadata(k.metadata),
		ExpiresAt:       modelTime(k.expires),
		LeakedAt:        modelTime(k.leaked),
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
		Scopes:          modelScopes(key.Scopes),
		Metadata:        modelMetadata(key.Metadata),
		ExpiresAt:       modelTime(key.ExpiresAt),
		LeakedAt:        modelTime(key.LeakedAt),
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
			r.verify(other, other.id, t, t.secret, "sweep: Verify(k%d, t%d of k%d)", other.n, t.n, k.n)
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
		if !slices.Equal(g.Fields, w.fields) || g.Source != w.source || g.URL != w.url {
			r.failf("Events: %s has fields %v, source %q and URL %q; the model expects %v, %q and %q",
				describe(g.KeyID, g.Type, g.At), g.Fields, g.Source, g.URL, w.fields, w.source, w.url)
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
