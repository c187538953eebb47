package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/keyrenew/tokens"
)

func init() {
	commands = []*command{
		{name: "migrate", summary: "create or upgrade the schema (idempotent)", run: runMigrate},
		{name: "create", args: "-account A -name N [-scopes S,S] [-meta K=V...] [-expires T]", summary: "create a key and print the link that reveals its token", makesURL: true, run: runCreate, flags: createKeyFlags},
		{name: "list", args: "-account A", summary: "list the keys of an account (-account '' for keys without one)", run: runList, flags: accountFlag},
		{name: "show", args: "KEYID", summary: "show one key, with its scopes, metadata, expiry and latest leak", run: runShow},
		{name: "update", args: "[-name N] [-scopes S,S] [-meta K=V...] [-expires T|never] KEYID", summary: "rename the key or replace its scopes, metadata or expiry ('' clears)", run: runUpdate, flags: updateFlags},
		{name: "import", args: "[-file F] [-parallel N]", summary: "import keys whose tokens integrations already hold, from CSV on stdin or -file", run: runImport, flags: importFlags},
		{name: "renew", args: "[-old later|now] [-old-ttl D] KEYID", summary: "give the key a new token and print the link that reveals it", makesURL: true, run: runRenew, flags: renewFlags},
		{name: "delete-old", args: "[-yes] KEYID", summary: "delete the key's old token, irreversibly", run: runDeleteOld, flags: yesFlag},
		{name: "undo", args: "[-yes] KEYID", summary: "undo the latest renewal while the old token exists", run: runUndo, flags: yesFlag},
		{name: "revoke-link", args: "KEYID", summary: "end the key's pending link now; the next renewal discards its token", run: runRevokeLink},
		{name: "activate", args: "KEYID", summary: "let the key's tokens verify again", run: runActivate},
		{name: "deactivate", args: "KEYID", summary: "make the key's tokens fail verification", run: runDeactivate},
		{name: "delete", args: "[-yes] KEYID", summary: "delete the key with its tokens and link, irreversibly", run: runDelete, flags: yesFlag},
		{name: "verify", args: "KEYID < token", summary: "check the token on stdin: valid, invalid, inactive, expired or revoked", run: runVerify},
		{name: "due", args: "[-level warning|critical] [-account A...]", summary: "keys of every account (or of each -account) whose renewal alert is at least the level", run: runDue, flags: dueFlags},
		{name: "events", args: "[-key KEYID] [-account A] [-after CURSOR] [-limit N] [-follow [-poll D]]", summary: "print the audit trail, oldest first; -follow waits for new events", run: runEvents, flags: eventsFlags},
		{name: "purge", summary: "wipe the sealed tokens of links that expired unopened", run: runPurge},
	}
}

func createFlags(fs *flag.FlagSet) {
	fs.String("account", "", "account (tenant) of the key; may be empty")
	fs.String("name", "", "name of the key, such as the integration that uses it (required)")
}

func accountFlag(fs *flag.FlagSet) {
	fs.String("account", "", "account whose keys to list (required; '' for keys without an account)")
}

func renewFlags(fs *flag.FlagSet) {
	fs.String("old", "later", "what happens to the previous token: later (it verifies until delete-old) or now (deleted at once)")
	fs.Duration("old-ttl", 0, "with -old later, the old token stops verifying by itself after this long (0: when you delete it)")
}

func yesFlag(fs *flag.FlagSet) {
	fs.Bool("yes", false, "do it without asking (required when stdin is not a terminal)")
}

// accounts collects a repeated -account flag.
type accounts []string

func (a *accounts) String() string     { return strings.Join(*a, ",") }
func (a *accounts) Set(s string) error { *a = append(*a, s); return nil }

func dueFlags(fs *flag.FlagSet) {
	fs.String("level", "warning", "lowest alert to list: warning or critical")
	fs.Var(&accounts{}, "account", "account to check (required; repeat for several; '' for keys without an account)")
}

func flagValue(fs *flag.FlagSet, name string) flag.Getter {
	return fs.Lookup(name).Value.(flag.Getter)
}

func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func noArgs(args []string) error {
	if len(args) > 0 {
		return usagef("unexpected argument %q", args[0])
	}
	return nil
}

// keyID returns the one positional argument.
func keyID(args []string) (string, error) {
	switch {
	case len(args) == 0:
		return "", usagef("missing KEYID")
	case len(args) > 1:
		return "", usagef("unexpected argument %q after KEYID (flags go before it)", args[1])
	}
	return args[0], nil
}

func runMigrate(ctx context.Context, c *cli, m *manager, fs *flag.FlagSet, args []string) error {
	if err := noArgs(args); err != nil {
		return err
	}
	if err := m.store.Migrate(ctx); err != nil {
		return err
	}
	return c.printDone("", "migrated", "schema up to date")
}

