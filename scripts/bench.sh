#!/usr/bin/env bash
# Runs every speed benchmark; each measures against plain go-zookeeper/zk in
# the same run and reports the ratio. Figures: docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export ZKRECIPES_QUIET=1
run() { go test -run '^$' -bench "$2" -benchtime "$3" -count "${COUNT:-3}" "$1" | grep -E '^(Benchmark|ok|FAIL)'; }
run ./resilience/ Overhead 3000x
run ./lock/ MutexUncontended 2000x
run ./lock/ MutexContended 2000x
run ./election/ FailoverAfterResign 300x
run ./registry/ Reregister1000 5x
COUNT=1 run ./recipes/ TreeCacheLoad10k 3x
