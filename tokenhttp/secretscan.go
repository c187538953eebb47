package tokenhttp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/keyrenew/tokens"
)

// A Scanner is a secret-scanning service that reports leaked tokens as
// GitHub's partner program does: a POST of a JSON array of {"token",
// "type", "url", "source"}, signed with ECDSA P-256 over SHA-256 of the
// body, the signature and the signing key's identifier in two headers,
// the keys in a document {"public_keys": [{"key_identifier", "key",
// "is_current"}]}. Another scanner with the same scheme is a Scanner of
// its own, given to WithScanner.
type Scanner struct {
	// Name starts the Leak.Source of its reports: "github" and a report
	// from the source "commit" give "github/commit".
	Name string
	// PublicKeysURL is where the public keys document is fetched from.
	PublicKeysURL string
	// KeyIDHeader and SignatureHeader name the request headers that carry
	// the signing key's identifier and the base64 DER signature.
	KeyIDHeader, SignatureHeader string
}

// GitHubSecretScanning is GitHub's secret scanning partner program, the
// Scanner NewSecretScanningHandler serves unless WithScanner says
// otherwise.
var GitHubSecretScanning = Scanner{
	Name:            "github",
	PublicKeysURL:   "https://api.github.com/meta/public_keys/secret_scanning",
	KeyIDHeader:     "Github-Public-Key-Identifier",
	SignatureHeader: "Github-Public-Key-Signature",
}

const (
	// DefaultMaxScanBody is the largest report body the handler reads, in
	// bytes, unless WithScanLimits says otherwise.
	DefaultMaxScanBody = 4 << 20
	// DefaultMaxScanBatch is the most tokens one report may hold unless
	// WithScanLimits says otherwise.
	DefaultMaxScanBatch = 5000
)

// A ScanOption configures NewSecretScanningHandler: WithScanner,
// WithPublicKeysURL, WithHTTPClient, WithClock, WithScanLimits,
// WithLeakNotifier and WithErrorReporter.
type ScanOption interface {
	applyScan(*scanSettings) error
}

type scanSettings struct {
	shared
	scanner  Scanner
	client   *http.Client
	clock    tokens.Clock
	maxBody  int64
	maxBatch int
	notify   func(ctx context.Context, leak tokens.Leak, res tokens.LeakResult)
}

func (o Option) applyScan(s *scanSettings) error { return o.applyShared(&s.shared) }

// scanOption is an option that only NewSecretScanningHandler takes.
type scanOption func(*scanSettings) error

func (o scanOption) applyScan(s *scanSettings) error { return o(s) }

// WithScanner makes the handler serve another scanner of GitHub's scheme.
func WithScanner(sc Scanner) ScanOption {
	return scanOption(func(s *scanSettings) error {
		if sc.Name == "" || !validHeaderName(sc.KeyIDHeader) || !validHeaderName(sc.SignatureHeader) {
			return errors.New("tokenhttp: WithScanner: a Scanner needs a name and two header names")
		}
		if err := checkKeysURL(sc.PublicKeysURL); err != nil {
			return err
		}
		s.scanner = sc
		return nil
	})
}

// WithPublicKeysURL sets where the scanner's public keys document is
// fetched from, such as a test server's.
func WithPublicKeysURL(u string) ScanOption {
	return scanOption(func(s *scanSettings) error {
		if err := checkKeysURL(u); err != nil {
			return err
		}
		s.scanner.PublicKeysURL = u
		return nil
	})
}

func checkKeysURL(u string) error {
	parsed, err := url.Parse(u)
	if err != nil || parsed.Host == "" || parsed.Scheme != "https" && parsed.Scheme != "http" {
		return fmt.Errorf("tokenhttp: %q is not an http or https URL for the public keys document", u)
	}
	return nil
}

// WithHTTPClient sets the client that fetches the public keys document.
// The default is a client with a 10 second timeout.
func WithHTTPClient(c *http.Client) ScanOption {
	return scanOption(func(s *scanSettings) error {
		if c == nil {
			return errors.New("tokenhttp: WithHTTPClient: client is nil")
		}
		s.client = c
		return nil
	})
}

