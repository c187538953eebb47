// Command loadtest drives the README's service over HTTP on loopback while
// an operator renews the keys its clients use, and checks that no valid
// request is ever refused.
//
// It starts the service in-process (tokenhttp.Authenticate on /api/, the
// link pages behind Wrap) on SQLite or PostgreSQL, creates -keys keys and
// reveals their tokens, then runs -clients clients for -duration (at most
// 5 minutes) or -requests requests. Meanwhile one operator renews the keys
// one after another, the way the README recommends: Renew with
// DeleteLater, reveal the new token, hand it to the clients that use the
// key, wait until each has switched and has no request in flight with the
// old token, then DeleteOld.
//
// A request refused with 401 or 403 although its token had not been
// deleted when it was sent is a refused valid request. The exit status is
// 1 if there was any, or any other failed request. The keys it created are
// deleted at the end; the schema stays.
//
//	go run ./examples/loadtest -clients 16 -duration 10s
//	go run ./examples/loadtest -cache=false
//	go run ./examples/loadtest -postgres 'postgres://postgres@127.0.0.1:5432/test?sslmode=disable'
//	go run ./examples/loadtest -writes -postgres 'postgres://...'   # changes/s against the floor
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq"
	_ "github.com/mattn/go-sqlite3"

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/store/sqlstore"
	"github.com/keyrenew/tokens/tokenhttp"
)

// Bounds on what one run may ask for.
const (
	maxDuration = 5 * time.Minute
	maxClients  = 1000
	maxKeys     = 10_000
)

// config is what a run does; main fills it from the flags.
type config struct {
	sqliteFile  string // "" means a temporary file
	postgresURL string // overrides sqliteFile
	cache       bool
	addr        string // a loopback address to listen on
	keys        int
	clients     int
	duration    time.Duration
	requests    int64 // 0 means no limit but the duration

	// dropHandover makes the operator delete each old token without
	// handing the new one over, so that the clients' valid-looking
	// requests are refused: the tests' proof that refusals are counted.
	dropHandover bool
}

func main() {
	var cfg config
	flag.StringVar(&cfg.sqliteFile, "db", "", "SQLite database file (default: a temporary file, removed at exit)")
	flag.StringVar(&cfg.postgresURL, "postgres", "", "PostgreSQL URL, such as postgres://postgres@127.0.0.1:5432/test?sslmode=disable; overrides -db.\n"+
		"Migrate creates the tables if missing; add &search_path=<schema> to keep them apart")
	flag.BoolVar(&cfg.cache, "cache", true, "verify with the verification cache (WithVerifyCache)")
	flag.StringVar(&cfg.addr, "addr", "127.0.0.1:0", "loopback address the service listens on")
	flag.IntVar(&cfg.keys, "keys", 50, fmt.Sprintf("number of keys, at most %d", maxKeys))
	flag.IntVar(&cfg.clients, "clients", 16, fmt.Sprintf("number of concurrent clients, at most %d", maxClients))
	flag.DurationVar(&cfg.duration, "duration", 10*time.Second, fmt.Sprintf("how long the clients send requests, at most %v", maxDuration))
	flag.Int64Var(&cfg.requests, "requests", 0, "stop after this many requests (0: no limit but -duration)")
	writes := flag.Bool("writes", false, "write mode (needs -postgres): changes/s of distinct keys at 1, 2, 4, 8 and 16 writers against the floor")
	step := flag.Duration("step", 2*time.Second, "write mode: how long each measurement runs")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "loadtest: unexpected arguments:", flag.Args())
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if *writes {
		if *step <= 0 || *step > time.Minute {
			fmt.Fprintln(os.Stderr, "loadtest: -step must be more than 0 and at most 1m")
			os.Exit(2)
		}
		if err := runWrites(ctx, cfg.postgresURL, *step, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "loadtest:", err)
			os.Exit(1)
		}
		return
	}
	rep, err := run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
	rep.print(os.Stdout)
	if !rep.ok() {
		os.Exit(1)
	}
}

func (cfg *config) check() error {
	switch {
	case cfg.keys < 1 || cfg.keys > maxKeys:
		return fmt.Errorf("-keys must be 1 to %d", maxKeys)
	case cfg.clients < 1 || cfg.clients > maxClients:
		return fmt.Errorf("-clients must be 1 to %d", maxClients)
	case cfg.duration <= 0 || cfg.duration > maxDuration:
		return fmt.Errorf("-duration must be more than 0 and at most %v", maxDuration)
	case cfg.requests < 0:
		return errors.New("-requests must not be negative")
	}
	return checkLoopback(cfg.addr)
}

// checkLoopback refuses an address that is not a loopback IP or
// "localhost": a load test must not be pointed at other machines, nor
// expose the service on a public interface.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-addr: %w", err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-addr %s is not a loopback address such as 127.0.0.1:0", addr)
	}
	return nil
}

