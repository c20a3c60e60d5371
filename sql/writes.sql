-- writes: a capture of all inserts its snapshots straight into the date's
-- partition while they are new, each write in a subtransaction of its own,
-- and upserts from the first write that meets a snapshot of the date, or
-- after 32 inserts (so that a transaction never holds more subtransaction
-- ids than a backend caches).  Every snapshot is written exactly once either
-- way, an existing one is replaced, constraints hold, any other error of a
-- write is raised, and a partition with a trigger or a column of the DBA's
-- is always written by SQL.  A large positions array is stored as SQL stores
-- it: compressed with the column's method, moved to the TOAST table, or kept
-- whole, as its storage and the partition's toast tuple target say.
\i test/preamble.sql
BEGIN;
CREATE EXTENSION pgtap;
CREATE EXTENSION snapshot;
\i examples/schema.sql
SELECT plan(40);

-- 40 portfolios, the n-th with a deposit of n: its cash and net worth are n
INSERT INTO portfolios (id, name, base_currency)
SELECT ('d0000000-0000-0000-0000-0000000000' || lpad(n::text, 2, '0'))::uuid, 'writes ' || n, 'USD'
  FROM generate_series(1, 40) AS n;
INSERT INTO transactions (portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date)
SELECT ('d0000000-0000-0000-0000-0000000000' || lpad(n::text, 2, '0'))::uuid, NULL, 'DEPOSIT', 1, n, 0, NULL,
       '2026-03-02 09:00+00'
  FROM generate_series(1, 40) AS n;
SELECT snapshot.snapshot_configure();

-- one portfolio per write: 40 writes
SET LOCAL snapshot.batch_size = 1;
SELECT results_eq($$SELECT status, portfolios, captured, failed FROM snapshot.capture_all_snapshots('2026-03-05', 'writes')$$,
    $$VALUES ('succeeded', 40, 40, 0)$$, 'a capture of 40 portfolios written one at a time succeeds');
SELECT results_eq($$SELECT count(*), count(DISTINCT portfolio_id), sum(net_worth) FROM snapshot.portfolio_snapshots
                    WHERE snapshot_date = '2026-03-05'$$,
    $$VALUES (40::bigint, 40::bigint, 820::numeric)$$, '... one snapshot per portfolio, 1 + 2 + ... + 40 in all');
SELECT is((SELECT count(DISTINCT xmin::text) FROM snapshot.portfolio_snapshots WHERE snapshot_date = '2026-03-05'),
    33::bigint, 'the first 32 writes are inserts, each in a subtransaction (an id of its own), the other 8 upserts');
SELECT results_eq($$SELECT count(*) FROM snapshot.portfolio_snapshots WHERE snapshot_date = '2026-03-05'
                    GROUP BY xmin::text ORDER BY 1 DESC LIMIT 2$$,
    $$VALUES (8::bigint), (1::bigint)$$, '... which write in the transaction of the capture');

-- a snapshot of the date exists already, in the third write of two portfolios,
-- and its portfolio's ledger has changed since
SELECT is(net_worth, 5::numeric, 'capture_snapshot writes one portfolio''s snapshot first')
  FROM snapshot.capture_snapshot('d0000000-0000-0000-0000-000000000005', '2026-03-06');
INSERT INTO transactions (portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date)
VALUES ('d0000000-0000-0000-0000-000000000005', NULL, 'DEPOSIT', 1, 1000, 0, NULL, '2026-03-03 09:00+00');
SET LOCAL snapshot.batch_size = 2;
SELECT results_eq($$SELECT status, captured, failed FROM snapshot.capture_all_snapshots('2026-03-06', 'writes')$$,
    $$VALUES ('succeeded', 40, 0)$$, 'a capture of all meets that snapshot in its third write and succeeds');
SELECT results_eq($$SELECT count(*), count(DISTINCT portfolio_id), sum(net_worth) FROM snapshot.portfolio_snapshots
                    WHERE snapshot_date = '2026-03-06'$$,
    $$VALUES (40::bigint, 40::bigint, 1820::numeric)$$, '... with one snapshot per portfolio');
SELECT results_eq($$SELECT s.net_worth, s.run_id = r.run_id FROM snapshot.portfolio_snapshots s, snapshot.snapshot_runs r
                    WHERE s.portfolio_id = 'd0000000-0000-0000-0000-000000000005' AND s.snapshot_date = '2026-03-06'
                      AND r.snapshot_date = '2026-03-06'$$,
    $$VALUES (1005::numeric, true)$$, '... the existing snapshot replaced by the capture''s, with its run id');
