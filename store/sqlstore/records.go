package sqlstore

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/keyrenew/tokens"
)

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
	k.dest = make([]any, len(keyColumns))
	for i, c := range keyColumns {
		k.dest[i] = c.dest(k)
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
