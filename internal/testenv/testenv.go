// Package testenv finds the real services the tests need. Locally a test
// whose service is not configured is skipped; in CI (CI set) it fails, so
// that nothing silently skips there.
package testenv

import (
	"os"
	"os/exec"
	"testing"
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
