package tokens

import (
	"context"
	"fmt"
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
