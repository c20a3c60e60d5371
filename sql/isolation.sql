-- isolation: one portfolio's data error never stops the others; it is
-- recorded, its earlier snapshot is kept, and the run status says so.
\i test/preamble.sql
BEGIN;
CREATE EXTENSION pgtap;
CREATE EXTENSION snapshot;
\i examples/schema.sql
SELECT plan(13);

INSERT INTO assets (id, symbol, currency) VALUES
    ('01000000-0000-0000-0000-000000000001', 'ISO', 'USD');
INSERT INTO portfolios (id, name, base_currency) VALUES
    ('10000000-0000-0000-0000-000000000001', 'good', 'USD'),
    ('10000000-0000-0000-0000-000000000002', 'turns bad', 'USD'),
    ('10000000-0000-0000-0000-000000000003', 'good too', 'USD');
INSERT INTO transactions (id, portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date)
OVERRIDING SYSTEM VALUE VALUES
    (1, '10000000-0000-0000-0000-000000000001', '01000000-0000-0000-0000-000000000001', 'BUY', 1, 100, 0, NULL, '2026-03-01 09:00+00'),
    (2, '10000000-0000-0000-0000-000000000002', '01000000-0000-0000-0000-000000000001', 'BUY', 2, 100, 0, NULL, '2026-03-01 09:00+00'),
    (3, '10000000-0000-0000-0000-000000000003', '01000000-0000-0000-0000-000000000001', 'BUY', 3, 100, 0, NULL, '2026-03-01 09:00+00');
INSERT INTO asset_prices VALUES ('01000000-0000-0000-0000-000000000001', '2026-03-05', 150);
SELECT snapshot.snapshot_configure();

SELECT results_eq($$SELECT status, portfolios, captured, failed FROM snapshot.capture_all_snapshots('2026-03-05', 'first')$$,
    $$VALUES ('succeeded', 3, 3, 0)$$, 'the first run succeeds');

-- the application once wrote 'sync'
INSERT INTO transactions (id, portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date)
OVERRIDING SYSTEM VALUE VALUES
    (4, '10000000-0000-0000-0000-000000000002', '01000000-0000-0000-0000-000000000001', 'sync', 1, 100, 0, NULL, '2026-03-02 09:00+00'),
    (5, '10000000-0000-0000-0000-000000000001', '01000000-0000-0000-0000-000000000001', 'BUY', 1, 120, 0, NULL, '2026-03-02 09:00+00'),
    (6, '10000000-0000-0000-0000-000000000003', '01000000-0000-0000-0000-000000000001', 'BUY', 1, 120, 0, NULL, '2026-03-02 09:00+00');

CREATE TEMP TABLE second_run AS SELECT * FROM snapshot.capture_all_snapshots('2026-03-05', 'second');
SELECT results_eq($$SELECT status, portfolios, captured, failed FROM second_run$$,
    $$VALUES ('partial', 3, 2, 1)$$, 'a run with one bad portfolio is partial and counts it');
SELECT results_eq(
    $$SELECT portfolio_id::text, sqlstate, message, detail FROM snapshot.snapshot_run_errors
       WHERE run_id = (SELECT run_id FROM second_run)$$,
    $$VALUES ('10000000-0000-0000-0000-000000000002', '22023',
              'portfolio 10000000-0000-0000-0000-000000000002, transaction 4: unknown transaction type "sync"',
              'The type must be one of BUY, SELL, DEPOSIT, WITHDRAWAL, DIVIDEND, FEE, INTEREST, TAX, SPLIT, TRANSFER_IN or TRANSFER_OUT.')$$,
    'the error is recorded against the run with its SQLSTATE, message and detail');
SELECT results_eq(
    $$SELECT portfolio_id::text, market_value, r.triggered_by
        FROM snapshot.portfolio_snapshots s JOIN snapshot.snapshot_runs r USING (run_id)
       WHERE s.snapshot_date = '2026-03-05' ORDER BY portfolio_id$$,
    $$VALUES ('10000000-0000-0000-0000-000000000001', 300::numeric, 'second'),
             ('10000000-0000-0000-0000-000000000002', 300::numeric, 'first'),
             ('10000000-0000-0000-0000-000000000003', 600::numeric, 'second')$$,
    'the good portfolios are updated; the bad one keeps its earlier snapshot for the date');

-- a bad portfolio with no earlier snapshot simply has none
SELECT results_eq($$SELECT status, captured, failed FROM snapshot.capture_all_snapshots('2026-03-04', 'other day')$$,
    $$VALUES ('partial', 2, 1)$$, 'another date: partial again');
SELECT is(count(*), 2::bigint, 'no snapshot is made up for the bad portfolio')
  FROM snapshot.portfolio_snapshots WHERE snapshot_date = '2026-03-04';

-- the failed portfolio does not hide behind good ones: every one fails
UPDATE transactions SET type = 'sync' WHERE id IN (5, 6);
SELECT results_eq($$SELECT status, portfolios, captured, failed FROM snapshot.capture_all_snapshots('2026-03-05', 'third')$$,
    $$VALUES ('failed', 3, 0, 3)$$, 'a run where every portfolio fails is failed');
SELECT is(count(*), 3::bigint, 'the failed run kept every earlier snapshot')
  FROM snapshot.portfolio_snapshots s JOIN snapshot.snapshot_runs r USING (run_id)
 WHERE s.snapshot_date = '2026-03-05' AND r.triggered_by IN ('first', 'second');

-- fixed ledger: back to succeeded, and the errors of old runs stay as they were
UPDATE transactions SET type = 'BUY' WHERE id IN (4, 5, 6);
SELECT results_eq($$SELECT status, portfolios, captured, failed FROM snapshot.capture_all_snapshots('2026-03-05', 'fixed')$$,
    $$VALUES ('succeeded', 3, 3, 0)$$, 'once the ledger is fixed the run succeeds');
SELECT results_eq(
    $$SELECT r.triggered_by, count(e.portfolio_id) FROM snapshot.snapshot_runs r
        LEFT JOIN snapshot.snapshot_run_errors e USING (run_id) GROUP BY r.run_id, r.triggered_by ORDER BY r.run_id$$,
    $$VALUES ('first', 0::bigint), ('second', 1::bigint), ('other day', 1::bigint), ('third', 3::bigint), ('fixed', 0::bigint)$$,
    'the error history of every run is kept');

-- no portfolios at all
DELETE FROM transactions;
DELETE FROM portfolios;
SELECT results_eq($$SELECT status, portfolios, captured, failed FROM snapshot.capture_all_snapshots('2026-03-05', 'none')$$,
    $$VALUES ('succeeded', 0, 0, 0)$$, 'a run over no portfolios succeeds with zero counts');

-- the backend's activity is restored when a run returns, still inside the
-- statement that called it (the next statement would reset it anyway)
CREATE FUNCTION pg_temp.activity_after_capture() RETURNS text LANGUAGE plpgsql AS $$
DECLARE q text;
BEGIN
    PERFORM snapshot.capture_all_snapshots('2026-03-05', 'activity');
    PERFORM pg_stat_clear_snapshot();
    SELECT a.query INTO q FROM pg_stat_activity a WHERE a.pid = pg_backend_pid();
    RETURN q;
END $$;
SELECT ok(pg_temp.activity_after_capture() LIKE 'SELECT ok(pg_temp.activity_after_capture() LIKE %',
          'pg_stat_activity shows the calling statement again once a capture returns');
SELECT is(count(*), 0::bigint, 'no run is left running') FROM snapshot.snapshot_runs WHERE status = 'running';

SELECT * FROM finish();
ROLLBACK;
