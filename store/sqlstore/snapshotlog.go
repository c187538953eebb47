package sqlstore

import (
	"context"
	"database/sql"
	"strconv"
	"strings"

	"github.com/keyrenew/tokens"
)

// snapshotLog is the change log of PostgreSQL, after PgQ: no row that
// every writer updates, so a writer that stalls before its COMMIT delays
// only the writes of its own key (P1).
//
// Each row of tokens_changes and tokens_events carries the ID of the
// transaction that wrote it (xid, pg_current_xact_id(), a 64-bit xid8
// that does not wrap) and an order number from a sequence (seq; nextval
// holds no lock). A reader's position is a snapshot (pg_current_snapshot(),
// text "xmin:xmax:xip,..."): the writes after S0 as of S1 are the rows
// visible in S1 and not in S0. Every transaction that commits is visible in
// every snapshot taken after its COMMIT, so a reader that goes from
// snapshot to snapshot meets each write exactly once, however late it
// commits. S1 and the rows are read in one statement, which PostgreSQL
// runs on one snapshot, so nothing commits between them.
//
// A transaction that stays open elsewhere in the cluster with an xid
// keeps the snapshots' xmin low: the xid range a read scans grows until it
// ends, and nothing is skipped.
type snapshotLog struct{}

// emptySnapshot sees no transaction: everything is after it. It is where
// a reader with no position starts, and what a Cursor of the counter that
// PostgreSQL stores used before migration 0005 (a decimal event number)
// stands for: every event migrated is visible in any later snapshot, and
// every later event is numbered above it.
const emptySnapshot = "1:1:"

func (snapshotLog) append(ctx context.Context, s *Store, tx *sql.Tx, id string, ev *tokens.Event) (logged, error) {
	// The order number, which the change and its event share, is taken
	// now, after the key's row lock (the write's first statement): within
	// one key, numbers follow commit order.
	stmtID, args := insertChange, []any{id}
	if ev != nil {
		stmtID, args = insertChangeEvent, []any{s.d.time(ev.At), id, ev.KeyID, ev.Account,
			string(ev.Type), ev.Actor, int64(ev.Policy), int64(ev.OldTokenTTL),
			strings.Join(ev.Fields, " "), ev.Source, ev.URL}
	}
	stmt, err := s.txStmt(ctx, tx, stmtID)
	if err != nil {
		return logged{}, err
	}
	var seq int64
	err = stmt.QueryRowContext(ctx, args...).Scan(&seq)
	return logged{seq: seq}, err
}

// committed trims tokens_changes every trimEvery changes, after the COMMIT
// of the write that reached the number, in a statement of its own: it
// locks the horizon's row with SKIP LOCKED, so it never waits, and no
// writer ever waits for it. A failed trim is left to the next.
func (snapshotLog) committed(ctx context.Context, s *Store, l logged) {
	if l.seq%trimEvery == 0 {
		_, _ = s.exec(ctx, nil, trimChanges, keptChanges)
	}
}

// changes: Complete is false when a trim removed rows that a reader at
// since may not have seen (the horizon passed since's xmin), or since is
// not a snapshot this database could have given.
func (snapshotLog) changes(ctx context.Context, s *Store, since tokens.ChangePosition) (tokens.Changes, error) {
	s0, valid := string(since), true
	if s0 == "" {
		s0 = emptySnapshot
	} else if !validSnapshot(s0) {
		s0, valid = emptySnapshot, false
	}
	rows, err := s.query(ctx, nil, selectChanges, s0)
	if err != nil {
		return tokens.Changes{}, err
	}
	defer rows.Close()
	var (
		changes  tokens.Changes
		latest   string
		complete bool
		found    bool
	)
	for rows.Next() {
		var id sql.NullString
		if err := rows.Scan(&latest, &complete, &id); err != nil {
			return tokens.Changes{}, err
		}
		found = true
		if id.Valid && valid {
			changes.Keys = append(changes.Keys, id.String)
		}
	}
	if err := rows.Err(); err != nil {
		return tokens.Changes{}, err
	}
	if !found {
		return tokens.Changes{}, errHorizonMissing
	}
	changes.Latest, changes.Complete = tokens.ChangePosition(latest), valid && complete
	if !changes.Complete {
		changes.Keys = nil
	}
	return changes, nil
}

