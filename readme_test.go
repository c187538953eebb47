package tokens_test

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestREADMEProgramIsTheServiceExample keeps the README's complete program
// true: it must be examples/service/main.go, which the build compiles.
func TestREADMEProgramIsTheServiceExample(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	program, err := os.ReadFile("examples/service/main.go")
	require.NoError(t, err)
	require.True(t, strings.Contains(string(readme), "```go\n"+string(program)+"```\n"),
		"README.md must quote examples/service/main.go whole, in a ```go block")
}
