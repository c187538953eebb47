package tokens

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Manager holds every rule of the key life cycle over a Store. It is safe
// for concurrent use, also by many Managers in many processes sharing one
// store: every change is a compare-and-swap retried on conflict (R13).
type Manager struct {
	store Store
	index TokenIndex // store as a TokenIndex; nil if it is not one
	cfg   config
	cache *verifyCache // nil without WithVerifyCache
	uses  recentUses
}

// Key describes a key. It never holds a secret.
type Key struct {
	ID        string
	Account   string
	Name      string
	Active    bool
	CreatedAt time.Time
	Token     TokenInfo  // the current token
	OldToken  *TokenInfo // the old token pending deletion, if any
	Alert     AlertLevel // renewal alert of the current token (R10)
	// Link is the state of the key's latest share link (LinkNotFound when
	// Undo revoked it) and LinkExpiresAt its expiry.
	Link          LinkState
	LinkExpiresAt time.Time
	// RevokedTokenUsedAt is the latest time a deleted token of the key was
	// presented to Verify (R16), written at most once a minute; zero if
	// never. An integration still uses a token deleted on the renewal
	// before it.
	RevokedTokenUsedAt time.Time
	// Scopes are what the key may do (R20), sorted without repeats; nil
	// when none. HasScope tests one.
	Scopes []string
	// Metadata is the key's metadata (R21); nil when none. It is not for
	// secrets: admin screens show it.
	Metadata map[string]string
	// ExpiresAt is when every token of the key stops verifying (R22):
	// from then on Verify and VerifyToken give ErrKeyExpired for a right
	// token. Zero: never.
	ExpiresAt time.Time
	// LeakedAt is the latest time a token of the key was reported leaked
	// (S10); zero if never.
	LeakedAt time.Time
}

// TokenInfo describes a token without revealing it.
type TokenInfo struct {
	CreatedAt  time.Time
	LastUsedAt time.Time // zero if never used
	// ExpiresAt is when an old token stops verifying by itself (R14); zero
	// if it has no scheduled end, and for the current token.
	ExpiresAt time.Time
}

// KeySpec is what CreateKey needs. Name is required: valid UTF-8, at most
// 200 bytes, not only spaces; it need not be unique. Account may be empty;
// it too must be valid UTF-8 of at most 200 bytes. Neither may contain a
// control character (NUL, line breaks, tabs, escapes) or a bidirectional
// control (U+202A-U+202E, U+2066-U+2069), which could spoof the screens
// that show them (S9).
//
// Scopes, Metadata and ExpiresAt are optional; a spec that breaks their
// limits is refused with ErrInvalidKeySpec and nothing is stored. The
// Manager copies them: changing the spec's slice or map afterwards changes
// no key.
type KeySpec struct {
	Account string
	Name    string
	// Scopes are what the key may do (R20): at most MaxScopes, each 1 to
	// MaxScopeLen bytes of ASCII letters, digits and ":._-/". Stored
	// sorted without repeats; matched exactly, no wildcards.
	Scopes []string
	// Metadata is free data about the key for the application and its
	// admin screens (R21), never a secret: at most MaxMetadataEntries;
	// each name 1 to MaxMetadataNameLen bytes of ASCII letters, digits and
	// "_.-"; each value at most MaxMetadataValueLen bytes of valid UTF-8
	// without control or bidirectional control characters (S9).
	Metadata map[string]string
	// ExpiresAt, if not zero, is when every token of the key stops
	// verifying (R22). It must be after now.
	ExpiresAt time.Time
}

// AlertLevel says how overdue a token's renewal is (R10).
type AlertLevel int

const (
	AlertNone     AlertLevel = iota
	AlertWarning             // the alert period has passed since the token was created
	AlertCritical            // three more months have passed
)

func (a AlertLevel) String() string {
	switch a {
	case AlertWarning:
		return "warning"
	case AlertCritical:
		return "critical"
	default:
		return "none"
	}
}

