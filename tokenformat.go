package tokens

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"hash/crc32"
)

// Tokens look like "tok_<body><checksum>": a prefix, an underscore, 43 base62
// characters of crypto/rand (256 bits, S1) and a 6-character base62 CRC32 of
// everything before it, the way GitHub tokens carry one. The checksum lets
// secret scanners tell a real token from random text, and lets Verify reject
// a mistyped or truncated token without reading the store.
const (
	alphabet      = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	secretLen     = 43 // 43 base62 characters carry 256.03 bits
	checksumLen   = 6  // 62^6 > 2^32
	keyIDBodyLen  = 22 // 131 bits: unique without coordination
	maxPrefixLen  = 16
	maxTokenLen   = maxPrefixLen + 1 + secretLen + checksumLen
	maxKeyIDLen   = 64
	linkIDLen     = secretLen
	base62Reject  = 256 - 256%len(alphabet) // bytes at or above it would bias the draw
	randomBufSize = 64
)

var base62Index = func() (idx [256]int8) {
	for i := range idx {
		idx[i] = -1
	}
	for i := 0; i < len(alphabet); i++ {
		idx[alphabet[i]] = int8(i)
	}
	return idx
}()

// randomBase62 returns n characters drawn uniformly from the base62 alphabet
// with crypto/rand, by rejection sampling so that no character is likelier
// than another.
func randomBase62(n int) (string, error) {
	out := make([]byte, 0, n)
	var buf [randomBufSize]byte
	for len(out) < n {
		if _, err := rand.Read(buf[:]); err != nil {
			return "", fmt.Errorf("tokens: reading random bytes: %w", err)
		}
		for _, b := range buf {
			if int(b) < base62Reject && len(out) < n {
				out = append(out, alphabet[int(b)%len(alphabet)])
			}
		}
	}
	return string(out), nil
}

func newToken(prefix string) (string, error) {
	body, err := randomBase62(secretLen)
	if err != nil {
		return "", err
	}
	head := prefix + "_" + body
	return head + checksum(head), nil
}

func newKeyID(prefix string) (string, error) {
	body, err := randomBase62(keyIDBodyLen)
	if err != nil {
		return "", err
	}
	return prefix + "_" + body, nil
}

// checksum encodes the CRC32 of s as checksumLen base62 characters.
func checksum(s string) string {
	var out [checksumLen]byte
	writeChecksum(&out, crc32Of(s))
	return string(out[:])
}

func writeChecksum(out *[checksumLen]byte, sum uint32) {
	v := uint64(sum)
	for i := checksumLen - 1; i >= 0; i-- {
		out[i] = alphabet[v%uint64(len(alphabet))]
		v /= uint64(len(alphabet))
	}
}

// wellFormedToken reports whether token has the token format and a correct
// checksum, under any valid prefix, so that tokens issued before a prefix
// change keep verifying. It neither allocates nor reads the store.
func wellFormedToken(token string) bool {
	n := len(token)
	if n > maxTokenLen || n < 1+1+secretLen+checksumLen {
		return false
	}
	head := token[:n-checksumLen]
	under := len(head) - secretLen - 1
	if under < 1 || head[under] != '_' || !validPrefix(head[:under]) || !isBase62(token[under+1:]) {
		return false
	}
	return decodeChecksum(token[n-checksumLen:]) == uint64(crc32Of(head))
}

// The bounds of a token that ImportKey takes as it is (R24), in whatever
// format the system it comes from gave it.
const (
	MinImportedTokenLen = 16
	MaxImportedTokenLen = 512
)

// verifiableToken reports whether Verify and VerifyToken take token to the
// store: a token in the library's format with a correct checksum, or a
// token that does not claim that format (one ImportKey may have taken) of
// MinImportedTokenLen to MaxImportedTokenLen printable ASCII characters
// other than space. A token that claims the format but fails its checksum
// is mistyped or made up, whatever else it could be.
func verifiableToken(token string) bool {
	if wellFormedToken(token) {
		return true
	}
	return !claimsFormat(token) && printableToken(token)
}

// claimsFormat reports whether token looks like a token of the library's
// format, under any valid prefix: a prefix, an underscore and
// secretLen+checksumLen base62 characters, checksum aside.
func claimsFormat(token string) bool {
	n := len(token)
	under := n - secretLen - checksumLen - 1
	if n > maxTokenLen || under < 1 {
		return false
	}
	return token[under] == '_' && validPrefix(token[:under]) && isBase62(token[under+1:])
}

