-- upgrade: CREATE EXTENSION snapshot VERSION '1.0' and ALTER EXTENSION
-- snapshot UPDATE (the chain of upgrade scripts) give the same objects as a
-- fresh install of the default version (its own full script,
-- snapshot--1.5.sql), and keep the data.
\i test/preamble.sql
BEGIN;
CREATE EXTENSION pgtap;
\i examples/schema.sql
SELECT plan(22);

-- everything the extension defines, as text
CREATE FUNCTION pg_temp.extension_objects() RETURNS SETOF text LANGUAGE sql AS $$
    SELECT format('function %s(%s) returns %s secdef=%s config=%s acl=%s volatile=%s parallel=%s lang=%s rows=%s strict=%s defaults=%s body=%s',
                  p.proname, pg_get_function_identity_arguments(p.oid), pg_get_function_result(p.oid),
                  p.prosecdef, p.proconfig, p.proacl, p.provolatile, p.proparallel,
                  (SELECT l.lanname FROM pg_language l WHERE l.oid = p.prolang), p.prorows, p.proisstrict,
                  pg_get_expr(p.proargdefaults, 0), md5(p.prosrc))
      FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
     WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'snapshot')
    UNION ALL
    SELECT format('column %s.%s #%s %s notnull=%s default=%s identity=%s compression=%s comment=%s',
                  c.relname, a.attname, a.attnum, format_type(a.atttypid, a.atttypmod),
                  a.attnotnull, pg_get_expr(ad.adbin, ad.adrelid), a.attidentity, a.attcompression,
                  col_description(c.oid, a.attnum))
      FROM pg_class c JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
      LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
     WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'snapshot')
    UNION ALL
    SELECT format('constraint %s %s', con.conname, pg_get_constraintdef(con.oid))
      FROM pg_constraint con JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = con.conrelid AND d.deptype = 'e'
     WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'snapshot')
    UNION ALL
    SELECT format('index %s', pg_get_indexdef(i.indexrelid))
      FROM pg_index i JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = i.indrelid AND d.deptype = 'e'
     WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'snapshot')
    UNION ALL
    SELECT format('relation %s kind=%s acl=%s comment=%s view=%s', c.relname, c.relkind, c.relacl,
                  obj_description(c.oid, 'pg_class'),
                  CASE WHEN c.relkind = 'v' THEN md5(pg_get_viewdef(c.oid)) END)
      FROM pg_class c JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
     WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'snapshot')
    UNION ALL
    SELECT format('config %s %s', unnest(extconfig)::regclass, unnest(extcondition))
      FROM pg_extension WHERE extname = 'snapshot'
    ORDER BY 1
$$;

CREATE EXTENSION snapshot VERSION '1.0';
SELECT is(extversion, '1.0', 'version 1.0 installs') FROM pg_extension WHERE extname = 'snapshot';
SELECT hasnt_function('snapshot', 'capture_all_snapshots_if_missing', '1.0 has no fallback');
INSERT INTO portfolios (id, name, base_currency) VALUES ('90000000-0000-0000-0000-000000000001', 'kept', 'USD');
SELECT snapshot.snapshot_configure();
SELECT throws_ok($$SELECT snapshot.capture_all_snapshots('2026-03-05', 'under 1.0')$$,
    '55000', 'the snapshot extension''s SQL objects are older than its library',
    'this library refuses to capture with the 1.0 objects (their configure and fallback predate the security model)');
-- what a 1.0 capture left behind: a run, its snapshot in its month's partition
INSERT INTO snapshot.snapshot_runs (snapshot_date, triggered_by, status, started_at, finished_at, portfolios, captured, failed)
VALUES ('2026-03-05', 'under 1.0', 'succeeded', now(), now(), 1, 1, 0);
CREATE TABLE snapshot.portfolio_snapshots_y2026m03 (LIKE snapshot.portfolio_snapshots INCLUDING DEFAULTS,
    PRIMARY KEY (portfolio_id, snapshot_date));
ALTER TABLE snapshot.portfolio_snapshots ATTACH PARTITION snapshot.portfolio_snapshots_y2026m03
    FOR VALUES FROM ('2026-03-01') TO ('2026-04-01');
INSERT INTO snapshot.portfolio_snapshots
SELECT '90000000-0000-0000-0000-000000000001', '2026-03-05', 'USD', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
       '[]', '{}', run_id, now()
  FROM snapshot.snapshot_runs;

