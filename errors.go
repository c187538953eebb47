package tokens

import (
	"errors"
	"fmt"
)

// Errors returned by the Manager. Compare with errors.Is: the Manager wraps
// them with context that never contains a secret.
var (
	// ErrKeyNotFound means no key has the given ID (it never existed or was deleted).
	ErrKeyNotFound = errors.New("tokens: key not found")
	// ErrRenewalPending means the key's latest share link is neither redeemed
	// nor expired, so its token may not have reached its owner yet (R3).
	ErrRenewalPending = errors.New("tokens: renewal pending: the latest share link has not been redeemed or expired")
	// ErrOldTokenPending means the key still has an old token and its
	// current token was seen: delete the old token or undo first (R5).
	ErrOldTokenPending = errors.New("tokens: old token pending: delete it or undo the renewal first")
	// ErrNoOldToken means DeleteOld found no old token (R6).
	ErrNoOldToken = errors.New("tokens: key has no old token")
	// ErrUndoUnavailable means there is no old token to restore (R7).
	ErrUndoUnavailable = errors.New("tokens: nothing to undo: the key has no old token")

	// ErrInvalidLink means a share link does not have the configured base and
	// one well-formed link ID; the store was not consulted (S5).
	ErrInvalidLink = errors.New("tokens: invalid share link")
	// ErrLinkNotFound means the link is unknown, superseded by a later
	// renewal, revoked by Undo, or belongs to a deleted key (R8).
	ErrLinkNotFound = errors.New("tokens: share link not found")
	// ErrLinkUsed means the link was already redeemed (R8).
	ErrLinkUsed = errors.New("tokens: share link already used")
	// ErrLinkExpired means the link expired before it was redeemed (R8).
	ErrLinkExpired = errors.New("tokens: share link expired")
	// ErrNoPendingLink means RevokeLink found no pending link to end: the
	// key's latest link was redeemed, has expired or was revoked (R15).
	ErrNoPendingLink = errors.New("tokens: key has no pending share link")

	// ErrInvalidCredentials means the key is unknown or the token does not
	// match it; the two cases are indistinguishable on purpose (R9).
	ErrInvalidCredentials = errors.New("tokens: invalid credentials")
	// ErrMalformedToken means the token is not in the token format or its
	// checksum is wrong, so it was rejected without reading the store. It
	// is also an ErrInvalidCredentials.
	ErrMalformedToken = fmt.Errorf("%w: malformed token", ErrInvalidCredentials)
	// ErrTokenRevoked means the token was the key's until it was deleted
	// (DeleteOld, DeleteNow, a discard of an unseen token, Undo, a
	// scheduled end), within WithRevokedTokenRetention (R16): an
	// integration still uses a deleted token. It is also an
	// ErrInvalidCredentials.
	ErrTokenRevoked = fmt.Errorf("%w: token revoked", ErrInvalidCredentials)
	// ErrKeyInactive means the token is right but the key is deactivated (R9).
	ErrKeyInactive = errors.New("tokens: key inactive")
	// ErrKeyExpired means the token is right but the key's ExpiresAt has
	// come (R22). Expiry is not deletion: UpdateKey can move or clear it.
	ErrKeyExpired = errors.New("tokens: key expired")
	// ErrKeyExists means ImportKey was given a key ID that is taken, or a
	// token that another key holds (R24); nothing was stored.
	ErrKeyExists = errors.New("tokens: key exists: the key ID or token is taken")

	// ErrInvalidKeySpec means a KeySpec was refused (R11); nothing was stored.
	ErrInvalidKeySpec = errors.New("tokens: invalid key spec")
	// ErrInvalidOption means an Option or RenewOptions value was refused.
	ErrInvalidOption = errors.New("tokens: invalid option")
	// ErrInvalidLeak means ReportLeak was given a Leak whose source or URL
	// is not text within its bounds (S10); nothing was recorded.
	ErrInvalidLeak = errors.New("tokens: invalid leak report")

	// ErrNilContext means a method was called with a nil context; nothing
	// was read or written (R18).
	ErrNilContext = errors.New("tokens: nil context")
	// ErrLinkSealed means a pending share link does not open with this
	// Manager's sealing secrets (S8): it was sealed under a secret the
	// Manager is not given. The link stays pending.
	ErrLinkSealed = errors.New("tokens: share link was sealed under a sealing secret this manager does not have")
)

// ruleErrors are the refusals of the rules: the caller's doing.
var ruleErrors = []error{
	ErrKeyNotFound, ErrRenewalPending, ErrOldTokenPending, ErrNoOldToken, ErrUndoUnavailable,
	ErrInvalidLink, ErrLinkNotFound, ErrLinkUsed, ErrLinkExpired, ErrNoPendingLink, ErrLinkSealed,
	ErrInvalidKeySpec, ErrInvalidOption, ErrInvalidLeak, ErrInvalidCursor, ErrNilContext, ErrKeyExists,
}

func isRuleError(err error) bool {
	for _, rule := range ruleErrors {
		if errors.Is(err, rule) {
			return true
		}
	}
	return false
}
