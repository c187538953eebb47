package tokens_test

import (
	"crypto/sha256"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/keyrenew/tokens"
)

// The operations of TestModel for the third round's rules: UpdateKey and
// the fields it changes (R19-R22), VerifyToken (R23), ImportKey (R24) and
// ReportLeak (S10).

var (
	modelScopeSets = [][]string{nil, {}, {"orders:read"}, {"orders:write", "orders:read", "orders:read"}, {"admin/all", "a.b-c_d:e"}}
	modelMetadatas = []map[string]string{nil, {}, {"team": "billing"}, {"team": "platform", "ticket": "OPS-1"}, {"note": "Zürich"}}
	modelLeaks     = []tokens.Leak{
		{Source: "github/content", URL: "https://github.com/octo/app/blob/main/.env"},
		{Source: "github/content", URL: "https://github.com/octo/app/blob/main/config.yml"},
		{Source: "github/gist_content", URL: ""},
	}
)

func modelScopes(scopes []string) string { return strings.Join(scopes, " ") }

func modelMetadata(md map[string]string) string {
	var pairs []string
	for _, k := range slices.Sorted(maps.Keys(md)) {
		pairs = append(pairs, k+"="+md[k])
	}
	return strings.Join(pairs, " ")
}

// normalScopes is R20's stored form: sorted, without repeats, nil for none.
func modelNormalScopes(scopes []string) []string {
	if len(scopes) == 0 {
		return nil
	}
	out := slices.Clone(scopes)
	slices.Sort(out)
	return slices.Compact(out)
}

func modelNormalMetadata(md map[string]string) map[string]string {
	if len(md) == 0 {
		return nil
	}
	return maps.Clone(md)
}

// modelExpiry picks an expiry around now: zero (never), soon (so that the
// clock crosses it), exactly now or in the past (expired at once, which
// UpdateKey allows), or far.
func (r *modelRun) modelExpiry(now time.Time) time.Time {
	switch r.rng.IntN(6) {
	case 0:
		return time.Time{}
	case 1:
		return now
	case 2:
		return now.Add(-time.Hour)
	case 3:
		return now.Add(time.Duration(1+r.rng.IntN(120)) * time.Minute)
	case 4:
		return now.Add(time.Microsecond)
	}
	return now.AddDate(1, 0, 0)
}

// opUpdateKey is R19: the fields given change, the others stay; one
// EventKeyUpdated names what changed, and an update that changes nothing
// writes nothing. A bad value is refused and changes nothing.
func (r *modelRun) opUpdateKey() {
	k, id := r.pickKey(nil)
	now := r.now()
	var u tokens.KeyUpdate
	invalid := r.rng.IntN(8) == 0
	if r.rng.IntN(3) == 0 {
		name := modelPick(r.rng, modelNames)
		u.Name = &name
	}
	if r.rng.IntN(2) == 0 {
		scopes := slices.Clone(modelPick(r.rng, modelScopeSets))
		u.Scopes = &scopes
	}
	if r.rng.IntN(3) == 0 {
		md := maps.Clone(modelPick(r.rng, modelMetadatas))
		u.Metadata = &md
	}
	if r.rng.IntN(2) == 0 {
		at := r.modelExpiry(now)
		u.ExpiresAt = &at
	}
	if invalid {
		switch r.rng.IntN(4) {
		case 0:
			bad := []string{"read write"}
			u.Scopes = &bad
		case 1:
			bad := map[string]string{"a:b": "v"}
			u.Metadata = &bad
		case 2:
			bad := "  "
			u.Name = &bad
		default:
			bad := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
			u.ExpiresAt = &bad
		}
	}
	want := error(nil)
	switch {
	case invalid:
		want = tokens.ErrInvalidKeySpec
	case k == nil || k.deleted:
		want = tokens.ErrKeyNotFound
	}
	err := r.m.UpdateKey(r.ctx, id, u)
	name := fmt.Sprintf("UpdateKey(%s)", r.keyName(k))
	r.expectErr(err, want, "%s", name)
	if want != nil {
		r.record("UpdateKey", name, want, "")
		return
	}
	var changed []string
	if u.ExpiresAt != nil && !u.ExpiresAt.Equal(k.expires) {
		k.expires = *u.ExpiresAt
		changed = append(changed, tokens.FieldExpiresAt)
	}
	if md := modelNormalMetadata(derefMap(u.Metadata)); u.Metadata != nil && !maps.Equal(md, k.metadata) {
		k.metadata = md
		changed = append(changed, tokens.FieldMetadata)
	}
	if u.Name != nil && *u.Name != k.name {
		k.name = *u.Name
		changed = append(changed, tokens.FieldName)
	}
	if sc := modelNormalScopes(derefSlice(u.Scopes)); u.Scopes != nil && !slices.Equal(sc, k.scopes) {
		k.scopes = sc
		changed = append(changed, tokens.FieldScopes)
	}
	kind := "UpdateKey changing " + strings.Join(changed, ",")
	if len(changed) == 0 {
		kind = "UpdateKey changing nothing"
	} else {
		r.expectEvent(k, tokens.EventKeyUpdated)
		r.events[len(r.events)-1].fields = changed
	}
	if !k.expires.IsZero() && !now.Before(k.expires) {
		kind += " [expired at once]"
	}
	r.record(kind, name, nil, " "+r.describe(k))
}

