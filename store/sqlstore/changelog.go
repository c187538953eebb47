package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/keyrenew/tokens"
)

// changeLog is how a dialect logs the writes of keys, for
// tokens.ChangeLog and the audit trail, and reads them back. One design
// per dialect: SQLite, whose writers take turns, numbers writes with a
// counter (counterLog); PostgreSQL, whose writers of different keys must
// never wait for each other (P1), tells writes apart by their transaction
// IDs and reads them by snapshots (snapshotLog).
type changeLog interface {
	// append logs the write of key id in tx, with its event if any, as
	// the transaction's last statements.
	append(ctx context.Context, s *Store, tx *sql.Tx, id string, ev *tokens.Event) (logged, error)
	// committed runs after the COMMIT of a write that append logged, on
	// the writer's goroutine but in no transaction. It reports nothing:
	// the write has committed whatever it does.
	committed(ctx context.Context, s *Store, l logged)
	changes(ctx context.Context, s *Store, since tokens.ChangePosition) (tokens.Changes, error)
	events(ctx context.Context, s *Store, q tokens.EventQuery) ([]tokens.Event, error)
}

// logged is what append tells committed: the order number of the change.
type logged struct{ seq int64 }

// keptChanges is how many changes the store keeps at least; every
// trimEvery changes, it forgets older ones.
const (
	keptChanges = 10_000
	trimEvery   = 1_000
)

// counterLog numbers every write with the one row of
// tokens_change_counter, taken as the transaction's last statement and
// held until COMMIT, so that numbers commit in order. On SQLite this
// costs nothing: a write transaction holds the database's one write lock
// anyway. A position, like a Cursor, is the decimal number.
type counterLog struct{}

func (counterLog) append(ctx context.Context, s *Store, tx *sql.Tx, id string, ev *tokens.Event) (logged, error) {
	stmt, err := s.txStmt(ctx, tx, countChange)
	if err != nil {
		return logged{}, err
	}
	var seq int64
	if err := stmt.QueryRowContext(ctx).Scan(&seq); err != nil {
		return logged{}, err
	}
	if _, err := s.exec(ctx, tx, insertChange, seq, id); err != nil {
		return logged{}, err
	}
	if ev != nil {
		_, err := s.exec(ctx, tx, insertEvent, seq, s.d.time(ev.At), ev.KeyID, ev.Account,
			string(ev.Type), ev.Actor, int64(ev.Policy), int64(ev.OldTokenTTL),
			strings.Join(ev.Fields, " "), ev.Source, ev.URL)
		if err != nil {
			return logged{}, err
		}
	}
	// The trim holds nothing another writer waits for: there is one.
	if seq%trimEvery == 0 {
		_, err = s.exec(ctx, tx, trimChanges, seq-keptChanges)
	}
	return logged{seq: seq}, err
}

func (counterLog) committed(context.Context, *Store, logged) {}

// changes: a reader more than keptChanges behind is told that the list
// is not complete.
func (counterLog) changes(ctx context.Context, s *Store, since tokens.ChangePosition) (tokens.Changes, error) {
	n, valid := parseCount(string(since))
	rows, err := s.query(ctx, nil, selectChanges, n)
	if err != nil {
		return tokens.Changes{}, err
	}
	defer rows.Close()
	var (
		changes tokens.Changes
		latest  int64
	)
	for rows.Next() {
		var id sql.NullString
		if err := rows.Scan(&latest, &id); err != nil {
			return tokens.Changes{}, err
		}
		if id.Valid {
			changes.Keys = append(changes.Keys, id.String)
		}
	}
	if err := rows.Err(); err != nil {
		return tokens.Changes{}, err
	}
	changes.Latest = tokens.ChangePosition(strconv.FormatInt(latest, 10))
	// Every number after since is there, unless trimmed: then fewer are.
	changes.Complete = valid && n <= latest && int64(len(changes.Keys)) == latest-n
	if !changes.Complete {
		changes.Keys = nil
	}
	return changes, nil
}

// events: a Cursor is the decimal number of the event's write.
func (counterLog) events(ctx context.Context, s *Store, q tokens.EventQuery) ([]tokens.Event, error) {
	after, ok := parseCount(q.After)
	if !ok {
		return nil, tokens.ErrInvalidCursor
	}
	id, args := selectEvents, []any{after, q.Limit}
	switch {
	case q.KeyID != "":
		id, args = selectKeyEvents, append(args, q.Account, q.KeyID)
	case q.Account != "":
		id, args = selectAccountEvents, append(args, q.Account)
	}
	rows, err := s.query(ctx, nil, id, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	events := []tokens.Event{}
	for rows.Next() {
		var e eventRow
		if err := rows.Scan(e.fields()...); err != nil {
			return nil, err
		}
		events = append(events, e.event(strconv.FormatInt(e.seq.Int64, 10)))
	}
	return events, rows.Err()
}

// parseCount reads a position or cursor of counterLog: "" (0) or the
// canonical decimal of a number >= 0.
func parseCount(s string) (int64, bool) {
	if s == "" {
		return 0, true
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != s {
		return 0, false
	}
	return n, true
}

// eventRow is an event as the selects of events return it, after
// whatever columns a dialect puts before (see fields).
type eventRow struct {
	seq         sql.NullInt64 // NULL: no event (an outer join found none)
	e           tokens.Event
	typ         string
	policy, ttl int64
	changed     string // the changed fields, space-separated
}

func (r *eventRow) fields(before ...any) []any {
	return append(before, &r.seq, (*timeColumn)(&r.e.At), &nullString{&r.e.KeyID}, &nullString{&r.e.Account},
		&nullString{&r.typ}, &nullString{&r.e.Actor}, &nullInt{&r.policy}, &nullInt{&r.ttl},
		&nullString{&r.changed}, &nullString{&r.e.Source}, &nullString{&r.e.URL})
}

func (r *eventRow) event(cursor string) tokens.Event {
	e := r.e
	e.Cursor = cursor
	e.Type, e.Policy, e.OldTokenTTL = tokens.EventType(r.typ), tokens.OldTokenPolicy(r.policy), time.Duration(r.ttl)
	if r.changed != "" {
		e.Fields = strings.Split(r.changed, " ")
	}
	return e
}

// nullString and nullInt scan a column that is NULL only on a row that
// the caller skips.
type nullString struct{ s *string }

func (n *nullString) Scan(v any) error {
	var ns sql.NullString
	if err := ns.Scan(v); err != nil {
		return err
	}
	*n.s = ns.String
	return nil
}

type nullInt struct{ n *int64 }

func (n *nullInt) Scan(v any) error {
	var ni sql.NullInt64
	if err := ni.Scan(v); err != nil {
		return err
	}
	*n.n = ni.Int64
	return nil
}

// errHorizonMissing: the one row of tokens_changes_horizon was deleted.
var errHorizonMissing = fmt.Errorf("sqlstore: the row of tokens_changes_horizon is missing")
