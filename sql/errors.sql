-- errors: every data error fails that portfolio's capture with a class 22
-- SQLSTATE and a message naming the portfolio, the transaction and the reason.
\i test/preamble.sql
BEGIN;
CREATE EXTENSION pgtap;
CREATE EXTENSION snapshot;
\i examples/schema.sql
SELECT plan(29);

-- the application's schema forbids some of these; a ledger from elsewhere may not
ALTER TABLE transactions DROP CONSTRAINT transactions_asset_id_fkey;
ALTER TABLE portfolios ALTER COLUMN base_currency DROP NOT NULL;

INSERT INTO assets (id, symbol, currency) VALUES
    ('0e000000-0000-0000-0000-000000000001', 'ERR', 'USD');
INSERT INTO portfolios (id, name, base_currency)
SELECT ('e0000000-0000-0000-0000-0000000000' || lpad(n::text, 2, '0'))::uuid, 'case ' || n, 'USD'
  FROM generate_series(1, 15) AS n;
UPDATE portfolios SET base_currency = NULL WHERE id = 'e0000000-0000-0000-0000-000000000013';

-- every portfolio starts with a good BUY of 10 (id = 100 + case)
INSERT INTO transactions (id, portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date)
OVERRIDING SYSTEM VALUE
SELECT 100 + n, ('e0000000-0000-0000-0000-0000000000' || lpad(n::text, 2, '0'))::uuid,
       '0e000000-0000-0000-0000-000000000001', 'BUY', 10, 10, 0, NULL, '2026-03-01 09:00+00'
  FROM generate_series(1, 15) AS n;
INSERT INTO transactions (id, portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date)
OVERRIDING SYSTEM VALUE VALUES
    (1, 'e0000000-0000-0000-0000-000000000001', '0e000000-0000-0000-0000-000000000001', 'sync', 1, 10, 0, NULL, '2026-03-02 09:00+00'),
    (2, 'e0000000-0000-0000-0000-000000000002', '0e000000-0000-0000-0000-000000000001', 'BUY', NULL, 10, 0, NULL, '2026-03-02 09:00+00'),
    (3, 'e0000000-0000-0000-0000-000000000003', '0e000000-0000-0000-0000-000000000001', 'BUY', 0, 10, 0, NULL, '2026-03-02 09:00+00'),
    (4, 'e0000000-0000-0000-0000-000000000004', '0e000000-0000-0000-0000-000000000001', 'SELL', -1, 10, 0, NULL, '2026-03-02 09:00+00'),
    (5, 'e0000000-0000-0000-0000-000000000005', '0e000000-0000-0000-0000-000000000001', 'BUY', 1, -10, 0, NULL, '2026-03-02 09:00+00'),
    (6, 'e0000000-0000-0000-0000-000000000006', '0e000000-0000-0000-0000-000000000001', 'BUY', 1, 10, -1, NULL, '2026-03-02 09:00+00'),
    (7, 'e0000000-0000-0000-0000-000000000007', '0e000000-0000-0000-0000-000000000001', 'DIVIDEND', 1, NULL, 0, NULL, '2026-03-02 09:00+00'),
    (8, 'e0000000-0000-0000-0000-000000000008', NULL, 'DIVIDEND', 1, 10, 0, NULL, '2026-03-02 09:00+00'),
    (9, 'e0000000-0000-0000-0000-000000000009', '0e000000-0000-0000-0000-0000000000ff', 'BUY', 1, 10, 0, NULL, '2026-03-02 09:00+00'),
    (10, 'e0000000-0000-0000-0000-000000000010', '0e000000-0000-0000-0000-000000000001', 'SELL', 10.5, 10, 0, NULL, '2026-03-02 09:00+00'),
    (11, 'e0000000-0000-0000-0000-000000000011', '0e000000-0000-0000-0000-000000000001', 'BUY', 1, 10, 0, 0, '2026-03-02 09:00+00'),
    (12, 'e0000000-0000-0000-0000-000000000012', '0e000000-0000-0000-0000-0000000000aa', 'SELL', 1, 10, 0, NULL, '2026-03-02 09:00+00'),
    (14, 'e0000000-0000-0000-0000-000000000014', '0e000000-0000-0000-0000-000000000001', 'BUY', 'NaN', 10, 0, NULL, '2026-03-02 09:00+00'),
    (15, 'e0000000-0000-0000-0000-000000000015', '0e000000-0000-0000-0000-000000000001', 'BUY', 1, 'Infinity', 0, NULL, '2026-03-02 09:00+00');
