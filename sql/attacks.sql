-- attacks: the owner of the application's tables is an ordinary, untrusted
-- role.  Each block mounts one attack of the security issue as that owner,
-- lets a privileged role (the limited Airflow role, the application, the
-- superuser) capture or configure, and asserts that the owner is still not a
-- superuser, that nothing leaked, and what the capture did.  Every block runs
-- in a savepoint that is rolled back, so each starts from the same sources.
-- The attacks that need other sessions (the date lock, the valuation
-- workers, a cancel) are in attacks_sessions.sql; the size limits in limits.sql.
\i test/preamble.sql
BEGIN;
CREATE EXTENSION pgtap;
CREATE EXTENSION snapshot;

CREATE ROLE snapshot_test_owner;        -- owns the application's tables
CREATE ROLE snapshot_test_airflow;      -- the limited role of examples/airflow_role.sql
CREATE ROLE snapshot_test_app;          -- the application: on-demand captures
CREATE SCHEMA app AUTHORIZATION snapshot_test_owner;
GRANT USAGE ON SCHEMA snapshot TO snapshot_test_airflow, snapshot_test_app;
GRANT EXECUTE ON FUNCTION snapshot.capture_all_snapshots(date, text),
                          snapshot.capture_all_snapshots_if_missing(date, text) TO snapshot_test_airflow;
GRANT SELECT ON snapshot.snapshot_runs, snapshot.snapshot_run_errors TO snapshot_test_airflow;
GRANT EXECUTE ON FUNCTION snapshot.capture_snapshot(uuid, date) TO snapshot_test_app;

-- The owner's tables and data, a log of the rights its code ran with, and a
-- probe: it tries to make the owner a superuser, then logs who it ran as.
SET LOCAL ROLE snapshot_test_owner;
SET LOCAL search_path = app;
\i examples/schema.sql
INSERT INTO assets (id, symbol, currency) VALUES ('0a000000-0000-0000-0000-000000000001', 'ATK', 'USD');
INSERT INTO portfolios (id, name, base_currency) VALUES
    ('a0000000-0000-0000-0000-000000000001', 'one', 'USD'),
    ('a0000000-0000-0000-0000-000000000002', 'two', 'USD');
