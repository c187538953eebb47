package sqlstore_test

import (
	"errors"
	"fmt"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/internal/testenv"
	"github.com/keyrenew/tokens/store/storetest"
)

// TestWritesOfDifferentKeysNeverConflictUnderStricterIsolation: every
// write updates the one change counter row, so under REPEATABLE READ or
// SERIALIZABLE writers of different keys would fail each other with
// serialization failures. The store asks for READ COMMITTED whatever the
// role's default.
func TestWritesOfDifferentKeysNeverConflictUnderStricterIsolation(t *testing.T) {
	for _, driver := range []string{"postgres", "pgx"} {
		for _, level := range []string{"serializable"} {
			t.Run(driver+"/"+level, func(t *testing.T) {
				u, err := url.Parse(testenv.PostgresSchema(t))
				require.NoError(t, err)
				q := u.Query()
				if driver == "pgx" {
					q.Set("default_transaction_isolation", level)
				} else {
					q.Set("options", "-c default_transaction_isolation="+level)
				}
				u.RawQuery = q.Encode()
				st := migrated(t, open(t, driver, u.String()))
				const writers = 4
				for i := range writers {
					rec := storetest.NewRecord(fmt.Sprintf("k%d", i))
					require.NoError(t, st.InsertKey(t.Context(), &rec))
				}
				failures := make(chan error, writers*25)
				race(writers, func(i int) (struct{}, error) {
					id := fmt.Sprintf("k%d", i)
					for n := range 25 {
						rec, err := st.Key(t.Context(), id)
						if err != nil {
							return struct{}{}, err
						}
						rec.Name = fmt.Sprintf("write %d", n)
						if err := st.UpdateKey(t.Context(), &rec); err != nil {
							failures <- err
						}
					}
					return struct{}{}, nil
				})
				close(failures)
				for err := range failures {
					t.Errorf("a write of its own key failed: %v (a conflict: %v)", err, errors.Is(err, tokens.ErrConflict))
				}
			})
		}
	}
}