func runCreate(ctx context.Context, c *cli, m *manager, fs *flag.FlagSet, args []string) error {
	if err := noArgs(args); err != nil {
		return err
	}
	if !flagSet(fs, "name") {
		return usagef("-name is required")
	}
	spec := tokens.KeySpec{
		Account: flagValue(fs, "account").Get().(string),
		Name:    flagValue(fs, "name").Get().(string),
	}
	if err := keyFields(fs, &spec); err != nil {
		return err
	}
	key, link, err := m.CreateKey(ctx, spec)
	if err != nil {
		return err
	}
	return c.printLink(key.ID, link)
}

func runList(ctx context.Context, c *cli, m *manager, fs *flag.FlagSet, args []string) error {
	if err := noArgs(args); err != nil {
		return err
	}
	if !flagSet(fs, "account") {
		return usagef("-account is required ('' for keys without an account)")
	}
	keys, err := m.Keys(ctx, flagValue(fs, "account").Get().(string))
	if err != nil {
		return err
	}
	return c.printKeys(keys)
}

func runShow(ctx context.Context, c *cli, m *manager, fs *flag.FlagSet, args []string) error {
	id, err := keyID(args)
	if err != nil {
		return err
	}
	key, err := m.Key(ctx, id)
	if err != nil {
		return err
	}
	if err := c.printKeys([]*tokens.Key{key}); err != nil || c.json {
		return err
	}
	return c.printKeyFields(key)
}

func runRenew(ctx context.Context, c *cli, m *manager, fs *flag.FlagSet, args []string) error {
	id, err := keyID(args)
	if err != nil {
		return err
	}
	var opts tokens.RenewOptions
	switch flagValue(fs, "old").Get().(string) {
	case "later":
		opts.OldToken = tokens.DeleteLater
	case "now":
		opts.OldToken = tokens.DeleteNow
	default:
		return usagef("-old must be later or now")
	}
	// Renew refuses a negative TTL or one with -old now (ErrInvalidOption).
	opts.OldTokenTTL = flagValue(fs, "old-ttl").Get().(time.Duration)
	link, err := m.Renew(ctx, id, opts)
	if err != nil {
		return err
	}
	return c.printLink(id, link)
}

func runDeleteOld(ctx context.Context, c *cli, m *manager, fs *flag.FlagSet, args []string) error {
	id, err := keyID(args)
	if err != nil {
		return err
	}
	if err := c.confirm(ctx, m, fs, id, "Delete the old token of key %s (%s)? Integrations still using it will fail."); err != nil {
		return err
	}
	if err := m.DeleteOld(ctx, id); err != nil {
		return err
	}
	return c.printDone(id, "old token deleted", "deleted the old token of "+id)
}

func runUndo(ctx context.Context, c *cli, m *manager, fs *flag.FlagSet, args []string) error {
	id, err := keyID(args)
	if err != nil {
		return err
	}
	if err := c.confirm(ctx, m, fs, id, "Undo the latest renewal of key %s (%s)? Its new token is deleted and its link revoked."); err != nil {
		return err
	}
	if err := m.Undo(ctx, id); err != nil {
		return err
	}
	return c.printDone(id, "renewal undone", "undid the latest renewal of "+id+": the old token is current again")
}

func runRevokeLink(ctx context.Context, c *cli, m *manager, fs *flag.FlagSet, args []string) error {
	id, err := keyID(args)
	if err != nil {
		return err
	}
	if err := m.RevokeLink(ctx, id); err != nil {
		return err
	}
	return c.printDone(id, "link revoked", "revoked the pending link of "+id+": it no longer opens, and the next renewal discards the token it would have revealed")
}

func runActivate(ctx context.Context, c *cli, m *manager, fs *flag.FlagSet, args []string) error {
	id, err := keyID(args)
	if err != nil {
		return err
	}
	if err := m.Activate(ctx, id); err != nil {
		return err
	}
	return c.printDone(id, "activated", "activated "+id)
}

func runDeactivate(ctx context.Context, c *cli, m *manager, fs *flag.FlagSet, args []string) error {
	id, err := keyID(args)
	if err != nil {
		return err
	}
	if err := m.Deactivate(ctx, id); err != nil {
		return err
	}
	return c.printDone(id, "deactivated", "deactivated "+id)
}

func runDelete(ctx context.Context, c *cli, m *manager, fs *flag.FlagSet, args []string) error {
	id, err := keyID(args)
	if err != nil {
		return err
	}
	if err := c.confirm(ctx, m, fs, id, "Delete key %s (%s) with its tokens and link?"); err != nil {
		return err
	}
	if err := m.DeleteKey(ctx, id); err != nil {
		return err
	}
	return c.printDone(id, "deleted", "deleted "+id)
}

