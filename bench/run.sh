#!/usr/bin/env bash
# bench/run.sh [N]: the benchmark (not part of the test suite).  Installs what
# is missing, starts a throwaway cluster in .tmp/bench with Debian's default
# memory settings (shared_buffers 128MB, work_mem 4MB), loads N and then 4N
# portfolios (default N = 100000), times the three methods and writes
# bench/results/{results.md,timings.json,bench.png}.  Extra arguments go to
# bench/bench.py (see --help), e.g. bench/run.sh 20000 --loop-rounds-4n 0.
source "$(dirname "$0")/../scripts/lib.sh"

N=${1:-100000}; shift || true
ensure_packages
install_extension
ensure_bench_venv
start_cluster bench "${SNAPSHOT_BENCH_PORT:-54334}" "max_wal_size = '8GB'" "checkpoint_timeout = '30min'"
trap 'stop_cluster bench' EXIT
"$BENCH_VENV/bin/python" "$ROOT/bench/bench.py" --host "$PGHOST" --port "$PGPORT" --user "$PGUSER" --n "$N" "$@"
