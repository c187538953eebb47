package tokens

import (
	"context"
)

// An Observation is one thing a Manager did, for the application's
// metrics and logs (WithObserver). It never holds a secret: KeyID is
// public, and errors never carry tokens or link IDs (S4).
type Observation struct {
	// Op is what was done: OpVerify, the Op of a change (its EventType),
	// OpPurgeExpired, or OpCacheCheck.
	Op Op
	// Outcome is how it ended, one of the Outcome constants.
	Outcome Outcome
	// KeyID is the key concerned, as the caller gave it; empty for
	// cache_check.
	KeyID string
	// Cached is true for a Verify accepted from the verification cache;
	// with the cache on, a Verify with Cached false is a miss.
	Cached bool
	// Err is the error returned, for every outcome but OutcomeOK and
	// OutcomeConflictRetried.
	Err error
}

// Op names what an Observation observed.
type Op string

// The operations an Observation reports. A change reports the Op of its
// EventType: Op(EventTokenRenewed) is OpTokenRenewed.
const (
	// OpVerify: a Verify.
	OpVerify Op = "verify"
	// OpPurgeExpired: PurgeExpired wiping an expired link's sealed token.
	OpPurgeExpired Op = "purge_expired"
	// OpCacheCheck: the verification cache asking the store which keys
	// changed.
	OpCacheCheck Op = "cache_check"

	OpKeyCreated        = Op(EventKeyCreated)
	OpTokenRenewed      = Op(EventTokenRenewed)
	OpLinkRedeemed      = Op(EventLinkRedeemed)
	OpLinkRevoked       = Op(EventLinkRevoked)
	OpOldTokenDeleted   = Op(EventOldTokenDeleted)
	OpRenewalUndone     = Op(EventRenewalUndone)
	OpKeyActivated      = Op(EventKeyActivated)
	OpKeyDeactivated    = Op(EventKeyDeactivated)
	OpKeyDeleted        = Op(EventKeyDeleted)
	OpRevokedTokenUsed  = Op(EventRevokedTokenUsed)
	OpOldTokenExpirySet = Op(EventOldTokenExpirySet)
	OpKeyUpdated        = Op(EventKeyUpdated)
	OpKeyImported       = Op(EventKeyImported)
	OpTokenLeaked       = Op(EventTokenLeaked)
)

// Outcome says how an Observation ended.
type Outcome string

// Outcomes. Verify ends in OutcomeOK or one of the Verify outcomes; a
// change in OutcomeOK, OutcomeRefused or OutcomeError, and reports each
// compare-and-swap it retries as OutcomeConflictRetried.
const (
	OutcomeOK = Outcome("ok")
	// OutcomeRefused: a rule refused the call (ErrRenewalPending,
	// ErrLinkUsed, ErrKeyNotFound, ...): the caller's doing, not a fault.
	OutcomeRefused = Outcome("refused")
	// OutcomeError: the store failed, or the outcome stayed unknown (R18).
	OutcomeError = Outcome("error")
	// OutcomeConflictRetried: another writer changed the key between the
	// read and the write of a change, which is retried.
	OutcomeConflictRetried = Outcome("conflict_retried")

	OutcomeInvalid   = Outcome("invalid")   // Verify: unknown key or wrong token
	OutcomeMalformed = Outcome("malformed") // Verify: not a token at all
	OutcomeInactive  = Outcome("inactive")  // Verify: right token, deactivated key
	OutcomeRevoked   = Outcome("revoked")   // Verify: a deleted token (R16)
	OutcomeExpired   = Outcome("expired")   // Verify: right token, expired key (R22)
)

// WithObserver makes the Manager call f with an Observation for each
// Verify, each change and each retry, on the calling goroutine: the one
// place to count verify outcomes, renewals, redemptions, conflicts and
// store errors, and the cache's hits and misses, with log/slog,
// Prometheus or OpenTelemetry, none of which the library imports. f must
// be quick and safe for concurrent use; a counter keyed by Op and Outcome
// is the usual shape. Without it, nothing is called.
func WithObserver(f func(ctx context.Context, o Observation)) Option {
	return func(cfg *config) error {
		if f == nil {
			return invalidOption("WithObserver: function is nil")
		}
		cfg.observe = f
		return nil
	}
}

// observe reports what op on key id ended with, if an observer listens.
func (m *Manager) observe(ctx context.Context, op Op, id string, err error) {
	if m.cfg.observe == nil {
		return
	}
	outcome := OutcomeError
	switch {
	case err == nil:
		outcome = OutcomeOK
	case isRuleError(err):
		outcome = OutcomeRefused
	}
	m.cfg.observe(ctx, Observation{Op: op, Outcome: outcome, KeyID: id, Err: err})
}
