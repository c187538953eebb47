// Command tokens manages the API keys of a tokens database from a shell:
// create keys, renew their tokens, hand them over through single-access
// links, revoke a link sent to the wrong person, undo a renewal, find the
// keys that are due for renewal, and read or follow the audit trail. It
// runs the same Manager as the services that verify the keys, on SQLite or
// PostgreSQL.
//
//	tokens -db tokens.db migrate
//	tokens -db tokens.db -share-base https://share.example.com/credentials/ create -account acme -name erp-sync
//	tokens -db tokens.db list -account acme
//	tokens -db tokens.db events -follow
//
// Run "tokens -h" for every command, flag and exit status.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/keyrenew/tokens"
)

// Exit statuses.
const (
	exitOK      = 0 // success; for verify: the token is valid
	exitRefused = 1 // the library or the database refused; its message is on stderr
	exitUsage   = 2 // the command line is wrong; nothing was changed
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	c := &cli{
		stdin:    os.Stdin,
		stdout:   os.Stdout,
		stderr:   os.Stderr,
		getenv:   os.Getenv,
		terminal: stdinIsTerminal,
	}
	code := c.run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// cli is one run of the command. Everything it reads from its surroundings
// is a field, so that the tests can run it with a fixed clock and a fake
// terminal.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	terminal       func() bool  // whether stdin is a terminal a person answers on
	clock          tokens.Clock // nil: the library's default, the wall clock

	// Set by the tests alone: how many events to ask for at a time (0:
	// tokens.MaxEventPage), and after how many polls that find no new
	// event "events -follow" ends (0: never; it runs until interrupted).
	eventPage  int
	followIdle int

	// From the global flags.
	dsn        string
	shareBase  string
	json       bool
	actor      string
	alertAfter int
	linkTTL    time.Duration
	secret     []byte
}

// usageError is a wrong command line: exit status 2, nothing was changed.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// refusedError is an action not confirmed: declined at the prompt, or
// without -yes where there is no terminal to ask on. Exit status 1,
// nothing was changed.
type refusedError struct{ msg string }

func (e *refusedError) Error() string { return e.msg }

type command struct {
	name     string
	args     string // positional arguments and flags, for the usage line
	summary  string
	makesURL bool // prints a share link, so needs the share base URL
	run      func(ctx context.Context, c *cli, m *manager, fs *flag.FlagSet, args []string) error
	flags    func(fs *flag.FlagSet) // declares the command's flags; nil if none
}

// commands is built in init because the help command lists them.
var commands []*command

func (c *cli) run(ctx context.Context, args []string) int {
	c.stderr = scrubber{c.stderr}
	global := flag.NewFlagSet("tokens", flag.ContinueOnError)
	global.SetOutput(io.Discard)
	global.StringVar(&c.dsn, "db", c.getenv("TOKENS_DB"), "")
	global.StringVar(&c.shareBase, "share-base", c.getenv("TOKENS_SHARE_BASE"), "")
	global.BoolVar(&c.json, "json", false, "")
	global.StringVar(&c.actor, "actor", defaultActor(c.getenv), "")
	alertAfter, linkTTL := c.getenv("TOKENS_ALERT_AFTER"), c.getenv("TOKENS_LINK_TTL")
	global.StringVar(&alertAfter, "alert-after", alertAfter, "")
	global.StringVar(&linkTTL, "link-ttl", linkTTL, "")
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			c.usage(c.stdout)
			return exitOK
		}
		fmt.Fprintf(c.stderr, "tokens: %v\n", err)
		fmt.Fprintln(c.stderr, `Run "tokens -h" for usage.`)
		return exitUsage
	}
	args = global.Args()
	if len(args) == 0 {
		c.usage(c.stderr)
		return exitUsage
	}
	name, args := args[0], args[1:]
	if name == "help" {
		c.usage(c.stdout)
		return exitOK
	}
	cmd := lookup(name)
	if cmd == nil {
		fmt.Fprintf(c.stderr, "tokens: unknown command %q\n", name)
		fmt.Fprintln(c.stderr, `Run "tokens -h" for usage.`)
		return exitUsage
	}
	fs := flag.NewFlagSet("tokens "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if cmd.flags != nil {
		cmd.flags(fs)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			c.commandUsage(c.stdout, cmd, fs)
			return exitOK
		}
		fmt.Fprintf(c.stderr, "tokens %s: %v\n", cmd.name, err)
		c.commandUsage(c.stderr, cmd, fs)
		return exitUsage
	}
	err := c.configure(cmd, alertAfter, linkTTL)
	var m *manager
	if err == nil {
		m, err = c.open(cmd)
	}
	if err == nil {
		defer m.close()
		err = cmd.run(withActor(ctx, c.actor), c, m, fs, fs.Args())
	}
	return c.report(cmd, fs, err)
}

// report prints err, if any, and returns the exit status. Errors never hold
// a secret: the library's do not (S4), the database password is redacted
// (redactDSN), and the CLI's own messages name no token or link.
func (c *cli) report(cmd *command, fs *flag.FlagSet, err error) int {
	var usage *usageError
	var refused *refusedError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &usage):
		fmt.Fprintf(c.stderr, "tokens %s: %s\n", cmd.name, usage.msg)
		c.commandUsage(c.stderr, cmd, fs)
		return exitUsage
	case errors.As(err, &refused):
		fmt.Fprintf(c.stderr, "tokens %s: %s\n", cmd.name, refused.msg)
		return exitRefused
	default:
		fmt.Fprintln(c.stderr, redactDSN(err.Error(), c.dsn))
		return exitRefused
	}
}