SELECT is((SELECT count(DISTINCT xmin::text) FROM snapshot.portfolio_snapshots WHERE snapshot_date = '2026-03-06'),
    3::bigint, 'two inserts, then the third write is rolled back and upserted, and so is every write after it');

-- an error of an insert other than an existing snapshot is raised
SAVEPOINT checked;
DELETE FROM snapshot.portfolio_snapshots;
ALTER TABLE snapshot.portfolio_snapshots ADD CONSTRAINT below_30 CHECK (net_worth < 30);
SELECT throws_ok($$SELECT snapshot.capture_all_snapshots('2026-03-07', 'writes')$$, '23514',
    'new row for relation "portfolio_snapshots_y2026m03" violates check constraint "below_30"',
    'a check constraint that a snapshot violates fails the capture, as it would the upsert');
ROLLBACK TO SAVEPOINT checked;
SELECT is((SELECT count(*) FROM snapshot.portfolio_snapshots), 80::bigint, 'the snapshots written before are kept');

-- with a trigger on the snapshots, or a column the capture does not fill,
-- every batch is upserted, as SQL would write it
SAVEPOINT triggered;
CREATE TABLE written (portfolio_id uuid);
CREATE FUNCTION log_write() RETURNS trigger LANGUAGE plpgsql AS
$$BEGIN INSERT INTO public.written VALUES (NEW.portfolio_id); RETURN NEW; END$$;
CREATE TRIGGER log_write BEFORE INSERT ON snapshot.portfolio_snapshots FOR EACH ROW EXECUTE FUNCTION log_write();
SELECT results_eq($$SELECT status, captured FROM snapshot.capture_all_snapshots('2026-03-08', 'writes')$$,
    $$VALUES ('succeeded', 40)$$, 'a capture with a trigger on the snapshots succeeds');
SELECT results_eq($$SELECT count(*), count(DISTINCT portfolio_id) FROM written$$, $$VALUES (40::bigint, 40::bigint)$$,
    '... the trigger fired once for each snapshot');
ROLLBACK TO SAVEPOINT triggered;
SAVEPOINT noted;
ALTER TABLE snapshot.portfolio_snapshots ADD COLUMN note text DEFAULT 'by default';
SELECT results_eq($$SELECT status, captured FROM snapshot.capture_all_snapshots('2026-03-08', 'writes')$$,
    $$VALUES ('succeeded', 40)$$, 'a capture with a column of the DBA''s on the snapshots succeeds');
SELECT results_eq($$SELECT note, count(*), count(DISTINCT xmin::text) FROM snapshot.portfolio_snapshots
                    WHERE snapshot_date = '2026-03-08' GROUP BY note$$,
    $$VALUES ('by default', 40::bigint, 1::bigint)$$, '... which holds its default in every snapshot, all upserted');
ROLLBACK TO SAVEPOINT noted;

-- columns whose values SQL would coerce or refuse are written by SQL too
SAVEPOINT typmod;
ALTER TABLE snapshot.portfolio_snapshots ALTER COLUMN net_worth TYPE numeric(12, 2);
SELECT results_eq($$SELECT status, captured FROM snapshot.capture_all_snapshots('2026-03-08', 'writes')$$,
    $$VALUES ('succeeded', 40)$$, 'a capture into a net_worth of numeric(12, 2) succeeds');
SELECT results_eq($$SELECT min(net_worth::text), max(net_worth::text), count(DISTINCT xmin::text)
                      FROM snapshot.portfolio_snapshots WHERE snapshot_date = '2026-03-08'$$,
    $$VALUES ('1.00', '9.00', 1::bigint)$$, '... its values coerced to the typmod, as the upsert coerces them');
ROLLBACK TO SAVEPOINT typmod;
SAVEPOINT dropped;
ALTER TABLE snapshot.portfolio_snapshots DROP COLUMN taxes;
SELECT throws_ok($$SELECT snapshot.capture_all_snapshots('2026-03-08', 'writes')$$, '42703',
    'column "taxes" of relation "portfolio_snapshots_y2026m03" does not exist',
    'a capture into snapshots without a column it fills fails, as the upsert does');
ROLLBACK TO SAVEPOINT dropped;
SAVEPOINT identity;
ALTER TABLE snapshot.portfolio_snapshots_y2026m03 ALTER COLUMN position_count ADD GENERATED ALWAYS AS IDENTITY;
SELECT throws_ok($$SELECT snapshot.capture_all_snapshots('2026-03-08', 'writes')$$, '428C9',
    'cannot insert a non-DEFAULT value into column "position_count"',
    'a capture into an identity column fails, as the upsert does');
