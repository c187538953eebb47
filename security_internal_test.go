package tokens

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"hash/crc32"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestS2_LookupDigestIsNotTheSealKey checks, from inside the package, that
// the digest a store keeps to find a link is not, and does not give, the
// key its token is sealed under (S2): separate HKDF labels.
func TestS2_LookupDigestIsNotTheSealKey(t *testing.T) {
	require.NotEqual(t, lookupLabel, sealLabel)
	for range 20 {
		linkID, err := randomBase62(linkIDLen)
		require.NoError(t, err)
		lookup := lookupDigest(linkID)
		seal := sealKey(linkID, nil)
		require.Len(t, seal, 32, "AES-256")
		require.NotEqual(t, lookup[:], seal)
		plainHash := sha256.Sum256([]byte(linkID))
		require.NotEqual(t, plainHash[:], seal)
		require.NotEqual(t, plainHash, [32]byte(lookup))
		hashedLookup := sha256.Sum256(lookup[:])
		require.NotEqual(t, hashedLookup[:], seal)

		token, err := newToken(DefaultTokenPrefix)
		require.NoError(t, err)
		rec := &KeyRecord{ID: "key_internal", Current: TokenRecord{Digest: tokenDigest(token)}}
		rec.Link.Sealed, err = sealToken(nil, linkID, rec.ID, token)
		require.NoError(t, err)

		got, err := openToken(nil, linkID, rec)
		require.NoError(t, err)
		require.Equal(t, token, got)

		require.NoError(t, openWith(seal, rec))
		require.Error(t, openWith(lookup[:], rec), "the stored lookup digest opens the sealed token")

		other, err := randomBase62(linkIDLen)
		require.NoError(t, err)
		_, err = openToken(nil, other, rec)
		require.Error(t, err, "another link ID opens the sealed token")

		moved := *rec
		moved.ID = "key_other"
		_, err = openToken(nil, linkID, &moved)
		require.Error(t, err, "a sealed token copied to another key opens")
	}
}

func openWith(key []byte, rec *KeyRecord) error {
	block, err := aes.NewCipher(key)
	if err != nil {
		return err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return err
	}
	ns := aead.NonceSize()
	_, err = aead.Open(nil, rec.Link.Sealed[:ns], rec.Link.Sealed[ns:], []byte(sealAADTag+rec.ID))
	return err
}

func TestCRC32OfMatchesHashCRC32(t *testing.T) {
	for _, s := range []string{"", "a", "tok_" + strings.Repeat("Zz9", 20), strings.Repeat("x", 200)} {
		require.Equal(t, crc32.ChecksumIEEE([]byte(s)), crc32Of(s), "%q", s)
	}
}
