package tokenhttp_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"time"

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
	auth, err := tokenhttp.Authenticate(m)
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/api/", auth(api))

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

// WithErrorReporter is the one way both handlers tell the application
// what went wrong on their side; here it goes to log/slog. A request whose
// deadline has passed stands in for a failing store.
func ExampleWithErrorReporter() {
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{} // keeps the output stable
			}
			return a
		},
	}))
	report := tokenhttp.WithErrorReporter(func(r *http.Request, err error) {
		logger.Error("tokenhttp", "method", r.Method, "path", r.URL.Path, "err", err)
	})

	ctx := context.Background()
	m, _ := tokens.NewManager(memstore.New(),
		tokens.WithClock(clock.NewMock()),
		tokens.WithShareBaseURL("https://share.example.com/credentials/"))
	_, link, _ := m.CreateKey(ctx, tokens.KeySpec{Account: "acme", Name: "erp-sync"})
	creds, _ := m.RedeemLink(ctx, link.URL)

	auth, err := tokenhttp.Authenticate(m, report)
	if err != nil {
		panic(err)
	}
	if _, err := tokenhttp.NewLinkHandler(m, report); err != nil { // the same option
		panic(err)
	}
	api := auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))

	// A deadline that has passed: the server's failure, so reported (a
	// client that hangs up, context.Canceled, is not).
	ended, cancel := context.WithDeadline(ctx, time.Time{})
	defer cancel()
	r := httptest.NewRequestWithContext(ended, http.MethodGet, "/api/orders", nil)
	r.Header.Set("X-API-Key-ID", creds.KeyID)
	r.Header.Set("X-API-Token", creds.Token)
	w := httptest.NewRecorder()
	api.ServeHTTP(w, r)
	fmt.Println(w.Code)
	// Output:
	// level=ERROR msg=tokenhttp method=GET path=/api/orders err="tokens: verify: context deadline exceeded"
	// 500
}

// RequireScopes goes inside Authenticate; here with WithBearerToken, so
// that an integration sends its token alone.
func ExampleRequireScopes() {
	ctx := context.Background()
	m, _ := tokens.NewManager(memstore.New(),
		tokens.WithClock(clock.NewMock()),
		tokens.WithShareBaseURL("https://share.example.com/credentials/"))
	_, link, _ := m.CreateKey(ctx, tokens.KeySpec{Account: "acme", Name: "erp-sync", Scopes: []string{"invoices:read"}})
	creds, _ := m.RedeemLink(ctx, link.URL)

	auth, err := tokenhttp.Authenticate(m, tokenhttp.WithBearerToken())
	if err != nil {
		panic(err)
	}
	canRead, err := tokenhttp.RequireScopes([]string{"invoices:read"})
	if err != nil {
		panic(err)
	}
	canWrite, err := tokenhttp.RequireScopes([]string{"invoices:write"})
	if err != nil {
		panic(err)
	}
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux := http.NewServeMux()
	mux.Handle("GET /invoices", auth(canRead(ok)))
	mux.Handle("POST /invoices", auth(canWrite(ok)))

	for _, method := range []string{http.MethodGet, http.MethodPost} {
		r := httptest.NewRequest(method, "/invoices", nil)
		r.Header.Set("Authorization", "Bearer "+creds.Token)
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		fmt.Print(method, " ", w.Code, " ", w.Body.String())
	}
	// Output:
	// GET 200 ok
	// POST 403 {"error":"insufficient_scope","message":"the key lacks the scope invoices:write","missing_scopes":["invoices:write"]}
}
