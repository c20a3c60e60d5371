-- parallel: with valuation workers (snapshot.max_workers), a capture of all
-- writes exactly the snapshots and errors the calling backend alone writes
-- (every portfolio with splits, transfers, interest and tax among its rows);
-- workers that cannot start leave their range to the caller; a worker's
-- error fails the capture with its own SQLSTATE; and a transaction that wrote
-- before the capture is valued without workers, which could not see its rows.
--
-- Workers read in transactions of their own, so this file commits its data
-- (no BEGIN ... ROLLBACK) and drops everything at the end.
\i test/preamble.sql
CREATE SCHEMA par;
SET search_path = par, public;
CREATE EXTENSION pgtap SCHEMA par;
\i examples/schema.sql
\set portfolios 240
\set assets 30
\set days 20
\i examples/demo_data.sql
RESET search_path;
SET search_path = par, public;

-- two portfolios that cannot be valued: a short sale, and no base currency
ALTER TABLE portfolios ALTER COLUMN base_currency DROP NOT NULL;
INSERT INTO portfolios (id, name, base_currency) VALUES
    ('ffffffff-0000-0000-0000-000000000001', 'short sale', 'USD'),
    ('00000000-0000-0000-0000-00000000000b', 'no base currency', NULL);
INSERT INTO transactions (portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date)
SELECT 'ffffffff-0000-0000-0000-000000000001', id, 'SELL', 1, 10, 0, NULL, now() - interval '3 days'
  FROM assets ORDER BY symbol LIMIT 1;

-- the ledger types of 1.4 in every valued portfolio, so that the workers are
-- compared on them too: a split of its first bought asset, a transfer in of
-- it, interest and a tax
INSERT INTO transactions (portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date)
SELECT p, a, ty, q, pr, f, NULL, now() - interval '2 days'
  FROM (SELECT DISTINCT ON (t.portfolio_id) t.portfolio_id AS p, t.asset_id AS a
          FROM transactions t
         WHERE t.type = 'BUY' AND t.portfolio_id <> 'ffffffff-0000-0000-0000-000000000001'
         ORDER BY t.portfolio_id, t.transaction_date, t.id) AS first_buy,
       (VALUES ('SPLIT', 2, NULL::numeric, NULL::numeric), ('TRANSFER_IN', 3, 11.5, 0.5),
               ('INTEREST', 1, 4.25, 0.25), ('TAX', 1, 1.75, NULL)) AS v(ty, q, pr, f);

CREATE EXTENSION snapshot;
-- the par relations, with the portfolios relation given
CREATE FUNCTION configure(portfolios text) RETURNS void LANGUAGE sql AS $$
    SELECT snapshot.snapshot_configure(portfolios => portfolios, assets => 'par.assets',
                                       transactions => 'par.transactions', prices => 'par.asset_prices',
                                       fx_rates => 'par.fx_rates')
$$;
SELECT configure('par.portfolios');
CREATE TABLE day AS SELECT (now() AT TIME ZONE 'UTC')::date - 1 AS d;
CREATE VIEW snapshot_values AS
SELECT portfolio_id, base_currency, market_value, cash_balance, net_worth, total_cost, unrealized_pnl,
       realized_pnl, income, fees, taxes, net_contribution, day_flow, position_count, missing_prices,
       stale_prices, missing_fx, positions
  FROM snapshot.portfolio_snapshots WHERE snapshot_date = (SELECT d FROM day);
CREATE VIEW run_errors AS
SELECT portfolio_id, sqlstate, message, detail FROM snapshot.snapshot_run_errors
 WHERE run_id = (SELECT max(run_id) FROM snapshot.snapshot_runs);
SET snapshot.portfolios_per_worker = 1;

-- Each capture runs in a statement of its own that writes nothing else
-- first: CREATE TABLE ... AS would give the transaction an XID before the
-- capture starts, and so no workers.  Runs are read back by run_id.
CREATE VIEW run AS
SELECT run_id, (status, portfolios, captured, failed, workers)::text AS counts, workers
  FROM snapshot.snapshot_runs;

