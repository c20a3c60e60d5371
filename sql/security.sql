-- security: EXECUTE is granted explicitly; a granted role needs no privilege
-- on the sources, row-level security does not hide portfolios from a
-- capture, and the capture functions run with a fixed search_path.
\i test/preamble.sql
BEGIN;
CREATE EXTENSION pgtap;
CREATE EXTENSION snapshot;
\i examples/schema.sql
SELECT plan(24);

INSERT INTO assets (id, symbol, currency) VALUES ('05000000-0000-0000-0000-000000000001', 'SEC', 'USD');
INSERT INTO portfolios (id, name, base_currency) VALUES
    ('50000000-0000-0000-0000-000000000001', 'visible', 'USD'),
    ('50000000-0000-0000-0000-000000000002', 'hidden by RLS', 'USD');
INSERT INTO transactions (portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date) VALUES
    ('50000000-0000-0000-0000-000000000001', '05000000-0000-0000-0000-000000000001', 'BUY', 1, 10, 0, NULL, '2026-03-01 09:00+00'),
    ('50000000-0000-0000-0000-000000000002', '05000000-0000-0000-0000-000000000001', 'BUY', 2, 10, 0, NULL, '2026-03-01 09:00+00');
SELECT snapshot.snapshot_configure();

CREATE ROLE snapshot_test_nobody;
CREATE ROLE snapshot_test_capturer;
GRANT USAGE ON SCHEMA snapshot TO snapshot_test_nobody, snapshot_test_capturer;
GRANT EXECUTE ON FUNCTION snapshot.capture_all_snapshots(date, text),
                          snapshot.capture_snapshot(uuid, date) TO snapshot_test_capturer;

-- row-level security that hides everything from everyone but superusers
ALTER TABLE portfolios ENABLE ROW LEVEL SECURITY;
ALTER TABLE portfolios FORCE ROW LEVEL SECURITY;
ALTER TABLE transactions ENABLE ROW LEVEL SECURITY;
CREATE POLICY only_visible ON portfolios USING (name = 'visible');
CREATE POLICY nothing ON transactions USING (false);

-- the functions themselves
SELECT ok(bool_and(p.prosecdef), 'the capture functions are SECURITY DEFINER')
  FROM pg_proc p WHERE p.oid IN ('snapshot.capture_all_snapshots(date, text)'::regprocedure,
                                 'snapshot.capture_snapshot(uuid, date)'::regprocedure);
SELECT ok(bool_and(p.proconfig = ARRAY['search_path=pg_catalog, pg_temp', 'jit=off']),
          'the capture functions run with search_path = pg_catalog, pg_temp (and without JIT)')
  FROM pg_proc p WHERE p.oid IN ('snapshot.capture_all_snapshots(date, text)'::regprocedure,
                                 'snapshot.capture_snapshot(uuid, date)'::regprocedure);
SELECT ok(NOT (SELECT prosecdef FROM pg_proc
                WHERE oid = 'snapshot.snapshot_configure(text, text, text, text, text, text, integer, numeric, name[])'::regprocedure),
          'snapshot_configure runs with the caller''s rights');
SELECT is(count(*), 0::bigint, 'PUBLIC may execute none of the extension''s functions')
  FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'snapshot')
   AND (p.proacl IS NULL OR aclcontains(p.proacl, makeaclitem(0, p.proowner, 'EXECUTE', false)));

-- a role without the grant
SET LOCAL ROLE snapshot_test_nobody;
SELECT throws_ok($$SELECT snapshot.capture_all_snapshots('2026-03-05')$$,
    '42501', 'permission denied for function capture_all_snapshots', 'without EXECUTE: capture_all_snapshots is refused');
SELECT throws_ok($$SELECT snapshot.capture_snapshot('50000000-0000-0000-0000-000000000001', '2026-03-05')$$,
    '42501', 'permission denied for function capture_snapshot', 'without EXECUTE: capture_snapshot is refused');
SELECT throws_ok($$SELECT snapshot.snapshot_configure()$$,
    '42501', 'permission denied for function snapshot_configure', 'snapshot_configure stays with the owner');
RESET ROLE;

-- a role with the grant and nothing else
SELECT ok(NOT has_table_privilege('snapshot_test_capturer', 'portfolios', 'SELECT')
          AND NOT has_table_privilege('snapshot_test_capturer', 'transactions', 'SELECT')
          AND NOT has_table_privilege('snapshot_test_capturer', 'snapshot.portfolio_snapshots', 'INSERT'),
          'the capturing role has no privilege on the sources or the snapshots');
