package tokens

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Digest is a SHA-256 sized digest: of a token (its SHA-256) or of a link ID
// (an HKDF output under its own label). A digest is safe to store; the
// secret it was made from cannot be recovered from it.
type Digest [32]byte

// TokenRecord is the stored form of one token.
type TokenRecord struct {
	Digest     Digest    // SHA-256 of the token
	CreatedAt  time.Time // when the token was issued
	LastUsedAt time.Time // zero until the first successful Verify
	// ExpiresAt is when an old token stops verifying by itself (R14);
	// zero: never. Always zero for the current token.
	ExpiresAt time.Time
}

// LinkRecord is the stored form of a key's latest share link.
type LinkRecord struct {
	Digest Digest // look-up digest of the link ID
	// Sealed is the key's current token, sealed with AES-GCM under a key
	// derived from the link ID; nil (never empty) once the link was
	// redeemed or has expired and been purged. Neither stores nor the Manager modify a
	// Sealed slice in place: they replace it.
	Sealed     []byte
	CreatedAt  time.Time
	ExpiresAt  time.Time // redeemable while now < ExpiresAt
	RedeemedAt time.Time // zero until redeemed
	// RevokedAt is when RevokeLink ended the link before it was redeemed
	// (R15); zero if it was not.
	RevokedAt time.Time
}

// KeyRecord is everything a Store keeps about one key. It is a plain value
// so that a look-up can return it without allocating: the Manager holds all
// the rules, a Store only persists records.
type KeyRecord struct {
	ID        string
	Account   string
	Name      string
	Active    bool
	CreatedAt time.Time
	// Version is the optimistic concurrency version: 1 after InsertKey,
	// incremented by every successful write.
	Version int64

	Current TokenRecord
	HasOld  bool
	Old     TokenRecord // meaningful only when HasOld
	HasLink bool
	Link    LinkRecord // meaningful only when HasLink; the key's latest link

	// RevokedTokenUsedAt is the latest time a revoked token of the key was
	// presented to Verify (R16); zero if never.
	RevokedTokenUsedAt time.Time

	// Scopes are the key's scopes (R20), sorted without repeats; nil when
	// none. Metadata is its metadata (R21); nil when none. A store keeps
	// both as given and returns copies: an empty slice or map may come
	// back nil. Neither ever holds a secret.
	Scopes   []string
	Metadata map[string]string
	// ExpiresAt is when every token of the key stops verifying (R22);
	// zero: never.
	ExpiresAt time.Time
	// LeakedAt is the latest time a token of the key was reported leaked
	// (S10); zero if never.
	LeakedAt time.Time

	// Revoked and Event are what a write adds besides the record; the
	// look-ups leave them nil. Revoked are the tokens this write deleted,
	// for UpdateKey to remember (R16): a store keeps them until DeleteKey
	// or PurgeRevoked. Event is appended to the audit trail by InsertKey or
	// UpdateKey in the same atomic step as the write (R17); nil appends
	// none.
	Revoked []RevokedToken
	Event   *Event
}

// RevokedToken is a token that stopped verifying because it was deleted,
// as a store remembers it (R16): by RevokedDigest of its digest, never by
// the digest itself, and when it was deleted.
type RevokedToken struct {
	Digest    Digest
	RevokedAt time.Time
}

