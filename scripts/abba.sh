#!/usr/bin/env bash
# Same-run before/after ratios of the speed benchmarks between two revisions.
#
#   scripts/abba.sh <before-rev> <after-rev|WORKTREE>
#
# Builds one test binary per benchmark package from each revision (WORKTREE:
# the current working tree, uncommitted changes included), then runs every
# benchmark A B B A (before, after, after, before), each run its own binary
# start (and so its own ZooKeeper ensemble, started in TestMain), under the
# shared lock /tmp/zkrecipes-zk.lock. The ABBA order cancels a drift across
# the four runs (a machine warming up or getting busier) out of
# after/before = (B1+B2)/(A1+A2), printed for every metric a benchmark reports.
#
# Environment:
#   BENCH=regexp        only the benchmarks whose function name matches (grep -E),
#                       e.g. BENCH=Overhead
#   BENCHTIME_<Func>=…  another -benchtime for one benchmark,
#                       e.g. BENCHTIME_BenchmarkOverhead=500x
# Figures and how to read them: docs/benchmarks.md, "Before and after a change".
set -euo pipefail

# package | benchmark function | default -benchtime (scripts/bench.sh's)
BENCHMARKS=(
	"resilience BenchmarkOverhead 3000x"
	"lock BenchmarkMutexUncontended 2000x"
	"lock BenchmarkMutexContended 2000x"
	"election BenchmarkFailoverAfterResign 300x"
)
LOCK=/tmp/zkrecipes-zk.lock

die() { echo "abba.sh: $*" >&2; exit 1; }

