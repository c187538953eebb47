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
	var want [checksumLen]byte
	writeChecksum(&want, crc32Of(head))
	return string(want[:]) == token[n-checksumLen:]
}

// crc32Of and tokenDigest copy a string into a stack buffer rather than
// convert it, so that the Verify path does not allocate.
func crc32Of(s string) uint32 {
	var buf [maxTokenLen]byte
	if len(s) > len(buf) {
		return crc32.ChecksumIEEE([]byte(s))
	}
	return crc32.ChecksumIEEE(buf[:copy(buf[:], s)])
}

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

func isBase62(s string) bool {
	for i := 0; i < len(s); i++ {
		if base62Index[s[i]] < 0 {
			return false
		}
	}
	return true
}

// tokenDigest is what the store keeps of a token (S2). Tokens carry 256
// random bits, so a fast hash is safe: there is nothing to brute-force.
func tokenDigest(token string) Digest {
	var buf [maxTokenLen]byte
	if len(token) > len(buf) {
		return sha256.Sum256([]byte(token))
	}
	return sha256.Sum256(buf[:copy(buf[:], token)])
}
