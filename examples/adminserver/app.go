package main

import (
	"context"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/keyrenew/tokens"
)

//go:embed web
var webFS embed.FS

var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"age":      age,
	"lastUsed": lastUsed,
	"when":     when,
	"until":    until,
	"ttl":      ttlWords,
}).ParseFS(webFS, "web/*.html"))

// app is the operator's admin screen for one account's keys. It has no
// login of its own: it is an example meant for a loopback address, and a
// real deployment puts it behind the company's single sign-on, which also
// names the operator. Here every change is made in the name of operator.
type app struct {
	m          *tokens.Manager
	account    string
	operator   string
	alertAfter int // the Manager's WithAlertAfter, in months (R10)
	now        func() time.Time
}

func (a *app) routes() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(webFS, "web/static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", a.list)
	mux.HandleFunc("POST /keys", a.create)
	mux.HandleFunc("POST /keys/{id}/renew", a.renew)
	mux.HandleFunc("POST /keys/{id}/complete", a.complete)
	mux.HandleFunc("POST /keys/{id}/renew-leaked", a.renewLeaked)
	mux.HandleFunc("GET /keys/{id}/history", a.history)
	mux.HandleFunc("GET /keys/{id}", a.keyPage)
	mux.HandleFunc("POST /keys/{id}/edit", a.edit)
	for action, do := range map[string]struct {
		run    func(ctx context.Context, id string) error
		notice string
	}{
		"delete-old":  {a.m.DeleteOld, "The old token of %s was deleted; only the new token works now."},
		"undo":        {a.m.Undo, "The renewal of %s was undone; the previous token is current again."},
		"revoke-link": {a.m.RevokeLink, "The link of %s was revoked: it no longer opens, and nobody has its token."},
		"delete":      {a.m.DeleteKey, "%s was deleted with its tokens."},
	} {
		// Irreversible: a confirmation page first.
		mux.HandleFunc("GET /keys/{id}/"+action, a.confirm(action))
		mux.HandleFunc("POST /keys/{id}/"+action, a.action(do.run, do.notice))
	}
	mux.HandleFunc("POST /keys/{id}/activate", a.action(a.m.Activate, "%s is active: its tokens work again."))
	mux.HandleFunc("POST /keys/{id}/deactivate", a.action(a.m.Deactivate, "%s is deactivated: its tokens are refused until you activate it."))
	return secureHeaders(http.NewCrossOriginProtection().Handler(mux))
}

// secureHeaders keeps the admin pages, which show fresh share links, out of
// caches, frames and Referer headers, and loads nothing from elsewhere.
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		next.ServeHTTP(w, r)
	})
}

// acting names the operator in the audit trail of the changes made with
// the returned context (R17).
func (a *app) acting(r *http.Request) context.Context {
	return tokens.WithActor(r.Context(), a.operator)
}

type listPage struct {
	Account string
	Keys    []keyView // the leaked ones (Leaked) first
	Leaked  []keyView // the keys whose leak is not dealt with
	Now     time.Time
	Notice  string
	Error   string
	Link    *revealedLink
}

// keyView is a key with what the table says about it beyond the key
// itself.
type keyView struct {
	*tokens.Key
	// WarnAt and CriticalAt are when the renewal alert turns orange and
	// red (R10).
	WarnAt, CriticalAt time.Time
	// Reuse is set when an integration recently sent a deleted token of
	// the key (R16).
	Reuse *reuse
	// Leak is set while a token of the key made before its latest leak
	// report may still work (S10).
	Leak *leakView
}

// reuse is a recent use of a deleted token.
type reuse struct {
	At        time.Time // the latest use
	DeletedAt time.Time // when the token was deleted; zero if unknown
}

// recentReuse is how long after a deleted token was last sent the table
// keeps warning about it.
const recentReuse = 7 * 24 * time.Hour

// revealedLink is a share link shown once to the operator who made it.
type revealedLink struct {
	KeyID     string
	Name      string
	URL       string
	ExpiresAt time.Time
	Renewal   bool
	// OldToken is the token the renewal kept (DeleteLater), for the
	// operator to decide on; nil if the renewal left none.
	OldToken *tokens.TokenInfo
	// Leak says the renewal replaced the tokens of a leak (renewLeaked):
	// none of them works any more.
	Leak bool
}

func (a *app) list(w http.ResponseWriter, r *http.Request) {
	a.render(w, r, http.StatusOK, listPage{Notice: takeNotice(w, r)})
}