ROLLBACK TO SAVEPOINT identity;
SELECT results_eq($$SELECT status, captured FROM snapshot.capture_all_snapshots('2026-03-09', 'writes')$$,
    $$VALUES ('succeeded', 40)$$, 'without them, a capture succeeds');
SELECT is((SELECT count(DISTINCT xmin::text) FROM snapshot.portfolio_snapshots WHERE snapshot_date = '2026-03-09'),
    20::bigint, '... its 20 writes of two portfolios direct inserts again');

-- a large positions array is stored as the toaster stores it through SQL:
-- 12 positions (about 3 kB: compressed in the row) and 60 (about 16 kB:
-- compressed, then moved to the TOAST table), written directly on one date
-- and through capture_snapshot's upsert on the next, alike
INSERT INTO portfolios (id, name, base_currency) VALUES
    ('d0000000-0000-0000-0000-000000000101', 'twelve positions', 'USD'),
    ('d0000000-0000-0000-0000-000000000102', 'sixty positions', 'USD');
INSERT INTO assets (id, symbol, currency)
SELECT ('a0000000-0000-0000-0000-0000000000' || lpad(n::text, 2, '0'))::uuid, 'W' || lpad(n::text, 2, '0'), 'USD'
  FROM generate_series(1, 60) AS n;
INSERT INTO asset_prices (asset_id, price_date, close)
SELECT ('a0000000-0000-0000-0000-0000000000' || lpad(n::text, 2, '0'))::uuid, '2026-03-01', 100 + n
  FROM generate_series(1, 60) AS n;
INSERT INTO transactions (portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date)
SELECT p.id, NULL::uuid, 'DEPOSIT', 1, 100000, 0, NULL::numeric, '2026-03-02 09:00+00'::timestamptz
  FROM portfolios p WHERE p.name LIKE '% positions'
UNION ALL
SELECT p.id, ('a0000000-0000-0000-0000-0000000000' || lpad(n::text, 2, '0'))::uuid, 'BUY', n, 90 + n, 0, NULL,
       '2026-03-02 10:00+00'
  FROM portfolios p, generate_series(1, 60) AS n
 WHERE p.name = 'sixty positions' OR (p.name = 'twelve positions' AND n <= 12);
CREATE TEMP VIEW stored AS
SELECT s.snapshot_date, s.portfolio_id, s.position_count, pg_column_compression(s.positions) AS method,
       pg_column_size(s.positions) AS size, s.positions::text AS positions
  FROM snapshot.portfolio_snapshots s WHERE s.portfolio_id IN ('d0000000-0000-0000-0000-000000000101',
                                                               'd0000000-0000-0000-0000-000000000102');
-- the values the TOAST table of the date's partition holds
CREATE FUNCTION pg_temp.toasted() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
    EXECUTE format('SELECT count(DISTINCT chunk_id) FROM %s',
                   (SELECT c.reltoastrelid::regclass FROM pg_class c
                     WHERE c.oid = 'snapshot.portfolio_snapshots_y2026m03'::regclass)) INTO n;
    RETURN n;
END $$;
DELETE FROM snapshot.portfolio_snapshots;
SELECT results_eq($$SELECT status, captured FROM snapshot.capture_all_snapshots('2026-03-10', 'writes')$$,
    $$VALUES ('succeeded', 42)$$, 'a capture of all with two large positions arrays succeeds');
SELECT results_eq($$SELECT position_count, method FROM stored ORDER BY portfolio_id$$,
    $$VALUES (12, 'lz4'), (60, 'lz4')$$, '... both arrays compressed with the column''s lz4');
SELECT is(pg_temp.toasted(), 1::bigint, '... and only the larger moved to the TOAST table');
SELECT is(net_worth, 100780::numeric, 'capture_snapshot upserts the twelve positions on the next date (10 a share gained, on 1 + 2 + ... + 12 shares)')
  FROM snapshot.capture_snapshot('d0000000-0000-0000-0000-000000000101', '2026-03-11');
SELECT is(net_worth, 118300::numeric, '... and the sixty (10 a share on 1 + 2 + ... + 60 shares)')
  FROM snapshot.capture_snapshot('d0000000-0000-0000-0000-000000000102', '2026-03-11');
