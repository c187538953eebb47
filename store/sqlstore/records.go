package sqlstore

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/keyrenew/tokens"
)

// keyArgs are the arguments that write a key's row: those of insertKey, or
// with forUpdate those of updateKey, whose WHERE clause takes the ID and
// the expected version last.
func keyArgs(d dialect, rec *tokens.KeyRecord, forUpdate bool) []any {
	args := make([]any, 0, 19)
	if !forUpdate {
		args = append(args, rec.ID, rec.Account)
	}
	args = append(args, rec.Name, rec.Active)
	if !forUpdate {
		args = append(args, d.time(rec.CreatedAt))
	}
	args = append(args,
		rec.Current.Digest[:], d.time(rec.Current.CreatedAt), nullTime(d, rec.Current.LastUsedAt))
	if rec.HasOld {
		args = append(args, rec.Old.Digest[:], d.time(rec.Old.CreatedAt),
			nullTime(d, rec.Old.LastUsedAt), nullTime(d, rec.Old.ExpiresAt))
	} else {
		args = append(args, nil, nil, nil, nil)
	}
	if rec.HasLink {
		var sealed any // NULL
		if rec.Link.Sealed != nil {
			sealed = rec.Link.Sealed
		}
		args = append(args, rec.Link.Digest[:], sealed,
			d.time(rec.Link.CreatedAt), d.time(rec.Link.ExpiresAt),
			nullTime(d, rec.Link.RedeemedAt), nullTime(d, rec.Link.RevokedAt))
	} else {
		args = append(args, nil, nil, nil, nil, nil, nil)
	}
	args = append(args, nullTime(d, rec.RevokedTokenUsedAt))
	if forUpdate {
		args = append(args, rec.ID, rec.Version)
	}
	return args
}

// scanKey scans a row of the selectKey family. Every Verify that misses
// the cache runs it, so it scans through a pooled keyScanner rather than
// allocate the record, its digests and the list of destinations on each
// call; the record it returns is still a copy the caller owns (database/sql
// copies the sealed bytes into a new slice).
func scanKey(row interface{ Scan(dest ...any) error }) (tokens.KeyRecord, error) {
	k := keyScanners.Get().(*keyScanner)
	err := row.Scan(k.dest...)
	rec := k.rec
	current, old, link := k.current, k.old, k.link
	k.rec = tokens.KeyRecord{} // keeps no reference into the result
	keyScanners.Put(k)
	if err != nil {
		return tokens.KeyRecord{}, err
	}
	if !current.valid {
		return tokens.KeyRecord{}, errors.New("key without a current token")
	}
	rec.Current.Digest = current.d
	rec.Old.Digest, rec.HasOld = old.d, old.valid
	rec.Link.Digest, rec.HasLink = link.d, link.valid
	return rec, nil
}

// keyScanner holds the destinations of a row of the selectKey family.
type keyScanner struct {
	rec                tokens.KeyRecord
	current, old, link nullDigest
	dest               []any
}

var keyScanners = sync.Pool{New: func() any {
	k := &keyScanner{}
	rec := &k.rec
	k.dest = []any{
		&rec.ID, &rec.Account, &rec.Name, &rec.Active, (*timeColumn)(&rec.CreatedAt), &rec.Version,
		&k.current, (*timeColumn)(&rec.Current.CreatedAt), (*timeColumn)(&rec.Current.LastUsedAt),
		&k.old, (*timeColumn)(&rec.Old.CreatedAt), (*timeColumn)(&rec.Old.LastUsedAt), (*timeColumn)(&rec.Old.ExpiresAt),
		&k.link, &rec.Link.Sealed, (*timeColumn)(&rec.Link.CreatedAt), (*timeColumn)(&rec.Link.ExpiresAt),
		(*timeColumn)(&rec.Link.RedeemedAt), (*timeColumn)(&rec.Link.RevokedAt),
		(*timeColumn)(&rec.RevokedTokenUsedAt),
	}
	return k
}}

// nullDigest scans a digest column, NULL when the key has no such token
// or link.
type nullDigest struct {
	d     tokens.Digest
	valid bool
}

func (n *nullDigest) Scan(src any) error {
	switch src := src.(type) {
	case nil:
		*n = nullDigest{}
	case []byte:
		if len(src) != len(n.d) {
			return fmt.Errorf("stored digest has %d bytes, want %d", len(src), len(n.d))
		}
		copy(n.d[:], src)
		n.valid = true
	default:
		return fmt.Errorf("cannot scan %T into a digest", src)
	}
	return nil
}

// timeColumn scans a time: a time.Time from PostgreSQL, Unix microseconds
// from SQLite, and NULL as the zero time. The result is in UTC.
type timeColumn time.Time

func (c *timeColumn) Scan(src any) error {
	switch src := src.(type) {
	case nil:
		*c = timeColumn{}
	case time.Time:
		*c = timeColumn(src.UTC())
	case int64:
		*c = timeColumn(time.UnixMicro(src).UTC())
	default:
		return fmt.Errorf("cannot scan %T into a time", src)
	}
	return nil
}
