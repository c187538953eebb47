package testenv

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// RequireOneWinner checks that exactly one of the calls whose errors are
// errs succeeded and that call i, if it lost, failed with an error
// matching loss(i); it returns the winner's index. Call it on the test
// goroutine, once the racing goroutines have reported.
func RequireOneWinner(t testing.TB, errs []error, loss func(i int) error) int {
	t.Helper()
	winner := -1
	for i, err := range errs {
		if err == nil {
			require.Equal(t, -1, winner, "calls %d and %d both succeeded", winner, i)
			winner = i
			continue
		}
		require.ErrorIs(t, err, loss(i), "call %d", i)
	}
	require.NotEqual(t, -1, winner, "no call succeeded")
	return winner
}

// Always is a loss function for RequireOneWinner: every loser fails with
// err.
func Always(err error) func(int) error {
	return func(int) error { return err }
}
