package tokens

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// A share link is the configured base followed by a link ID of linkIDLen
// base62 characters from crypto/rand (S1, S5). The store never sees the ID:
// it keeps lookupDigest(id) to find the link, and the token sealed with
// AES-GCM under sealKey(id, secret). Both come from HKDF with separate
// labels, so the stored digest does not yield the sealing key (S2). With a
// sealing secret (S8) the secret is HKDF's salt, so the link ID alone, from
// a used link in a chat log or browser history, opens no copy of the sealed
// token that a backup, a WAL file or a replica kept after the wipe.
const (
	lookupLabel       = "keyrenew/tokens link lookup v1"
	sealLabel         = "keyrenew/tokens link seal v1"
	sealedSecretLabel = "keyrenew/tokens link seal with secret v2"
	sealAADTag        = "keyrenew/tokens sealed token v1 "

	// MinSealingSecretLen is the shortest secret WithSealingSecret takes:
	// 256 bits, as from crypto/rand.
	MinSealingSecretLen = 32
)

// ShareLink is a single-access link that reveals a key's token once. Its URL
// is a secret until redeemed: fmt and slog print it redacted (S4), the
// field itself stays readable.
type ShareLink struct {
	URL       string
	ExpiresAt time.Time // redeemable while now < ExpiresAt
}

// Credentials are what a share link reveals: the key ID and its token. fmt
// and slog print the token redacted (S4); the field itself stays readable.
// encoding/json does not redact it: it is meant for the one response that
// hands the token over.
type Credentials struct {
	KeyID string
	Token string
}

// LinkState is what a share link would give if redeemed now.
type LinkState int

const (
	// LinkNotFound: unknown, superseded by a later renewal, revoked by Undo,
	// or of a deleted key. For Key.Link: the key has no link.
	LinkNotFound LinkState = iota
	// LinkPending: redeemable.
	LinkPending
	// LinkUsed: already redeemed.
	LinkUsed
	// LinkExpired: expired before it was redeemed.
	LinkExpired
)

func (s LinkState) String() string {
	switch s {
	case LinkPending:
		return "pending"
	case LinkUsed:
		return "used"
	case LinkExpired:
		return "expired"
	default:
		return "not found"
	}
}

// LinkStatus describes a share link without consuming it.
type LinkStatus struct {
	State     LinkState
	ExpiresAt time.Time // zero when State is LinkNotFound
}