func (a *app) create(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimSpace(r.PostFormValue("name"))
	key, link, err := a.m.CreateKey(a.acting(r), tokens.KeySpec{Account: a.account, Name: name})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.render(w, r, http.StatusOK, listPage{Link: &revealedLink{
		KeyID: key.ID, Name: key.Name, URL: link.URL, ExpiresAt: link.ExpiresAt,
	}})
}

// renew is the seed's renewal: the new token is current at once and its
// link is shown at once, the old token is kept (DeleteLater), and the page
// then asks what happens to it (complete). Leaving the page before
// answering keeps it, as Later does.
func (a *app) renew(w http.ResponseWriter, r *http.Request) {
	key, err := a.key(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	link, err := a.m.Renew(a.acting(r), key.ID, tokens.RenewOptions{OldToken: tokens.DeleteLater})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	shown := &revealedLink{KeyID: key.ID, Name: key.Name, URL: link.URL, ExpiresAt: link.ExpiresAt, Renewal: true}
	// A previous token whose link expired unopened was discarded (R4):
	// then there is only an old token to decide on if an earlier renewal
	// left one.
	if renewed, err := a.m.Key(r.Context(), key.ID); err == nil {
		shown.OldToken = renewed.OldToken
	}
	a.render(w, r, http.StatusOK, listPage{Link: shown})
}

// oldTokenTTLs are the scheduled ends that Complete offers for the old
// token (R14).
var oldTokenTTLs = map[string]time.Duration{
	"1h":   time.Hour,
	"24h":  24 * time.Hour,
	"168h": 7 * 24 * time.Hour,
}

// complete applies the operator's answer after a renewal: Later keeps the
// old token until someone deletes it, Later with an expiry (old=expire and
// expire=1h, 24h or 168h) keeps it until then (ExpireOld), and Now deletes
// it.
func (a *app) complete(w http.ResponseWriter, r *http.Request) {
	key, err := a.key(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var notice string
	switch r.PostFormValue("old") {
	case "now":
		if err := a.m.DeleteOld(a.acting(r), key.ID); err != nil {
			a.fail(w, r, err)
			return
		}
		notice = fmt.Sprintf("Renewal of %s complete. The old token was deleted; only the new token works now.", key.Name)
	case "expire":
		ttl, ok := oldTokenTTLs[r.PostFormValue("expire")]
		if !ok {
			a.fail(w, r, tokens.ErrInvalidOption)
			return
		}
		if err := a.m.ExpireOld(a.acting(r), key.ID, ttl); err != nil {
			a.fail(w, r, err)
			return
		}
		if key, err = a.key(r.Context(), key.ID); err != nil {
			a.fail(w, r, err)
			return
		}
		notice = laterNotice(key)
	case "later":
		notice = laterNotice(key)
	default:
		a.fail(w, r, tokens.ErrInvalidOption)
		return
	}
	setNotice(w, notice)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// laterNotice says what becomes of a key's old token after Complete with
// Later.
func laterNotice(key *tokens.Key) string {
	switch {
	case key.OldToken == nil:
		return fmt.Sprintf("Renewal of %s complete. It has no old token.", key.Name)
	case key.OldToken.ExpiresAt.IsZero():
		return fmt.Sprintf("Renewal of %s complete. The old token keeps working until you delete it.", key.Name)
	default:
		return fmt.Sprintf("Renewal of %s complete. The old token keeps working until %s, then it is deleted by itself.", key.Name, when(key.OldToken.ExpiresAt))
	}
}

type confirmPage struct {
	Action string
	Key    *tokens.Key
	Now    time.Time
}

func (a *app) confirm(action string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		key, err := a.key(r.Context(), r.PathValue("id"))
		if err != nil {
			a.fail(w, r, err)
			return
		}
		switch {
		case action == "delete-old" && key.OldToken == nil:
			a.fail(w, r, tokens.ErrNoOldToken)
			return
		case action == "undo" && key.OldToken == nil:
			a.fail(w, r, tokens.ErrUndoUnavailable)
			return
		case action == "revoke-link" && key.Link != tokens.LinkPending:
			a.fail(w, r, tokens.ErrNoPendingLink)
			return
		}
		page := confirmPage{Action: action, Key: key, Now: a.now()}
		w.Header().Set("Cache-Control", "no-store")
		if err := pages.ExecuteTemplate(w, "confirm.html", page); err != nil {
			log.Printf("adminserver: render confirm: %v", err)
		}
	}
}

// action runs a one-step change and returns to the table with a notice
// that names the key.
func (a *app) action(do func(ctx context.Context, id string) error, notice string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		key, err := a.key(r.Context(), r.PathValue("id"))
		if err == nil {
			err = do(a.acting(r), key.ID)
		}
		if err != nil {
			a.fail(w, r, err)
			return
		}
		setNotice(w, fmt.Sprintf(notice, key.Name))
		http.Redirect(w, r, "/", http.StatusSeeOther)
	}
}

// key loads a key of the account this screen manages: the keys of other
// accounts do not exist here, whatever ID a request names.
func (a *app) key(ctx context.Context, id string) (*tokens.Key, error) {
	key, err := a.m.Key(ctx, id)
	if err != nil {
		return nil, err
	}
	if key.Account != a.account {
		return nil, tokens.ErrKeyNotFound
	}
	return key, nil
}

// The notice that follows a change travels to the next page in a
// short-lived cookie rather than in the URL, so that nobody can send the
// operator a link that shows words of their choosing on this screen.
const noticeCookie = "adminserver-notice"

func setNotice(w http.ResponseWriter, msg string) {
	http.SetCookie(w, &http.Cookie{
		Name: noticeCookie, Value: base64.RawURLEncoding.EncodeToString([]byte(msg)),
		Path: "/", MaxAge: 60, HttpOnly: true, SameSite: http.SameSiteStrictMode,
	})
}

// takeNotice returns the notice that r carries, once: it also tells the
// browser to drop it.
func takeNotice(w http.ResponseWriter, r *http.Request) string {
	c, err := r.Cookie(noticeCookie)
	if err != nil {
		return ""
	}
	http.SetCookie(w, &http.Cookie{Name: noticeCookie, Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	msg, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil || !utf8.Valid(msg) {
		return ""
	}
	return string(msg)
}

func (a *app) fail(w http.ResponseWriter, r *http.Request, err error) {
	msg, status := explain(err)
	if status == http.StatusInternalServerError {
		log.Printf("adminserver: %s %s: %v", r.Method, r.URL.Path, err)
	}
	a.render(w, r, status, listPage{Error: msg})
}

func (a *app) render(w http.ResponseWriter, r *http.Request, status int, page listPage) {
	keys, err := a.m.Keys(r.Context(), a.account)
	if err != nil {
		log.Printf("adminserver: list keys: %v", err)
		http.Error(w, "The keys could not be loaded. Try again in a moment.", http.StatusInternalServerError)
		return
	}
	page.Account, page.Now = a.account, a.now()
	for _, key := range keys {
		v := a.view(r.Context(), key, page.Now)
		page.Keys = append(page.Keys, v)
		if v.Leak != nil {
			page.Leaked = append(page.Leaked, v)
		}
	}
	page.Keys = leakedFirst(page.Keys)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if err := pages.ExecuteTemplate(w, "keys.html", page); err != nil {
		log.Printf("adminserver: render keys: %v", err)
	}
}

func (a *app) view(ctx context.Context, key *tokens.Key, now time.Time) keyView {
	// R10's dates: calendar months in UTC from the current token's
	// creation.
	ref := key.Token.CreatedAt.UTC()
	v := keyView{Key: key, WarnAt: ref.AddDate(0, a.alertAfter, 0), CriticalAt: ref.AddDate(0, a.alertAfter+3, 0)}
	used := key.RevokedTokenUsedAt
	reused := !used.IsZero() && now.Sub(used) < recentReuse
	leaked := leakOf(key) != leakDealtWith
	if !reused && !leaked {
		return v // most keys: their events are not read
	}
	events, err := a.allEvents(ctx, key.ID)
	if err != nil {
		log.Printf("adminserver: events of %s: %v", key.ID, err)
	}
	if reused {
		v.Reuse = &reuse{At: used, DeletedAt: deletedBefore(events, used)}
	}
	if leaked {
		v.Leak = leakViewOf(key, events)
	}
	return v
}

// maxHistory bounds the events read for one key outside the history
// page.
const maxHistory = 10 * tokens.MaxEventPage

// allEvents returns the events of a key, oldest first, up to maxHistory.
func (a *app) allEvents(ctx context.Context, keyID string) ([]tokens.Event, error) {
	var all []tokens.Event
	q := tokens.EventQuery{KeyID: keyID, Limit: tokens.MaxEventPage}
	for len(all) < maxHistory {
		page, err := a.m.Events(ctx, q)
		all = append(all, page...)
		if err != nil || len(page) < q.Limit {
			return all, err
		}
		q.After = page[len(page)-1].Cursor
	}
	return all, nil
}

// deletedBefore returns when the latest token of a key that was deleted
// at or before used stopped verifying, from the key's events, or zero if
// they do not tell. The deletions are the ones R16 remembers: DeleteOld,
// Undo (which deletes the renewal's new token), a renewal with DeleteNow
// or one that discarded a token nobody had seen (R4), and the scheduled
// end of an old token (R14), which has no event of its own: it is the time
// of the renewal or of the latest ExpireOld plus its OldTokenTTL.
func deletedBefore(events []tokens.Event, used time.Time) time.Time {
	var (
		latest  time.Time
		seen    bool      // whether the current token's owner has had it
		expires time.Time // scheduled end of the old token, if any
	)
	deleted := func(at time.Time) {
		if !at.After(used) && at.After(latest) {
			latest = at
		}
	}
	endOld := func(at time.Time) {
		deleted(at)
		expires = time.Time{}
	}
	for _, e := range events {
		if !expires.IsZero() && !e.At.Before(expires) {
			endOld(expires) // it had ended by itself before this event
		}
		switch e.Type {
		case tokens.EventKeyCreated:
			seen = false
		case tokens.EventLinkRedeemed:
			seen = true
		case tokens.EventLinkRevoked:
			seen = false
		case tokens.EventTokenRenewed:
			switch {
			case !seen: // R4: the unseen token is discarded; an old one stays
				deleted(e.At)
				if e.Policy == tokens.DeleteNow {
					endOld(e.At)
				}
			case e.Policy == tokens.DeleteNow:
				deleted(e.At)
			case e.OldTokenTTL > 0:
				expires = e.At.Add(e.OldTokenTTL)
			default:
				expires = time.Time{}
			}
			seen = false
		case tokens.EventOldTokenExpirySet:
			expires = e.At.Add(e.OldTokenTTL)
		case tokens.EventOldTokenDeleted:
			endOld(e.At)
		case tokens.EventRenewalUndone:
			deleted(e.At) // the renewal's new token
			expires, seen = time.Time{}, true
		}
	}
	if !expires.IsZero() {
		endOld(expires)
	}
	return latest
}

// explain turns the library's errors into sentences for an operator.
func explain(err error) (string, int) {
	switch {
	case errors.Is(err, tokens.ErrRenewalPending):
		return "The latest link of this key has not been opened yet. Wait until it is opened or expires, or revoke it (if this was a renewal, you can also undo it).", http.StatusConflict
	case errors.Is(err, tokens.ErrOldTokenPending):
		return "This key still has an old token. Delete the old token (or undo the renewal) before renewing again.", http.StatusConflict
	case errors.Is(err, tokens.ErrNoOldToken):
		return "This key has no old token to delete.", http.StatusConflict
	case errors.Is(err, tokens.ErrUndoUnavailable):
		return "There is nothing to undo: the old token has already been deleted, or the key was never renewed.", http.StatusConflict
	case errors.Is(err, tokens.ErrNoPendingLink):
		return "This key has no link waiting to be opened: it was opened, it expired or it was revoked already.", http.StatusConflict
	case errors.Is(err, tokens.ErrKeyNotFound):
		return "That key no longer exists.", http.StatusNotFound
	case errors.Is(err, tokens.ErrInvalidKeySpec):
		return "Give the key a name: some text other than spaces, at most 200 bytes (about 200 letters, fewer for accented or non-Latin ones), without line breaks, tabs or other control characters.", http.StatusBadRequest
	case errors.Is(err, tokens.ErrInvalidCursor):
		return "That page of the history does not exist. Start again from its first page.", http.StatusBadRequest
	case errors.Is(err, tokens.ErrInvalidOption):
		return "That choice is not one this screen offers. Reload the page and try again.", http.StatusBadRequest
	default:
		return "Something went wrong on our side; nothing was changed. Try again in a moment.", http.StatusInternalServerError
	}
}

func when(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 MST") }

func age(since, now time.Time) string {
	d := now.Sub(since)
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return plural(int(d/time.Minute), "minute")
	case d < 48*time.Hour:
		return plural(int(d/time.Hour), "hour")
	default:
		return plural(int(d/(24*time.Hour)), "day")
	}
}

// until says how long from now to t, such as "in 23 hours".
func until(t, now time.Time) string {
	if !t.After(now) {
		return "now"
	}
	return "in " + age(now, t)
}

func lastUsed(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	if now.Sub(t) < time.Minute {
		return "just now"
	}
	return age(t, now) + " ago"
}

// ttlWords says a scheduled end such as 168h as "7 days".
func ttlWords(d time.Duration) string {
	switch {
	case d >= 48*time.Hour && d%(24*time.Hour) == 0:
		return plural(int(d/(24*time.Hour)), "day")
	case d >= time.Hour && d%time.Hour == 0:
		return plural(int(d/time.Hour), "hour")
	default:
		return d.String()
	}
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

// historyPageSize is how many events the history page shows at a time.
const historyPageSize = 20

type historyPage struct {
	Key     *tokens.Key
	Events  []eventView
	Now     time.Time
	First   bool   // the page starts at the key's first event
	Next    string // the cursor of the next page; "" on the last
	Deleted bool   // the key was deleted; its events remain
}

// eventView is an event in an operator's words.
type eventView struct {
	At      time.Time
	Type    tokens.EventType
	What    string
	Actor   string
	Details string
}

// history shows a key's audit trail (R17), oldest first, a page at a time:
// ?after= carries the cursor of the last event of the previous page. The
// trail of a deleted key of this account stays readable.
func (a *app) history(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	key, err := a.key(r.Context(), id)
	deleted := errors.Is(err, tokens.ErrKeyNotFound)
	if err != nil && !deleted {
		a.fail(w, r, err)
		return
	}
	after := r.URL.Query().Get("after")
	events, err := a.m.Events(r.Context(), tokens.EventQuery{KeyID: id, After: after, Limit: historyPageSize + 1})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if deleted {
		// The events of another account's key, or of no key, are not
		// this screen's to show.
		if len(events) == 0 || events[0].Account != a.account {
			a.fail(w, r, tokens.ErrKeyNotFound)
			return
		}
		key = &tokens.Key{ID: id, Account: a.account}
	}
	page := historyPage{Key: key, Now: a.now(), First: after == "", Deleted: deleted}
	if len(events) > historyPageSize {
		events = events[:historyPageSize]
		page.Next = events[len(events)-1].Cursor
	}
	for _, e := range events {
		page.Events = append(page.Events, describe(e))
	}
	w.Header().Set("Cache-Control", "no-store")
	if err := pages.ExecuteTemplate(w, "history.html", page); err != nil {
		log.Printf("adminserver: render history: %v", err)
	}
}

// fieldWords names the fields of an EventKeyUpdated as the key page does.
var fieldWords = map[string]string{
	tokens.FieldName:      "name",
	tokens.FieldScopes:    "scopes",
	tokens.FieldMetadata:  "metadata",
	tokens.FieldExpiresAt: "expiry",
}

// describe puts an event in words.
func describe(e tokens.Event) eventView {
	v := eventView{At: e.At, Type: e.Type, Actor: e.Actor}
	switch e.Type {
	case tokens.EventKeyCreated:
		v.What = "Key created"
	case tokens.EventTokenRenewed:
		v.What = "Token renewed"
		switch {
		case e.Policy == tokens.DeleteNow:
			v.Details = "old token deleted at once"
		case e.OldTokenTTL > 0:
			v.Details = "old token kept, deleted by itself after " + ttlWords(e.OldTokenTTL)
		default:
			v.Details = "old token kept until deleted"
		}
	case tokens.EventLinkRedeemed:
		v.What = "Link opened, token revealed"
	case tokens.EventLinkRevoked:
		v.What = "Link revoked"
		v.Details = "its token was never revealed"
	case tokens.EventOldTokenExpirySet:
		v.What = "Old token expiry set"
		v.Details = fmt.Sprintf("old token set to expire after %s, at %s", ttlWords(e.OldTokenTTL), when(e.At.Add(e.OldTokenTTL)))
	case tokens.EventOldTokenDeleted:
		v.What = "Old token deleted"
	case tokens.EventRenewalUndone:
		v.What = "Renewal undone"
		v.Details = "the previous token is current again"
	case tokens.EventKeyActivated:
		v.What = "Key activated"
	case tokens.EventKeyDeactivated:
		v.What = "Key deactivated"
	case tokens.EventKeyDeleted:
		v.What = "Key deleted"
	case tokens.EventRevokedTokenUsed:
		v.What = "Deleted token used"
		v.Details = "an integration sent a token that was deleted; it was refused"
	case tokens.EventKeyUpdated:
		v.What = "Key edited"
		words := make([]string, len(e.Fields))
		for i, f := range e.Fields {
			words[i] = fieldWords[f]
			if words[i] == "" {
				words[i] = f
			}
		}
		v.Details = "changed: " + strings.Join(words, ", ")
	case tokens.EventKeyImported:
		v.What = "Key imported"
		v.Details = "with a token its integration already had"
	case tokens.EventTokenLeaked:
		v.What = "Token reported leaked"
		v.Details = e.Source
	default:
		v.What = string(e.Type)
	}
	if v.Actor == "" {
		switch e.Type {
		case tokens.EventLinkRedeemed:
			v.Actor = "the link's recipient"
		case tokens.EventRevokedTokenUsed:
			v.Actor = "an integration"
		default:
			v.Actor = "unknown"
		}
	}
	return v
}
