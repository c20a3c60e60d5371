-- ledgers: what real applications write.  SPLIT, TRANSFER_IN/TRANSFER_OUT
-- (with and without an asset, with and without a cash account), INTEREST
-- and TAX, fee-only rows, floating-point dust and quantity_tolerance, and
-- the order of rows at the same instant; every figure worked by hand.
\i test/preamble.sql
BEGIN;
CREATE EXTENSION pgtap;
CREATE EXTENSION snapshot;
\i examples/schema.sql
SELECT plan(39);

INSERT INTO assets (id, symbol, currency) VALUES
    ('0e000000-0000-0000-0000-000000000001', 'SPL', 'USD'),   -- split 10:1
    ('0e000000-0000-0000-0000-000000000002', 'SPB', 'USD'),   -- split, no prices
    ('0e000000-0000-0000-0000-000000000003', 'RSP', 'USD'),   -- reverse split
    ('0e000000-0000-0000-0000-000000000004', 'TRF', 'USD'),   -- transfers
    ('0e000000-0000-0000-0000-000000000005', 'DST', 'USD'),   -- dust
    ('0e000000-0000-0000-0000-000000000006', 'SIN', 'USD'),   -- same instant
    ('0e000000-0000-0000-0000-000000000007', 'SSP', 'USD');   -- split and buy at one instant
INSERT INTO asset_prices (asset_id, price_date, close) VALUES
    ('0e000000-0000-0000-0000-000000000001', '2026-04-01', 100),
    ('0e000000-0000-0000-0000-000000000001', '2026-04-02', 10.5),
    ('0e000000-0000-0000-0000-000000000001', '2026-04-04', 13),
    ('0e000000-0000-0000-0000-000000000003', '2026-04-02', 52),
    ('0e000000-0000-0000-0000-000000000004', '2026-04-01', 100),
    ('0e000000-0000-0000-0000-000000000004', '2026-04-03', 110),
    ('0e000000-0000-0000-0000-000000000005', '2026-04-01', 3),
    ('0e000000-0000-0000-0000-000000000006', '2026-04-01', 10),
    ('0e000000-0000-0000-0000-000000000007', '2026-04-02', 2.1);
INSERT INTO portfolios (id, name, base_currency)
SELECT ('e0000000-0000-0000-0000-0000000000' || lpad(n::text, 2, '0'))::uuid, 'ledger ' || n, 'USD'
  FROM generate_series(1, 14) AS n;

