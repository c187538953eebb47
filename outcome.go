package tokens

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"time"
)

// When a store cannot say whether a write committed (its error matches
// ErrOutcomeUnknown: the connection was lost or the deadline hit during
// the COMMIT), the Manager finds out before it returns (R18). It reads the
// key back and, where the record alone cannot tell, writes a fence: a
// compare-and-swap of the record as stored, at the version the lost write
// expected. Once the fence commits, the lost write can no longer commit,
// so the key says which it was. On PostgreSQL a lost transaction may
// still be running on the server, holding the key's row locks; the fence
// waits for it to end.

// settleTimeout bounds the time spent finding out, on a context detached
// from the caller's, whose deadline is often what interrupted the write.
const settleTimeout = 5 * time.Second

func settleContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
}

// notAppliedError reports a write that the Manager found had not committed
// although its store call could not say so. It matches everything its
// cause matches (such as context.DeadlineExceeded) except
// ErrOutcomeUnknown: the outcome is known.
type notAppliedError struct {
	doing string
	cause error
}

func (e *notAppliedError) Error() string {
	return "tokens: " + e.doing + ": not applied (the store could not tell; the manager checked): " + e.cause.Error()
}

func (e *notAppliedError) Is(target error) bool {
	return target != ErrOutcomeUnknown && errors.Is(e.cause, target)
}

func (e *notAppliedError) As(target any) bool {
	return errors.As(e.cause, target)
}

// undecided reports a write whose outcome stays unknown, cause matching
// ErrOutcomeUnknown.
func undecided(doing string, cause error, why string) error {
	return fmt.Errorf("tokens: %s: %w; %s", doing, cause, why)
}

// unsettled reports a write whose outcome stays unknown because finding
// out failed with err: the error matches ErrOutcomeUnknown, the write's
// error and err.
func unsettled(doing string, cause, err error) error {
	return fmt.Errorf("tokens: %s: %w; finding out whether it was applied failed: %w", doing, cause, err)
}

// settleUpdate finds out whether UpdateKey of want, made from before at
// version want.Version, committed, after it failed with cause. It returns
// nil if it did, with want.Version then the stored one.
func (m *Manager) settleUpdate(ctx context.Context, before, want *KeyRecord, cause error) error {
	const doing = "update key"
	ctx, cancel := settleContext(ctx)
	defer cancel()
	v := want.Version
	for attempt := 1; attempt <= maxUpdateAttempts; attempt++ {
		stored, err := m.store.Key(ctx, want.ID)
		switch {
		case errors.Is(err, ErrKeyNotFound) && want.Event != nil:
			// Deleted since, after the lost write was over (a delete
			// waits for its row): the trail tells.
			return m.settledByEvent(ctx, doing, want, cause)
		case errors.Is(err, ErrKeyNotFound):
			return undecided(doing, cause, "the key was deleted since")
		case err != nil:
			return unsettled(doing, cause, err)
		}
		switch {
		case stored.Version == v:
			fence := stored
			fence.Revoked, fence.Event = nil, nil // a fence changes nothing
			err := m.store.UpdateKey(ctx, &fence)
			switch {
			case err == nil:
				return &notAppliedError{doing: doing, cause: cause}
			case errors.Is(err, ErrConflict), errors.Is(err, ErrOutcomeUnknown):
				continue // the lost write, or another, or the fence committed: look again
			case errors.Is(err, ErrKeyNotFound):
				return undecided(doing, cause, "the key was deleted since")
			default:
				return unsettled(doing, cause, err)
			}
		case want.Event != nil:
			// The key moved past v, so the lost write is over: while it
			// held the key's row nobody else could write it. Its event was
			// appended in the same step as its change, and names its time
			// and actor, so the trail tells whether it committed, even
			// when another caller made the same change or a Verify wrote
			// a last use since.
			if err := m.settledByEvent(ctx, doing, want, cause); err != nil {
				return err
			}
			want.Version = stored.Version
			return nil
		case stored.Version == v+1:
			// A write without an event (a purge's wipe). Version v+1 was
			// written by one compare-and-swap at v: ours
			// if it holds what we wrote. A new link or token digest is
			// random, so for Renew and CreateKey that is exact. Other
			// changes hold no random value, and another caller making the
			// same change at the same microsecond would write the same
			// record: for RedeemLink only RedeemedAt tells two
			// redemptions apart, so this residual could report a second
			// success for one link, if both processes read the clock at
			// the same microsecond and ours lost its COMMIT's answer.
			if sameContent(&stored, want) {
				want.Version = stored.Version
				return nil
			}
			return &notAppliedError{doing: doing, cause: cause}
		case stored.Version > v+1 && carries(&stored, before, want):
			want.Version = stored.Version
			return nil
		default:
			return undecided(doing, cause, "the key was changed again before it could be checked")
		}
	}
	return undecided(doing, cause, "the key kept changing while it was checked")
}