ALTER EXTENSION snapshot UPDATE;
SELECT is(extversion, '1.5', 'ALTER EXTENSION UPDATE goes through 1.1, 1.2, 1.3 and 1.4 to 1.5') FROM pg_extension WHERE extname = 'snapshot';
SELECT has_function('snapshot', 'capture_all_snapshots_if_missing', ARRAY['date', 'text'], '1.1 has the fallback');
SELECT is((SELECT count(*) FROM snapshot.portfolio_snapshots) + (SELECT count(*) FROM snapshot.snapshot_runs)
          + (SELECT count(*) FROM snapshot.snapshot_config), 3::bigint, 'the update keeps snapshots, runs and configuration');
SELECT is((snapshot.capture_all_snapshots_if_missing('2026-03-05')).triggered_by, 'under 1.0',
          'the 1.5 fallback finds the 1.0 run covering every portfolio');
SELECT has_column('snapshot', 'snapshot_runs', 'workers', '1.2 records the valuation workers of a run');
SELECT is((SELECT workers FROM snapshot.snapshot_runs), 0, 'the 1.0 run counts no workers');
SELECT is((SELECT skipped_rows FROM snapshot.snapshot_runs), 0, '... and, from 1.3, no skipped rows');
SELECT is((SELECT taxes FROM snapshot.portfolio_snapshots), 0::numeric, '... and, from 1.4, the 1.0 snapshot''s taxes are 0');
SELECT is((SELECT quantity_tolerance FROM snapshot.snapshot_config), 0::numeric,
          'the configuration kept from 1.0 values exactly (quantity_tolerance 0)');
SELECT is((SELECT status || '/' || coalesce(reason, '-') || '/' || coalesce(total::text, '-') FROM snapshot.snapshot_runs), 'succeeded/-/-',
          '... and, from 1.5, the 1.0 run is succeeded with no reason and no total');
SELECT is((snapshot.capture_all_snapshots('2026-03-06', 'under 1.5')).status, 'succeeded',
          'the updated objects capture with the configuration kept from 1.0');
CREATE TEMP TABLE updated AS SELECT * FROM pg_temp.extension_objects() AS o;

DROP EXTENSION snapshot;
CREATE EXTENSION snapshot;
SELECT is(extversion, '1.5', 'a fresh install is 1.5') FROM pg_extension WHERE extname = 'snapshot';
CREATE TEMP TABLE fresh AS SELECT * FROM pg_temp.extension_objects() AS o;
SELECT ok((SELECT count(*) FROM fresh) > 30, 'the comparison covers the functions, columns, constraints and indexes');
SELECT set_eq('SELECT * FROM updated', 'SELECT * FROM fresh',
              '1.0 updated to 1.5 has exactly the objects of a fresh 1.5 install: columns in order, compression, comments, privileges, function bodies and settings');
-- lz4 only where the server has it (it does here, so both paths set it)
SELECT is((SELECT string_agg(a.attname || '=' || a.attcompression::text, ',' ORDER BY a.attname)
             FROM pg_attribute a WHERE a.attrelid = 'snapshot.portfolio_snapshots'::regclass
              AND a.attname IN ('positions', 'metadata')),
          CASE WHEN EXISTS (SELECT FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals))
               THEN 'metadata=l,positions=l' ELSE 'metadata=,positions=' END,
          'positions and metadata use lz4 when the server has it, the default otherwise');
SELECT is((SELECT count(*) FROM fresh WHERE o LIKE 'function capture_all_snapshots(%jit=off%'
                                          OR o LIKE 'function capture_snapshot(%jit=off%'), 2::bigint,
          'the full script carries the settings later upgrades added (jit = off)');

-- 1.3 objects (the chain from 1.0) lack 1.4's tolerance and taxes: refused;
-- so are 1.4's, which lack the run columns
DROP EXTENSION snapshot;
CREATE EXTENSION snapshot VERSION '1.3';
SELECT throws_ok($$SELECT snapshot.snapshot_configure()$$,
    '55000', 'the snapshot extension''s SQL objects are older than its library',
    'this library refuses the 1.3 snapshot_configure (eight arguments, never read as nine)');
INSERT INTO snapshot.snapshot_config (portfolios, assets, transactions, prices, cost_method, stale_after_days)
VALUES ('portfolios', 'assets', 'transactions', 'asset_prices', 'fifo', 5);
SELECT throws_ok($$SELECT snapshot.capture_all_snapshots('2026-03-05', 'under 1.3')$$,
    '55000', 'the snapshot extension''s SQL objects are older than its library',
    'this library refuses to capture with the 1.3 objects (no taxes column to write)');

DROP EXTENSION snapshot;
CREATE EXTENSION snapshot VERSION '1.4';
SELECT snapshot.snapshot_configure();
SELECT throws_ok($$SELECT snapshot.capture_all_snapshots('2026-03-05', 'under 1.4')$$,
    '55000', 'the snapshot extension''s SQL objects are older than its library',
    'this library refuses to capture with the 1.4 objects (no run columns)');

SELECT * FROM finish();
ROLLBACK;