INSERT INTO transactions (id, portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date)
OVERRIDING SYSTEM VALUE VALUES
    -- 1: a 10:1 split between two buys, then a sell of 120
    (101, 'e0000000-0000-0000-0000-000000000001', '0e000000-0000-0000-0000-000000000001', 'BUY', 10, 100, 0, NULL, '2026-04-01 09:00+00'),
    (102, 'e0000000-0000-0000-0000-000000000001', '0e000000-0000-0000-0000-000000000001', 'SPLIT', 10, NULL, NULL, NULL, '2026-04-02 00:00+00'),
    (103, 'e0000000-0000-0000-0000-000000000001', '0e000000-0000-0000-0000-000000000001', 'BUY', 50, 12, 0, NULL, '2026-04-03 09:00+00'),
    (104, 'e0000000-0000-0000-0000-000000000001', '0e000000-0000-0000-0000-000000000001', 'sell', 120, 13, 0, NULL, '2026-04-04 09:00+00'),
    -- 2: a split of an asset without prices: the last-trade price is divided too
    (201, 'e0000000-0000-0000-0000-000000000002', '0e000000-0000-0000-0000-000000000002', 'BUY', 10, 100, 0, NULL, '2026-04-01 09:00+00'),
    (202, 'e0000000-0000-0000-0000-000000000002', '0e000000-0000-0000-0000-000000000002', 'Split', 10, 77, NULL, NULL, '2026-04-02 00:00+00'),
    -- 3: a reverse split 1:10
    (301, 'e0000000-0000-0000-0000-000000000003', '0e000000-0000-0000-0000-000000000003', 'BUY', 100, 5, 0, NULL, '2026-04-01 09:00+00'),
    (302, 'e0000000-0000-0000-0000-000000000003', '0e000000-0000-0000-0000-000000000003', 'SPLIT', 0.1, NULL, NULL, NULL, '2026-04-02 00:00+00'),
    -- 4: transfers of securities, no cash account
    (401, 'e0000000-0000-0000-0000-000000000004', '0e000000-0000-0000-0000-000000000004', 'TRANSFER_IN', 20, 100, 2, NULL, '2026-04-01 09:00+00'),
    (402, 'e0000000-0000-0000-0000-000000000004', '0e000000-0000-0000-0000-000000000004', 'TRANSFER_OUT', 5, 110, NULL, NULL, '2026-04-03 09:00+00'),
    -- 5: transfers with a cash account, of securities and of cash
    (501, 'e0000000-0000-0000-0000-000000000005', NULL, 'DEPOSIT', 1, 1000, 0, NULL, '2026-04-01 09:00+00'),
    (502, 'e0000000-0000-0000-0000-000000000005', '0e000000-0000-0000-0000-000000000004', 'TRANSFER_IN', 10, 100, NULL, NULL, '2026-04-01 10:00+00'),
    (503, 'e0000000-0000-0000-0000-000000000005', '0e000000-0000-0000-0000-000000000004', 'TRANSFER_OUT', 4, 105, 1, NULL, '2026-04-02 09:00+00'),
    (504, 'e0000000-0000-0000-0000-000000000005', NULL, 'TRANSFER_OUT', 1, 300, NULL, NULL, '2026-04-02 10:00+00'),
    (505, 'e0000000-0000-0000-0000-000000000005', NULL, 'TRANSFER_IN', 1, 50, NULL, NULL, '2026-04-03 09:00+00'),
    -- 6: interest and tax with a cash account, one interest in EUR
    (601, 'e0000000-0000-0000-0000-000000000006', NULL, 'DEPOSIT', 1, 1000, 0, NULL, '2026-04-01 09:00+00'),
    (602, 'e0000000-0000-0000-0000-000000000006', NULL, 'INTEREST', 1, 12, 0.5, NULL, '2026-04-02 09:00+00'),
    (603, 'e0000000-0000-0000-0000-000000000006', NULL, 'TAX', 1, 30, 1, NULL, '2026-04-03 09:00+00'),
    (604, 'e0000000-0000-0000-0000-000000000006', NULL, 'INTEREST', 1, 10, NULL, 1.1, '2026-04-03 10:00+00'),
    -- 7: tax and interest without a cash account
    (701, 'e0000000-0000-0000-0000-000000000007', NULL, 'TAX', 1, 20, NULL, NULL, '2026-04-02 09:00+00'),
    (702, 'e0000000-0000-0000-0000-000000000007', NULL, 'INTEREST', 1, 5, NULL, NULL, '2026-04-03 09:00+00'),
    -- 8: fee-only rows: FEE of quantity 0 and price NULL, TAX of quantity 0
    (801, 'e0000000-0000-0000-0000-000000000008', NULL, 'DEPOSIT', 1, 100, 0, NULL, '2026-04-01 09:00+00'),
    (802, 'e0000000-0000-0000-0000-000000000008', NULL, 'FEE', 0, NULL, 2.5, NULL, '2026-04-02 09:00+00'),
    (803, 'e0000000-0000-0000-0000-000000000008', NULL, 'TAX', 0, 0, 1, NULL, '2026-04-02 10:00+00'),
    -- 9: floating-point dust: 1/3 + 2/3 - 1
    (901, 'e0000000-0000-0000-0000-000000000009', '0e000000-0000-0000-0000-000000000005', 'BUY', 0.3333333333333333, 3, 0, NULL, '2026-04-01 09:00+00'),
    (902, 'e0000000-0000-0000-0000-000000000009', '0e000000-0000-0000-0000-000000000005', 'BUY', 0.6666666666666666, 3, 0, NULL, '2026-04-01 10:00+00'),
    (903, 'e0000000-0000-0000-0000-000000000009', '0e000000-0000-0000-0000-000000000005', 'SELL', 1, 4, 0, NULL, '2026-04-02 09:00+00'),
    -- 10: a sale leaving 5e-10 behind
    (1001, 'e0000000-0000-0000-0000-000000000010', '0e000000-0000-0000-0000-000000000005', 'BUY', 2, 5, 0, NULL, '2026-04-01 09:00+00'),
    (1002, 'e0000000-0000-0000-0000-000000000010', '0e000000-0000-0000-0000-000000000005', 'SELL', 1.9999999995, 8, 0, NULL, '2026-04-02 09:00+00'),
    -- 11 and 12: a BUY and a SELL at one instant, the SELL's id first, then the BUY's
    (1101, 'e0000000-0000-0000-0000-000000000011', '0e000000-0000-0000-0000-000000000006', 'SELL', 5, 11, 0, NULL, '2026-04-01 00:00+00'),
    (1102, 'e0000000-0000-0000-0000-000000000011', '0e000000-0000-0000-0000-000000000006', 'BUY', 5, 10, 0, NULL, '2026-04-01 00:00+00'),
    (1201, 'e0000000-0000-0000-0000-000000000012', '0e000000-0000-0000-0000-000000000006', 'BUY', 5, 10, 0, NULL, '2026-04-01 00:00+00'),
    (1202, 'e0000000-0000-0000-0000-000000000012', '0e000000-0000-0000-0000-000000000006', 'SELL', 5, 11, 0, NULL, '2026-04-01 00:00+00'),
    -- 13: a SPLIT at the same instant as a BUY, the BUY's id first
    (1301, 'e0000000-0000-0000-0000-000000000013', '0e000000-0000-0000-0000-000000000007', 'BUY', 10, 20, 0, NULL, '2026-04-01 09:00+00'),
    (1302, 'e0000000-0000-0000-0000-000000000013', '0e000000-0000-0000-0000-000000000007', 'BUY', 5, 2, 0, NULL, '2026-04-02 00:00+00'),
    (1303, 'e0000000-0000-0000-0000-000000000013', '0e000000-0000-0000-0000-000000000007', 'SPLIT', 10, NULL, NULL, NULL, '2026-04-02 00:00+00');

