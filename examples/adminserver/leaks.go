package main

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/keyrenew/tokens"
)

// The leaked tokens block (S10): keys with a token reported leaked that
// may still work come first on the admin screen, each with the one step
// that stops it. A report only sets Key.LeakedAt; it does not say which
// token of the key leaked, so every token of the key made before the leak
// counts as leaked until it stops working.

// leakState is what a key's latest leak report still asks of the
// operator.
type leakState int

const (
	// leakDealtWith: no token of the key made before the leak works
	// (or no token of it was ever reported).
	leakDealtWith leakState = iota
	// leakCurrent: the current token was made before the leak, so it may
	// be the leaked one, and works: renew with DeleteNow.
	leakCurrent
	// leakUnsent: RevokeLeaked replaced the leaked token when the leak
	// was reported (its replacement was made at that very time) and the
	// replacement's link was never opened. This server shows that link to
	// nobody (the leak notifier logs no link), so the integration is
	// locked out until the operator sends it a new one.
	leakUnsent
	// leakOld: the key was renewed after the leak, but with DeleteLater:
	// its old token, made before the leak, still works.
	leakOld
)

// leakOf says what k's leak still asks for. A token made at LeakedAt
// itself is the one RevokeLeaked issued in the report's own change, so it
// is not from before the leak; any other change comes at a later time, as
// the clock moves on between changes (stores keep microseconds). A repeat
// report that revokes (the policy changed to RevokeLeaked since the first)
// leaves LeakedAt at the first, so its replacement shows as a renewal
// made after the leak: the row then says its link is not opened yet.
func leakOf(k *tokens.Key) leakState {
	at := k.LeakedAt
	switch {
	case at.IsZero():
		return leakDealtWith
	case k.Token.CreatedAt.Before(at):
		return leakCurrent
	case k.Token.CreatedAt.Equal(at) && k.Link != tokens.LinkUsed:
		return leakUnsent
	case k.OldToken != nil && k.OldToken.CreatedAt.Before(at):
		return leakOld
	}
	return leakDealtWith
}

// leakView is what the leaked tokens block says about a key's leak.
type leakView struct {
	Kind string // "current", "unsent" or "old", as leakOf says
	// Source and URL are those of the latest report among the key's
	// events read (tokens.Leak); empty if none could be read.
	Source, URL string
	Reports     int // how many reports the key's events hold
}

var leakKinds = map[leakState]string{leakCurrent: "current", leakUnsent: "unsent", leakOld: "old"}

// leakViewOf returns the block's view of a key's leak from its events, or
// nil if the leak was dealt with.
func leakViewOf(key *tokens.Key, events []tokens.Event) *leakView {
	state := leakOf(key)
	if state == leakDealtWith {
		return nil
	}
	v := &leakView{Kind: leakKinds[state]}
	for _, e := range events {
		if e.Type == tokens.EventTokenLeaked {
			v.Reports++
			v.Source, v.URL = e.Source, e.URL
		}
	}
	return v
}

// renewLeaked is the block's "Renew and send the new link": it stops every
// token of the key made before the leak and shows the new token's link
// once, as a renewal does. Renew alone could not always do it: R3 refuses
// it while a link is pending and R5 while an old token waits, so the
// pending link is revoked and the old token deleted first. The old token
// is from before the leak too (it is older than the current token), and
// so is a pending link's token, or it is RevokeLeaked's replacement,
// whose link nobody was shown (see leakUnsent): revoking that link loses
// nothing, since its token was never revealed (R15), while waiting for it
// would leave the integration locked out until it expires and then still
// need a renewal. The three steps are separate changes, each in the
// history: if a later one fails, the earlier ones only stopped tokens
// from before the leak, and the key stays in the block for another try.
//
// The key is read again first, so that a second press (or a stale page)
// whose leak was dealt with meanwhile changes nothing: a second renewal
// would kill the link that the first one showed.
func (a *app) renewLeaked(w http.ResponseWriter, r *http.Request) {
	key, err := a.key(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	switch leakOf(key) {
	case leakDealtWith:
		setNotice(w, fmt.Sprintf("Nothing was changed: the leak of %s was already dealt with, no token of it from before the leak works.", key.Name))
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	case leakOld:
		setNotice(w, fmt.Sprintf("Nothing was changed: %s was renewed after the leak. Delete its old token, which is from before the leak, to stop it.", key.Name))
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	ctx := a.acting(r)
	if key.Link == tokens.LinkPending {
		if err := a.m.RevokeLink(ctx, key.ID); err != nil && !errors.Is(err, tokens.ErrNoPendingLink) {
			a.fail(w, r, err)
			return
		}
	}
	if key.OldToken != nil {
		if err := a.m.DeleteOld(ctx, key.ID); err != nil && !errors.Is(err, tokens.ErrNoOldToken) {
			a.fail(w, r, err)
			return
		}
	}
	link, err := a.m.Renew(ctx, key.ID, tokens.RenewOptions{OldToken: tokens.DeleteNow})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.render(w, r, http.StatusOK, listPage{Link: &revealedLink{
		KeyID: key.ID, Name: key.Name, URL: link.URL, ExpiresAt: link.ExpiresAt, Renewal: true, Leak: true,
	}})
}

// leakedFirst returns keys with the keys whose leak is not dealt with
// first, each group in its order.
func leakedFirst(keys []keyView) []keyView {
	sorted := make([]keyView, 0, len(keys))
	for _, k := range keys {
		if k.Leak != nil {
			sorted = append(sorted, k)
		}
	}
	for _, k := range keys {
		if k.Leak == nil {
			sorted = append(sorted, k)
		}
	}
	return sorted
}
