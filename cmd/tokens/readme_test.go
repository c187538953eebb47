package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jmoiron/sqlx"

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/internal/testenv"
	"github.com/keyrenew/tokens/store/sqlstore"
)

// readmeProgram returns the first ```go block of the README's section
// heading.
func readmeProgram(t *testing.T, heading string) string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README.md has no section %q", heading)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	_, program, ok := strings.Cut(section, "```go\n")
	if !ok {
		t.Fatalf("README.md section %q has no Go program", heading)
	}
	program, _, _ = strings.Cut(program, "```\n")
	return program
}

// buildREADMEProgram compiles program as a command of this module,
// without writing it into the tree (go build -overlay), and returns the
// binary.
func buildREADMEProgram(t *testing.T, name, program string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a program")
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		if testenv.InCI() {
			t.Fatal("no go command; CI requires it")
		}
		t.Skip("no go command")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte(program), 0o600); err != nil {
		t.Fatal(err)
	}
	here, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	pkg := filepath.Join(here, "internal", "readme", name)
	overlay, err := json.Marshal(map[string]map[string]string{"Replace": {filepath.Join(pkg, "main.go"): src}})
	if err != nil {
		t.Fatal(err)
	}
	overlayFile := filepath.Join(dir, "overlay.json")
	if err := os.WriteFile(overlayFile, overlay, 0o600); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, name)
	out, err := exec.CommandContext(t.Context(), goCmd, "build", "-overlay", overlayFile, "-o", bin, "./internal/readme/"+name).CombinedOutput()
	if err != nil {
		t.Fatalf("the README's %s program does not build: %v\n%s", name, err, out)
	}
	return bin
}

// TestREADMEScopesProgram keeps the program of "Authorisation with
// scopes" compiling.
func TestREADMEScopesProgram(t *testing.T) {
	t.Parallel()
	buildREADMEProgram(t, "scopes", readmeProgram(t, "## Authorisation with scopes"))
}

// TestREADMEMigrationProgram runs the migration guide's program on a
// legacy table, twice: every legacy token verifies afterwards, and the
// second run imports nothing.
func TestREADMEMigrationProgram(t *testing.T) {
	t.Parallel()
	bin := buildREADMEProgram(t, "legacyimport", readmeProgram(t, "## Migrating from a hand-written keys table"))
	path := filepath.Join(t.TempDir(), "app.db")
	db, err := sqlx.Open("sqlite3", "file:"+path+"?"+sqliteParams)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	const n = 200
	legacy := fillLegacyTable(t, db, n)

	for run, want := range []string{
		"imported 200 keys; 0 existed already, 0 failed\n",
		"imported 0 keys; 200 existed already, 0 failed\n",
	} {
		out, err := exec.CommandContext(t.Context(), bin, "-db", path).Output()
		if err != nil || string(out) != want {
			t.Fatalf("run %d: %v: stdout %q, want %q", run+1, err, out, want)
		}
	}
	store, err := sqlstore.New(db)
	if err != nil {
		t.Fatal(err)
	}
	m, err := tokens.NewManager(store, tokens.WithShareBaseURL("https://share.example.com/credentials/"))
	if err != nil {
		t.Fatal(err)
	}
	verifyLegacyTokens(t, m, legacy)
}
