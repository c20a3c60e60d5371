-- fx: an open position's FX rate: same currency, direct, inverse, and the
-- fallback to the last trade's exchange_rate; cost in the base currency.
\i test/preamble.sql
BEGIN;
CREATE EXTENSION pgtap;
CREATE EXTENSION snapshot;
\i examples/schema.sql
SELECT plan(11);

INSERT INTO assets (id, symbol, currency) VALUES
    ('0f000000-0000-0000-0000-000000000001', 'USDCO', 'USD'),
    ('0f000000-0000-0000-0000-000000000002', 'JPYCO', 'JPY');
INSERT INTO portfolios (id, name, base_currency) VALUES
    ('f0000000-0000-0000-0000-000000000001', 'direct', 'EUR'),
    ('f0000000-0000-0000-0000-000000000002', 'inverse', 'GBP'),
    ('f0000000-0000-0000-0000-000000000003', 'fallback', 'CHF'),
    ('f0000000-0000-0000-0000-000000000004', 'same currency', 'USD'),
    ('f0000000-0000-0000-0000-000000000005', 'same currency, not in fx_rates', 'JPY');
INSERT INTO transactions (id, portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date)
OVERRIDING SYSTEM VALUE VALUES
    (1, 'f0000000-0000-0000-0000-000000000001', '0f000000-0000-0000-0000-000000000001', 'BUY', 10, 100, 0, 0.9, '2026-03-02 09:00+00'),
    (2, 'f0000000-0000-0000-0000-000000000002', '0f000000-0000-0000-0000-000000000001', 'BUY', 10, 100, 0, 0.78, '2026-03-02 09:00+00'),
    (3, 'f0000000-0000-0000-0000-000000000003', '0f000000-0000-0000-0000-000000000001', 'BUY', 10, 100, 0, 0.88, '2026-03-02 09:00+00'),
    (4, 'f0000000-0000-0000-0000-000000000003', '0f000000-0000-0000-0000-000000000001', 'SELL', 2, 105, 0, 0.9, '2026-03-04 09:00+00'),
    (5, 'f0000000-0000-0000-0000-000000000004', '0f000000-0000-0000-0000-000000000001', 'BUY', 10, 100, 0, NULL, '2026-03-02 09:00+00'),
    (6, 'f0000000-0000-0000-0000-000000000005', '0f000000-0000-0000-0000-000000000002', 'BUY', 3, 1500, 0, 0.5, '2026-03-02 09:00+00');
INSERT INTO asset_prices (asset_id, price_date, close) VALUES
    ('0f000000-0000-0000-0000-000000000001', '2026-03-05', 110),
    ('0f000000-0000-0000-0000-000000000002', '2026-03-05', 1600);
INSERT INTO fx_rates (from_currency, to_currency, rate_date, rate) VALUES
    ('USD', 'EUR', '2026-03-04', 0.92),
    ('USD', 'EUR', '2026-03-06', 0.95),   -- after the date: ignored
    ('EUR', 'USD', '2026-03-05', 1.2),    -- the direct pair wins over the inverse
    ('GBP', 'USD', '2026-03-03', 1.25),   -- only the inverse pair: 1 / 1.25
    ('USD', 'USD', '2026-03-05', 7);      -- never used: same currency is 1

SELECT snapshot.snapshot_configure(fx_rates => 'fx_rates');
SELECT is(status, 'succeeded', 'the run succeeds') FROM snapshot.capture_all_snapshots('2026-03-05');

SELECT results_eq(
    $$SELECT market_value, total_cost, unrealized_pnl, missing_fx, (positions->0->>'fx_rate')::numeric
        FROM snapshot.portfolio_snapshots WHERE portfolio_id = 'f0000000-0000-0000-0000-000000000001'$$,
    $$VALUES (1012::numeric, 900::numeric, 112::numeric, 0, 0.92::numeric)$$,
    'direct pair: USD->EUR 0.92, the latest on or before the date');
SELECT results_eq(
    $$SELECT market_value, total_cost, unrealized_pnl, missing_fx, (positions->0->>'fx_rate')::numeric
        FROM snapshot.portfolio_snapshots WHERE portfolio_id = 'f0000000-0000-0000-0000-000000000002'$$,
    $$VALUES (880::numeric, 780::numeric, 100::numeric, 0, 0.8::numeric)$$,
    'inverse pair: 1 / GBP->USD 1.25');
SELECT results_eq(
    $$SELECT market_value, total_cost, realized_pnl, unrealized_pnl, missing_fx, (positions->0->>'fx_rate')::numeric
        FROM snapshot.portfolio_snapshots WHERE portfolio_id = 'f0000000-0000-0000-0000-000000000003'$$,
    $$VALUES (792::numeric, 704::numeric, 13::numeric, 88::numeric, 1, 0.9::numeric)$$,
    'no pair: the exchange_rate of the latest trade of the asset, counted in missing_fx');
SELECT results_eq(
    $$SELECT market_value, missing_fx, (positions->0->>'fx_rate')::numeric, positions->0->>'currency'
        FROM snapshot.portfolio_snapshots WHERE portfolio_id = 'f0000000-0000-0000-0000-000000000004'$$,
    $$VALUES (1100::numeric, 0, 1::numeric, 'USD')$$,
    'same currency: the rate is 1');
SELECT results_eq(
    $$SELECT market_value, total_cost, missing_fx, (positions->0->>'fx_rate')::numeric, positions->0->>'currency'
        FROM snapshot.portfolio_snapshots WHERE portfolio_id = 'f0000000-0000-0000-0000-000000000005'$$,
    $$VALUES (4800::numeric, 2250::numeric, 0, 1::numeric, 'JPY')$$,
    'same currency that fx_rates never quotes: 3 x 1600 at rate 1, not the trade rate 0.5 (the cost keeps it: 3 x 1500 x 0.5)');

SELECT results_eq(
    $$SELECT market_value, missing_fx
        FROM snapshot.capture_snapshot('f0000000-0000-0000-0000-000000000001', '2026-03-03')$$,
    $$VALUES (900::numeric, 1)$$,
    'on 2026-03-03 neither pair nor a close yet: 10 x the trade price 100 x the trade rate 0.9');
SELECT results_eq(
    $$SELECT market_value, missing_fx
        FROM snapshot.capture_snapshot('f0000000-0000-0000-0000-000000000002', '2026-03-02')$$,
    $$VALUES (780::numeric, 1)$$,
    'before any close or GBP quote: 10 x the trade price 100 x the trade rate 0.78');

-- Without an FX relation every foreign position falls back.
SELECT snapshot.snapshot_configure();
SELECT is(status, 'succeeded', 'the run without fx_rates succeeds') FROM snapshot.capture_all_snapshots('2026-03-05');
SELECT results_eq(
    $$SELECT portfolio_id::text, market_value, missing_fx FROM snapshot.portfolio_snapshots
       WHERE snapshot_date = '2026-03-05' ORDER BY portfolio_id$$,
    $$VALUES ('f0000000-0000-0000-0000-000000000001', 990::numeric, 1),
             ('f0000000-0000-0000-0000-000000000002', 858::numeric, 1),
             ('f0000000-0000-0000-0000-000000000003', 792::numeric, 1),
             ('f0000000-0000-0000-0000-000000000004', 1100::numeric, 0),
             ('f0000000-0000-0000-0000-000000000005', 4800::numeric, 0)$$,
    'no fx_rates configured: trade rates for every foreign position');
SELECT lives_ok($$SELECT snapshot.snapshot_configure(fx_rates => 'fx_rates')$$, 'fx_rates can be configured again');

SELECT * FROM finish();
ROLLBACK;
