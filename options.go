package tokens

import (
	"bytes"
	"context"
	"fmt"
	"time"
)

// An Option configures a Manager; NewManager refuses an invalid one with an
// error wrapping ErrInvalidOption.
type Option func(*config) error

type config struct {
	clock       Clock
	shareBase   shareBase
	alertAfter  int
	linkTTL     time.Duration
	tokenPrefix string
	keyIDPrefix string
	// sealingSecrets are WithSealingSecret's secrets, current first.
	sealingSecrets [][]byte
	cache          *CacheConfig // nil: Verify always reads the store
	// revokedRetention is how long deleted tokens are remembered (R16);
	// 0: not at all.
	revokedRetention time.Duration
	observe          func(context.Context, Observation) // nil: no one listens
	leakPolicy       LeakPolicy
}

// sealingSecret is the secret new links are sealed under; nil if none.
func (c *config) sealingSecret() []byte {
	if len(c.sealingSecrets) == 0 {
		return nil
	}
	return c.sealingSecrets[0]
}

const (
	// DefaultAlertAfter is the renewal alert period in months (R10).
	DefaultAlertAfter = 3
	// DefaultLinkTTL is how long a share link stays redeemable.
	DefaultLinkTTL = 24 * time.Hour
	// DefaultTokenPrefix starts every token unless WithTokenPrefix says otherwise.
	DefaultTokenPrefix = "tok"
	// DefaultKeyIDPrefix starts every key ID unless WithKeyIDPrefix says otherwise.
	DefaultKeyIDPrefix = "key"

	// DefaultRevokedTokenRetention is how long a deleted token is
	// remembered for reuse detection unless WithRevokedTokenRetention says
	// otherwise (R16).
	DefaultRevokedTokenRetention = 90 * 24 * time.Hour

	maxLinkTTL = 30 * 24 * time.Hour
)

func defaultConfig() config {
	return config{
		clock:       systemClock{},
		alertAfter:  DefaultAlertAfter,
		linkTTL:     DefaultLinkTTL,
		tokenPrefix: DefaultTokenPrefix,
		keyIDPrefix: DefaultKeyIDPrefix,

		revokedRetention: DefaultRevokedTokenRetention,
	}
}

// WithClock sets the clock the Manager reads every time from (R12). The
// default wraps time.Now.
func WithClock(c Clock) Option {
	return func(cfg *config) error {
		if c == nil {
			return invalidOption("WithClock: clock is nil")
		}
		cfg.clock = c
		return nil
	}
}

// WithShareBaseURL sets the base of share links, which are the base followed
// by a link ID. It is required (S6): an absolute https URL ending in "/",
// with no user info, query or fragment; http is accepted only for a loopback
// host (localhost, 127.0.0.0/8, ::1), for development.
func WithShareBaseURL(base string) Option {
	return func(cfg *config) error {
		b, err := newShareBase(base)
		if err != nil {
			return err
		}
		cfg.shareBase = b
		return nil
	}
}

// WithAlertAfter sets the renewal alert period in months, 1 to 24 (R10).
// The default is 3; 3 and 6 are the recommended choices.
func WithAlertAfter(months int) Option {
	return func(cfg *config) error {
		if months < 1 || months > 24 {
			return invalidOption("WithAlertAfter: months must be between 1 and 24")
		}
		cfg.alertAfter = months
		return nil
	}
}

// WithLinkTTL sets how long a share link stays redeemable: more than zero
// and at most 30 days. The default is 24 hours.
func WithLinkTTL(ttl time.Duration) Option {
	return func(cfg *config) error {
		if ttl <= 0 || ttl > maxLinkTTL {
			return invalidOption("WithLinkTTL: ttl must be more than 0 and at most 720h")
		}
		cfg.linkTTL = ttl
		return nil
	}
}

// WithTokenPrefix sets the prefix of new tokens, which look like
// "<prefix>_<43 base62 characters><6 character checksum>". A distinctive
// prefix lets secret scanners recognise leaked tokens. It is 1 to 16
// characters, a lowercase letter followed by lowercase letters and digits.
// Tokens issued under an earlier prefix keep verifying.
func WithTokenPrefix(prefix string) Option {
	return func(cfg *config) error {
		if !validPrefix(prefix) {
			return invalidOption("WithTokenPrefix: prefix must be 1 to 16 characters [a-z][a-z0-9]*")
		}
		cfg.tokenPrefix = prefix
		return nil
	}
}

// WithKeyIDPrefix sets the prefix of new key IDs, which look like
// "<prefix>_<22 base62 characters>". Same form as WithTokenPrefix.
func WithKeyIDPrefix(prefix string) Option {
	return func(cfg *config) error {
		if !validPrefix(prefix) {
			return invalidOption("WithKeyIDPrefix: prefix must be 1 to 16 characters [a-z][a-z0-9]*")
		}
		cfg.keyIDPrefix = prefix
		return nil
	}
}

// WithSealingSecret mixes a server-side secret into the key each share
// link's token is sealed under (S8), so that a copy of the database (a
// backup, a replica, SQLite's -wal file, PostgreSQL's WAL) plus a link URL
// (from a chat, browser history or a proxy log) yields no token: the URL
// alone no longer opens the sealed copy that such places keep after the
// wipe. Each secret is at least MinSealingSecretLen bytes, such as 32 bytes
// from crypto/rand, kept outside the database (a secret manager or an
// environment variable).
//
// New links are sealed under current. Links sealed under one of previous,
// or before any secret was set, still redeem: to rotate, pass the new
// secret as current and the old one as previous for at least the link TTL,
// then drop the old one. A Manager that has none of the secrets a link was
// sealed under cannot redeem it: RedeemLink gives ErrLinkSealed and the
// link stays pending.
func WithSealingSecret(current []byte, previous ...[]byte) Option {
	return func(cfg *config) error {
		secrets := [][]byte{}
		for i, secret := range append([][]byte{current}, previous...) {
			if len(secret) < MinSealingSecretLen {
				return invalidOption(fmt.Sprintf("WithSealingSecret: secret %d is shorter than %d bytes", i, MinSealingSecretLen))
			}
			secrets = append(secrets, bytes.Clone(secret))
		}
		cfg.sealingSecrets = secrets
		return nil
	}
}

// WithRevokedTokenRetention sets how long a deleted token is remembered,
// as a digest of its digest, so that Verify can tell an integration that
// still sends it (ErrTokenRevoked, Key.RevokedTokenUsedAt, R16). The
// default is 90 days; 0 turns reuse detection off. PurgeExpired forgets
// tokens deleted longer ago than that.
func WithRevokedTokenRetention(d time.Duration) Option {
	return func(cfg *config) error {
		if d < 0 {
			return invalidOption("WithRevokedTokenRetention: retention must not be negative")
		}
		cfg.revokedRetention = d
		return nil
	}
}

func invalidOption(msg string) error {
	return fmt.Errorf("%w: %s", ErrInvalidOption, msg)
}
