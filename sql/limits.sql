-- limits: one tenant's data cannot break everyone's run.  Snapshots too
-- large to batch by count are written in batches bounded in bytes; a single
-- snapshot over the limit (64 MB) fails its portfolio alone; so do a ledger
-- amount beyond the bounds a valuation accepts (40 digits before and 40
-- after the decimal point), whatever its size, and a ledger of more than
-- 1,000,000 rows.
\i test/preamble.sql
BEGIN;
CREATE EXTENSION pgtap;
CREATE EXTENSION snapshot;
\i examples/schema.sql
SELECT plan(12);

-- 70 assets with 1 MB symbols: a position in each puts 1 MB in positions
ALTER TABLE assets DROP CONSTRAINT assets_symbol_key;
INSERT INTO assets (id, symbol, currency)
SELECT ('0b000000-0000-0000-0000-0000000000' || lpad(n::text, 2, '0'))::uuid,
       lpad(n::text, 2, '0') || repeat('x', 1024 * 1024), 'USD'
  FROM generate_series(1, 70) AS n;
-- 22 portfolios of 50 such positions (~50 MB each, 1.1 GB in all: one batch
-- by count, which no array may hold), and one of 70 (~70 MB, over the limit)
INSERT INTO portfolios (id, name, base_currency)
SELECT ('b0000000-0000-0000-0000-0000000000' || lpad(n::text, 2, '0'))::uuid, 'wide ' || n, 'USD'
  FROM generate_series(1, 23) AS n;
INSERT INTO transactions (portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date)
SELECT p.id, a.id, 'BUY', 1, 10, 0, NULL, '2026-03-02 09:00+00'
  FROM portfolios p JOIN assets a
    ON right(a.id::text, 2)::int <= CASE WHEN p.id = 'b0000000-0000-0000-0000-000000000023' THEN 70 ELSE 50 END;
SELECT snapshot.snapshot_configure();

SELECT results_eq($$SELECT status, portfolios, captured, failed FROM snapshot.capture_all_snapshots('2026-03-05', 'wide')$$,
    $$VALUES ('partial', 23, 22, 1)$$,
    'snapshots of 1.1 GB in all are written in batches bounded in bytes: every portfolio under the limit is captured');
SELECT results_eq($$SELECT count(*), min(position_count), max(position_count), sum(total_cost) FROM snapshot.portfolio_snapshots$$,
    $$VALUES (22::bigint, 50, 50, 11000::numeric)$$, '... each with its 50 positions');
SELECT results_eq($$SELECT portfolio_id::text, sqlstate, message FROM snapshot.snapshot_run_errors$$,
    $$VALUES ('b0000000-0000-0000-0000-000000000023', '54000',
              'portfolio b0000000-0000-0000-0000-000000000023: its snapshot would take 70 MB, more than the 64 MB a snapshot may take')$$,
    'the portfolio whose snapshot would take 70 MB fails alone, with 54000');
SELECT throws_ok($$SELECT snapshot.capture_snapshot('b0000000-0000-0000-0000-000000000023', '2026-03-05')$$, '54000',
    'portfolio b0000000-0000-0000-0000-000000000023: its snapshot would take 70 MB, more than the 64 MB a snapshot may take',
    'capture_snapshot raises the same error');

-- amounts: 40 digits before and 40 after the point are the bounds
DELETE FROM snapshot.portfolio_snapshots;
DELETE FROM transactions;
DELETE FROM portfolios;
INSERT INTO portfolios (id, name, base_currency)
SELECT ('c0000000-0000-0000-0000-00000000000' || n)::uuid, 'amounts ' || n, 'USD' FROM generate_series(1, 5) AS n;
INSERT INTO transactions (portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date) VALUES
    -- within the bounds: 40 digits before the point, and 40 after
    ('c0000000-0000-0000-0000-000000000001', NULL, 'DEPOSIT', 1, 9999999999999999999999999999999999999999, 0, NULL, '2026-03-02 09:00+00'),
    ('c0000000-0000-0000-0000-000000000002', NULL, 'DEPOSIT', 1, 0.0000000000000000000000000000000000000001, 0, NULL, '2026-03-02 09:00+00'),
    -- one digit more either way
    ('c0000000-0000-0000-0000-000000000003', NULL, 'DEPOSIT', 1, 10000000000000000000000000000000000000000, 0, NULL, '2026-03-02 09:00+00'),
    ('c0000000-0000-0000-0000-000000000004', NULL, 'DEPOSIT', 1, 0.00000000000000000000000000000000000000001, 0, NULL, '2026-03-02 09:00+00'),
    -- 65,000 digits, whose arithmetic would take seconds per operation
    ('c0000000-0000-0000-0000-000000000005', NULL, 'DEPOSIT', ('9' || repeat('0', 64999))::numeric, 1, 0, NULL, '2026-03-02 09:00+00');
