// Package scantest stands in for a secret scanning service in tests: it
// signs reports as GitHub's partner program does, with keys of the tests'
// own, and serves their public keys document.
package scantest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
)

// A Key is a signing key of the scanner's, named ID in the document.
type Key struct {
	ID string
	// Current is the document's is_current.
	Current bool
	priv    *ecdsa.PrivateKey
}

// NewKey returns a new current ECDSA P-256 key.
func NewKey(t testing.TB, id string) *Key {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &Key{ID: id, Current: true, priv: priv}
}

// Sign returns the signature header of body: base64 of the ASN.1 DER
// ECDSA signature of its SHA-256.
func (k *Key) Sign(body []byte) string {
	digest := sha256.Sum256(body)
	sig, err := ecdsa.SignASN1(rand.Reader, k.priv, digest[:])
	if err != nil {
		panic("scantest: signing: " + err.Error()) // only if crypto/rand fails
	}
	return base64.StdEncoding.EncodeToString(sig)
}

func (k *Key) pem() string {
	der, err := x509.MarshalPKIXPublicKey(&k.priv.PublicKey)
	if err != nil {
		panic("scantest: " + err.Error()) // a P-256 key always marshals
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// A KeysServer serves the public keys document of its keys,
// {"public_keys": [{"key_identifier", "key", "is_current"}]}, and counts
// the fetches. It is closed when the test ends.
type KeysServer struct {
	*httptest.Server
	Fetches atomic.Int32

	mu   sync.Mutex
	keys []*Key
}

// NewKeysServer serves keys.
func NewKeysServer(t testing.TB, keys ...*Key) *KeysServer {
	t.Helper()
	s := &KeysServer{keys: keys}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// SetKeys replaces the keys the document lists, as a rotation does.
func (s *KeysServer) SetKeys(keys ...*Key) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = keys
}

type entry struct {
	ID        string `json:"key_identifier"`
	Key       string `json:"key"`
	IsCurrent bool   `json:"is_current"`
}

func (s *KeysServer) serve(w http.ResponseWriter, _ *http.Request) {
	s.Fetches.Add(1)
	s.mu.Lock()
	doc := struct {
		PublicKeys []entry `json:"public_keys"`
	}{PublicKeys: []entry{}}
	for _, k := range s.keys {
		doc.PublicKeys = append(doc.PublicKeys, entry{k.ID, k.pem(), k.Current})
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(doc)
}
