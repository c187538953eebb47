-- tokens: keys as products use them (R19-R24) and leak reports (S10).
--
-- scopes is the key's sorted scopes joined by single spaces (a scope has
-- no space), '' for none; metadata a JSON object, '' for none. Neither
-- holds a secret. Token digests are unique across keys (R23): a token is
-- found by its digest alone, current or old, and a deleted one by the
-- digest of its digest. The store also refuses a digest that is current
-- in one key and old in another (in its writes: no index can say it).

ALTER TABLE tokens_keys ADD COLUMN scopes     TEXT NOT NULL DEFAULT '';
ALTER TABLE tokens_keys ADD COLUMN metadata   TEXT NOT NULL DEFAULT '';
ALTER TABLE tokens_keys ADD COLUMN expires_at INTEGER;
ALTER TABLE tokens_keys ADD COLUMN leaked_at  INTEGER;

CREATE UNIQUE INDEX tokens_keys_current_digest_idx ON tokens_keys (current_digest);
CREATE UNIQUE INDEX tokens_keys_old_digest_idx ON tokens_keys (old_digest);
CREATE INDEX tokens_revoked_digest_idx ON tokens_revoked (digest);

-- The fields an UpdateKey changed (space separated), and where a leaked
-- token was found; '' otherwise.
ALTER TABLE tokens_events ADD COLUMN fields TEXT NOT NULL DEFAULT '';
ALTER TABLE tokens_events ADD COLUMN source TEXT NOT NULL DEFAULT '';
ALTER TABLE tokens_events ADD COLUMN url    TEXT NOT NULL DEFAULT '';
