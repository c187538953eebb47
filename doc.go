// Package tokens manages API keys and the safe renewal of their secret
// tokens.
//
// A key is a public ID plus a secret token, the username/password pair an
// integration sends on every request. Operators renew a token without
// downtime: Renew makes a new token current at once and returns a
// single-access share link that reveals it once, for 24 hours; the previous
// token keeps verifying until DeleteOld, or is deleted at once with
// DeleteNow; Undo backs a renewal out while the old token exists.
//
// Keys carry what products need: scopes (Key.HasScope), metadata and an
// expiry, changed with UpdateKey. Integrations that send one secret are
// verified by VerifyToken, which finds the key by its token alone; keys of
// an existing system move over with ImportKey, without re-keying. A token
// that a secret scanner found in public is handed to ReportLeak, which
// records the leak and, with WithLeakPolicy(RevokeLeaked), stops the token
// at once; tokenhttp.NewSecretScanningHandler receives GitHub's reports.
//
// Tokens are never stored: a store keeps their SHA-256 digests, and a share
// link keeps its token sealed with AES-GCM under a key derived from the
// link ID, which is itself stored only as a digest. A full dump of the
// store yields no usable credential.
//
// The Manager holds every rule; a Store persists key records with a
// compare-and-swap on every write, so many Managers in many processes can
// share one database. Stores: memstore (in memory) and sqlstore (SQLite,
// PostgreSQL).
package tokens