// WithClock sets the clock the handler ages its copy of the public keys
// document by. The default is the Manager's (tokens.Manager.Clock).
func WithClock(c tokens.Clock) ScanOption {
	return scanOption(func(s *scanSettings) error {
		if c == nil {
			return errors.New("tokenhttp: WithClock: clock is nil")
		}
		s.clock = c
		return nil
	})
}

// WithScanLimits sets the largest body in bytes and the most tokens of one
// report. A larger report is refused with 413 and reported on nothing.
func WithScanLimits(maxBody int64, maxBatch int) ScanOption {
	return scanOption(func(s *scanSettings) error {
		if maxBody < 2 || maxBatch < 1 {
			return errors.New("tokenhttp: WithScanLimits: limits must be positive")
		}
		s.maxBody, s.maxBatch = maxBody, maxBatch
		return nil
	})
}

// WithLeakNotifier makes the handler call f for each reported token that
// is a token of a key here (LeakResult.Found), after ReportLeak recorded
// it: tell the key's owner, and when the Manager revoked a current token
// (tokens.RevokeLeaked), hand res.Link to them as for any renewal. f runs
// before the handler answers; keep it short or hand the work on.
func WithLeakNotifier(f func(ctx context.Context, leak tokens.Leak, res tokens.LeakResult)) ScanOption {
	return scanOption(func(s *scanSettings) error {
		if f == nil {
			return errors.New("tokenhttp: WithLeakNotifier: function is nil")
		}
		s.notify = f
		return nil
	})
}

type scanHandler struct {
	m    *tokens.Manager
	set  *scanSettings
	keys *publicKeys
}

// NewSecretScanningHandler returns the endpoint a secret scanning partner
// program posts leaked tokens to (S11), GitHub's unless WithScanner says
// otherwise. For each request it:
//
//   - answers 401 to a request without the key identifier and signature
//     headers, or whose raw body bytes are not signed by one of the
//     scanner's current public keys, before it parses anything. The keys
//     document is fetched when first needed, again after an hour, and
//     again when a request names an unknown key (at most every 10 s);
//     keys that are not current are refused. 503 if it cannot be fetched.
//   - answers 413 to a body over the size limit or a batch over its limit,
//     400 to a body that is not a JSON array of {"token", "type", "url",
//     "source"}.
//   - calls m.ReportLeak for each token, with the source
//     "<scanner>/<source>" and the URL, and answers 200 with GitHub's
//     feedback: [{"token_hash", "token_type", "label"}], label
//     "true_positive" for a token found here (current, old or deleted and
//     remembered), "false_positive" otherwise. It gives the token's
//     SHA-256 in hex, never the token.
//   - answers 500 when a report fails in the store; the scanner sends
//     the report again, and reports of a leak already recorded change
//     nothing.
//
// No token reaches a log, an error or WithErrorReporter. m's store must be
// a tokens.TokenIndex, as memstore and sqlstore are.
func NewSecretScanningHandler(m *tokens.Manager, opts ...ScanOption) (http.Handler, error) {
	if m == nil {
		return nil, errors.New("tokenhttp: NewSecretScanningHandler: Manager is nil")
	}
	set := &scanSettings{
		shared:   newShared(),
		scanner:  GitHubSecretScanning,
		client:   &http.Client{Timeout: 10 * time.Second},
		clock:    m.Clock(),
		maxBody:  DefaultMaxScanBody,
		maxBatch: DefaultMaxScanBatch,
		notify:   func(context.Context, tokens.Leak, tokens.LeakResult) {},
	}
	for _, opt := range opts {
		if opt == nil {
			return nil, errors.New("tokenhttp: NewSecretScanningHandler: nil option")
		}
		if err := opt.applyScan(set); err != nil {
			return nil, err
		}
	}
	keys := &publicKeys{url: set.scanner.PublicKeysURL, client: set.client, clock: set.clock}
	return &scanHandler{m: m, set: set, keys: keys}, nil
}

// scanReport is one reported token.
type scanReport struct {
	Token  string `json:"token"`
	Type   string `json:"type"`
	URL    string `json:"url"`
	Source string `json:"source"`
}

// scanFeedback is the answer on one reported token.
type scanFeedback struct {
	TokenHash string `json:"token_hash"`
	TokenType string `json:"token_type"`
	Label     string `json:"label"`
}

