package tokens

import (
	"hash/crc32"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestIsBase62MatchesTheAlphabet puts every byte value at every place of
// an eight-byte word and of the tail that isBase62 checks one by one.
func TestIsBase62MatchesTheAlphabet(t *testing.T) {
	for c := range 256 {
		want := strings.IndexByte(alphabet, byte(c)) >= 0
		for pos := range 19 {
			b := []byte("0123456789abcdefXYZ")
			b[pos] = byte(c)
			require.Equal(t, want, isBase62(string(b)), "%q at %d", c, pos)
		}
	}
	require.True(t, isBase62(""))
}

// TestCRC32OfEveryLength covers each path of crc32Of: eight bytes at a
// time, four, and one.
func TestCRC32OfEveryLength(t *testing.T) {
	s := "tok_" + strings.Repeat("Zz9q", 20)
	for n := range len(s) {
		require.Equal(t, crc32.ChecksumIEEE([]byte(s[:n])), crc32Of(s[:n]), "length %d", n)
	}
}