// Store persists key records. Implementations must be safe for concurrent
// use, also by many processes sharing one database, and every write must be
// atomic: all of a record is written or none of it.
//
// All times passed in come from the Manager's clock, which truncates them
// to microseconds; a Store never reads the time itself. Times are returned
// in UTC. Token digests are SHA-256 of 256 random bits, so a store may also
// index them as unique and refuse a repeated one with ErrDuplicate.
//
// A write (InsertKey, UpdateKey, DeleteKey, RecordUse) that fails before
// its transaction's COMMIT has written nothing. One whose COMMIT fails
// (the connection was lost, or the deadline hit, while the COMMIT was in
// flight) may have committed: its error wraps ErrOutcomeUnknown as well as
// the cause, and the Manager finds out which it was by reading the key and,
// if need be, writing it unchanged at the version it expected (R18). A
// store must not wrap ErrOutcomeUnknown around an error after which
// nothing can have been written.
type Store interface {
	// InsertKey stores a new key record and sets rec.Version to 1 (the
	// version passed in is ignored). It returns an error wrapping
	// ErrDuplicate if a key with the same ID, or a link with the same
	// digest, exists already; nothing is stored then.
	InsertKey(ctx context.Context, rec *KeyRecord) error

	// Key returns the key with the given ID. It returns an error wrapping
	// ErrKeyNotFound if there is none. Like every record a Store returns,
	// the result is a copy the caller owns, Sealed bytes included.
	Key(ctx context.Context, id string) (KeyRecord, error)

	// KeyByLink returns the key whose latest link has the given digest. It
	// returns an error wrapping ErrKeyNotFound if no key has such a link.
	KeyByLink(ctx context.Context, link Digest) (KeyRecord, error)

	// Keys returns the keys of one account, oldest first (by CreatedAt,
	// then ID in byte order). An account with no keys gives an empty slice
	// and no error.
	Keys(ctx context.Context, account string) ([]KeyRecord, error)

	// UpdateKey replaces the stored record with rec if the stored version
	// equals rec.Version (compare-and-swap), and then sets rec.Version to
	// the new version, rec.Version+1. ID, Account and CreatedAt of a key
	// never change: UpdateKey ignores them. It returns an error wrapping
	// ErrConflict if the stored version differs, ErrKeyNotFound if the key
	// does not exist, and ErrDuplicate if the new link digest belongs to
	// another key; in each case nothing is written and rec.Version is
	// left as it was.
	UpdateKey(ctx context.Context, rec *KeyRecord) error

	// DeleteKey deletes the key with its tokens, its link and the revoked
	// tokens it remembers, unconditionally, and appends ev (if not nil) to
	// the audit trail in the same atomic step, with ev.Account set to the
	// deleted key's account. It returns an error wrapping ErrKeyNotFound if
	// there is none; nothing is appended then.
	DeleteKey(ctx context.Context, id string, ev *Event) error

	// RecordUse sets the LastUsedAt of the key's token (current or old)
	// whose digest is token to at, but only if that LastUsedAt is zero or
	// not after staleBefore. A write increments the key's version. No
	// matching key or token, or a LastUsedAt that is recent enough, is not
	// an error: nothing is written and RecordUse returns nil.
	RecordUse(ctx context.Context, id string, token Digest, at, staleBefore time.Time) error

	// ExpiredLinks returns the IDs of keys whose link is unredeemed, still
	// holds a sealed secret and has ExpiresAt not after now, at most limit
	// of them (none if limit <= 0), in no particular order. It writes
	// nothing.
	ExpiredLinks(ctx context.Context, now time.Time, limit int) ([]string, error)

	// RevokedToken returns the revoked token of key id whose Digest is
	// digest, and whether there is one (R16). It writes nothing.
	RevokedToken(ctx context.Context, id string, digest Digest) (RevokedToken, bool, error)

	// PurgeRevoked forgets the revoked tokens deleted at or before cutoff,
	// and returns how many.
	PurgeRevoked(ctx context.Context, cutoff time.Time) (int, error)

	// Events returns the events of the audit trail that q selects, in the
	// order their writes committed, at least for the events of one key: a
	// reader that follows Cursors from "" meets every event exactly once,
	// also one whose write commits after the reader passed its place.
	// (Events of different keys whose writes overlapped may come in
	// either order; the PostgreSQL store reads them in snapshot batches.) q.After is "" or a Cursor the store gave; any
	// other gives an error wrapping ErrInvalidCursor. At most q.Limit
	// events (q.Limit > 0). Each Event's Cursor is set by the store.
	Events(ctx context.Context, q EventQuery) ([]Event, error)

	// PurgeEvents deletes the events appended before before (by Event.At),
	// and returns how many.
	PurgeEvents(ctx context.Context, before time.Time) (int, error)
}

