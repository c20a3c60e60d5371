-- attacks_sessions: the attacks of the security issue that need committed
-- data and other sessions (dblink).  Nobody outside the extension can hold
-- the lock a capture waits on; the valuation workers and the fallback read
-- the sources with their owner's rights, never the superuser's; a cancel
-- ends a capture within a second or two, whatever the numbers in the
-- ledger.  Commits its data and drops everything at the end.
\i test/preamble.sql
CREATE EXTENSION pgtap;
CREATE EXTENSION dblink;
CREATE EXTENSION snapshot;
CREATE ROLE snapshot_test_owner;
CREATE ROLE snapshot_test_airflow;
CREATE ROLE snapshot_test_intruder LOGIN;   -- any role that can log in
CREATE SCHEMA app AUTHORIZATION snapshot_test_owner;
GRANT USAGE ON SCHEMA snapshot TO snapshot_test_airflow, snapshot_test_intruder;
GRANT EXECUTE ON FUNCTION snapshot.capture_all_snapshots(date, text),
                          snapshot.capture_all_snapshots_if_missing(date, text) TO snapshot_test_airflow;
GRANT SELECT ON snapshot.snapshot_runs, snapshot.snapshot_run_errors TO snapshot_test_airflow;

-- the owner's tables, 30 portfolios, and a view over them whose probe logs
-- who read it, in which process
SET ROLE snapshot_test_owner;
SET search_path = app;
\i examples/schema.sql
INSERT INTO assets (id, symbol, currency) VALUES ('0c000000-0000-0000-0000-000000000001', 'SES', 'USD');
INSERT INTO portfolios (id, name, base_currency)
SELECT ('c1000000-0000-0000-0000-0000000000' || lpad(n::text, 2, '0'))::uuid, 'session ' || n, 'USD'
  FROM generate_series(1, 30) AS n;
INSERT INTO transactions (portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date)
SELECT id, '0c000000-0000-0000-0000-000000000001', 'BUY', 1, 10, 0, NULL, '2026-03-02 09:00+00' FROM portfolios;
CREATE TABLE seen (who name, process text);
CREATE TABLE caller AS SELECT pg_backend_pid() AS pid;  -- the session running the captures
CREATE FUNCTION probe() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        EXECUTE 'ALTER ROLE snapshot_test_owner SUPERUSER';
    EXCEPTION WHEN insufficient_privilege THEN NULL;
    END;
    INSERT INTO app.seen
    SELECT current_user, CASE WHEN c.pid = pg_catalog.pg_backend_pid() THEN 'calling backend' ELSE 'another process' END
      FROM app.caller c;
    RETURN true;
END $$;
CREATE VIEW portfolios_v AS SELECT id, base_currency FROM app.portfolios WHERE app.probe();
RESET search_path;
RESET ROLE;
SELECT snapshot.snapshot_configure('app.portfolios_v', 'app.assets', 'app.transactions', 'app.asset_prices');

CREATE FUNCTION pg_temp.connstr(role text) RETURNS text LANGUAGE sql AS $$
    SELECT format('host=%s port=%s dbname=%s user=%s application_name=snapshot_attack',
                  split_part(current_setting('unix_socket_directories'), ',', 1),
                  current_setting('port'), current_database(), role)
$$;
-- wait (at most 30 s) until a session of this file runs a query like
-- pattern (waiting on a lock, if locked)
CREATE FUNCTION pg_temp.wait_for(pattern text, locked boolean) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. 600 LOOP
        IF EXISTS (SELECT FROM pg_stat_activity
                    WHERE application_name = 'snapshot_attack' AND query LIKE pattern
                      AND (NOT locked OR wait_event_type = 'Lock')) THEN
            RETURN true;
        END IF;
        PERFORM pg_stat_clear_snapshot();
        PERFORM pg_sleep(0.05);
    END LOOP;
    RETURN false;
