package tokenhttp

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/keyrenew/tokens"
)

const (
	// keysMaxAge is how long a fetched public keys document is used
	// before the next request fetches it again.
	keysMaxAge = time.Hour
	// keysRefetchAfter is how long after a fetch an unknown key
	// identifier makes the handler fetch the document again: a scanner
	// that rotated its key is believed within seconds, and requests with
	// made-up identifiers cannot make the handler hammer the scanner.
	keysRefetchAfter = 10 * time.Second
	// maxKeysDocument bounds the public keys document, in bytes.
	maxKeysDocument = 1 << 20
)

var (
	// errUnknownKey: the signing key's identifier is not among the
	// scanner's current public keys.
	errUnknownKey = errors.New("tokenhttp: the signing key is not a current public key of the scanner")
	// errBadSignature: the signature does not verify, or is not base64 DER.
	errBadSignature = errors.New("tokenhttp: the body's signature does not verify")
)

// publicKeys is a scanner's public keys document, fetched and cached.
type publicKeys struct {
	url    string
	client *http.Client
	clock  tokens.Clock

	mu      sync.Mutex // held while fetching: one fetch at a time
	keys    map[string]*ecdsa.PublicKey
	fetched time.Time // zero: never
}

// verify checks that sig, base64 of an ASN.1 DER ECDSA signature, is a
// signature of body's SHA-256 by the current key named id.
func (p *publicKeys) verify(ctx context.Context, id, sig string, body []byte) error {
	der, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		return errBadSignature
	}
	key, err := p.key(ctx, id)
	if err != nil {
		return err
	}
	digest := sha256.Sum256(body)
	if !ecdsa.VerifyASN1(key, digest[:], der) {
		return errBadSignature
	}
	return nil
}

// key returns the current key named id, fetching the document when it is
// older than keysMaxAge, or when id is unknown and the document is older
// than keysRefetchAfter.
func (p *publicKeys) key(ctx context.Context, id string) (*ecdsa.PublicKey, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.clock.Now()
	age := now.Sub(p.fetched)
	key, known := p.keys[id]
	if p.fetched.IsZero() || age >= keysMaxAge || !known && age >= keysRefetchAfter {
		keys, err := p.fetch(ctx)
		if err != nil && p.keys == nil {
			return nil, err
		}
		if err == nil {
			p.keys, p.fetched = keys, now
		}
		key, known = p.keys[id]
		if err != nil && !known {
			return nil, err // a stale document serves the keys it knows
		}
	}
	if !known {
		return nil, errUnknownKey
	}
	return key, nil
}

// fetch reads the document: {"public_keys": [{"key_identifier",
// "key" (PEM), "is_current"}]}, keeping the current ECDSA P-256 keys.
func (p *publicKeys) fetch(ctx context.Context) (map[string]*ecdsa.PublicKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return nil, fmt.Errorf("tokenhttp: fetch public keys: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("tokenhttp: fetch public keys: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("tokenhttp: fetch public keys from %s: status %d", p.url, resp.StatusCode)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxKeysDocument+1))
	if err != nil {
		return nil, fmt.Errorf("tokenhttp: fetch public keys: %w", err)
	}
	if len(raw) > maxKeysDocument {
		return nil, fmt.Errorf("tokenhttp: public keys document from %s is over %d bytes", p.url, maxKeysDocument)
	}
	return parsePublicKeys(raw)
}

func parsePublicKeys(raw []byte) (map[string]*ecdsa.PublicKey, error) {
	var doc struct {
		PublicKeys []struct {
			ID        string `json:"key_identifier"`
			Key       string `json:"key"`
			IsCurrent bool   `json:"is_current"`
		} `json:"public_keys"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("tokenhttp: public keys document: %w", err)
	}
	keys := map[string]*ecdsa.PublicKey{}
	for _, k := range doc.PublicKeys {
		if !k.IsCurrent || k.ID == "" {
			continue // a key that is not current signs nothing we take
		}
		if key := parseP256(k.Key); key != nil {
			keys[k.ID] = key
		}
	}
	return keys, nil
}

// parseP256 returns the ECDSA P-256 key of a PEM "PUBLIC KEY" block; nil
// if it is not one.
func parseP256(s string) *ecdsa.PublicKey {
	block, _ := pem.Decode([]byte(s))
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil
	}
	key, ok := pub.(*ecdsa.PublicKey)
	if !ok || key.Curve != elliptic.P256() {
		return nil
	}
	return key
}
