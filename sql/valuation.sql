-- valuation: the worked example under both cost methods, positions, backfill,
-- the UTC day cut-off, empty and fully sold portfolios, idempotency.
\i test/preamble.sql
BEGIN;
CREATE EXTENSION pgtap;
CREATE EXTENSION snapshot;
\i examples/schema.sql
SELECT plan(42);

INSERT INTO assets (id, symbol, currency) VALUES
    ('0a000000-0000-0000-0000-000000000001', 'XYZ', 'USD');
INSERT INTO portfolios (id, name, base_currency) VALUES
    ('a0000000-0000-0000-0000-000000000001', 'worked example', 'USD'),
    ('a0000000-0000-0000-0000-000000000002', 'empty', 'USD'),
    ('a0000000-0000-0000-0000-000000000003', 'fully sold', 'USD'),
    ('a0000000-0000-0000-0000-000000000004', 'cut-off', 'USD');
INSERT INTO transactions (id, portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date)
OVERRIDING SYSTEM VALUE VALUES
    (1, 'a0000000-0000-0000-0000-000000000001', '0a000000-0000-0000-0000-000000000001', 'BUY', 10, 100, 1, NULL, '2026-03-02 10:00+00'),
    (2, 'a0000000-0000-0000-0000-000000000001', '0a000000-0000-0000-0000-000000000001', 'BUY', 10, 120, 1, NULL, '2026-03-03 10:00+00'),
    (3, 'a0000000-0000-0000-0000-000000000001', '0a000000-0000-0000-0000-000000000001', 'SELL', 15, 130, 2, NULL, '2026-03-05 10:00+00'),
    (4, 'a0000000-0000-0000-0000-000000000003', '0a000000-0000-0000-0000-000000000001', 'BUY', 10, 50, 0, NULL, '2026-03-02 10:00+00'),
    (5, 'a0000000-0000-0000-0000-000000000003', '0a000000-0000-0000-0000-000000000001', 'SELL', 10, 60, 0, NULL, '2026-03-04 10:00+00'),
    -- the last microsecond of 2026-03-03 in UTC, and the first of 2026-03-04
    (6, 'a0000000-0000-0000-0000-000000000004', '0a000000-0000-0000-0000-000000000001', 'BUY', 1, 100, 0, NULL, '2026-03-03 23:59:59.999999+00'),
    (7, 'a0000000-0000-0000-0000-000000000004', '0a000000-0000-0000-0000-000000000001', 'BUY', 2, 100, 0, NULL, '2026-03-04 00:00:00+00');
INSERT INTO asset_prices (asset_id, price_date, close) VALUES
    ('0a000000-0000-0000-0000-000000000001', '2026-03-02', 110),
    ('0a000000-0000-0000-0000-000000000001', '2026-03-05', 140);

SELECT snapshot.snapshot_configure();

-- The worked example, FIFO.
SELECT is(status, 'succeeded', 'a clean run succeeds') FROM snapshot.capture_all_snapshots('2026-03-05');
SELECT results_eq(
    $$SELECT market_value, total_cost, unrealized_pnl, realized_pnl, fees, cash_balance,
             net_worth, net_contribution, day_flow, income
        FROM snapshot.portfolio_snapshots
       WHERE portfolio_id = 'a0000000-0000-0000-0000-000000000001' AND snapshot_date = '2026-03-05'$$,
    $$VALUES (700::numeric, 600.5::numeric, 99.5::numeric, 346.5::numeric, 4::numeric, 0::numeric,
              700::numeric, 254::numeric, -1948::numeric, 0::numeric)$$,
    'worked example, FIFO: every figure as computed by hand');
SELECT results_eq(
    $$SELECT position_count, missing_prices, stale_prices, missing_fx, base_currency, run_id IS NOT NULL
        FROM snapshot.portfolio_snapshots
       WHERE portfolio_id = 'a0000000-0000-0000-0000-000000000001' AND snapshot_date = '2026-03-05'$$,
    $$VALUES (1, 0, 0, 0, 'USD', true)$$,
    'worked example: one position, no fallbacks, stamped with the run');
SELECT is(scale(market_value), 8, 'money is stored rounded to 8 decimal places')
  FROM snapshot.portfolio_snapshots WHERE portfolio_id = 'a0000000-0000-0000-0000-000000000001';