SELECT snapshot.snapshot_configure();

SELECT throws_ok($$SELECT snapshot.capture_snapshot('e0000000-0000-0000-0000-000000000001', '2026-03-05')$$,
    '22023', 'portfolio e0000000-0000-0000-0000-000000000001, transaction 1: unknown transaction type "sync"',
    'an unknown type');
SELECT throws_ok($$SELECT snapshot.capture_snapshot('e0000000-0000-0000-0000-000000000002', '2026-03-05')$$,
    '22004', 'portfolio e0000000-0000-0000-0000-000000000002, transaction 2: quantity is null',
    'a NULL quantity');
SELECT throws_ok($$SELECT snapshot.capture_snapshot('e0000000-0000-0000-0000-000000000003', '2026-03-05')$$,
    '22023', 'portfolio e0000000-0000-0000-0000-000000000003, transaction 3: quantity 0 is not positive',
    'a zero quantity');
SELECT throws_ok($$SELECT snapshot.capture_snapshot('e0000000-0000-0000-0000-000000000004', '2026-03-05')$$,
    '22023', 'portfolio e0000000-0000-0000-0000-000000000004, transaction 4: quantity -1 is not positive',
    'a negative quantity');
SELECT throws_ok($$SELECT snapshot.capture_snapshot('e0000000-0000-0000-0000-000000000005', '2026-03-05')$$,
    '22023', 'portfolio e0000000-0000-0000-0000-000000000005, transaction 5: price -10 is negative',
    'a negative price');
SELECT throws_ok($$SELECT snapshot.capture_snapshot('e0000000-0000-0000-0000-000000000006', '2026-03-05')$$,
    '22023', 'portfolio e0000000-0000-0000-0000-000000000006, transaction 6: fee -1 is negative',
    'a negative fee');
SELECT throws_ok($$SELECT snapshot.capture_snapshot('e0000000-0000-0000-0000-000000000007', '2026-03-05')$$,
    '22004', 'portfolio e0000000-0000-0000-0000-000000000007, transaction 7: price is null',
    'a NULL price');
SELECT throws_ok($$SELECT snapshot.capture_snapshot('e0000000-0000-0000-0000-000000000008', '2026-03-05')$$,
    '22023', 'portfolio e0000000-0000-0000-0000-000000000008, transaction 8: a DIVIDEND needs an asset_id',
    'an asset type without asset_id');
SELECT throws_ok($$SELECT snapshot.capture_snapshot('e0000000-0000-0000-0000-000000000009', '2026-03-05')$$,
    '22023', 'portfolio e0000000-0000-0000-0000-000000000009, transaction 9: asset 0e000000-0000-0000-0000-0000000000ff is unknown',
    'an unknown asset');
SELECT throws_ok($$SELECT snapshot.capture_snapshot('e0000000-0000-0000-0000-000000000010', '2026-03-05')$$,
    '22000', 'portfolio e0000000-0000-0000-0000-000000000010, transaction 10: sells 10.5 of asset 0e000000-0000-0000-0000-000000000001 but only 10 is held',
    'overselling');
SELECT throws_ok($$SELECT snapshot.capture_snapshot('e0000000-0000-0000-0000-000000000011', '2026-03-05')$$,
    '22023', 'portfolio e0000000-0000-0000-0000-000000000011, transaction 11: exchange rate 0 is not positive',
    'a zero exchange rate');
SELECT throws_ok($$SELECT snapshot.capture_snapshot('e0000000-0000-0000-0000-000000000013', '2026-03-05')$$,
    '22004', 'portfolio e0000000-0000-0000-0000-000000000013 has no base currency',
    'a NULL base currency');

SELECT throws_ok($$SELECT snapshot.capture_snapshot('e0000000-0000-0000-0000-000000000014', '2026-03-05')$$,
    '22023', 'portfolio e0000000-0000-0000-0000-000000000014, transaction 14: quantity NaN is not a finite number',
    'a NaN quantity');
