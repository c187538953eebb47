-- tokens: reuse detection (R16) and the audit trail (R17).
--
-- tokens_revoked remembers each deleted token of a key, by a digest of its
-- digest (never the digest a live token had, never the token), until the
-- key is deleted or the retention passes. tokens_events is the audit
-- trail: each event is numbered by the change counter of its write
-- (0002_changes.sql), taken in the same transaction; SQLite has one writer
-- at a time, so events are numbered in commit order.

ALTER TABLE tokens_keys ADD COLUMN revoked_used_at INTEGER;

CREATE TABLE tokens_revoked (
    key_id     TEXT    NOT NULL,
    digest     BLOB    NOT NULL CHECK (length(digest) = 32),
    revoked_at INTEGER NOT NULL,
    PRIMARY KEY (key_id, digest)
) STRICT;
CREATE INDEX tokens_revoked_at_idx ON tokens_revoked (revoked_at);

CREATE TABLE tokens_events (
    seq           INTEGER NOT NULL PRIMARY KEY,
    at            INTEGER NOT NULL,
    key_id        TEXT    NOT NULL,
    account       TEXT    NOT NULL,
    type          TEXT    NOT NULL,
    actor         TEXT    NOT NULL,
    -- The renewal's policy and old token TTL (nanoseconds), for
    -- token_renewed; 0 otherwise.
    policy        INTEGER NOT NULL,
    old_token_ttl INTEGER NOT NULL
) STRICT;
CREATE INDEX tokens_events_key_idx ON tokens_events (key_id, seq);
CREATE INDEX tokens_events_account_idx ON tokens_events (account, seq);
CREATE INDEX tokens_events_at_idx ON tokens_events (at);
