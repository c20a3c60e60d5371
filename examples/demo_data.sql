-- examples/demo_data.sql: a deterministic dataset in the reference schema, at any scale.
--   psql -v portfolios=3000 -v assets=200 -v days=60 -f examples/demo_data.sql
-- Every value derives from hashes of row numbers (hashint8extended), so the
-- same parameters give the same data on any machine with PostgreSQL 15; the
-- last day of data is today (UTC).  Set-based throughout: 100,000 portfolios
-- (1.7 million transactions) load in about a minute.
--   * assets in USD (60%), EUR (25%) and GBP (15%); daily closes with ~10% of
--     the days missing; daily FX EUR->USD, GBP->USD and EUR->GBP (the other
--     directions are found by inverse);
--   * portfolios: 80% USD, 10% EUR, 10% GBP base currency; every other one
--     funds a cash account with a deposit; 12 BUYs each, the first three half
--     sold 5 days later (never more than held), a dividend and a fee;
--   * transactions are inserted in date order, as an application writes them.

\if :{?portfolios} \else \set portfolios 3000 \endif
\if :{?assets} \else \set assets 200 \endif
\if :{?days} \else \set days 60 \endif

BEGIN;
SET LOCAL work_mem = '256MB';

-- a deterministic pseudo-random number in [0, 1) for (key, stream)
CREATE FUNCTION pg_temp.rnd(key bigint, stream bigint) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT (hashint8extended(key, stream) & 2147483647) / 2147483648.0 $$;

CREATE FUNCTION pg_temp.uid(kind text, n bigint) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT md5(kind || ':' || n)::uuid $$;

-- the close of asset a on day i (0 = the first day), whether or not it was quoted
CREATE FUNCTION pg_temp.px(a int, i int) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT round(((10 + 490 * pg_temp.rnd(a, 1)) * (1 + 0.15 * sin(i / 9.0 + a)))::numeric, 4) $$;

-- the quoted rate of a pair on day i
CREATE FUNCTION pg_temp.pair_rate(r0 numeric, i int) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT round(r0 * (1 + 0.02 * sin(i / 5.0))::numeric, 6) $$;

-- the trade-time exchange rate from an asset currency to a base currency (NULL when equal)
CREATE FUNCTION pg_temp.fx(f text, t text, i int) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN f = t THEN NULL
        WHEN f = 'EUR' AND t = 'USD' THEN pg_temp.pair_rate(1.08, i)
        WHEN f = 'GBP' AND t = 'USD' THEN pg_temp.pair_rate(1.27, i)
        WHEN f = 'EUR' AND t = 'GBP' THEN pg_temp.pair_rate(0.85, i)
        WHEN f = 'USD' AND t = 'EUR' THEN round(1 / pg_temp.pair_rate(1.08, i), 8)
        WHEN f = 'USD' AND t = 'GBP' THEN round(1 / pg_temp.pair_rate(1.27, i), 8)
        WHEN f = 'GBP' AND t = 'EUR' THEN round(1 / pg_temp.pair_rate(0.85, i), 8)
    END
$$;

CREATE TEMP TABLE demo_params AS
SELECT :portfolios::int AS portfolios, :assets::int AS assets, :days::int AS days,
       (now() AT TIME ZONE 'UTC')::date - (:days::int - 1) AS first_day;

CREATE TEMP TABLE demo_assets AS
SELECT a, pg_temp.uid('asset', a) AS id,
       CASE WHEN a % 20 < 12 THEN 'USD' WHEN a % 20 < 17 THEN 'EUR' ELSE 'GBP' END AS currency
  FROM demo_params, generate_series(1, assets) AS a;
CREATE UNIQUE INDEX ON demo_assets (a);

INSERT INTO assets (id, symbol, name, currency)
SELECT id, 'A' || lpad(a::text, 5, '0'), 'Demo asset ' || a, currency FROM demo_assets ORDER BY a;

INSERT INTO asset_prices (asset_id, price_date, close)
SELECT da.id, prm.first_day + i, pg_temp.px(da.a, i)
  FROM demo_params prm, demo_assets da, generate_series(0, prm.days - 1) AS i
 WHERE pg_temp.rnd(da.a * 100000 + i, 2) >= 0.1;