// configure checks the global flags that every command shares.
func (c *cli) configure(cmd *command, alertAfter, linkTTL string) error {
	if c.dsn == "" {
		return usagef("no database: pass -db or set TOKENS_DB")
	}
	if err := validActor(c.actor); err != nil {
		return err
	}
	if cmd.makesURL && c.shareBase == "" {
		return usagef("no share base URL for the link: pass -share-base or set TOKENS_SHARE_BASE")
	}
	if alertAfter != "" {
		n, err := strconv.Atoi(alertAfter)
		if err != nil {
			return usagef("-alert-after (TOKENS_ALERT_AFTER) must be a number of months, 1 to 24")
		}
		c.alertAfter = n
	}
	if linkTTL != "" {
		d, err := time.ParseDuration(linkTTL)
		if err != nil {
			return usagef("-link-ttl (TOKENS_LINK_TTL) must be a duration such as 24h")
		}
		c.linkTTL = d
	}
	secret, err := sealingSecret(c.getenv)
	if err != nil {
		return err
	}
	c.secret = secret
	return nil
}

// withActor names who acts in ctx, for the audit trail (R17).
func withActor(ctx context.Context, actor string) context.Context {
	return tokens.WithActor(ctx, actor)
}

// validActor refuses actor names that would spoof an audit screen, with
// the limits the library sets on key names (S9).
func validActor(actor string) error {
	switch {
	case strings.TrimSpace(actor) == "":
		return usagef("-actor must name who acts (default: the OS user)")
	case len(actor) > 200:
		return usagef("-actor is longer than 200 bytes")
	case !validText(actor):
		return usagef("-actor must be UTF-8 text without control or bidirectional characters")
	}
	return nil
}

// secretLike matches what could be a token or a link ID: the library's are
// 43 or more base62 characters, key IDs 22.
var secretLike = regexp.MustCompile(`[0-9A-Za-z_]{40,}`)

// scrubber keeps secrets that a person typed in the wrong place, such as a
// token given to verify as an argument, out of stderr, which scripts and
// CI jobs log: messages that repeat an argument print it redacted.
type scrubber struct{ w io.Writer }

func (s scrubber) Write(p []byte) (int, error) {
	if _, err := s.w.Write(secretLike.ReplaceAll(p, []byte("[redacted]"))); err != nil {
		return 0, err
	}
	return len(p), nil
}

func lookup(name string) *command {
	for _, cmd := range commands {
		if cmd.name == name {
			return cmd
		}
	}
	return nil
}

// stdinIsTerminal reports whether stdin is a character device other than
// the null device, which cron jobs and CI runners often give: no new
// dependency for a terminal check that only decides whether to ask.
func stdinIsTerminal() bool {
	fi, err := os.Stdin.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	null, err := os.Stat(os.DevNull)
	return err != nil || !os.SameFile(fi, null)
}

func (c *cli) usage(w io.Writer) {
	fmt.Fprint(w, `Usage: tokens [global flags] COMMAND [flags] [KEYID]

Manages the API keys of a tokens database: the same rules as the library,
from a shell. Flags come before arguments, as Go's flag package expects:
"tokens -json renew -old now KEYID".

Commands:
`)
	for _, cmd := range commands {
		if line := cmd.name + " " + cmd.args; len(line) <= 45 {
			fmt.Fprintf(w, "  %-45s %s\n", line, cmd.summary)
		} else {
			fmt.Fprintf(w, "  %s\n  %-45s %s\n", line, "", cmd.summary)
		}
	}
	fmt.Fprint(w, `
Global flags (a variable named beside a flag sets its default):
  -db DSN            TOKENS_DB: an SQLite file path (opened with
                     _busy_timeout=10000&_journal_mode=WAL&_txlock=immediate&_secure_delete=on),
                     a file: DSN (used as given), or a postgres:// or
                     postgresql:// URL (add search_path=SCHEMA for a schema)
  -share-base URL    TOKENS_SHARE_BASE: base of the share links, as the
                     service that serves the link pages has it; needed by
                     create and renew
  -json              machine output on stdout
  -actor NAME        who acts (default: the OS user); recorded in the audit
                     trail of every change
  -alert-after N     TOKENS_ALERT_AFTER: renewal alert period in months
                     (default 3); use the services' value
  -link-ttl D        TOKENS_LINK_TTL: how long a new link opens (default 24h)
  TOKENS_SEALING_SECRET  base64 sealing secret (tokens.WithSealingSecret);
                     give the CLI the services' current secret so that its
                     links are sealed under it

A link or token is printed only on stdout, only by create and renew;
nothing secret ever goes to stderr. verify reads the token from stdin,
import its CSV (a header line, then id,account,name,token,created_at,...;
a token is itself or sha256:HEX) from stdin or -file: never from an
argument. import exits 1 if any line failed; the others are imported, and
running it again imports only what is missing.

Exit status: 0 success (verify: valid; events -follow: interrupted), 1
refused by the library or the database, or not confirmed (verify: not
valid), 2 usage error.
`)
}

func (c *cli) commandUsage(w io.Writer, cmd *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: tokens [global flags] %s %s\n", cmd.name, cmd.args)
	fmt.Fprintf(w, "%s\n", cmd.summary)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}
