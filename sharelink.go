package tokens

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
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
