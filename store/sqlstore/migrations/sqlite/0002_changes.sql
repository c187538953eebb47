-- tokens: numbered writes, so that each process's verification cache can
-- ask which keys changed since it last looked (tokens.ChangeLog).
--
-- Every UpdateKey and DeleteKey transaction increments the one row of
-- tokens_change_counter and records the key under the new number. SQLite
-- has one writer at a time, so numbers commit in order.

CREATE TABLE tokens_change_counter (
    id  INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL CHECK (seq >= 0)
) STRICT;
INSERT INTO tokens_change_counter (id, seq) VALUES (1, 0);

-- The latest changes; older ones are trimmed, and a reader further behind
-- drops its whole cache.
CREATE TABLE tokens_changes (
    seq    INTEGER NOT NULL PRIMARY KEY,
    key_id TEXT    NOT NULL
) STRICT;