// settledByEvent returns nil if want's event is in the trail, and the
// lost write's failure if it is not.
func (m *Manager) settledByEvent(ctx context.Context, doing string, want *KeyRecord, cause error) error {
	committed, err := m.eventCommitted(ctx, want.Event)
	switch {
	case err != nil:
		return unsettled(doing, cause, err)
	case committed:
		return nil
	default:
		return &notAppliedError{doing: doing, cause: cause}
	}
}

// eventCommitted reports whether the audit trail holds want, the event a
// lost write appended if it committed: the same type, time (the writer's
// clock reading, to the microsecond), actor and details.
func (m *Manager) eventCommitted(ctx context.Context, want *Event) (bool, error) {
	after := ""
	for {
		page, err := m.store.Events(ctx, EventQuery{KeyID: want.KeyID, After: after, Limit: MaxEventPage})
		if err != nil {
			return false, err
		}
		for i := range page {
			e := &page[i]
			if e.Type == want.Type && e.At.Equal(want.At) && e.Actor == want.Actor &&
				e.Policy == want.Policy && e.OldTokenTTL == want.OldTokenTTL && slices.Equal(e.Fields, want.Fields) {
				return true, nil
			}
		}
		if len(page) < MaxEventPage {
			return false, nil
		}
		after = page[len(page)-1].Cursor
	}
}

// carries reports whether stored holds a random digest that want brought
// in over before: want's new link or new token. Only a record written
// after want committed can hold one, even after later changes.
func carries(stored, before, want *KeyRecord) bool {
	link := &want.Link.Digest
	newLink := want.HasLink && (!before.HasLink || !sameDigest(link, &before.Link.Digest))
	if newLink && stored.HasLink && sameDigest(link, &stored.Link.Digest) {
		return true
	}
	token := &want.Current.Digest
	newToken := !sameDigest(token, &before.Current.Digest) && !(before.HasOld && sameDigest(token, &before.Old.Digest))
	return newToken && (sameDigest(token, &stored.Current.Digest) || stored.HasOld && sameDigest(token, &stored.Old.Digest))
}

// sameContent reports whether a and b hold the same key, versions aside.
func sameContent(a, b *KeyRecord) bool {
	return a.ID == b.ID && a.Account == b.Account && a.Name == b.Name && a.Active == b.Active &&
		a.CreatedAt.Equal(b.CreatedAt) &&
		sameToken(&a.Current, &b.Current) &&
		a.HasOld == b.HasOld && (!a.HasOld || sameToken(&a.Old, &b.Old)) &&
		a.HasLink == b.HasLink && (!a.HasLink || sameLink(&a.Link, &b.Link)) &&
		a.RevokedTokenUsedAt.Equal(b.RevokedTokenUsedAt) &&
		sameFields(a, b)
}

func sameToken(a, b *TokenRecord) bool {
	return sameDigest(&a.Digest, &b.Digest) && a.CreatedAt.Equal(b.CreatedAt) && a.LastUsedAt.Equal(b.LastUsedAt) &&
		a.ExpiresAt.Equal(b.ExpiresAt)
}

