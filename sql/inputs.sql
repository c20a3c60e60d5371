-- inputs: bad arguments get a clear error with a SQLSTATE and write nothing.
\i test/preamble.sql
BEGIN;
CREATE EXTENSION pgtap;
CREATE EXTENSION snapshot;
\i examples/schema.sql
SELECT plan(18);

INSERT INTO portfolios (id, name, base_currency) VALUES
    ('20000000-0000-0000-0000-000000000001', 'input', 'USD');

-- before snapshot_configure
SELECT throws_ok($$SELECT snapshot.capture_all_snapshots('2026-03-05')$$,
    '55000', 'snapshot is not configured', 'capture_all_snapshots before configuration');
SELECT throws_ok($$SELECT snapshot.capture_snapshot('20000000-0000-0000-0000-000000000001', '2026-03-05')$$,
    '55000', 'snapshot is not configured', 'capture_snapshot before configuration');
CREATE FUNCTION pg_temp.error_hint(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE h text;
BEGIN
    EXECUTE sql;
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS h = PG_EXCEPTION_HINT;
    RETURN h;
END $$;
SELECT matches(pg_temp.error_hint($$SELECT snapshot.capture_all_snapshots('2026-03-05')$$),
    '^Call snapshot_configure\(\)', 'the hint names snapshot_configure');

SELECT snapshot.snapshot_configure();

-- dates
SELECT throws_ok($$SELECT snapshot.capture_all_snapshots(NULL)$$,
    '22004', 'snapshot_date must not be null', 'capture_all_snapshots: NULL date');
SELECT throws_ok($$SELECT snapshot.capture_snapshot('20000000-0000-0000-0000-000000000001', NULL)$$,
    '22004', 'snapshot_date must not be null', 'capture_snapshot: NULL date');
SELECT throws_ok(format('SELECT snapshot.capture_all_snapshots(%L)', (now() AT TIME ZONE 'UTC')::date + 1),
    '22023', format('snapshot_date %s is in the future', to_char((now() AT TIME ZONE 'UTC')::date + 1, 'YYYY-MM-DD')),
    'capture_all_snapshots: tomorrow (UTC)');
SELECT throws_ok(format('SELECT snapshot.capture_snapshot(%L, %L)', '20000000-0000-0000-0000-000000000001',
                        (now() AT TIME ZONE 'UTC')::date + 1),
    '22023', NULL, 'capture_snapshot: tomorrow (UTC)');
SELECT throws_ok($$SELECT snapshot.capture_all_snapshots('infinity')$$,
    '22023', 'snapshot_date infinity is out of range', 'capture_all_snapshots: infinity');
SELECT throws_ok($$SELECT snapshot.capture_all_snapshots('-infinity')$$,
    '22023', 'snapshot_date -infinity is out of range', 'capture_all_snapshots: -infinity');
SELECT lives_ok($$SELECT snapshot.capture_all_snapshots()$$, 'the default date is today (UTC)');
SELECT is(snapshot_date, (now() AT TIME ZONE 'UTC')::date, 'the default run captured today (UTC)')
  FROM snapshot.snapshot_runs;
DELETE FROM snapshot.snapshot_runs;
DELETE FROM snapshot.portfolio_snapshots;

-- triggered_by
SELECT throws_ok($$SELECT snapshot.capture_all_snapshots('2026-03-05', NULL)$$,
    '22023', 'triggered_by must not be null or empty', 'NULL triggered_by');
SELECT throws_ok($$SELECT snapshot.capture_all_snapshots('2026-03-05', '')$$,
    '22023', 'triggered_by must not be null or empty', 'empty triggered_by');
SELECT throws_ok(format('SELECT snapshot.capture_all_snapshots(%L, %L)', '2026-03-05', repeat('x', 65)),
    '22023', 'triggered_by must be at most 64 characters long', 'triggered_by over 64 characters');
SELECT is((snapshot.capture_all_snapshots('2026-03-05', repeat('é', 64))).triggered_by, repeat('é', 64),
    '64 characters (not bytes) are accepted');
DELETE FROM snapshot.snapshot_runs;
DELETE FROM snapshot.portfolio_snapshots;

-- portfolio id
SELECT throws_ok($$SELECT snapshot.capture_snapshot(NULL, '2026-03-05')$$,
    '22004', 'portfolio_id must not be null', 'NULL portfolio id');
SELECT throws_ok($$SELECT snapshot.capture_snapshot('20000000-0000-0000-0000-0000000000ff', '2026-03-05')$$,
    'P0002', 'portfolio 20000000-0000-0000-0000-0000000000ff does not exist', 'unknown portfolio');

-- none of the above wrote anything
SELECT is((SELECT count(*) FROM snapshot.snapshot_runs) + (SELECT count(*) FROM snapshot.portfolio_snapshots)
          + (SELECT count(*) FROM snapshot.snapshot_run_errors), 0::bigint,
          'bad input writes no run, no snapshot and no error row');

SELECT * FROM finish();
ROLLBACK;