SELECT plan(20);

-- the reference: every portfolio valued by the calling backend
SET snapshot.max_workers = 0;
SELECT (snapshot.capture_all_snapshots((SELECT d FROM day), 'serial')).run_id AS serial_run \gset
CREATE TABLE serial_values AS SELECT * FROM snapshot_values;
CREATE TABLE serial_errors AS SELECT * FROM run_errors;
SELECT is((SELECT counts FROM run WHERE run_id = :serial_run),
          '(partial,242,240,2,0)', 'without workers: 240 captured, 2 failed, no workers');

-- two workers
SET snapshot.max_workers = 2;
SELECT (snapshot.capture_all_snapshots((SELECT d FROM day), 'parallel')).run_id AS parallel_run \gset
SELECT is((SELECT counts FROM run WHERE run_id = :parallel_run),
          '(partial,242,240,2,2)', 'with two workers: the same counts, and two workers took part');
SELECT set_eq('SELECT * FROM snapshot_values', 'SELECT * FROM serial_values',
              'two workers write exactly the snapshots the calling backend alone writes');
SELECT is((SELECT count(*) FROM snapshot.portfolio_snapshots
            WHERE snapshot_date = (SELECT d FROM day) AND run_id = :parallel_run),
          240::bigint, 'every snapshot of the date was written by the parallel run');
SELECT set_eq('SELECT * FROM run_errors', 'SELECT * FROM serial_errors',
              'the workers report the same errors, with the same SQLSTATE, message and detail');
SELECT is((SELECT count(*) FROM run_errors WHERE sqlstate = '22000' AND message LIKE '%only 0 is held%'),
          1::bigint, 'the short sale is recorded');
SELECT is((SELECT count(*) FROM run_errors WHERE sqlstate = '22004'
                                           AND portfolio_id = '00000000-0000-0000-0000-00000000000b'),
          1::bigint, 'the portfolio without a base currency is recorded');
SELECT ok((SELECT count(*) FROM serial_values) = 240 AND
          (SELECT count(DISTINCT base_currency) FROM serial_values) = 3 AND
          (SELECT sum(position_count) FROM serial_values) > 240 AND
          (SELECT count(*) FROM serial_values WHERE market_value > 0) = 240 AND
          (SELECT count(*) FROM serial_values WHERE taxes > 0) = 240,
          'the comparison covers 240 valued portfolios in three base currencies, each with the 1.4 ledger types');

-- more workers than there are background worker slots (max_worker_processes
-- is 8): the calling backend values the ranges of those that cannot start
SET snapshot.max_workers = 64;
SELECT (snapshot.capture_all_snapshots((SELECT d FROM day), 'crowded')).run_id AS crowded_run \gset
SELECT is((SELECT (status, portfolios, captured, failed)::text FROM snapshot.snapshot_runs WHERE run_id = :crowded_run),
          '(partial,242,240,2)', '64 ranges for at most 8 slots: the same counts');
SELECT ok((SELECT workers BETWEEN 1 AND 8 FROM run WHERE run_id = :crowded_run),
          'some workers took part, no more than there are slots');
SELECT set_eq('SELECT * FROM snapshot_values', 'SELECT * FROM serial_values',
              'ranges valued by workers and by the calling backend make the same snapshots');
SELECT set_eq('SELECT * FROM run_errors', 'SELECT * FROM serial_errors',
              '... and the same errors');

-- a worker's own error (here from a portfolios view that refuses to be read
-- by a valuation worker) fails the whole capture with its SQLSTATE; the
-- capture ran as a run of its own (runs that own themselves), which is
-- recorded as failed with the error as its reason
CREATE TABLE leader (pid int);
INSERT INTO leader VALUES (pg_backend_pid());
CREATE FUNCTION only_in_leader() RETURNS boolean LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF (SELECT a.backend_type FROM pg_stat_activity a WHERE a.pid = pg_backend_pid())
       = 'snapshot valuation worker' THEN
        RAISE EXCEPTION 'read outside the calling backend' USING ERRCODE = 'P0042';
    END IF;
    RETURN true;
