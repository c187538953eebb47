// Command adminserver is a small web admin for API keys built on tokens:
// an operator generates keys, renews them the seed's way (the new link at
// once, then Later, Later with an expiry, or Now for the old token),
// revokes links, undoes renewals, deletes tokens and keys, and
// reads each key's history. The same server serves the single-access link
// pages and an API protected by the tokenhttp middleware.
//
//	go run ./examples/adminserver                      # SQLite file tokens-admin.db
//	go run ./examples/adminserver -postgres "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
//	go run ./examples/adminserver -operator alice -alert-after 6
//	TOKENS_SECRET_SCANNING=1 go run ./examples/adminserver -leak-policy revoke
//
// It listens on 127.0.0.1:8080, answers only requests for that address or
// localhost:8080, and has no login: put a real deployment behind your
// single sign-on. The audit trail names every change's actor: -operator
// (default "admin") here, the signed-in user in a real deployment.
//
// With -secret-scanning (or TOKENS_SECRET_SCANNING=1) it also serves
// GitHub's secret scanning partner endpoint at /github/secret-scanning,
// for a proxy that forwards GitHub's reports to it. A reported token of a
// key puts the key in the admin screen's "Leaked tokens" block; with
// -leak-policy revoke (or TOKENS_LEAK_POLICY=revoke) the token also stops
// working at once, and the block offers a link to a new token.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq"
	_ "github.com/mattn/go-sqlite3"

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/store/sqlstore"
	"github.com/keyrenew/tokens/tokenhttp"
)

type config struct {
	addr       string
	sqlite     string
	postgres   string
	account    string
	secretFile string
	// operator names who acts in the audit trail (tokens.WithActor);
	// "admin" if empty.
	operator string
	// alertAfter is the renewal alert period in months
	// (tokens.WithAlertAfter); tokens.DefaultAlertAfter if 0.
	alertAfter int
	// secretScanning serves the secret scanning endpoint at
	// secretScanningPath.
	secretScanning bool
	// leakPolicy is "alert" (tokens.AlertOnLeak, also if empty) or
	// "revoke" (tokens.RevokeLeaked).
	leakPolicy string
	// scanKeysURL is where the scanner's public keys are fetched from;
	// GitHub's if empty. Tests serve keys of their own.
	scanKeysURL string
}

// secretScanningPath is where -secret-scanning serves GitHub's reports.
const secretScanningPath = "/github/secret-scanning"

// scanActor names the secret scanning endpoint in the audit trail, as the
// actor of the leak events and of the revocations it makes.
const scanActor = "GitHub secret scanning"

func main() {
	var cfg config
	flag.StringVar(&cfg.addr, "addr", "127.0.0.1:8080", "loopback address to listen on: the link pages are served over plain http, which tokens allows only on loopback")
	flag.StringVar(&cfg.sqlite, "db", "tokens-admin.db", "SQLite database file")
	flag.StringVar(&cfg.postgres, "postgres", os.Getenv("TOKENS_POSTGRES"), "PostgreSQL URL; overrides -db")
	flag.StringVar(&cfg.account, "account", "acme", "account whose keys to manage")
	flag.StringVar(&cfg.operator, "operator", "admin", "who the audit trail names as the actor of every change made on this screen")
	flag.IntVar(&cfg.alertAfter, "alert-after", tokens.DefaultAlertAfter, "renewal alert period in months (1 to 24): a token turns orange after it, red 3 months later")
	flag.BoolVar(&cfg.secretScanning, "secret-scanning", os.Getenv("TOKENS_SECRET_SCANNING") == "1", "serve GitHub's secret scanning partner endpoint at "+secretScanningPath+" ($TOKENS_SECRET_SCANNING=1 also turns it on)")
	flag.StringVar(&cfg.leakPolicy, "leak-policy", envOr("TOKENS_LEAK_POLICY", "alert"), "what a leak report does to a token that still works: alert (record it, the operator renews) or revoke (stop it at once); $TOKENS_LEAK_POLICY sets the default")
	flag.StringVar(&cfg.secretFile, "secret-file", "tokens-admin.secret", "file holding the sealing secret (made if missing); $TOKENS_SEALING_SECRET, base64, overrides it")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		log.Fatal(err)
	}
}

