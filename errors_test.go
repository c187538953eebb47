package tokens_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens"
)

// TestAPI_SentinelErrorsAreDistinct checks that the errors of the life
// cycle, the links and Verify (docs/rules.md) are each their own sentinel,
// prefixed like the package's other errors. errors_internal_test.go holds
// every exported error to a class and to being distinct.
func TestAPI_SentinelErrorsAreDistinct(t *testing.T) {
	sentinels := []error{
		tokens.ErrKeyNotFound, tokens.ErrRenewalPending, tokens.ErrOldTokenPending, tokens.ErrNoOldToken,
		tokens.ErrUndoUnavailable, tokens.ErrInvalidLink, tokens.ErrLinkNotFound, tokens.ErrLinkUsed,
		tokens.ErrLinkExpired, tokens.ErrInvalidCredentials, tokens.ErrKeyInactive,
	}
	for i, a := range sentinels {
		require.True(t, strings.HasPrefix(a.Error(), "tokens: "), a.Error())
		for j, b := range sentinels {
			if i != j {
				require.False(t, errors.Is(a, b), "%v is %v", a, b)
			}
		}
	}
}
