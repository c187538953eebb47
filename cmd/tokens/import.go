package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/keyrenew/tokens"
)

// The import command (R24): keys whose tokens integrations already hold,
// from CSV on stdin or a file, never from the command line, where any user
// of the machine could read them in the process list.

// importColumns are the columns an import file may have, named in its
// header line, in any order. name and token are required.
var importColumns = []string{"id", "account", "name", "token", "created_at", "scopes", "expires_at"}

// sha256Prefix marks a token column that holds the token's SHA-256 in
// hex, as a system that kept only that has it.
const sha256Prefix = "sha256:"

// progressEvery is how many lines import reads between progress lines.
const progressEvery = 1000

func importFlags(fs *flag.FlagSet) {
	fs.String("file", "", "CSV file to read (default: stdin)")
	fs.Int("parallel", 4, "how many keys to import at once")
}

// importRow is one line of the file.
type importRow struct {
	line   int
	spec   tokens.ImportSpec
	digest tokens.Digest
}

// importOutcome is what happened to a row.
type importOutcome int

const (
	imported importOutcome = iota
	alreadyImported
	importFailed
)

type importResult struct {
	row     *importRow
	outcome importOutcome
	err     error
}

type importStats struct {
	Lines           int `json:"lines"`
	Imported        int `json:"imported"`
	AlreadyImported int `json:"already_imported"`
	Failed          int `json:"failed"`
}

func runImport(ctx context.Context, c *cli, m *manager, fs *flag.FlagSet, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected argument: import reads tokens from stdin or -file, never from the command line")
	}
	workers := flagValue(fs, "parallel").Get().(int)
	if workers < 1 || workers > 64 {
		return usagef("-parallel must be 1 to 64")
	}
	in := c.stdin
	if path := flagValue(fs, "file").Get().(string); path != "" {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("tokens: import: %w", err)
		}
		defer f.Close()
		in = f
	}
	index, ok := any(m.store).(tokens.TokenIndex)
	if !ok {
		return fmt.Errorf("tokens: import: the store cannot find keys by token: %w", errors.ErrUnsupported)
	}
	r := csv.NewReader(in)
	r.ReuseRecord = true
	header, err := r.Read()
	if err != nil {
		return usagef("the input has no header line, such as %s: %v", strings.Join(importColumns, ","), err)
	}
	cols, err := importHeader(header)
	if err != nil {
		return err
	}
	r.FieldsPerRecord = len(header)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rows := make(chan *importRow)
	results := make(chan importResult)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for row := range rows {
				results <- importOne(ctx, m, index, row)
			}
		})
	}
	readErr := make(chan error, 1)
	go func() {
		defer close(rows)
		readErr <- c.readImport(ctx, r, cols, rows, results)
	}()
	go func() {
		wg.Wait()
		close(results)
	}()

	var st importStats
	for res := range results {
		st.Lines++
		switch res.outcome {
		case imported:
			st.Imported++
		case alreadyImported:
			st.AlreadyImported++
		default:
			st.Failed++
			fmt.Fprintf(c.stderr, "tokens import: line %d: %v\n", res.row.line, res.err)
		}
		if st.Lines%progressEvery == 0 {
			fmt.Fprintf(c.stderr, "tokens import: %d lines: %d imported, %d already imported, %d failed\n",
				st.Lines, st.Imported, st.AlreadyImported, st.Failed)
		}
	}
	if err := <-readErr; err != nil {
		fmt.Fprintf(c.stderr, "tokens import: %v\n", err)
		fmt.Fprintln(c.stderr, "tokens import: stopped; the keys imported so far stay, and running the same import again skips them")
		st.Failed++
	}
	if err := c.printImport(st); err != nil {
		return err
	}
	if st.Failed > 0 {
		return &refusedError{fmt.Sprintf("%d of %d lines failed; fix them and run the same import again", st.Failed, st.Lines)}
	}
	return nil
}

func (c *cli) printImport(st importStats) error {
	if c.json {
		return c.printJSON(st)
	}
	var err error
	switch {
	case st.Imported == 0 && st.Failed == 0:
		_, err = fmt.Fprintf(c.stdout, "nothing changed: all %d keys were already imported\n", st.AlreadyImported)
	default:
		_, err = fmt.Fprintf(c.stdout, "imported %d keys; %d already imported, %d failed\n", st.Imported, st.AlreadyImported, st.Failed)
	}
	return err
}

// importHeader maps each known column to its index in a record.
func importHeader(header []string) (map[string]int, error) {
	cols := map[string]int{}
	for i, name := range header {
		name = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(name, "\ufeff")))
		known := false
		for _, k := range importColumns {
			known = known || k == name
		}
		if !known {
			return nil, usagef("unknown column %q in the header: the columns are %s", name, strings.Join(importColumns, ","))
		}
		if _, dup := cols[name]; dup {
			return nil, usagef("column %q twice in the header", name)
		}
		cols[name] = i
	}
	for _, need := range []string{"name", "token"} {
		if _, ok := cols[need]; !ok {
			return nil, usagef("the header has no %q column", need)
		}
	}
	return cols, nil
}

