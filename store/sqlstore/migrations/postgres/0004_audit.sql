-- tokens: reuse detection (R16) and the audit trail (R17).
--
-- tokens_revoked remembers each deleted token of a key, by a digest of its
-- digest (never the digest a live token had, never the token), until the
-- key is deleted or the retention passes. tokens_events is the audit
-- trail: each event is numbered by the change counter of its write
-- (0002_changes.sql), taken in the same transaction, so events are
-- numbered in commit order and a reader that follows the numbers never
-- skips one that commits late.

ALTER TABLE tokens_keys ADD COLUMN revoked_used_at timestamptz;

CREATE TABLE tokens_revoked (
    key_id     text COLLATE "C" NOT NULL,
    digest     bytea            NOT NULL CHECK (octet_length(digest) = 32),
    revoked_at timestamptz      NOT NULL,
    PRIMARY KEY (key_id, digest)
);
CREATE INDEX tokens_revoked_at_idx ON tokens_revoked (revoked_at);

CREATE TABLE tokens_events (
    seq           bigint           PRIMARY KEY,
    at            timestamptz      NOT NULL,
    key_id        text COLLATE "C" NOT NULL,
    account       text COLLATE "C" NOT NULL,
    type          text             NOT NULL,
    actor         text             NOT NULL,
    -- The renewal's policy and old token TTL (nanoseconds), for
    -- token_renewed; 0 otherwise.
    policy        smallint         NOT NULL,
    old_token_ttl bigint           NOT NULL
);
CREATE INDEX tokens_events_key_idx ON tokens_events (key_id, seq);
CREATE INDEX tokens_events_account_idx ON tokens_events (account, seq);
CREATE INDEX tokens_events_at_idx ON tokens_events (at);