func derefSlice(p *[]string) []string {
	if p == nil {
		return nil
	}
	return *p
}

func derefMap(p *map[string]string) map[string]string {
	if p == nil {
		return nil
	}
	return *p
}

// opVerifyToken is R23: the key is found by the token alone, with
// Verify's outcomes; a token no one issued is ErrInvalidCredentials.
func (r *modelRun) opVerifyToken() {
	var known []*modelToken
	for _, t := range r.tokens {
		if t.secret != "" {
			known = append(known, t)
		}
	}
	if len(known) == 0 || r.rng.IntN(10) == 0 {
		secret := modelPick(r.rng, []string{"tok_" + strings.Repeat("0", 49), "sk_live_unknown_0123456789", ""})
		want := tokens.ErrInvalidCredentials
		got, err := r.m.VerifyToken(r.ctx, secret)
		r.expectErr(err, want, "VerifyToken(unknown)")
		if got != nil {
			r.failf("VerifyToken(unknown) returned a key")
		}
		r.record("VerifyToken(unknown)", "VerifyToken(unknown)", want, "")
		return
	}
	t := modelPick(r.rng, known)
	t = r.secrets[t.secret] // its latest holder: an import may have taken a forgotten token
	k := t.key
	name := fmt.Sprintf("VerifyToken(t%d of k%d)", t.n, k.n)
	want := r.verifyWith(func() (*tokens.Key, error) { return r.m.VerifyToken(r.ctx, t.secret) }, k, t, "%s", name)
	kind := "VerifyToken"
	if !k.expires.IsZero() {
		kind += " [key with an expiry]"
	}
	r.record(kind, name, want, " "+r.describe(k))
}

// opImport is R24: an active key with a token its holder already has, in
// any format, given plain or as its SHA-256; a taken ID, a token another
// key holds or one it deleted and remembers (R16) is ErrKeyExists and
// stores nothing. A forgotten token of ours imports as a new key's.
func (r *modelRun) opImport() {
	now := r.now()
	spec := tokens.ImportSpec{KeySpec: tokens.KeySpec{Account: modelPick(r.rng, modelAccounts), Name: modelPick(r.rng, modelNames),
		Scopes: modelPick(r.rng, modelScopeSets), Metadata: modelPick(r.rng, modelMetadatas)}}
	// Long enough for opVerify's alterations of the last 40 characters.
	secret := fmt.Sprintf("legacy-token-%d-%d-%s", r.seed, len(r.tokens), strings.Repeat("x", 24+r.rng.IntN(20)))
	want := error(nil)
	kind := "ImportKey"
	switch n := r.rng.IntN(10); {
	case n == 0 && len(r.live()) > 0:
		spec.ID = modelPick(r.rng, r.live()).id
		kind = "ImportKey(a key's ID)"
	case n == 1 && len(r.secrets) > 0:
		var revealed []*modelToken // in r.tokens' order: a map's would make a seed's run vary
		for _, t := range r.tokens {
			if t.secret != "" {
				revealed = append(revealed, t)
			}
		}
		secret = modelPick(r.rng, revealed).secret
		kind = "ImportKey(another key's token)"
	}
	if r.rng.IntN(2) == 0 {
		spec.TokenSHA256 = sha256.Sum256([]byte(secret))
		kind += " by SHA-256"
	} else {
		spec.Token = secret
	}
	if spec.ID != "" {
		for _, k := range r.keys {
			if k.id == spec.ID && !k.deleted {
				want = tokens.ErrKeyExists
			}
		}
	}
	if t, ok := r.secrets[secret]; ok && !t.key.deleted { // DeleteKey forgets a key's tokens
		switch {
		case t == t.key.cur || t == t.key.old:
			want = tokens.ErrKeyExists // a live token of another key
		case r.remembered(t, now):
			want = tokens.ErrKeyExists // deleted and remembered (R16): it stays deleted
		}
	}
	key, err := r.m.ImportKey(r.ctx, spec)
	name := fmt.Sprintf("%s(%q)", kind, spec.Account)
	r.expectErr(err, want, "%s", name)
	if want != nil {
		r.record(kind, name, want, "")
		return
	}
	for _, k := range r.keys {
		if k.id == key.ID {
			r.failf("ImportKey repeated the ID of k%d", k.n)
		}
	}
	k := &modelKey{n: len(r.keys), id: key.ID, account: spec.Account, name: spec.Name, created: now, active: true,
		scopes: modelNormalScopes(spec.Scopes), metadata: modelNormalMetadata(spec.Metadata)}
	r.keys = append(r.keys, k)
	rec, err := r.store.Key(r.ctx, k.id)
	r.expectErr(err, nil, "store.Key(k%d) after ImportKey", k.n)
	if rec.Current.Digest != sha256.Sum256([]byte(secret)) {
		r.failf("store: k%d's imported token is not kept as its SHA-256", k.n)
	}
	t := &modelToken{n: len(r.tokens), key: k, created: now, secret: secret, digest: rec.Current.Digest}
	r.tokens = append(r.tokens, t)
	k.tokens = append(k.tokens, t)
	k.cur, k.curSeen = t, true // no link: its holder has it (R24)
	if r.secrets == nil {
		r.secrets = map[string]*modelToken{}
	}
	r.secrets[secret] = t
	r.expectEvent(k, tokens.EventKeyImported)
	r.expectView(k, key, now, "ImportKey result")
	r.record(kind, name+" = "+r.keyName(k), nil, " "+r.describe(k))
}

