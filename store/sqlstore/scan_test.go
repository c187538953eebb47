package sqlstore_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/internal/scantest"
	"github.com/keyrenew/tokens/tokenhttp"
)

// scanService is a secret scanning handler over a Manager, with a signing
// key of the tests' own served as the scanner's public keys document.
type scanService struct {
	h   http.Handler
	key *scantest.Key
}

func newScanService(t testing.TB, m *tokens.Manager) *scanService {
	t.Helper()
	key := scantest.NewKey(t, "test-key")
	keys := scantest.NewKeysServer(t, key)
	h, err := tokenhttp.NewSecretScanningHandler(m, tokenhttp.WithPublicKeysURL(keys.URL), tokenhttp.WithHTTPClient(keys.Client()),
		tokenhttp.WithErrorReporter(func(_ *http.Request, err error) { t.Errorf("secret scanning: %v", err) }))
	require.NoError(t, err)
	return &scanService{h: h, key: key}
}

// report posts a signed report of toks and returns the labels GitHub
// would get, in order.
func (s *scanService) report(ctx context.Context, toks ...string) ([]string, error) {
	entries := make([]map[string]string, len(toks))
	for i, tok := range toks {
		entries[i] = map[string]string{"token": tok, "type": "keyrenew_token", "source": "content",
			"url": fmt.Sprintf("https://github.com/octo/app/blob/main/f%d", i)}
	}
	body, err := json.Marshal(entries)
	if err != nil {
		return nil, err
	}
	r := httptest.NewRequestWithContext(ctx, http.MethodPost, "/secret-scanning", bytes.NewReader(body))
	r.Header.Set("Github-Public-Key-Identifier", s.key.ID)
	r.Header.Set("Github-Public-Key-Signature", s.key.Sign(body))
	w := httptest.NewRecorder()
	s.h.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		return nil, fmt.Errorf("secret scanning answered %d: %s", w.Code, strings.TrimSpace(w.Body.String()))
	}
	var feedback []struct{ Label string }
	if err := json.Unmarshal(w.Body.Bytes(), &feedback); err != nil {
		return nil, err
	}
	labels := make([]string, len(feedback))
	for i, f := range feedback {
		labels[i] = f.Label
	}
	return labels, nil
}

// TestSecretScanningAnswersABatchOf1000InTime: GitHub waits 30 s for an
// answer; a batch of 1,000 tokens, 300 of them ours, is answered within
// that deadline on every backend, each token labelled.
func TestSecretScanningAnswersABatchOf1000InTime(t *testing.T) {
	const batch, ours = 1000, 300
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			c := newCluster(t, b, 1)
			m := c.inst[0].m
			var toks []string
			for i := range ours {
				legacy := fmt.Sprintf("legacy_%04d_%s", i, strings.Repeat("x", 20))
				_, err := m.ImportKey(t.Context(), tokens.ImportSpec{KeySpec: tokens.KeySpec{Name: "leaky"}, Token: legacy})
				require.NoError(t, err)
				toks = append(toks, legacy)
			}
			for i := ours; i < batch; i++ {
				toks = append(toks, fmt.Sprintf("unknown_%04d_%s", i, strings.Repeat("y", 20)))
			}
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second) // GitHub's
			defer cancel()
			began := time.Now()
			labels, err := newScanService(t, m).report(ctx, toks...)
			require.NoError(t, err)
			t.Logf("secret scanning: a batch of %d (%d ours) answered in %v", batch, ours, time.Since(began).Round(time.Millisecond))
			require.Len(t, labels, batch)
			for i, label := range labels {
				want := "false_positive"
				if i < ours {
					want = "true_positive"
				}
				require.Equal(t, want, label, "token %d", i)
			}
		})
	}
}