const (
	maxNameLen = 200
	// lastUsedResolution throttles LastUsedAt writes to one a minute per
	// token (R9).
	lastUsedResolution = time.Minute
	// maxUpdateAttempts bounds update's compare-and-swap retries; each
	// retry follows another writer's success, so it is never reached in
	// practice.
	maxUpdateAttempts = 100
	// maxCreateAttempts bounds the draws of a new key ID: a repeat of 131
	// random bits is not expected, twice less so.
	maxCreateAttempts = 3
)

// errUnchanged tells update that a change function has nothing to write.
var errUnchanged = errors.New("tokens: unchanged")

// NewManager returns a Manager over store. WithShareBaseURL is required;
// an invalid option gives an error wrapping ErrInvalidOption.
func NewManager(store Store, opts ...Option) (*Manager, error) {
	if store == nil {
		return nil, invalidOption("NewManager: store is nil")
	}
	cfg := defaultConfig()
	for _, opt := range opts {
		if opt == nil {
			return nil, invalidOption("NewManager: nil option")
		}
		if err := opt(&cfg); err != nil {
			return nil, err
		}
	}
	if cfg.shareBase == "" {
		return nil, invalidOption("NewManager: WithShareBaseURL is required, such as https://share.example.com/credentials/")
	}
	m := &Manager{store: store, cfg: cfg}
	m.index, _ = store.(TokenIndex)
	if cfg.cache != nil {
		cache, err := newVerifyCache(store, cfg.cache, cfg.observe)
		if err != nil {
			return nil, err
		}
		m.cache = cache
	}
	return m, nil
}

// Clock returns the clock the Manager reads (WithClock), for code beside
// it that must keep the same time, such as tokenhttp's handlers.
func (m *Manager) Clock() Clock { return m.cfg.clock }

// ShareBaseURL returns the base of the Manager's share links, as given to
// WithShareBaseURL: the place to mount a handler for them.
func (m *Manager) ShareBaseURL() string {
	return string(m.cfg.shareBase)
}

// CreateKey makes an active key with a current token and returns the share
// link that reveals the token (R1).
func (m *Manager) CreateKey(ctx context.Context, spec KeySpec) (_ *Key, _ *ShareLink, err error) {
	if ctx == nil {
		return nil, nil, ErrNilContext
	}
	var id string
	if m.cfg.observe != nil {
		defer func() { m.observe(ctx, OpKeyCreated, id, err) }()
	}
	fields, err := spec.fields(m.now())
	if err != nil {
		return nil, nil, err
	}
	actor, err := actorOf(ctx)
	if err != nil {
		return nil, nil, err
	}
	for attempt := 1; ; attempt++ {
		id, err = newKeyID(m.cfg.keyIDPrefix)
		if err != nil {
			return nil, nil, err
		}
		now := m.now()
		rec := KeyRecord{ID: id, Account: spec.Account, Name: spec.Name, Active: true, CreatedAt: now}
		fields.apply(&rec)
		link, err := m.issueToken(&rec, now)
		if err != nil {
			return nil, nil, err
		}
		rec.Event = event(Event{Type: EventKeyCreated}, actor, &rec, now)
		err = m.store.InsertKey(ctx, &rec)
		switch {
		case errors.Is(err, ErrOutcomeUnknown):
			err = m.settleInsert(ctx, &rec, err)
		case errors.Is(err, ErrDuplicate) && attempt < maxCreateAttempts:
			continue // 131 random bits collided: draw again
		case err != nil:
			err = fmt.Errorf("tokens: create key: %w", err)
		}
		if err != nil {
			return nil, nil, err
		}
		return m.key(&rec, now), link, nil
	}
}

