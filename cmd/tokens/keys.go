package main

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/keyrenew/tokens"
)

// What a key is for, beside its tokens (R19-R22): the flags of create and
// update, and the lines that show prints for them.

// metaFlag collects a repeated -meta name=value flag. A lone -meta ”
// stands for no metadata, which update uses to clear it.
type metaFlag map[string]string

func (m metaFlag) String() string { return "" }

func (m metaFlag) Set(s string) error {
	if s == "" {
		return nil
	}
	name, value, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return fmt.Errorf("want name=value, have %q", s)
	}
	if _, dup := m[name]; dup {
		return fmt.Errorf("metadata name %q given twice", name)
	}
	m[name] = value
	return nil
}

func createKeyFlags(fs *flag.FlagSet) {
	createFlags(fs)
	fs.String("scopes", "", "comma-separated scopes of the key, such as invoices:read,orders:write")
	fs.Var(metaFlag{}, "meta", "metadata entry name=value; repeat for each entry")
	fs.String("expires", "", "when every token of the key stops verifying, RFC 3339 such as 2027-01-01T00:00:00Z (default: never)")
}

func updateFlags(fs *flag.FlagSet) {
	fs.String("name", "", "new name of the key")
	fs.String("scopes", "", "comma-separated scopes that replace the key's ('' for none)")
	fs.Var(metaFlag{}, "meta", "metadata entry name=value; repeat for each entry; the entries replace all the key's metadata (-meta '' for none)")
	fs.String("expires", "", "new expiry, RFC 3339 such as 2027-01-01T00:00:00Z (a past time expires the key at once), or never")
}

func parseScopes(s string) []string {
	var scopes []string
	for _, sc := range strings.Split(s, ",") {
		if sc = strings.TrimSpace(sc); sc != "" {
			scopes = append(scopes, sc)
		}
	}
	return scopes
}

// parseExpiry reads -expires: an RFC 3339 time, or never (the zero time).
func parseExpiry(s string) (time.Time, error) {
	if s == "never" || s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, usagef("-expires must be an RFC 3339 time such as 2027-01-01T00:00:00Z, or never")
	}
	return t, nil
}

// keyFields reads -scopes, -meta and -expires into spec.
func keyFields(fs *flag.FlagSet, spec *tokens.KeySpec) error {
	spec.Scopes = parseScopes(flagValue(fs, "scopes").Get().(string))
	if md := fs.Lookup("meta").Value.(metaFlag); len(md) > 0 {
		spec.Metadata = md
	}
	t, err := parseExpiry(flagValue(fs, "expires").Get().(string))
	spec.ExpiresAt = t
	return err
}

func runUpdate(ctx context.Context, c *cli, m *manager, fs *flag.FlagSet, args []string) error {
	id, err := keyID(args)
	if err != nil {
		return err
	}
	var u tokens.KeyUpdate
	var changed []string
	if flagSet(fs, "name") {
		name := flagValue(fs, "name").Get().(string)
		u.Name, changed = &name, append(changed, "name")
	}
	if flagSet(fs, "scopes") {
		scopes := parseScopes(flagValue(fs, "scopes").Get().(string))
		if scopes == nil {
			scopes = []string{}
		}
		u.Scopes, changed = &scopes, append(changed, "scopes")
	}
	if flagSet(fs, "meta") {
		md := map[string]string(fs.Lookup("meta").Value.(metaFlag))
		u.Metadata, changed = &md, append(changed, "metadata")
	}
	if flagSet(fs, "expires") {
		t, err := parseExpiry(flagValue(fs, "expires").Get().(string))
		if err != nil {
			return err
		}
		u.ExpiresAt, changed = &t, append(changed, "expiry")
	}
	if changed == nil {
		return usagef("nothing to update: pass -name, -scopes, -meta or -expires")
	}
	if err := m.UpdateKey(ctx, id, u); err != nil {
		return err
	}
	return c.printDone(id, "updated", "updated the "+strings.Join(changed, ", ")+" of "+id)
}

// printKeyFields prints what show adds below the table for one key: its
// scopes, metadata, expiry and latest leak, each line only when set.
func (c *cli) printKeyFields(k *tokens.Key) error {
	var b strings.Builder
	if len(k.Scopes) > 0 {
		fmt.Fprintf(&b, "scopes:   %s\n", strings.Join(k.Scopes, " "))
	}
	for i, name := range slices.Sorted(maps.Keys(k.Metadata)) {
		label := "metadata:"
		if i > 0 {
			label = ""
		}
		fmt.Fprintf(&b, "%-9s %s=%s\n", label, name, k.Metadata[name])
	}
	if !k.ExpiresAt.IsZero() {
		fmt.Fprintf(&b, "expires:  %s\n", formatTime(k.ExpiresAt))
	}
	if !k.LeakedAt.IsZero() {
		fmt.Fprintf(&b, "leaked:   %s (reported; renew the key)\n", formatTime(k.LeakedAt))
	}
	if b.Len() == 0 {
		return nil
	}
	_, err := fmt.Fprint(c.stdout, "\n"+b.String())
	return err
}