// envOr returns the environment variable name, or def if it is unset or
// empty.
func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, cfg config) error {
	db, err := openDB(cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	secret, err := sealingSecret(cfg.secretFile)
	if err != nil {
		ln.Close()
		return err
	}
	handler, err := newServer(ctx, db, "http://"+ln.Addr().String(), cfg, systemClock{},
		tokens.WithSealingSecret(secret))
	if err != nil {
		ln.Close()
		return err
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	log.Printf("adminserver: keys of account %q at http://%s/", cfg.account, ln.Addr())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func openDB(cfg config) (*sqlx.DB, error) {
	if cfg.postgres != "" {
		return sqlx.Open("postgres", cfg.postgres)
	}
	return sqlx.Open("sqlite3", "file:"+cfg.sqlite+"?_busy_timeout=10000&_journal_mode=WAL&_txlock=immediate&_secure_delete=on")
}

// sealingSecret returns the secret that seals the tokens of pending links
// (tokens.WithSealingSecret): from $TOKENS_SEALING_SECRET if set, else from
// path, which is made with 32 random bytes if missing. It is kept out of
// the database, so a copy of the database and a leaked link URL open
// nothing.
func sealingSecret(path string) ([]byte, error) {
	encoded := os.Getenv("TOKENS_SEALING_SECRET")
	if encoded == "" {
		data, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			data = []byte(base64.StdEncoding.EncodeToString(randomBytes(32)))
			err = os.WriteFile(path, data, 0o600)
		}
		if err != nil {
			return nil, fmt.Errorf("adminserver: sealing secret: %w", err)
		}
		encoded = string(data)
	}
	secret, err := base64.StdEncoding.DecodeString(strings.TrimSpace(encoded))
	if err != nil {
		return nil, errors.New("adminserver: sealing secret: not base64")
	}
	return secret, nil
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand)
	return b
}

// newServer migrates the schema and returns the whole site: the admin
// screen at /, the share link pages at /credentials/ and a protected API at
// /api/. origin is where the server is reached, such as
// http://127.0.0.1:8080; cfg gives the account, the operator and the alert
// period. Until ctx ends, it also purges expired links.
func newServer(ctx context.Context, db *sqlx.DB, origin string, cfg config, clock tokens.Clock, opts ...tokens.Option) (http.Handler, error) {
	if cfg.operator == "" {
		cfg.operator = "admin"
	}
	if !validActor(cfg.operator) {
		return nil, errors.New("adminserver: -operator must be at most 200 bytes of text without control characters")
	}
	if cfg.alertAfter == 0 {
		cfg.alertAfter = tokens.DefaultAlertAfter
	}
	policy, err := leakPolicy(cfg.leakPolicy)
	if err != nil {
		return nil, err
	}
	store, err := sqlstore.New(db)
	if err != nil {
		return nil, err
	}
	if err := store.Migrate(ctx); err != nil {
		return nil, err
	}
	opts = append([]tokens.Option{
		tokens.WithClock(clock),
		tokens.WithShareBaseURL(origin + "/credentials/"),
		tokens.WithAlertAfter(cfg.alertAfter),
		tokens.WithLeakPolicy(policy),
	}, opts...)
	m, err := tokens.NewManager(store, opts...)
	if err != nil {
		return nil, err
	}
	links, err := tokenhttp.NewLinkHandler(m, tokenhttp.WithErrorReporter(func(r *http.Request, err error) {
		log.Printf("adminserver: link page: %v", err)
	}))
	if err != nil {
		return nil, err
	}
	hosts, err := servedHosts(origin)
	if err != nil {
		return nil, err
	}
	go purgeExpired(ctx, m, time.Tick(purgeInterval), func(ctx context.Context) {
		if db.DriverName() == "sqlite3" {
			// Drops the -wal frames that still hold wiped sealed tokens.
			if _, err := db.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil && ctx.Err() == nil {
				log.Printf("adminserver: checkpoint: %v", err)
			}
		}
	})

	auth, err := tokenhttp.Authenticate(m, tokenhttp.WithErrorReporter(func(r *http.Request, err error) {
		log.Printf("adminserver: api: %v", err)
	}))
	if err != nil {
		return nil, err
	}
	admin := &app{m: m, account: cfg.account, operator: cfg.operator, alertAfter: cfg.alertAfter, now: clock.Now}
	mux := http.NewServeMux()
	mux.Handle("/api/", auth(http.HandlerFunc(whoami)))
	mux.Handle("/", admin.routes())
	// The link pages check the Host themselves, against the share base
	// URL's alone; onlyHosts guards the rest of the site.
	site := onlyHosts(mux, hosts...)
	if cfg.secretScanning {
		if site, err = withSecretScanning(site, m, cfg, clock); err != nil {
			return nil, err
		}
	}
	return links.Wrap(site), nil
}

// leakPolicy turns -leak-policy into the Manager's tokens.LeakPolicy.
func leakPolicy(name string) (tokens.LeakPolicy, error) {
	switch name {
	case "", "alert":
		return tokens.AlertOnLeak, nil
	case "revoke":
		return tokens.RevokeLeaked, nil
	}
	return 0, fmt.Errorf("adminserver: -leak-policy %q: want alert or revoke", name)
}

// withSecretScanning serves GitHub's secret scanning reports at
// secretScanningPath and the rest of the site with site. The endpoint is
// outside onlyHosts: GitHub reaches it through a proxy under a public
// name, and it needs no Host check, since it acts only on reports signed
// with GitHub's keys, which a page that rebinds a host name cannot make.
func withSecretScanning(site http.Handler, m *tokens.Manager, cfg config, clock tokens.Clock) (http.Handler, error) {
	opts := []tokenhttp.ScanOption{
		tokenhttp.WithClock(clock),
		tokenhttp.WithLeakNotifier(logLeak),
		tokenhttp.WithErrorReporter(func(r *http.Request, err error) {
			log.Printf("adminserver: secret scanning: %v", err)
		}),
	}
	if cfg.scanKeysURL != "" {
		opts = append(opts, tokenhttp.WithPublicKeysURL(cfg.scanKeysURL))
	}
	scan, err := tokenhttp.NewSecretScanningHandler(m, opts...)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle(secretScanningPath, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scan.ServeHTTP(w, r.WithContext(tokens.WithActor(r.Context(), scanActor)))
	}))
	mux.Handle("/", site)
	return mux, nil
}