// run starts the service, runs the load and returns what it measured. It
// fails only if the run itself could not be done; refused and failed
// requests are in the report.
func run(ctx context.Context, cfg config) (*report, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	if ip := ln.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() { // "localhost" may resolve elsewhere
		return nil, fmt.Errorf("-addr %s listens on %v, which is not loopback", cfg.addr, ip)
	}
	baseURL := "http://" + ln.Addr().String()

	store, backend, closeStore, err := openStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer closeStore()
	opts := []tokens.Option{tokens.WithShareBaseURL(baseURL + "/credentials/")}
	if cfg.cache {
		opts = append(opts, tokens.WithVerifyCache(tokens.CacheConfig{}))
	}
	m, err := tokens.NewManager(store, opts...)
	if err != nil {
		return nil, err
	}
	defer m.Close()

	handler, err := newService(m)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		srv.Shutdown(context.Background())
		<-served
	}()

	l, err := newLoad(ctx, m, baseURL+"/api/orders", cfg)
	if err != nil {
		return nil, err
	}
	defer l.deleteKeys(context.WithoutCancel(ctx))
	rep, err := l.run(ctx)
	if err != nil {
		return nil, err
	}
	rep.backend = backend
	return rep, nil
}

// newService is the README's service: the API behind Authenticate, the
// link pages behind Wrap.
func newService(m *tokens.Manager) (http.Handler, error) {
	links, err := tokenhttp.NewLinkHandler(m)
	if err != nil {
		return nil, err
	}
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, _ := tokenhttp.KeyFromContext(r.Context())
		fmt.Fprintf(w, "hello, %s\n", key.Name)
	})
	auth, err := tokenhttp.Authenticate(m)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/api/", auth(api))
	return links.Wrap(mux), nil
}

// openStore opens and migrates the database, and returns the store, a
// description of it for the report, and a function that closes it (and
// removes a temporary SQLite file).
func openStore(ctx context.Context, cfg config) (tokens.Store, string, func(), error) {
	var db *sqlx.DB
	var backend string
	cleanup := func() {}
	var err error
	switch {
	case cfg.postgresURL != "":
		backend = "PostgreSQL"
		db, err = sqlx.Open("postgres", cfg.postgresURL)
	default:
		file := cfg.sqliteFile
		backend = "SQLite file " + file
		if file == "" {
			dir, err := os.MkdirTemp("", "loadtest")
			if err != nil {
				return nil, "", nil, err
			}
			cleanup = func() { os.RemoveAll(dir) }
			file = filepath.Join(dir, "tokens.db")
			backend = "SQLite (temporary file)"
		}
		db, err = sqlx.Open("sqlite3", "file:"+file+"?_busy_timeout=10000&_journal_mode=WAL&_txlock=immediate&_secure_delete=on")
	}
	if err != nil {
		cleanup()
		return nil, "", nil, err
	}
	// Every client's request may hold a connection; with database/sql's
	// default of two idle connections the pool would open and close
	// connections all the time.
	conns := min(cfg.clients+2, 50)
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	store, err := sqlstore.New(db)
	if err == nil {
		err = store.Migrate(ctx)
	}
	if err != nil {
		db.Close()
		cleanup()
		return nil, "", nil, err
	}
	return store, backend, func() { db.Close(); cleanup() }, nil
}

// report is what a run measured.
type report struct {
	backend  string
	cache    bool
	keys     int
	clients  int
	elapsed  time.Duration
	requests int64
	latency  histogram
	renewals int

	refusedValid   int64 // 401 or 403 for a token not deleted when sent
	refusedDeleted int64 // 401 or 403 for a token already deleted: a bug of the handover
	failed         int64 // other statuses and transport errors
}

// ok reports whether every request succeeded.
func (r *report) ok() bool {
	return r.refusedValid == 0 && r.refusedDeleted == 0 && r.failed == 0
}

func (r *report) print(w io.Writer) {
	cache := "off"
	if r.cache {
		cache = "on"
	}
	fmt.Fprintf(w, "%s, verification cache %s, %d keys, %d clients, %v\n",
		r.backend, cache, r.keys, r.clients, r.elapsed.Round(10*time.Millisecond))
	fmt.Fprintf(w, "requests                %d (%.0f/s)\n", r.requests, float64(r.requests)/r.elapsed.Seconds())
	fmt.Fprintf(w, "latency                 p50 %s, p99 %s, p99.9 %s\n",
		ms(r.latency.quantile(0.5)), ms(r.latency.quantile(0.99)), ms(r.latency.quantile(0.999)))
	fmt.Fprintf(w, "renewals                %d\n", r.renewals)
	fmt.Fprintf(w, "refused valid requests  %d\n", r.refusedValid)
	if r.refusedDeleted > 0 {
		fmt.Fprintf(w, "sent with deleted token %d\n", r.refusedDeleted)
	}
	if r.failed > 0 {
		fmt.Fprintf(w, "failed requests         %d\n", r.failed)
	}
}

// ms formats d in milliseconds with two or three significant digits.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v < 1:
		return fmt.Sprintf("%.3f ms", v)
	case v < 10:
		return fmt.Sprintf("%.2f ms", v)
	case v < 100:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.0f ms", v)
}
