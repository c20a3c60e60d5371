-- concurrency: two captures of one date serialize (no duplicate, no deadlock,
-- no error), writers to the sources are never blocked, and pg_stat_activity
-- shows a capture's progress.  Uses committed data and dblink sessions, and
-- cleans up after itself.
\i test/preamble.sql
CREATE EXTENSION pgtap;
CREATE EXTENSION dblink;
CREATE EXTENSION snapshot;
\i examples/schema.sql
INSERT INTO assets (id, symbol, currency) VALUES ('07000000-0000-0000-0000-000000000001', 'CON', 'USD');
INSERT INTO portfolios (id, name, base_currency)
SELECT ('70000000-0000-0000-0000-0000000000' || lpad(n::text, 2, '0'))::uuid, 'concurrent ' || n, 'USD'
  FROM generate_series(1, 20) AS n;
INSERT INTO transactions (portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date)
SELECT id, '07000000-0000-0000-0000-000000000001', 'BUY', 1, 10, 0, NULL, '2026-03-01 09:00+00' FROM portfolios;
SELECT snapshot.snapshot_configure();
-- the month's partition exists (committed) before the concurrent captures;
-- creating a new month's partition serializes captures of that month
SELECT status FROM snapshot.capture_all_snapshots('2026-03-01', 'setup');

CREATE FUNCTION pg_temp.connstr() RETURNS text LANGUAGE sql AS $$
    SELECT format('host=%s port=%s dbname=%s user=%s application_name=%s',
                  split_part(current_setting('unix_socket_directories'), ',', 1),
                  current_setting('port'), current_database(), current_user, 'snapshot_test')