// logLeak tells the server's log that a token of a key was reported
// leaked, naming the key and the report's source only. The token stays
// out of it, and so does the link to a token that replaced a revoked one
// (res.Link): logs are kept long and read widely, and whoever read the
// link there could open it before the key's owner. The operator gets a
// new link from the admin screen's leaked tokens block instead.
func logLeak(_ context.Context, leak tokens.Leak, res tokens.LeakResult) {
	switch {
	case res.Link != nil:
		log.Printf("adminserver: a token of key %s was reported leaked by %s and revoked; renew it on the admin screen to send its owner a new link", res.KeyID, leak.Source)
	case res.Revoked:
		log.Printf("adminserver: the old token of key %s was reported leaked by %s and deleted", res.KeyID, leak.Source)
	default:
		log.Printf("adminserver: a token of key %s was reported leaked by %s; see the leaked tokens on the admin screen", res.KeyID, leak.Source)
	}
}

// validActor reports whether tokens.WithActor accepts actor: text of at
// most 200 bytes without control or bidirectional characters, which could
// spoof the history page.
func validActor(actor string) bool {
	if len(actor) > 200 || !utf8.ValidString(actor) || strings.TrimSpace(actor) == "" {
		return false
	}
	for _, r := range actor {
		if unicode.Is(unicode.Cc, r) || (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069) {
			return false
		}
	}
	return true
}

// servedHosts returns the Host headers under which the server at origin
// answers: its own address and the localhost form of it, such as
// 127.0.0.1:8080 and localhost:8080.
func servedHosts(origin string) ([]string, error) {
	host := strings.TrimPrefix(origin, "http://")
	_, port, err := net.SplitHostPort(host)
	if err != nil {
		return nil, fmt.Errorf("adminserver: origin %s has no port: %w", origin, err)
	}
	return []string{host, net.JoinHostPort("localhost", port)}, nil
}

// onlyHosts answers 421 Misdirected Request to a request for any Host but
// hosts. Without it, a web page the operator visits on a host name that
// its attacker re-points at 127.0.0.1 (DNS rebinding) is same-origin with
// this server: it could renew keys, delete their old tokens and read
// their new links.
func onlyHosts(next http.Handler, hosts ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// net/http refuses a Host that is not ASCII, so ToLower is ASCII's.
		if !slices.Contains(hosts, strings.ToLower(r.Host)) {
			w.Header().Set("Cache-Control", "no-store")
			http.Error(w, "misdirected request: open this server at http://"+hosts[0]+"/", http.StatusMisdirectedRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// purgeInterval is how often the server wipes the sealed tokens of expired
// links.
const purgeInterval = 10 * time.Minute

// purgeExpired calls m.PurgeExpired, then after, now and at every tick,
// until ctx ends, so that a link that expired unopened soon holds no sealed
// token in the database or its backups. The library starts no goroutine of
// its own.
func purgeExpired(ctx context.Context, m *tokens.Manager, ticks <-chan time.Time, after func(context.Context)) {
	for {
		n, err := m.PurgeExpired(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Printf("adminserver: purging expired links: %v", err)
		case n > 0:
			log.Printf("adminserver: purged %d expired links", n)
		}
		after(ctx)
		select {
		case <-ctx.Done():
			return
		case <-ticks:
		}
	}
}

// systemClock is the wall clock; the browser tests use a mock instead, to
// show token ages and expired links without waiting.
type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// whoami is the protected API: it answers with the key that called it.
func whoami(w http.ResponseWriter, r *http.Request) {
	key, _ := tokenhttp.KeyFromContext(r.Context())
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]string{
		"key_id":  key.ID,
		"name":    key.Name,
		"account": key.Account,
		"message": fmt.Sprintf("hello, %s", key.Name),
	})
}
