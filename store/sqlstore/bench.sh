#!/bin/sh
# bench.sh runs the SQL store's Verify benchmarks beside their floors in
# short interleaved rounds in one process (TOKENS_BENCH_ROUNDS), so that
# drift on a shared machine hits subject and floor alike and the tables
# are filled once; then it prints benchstat's summary and, for each
# backend and size, the median over the rounds of each round's ratio:
#
#   verify/baseline    uncached Verify against a prepared PK SELECT (<= 1.3x)
#   store_key/baseline Store.Key alone against the same SELECT
#   cached/floor       cached Verify against the in-memory floor (<= 2x)
#   idle=2/idle=8      time per Verify from 8 goroutines with database/sql's
#                      default of 2 idle connections against 8
#   paired             verify/baseline timed within each iteration (see
#                      benchPaired): the steadier figure on PostgreSQL
#
#   store/sqlstore/bench.sh [rounds] [benchtime]   defaults: 10 rounds of 100ms
#
# TOKENS_TEST_POSTGRES enables the PostgreSQL backends; TOKENS_BENCH_1M=1
# adds Verify over 1M keys. BENCH overrides the -test.bench pattern.
set -eu
rounds=${1:-10}
benchtime=${2:-100ms}
pattern=${BENCH:-'^BenchmarkVerify(Pool)?$'}
cd "$(dirname "$0")"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
go test -c -o "$dir/sqlstore.test" .
TOKENS_BENCH_ROUNDS=$rounds "$dir/sqlstore.test" -test.run '^$' -test.bench "$pattern" \
	-test.benchtime "$benchtime" -test.benchmem >"$dir/raw.txt"
# Benchmark/backend/[keys=n/]case[#round]-procs, with named levels for
# benchstat and the round dropped.
sed -E -e '/^Benchmark/s/#[0-9]+-/-/' \
	-e 's#^(BenchmarkVerify(Pool)?)/([a-z_]+)/#\1/backend=\3/#' \
	-e 's#^(BenchmarkVerify/backend=[a-z_]+/keys=[0-9a-zA-Z]+)/([a-z_]+)-#\1/case=\2-#' \
	"$dir/raw.txt" >"$dir/all.txt"
go run golang.org/x/perf/cmd/benchstat@latest -col /case -row .name,/backend,/keys \
	-filter '/case:(baseline OR store_key OR verify)' "$dir/all.txt"
go run golang.org/x/perf/cmd/benchstat@latest -col /case -row .name,/backend,/keys \
	-filter '/case:(floor OR cached)' "$dir/all.txt"
go run golang.org/x/perf/cmd/benchstat@latest -row .name,/backend,/keys \
	-filter '/case:paired' "$dir/all.txt"
go run golang.org/x/perf/cmd/benchstat@latest -col /idle -row /backend \
	-filter '.name:VerifyPool' "$dir/all.txt"
echo
echo "median of the per-round ratios over $rounds interleaved rounds (min, max):"
awk '/^Benchmark/ {
	name = $1; ns = $3
	round = 0
	if (match(name, /#[0-9]+-/)) round = substr(name, RSTART + 1, RLENGTH - 2) + 0
	sub(/#[0-9]+-[0-9]+$/, "", name); sub(/-[0-9]+$/, "", name)
	n = split(name, part, "/")
	group = part[1]; for (i = 2; i < n; i++) group = group "/" part[i]
	t[group, part[n], round] = ns; groups[group] = 1; rounds[round] = 1
	for (i = 4; i < NF; i++) if ($(i + 1) == "verify/baseline") paired[group, round] = $i
}
END {
	split("verify/baseline store_key/baseline cached/floor idle=2/idle=8", pairs, " ")
	for (g in groups) for (p in pairs) {
		split(pairs[p], c, "/")
		for (r in rounds) if ((g, c[1], r) in t && (g, c[2], r) in t)
			print g, pairs[p], t[g, c[1], r] / t[g, c[2], r]
	}
	for (k in paired) { split(k, gr, SUBSEP); print gr[1], "paired", paired[k] }
}' "$dir/raw.txt" | sort -k1,1 -k2,2 -k3,3g | awk '
	function flush() { if (n) printf "  %-44s %-20s %5.2fx (%.2fx, %.2fx)\n", g, p, (n % 2 ? r[(n + 1) / 2] : (r[n / 2] + r[n / 2 + 1]) / 2), r[1], r[n] }
	$1 != g || $2 != p { flush(); g = $1; p = $2; n = 0 }
	{ r[++n] = $3 }
	END { flush() }'