// Key returns the key with the given ID, or ErrKeyNotFound.
func (m *Manager) Key(ctx context.Context, id string) (*Key, error) {
	if ctx == nil {
		return nil, ErrNilContext
	}
	rec, err := m.keyLoader(id)(ctx)
	if err != nil {
		return nil, storeError("key", err)
	}
	return m.key(&rec, m.now()), nil
}

// Keys returns the keys of one account, oldest first.
func (m *Manager) Keys(ctx context.Context, account string) ([]*Key, error) {
	if ctx == nil {
		return nil, ErrNilContext
	}
	if err := checkText("account", account); err != nil {
		return nil, err
	}
	recs, err := m.store.Keys(ctx, account)
	if err != nil {
		return nil, fmt.Errorf("tokens: keys: %w", err)
	}
	now := m.now()
	keys := make([]*Key, len(recs))
	for i := range recs {
		keys[i] = m.key(&recs[i], now)
	}
	return keys, nil
}

// Accounts returns every account that has at least one key, in byte
// order: with Keys, what a job that goes over every key (a renewal
// reminder) needs. It returns an error wrapping errors.ErrUnsupported if
// the store is not an AccountLister.
func (m *Manager) Accounts(ctx context.Context) ([]string, error) {
	if ctx == nil {
		return nil, ErrNilContext
	}
	lister, ok := m.store.(AccountLister)
	if !ok {
		return nil, fmt.Errorf("tokens: accounts: %T cannot list accounts: %w", m.store, errors.ErrUnsupported)
	}
	accounts, err := lister.Accounts(ctx)
	if err != nil {
		return nil, fmt.Errorf("tokens: accounts: %w", err)
	}
	return accounts, nil
}

// Activate lets the key's tokens verify again (R11).
func (m *Manager) Activate(ctx context.Context, id string) error {
	if ctx == nil {
		return ErrNilContext
	}
	return m.setActive(ctx, id, true)
}

// Deactivate makes Verify refuse the key's tokens with ErrKeyInactive
// (R11). Renewal, undo, DeleteOld and link redemption still work.
func (m *Manager) Deactivate(ctx context.Context, id string) error {
	if ctx == nil {
		return ErrNilContext
	}
	return m.setActive(ctx, id, false)
}

func (m *Manager) setActive(ctx context.Context, id string, active bool) error {
	tmpl := Event{Type: EventKeyDeactivated}
	if active {
		tmpl.Type = EventKeyActivated
	}
	return m.update(ctx, m.keyLoader(id), tmpl, func(rec *KeyRecord, _ time.Time) error {
		if rec.Active == active {
			return errUnchanged
		}
		rec.Active = active
		return nil
	})
}

// DeleteKey deletes the key with its tokens and link, irreversibly (R11).
func (m *Manager) DeleteKey(ctx context.Context, id string) (err error) {
	if ctx == nil {
		return ErrNilContext
	}
	if m.cfg.observe != nil {
		defer func() { m.observe(ctx, OpKeyDeleted, id, err) }()
	}
	if !validKeyID(id) {
		return ErrKeyNotFound
	}
	actor, err := actorOf(ctx)
	if err != nil {
		return err
	}
	ev := event(Event{Type: EventKeyDeleted}, actor, &KeyRecord{ID: id}, m.now())
	err = m.store.DeleteKey(ctx, id, ev)
	m.forget(id)
	if errors.Is(err, ErrOutcomeUnknown) {
		err = m.settleDelete(ctx, id, ev, err)
		m.forget(id) // as in update
		return err
	}
	if err != nil {
		return storeError("delete key", err)
	}
	return nil
}

// now is the only way the Manager reads the time (R12). Times are kept in
// UTC at microsecond precision, the precision every store keeps.
func (m *Manager) now() time.Time {
	return m.cfg.clock.Now().UTC().Truncate(time.Microsecond)
}

type loader func(ctx context.Context) (KeyRecord, error)