SELECT results_eq($$SELECT portfolio_id, method, size, positions FROM stored WHERE snapshot_date = '2026-03-10' ORDER BY 1$$,
    $$SELECT portfolio_id, method, size, positions FROM stored WHERE snapshot_date = '2026-03-11' ORDER BY 1$$,
    'the direct write stores the arrays as SQL does: the same method, size and value');
SELECT is(pg_temp.toasted(), 2::bigint, '... the larger in the TOAST table both times');
-- a write that meets a snapshot of the date upserts the arrays it compressed
SELECT is(net_worth, 100780::numeric, 'capture_snapshot writes the twelve positions on a third date first')
  FROM snapshot.capture_snapshot('d0000000-0000-0000-0000-000000000101', '2026-03-12');
SELECT results_eq($$SELECT status, captured FROM snapshot.capture_all_snapshots('2026-03-12', 'writes')$$,
    $$VALUES ('succeeded', 42)$$, 'a capture of all of that date succeeds, its last write upserted');
SELECT results_eq($$SELECT portfolio_id, method, size, positions FROM stored WHERE snapshot_date = '2026-03-12' ORDER BY 1$$,
    $$SELECT portfolio_id, method, size, positions FROM stored WHERE snapshot_date = '2026-03-10' ORDER BY 1$$,
    '... storing the arrays as before');
-- the DBA's compression method, storage and toast tuple target hold for both paths
ALTER TABLE snapshot.portfolio_snapshots_y2026m03 ALTER COLUMN positions SET COMPRESSION pglz;
DELETE FROM snapshot.portfolio_snapshots;
SELECT results_eq($$SELECT status, captured FROM snapshot.capture_all_snapshots('2026-03-10', 'writes')$$,
    $$VALUES ('succeeded', 42)$$, 'with pglz for positions, a capture succeeds');
SELECT is(count(*), 2::bigint, '... and capture_snapshot too')
  FROM (SELECT snapshot.capture_snapshot('d0000000-0000-0000-0000-000000000101', '2026-03-11')
        UNION ALL SELECT snapshot.capture_snapshot('d0000000-0000-0000-0000-000000000102', '2026-03-11')) x;
SELECT results_eq($$SELECT snapshot_date, method FROM stored ORDER BY 1, portfolio_id$$,
    $$VALUES ('2026-03-10'::date, 'pglz'), ('2026-03-10', 'pglz'), ('2026-03-11', 'pglz'), ('2026-03-11', 'pglz')$$,
    '... both paths compress with pglz');
SELECT results_eq($$SELECT portfolio_id, size FROM stored WHERE snapshot_date = '2026-03-10' ORDER BY 1$$,
    $$SELECT portfolio_id, size FROM stored WHERE snapshot_date = '2026-03-11' ORDER BY 1$$, '... to the same sizes');
ALTER TABLE snapshot.portfolio_snapshots ALTER COLUMN positions SET STORAGE EXTERNAL;
DELETE FROM snapshot.portfolio_snapshots;
SELECT results_eq($$SELECT status, captured FROM snapshot.capture_all_snapshots('2026-03-10', 'writes')$$,
    $$VALUES ('succeeded', 42)$$, 'with external storage for positions, a capture succeeds');
SELECT results_eq($$SELECT position_count, method FROM stored ORDER BY portfolio_id$$,
    $$VALUES (12, NULL::text), (60, NULL)$$, '... neither array compressed');
SELECT is(pg_temp.toasted(), 2::bigint, '... both moved to the TOAST table');
ALTER TABLE snapshot.portfolio_snapshots_y2026m03 ALTER COLUMN positions SET COMPRESSION lz4;
ALTER TABLE snapshot.portfolio_snapshots ALTER COLUMN positions SET STORAGE EXTENDED;
ALTER TABLE snapshot.portfolio_snapshots_y2026m03 SET (toast_tuple_target = 8160);
DELETE FROM snapshot.portfolio_snapshots;
SELECT results_eq($$SELECT status, captured FROM snapshot.capture_all_snapshots('2026-03-10', 'writes')$$,
    $$VALUES ('succeeded', 42)$$, 'with a toast_tuple_target of 8160, a capture succeeds');
SELECT results_eq($$SELECT position_count, method FROM stored ORDER BY portfolio_id$$,
    $$VALUES (12, NULL::text), (60, 'lz4')$$, '... the twelve positions kept whole in the row, the sixty compressed');
ALTER TABLE snapshot.portfolio_snapshots_y2026m03 RESET (toast_tuple_target);

SELECT * FROM finish();
ROLLBACK;