END $$;
CREATE FUNCTION pg_temp.seen() RETURNS TABLE (who text, process text) LANGUAGE sql
    AS $$ SELECT DISTINCT who::text, process FROM app.seen ORDER BY 1, 2 $$;

SELECT plan(17);

-- 5. The date lock.  In 1.2 a capture waited on an advisory lock whose key
-- was documented: any role that can log in could hold it all night.
SELECT dblink_connect('intruder', pg_temp.connstr('snapshot_test_intruder'));
SELECT is((SELECT l FROM dblink('intruder', $$SELECT pg_advisory_lock(1397637456, date '2026-03-05' - date '2000-01-01')::text$$) AS t(l text)),
    '', 'lock: the intruder holds the advisory lock 1.2 waited on');
SELECT throws_ok($$SELECT * FROM dblink('intruder', 'SELECT 1 FROM snapshot.capture_date_locks FOR UPDATE') AS t(x int)$$,
    '42501', NULL, 'lock: it cannot lock the rows the captures wait on');
SELECT throws_ok($$SELECT dblink_exec('intruder', 'BEGIN; LOCK TABLE snapshot.capture_date_locks; COMMIT')$$,
    '42501', NULL, 'lock: nor the table');
SET lock_timeout = '5s';
SET ROLE snapshot_test_airflow;
SELECT is((snapshot.capture_all_snapshots('2026-03-05', 'airflow')).status, 'succeeded',
    'lock: the limited role''s capture runs all the same, without waiting');
RESET ROLE;
RESET lock_timeout;
SELECT dblink_disconnect('intruder');

-- 1. The valuation workers read as the owner: they connect as the extension's
-- owner, then switch to the sources' owner for every read.
DELETE FROM app.seen;
SET snapshot.max_workers = 2;
SET snapshot.portfolios_per_worker = 10;
SET ROLE snapshot_test_airflow;
SELECT results_eq($$SELECT status, captured, workers FROM snapshot.capture_all_snapshots('2026-03-04', 'workers')$$,
    $$VALUES ('succeeded', 30, 2)$$, 'workers: a capture with two valuation workers');
RESET ROLE;
SELECT results_eq('SELECT * FROM pg_temp.seen()',
    $$VALUES ('snapshot_test_owner', 'another process'), ('snapshot_test_owner', 'calling backend')$$,
    'workers: the owner''s view ran in the calling backend and in the workers, always as the owner');
SELECT ok(NOT (SELECT rolsuper FROM pg_roles WHERE rolname = 'snapshot_test_owner'), 'workers: the owner is not a superuser');
RESET snapshot.max_workers;
RESET snapshot.portfolios_per_worker;

-- the fallback's check that every portfolio has a snapshot reads as the owner too
DELETE FROM app.seen;
SET ROLE snapshot_test_airflow;
SELECT is((snapshot.capture_all_snapshots_if_missing('2026-03-04', 'pg_cron')).triggered_by, 'workers',
    'fallback: the day is covered, so it returns the run that covered it');
RESET ROLE;
SELECT results_eq('SELECT * FROM pg_temp.seen()', $$VALUES ('snapshot_test_owner', 'calling backend')$$,
    'fallback: it read the owner''s view as the owner');
SELECT is((SELECT count(*) FROM snapshot.snapshot_runs WHERE snapshot_date = '2026-03-04'), 1::bigint,
    'fallback: and captured nothing');

-- An ALTER TABLE of a source queued behind a capture, and the capture's
-- workers (in its lock group) going ahead of it: specs/lock_queue.spec.

