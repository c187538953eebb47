package sqlstore_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/jmoiron/sqlx"
	_ "github.com/mattn/go-sqlite3" // the application picks the driver

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/store/sqlstore"
)

// A store in an SQLite file: open the database with the driver of your
// choice, wrap it with New, and apply the schema with Migrate (or with your
// own migration tool, from the files in migrations/).
func Example() {
	dir, _ := os.MkdirTemp("", "tokens-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()

	db := sqlx.MustOpen("sqlite3", "file:"+filepath.Join(dir, "tokens.db")+
		"?_busy_timeout=10000&_journal_mode=WAL&_txlock=immediate&_secure_delete=on")
	defer db.Close()
	st, err := sqlstore.New(db)
	if err != nil {
		panic(err)
	}
	if err := st.Migrate(ctx); err != nil { // idempotent
		panic(err)
	}
	m, err := tokens.NewManager(st, tokens.WithShareBaseURL("https://share.example.com/credentials/"))
	if err != nil {
		panic(err)
	}
	_, link, _ := m.CreateKey(ctx, tokens.KeySpec{Account: "acme", Name: "erp-sync"})
	creds, _ := m.RedeemLink(ctx, link.URL)
	_, err = m.Verify(ctx, creds.KeyID, creds.Token)
	fmt.Println(err)
	// Output: <nil>
}
