package tokens

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Leak says where a leaked token was seen (S10). It is recorded with the
// leak's event; the token never is.
type Leak struct {
	// Source is who reported the leak and how it was found, such as
	// "github/commit": 1 to MaxLeakSourceLen bytes of text.
	Source string
	// URL is the address the token was seen at, if the reporter gave one:
	// at most MaxLeakURLLen bytes of text.
	URL string
}

const (
	// MaxLeakSourceLen is the longest Leak.Source, in bytes.
	MaxLeakSourceLen = 100
	// MaxLeakURLLen is the longest Leak.URL, in bytes.
	MaxLeakURLLen = 2048
)

func (l Leak) validate() error {
	problem := textProblem("Leak.Source", l.Source, MaxLeakSourceLen)
	if l.Source == "" {
		problem = "Leak.Source is empty"
	}
	if problem == "" {
		problem = textProblem("Leak.URL", l.URL, MaxLeakURLLen)
	}
	if problem != "" {
		return fmt.Errorf("%w: %s", ErrInvalidLeak, problem)
	}
	return nil
}

// redacted is l with every occurrence of token in its source and URL, as
// it is or percent-encoded, replaced by "[REDACTED]": an event never holds
// the token.
func (l Leak) redacted(token string) Leak {
	if token == "" {
		return l
	}
	for _, form := range []string{token, url.QueryEscape(token), url.PathEscape(token)} {
		l.Source = strings.ReplaceAll(l.Source, form, "[REDACTED]")
		l.URL = strings.ReplaceAll(l.URL, form, "[REDACTED]")
	}
	return l
}

// LeakResult is what ReportLeak found and did.
type LeakResult struct {
	// KeyID is the key the token is (or was) of; empty if not Found.
	KeyID string
	// Found says the token is, or was, a token of a key here: its
	// current or old token, or a deleted one that the key remembers
	// (R16). A report of a found token is a true positive.
	Found bool
	// Revoked says this report stopped the token verifying (RevokeLeaked).
	Revoked bool
	// Link is the share link of the new token that replaced a revoked
	// current token: hand it to the key's holder like any renewal's. nil
	// unless this report revoked a current token.
	Link *ShareLink
}

// LeakPolicy says what ReportLeak does with a leaked token that still
// verifies.
type LeakPolicy int

const (
	// AlertOnLeak records the leak (EventTokenLeaked, Key.LeakedAt) and
	// leaves the token working: the operator renews. It is the default.
	AlertOnLeak LeakPolicy = iota
	// RevokeLeaked also stops the token verifying at once: a current token
	// as by Renew with DeleteNow (a new token and link; the key's old
	// token, if any, stays), an old token as by DeleteOld.
	RevokeLeaked
)

func (p LeakPolicy) String() string {
	switch p {
	case AlertOnLeak:
		return "alert on leak"
	case RevokeLeaked:
		return "revoke leaked"
	default:
		return fmt.Sprintf("LeakPolicy(%d)", int(p))
	}
}

// WithLeakPolicy sets what ReportLeak does with a leaked token that still
// verifies (S10): AlertOnLeak, the default, or RevokeLeaked.
func WithLeakPolicy(p LeakPolicy) Option {
	return func(cfg *config) error {
		if p != AlertOnLeak && p != RevokeLeaked {
			return invalidOption(fmt.Sprintf("WithLeakPolicy: unknown policy %d", int(p)))
		}
		cfg.leakPolicy = p
		return nil
	}
}

