-- prices: the latest close on or before the date (market), older than
-- stale_after_days (stale), or none at all (the last trade's price).
\i test/preamble.sql
BEGIN;
CREATE EXTENSION pgtap;
CREATE EXTENSION snapshot;
\i examples/schema.sql
SELECT plan(15);

INSERT INTO assets (id, symbol, currency) VALUES
    ('0b000000-0000-0000-0000-000000000003', 'S3', 'USD'),
    ('0b000000-0000-0000-0000-000000000001', 'S1', 'USD'),
    ('0b000000-0000-0000-0000-000000000002', 'S2', 'USD');
INSERT INTO portfolios (id, name, base_currency) VALUES
    ('b0000000-0000-0000-0000-000000000001', 'prices', 'USD');
INSERT INTO transactions (id, portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date)
OVERRIDING SYSTEM VALUE VALUES
    (1, 'b0000000-0000-0000-0000-000000000001', '0b000000-0000-0000-0000-000000000001', 'BUY', 1, 40, 0, NULL, '2026-02-20 09:00+00'),
    (2, 'b0000000-0000-0000-0000-000000000001', '0b000000-0000-0000-0000-000000000002', 'BUY', 1, 55, 0, NULL, '2026-02-20 09:00+00'),
    (3, 'b0000000-0000-0000-0000-000000000001', '0b000000-0000-0000-0000-000000000003', 'BUY', 1, 70, 0, NULL, '2026-02-20 09:00+00'),
    (4, 'b0000000-0000-0000-0000-000000000001', '0b000000-0000-0000-0000-000000000003', 'BUY', 1, 75, 0, NULL, '2026-02-21 09:00+00');
INSERT INTO asset_prices (asset_id, price_date, close) VALUES
    ('0b000000-0000-0000-0000-000000000001', '2026-02-28', 50),   -- 5 days before 2026-03-05
    ('0b000000-0000-0000-0000-000000000001', '2026-03-06', 99),   -- after the date: ignored
    ('0b000000-0000-0000-0000-000000000002', '2026-02-27', 60),   -- 6 days before
    ('0b000000-0000-0000-0000-000000000002', '2026-03-01', 'NaN'),  -- not a price: skipped
    ('0b000000-0000-0000-0000-000000000002', '2026-03-02', -1);     -- nor this

SELECT snapshot.snapshot_configure();
SELECT is(status, 'succeeded', 'the run succeeds') FROM snapshot.capture_all_snapshots('2026-03-05');
SELECT results_eq(
    $$SELECT market_value, total_cost, unrealized_pnl, position_count, missing_prices, stale_prices
        FROM snapshot.portfolio_snapshots WHERE portfolio_id = 'b0000000-0000-0000-0000-000000000001'$$,
    $$VALUES (260::numeric, 240::numeric, 20::numeric, 3, 1, 1)$$,
    'S1 at 50, S2 at 60 (stale), S3 at its last trade price 75 (missing)');
SELECT results_eq(
    $$SELECT p->>'symbol', (p->>'price')::numeric, p->>'price_date', p->>'price_source', (p->>'market_value')::numeric
        FROM snapshot.portfolio_snapshots, jsonb_array_elements(positions) WITH ORDINALITY AS e(p, n)
       WHERE portfolio_id = 'b0000000-0000-0000-0000-000000000001' ORDER BY e.n$$,
    $$VALUES ('S1', 50::numeric, '2026-02-28', 'market', 50::numeric),
             ('S2', 60::numeric, '2026-02-27', 'stale', 60::numeric),
             ('S3', 75::numeric, '2026-02-21', 'last_trade', 150::numeric)$$,
    'positions are ordered by symbol, each with its price source and date');

SELECT snapshot.snapshot_configure(stale_after_days => 6);
SELECT results_eq(
    $$SELECT stale_prices, missing_prices, positions->1->>'price_source'
        FROM snapshot.capture_snapshot('b0000000-0000-0000-0000-000000000001', '2026-03-05')$$,
    $$VALUES (0, 1, 'market')$$,
    'stale_after_days = 6: a close 6 days old is still market');
SELECT snapshot.snapshot_configure(stale_after_days => 0);
SELECT results_eq(
    $$SELECT stale_prices, missing_prices
        FROM snapshot.capture_snapshot('b0000000-0000-0000-0000-000000000001', '2026-02-28')$$,
    $$VALUES (1, 1)$$,
    'stale_after_days = 0: the close of the day itself is market, the day before''s is stale');
SELECT results_eq(
    $$SELECT stale_prices, market_value
        FROM snapshot.capture_snapshot('b0000000-0000-0000-0000-000000000001', '2026-03-01')$$,
    $$VALUES (2, 260::numeric)$$,
    'stale_after_days = 0: a close of the day before is stale');
INSERT INTO asset_prices (asset_id, price_date, close) VALUES
    ('0b000000-0000-0000-0000-000000000003', '2026-03-05', 80);
SELECT results_eq(
    $$SELECT missing_prices, market_value
        FROM snapshot.capture_snapshot('b0000000-0000-0000-0000-000000000001', '2026-03-05')$$,
    $$VALUES (0, 270::numeric)$$,
    'once S3 is quoted, its close replaces the last trade price');
SELECT is(missing_prices, 1, 'a backfill before that quote still falls back')
  FROM snapshot.capture_snapshot('b0000000-0000-0000-0000-000000000001', '2026-03-04');

-- the prices are read in no order: an older close read after the latest
-- does not replace it; a latest close beyond what a valuation accepts is a
-- skipped row, and leaves its asset without a price (not the close before)
INSERT INTO asset_prices (asset_id, price_date, close) VALUES
    ('0b000000-0000-0000-0000-000000000003', '2026-03-03', 77),
    ('0b000000-0000-0000-0000-000000000001', '2026-03-05', 1e45);
SELECT results_eq(
    $$SELECT missing_prices, stale_prices, market_value, positions->2->>'price'
        FROM snapshot.capture_snapshot('b0000000-0000-0000-0000-000000000001', '2026-03-05')$$,
    $$VALUES (1, 1, 260::numeric, '80.00000000')$$,
    'S3 at its latest close 80, not the older 77 read after it; S1 at its last trade price 40, not 1e45 nor 50');
SELECT results_eq(
    $$SELECT status, skipped_rows FROM snapshot.capture_all_snapshots('2026-03-05')$$,
    $$VALUES ('succeeded'::text, 1)$$, 'a capture of all counts that close as one skipped row');

-- the same, with the prices read in a known order, latest first and then
-- oldest first: a view whose ORDER BY the capture's filter keeps (the table's
-- own order above is only the order of its insertions)
CREATE VIEW prices_latest_first AS SELECT * FROM asset_prices ORDER BY price_date DESC, close DESC;
CREATE VIEW prices_oldest_first AS SELECT * FROM asset_prices ORDER BY price_date, close;
SELECT snapshot.snapshot_configure(prices => 'prices_latest_first', stale_after_days => 0);
SELECT results_eq($$SELECT status, skipped_rows FROM snapshot.capture_all_snapshots('2026-03-05')$$,
    $$VALUES ('succeeded'::text, 1)$$, 'prices read latest first: S1''s 1e45 is one skipped row');