INSERT INTO transactions (portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date)
SELECT id, '0a000000-0000-0000-0000-000000000001', 'BUY', 2, 10, 0, NULL, '2026-03-02 09:00+00' FROM portfolios;
INSERT INTO asset_prices VALUES ('0a000000-0000-0000-0000-000000000001', '2026-03-04', 12);
CREATE TABLE seen (who name, what text);
CREATE FUNCTION probe(what text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        EXECUTE 'ALTER ROLE snapshot_test_owner SUPERUSER';
    EXCEPTION WHEN insufficient_privilege THEN NULL;
    END;
    INSERT INTO app.seen VALUES (current_user, what);
    RETURN true;
END $$;
RESET search_path;
RESET ROLE;

CREATE FUNCTION pg_temp.owner_is_superuser() RETURNS boolean LANGUAGE sql
    AS $$ SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = 'snapshot_test_owner' $$;
CREATE FUNCTION pg_temp.seen() RETURNS TABLE (who text, what text) LANGUAGE sql
    AS $$ SELECT DISTINCT who::text, what FROM app.seen ORDER BY 1, 2 $$;
CREATE FUNCTION pg_temp.configure(portfolios text DEFAULT 'app.portfolios', assets text DEFAULT 'app.assets',
                                  transactions text DEFAULT 'app.transactions', prices text DEFAULT 'app.asset_prices',
                                  fx_rates text DEFAULT NULL) RETURNS void LANGUAGE sql
    AS $$ SELECT snapshot.snapshot_configure(portfolios, assets, transactions, prices, fx_rates) $$;
SELECT pg_temp.configure();

SELECT plan(66);

-- 1. A rule or view whose query calls the owner's function, read by a
-- capture someone else started.  The owner turns an empty configured table
-- into a view, keeping its OID, with CREATE RULE "_RETURN".
SAVEPOINT attack;
SET LOCAL ROLE snapshot_test_owner;
CREATE TABLE app.plain_rates (from_currency text, to_currency text, rate_date date, rate numeric);
RESET ROLE;
SELECT pg_temp.configure(fx_rates => 'app.plain_rates');
SET LOCAL ROLE snapshot_test_owner;
CREATE RULE "_RETURN" AS ON SELECT TO app.plain_rates DO INSTEAD
    SELECT 'EUR'::text AS from_currency, 'USD'::text AS to_currency, '2026-03-01'::date AS rate_date,
           1.1::numeric AS rate
     WHERE app.probe('rule');
RESET ROLE;
SELECT is(relkind, 'v', '1 rule: the configured table is now a view with the same OID')
  FROM pg_class WHERE oid = (SELECT fx_rates FROM snapshot.snapshot_config);
SET LOCAL ROLE snapshot_test_airflow;
SELECT results_eq($$SELECT status, captured FROM snapshot.capture_all_snapshots('2026-03-05', 'airflow')$$,
    $$VALUES ('succeeded', 2)$$, '1 rule: the limited role''s capture reads the view');
RESET ROLE;
SELECT results_eq('SELECT * FROM pg_temp.seen()', $$VALUES ('snapshot_test_owner', 'rule')$$,
    '1 rule: the owner''s function ran, with the owner''s rights only');
SELECT ok(NOT pg_temp.owner_is_superuser(), '1 rule: the owner is not a superuser');
ROLLBACK TO SAVEPOINT attack;

SAVEPOINT attack;
SET LOCAL ROLE snapshot_test_owner;
CREATE VIEW app.portfolios_v AS SELECT id, base_currency FROM app.portfolios WHERE app.probe('view');
RESET ROLE;
SELECT pg_temp.configure(portfolios => 'app.portfolios_v');
SET LOCAL ROLE snapshot_test_app;
SELECT is((snapshot.capture_snapshot('a0000000-0000-0000-0000-000000000001', '2026-03-05')).market_value,
    24::numeric, '1 view: the application''s capture_snapshot reads the view');
RESET ROLE;
SELECT results_eq('SELECT * FROM pg_temp.seen()', $$VALUES ('snapshot_test_owner', 'view')$$,
    '1 view: the owner''s function ran, with the owner''s rights only');
SELECT ok(NOT pg_temp.owner_is_superuser(), '1 view: the owner is not a superuser');
ROLLBACK TO SAVEPOINT attack;

-- a function declared IMMUTABLE in a view is folded when a query over the
-- view is planned: snapshot_configure plans nothing; a capture plans as the owner
SAVEPOINT attack;
SET LOCAL ROLE snapshot_test_owner;
CREATE FUNCTION app.folded() RETURNS text LANGUAGE plpgsql IMMUTABLE
    AS $$ BEGIN PERFORM app.probe('folded'); RETURN 'USD'; END $$;
CREATE VIEW app.portfolios_f AS SELECT id, app.folded() AS base_currency FROM app.portfolios;
RESET ROLE;
SELECT pg_temp.configure(portfolios => 'app.portfolios_f');
SELECT is((SELECT count(*) FROM app.seen), 0::bigint,
    '1 immutable: snapshot_configure ran nothing of the owner''s (it plans no query over the relations)');
SELECT is((snapshot.capture_all_snapshots('2026-03-05', 'superuser')).captured, 2,
    '1 immutable: a superuser''s capture reads the view');
SELECT results_eq('SELECT * FROM pg_temp.seen()', $$VALUES ('snapshot_test_owner', 'folded')$$,
    '1 immutable: the planner folded the function with the owner''s rights');
SELECT ok(NOT pg_temp.owner_is_superuser(), '1 immutable: the owner is not a superuser');
ROLLBACK TO SAVEPOINT attack;

-- 2. A column turned into a type of the owner's, whose cast the capture's
-- ::text or ::numeric would call: refused before anything is read.
SAVEPOINT attack;
SET LOCAL ROLE snapshot_test_owner;
CREATE TYPE app.currency AS ENUM ('USD', 'EUR');
CREATE FUNCTION app.currency_text(app.currency) RETURNS text LANGUAGE plpgsql
    AS $$ BEGIN PERFORM app.probe('cast'); RETURN pg_catalog.format('%s', $1); END $$;
CREATE CAST (app.currency AS text) WITH FUNCTION app.currency_text(app.currency);
ALTER TABLE app.portfolios ALTER COLUMN base_currency TYPE app.currency USING base_currency::app.currency;
RESET ROLE;
SET LOCAL ROLE snapshot_test_airflow;
SELECT throws_ok($$SELECT snapshot.capture_all_snapshots('2026-03-05', 'airflow')$$, '42501',
    'column "base_currency" of relation app.portfolios has type app.currency, which a superuser does not own',
    '2 enum: the limited role''s capture refuses the owner''s type');
RESET ROLE;
SET LOCAL ROLE snapshot_test_app;
SELECT throws_ok($$SELECT snapshot.capture_snapshot('a0000000-0000-0000-0000-000000000001', '2026-03-05')$$, '42501',
    'column "base_currency" of relation app.portfolios has type app.currency, which a superuser does not own',
    '2 enum: so does the application''s capture_snapshot');
RESET ROLE;
SELECT throws_ok($$SELECT pg_temp.configure()$$, '42501', NULL, '2 enum: and so does snapshot_configure');
SELECT is((SELECT count(*) FROM app.seen) + (SELECT count(*) FROM snapshot.snapshot_runs)
          + (SELECT count(*) FROM snapshot.portfolio_snapshots), 0::bigint,
    '2 enum: the cast never ran, and nothing was written');
SELECT ok(NOT pg_temp.owner_is_superuser(), '2 enum: the owner is not a superuser');
ROLLBACK TO SAVEPOINT attack;

SAVEPOINT attack;
SET LOCAL ROLE snapshot_test_owner;
CREATE TYPE app.boxed AS (amount numeric);
CREATE FUNCTION app.boxed_numeric(app.boxed) RETURNS numeric LANGUAGE plpgsql
    AS $$ BEGIN PERFORM app.probe('composite'); RETURN ($1).amount; END $$;
CREATE CAST (app.boxed AS numeric) WITH FUNCTION app.boxed_numeric(app.boxed);
ALTER TABLE app.transactions ALTER COLUMN quantity TYPE app.boxed USING ROW(quantity)::app.boxed;
RESET ROLE;
SET LOCAL ROLE snapshot_test_airflow;
SELECT throws_ok($$SELECT snapshot.capture_all_snapshots('2026-03-05', 'airflow')$$, '42501',
    'column "quantity" of relation app.transactions has type app.boxed, which a superuser does not own',
    '2 composite: the capture refuses the owner''s composite type');
RESET ROLE;
SELECT is((SELECT count(*) FROM app.seen), 0::bigint, '2 composite: its cast never ran');
ROLLBACK TO SAVEPOINT attack;

-- a built-in type cast by a function of the owner's (a careless superuser
-- created the cast): refused, naming the function
SAVEPOINT attack;
SET LOCAL ROLE snapshot_test_owner;
CREATE FUNCTION app.point_numeric(point) RETURNS numeric LANGUAGE plpgsql
    AS $$ BEGIN PERFORM app.probe('point'); RETURN $1[0]::numeric; END $$;
