package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/tokenhttp"
)

// A credential is one token of a key as the clients hold it.
type credential struct {
	token string
	// deleted is set just before the operator calls DeleteOld for this
	// token. A request sent while it was unset carried a valid token.
	deleted atomic.Bool
}

type key struct {
	id    string
	users []*client
	cred  *credential // the current token; the operator's own record
}

// A handover gives a client the new token of one of its keys. The client
// takes it between two requests, so when it sends on switched it has no
// request in flight with the old token and will send none.
type handover struct {
	key      int
	cred     *credential
	switched chan<- struct{}
}

// A client sends one request at a time, in turn with each of its keys.
// Only its own goroutine touches it, until the run has ended.
type client struct {
	keys  []int         // indexes into load.keys
	creds []*credential // creds[i] is the token of keys[i]
	slot  map[int]int   // index into load.keys -> index into keys
	inbox chan handover

	latency        histogram
	requests       int64
	refusedValid   int64
	refusedDeleted int64
	failed         int64
}

type load struct {
	m       *tokens.Manager
	url     string
	cfg     config
	http    *http.Client
	keys    []*key
	clients []*client
	issued  atomic.Int64 // requests started, against cfg.requests
}

// newLoad creates the keys, reveals their tokens through their links, and
// gives each client its keys: a key is used by one client or more, a
// client uses one key or more.
func newLoad(ctx context.Context, m *tokens.Manager, url string, cfg config) (*load, error) {
	l := &load{
		m:   m,
		url: url,
		cfg: cfg,
		http: &http.Client{
			Transport: &http.Transport{
				Proxy:               nil,
				MaxIdleConns:        cfg.clients,
				MaxIdleConnsPerHost: cfg.clients,
				DisableCompression:  true,
			},
			Timeout: 30 * time.Second,
		},
	}
	for i := range cfg.keys {
		k, link, err := m.CreateKey(ctx, tokens.KeySpec{Account: "loadtest", Name: fmt.Sprintf("loadtest-%d", i)})
		if err == nil {
			l.keys = append(l.keys, &key{id: k.ID})
			var creds *tokens.Credentials
			if creds, err = m.RedeemLink(ctx, link.URL); err == nil {
				l.keys[i].cred = &credential{token: creds.Token}
			}
		}
		if err != nil {
			return nil, errors.Join(err, l.deleteKeys(context.WithoutCancel(ctx)))
		}
	}
	for range cfg.clients {
		l.clients = append(l.clients, &client{slot: make(map[int]int), inbox: make(chan handover, 1)})
	}
	for i := range max(cfg.keys, cfg.clients) {
		k, c := l.keys[i%cfg.keys], l.clients[i%cfg.clients]
		k.users = append(k.users, c)
		c.slot[i%cfg.keys] = len(c.keys)
		c.keys = append(c.keys, i%cfg.keys)
		c.creds = append(c.creds, k.cred)
	}
	return l, nil
}

// deleteKeys deletes the keys of the run, so that a database given to
// the load test keeps none of them.
func (l *load) deleteKeys(ctx context.Context) error {
	var errs []error
	for _, k := range l.keys {
		errs = append(errs, l.m.DeleteKey(ctx, k.id))
	}
	return errors.Join(errs...)
}

// run lets the clients send requests until the duration or the request
// count is reached, while the operator renews their keys.
func (l *load) run(ctx context.Context) (*report, error) {
	loadCtx, stop := context.WithTimeout(ctx, l.cfg.duration)
	defer stop()
	type outcome struct {
		renewals int
		err      error
	}
	operated := make(chan outcome, 1)
	go func() {
		n, err := l.operate(ctx, loadCtx)
		operated <- outcome{n, err}
	}()
	start := time.Now()
	var clients sync.WaitGroup
	for _, c := range l.clients {
		clients.Go(func() { l.drive(ctx, loadCtx, c) })
	}
	clients.Wait()
	elapsed := time.Since(start)
	stop() // the operator may be waiting for a client that stopped at the request limit
	op := <-operated
	if op.err != nil && ctx.Err() == nil {
		return nil, fmt.Errorf("operator: %w", op.err)
	}

	rep := &report{
		cache:    l.cfg.cache,
		keys:     len(l.keys),
		clients:  len(l.clients),
		elapsed:  elapsed,
		renewals: op.renewals,
	}
	for _, c := range l.clients {
		rep.requests += c.requests
		rep.latency.merge(&c.latency)
		rep.refusedValid += c.refusedValid
		rep.refusedDeleted += c.refusedDeleted
		rep.failed += c.failed
	}
	return rep, nil
}

// operate renews the keys one after another until loadCtx ends: Renew
// keeping the old token, reveal the new one, hand it to every client of
// the key and wait until all have switched, then DeleteOld. Store calls
// use ctx, so that the end of the run does not cut one short.
func (l *load) operate(ctx, loadCtx context.Context) (renewals int, err error) {
	for i := 0; loadCtx.Err() == nil; i = (i + 1) % len(l.keys) {
		k := l.keys[i]
		link, err := l.m.Renew(ctx, k.id, tokens.RenewOptions{OldToken: tokens.DeleteLater})
		if err != nil {
			return renewals, err
		}
		creds, err := l.m.RedeemLink(ctx, link.URL)
		if err != nil {
			return renewals, err
		}
		old := k.cred
		k.cred = &credential{token: creds.Token}
		if !l.cfg.dropHandover {
			switched := make(chan struct{}, len(k.users))
			for _, c := range k.users {
				select {
				case c.inbox <- handover{key: i, cred: k.cred, switched: switched}:
				case <-loadCtx.Done():
					return renewals, nil
				}
			}
			for range k.users {
				select {
				case <-switched:
				case <-loadCtx.Done():
					return renewals, nil
				}
			}
			old.deleted.Store(true)
		}
		if err := l.m.DeleteOld(ctx, k.id); err != nil {
			return renewals, err
		}
		renewals++
	}
	return renewals, nil
}

// drive sends c's requests until loadCtx ends or the request limit is
// reached. Requests use ctx, so that the end of the run lets those in
// flight complete.
func (l *load) drive(ctx, loadCtx context.Context, c *client) {
	for next := 0; loadCtx.Err() == nil; next = (next + 1) % len(c.keys) {
		select {
		case h := <-c.inbox:
			c.creds[c.slot[h.key]] = h.cred
			h.switched <- struct{}{}
		default:
		}
		if l.cfg.requests > 0 && l.issued.Add(1) > l.cfg.requests {
			return
		}
		l.send(ctx, c, next)
	}
}

// send sends one request with the i-th key of c and records its outcome.
func (l *load) send(ctx context.Context, c *client, i int) {
	cred := c.creds[i]
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.url, nil)
	if err != nil {
		panic(err) // the URL is the service's own
	}
	req.Header.Set(tokenhttp.DefaultKeyIDHeader, l.keys[c.keys[i]].id)
	req.Header.Set(tokenhttp.DefaultTokenHeader, cred.token)
	deleted := cred.deleted.Load()
	start := time.Now()
	resp, err := l.http.Do(req)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	took := time.Since(start)
	if ctx.Err() != nil {
		return // interrupted
	}
	c.requests++
	if err != nil {
		c.failed++
		return
	}
	c.latency.add(took)
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized, http.StatusForbidden:
		if deleted {
			c.refusedDeleted++
		} else {
			c.refusedValid++
		}
	default:
		c.failed++
	}
}