// A ChangeLog is a Store that logs the writes of InsertKey, UpdateKey and
// DeleteKey, so that a Manager can tell which keys other Managers, in any
// process, changed since it last looked. The verification cache
// (WithVerifyCache) needs it; memstore and sqlstore implement it.
type ChangeLog interface {
	// Changes returns the position of the log after every write committed
	// so far (Latest), and the IDs of the keys that the writes after since
	// changed. since is "" (the beginning) or a Latest the store gave.
	// Positions follow commit order: a write before Latest is visible to
	// every read that starts after the Changes that returned it, and the
	// next Changes from Latest reports every write that commits later,
	// however late. Complete is false when the store no longer keeps every
	// write after since (it keeps a bounded number) or since is not a
	// position it gave; the caller must then assume every key changed.
	// RecordUse is not logged: it cannot stop a token verifying.
	Changes(ctx context.Context, since ChangePosition) (Changes, error)
}

// ChangePosition is a position in a ChangeLog, opaque to the caller: a
// number on stores whose writes commit one at a time, a database snapshot
// on stores whose writers do not wait for each other. "" is the beginning.
type ChangePosition string

// Changes is what ChangeLog.Changes found.
type Changes struct {
	Latest   ChangePosition
	Keys     []string // in no particular order, possibly with repeats
	Complete bool
}

// A KeyViewer is a Store that can lend a key's stored record instead of
// copying it, because it never modifies a record once stored: every write
// stores a new record in its place. Verify uses it when the store offers
// it, to save a copy of the record on each call; memstore does. A store
// that updates records in place must not implement it. A wrapper that
// embeds such a store and overrides Key must override ViewKey as well, or
// Verify goes around it.
type KeyViewer interface {
	// ViewKey returns the stored record of the key with the given ID, or
	// an error wrapping ErrKeyNotFound if there is none. Neither the store
	// nor the caller may ever modify the record, Sealed bytes included.
	ViewKey(ctx context.Context, id string) (*KeyRecord, error)
}

// A TokenIndex is a Store that finds keys by a token's digest alone, for
// VerifyToken (R23), ImportKey (R24) and leak reports (S10). memstore and
// sqlstore implement it; Manager.VerifyToken on a store without it returns
// an error wrapping errors.ErrUnsupported.
//
// A store that implements it keeps token digests unique across keys: a
// digest is the current or old token of at most one key. InsertKey and
// UpdateKey refuse a record whose current or old digest is already the
// current or old digest of another key with an error wrapping
// ErrDuplicate, and store nothing.
type TokenIndex interface {
	// KeyByToken returns the key whose current or old token (including an
	// old token past its scheduled end that no write has dropped yet) has
	// the given digest, or an error wrapping ErrKeyNotFound if there is
	// none. The result is a copy the caller owns, whole but for the share
	// link's sealed token: Link.Sealed is nil, since only a redemption
	// (through KeyByLink) reads it, and a verification should not carry
	// it out of the store.
	KeyByToken(ctx context.Context, digest Digest) (KeyRecord, error)

	// RevokedTokenOwner returns the ID of the key that remembers a revoked
	// token whose RevokedDigest is revoked (R16), the revoked token, and
	// whether there is one. Should several keys remember it (a token
	// deleted, forgotten but not yet purged, imported by another key and
	// deleted again), it returns the one that revoked it last. It writes
	// nothing.
	RevokedTokenOwner(ctx context.Context, revoked Digest) (keyID string, tok RevokedToken, ok bool, err error)
}

// An AccountLister is a Store that can list its accounts, for jobs that go
// over every key (a renewal reminder). memstore and sqlstore implement it.
type AccountLister interface {
	// Accounts returns every account that has at least one key, once
	// each, in byte order; none gives an empty slice.
	Accounts(ctx context.Context) ([]string, error)
}

// EventType says what an Event records (R17).
type EventType string

// The types of events, one per kind of change.
const (
	EventKeyCreated       EventType = "key_created"
	EventTokenRenewed     EventType = "token_renewed"
	EventLinkRedeemed     EventType = "link_redeemed"
	EventLinkRevoked      EventType = "link_revoked"
	EventOldTokenDeleted  EventType = "old_token_deleted"
	EventRenewalUndone    EventType = "renewal_undone"
	EventKeyActivated     EventType = "key_activated"
	EventKeyDeactivated   EventType = "key_deactivated"
	EventKeyDeleted       EventType = "key_deleted"
	EventRevokedTokenUsed EventType = "revoked_token_used"
	// EventOldTokenExpirySet: ExpireOld gave the old token a scheduled end
	// after its renewal (OldTokenTTL says in how long).
	EventOldTokenExpirySet EventType = "old_token_expiry_set"
	// EventKeyUpdated: UpdateKey changed the fields that Event.Fields
	// names (R19).
	EventKeyUpdated EventType = "key_updated"
	// EventKeyImported: ImportKey made the key from an existing token
	// (R24).
	EventKeyImported EventType = "key_imported"
	// EventTokenLeaked: a token of the key was reported leaked, from
	// Event.Source at Event.URL (S10).
	EventTokenLeaked EventType = "token_leaked"
)

