package sqlstore

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/keyrenew/tokens"
)

// keyColumn is one column of tokens_keys: how a record writes it and
// where a row scans into. keyColumns, in order, is the one list that the
// key statements of both dialects (select, insert, update), keyArgs and
// scanKey follow, so that a column is added in one place.
type keyColumn struct {
	name string
	// fixed columns (ID, account, creation) are written by InsertKey
	// only: UpdateKey never changes them.
	fixed bool
	// arg is the value InsertKey or UpdateKey writes; nil for version,
	// which the statements set themselves (1, then version + 1).
	arg func(d dialect, rec *tokens.KeyRecord) any
	// dest is where scanKey scans the column.
	dest func(k *keyScanner) any
	// sealed marks the share link's sealed token, which only a redemption
	// reads: the look-up by token selects NULL in its place (see
	// tokens.TokenIndex), so that it never leaves the database on the
	// verify path.
	sealed bool
}

var keyColumns = []keyColumn{
	{name: "id", fixed: true,
		arg:  func(_ dialect, r *tokens.KeyRecord) any { return r.ID },
		dest: func(k *keyScanner) any { return &k.rec.ID }},
	{name: "account", fixed: true,
		arg:  func(_ dialect, r *tokens.KeyRecord) any { return r.Account },
		dest: func(k *keyScanner) any { return &k.rec.Account }},
	{name: "name",
		arg:  func(_ dialect, r *tokens.KeyRecord) any { return r.Name },
		dest: func(k *keyScanner) any { return &k.rec.Name }},
	{name: "active",
		arg:  func(_ dialect, r *tokens.KeyRecord) any { return r.Active },
		dest: func(k *keyScanner) any { return &k.rec.Active }},
	{name: "created_at", fixed: true,
		arg:  func(d dialect, r *tokens.KeyRecord) any { return d.time(r.CreatedAt) },
		dest: func(k *keyScanner) any { return (*timeColumn)(&k.rec.CreatedAt) }},
	{name: "version",
		dest: func(k *keyScanner) any { return &k.rec.Version }},

	{name: "current_digest",
		arg:  func(_ dialect, r *tokens.KeyRecord) any { return r.Current.Digest[:] },
		dest: func(k *keyScanner) any { return &k.current }},
	{name: "current_created_at",
		arg:  func(d dialect, r *tokens.KeyRecord) any { return d.time(r.Current.CreatedAt) },
		dest: func(k *keyScanner) any { return (*timeColumn)(&k.rec.Current.CreatedAt) }},
	{name: "current_last_used_at",
		arg:  func(d dialect, r *tokens.KeyRecord) any { return nullTime(d, r.Current.LastUsedAt) },
		dest: func(k *keyScanner) any { return (*timeColumn)(&k.rec.Current.LastUsedAt) }},

	{name: "old_digest",
		arg: func(_ dialect, r *tokens.KeyRecord) any {
			if !r.HasOld {
				return nil
			}
			return r.Old.Digest[:]
		},
		dest: func(k *keyScanner) any { return &k.old }},
	{name: "old_created_at",
		arg:  oldArg(func(d dialect, t *tokens.TokenRecord) any { return d.time(t.CreatedAt) }),
		dest: func(k *keyScanner) any { return (*timeColumn)(&k.rec.Old.CreatedAt) }},
	{name: "old_last_used_at",
		arg:  oldArg(func(d dialect, t *tokens.TokenRecord) any { return nullTime(d, t.LastUsedAt) }),
		dest: func(k *keyScanner) any { return (*timeColumn)(&k.rec.Old.LastUsedAt) }},
	{name: "old_expires_at",
		arg:  oldArg(func(d dialect, t *tokens.TokenRecord) any { return nullTime(d, t.ExpiresAt) }),
		dest: func(k *keyScanner) any { return (*timeColumn)(&k.rec.Old.ExpiresAt) }},

	{name: "link_digest",
		arg:  linkArg(func(_ dialect, l *tokens.LinkRecord) any { return l.Digest[:] }),
		dest: func(k *keyScanner) any { return &k.link }},
	{name: "link_sealed", sealed: true,
		arg: linkArg(func(_ dialect, l *tokens.LinkRecord) any {
			if l.Sealed == nil {
				return nil // NULL
			}
			return l.Sealed
		}),
		dest: func(k *keyScanner) any { return &k.rec.Link.Sealed }},
	{name: "link_created_at",
		arg:  linkArg(func(d dialect, l *tokens.LinkRecord) any { return d.time(l.CreatedAt) }),
		dest: func(k *keyScanner) any { return (*timeColumn)(&k.rec.Link.CreatedAt) }},
	{name: "link_expires_at",
		arg:  linkArg(func(d dialect, l *tokens.LinkRecord) any { return d.time(l.ExpiresAt) }),
		dest: func(k *keyScanner) any { return (*timeColumn)(&k.rec.Link.ExpiresAt) }},
	{name: "link_redeemed_at",
		arg:  linkArg(func(d dialect, l *tokens.LinkRecord) any { return nullTime(d, l.RedeemedAt) }),
		dest: func(k *keyScanner) any { return (*timeColumn)(&k.rec.Link.RedeemedAt) }},
	{name: "link_revoked_at",
		arg:  linkArg(func(d dialect, l *tokens.LinkRecord) any { return nullTime(d, l.RevokedAt) }),
		dest: func(k *keyScanner) any { return (*timeColumn)(&k.rec.Link.RevokedAt) }},

	{name: "revoked_used_at",
		arg:  func(d dialect, r *tokens.KeyRecord) any { return nullTime(d, r.RevokedTokenUsedAt) },
		dest: func(k *keyScanner) any { return (*timeColumn)(&k.rec.RevokedTokenUsedAt) }},

	{name: "scopes",
		arg:  func(_ dialect, r *tokens.KeyRecord) any { return strings.Join(r.Scopes, " ") },
		dest: func(k *keyScanner) any { return (*scopesColumn)(&k.rec.Scopes) }},
	{name: "metadata",
		arg:  func(_ dialect, r *tokens.KeyRecord) any { return metadataText(r.Metadata) },
		dest: func(k *keyScanner) any { return (*metadataColumn)(&k.rec.Metadata) }},
	{name: "expires_at",
		arg:  func(d dialect, r *tokens.KeyRecord) any { return nullTime(d, r.ExpiresAt) },
		dest: func(k *keyScanner) any { return (*timeColumn)(&k.rec.ExpiresAt) }},
	{name: "leaked_at",
		arg:  func(d dialect, r *tokens.KeyRecord) any { return nullTime(d, r.LeakedAt) },
		dest: func(k *keyScanner) any { return (*timeColumn)(&k.rec.LeakedAt) }},
}

