-- examples/demo_data.sql: a deterministic demo dataset in the reference schema.
--   psql -v portfolios=3000 -v assets=200 -v days=60 -f examples/demo_data.sql
-- Every number derives from hashes of row numbers, so the same parameters
-- give the same data on any machine.  The last day of data is today (UTC).
--   * assets in USD, EUR and GBP; daily closes with ~10% gaps; daily FX
--     EUR->USD, GBP->USD and EUR->GBP (the other directions come by inverse);
--   * 80% USD, 10% EUR, 10% GBP portfolios; every other one funds a cash
--     account with deposits; ~12 BUYs, 3 SELLs (never more than held), a
--     dividend and a fee each.

\if :{?portfolios} \else \set portfolios 3000 \endif
\if :{?assets} \else \set assets 200 \endif
\if :{?days} \else \set days 60 \endif

BEGIN;

-- a deterministic pseudo-random number in [0, 1) from a key
CREATE FUNCTION pg_temp.rnd(key text) RETURNS double precision
LANGUAGE sql IMMUTABLE AS
$$ SELECT ('x' || substr(md5(key), 1, 8))::bit(32)::bigint / 4294967296.0 $$;

CREATE FUNCTION pg_temp.uid(kind text, n bigint) RETURNS uuid
LANGUAGE sql IMMUTABLE AS $$ SELECT md5(kind || ':' || n)::uuid $$;

CREATE TEMP TABLE demo_params AS
SELECT :portfolios::int AS portfolios, :assets::int AS assets, :days::int AS days,
       (now() AT TIME ZONE 'UTC')::date AS last_day;

INSERT INTO assets (id, symbol, name, currency)
SELECT pg_temp.uid('asset', a), 'A' || lpad(a::text, 5, '0'), 'Demo asset ' || a,
       CASE WHEN a % 20 < 12 THEN 'USD' WHEN a % 20 < 17 THEN 'EUR' ELSE 'GBP' END
  FROM demo_params, generate_series(1, assets) AS a;

INSERT INTO asset_prices (asset_id, price_date, close)
SELECT pg_temp.uid('asset', a), d::date,
       round((10 + 490 * pg_temp.rnd('base' || a))::numeric
             * (1 + 0.15 * sin(extract(epoch FROM d) / 86400 / 9 + a))::numeric, 4)
  FROM demo_params,
       generate_series(1, assets) AS a,
       generate_series(last_day - days + 1, last_day, interval '1 day') AS d
 WHERE pg_temp.rnd('gap' || a || d) >= 0.1;

INSERT INTO fx_rates (from_currency, to_currency, rate_date, rate)
SELECT pair.f, pair.t, d::date,
       round((pair.r * (1 + 0.02 * sin(extract(epoch FROM d) / 86400 / 5)))::numeric, 6)
  FROM demo_params,
       (VALUES ('EUR', 'USD', 1.08), ('GBP', 'USD', 1.27), ('EUR', 'GBP', 0.85)) AS pair(f, t, r),
       generate_series(last_day - days + 1, last_day, interval '1 day') AS d;

INSERT INTO portfolios (id, name, base_currency)
SELECT pg_temp.uid('portfolio', p), 'Demo portfolio ' || p,
       CASE WHEN p % 10 < 8 THEN 'USD' WHEN p % 10 = 8 THEN 'EUR' ELSE 'GBP' END
  FROM demo_params, generate_series(1, portfolios) AS p;

-- The trades: 12 buys per portfolio; the first three are half sold 5 days on.
CREATE TEMP TABLE demo_buys AS
SELECT p, k,
       pg_temp.uid('portfolio', p) AS portfolio_id,
       1 + floor(pg_temp.rnd('asset' || p || ':' || k) * prm.assets)::int AS a,
       (1 + floor(pg_temp.rnd('qty' || p || ':' || k) * 50))::numeric AS quantity,
       prm.last_day - prm.days + 1
           + floor(pg_temp.rnd('day' || p || ':' || k) * (prm.days - 6))::int AS day,
       CASE WHEN p % 10 < 8 THEN 'USD' WHEN p % 10 = 8 THEN 'EUR' ELSE 'GBP' END AS base
  FROM demo_params prm, generate_series(1, prm.portfolios) AS p, generate_series(1, 12) AS k;

-- the close of asset a on day d, or the nearest earlier one
CREATE FUNCTION pg_temp.px(a int, d date) RETURNS numeric LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT close FROM asset_prices
                      WHERE asset_id = pg_temp.uid('asset', a) AND price_date <= d
                      ORDER BY price_date DESC LIMIT 1), 100)
$$;

-- exchange rate from an asset currency to a base currency on day d
CREATE FUNCTION pg_temp.fx(f text, t text, d date) RETURNS numeric LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN f = t THEN 1 ELSE coalesce(
        (SELECT rate FROM fx_rates WHERE from_currency = f AND to_currency = t
            AND rate_date <= d ORDER BY rate_date DESC LIMIT 1),
        (SELECT round(1 / rate, 8) FROM fx_rates WHERE from_currency = t AND to_currency = f
            AND rate_date <= d ORDER BY rate_date DESC LIMIT 1), 1) END
$$;

INSERT INTO transactions (portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date)
SELECT portfolio_id, NULL, 'DEPOSIT', 1, 250000, NULL, NULL,
       (prm.last_day - prm.days)::timestamp AT TIME ZONE 'UTC' + interval '9 hours'
  FROM demo_buys b, demo_params prm
 WHERE b.k = 1 AND b.p % 2 = 0
UNION ALL
SELECT b.portfolio_id, pg_temp.uid('asset', b.a), 'BUY', b.quantity, pg_temp.px(b.a, b.day),
       round((1 + pg_temp.rnd('fee' || b.p || ':' || b.k) * 9)::numeric, 2),
       pg_temp.fx(ast.currency, b.base, b.day),
       b.day::timestamp AT TIME ZONE 'UTC' + make_interval(mins => 600 + b.k)
  FROM demo_buys b JOIN assets ast ON ast.id = pg_temp.uid('asset', b.a)
UNION ALL
SELECT b.portfolio_id, pg_temp.uid('asset', b.a), 'SELL', b.quantity / 2, pg_temp.px(b.a, b.day + 5),
       2, pg_temp.fx(ast.currency, b.base, b.day + 5),
       (b.day + 5)::timestamp AT TIME ZONE 'UTC' + make_interval(mins => 900 + b.k)
  FROM demo_buys b JOIN assets ast ON ast.id = pg_temp.uid('asset', b.a)
 WHERE b.k <= 3
UNION ALL
SELECT b.portfolio_id, pg_temp.uid('asset', b.a), 'DIVIDEND', b.quantity, 0.25, 0,
       pg_temp.fx(ast.currency, b.base, b.day + 3),
       (b.day + 3)::timestamp AT TIME ZONE 'UTC' + interval '12 hours'
  FROM demo_buys b JOIN assets ast ON ast.id = pg_temp.uid('asset', b.a)
 WHERE b.k = 4
UNION ALL
SELECT b.portfolio_id, NULL, 'FEE', 1, 4.99, 0, NULL,
       (prm.last_day - 1)::timestamp AT TIME ZONE 'UTC' + interval '8 hours'
  FROM demo_buys b, demo_params prm
 WHERE b.k = 1
 ORDER BY 8, 1;

DROP TABLE demo_buys, demo_params;
COMMIT;
ANALYZE;
