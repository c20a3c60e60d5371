/* snapshot--1.1--1.2.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION snapshot UPDATE TO '1.2'" to load this file. \quit

/*
 * capture_all_snapshots() can value portfolios in background workers
 * (snapshot.max_workers); each run records how many took part, 0 when the
 * calling backend valued every portfolio itself.
 */
ALTER TABLE @extschema@.snapshot_runs
    ADD COLUMN workers integer NOT NULL DEFAULT 0 CHECK (workers >= 0);

COMMENT ON COLUMN @extschema@.snapshot_runs.workers IS
    'Valuation workers that took part in the run; 0 when the calling backend valued every portfolio.';

/*
 * The capture's queries are an ordered walk and a few small lookups: JIT
 * compiling them (the ledger walk of 100,000 portfolios costs enough to
 * trigger it) only loads LLVM into the backend and its workers.
 */
ALTER FUNCTION @extschema@.capture_all_snapshots(date, text) SET jit = off;
ALTER FUNCTION @extschema@.capture_snapshot(uuid, date) SET jit = off;
