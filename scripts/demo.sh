#!/usr/bin/env bash
# scripts/demo.sh [PORTFOLIOS]: the main job on the embedded default.  Starts
# a throwaway cluster in .tmp/demo, installs the extension, loads the demo
# dataset and runs SELECT * FROM capture_all_snapshots(); then backfills the
# dataset's history (about 60 days) and shows returns over it.  Safe to rerun.
source "$(dirname "$0")/lib.sh"

PORTFOLIOS=${1:-3000}
ensure_packages
install_extension
start_cluster demo "${SNAPSHOT_DEMO_PORT:-54331}"
createdb portfolio_demo
export PGDATABASE=portfolio_demo
psql -X -q -v ON_ERROR_STOP=1 -f "$ROOT/examples/schema.sql"
log "loading demo data ($PORTFOLIOS portfolios)"
psql -X -q -v ON_ERROR_STOP=1 -v portfolios="$PORTFOLIOS" -f "$ROOT/examples/demo_data.sql"
psql -X -q -v ON_ERROR_STOP=1 <<'SQL'
CREATE EXTENSION snapshot;
SELECT snapshot.snapshot_configure(fx_rates => 'fx_rates');
SQL
log "capturing"
psql -X -v ON_ERROR_STOP=1 <<'SQL'
\timing on
SELECT * FROM snapshot.capture_all_snapshots();
\timing off
SELECT base_currency, count(*) AS portfolios, sum(net_worth) AS net_worth,
       sum(missing_prices) AS missing_prices, sum(stale_prices) AS stale_prices
  FROM snapshot.portfolio_snapshots
 WHERE snapshot_date = (now() AT TIME ZONE 'UTC')::date
 GROUP BY base_currency ORDER BY base_currency;
SELECT portfolio_id, base_currency, market_value, cash_balance, net_worth,
       unrealized_pnl, realized_pnl, position_count
  FROM snapshot.portfolio_snapshots
 WHERE snapshot_date = (now() AT TIME ZONE 'UTC')::date
 ORDER BY portfolio_id LIMIT 5;
SQL
log "backfilling the demo data's history, one capture per day"
psql -X -q -At -v ON_ERROR_STOP=1 <<'SQL' >/dev/null
SELECT format('SELECT status FROM snapshot.capture_all_snapshots(%L, %L)', d::date, 'backfill')
  FROM generate_series((SELECT min(transaction_date) FROM transactions)::date,
                       (now() AT TIME ZONE 'UTC')::date - 1, interval '1 day') AS d \gexec
SQL
psql -X -v ON_ERROR_STOP=1 <<'SQL'
SELECT count(DISTINCT snapshot_date) AS days, count(*) AS snapshots FROM snapshot.portfolio_snapshots;
-- returns over the whole history, five portfolios
SELECT p.id AS portfolio_id, r.first_date, r.last_date, r.end_net_worth, r.net_contribution, r.absolute_gain,
       round(r.time_weighted_return * 100, 2) AS twr_pct, round(r.money_weighted_return * 100, 2) AS mwr_pct,
       round(r.max_drawdown * 100, 2) AS max_drawdown_pct
  FROM (SELECT id FROM portfolios ORDER BY id LIMIT 5) p,
       LATERAL snapshot.portfolio_performance(p.id, '-infinity', 'infinity') r;
SQL
cat <<TXT

Draw one portfolio's history with scripts/plot_performance.sh (docs/performance.png).
The demo cluster keeps running; connect with
    psql -h $PGHOST -p $PGPORT -U $PGUSER portfolio_demo
and stop it with
    $PGBIN/pg_ctl -D $ROOT/.tmp/demo/data stop     (as $(server_user))
TXT
