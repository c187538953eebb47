package memstore_test

import (
	"context"
	"fmt"

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/store/memstore"
)

// A memstore keeps keys for the life of the process: for tests, examples
// and services that can afford to lose their keys on restart. Managers
// sharing one memstore behave as processes sharing one database.
func Example() {
	ctx := context.Background()
	m, err := tokens.NewManager(memstore.New(), tokens.WithShareBaseURL("https://share.example.com/credentials/"))
	if err != nil {
		panic(err)
	}
	key, link, _ := m.CreateKey(ctx, tokens.KeySpec{Account: "acme", Name: "erp-sync"})
	creds, _ := m.RedeemLink(ctx, link.URL)
	k, err := m.Verify(ctx, creds.KeyID, creds.Token)
	fmt.Println(k.ID == key.ID, err)
	// Output: true <nil>
}