// readImport sends each record of r to rows. A line that does not parse
// goes to results as failed; a file that is not CSV ends the import.
func (c *cli) readImport(ctx context.Context, r *csv.Reader, cols map[string]int, rows chan<- *importRow, results chan<- importResult) error {
	for {
		rec, err := r.Read()
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case errors.Is(err, csv.ErrFieldCount):
			err = fmt.Errorf("%d columns, not %d as in the header", len(rec), r.FieldsPerRecord)
		case err != nil:
			// A quote out of place: what follows cannot be trusted to be
			// the lines it looks like. The error names the line, no
			// content.
			return err
		}
		// Only a record read, also one with the wrong number of
		// fields, has a position.
		line, _ := r.FieldPos(0)
		row := &importRow{line: line}
		if err == nil {
			err = row.parse(rec, cols)
		}
		if err != nil {
			select {
			case results <- importResult{row: row, outcome: importFailed, err: err}:
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		select {
		case rows <- row:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (row *importRow) parse(rec []string, cols map[string]int) error {
	get := func(name string) string {
		if i, ok := cols[name]; ok {
			return strings.TrimSpace(rec[i])
		}
		return ""
	}
	s := &row.spec
	s.ID, s.Account, s.Name = get("id"), get("account"), get("name")
	token := get("token")
	if hexDigest, ok := strings.CutPrefix(token, sha256Prefix); ok {
		b, err := hex.DecodeString(hexDigest)
		if err != nil || len(b) != sha256.Size {
			return errors.New("token: sha256: wants 64 hex digits")
		}
		copy(s.TokenSHA256[:], b)
		row.digest = s.TokenSHA256
	} else {
		if token == "" {
			return errors.New("no token")
		}
		s.Token = token
		row.digest = sha256.Sum256([]byte(token))
	}
	if v := get("scopes"); v != "" {
		s.Scopes = strings.Fields(v)
	}
	var err error
	if s.CreatedAt, err = parseImportTime(get("created_at")); err != nil {
		return fmt.Errorf("created_at: %w", err)
	}
	if s.ExpiresAt, err = parseImportTime(get("expires_at")); err != nil {
		return fmt.Errorf("expires_at: %w", err)
	}
	return nil
}

// importTimeLayouts are RFC 3339 and the forms that SQLite and
// PostgreSQL print timestamps in; a time without a zone is UTC.
var importTimeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999Z07",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02",
}

func parseImportTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range importTimeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, errors.New("not a time: use RFC 3339, such as 2024-05-01T12:00:00Z")
}

// importOne imports row, unless it was imported before: the same key ID
// with the same token, or, for a row without an ID, the token held by a
// key of the same account and name. That makes a second run of an import
// change nothing.
func importOne(ctx context.Context, m *manager, index tokens.TokenIndex, row *importRow) importResult {
	done, err := importedBefore(ctx, m, index, row)
	if err == nil && !done {
		_, err = m.ImportKey(ctx, row.spec)
		if errors.Is(err, tokens.ErrKeyExists) {
			// Another process, or an earlier line, may have imported
			// it since the check.
			if again, aerr := importedBefore(ctx, m, index, row); aerr != nil || again {
				done, err = again, aerr
			}
		}
	}
	switch {
	case err != nil:
		return importResult{row: row, outcome: importFailed, err: err}
	case done:
		return importResult{row: row, outcome: alreadyImported}
	}
	return importResult{row: row, outcome: imported}
}

func importedBefore(ctx context.Context, m *manager, index tokens.TokenIndex, row *importRow) (bool, error) {
	if id := row.spec.ID; id != "" {
		rec, err := m.store.Key(ctx, id)
		switch {
		case errors.Is(err, tokens.ErrKeyNotFound):
			return false, nil
		case err != nil:
			return false, err
		case holds(&rec, row.digest):
			return true, nil
		}
		return false, fmt.Errorf("key %s exists with another token: %w", id, tokens.ErrKeyExists)
	}
	rec, err := index.KeyByToken(ctx, row.digest)
	switch {
	case errors.Is(err, tokens.ErrKeyNotFound):
		return false, nil
	case err != nil:
		return false, err
	case rec.Account == row.spec.Account && rec.Name == row.spec.Name:
		return true, nil
	}
	return false, fmt.Errorf("the token is held by key %s, of another account or name: %w", rec.ID, tokens.ErrKeyExists)
}

// holds reports whether rec's current or old token has digest.
func holds(rec *tokens.KeyRecord, digest tokens.Digest) bool {
	same := func(d tokens.Digest) bool { return subtle.ConstantTimeCompare(d[:], digest[:]) == 1 }
	return same(rec.Current.Digest) || rec.HasOld && same(rec.Old.Digest)
}
