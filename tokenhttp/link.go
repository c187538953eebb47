package tokenhttp

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/keyrenew/tokens"
)

// ContentSecurityPolicy is the Content-Security-Policy of every response of
// a LinkHandler: the pages load their script and style from the handler
// itself and nothing from anywhere else, cannot be framed, and post forms
// only to their own origin.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// assetDir is the path segment, under the share base URL, of the pages'
// script, style and icon. Link IDs are base62, so it never names a link.
const assetDir = "_assets/"

const maxFormBytes = 4 << 10

var (
	//go:embed templates/*.html
	templateFS embed.FS
	//go:embed assets
	assetFS embed.FS

	assetTypes = map[string]string{
		"app.css":  "text/css; charset=utf-8",
		"app.js":   "text/javascript; charset=utf-8",
		"icon.svg": "image/svg+xml",
	}

	pages = parsePages("pending", "revealed", "used", "expired", "notfound", "forbidden", "error", "method", "misdirected")
)

// A LinkHandler serves the pages behind the share links of a Manager: a
// landing page for every link, and the page that reveals a link's
// credentials once. Its responses are never cached, send no referrer, and
// carry ContentSecurityPolicy, so that no other origin can load, frame or
// script them.
//
// It answers a request for the path of the share base URL followed by one
// path segment, the link ID. Wrap the server's root handler with Wrap, so
// that the LinkHandler also answers the unclean forms of those paths, such
// as //credentials/ID, which http.ServeMux would otherwise redirect with
// the link ID in the Location header; or mount it at that path, for
// example mux.Handle("/credentials/", h) for
// https://share.example.com/credentials/, or behind http.StripPrefix. It
// serves its own script and style under the segment "_assets/". The query
// of a request is ignored.
//
// It answers only requests for the share base URL's host (rule S7): a page
// on a host name that an attacker points at the server (DNS rebinding)
// must not be able to read a link. The Host header is compared without
// regard to ASCII case, and with the scheme's default port or without it;
// any other Host gets 421 Misdirected Request and leaves the link
// untouched. A reverse proxy in front of the handler must pass the Host
// header on as the client sent it.
//
// GET and HEAD show the link's state (Manager.LinkStatus) and never consume
// it: a pending link shows a Reveal button, a used, expired or unknown link
// says what to do next. Only a POST from the Reveal button's form redeems
// the link (Manager.RedeemLink) and shows the key ID and token. That POST
// must come from the page itself: a Sec-Fetch-Site header other than
// same-origin, an Origin header other than the base URL's origin (or
// "null", which browsers send under Referrer-Policy: no-referrer), or a
// form that lacks the token bound to the page's cookie and the link ID,
// gets 403 and leaves the link untouched. OPTIONS gets 204 and other
// methods 405; neither consumes the link.
//
// A LinkHandler keeps no state: the cross-site request token is checked
// against a cookie, so any number of handlers in any number of processes
// can serve one set of links.
type LinkHandler struct {
	m        *tokens.Manager
	base     string // the share base URL, as given to tokens.WithShareBaseURL
	basePath string // the base URL's path, such as "/credentials/"
	scheme   string // the base URL's scheme, "https" or "http"
	host     string // the base URL's host and port, without the scheme's default port
	origin   string // the base URL's origin, such as "https://share.example.com"
	cookie   http.Cookie
	report   func(*http.Request, error)
}

// NewLinkHandler returns a LinkHandler for the share links of m, to be
// mounted at the path of m.ShareBaseURL(). It returns an error if m is nil
// or an option is invalid.
func NewLinkHandler(m *tokens.Manager, opts ...LinkOption) (*LinkHandler, error) {
	if m == nil {
		return nil, errors.New("tokenhttp: NewLinkHandler: Manager is nil")
	}
	// NewManager accepts a base URL only in canonical form,
	// scheme://host/path/ with a lowercase scheme and host, so cutting it
	// apart is enough.
	base := m.ShareBaseURL()
	scheme, rest, _ := strings.Cut(base, "://")
	slash := strings.IndexByte(rest, '/')
	if slash < 0 {
		return nil, errors.New("tokenhttp: NewLinkHandler: Manager has no share base URL; create it with tokens.NewManager")
	}
	host := withoutDefaultPort(scheme, rest[:slash])
	h := &LinkHandler{
		m:        m,
		base:     base,
		basePath: rest[slash:],
		scheme:   scheme,
		host:     host,
		origin:   scheme + "://" + host,
	}
	h.cookie = csrfCookie(scheme == "https", h.basePath)
	set, err := applyLink(opts)
	if err != nil {
		return nil, err
	}
	h.report = set.report
	return h, nil
}

