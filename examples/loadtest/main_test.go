package main

import (
	"bytes"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keyrenew/tokens/internal/testenv"
)

// short is a run brief enough for a shared 2-core machine under -race.
func short(t *testing.T) config {
	return config{
		sqliteFile: filepath.Join(t.TempDir(), "tokens.db"),
		cache:      true,
		addr:       "127.0.0.1:0",
		keys:       6,
		clients:    4,
		duration:   time.Second,
	}
}

func TestRunOnSQLite(t *testing.T) {
	t.Run("cache", func(t *testing.T) {
		checkRun(t, short(t))
	})
	t.Run("no cache", func(t *testing.T) {
		cfg := short(t)
		cfg.cache = false
		checkRun(t, cfg)
	})
	t.Run("clients share keys", func(t *testing.T) {
		cfg := short(t)
		cfg.keys, cfg.clients = 2, 5
		checkRun(t, cfg)
	})
}

func TestRunOnPostgres(t *testing.T) {
	cfg := short(t)
	cfg.postgresURL = testenv.PostgresSchema(t)
	checkRun(t, cfg)
}

// checkRun runs the load test and requires that every request succeeded
// while keys were renewed.
func checkRun(t *testing.T, cfg config) *report {
	t.Helper()
	rep, err := run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	rep.print(&out)
	t.Log("\n" + out.String())
	if !strings.Contains(out.String(), "refused valid requests  0\n") {
		t.Errorf("output does not say that no valid request was refused")
	}
	if !rep.ok() {
		t.Errorf("%d refused valid requests, %d sent with a deleted token, %d failed; want none",
			rep.refusedValid, rep.refusedDeleted, rep.failed)
	}
	if rep.requests < 100 {
		t.Errorf("%d requests, want at least 100", rep.requests)
	}
	if rep.renewals < 3 {
		t.Errorf("%d renewals, want at least 3", rep.renewals)
	}
	if rep.latency.total != rep.requests {
		t.Errorf("%d latencies recorded for %d requests", rep.latency.total, rep.requests)
	}
	return rep
}

func TestRunStopsAtRequestLimit(t *testing.T) {
	cfg := short(t)
	cfg.duration = maxDuration // the limit, not the clock, ends this run
	cfg.requests = 300
	rep, err := run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.requests != cfg.requests || !rep.ok() {
		t.Errorf("%d requests (%d refused, %d failed), want %d that succeed",
			rep.requests, rep.refusedValid, rep.failed, cfg.requests)
	}
}

// TestRunCountsRefusals proves the count can fail: an operator that
// deletes old tokens without handing the new ones over breaks the clients,
// as a library that refused valid tokens would.
func TestRunCountsRefusals(t *testing.T) {
	cfg := short(t)
	cfg.duration = 500 * time.Millisecond
	cfg.dropHandover = true
	rep, err := run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.refusedValid == 0 || rep.ok() {
		t.Errorf("%d refused valid requests without handovers, want some", rep.refusedValid)
	}
}

func TestConfigRefusesUnboundedOrRemoteRuns(t *testing.T) {
	for name, change := range map[string]func(*config){
		"all interfaces":     func(c *config) { c.addr = ":0" },
		"unspecified IP":     func(c *config) { c.addr = "0.0.0.0:8080" },
		"remote host":        func(c *config) { c.addr = "192.0.2.1:80" },
		"host name":          func(c *config) { c.addr = "example.com:80" },
		"too long":           func(c *config) { c.duration = maxDuration + time.Second },
		"no duration":        func(c *config) { c.duration = 0 },
		"too many clients":   func(c *config) { c.clients = maxClients + 1 },
		"no client":          func(c *config) { c.clients = 0 },
		"no key":             func(c *config) { c.keys = 0 },
		"negative requests":  func(c *config) { c.requests = -1 },
		"too many keys":      func(c *config) { c.keys = maxKeys + 1 },
		"address lacks port": func(c *config) { c.addr = "127.0.0.1" },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := short(t)
			change(&cfg)
			if _, err := run(t.Context(), cfg); err == nil {
				t.Error("run accepted it")
			}
		})
	}
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0", "localhost:0", "127.1.2.3:0"} {
		if err := checkLoopback(addr); err != nil {
			t.Errorf("checkLoopback(%q): %v", addr, err)
		}
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	for i := 1; i <= 1000; i++ {
		h.add(time.Duration(i) * time.Microsecond)
	}
	for q, want := range map[float64]time.Duration{0.5: 500 * time.Microsecond, 0.99: 990 * time.Microsecond, 0.999: 999 * time.Microsecond} {
		got := h.quantile(q)
		if diff := got - want; diff < -want/60 || diff > want/60 {
			t.Errorf("quantile(%v) = %v, want %v within 1/60", q, got, want)
		}
	}
	var empty histogram
	if got := empty.quantile(0.5); got != 0 {
		t.Errorf("quantile of nothing = %v, want 0", got)
	}
}

func TestWritesOnPostgres(t *testing.T) {
	var out strings.Builder
	if err := runWrites(t.Context(), testenv.PostgresSchema(t), 20*time.Millisecond, &out); err != nil {
		t.Fatal(err)
	}
	for _, n := range writerCounts {
		if !regexp.MustCompile(fmt.Sprintf(`(?m)^ +%d +\d+ +\d+ +[0-9.]+x$`, n)).MatchString(out.String()) {
			t.Errorf("no figures for %d writers in:\n%s", n, out.String())
		}
	}
	if err := runWrites(t.Context(), "", time.Millisecond, io.Discard); err == nil {
		t.Error("the write mode ran without PostgreSQL")
	}
}
