package tokenhttp

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
)

// The Reveal form is protected by a double-submit cookie bound to the link:
// the landing page sets a random secret in an HttpOnly cookie and puts
// HMAC-SHA256(secret, link ID) in the form. A cross-site page can neither
// read the cookie nor, under SameSite=Lax, make the browser send it with a
// POST, so it cannot forge the form; and a token copied from one link's
// page is worthless for another link. The check needs no server-side key,
// so it works across processes and restarts. Sec-Fetch-Site and Origin are
// checked first (checkRequest); they also stop a sibling subdomain that
// plants its own cookie, which a double-submit cookie alone would not.
const (
	csrfField       = "csrf"
	csrfSecretBytes = 32
	csrfLabel       = "keyrenew/tokenhttp reveal v1\x00"
)

// csrfCookie is the template of the cookie that carries the secret. Over
// https it has the __Host- prefix, which browsers accept only from the host
// itself, Secure, for the whole host; over http, for development on a
// loopback host, it is scoped to the link pages.
func csrfCookie(secure bool, basePath string) http.Cookie {
	c := http.Cookie{
		Name:     "tokenhttp-csrf",
		Path:     basePath,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	}
	if secure {
		c.Name, c.Path, c.Secure = "__Host-tokenhttp-csrf", "/", true
	}
	return c
}

// csrfSecret returns the secret of r's cookie, or sets a cookie with a new
// one. An existing secret is kept so that landing pages open in several
// tabs stay valid.
func (h *LinkHandler) csrfSecret(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if secret, ok := h.readCSRFSecret(r); ok {
		return secret, nil
	}
	secret := make([]byte, csrfSecretBytes)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("tokenhttp: reading random bytes: %w", err)
	}
	c := h.cookie
	c.Value = base64.RawURLEncoding.EncodeToString(secret)
	http.SetCookie(w, &c)
	return secret, nil
}

func (h *LinkHandler) readCSRFSecret(r *http.Request) ([]byte, bool) {
	c, err := r.Cookie(h.cookie.Name)
	if err != nil {
		return nil, false
	}
	secret, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil || len(secret) != csrfSecretBytes {
		return nil, false
	}
	return secret, true
}

func csrfMAC(secret []byte, linkID string) []byte {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(csrfLabel + linkID))
	return mac.Sum(nil)
}

func csrfToken(secret []byte, linkID string) string {
	return base64.RawURLEncoding.EncodeToString(csrfMAC(secret, linkID))
}

// validCSRFToken reports, in constant time, whether token is the form
// token of linkID under secret.
func validCSRFToken(secret []byte, linkID, token string) bool {
	got, err := base64.RawURLEncoding.DecodeString(token)
	return err == nil && hmac.Equal(got, csrfMAC(secret, linkID))
}
