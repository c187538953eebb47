package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestImportExitStatus: the statuses the README gives import, which the
// scripts, seeing only success or failure, cannot tell apart.
func TestImportExitStatus(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "tokens.db")
	run := func(stdin string, args ...string) (int, string) {
		t.Helper()
		var out, errOut bytes.Buffer
		clk := fixedClock(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
		c := &cli{
			stdin: strings.NewReader(stdin), stdout: &out, stderr: &errOut,
			getenv:   func(string) string { return "" },
			terminal: func() bool { return false },
			clock:    &clk,
		}
		return c.run(t.Context(), append([]string{"-db", db, "-actor", "test"}, args...)), errOut.String()
	}
	if code, stderr := run("", "migrate"); code != exitOK {
		t.Fatalf("migrate: %d: %s", code, stderr)
	}
	for _, tc := range []struct {
		stdin  string
		args   []string
		want   int
		stderr string
	}{
		{"name,token\nerp,legacy-secret-0001\n", nil, exitOK, ""},
		{"name,token\nerp,legacy-secret-0001\n", nil, exitOK, ""}, // already imported
		{"name,token\nerp,short\ncrm,legacy-secret-0002\n", nil, exitRefused, "line 2: tokens: invalid key spec"},
		{"name,token\n\"unclosed,x\n", nil, exitRefused, "stopped"},
		{"name,token\nerp\ncrm,legacy-secret-0004\n", nil, exitRefused, "line 2: 1 columns, not 2 as in the header"},
		{"", nil, exitUsage, "no header line"},
		{"name,tokn\n", nil, exitUsage, `unknown column "tokn"`},
		{"name,token\n", []string{"-parallel", "0"}, exitUsage, "-parallel must be 1 to 64"},
		{"", []string{"legacy-secret-0003"}, exitUsage, "never from the command line"},
		{"", []string{"-file", filepath.Join(t.TempDir(), "none.csv")}, exitRefused, "no such file"},
	} {
		code, stderr := run(tc.stdin, append([]string{"import"}, tc.args...)...)
		if code != tc.want || !strings.Contains(stderr, tc.stderr) || (tc.stderr == "") != (stderr == "") {
			t.Errorf("import %q with %q: exit status %d, stderr %q; want %d, %q", tc.args, tc.stdin, code, stderr, tc.want, tc.stderr)
		}
		if strings.Contains(stderr, "legacy-secret") {
			t.Errorf("import %q: stderr repeats a token: %q", tc.args, stderr)
		}
	}
}
