-- fallback: capture_all_snapshots_if_missing does no work when the date is
-- already captured for every current portfolio, and captures otherwise; the
-- scheduling functions need pg_cron (tested with pg_cron in dags/tests).
\i test/preamble.sql
BEGIN;
CREATE EXTENSION pgtap;
CREATE EXTENSION snapshot;
\i examples/schema.sql
SELECT plan(39);

SELECT throws_ok($$SELECT snapshot.capture_all_snapshots_if_missing('2026-03-05')$$,
    '55000', 'snapshot is not configured', 'not configured: 55000 as for a capture');

INSERT INTO assets (id, symbol, currency) VALUES ('08000000-0000-0000-0000-000000000001', 'FBK', 'USD');
INSERT INTO portfolios (id, name, base_currency) VALUES
    ('80000000-0000-0000-0000-000000000001', 'one', 'USD'),
    ('80000000-0000-0000-0000-000000000002', 'two', 'USD');
INSERT INTO transactions (portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date)
SELECT id, '08000000-0000-0000-0000-000000000001', 'BUY', 1, 10, 0, NULL, '2026-03-01 09:00+00' FROM portfolios;
SELECT snapshot.snapshot_configure();

CREATE TEMP TABLE first_call AS SELECT * FROM snapshot.capture_all_snapshots_if_missing('2026-03-05');
SELECT results_eq($$SELECT triggered_by, status, portfolios, captured FROM first_call$$,
    $$VALUES ('pg_cron', 'succeeded', 2, 2)$$, 'a date without a run is captured, triggered by pg_cron');
SELECT is((SELECT run_id FROM snapshot.capture_all_snapshots_if_missing('2026-03-05')),
          (SELECT run_id FROM first_call), 'a second call returns the existing run');
SELECT is(count(*), 1::bigint, 'and does no work: still one run') FROM snapshot.snapshot_runs;

-- an Airflow run of another date, then the fallback for it
CREATE TEMP TABLE airflow_run AS SELECT * FROM snapshot.capture_all_snapshots('2026-03-06', 'airflow');
SELECT results_eq($$SELECT run_id, triggered_by FROM snapshot.capture_all_snapshots_if_missing('2026-03-06')$$,
    $$SELECT run_id, triggered_by FROM airflow_run$$, 'after a successful Airflow run the fallback returns that run');
SELECT is(count(*), 2::bigint, 'no new run') FROM snapshot.snapshot_runs;

-- a portfolio added since: the date is no longer complete
INSERT INTO portfolios (id, name, base_currency) VALUES ('80000000-0000-0000-0000-000000000003', 'new', 'USD');
SELECT results_eq($$SELECT triggered_by, status, portfolios FROM snapshot.capture_all_snapshots_if_missing('2026-03-06')$$,
    $$VALUES ('pg_cron', 'succeeded', 3)$$, 'a portfolio without a snapshot for the date makes it capture again');

-- a snapshot missing for another reason (deleted) does too
DELETE FROM snapshot.portfolio_snapshots WHERE snapshot_date = '2026-03-05' AND portfolio_id = '80000000-0000-0000-0000-000000000001';
SELECT is((snapshot.capture_all_snapshots_if_missing('2026-03-05')).portfolios, 3, 'a missing snapshot makes it capture again');

-- a partial run is not a reason to skip
INSERT INTO transactions (portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date)
VALUES ('80000000-0000-0000-0000-000000000003', '08000000-0000-0000-0000-000000000001', 'sync', 1, 10, 0, NULL, '2026-03-06 09:00+00');
SELECT is((snapshot.capture_all_snapshots('2026-03-07')).status, 'partial', 'a partial run of 2026-03-07');
SELECT is((snapshot.capture_all_snapshots_if_missing('2026-03-07')).status, 'partial',
          'without a succeeded run the fallback captures again (still partial)');
SELECT is(count(*), 2::bigint, 'two runs of 2026-03-07') FROM snapshot.snapshot_runs WHERE snapshot_date = '2026-03-07';

-- defaults: the previous UTC day, triggered by pg_cron
SELECT results_eq($$SELECT snapshot_date, triggered_by FROM snapshot.capture_all_snapshots_if_missing()$$,
    $$VALUES ((now() AT TIME ZONE 'UTC')::date - 1, 'pg_cron')$$, 'by default it captures the previous UTC day');

-- bad input is the capture's
SELECT throws_ok($$SELECT snapshot.capture_all_snapshots_if_missing(NULL)$$,
    '22004', 'snapshot_date must not be null', 'a NULL date');
SELECT throws_ok($$SELECT snapshot.capture_all_snapshots_if_missing('2026-03-05', '')$$,
    '22023', NULL, 'an empty triggered_by when it must capture');

-- pg_cron is not installed here
SELECT throws_ok($$SELECT snapshot.schedule_snapshot_fallback()$$,
    '55000', 'pg_cron is not installed in database ' || current_database(), 'scheduling without pg_cron');
SELECT throws_ok($$SELECT snapshot.unschedule_snapshot_fallback()$$,
    '55000', 'pg_cron is not installed in database ' || current_database(), 'unscheduling without pg_cron');

-- the schedule is checked before pg_cron sees it: five fields, pg_cron's syntax
SELECT is(snapshot.check_cron_schedule(s), s, 'a valid schedule: ' || quote_literal(s))
  FROM unnest(ARRAY['30 1 * * *', '*/15 0-23/2 1,15,$ jan-dec mon-fri', '0 0 * * 7', ' 5  4 * * SUN ']) AS s;
SELECT throws_ok(format('SELECT snapshot.check_cron_schedule(%L)', s), '22023', format('invalid cron schedule "%s"', s),
                 'an invalid schedule: ' || quote_literal(s))
  FROM unnest(ARRAY['30 1 * *', '30 1 * * * *', '@daily', '60 1 * * *', '30 24 * * *', '30 1 0 * *', '30 1 * 13 *',
                    '30 1 * * 8', '5-1 * * * *', '*/0 * * * *', '30 1 * * mon-xyz', 'a b c d e', '1,,2 * * * *',
                    '30 $ * * *', '30 1 * * $']) AS s;
SELECT throws_ok($$SELECT snapshot.check_cron_schedule('')$$, '22023', 'schedule must not be null or empty', 'an empty schedule');
SELECT throws_ok($$SELECT snapshot.check_cron_schedule(NULL)$$, '22023', 'schedule must not be null or empty', 'a NULL schedule');
CREATE FUNCTION pg_temp.cron_detail(schedule text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE detail text;
BEGIN
    PERFORM snapshot.check_cron_schedule(schedule);
    RETURN NULL;
EXCEPTION WHEN invalid_parameter_value THEN
    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
    RETURN detail;
END $$;
SELECT is(pg_temp.cron_detail('61 1 * * *'),
          'The schedule is not in pg_cron''s syntax: the minute field has "61", outside 0-59.',
          'the detail names the field and its range');
SELECT is(pg_temp.cron_detail('30 1 * *'), 'The schedule is not in pg_cron''s syntax: it has 4 fields, not 5.',
          'the detail counts the fields');
SELECT * FROM finish();
ROLLBACK;
