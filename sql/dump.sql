-- dump: pg_dump and pg_restore keep the configuration, every snapshot (in
-- every month's partition), the run history and the run id sequence.
-- Uses committed data, a second database, and cleans up after itself.
\i test/preamble.sql
CREATE EXTENSION pgtap;
CREATE EXTENSION dblink;
CREATE EXTENSION snapshot;
\i examples/schema.sql
INSERT INTO assets (id, symbol, currency) VALUES ('0d000000-0000-0000-0000-000000000001', 'DMP', 'EUR');
INSERT INTO portfolios (id, name, base_currency) VALUES
    ('d0000000-0000-0000-0000-000000000001', 'one', 'USD'),
    ('d0000000-0000-0000-0000-000000000002', 'two', 'EUR'),
    ('d0000000-0000-0000-0000-000000000003', 'broken', 'USD');
INSERT INTO transactions (portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date) VALUES
    ('d0000000-0000-0000-0000-000000000001', '0d000000-0000-0000-0000-000000000001', 'BUY', 3, 10, 1, 1.1, '2026-02-20 09:00+00'),
    ('d0000000-0000-0000-0000-000000000002', '0d000000-0000-0000-0000-000000000001', 'BUY', 4, 10, 0, NULL, '2026-02-20 09:00+00'),
    ('d0000000-0000-0000-0000-000000000003', '0d000000-0000-0000-0000-000000000001', 'sync', 1, 10, 0, NULL, '2026-02-20 09:00+00');
INSERT INTO asset_prices VALUES ('0d000000-0000-0000-0000-000000000001', '2026-02-27', 12);
INSERT INTO fx_rates VALUES ('EUR', 'USD', '2026-02-27', 1.2);
SELECT snapshot.snapshot_configure(fx_rates => 'fx_rates', cost_method => 'average');
SELECT status FROM snapshot.capture_all_snapshots('2026-02-28', 'february');
SELECT status FROM snapshot.capture_all_snapshots('2026-03-01', 'march');

CREATE FUNCTION pg_temp.shell(cmd text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('COPY (SELECT 1) TO PROGRAM %L', cmd);
END $$;
CREATE FUNCTION pg_temp.tool(name text) RETURNS text LANGUAGE sql AS $$
    SELECT format('%s/%s -h %s -p %s -U %s', (SELECT setting FROM pg_config WHERE name = 'BINDIR'), name,
                  split_part(current_setting('unix_socket_directories'), ',', 1),
                  current_setting('port'), current_user)
$$;
CREATE FUNCTION pg_temp.dumpfile() RETURNS text LANGUAGE sql AS $$
    SELECT format('/tmp/snapshot_dump_test_%s.dump', current_setting('port'))
$$;
CREATE FUNCTION pg_temp.restored() RETURNS text LANGUAGE sql AS $$
    SELECT format('host=%s port=%s dbname=snapshot_restored user=%s',
                  split_part(current_setting('unix_socket_directories'), ',', 1),
                  current_setting('port'), current_user)
$$;
-- a fingerprint of everything the extension keeps, the same in any session
CREATE FUNCTION public.snapshot_fingerprint() RETURNS text LANGUAGE sql
SET TimeZone = 'UTC' SET DateStyle = 'ISO, YMD' AS $$
    SELECT md5(concat_ws('|',
        (SELECT string_agg(format('%s', s), ',' ORDER BY portfolio_id, snapshot_date) FROM snapshot.portfolio_snapshots s),
        (SELECT string_agg(format('%s', r), ',' ORDER BY run_id) FROM snapshot.snapshot_runs r),
        (SELECT string_agg(format('%s', e), ',' ORDER BY run_id, portfolio_id) FROM snapshot.snapshot_run_errors e),
        (SELECT string_agg(format('%s %s %s %s %s %s %s', portfolios, assets, transactions, prices, fx_rates,
                                  cost_method, stale_after_days), ',') FROM snapshot.snapshot_config)))
$$;

SELECT plan(9);
DROP DATABASE IF EXISTS snapshot_restored;
SELECT lives_ok(format('SELECT pg_temp.shell(%L)', pg_temp.tool('pg_dump') || ' -Fc -f ' || pg_temp.dumpfile() || ' ' || current_database()),
                'pg_dump of a database with snapshots');
CREATE DATABASE snapshot_restored;
SELECT lives_ok(format('SELECT pg_temp.shell(%L)', pg_temp.tool('pg_restore') || ' --exit-on-error -d snapshot_restored ' || pg_temp.dumpfile()),
                'pg_restore into a new database, without an error');

SELECT is((SELECT fp FROM dblink(pg_temp.restored(), 'SELECT public.snapshot_fingerprint()') AS t(fp text)),
          public.snapshot_fingerprint(),
          'snapshots, runs, errors and configuration are restored identically');
SELECT is((SELECT n FROM dblink(pg_temp.restored(), 'SELECT count(*) FROM snapshot.portfolio_snapshots') AS t(n bigint)),
          4::bigint, 'four snapshots (two portfolios, two dates) came back');
SELECT is((SELECT n FROM dblink(pg_temp.restored(), $$SELECT count(*) FROM pg_inherits WHERE inhparent = 'snapshot.portfolio_snapshots'::regclass$$) AS t(n bigint)),
          (SELECT count(*) FROM pg_inherits WHERE inhparent = 'snapshot.portfolio_snapshots'::regclass),
          'every monthly partition came back attached');
SELECT is((SELECT n FROM dblink(pg_temp.restored(), 'SELECT count(*) FROM snapshot.snapshot_run_errors') AS t(n bigint)),
          2::bigint, 'the error history came back');
SELECT is((SELECT r FROM dblink(pg_temp.restored(), $$SELECT run_id FROM snapshot.capture_all_snapshots('2026-03-01', 'after restore')$$) AS t(r bigint)),
          3::bigint, 'a capture after the restore continues the run ids');
SELECT is((SELECT n FROM dblink(pg_temp.restored(), $$SELECT count(*) FROM snapshot.portfolio_snapshots WHERE snapshot_date = '2026-03-01'$$) AS t(n bigint)),
          2::bigint, 'and upserts over the restored snapshots: still one per portfolio and date');
SELECT is((SELECT v FROM dblink(pg_temp.restored(), $$SELECT market_value FROM snapshot.portfolio_snapshots WHERE portfolio_id = 'd0000000-0000-0000-0000-000000000001' AND snapshot_date = '2026-03-01'$$) AS t(v numeric)),
          43.2::numeric, 'the restored configuration (FX, average cost) values as before: 3 x 12 x 1.2');

SELECT * FROM finish();
SELECT pg_temp.shell('rm -f ' || pg_temp.dumpfile());
DROP DATABASE snapshot_restored;
DROP FUNCTION public.snapshot_fingerprint();
DROP EXTENSION snapshot;
DROP TABLE transactions, asset_prices, fx_rates, assets, portfolios;
DROP EXTENSION dblink;
DROP EXTENSION pgtap;
