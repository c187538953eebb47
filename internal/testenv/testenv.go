// Package testenv finds the real services the tests need. Locally a test
// whose service is not configured is skipped; in CI (CI set) it fails, so
// that nothing silently skips there.
package testenv

import (
	"crypto/rand"
	"database/sql"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"

	// Only tests import testenv, so the driver stays out of the library.
	_ "github.com/lib/pq" // for PostgresSchema
)

// PostgresEnv names the variable holding the PostgreSQL URL for tests,
// such as postgres://postgres@127.0.0.1:5432/test?sslmode=disable.
const PostgresEnv = "TOKENS_TEST_POSTGRES"

// Postgres returns the PostgreSQL URL from TOKENS_TEST_POSTGRES, or skips
// the test (fails it in CI) when it is unset.
func Postgres(t testing.TB) string {
	t.Helper()
	url := os.Getenv(PostgresEnv)
	if url == "" {
		unavailable(t, PostgresEnv+" is not set")
	}
	return url
}

// Chromium returns the path of a Chromium binary, or skips the test (fails
// it in CI) when there is none. TOKENS_TEST_CHROMIUM overrides the search.
func Chromium(t testing.TB) string {
	t.Helper()
	if path := os.Getenv("TOKENS_TEST_CHROMIUM"); path != "" {
		return path
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	unavailable(t, "no chromium binary found (apt-get install chromium)")
	return ""
}

// InCI reports whether the tests run in CI, where skipping is failing.
func InCI() bool {
	return os.Getenv("CI") != ""
}

func unavailable(t testing.TB, why string) {
	t.Helper()
	if InCI() {
		t.Fatalf("%s; CI requires it", why)
	}
	t.Skip(why)
}

// PostgresSchema creates an empty schema for t and returns a URL whose
// search_path points at it, for the lib/pq and pgx drivers alike. The
// schema is dropped when t ends.
func PostgresSchema(t testing.TB) string {
	t.Helper()
	base := Postgres(t)
	db, err := sql.Open("postgres", base)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	schema := "tokens_test_" + strings.ToLower(rand.Text()[:16])
	if _, err := db.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatalf("testenv: create schema: %v", err)
	}
	t.Cleanup(func() {
		if _, err := db.Exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
			t.Errorf("testenv: drop schema: %v", err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("testenv: %s must be a postgres:// URL", PostgresEnv)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
