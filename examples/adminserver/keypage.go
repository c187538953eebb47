package main

import (
	"errors"
	"fmt"
	"log"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/keyrenew/tokens"
)

// The key page (R19-R22): what a key is for beside its tokens, its scopes,
// metadata and expiry, and the form that edits them with UpdateKey. Like
// every form of this screen it posts to its own origin only: the
// cross-origin protection of routes refuses a POST from another site.

type keyPage struct {
	Key    *tokens.Key
	Now    time.Time
	Notice string
	Error  string
	Form   keyForm // what the edit form shows
}

// keyForm is the edit form's fields as text.
type keyForm struct {
	Name     string
	Scopes   string // one per line or space-separated
	Metadata string // one name=value a line
	Expires  string // datetime-local in UTC, "" for never
}

// expiresLayout is how a datetime-local input sends a time.
const expiresLayout = "2006-01-02T15:04"

func formOf(k *tokens.Key) keyForm {
	f := keyForm{Name: k.Name, Scopes: strings.Join(k.Scopes, "\n")}
	var md strings.Builder
	for _, name := range slices.Sorted(maps.Keys(k.Metadata)) {
		fmt.Fprintf(&md, "%s=%s\n", name, k.Metadata[name])
	}
	f.Metadata = md.String()
	if !k.ExpiresAt.IsZero() {
		f.Expires = k.ExpiresAt.UTC().Format(expiresLayout)
	}
	return f
}

func (a *app) keyPage(w http.ResponseWriter, r *http.Request) {
	key, err := a.key(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.renderKey(w, http.StatusOK, keyPage{Key: key, Notice: takeNotice(w, r), Form: formOf(key)})
}

// edit applies the edit form: only the fields that differ from the key as
// it is now go to UpdateKey, so that its event names what the operator
// changed. An invalid form is shown again, as typed, with what is wrong.
func (a *app) edit(w http.ResponseWriter, r *http.Request) {
	key, err := a.key(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	form := keyForm{
		Name:     strings.TrimSpace(r.PostFormValue("name")),
		Scopes:   r.PostFormValue("scopes"),
		Metadata: r.PostFormValue("metadata"),
		Expires:  strings.TrimSpace(r.PostFormValue("expires")),
	}
	u, changed, err := form.update(key)
	if err == nil && len(changed) > 0 {
		err = a.m.UpdateKey(a.acting(r), key.ID, u)
	}
	if err != nil {
		msg, status := explainEdit(err)
		if status == http.StatusInternalServerError {
			log.Printf("adminserver: %s %s: %v", r.Method, r.URL.Path, err)
		}
		a.renderKey(w, status, keyPage{Key: key, Error: msg, Form: form})
		return
	}
	notice := "Nothing changed."
	if len(changed) > 0 {
		notice = fmt.Sprintf("Saved the %s of %s.", strings.Join(changed, ", "), form.Name)
	}
	setNotice(w, notice)
	http.Redirect(w, r, "/keys/"+key.ID, http.StatusSeeOther)
}

// formError is a form field that does not parse; its message is for the
// operator.
type formError struct{ msg string }

func (e *formError) Error() string { return e.msg }

// update returns the KeyUpdate that makes k what f says, and the names of
// the fields it changes.
func (f keyForm) update(k *tokens.Key) (tokens.KeyUpdate, []string, error) {
	var u tokens.KeyUpdate
	var changed []string
	if f.Name != k.Name {
		u.Name, changed = &f.Name, append(changed, "name")
	}
	scopes := slices.Compact(slices.Sorted(slices.Values(strings.Fields(f.Scopes))))
	if !slices.Equal(scopes, k.Scopes) {
		if scopes == nil {
			scopes = []string{}
		}
		u.Scopes, changed = &scopes, append(changed, "scopes")
	}
	md := map[string]string{}
	for line := range strings.Lines(f.Metadata) {
		line = strings.TrimRight(line, "\r\n")
		if strings.TrimSpace(line) == "" {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return u, nil, &formError{"Write each metadata entry on a line of its own as name=value."}
		}
		if _, dup := md[name]; dup {
			return u, nil, &formError{fmt.Sprintf("The metadata name %q appears twice.", name)}
		}
		md[name] = value
	}
	if !maps.Equal(md, k.Metadata) {
		u.Metadata, changed = &md, append(changed, "metadata")
	}
	var expires time.Time
	if f.Expires != "" {
		t, err := time.ParseInLocation(expiresLayout, f.Expires, time.UTC)
		if err != nil {
			return u, nil, &formError{"Give the expiry as a date and time (UTC), or leave it empty for none."}
		}
		expires = t
	}
	if !expires.Equal(k.ExpiresAt) {
		u.ExpiresAt, changed = &expires, append(changed, "expiry")
	}
	return u, changed, nil
}

// explainEdit is explain for the edit form, whose invalid input is more
// than a name.
func explainEdit(err error) (string, int) {
	var fe *formError
	switch {
	case errors.As(err, &fe):
		return fe.msg, http.StatusBadRequest
	case errors.Is(err, tokens.ErrInvalidKeySpec):
		return "Nothing was saved: the name is required (at most 200 bytes, no control characters); " +
			fmt.Sprintf("a key has at most %d scopes of 1 to %d ASCII letters, digits and \":._-/\"; ", tokens.MaxScopes, tokens.MaxScopeLen) +
			fmt.Sprintf("at most %d metadata entries, each a name of 1 to %d ASCII letters, digits and \"_.-\" and a value of at most %d bytes without control characters. ",
				tokens.MaxMetadataEntries, tokens.MaxMetadataNameLen, tokens.MaxMetadataValueLen) +
			"(" + strings.TrimPrefix(err.Error(), tokens.ErrInvalidKeySpec.Error()+": ") + ")", http.StatusBadRequest
	}
	return explain(err)
}

func (a *app) renderKey(w http.ResponseWriter, status int, page keyPage) {
	page.Now = a.now()
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if err := pages.ExecuteTemplate(w, "key.html", page); err != nil {
		log.Printf("adminserver: render key: %v", err)
	}
}
