package tokens

import (
	"context"
	"fmt"
	"time"
)

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

type actorKey struct{}

// WithActor returns a copy of ctx that names who acts: the events of the
// changes made with it carry actor (R17). actor is at most 200 bytes of
// text, like a key's name; a Manager refuses a call whose actor is not.
//
// Given a nil ctx it returns nil, which every Manager method refuses with
// ErrNilContext (R18), rather than panic.
func WithActor(ctx context.Context, actor string) context.Context {
	if ctx == nil {
		return nil
	}
	return context.WithValue(ctx, actorKey{}, actor)
}

// actorOf returns the actor of ctx, checked like a key's name.
func actorOf(ctx context.Context) (string, error) {
	actor, _ := ctx.Value(actorKey{}).(string)
	if err := checkText("actor", actor); err != nil {
		return "", invalidOption("WithActor: the actor must be at most 200 bytes of text with no control characters")
	}
	return actor, nil
}

// Events returns the events that q selects, oldest first (R17). A reader
// that follows Cursors from the start sees every event exactly once, in
// each key's order, also while many processes write: a store numbers
// events in the order they commit.
func (m *Manager) Events(ctx context.Context, q EventQuery) ([]Event, error) {
	if ctx == nil {
		return nil, ErrNilContext
	}
	switch {
	case q.Limit < 0 || q.Limit > MaxEventPage:
		return nil, fmt.Errorf("%w: EventQuery.Limit must be 0 to %d", ErrInvalidOption, MaxEventPage)
	case q.Limit == 0:
		q.Limit = DefaultEventPage
	}
	if err := checkText("account", q.Account); err != nil {
		return nil, err
	}
	events, err := m.store.Events(ctx, q)
	if err != nil {
		return nil, storeError("events", err)
	}
	return events, nil
}