// opReportLeak is S10: a token of a key here, current, old or deleted and
// remembered, records the leak once per source and URL; the revoking
// Manager also stops a live one, a current one as Renew with DeleteNow
// does (the key's old token stays), an old one as DeleteOld.
func (r *modelRun) opReportLeak() {
	var known []*modelToken
	for _, t := range r.tokens {
		if t.secret != "" {
			known = append(known, t)
		}
	}
	leak := modelPick(r.rng, modelLeaks)
	revoking := r.rng.IntN(2) == 0
	m, policy := r.m, "AlertOnLeak"
	if revoking {
		m, policy = r.revoking, "RevokeLeaked"
	}
	now := r.now()
	if len(known) == 0 || r.rng.IntN(8) == 0 {
		res, err := m.ReportLeak(r.ctx, "tok_"+strings.Repeat("1", 49), leak)
		r.expectErr(err, nil, "ReportLeak(unknown)")
		if res != (tokens.LeakResult{}) {
			r.failf("ReportLeak(unknown) = %+v, want nothing found", res)
		}
		r.record("ReportLeak(unknown)", "ReportLeak(unknown)", nil, "")
		return
	}
	t := modelPick(r.rng, known)
	t = r.secrets[t.secret] // its latest holder, as in opVerifyToken
	k := t.key
	live := !k.deleted && (t == k.cur || t == k.old)
	found := live || !k.deleted && !t.revoked.IsZero() && r.remembered(t, now)
	name := fmt.Sprintf("ReportLeak(t%d of k%d, %s)", t.n, k.n, policy)
	res, err := m.ReportLeak(r.ctx, t.secret, leak)
	r.expectErr(err, nil, "%s", name)
	if !found {
		if res != (tokens.LeakResult{}) {
			r.failf("%s = %+v, the model expects nothing found", name, res)
		}
		r.record("ReportLeak(forgotten token)", name, nil, "")
		return
	}
	seen := leak.Source + "\x00" + leak.URL
	// A repeat is a report from the same source and URL since the token
	// was made (any time, for a deleted token): before, it was another's.
	last, repeat := k.leaks[seen]
	if live && last.Before(t.created) {
		repeat = false
	}
	revoke := revoking && live
	kind := "ReportLeak(" + policy + ")"
	if !repeat {
		if k.leaks == nil {
			k.leaks = map[string]time.Time{}
		}
		k.leaks[seen], k.leaked = now, now
		r.expectEvent(k, tokens.EventTokenLeaked)
		ev := &r.events[len(r.events)-1]
		ev.source, ev.url = leak.Source, leak.URL
	} else {
		kind += " [repeat]"
	}
	wasCurrent := t == k.cur
	switch {
	case revoke && t == k.old:
		kind += " [old token revoked]"
		r.revoke(t, now, "a leak")
		k.old, k.oldEnds = nil, time.Time{}
		if repeat {
			r.expectEvent(k, tokens.EventOldTokenDeleted)
		}
	case revoke:
		kind += " [current token revoked]"
		if res.Link == nil {
			r.failf("%s revoked the current token without a link", name)
		}
		r.revoke(t, now, "a leak")
		k.ended = nil
		r.issue(k, now, res.Link)
		if repeat {
			r.expectEvent(k, tokens.EventTokenRenewed)
			r.events[len(r.events)-1].policy = tokens.DeleteNow
		}
	case !live:
		kind += " [deleted token]"
	}
	if res.KeyID != k.id || !res.Found || res.Revoked != revoke || (res.Link != nil) != (revoke && wasCurrent) {
		r.failf("%s = %+v, the model expects key k%d found, revoked %v", name, res, k.n, revoke)
	}
	r.record(kind, name, nil, " "+r.describe(k))
}
