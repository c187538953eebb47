package tokens

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Verify checks a key ID and token (R9). It succeeds for the current or the
// old token of an active, unexpired key and returns the key. An unknown key
// and a wrong token both give ErrInvalidCredentials. ErrKeyInactive means
// the token is right but the key is deactivated, ErrKeyExpired that it is
// right but the key's ExpiresAt has come (R22); a deactivated key that has
// also expired gives ErrKeyInactive. A successful Verify records the
// token's LastUsedAt, at most once a minute.
//
// A malformed token gives ErrMalformedToken, which is also an
// ErrInvalidCredentials, without reading the store: a token that claims
// the library's format (a prefix, "_" and 49 base62 characters) with a
// wrong checksum, or any other token that is not MinImportedTokenLen to
// MaxImportedTokenLen printable ASCII characters other than space, the
// tokens ImportKey takes (R24). On a store that is not a TokenIndex, where
// ImportKey cannot put such tokens, every token outside the library's
// format is malformed.
func (m *Manager) Verify(ctx context.Context, keyID, token string) (_ *Key, err error) {
	if ctx == nil {
		return nil, ErrNilContext
	}
	fromCache := false
	if m.cfg.observe != nil {
		defer func() { m.observeVerify(ctx, keyID, fromCache, err) }()
	}
	if !m.verifiableToken(token) {
		return nil, ErrMalformedToken
	}
	if !validKeyID(keyID) {
		return nil, ErrInvalidCredentials
	}
	digest := tokenDigest(token)
	now := m.now()
	var gen uint64
	if m.cache != nil {
		key, hit, g, err := m.verifyCached(ctx, keyID, digest, now)
		if hit {
			fromCache = err == nil
			return key, err
		}
		gen = g
	}
	rec, err := m.viewKey(ctx, keyID)
	known := err == nil
	if err != nil && !errors.Is(err, ErrKeyNotFound) {
		return nil, fmt.Errorf("tokens: verify: %w", err)
	}
	// An unknown key's empty record is compared like a known key's, so that
	// a miss takes about as long as a wrong token: key IDs are public, but
	// need not be confirmed by timing.
	if !known {
		rec = &noKey
	}
	used := matchingToken(rec, digest, now)
	if used == nil || !known {
		if !known {
			rec = nil
		}
		return nil, m.refused(ctx, keyID, rec, digest, now)
	}
	return m.accept(ctx, rec, used, digest, gen, now)
}

// verifiableToken is verifiableToken for the Manager's store: only a
// TokenIndex can hold imported tokens (ImportKey needs one), so on any
// other store only the library's format reaches it.
func (m *Manager) verifiableToken(token string) bool {
	if m.index == nil {
		return wellFormedToken(token)
	}
	return verifiableToken(token)
}

// accept ends a Verify or VerifyToken whose token, of digest, is used, a
// live token of rec: refused if the key is inactive (first) or expired
// (R22), else its use recorded and the key cached with gen.
func (m *Manager) accept(ctx context.Context, rec *KeyRecord, used *TokenRecord, digest Digest, gen uint64, now time.Time) (*Key, error) {
	if !rec.Active {
		return nil, ErrKeyInactive
	}
	if keyExpired(rec, now) {
		return nil, ErrKeyExpired
	}
	lastUsed, err := m.recordUse(ctx, rec.ID, digest, used.LastUsedAt, now)
	if err != nil {
		return nil, err
	}
	old := used == &rec.Old
	if m.cache != nil {
		m.cache.fill(rec, gen, old, lastUsed)
	}
	return m.verifiedKey(rec, old, lastUsed, now), nil
}

// VerifyToken checks a token alone and returns its key (R23): it finds the
// key by the token's digest, current or old, and then applies Verify's
// rules and errors (R9, R16, R22, and the cache's C1-C3). An unknown token
// and a deleted one of a deleted key give ErrInvalidCredentials; a deleted
// token that its key remembers (R16) gives ErrTokenRevoked. Malformed
// tokens are refused as by Verify, without reading the store. The store
// must be a TokenIndex, as memstore and sqlstore are: otherwise the error
// wraps errors.ErrUnsupported.
//
// For APIs whose integrations send one secret, such as
// "Authorization: Bearer tok_...". A token is unique across keys, so the
// digest names one key.
func (m *Manager) VerifyToken(ctx context.Context, token string) (_ *Key, err error) {
	if ctx == nil {
		return nil, ErrNilContext
	}
	fromCache, keyID := false, ""
	if m.cfg.observe != nil {
		defer func() { m.observeVerify(ctx, keyID, fromCache, err) }()
	}
	index := m.index
	if index == nil {
		return nil, fmt.Errorf("tokens: verify token: %T cannot find keys by token: %w", m.store, errors.ErrUnsupported)
	}
	if !verifiableToken(token) {
		return nil, ErrMalformedToken
	}
	digest := tokenDigest(token)
	now := m.now()
	var gen uint64
	if m.cache != nil {
		key, hit, g, err := m.verifyCached(ctx, "", digest, now)
		if hit {
			fromCache = err == nil
			if key != nil {
				keyID = key.ID
			}
			return key, err
		}
		gen = g
	}
	found, err := index.KeyByToken(ctx, digest)
	switch {
	case errors.Is(err, ErrKeyNotFound):
		return nil, m.refusedToken(ctx, index, digest, now)
	case err != nil:
		return nil, fmt.Errorf("tokens: verify token: %w", err)
	}
	rec := &found
	keyID = rec.ID
	// The store found the key by digest; the comparison is made again,
	// in constant time, on the record (S3), which also judges an old
	// token's end (R14).
	used := matchingToken(rec, digest, now)
	if used == nil {
		return nil, m.refused(ctx, rec.ID, rec, digest, now)
	}
	return m.accept(ctx, rec, used, digest, gen, now)
}

