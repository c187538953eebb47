package tokens

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"
	"unicode/utf8"
)

// The limits of a key's scopes and metadata (R20, R21).
const (
	MaxScopes           = 50
	MaxScopeLen         = 100
	MaxMetadataEntries  = 20
	MaxMetadataNameLen  = 64
	MaxMetadataValueLen = 512
)

// HasScope reports whether the key has scope s, matched exactly: no
// wildcards, no prefixes (R20).
func (k *Key) HasScope(s string) bool {
	if k == nil {
		return false
	}
	_, found := slices.BinarySearch(k.Scopes, s)
	return found
}

// KeyUpdate is what UpdateKey changes: each non-nil field replaces what the
// key has, and a nil field leaves it as it is. A pointer to an empty slice
// or map clears the scopes or metadata; a pointer to the zero time clears
// the expiry. Each is checked as KeySpec's is, except that ExpiresAt may be
// in the past: the key then expires at once.
type KeyUpdate struct {
	Name      *string
	Scopes    *[]string
	Metadata  *map[string]string
	ExpiresAt *time.Time
}

// UpdateKey renames a key or replaces its scopes, metadata or expiry
// (R19), in one atomic change with one EventKeyUpdated event whose Fields
// name what changed. Tokens, link and renewal state are untouched. An
// update that changes nothing writes nothing and returns nil. An invalid
// update gives ErrInvalidKeySpec, an unknown key ErrKeyNotFound.
//
// A removed scope, an earlier expiry and the rest reach every Manager
// sharing the store as a revocation does: at once in this one, within
// MaxStaleness in the others' verification caches (C2).
func (m *Manager) UpdateKey(ctx context.Context, id string, u KeyUpdate) error {
	if ctx == nil {
		return ErrNilContext
	}
	want, err := u.normalise()
	if err != nil {
		if m.cfg.observe != nil {
			m.observe(ctx, OpKeyUpdated, id, err)
		}
		return err
	}
	tmpl := &Event{Type: EventKeyUpdated}
	return m.updateEvent(ctx, m.keyLoader(id), tmpl, func(rec *KeyRecord, _ time.Time) error {
		tmpl.Fields = want.apply(rec)
		if len(tmpl.Fields) == 0 {
			return errUnchanged
		}
		return nil
	})
}

// normalise checks u and returns it with its values copied and in stored
// form: scopes sorted without repeats, empty slices and maps nil, times
// in UTC at microseconds.
func (u KeyUpdate) normalise() (KeyUpdate, error) {
	var out KeyUpdate
	if u.Name != nil {
		if err := checkName(*u.Name); err != nil {
			return KeyUpdate{}, err
		}
		name := *u.Name
		out.Name = &name
	}
	if u.Scopes != nil {
		scopes, err := normalScopes(*u.Scopes)
		if err != nil {
			return KeyUpdate{}, err
		}
		out.Scopes = &scopes
	}
	if u.Metadata != nil {
		md, err := normalMetadata(*u.Metadata)
		if err != nil {
			return KeyUpdate{}, err
		}
		out.Metadata = &md
	}
	if u.ExpiresAt != nil {
		if err := checkExpiry(*u.ExpiresAt); err != nil {
			return KeyUpdate{}, err
		}
		at := storedTime(*u.ExpiresAt)
		out.ExpiresAt = &at
	}
	return out, nil
}

// apply sets the fields of rec that u (normalised) changes and returns the
// names of those that differ, sorted.
func (u KeyUpdate) apply(rec *KeyRecord) []string {
	var changed []string
	if u.ExpiresAt != nil && !u.ExpiresAt.Equal(rec.ExpiresAt) {
		rec.ExpiresAt = *u.ExpiresAt
		changed = append(changed, FieldExpiresAt)
	}
	if u.Metadata != nil && !maps.Equal(*u.Metadata, rec.Metadata) {
		rec.Metadata = maps.Clone(*u.Metadata)
		changed = append(changed, FieldMetadata)
	}
	if u.Name != nil && *u.Name != rec.Name {
		rec.Name = *u.Name
		changed = append(changed, FieldName)
	}
	if u.Scopes != nil && !slices.Equal(*u.Scopes, rec.Scopes) {
		rec.Scopes = slices.Clone(*u.Scopes)
		changed = append(changed, FieldScopes)
	}
	return changed
}