SELECT snapshot.snapshot_configure();
SELECT status FROM snapshot.capture_all_snapshots('2026-04-01', 'ledgers');
SELECT status FROM snapshot.capture_all_snapshots('2026-04-02', 'ledgers');
SELECT status FROM snapshot.capture_all_snapshots('2026-04-03', 'ledgers');
SELECT status FROM snapshot.capture_all_snapshots('2026-04-04', 'ledgers');
CREATE TEMP VIEW s AS
SELECT right(portfolio_id::text, 2)::int AS p, snapshot_date AS d, * FROM snapshot.portfolio_snapshots;

-- 1: 10 @ 100 = 1000; the split makes 100 shares costing 1000; 50 @ 12 = 600;
-- selling 120 @ 13 = 1560 takes the 100 split shares (1000) and 20 of the 50
-- (240) under FIFO: realized 320, 30 left costing 360, worth 30 x 13 = 390
SELECT results_eq($$SELECT d, market_value, total_cost, (positions->0->>'quantity')::numeric FROM s WHERE p = 1 AND d <= '2026-04-02' ORDER BY d$$,
    $$VALUES ('2026-04-01'::date, 1000::numeric, 1000::numeric, 10::numeric), ('2026-04-02', 1050, 1000, 100)$$,
    'split: 10 shares worth 100 before, 100 shares worth 10.50 after, the cost unchanged');
SELECT results_eq($$SELECT market_value, total_cost, unrealized_pnl, realized_pnl, (positions->0->>'quantity')::numeric FROM s WHERE p = 1 AND d = '2026-04-04'$$,
    $$VALUES (390::numeric, 360::numeric, 30::numeric, 320::numeric, 30::numeric)$$,
    'split, FIFO: the sale takes the split lot, then part of the next');
SELECT results_eq($$SELECT position_count, missing_prices, positions->0->>'price', positions->0->>'price_source', market_value FROM s WHERE p = 2 AND d = '2026-04-02'$$,
    $$VALUES (1, 1, '10.00000000', 'last_trade', 1000::numeric)$$,
    'split without a price: the last-trade price 100 is divided by the ratio, the split''s own price ignored');
