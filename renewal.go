package tokens

import (
	"context"
	"fmt"
	"time"
)

// RenewOptions are the choices of a renewal. The zero value renews with
// DeleteLater and no scheduled expiry.
type RenewOptions struct {
	OldToken OldTokenPolicy
	// OldTokenTTL, with DeleteLater, schedules the old token's end (R14):
	// it verifies while now < the renewal's time + OldTokenTTL, and is
	// gone from then on, as if DeleteOld had run, with no call and no job.
	// Zero keeps it until DeleteOld or Undo. Negative, or given with
	// DeleteNow, is refused with ErrInvalidOption.
	OldTokenTTL time.Duration
}

// MinOldTokenTTL is the shortest scheduled end of an old token (R14). It
// is longer than any verification cache's MaxStaleness (MaxMaxStaleness),
// so that every process sharing the store has seen the renewal before the
// end it set comes: the end is exact in every cache (C2).
const MinOldTokenTTL = time.Minute

func (o RenewOptions) validate() error {
	switch {
	case o.OldToken != DeleteLater && o.OldToken != DeleteNow:
		return fmt.Errorf("%w: RenewOptions.OldToken is %v", ErrInvalidOption, o.OldToken)
	case o.OldTokenTTL < 0:
		return fmt.Errorf("%w: RenewOptions.OldTokenTTL is negative", ErrInvalidOption)
	case o.OldTokenTTL > 0 && o.OldTokenTTL < MinOldTokenTTL:
		return fmt.Errorf("%w: RenewOptions.OldTokenTTL is under a minute (MinOldTokenTTL)", ErrInvalidOption)
	case o.OldTokenTTL > 0 && o.OldToken == DeleteNow:
		return fmt.Errorf("%w: RenewOptions.OldTokenTTL is for DeleteLater; DeleteNow deletes the old token at once", ErrInvalidOption)
	}
	return nil
}

// Renew gives the key a new token, current at once, and returns the share
// link that reveals it (R2-R5).
//
// It fails with ErrRenewalPending while the key's latest link is
// redeemable (R3), and with ErrOldTokenPending while an old token exists
// and the current token was seen (R5). A current token whose link expired
// unredeemed was never seen: it is discarded rather than kept as old (R4).
func (m *Manager) Renew(ctx context.Context, id string, opts RenewOptions) (*ShareLink, error) {
	if ctx == nil {
		return nil, ErrNilContext
	}
	if err := opts.validate(); err != nil {
		return nil, err
	}
	var link *ShareLink
	tmpl := &Event{Type: EventTokenRenewed, Policy: opts.OldToken}
	err := m.updateEvent(ctx, m.keyLoader(id), tmpl, func(rec *KeyRecord, now time.Time) error {
		tmpl.OldTokenTTL = 0 // the event tells the end this renewal set, if any
		if linkState(rec, now) == LinkPending {
			return ErrRenewalPending
		}
		switch {
		case !currentSeen(rec):
			// R4: nobody ever had this token; an existing old token stays
			// old, unless the caller deletes it now.
			if opts.OldToken == DeleteNow {
				rec.HasOld, rec.Old = false, TokenRecord{}
			}
		case rec.HasOld:
			return ErrOldTokenPending
		case opts.OldToken == DeleteLater:
			rec.HasOld, rec.Old = true, rec.Current
			if opts.OldTokenTTL > 0 {
				rec.Old.ExpiresAt = now.Add(opts.OldTokenTTL)
				tmpl.OldTokenTTL = opts.OldTokenTTL
			}
		}
		var err error
		link, err = m.issueToken(rec, now)
		return err
	})
	if err != nil {
		return nil, err
	}
	return link, nil
}

// currentSeen reports whether the owner of rec's current token has had it
// (R4, R5): its link was redeemed, or the key has no link, which happens
// only when Undo restored a token its owner had all along. A link that
// expired unredeemed leaves the token unseen.
func currentSeen(rec *KeyRecord) bool {
	return !rec.HasLink || !rec.Link.RedeemedAt.IsZero()
}

// DeleteOld deletes the key's old token, irreversibly (R6). It returns
// ErrNoOldToken if there is none. It works while the new link is pending.
func (m *Manager) DeleteOld(ctx context.Context, id string) error {
	if ctx == nil {
		return ErrNilContext
	}
	return m.update(ctx, m.keyLoader(id), Event{Type: EventOldTokenDeleted}, func(rec *KeyRecord, _ time.Time) error {
		if !rec.HasOld {
			return ErrNoOldToken
		}
		rec.HasOld, rec.Old = false, TokenRecord{}
		return nil
	})
}

// ExpireOld gives the key's old token a scheduled end at now + ttl (R14),
// after the renewal that kept it: the flow where the operator sees the new
// link first and then decides how long the old token may live. From then
// on it is gone as if DeleteOld had run. A later call replaces the end.
// It returns ErrNoOldToken if there is no old token, and ErrInvalidOption
// for a ttl under MinOldTokenTTL.
func (m *Manager) ExpireOld(ctx context.Context, id string, ttl time.Duration) error {
	if ctx == nil {
		return ErrNilContext
	}
	if ttl < MinOldTokenTTL {
		return fmt.Errorf("%w: ExpireOld: ttl must be at least a minute (DeleteOld deletes at once)", ErrInvalidOption)
	}
	return m.update(ctx, m.keyLoader(id), Event{Type: EventOldTokenExpirySet, OldTokenTTL: ttl}, func(rec *KeyRecord, now time.Time) error {
		if !rec.HasOld {
			return ErrNoOldToken
		}
		rec.Old.ExpiresAt = now.Add(ttl)
		return nil
	})
}

// Undo reverses the latest DeleteLater renewal while its old token exists
// (R7): the new token is deleted, the renewal's link revoked, whether it was
// pending, expired or redeemed (it then gives ErrLinkNotFound), and the old
// token is current again, with its own created and last-used times. It
// returns ErrUndoUnavailable when there is no old token.
func (m *Manager) Undo(ctx context.Context, id string) error {
	if ctx == nil {
		return ErrNilContext
	}
	return m.update(ctx, m.keyLoader(id), Event{Type: EventRenewalUndone}, func(rec *KeyRecord, _ time.Time) error {
		if !rec.HasOld {
			return ErrUndoUnavailable
		}
		rec.Current = rec.Old
		rec.Current.ExpiresAt = time.Time{} // a current token has no scheduled end
		rec.HasOld, rec.Old = false, TokenRecord{}
		rec.HasLink, rec.Link = false, LinkRecord{} // the restored token counts as seen
		return nil
	})
}

// oldExpired reports whether rec's old token has reached its scheduled end
// (R14): from then on it is gone, whether or not a write has dropped it
// from the store yet.
func oldExpired(rec *KeyRecord, now time.Time) bool {
	return rec.HasOld && !rec.Old.ExpiresAt.IsZero() && !now.Before(rec.Old.ExpiresAt)
}

// hasOld reports whether rec has an old token at now (R14).
func hasOld(rec *KeyRecord, now time.Time) bool {
	return rec.HasOld && !oldExpired(rec, now)
}

// dropExpiredOld removes an old token past its scheduled end, as DeleteOld
// would have, and reports whether there was one.
func dropExpiredOld(rec *KeyRecord, now time.Time) bool {
	if !oldExpired(rec, now) {
		return false
	}
	rec.HasOld, rec.Old = false, TokenRecord{}
	return true
}
