#!/usr/bin/env bash
# bench/compare.sh REV_A REV_B [N] [ROUNDS]: capture_all_snapshots() of two
# revisions of the extension on one dataset, alternately, in one throwaway
# cluster (.tmp/compare, Debian's default memory settings).  Builds each
# revision in a git worktree, and for each round installs it, creates the
# extension afresh, captures the previous UTC day of N portfolios (default
# 100000) in a new backend, and times it.  Prints the median time of each
# revision and the md5 over every stored figure and positions array, which
# must be the same for both (exit 1 otherwise).  Leaves the working tree's
# build installed.  Not part of the test suite.
source "$(dirname "$0")/../scripts/lib.sh"

A=${1:?usage: bench/compare.sh REV_A REV_B [N] [ROUNDS]}
B=${2:?usage: bench/compare.sh REV_A REV_B [N] [ROUNDS]}
N=${3:-100000}
ROUNDS=${4:-3}
ensure_packages
WORK="$ROOT/.tmp/compare-trees"
rm -rf "$WORK"; mkdir -p "$WORK"
git -C "$ROOT" worktree prune
for side in a b; do
    rev=$([ $side = a ] && echo "$A" || echo "$B")
    git -C "$ROOT" worktree add -q --detach "$WORK/$side" "$rev"
    make -C "$WORK/$side" -s PG_CONFIG="$PGBIN/pg_config" >/dev/null
done
cleanup() {
    stop_cluster compare
    git -C "$ROOT" worktree remove --force "$WORK/a" 2>/dev/null || true
    git -C "$ROOT" worktree remove --force "$WORK/b" 2>/dev/null || true
    install_extension
}
trap cleanup EXIT

start_cluster compare "${SNAPSHOT_COMPARE_PORT:-54335}" "max_wal_size = '8GB'" "checkpoint_timeout = '30min'"
createdb compare
export PGDATABASE=compare
psql -X -q -v ON_ERROR_STOP=1 -f "$ROOT/examples/schema.sql"
log "loading $N portfolios"
psql -X -q -v ON_ERROR_STOP=1 -v portfolios="$N" -f "$ROOT/examples/demo_data.sql"
psql -X -q -c "VACUUM ANALYZE"
DAY=$(psql -X -At -c "SELECT (now() AT TIME ZONE 'UTC')::date - 1")

FIGURES="portfolio_id, base_currency, market_value, cash_balance, net_worth, total_cost, unrealized_pnl,
         realized_pnl, income, fees, net_contribution, day_flow, position_count, missing_prices,
         stale_prices, missing_fx, positions"
declare -A times md5s
for round in $(seq "$ROUNDS"); do
    for side in a b; do
        make -C "$WORK/$side" -s PG_CONFIG="$PGBIN/pg_config" install >/dev/null
        psql -X -q -v ON_ERROR_STOP=1 -c "DROP EXTENSION IF EXISTS snapshot CASCADE" -c "CREATE EXTENSION snapshot" \
             -c "SET client_min_messages = warning" -c "SELECT snapshot.snapshot_configure(fx_rates => 'fx_rates')" \
             -c "CHECKPOINT" >/dev/null
        seconds=$(psql -X -At -v ON_ERROR_STOP=1 <<SQL
SELECT extract(epoch FROM clock_timestamp()) AS t0 \gset
SELECT status FROM snapshot.capture_all_snapshots('$DAY') \g /dev/null
SELECT round((extract(epoch FROM clock_timestamp()) - :t0)::numeric, 3);
SQL
)
        md5=$(psql -X -At -c "SELECT md5(string_agg(row($FIGURES)::text, E'\n' ORDER BY portfolio_id))
                               FROM snapshot.portfolio_snapshots WHERE snapshot_date = '$DAY'")
        times[$side]="${times[$side]:-} $seconds"
        md5s[$side]=$md5
        log "round $round, $side ($([ $side = a ] && echo "$A" || echo "$B")): $seconds s, md5 $md5"
    done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
ma=$(echo "${times[a]}" | median)
mb=$(echo "${times[b]}" | median)
echo "N = $N, $ROUNDS rounds, alternating"
echo "A $A: median $ma s (${times[a]# })"
echo "B $B: median $mb s (${times[b]# })"
echo "B / A = $(awk -v a="$ma" -v b="$mb" 'BEGIN {printf "%.3f", b / a}')"
echo "md5 of every figure and positions array: A ${md5s[a]}, B ${md5s[b]}"
[ "${md5s[a]}" = "${md5s[b]}" ] && echo "identical" || { echo "DIFFERENT"; exit 1; }
