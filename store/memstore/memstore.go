// Package memstore keeps keys in memory: for tests, examples and
// single-process services that can afford to lose their keys on restart.
package memstore

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/keyrenew/tokens"
)

// Store is an in-memory tokens.Store. The zero value is not usable; call New.
//
// A stored record is never modified: every write stores a new one in its
// place. So a look-up copies a record without holding the lock, and
// ViewKey can lend one without copying it.
type Store struct {
	mu        sync.RWMutex
	keys      map[string]*tokens.KeyRecord
	byLink    map[tokens.Digest]string
	byToken   map[tokens.Digest]string // current and old token digests (tokens.TokenIndex)
	byAccount map[string]map[string]struct{}

	// seq numbers the writes of InsertKey, UpdateKey and DeleteKey;
	// changed holds the key IDs of the latest of them, oldest first
	// (tokens.ChangeLog).
	seq     int64
	changed []string

	// revoked are the deleted tokens each key remembers (R16); events the
	// audit trail, oldest first, each numbered by its write's seq (R17).
	revoked map[string][]tokens.RevokedToken
	events  []numberedEvent
}

type numberedEvent struct {
	seq int64
	ev  tokens.Event
}

// keptChanges is how many numbered writes Changes can report: a reader
// further behind is told to drop everything it cached.
const keptChanges = 4096

var (
	_ tokens.Store         = (*Store)(nil)
	_ tokens.ChangeLog     = (*Store)(nil)
	_ tokens.KeyViewer     = (*Store)(nil)
	_ tokens.AccountLister = (*Store)(nil)
	_ tokens.TokenIndex    = (*Store)(nil)
)

// New returns an empty store.
func New() *Store {
	return &Store{
		keys:      make(map[string]*tokens.KeyRecord),
		byLink:    make(map[tokens.Digest]string),
		byToken:   make(map[tokens.Digest]string),
		byAccount: make(map[string]map[string]struct{}),
		revoked:   make(map[string][]tokens.RevokedToken),
	}
}

// InsertKey implements tokens.Store.
func (s *Store) InsertKey(ctx context.Context, rec *tokens.KeyRecord) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.keys[rec.ID]; ok {
		return fmt.Errorf("memstore: insert key: %w", tokens.ErrDuplicate)
	}
	if rec.HasLink {
		if _, ok := s.byLink[rec.Link.Digest]; ok {
			return fmt.Errorf("memstore: insert key: %w", tokens.ErrDuplicate)
		}
	}
	if s.tokenTaken(rec) {
		return fmt.Errorf("memstore: insert key: %w", tokens.ErrDuplicate)
	}
	rec.Version = 1
	s.put(stored(rec))
	s.logChange(rec.ID, rec.Event)
	return nil
}

// Key implements tokens.Store.
func (s *Store) Key(ctx context.Context, id string) (tokens.KeyRecord, error) {
	rec, err := s.ViewKey(ctx, id)
	if err != nil {
		return tokens.KeyRecord{}, err
	}
	return clone(rec), nil
}

// ViewKey implements tokens.KeyViewer: it returns the stored record itself,
// which no write modifies.
func (s *Store) ViewKey(ctx context.Context, id string) (*tokens.KeyRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	rec := s.keys[id]
	s.mu.RUnlock()
	if rec == nil {
		return nil, tokens.ErrKeyNotFound
	}
	return rec, nil
}