// RedeemLink returns the credentials a share link reveals, exactly once (R8),
// also when many processes sharing one database race for it. The URL is
// checked against the configured base before the store is consulted
// (ErrInvalidLink). Then: ErrLinkUsed once redeemed, ErrLinkExpired when
// expired, ErrLinkNotFound for any link that is not a key's latest.
// Redeeming wipes the sealed token and changes no token's validity.
func (m *Manager) RedeemLink(ctx context.Context, url string) (*Credentials, error) {
	if ctx == nil {
		return nil, ErrNilContext
	}
	linkID, err := m.cfg.shareBase.linkID(url)
	if err != nil {
		return nil, err
	}
	lookup := lookupDigest(linkID)
	var creds *Credentials
	err = m.update(ctx, m.linkLoader(lookup), Event{Type: EventLinkRedeemed}, func(rec *KeyRecord, now time.Time) error {
		switch linkState(rec, now) {
		case LinkUsed:
			return ErrLinkUsed
		case LinkExpired:
			return ErrLinkExpired
		case LinkNotFound: // revoked (R15)
			return ErrLinkNotFound
		}
		token, err := openToken(m.cfg.sealingSecrets, linkID, rec)
		if err != nil {
			return err
		}
		rec.Link.RedeemedAt = now
		rec.Link.Sealed = nil
		creds = &Credentials{KeyID: rec.ID, Token: token}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return creds, nil
}

// RevokeLink ends the key's pending share link at once (R15), for a link
// sent to the wrong person or a renewal whose link was lost: the link then
// gives ErrLinkNotFound, its sealed token is wiped, and the token it would
// have revealed counts as never seen, as if the link had expired. The next
// Renew, which ErrRenewalPending no longer blocks, discards that token
// (R4). It returns ErrNoPendingLink if the key's link is not pending, and
// ErrKeyNotFound for an unknown key.
func (m *Manager) RevokeLink(ctx context.Context, keyID string) error {
	if ctx == nil {
		return ErrNilContext
	}
	return m.update(ctx, m.keyLoader(keyID), Event{Type: EventLinkRevoked}, func(rec *KeyRecord, now time.Time) error {
		if linkState(rec, now) != LinkPending {
			return ErrNoPendingLink
		}
		rec.Link.RevokedAt = now
		rec.Link.Sealed = nil
		return nil
	})
}

// LinkStatus tells what RedeemLink would give for url now, without
// consuming the link: for a landing page that link previewers may load.
// Like RedeemLink it returns ErrInvalidLink for a malformed URL.
func (m *Manager) LinkStatus(ctx context.Context, url string) (LinkStatus, error) {
	if ctx == nil {
		return LinkStatus{}, ErrNilContext
	}
	linkID, err := m.cfg.shareBase.linkID(url)
	if err != nil {
		return LinkStatus{}, err
	}
	rec, err := m.store.KeyByLink(ctx, lookupDigest(linkID))
	if errors.Is(err, ErrKeyNotFound) {
		return LinkStatus{State: LinkNotFound}, nil
	}
	if err != nil {
		return LinkStatus{}, fmt.Errorf("tokens: link status: %w", err)
	}
	state := linkState(&rec, m.now())
	if state == LinkNotFound { // revoked (R15): nothing to tell
		return LinkStatus{State: LinkNotFound}, nil
	}
	return LinkStatus{State: state, ExpiresAt: rec.Link.ExpiresAt}, nil
}

// PurgeExpired wipes the sealed tokens of links that expired unredeemed, so
// that they no longer exist even in sealed form, and returns how many it
// wiped. It also forgets the deleted tokens older than
// WithRevokedTokenRetention (R16). The links keep their state
// (ErrLinkExpired). Call it from a periodic job; the library starts no
// goroutines of its own.
func (m *Manager) PurgeExpired(ctx context.Context) (int, error) {
	if ctx == nil {
		return 0, ErrNilContext
	}
	const batch = 500
	purged := 0
	// With reuse detection off (retention 0), whatever an earlier setting
	// remembered goes too.
	if _, err := m.store.PurgeRevoked(ctx, m.now().Add(-m.cfg.revokedRetention)); err != nil {
		return 0, fmt.Errorf("tokens: purge revoked tokens: %w", err)
	}
	for {
		ids, err := m.store.ExpiredLinks(ctx, m.now(), batch)
		if err != nil {
			return purged, fmt.Errorf("tokens: purge expired links: %w", err)
		}
		for _, id := range ids {
			// A purge is upkeep, not a change of the key: no event.
			err := m.update(ctx, m.keyLoader(id), Event{}, func(rec *KeyRecord, now time.Time) error {
				if !wipeExpiredLink(rec, now) {
					return errUnchanged
				}
				return nil
			})
			switch {
			case err == nil:
				purged++
			case errors.Is(err, ErrKeyNotFound):
			default:
				return purged, err
			}
		}
		if len(ids) < batch {
			return purged, nil
		}
	}
}

func linkState(rec *KeyRecord, now time.Time) LinkState {
	switch {
	case !rec.HasLink, !rec.Link.RevokedAt.IsZero():
		return LinkNotFound
	case !rec.Link.RedeemedAt.IsZero():
		return LinkUsed
	case !now.Before(rec.Link.ExpiresAt):
		return LinkExpired
	default:
		return LinkPending
	}
}

// issueToken gives rec a new current token and a new latest link that
// reveals it, superseding any earlier link.
func (m *Manager) issueToken(rec *KeyRecord, now time.Time) (*ShareLink, error) {
	token, err := newToken(m.cfg.tokenPrefix)
	if err != nil {
		return nil, err
	}
	linkID, err := randomBase62(linkIDLen)
	if err != nil {
		return nil, err
	}
	sealed, err := sealToken(m.cfg.sealingSecret(), linkID, rec.ID, token)
	if err != nil {
		return nil, err
	}
	expires := now.Add(m.cfg.linkTTL)
	rec.Current = TokenRecord{Digest: tokenDigest(token), CreatedAt: now}
	rec.HasLink = true
	rec.Link = LinkRecord{Digest: lookupDigest(linkID), Sealed: sealed, CreatedAt: now, ExpiresAt: expires}
	return &ShareLink{URL: m.cfg.shareBase.url(linkID), ExpiresAt: expires}, nil
}

func lookupDigest(linkID string) Digest {
	var d Digest
	copy(d[:], hkdfKey(linkID, nil, lookupLabel))
	return d
}

// sealKey is the AES-256 key a link's token is sealed under: from the link
// ID alone without a sealing secret, from both with one.
func sealKey(linkID string, secret []byte) []byte {
	if secret == nil {
		return hkdfKey(linkID, nil, sealLabel)
	}
	return hkdfKey(linkID, secret, sealedSecretLabel)
}

func hkdfKey(linkID string, salt []byte, label string) []byte {
	key, err := hkdf.Key(sha256.New, []byte(linkID), salt, label, sha256.Size)
	if err != nil {
		panic("tokens: hkdf: " + err.Error()) // only for lengths over 255*32 bytes
	}
	return key
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("tokens: seal: %w", err)
	}
	return cipher.NewGCM(block)
}

// sealToken seals token under the link's key and the sealing secret (nil:
// none), bound to the key ID so that a sealed value copied to another key's
// row does not open.
func sealToken(secret []byte, linkID, keyID, token string) ([]byte, error) {
	aead, err := newGCM(sealKey(linkID, secret))
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(token)+aead.Overhead())
	if _, err := io.ReadFull(rand.Reader, nonce); err != nil {
		return nil, fmt.Errorf("tokens: seal: %w", err)
	}
	return aead.Seal(nonce, nonce, []byte(token), []byte(sealAADTag+keyID)), nil
}