func (m *Manager) keyLoader(id string) loader {
	return func(ctx context.Context) (KeyRecord, error) {
		if !validKeyID(id) {
			return KeyRecord{}, ErrKeyNotFound
		}
		return m.store.Key(ctx, id)
	}
}

func (m *Manager) linkLoader(lookup Digest) loader {
	return func(ctx context.Context) (KeyRecord, error) {
		rec, err := m.store.KeyByLink(ctx, lookup)
		if errors.Is(err, ErrKeyNotFound) {
			return KeyRecord{}, ErrLinkNotFound
		}
		return rec, err
	}
}

// update is the one way the Manager changes a key: load it, apply change
// at the current time, and write it back if the version is unchanged;
// otherwise load and apply again. Each retry follows another caller's
// successful write, so a retry always makes progress. change returns a rule
// error to abort without writing, or errUnchanged to succeed without one.
func (m *Manager) update(ctx context.Context, load loader, tmpl Event, change func(rec *KeyRecord, now time.Time) error) error {
	return m.updateEvent(ctx, load, &tmpl, change)
}

// updateEvent is update with an event template that change may adjust,
// for events that say what the change did (a renewal's end).
func (m *Manager) updateEvent(ctx context.Context, load loader, tmpl *Event, change func(rec *KeyRecord, now time.Time) error) (err error) {
	op, id := Op(tmpl.Type), ""
	if op == "" {
		op = OpPurgeExpired
	}
	if m.cfg.observe != nil {
		defer func() { m.observe(ctx, op, id, err) }()
	}
	actor, err := actorOf(ctx)
	if err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		rec, err := load(ctx)
		if err != nil {
			return storeError("load key", err)
		}
		id = rec.ID
		loaded := rec
		now := m.now()
		// An old token past its scheduled end is gone (R14): every change
		// sees the key without it, and a write drops it from the store.
		dropExpiredOld(&rec, now)
		if err := change(&rec, now); err != nil {
			if errors.Is(err, errUnchanged) {
				return nil
			}
			return err
		}
		// Any write also wipes a sealed token that can no longer be
		// redeemed, rather than leave it for PurgeExpired.
		wipeExpiredLink(&rec, now)
		rec.Revoked = m.revokedBy(&loaded, &rec, now)
		rec.Event = event(*tmpl, actor, &rec, now)
		err = m.store.UpdateKey(ctx, &rec)
		m.forget(rec.ID)
		if errors.Is(err, ErrOutcomeUnknown) {
			err = m.settleUpdate(ctx, &loaded, &rec, err)
			// A lost write that landed while it was settled may have let
			// a Verify here cache the key as it was before: forget again.
			m.forget(rec.ID)
			return err
		}
		retry := errors.Is(err, ErrConflict) || errors.Is(err, ErrKeyNotFound) // the next load tells which
		if retry && attempt < maxUpdateAttempts && ctx.Err() == nil {
			if m.cfg.observe != nil {
				m.cfg.observe(ctx, Observation{Op: op, Outcome: OutcomeConflictRetried, KeyID: rec.ID})
			}
			continue
		}
		if err != nil {
			return storeError("update key", err)
		}
		return nil
	}
}

// storeError returns the not-found sentinels as they are, so that callers
// see "tokens: key not found" rather than a chain of prefixes, and wraps any
// other store error with what the Manager was doing.
func storeError(doing string, err error) error {
	for _, sentinel := range []error{ErrKeyNotFound, ErrLinkNotFound} {
		if errors.Is(err, sentinel) {
			return sentinel
		}
	}
	return fmt.Errorf("tokens: %s: %w", doing, err)
}

// wipeExpiredLink drops the sealed token of a link that expired
// unredeemed and reports whether there was one to drop (S2).
func wipeExpiredLink(rec *KeyRecord, now time.Time) bool {
	if linkState(rec, now) != LinkExpired || rec.Link.Sealed == nil {
		return false
	}
	rec.Link.Sealed = nil
	return true
}

