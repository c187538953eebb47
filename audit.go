package tokens

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"time"
)

// revokedLabel separates the digests of revoked tokens from those of live
// ones: a dump of remembered tokens matches no digest a store ever held for
// a token that verifies, in this copy of the database or an older one.
const revokedLabel = "keyrenew/tokens revoked token v1 "

// revokedDigest is how a store remembers a deleted token (R16).
func revokedDigest(token Digest) Digest {
	// On the stack: every refused Verify computes one.
	var buf [len(revokedLabel) + len(token)]byte
	copy(buf[copy(buf[:], revokedLabel):], token[:])
	return sha256.Sum256(buf[:])
}

// revokedBy returns the tokens that replacing loaded with rec deletes, for
// the store to remember (R16): a token of loaded that rec no longer has,
// whatever the reason (DeleteOld, DeleteNow, an R4 discard, Undo, an R14
// end, which it dates from that end).
func (m *Manager) revokedBy(loaded, rec *KeyRecord, now time.Time) []RevokedToken {
	if m.cfg.revokedRetention == 0 {
		return nil
	}
	keeps := func(d *Digest) bool {
		return sameDigest(d, &rec.Current.Digest) || rec.HasOld && sameDigest(d, &rec.Old.Digest)
	}
	var revoked []RevokedToken
	if !keeps(&loaded.Current.Digest) {
		revoked = append(revoked, RevokedToken{Digest: revokedDigest(loaded.Current.Digest), RevokedAt: now})
	}
	if loaded.HasOld && !keeps(&loaded.Old.Digest) {
		at := now
		if oldExpired(loaded, now) {
			at = loaded.Old.ExpiresAt
		}
		revoked = append(revoked, RevokedToken{Digest: revokedDigest(loaded.Old.Digest), RevokedAt: at})
	}
	return revoked
}

// refused returns the error of a Verify that matched no live token of rec
// (nil if the key is unknown): ErrTokenRevoked for a token deleted within
// the retention, which it records as used (R16), else
// ErrInvalidCredentials. It asks the store for unknown keys too, so that a
// miss costs what a wrong token does.
func (m *Manager) refused(ctx context.Context, id string, rec *KeyRecord, digest Digest, now time.Time) error {
	retention := m.cfg.revokedRetention
	if retention == 0 {
		return ErrInvalidCredentials
	}
	var revokedAt time.Time
	if rec != nil && oldExpired(rec, now) && subtle.ConstantTimeCompare(rec.Old.Digest[:], digest[:]) == 1 {
		revokedAt = rec.Old.ExpiresAt // past its end, not yet dropped by a write
	} else {
		found, ok, err := m.store.RevokedToken(ctx, id, revokedDigest(digest))
		if err != nil {
			return fmt.Errorf("tokens: verify: %w", err)
		}
		if !ok || rec == nil {
			return ErrInvalidCredentials
		}
		revokedAt = found.RevokedAt
	}
	if now.Sub(revokedAt) >= retention {
		return ErrInvalidCredentials
	}
	if rec.RevokedTokenUsedAt.IsZero() || now.Sub(rec.RevokedTokenUsedAt) >= lastUsedResolution {
		// The record is best effort: the refusal stands whatever it gives.
		_ = m.update(ctx, m.keyLoader(id), Event{Type: EventRevokedTokenUsed}, func(rec *KeyRecord, now time.Time) error {
			if !rec.RevokedTokenUsedAt.IsZero() && now.Sub(rec.RevokedTokenUsedAt) < lastUsedResolution {
				return errUnchanged
			}
			rec.RevokedTokenUsedAt = now
			return nil
		})
	}
	return ErrTokenRevoked
}

// event completes the event template of a change of rec at now: nil if the
// change appends none (an empty Type).
func event(tmpl Event, actor string, rec *KeyRecord, now time.Time) *Event {
	if tmpl.Type == "" {
		return nil
	}
	ev := tmpl
	ev.At, ev.KeyID, ev.Account, ev.Actor = now, rec.ID, rec.Account, actor
	return &ev
}

// PurgeEvents deletes the events of the audit trail older than olderThan,
// and returns how many. The library keeps events until told: call it from
// a periodic job with the retention your audit policy asks for.
func (m *Manager) PurgeEvents(ctx context.Context, olderThan time.Duration) (int, error) {
	if ctx == nil {
		return 0, ErrNilContext
	}
	if olderThan < 0 {
		return 0, invalidOption("PurgeEvents: olderThan must not be negative")
	}
	n, err := m.store.PurgeEvents(ctx, m.now().Add(-olderThan))
	if err != nil {
		return n, fmt.Errorf("tokens: purge events: %w", err)
	}
	return n, nil
}