// KeyByLink implements tokens.Store.
func (s *Store) KeyByLink(ctx context.Context, link tokens.Digest) (tokens.KeyRecord, error) {
	if err := ctx.Err(); err != nil {
		return tokens.KeyRecord{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	id, ok := s.byLink[link]
	if !ok {
		return tokens.KeyRecord{}, tokens.ErrKeyNotFound
	}
	return clone(s.keys[id]), nil
}

// Keys implements tokens.Store.
func (s *Store) Keys(ctx context.Context, account string) ([]tokens.KeyRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	recs := make([]tokens.KeyRecord, 0, len(s.byAccount[account]))
	for id := range s.byAccount[account] {
		recs = append(recs, clone(s.keys[id]))
	}
	s.mu.RUnlock()
	slices.SortFunc(recs, func(a, b tokens.KeyRecord) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	return recs, nil
}

// Accounts implements tokens.AccountLister.
func (s *Store) Accounts(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	accounts := make([]string, 0, len(s.byAccount))
	for account := range s.byAccount {
		accounts = append(accounts, account)
	}
	s.mu.RUnlock()
	slices.Sort(accounts)
	return accounts, nil
}

// UpdateKey implements tokens.Store.
func (s *Store) UpdateKey(ctx context.Context, rec *tokens.KeyRecord) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.keys[rec.ID]
	switch {
	case prev == nil:
		return fmt.Errorf("memstore: update key: %w", tokens.ErrKeyNotFound)
	case prev.Version != rec.Version:
		return fmt.Errorf("memstore: update key: %w", tokens.ErrConflict)
	}
	if rec.HasLink {
		if owner, ok := s.byLink[rec.Link.Digest]; ok && owner != rec.ID {
			return fmt.Errorf("memstore: update key: %w", tokens.ErrDuplicate)
		}
	}
	if s.tokenTaken(rec) {
		return fmt.Errorf("memstore: update key: %w", tokens.ErrDuplicate)
	}
	next := stored(rec)
	next.Account, next.CreatedAt = prev.Account, prev.CreatedAt
	next.Version = prev.Version + 1
	s.remove(prev)
	s.put(next)
	for _, r := range rec.Revoked {
		r.RevokedAt = utc(r.RevokedAt)
		s.revoked[rec.ID] = append(s.revoked[rec.ID], r)
	}
	s.logChange(rec.ID, rec.Event)
	rec.Version = next.Version
	return nil
}

// DeleteKey implements tokens.Store.
func (s *Store) DeleteKey(ctx context.Context, id string, ev *tokens.Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.keys[id]
	if prev == nil {
		return fmt.Errorf("memstore: delete key: %w", tokens.ErrKeyNotFound)
	}
	s.remove(prev)
	delete(s.revoked, id)
	if ev != nil {
		withAccount := *ev
		withAccount.Account = prev.Account
		ev = &withAccount
	}
	s.logChange(id, ev)
	return nil
}

// tokenTaken reports whether a token of rec is another key's; the caller
// holds s.mu.
func (s *Store) tokenTaken(rec *tokens.KeyRecord) bool {
	if owner, ok := s.byToken[rec.Current.Digest]; ok && owner != rec.ID {
		return true
	}
	owner, ok := s.byToken[rec.Old.Digest]
	return rec.HasOld && ok && owner != rec.ID
}

// KeyByToken implements tokens.TokenIndex.
func (s *Store) KeyByToken(ctx context.Context, digest tokens.Digest) (tokens.KeyRecord, error) {
	if err := ctx.Err(); err != nil {
		return tokens.KeyRecord{}, err
	}
	s.mu.RLock()
	id, ok := s.byToken[digest]
	rec := s.keys[id]
	s.mu.RUnlock()
	if !ok || rec == nil {
		return tokens.KeyRecord{}, tokens.ErrKeyNotFound
	}
	c := *rec // the sealed link token stays here (see tokens.TokenIndex)
	c.Link.Sealed = nil
	return clone(&c), nil
}

// RevokedTokenOwner implements tokens.TokenIndex. It goes over every
// remembered token: memstore is for tests and small services.
func (s *Store) RevokedTokenOwner(ctx context.Context, revoked tokens.Digest) (string, tokens.RevokedToken, bool, error) {
	if err := ctx.Err(); err != nil {
		return "", tokens.RevokedToken{}, false, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var (
		owner  string
		latest tokens.RevokedToken
	)
	for id, list := range s.revoked {
		for _, r := range list {
			if r.Digest == revoked && (owner == "" || r.RevokedAt.After(latest.RevokedAt)) {
				owner, latest = id, r
			}
		}
	}
	return owner, latest, owner != "", nil
}

// RevokedToken implements tokens.Store.
func (s *Store) RevokedToken(ctx context.Context, id string, digest tokens.Digest) (tokens.RevokedToken, bool, error) {
	if err := ctx.Err(); err != nil {
		return tokens.RevokedToken{}, false, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, r := range s.revoked[id] {
		if r.Digest == digest {
			return r, true, nil
		}
	}
	return tokens.RevokedToken{}, false, nil
}

// PurgeRevoked implements tokens.Store.
func (s *Store) PurgeRevoked(ctx context.Context, cutoff time.Time) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for id, list := range s.revoked {
		kept := slices.DeleteFunc(slices.Clone(list), func(r tokens.RevokedToken) bool { return !r.RevokedAt.After(cutoff) })
		n += len(list) - len(kept)
		if len(kept) == 0 {
			delete(s.revoked, id)
		} else {
			s.revoked[id] = kept
		}
	}
	return n, nil
}

// Events implements tokens.Store. A Cursor is the decimal number of the
// event's write.
func (s *Store) Events(ctx context.Context, q tokens.EventQuery) ([]tokens.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var after int64
	if q.After != "" {
		n, err := strconv.ParseInt(q.After, 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("memstore: events: %w", tokens.ErrInvalidCursor)
		}
		after = n
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	start, _ := slices.BinarySearchFunc(s.events, after+1, func(e numberedEvent, seq int64) int { return cmp.Compare(e.seq, seq) })
	out := []tokens.Event{}
	for _, e := range s.events[start:] {
		if len(out) >= q.Limit {
			break
		}
		if (q.KeyID == "" || e.ev.KeyID == q.KeyID) && (q.Account == "" || e.ev.Account == q.Account) {
			ev := e.ev
			ev.Cursor = strconv.FormatInt(e.seq, 10)
			ev.Fields = slices.Clone(ev.Fields)
			out = append(out, ev)
		}
	}
	return out, nil
}

// PurgeEvents implements tokens.Store.
func (s *Store) PurgeEvents(ctx context.Context, before time.Time) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := slices.DeleteFunc(slices.Clone(s.events), func(e numberedEvent) bool { return e.ev.At.Before(before) })
	n := len(s.events) - len(kept)
	s.events = kept
	return n, nil
}

// Changes implements tokens.ChangeLog. A position is the decimal number
// of the latest write: the store's lock orders writes, so a counter costs
// nothing.
func (s *Store) Changes(ctx context.Context, since tokens.ChangePosition) (tokens.Changes, error) {
	if err := ctx.Err(); err != nil {
		return tokens.Changes{}, err
	}
	n, ok := int64(0), since == ""
	if !ok {
		var err error
		n, err = strconv.ParseInt(string(since), 10, 64)
		ok = err == nil && n >= 0 && string(since) == strconv.FormatInt(n, 10)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	latest := tokens.ChangePosition(strconv.FormatInt(s.seq, 10))
	behind := s.seq - n
	if !ok || behind < 0 || behind > int64(len(s.changed)) {
		return tokens.Changes{Latest: latest}, nil
	}
	keys := slices.Clone(s.changed[len(s.changed)-int(behind):])
	return tokens.Changes{Latest: latest, Keys: keys, Complete: true}, nil
}

// logChange numbers a write of key id and appends its event, if any; the
// caller holds s.mu.
func (s *Store) logChange(id string, ev *tokens.Event) {
	s.seq++
	if len(s.changed) == keptChanges {
		s.changed = slices.Delete(s.changed, 0, keptChanges/2)
	}
	s.changed = append(s.changed, id)
	if ev != nil {
		e := *ev
		e.Cursor, e.At = "", utc(e.At)
		e.Fields = slices.Clone(e.Fields)
		s.events = append(s.events, numberedEvent{seq: s.seq, ev: e})
	}
}

// RecordUse implements tokens.Store.
func (s *Store) RecordUse(ctx context.Context, id string, token tokens.Digest, at, staleBefore time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.keys[id]
	if prev == nil {
		return nil
	}
	var current bool
	var t *tokens.TokenRecord
	switch {
	case prev.Current.Digest == token:
		current, t = true, &prev.Current
	case prev.HasOld && prev.Old.Digest == token:
		t = &prev.Old
	default:
		return nil
	}
	if !t.LastUsedAt.IsZero() && t.LastUsedAt.After(staleBefore) {
		return nil
	}
	rec := *prev
	if current {
		rec.Current.LastUsedAt = utc(at)
	} else {
		rec.Old.LastUsedAt = utc(at)
	}
	rec.Version++
	s.keys[id] = &rec
	return nil
}

// ExpiredLinks implements tokens.Store.
func (s *Store) ExpiredLinks(ctx context.Context, now time.Time, limit int) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var ids []string
	for id, rec := range s.keys {
		if len(ids) >= limit {
			break
		}
		if rec.HasLink && rec.Link.RedeemedAt.IsZero() && rec.Link.Sealed != nil && !rec.Link.ExpiresAt.After(now) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

func (s *Store) put(rec *tokens.KeyRecord) {
	s.keys[rec.ID] = rec
	if rec.HasLink {
		s.byLink[rec.Link.Digest] = rec.ID
	}
	s.byToken[rec.Current.Digest] = rec.ID
	if rec.HasOld {
		s.byToken[rec.Old.Digest] = rec.ID
	}
	ids := s.byAccount[rec.Account]
	if ids == nil {
		ids = make(map[string]struct{})
		s.byAccount[rec.Account] = ids
	}
	ids[rec.ID] = struct{}{}
}

func (s *Store) remove(rec *tokens.KeyRecord) {
	delete(s.keys, rec.ID)
	if rec.HasLink {
		delete(s.byLink, rec.Link.Digest)
	}
	delete(s.byToken, rec.Current.Digest)
	if rec.HasOld {
		delete(s.byToken, rec.Old.Digest)
	}
	delete(s.byAccount[rec.Account], rec.ID)
	if len(s.byAccount[rec.Account]) == 0 {
		delete(s.byAccount, rec.Account)
	}
}

// clone returns a copy of a stored record that the caller owns.
func clone(rec *tokens.KeyRecord) tokens.KeyRecord {
	c := *rec
	c.Link.Sealed = bytes.Clone(c.Link.Sealed)
	c.Scopes, c.Metadata = slices.Clone(c.Scopes), maps.Clone(c.Metadata)
	return c
}

// stored returns the copy of rec that the store keeps: times in UTC at
// microsecond precision, like the SQL stores, and its own Sealed bytes, so
// that nothing the caller holds aliases stored state.
func stored(rec *tokens.KeyRecord) *tokens.KeyRecord {
	c := *rec
	c.Revoked, c.Event = nil, nil // kept apart, not in the record
	c.CreatedAt = utc(c.CreatedAt)
	c.RevokedTokenUsedAt = utc(c.RevokedTokenUsedAt)
	c.ExpiresAt, c.LeakedAt = utc(c.ExpiresAt), utc(c.LeakedAt)
	c.Scopes, c.Metadata = nil, nil // empty ones come back nil, as from SQL
	if len(rec.Scopes) > 0 {
		c.Scopes = slices.Clone(rec.Scopes)
	}
	if len(rec.Metadata) > 0 {
		c.Metadata = maps.Clone(rec.Metadata)
	}
	c.Current = storedToken(c.Current)
	if c.HasOld {
		c.Old = storedToken(c.Old)
	} else {
		c.Old = tokens.TokenRecord{}
	}
	if c.HasLink {
		c.Link.Sealed = bytes.Clone(c.Link.Sealed)
		c.Link.CreatedAt = utc(c.Link.CreatedAt)
		c.Link.ExpiresAt = utc(c.Link.ExpiresAt)
		c.Link.RevokedAt = utc(c.Link.RevokedAt)
		c.Link.RedeemedAt = utc(c.Link.RedeemedAt)
	} else {
		c.Link = tokens.LinkRecord{}
	}
	return &c
}

func storedToken(t tokens.TokenRecord) tokens.TokenRecord {
	t.CreatedAt = utc(t.CreatedAt)
	t.LastUsedAt = utc(t.LastUsedAt)
	t.ExpiresAt = utc(t.ExpiresAt)
	return t
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}