SELECT results_eq($$SELECT (positions->0->>'quantity')::numeric, market_value, total_cost, unrealized_pnl FROM s WHERE p = 3 AND d = '2026-04-02'$$,
    $$VALUES (10::numeric, 520::numeric, 500::numeric, 20::numeric)$$,
    'reverse split 1:10: 100 shares costing 500 become 10, worth 52 each');

-- 4: in 20 @ 100 with fee 2 (a lot costing 2002, a flow in of 2000), out 5 @ 110
-- (FIFO cost 500.5 removed, no realized P&L, a flow out of 550): 15 x 110 = 1650
SELECT results_eq($$SELECT market_value, total_cost, unrealized_pnl, realized_pnl, cash_balance, net_contribution, day_flow, fees FROM s WHERE p = 4 AND d = '2026-04-03'$$,
    $$VALUES (1650::numeric, 1501.5::numeric, 148.5::numeric, 0::numeric, 0::numeric, 1450::numeric, -550::numeric, 2::numeric)$$,
    'transfers without a cash account: a lot at the transfer value plus fee, flows of the value in and out, no cash');
SELECT results_eq($$SELECT net_contribution, day_flow FROM s WHERE p = 4 AND d = '2026-04-01'$$,
    $$VALUES (2000::numeric, 2000::numeric)$$,
    'transfers without a cash account: the transfer in is the day''s flow');
-- 5: deposit 1000; in 10 @ 100 (flow 1000); out 4 @ 105 fee 1 (cost 400, flow
-- -420, fee paid from cash); cash out 300; then cash in 50
SELECT results_eq($$SELECT d, market_value, total_cost, cash_balance, net_worth, net_contribution, day_flow, fees, realized_pnl FROM s WHERE p = 5 AND d IN ('2026-04-02', '2026-04-03') ORDER BY d$$,
    $$VALUES ('2026-04-02'::date, 600::numeric, 600::numeric, 699::numeric, 1299::numeric, 1280::numeric, -720::numeric, 1::numeric, 0::numeric),
             ('2026-04-03', 660, 600, 749, 1409, 1330, 50, 1, 0)$$,
    'transfers with a cash account: securities are flows without cash, a cash transfer is a deposit or withdrawal');

-- 6: 1000 + (12 - 0.5) - (30 + 1) + 10 x 1.1 = 991.5
SELECT results_eq($$SELECT cash_balance, income, taxes, fees, net_contribution, day_flow, net_worth FROM s WHERE p = 6 AND d = '2026-04-03'$$,
    $$VALUES (991.5::numeric, 23::numeric, 30::numeric, 1.5::numeric, 1000::numeric, 0::numeric, 991.5::numeric)$$,
    'interest and tax with a cash account: interest is income into cash, tax a new figure out of cash');
SELECT results_eq($$SELECT cash_balance, income, taxes, net_contribution, day_flow FROM s WHERE p = 7 AND d = '2026-04-03'$$,
    $$VALUES (0::numeric, 5::numeric, 20::numeric, 15::numeric, -5::numeric)$$,
    'interest and tax without a cash account: the tax flows in, the interest flows out');
SELECT is((SELECT taxes FROM s WHERE p = 6 AND d = '2026-04-02'), 0::numeric, 'taxes are 0 before the first TAX row');

-- 8: 100 - 2.5 - 1
SELECT results_eq($$SELECT cash_balance, fees, taxes, net_contribution FROM s WHERE p = 8 AND d = '2026-04-02'$$,
    $$VALUES (96.5::numeric, 3.5::numeric, 0::numeric, 100::numeric)$$,
    'fee-only rows: FEE and TAX of quantity 0 pay their fee');

