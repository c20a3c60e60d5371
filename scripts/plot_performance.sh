#!/usr/bin/env bash
# scripts/plot_performance.sh [PORTFOLIO_ID]: after scripts/demo.sh, draw one
# demo portfolio's net worth, net contribution and time-weighted index from
# snapshot.performance_series() into docs/performance.png (matplotlib, pinned
# in bench/requirements.txt, installed into .tmp/bench-venv).
source "$(dirname "$0")/lib.sh"

ensure_bench_venv
dir="$ROOT/.tmp/demo"
[ -f "$dir/data/postmaster.pid" ] || { echo "the demo cluster is not running: run scripts/demo.sh first" >&2; exit 1; }
export PGHOST="$dir/run" PGPORT="${SNAPSHOT_DEMO_PORT:-54331}" PGUSER="$(server_user)" PGDATABASE=portfolio_demo
"$BENCH_VENV/bin/python" "$ROOT/bench/plot_performance.py" --out "$ROOT/docs/performance.png" ${1:+--portfolio "$1"}
