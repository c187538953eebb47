package tokenhttp_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/benbjohnson/clock"

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/store/memstore"
	"github.com/keyrenew/tokens/tokenhttp"
)

func ExampleAuthenticate() {
	ctx := context.Background()
	m, _ := tokens.NewManager(memstore.New(),
		tokens.WithClock(clock.NewMock()),
		tokens.WithShareBaseURL("https://share.example.com/credentials/"))
	_, link, _ := m.CreateKey(ctx, tokens.KeySpec{Account: "acme", Name: "erp-sync"})
	creds, _ := m.RedeemLink(ctx, link.URL)

	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, _ := tokenhttp.KeyFromContext(r.Context())
		fmt.Fprintf(w, "hello %s of %s\n", key.Name, key.Account)
	})
	mux := http.NewServeMux()
	mux.Handle("/api/", tokenhttp.Authenticate(m)(api))

	call := func(keyID, token string) {
		r := httptest.NewRequest(http.MethodGet, "/api/orders", nil)
		r.Header.Set("X-API-Key-ID", keyID)
		r.Header.Set("X-API-Token", token)
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		fmt.Print(w.Code, " ", w.Body.String())
	}
	call(creds.KeyID, creds.Token)
	call(creds.KeyID, "tok_wrong")
	// Output:
	// 200 hello erp-sync of acme
	// 401 {"error":"invalid_credentials","message":"the key ID or the token is wrong"}
}

func ExampleNewLinkHandler() {
	const base = "https://share.example.com/credentials/"
	ctx := context.Background()
	m, _ := tokens.NewManager(memstore.New(), tokens.WithClock(clock.NewMock()), tokens.WithShareBaseURL(base))
	links, err := tokenhttp.NewLinkHandler(m)
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux() // the application's own routes
	site := links.Wrap(mux)   // every path under /credentials/ goes to links

	_, link, _ := m.CreateKey(ctx, tokens.KeySpec{Name: "erp-sync"})
	w := httptest.NewRecorder()
	site.ServeHTTP(w, httptest.NewRequest(http.MethodGet, link.URL, nil))
	fmt.Println(w.Code, strings.Contains(w.Body.String(), `<button id="reveal"`))

	// Opening the link did not consume it.
	st, _ := m.LinkStatus(ctx, link.URL)
	fmt.Println(st.State)
	// Output:
	// 200 true
	// pending
}