// maxTokenInput bounds what verify reads from stdin; a token is 53 bytes
// with the default prefix.
const maxTokenInput = 4096

func runVerify(ctx context.Context, c *cli, m *manager, fs *flag.FlagSet, args []string) error {
	id, err := keyID(args)
	if err != nil {
		return err
	}
	if c.terminal() {
		fmt.Fprint(c.stderr, "Token (shown as you type; pipe it in to keep it off the screen): ")
	}
	token, err := readLine(c.stdin)
	if err != nil {
		return fmt.Errorf("tokens: read the token from stdin: %w", err)
	}
	if token == "" {
		return usagef("no token on stdin (verify reads it from stdin, never from an argument)")
	}
	_, verr := m.Verify(ctx, id, token)
	result := verdict(verr)
	if result == "" {
		return verr // not a verdict: the database failed
	}
	if c.json {
		err = c.printJSON(struct {
			KeyID  string `json:"key_id"`
			Result string `json:"result"`
		}{id, result})
	} else {
		_, err = fmt.Fprintln(c.stdout, result)
	}
	if err != nil || verr == nil {
		return err
	}
	return verr
}

// verdict names what Verify's error says about the token, or "" when the
// error is not about the token.
func verdict(err error) string {
	switch {
	case err == nil:
		return "valid"
	// Before ErrInvalidCredentials, which a revoked token also matches.
	case errors.Is(err, tokens.ErrTokenRevoked):
		return "revoked"
	case errors.Is(err, tokens.ErrInvalidCredentials):
		return "invalid"
	case errors.Is(err, tokens.ErrKeyInactive):
		return "inactive"
	case errors.Is(err, tokens.ErrKeyExpired):
		return "expired"
	}
	return ""
}

func runDue(ctx context.Context, c *cli, m *manager, fs *flag.FlagSet, args []string) error {
	if err := noArgs(args); err != nil {
		return err
	}
	var level tokens.AlertLevel
	switch flagValue(fs, "level").Get().(string) {
	case "warning":
		level = tokens.AlertWarning
	case "critical":
		level = tokens.AlertCritical
	default:
		return usagef("-level must be warning or critical")
	}
	accts := []string(*fs.Lookup("account").Value.(*accounts))
	if len(accts) == 0 { // every account: the reminder job
		all, err := m.Accounts(ctx)
		if err != nil {
			return err
		}
		accts = all
	}
	var due []*tokens.Key
	for _, account := range accts {
		keys, err := m.Keys(ctx, account)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if k.Alert >= level {
				due = append(due, k)
			}
		}
	}
	return c.printKeys(due)
}

func runPurge(ctx context.Context, c *cli, m *manager, fs *flag.FlagSet, args []string) error {
	if err := noArgs(args); err != nil {
		return err
	}
	n, err := m.PurgeExpired(ctx)
	if err != nil {
		return err
	}
	if m.db.DriverName() == "sqlite3" {
		// Drops the -wal frames that still hold the wiped sealed tokens.
		if _, err := m.db.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
			return fmt.Errorf("tokens: purge: checkpoint: %w", err)
		}
	}
	if c.json {
		return c.printJSON(struct {
			Purged int `json:"purged"`
		}{n})
	}
	_, err = fmt.Fprintf(c.stdout, "wiped the sealed tokens of %d expired links\n", n)
	return err
}

// confirm asks on the terminal before an irreversible action; without a
// terminal it needs -yes. prompt has verbs for the key ID and its name.
func (c *cli) confirm(ctx context.Context, m *manager, fs *flag.FlagSet, id, prompt string) error {
	if flagValue(fs, "yes").Get().(bool) {
		return nil
	}
	if !c.terminal() {
		return &refusedError{"this cannot be undone: pass -yes to confirm (stdin is not a terminal)"}
	}
	key, err := m.Key(ctx, id)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stderr, prompt+" This cannot be undone. Type yes to go on: ", id, describe(key))
	answer, err := readLine(c.stdin)
	if err != nil || (answer != "yes" && answer != "y") {
		return &refusedError{"not confirmed; nothing changed"}
	}
	return nil
}

func describe(k *tokens.Key) string {
	if k.Account == "" {
		return fmt.Sprintf("%q", k.Name)
	}
	return fmt.Sprintf("%q of account %q", k.Name, k.Account)
}

// readLine reads one line, without its surrounding spaces.
func readLine(r io.Reader) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(r, maxTokenInput)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	return strings.TrimSpace(line), nil
}