SELECT throws_ok($$SELECT snapshot.capture_snapshot('e0000000-0000-0000-0000-000000000015', '2026-03-05')$$,
    '22023', 'portfolio e0000000-0000-0000-0000-000000000015, transaction 15: price Infinity is not a finite number',
    'an infinite price');

-- a portfolio listed twice by a view would count every transaction twice
CREATE VIEW doubled_portfolios AS
    SELECT id, base_currency FROM portfolios
    UNION ALL SELECT id, base_currency FROM portfolios WHERE id = 'e0000000-0000-0000-0000-000000000012';
SELECT snapshot.snapshot_configure(portfolios => 'doubled_portfolios');
SELECT throws_ok($$SELECT snapshot.capture_snapshot('e0000000-0000-0000-0000-000000000012', '2026-03-01')$$,
    '22000', 'portfolio e0000000-0000-0000-0000-000000000012 is listed more than once by the portfolios relation',
    'a portfolio listed twice is an error, not double money');
SELECT results_eq($$SELECT status, portfolios, captured, failed FROM snapshot.capture_all_snapshots('2026-03-01')$$,
    $$VALUES ('partial', 16, 14, 2)$$, 'a capture of all values it once and records the duplicate (and portfolio 13''s NULL base currency)');
SELECT is(total_cost, 100::numeric, 'with its ledger counted once')
  FROM snapshot.portfolio_snapshots WHERE portfolio_id = 'e0000000-0000-0000-0000-000000000012';
CREATE VIEW doubled_transactions AS SELECT * FROM transactions UNION ALL SELECT * FROM transactions WHERE id = 112;
SELECT snapshot.snapshot_configure(transactions => 'doubled_transactions');
SELECT throws_ok($$SELECT snapshot.capture_snapshot('e0000000-0000-0000-0000-000000000012', '2026-03-01')$$,
    '22000', 'portfolio e0000000-0000-0000-0000-000000000012, transaction 112: appears more than once in the ledger',
    'a ledger row listed twice is an error, not double money');

-- transaction ids: integers, uuid and text read as they are, any other type
-- as its ::text cast; the same when their text is, shown as text
-- (the ledger as a view whose ids are id, and whose row 112 is listed again with the id twin)
CREATE FUNCTION pg_temp.ledger_with_ids(view text, id text, twin text) RETURNS void LANGUAGE plpgsql AS $f$
BEGIN
    EXECUTE format('CREATE VIEW %I AS'
                   ' SELECT portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date,'
                   ' %s AS id FROM transactions t UNION ALL'
                   ' SELECT portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date,'
                   ' %s FROM transactions t WHERE t.id = 112', view, id, twin);
    PERFORM snapshot.snapshot_configure(transactions => view);
END $f$;
SELECT pg_temp.ledger_with_ids('text_ids', $$'T-' || t.id$$, $$'T-' || t.id$$);
SELECT throws_ok($$SELECT snapshot.capture_snapshot('e0000000-0000-0000-0000-000000000012', '2026-03-01')$$,
    '22000', 'portfolio e0000000-0000-0000-0000-000000000012, transaction T-112: appears more than once in the ledger',
    'text ids: a row listed twice is found, and its id shown as it is');
SELECT pg_temp.ledger_with_ids('uuid_ids', $$('00000000-0000-0000-0000-' || lpad(t.id::text, 12, '0'))::uuid$$,
                               $$('00000000-0000-0000-0000-' || lpad(t.id::text, 12, '0'))::uuid$$);
SELECT throws_ok($$SELECT snapshot.capture_snapshot('e0000000-0000-0000-0000-000000000012', '2026-03-01')$$,
    '22000', 'portfolio e0000000-0000-0000-0000-000000000012, transaction 00000000-0000-0000-0000-000000000112: appears more than once in the ledger',
    'uuid ids: the same');
-- numeric ids are read as text: 112.0 twice is one id, 112.0 and 112.00 are two
SELECT pg_temp.ledger_with_ids('numeric_ids', 't.id::numeric(10,1)', 't.id::numeric(10,1)');
SELECT throws_ok($$SELECT snapshot.capture_snapshot('e0000000-0000-0000-0000-000000000012', '2026-03-01')$$,
    '22000', 'portfolio e0000000-0000-0000-0000-000000000012, transaction 112.0: appears more than once in the ledger',
    'numeric ids: compared by their text');
