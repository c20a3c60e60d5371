-- bench/set_based.sql: method (b), the best single set-based statement we
-- could write for a simpler valuation than the extension's: net quantities x
-- latest close x FX (direct, inverse, else 1), buy costs, cash sums; no
-- lots, no realized P&L, no flows, no positions JSON.  The latest close and
-- rate are computed once (DISTINCT ON) into a unit value per asset and base
-- currency; market value being linear in the ledger, one scan aggregates
-- straight to portfolios (no grouping by position).  Run by bench/bench.py with
-- :'snapshot_date' set and work_mem raised.
CREATE TABLE IF NOT EXISTS bench_simple_snapshots (
    portfolio_id   uuid NOT NULL,
    snapshot_date  date NOT NULL,
    base_currency  text NOT NULL,
    market_value   numeric NOT NULL,
    buy_cost       numeric NOT NULL,
    cash_balance   numeric NOT NULL,
    net_worth      numeric NOT NULL,
    PRIMARY KEY (portfolio_id, snapshot_date)
);
