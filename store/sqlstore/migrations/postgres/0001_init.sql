-- tokens: keys, their tokens and their latest share link.
--
-- No column holds a secret: tokens are kept as SHA-256 digests, a link as
-- the digest of its ID plus the token sealed under a key that cannot be
-- derived from that digest. Times come from the application's clock.
-- Identifiers use the "C" collation: they are opaque, compared and ordered
-- byte by byte.

CREATE TABLE tokens_keys (
    id         text COLLATE "C" PRIMARY KEY,
    account    text COLLATE "C" NOT NULL,
    name       text             NOT NULL,
    active     boolean          NOT NULL,
    created_at timestamptz      NOT NULL,
    -- Optimistic concurrency version: 1 on insert, +1 on every write.
    version    bigint           NOT NULL CHECK (version > 0)
);

-- Keys of one account, oldest first.
CREATE INDEX tokens_keys_account_idx ON tokens_keys (account, created_at, id);

-- A key's current token and, after a renewal that keeps it, its old token.
CREATE TABLE tokens_tokens (
    key_id       text COLLATE "C" NOT NULL REFERENCES tokens_keys (id) ON DELETE CASCADE,
    slot         text             NOT NULL CHECK (slot IN ('current', 'old')),
    digest       bytea            NOT NULL UNIQUE CHECK (octet_length(digest) = 32),
    created_at   timestamptz      NOT NULL,
    last_used_at timestamptz,
    PRIMARY KEY (key_id, slot)
);

-- A key's latest share link, found by the digest of the link ID.
CREATE TABLE tokens_links (
    key_id      text COLLATE "C" PRIMARY KEY REFERENCES tokens_keys (id) ON DELETE CASCADE,
    digest      bytea            NOT NULL UNIQUE CHECK (octet_length(digest) = 32),
    -- The sealed token; NULL once redeemed or purged.
    sealed      bytea,
    created_at  timestamptz      NOT NULL,
    expires_at  timestamptz      NOT NULL,
    redeemed_at timestamptz
);

-- Links whose sealed token awaits purging once expired.
CREATE INDEX tokens_links_expiry_idx ON tokens_links (expires_at, key_id)
    WHERE redeemed_at IS NULL AND sealed IS NOT NULL;
