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
	"when":     func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 MST") },
}).ParseFS(webFS, "web/*.html"))

// app is the operator's admin screen for one account's keys. It has no
// login of its own: it is an example meant for a loopback address, and a
// real deployment puts it behind the company's single sign-on.
type app struct {
	m       *tokens.Manager
	account string
	now     func() time.Time
}

func (a *app) routes() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(webFS, "web/static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", a.list)
	mux.HandleFunc("POST /keys", a.create)
	mux.HandleFunc("POST /keys/{id}/renew", a.renew)
	mux.HandleFunc("GET /keys/{id}/delete-old", a.confirm("delete-old"))
	mux.HandleFunc("POST /keys/{id}/delete-old", a.action(a.m.DeleteOld, "The old token of %s was deleted; only the new token works now."))
	mux.HandleFunc("POST /keys/{id}/undo", a.action(a.m.Undo, "The renewal of %s was undone; the previous token is current again."))
	mux.HandleFunc("POST /keys/{id}/activate", a.action(a.m.Activate, "%s is active: its tokens work again."))
	mux.HandleFunc("POST /keys/{id}/deactivate", a.action(a.m.Deactivate, "%s is deactivated: its tokens are refused until you activate it."))
	mux.HandleFunc("GET /keys/{id}/delete", a.confirm("delete"))
	mux.HandleFunc("POST /keys/{id}/delete", a.action(a.m.DeleteKey, "%s was deleted with its tokens."))
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

type listPage struct {
	Account string
	Keys    []*tokens.Key
	Now     time.Time
	Notice  string
	Error   string
	Link    *revealedLink
}

// revealedLink is a share link shown once to the operator who made it.
type revealedLink struct {
	KeyID     string
	Name      string
	URL       string
	ExpiresAt time.Time
	Renewal   bool
}

func (a *app) list(w http.ResponseWriter, r *http.Request) {
	a.render(w, r, http.StatusOK, listPage{Notice: takeNotice(w, r)})
}

func (a *app) create(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimSpace(r.PostFormValue("name"))
	key, link, err := a.m.CreateKey(r.Context(), tokens.KeySpec{Account: a.account, Name: name})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.render(w, r, http.StatusOK, listPage{Link: &revealedLink{
		KeyID: key.ID, Name: key.Name, URL: link.URL, ExpiresAt: link.ExpiresAt,
	}})
}

func (a *app) renew(w http.ResponseWriter, r *http.Request) {
	opts := tokens.RenewOptions{OldToken: tokens.DeleteLater}
	if r.PostFormValue("old") == "now" {
		opts.OldToken = tokens.DeleteNow
	}
	key, err := a.key(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	link, err := a.m.Renew(r.Context(), key.ID, opts)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.render(w, r, http.StatusOK, listPage{Link: &revealedLink{
		KeyID: key.ID, Name: key.Name, URL: link.URL, ExpiresAt: link.ExpiresAt, Renewal: true,
	}})
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
		if action == "delete-old" && key.OldToken == nil {
			a.fail(w, r, tokens.ErrNoOldToken)
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
			err = do(r.Context(), key.ID)
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
	page.Account, page.Keys, page.Now = a.account, keys, a.now()
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if err := pages.ExecuteTemplate(w, "keys.html", page); err != nil {
		log.Printf("adminserver: render keys: %v", err)
	}
}

// explain turns the library's errors into sentences for an operator.
func explain(err error) (string, int) {
	switch {
	case errors.Is(err, tokens.ErrRenewalPending):
		return "The latest link of this key has not been opened yet. Wait until it is opened or expires (if this was a renewal, you can also undo it).", http.StatusConflict
	case errors.Is(err, tokens.ErrOldTokenPending):
		return "This key still has an old token. Delete the old token (or undo the renewal) before renewing again.", http.StatusConflict
	case errors.Is(err, tokens.ErrNoOldToken):
		return "This key has no old token to delete.", http.StatusConflict
	case errors.Is(err, tokens.ErrUndoUnavailable):
		return "There is nothing to undo: the old token has already been deleted, or the key was never renewed.", http.StatusConflict
	case errors.Is(err, tokens.ErrKeyNotFound):
		return "That key no longer exists.", http.StatusNotFound
	case errors.Is(err, tokens.ErrInvalidKeySpec):
		return "Give the key a name: some text other than spaces, at most 200 bytes (about 200 letters, fewer for accented or non-Latin ones), without line breaks, tabs or other control characters.", http.StatusBadRequest
	default:
		return "Something went wrong on our side; nothing was changed. Try again in a moment.", http.StatusInternalServerError
	}
}

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

func lastUsed(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	if now.Sub(t) < time.Minute {
		return "just now"
	}
	return age(t, now) + " ago"
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}
