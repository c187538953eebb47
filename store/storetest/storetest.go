// Package storetest is the conformance suite for tokens.Store
// implementations. A backend's test file is a few lines:
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) tokens.Store {
//			return memstore.New()
//		})
//	}
//
// The suite checks every method against the contract written on
// tokens.Store, including its concurrency promises: run it with -race.
package storetest

import (
	"crypto/sha256"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens"
)

// Run runs the suite against the stores made by newStore. Every subtest
// calls newStore once and expects a fresh, empty store; newStore registers
// any cleanup with its t.
func Run(t *testing.T, newStore func(t *testing.T) tokens.Store) {
	t.Helper()
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			if g.optional != nil && !g.optional.implementedBy(newStore(t)) {
				// Not a skip: a store is free not to offer an optional
				// interface, and CI fails on skips. A store states what it
				// implements at compile time, so losing one is caught there.
				t.Logf("the store does not implement %s: group not run", g.optional.name)
				return
			}
			for _, tc := range g.tests {
				t.Run(tc.name, func(t *testing.T) {
					tc.run(t, newStore(t))
				})
			}
		})
	}
}

// groups are the suite's test groups in the order they run. A group with an
// optional interface runs only against stores that implement it.
var groups = []struct {
	name     string
	tests    []test
	optional *optionalInterface
}{
	{"InsertKey", insertKeyTests, nil},
	{"Key", keyTests, nil},
	{"KeyByLink", keyByLinkTests, nil},
	{"Keys", keysTests, nil},
	{"UpdateKey", updateKeyTests, nil},
	{"DeleteKey", deleteKeyTests, nil},
	{"RecordUse", recordUseTests, nil},
	{"ExpiredLinks", expiredLinksTests, nil},
	{"Concurrency", concurrencyTests, nil},
	{"ChangeLog", changeLogTests, &optChangeLog},
	{"Lifecycle", lifecycleTests, nil},
	{"Accounts", accountsTests, &optAccountLister},
	{"KeyFields", keyFieldsTests, nil},
	{"TokenIndex", tokenIndexTests, &optTokenIndex},
	{"KeyViewerFields", keyViewerTests, &optKeyViewer},
	{"KeyViewer", viewerTests, &optKeyViewer},
}

// An optionalInterface is an interface a Store may implement beside
// tokens.Store.
type optionalInterface struct {
	name          string
	implementedBy func(tokens.Store) bool
}

var (
	optChangeLog     = optional[tokens.ChangeLog]()
	optAccountLister = optional[tokens.AccountLister]()
	optTokenIndex    = optional[tokens.TokenIndex]()
	optKeyViewer     = optional[tokens.KeyViewer]()
)

func optional[I any]() optionalInterface {
	return optionalInterface{reflect.TypeFor[I]().String(), func(st tokens.Store) bool {
		_, ok := st.(I)
		return ok
	}}
}

type test struct {
	name string
	run  func(t *testing.T, st tokens.Store)
}

// T0 is the time the suite's records are made at. It has microsecond
// precision, the least a Store must keep.
var T0 = time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC)

// DigestOf returns a digest unique to label, standing in for the digest of a
// token or link ID.
func DigestOf(label string) tokens.Digest {
	return sha256.Sum256([]byte(label))
}

// NewRecord returns a record for key id as CreateKey would make it: an
// active key whose link is pending.
// Digests and the sealed secret are derived from id, so records of distinct
// IDs share none.
func NewRecord(id string) tokens.KeyRecord {
	return tokens.KeyRecord{
		ID:        id,
		Account:   "acme",
		Name:      "key " + id,
		Active:    true,
		CreatedAt: T0,
		Current: tokens.TokenRecord{
			Digest:    DigestOf(id + "/token/1"),
			CreatedAt: T0,
		},
		HasLink: true,
		Link: tokens.LinkRecord{
			Digest:    DigestOf(id + "/link/1"),
			Sealed:    []byte("sealed token 1 of " + id),
			CreatedAt: T0,
			ExpiresAt: T0.Add(24 * time.Hour),
		},
	}
}