RESET ROLE;
CREATE CAST (point AS numeric) WITH FUNCTION app.point_numeric(point);
ALTER TABLE app.asset_prices ALTER COLUMN close TYPE point USING point(close::float8, 0);
SELECT throws_ok($$SELECT snapshot.capture_all_snapshots('2026-03-05', 'superuser')$$, '42501',
    'column "close" of relation app.asset_prices is read through function app.point_numeric(point), which a superuser does not own',
    '2 cast: a cast function the owner owns is refused, even on a built-in type');
SELECT is((SELECT count(*) FROM app.seen), 0::bigint, '2 cast: it never ran');
DROP CAST (point AS numeric);
SELECT throws_ok($$SELECT snapshot.capture_all_snapshots('2026-03-05', 'superuser')$$, '42804',
    'column "close" of relation app.asset_prices has an unusable type',
    '2 cast: a column changed to a type without a cast is refused at the capture');
ROLLBACK TO SAVEPOINT attack;

-- relations of other kinds, and of other owners
SAVEPOINT attack;
SET LOCAL ROLE snapshot_test_owner;
CREATE MATERIALIZED VIEW app.portfolios_m AS SELECT id, base_currency FROM app.portfolios;
RESET ROLE;
SELECT throws_ok($$SELECT pg_temp.configure(portfolios => 'app.portfolios_m')$$, '42809',
    'relation app.portfolios_m is not a table or view', '2 kind: a materialized view is refused');