END $$;
CREATE VIEW checked_portfolios AS SELECT * FROM portfolios WHERE only_in_leader();
SELECT configure('par.checked_portfolios');
SET snapshot.max_workers = 2;
SELECT throws_ok($$SELECT snapshot.capture_all_snapshots((SELECT d FROM par.day), 'failing worker')$$,
                 'P0042', 'read outside the calling backend',
                 'a worker''s error fails the capture with the worker''s SQLSTATE and message');
SELECT is((SELECT count(*) FROM snapshot.snapshot_runs WHERE triggered_by = 'failing worker'),
          0::bigint, 'the failed capture left no run behind (in throws_ok''s subtransaction it captured in the caller''s transaction)');
SELECT is((SELECT count(*) FROM snapshot_values WHERE portfolio_id IN (SELECT portfolio_id FROM serial_values)),
          240::bigint, '... and the earlier snapshots of the date are intact');

-- a cancelled capture stops its workers and is recorded as cancelled: the
-- capture runs in a dblink session, its workers slowed down by a view that
-- sleeps outside the calling backend, and the caller is cancelled while
-- they work
CREATE EXTENSION dblink SCHEMA par;
CREATE FUNCTION connstr() RETURNS text LANGUAGE sql AS $$
    SELECT format('host=%s port=%s dbname=%s user=%s',
                  split_part(current_setting('unix_socket_directories'), ',', 1),
                  current_setting('port'), current_database(), current_user)
$$;
-- wait (at most 30 s) until n valuation workers run; true when they do
CREATE FUNCTION wait_for_workers(n int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. 600 LOOP
        IF (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'snapshot valuation worker') = n THEN
            RETURN true;
        END IF;
        PERFORM pg_stat_clear_snapshot();
        PERFORM pg_sleep(0.05);
    END LOOP;
    RETURN false;
END $$;
CREATE FUNCTION slow_outside_leader() RETURNS boolean LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF pg_backend_pid() <> (SELECT pid FROM par.leader) THEN
        PERFORM pg_sleep(0.05);
    END IF;
    RETURN true;
END $$;
CREATE VIEW slow_portfolios AS SELECT * FROM portfolios WHERE slow_outside_leader();
SELECT configure('par.slow_portfolios');
SELECT dblink_connect('capture', connstr());
UPDATE leader SET pid = (SELECT p FROM dblink('capture', 'SELECT pg_backend_pid()') AS t(p int));
SELECT dblink_send_query('capture', format(
    $$SET snapshot.portfolios_per_worker = 1; SELECT snapshot.capture_all_snapshots(%L, 'cancelled')$$,
    (SELECT d FROM day)));
SELECT ok(wait_for_workers(2), 'the capture runs with two workers');
SELECT is(dblink_cancel_query('capture'), 'OK', 'the capture is cancelled');
SET client_min_messages = error;
SELECT count(*) FROM dblink_get_result('capture', false) AS t(r text);
SET client_min_messages = warning;
SELECT ok(wait_for_workers(0) AND
          (SELECT count(*) FROM snapshot.snapshot_runs WHERE triggered_by = 'cancelled') = 0,
          'its workers are gone, and so is its run (two statements in one query: a transaction block, so no run of its own)');
SELECT dblink_disconnect('capture');

-- a transaction that wrote before the capture: no workers (they could not
-- see its rows), so the view is only ever read by the calling backend
BEGIN;
UPDATE leader SET pid = pg_backend_pid();
SELECT (snapshot.capture_all_snapshots((SELECT d FROM day), 'after a write')).run_id AS written_run \gset
SELECT is((SELECT counts FROM run WHERE run_id = :written_run),
          '(partial,242,240,2,0)', 'after a write in the same transaction the capture uses no workers');
COMMIT;
SELECT set_eq('SELECT * FROM snapshot_values', 'SELECT * FROM serial_values',
              '... and values every portfolio all the same');

SELECT * FROM finish();
SET client_min_messages = warning;
DROP EXTENSION snapshot CASCADE;
DROP SCHEMA par CASCADE;