SELECT is(jsonb_array_length(positions), 1, 'worked example: one open position')
  FROM snapshot.portfolio_snapshots WHERE portfolio_id = 'a0000000-0000-0000-0000-000000000001';
SELECT results_eq(
    $$SELECT p->>'asset_id', p->>'symbol', (p->>'quantity')::numeric, (p->>'price')::numeric,
             p->>'price_date', p->>'price_source', p->>'currency', (p->>'fx_rate')::numeric,
             (p->>'market_value')::numeric, (p->>'cost_basis')::numeric
        FROM snapshot.portfolio_snapshots, jsonb_array_elements(positions) AS p
       WHERE portfolio_id = 'a0000000-0000-0000-0000-000000000001'$$,
    $$VALUES ('0a000000-0000-0000-0000-000000000001', 'XYZ', 5::numeric, 140::numeric,
              '2026-03-05', 'market', 'USD', 1::numeric, 700::numeric, 600.5::numeric)$$,
    'worked example: the position as stored in positions');
SELECT results_eq(
    $$SELECT metadata->>'triggered_by', metadata->>'cost_method', metadata->>'extension_version'
        FROM snapshot.portfolio_snapshots WHERE portfolio_id = 'a0000000-0000-0000-0000-000000000001'$$,
    $$VALUES ('manual', 'fifo', (SELECT extversion COLLATE "default" FROM pg_extension WHERE extname = 'snapshot'))$$,
    'metadata names the trigger, the cost method and the extension version');

-- Empty and fully sold portfolios.
SELECT results_eq(
    $$SELECT market_value, total_cost, realized_pnl, net_worth, net_contribution, position_count, positions
        FROM snapshot.portfolio_snapshots
       WHERE portfolio_id = 'a0000000-0000-0000-0000-000000000002'$$,
    $$VALUES (0::numeric, 0::numeric, 0::numeric, 0::numeric, 0::numeric, 0, '[]'::jsonb)$$,
    'a portfolio without transactions gets a zero snapshot');
SELECT results_eq(
    $$SELECT market_value, total_cost, unrealized_pnl, realized_pnl, net_contribution, day_flow, position_count, positions
        FROM snapshot.portfolio_snapshots
       WHERE portfolio_id = 'a0000000-0000-0000-0000-000000000003'$$,
    $$VALUES (0::numeric, 0::numeric, 0::numeric, 100::numeric, -100::numeric, 0::numeric, 0, '[]'::jsonb)$$,
    'a fully sold portfolio: no position, the gain realized, the proceeds flowed out');

-- Idempotency: a second run of the date replaces the rows.
SELECT is(status, 'succeeded', 'a second run of the same date succeeds')
  FROM snapshot.capture_all_snapshots('2026-03-05', 'rerun');
SELECT is(count(*), 4::bigint, 'a re-run leaves one snapshot per portfolio and date')
  FROM snapshot.portfolio_snapshots WHERE snapshot_date = '2026-03-05';
SELECT is(count(DISTINCT run_id), 1::bigint, 'every snapshot of the date now carries the second run')
  FROM snapshot.portfolio_snapshots s
  JOIN snapshot.snapshot_runs r USING (run_id)
 WHERE s.snapshot_date = '2026-03-05' AND r.triggered_by = 'rerun';
SELECT is(market_value, 700::numeric, 'the re-run computes the same figures')
  FROM snapshot.portfolio_snapshots WHERE portfolio_id = 'a0000000-0000-0000-0000-000000000001';

-- The average cost method.
SELECT snapshot.snapshot_configure(cost_method => 'average');
SELECT is(status, 'succeeded', 'the average-cost run succeeds')
  FROM snapshot.capture_all_snapshots('2026-03-05');
SELECT results_eq(
    $$SELECT market_value, total_cost, unrealized_pnl, realized_pnl, fees, net_contribution, day_flow
        FROM snapshot.portfolio_snapshots
       WHERE portfolio_id = 'a0000000-0000-0000-0000-000000000001' AND snapshot_date = '2026-03-05'$$,
    $$VALUES (700::numeric, 550.5::numeric, 149.5::numeric, 296.5::numeric, 4::numeric, 254::numeric, -1948::numeric)$$,
    'worked example, average cost');
SELECT is((positions->0->>'cost_basis')::numeric, 550.5::numeric, 'average cost basis of the position')
  FROM snapshot.portfolio_snapshots WHERE portfolio_id = 'a0000000-0000-0000-0000-000000000001';