ALTER TABLE app.asset_prices OWNER TO snapshot_test_app;
SELECT throws_ok($$SELECT snapshot.capture_all_snapshots('2026-03-05', 'superuser')$$, '42501',
    'the configured relations do not share one owner', '2 owner: relations of two owners are refused at the capture');
SELECT throws_ok($$SELECT pg_temp.configure()$$, '42501',
    'the configured relations do not share one owner', '2 owner: ... and at configuration');
ROLLBACK TO SAVEPOINT attack;

-- 3. A security_invoker view over pg_authid would copy password hashes into
-- the snapshots, which the owner can read: the owner cannot read pg_authid.
SAVEPOINT attack;
ALTER ROLE snapshot_test_app PASSWORD 'app-secret';
SET LOCAL ROLE snapshot_test_owner;
CREATE VIEW app.leaky_assets WITH (security_invoker) AS
SELECT a.id, a.symbol || coalesce((SELECT string_agg(r.rolpassword, ',') FROM pg_catalog.pg_authid r), '') AS symbol,
       a.currency
  FROM app.assets a;
RESET ROLE;
SELECT pg_temp.configure(assets => 'app.leaky_assets');
SET LOCAL ROLE snapshot_test_airflow;
SELECT throws_ok($$SELECT snapshot.capture_all_snapshots('2026-03-05', 'airflow')$$, '42501',
    'permission denied for table pg_authid', '3 leak: the capture reads the view with the owner''s rights');
RESET ROLE;
SELECT is((SELECT count(*) FROM snapshot.portfolio_snapshots WHERE positions::text LIKE '%SCRAM-SHA-256%'), 0::bigint,
    '3 leak: no snapshot holds a password hash');
ROLLBACK TO SAVEPOINT attack;

-- 4. snapshot_configure runs with search_path = pg_catalog, pg_temp and reads
-- only the catalogs; names resolve in the caller's path
SAVEPOINT attack;
CREATE FUNCTION public.trap_eq(text, text) RETURNS boolean LANGUAGE plpgsql
    AS $$ BEGIN PERFORM app.probe('operator'); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text, FUNCTION = public.trap_eq);
ALTER FUNCTION public.trap_eq(text, text) OWNER TO snapshot_test_owner;
ALTER OPERATOR public.= (text, text) OWNER TO snapshot_test_owner;
SET LOCAL ROLE snapshot_test_owner;
SET LOCAL search_path = public, pg_catalog;
SELECT 'armed' = 'armed' AS armed \gset
RESET search_path;
RESET ROLE;
SELECT results_eq('SELECT * FROM pg_temp.seen()', $$VALUES ('snapshot_test_owner', 'operator')$$,
    '4 operator: the trap is armed: an unqualified = on text calls it');
DELETE FROM app.seen;
SET LOCAL search_path = public, pg_catalog;
SELECT snapshot.snapshot_configure('app.portfolios', 'app.assets', 'app.transactions',
                                   'app.asset_prices', NULL, 'fifo', 4);
