-- cash: portfolios with and without a cash account; deposits, withdrawals,
-- dividends and fees, with hand-computed figures.
\i test/preamble.sql
BEGIN;
CREATE EXTENSION pgtap;
CREATE EXTENSION snapshot;
\i examples/schema.sql
SELECT plan(8);

INSERT INTO assets (id, symbol, currency) VALUES
    ('0c000000-0000-0000-0000-000000000001', 'CSH', 'USD');
INSERT INTO portfolios (id, name, base_currency) VALUES
    ('c0000000-0000-0000-0000-000000000001', 'with cash', 'USD'),
    ('c0000000-0000-0000-0000-000000000002', 'without cash', 'USD'),
    ('c0000000-0000-0000-0000-000000000003', 'cash only', 'USD');
INSERT INTO transactions (id, portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date)
OVERRIDING SYSTEM VALUE VALUES
    -- cash: +10000; -1001; +19 (dividend 20, tax 1); -5; +439; -502
    (1, 'c0000000-0000-0000-0000-000000000001', NULL, 'DEPOSIT', 1, 10000, 0, NULL, '2026-03-01 09:00+00'),
    (2, 'c0000000-0000-0000-0000-000000000001', '0c000000-0000-0000-0000-000000000001', 'BUY', 10, 100, 1, NULL, '2026-03-02 09:00+00'),
    (3, 'c0000000-0000-0000-0000-000000000001', '0c000000-0000-0000-0000-000000000001', 'DIVIDEND', 10, 2, 1, NULL, '2026-03-03 09:00+00'),
    (4, 'c0000000-0000-0000-0000-000000000001', NULL, 'FEE', 1, 5, 0, NULL, '2026-03-04 09:00+00'),
    (5, 'c0000000-0000-0000-0000-000000000001', '0c000000-0000-0000-0000-000000000001', 'SELL', 4, 110, 1, NULL, '2026-03-05 09:00+00'),
    (6, 'c0000000-0000-0000-0000-000000000001', NULL, 'WITHDRAWAL', 1, 500, 2, NULL, '2026-03-05 10:00+00'),
    -- no cash account: every payment is a flow in, every receipt a flow out
    (11, 'c0000000-0000-0000-0000-000000000002', '0c000000-0000-0000-0000-000000000001', 'BUY', 10, 100, 1, NULL, '2026-03-02 09:00+00'),
    (12, 'c0000000-0000-0000-0000-000000000002', '0c000000-0000-0000-0000-000000000001', 'DIVIDEND', 10, 2, 1, NULL, '2026-03-05 09:00+00'),
    (13, 'c0000000-0000-0000-0000-000000000002', NULL, 'fee', 1, 5, 0, NULL, '2026-03-05 10:00+00'),
    -- a withdrawal alone opens a cash account too; DEPOSIT in a foreign currency
    (21, 'c0000000-0000-0000-0000-000000000003', NULL, 'Deposit', 100, 10, 0.5, 1.1, '2026-03-04 09:00+00'),
    (22, 'c0000000-0000-0000-0000-000000000003', NULL, 'WITHDRAWAL', 1, 200, NULL, NULL, '2026-03-05 09:00+00');
INSERT INTO asset_prices (asset_id, price_date, close) VALUES
    ('0c000000-0000-0000-0000-000000000001', '2026-03-05', 120),
    ('0c000000-0000-0000-0000-000000000001', '2026-03-04', 100);

SELECT snapshot.snapshot_configure();
SELECT is(status, 'succeeded', 'the run succeeds') FROM snapshot.capture_all_snapshots('2026-03-05');

SELECT results_eq(
    $$SELECT cash_balance, market_value, net_worth, total_cost, unrealized_pnl, realized_pnl
        FROM snapshot.portfolio_snapshots WHERE portfolio_id = 'c0000000-0000-0000-0000-000000000001'$$,
    $$VALUES (8950::numeric, 720::numeric, 9670::numeric, 600.6::numeric, 119.4::numeric, 38.6::numeric)$$,
    'cash account: balance, holdings and P&L');
SELECT results_eq(
    $$SELECT income, fees, net_contribution, day_flow
        FROM snapshot.portfolio_snapshots WHERE portfolio_id = 'c0000000-0000-0000-0000-000000000001'$$,
    $$VALUES (20::numeric, 10::numeric, 9500::numeric, -500::numeric)$$,
    'cash account: income, fees, and only deposits and withdrawals as flows');
SELECT is(net_worth, net_contribution + realized_pnl + unrealized_pnl + income - 8,
          'cash account: net worth = contributions + P&L + income - fees outside cost basis (5 + 1 + 2)')
  FROM snapshot.portfolio_snapshots WHERE portfolio_id = 'c0000000-0000-0000-0000-000000000001';

SELECT results_eq(
    $$SELECT cash_balance, market_value, total_cost, income, fees, net_contribution, day_flow
        FROM snapshot.portfolio_snapshots WHERE portfolio_id = 'c0000000-0000-0000-0000-000000000002'$$,
    $$VALUES (0::numeric, 1200::numeric, 1001::numeric, 20::numeric, 7::numeric, 987::numeric, -14::numeric)$$,
    'no cash account: BUY and FEE flow in, the net DIVIDEND flows out, types are case-insensitive');

SELECT results_eq(
    $$SELECT cash_balance, net_worth, fees, net_contribution, day_flow, position_count
        FROM snapshot.portfolio_snapshots WHERE portfolio_id = 'c0000000-0000-0000-0000-000000000003'$$,
    $$VALUES (899.45::numeric, 899.45::numeric, 0.55::numeric, 900::numeric, -200::numeric, 0)$$,
    'cash only: deposit 1000 x 1.1 less fee 0.55, withdrawal 200');

SELECT results_eq(
    $$SELECT cash_balance, net_contribution, day_flow
        FROM snapshot.capture_snapshot('c0000000-0000-0000-0000-000000000001', '2026-03-04')$$,
    $$VALUES (9013::numeric, 10000::numeric, 0::numeric)$$,
    'cash account the day before: the sell and the withdrawal are not in yet');
SELECT results_eq(
    $$SELECT market_value, net_contribution, day_flow
        FROM snapshot.capture_snapshot('c0000000-0000-0000-0000-000000000002', '2026-03-04')$$,
    $$VALUES (1000::numeric, 1001::numeric, 0::numeric)$$,
    'no cash account the day before: only the buy has flowed');

SELECT * FROM finish();
ROLLBACK;
