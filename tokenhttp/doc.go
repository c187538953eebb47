// Package tokenhttp puts a tokens.Manager on HTTP: middleware that
// authenticates requests with a key ID and token, and the page behind a
// single-access share link, where a person reveals and copies a new token.
//
// Authenticate guards an API:
//
//	auth, err := tokenhttp.Authenticate(m)
//	...
//	mux.Handle("/api/", auth(api))
//
// and handlers read the key with KeyFromContext. WithBearerToken also takes
// "Authorization: Bearer <token>", the one string most integrations send.
// RequireScopes, inside Authenticate, lets through only keys with the
// scopes a route needs:
//
//	canWrite, err := tokenhttp.RequireScopes([]string{"invoices:write"})
//	...
//	mux.Handle("POST /api/invoices", auth(canWrite(createInvoice)))
//
// NewSecretScanningHandler is the endpoint GitHub's secret scanning posts
// leaked tokens to: it checks GitHub's signature, calls ReportLeak for each
// token and answers with GitHub's labels:
//
//	leaks, err := tokenhttp.NewSecretScanningHandler(m)
//	...
//	mux.Handle("POST /github/secret-scanning", leaks)
//
// Each handler takes options of its own type (AuthOption, LinkOption,
// ScopeOption, ScanOption), so an option given where it does not apply is a compile
// error; WithErrorReporter is an Option, which fits all of them.
//
// A LinkHandler serves the
// share links of a Manager created with
// tokens.WithShareBaseURL("https://share.example.com/credentials/"):
//
//	links, err := tokenhttp.NewLinkHandler(m)
//	srv := &http.Server{Handler: links.Wrap(mux)}
//
// Wrap gives the LinkHandler every path under /credentials/, also the
// unclean ones that ServeMux would redirect. The LinkHandler answers only
// requests for share.example.com, the host of the base URL, so that a web
// page on a host name re-pointed at the server (DNS rebinding) cannot read
// a link.
//
// Opening a link never consumes it, so that chat unfurlers, mail scanners
// and prefetchers cannot burn it: the landing page asks the person to press
// Reveal, a same-origin POST protected against cross-site requests.
package tokenhttp
