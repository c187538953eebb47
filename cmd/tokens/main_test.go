package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/internal/testenv"
)

// The scripts in testdata/script run the tokens command as a process:
// testscript re-executes this test binary as "tokens", through testMain,
// which is main with two test-only inputs that a script cannot otherwise
// control. TOKENS_CLI_NOW (RFC 3339) fixes the clock, so that a script
// moves time on by setting it (alerts, link expiry) and output is
// repeatable; TOKENS_CLI_TERMINAL=1 makes stdin count as a terminal, for
// the confirmation prompts; TOKENS_CLI_EVENT_PAGE=N reads events N at a
// time, so that a few events take several pages; TOKENS_CLI_FOLLOW_IDLE=N
// ends "events -follow" after N polls that found nothing new, where the
// real command waits for an interrupt. None exists in the real command: a
// clock that an environment variable can move has no place in an
// operator's tool.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){"tokens": testMain})
}

func testMain() {
	c := &cli{
		stdin:    os.Stdin,
		stdout:   os.Stdout,
		stderr:   secretGuard{os.Stderr},
		getenv:   os.Getenv,
		terminal: func() bool { return os.Getenv("TOKENS_CLI_TERMINAL") == "1" },
	}
	if clk, err := envClock(os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	} else if clk != nil {
		c.clock = clk
	}
	for name, field := range map[string]*int{"TOKENS_CLI_EVENT_PAGE": &c.eventPage, "TOKENS_CLI_FOLLOW_IDLE": &c.followIdle} {
		if s := os.Getenv(name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				fmt.Fprintf(os.Stderr, "%s: want a positive number, have %q\n", name, s)
				os.Exit(3)
			}
			*field = n
		}
	}
	os.Exit(c.run(context.Background(), os.Args[1:]))
}

type fixedClock time.Time

func (c fixedClock) Now() time.Time { return time.Time(c) }

func envClock(getenv func(string) string) (*fixedClock, error) {
	s := getenv("TOKENS_CLI_NOW")
	if s == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return nil, fmt.Errorf("TOKENS_CLI_NOW: %v", err)
	}
	clk := fixedClock(t)
	return &clk, nil
}

// secret matches a token or a link ID, in every script run: nothing that
// looks like one may reach stderr.
var secret = regexp.MustCompile(`tok_[0-9A-Za-z]{20,}|/credentials/[0-9A-Za-z]{20,}`)

// secretGuard fails the command with exit status 99 when it writes a
// secret to stderr; no script expects 99.
type secretGuard struct{ w *os.File }

func (g secretGuard) Write(p []byte) (int, error) {
	if secret.Match(p) {
		fmt.Fprintln(g.w, "TEST FAILURE: a secret was written to stderr")
		os.Exit(99)
	}
	return g.w.Write(p)
}

func TestScripts(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		testscript.Run(t, params("sqlite", func(env *testscript.Env) (string, string, error) {
			return filepath.Join(env.WorkDir, "tokens.db"), "file:" + filepath.Join(env.WorkDir, "empty.db"), nil
		}))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		testenv.Postgres(t) // skips locally, fails in CI, when unset
		testscript.Run(t, params("postgres", func(env *testscript.Env) (string, string, error) {
			// A schema per script, dropped when the script ends.
			dsn := testenv.PostgresSchema(env.T().(testing.TB))
			u, err := url.Parse(dsn)
			if err != nil {
				return "", "", err
			}
			q := u.Query()
			q.Set("search_path", "tokens_cli_no_such_schema")
			u.RawQuery = q.Encode()
			return dsn, u.String(), nil
		}))
	})
}