// renewedRecord returns a record of key id with every field set: an
// inactive key renewed with DeleteLater whose old token and current token
// were both used, and whose renewal link was redeemed.
func renewedRecord(id string) tokens.KeyRecord {
	rec := NewRecord(id)
	rec.Account = "globex"
	rec.Active = false
	rec.Old = tokens.TokenRecord{
		Digest:     rec.Current.Digest,
		CreatedAt:  T0,
		LastUsedAt: T0.Add(90 * 24 * time.Hour),
	}
	rec.HasOld = true
	rec.Current = tokens.TokenRecord{
		Digest:     DigestOf(id + "/token/2"),
		CreatedAt:  T0.Add(91 * 24 * time.Hour),
		LastUsedAt: T0.Add(91*24*time.Hour + 3*time.Hour + 7*time.Microsecond),
	}
	rec.Link = tokens.LinkRecord{
		Digest:     DigestOf(id + "/link/2"),
		CreatedAt:  rec.Current.CreatedAt,
		ExpiresAt:  rec.Current.CreatedAt.Add(24 * time.Hour),
		RedeemedAt: rec.Current.CreatedAt.Add(2*time.Hour + 1*time.Microsecond),
	}
	return rec
}

func insert(t *testing.T, st tokens.Store, rec tokens.KeyRecord) tokens.KeyRecord {
	t.Helper()
	require.NoError(t, st.InsertKey(t.Context(), &rec))
	require.Equal(t, int64(1), rec.Version, "InsertKey must set the version to 1")
	return rec
}

func load(t *testing.T, st tokens.Store, id string) tokens.KeyRecord {
	t.Helper()
	rec, err := st.Key(t.Context(), id)
	require.NoError(t, err)
	return rec
}

func update(t *testing.T, st tokens.Store, rec tokens.KeyRecord) tokens.KeyRecord {
	t.Helper()
	version := rec.Version
	require.NoError(t, st.UpdateKey(t.Context(), &rec))
	require.Equal(t, version+1, rec.Version, "UpdateKey must set the new version")
	return rec
}

// requireRecord checks that got is want, with every time in UTC. Old and
// Link are compared only when present: they are meaningless otherwise.
func requireRecord(t *testing.T, want, got tokens.KeyRecord) {
	t.Helper()
	for name, tm := range recordTimes(&got) {
		require.Same(t, time.UTC, tm.Location(), "%s of key %q is not in UTC", name, got.ID)
	}
	for _, tm := range recordTimes(&want) {
		*tm = tm.UTC()
	}
	for _, rec := range []*tokens.KeyRecord{&want, &got} {
		rec.Revoked, rec.Event = nil, nil // what a write adds, not the record
		if !rec.HasOld {
			rec.Old = tokens.TokenRecord{}
		}
		if !rec.HasLink {
			rec.Link = tokens.LinkRecord{}
		}
	}
	require.Equal(t, want, got)
}

// requireStored checks that the store holds exactly want.
func requireStored(t *testing.T, st tokens.Store, want tokens.KeyRecord) {
	t.Helper()
	requireRecord(t, want, load(t, st, want.ID))
}

func requireNoKey(t *testing.T, st tokens.Store, id string) {
	t.Helper()
	_, err := st.Key(t.Context(), id)
	require.ErrorIs(t, err, tokens.ErrKeyNotFound)
}

func requireNoLink(t *testing.T, st tokens.Store, link tokens.Digest) {
	t.Helper()
	_, err := st.KeyByLink(t.Context(), link)
	require.ErrorIs(t, err, tokens.ErrKeyNotFound)
}

func recordTimes(rec *tokens.KeyRecord) map[string]*time.Time {
	return map[string]*time.Time{
		"CreatedAt":          &rec.CreatedAt,
		"Current.CreatedAt":  &rec.Current.CreatedAt,
		"Current.LastUsedAt": &rec.Current.LastUsedAt,
		"Old.CreatedAt":      &rec.Old.CreatedAt,
		"Old.LastUsedAt":     &rec.Old.LastUsedAt,
		"Link.CreatedAt":     &rec.Link.CreatedAt,
		"Link.ExpiresAt":     &rec.Link.ExpiresAt,
		"Link.RedeemedAt":    &rec.Link.RedeemedAt,
		"Link.RevokedAt":     &rec.Link.RevokedAt,
		"Old.ExpiresAt":      &rec.Old.ExpiresAt,
		"RevokedTokenUsedAt": &rec.RevokedTokenUsedAt,
		"ExpiresAt":          &rec.ExpiresAt,
		"LeakedAt":           &rec.LeakedAt,
	}
}