-- 9 and 10 without a tolerance: 1 is 1e-16 more than 1/3 + 2/3 as written
SELECT results_eq($$SELECT e.sqlstate, e.message FROM snapshot.snapshot_run_errors e JOIN snapshot.snapshot_runs r USING (run_id)
                     WHERE r.snapshot_date = '2026-04-02' AND e.portfolio_id = 'e0000000-0000-0000-0000-000000000009'$$,
    $$VALUES ('22000', 'portfolio e0000000-0000-0000-0000-000000000009, transaction 903: sells 1 of asset 0e000000-0000-0000-0000-000000000005 but only 0.9999999999999999 is held')$$,
    'dust, exact (the default): selling 1 after buying 1/3 and 2/3 from floating point fails');
SELECT is((SELECT position_count FROM s WHERE p = 10 AND d = '2026-04-02'), 1,
          'dust, exact: a sale leaving 5e-10 keeps the position open');

-- 11, 12, 13: the same instant
SELECT results_eq($$SELECT p, position_count, total_cost, realized_pnl FROM s WHERE p IN (11, 12) AND d = '2026-04-01' ORDER BY p$$,
    $$VALUES (11, 0, 0::numeric, 5::numeric), (12, 0, 0::numeric, 5::numeric)$$,
    'a BUY and a SELL at one instant: the BUY first, whatever their ids');
SELECT results_eq($$SELECT (positions->0->>'quantity')::numeric, total_cost, market_value FROM s WHERE p = 13 AND d = '2026-04-02'$$,
    $$VALUES (105::numeric, 210::numeric, 220.5::numeric)$$,
    'a SPLIT at the instant of a BUY: the split first (10 x 10 + 5), not after (150)');

-- 10,000 SELLs then 10,000 BUYs of one share by id, all at one instant: the
-- BUYs first (a linear reordering; an insertion sort would be quadratic)
INSERT INTO portfolios (id, name, base_currency) VALUES ('e0000000-0000-0000-0000-000000000015', 'one instant', 'USD');
INSERT INTO transactions (id, portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date)
OVERRIDING SYSTEM VALUE
SELECT 100000 + n, 'e0000000-0000-0000-0000-000000000015', '0e000000-0000-0000-0000-000000000006',
       CASE WHEN n <= 10000 THEN 'SELL' ELSE 'BUY' END, 1, CASE WHEN n <= 10000 THEN 11 ELSE 10 END, 0, NULL,
       '2026-04-01 00:00+00'
  FROM generate_series(1, 20000) AS n;
SELECT results_eq($$SELECT position_count, total_cost, realized_pnl FROM snapshot.capture_snapshot('e0000000-0000-0000-0000-000000000015', '2026-04-01')$$,
    $$VALUES (0, 0::numeric, 10000::numeric)$$,
    '20,000 rows at one instant, every SELL''s id first: all BUYs first, realized 10,000');

-- the same rules on the application's path, capture_snapshot
SELECT results_eq($$SELECT market_value, total_cost, realized_pnl FROM snapshot.capture_snapshot('e0000000-0000-0000-0000-000000000001', '2026-04-04')$$,
    $$VALUES (390::numeric, 360::numeric, 320::numeric)$$,
    'capture_snapshot applies the split as the capture of all does');
SELECT throws_ok($$SELECT snapshot.capture_snapshot('e0000000-0000-0000-0000-000000000009', '2026-04-02')$$,
    '22000', 'portfolio e0000000-0000-0000-0000-000000000009, transaction 903: sells 1 of asset 0e000000-0000-0000-0000-000000000005 but only 0.9999999999999999 is held',
    'capture_snapshot raises the dust error');

-- average cost: the 100 split shares (1000) and the 50 (600) average 1600/150;
-- 120 of them cost 1280, so realized 280 and 30 left costing 320
SELECT snapshot.snapshot_configure(cost_method => 'average');
SELECT results_eq($$SELECT market_value, total_cost, unrealized_pnl, realized_pnl FROM snapshot.capture_snapshot('e0000000-0000-0000-0000-000000000001', '2026-04-04')$$,
    $$VALUES (390::numeric, 320::numeric, 70::numeric, 280::numeric)$$,
    'split, average cost: the split shares and the later ones share one average');

-- a tolerance of 1e-9
SELECT throws_ok($$SELECT snapshot.snapshot_configure(quantity_tolerance => -1)$$,
    '22023', 'invalid quantity_tolerance: -1', 'a negative tolerance is refused');
