package tokens

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ImportSpec is what ImportKey needs: a KeySpec, and the token an
// integration already holds, as exactly one of Token or TokenSHA256.
type ImportSpec struct {
	KeySpec
	// ID is the key's ID; empty: a new one, as CreateKey makes. A given
	// ID is 1 to 64 ASCII letters, digits, "_" and "-".
	ID string
	// Token is the token itself: MinImportedTokenLen to
	// MaxImportedTokenLen printable ASCII characters other than space, in
	// any format. Only its SHA-256 is kept. A token that looks like the
	// library's own format (a prefix, "_" and 49 base62 characters) must
	// carry a correct checksum.
	Token string
	// TokenSHA256 is the SHA-256 of the token, as a system that stored
	// only that has it. The token itself must be as Token says for
	// Verify to take it to the store.
	TokenSHA256 Digest
	// CreatedAt is when the token was made, the reference of renewal
	// alerts (R10), and the key's creation time; zero: now. Not in the
	// future.
	CreatedAt time.Time
}

// ImportKey makes an active key from a token that an integration already
// holds (R24), so that moving to this library needs no re-keying. The
// token verifies with Verify and VerifyToken, whatever its format, until a
// renewal replaces it with one of the library's. No link is made: the
// token's holder has it, so the key's current token counts as seen (R4,
// R5). It appends EventKeyImported.
//
// It returns ErrInvalidKeySpec for a spec that CreateKey would refuse, for
// both or neither of Token and TokenSHA256, a malformed ID or a CreatedAt
// in the future; ErrKeyExists when the ID is taken, another key holds the
// token (current or old), or a key deleted the token and still remembers
// it (R16): a deleted token stays deleted. Nothing is stored then. The
// store must be a TokenIndex, which keeps tokens unique across keys:
// otherwise the error wraps errors.ErrUnsupported.
func (m *Manager) ImportKey(ctx context.Context, spec ImportSpec) (_ *Key, err error) {
	if ctx == nil {
		return nil, ErrNilContext
	}
	id := spec.ID
	if m.cfg.observe != nil {
		defer func() { m.observe(ctx, OpKeyImported, id, err) }()
	}
	index := m.index
	if index == nil {
		return nil, fmt.Errorf("tokens: import key: %T cannot find keys by token: %w", m.store, errors.ErrUnsupported)
	}
	now := m.now()
	fields, err := spec.KeySpec.fields(now)
	if err != nil {
		return nil, err
	}
	digest, err := spec.digest()
	if err != nil {
		return nil, err
	}
	if spec.ID != "" && !validKeyID(spec.ID) {
		return nil, fmt.Errorf("%w: a key ID is 1 to %d ASCII letters, digits, \"_\" and \"-\"", ErrInvalidKeySpec, maxKeyIDLen)
	}
	created := storedTime(spec.CreatedAt)
	switch {
	case created.IsZero():
		created = now
	case created.After(now):
		return nil, fmt.Errorf("%w: CreatedAt is in the future", ErrInvalidKeySpec)
	}
	actor, err := actorOf(ctx)
	if err != nil {
		return nil, err
	}
	if err := m.freeToken(ctx, index, digest, now); err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		if spec.ID == "" {
			if id, err = newKeyID(m.cfg.keyIDPrefix); err != nil {
				return nil, err
			}
		}
		rec := KeyRecord{ID: id, Account: spec.Account, Name: spec.Name, Active: true, CreatedAt: created,
			Current: TokenRecord{Digest: digest, CreatedAt: created}}
		fields.apply(&rec)
		rec.Event = event(Event{Type: EventKeyImported}, actor, &rec, now)
		err = m.store.InsertKey(ctx, &rec)
		switch {
		case errors.Is(err, ErrOutcomeUnknown):
			err = m.settleInsert(ctx, &rec, err)
		case errors.Is(err, ErrDuplicate) && spec.ID == "" && attempt < maxCreateAttempts:
			if _, err := index.KeyByToken(ctx, digest); errors.Is(err, ErrKeyNotFound) {
				continue // 131 random bits collided: draw again
			}
			err = errTokenHeld
		case errors.Is(err, ErrDuplicate):
			err = fmt.Errorf("%w: the key ID is taken or another key holds the token", ErrKeyExists)
		case err != nil:
			err = fmt.Errorf("tokens: import key: %w", err)
		}
		if err != nil {
			return nil, err
		}
		return m.key(&rec, now), nil
	}
}

// errTokenHeld is ImportKey's error for a token another key holds.
var errTokenHeld = fmt.Errorf("%w: another key holds the token", ErrKeyExists)

// freeToken makes sure that the token of digest is no key's at now:
// ErrKeyExists if it is a key's current or old token, or one that a key
// deleted and remembers (R16), since importing that again would undo its
// deletion (a leak's revocation, say). An old token past its scheduled
// end (R14) that its key no longer remembers is no key's, but the key may
// still store it: freeToken drops it then, as any write of that key
// would, so that the store's uniqueness of tokens lets the import take
// it. That write is upkeep, with no event.
func (m *Manager) freeToken(ctx context.Context, index TokenIndex, digest Digest, now time.Time) error {
	owner, holding, err := m.tokenOwner(ctx, index, digest, now)
	switch {
	case err != nil:
		return fmt.Errorf("tokens: import key: %w", err)
	case holding == heldLive:
		return errTokenHeld
	case holding == heldDeleted:
		return fmt.Errorf("%w: a key deleted the token, and importing it would undo that", ErrKeyExists)
	case holding == notHeld:
		return nil
	}
	stale := false // whether the key as loaded still stores the token as old
	load := func(ctx context.Context) (KeyRecord, error) {
		loaded, err := m.keyLoader(owner)(ctx)
		stale = err == nil && loaded.HasOld && sameDigest(&loaded.Old.Digest, &digest)
		return loaded, err
	}
	err = m.update(ctx, load, Event{}, func(rec *KeyRecord, _ time.Time) error {
		switch {
		case liveToken(rec, digest) != nil: // held after all: a write since
			return errTokenHeld
		case !stale: // another write dropped it
			return errUnchanged
		}
		return nil // the update dropped it (dropExpiredOld)
	})
	if err != nil && !errors.Is(err, ErrKeyNotFound) { // a deleted key holds nothing
		return err
	}
	return nil
}

// digest returns the digest of the token that spec imports.
func (spec ImportSpec) digest() (Digest, error) {
	plain, hashed := len(spec.Token) > 0, !sameDigest(&spec.TokenSHA256, &Digest{})
	switch {
	case plain == hashed:
		return Digest{}, fmt.Errorf("%w: give exactly one of Token and TokenSHA256", ErrInvalidKeySpec)
	case hashed:
		return spec.TokenSHA256, nil
	case !printableToken(spec.Token):
		return Digest{}, fmt.Errorf("%w: Token must be %d to %d printable ASCII characters other than space", ErrInvalidKeySpec, MinImportedTokenLen, MaxImportedTokenLen)
	case claimsFormat(spec.Token) && !wellFormedToken(spec.Token):
		return Digest{}, fmt.Errorf("%w: Token looks like this library's format but its checksum is wrong", ErrInvalidKeySpec)
	}
	return tokenDigest(spec.Token), nil
}