// key describes rec at now.
func (m *Manager) key(rec *KeyRecord, now time.Time) *Key {
	key := &Key{
		ID:        rec.ID,
		Account:   rec.Account,
		Name:      rec.Name,
		Active:    rec.Active,
		CreatedAt: rec.CreatedAt,
		Token:     TokenInfo{CreatedAt: rec.Current.CreatedAt, LastUsedAt: rec.Current.LastUsedAt},
		Alert:     m.alert(rec.Current.CreatedAt, now),
		Link:      linkState(rec, now),
	}
	if key.Link != LinkNotFound { // a revoked link has no expiry to tell
		key.LinkExpiresAt = rec.Link.ExpiresAt
	}
	key.RevokedTokenUsedAt = rec.RevokedTokenUsedAt
	key.Scopes, key.Metadata = slices.Clone(rec.Scopes), maps.Clone(rec.Metadata)
	key.ExpiresAt, key.LeakedAt = rec.ExpiresAt, rec.LeakedAt
	if hasOld(rec, now) {
		key.OldToken = &TokenInfo{CreatedAt: rec.Old.CreatedAt, LastUsedAt: rec.Old.LastUsedAt, ExpiresAt: rec.Old.ExpiresAt}
	}
	return key
}

// alert applies R10 to a token created at ref.
func (m *Manager) alert(ref, now time.Time) AlertLevel {
	// A calendar month has at least 28 days, so a younger token needs no
	// calendar arithmetic: the common case on the Verify path. Whole
	// seconds are compared, which is cheaper than Sub: a difference of
	// fewer whole seconds than 28 days a month is less than that time.
	const monthFloor = 28 * 24 * 60 * 60
	if now.Unix()-ref.Unix() < int64(m.cfg.alertAfter)*monthFloor {
		return AlertNone
	}
	ref = ref.UTC()
	switch {
	case now.Before(ref.AddDate(0, m.cfg.alertAfter, 0)):
		return AlertNone
	case now.Before(ref.AddDate(0, m.cfg.alertAfter+3, 0)):
		return AlertWarning
	default:
		return AlertCritical
	}
}

func (s KeySpec) validate() error {
	if err := checkName(s.Name); err != nil {
		return err
	}
	return checkText("account", s.Account)
}

func checkName(name string) error {
	if strings.TrimSpace(name) == "" {
		return fmt.Errorf("%w: name is required (and not only spaces)", ErrInvalidKeySpec)
	}
	return checkText("name", name)
}

// checkText applies S9 to a name or account: text that an admin screen
// shows as it is, so nothing in it may move the cursor, end a line or
// reorder what follows (control characters, which include NUL that
// PostgreSQL cannot store, and bidirectional controls).
func checkText(field, s string) error {
	return checkTextLen(field, s, maxNameLen)
}

// checkTextLen is checkText for text of at most max bytes.
func checkTextLen(field, s string, max int) error {
	if problem := textProblem(field, s, max); problem != "" {
		return fmt.Errorf("%w: %s", ErrInvalidKeySpec, problem)
	}
	return nil
}

// textProblem says what is wrong with s, text of at most max bytes under
// S9's rules, as its field; "" if nothing is.
func textProblem(field, s string, max int) string {
	switch {
	case len(s) > max:
		return fmt.Sprintf("%s is longer than %d bytes", field, max)
	case !utf8.ValidString(s):
		return field + " is not valid UTF-8"
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return field + " contains a control character"
	case strings.IndexFunc(s, isBidiControl) >= 0:
		return field + " contains a bidirectional control character"
	}
	return ""
}

// isBidiControl reports the embedding, override and isolate controls
// (U+202A-U+202E, U+2066-U+2069), which make text display in an order
// other than its own.
func isBidiControl(r rune) bool {
	return r >= '\u202a' && r <= '\u202e' || r >= '\u2066' && r <= '\u2069'
}