SELECT is(metadata->>'cost_method', 'average', 'metadata records the cost method')
  FROM snapshot.portfolio_snapshots WHERE portfolio_id = 'a0000000-0000-0000-0000-000000000001';
SELECT snapshot.snapshot_configure();

-- Backfill: 2026-03-03 ignores the SELL and the close of 2026-03-05.
SELECT is(status, 'succeeded', 'a backfill run for a past date succeeds')
  FROM snapshot.capture_all_snapshots('2026-03-03', 'backfill');
SELECT results_eq(
    $$SELECT market_value, total_cost, unrealized_pnl, realized_pnl, fees, net_contribution, day_flow, stale_prices
        FROM snapshot.portfolio_snapshots
       WHERE portfolio_id = 'a0000000-0000-0000-0000-000000000001' AND snapshot_date = '2026-03-03'$$,
    $$VALUES (2200::numeric, 2202::numeric, -2::numeric, 0::numeric, 2::numeric, 2202::numeric, 1201::numeric, 0)$$,
    'backfill: 20 units at the 2026-03-02 close of 110, later trades and prices ignored');
SELECT is(positions->0->>'price_date', '2026-03-02', 'backfill: the price is the latest close on or before the date')
  FROM snapshot.portfolio_snapshots
 WHERE portfolio_id = 'a0000000-0000-0000-0000-000000000001' AND snapshot_date = '2026-03-03';
SELECT is((SELECT count(*) FROM snapshot.portfolio_snapshots WHERE snapshot_date = '2026-03-05'), 4::bigint,
          'the backfill leaves the later date alone');
SELECT is(realized_pnl, 296.5::numeric, 'the later date keeps the figures of its last (average-cost) run')
  FROM snapshot.portfolio_snapshots
 WHERE portfolio_id = 'a0000000-0000-0000-0000-000000000001' AND snapshot_date = '2026-03-05';

-- The UTC day cut-off does not depend on the session's time zone.
SET LOCAL TimeZone = 'America/New_York';
SELECT is((positions->0->>'quantity')::numeric, 1::numeric,
          'the day ends at 00:00 UTC: the last microsecond is in, midnight UTC is out')
  FROM snapshot.portfolio_snapshots
 WHERE portfolio_id = 'a0000000-0000-0000-0000-000000000004' AND snapshot_date = '2026-03-03';
SELECT is(day_flow, 100::numeric, 'a transaction at 23:59:59.999999 UTC flows on that day')
  FROM snapshot.portfolio_snapshots
 WHERE portfolio_id = 'a0000000-0000-0000-0000-000000000004' AND snapshot_date = '2026-03-03';
SELECT is((snapshot.capture_snapshot('a0000000-0000-0000-0000-000000000004', '2026-03-04')).total_cost, 300::numeric,
          'the next UTC day includes the midnight transaction');
SELECT is((snapshot.capture_snapshot('a0000000-0000-0000-0000-000000000004', '2026-03-04')).day_flow, 200::numeric,
          'the midnight transaction flows on the next UTC day');
RESET TimeZone;

-- capture_snapshot: the same valuation, for one portfolio.
SELECT is((snapshot.capture_snapshot('a0000000-0000-0000-0000-000000000001', '2026-03-05')).realized_pnl, 346.5::numeric,
          'capture_snapshot computes what capture_all_snapshots computes');
SELECT results_eq(
    $$SELECT run_id IS NULL, metadata->>'triggered_by', market_value, net_contribution
        FROM snapshot.portfolio_snapshots
       WHERE portfolio_id = 'a0000000-0000-0000-0000-000000000001' AND snapshot_date = '2026-03-05'$$,
    $$VALUES (true, 'capture_snapshot', 700::numeric, 254::numeric)$$,
    'capture_snapshot replaces the row, without a run');
SELECT is(count(*), 4::bigint, 'capture_snapshot never duplicates a snapshot')
  FROM snapshot.portfolio_snapshots WHERE snapshot_date = '2026-03-05';
SELECT is((snapshot.capture_snapshot('a0000000-0000-0000-0000-000000000002', '2026-03-05')).positions, '[]'::jsonb,
          'capture_snapshot of an empty portfolio');

-- Partitions: one per month, created on demand.
SELECT is((snapshot.capture_snapshot('a0000000-0000-0000-0000-000000000001', '2026-02-28')).market_value, 0::numeric,
          'a snapshot before the first trade is empty');
