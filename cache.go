package tokens

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// CacheConfig configures the verification cache of WithVerifyCache.
type CacheConfig struct {
	// MaxKeys is how many keys the cache holds at most (C3); 0 means
	// DefaultCacheKeys. A full cache drops a key at random to take another.
	MaxKeys int
	// MaxStaleness bounds how late a revocation is honoured (C2): a
	// Verify that starts more than MaxStaleness after a call that stopped
	// a token verifying has returned, in any process, does not accept that
	// token. 0 means DefaultMaxStaleness. A Manager checks the store for
	// changes at most once per MaxStaleness, on the goroutine of a Verify.
	MaxStaleness time.Duration
}

const (
	// DefaultCacheKeys is CacheConfig.MaxKeys when left 0.
	DefaultCacheKeys = 10_000
	// DefaultMaxStaleness is CacheConfig.MaxStaleness when left 0.
	DefaultMaxStaleness = time.Second
	// MaxMaxStaleness is the longest MaxStaleness: half of MinOldTokenTTL,
	// so that an old token's scheduled end, which is at least that far
	// ahead of the write that set it, reaches every cache before it comes.
	MaxMaxStaleness = 30 * time.Second
)

// WithVerifyCache lets Verify accept a token from process memory instead of
// reading the store every time (C1-C4). Only acceptance is cached: a token
// the cache does not accept is looked up in the store, so a token made a
// moment ago in another process verifies at once, and a wrong token never
// takes memory.
//
// A change that stops a token verifying (DeleteOld, Renew with DeleteNow
// or a discard of an unseen token, Undo, Deactivate, DeleteKey) is
// honoured at once by the Manager that made it, and by every other Manager
// sharing the store within MaxStaleness: before it accepts from memory, a
// Manager that has not confirmed within MaxStaleness that its entries are
// current asks the store which keys changed since (one small query), and
// if it cannot, reads the store instead (fail closed). Time is the
// Manager's clock (R12): if that is the wall clock and it steps back,
// entries stay trusted for as long as the step.
//
// The store must implement ChangeLog, as memstore and sqlstore do;
// NewManager refuses the option otherwise. The cache starts no goroutine;
// Close empties it.
func WithVerifyCache(cc CacheConfig) Option {
	return func(cfg *config) error {
		if cc.MaxKeys < 0 || cc.MaxStaleness < 0 {
			return invalidOption("WithVerifyCache: MaxKeys and MaxStaleness must not be negative")
		}
		if cc.MaxStaleness > MaxMaxStaleness {
			return invalidOption("WithVerifyCache: MaxStaleness must be at most 30s (MaxMaxStaleness)")
		}
		if cc.MaxKeys == 0 {
			cc.MaxKeys = DefaultCacheKeys
		}
		if cc.MaxStaleness == 0 {
			cc.MaxStaleness = DefaultMaxStaleness
		}
		cfg.cache = &cc
		return nil
	}
}

// verifyCache holds records of keys whose token the store accepted, by key
// ID. It trusts them while a check of the store's ChangeLog that started
// less than MaxStaleness ago found them unchanged.
//
// The race that such caches are known for: a Verify reads the store, a
// revocation commits and a check drops the key, then the Verify puts back
// what it read. Here every drop bumps gen, and a fill is kept only if gen
// did not move since before its read.
type verifyCache struct {
	log       ChangeLog
	maxKeys   int
	staleness time.Duration
	observe   func(context.Context, Observation) // nil: no one listens

	mu        sync.RWMutex
	entries   map[string]*cachedKey
	byToken   map[Digest]string // key IDs of the entries by token digest, for VerifyToken
	seq       ChangePosition    // the ChangeLog position the entries are current with
	checkedAt time.Time         // when the latest successful check began; zero: never
	gen       uint64
	checking  chan struct{} // closed when the check in flight ends; nil if none
	closed    bool
}

// cachedKey is a record as the store had it when a token of it verified.
// rec never changes once cached; the times of the last recorded use, as
// this process knows them, do.
type cachedKey struct {
	rec      KeyRecord
	lastUsed [2]atomic.Int64 // Unix microseconds of current and old, or neverUsed
}

func newVerifyCache(store Store, cc *CacheConfig, observe func(context.Context, Observation)) (*verifyCache, error) {
	log, ok := store.(ChangeLog)
	if !ok {
		return nil, invalidOption(fmt.Sprintf("WithVerifyCache: the store (%T) does not implement tokens.ChangeLog", store))
	}
	return &verifyCache{
		log:       log,
		maxKeys:   cc.MaxKeys,
		staleness: cc.MaxStaleness,
		entries:   make(map[string]*cachedKey),
		byToken:   make(map[Digest]string),
		observe:   observe,
	}, nil
}