SELECT throws_ok($$SELECT snapshot.snapshot_configure(quantity_tolerance => NULL)$$,
    '22023', 'invalid quantity_tolerance: NULL', 'a NULL tolerance is refused');
SELECT throws_ok($$SELECT snapshot.snapshot_configure(quantity_tolerance => 'NaN')$$,
    '22023', 'invalid quantity_tolerance: NaN', 'a NaN tolerance is refused');
SELECT is((SELECT quantity_tolerance FROM snapshot.snapshot_config), 0::numeric, 'a refused tolerance changes nothing');
SELECT snapshot.snapshot_configure(quantity_tolerance => 1e-9);
SELECT is((SELECT quantity_tolerance FROM snapshot.snapshot_config), 0.000000001, 'the tolerance is stored');
-- 9: the sale of 1 removes the whole holding of 0.9999999999999999, costing
-- 0.9999999999999999 + 1.9999999999999998; realized 4 - 2.9999999999999997
SELECT results_eq($$SELECT position_count, total_cost, market_value, realized_pnl, (metadata->>'quantity_tolerance')::numeric
                      FROM snapshot.capture_snapshot('e0000000-0000-0000-0000-000000000009', '2026-04-02')$$,
    $$VALUES (0, 0::numeric, 0::numeric, 1.00000000::numeric, 0.000000001::numeric)$$,
    'dust, tolerance 1e-9: the sale of 1 closes the position, and the metadata says by what tolerance');
-- 10: 5e-10 left is within the tolerance: closed, its cost removed with it
SELECT results_eq($$SELECT position_count, total_cost, positions FROM snapshot.capture_snapshot('e0000000-0000-0000-0000-000000000010', '2026-04-02')$$,
    $$VALUES (0, 0::numeric, '[]'::jsonb)$$,
    'dust, tolerance 1e-9: a holding left within the tolerance of zero is closed');
SELECT results_eq($$SELECT realized_pnl FROM snapshot.capture_snapshot('e0000000-0000-0000-0000-000000000001', '2026-04-04')$$,
    $$VALUES (320::numeric)$$, 'a tolerance changes nothing of exact ledgers');

-- bad input names the portfolio and the transaction
INSERT INTO transactions (id, portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date)
OVERRIDING SYSTEM VALUE VALUES
    (1401, 'e0000000-0000-0000-0000-000000000014', NULL, 'SPLIT', 10, NULL, NULL, NULL, '2026-04-01 09:00+00');
SELECT throws_ok($$SELECT snapshot.capture_snapshot('e0000000-0000-0000-0000-000000000014', '2026-04-02')$$,
    '22023', 'portfolio e0000000-0000-0000-0000-000000000014, transaction 1401: a SPLIT needs an asset_id',
    'a SPLIT without an asset');
UPDATE transactions SET asset_id = '0e000000-0000-0000-0000-000000000001', quantity = 0 WHERE id = 1401;
SELECT throws_ok($$SELECT snapshot.capture_snapshot('e0000000-0000-0000-0000-000000000014', '2026-04-02')$$,
    '22023', 'portfolio e0000000-0000-0000-0000-000000000014, transaction 1401: split ratio 0 is not positive',
    'a SPLIT of ratio 0');
UPDATE transactions SET type = 'BUY', quantity = 0, price = 1 WHERE id = 1401;
SELECT throws_ok($$SELECT snapshot.capture_snapshot('e0000000-0000-0000-0000-000000000014', '2026-04-02')$$,
    '22023', 'portfolio e0000000-0000-0000-0000-000000000014, transaction 1401: quantity 0 is not positive',
    'only FEE and TAX may have quantity 0');
UPDATE transactions SET type = 'FEE', quantity = -1, price = 1 WHERE id = 1401;
SELECT throws_ok($$SELECT snapshot.capture_snapshot('e0000000-0000-0000-0000-000000000014', '2026-04-02')$$,
    '22023', 'portfolio e0000000-0000-0000-0000-000000000014, transaction 1401: quantity -1 is negative',
    'a FEE of negative quantity');

