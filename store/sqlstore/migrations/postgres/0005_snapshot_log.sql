-- tokens: a change log without a global write lock (P1).
--
-- Until now every write took the one row of tokens_change_counter as its
-- last statement and held it until COMMIT, so that change numbers followed
-- commit order: a writer that stalled before its COMMIT stopped every
-- writer of every key. From here on each change and each event carries
-- the ID of its transaction (xid8, which does not wrap) and an order
-- number from a sequence, which holds no lock; a reader's position is a
-- snapshot, and what changed since is what the new snapshot sees
-- committed and the old one did not (after PgQ).
--
-- Order numbers continue above the counter, so an audit Cursor handed out
-- before this migration (a decimal number n) still pages on: it stands for
-- the events after n, all of which are either migrated (visible in every
-- later snapshot) or numbered above n.
--
-- Instances of a release older than this migration update the counter
-- this migration drops: stop them before migrating.

-- One sequence numbers both: an event takes the number of its change.
CREATE SEQUENCE tokens_changes_seq AS bigint OWNED BY tokens_changes.seq;
SELECT setval('tokens_changes_seq', n + 1, false)
FROM (SELECT greatest(
    (SELECT seq FROM tokens_change_counter),
    (SELECT coalesce(max(seq), 0) FROM tokens_changes),
    (SELECT coalesce(max(seq), 0) FROM tokens_events)) AS n) AS counted;

-- Rows already there take the ID of this migration's transaction.
ALTER TABLE tokens_changes
    ALTER COLUMN seq SET DEFAULT nextval('tokens_changes_seq'),
    ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();
ALTER TABLE tokens_events
    ALTER COLUMN seq SET DEFAULT nextval('tokens_changes_seq'),
    ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX tokens_changes_xid_idx ON tokens_changes (xid);
CREATE INDEX tokens_events_xid_idx ON tokens_events (xid);

-- Changes of transactions below xid may have been trimmed: a reader whose
-- snapshot's xmin is below it may have missed some and drops its cache.
-- Only the trim writes this row, with SKIP LOCKED; readers read it
-- without a lock. If the counter's trim removed changes already, they
-- count as older than this migration.
CREATE TABLE tokens_changes_horizon (
    id  boolean PRIMARY KEY DEFAULT true CHECK (id),
    xid xid8    NOT NULL
);
INSERT INTO tokens_changes_horizon (id, xid)
SELECT true, CASE WHEN (SELECT count(*) FROM tokens_changes) = c.seq THEN '1'::xid8 ELSE pg_current_xact_id() END
FROM tokens_change_counter c;

DROP TABLE tokens_change_counter;
