#!/bin/sh
# bench.sh runs Verify on memstore (valid: no cache; cached: WithVerifyCache)
# beside its floor (map look-up + SHA-256 + constant-time compare) in short
# interleaved rounds, so that drift on a shared machine hits subject and
# floor alike, then prints benchstat's summary and the median of each
# round's ratio to the floor.
#
#   scripts/bench.sh [rounds] [benchtime]     defaults: 10 rounds of 200ms
#
# BENCH overrides the benchmarks run each round (a -test.bench pattern; the
# floor must be among them for the ratios).
set -eu
rounds=${1:-10}
benchtime=${2:-200ms}
pattern=${BENCH:-'Verify/(valid|cached|floor)$'}
cd "$(dirname "$0")/.."
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
go test -c -o "$dir/tokens.test" .
i=1
while [ "$i" -le "$rounds" ]; do
	"$dir/tokens.test" -test.run '^$' -test.bench "$pattern" -test.benchtime "$benchtime" \
		-test.benchmem -test.count 1 >"$dir/round.txt"
	cat "$dir/round.txt" >>"$dir/all.txt"
	# One line per benchmark of this round: name, ns/op, floor ns/op.
	awk -v r="$i" '/^Benchmark/ { ns[$1] = $3 } END {
		for (n in ns) if (n ~ /\/floor-/) f = ns[n]
		for (n in ns) if (f > 0) printf "%s %d %s %s\n", n, r, ns[n], ns[n] / f
	}' "$dir/round.txt" >>"$dir/ratios.txt"
	i=$((i + 1))
done
go run golang.org/x/perf/cmd/benchstat@latest "$dir/all.txt"
echo
echo "median ratio to Verify/floor over $rounds interleaved rounds:"
sort -k1,1 -k4,4g "$dir/ratios.txt" | awk '
	function flush() { if (n) printf "  %-32s %5.2fx (min %.2fx, max %.2fx)\n", name, (n % 2 ? r[(n + 1) / 2] : (r[n / 2] + r[n / 2 + 1]) / 2), r[1], r[n] }
	$1 != name { flush(); name = $1; n = 0 }
	{ r[++n] = $4 }
	END { flush() }'