// The fields of a key that UpdateKey changes, as EventKeyUpdated's
// Event.Fields names them, in this (sorted) order.
const (
	FieldExpiresAt = "expires_at"
	FieldMetadata  = "metadata"
	FieldName      = "name"
	FieldScopes    = "scopes"
)

// Event is one entry of the audit trail (R17): a change that succeeded,
// appended in the same atomic step as the change. It never holds a secret.
type Event struct {
	// Cursor is the event's place in the trail: pass the last Cursor of a
	// page as EventQuery.After to read on. It is opaque.
	Cursor  string
	At      time.Time
	KeyID   string
	Account string
	Type    EventType
	// Actor is who made the change, from WithActor; empty if not given.
	Actor string
	// Policy and OldTokenTTL are the renewal's choices, for
	// EventTokenRenewed; OldTokenTTL also says in how long the old token
	// ends, for EventOldTokenExpirySet.
	Policy      OldTokenPolicy
	OldTokenTTL time.Duration
	// Fields are the fields UpdateKey changed, for EventKeyUpdated: some
	// of FieldExpiresAt, FieldMetadata, FieldName and FieldScopes, sorted.
	// nil for other types.
	Fields []string
	// Source and URL say where a leaked token was found, for
	// EventTokenLeaked (S10): who reported it and the address it was seen
	// at. Never the token.
	Source, URL string
}

// EventQuery selects events. KeyID and Account, if not empty, keep the
// events of that key or account. After is the Cursor of the last event
// already read ("" for the start). Limit is at most MaxEventPage; 0 means
// DefaultEventPage.
type EventQuery struct {
	KeyID, Account, After string
	Limit                 int
}

const (
	// DefaultEventPage is how many events Events returns when
	// EventQuery.Limit is 0.
	DefaultEventPage = 100
	// MaxEventPage is the largest EventQuery.Limit.
	MaxEventPage = 1000
)

// OldTokenPolicy says what Renew does with the previous token.
type OldTokenPolicy int

const (
	// DeleteLater keeps the previous token as the old token, verifying
	// until DeleteOld (or Undo) (R2). It is the zero value.
	DeleteLater OldTokenPolicy = iota
	// DeleteNow deletes the previous token in the same atomic step (R2).
	DeleteNow
)

func (p OldTokenPolicy) String() string {
	switch p {
	case DeleteLater:
		return "delete later"
	case DeleteNow:
		return "delete now"
	default:
		return fmt.Sprintf("OldTokenPolicy(%d)", int(p))
	}
}

// Errors of the Store contract: what a store returns, and what the Manager
// makes of it.
var (
	// ErrConflict is returned by a Store when a conditional write finds the
	// record changed since it was read. The Manager retries on it; it reaches
	// callers only when retries are exhausted.
	ErrConflict = errors.New("tokens: concurrent update conflict")
	// ErrDuplicate is returned by a Store when an insert or update would
	// give two keys the same ID, two links the same digest or, in a
	// TokenIndex, two keys the same token digest.
	ErrDuplicate = errors.New("tokens: duplicate key ID, link or token digest")
	// ErrOutcomeUnknown means a change was sent to the store but the store
	// could not say whether it committed (the connection was lost or the
	// deadline hit during COMMIT), and the Manager could not find out
	// either (R18). Look at the key before retrying.
	ErrOutcomeUnknown = errors.New("tokens: outcome unknown: the change may or may not have been applied")
	// ErrInvalidCursor means EventQuery.After is not a Cursor of the
	// audit trail.
	ErrInvalidCursor = errors.New("tokens: invalid event cursor")
)
