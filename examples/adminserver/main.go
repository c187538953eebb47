// Command adminserver is a small web admin for API keys built on tokens:
// an operator generates keys, renews, undoes and deletes tokens, and the
// same server serves the single-access link pages and an API protected by
// the tokenhttp middleware.
//
//	go run ./examples/adminserver                      # SQLite file tokens-admin.db
//	go run ./examples/adminserver -postgres "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
//
// It listens on 127.0.0.1:8080 and has no login: put a real deployment
// behind your single sign-on.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq"
	_ "github.com/mattn/go-sqlite3"

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/store/sqlstore"
	"github.com/keyrenew/tokens/tokenhttp"
)

type config struct {
	addr     string
	sqlite   string
	postgres string
	account  string
}

func main() {
	var cfg config
	flag.StringVar(&cfg.addr, "addr", "127.0.0.1:8080", "loopback address to listen on: the link pages are served over plain http, which tokens allows only on loopback")
	flag.StringVar(&cfg.sqlite, "db", "tokens-admin.db", "SQLite database file")
	flag.StringVar(&cfg.postgres, "postgres", os.Getenv("TOKENS_POSTGRES"), "PostgreSQL URL; overrides -db")
	flag.StringVar(&cfg.account, "account", "acme", "account whose keys to manage")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		log.Fatal(err)
	}
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
	handler, err := newServer(ctx, db, "http://"+ln.Addr().String(), cfg.account, systemClock{})
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
	return sqlx.Open("sqlite3", "file:"+cfg.sqlite+"?_busy_timeout=10000&_journal_mode=WAL&_txlock=immediate")
}

// newServer migrates the schema and returns the whole site: the admin
// screen at /, the share link pages at /credentials/ and a protected API at
// /api/. origin is where the server is reached, such as
// http://127.0.0.1:8080.
func newServer(ctx context.Context, db *sqlx.DB, origin, account string, clock tokens.Clock) (http.Handler, error) {
	store, err := sqlstore.New(db)
	if err != nil {
		return nil, err
	}
	if err := store.Migrate(ctx); err != nil {
		return nil, err
	}
	m, err := tokens.NewManager(store, tokens.WithClock(clock), tokens.WithShareBaseURL(origin+"/credentials/"))
	if err != nil {
		return nil, err
	}
	links, err := tokenhttp.NewLinkHandler(m, tokenhttp.WithErrorReporter(func(r *http.Request, err error) {
		log.Printf("adminserver: link page: %v", err)
	}))
	if err != nil {
		return nil, err
	}
	admin := &app{m: m, account: account, now: clock.Now}
	mux := http.NewServeMux()
	mux.Handle("/credentials/", links)
	mux.Handle("/api/", tokenhttp.Authenticate(m)(http.HandlerFunc(whoami)))
	mux.Handle("/", admin.routes())
	return mux, nil
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