// withoutDefaultPort drops the scheme's default port from host, as
// browsers do in the Origin and Host headers.
func withoutDefaultPort(scheme, host string) string {
	switch scheme {
	case "https":
		return strings.TrimSuffix(host, ":443")
	case "http":
		return strings.TrimSuffix(host, ":80")
	}
	return host
}

// asciiLower lowercases ASCII letters only. A Host header is ASCII; Unicode
// case mapping would turn look-alikes such as the Kelvin sign into "k".
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// ServeHTTP implements http.Handler.
func (h *LinkHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The escaped path, so that an escaped "/" or letter names no link.
	segment, ok := strings.CutPrefix(r.URL.EscapedPath(), h.basePath)
	if !ok {
		segment = strings.TrimPrefix(r.URL.EscapedPath(), "/") // mounted behind http.StripPrefix
	}
	h.serve(w, r, segment)
}

// Wrap returns a handler that gives h every request for a path under the
// share base path, as sent or once cleaned the way http.ServeMux cleans
// it, and every other request to next, typically the application's
// ServeMux. A path that is not exactly the base path followed by a link ID
// gets the not-found page: unlike ServeMux, which redirects
// /credentials/./ID to /credentials/ID with neither the link pages'
// headers nor discretion about the ID, h never redirects. Use it around
// the server's root handler:
//
//	srv := &http.Server{Handler: links.Wrap(mux)}
//
// A share base URL at the root of its host, such as
// https://share.example.com/, gives h every request.
func (h *LinkHandler) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !h.owns(r.URL) {
			next.ServeHTTP(w, r)
			return
		}
		segment, ok := strings.CutPrefix(r.URL.EscapedPath(), h.basePath)
		if !ok {
			segment = "" // under the base only once cleaned or unescaped: names no link
		}
		h.serve(w, r, segment)
	})
}

// owns reports whether u's path is under the base path as sent, or once
// cleaned as ServeMux cleans the escaped path before it routes.
func (h *LinkHandler) owns(u *url.URL) bool {
	for _, p := range []string{u.Path, u.EscapedPath()} {
		if strings.HasPrefix(p, h.basePath) || strings.HasPrefix(path.Clean("/"+p)+"/", h.basePath) {
			return true
		}
	}
	return false
}

// serve answers a request for segment, the part of the path after the
// base path.
func (h *LinkHandler) serve(w http.ResponseWriter, r *http.Request, segment string) {
	setSecurityHeaders(w.Header())
	if withoutDefaultPort(h.scheme, asciiLower(r.Host)) != h.host {
		h.render(w, r, http.StatusMisdirectedRequest, "misdirected", page{})
		return
	}
	if name, ok := strings.CutPrefix(segment, assetDir); ok {
		h.serveAsset(w, r, name)
		return
	}
	if segment == "" || strings.Contains(segment, "/") {
		h.render(w, r, http.StatusNotFound, "notfound", page{})
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		h.serveStatus(w, r, segment)
	case http.MethodPost:
		h.reveal(w, r, segment)
	case http.MethodOptions:
		w.Header().Set("Allow", "GET, HEAD, POST, OPTIONS")
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST, OPTIONS")
		h.render(w, r, http.StatusMethodNotAllowed, "method", page{})
	}
}

// serveStatus shows the link's landing page without consuming the link.
func (h *LinkHandler) serveStatus(w http.ResponseWriter, r *http.Request, linkID string) {
	st, err := h.m.LinkStatus(r.Context(), h.base+linkID)
	switch {
	case errors.Is(err, tokens.ErrInvalidLink):
		h.render(w, r, http.StatusNotFound, "notfound", page{})
		return
	case err != nil:
		h.fail(w, r, err)
		return
	}
	p := page{ExpiresAt: st.ExpiresAt}
	switch st.State {
	case tokens.LinkPending:
		secret, err := h.csrfSecret(w, r)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		p.Action = h.basePath + linkID
		p.CSRF = csrfToken(secret, linkID)
		h.render(w, r, http.StatusOK, "pending", p)
	case tokens.LinkUsed:
		h.render(w, r, http.StatusGone, "used", p)
	case tokens.LinkExpired:
		h.render(w, r, http.StatusGone, "expired", p)
	default:
		h.render(w, r, http.StatusNotFound, "notfound", p)
	}
}

