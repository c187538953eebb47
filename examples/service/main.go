// Command service is the README's complete program: an HTTP service that
// keeps its API keys in SQLite, authenticates its API with them and serves
// the single-access link pages that hand new tokens over.
package main

import (
	"context"
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
	_ "github.com/mattn/go-sqlite3" // the application picks the driver

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/store/sqlstore"
	"github.com/keyrenew/tokens/tokenhttp"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "loopback address to listen on (plain http is for loopback only)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	// Bind first: a busy port fails here, before any key is made.
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	db := sqlx.MustOpen("sqlite3", "file:tokens.db?_busy_timeout=10000&_journal_mode=WAL&_txlock=immediate&_secure_delete=on")
	store, err := sqlstore.New(db)
	if err != nil {
		log.Fatal(err)
	}
	if err := store.Migrate(ctx); err != nil { // idempotent
		log.Fatal(err)
	}
	m, err := tokens.NewManager(store,
		tokens.WithShareBaseURL("http://"+ln.Addr().String()+"/credentials/"), // https in production
		tokens.WithAlertAfter(6),
	)
	if err != nil {
		log.Fatal(err)
	}

	// An operator issues a key, once; its token reaches the integration
	// through a link that reveals it once, within 24 hours.
	keys, err := m.Keys(ctx, "acme")
	if err != nil {
		log.Fatal(err)
	}
	if len(keys) == 0 {
		key, link, err := m.CreateKey(ctx, tokens.KeySpec{Account: "acme", Name: "erp-sync"})
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("key %s: send this link to its owner: %s\n", key.ID, link.URL)
	} else {
		fmt.Printf("key %s exists; its link was printed when it was made (delete tokens.db to start over)\n", keys[0].ID)
	}

	links, err := tokenhttp.NewLinkHandler(m)
	if err != nil {
		log.Fatal(err)
	}
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, _ := tokenhttp.KeyFromContext(r.Context())
		fmt.Fprintf(w, "hello, %s\n", key.Name)
	})
	auth, err := tokenhttp.Authenticate(m) // X-API-Key-ID and X-API-Token headers
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/api/", auth(api))

	// The library starts no goroutines: wipe the sealed tokens of links
	// that expired unopened now and every 10 minutes.
	go func() {
		tick := time.Tick(10 * time.Minute)
		for {
			if _, err := m.PurgeExpired(ctx); err != nil && ctx.Err() == nil {
				log.Print(err)
			}
			select {
			case <-ctx.Done():
				return
			case <-tick:
			}
		}
	}()

	// Wrap gives the link pages every path under the share base URL's
	// path; they answer only requests for its host.
	srv := &http.Server{Handler: links.Wrap(mux), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Shutdown(context.Background())
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