RESET search_path;
SELECT is((SELECT count(*) FROM app.seen), 0::bigint, '4 operator: configure behind that search_path never calls it');
SELECT results_eq('SELECT cost_method, stale_after_days FROM snapshot.snapshot_config', $$VALUES ('fifo', 4)$$,
    '4 operator: ... and stores the configuration');
SELECT ok((SELECT proconfig FROM pg_proc
            WHERE oid = 'snapshot.snapshot_configure(text, text, text, text, text, text, integer, numeric, name[])'::regprocedure)
          = ARRAY['search_path=pg_catalog, pg_temp'], '4 operator: snapshot_configure runs with search_path = pg_catalog, pg_temp');
ROLLBACK TO SAVEPOINT attack;

SAVEPOINT attack;
SELECT format('CREATE SCHEMA %I AUTHORIZATION snapshot_test_owner', current_user) \gexec
SET LOCAL ROLE snapshot_test_owner;
SELECT format('CREATE VIEW %I.portfolios AS SELECT id, base_currency FROM app.portfolios WHERE app.probe(''user schema'')',
              session_user) \gexec
RESET ROLE;
SET LOCAL search_path = "$user", app;
SELECT snapshot.snapshot_configure();
RESET search_path;
SELECT is((SELECT portfolios::oid FROM snapshot.snapshot_config), format('%I.portfolios', current_user)::regclass::oid,
    '4 user schema: an unqualified name resolves in the caller''s path, "$user" first, as documented');
SELECT is((SELECT assets::oid FROM snapshot.snapshot_config), 'app.assets'::regclass::oid,
    '4 user schema: ... and falls through to the next schema of the path');
SELECT is((SELECT count(*) FROM app.seen), 0::bigint, '4 user schema: resolving ran nothing of the owner''s');
SELECT snapshot.snapshot_configure(search_path => '{app}');
SELECT is((SELECT portfolios::oid FROM snapshot.snapshot_config), 'app.portfolios'::regclass::oid,
    '4 user schema: an explicit search_path resolves there');
SELECT throws_ok($$SELECT snapshot.snapshot_configure(portfolios => 'nowhere.portfolios')$$, '42P01',
    'relation "nowhere.portfolios" does not exist', '4: a qualified name is taken as given');
ROLLBACK TO SAVEPOINT attack;

-- 5. NULLs where the C code needs values.  A cast of the owner's type that
-- returns NULL crashed the server (strlen(NULL)): now it is refused.  NULLs
-- from views are skipped and counted (market data) or fail their portfolio
-- with 22004 (the ledger).
SAVEPOINT attack;
SELECT pg_postmaster_start_time() AS started \gset
SET LOCAL ROLE snapshot_test_owner;
CREATE DOMAIN app.code AS text;
CREATE TYPE app.nullish AS (code text);
CREATE FUNCTION app.nullish_text(app.nullish) RETURNS text LANGUAGE sql AS $$ SELECT NULL::text $$;
CREATE CAST (app.nullish AS text) WITH FUNCTION app.nullish_text(app.nullish);
CREATE TABLE app.null_rates (from_currency app.nullish, to_currency text, rate_date date, rate numeric);
INSERT INTO app.null_rates VALUES (ROW('EUR'), 'USD', '2026-03-01', 1.1);
RESET ROLE;
SELECT throws_ok($$SELECT pg_temp.configure(fx_rates => 'app.null_rates')$$, '42501',
    'column "from_currency" of relation app.null_rates has type app.nullish, which a superuser does not own',
    '5 crash: the NULL-returning cast is refused');
SELECT is(pg_postmaster_start_time(), :'started'::timestamptz, '5 crash: the server is still up, never restarted');
ROLLBACK TO SAVEPOINT attack;

SAVEPOINT attack;
SET LOCAL ROLE snapshot_test_owner;
CREATE VIEW app.assets_n AS
SELECT id, symbol, currency FROM app.assets UNION ALL SELECT NULL::uuid, 'NOID', 'USD';
CREATE VIEW app.prices_n AS
SELECT asset_id, price_date, close FROM app.asset_prices
 UNION ALL SELECT NULL::uuid, '2026-03-01'::date, 5::numeric;