// reveal redeems the link for a POST from its landing page's form.
func (h *LinkHandler) reveal(w http.ResponseWriter, r *http.Request, linkID string) {
	if reason := h.checkRequest(w, r, linkID); reason != "" {
		h.render(w, r, http.StatusForbidden, "forbidden", page{Reason: reason, Action: h.basePath + linkID})
		return
	}
	creds, err := h.m.RedeemLink(r.Context(), h.base+linkID)
	switch {
	case err == nil:
		h.render(w, r, http.StatusOK, "revealed", page{Credentials: creds})
	case errors.Is(err, tokens.ErrLinkUsed):
		h.render(w, r, http.StatusGone, "used", page{})
	case errors.Is(err, tokens.ErrLinkExpired):
		h.render(w, r, http.StatusGone, "expired", page{})
	case errors.Is(err, tokens.ErrLinkNotFound), errors.Is(err, tokens.ErrInvalidLink):
		h.render(w, r, http.StatusNotFound, "notfound", page{})
	default:
		h.fail(w, r, err)
	}
}

// checkRequest returns why a reveal request must be refused, or "" if it
// came from the link's own page.
func (h *LinkHandler) checkRequest(w http.ResponseWriter, r *http.Request, linkID string) string {
	const crossSite = "This request did not come from the link's own page, so nothing was revealed."
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return crossSite
	}
	// Browsers send "null" for a same-origin POST from a page served with
	// Referrer-Policy: no-referrer; the other checks decide then.
	if o := r.Header.Get("Origin"); o != "" && o != "null" && o != h.origin {
		return crossSite
	}
	mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mediaType != "application/x-www-form-urlencoded" {
		return crossSite
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		return "The form could not be read, so nothing was revealed."
	}
	secret, ok := h.readCSRFSecret(r)
	if !ok {
		return "Your browser did not send the cookie this page sets, so nothing was revealed. Allow cookies for this site."
	}
	if !validCSRFToken(secret, linkID, r.PostForm.Get(csrfField)) {
		return "This page's form could not be verified, so nothing was revealed."
	}
	return ""
}

func (h *LinkHandler) fail(w http.ResponseWriter, r *http.Request, err error) {
	h.report(r, err)
	h.render(w, r, http.StatusInternalServerError, "error", page{})
}

// page is what a page template shows.
type page struct {
	Assets      string    // URL path of the asset directory
	Action      string    // URL path of the link, where its form posts
	CSRF        string    // the form's cross-site request token
	ExpiresAt   time.Time // zero if unknown
	Reason      string    // why a request was refused
	Credentials *tokens.Credentials
}

func (h *LinkHandler) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	p.Assets = h.basePath + assetDir
	var buf bytes.Buffer
	if err := pages[name].ExecuteTemplate(&buf, "layout", p); err != nil {
		h.report(r, fmt.Errorf("tokenhttp: rendering the %s page: %w", name, err))
		http.Error(w, "internal server error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (h *LinkHandler) serveAsset(w http.ResponseWriter, r *http.Request, name string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	contentType, ok := assetTypes[name]
	if !ok {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	data, err := assetFS.ReadFile("assets/" + name)
	if err != nil {
		h.report(r, fmt.Errorf("tokenhttp: reading asset %s: %w", name, err))
		http.Error(w, "internal server error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", contentType)
	_, _ = w.Write(data)
}

func setSecurityHeaders(h http.Header) {
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("X-Robots-Tag", "noindex, nofollow")
}

func parsePages(names ...string) map[string]*template.Template {
	funcs := template.FuncMap{
		"utc":     func(t time.Time) string { return t.UTC().Format("Mon 2 Jan 2006, 15:04 UTC") },
		"rfc3339": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	}
	layout := template.Must(template.New("layout").Funcs(funcs).ParseFS(templateFS, "templates/layout.html"))
	out := make(map[string]*template.Template, len(names))
	for _, name := range names {
		out[name] = template.Must(template.Must(layout.Clone()).ParseFS(templateFS, "templates/"+name+".html"))
	}
	return out
}