// lookup returns the cached key id if the cache is confirmed current at
// now, confirming it first if needed (checked); nil if it cannot be
// trusted or holds no such key. gen is the generation a fill after a store
// read must present.
//
// With id empty, lookup finds the key that holds a token of digest; the
// caller still compares digest with the entry's tokens.
func (c *verifyCache) lookup(ctx context.Context, id string, digest Digest, now time.Time) (e *cachedKey, gen uint64, checked bool) {
	c.mu.RLock()
	current := c.currentAt(now)
	e, gen = c.entry(id, digest), c.gen
	c.mu.RUnlock()
	if current {
		return e, gen, false
	}
	if !c.check(ctx, now) {
		return nil, gen, true
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.entry(id, digest), c.gen, true
}

// entry returns the entry of key id, or with id empty of the key holding
// digest; the caller holds c.mu.
func (c *verifyCache) entry(id string, digest Digest) *cachedKey {
	if id == "" {
		var ok bool
		if id, ok = c.byToken[digest]; !ok {
			return nil
		}
	}
	return c.entries[id]
}

// remove drops the entry of key id and its tokens; the caller holds c.mu.
func (c *verifyCache) remove(id string) {
	e, ok := c.entries[id]
	if !ok {
		return
	}
	delete(c.entries, id)
	for _, d := range []*Digest{&e.rec.Current.Digest, &e.rec.Old.Digest} {
		if c.byToken[*d] == id {
			delete(c.byToken, *d)
		}
	}
}

// clear drops every entry; the caller holds c.mu.
func (c *verifyCache) clear() {
	c.entries = make(map[string]*cachedKey)
	c.byToken = make(map[Digest]string)
}

// currentAt reports whether the entries may be trusted at now; the caller
// holds c.mu.
func (c *verifyCache) currentAt(now time.Time) bool {
	return !c.closed && !c.checkedAt.IsZero() && now.Before(c.checkedAt.Add(c.staleness))
}

// check asks the ChangeLog which keys changed since the last check, drops
// them, and reports whether the entries are now current at now. One check
// runs at a time; others wait for it. start is a time read before the
// store is asked, so that the trust it buys never outlasts MaxStaleness
// after any change the store did not yet report.
func (c *verifyCache) check(ctx context.Context, start time.Time) bool {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return false
		}
		if c.currentAt(start) {
			c.mu.Unlock()
			return true
		}
		if wait := c.checking; wait != nil {
			c.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return false
			}
		}
		done := make(chan struct{})
		c.checking = done
		since := c.seq
		c.mu.Unlock()

		changes, err := c.log.Changes(ctx, since)
		if err != nil && c.observe != nil {
			c.observe(ctx, Observation{Op: OpCacheCheck, Outcome: OutcomeError, Err: err})
		}

		c.mu.Lock()
		c.checking = nil
		close(done)
		if err == nil && !c.closed {
			switch {
			case !changes.Complete:
				c.clear()
				c.gen++
			case len(changes.Keys) > 0:
				for _, id := range changes.Keys {
					c.remove(id)
				}
				c.gen++
			}
			c.seq = changes.Latest
			if start.After(c.checkedAt) {
				c.checkedAt = start
			}
		}
		current := err == nil && c.currentAt(start)
		c.mu.Unlock()
		return current
	}
}

// fill caches a copy of rec, whose current token (or old one, if old) the
// store just accepted and which was last used at lastUsed, unless an entry
// was dropped since gen was read, before the store was: then rec may be
// older than the change that dropped it.
func (c *verifyCache) fill(rec *KeyRecord, gen uint64, old bool, lastUsed time.Time) {
	e := &cachedKey{rec: *rec}
	e.rec.Link.Sealed = nil // never kept in memory longer than needed
	e.lastUsed[0].Store(unixMicro(rec.Current.LastUsedAt))
	e.lastUsed[1].Store(unixMicro(rec.Old.LastUsedAt))
	if old {
		e.lastUsed[1].Store(unixMicro(lastUsed))
	} else {
		e.lastUsed[0].Store(unixMicro(lastUsed))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.gen != gen {
		return
	}
	if _, ok := c.entries[rec.ID]; !ok && len(c.entries) >= c.maxKeys {
		for id := range c.entries { // map order is random: a random victim
			c.remove(id)
			break
		}
	}
	c.remove(rec.ID)
	c.entries[rec.ID] = e
	c.byToken[rec.Current.Digest] = rec.ID
	if rec.HasOld {
		c.byToken[rec.Old.Digest] = rec.ID
	}
}

// drop forgets key id at once, after this Manager changed it.
func (c *verifyCache) drop(id string) {
	c.mu.Lock()
	c.remove(id)
	c.gen++
	c.mu.Unlock()
}

func (c *verifyCache) close() {
	c.mu.Lock()
	c.closed = true
	c.entries, c.byToken = nil, nil
	c.gen++
	c.mu.Unlock()
}

// neverUsed is the last-use time of a token never used. Not 0, which is
// 1970-01-01, where a mock clock starts.
const neverUsed = math.MinInt64

func unixMicro(t time.Time) int64 {
	if t.IsZero() {
		return neverUsed
	}
	return t.UnixMicro()
}

func fromUnixMicro(v int64) time.Time {
	if v == neverUsed {
		return time.Time{}
	}
	return time.UnixMicro(v).UTC()
}

// Close stops what the Manager started for WithVerifyCache and empties
// the cache; after it, Verify reads the store (C4). It does not close the
// store. Without the option it does nothing. It returns nil.
func (m *Manager) Close() error {
	if m.cache != nil {
		m.cache.close()
	}
	return nil
}

// forget drops key id from the cache once this Manager wrote it, whether
// or not the write took: so the Manager that revokes a token refuses it at
// once, and a fill that read the key before the write is not kept.
func (m *Manager) forget(id string) {
	if m.cache != nil {
		m.cache.drop(id)
	}
}