SELECT pg_temp.ledger_with_ids('numeric_scales', 't.id::numeric(10,1)', 't.id::numeric(10,2)');
SELECT is((SELECT total_cost FROM snapshot.capture_snapshot('e0000000-0000-0000-0000-000000000012', '2026-03-01')),
    200::numeric, 'numeric ids of another text are other transactions');
-- char(n) ids: 'T-112' as char(6) and char(8) are one id, as their text is
SELECT pg_temp.ledger_with_ids('char_ids', $$('T-' || t.id)::char(6)$$, $$('T-' || t.id)::char(8)$$);
SELECT throws_ok($$SELECT snapshot.capture_snapshot('e0000000-0000-0000-0000-000000000012', '2026-03-01')$$,
    '22000', 'portfolio e0000000-0000-0000-0000-000000000012, transaction T-112: appears more than once in the ledger',
    'char(n) ids: compared and shown as their text, without the padding');
SELECT pg_temp.ledger_with_ids('null_ids', 'NULL::bigint', 'NULL::bigint');
SELECT throws_ok($$SELECT snapshot.capture_snapshot('e0000000-0000-0000-0000-000000000012', '2026-03-01')$$,
    '22000', 'portfolio e0000000-0000-0000-0000-000000000012, transaction (null): appears more than once in the ledger',
    'NULL ids at one instant are the same id, as before');
DELETE FROM snapshot.portfolio_snapshots;
DELETE FROM snapshot.snapshot_runs;
SELECT snapshot.snapshot_configure();

-- the asset check comes before the sale: an unknown asset is reported as such
SELECT throws_ok($$SELECT snapshot.capture_snapshot('e0000000-0000-0000-0000-000000000012', '2026-03-05')$$,
    '22023', 'portfolio e0000000-0000-0000-0000-000000000012, transaction 12: asset 0e000000-0000-0000-0000-0000000000aa is unknown',
    'a sale of an unknown asset');

-- the ledger up to the date decides: the day before the bad row, all is well
SELECT is((snapshot.capture_snapshot('e0000000-0000-0000-0000-000000000001', '2026-03-01')).market_value,
          100::numeric, 'a bad row after the snapshot date does not matter (last trade price 10 x 10)');

-- the same errors in a full run are recorded, each with its SQLSTATE
SELECT results_eq(
    $$SELECT status, portfolios, captured, failed FROM snapshot.capture_all_snapshots('2026-03-05')$$,
    $$VALUES ('failed', 15, 0, 15)$$,
    'a run where every portfolio fails is failed');
SELECT results_eq(
    $$SELECT portfolio_id::text, sqlstate FROM snapshot.snapshot_run_errors ORDER BY portfolio_id$$,
    $$VALUES ('e0000000-0000-0000-0000-000000000001', '22023'), ('e0000000-0000-0000-0000-000000000002', '22004'),
             ('e0000000-0000-0000-0000-000000000003', '22023'), ('e0000000-0000-0000-0000-000000000004', '22023'),
             ('e0000000-0000-0000-0000-000000000005', '22023'), ('e0000000-0000-0000-0000-000000000006', '22023'),
             ('e0000000-0000-0000-0000-000000000007', '22004'), ('e0000000-0000-0000-0000-000000000008', '22023'),
             ('e0000000-0000-0000-0000-000000000009', '22023'), ('e0000000-0000-0000-0000-000000000010', '22000'),
             ('e0000000-0000-0000-0000-000000000011', '22023'), ('e0000000-0000-0000-0000-000000000012', '22023'),
             ('e0000000-0000-0000-0000-000000000013', '22004'), ('e0000000-0000-0000-0000-000000000014', '22023'),
             ('e0000000-0000-0000-0000-000000000015', '22023')$$,
    'each failed portfolio is recorded with the SQLSTATE of its error');
SELECT is(message, 'portfolio e0000000-0000-0000-0000-000000000001, transaction 1: unknown transaction type "sync"',
          'the recorded message is the error message')
  FROM snapshot.snapshot_run_errors WHERE portfolio_id = 'e0000000-0000-0000-0000-000000000001';

SELECT * FROM finish();
ROLLBACK;