func sameLink(a, b *LinkRecord) bool {
	return sameDigest(&a.Digest, &b.Digest) && subtle.ConstantTimeCompare(a.Sealed, b.Sealed) == 1 &&
		a.CreatedAt.Equal(b.CreatedAt) && a.ExpiresAt.Equal(b.ExpiresAt) && a.RedeemedAt.Equal(b.RedeemedAt) &&
		a.RevokedAt.Equal(b.RevokedAt)
}

// sameDigest compares digests in constant time, as every comparison of
// secret-derived values in the package is (S3).
func sameDigest(a, b *Digest) bool {
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// settleInsert finds out whether InsertKey of rec committed, after it
// failed with cause, by inserting rec again: its key ID (131 random bits)
// and digests are its own, so a duplicate means the first insert
// committed, and a success that rec is stored now. Either way the key
// exists as rec. On PostgreSQL the second insert waits for a lost first
// one still running on the server.
func (m *Manager) settleInsert(ctx context.Context, rec *KeyRecord, cause error) error {
	const doing = "create key"
	ctx, cancel := settleContext(ctx)
	defer cancel()
	for attempt := 1; attempt <= maxUpdateAttempts; attempt++ {
		// A key that is gone may have been made and deleted since, by
		// someone who saw it: its events tell, and inserting it again
		// would bring a deleted key back.
		_, err := m.store.Key(ctx, rec.ID)
		if errors.Is(err, ErrKeyNotFound) {
			var events []Event
			events, err = m.store.Events(ctx, EventQuery{KeyID: rec.ID, Limit: 1})
			if err == nil && len(events) > 0 {
				rec.Version = 1
				return nil
			}
		}
		if err != nil && !errors.Is(err, ErrKeyNotFound) {
			return unsettled(doing, cause, err)
		}
		again := *rec
		err = m.store.InsertKey(ctx, &again)
		switch {
		case err == nil, errors.Is(err, ErrDuplicate):
			rec.Version = 1
			return nil
		case errors.Is(err, ErrOutcomeUnknown):
			continue
		default:
			return unsettled(doing, cause, err)
		}
	}
	return undecided(doing, cause, "inserting it again kept failing the same way")
}

// settleDelete finds out whether DeleteKey of id committed, after it
// failed with cause. Key IDs are never reused, so a missing key means it
// did. A key still there is fenced, so that a lost delete cannot land
// after DeleteKey reported that it failed.
func (m *Manager) settleDelete(ctx context.Context, id string, ev *Event, cause error) error {
	const doing = "delete key"
	ctx, cancel := settleContext(ctx)
	defer cancel()
	// A key that is gone was deleted by this call only if its event is the
	// one in the trail; another caller's delete leaves this one refused,
	// as it would have been without the lost answer.
	deletedHere := func() error {
		if ev == nil {
			return nil
		}
		committed, err := m.eventCommitted(ctx, ev)
		switch {
		case err != nil:
			return unsettled(doing, cause, err)
		case committed:
			return nil
		default:
			return ErrKeyNotFound
		}
	}
	for attempt := 1; attempt <= maxUpdateAttempts; attempt++ {
		stored, err := m.store.Key(ctx, id)
		switch {
		case errors.Is(err, ErrKeyNotFound):
			return deletedHere()
		case err != nil:
			return unsettled(doing, cause, err)
		}
		stored.Revoked, stored.Event = nil, nil // a fence changes nothing
		err = m.store.UpdateKey(ctx, &stored)
		switch {
		case err == nil:
			return &notAppliedError{doing: doing, cause: cause}
		case errors.Is(err, ErrKeyNotFound):
			return deletedHere()
		case errors.Is(err, ErrConflict), errors.Is(err, ErrOutcomeUnknown):
			continue
		default:
			return unsettled(doing, cause, err)
		}
	}
	return undecided(doing, cause, "the key kept changing while it was checked")
}