CREATE VIEW app.rates_n (from_currency, to_currency, rate_date, rate) AS
VALUES ('EUR'::text, NULL::text, '2026-03-01'::date, 1.1::numeric),
       (NULL, 'USD', '2026-03-01', 1.2),
       ('CHF', 'USD', '2026-03-01', 1e45),
       ('GBP', 'USD', '2026-03-01', 1.3);
CREATE VIEW app.transactions_n AS
SELECT id, portfolio_id, asset_id,
       CASE WHEN portfolio_id = 'a0000000-0000-0000-0000-000000000002' THEN NULL ELSE type END AS type,
       quantity, price, fee, exchange_rate, transaction_date
  FROM app.transactions;
RESET ROLE;
SELECT pg_temp.configure(assets => 'app.assets_n', prices => 'app.prices_n', fx_rates => 'app.rates_n',
                         transactions => 'app.transactions_n');
SET LOCAL ROLE snapshot_test_airflow;
SELECT results_eq($$SELECT status, captured, failed, skipped_rows FROM snapshot.capture_all_snapshots('2026-03-05', 'airflow')$$,
    $$VALUES ('partial', 1, 1, 5)$$,
    '5 nulls: an asset and a price without an id, two rates without a currency and one out of bounds are skipped and counted');
SELECT results_eq($$SELECT sqlstate, message FROM snapshot.snapshot_run_errors$$,
    $$VALUES ('22004', 'portfolio a0000000-0000-0000-0000-000000000002, transaction 2: type is null')$$,
    '5 nulls: a ledger row without a type fails its portfolio alone, with 22004');
RESET ROLE;
SELECT is((SELECT market_value FROM snapshot.portfolio_snapshots), 24::numeric, '5 nulls: the other portfolio is valued');
ROLLBACK TO SAVEPOINT attack;

-- 6. The capture's cursors, open while the owner's code runs: the owner can
-- neither list them, nor fetch from them, nor close them (closing one let the
-- owner's next cursor take its place, run with the superuser's rights, or
-- crash the server).
SAVEPOINT attack;
SET LOCAL ROLE snapshot_test_owner;
CREATE FUNCTION app.snoop() RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    c refcursor;
    found integer := 0;
    r record;
BEGIN
    FOR i IN 1 .. 20 LOOP
        BEGIN
            c := format('<unnamed portal %s>', i);
            FETCH c INTO r;
            found := found + 1;
        EXCEPTION WHEN invalid_cursor_name THEN NULL;
        END;
    END LOOP;
    INSERT INTO app.seen VALUES (current_user,
        format('%s listed, %s fetched', (SELECT count(*) FROM pg_catalog.pg_cursors), found));
    RETURN true;
END $$;
CREATE FUNCTION app.close_all() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE 'CLOSE ALL';
    RETURN true;
END $$;
CREATE VIEW app.transactions_s AS SELECT * FROM app.transactions WHERE app.snoop();
CREATE VIEW app.transactions_c AS SELECT * FROM app.transactions WHERE app.close_all();
RESET ROLE;
SELECT pg_temp.configure(transactions => 'app.transactions_s');
SELECT (snapshot.capture_all_snapshots('2026-03-05', 'superuser')).captured AS snooped \gset
SELECT results_eq('SELECT * FROM pg_temp.seen()', $$VALUES ('snapshot_test_owner', '0 listed, 0 fetched')$$,
    '6 cursors: the owner''s code finds no cursor of the capture to list or fetch from');
SELECT is(:snooped, 2, '6 cursors: and the capture is whole');
SELECT pg_temp.configure(transactions => 'app.transactions_c');
SELECT throws_ok($$SELECT snapshot.capture_all_snapshots('2026-03-05', 'superuser')$$, '42501',
    'cannot execute CLOSE within security-restricted operation',
    '6 cursors: CLOSE ALL in the owner''s code is refused, and the capture fails cleanly');
