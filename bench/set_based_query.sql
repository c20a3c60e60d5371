WITH latest_price AS (
    SELECT DISTINCT ON (asset_id) asset_id, close
      FROM asset_prices WHERE price_date <= $1
     ORDER BY asset_id, price_date DESC
), latest_fx AS (
    SELECT DISTINCT ON (from_currency, to_currency) from_currency, to_currency, rate
      FROM fx_rates WHERE rate_date <= $1
     ORDER BY from_currency, to_currency, rate_date DESC
), unit_value AS (
    -- what one unit of each asset is worth in each base currency
    SELECT a.id AS asset_id, b.base_currency,
           coalesce(lp.close, 0) * CASE WHEN a.currency = b.base_currency THEN 1
                                        ELSE coalesce(fx.rate, 1 / ifx.rate, 1) END AS value
      FROM assets a
     CROSS JOIN (SELECT DISTINCT base_currency FROM portfolios) b
      LEFT JOIN latest_price lp ON lp.asset_id = a.id
      LEFT JOIN latest_fx fx ON fx.from_currency = a.currency AND fx.to_currency = b.base_currency
      LEFT JOIN latest_fx ifx ON ifx.from_currency = b.base_currency AND ifx.to_currency = a.currency
), per_portfolio AS (
    -- market value is linear in the ledger: sum of signed quantity x unit value,
    -- so one pass aggregates per portfolio, with no per-position grouping
    SELECT t.portfolio_id,
           sum(CASE t.type WHEN 'BUY' THEN t.quantity WHEN 'SELL' THEN -t.quantity ELSE 0 END
               * coalesce(uv.value, 0)) AS market_value,
           sum(CASE WHEN t.type = 'BUY'
                    THEN (t.quantity * t.price + coalesce(t.fee, 0)) * coalesce(t.exchange_rate, 1) ELSE 0 END) AS buy_cost,
           sum(CASE t.type
                 WHEN 'DEPOSIT'    THEN (t.quantity * t.price - coalesce(t.fee, 0)) * coalesce(t.exchange_rate, 1)
                 WHEN 'WITHDRAWAL' THEN -(t.quantity * t.price + coalesce(t.fee, 0)) * coalesce(t.exchange_rate, 1)
                 WHEN 'BUY'        THEN -(t.quantity * t.price + coalesce(t.fee, 0)) * coalesce(t.exchange_rate, 1)
                 WHEN 'SELL'       THEN (t.quantity * t.price - coalesce(t.fee, 0)) * coalesce(t.exchange_rate, 1)
                 WHEN 'DIVIDEND'   THEN (t.quantity * t.price - coalesce(t.fee, 0)) * coalesce(t.exchange_rate, 1)
                 WHEN 'FEE'        THEN -(t.quantity * t.price + coalesce(t.fee, 0)) * coalesce(t.exchange_rate, 1)
               END) AS cash,
           bool_or(t.type IN ('DEPOSIT', 'WITHDRAWAL')) AS has_cash
      FROM transactions t
      JOIN portfolios p ON p.id = t.portfolio_id
      LEFT JOIN unit_value uv ON uv.asset_id = t.asset_id AND uv.base_currency = p.base_currency
     WHERE t.transaction_date < $2
     GROUP BY t.portfolio_id
)
INSERT INTO bench_simple_snapshots AS s
       (portfolio_id, snapshot_date, base_currency, market_value, buy_cost, cash_balance, net_worth)
SELECT p.id, $1, p.base_currency,
       round(coalesce(pp.market_value, 0), 8), round(coalesce(pp.buy_cost, 0), 8),
       round(CASE WHEN pp.has_cash THEN pp.cash ELSE 0 END, 8),
       round(coalesce(pp.market_value, 0) + CASE WHEN pp.has_cash THEN pp.cash ELSE 0 END, 8)
  FROM portfolios p
  LEFT JOIN per_portfolio pp ON pp.portfolio_id = p.id
ON CONFLICT (portfolio_id, snapshot_date) DO UPDATE
   SET base_currency = EXCLUDED.base_currency, market_value = EXCLUDED.market_value,
       buy_cost = EXCLUDED.buy_cost, cash_balance = EXCLUDED.cash_balance,
       net_worth = EXCLUDED.net_worth
