package main

import (
	"bytes"
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/keyrenew/tokens/internal/testenv"
)

// sqliteConfig keeps the walk-through's keys in a file of t's own.
func sqliteConfig(t *testing.T) storeConfig {
	return storeConfig{sqliteFile: filepath.Join(t.TempDir(), "quickstart.db")}
}

func TestRun(t *testing.T) {
	checkRun(t, sqliteConfig(t))
}

func TestRunOnPostgres(t *testing.T) {
	checkRun(t, storeConfig{postgresURL: testenv.PostgresSchema(t)})
}

func checkRun(t *testing.T, cfg storeConfig) {
	var out bytes.Buffer
	if err := run(context.Background(), &out, cfg); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	t.Log("\n" + text)

	for _, want := range []string{
		`1. Create a key for account "acme" named "erp-sync"`,
		"share link " + shareBase,
		"opening it again: tokens: share link already used",
		"renewal alert warning",
		"current token created 4h ago, last used 1h ago",
		"old token     created 95d ago, last used 3h ago",
		"undo: the previous token is current again",
		"current token created 2d ago, last used 24h ago",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	for _, want := range []string{
		`the integration sends token tok_\w{4}…: ok`,
		`old token tok_\w{4}…: tokens: invalid credentials`,
		`new token tok_\w{4}…: ok`,
		`new token tok_\w{4}…: tokens: invalid credentials`,
		`previous token tok_\w{4}…: ok`,
	} {
		if !regexp.MustCompile(want).MatchString(text) {
			t.Errorf("output lacks a line matching %q", want)
		}
	}
	if n := strings.Count(text, "\n"); n < 20 || n > 45 {
		t.Errorf("output has %d lines, want a short walk-through of 20 to 45", n)
	}

	// Undo restores the token issued by the first renewal.
	renewed := regexp.MustCompile(`sends the new token (tok_\w{4}…)`).FindStringSubmatch(text)
	restored := regexp.MustCompile(`previous token (tok_\w{4}…): ok`).FindStringSubmatch(text)
	if renewed == nil || restored == nil || renewed[1] != restored[1] {
		t.Errorf("undo restored %v, want the token of the first renewal %v", restored, renewed)
	}
}

// TestRunPrintsNoSecret checks that tokens and share links appear only
// masked: a token is "tok_" and 49 base62 characters, a link ID 43 of
// them, while a masked secret shows 4 and a key ID 22.
func TestRunPrintsNoSecret(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), &out, sqliteConfig(t)); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	if long := regexp.MustCompile(`[0-9A-Za-z]{23,}`).FindString(text); long != "" {
		t.Errorf("output contains %q, which could be a secret", long)
	}
	masked := regexp.MustCompile(`tok_\w{4}…`)
	if n, all := len(masked.FindAllString(text, -1)), strings.Count(text, "tok_"); n != all || n == 0 {
		t.Errorf("%d of %d tokens printed are masked", n, all)
	}
	links := strings.Count(text, shareBase)
	if maskedLinks := len(regexp.MustCompile(regexp.QuoteMeta(shareBase)+`\w{4}…,`).FindAllString(text, -1)); maskedLinks != links || links == 0 {
		t.Errorf("%d of %d share links printed are masked", maskedLinks, links)
	}
}