// ReportLeak acts on a report that token was seen where it should not be,
// such as a public repository (S10). It finds the key by the token alone:
// its current token, its old token, or a deleted token it remembers (R16).
// A found token records EventTokenLeaked with leak's source and URL, never
// the token, and sets Key.LeakedAt; with RevokeLeaked a token that still
// verifies stops at once, here and within MaxStaleness in other processes
// (C2). A token that is not found, including one not in a format this
// Manager verifies, records nothing and gives Found false. Reports of one
// token from one source and URL record one event; a repeat changes
// nothing, unless it finds the token still verifying under RevokeLeaked,
// when it revokes it with the renewal's or the deletion's event. A report
// of a token made after that event is no repeat: the key's new token
// leaked where its old one had. Should the source or URL contain the
// token itself (a paste's address, say), it is recorded with the token
// replaced by "[REDACTED]".
//
// It returns ErrInvalidLeak for a Leak that is not as its fields say. The
// store must be a TokenIndex: otherwise the error wraps
// errors.ErrUnsupported.
func (m *Manager) ReportLeak(ctx context.Context, token string, leak Leak) (LeakResult, error) {
	if ctx == nil {
		return LeakResult{}, ErrNilContext
	}
	if err := leak.validate(); err != nil {
		return LeakResult{}, err
	}
	leak = leak.redacted(token)
	index := m.index
	if index == nil {
		return LeakResult{}, fmt.Errorf("tokens: report leak: %T cannot find keys by token: %w", m.store, errors.ErrUnsupported)
	}
	if !m.verifiableToken(token) {
		return LeakResult{}, nil
	}
	digest := tokenDigest(token)
	id, holding, err := m.tokenOwner(ctx, index, digest, m.now())
	switch {
	case err != nil:
		return LeakResult{}, fmt.Errorf("tokens: report leak: %w", err)
	case holding != heldLive && holding != heldDeleted:
		return LeakResult{}, nil
	}
	res := LeakResult{KeyID: id, Found: true}
	tmpl := &Event{Type: EventTokenLeaked, Source: leak.Source, URL: leak.URL}
	err = m.updateEvent(ctx, m.keyLoader(id), tmpl, func(rec *KeyRecord, now time.Time) error {
		res.Revoked, res.Link = false, nil
		*tmpl = Event{Type: EventTokenLeaked, Source: leak.Source, URL: leak.URL}
		live := liveToken(rec, digest)
		var since time.Time // the token's creation, if the key still has it
		if live != nil {
			since = live.CreatedAt
		}
		repeat, err := m.leakRecorded(ctx, rec, leak, since)
		if err != nil {
			return err
		}
		if !repeat {
			rec.LeakedAt = now
		}
		if live == nil || m.cfg.leakPolicy != RevokeLeaked {
			if repeat {
				return errUnchanged
			}
			return nil
		}
		res.Revoked = true
		if live == &rec.Old {
			rec.HasOld, rec.Old = false, TokenRecord{}
			if repeat {
				tmpl.Type, tmpl.Source, tmpl.URL = EventOldTokenDeleted, "", ""
			}
			return nil
		}
		if repeat {
			tmpl.Type, tmpl.Policy, tmpl.Source, tmpl.URL = EventTokenRenewed, DeleteNow, "", ""
		}
		res.Link, err = m.issueToken(rec, now)
		return err
	})
	if errors.Is(err, ErrKeyNotFound) {
		return LeakResult{}, nil // deleted since it was found: its tokens are forgotten
	}
	if err != nil {
		return LeakResult{}, err
	}
	return res, nil
}

// tokenHolding is what a key has of a token, as VerifyToken judges it.
type tokenHolding int

const (
	notHeld     tokenHolding = iota // no key has it, or its key forgot it
	heldLive                        // the key's current or old token
	heldDeleted                     // deleted, and the key remembers it (R16)
	// heldEnded: an old token past its scheduled end (R14) that the key
	// does not remember (retention 0, or past it) but still stores, since
	// no write has dropped it yet.
	heldEnded
)

// tokenOwner returns the ID of the key that has the token of digest at
// now, and what it has of it; "" and notHeld if none.
func (m *Manager) tokenOwner(ctx context.Context, index TokenIndex, digest Digest, now time.Time) (string, tokenHolding, error) {
	retention := m.cfg.revokedRetention
	rec, err := index.KeyByToken(ctx, digest)
	switch {
	case err == nil && matchingToken(&rec, digest, now) != nil:
		return rec.ID, heldLive, nil
	case err == nil:
		// An old token past its end (R14) is deleted, remembered for the
		// retention from that end, though no write has dropped it yet.
		if retention == 0 || now.Sub(rec.Old.ExpiresAt) >= retention {
			return rec.ID, heldEnded, nil
		}
		return rec.ID, heldDeleted, nil
	case !errors.Is(err, ErrKeyNotFound):
		return "", notHeld, err
	case retention == 0:
		return "", notHeld, nil
	}
	id, found, ok, err := index.RevokedTokenOwner(ctx, revokedDigest(digest))
	switch {
	case err != nil:
		return "", notHeld, err
	case !ok || now.Sub(found.RevokedAt) >= retention: // forgotten, if not yet purged
		return "", notHeld, nil
	}
	return id, heldDeleted, nil
}

// liveToken returns rec's current or old token if its digest is digest;
// nil if neither is (the token was deleted, or its R14 end has come).
func liveToken(rec *KeyRecord, digest Digest) *TokenRecord {
	switch {
	case sameDigest(&rec.Current.Digest, &digest):
		return &rec.Current
	case rec.HasOld && sameDigest(&rec.Old.Digest, &digest):
		return &rec.Old
	}
	return nil
}

// leakRecorded reports whether rec's key already has an EventTokenLeaked
// from leak's source and URL, at since or later: since is the reported
// token's creation, as an event before it cannot be of that token (zero
// for a deleted token, whose creation the key no longer keeps). Only a
// key with a LeakedAt can: the others are not read. Run inside a change,
// it sees the event of any concurrent report that won, since a change
// that lost is loaded again.
func (m *Manager) leakRecorded(ctx context.Context, rec *KeyRecord, leak Leak, since time.Time) (bool, error) {
	if rec.LeakedAt.IsZero() || rec.LeakedAt.Before(since) {
		return false, nil
	}
	q := EventQuery{KeyID: rec.ID, Limit: MaxEventPage}
	for {
		page, err := m.store.Events(ctx, q)
		if err != nil {
			return false, fmt.Errorf("tokens: report leak: read events: %w", err)
		}
		for _, ev := range page {
			if ev.Type == EventTokenLeaked && ev.Source == leak.Source && ev.URL == leak.URL && !ev.At.Before(since) {
				return true, nil
			}
		}
		if len(page) < q.Limit {
			return false, nil
		}
		q.After = page[len(page)-1].Cursor
	}
}