// keyFields are a new key's scopes, metadata and expiry, checked and in
// stored form.
type keyFields struct {
	scopes    []string
	metadata  map[string]string
	expiresAt time.Time
}

// fields checks s as CreateKey and ImportKey take it at now and returns
// the fields to store.
func (s KeySpec) fields(now time.Time) (keyFields, error) {
	if err := s.validate(); err != nil {
		return keyFields{}, err
	}
	scopes, err := normalScopes(s.Scopes)
	if err != nil {
		return keyFields{}, err
	}
	md, err := normalMetadata(s.Metadata)
	if err != nil {
		return keyFields{}, err
	}
	if err := checkExpiry(s.ExpiresAt); err != nil {
		return keyFields{}, err
	}
	expires := storedTime(s.ExpiresAt)
	if !expires.IsZero() && !expires.After(now) {
		return keyFields{}, fmt.Errorf("%w: ExpiresAt must be zero or after now", ErrInvalidKeySpec)
	}
	return keyFields{scopes: scopes, metadata: md, expiresAt: expires}, nil
}

func (f keyFields) apply(rec *KeyRecord) {
	rec.Scopes, rec.Metadata, rec.ExpiresAt = f.scopes, f.metadata, f.expiresAt
}

// normalScopes checks scopes (R20) and returns a sorted copy without
// repeats; nil for none.
func normalScopes(scopes []string) ([]string, error) {
	if len(scopes) == 0 {
		return nil, nil
	}
	for _, s := range scopes {
		if !validScope(s) {
			return nil, fmt.Errorf("%w: a scope is 1 to %d bytes of ASCII letters, digits and \":._-/\"", ErrInvalidKeySpec, MaxScopeLen)
		}
	}
	out := slices.Compact(slices.Sorted(slices.Values(scopes)))
	if len(out) > MaxScopes {
		return nil, fmt.Errorf("%w: a key has at most %d scopes", ErrInvalidKeySpec, MaxScopes)
	}
	return slices.Clip(out), nil
}

func validScope(s string) bool {
	if len(s) == 0 || len(s) > MaxScopeLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; base62Index[c] < 0 && c != ':' && c != '.' && c != '_' && c != '-' && c != '/' {
			return false
		}
	}
	return true
}

// normalMetadata checks metadata (R21) and returns a copy; nil for none.
// Its errors name no entry: a name that fails may hold anything.
func normalMetadata(md map[string]string) (map[string]string, error) {
	if len(md) == 0 {
		return nil, nil
	}
	if len(md) > MaxMetadataEntries {
		return nil, fmt.Errorf("%w: a key has at most %d metadata entries", ErrInvalidKeySpec, MaxMetadataEntries)
	}
	for name, value := range md {
		if !validMetadataName(name) {
			return nil, fmt.Errorf("%w: a metadata name is 1 to %d bytes of ASCII letters, digits and \"_.-\"", ErrInvalidKeySpec, MaxMetadataNameLen)
		}
		if err := checkTextLen("metadata value", value, MaxMetadataValueLen); err != nil {
			return nil, err
		}
	}
	return maps.Clone(md), nil
}

func validMetadataName(s string) bool {
	if len(s) == 0 || len(s) > MaxMetadataNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; base62Index[c] < 0 && c != '_' && c != '.' && c != '-' {
			return false
		}
	}
	return utf8.ValidString(s)
}

// keyExpired reports whether rec's ExpiresAt has come at now (R22).
func keyExpired(rec *KeyRecord, now time.Time) bool {
	return !rec.ExpiresAt.IsZero() && !now.Before(rec.ExpiresAt)
}

// checkExpiry refuses an expiry that not every store can keep: years 1
// to 9999 can.
func checkExpiry(t time.Time) error {
	if !t.IsZero() && (t.UTC().Year() < 1 || t.UTC().Year() > 9999) {
		return fmt.Errorf("%w: ExpiresAt must be in the years 1 to 9999", ErrInvalidKeySpec)
	}
	return nil
}

// storedTime is t as stores keep it: UTC at microseconds; zero stays zero.
func storedTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}

// sameFields compares what R19-R22 and S10 added to a record.
func sameFields(a, b *KeyRecord) bool {
	return slices.Equal(a.Scopes, b.Scopes) && maps.Equal(a.Metadata, b.Metadata) &&
		a.ExpiresAt.Equal(b.ExpiresAt) && a.LeakedAt.Equal(b.LeakedAt)
}
