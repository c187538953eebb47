package tokens

import (
	"context"
	"fmt"
	"time"
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

// event completes the event template of a change of rec at now: nil if the
// change appends none (an empty Type).
func event(tmpl Event, actor string, rec *KeyRecord, now time.Time) *Event {
	if tmpl.Type == "" {
		return nil
	}
	ev := tmpl
	ev.At, ev.KeyID, ev.Account, ev.Actor = now, rec.ID, rec.Account, actor
	return &ev
}

// PurgeEvents deletes the events of the audit trail older than olderThan,
// and returns how many. The library keeps events until told: call it from
// a periodic job with the retention your audit policy asks for.
func (m *Manager) PurgeEvents(ctx context.Context, olderThan time.Duration) (int, error) {
	if ctx == nil {
		return 0, ErrNilContext
	}
	if olderThan < 0 {
		return 0, invalidOption("PurgeEvents: olderThan must not be negative")
	}
	n, err := m.store.PurgeEvents(ctx, m.now().Add(-olderThan))
	if err != nil {
		return n, fmt.Errorf("tokens: purge events: %w", err)
	}
	return n, nil
}
