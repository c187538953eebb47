-- tokens: numbered writes, so that each process's verification cache can
-- ask which keys changed since it last looked (tokens.ChangeLog).
--
-- Every UpdateKey and DeleteKey transaction, as its last statement before
-- COMMIT, increments the one row of tokens_change_counter and records the
-- key under the new number. The row lock on the counter makes the numbers
-- commit in order: number n+1 cannot be taken before n has committed, so a
-- reader that sees the counter at n sees every change numbered up to n.

CREATE TABLE tokens_change_counter (
    id  boolean PRIMARY KEY DEFAULT true CHECK (id),
    seq bigint  NOT NULL CHECK (seq >= 0)
);
INSERT INTO tokens_change_counter (id, seq) VALUES (true, 0);

-- The latest changes; older ones are trimmed, and a reader further behind
-- drops its whole cache.
CREATE TABLE tokens_changes (
    seq    bigint           PRIMARY KEY,
    key_id text COLLATE "C" NOT NULL
);
