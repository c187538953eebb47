-- tokens: one row per key. A key's current token, old token and latest
-- share link move into the key's row, so that Verify reads one narrow row
-- by primary key instead of joining three tables, and every write of a
-- key is one UPDATE of that row.
--
-- Instances of a release older than this migration read and write the
-- tables it drops: stop them before migrating.

CREATE TABLE tokens_keys_v3 (
    id                   text COLLATE "C" PRIMARY KEY,
    account              text COLLATE "C" NOT NULL,
    name                 text             NOT NULL,
    active               boolean          NOT NULL,
    created_at           timestamptz      NOT NULL,
    -- Optimistic concurrency version: 1 on insert, +1 on every write.
    version              bigint           NOT NULL CONSTRAINT tokens_keys_version_check CHECK (version > 0),

    -- The current token: its SHA-256, never the token.
    current_digest       bytea            NOT NULL CONSTRAINT tokens_keys_current_digest_check
                                          CHECK (octet_length(current_digest) = 32),
    current_created_at   timestamptz      NOT NULL,
    current_last_used_at timestamptz,

    -- The old token after a renewal that keeps it; all NULL when none.
    old_digest           bytea            CONSTRAINT tokens_keys_old_digest_check
                                          CHECK (octet_length(old_digest) = 32),
    old_created_at       timestamptz,
    old_last_used_at     timestamptz,
    -- When the old token stops verifying by itself; NULL: never.
    old_expires_at       timestamptz,

    -- The latest share link, found by the digest of its ID; all NULL when
    -- none. link_sealed is the token sealed under a key derived from the
    -- link ID (not from its digest), NULL once redeemed, revoked or
    -- purged.
    link_digest          bytea            CONSTRAINT tokens_keys_link_digest_check
                                          CHECK (octet_length(link_digest) = 32),
    link_sealed          bytea,
    link_created_at      timestamptz,
    link_expires_at      timestamptz,
    link_redeemed_at     timestamptz,
    link_revoked_at      timestamptz,

    -- An old token and a link are whole or absent. (Constraints are named
    -- for tokens_keys, the table's name once renamed below.)
    CONSTRAINT tokens_keys_old_check CHECK ((old_digest IS NULL) = (old_created_at IS NULL)
        AND (old_digest IS NOT NULL OR (old_last_used_at IS NULL AND old_expires_at IS NULL))),
    CONSTRAINT tokens_keys_link_check CHECK ((link_digest IS NULL) = (link_created_at IS NULL)
        AND (link_digest IS NULL) = (link_expires_at IS NULL)
        AND (link_digest IS NOT NULL OR (link_sealed IS NULL AND link_redeemed_at IS NULL AND link_revoked_at IS NULL)))
);

-- A key without its current token would be lost by an inner join: the
-- left join makes the NOT NULL constraint fail the migration instead.
INSERT INTO tokens_keys_v3 (
    id, account, name, active, created_at, version,
    current_digest, current_created_at, current_last_used_at,
    old_digest, old_created_at, old_last_used_at,
    link_digest, link_sealed, link_created_at, link_expires_at, link_redeemed_at)
SELECT k.id, k.account, k.name, k.active, k.created_at, k.version,
    c.digest, c.created_at, c.last_used_at,
    o.digest, o.created_at, o.last_used_at,
    l.digest, l.sealed, l.created_at, l.expires_at, l.redeemed_at
FROM tokens_keys k
LEFT JOIN tokens_tokens c ON c.key_id = k.id AND c.slot = 'current'
LEFT JOIN tokens_tokens o ON o.key_id = k.id AND o.slot = 'old'
LEFT JOIN tokens_links l ON l.key_id = k.id;

DROP TABLE tokens_links;
DROP TABLE tokens_tokens;
DROP TABLE tokens_keys;
ALTER TABLE tokens_keys_v3 RENAME TO tokens_keys;
ALTER INDEX tokens_keys_v3_pkey RENAME TO tokens_keys_pkey;

-- Keys of one account, oldest first.
CREATE INDEX tokens_keys_account_idx ON tokens_keys (account, created_at, id);
-- A key by the digest of its latest link; NULLs (no link) do not collide.
CREATE UNIQUE INDEX tokens_keys_link_idx ON tokens_keys (link_digest);
-- Links whose sealed token awaits purging once expired.
CREATE INDEX tokens_keys_link_expiry_idx ON tokens_keys (link_expires_at, id)
    WHERE link_redeemed_at IS NULL AND link_sealed IS NOT NULL;