SET LOCAL ROLE snapshot_test_capturer;
SELECT throws_ok($$SELECT count(*) FROM portfolios$$, '42501', NULL, 'it cannot read the portfolios itself');
SELECT results_eq($$SELECT status, portfolios, captured FROM snapshot.capture_all_snapshots('2026-03-05', 'granted')$$,
    $$VALUES ('succeeded', 2, 2)$$, 'with EXECUTE it captures every portfolio, RLS notwithstanding');
SELECT is((snapshot.capture_snapshot('50000000-0000-0000-0000-000000000002', '2026-03-05')).total_cost, 20::numeric,
    'capture_snapshot sees a portfolio and ledger that RLS hides');
SELECT throws_ok($$SELECT snapshot.snapshot_configure()$$,
    '42501', NULL, 'the capturing role cannot reconfigure');
SELECT throws_ok($$SELECT * FROM snapshot.portfolio_snapshots$$,
    '42501', NULL, 'reading snapshots needs its own grant');
SELECT throws_ok($$DELETE FROM snapshot.snapshot_runs$$,
    '42501', NULL, 'the capturing role cannot tamper with the run history');
RESET ROLE;

SELECT results_eq($$SELECT portfolio_id::text, total_cost FROM snapshot.portfolio_snapshots ORDER BY 1$$,
    $$VALUES ('50000000-0000-0000-0000-000000000001', 10::numeric), ('50000000-0000-0000-0000-000000000002', 20::numeric)$$,
    'both portfolios were captured with their full ledgers');
SELECT is(triggered_by, 'granted', 'the run records who triggered it') FROM snapshot.snapshot_runs;

-- search_path tricks of the caller do not reach the capture
CREATE SCHEMA trap;
CREATE FUNCTION trap.jsonb_build_object(VARIADIC text[]) RETURNS jsonb LANGUAGE sql
    AS $f$ SELECT pg_catalog.jsonb_build_object('hijacked', true) $f$;
CREATE TABLE trap.portfolio_snapshots (LIKE snapshot.portfolio_snapshots);
SET LOCAL search_path = trap, public;
SELECT is((snapshot.capture_all_snapshots('2026-03-05', 'trap')).captured, 2, 'a capture with a hostile search_path');
SELECT is(count(*), 0::bigint, 'writes nothing into look-alike tables on the search_path') FROM trap.portfolio_snapshots;
SELECT is(metadata->>'triggered_by', 'trap', 'and builds its metadata with pg_catalog''s functions')
  FROM snapshot.portfolio_snapshots LIMIT 1;
RESET search_path;

-- the grant recipe in the README, for an application that reads snapshots
GRANT SELECT ON snapshot.portfolio_snapshots TO snapshot_test_nobody;
SET LOCAL ROLE snapshot_test_nobody;
SELECT is(count(*), 2::bigint, 'a role granted SELECT on portfolio_snapshots reads every month''s partition')
  FROM snapshot.portfolio_snapshots;
RESET ROLE;

-- the README's recipe for tenant-scoped reads: row-level security on
-- portfolio_snapshots, keyed on the application's own data
CREATE ROLE snapshot_test_tenant_app;
GRANT USAGE ON SCHEMA snapshot TO snapshot_test_tenant_app;
GRANT SELECT ON snapshot.portfolio_snapshots TO snapshot_test_tenant_app;
GRANT SELECT ON portfolios TO snapshot_test_tenant_app;
ALTER TABLE snapshot.portfolio_snapshots ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_reads ON snapshot.portfolio_snapshots FOR SELECT TO snapshot_test_tenant_app
    USING (portfolio_id IN (SELECT p.id FROM public.portfolios p
                             WHERE p.name = current_setting('app.tenant', true)));
SELECT is((snapshot.capture_all_snapshots('2026-03-04', 'after RLS')).captured, 2,
    'with row-level security on portfolio_snapshots the capture still writes every portfolio');
SET LOCAL ROLE snapshot_test_tenant_app;
SET LOCAL app.tenant = 'visible';
SELECT results_eq($$SELECT DISTINCT portfolio_id::text FROM snapshot.portfolio_snapshots$$,
    $$VALUES ('50000000-0000-0000-0000-000000000001')$$, 'a tenant reads its own portfolio''s snapshots only');
RESET app.tenant;
SELECT is(count(*), 0::bigint, 'without a tenant, nothing') FROM snapshot.portfolio_snapshots;
SELECT throws_ok($$SELECT count(*) FROM snapshot.portfolio_snapshots_y2026m03$$, '42501', NULL,
    'a month''s partition cannot be read around the policy');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