[ $# -eq 2 ] || die "usage: scripts/abba.sh <before-rev> <after-rev|WORKTREE>"
ROOT=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
cd "$ROOT"
command -v flock >/dev/null || die "flock not found"

# resolve REV: prints the full commit hash, or WORKTREE.
resolve() {
	if [ "$1" = WORKTREE ]; then
		echo WORKTREE
		return
	fi
	git rev-parse --verify --quiet "$1^{commit}" || die "not a revision: $1"
}
REV_A=$(resolve "$1")
REV_B=$(resolve "$2")

TMP=$(mktemp -d "${TMPDIR:-/tmp}/abba.XXXXXX")
WORKTREES=()
cleanup() {
	local rc=$? wt
	for wt in "${WORKTREES[@]}"; do
		git -C "$ROOT" worktree remove --force "$wt" 2>/dev/null || true
	done
	rm -rf "$TMP"
	git -C "$ROOT" worktree prune 2>/dev/null || true
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# source DIR-NAME REV: prints the directory holding REV's source.
source_of() {
	if [ "$2" = WORKTREE ]; then
		echo "$ROOT"
		return
	fi
	local dir="$TMP/$1"
	git worktree add --quiet --detach "$dir" "$2" >&2 || die "git worktree add $2 failed"
	WORKTREES+=("$dir")
	echo "$dir"
}
describe() {
	if [ "$1" = WORKTREE ]; then
		echo "WORKTREE (HEAD $(git rev-parse --short HEAD), $(git status --porcelain | wc -l) paths changed or untracked)"
	else
		git log -1 --format='%h %s' "$1" | cut -c1-100
	fi
}

# The benchmarks selected.
SEL=()
for entry in "${BENCHMARKS[@]}"; do
	read -r pkg fn _ <<<"$entry"
	if [[ -z "${BENCH:-}" ]] || grep -qE -- "$BENCH" <<<"$fn"; then
		SEL+=("$entry")
	fi
done
[ ${#SEL[@]} -gt 0 ] || die "BENCH=$BENCH matches none of: $(printf '%s ' "${BENCHMARKS[@]}" | awk '{for(i=2;i<=NF;i+=3)printf "%s ",$i}')"

echo "before (A): $(describe "$REV_A")"
echo "after  (B): $(describe "$REV_B")"

# Source trees (source_of must not run in a subshell, it records the worktree).
source_of a "$REV_A" >"$TMP/src-a"
source_of b "$REV_B" >"$TMP/src-b"
SRC_A=$(cat "$TMP/src-a")
SRC_B=$(cat "$TMP/src-b")

# Every selected benchmark must exist in both revisions before anything runs.
for entry in "${SEL[@]}"; do
	read -r pkg fn _ <<<"$entry"
	for side in A B; do
		src=SRC_$side rev=REV_$side
		if ! grep -qsE "^func $fn\(" "${!src}/$pkg"/*_test.go; then
			die "revision ${!rev} has no $fn in $pkg/ (choose others with BENCH=regexp)"
		fi
	done
done

# Test binaries, one per package and side.
mkdir -p "$TMP/bin" "$TMP/out"
for pkg in $(printf '%s\n' "${SEL[@]}" | awk '{print $1}' | sort -u); do
	for side in A B; do
		src=SRC_$side
		echo "building $pkg ($side)"
		(cd "${!src}" && go test -c -o "$TMP/bin/$pkg.$side.test" "./$pkg/") ||
			die "building $pkg/ tests for side $side failed"
	done
done

export ZKRECIPES_QUIET=1

# run PKG FUNC BENCHTIME SIDE LABEL: one binary start; its result lines in $TMP/out/FUNC.LABEL.
run() {
	local pkg=$1 fn=$2 bt=$3 side=$4 label=$5 src=SRC_$4 t0 t1 rc=0
	local out="$TMP/out/$fn.$label"
	t0=$(date +%s)
	# The inner shell notes when the lock was granted, then becomes the binary.
	(cd "${!src}/$pkg" && flock "$LOCK" bash -c 'date +%s >"$0"; exec "$@"' "$out.locked" \
		"$TMP/bin/$pkg.$side.test" \
		-test.run '^$' -test.bench "^$fn\$" -test.benchtime "$bt" -test.count 1 \
		-test.timeout 10m) >"$out.stdout" 2>"$out.stderr" || rc=$?
	if [ "$rc" -ne 0 ]; then
		cat "$out.stdout" "$out.stderr" >&2
		die "$label ($pkg $fn) exited with status $rc"
	fi
	grep -E "^$fn([/-][^[:space:]]*)?[[:space:]]+[0-9]+[[:space:]]+[0-9.e+]+ ns/op" "$out.stdout" >"$out" || {
		cat "$out.stdout" "$out.stderr" >&2
		die "$label ($pkg $fn) printed no result line"
	}
	t1=$(cat "$out.locked" 2>/dev/null || echo "$t0")
	echo "  $label: waited $((t1 - t0)) s for the lock, ran $(($(date +%s) - t1)) s (ensemble start included)"
}

for entry in "${SEL[@]}"; do
	read -r pkg fn bt <<<"$entry"
	var="BENCHTIME_$fn"
	bt=${!var:-$bt}
	echo
	echo "=== $pkg $fn -benchtime $bt (A1 B1 B2 A2)"
	run "$pkg" "$fn" "$bt" A A1
	run "$pkg" "$fn" "$bt" B B1
	run "$pkg" "$fn" "$bt" B B2
	run "$pkg" "$fn" "$bt" A A2
	for label in A1 B1 B2 A2; do
		sed "s/^/$label  /" "$TMP/out/$fn.$label"
	done
	# One summary per (sub-)benchmark, in the order A1 reported them.
	for name in $(awk '{print $1}' "$TMP/out/$fn.A1"); do
		echo
		echo "$name"
		for label in A1 B1 B2 A2; do
			line=$(awk -v n="$name" '$1 == n' "$TMP/out/$fn.$label")
			[ -n "$line" ] || die "$label has no result for $name"
			echo "$label $line"
		done | awk '
			{
				lab[NR] = $1
				for (i = 4; i < NF; i += 2) {
					u = $(i + 1)
					if (!(u in seen)) { seen[u] = 1; units[++nu] = u }
					v[NR, u] = $i
				}
			}
			END {
				printf "  %-18s %12s %12s %12s %12s %13s\n", "metric", lab[1], lab[2], lab[3], lab[4], "after/before"
				for (k = 1; k <= nu; k++) {
					u = units[k]
					a = v[1, u] + v[4, u]
					b = v[2, u] + v[3, u]
					printf "  %-18s %12s %12s %12s %12s %13s\n", u, v[1, u], v[2, u], v[3, u], v[4, u], (a > 0 ? sprintf("%.3f", b / a) : "-")
				}
			}'
	done
done
echo
echo "after/before = (B1+B2)/(A1+A2); below 1 is faster for times and ratios, slower for handoffs/s."