// params runs the scripts on one backend. db returns the database of a
// script run, and unmigrated one whose schema was never made.
func params(backend string, db func(*testscript.Env) (dsn, unmigrated string, err error)) testscript.Params {
	return testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			dsn, unmigrated, err := db(env)
			if err != nil {
				return err
			}
			// A -race binary sleeps a second at exit by default, which
			// would make these scripts of ~150 commands crawl.
			env.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
			env.Setenv("TOKENS_DB", dsn)
			env.Setenv("TOKENS_DB_UNMIGRATED", unmigrated)
			env.Setenv("NL", "\n")
			env.Setenv("BIDI", "\u202e")
			env.Setenv("TOKENS_SHARE_BASE", "https://share.example.com/credentials/")
			env.Setenv("TOKENS_CLI_NOW", "2025-01-01T00:00:00Z")
			env.Setenv("TOKENS_SEALING_SECRET", "")
			env.Setenv("TOKENS_ALERT_AFTER", "")
			env.Setenv("TOKENS_LINK_TTL", "")
			return nil
		},
		Condition: func(cond string) (bool, error) {
			switch cond {
			case "sqlite", "postgres":
				return cond == backend, nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"getjson": cmdGetJSON,
			"redeem":  cmdRedeem,
			"leak":    cmdLeak,
		},
	}
}

// getjson VAR PATH sets VAR to the string at PATH in the JSON on the last
// command's stdout: a field of an object, such as the key_id and link that
// create -json prints, or, in an array, INDEX.FIELD (-1 is the last
// element), such as the cursor of an event.
func cmdGetJSON(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: getjson VAR PATH")
	}
	var v any
	ts.Check(json.Unmarshal([]byte(ts.ReadFile("stdout")), &v))
	for _, step := range strings.Split(args[1], ".") {
		switch x := v.(type) {
		case map[string]any:
			v = x[step]
		case []any:
			i, err := strconv.Atoi(step)
			if err != nil || i >= len(x) || i < -len(x) {
				ts.Fatalf("stdout has no element %q in %q", step, args[1])
			}
			if i < 0 {
				i += len(x)
			}
			v = x[i]
		default:
			ts.Fatalf("stdout has no %q in %q", step, args[1])
		}
	}
	s, ok := v.(string)
	if !ok {
		ts.Fatalf("stdout has no string at %q", args[1])
	}
	ts.Setenv(args[0], s)
}

// redeem LINK FILE opens LINK as the link pages would, with the script's
// database, clock and sealing secret, and writes the token it reveals to
// FILE, for "stdin FILE" before "exec tokens verify". With ! it expects
// the redemption to fail.
func cmdRedeem(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: redeem LINK FILE")
	}
	m := scriptManager(ts, &command{name: "redeem", makesURL: true}, "test")
	defer m.close()
	creds, err := m.RedeemLink(context.Background(), args[0])
	switch {
	case neg && err == nil:
		ts.Fatalf("redeem succeeded")
	case neg:
		ts.Logf("redeem: %v", err)
	case err != nil:
		ts.Fatalf("redeem: %v", err)
	default:
		ts.Check(os.WriteFile(ts.MkAbs(args[1]), []byte(creds.Token+"\n"), 0o600))
	}
}

// leak FILE SOURCE URL reports the token in FILE as leaked, as the secret
// scanning handler would, with the script's database and clock, and
// prints what ReportLeak found.
func cmdLeak(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: leak FILE SOURCE URL")
	}
	m := scriptManager(ts, &command{name: "leak"}, "github")
	defer m.close()
	res, err := m.ReportLeak(context.Background(), strings.TrimSpace(ts.ReadFile(args[0])), tokens.Leak{Source: args[1], URL: args[2]})
	ts.Check(err)
	fmt.Fprintf(ts.Stdout(), "found %v, revoked %v\n", res.Found, res.Revoked)
}

// scriptManager opens the Manager a command of the CLI would, with the
// script's database, clock and sealing secret, acting as actor.
func scriptManager(ts *testscript.TestScript, cmd *command, actor string) *manager {
	c := &cli{getenv: ts.Getenv, dsn: ts.Getenv("TOKENS_DB"), shareBase: ts.Getenv("TOKENS_SHARE_BASE"), actor: actor}
	clk, err := envClock(ts.Getenv)
	ts.Check(err)
	if clk != nil {
		c.clock = clk
	}
	ts.Check(c.configure(cmd, "", ""))
	m, err := c.open(cmd)
	ts.Check(err)
	return m
}