// refusedToken is refused for VerifyToken of a token that no key has:
// ErrTokenRevoked if a key remembers it as deleted within the retention
// (R16), which it records as used, else ErrInvalidCredentials.
func (m *Manager) refusedToken(ctx context.Context, index TokenIndex, digest Digest, now time.Time) error {
	retention := m.cfg.revokedRetention
	if retention == 0 {
		return ErrInvalidCredentials
	}
	id, found, ok, err := index.RevokedTokenOwner(ctx, revokedDigest(digest))
	switch {
	case err != nil:
		return fmt.Errorf("tokens: verify token: %w", err)
	case !ok || now.Sub(found.RevokedAt) >= retention:
		return ErrInvalidCredentials
	}
	rec, err := m.viewKey(ctx, id)
	switch {
	case errors.Is(err, ErrKeyNotFound):
		return ErrInvalidCredentials // deleted since: DeleteKey forgets its tokens
	case err != nil:
		return fmt.Errorf("tokens: verify token: %w", err)
	}
	m.recordRevokedUse(ctx, id, rec, now)
	return ErrTokenRevoked
}

// recordUse writes the last use of a token that verified (R9), if the
// last one known, last, is a minute old or more and no other goroutine of
// this process is writing it (no herd at the minute boundary). It returns
// the token's last use as this process now knows it.
func (m *Manager) recordUse(ctx context.Context, id string, digest Digest, last, now time.Time) (time.Time, error) {
	if !last.IsZero() && now.Before(last.Add(lastUsedResolution)) { // cheaper than Sub
		return last, nil
	}
	use := tokenUse{key: id, token: digest}
	if !m.uses.claim(use, now) {
		return now, nil
	}
	err := m.store.RecordUse(ctx, id, digest, now, now.Add(-lastUsedResolution))
	if err != nil {
		m.uses.release(use) // the next use tries again
	}
	// A last-use write whose outcome is unknown changes no token's
	// validity: the token verified, and the next use writes again.
	if err != nil && !errors.Is(err, ErrOutcomeUnknown) {
		return last, fmt.Errorf("tokens: verify: record use: %w", err)
	}
	return now, nil
}

// noKey is the record Verify compares a token with when the key is unknown.
// It is never modified.
var noKey KeyRecord

// viewKey returns the stored record of key id, lent by a KeyViewer or
// copied by any other store. The caller must not modify it.
func (m *Manager) viewKey(ctx context.Context, id string) (*KeyRecord, error) {
	if v, ok := m.store.(KeyViewer); ok {
		return v.ViewKey(ctx, id)
	}
	rec, err := m.store.Key(ctx, id)
	if err != nil {
		return nil, err
	}
	return &rec, nil
}

// matchingToken returns the token of rec whose digest is digest, current
// or old (unless past its scheduled end at now, R14), or nil. Both
// comparisons always run, in constant time (S3).
func matchingToken(rec *KeyRecord, digest Digest, now time.Time) *TokenRecord {
	current := subtle.ConstantTimeCompare(rec.Current.Digest[:], digest[:]) == 1
	old := subtle.ConstantTimeCompare(rec.Old.Digest[:], digest[:]) == 1 && hasOld(rec, now)
	switch {
	case current:
		return &rec.Current
	case old:
		return &rec.Old
	}
	return nil
}

// verifiedKey describes rec at now after Verify accepted its current
// token, or its old one if old, last used at lastUsed. rec is not modified:
// it may be a record that the store or the cache lends.
func (m *Manager) verifiedKey(rec *KeyRecord, old bool, lastUsed, now time.Time) *Key {
	key := m.key(rec, now)
	if old {
		key.OldToken.LastUsedAt = lastUsed
	} else {
		key.Token.LastUsedAt = lastUsed
	}
	return key
}

