package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestExitStatus checks the exit statuses that the scripts, which see only
// success or failure, cannot tell apart, for the commands of the lifecycle
// rules (R14 to R17).
func TestExitStatus(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"TOKENS_DB":         filepath.Join(t.TempDir(), "tokens.db"),
		"TOKENS_SHARE_BASE": "https://share.example.com/credentials/",
	}
	run := func(ctx context.Context, stdin string, args ...string) (code int, stdout, stderr string) {
		t.Helper()
		var out, errOut bytes.Buffer
		clk := fixedClock(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
		c := &cli{
			stdin: strings.NewReader(stdin), stdout: &out, stderr: &errOut,
			getenv:   func(k string) string { return env[k] },
			terminal: func() bool { return false },
			clock:    &clk,
		}
		code = c.run(ctx, append([]string{"-actor", "test"}, args...))
		return code, out.String(), errOut.String()
	}
	ctx := t.Context()
	if code, _, stderr := run(ctx, "", "migrate"); code != exitOK {
		t.Fatalf("migrate: exit status %d: %s", code, stderr)
	}
	_, stdout, _ := run(ctx, "", "-json", "create", "-account", "acme", "-name", "erp")
	var created struct {
		KeyID string `json:"key_id"`
	}
	if err := json.Unmarshal([]byte(stdout), &created); err != nil {
		t.Fatalf("create -json: %v: %s", err, stdout)
	}
	key := created.KeyID
	canceled, cancel := context.WithCancel(ctx)
	cancel()

	for _, tc := range []struct {
		ctx    context.Context
		args   []string
		want   int
		stderr string // a substring of stderr
	}{
		{ctx, []string{"revoke-link", key}, exitOK, ""},
		{ctx, []string{"revoke-link", key}, exitRefused, "tokens: key has no pending share link\n"},
		{ctx, []string{"revoke-link", "key_000000000000000000000a"}, exitRefused, "tokens: key not found\n"},
		{ctx, []string{"revoke-link"}, exitUsage, "tokens revoke-link: missing KEYID"},
		{ctx, []string{"revoke-link", "-yes", key}, exitUsage, "flag provided but not defined: -yes"},
		// Without a terminal to ask on, a destructive command without -yes
		// is not confirmed, as the README says: 1, not a usage error.
		{ctx, []string{"delete-old", key}, exitRefused, "tokens delete-old: this cannot be undone: pass -yes to confirm (stdin is not a terminal)\n"},
		{ctx, []string{"undo", key}, exitRefused, "tokens undo: this cannot be undone: pass -yes"},
		{ctx, []string{"delete", key}, exitRefused, "tokens delete: this cannot be undone: pass -yes"},
		{ctx, []string{"renew", "-old-ttl", "-1h", key}, exitRefused, "tokens: invalid option: RenewOptions.OldTokenTTL is negative"},
		{ctx, []string{"renew", "-old", "now", "-old-ttl", "1h", key}, exitRefused, "tokens: invalid option"},
		{ctx, []string{"events"}, exitOK, ""},
		{ctx, []string{"events", "-key", key, "-account", "acme", "-after", "1", "-limit", "1"}, exitOK, ""},
		{ctx, []string{"events", "now"}, exitUsage, `tokens events: unexpected argument "now"`},
		{ctx, []string{"events", "-limit", "-1"}, exitUsage, "tokens events: -limit must be 0 (no limit) or more"},
		{ctx, []string{"events", "-account", ""}, exitUsage, "tokens events: -account must name an account"},
		{ctx, []string{"events", "-poll", "1s"}, exitUsage, "tokens events: -poll is for -follow"},
		{ctx, []string{"events", "-follow", "-poll", "0s"}, exitUsage, "tokens events: -poll must be a positive duration"},
		{ctx, []string{"events", "-after", "nope"}, exitRefused, "invalid event cursor"},
		// An interrupt is how -follow ends; without -follow it is a failure.
		{canceled, []string{"events", "-follow"}, exitOK, ""},
		{canceled, []string{"events"}, exitRefused, "context canceled"},
	} {
		code, _, stderr := run(tc.ctx, "", tc.args...)
		if code != tc.want || !strings.Contains(stderr, tc.stderr) || (tc.stderr == "") != (stderr == "") {
			t.Errorf("tokens %s: exit status %d, stderr %q; want %d, %q",
				strings.Join(tc.args, " "), code, stderr, tc.want, tc.stderr)
		}
	}
}