-- 6. A cancel ends a capture within a second or two, whatever the numbers: a
-- ledger of 600,000 rows of the largest amounts accepted, whose valuation
-- takes seconds, is cancelled while it is being valued.
SET ROLE snapshot_test_owner;
INSERT INTO app.portfolios VALUES ('c2000000-0000-0000-0000-000000000001', 'huge numbers', 'USD');
INSERT INTO app.transactions (portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date)
SELECT 'c2000000-0000-0000-0000-000000000001', NULL, 'DEPOSIT',
       1234567890123456789012345678901234567890.1234567890123456789012345678901234567891,
       9876543210987654321098765432109876543210.9876543210987654321098765432109876543219,
       0.1234567890123456789012345678901234567891, 1.0000000000000000000000000000000000000003,
       '2026-03-02 09:00+00'::timestamptz + n * interval '1 microsecond'
  FROM generate_series(1, 600000) AS n;
RESET ROLE;
SELECT dblink_connect('capture', pg_temp.connstr(current_user));
CREATE TEMP TABLE clock (started timestamptz, cancelled timestamptz, ended timestamptz);
SELECT dblink_send_query('capture', $$SELECT status FROM snapshot.capture_all_snapshots('2026-03-03', 'cancelled')$$);
-- the caller waits for its run, whose worker reports its batch once the
-- portfolios are read; give the valuation of the large ledger time to start
SELECT ok(pg_temp.wait_for('capture_all_snapshots: waiting for its run', false), 'cancel: the caller waits for its run');
SELECT pg_sleep(1.5);
INSERT INTO clock (cancelled) VALUES (clock_timestamp());
SELECT is(dblink_cancel_query('capture'), 'OK', 'cancel: the capture is cancelled mid-valuation');
SET client_min_messages = error;
SELECT count(*) FROM dblink_get_result('capture', false) AS t(status text);
SET client_min_messages = warning;
UPDATE clock SET ended = clock_timestamp();
SELECT is(dblink_error_message('capture'), 'ERROR:  canceling statement due to user request',
    'cancel: it ends with canceling statement due to user request');
SELECT ok((SELECT ended - cancelled FROM clock) < interval '2 seconds', 'cancel: it ended within two seconds of the cancel');
-- the run's worker records the run once its own cancel lands
CREATE FUNCTION pg_temp.ended_run(by text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE s text;
BEGIN
    FOR i IN 1 .. 600 LOOP
        SELECT status || '/' || coalesce(reason, '-') INTO s FROM snapshot.snapshot_runs
         WHERE triggered_by = by AND status NOT IN ('queued', 'running');
        IF s IS NOT NULL THEN RETURN s; END IF;
        PERFORM pg_sleep(0.05);
    END LOOP;
    RETURN NULL;
END $$;
SELECT is(pg_temp.ended_run('cancelled'), 'cancelled/cancelled',
    'cancel: the run is recorded cancelled, whose reason is the cancel');
-- the same capture under statement_timeout: the run is recorded with reason timeout
SELECT dblink_disconnect('capture');
SELECT dblink_connect('capture', pg_temp.connstr(current_user));
SELECT dblink_exec('capture', 'SET statement_timeout = ''2s''');
SELECT dblink_send_query('capture', $$SELECT status FROM snapshot.capture_all_snapshots('2026-03-03', 'timed out')$$);
SET client_min_messages = error;
SELECT count(*) FROM dblink_get_result('capture', false) AS t(status text);
SET client_min_messages = warning;
SELECT is(dblink_error_message('capture'), 'ERROR:  canceling statement due to statement timeout',
    'timeout: the caller ends with canceling statement due to statement timeout');
SELECT is(pg_temp.ended_run('timed out'), 'cancelled/timeout',
    'timeout: the run is recorded cancelled, whose reason is the timeout');
SELECT dblink_disconnect('capture');

SELECT * FROM finish();
DROP EXTENSION snapshot;
DROP SCHEMA app CASCADE;
DROP OWNED BY snapshot_test_owner, snapshot_test_airflow, snapshot_test_intruder;
DROP ROLE snapshot_test_owner, snapshot_test_airflow, snapshot_test_intruder;
DROP EXTENSION dblink;
DROP EXTENSION pgtap;
