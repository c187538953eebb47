package tokens

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"
)

// A share link is the configured base followed by a link ID of linkIDLen
// base62 characters from crypto/rand (S1, S5). The store never sees the ID:
// it keeps lookupDigest(id) to find the link, and the token sealed with
// AES-GCM under sealKey(id, secret). Both come from HKDF with separate
// labels, so the stored digest does not yield the sealing key (S2). With a
// sealing secret (S8) the secret is HKDF's salt, so the link ID alone, from
// a used link in a chat log or browser history, opens no copy of the sealed
// token that a backup, a WAL file or a replica kept after the wipe.
const (
	lookupLabel       = "keyrenew/tokens link lookup v1"
	sealLabel         = "keyrenew/tokens link seal v1"
	sealedSecretLabel = "keyrenew/tokens link seal with secret v2"
	sealAADTag        = "keyrenew/tokens sealed token v1 "

	// MinSealingSecretLen is the shortest secret WithSealingSecret takes:
	// 256 bits, as from crypto/rand.
	MinSealingSecretLen = 32
)

func lookupDigest(linkID string) Digest {
	var d Digest
	copy(d[:], hkdfKey(linkID, nil, lookupLabel))
	return d
}

// sealKey is the AES-256 key a link's token is sealed under: from the link
// ID alone without a sealing secret, from both with one.
func sealKey(linkID string, secret []byte) []byte {
	if secret == nil {
		return hkdfKey(linkID, nil, sealLabel)
	}
	return hkdfKey(linkID, secret, sealedSecretLabel)
}

func hkdfKey(linkID string, salt []byte, label string) []byte {
	key, err := hkdf.Key(sha256.New, []byte(linkID), salt, label, sha256.Size)
	if err != nil {
		panic("tokens: hkdf: " + err.Error()) // only for lengths over 255*32 bytes
	}
	return key
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("tokens: seal: %w", err)
	}
	return cipher.NewGCM(block)
}

// sealToken seals token under the link's key and the sealing secret (nil:
// none), bound to the key ID so that a sealed value copied to another key's
// row does not open.
func sealToken(secret []byte, linkID, keyID, token string) ([]byte, error) {
	aead, err := newGCM(sealKey(linkID, secret))
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(token)+aead.Overhead())
	if _, err := io.ReadFull(rand.Reader, nonce); err != nil {
		return nil, fmt.Errorf("tokens: seal: %w", err)
	}
	return aead.Seal(nonce, nonce, []byte(token), []byte(sealAADTag+keyID)), nil
}

// openToken opens the token sealed in rec's link and checks it against the
// current token's digest. It tries each sealing secret, current first, and
// then no secret, for links sealed before a secret was configured: GCM's
// authentication tells which one sealed it. It returns ErrLinkSealed when
// none opens it.
func openToken(secrets [][]byte, linkID string, rec *KeyRecord) (string, error) {
	sealed := rec.Link.Sealed
	for i := 0; i <= len(secrets); i++ {
		var secret []byte // after the secrets: none
		if i < len(secrets) {
			secret = secrets[i]
		}
		aead, err := newGCM(sealKey(linkID, secret))
		if err != nil {
			return "", err
		}
		if len(sealed) < aead.NonceSize() {
			break
		}
		plain, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], []byte(sealAADTag+rec.ID))
		if err != nil {
			continue
		}
		digest := tokenDigest(string(plain))
		if subtle.ConstantTimeCompare(digest[:], rec.Current.Digest[:]) != 1 {
			return "", fmt.Errorf("tokens: sealed token of key %s is not its current token", rec.ID)
		}
		return string(plain), nil
	}
	return "", fmt.Errorf("%w (key %s)", ErrLinkSealed, rec.ID)
}