$$;
-- wait (at most 30 s) until a session's activity matches; returns it
CREATE FUNCTION pg_temp.wait_for_activity(pattern text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE q text;
BEGIN
    FOR i IN 1 .. 600 LOOP
        SELECT a.query INTO q FROM pg_stat_activity a
         WHERE a.application_name = 'snapshot_test' AND a.query LIKE pattern AND a.wait_event_type = 'Lock';
        IF q IS NOT NULL THEN RETURN q; END IF;
        PERFORM pg_stat_clear_snapshot();
        PERFORM pg_sleep(0.05);
    END LOOP;
    RETURN NULL;
END $$;

SELECT plan(13);
SELECT dblink_connect('first', pg_temp.connstr());
SELECT dblink_connect('second', pg_temp.connstr());

-- the first capture holds its transaction open
SELECT dblink_exec('first', 'BEGIN');
SELECT is((SELECT status FROM dblink('first', $$SELECT status FROM snapshot.capture_all_snapshots('2026-03-05', 'first')$$) AS t(status text)),
          'succeeded', 'the first capture runs');
-- the second capture of the same date waits for it
SELECT dblink_send_query('second', $$SELECT status, captured FROM snapshot.capture_all_snapshots('2026-03-05', 'second')$$);
SELECT is(pg_temp.wait_for_activity('capture_all_snapshots:%'),
          'capture_all_snapshots: waiting for another capture of the same date',
          'the second capture of the date waits, and says so in pg_stat_activity');
-- a capture of another date does not wait
SELECT is((SELECT status FROM dblink(pg_temp.connstr(), $$SELECT status FROM snapshot.capture_all_snapshots('2026-03-04', 'other date')$$) AS t(status text)),
          'succeeded', 'a capture of another date runs meanwhile');
-- writers to the sources are not blocked by the open capture
SET lock_timeout = '5s';
SELECT lives_ok($$INSERT INTO transactions (portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date)
                  VALUES ('70000000-0000-0000-0000-000000000001', '07000000-0000-0000-0000-000000000001', 'BUY', 1, 10, 0, NULL, '2026-03-02 09:00+00')$$,
                'a new transaction is written while a capture is open');
SELECT lives_ok($$UPDATE portfolios SET name = name || ' (renamed)' WHERE id = '70000000-0000-0000-0000-000000000002'$$,
                'a portfolio is updated while a capture is open');
SELECT lives_ok($$SELECT count(*) FROM snapshot.portfolio_snapshots$$, 'snapshots can be read while a capture is open');
RESET lock_timeout;
SELECT dblink_exec('first', 'COMMIT');
SELECT results_eq($$SELECT * FROM dblink_get_result('second') AS t(status text, captured int)$$,
    $$VALUES ('succeeded', 20)$$, 'the second capture then runs to success');
SELECT * FROM dblink_get_result('second') AS t(status text, captured int);
SELECT is(count(*), 20::bigint, 'one snapshot per portfolio: nothing duplicated')
  FROM snapshot.portfolio_snapshots WHERE snapshot_date = '2026-03-05';
SELECT results_eq($$SELECT count(*), min(r.triggered_by), sum(s.total_cost)
                      FROM snapshot.portfolio_snapshots s JOIN snapshot.snapshot_runs r USING (run_id)
                     WHERE s.snapshot_date = '2026-03-05'$$,
    $$VALUES (20::bigint, 'second', 210::numeric)$$,
    'the later capture''s rows won, and it saw the transaction committed meanwhile');

-- progress: block a capture partway through, one portfolio per batch
SELECT dblink_exec('first', 'SET snapshot.batch_size = 1');
CREATE FUNCTION public.block_fifth() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.portfolio_id = '70000000-0000-0000-0000-000000000005' THEN
        PERFORM pg_advisory_xact_lock_shared(4242);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER block_fifth BEFORE INSERT ON snapshot.portfolio_snapshots
    FOR EACH ROW EXECUTE FUNCTION public.block_fifth();
BEGIN;
SELECT pg_advisory_xact_lock(4242);
SELECT dblink_send_query('first', $$SELECT status FROM snapshot.capture_all_snapshots('2026-03-05', 'progress')$$);
SELECT is(pg_temp.wait_for_activity('capture_all_snapshots: %portfolios'),
          'capture_all_snapshots: 4/20 portfolios',
          'pg_stat_activity shows the portfolios done out of the total');
-- meanwhile another session commits a trade of the last portfolio and a new close
SELECT dblink_exec('second', $$INSERT INTO transactions (portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date)
    VALUES ('70000000-0000-0000-0000-000000000020', '07000000-0000-0000-0000-000000000001', 'BUY', 5, 10, 0, NULL, '2026-03-03 09:00+00')$$);
SELECT dblink_exec('second', $$INSERT INTO asset_prices VALUES ('07000000-0000-0000-0000-000000000001', '2026-03-04', 99)$$);
COMMIT;
SELECT is((SELECT status FROM dblink_get_result('first') AS t(status text)), 'succeeded',
          'the blocked capture then finishes');
SELECT * FROM dblink_get_result('first') AS t(status text);
SELECT results_eq($$SELECT sum(total_cost), sum(market_value), sum(missing_prices)::int FROM snapshot.portfolio_snapshots
                     WHERE snapshot_date = '2026-03-05'$$,
    $$VALUES (210::numeric, 210::numeric, 20)$$,
    'the whole run valued one snapshot of the sources: neither the trade nor the close committed meanwhile');
SELECT results_eq($$SELECT total_cost, market_value FROM snapshot.capture_snapshot('70000000-0000-0000-0000-000000000020', '2026-03-05')$$,
    $$VALUES (60::numeric, 594::numeric)$$,
    'a capture after the run sees both');

SELECT * FROM finish();
SELECT dblink_disconnect('first');
SELECT dblink_disconnect('second');
DROP TRIGGER block_fifth ON snapshot.portfolio_snapshots;
DROP FUNCTION public.block_fifth();
DROP EXTENSION snapshot;
DROP TABLE transactions, asset_prices, fx_rates, assets, portfolios;
DROP EXTENSION dblink;
DROP EXTENSION pgtap;