// openToken opens the token sealed in rec's link and checks it against the
// current token's digest. It tries each sealing secret, current first, and
// then no secret, for links sealed before a secret was configured: GCM's
// authentication tells which one sealed it. It returns ErrLinkSealed when
// none opens it.
func openToken(secrets [][]byte, linkID string, rec *KeyRecord) (string, error) {
	sealed := rec.Link.Sealed
	for i := 0; i <= len(secrets); i++ {
		var secret []byte // after the secrets: none
		if i < len(secrets) {
			secret = secrets[i]
		}
		aead, err := newGCM(sealKey(linkID, secret))
		if err != nil {
			return "", err
		}
		if len(sealed) < aead.NonceSize() {
			break
		}
		plain, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], []byte(sealAADTag+rec.ID))
		if err != nil {
			continue
		}
		digest := tokenDigest(string(plain))
		if subtle.ConstantTimeCompare(digest[:], rec.Current.Digest[:]) != 1 {
			return "", fmt.Errorf("tokens: sealed token of key %s is not its current token", rec.ID)
		}
		return string(plain), nil
	}
	return "", fmt.Errorf("%w (key %s)", ErrLinkSealed, rec.ID)
}

const redacted = "[REDACTED]"

// Format prints the credentials with the token redacted, for every verb.
func (c Credentials) Format(f fmt.State, verb rune) {
	switch {
	case verb == 'v' && f.Flag('#'):
		fmt.Fprintf(f, "tokens.Credentials{KeyID:%q, Token:%q}", c.KeyID, redacted)
	case verb == 'v' && f.Flag('+'):
		fmt.Fprintf(f, "{KeyID:%s Token:%s}", c.KeyID, redacted)
	default:
		fmt.Fprintf(f, "{%s %s}", c.KeyID, redacted)
	}
}

// LogValue keeps the token out of structured logs.
func (c Credentials) LogValue() slog.Value {
	return slog.GroupValue(slog.String("key_id", c.KeyID), slog.String("token", redacted))
}