SELECT ok(NOT pg_temp.owner_is_superuser(), '6 cursors: the owner is not a superuser');
ROLLBACK TO SAVEPOINT attack;

-- 7. Bounded work per call: a floor on the date, one capture per transaction,
-- settings only a superuser may change.
SAVEPOINT attack;
CREATE TEMP VIEW partitions AS
SELECT count(*) AS n FROM pg_inherits WHERE inhparent = 'snapshot.portfolio_snapshots'::regclass;
SELECT n AS partitions_before FROM partitions \gset
SET LOCAL ROLE snapshot_test_airflow;
SELECT throws_ok($$SELECT snapshot.capture_all_snapshots('1969-12-31', 'airflow')$$, '22023',
    'snapshot_date 1969-12-31 is out of range', '7 floor: a date before snapshot.min_date is refused');
SELECT throws_ok($$SELECT snapshot.capture_all_snapshots('0044-03-15 BC', 'airflow')$$, '22023',
    'snapshot_date 0044-03-15 BC is out of range', '7 floor: a BC date, with the same message');
SELECT throws_ok($$SELECT snapshot.capture_all_snapshots_if_missing('1800-01-01', 'airflow')$$, '22023',
    'snapshot_date 1800-01-01 is out of range', '7 floor: the fallback, with the same message');
SELECT throws_ok($$SELECT snapshot.capture_all_snapshots(d::date, 'airflow') FROM generate_series(date '1970-01-01', date '2026-01-01', interval '1 month') AS d$$,
    '55000', 'a transaction may capture only once', '7 once: one statement cannot capture month after month');
RESET ROLE;
SET LOCAL ROLE snapshot_test_app;
SELECT throws_ok($$SELECT snapshot.capture_snapshot('a0000000-0000-0000-0000-000000000001', '1900-01-01')$$, '22023',
    'snapshot_date 1900-01-01 is out of range', '7 floor: capture_snapshot, with the same message');
RESET ROLE;
SELECT is((SELECT n FROM partitions), :partitions_before::bigint, '7: none of these made a partition');
SET LOCAL snapshot.min_date = '2026-03-05';
SELECT throws_like($$SELECT snapshot.capture_all_snapshots('2026-03-04', 'superuser')$$,
    'snapshot_date 2026-03-04 is out of range', '7 floor: a superuser may raise snapshot.min_date');
RESET snapshot.min_date;
SET LOCAL ROLE snapshot_test_airflow;
SELECT throws_ok($$SET snapshot.min_date = '1800-01-01'$$, '42501', NULL, '7 settings: only a superuser sets snapshot.min_date');
SELECT throws_ok($$SET snapshot.batch_size = 100000$$, '42501', NULL, '7 settings: ... snapshot.batch_size');
SELECT throws_ok($$SET snapshot.portfolios_per_worker = 1$$, '42501', NULL, '7 settings: ... snapshot.portfolios_per_worker');
SELECT throws_ok($$SET snapshot.max_workers = 64$$, '42501', NULL, '7 settings: ... snapshot.max_workers');
RESET ROLE;
SELECT throws_ok($$SET snapshot.min_date = '2026-02-30'$$, '22023', NULL, '7 settings: snapshot.min_date must be a real date');
ROLLBACK TO SAVEPOINT attack;

SAVEPOINT attack;
SET LOCAL ROLE snapshot_test_airflow;
SELECT is((snapshot.capture_all_snapshots('2026-03-05', 'airflow')).status, 'succeeded', '7 once: a first capture');
SELECT throws_ok($$SELECT snapshot.capture_all_snapshots('2026-03-05', 'airflow')$$, '55000',
    'a transaction may capture only once', '7 once: a second capture of the date in the same transaction is refused');
SELECT throws_ok($$SELECT snapshot.capture_all_snapshots('2026-03-04', 'airflow')$$, '55000',
    'a transaction may capture only once', '7 once: so is a capture of another date');
RESET ROLE;
ROLLBACK TO SAVEPOINT attack;