-- what an untrusted ledger owner could write to hurt a capture (attack review)
INSERT INTO portfolios (id, name, base_currency) VALUES
    ('e0000000-0000-0000-0000-000000000016', 'huge split', 'USD'),
    ('e0000000-0000-0000-0000-000000000017', 'split work', 'USD'),
    ('e0000000-0000-0000-0000-000000000018', 'long currency', repeat('X', 100000)),
    ('e0000000-0000-0000-0000-000000000019', 'reused id', 'USD'),
    ('e0000000-0000-0000-0000-000000000020', 'undated', 'USD');
INSERT INTO transactions (id, portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date)
OVERRIDING SYSTEM VALUE VALUES
    (1601, 'e0000000-0000-0000-0000-000000000016', '0e000000-0000-0000-0000-000000000001', 'BUY', 1, 1, 0, NULL, '2026-04-01 09:00+00'),
    (1602, 'e0000000-0000-0000-0000-000000000016', '0e000000-0000-0000-0000-000000000001', 'SPLIT', 1e30, NULL, NULL, NULL, '2026-04-01 10:00+00'),
    (1603, 'e0000000-0000-0000-0000-000000000016', '0e000000-0000-0000-0000-000000000001', 'SPLIT', 1e30, NULL, NULL, NULL, '2026-04-01 11:00+00');
SELECT throws_ok($$SELECT snapshot.capture_snapshot('e0000000-0000-0000-0000-000000000016', '2026-04-02')$$,
    '22003', 'portfolio e0000000-0000-0000-0000-000000000016, transaction 1603: the split makes the quantity of asset 0e000000-0000-0000-0000-000000000001 too long',
    'a split past 40 digits is refused, not carried into ever longer numbers');
-- 10,000 open lots and 110 doublings: 1,100,000 lot adjustments, within the digits
INSERT INTO transactions (id, portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date)
OVERRIDING SYSTEM VALUE
SELECT 200000 + n, 'e0000000-0000-0000-0000-000000000017', '0e000000-0000-0000-0000-000000000001',
       CASE WHEN n <= 10000 THEN 'BUY' ELSE 'SPLIT' END, CASE WHEN n <= 10000 THEN 1 ELSE 2 END,
       CASE WHEN n <= 10000 THEN 1 END, NULL, NULL, '2026-04-01 00:00+00'::timestamptz + n * interval '1 second'
  FROM generate_series(1, 10110) AS n;
SELECT throws_ok($$SELECT snapshot.capture_snapshot('e0000000-0000-0000-0000-000000000017', '2026-04-02')$$,
    '54000', 'portfolio e0000000-0000-0000-0000-000000000017, transaction 210101: its splits adjust more than 1000000 open lots in all',
    'splits over many open lots stop at a bound instead of growing as lots times splits');
SELECT throws_ok($$SELECT snapshot.capture_snapshot('e0000000-0000-0000-0000-000000000018', '2026-04-02')$$,
    '22023', 'portfolio e0000000-0000-0000-0000-000000000018 has a base currency of 64 bytes',
    'a base currency of 100,000 bytes is refused having read 64 of them');
ALTER TABLE transactions DROP CONSTRAINT transactions_pkey;
ALTER TABLE transactions ALTER COLUMN transaction_date DROP NOT NULL;
INSERT INTO transactions (id, portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date)
OVERRIDING SYSTEM VALUE VALUES
    (30, 'e0000000-0000-0000-0000-000000000019', '0e000000-0000-0000-0000-000000000006', 'BUY', 5, 10, 0, NULL, '2026-04-01 00:00+00'),
    (30, 'e0000000-0000-0000-0000-000000000019', '0e000000-0000-0000-0000-000000000006', 'SELL', 5, 11, 0, NULL, '2026-04-01 00:00+00'),
    (31, 'e0000000-0000-0000-0000-000000000019', '0e000000-0000-0000-0000-000000000006', 'BUY', 5, 10, 0, NULL, '2026-04-01 00:00+00'),
    (41, 'e0000000-0000-0000-0000-000000000020', '0e000000-0000-0000-0000-000000000006', 'BUY', 5, 10, 0, NULL, '2026-04-01 00:00+00'),
    (42, 'e0000000-0000-0000-0000-000000000020', '0e000000-0000-0000-0000-000000000006', 'BUY', 1000, 10, 0, NULL, NULL);
