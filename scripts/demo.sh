#!/usr/bin/env bash
# scripts/demo.sh [PORTFOLIOS]: the main job on the embedded default.  Starts
# a throwaway cluster in .tmp/demo, installs the extension, loads the demo
# dataset and runs SELECT * FROM capture_all_snapshots().  Safe to rerun.
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
cat <<TXT

The demo cluster keeps running; connect with
    psql -h $PGHOST -p $PGPORT -U $PGUSER portfolio_demo
and stop it with
    $PGBIN/pg_ctl -D $ROOT/.tmp/demo/data stop     (as $(server_user))
TXT
