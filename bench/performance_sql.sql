-- bench/performance_sql.sql: the time-weighted return of every portfolio
-- over [$1, $2], written as plain SQL window functions with the rules of
-- snapshot.portfolio_performance (flows = change of net_contribution, in at
-- the start of the day, out at its end; days starting at zero or below
-- have no return), for bench/bench.py to time against the function.
SELECT portfolio_id, exp(sum(ln(ratio))) - 1 AS twr
  FROM (SELECT portfolio_id,
               ((net_worth + greatest(-flow, 0)) / (prev_worth + greatest(flow, 0)))::float8 AS ratio,
               prev_worth + greatest(flow, 0) > 0 AND net_worth + greatest(-flow, 0) >= 0 AS has_return
          FROM (SELECT portfolio_id, net_worth,
                       lag(net_worth) OVER w AS prev_worth,
                       net_contribution - lag(net_contribution) OVER w AS flow
                  FROM snapshot.portfolio_snapshots
                 WHERE snapshot_date BETWEEN $1 AND $2
                WINDOW w AS (PARTITION BY portfolio_id ORDER BY snapshot_date)) AS linked
         WHERE prev_worth IS NOT NULL) AS daily
 WHERE has_return AND ratio > 0
 GROUP BY portfolio_id