// Format prints the link with its ID redacted, for every verb.
func (l ShareLink) Format(f fmt.State, verb rune) {
	url := l.redactedURL()
	switch {
	case verb == 'v' && f.Flag('#'):
		fmt.Fprintf(f, "tokens.ShareLink{URL:%q, ExpiresAt:%s}", url, l.ExpiresAt.Format(time.RFC3339))
	case verb == 'v' && f.Flag('+'):
		fmt.Fprintf(f, "{URL:%s ExpiresAt:%s}", url, l.ExpiresAt.Format(time.RFC3339))
	default:
		fmt.Fprintf(f, "{%s %s}", url, l.ExpiresAt.Format(time.RFC3339))
	}
}

// LogValue keeps the link ID out of structured logs.
func (l ShareLink) LogValue() slog.Value {
	return slog.GroupValue(slog.String("url", l.redactedURL()), slog.Time("expires_at", l.ExpiresAt))
}

func (l ShareLink) redactedURL() string {
	if i := strings.LastIndexByte(l.URL, '/'); i >= 0 {
		return l.URL[:i+1] + redacted
	}
	return redacted
}

// shareBase is the base of share links (S5, S6): checked once by
// newShareBase, it makes link URLs and takes them apart again. A link is
// the base followed by one link ID, and nothing else.
type shareBase string

// newShareBase checks base (S6): an absolute https URL ending in "/", in
// canonical form, with no user info, query or fragment; http only for a
// loopback host, for development.
func newShareBase(base string) (shareBase, error) {
	if err := checkShareBase(base); err != nil {
		return "", err
	}
	return shareBase(base), nil
}

// url is the link of linkID.
func (b shareBase) url(linkID string) string {
	return string(b) + linkID
}

// linkID returns the link ID of url, which must be the base, byte for
// byte, followed by exactly one well-formed link ID (S5). Any other
// scheme, host, port, path, query or fragment fails that test.
func (b shareBase) linkID(url string) (string, error) {
	id, ok := strings.CutPrefix(url, string(b))
	if !ok || len(id) != linkIDLen || !isBase62(id) {
		return "", ErrInvalidLink
	}
	return id, nil
}

func checkShareBase(base string) error {
	bad := func(why string) error {
		return invalidOption("WithShareBaseURL: " + why)
	}
	u, err := url.Parse(base)
	switch {
	case base == "":
		return bad("a base URL is required, such as https://share.example.com/credentials/")
	case err != nil:
		return bad("not a URL")
	case u.User != nil || strings.Contains(base, "@"):
		return bad("user info is not allowed")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.ContainsAny(base, "?#"):
		return bad("query and fragment are not allowed")
	case u.Host == "" || u.Opaque != "":
		return bad("must be an absolute URL with a host")
	case !strings.HasSuffix(base, "/"):
		return bad(`must end with "/"`)
	case base != u.Scheme+"://"+u.Host+u.Path || !plainPath(u.Path):
		return bad("must be in canonical form: lowercase scheme and host, a path of letters, digits and -._~ only")
	case strings.Contains(u.Path, "//") || strings.Contains(u.Path, "/./") || strings.Contains(u.Path, "/../"):
		return bad("must not contain empty or dot path segments")
	case !asciiHost(u.Hostname()):
		return bad("host must be lowercase ASCII with no empty labels (use the punycode form of an international name)")
	case !validPort(u):
		return bad("port must be a number from 1 to 65535")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if loopbackHost(u.Hostname()) {
			return nil
		}
		return bad("http is allowed only for loopback hosts; use https")
	default:
		return bad("scheme must be https")
	}
}

func asciiHost(host string) bool {
	if ip := net.ParseIP(host); ip != nil {
		return true
	}
	for _, label := range strings.Split(host, ".") {
		if label == "" {
			return false
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

func plainPath(path string) bool {
	for i := 0; i < len(path); i++ {
		if c := path[i]; base62Index[c] < 0 && !strings.ContainsRune("/-._~", rune(c)) {
			return false
		}
	}
	return true
}

// validPort accepts no port, or one from 1 to 65535; u.Port() alone lets
// "host:" and "host:99999" through.
func validPort(u *url.URL) bool {
	if !strings.Contains(strings.TrimPrefix(u.Host, "["+u.Hostname()+"]"), ":") {
		return true
	}
	port, err := strconv.Atoi(u.Port())
	return err == nil && port >= 1 && port <= 65535 && u.Port()[0] != '0'
}

func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
