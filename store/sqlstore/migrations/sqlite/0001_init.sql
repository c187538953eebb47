-- tokens: keys, their tokens and their latest share link.
--
-- No column holds a secret: tokens are kept as SHA-256 digests, a link as
-- the digest of its ID plus the token sealed under a key that cannot be
-- derived from that digest. Times come from the application's clock and
-- are stored as Unix microseconds (UTC), so they compare and sort as
-- integers. Booleans are 0 or 1.

CREATE TABLE tokens_keys (
    id         TEXT    NOT NULL PRIMARY KEY,
    account    TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    active     INTEGER NOT NULL CHECK (active IN (0, 1)),
    created_at INTEGER NOT NULL,
    -- Optimistic concurrency version: 1 on insert, +1 on every write.
    version    INTEGER NOT NULL CHECK (version > 0)
) STRICT;

-- Keys of one account, oldest first.
CREATE INDEX tokens_keys_account_idx ON tokens_keys (account, created_at, id);

-- A key's current token and, after a renewal that keeps it, its old token.
CREATE TABLE tokens_tokens (
    key_id       TEXT    NOT NULL REFERENCES tokens_keys (id) ON DELETE CASCADE,
    slot         TEXT    NOT NULL CHECK (slot IN ('current', 'old')),
    digest       BLOB    NOT NULL UNIQUE CHECK (length(digest) = 32),
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    PRIMARY KEY (key_id, slot)
) STRICT;

-- A key's latest share link, found by the digest of the link ID.
CREATE TABLE tokens_links (
    key_id      TEXT    NOT NULL PRIMARY KEY REFERENCES tokens_keys (id) ON DELETE CASCADE,
    digest      BLOB    NOT NULL UNIQUE CHECK (length(digest) = 32),
    -- The sealed token; NULL once redeemed or purged.
    sealed      BLOB,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    redeemed_at INTEGER
) STRICT;

-- Links whose sealed token awaits purging once expired.
CREATE INDEX tokens_links_expiry_idx ON tokens_links (expires_at, key_id)
    WHERE redeemed_at IS NULL AND sealed IS NOT NULL;