SELECT results_eq(
    $$SELECT market_value, positions->2->>'price', positions->0->>'price_source' FROM snapshot.portfolio_snapshots
       WHERE portfolio_id = 'b0000000-0000-0000-0000-000000000001' AND snapshot_date = '2026-03-05'
         AND run_id = (SELECT max(run_id) FROM snapshot.snapshot_runs)$$,
    $$VALUES (260::numeric, '80.00000000', 'last_trade')$$,
    '... S3 keeps its latest close 80 over the 77 read after it, S1 its last trade price');
SELECT snapshot.snapshot_configure(prices => 'prices_oldest_first', stale_after_days => 0);
SELECT results_eq($$SELECT status, skipped_rows FROM snapshot.capture_all_snapshots('2026-03-05')$$,
    $$VALUES ('succeeded'::text, 1)$$, 'prices read oldest first: the same skipped row');
SELECT results_eq(
    $$SELECT market_value, positions->2->>'price', positions->0->>'price_source' FROM snapshot.portfolio_snapshots
       WHERE portfolio_id = 'b0000000-0000-0000-0000-000000000001' AND snapshot_date = '2026-03-05'
         AND run_id = (SELECT max(run_id) FROM snapshot.snapshot_runs)$$,
    $$VALUES (260::numeric, '80.00000000', 'last_trade')$$,
    '... and the same closes: S3''s 80 replaces the 77 read before it');

-- a close dated -infinity (on or before any date) is an asset's latest when
-- it is its only one: shown as such, and stale, whatever stale_after_days
INSERT INTO assets (id, symbol, currency) VALUES ('0b000000-0000-0000-0000-000000000004', 'S4', 'USD');
INSERT INTO portfolios (id, name, base_currency) VALUES ('b0000000-0000-0000-0000-000000000002', 'ancient', 'USD');
INSERT INTO transactions (id, portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date)
OVERRIDING SYSTEM VALUE VALUES
    (5, 'b0000000-0000-0000-0000-000000000002', '0b000000-0000-0000-0000-000000000004', 'BUY', 2, 30, 0, NULL, '2026-02-20 09:00+00');
INSERT INTO asset_prices (asset_id, price_date, close) VALUES ('0b000000-0000-0000-0000-000000000004', '-infinity', 35);
SELECT snapshot.snapshot_configure(stale_after_days => 1000000);
SELECT results_eq(
    $$SELECT market_value, stale_prices, missing_prices, positions->0->>'price_date', positions->0->>'price_source'
        FROM snapshot.capture_snapshot('b0000000-0000-0000-0000-000000000002', '2026-03-05')$$,
    $$VALUES (70::numeric, 1, 0, '-infinity', 'stale')$$,
    'a close dated -infinity: 2 x 35, shown with its date, stale even a million days on');

SELECT * FROM finish();
ROLLBACK;
