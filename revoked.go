package tokens

import (
	"crypto/sha256"
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