SELECT results_eq($$SELECT status, captured, failed FROM snapshot.capture_all_snapshots('2026-03-05', 'amounts')$$,
    $$VALUES ('partial', 2, 3)$$, 'amounts beyond the bounds fail their portfolios alone');
SELECT results_eq($$SELECT portfolio_id::text, cash_balance FROM snapshot.portfolio_snapshots ORDER BY 1$$,
    $$VALUES ('c0000000-0000-0000-0000-000000000001', 9999999999999999999999999999999999999999::numeric),
             ('c0000000-0000-0000-0000-000000000002', 0::numeric)$$,
    'amounts at the bounds are valued (the second rounds to 0 at 8 places)');
SELECT results_eq($$SELECT portfolio_id::text, sqlstate, replace(message, id::text, 'N')
                      FROM snapshot.snapshot_run_errors e
                      JOIN transactions t USING (portfolio_id) ORDER BY 1$$,
    $$VALUES ('c0000000-0000-0000-0000-000000000003', '22003', 'portfolio c0000000-0000-0000-0000-000000000003, transaction N: price has too many digits'),
             ('c0000000-0000-0000-0000-000000000004', '22003', 'portfolio c0000000-0000-0000-0000-000000000004, transaction N: price has too many digits'),
             ('c0000000-0000-0000-0000-000000000005', '22003', 'portfolio c0000000-0000-0000-0000-000000000005, transaction N: quantity has too many digits')$$,
    'each names the portfolio, the transaction and the amount, with 22003');
SELECT is((SELECT detail FROM snapshot.snapshot_run_errors WHERE portfolio_id = 'c0000000-0000-0000-0000-000000000005'),
    'A ledger amount has at most 40 digits before and 40 after the decimal point.', 'the detail states the bounds');
SELECT throws_like($$SELECT snapshot.capture_snapshot('c0000000-0000-0000-0000-000000000005', '2026-03-05')$$,
    'portfolio c0000000-0000-0000-0000-000000000005, transaction % quantity has too many digits',
    'capture_snapshot raises it');

-- a ledger longer than a capture values (1,000,000 rows) fails its portfolio alone
DELETE FROM snapshot.portfolio_snapshots;
DELETE FROM transactions;
DELETE FROM portfolios;
INSERT INTO portfolios (id, name, base_currency) VALUES
    ('d0000000-0000-0000-0000-000000000001', 'long ledger', 'USD'),
    ('d0000000-0000-0000-0000-000000000002', 'short ledger', 'USD');
ALTER TABLE transactions DROP CONSTRAINT transactions_portfolio_id_fkey;  -- a million checks would be slow
INSERT INTO transactions (portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date)
SELECT 'd0000000-0000-0000-0000-000000000001', NULL, 'DEPOSIT', 1, 1, NULL, NULL, '2026-03-02 09:00+00'
  FROM generate_series(1, 1000001);
INSERT INTO transactions (portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date)
VALUES ('d0000000-0000-0000-0000-000000000002', NULL, 'DEPOSIT', 1, 7, NULL, NULL, '2026-03-02 09:00+00');
SELECT results_eq($$SELECT status, captured, failed FROM snapshot.capture_all_snapshots('2026-03-05', 'long')$$,
    $$VALUES ('partial', 1, 1)$$, 'a portfolio of 1,000,001 ledger rows fails alone');
SELECT results_eq($$SELECT e.sqlstate, e.message FROM snapshot.snapshot_run_errors e
                     WHERE e.run_id = (SELECT max(run_id) FROM snapshot.snapshot_runs)$$,
    $$VALUES ('54000', 'portfolio d0000000-0000-0000-0000-000000000001 has more than 1000000 ledger rows up to 2026-03-05')$$,
    '... with 54000, naming the portfolio and the limit');
SELECT is((SELECT cash_balance FROM snapshot.portfolio_snapshots), 7::numeric, 'the other portfolio is valued');

SELECT * FROM finish();
ROLLBACK;