SAVEPOINT attack;
SET LOCAL ROLE snapshot_test_app;
SELECT is((snapshot.capture_snapshot('a0000000-0000-0000-0000-000000000001', '2026-03-05')).total_cost
          + (snapshot.capture_snapshot('a0000000-0000-0000-0000-000000000002', '2026-03-05')).total_cost, 40::numeric,
    '7 once: the application captures any number of portfolios of one date');
SELECT throws_ok($$SELECT snapshot.capture_snapshot('a0000000-0000-0000-0000-000000000001', '2026-03-04')$$, '55000',
    'a transaction may capture only once', '7 once: ... but not a second date');
SAVEPOINT undone;
SELECT throws_ok($$SELECT snapshot.capture_snapshot('a0000000-0000-0000-0000-000000000001', '2026-03-04')$$, '55000',
    NULL, '7 once: (still refused in a nested savepoint)');
ROLLBACK TO SAVEPOINT undone;
RESET ROLE;
ROLLBACK TO SAVEPOINT attack;

SAVEPOINT attack;
SET LOCAL ROLE snapshot_test_airflow;
SAVEPOINT undone;
SELECT snapshot.capture_all_snapshots('2026-03-04', 'airflow') IS NOT NULL AS captured \gset
ROLLBACK TO SAVEPOINT undone;
SELECT is((snapshot.capture_all_snapshots('2026-03-05', 'airflow')).status, 'succeeded',
    '7 once: a capture rolled back to a savepoint does not count');
RESET ROLE;
SELECT is((snapshot.capture_all_snapshots('2026-03-04', 'superuser')).status, 'succeeded',
    '7 once: a superuser, who could make partitions by hand, is not bound');
ROLLBACK TO SAVEPOINT attack;

-- 8 collisions: asset ids chosen so that a hash of their words would collide
-- (each id's two halves equal, or its words XOR to 0), and a ledger over
-- them: the capture hashes ids whole with a seed of its own, and values each
-- position right.  (How long such a capture takes is measured, not asserted:
-- 80,000 of these ids took 14.5 s with the XOR hash, 0.3 s with this one.)
SAVEPOINT attack;
SET LOCAL ROLE snapshot_test_owner;
INSERT INTO app.assets (id, symbol, currency)
SELECT (lpad(to_hex(n), 8, '0') || '-' || left(lpad(to_hex(n), 8, '0'), 4) || '-' || right(lpad(to_hex(n), 8, '0'), 4)
        || '-0000-000000000000')::uuid, 'C' || n, 'USD'
  FROM generate_series(1, 3000) AS n;
INSERT INTO app.asset_prices (asset_id, price_date, close)
SELECT a.id, '2026-03-04', substr(a.symbol, 2)::numeric FROM app.assets a WHERE a.symbol LIKE 'C%';
INSERT INTO app.transactions (portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date)
SELECT 'a0000000-0000-0000-0000-000000000001', a.id, 'BUY', 1, 1, 0, NULL, '2026-03-02 09:00+00'
  FROM app.assets a WHERE a.symbol LIKE 'C%';
RESET ROLE;
SELECT results_eq(
    $$SELECT market_value, total_cost, position_count, missing_prices,
             (SELECT count(*) FROM jsonb_array_elements(positions) e
               WHERE e->>'symbol' LIKE 'C%' AND (e->>'price')::numeric = substr(e->>'symbol', 2)::numeric)
        FROM snapshot.capture_snapshot('a0000000-0000-0000-0000-000000000001', '2026-03-05')$$,
    $$VALUES (4501524::numeric, 3020::numeric, 3001, 0, 3000::bigint)$$,
    '8 collisions: 3,000 colliding asset ids, each position priced at its own close (24 + 1 + ... + 3000)');
ROLLBACK TO SAVEPOINT attack;

SELECT ok(NOT pg_temp.owner_is_superuser(), 'after every attack, the owner is not a superuser');

SELECT * FROM finish();
ROLLBACK;
