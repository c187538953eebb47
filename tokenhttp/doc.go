// Package tokenhttp puts a tokens.Manager on HTTP: middleware that
// authenticates requests with a key ID and token, and the page behind a
// single-access share link, where a person reveals and copies a new token.
//
// Authenticate guards an API:
//
//	mux.Handle("/api/", tokenhttp.Authenticate(m)(api))
//
// and handlers read the key with KeyFromContext. A LinkHandler serves the
// share links of a Manager created with
// tokens.WithShareBaseURL("https://share.example.com/credentials/"):
//
//	links, err := tokenhttp.NewLinkHandler(m)
//	mux.Handle("/credentials/", links)
//
// Opening a link never consumes it, so that chat unfurlers, mail scanners
// and prefetchers cannot burn it: the landing page asks the person to press
// Reveal, a same-origin POST protected against cross-site requests.
package tokenhttp
