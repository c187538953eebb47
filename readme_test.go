package tokens_test

import (
	"hash/crc32"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens"
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

// TestREADMEPartnerPatternMatchesTokens: the pattern and the checksum the
// README gives secret scanning partners describe the tokens the Manager
// issues, under the default prefix and another.
func TestREADMEPartnerPatternMatchesTokens(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	_, rest, ok := strings.Cut(string(readme), "the pattern is\n\n```\n")
	require.True(t, ok, "the README gives no partner pattern")
	pattern, _, _ := strings.Cut(rest, "\n```")
	for _, prefix := range []string{"tok", "acme2"} {
		re := regexp.MustCompile(strings.Replace(pattern, "tok", prefix, 1))
		f := newFixture(t, tokens.WithTokenPrefix(prefix))
		for range 50 {
			token := f.issued().Token
			require.Equal(t, []string{token}, re.FindAllString("API_KEY="+token+"\n", -1))
			head, sum := token[:len(token)-6], token[len(token)-6:]
			require.Equal(t, readmeChecksum(crc32.ChecksumIEEE([]byte(head))), sum, "the checksum is not as the README says")
		}
	}
}

// readmeChecksum is the checksum as the README describes it: a base62
// number in 0-9A-Za-z, most significant digit first, padded to 6.
func readmeChecksum(crc uint32) string {
	const digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	out := []byte("000000")
	v := uint64(crc)
	for i := len(out) - 1; v > 0; i-- {
		out[i] = digits[v%62]
		v /= 62
	}
	return string(out)
}