INSERT INTO fx_rates (from_currency, to_currency, rate_date, rate)
SELECT pair.f, pair.t, prm.first_day + i, pg_temp.pair_rate(pair.r0, i)
  FROM demo_params prm,
       (VALUES ('EUR', 'USD', 1.08), ('GBP', 'USD', 1.27), ('EUR', 'GBP', 0.85)) AS pair(f, t, r0),
       generate_series(0, prm.days - 1) AS i;

CREATE TEMP TABLE demo_portfolios AS
SELECT p, pg_temp.uid('portfolio', p) AS id,
       CASE WHEN p % 10 < 8 THEN 'USD' WHEN p % 10 = 8 THEN 'EUR' ELSE 'GBP' END AS base
  FROM demo_params, generate_series(1, portfolios) AS p;

INSERT INTO portfolios (id, name, base_currency)
SELECT id, 'Demo portfolio ' || p, base FROM demo_portfolios ORDER BY p;

-- 12 buys per portfolio: asset, quantity and day from hashes of (p, k)
CREATE TEMP TABLE demo_buys AS
SELECT dp.p, k, dp.id AS portfolio_id, dp.base, da.id AS asset_id, da.a, da.currency,
       (1 + floor(pg_temp.rnd(dp.p * 16 + k, 4) * 50))::numeric AS quantity,
       floor(pg_temp.rnd(dp.p * 16 + k, 5) * (prm.days - 6))::int AS i
  FROM demo_params prm, demo_portfolios dp, generate_series(1, 12) AS k,
       LATERAL (SELECT 1 + floor(pg_temp.rnd(dp.p * 16 + k, 3) * prm.assets)::int AS a) pick
  JOIN demo_assets da USING (a);

INSERT INTO transactions (portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date)
SELECT portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date
  FROM (
    SELECT dp.id AS portfolio_id, NULL::uuid AS asset_id, 'DEPOSIT' AS type, 1::numeric AS quantity,
           250000::numeric AS price, NULL::numeric AS fee, NULL::numeric AS exchange_rate,
           (prm.first_day - 1)::timestamp AT TIME ZONE 'UTC' + interval '9 hours' AS transaction_date
      FROM demo_params prm, demo_portfolios dp
     WHERE dp.p % 2 = 0
    UNION ALL
    SELECT b.portfolio_id, b.asset_id, 'BUY', b.quantity, pg_temp.px(b.a, b.i),
           round((1 + pg_temp.rnd(b.p * 16 + b.k, 6) * 9)::numeric, 2), pg_temp.fx(b.currency, b.base, b.i),
           (prm.first_day + b.i)::timestamp AT TIME ZONE 'UTC' + make_interval(mins => 600 + b.k)
      FROM demo_params prm, demo_buys b
    UNION ALL
    SELECT b.portfolio_id, b.asset_id, 'SELL', b.quantity / 2, pg_temp.px(b.a, b.i + 5),
           2, pg_temp.fx(b.currency, b.base, b.i + 5),
           (prm.first_day + b.i + 5)::timestamp AT TIME ZONE 'UTC' + make_interval(mins => 900 + b.k)
      FROM demo_params prm, demo_buys b
     WHERE b.k <= 3
    UNION ALL
    SELECT b.portfolio_id, b.asset_id, 'DIVIDEND', b.quantity, 0.25, 0, pg_temp.fx(b.currency, b.base, b.i + 3),
           (prm.first_day + b.i + 3)::timestamp AT TIME ZONE 'UTC' + interval '12 hours'
      FROM demo_params prm, demo_buys b
     WHERE b.k = 4
    UNION ALL
    SELECT dp.id, NULL, 'FEE', 1, 4.99, 0, NULL,
           (prm.first_day + prm.days - 2)::timestamp AT TIME ZONE 'UTC' + interval '8 hours'
      FROM demo_params prm, demo_portfolios dp
  ) AS ledger
 ORDER BY transaction_date, portfolio_id;

DROP TABLE demo_buys, demo_portfolios, demo_assets, demo_params;
COMMIT;
ANALYZE portfolios, assets, transactions, asset_prices, fx_rates;
