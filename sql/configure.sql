-- configure: snapshot_configure resolves, validates and stores the sources.
\i test/preamble.sql
BEGIN;
CREATE EXTENSION pgtap;
CREATE EXTENSION snapshot;
CREATE SCHEMA app;
SET LOCAL search_path = app, public;
\i examples/schema.sql
SELECT plan(23);

SELECT lives_ok($$SELECT snapshot.snapshot_configure()$$, 'the defaults resolve in the caller''s search_path');
SELECT results_eq(
    $$SELECT portfolios::text, assets::text, transactions::text, prices::text, fx_rates::text,
             cost_method, stale_after_days FROM snapshot.snapshot_config$$,
    $$VALUES ('portfolios', 'assets', 'transactions', 'asset_prices', NULL, 'fifo', 5)$$,
    'the defaults are stored');
SELECT is(portfolios, 'app.portfolios'::regclass, 'names are stored as regclass')
  FROM snapshot.snapshot_config;

SELECT lives_ok($$SELECT snapshot.snapshot_configure('app.portfolios', 'app.assets', 'app.transactions',
                  'app.asset_prices', 'app.fx_rates', 'average', 0)$$, 'every argument can be given');
SELECT results_eq(
    $$SELECT count(*), min(fx_rates::text), min(cost_method), min(stale_after_days) FROM snapshot.snapshot_config$$,
    $$VALUES (1::bigint, 'fx_rates', 'average', 0)$$,
    'calling it again replaces the configuration');

-- renames survive
ALTER TABLE app.portfolios RENAME TO books;
SELECT is(portfolios::text, 'books', 'a renamed relation is followed') FROM snapshot.snapshot_config;
INSERT INTO books (id, name, base_currency) VALUES ('30000000-0000-0000-0000-000000000001', 'renamed', 'USD');
SELECT is((snapshot.capture_all_snapshots('2026-03-05')).captured, 1, 'a capture reads the renamed relation');
ALTER TABLE app.books RENAME TO portfolios;

-- a dropped relation is reported, not guessed
CREATE TABLE app.doomed AS SELECT * FROM app.assets;
SELECT snapshot.snapshot_configure(assets => 'app.doomed');
DROP TABLE app.doomed;
SELECT throws_like($$SELECT snapshot.capture_all_snapshots('2026-03-05')$$,
    'the configured assets relation (OID % no longer exists', 'a dropped source relation is reported with 42P01');
SELECT throws_ok($$SELECT snapshot.capture_all_snapshots('2026-03-05')$$, '42P01', NULL,
    'a dropped source relation raises 42P01');

-- validation: a rejected call changes nothing
SELECT snapshot.snapshot_configure(cost_method => 'average');
SELECT throws_ok($$SELECT snapshot.snapshot_configure(portfolios => 'nope')$$,
    '42P01', 'relation "nope" does not exist', 'a missing relation');
SELECT throws_ok($$SELECT snapshot.snapshot_configure(fx_rates => 'nope.fx')$$,
    '42P01', 'relation "nope.fx" does not exist', 'a missing optional relation');
CREATE TABLE app.thin_portfolios (id uuid);
SELECT throws_ok($$SELECT snapshot.snapshot_configure(portfolios => 'thin_portfolios')$$,
    '42703', 'column "base_currency" of relation app.thin_portfolios does not exist', 'a missing column names relation and column');
CREATE TABLE app.bad_prices (asset_id uuid, price_date date, close point);
SELECT throws_ok($$SELECT snapshot.snapshot_configure(prices => 'bad_prices')$$,
    '42804', 'column "close" of relation app.bad_prices has an unusable type', 'a column that does not cast to numeric');
CREATE TABLE app.unordered (id json, portfolio_id uuid, asset_id uuid, type text, quantity numeric,
    price numeric, fee numeric, exchange_rate numeric, transaction_date timestamptz);
SELECT throws_ok($$SELECT snapshot.snapshot_configure(transactions => 'unordered')$$,
    '42804', 'column "id" of relation app.unordered has an unusable type', 'a transaction id that cannot be ordered');
SELECT throws_ok($$SELECT snapshot.snapshot_configure(cost_method => 'lifo')$$,
    '22023', 'invalid cost method: ''lifo''', 'an unknown cost method');
SELECT throws_ok($$SELECT snapshot.snapshot_configure(cost_method => NULL)$$,
    '22023', 'invalid cost method: NULL', 'a NULL cost method');
SELECT throws_ok($$SELECT snapshot.snapshot_configure(stale_after_days => -1)$$,
    '22023', 'invalid stale_after_days: -1', 'a negative stale_after_days');
SELECT results_eq($$SELECT cost_method, stale_after_days, assets::text FROM snapshot.snapshot_config$$,
    $$VALUES ('average', 5, 'assets')$$, 'a rejected call leaves the configuration as it was');

-- a ledger table without an index for the walk gets a NOTICE naming the fix
CREATE TABLE app.unindexed AS SELECT * FROM app.transactions;
SELECT is((SELECT count(*) FROM pg_index WHERE indrelid = 'app.unindexed'::regclass), 0::bigint, 'app.unindexed has no index');
-- every configure names what it resolved and the role captures will read as
CREATE ROLE snapshot_test_owner;
ALTER TABLE app.portfolios OWNER TO snapshot_test_owner;
ALTER TABLE app.assets OWNER TO snapshot_test_owner;
ALTER TABLE app.transactions OWNER TO snapshot_test_owner;
ALTER TABLE app.asset_prices OWNER TO snapshot_test_owner;
ALTER TABLE app.unindexed OWNER TO snapshot_test_owner;
\set VERBOSITY terse
\set QUIET 0
SET client_min_messages = notice;
SELECT snapshot.snapshot_configure(transactions => 'unindexed');  -- NOTICEs: the relations, no index
SELECT snapshot.snapshot_configure();                              -- indexed: the relations only
SET client_min_messages = warning;
\set QUIET 1
\set VERBOSITY default
ALTER TABLE app.portfolios OWNER TO CURRENT_USER;
ALTER TABLE app.assets OWNER TO CURRENT_USER;
ALTER TABLE app.transactions OWNER TO CURRENT_USER;
ALTER TABLE app.asset_prices OWNER TO CURRENT_USER;
ALTER TABLE app.unindexed OWNER TO CURRENT_USER;
SELECT snapshot.snapshot_configure(cost_method => 'average');

-- views with castable column types are sources too
CREATE VIEW app.portfolio_view AS SELECT id::text AS id, base_currency::varchar(3) AS base_currency FROM app.portfolios;
SELECT lives_ok($$SELECT snapshot.snapshot_configure(portfolios => 'portfolio_view')$$, 'a view with castable columns is accepted');
SELECT is((snapshot.capture_all_snapshots('2026-03-05')).captured, 1, 'a capture reads the view');

-- DROP EXTENSION never drops a source table
DROP EXTENSION snapshot;
SELECT has_table('app', 'portfolios', 'dropping the extension keeps the portfolios');
SELECT is(count(*), 1::bigint, 'and their rows') FROM app.portfolios;

SELECT * FROM finish();
ROLLBACK;