func (h *scanHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSONError(w, http.StatusMethodNotAllowed, "method_not_allowed", "reports are POSTed")
		return
	}
	keyID, sig := r.Header.Get(h.set.scanner.KeyIDHeader), r.Header.Get(h.set.scanner.SignatureHeader)
	if keyID == "" || sig == "" {
		writeJSONError(w, http.StatusUnauthorized, "missing_signature", "the report is not signed")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.set.maxBody))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		writeJSONError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("the report is over %d bytes", h.set.maxBody))
		return
	case err != nil:
		writeJSONError(w, http.StatusBadRequest, "bad_request", "the report could not be read")
		return
	}
	if !h.signed(w, r, keyID, sig, body) {
		return
	}
	reports, ok := h.parse(w, body)
	if !ok {
		return
	}
	feedback := make([]scanFeedback, 0, len(reports))
	for _, rep := range reports {
		label, err := h.report(r.Context(), rep)
		if err != nil {
			h.set.report(r, err)
			writeJSONError(w, http.StatusInternalServerError, "internal_error", "the report could not be recorded, send it again")
			return
		}
		digest := sha256.Sum256([]byte(rep.Token))
		feedback = append(feedback, scanFeedback{TokenHash: hex.EncodeToString(digest[:]), TokenType: rep.Type, Label: label})
	}
	out, err := json.Marshal(feedback)
	if err != nil {
		panic("tokenhttp: encoding scan feedback: " + err.Error()) // strings always encode
	}
	writeJSON(w, http.StatusOK, out)
}

// signed checks the body's signature and answers 401 or 503 if it does
// not verify.
func (h *scanHandler) signed(w http.ResponseWriter, r *http.Request, keyID, sig string, body []byte) bool {
	err := h.keys.verify(r.Context(), keyID, sig, body)
	switch {
	case err == nil:
		return true
	case errors.Is(err, errBadSignature), errors.Is(err, errUnknownKey):
		writeJSONError(w, http.StatusUnauthorized, "bad_signature", "the report's signature does not verify with a current public key")
	default:
		h.set.report(r, err)
		writeJSONError(w, http.StatusServiceUnavailable, "keys_unavailable", "the scanner's public keys could not be fetched, try again later")
	}
	return false
}

// parse reads a signed body as reports and answers 400 or 413 if it is
// not within bounds. Parse errors are not reported: they would quote the
// body, and they are the sender's doing.
func (h *scanHandler) parse(w http.ResponseWriter, body []byte) ([]scanReport, bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	var reports []scanReport
	if err := dec.Decode(&reports); err != nil || reports == nil || dec.More() {
		writeJSONError(w, http.StatusBadRequest, "bad_request", "the report is not a JSON array of tokens")
		return nil, false
	}
	if _, err := dec.Token(); err != io.EOF {
		writeJSONError(w, http.StatusBadRequest, "bad_request", "the report is not a JSON array of tokens")
		return nil, false
	}
	if len(reports) > h.set.maxBatch {
		writeJSONError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("the report holds over %d tokens", h.set.maxBatch))
		return nil, false
	}
	return reports, true
}

// report hands one reported token to ReportLeak and returns its label.
func (h *scanHandler) report(ctx context.Context, rep scanReport) (string, error) {
	leak := tokens.Leak{Source: h.set.scanner.Name + "/" + scanSource(rep.Source), URL: rep.URL}
	res, err := h.m.ReportLeak(ctx, rep.Token, leak)
	if errors.Is(err, tokens.ErrInvalidLeak) {
		// The URL is not text within bounds: the leak counts without it.
		leak.URL = ""
		res, err = h.m.ReportLeak(ctx, rep.Token, leak)
	}
	if err != nil {
		return "", fmt.Errorf("tokenhttp: secret scanning report: %w", err)
	}
	if !res.Found {
		return "false_positive", nil
	}
	h.set.notify(ctx, leak, res)
	return "true_positive", nil
}

// scanSource is the scanner's source name if it is a plain word of at
// most 50 ASCII letters, digits and "_-.", else "unknown".
func scanSource(s string) string {
	if s == "" || len(s) > 50 {
		return "unknown"
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return "unknown"
		}
	}
	return s
}