// scopesColumn scans the scopes column: scopes joined by single spaces
// (a scope has none), ” for none, which scans as nil.
type scopesColumn []string

func (c *scopesColumn) Scan(src any) error {
	var text string
	switch src := src.(type) {
	case nil:
	case string:
		text = src
	case []byte:
		text = string(src)
	default:
		return fmt.Errorf("cannot scan %T into scopes", src)
	}
	if text == "" {
		*c = nil
		return nil
	}
	*c = strings.Split(text, " ")
	return nil
}

// metadataText is metadata as its column keeps it: a JSON object, ” for
// none.
func metadataText(md map[string]string) string {
	if len(md) == 0 {
		return ""
	}
	b, err := json.Marshal(md) // a map of strings always marshals
	if err != nil {
		panic(err)
	}
	return string(b)
}

// metadataColumn scans the metadata column; ” scans as nil.
type metadataColumn map[string]string

func (c *metadataColumn) Scan(src any) error {
	var text []byte
	switch src := src.(type) {
	case nil:
	case string:
		text = []byte(src)
	case []byte:
		text = src
	default:
		return fmt.Errorf("cannot scan %T into metadata", src)
	}
	*c = nil
	if len(text) == 0 {
		return nil
	}
	var md map[string]string
	if err := json.Unmarshal(text, &md); err != nil {
		return fmt.Errorf("stored metadata is not a JSON object of strings: %w", err)
	}
	if len(md) > 0 {
		*c = md
	}
	return nil
}

// oldArg is the argument of an old token's column: NULL without one.
func oldArg(f func(d dialect, t *tokens.TokenRecord) any) func(dialect, *tokens.KeyRecord) any {
	return func(d dialect, r *tokens.KeyRecord) any {
		if !r.HasOld {
			return nil
		}
		return f(d, &r.Old)
	}
}

// linkArg is the argument of a link's column: NULL without one.
func linkArg(f func(d dialect, l *tokens.LinkRecord) any) func(dialect, *tokens.KeyRecord) any {
	return func(d dialect, r *tokens.KeyRecord) any {
		if !r.HasLink {
			return nil
		}
		return f(d, &r.Link)
	}
}

// keyArgs are the arguments that write a key's row: those of insertKey, in
// keyColumns' order, or with forUpdate those of updateKey, which leave
// out the fixed columns and end with the ID and the expected version of
// its WHERE clause.
func keyArgs(d dialect, rec *tokens.KeyRecord, forUpdate bool) []any {
	args := make([]any, 0, len(keyColumns)+1)
	for _, c := range keyColumns {
		if c.arg != nil && !(forUpdate && c.fixed) {
			args = append(args, c.arg(d, rec))
		}
	}
	if forUpdate {
		args = append(args, rec.ID, rec.Version)
	}
	return args
}

// keySelect is the SELECT of every column of tokens_keys, which scanKey
// scans; the caller adds the WHERE clause. Without sealed, it selects NULL
// for the link's sealed token.
func keySelect(sealed bool) string {
	names := make([]string, len(keyColumns))
	for i, c := range keyColumns {
		names[i] = c.name
		if c.sealed && !sealed {
			names[i] = "NULL AS " + c.name
		}
	}
	return "SELECT " + strings.Join(names, ", ") + "\nFROM tokens_keys"
}

// keyInsert is the INSERT of a key's row, with param(n) the dialect's
// n-th placeholder.
func keyInsert(param func(n int) string) string {
	var names, values []string
	n := 0
	for _, c := range keyColumns {
		names = append(names, c.name)
		if c.arg == nil {
			values = append(values, "1") // version
		} else {
			n++
			values = append(values, param(n))
		}
	}
	return fmt.Sprintf("INSERT INTO tokens_keys (%s)\nVALUES (%s)", strings.Join(names, ", "), strings.Join(values, ", "))
}

// keyUpdate is the compare-and-swap UPDATE of a key's row, with param(n)
// the dialect's n-th placeholder and where the WHERE clause of the ID and
// the expected version, given their numbers.
func keyUpdate(param func(n int) string, where func(id, version int) string) string {
	var sets []string
	n := 0
	for _, c := range keyColumns {
		switch {
		case c.fixed:
		case c.arg == nil:
			sets = append(sets, c.name+" = "+c.name+" + 1") // version
		default:
			n++
			sets = append(sets, c.name+" = "+param(n))
		}
	}
	return "UPDATE tokens_keys SET " + strings.Join(sets, ", ") + "\nWHERE " + where(n+1, n+2)
}