// printableToken reports whether token is MinImportedTokenLen to
// MaxImportedTokenLen bytes of printable ASCII other than space.
func printableToken(token string) bool {
	if len(token) < MinImportedTokenLen || len(token) > MaxImportedTokenLen {
		return false
	}
	for i := 0; i < len(token); i++ {
		if c := token[i]; c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

// decodeChecksum reads checksumLen base62 characters as a number; the
// caller checked that they are base62. Each number has one fixed-width
// encoding, so comparing numbers compares encodings, without the divisions
// of encoding. The three pairs are independent, so that their
// multiplications overlap.
func decodeChecksum(s string) uint64 {
	_ = s[checksumLen-1]
	const b = uint64(len(alphabet))
	d := func(i int) uint64 { return uint64(base62Index[s[i]]) }
	return (d(0)*b+d(1))*(b*b*b*b) + (d(2)*b+d(3))*(b*b) + (d(4)*b + d(5))
}

// crc32Of is the IEEE CRC32 of s, slicing by 8 as hash/crc32's portable
// code does. hash/crc32 itself dispatches through a function variable,
// which makes any buffer handed to it escape: Verify would allocate for
// every token it checks.
func crc32Of(s string) uint32 {
	t := &crc32Slicing8
	crc := ^uint32(0)
	for ; len(s) >= 8; s = s[8:] {
		crc ^= uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
		crc = t[0][s[7]] ^ t[1][s[6]] ^ t[2][s[5]] ^ t[3][s[4]] ^
			t[4][crc>>24] ^ t[5][crc>>16&0xff] ^ t[6][crc>>8&0xff] ^ t[7][crc&0xff]
	}
	if len(s) >= 4 {
		crc ^= uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
		crc = t[0][crc>>24] ^ t[1][crc>>16&0xff] ^ t[2][crc>>8&0xff] ^ t[3][crc&0xff]
		s = s[4:]
	}
	for i := 0; i < len(s); i++ {
		crc = t[0][byte(crc)^s[i]] ^ crc>>8
	}
	return ^crc
}

var crc32Slicing8 = func() (t [8][256]uint32) {
	t[0] = *crc32.IEEETable
	for i := range 256 {
		crc := t[0][i]
		for j := 1; j < 8; j++ {
			crc = t[0][crc&0xff] ^ crc>>8
			t[j][i] = crc
		}
	}
	return t
}()

// validKeyID reports whether id could be a key ID: 1 to 64 URL-safe
// characters. Prefixes may change over a key's life, so only the form is
// checked, never the prefix.
func validKeyID(id string) bool {
	if len(id) == 0 || len(id) > maxKeyIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; base62Index[c] < 0 && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

// isBase62 reports whether s holds only base62 characters. It checks eight
// at a time, without a branch per character: Verify checks every token.
func isBase62(s string) bool {
	var bad uint64
	for ; len(s) >= 8; s = s[8:] {
		bad |= notBase62(le64(s))
	}
	for i := 0; i < len(s); i++ {
		bad |= uint64(base62Index[s[i]]) & bytesHigh // -1 sets the high bit
	}
	return bad == 0
}

const (
	bytesOne  = 0x0101010101010101
	bytesHigh = 0x8080808080808080
)

// notBase62 sets the high bit of each byte of x that is not a base62
// character. Each range test adds a constant that carries into a byte's
// high bit exactly when the byte is at or above a bound; with the high
// bits cleared first, no carry crosses into the next byte.
func notBase62(x uint64) uint64 {
	low := x &^ bytesHigh
	digit := (low + (0x80-'0')*bytesOne) &^ (low + (0x7f-'9')*bytesOne)
	folded := low | 0x20*bytesOne // upper case to lower, and nothing else into a-z
	letter := (folded + (0x80-'a')*bytesOne) &^ (folded + (0x7f-'z')*bytesOne)
	return (x | ^(digit | letter)) & bytesHigh
}

// le64 reads the first eight bytes of s as a little-endian number, which
// the compiler turns into one load.
func le64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// tokenDigest is what the store keeps of a token (S2). Tokens carry 256
// random bits, so a fast hash is safe: there is nothing to brute-force. The
// token is copied into a stack buffer rather than converted, so that the
// Verify path does not allocate.
func tokenDigest(token string) Digest {
	var buf [MaxImportedTokenLen]byte
	if len(token) > len(buf) {
		return sha256.Sum256([]byte(token))
	}
	return sha256.Sum256(buf[:copy(buf[:], token)])
}

// validPrefix reports whether p can start a token or key ID: 1 to 16
// characters, a lowercase letter followed by lowercase letters and digits.
func validPrefix(p string) bool {
	if len(p) < 1 || len(p) > 16 || p[0] < 'a' || p[0] > 'z' {
		return false
	}
	for i := 1; i < len(p); i++ {
		if c := p[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