// verifyCached accepts digest for key id from the cache, if the cache is
// current and holds a token of the key with that digest. hit is false when
// the store must decide; gen is then what a fill must present.
//
// With id empty, the cache finds the key by digest (VerifyToken). An
// expired key (R22) is a miss: the store may know of a later expiry.
func (m *Manager) verifyCached(ctx context.Context, id string, digest Digest, now time.Time) (key *Key, hit bool, gen uint64, err error) {
	e, gen, checked := m.cache.lookup(ctx, id, digest, now)
	if e == nil {
		return nil, false, gen, nil
	}
	if checked {
		// The check asked the store, or waited for another goroutine
		// that did: an old token's end (R14) is judged at the time the
		// answer came, not before.
		now = m.now()
	}
	rec := &e.rec
	used := matchingToken(rec, digest, now)  // R14's expiry is exact, cached or not
	if used == nil || keyExpired(rec, now) { // so is R22's
		return nil, false, gen, nil
	}
	id = rec.ID
	slot, old := 0, used == &rec.Old
	if old {
		slot = 1
	}
	known := fromUnixMicro(e.lastUsed[slot].Load())
	lastUsed, err := m.recordUse(ctx, id, digest, known, now)
	if err != nil {
		return nil, true, gen, err
	}
	if !lastUsed.Equal(known) {
		e.lastUsed[slot].Store(unixMicro(lastUsed))
	}
	return m.verifiedKey(rec, old, lastUsed, now), true, gen, nil
}

// recentUses remembers, per key and token digest, when this process last
// recorded a use, so that of many goroutines that find a token's last use a minute
// old at once only one writes it (R9 per process, without the herd of
// UPDATEs at the minute boundary). Only tokens that verified are entered,
// and the map is emptied when full, so bad credentials take no memory.
// The key is part of the entry because a token can change keys: an import
// may take a token that another key deleted (R24), and the new key's first
// use must be recorded though the old key's was a moment ago.
type recentUses struct {
	mu   sync.Mutex
	used map[tokenUse]time.Time
}

// tokenUse names a token of a key in recentUses.
type tokenUse struct {
	key   string
	token Digest
}

const maxRecentUses = 4096

// claim reports whether the caller is to record a use of use at now.
func (r *recentUses) claim(use tokenUse, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if last, ok := r.used[use]; ok && now.Sub(last) < lastUsedResolution {
		return false
	}
	if r.used == nil || len(r.used) >= maxRecentUses {
		r.used = make(map[tokenUse]time.Time)
	}
	r.used[use] = now
	return true
}

// release forgets a claim whose write failed, so the next use tries again.
func (r *recentUses) release(use tokenUse) {
	r.mu.Lock()
	delete(r.used, use)
	r.mu.Unlock()
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
	m.recordRevokedUse(ctx, id, rec, now)
	return ErrTokenRevoked
}

// recordRevokedUse records that a deleted token of key id, whose record is
// rec, was presented at now (R16), at most once a minute. It is best
// effort: the refusal stands whatever it gives.
func (m *Manager) recordRevokedUse(ctx context.Context, id string, rec *KeyRecord, now time.Time) {
	if !rec.RevokedTokenUsedAt.IsZero() && now.Sub(rec.RevokedTokenUsedAt) < lastUsedResolution {
		return
	}
	_ = m.update(ctx, m.keyLoader(id), Event{Type: EventRevokedTokenUsed}, func(rec *KeyRecord, now time.Time) error {
		if !rec.RevokedTokenUsedAt.IsZero() && now.Sub(rec.RevokedTokenUsedAt) < lastUsedResolution {
			return errUnchanged
		}
		rec.RevokedTokenUsedAt = now
		return nil
	})
}

// observeVerify reports the outcome of a Verify.
func (m *Manager) observeVerify(ctx context.Context, id string, cached bool, err error) {
	var outcome Outcome
	switch {
	case err == nil:
		outcome = OutcomeOK
	case errors.Is(err, ErrMalformedToken):
		outcome = OutcomeMalformed
	case errors.Is(err, ErrTokenRevoked):
		outcome = OutcomeRevoked
	case errors.Is(err, ErrInvalidCredentials):
		outcome = OutcomeInvalid
	case errors.Is(err, ErrKeyInactive):
		outcome = OutcomeInactive
	case errors.Is(err, ErrKeyExpired):
		outcome = OutcomeExpired
	default:
		outcome = OutcomeError
	}
	m.cfg.observe(ctx, Observation{Op: OpVerify, Outcome: outcome, KeyID: id, Cached: cached, Err: err})
}