SELECT throws_ok($$SELECT snapshot.capture_snapshot('e0000000-0000-0000-0000-000000000019', '2026-04-02')$$,
    '22000', 'portfolio e0000000-0000-0000-0000-000000000019, transaction 30: appears more than once in the ledger',
    'a transaction id used twice at one instant is found before the rows of the instant are reordered');
SELECT throws_ok($$SELECT snapshot.capture_snapshot('e0000000-0000-0000-0000-000000000020', '2026-04-02')$$,
    '22004', 'portfolio e0000000-0000-0000-0000-000000000020, transaction 42: transaction_date is null',
    'a ledger row without a date fails its portfolio, it is not silently left out');
-- average cost with a tolerance: dust sold of a position at zero removes nothing
INSERT INTO transactions (id, portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date)
OVERRIDING SYSTEM VALUE VALUES
    (1701, 'e0000000-0000-0000-0000-000000000013', '0e000000-0000-0000-0000-000000000007', 'SELL', 0.0000000001, 10, 0, NULL, '2026-04-01 08:00+00');
SELECT snapshot.snapshot_configure(cost_method => 'average', quantity_tolerance => 1e-9);
SELECT results_eq($$SELECT (positions->0->>'quantity')::numeric, total_cost FROM snapshot.capture_snapshot('e0000000-0000-0000-0000-000000000013', '2026-04-02')$$,
    $$VALUES (105::numeric, 210::numeric)$$,
    'average cost and a tolerance: dust sold of an asset not held divides nothing by zero');

-- a ledger read over several fetches: its rows stay where the fetches put
-- them until the portfolio is valued.  With snapshot.batch_size 1 a fetch
-- holds 100 ledger rows; portfolio ...f1 has 251 (a deposit of 31 digits
-- and 8 places, beyond what is held in fixed point, then deposits of 1 to
-- 250), ...f2 after it has 3
INSERT INTO portfolios (id, name, base_currency) VALUES
    ('e0000000-0000-0000-0000-0000000000f1', 'long ledger', 'USD'),
    ('e0000000-0000-0000-0000-0000000000f2', 'after it', 'USD');
INSERT INTO transactions (portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date)
SELECT 'e0000000-0000-0000-0000-0000000000f1'::uuid, NULL::uuid, 'DEPOSIT', 1, 1000000000000000000000000000000.12345678, 0,
       NULL::numeric, '2026-04-01 00:00+00'::timestamptz
UNION ALL
SELECT 'e0000000-0000-0000-0000-0000000000f1', NULL, 'DEPOSIT', 1, n, 0, NULL, '2026-04-01 01:00+00'::timestamptz + n * interval '1 second'
  FROM generate_series(1, 250) AS n
UNION ALL
SELECT 'e0000000-0000-0000-0000-0000000000f2', NULL, 'DEPOSIT', 1, n, 0, NULL, '2026-04-01 01:00+00'::timestamptz + n * interval '1 second'
  FROM generate_series(1, 3) AS n;
SELECT snapshot.snapshot_configure();
SET LOCAL snapshot.batch_size = 1;
SELECT cmp_ok((SELECT captured FROM snapshot.capture_all_snapshots('2026-04-10')), '>=', 2,
    'a capture of all, one portfolio a write, with a ledger over three fetches');
SELECT results_eq($$SELECT portfolio_id, cash_balance FROM snapshot.portfolio_snapshots
                    WHERE snapshot_date = '2026-04-10' AND portfolio_id::text LIKE '%f_' ORDER BY 1$$,
    $$VALUES ('e0000000-0000-0000-0000-0000000000f1'::uuid, 1000000000000000000000000031375.12345678::numeric),
             ('e0000000-0000-0000-0000-0000000000f2', 6)$$,
    '... values it whole (1 + 2 + ... + 250 = 31375 on the first deposit), and the portfolio after it (1 + 2 + 3)');

SELECT * FROM finish();
ROLLBACK;
