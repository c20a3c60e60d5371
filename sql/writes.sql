-- writes: a capture of all inserts its snapshots straight into the date's
-- partition while they are new, each write in a subtransaction of its own,
-- and upserts from the first write that meets a snapshot of the date, or
-- after 32 inserts (so that a transaction never holds more subtransaction
-- ids than a backend caches).  Every snapshot is written exactly once either
-- way, an existing one is replaced, constraints hold, any other error of a
-- write is raised, and a partition with a trigger or a column of the DBA's
-- is always written by SQL.
\i test/preamble.sql
BEGIN;
CREATE EXTENSION pgtap;
CREATE EXTENSION snapshot;
\i examples/schema.sql
SELECT plan(21);

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

SELECT * FROM finish();
ROLLBACK;