SELECT is(ARRAY(SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                 WHERE i.inhparent = 'snapshot.portfolio_snapshots'::regclass ORDER BY 1),
          ARRAY['portfolio_snapshots_y2026m02', 'portfolio_snapshots_y2026m03'],
          'one partition per month, created on demand');
SELECT is(count(*), 1::bigint, 'the February snapshot lands in the February partition')
  FROM snapshot.portfolio_snapshots_y2026m02;
SELECT is((SELECT partstrat FROM pg_partitioned_table WHERE partrelid = 'snapshot.portfolio_snapshots'::regclass),
          'r', 'portfolio_snapshots is range-partitioned');
SELECT col_is_pk('snapshot', 'portfolio_snapshots_y2026m03', ARRAY['portfolio_id', 'snapshot_date'],
                 'each partition''s primary key is (portfolio_id, snapshot_date)');
SELECT throws_ok($$INSERT INTO snapshot.portfolio_snapshots SELECT * FROM snapshot.portfolio_snapshots LIMIT 1$$,
                 '23505', NULL, 'a second snapshot of a portfolio and date is impossible');

-- The run row.
SELECT results_eq(
    $$SELECT snapshot_date, triggered_by, status, portfolios, captured, failed, finished_at >= started_at
        FROM snapshot.snapshot_runs ORDER BY run_id$$,
    $$VALUES ('2026-03-05'::date, 'manual', 'succeeded', 4, 4, 0, true),
             ('2026-03-05'::date, 'rerun', 'succeeded', 4, 4, 0, true),
             ('2026-03-05'::date, 'manual', 'succeeded', 4, 4, 0, true),
             ('2026-03-03'::date, 'backfill', 'succeeded', 4, 4, 0, true)$$,
    'every run is recorded with its counts');
SELECT is(count(*), 0::bigint, 'clean runs record no errors') FROM snapshot.snapshot_run_errors;

-- Ledger order: transaction_date, then id.
INSERT INTO transactions (id, portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date)
OVERRIDING SYSTEM VALUE VALUES
    (21, 'a0000000-0000-0000-0000-000000000002', '0a000000-0000-0000-0000-000000000001', 'SELL', 5, 100, 0, NULL, '2026-03-02 10:00+00'),
    (20, 'a0000000-0000-0000-0000-000000000002', '0a000000-0000-0000-0000-000000000001', 'BUY', 5, 80, 0, NULL, '2026-03-02 10:00+00');
SELECT is((snapshot.capture_snapshot('a0000000-0000-0000-0000-000000000002', '2026-03-05')).realized_pnl, 100::numeric,
          'transactions at the same instant are applied in id order');
-- FIFO takes the oldest lot first
INSERT INTO transactions (id, portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date)
OVERRIDING SYSTEM VALUE VALUES
    (30, 'a0000000-0000-0000-0000-000000000003', '0a000000-0000-0000-0000-000000000001', 'BUY', 4, 10, 0, NULL, '2026-03-05 01:00+00'),
    (31, 'a0000000-0000-0000-0000-000000000003', '0a000000-0000-0000-0000-000000000001', 'BUY', 4, 20, 0, NULL, '2026-03-05 02:00+00'),
    (32, 'a0000000-0000-0000-0000-000000000003', '0a000000-0000-0000-0000-000000000001', 'SELL', 6, 25, 0, NULL, '2026-03-05 03:00+00');
SELECT results_eq(
    $$SELECT total_cost, realized_pnl, day_flow
        FROM snapshot.capture_snapshot('a0000000-0000-0000-0000-000000000003', '2026-03-05')$$,
    $$VALUES (40::numeric, 170::numeric, -30::numeric)$$,
    'FIFO: the 6 sold take the lot at 10 and half the lot at 20');
SELECT snapshot.snapshot_configure(cost_method => 'average');
SELECT results_eq(
    $$SELECT total_cost, realized_pnl
        FROM snapshot.capture_snapshot('a0000000-0000-0000-0000-000000000003', '2026-03-05')$$,
    $$VALUES (30::numeric, 160::numeric)$$,
    'average: the 6 sold cost 15 each');
SELECT is((snapshot.capture_snapshot('a0000000-0000-0000-0000-000000000003', '2026-03-05')).market_value, 280::numeric,
          'the remaining 2 units at the close of 140');

SELECT * FROM finish();
ROLLBACK;