// events: a Cursor is "S0/S1/seq": the event is in the batch of events
// visible in snapshot S1 and not in S0, which a page goes through in seq
// order, and seq is its order number. Within one key seq follows commit
// order, and a batch holds every event of a key that committed before
// the later of its events in it, so each key's events come in order. Once
// a batch is exhausted, the page goes on with the next: the events visible
// in a new snapshot and not in S1. A reader that has seen a Cursor has
// seen every event visible in its S0, and a transaction that commits late
// is visible in the S1 of a later batch: none is skipped.
func (snapshotLog) events(ctx context.Context, s *Store, q tokens.EventQuery) ([]tokens.Event, error) {
	c, ok := parseEventCursor(q.After)
	if !ok {
		return nil, tokens.ErrInvalidCursor
	}
	events, err := batchEvents(ctx, s, q, c, q.Limit)
	if err != nil || c.s1 == "" || len(events) >= q.Limit {
		return events, err
	}
	more, err := batchEvents(ctx, s, q, eventCursor{s0: c.s1}, q.Limit-len(events))
	return append(events, more...), err
}

// eventCursor is a parsed Cursor; s1 "" stands for a snapshot taken by the
// query itself.
type eventCursor struct {
	s0, s1 string
	seq    int64
}

func parseEventCursor(c string) (eventCursor, bool) {
	if n, ok := parseCount(c); ok { // "" or a Cursor from before migration 0005
		return eventCursor{s0: emptySnapshot, seq: n}, true
	}
	parts := strings.Split(c, "/")
	if len(parts) != 3 || !validSnapshot(parts[0]) || !validSnapshot(parts[1]) {
		return eventCursor{}, false
	}
	seq, ok := parseCount(parts[2])
	if !ok || parts[2] == "" {
		return eventCursor{}, false
	}
	return eventCursor{s0: parts[0], s1: parts[1], seq: seq}, true
}

// batchEvents returns at most limit events of the batch after c, and sets
// each Cursor.
func batchEvents(ctx context.Context, s *Store, q tokens.EventQuery, c eventCursor, limit int) ([]tokens.Event, error) {
	var s1 any
	if c.s1 != "" {
		s1 = c.s1
	}
	id, args := selectEvents, []any{c.s0, s1, c.seq, limit}
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
		var (
			e        eventRow
			snapshot string
		)
		if err := rows.Scan(e.fields(&snapshot)...); err != nil {
			return nil, err
		}
		if !e.seq.Valid { // the batch has no (more) events
			continue
		}
		events = append(events, e.event(c.s0+"/"+snapshot+"/"+strconv.FormatInt(e.seq.Int64, 10)))
	}
	return events, rows.Err()
}

// validSnapshot reports whether s is the text of a pg_snapshot as
// PostgreSQL writes it: "xmin:xmax:xip,...", decimal numbers without
// leading zeros, 1 <= xmin <= xip < xmax in ascending order. Checked
// before the database sees it, so that a malformed position or cursor is
// not a syntax error.
func validSnapshot(s string) bool {
	fields := strings.Split(s, ":")
	if len(fields) != 3 {
		return false
	}
	xmin, ok1 := parseXid(fields[0])
	xmax, ok2 := parseXid(fields[1])
	if !ok1 || !ok2 || xmin > xmax {
		return false
	}
	if fields[2] == "" {
		return true
	}
	prev := xmin
	for i, f := range strings.Split(fields[2], ",") {
		xip, ok := parseXid(f)
		if !ok || xip < prev || (i > 0 && xip == prev) || xip >= xmax {
			return false
		}
		prev = xip
	}
	return true
}

// parseXid reads a canonical decimal xid8 >= 1 that fits a bigint: the
// epoch-extended IDs of PostgreSQL stay far below 2^63.
func parseXid(s string) (int64, bool) {
	n, ok := parseCount(s)
	return n, ok && s != "" && n >= 1
}
