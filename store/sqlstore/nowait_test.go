package sqlstore_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens"
)

// noWaitDeadline bounds the changes that must not wait for a held lock:
// the deadline is the failure detector (a change that waits for the lock
// fails with it), never a pause.
const noWaitDeadline = 5 * time.Second

// TestChangesOfOtherKeysDoNotWait (P1): on PostgreSQL, while another
// connection holds a key's row, or every row of any other table of the
// schema (its single-row tables among them), or stalls before the COMMIT
// of a write of its own, every change of other keys and of new keys
// completes, and so do the reads of the change log and the audit trail.
// The stalled write, committed late, is then reported by the change log
// and the tail from positions taken before it committed.
func TestChangesOfOtherKeysDoNotWait(t *testing.T) {
	for _, b := range backends {
		if !strings.HasPrefix(b.Name, "postgres") {
			continue // SQLite has one writer at a time by design
		}
		t.Run(b.Name, func(t *testing.T) {
			dsn := b.NewDSN(t)
			db := open(t, b.Driver, dsn)
			st := migrated(t, db)
			m, err := tokens.NewManager(st, tokens.WithShareBaseURL(shareBase))
			require.NoError(t, err)
			ctx := t.Context()
			held, _, err := m.CreateKey(ctx, tokens.KeySpec{Account: "acme", Name: "held"})
			require.NoError(t, err)
			admin := open(t, b.Driver, dsn)

			var tables []string
			require.NoError(t, admin.SelectContext(ctx, &tables, `SELECT table_name FROM information_schema.tables
				WHERE table_schema = current_schema() ORDER BY table_name`))
			singleRow := 0
			for _, table := range tables {
				var rows int
				require.NoError(t, admin.GetContext(ctx, &rows, `SELECT count(*) FROM `+table))
				if rows == 1 && table != "tokens_keys" && table != "tokens_changes" && table != "tokens_events" {
					singleRow++
				}
				lock := `SELECT 1 FROM ` + table + ` FOR UPDATE`
				if table == "tokens_keys" {
					lock = `SELECT 1 FROM tokens_keys WHERE id = $1 FOR UPDATE`
				}
				t.Run("Holding/"+table, func(t *testing.T) {
					_, release := pgLock(t, admin, lock, held.ID)
					defer release()
					requireOthersChange(t, st, m)
				})
			}
			require.Positive(t, singleRow, "the schema's single-row tables were not found")

			t.Run("StalledWriter", func(t *testing.T) {
				since, err := st.Changes(ctx, "")
				require.NoError(t, err)
				tail := auditAllEvents(t, m, tokens.EventQuery{})
				cursor := tail[len(tail)-1].Cursor

				tx, err := admin.BeginTxx(ctx, nil)
				require.NoError(t, err)
				defer tx.Rollback()
				stall := func(query string, args ...any) {
					_, err := tx.ExecContext(ctx, query, args...)
					require.NoError(t, err)
				}
				// A write as the store makes it, up to its COMMIT.
				stall(`UPDATE tokens_keys SET version = version + 1 WHERE id = $1`, held.ID)
				stall(`WITH c AS (INSERT INTO tokens_changes (key_id) VALUES ($1) RETURNING seq)
					INSERT INTO tokens_events (at, key_id, account, type, actor, policy, old_token_ttl)
					SELECT now(), $1, 'acme', 'key_deactivated', 'stalled', 0, 0 FROM c`, held.ID)
				others := requireOthersChange(t, st, m)

				before, err := st.Changes(ctx, since.Latest)
				require.NoError(t, err)
				require.True(t, before.Complete)
				require.NotContains(t, before.Keys, held.ID, "an uncommitted change was reported")
				require.Subset(t, before.Keys, others)
				page, err := m.Events(ctx, tokens.EventQuery{After: cursor, Limit: 1000})
				require.NoError(t, err)
				require.NotEmpty(t, page)
				for _, e := range page {
					require.NotEqual(t, "stalled", e.Actor, "an uncommitted event was read")
				}
				cursor = page[len(page)-1].Cursor

				require.NoError(t, tx.Commit()) // late: after the others, and after the readers passed
				after, err := st.Changes(ctx, before.Latest)
				require.NoError(t, err)
				require.True(t, after.Complete)
				require.Equal(t, []string{held.ID}, after.Keys, "the late change was skipped")
				late, err := m.Events(ctx, tokens.EventQuery{After: cursor, Limit: 1000})
				require.NoError(t, err)
				require.Len(t, late, 1, "the late event was skipped")
				require.Equal(t, "stalled", late[0].Actor)
			})
		})
	}
}

// requireOthersChange makes changes of a new key and of another key, and
// reads the change log and the trail, each within noWaitDeadline, and
// returns the IDs of the keys it changed.
func requireOthersChange(t *testing.T, st tokens.ChangeLog, m *tokens.Manager) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), noWaitDeadline)
	defer cancel()
	key, link, err := m.CreateKey(ctx, tokens.KeySpec{Account: "globex", Name: "other"})
	require.NoError(t, err, "CreateKey waited")
	_, err = m.RedeemLink(ctx, link.URL)
	require.NoError(t, err, "RedeemLink waited")
	link2, err := m.Renew(ctx, key.ID, tokens.RenewOptions{})
	require.NoError(t, err, "Renew waited")
	_, err = m.RedeemLink(ctx, link2.URL)
	require.NoError(t, err, "RedeemLink waited")
	require.NoError(t, m.DeleteOld(ctx, key.ID), "DeleteOld waited")
	require.NoError(t, m.Deactivate(ctx, key.ID), "Deactivate waited")
	other, _, err := m.CreateKey(ctx, tokens.KeySpec{Account: "globex", Name: "deleted"})
	require.NoError(t, err, "CreateKey waited")
	require.NoError(t, m.DeleteKey(ctx, other.ID), "DeleteKey waited")
	_, err = st.Changes(ctx, "")
	require.NoError(t, err, "Changes waited")
	_, err = m.Events(ctx, tokens.EventQuery{Limit: 10})
	require.NoError(t, err, "Events waited")
	return []string{key.ID, other.ID}
}
