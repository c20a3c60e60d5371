/* snapshot--1.4--1.5.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION snapshot UPDATE TO '1.5'" to load this file. \quit

/*
 * Runs that own themselves (README.md, "Runs"): start_capture() starts a
 * background worker that owns the run and commits it in batches, so the run
 * survives its caller, shows its progress to every session, is recorded
 * whatever ends it, and resumes after a crash.
 */
ALTER TABLE @extschema@.snapshot_runs
    DROP CONSTRAINT snapshot_runs_status_check,
    ADD CONSTRAINT snapshot_runs_status_check
        CHECK (status IN ('queued', 'running', 'succeeded', 'partial', 'failed', 'cancelled')),
    ADD COLUMN reason text,
    ADD COLUMN total integer,
    ADD COLUMN updated_at timestamptz,
    ADD COLUMN last_portfolio_id uuid,
    ADD COLUMN worker_pid integer;
COMMENT ON COLUMN @extschema@.snapshot_runs.reason IS
    'Why a run failed or was cancelled: interrupted (its worker died: crash, kill, restart), cancelled, timeout, or the error.';
COMMENT ON COLUMN @extschema@.snapshot_runs.total IS
    'Portfolios the run expects (counted when it starts), for its progress.';
COMMENT ON COLUMN @extschema@.snapshot_runs.updated_at IS
    'When the run last committed a batch.';
COMMENT ON COLUMN @extschema@.snapshot_runs.last_portfolio_id IS
    'The last portfolio of the last committed batch: a resumed run continues after it.';
COMMENT ON COLUMN @extschema@.snapshot_runs.worker_pid IS
    'The process id of the background worker that runs (or last ran) it.';

CREATE FUNCTION @extschema@.start_capture(
    snapshot_date date DEFAULT (pg_catalog.now() AT TIME ZONE 'UTC')::date,
    triggered_by  text DEFAULT 'manual')
RETURNS bigint
AS 'MODULE_PATHNAME', 'start_capture'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off;
REVOKE ALL ON FUNCTION @extschema@.start_capture(date, text) FROM PUBLIC;

CREATE FUNCTION @extschema@.resume_capture(run_id bigint)
RETURNS bigint
AS 'MODULE_PATHNAME', 'resume_capture'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off;
REVOKE ALL ON FUNCTION @extschema@.resume_capture(bigint) FROM PUBLIC;

CREATE FUNCTION @extschema@.cancel_capture(run_id bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'cancel_capture'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION @extschema@.cancel_capture(bigint) FROM PUBLIC;

/*
 * capture_progress: every active run (queued or running), after recording
 * as failed/interrupted any whose worker is gone.
 */
CREATE FUNCTION @extschema@.capture_progress_rows()
RETURNS TABLE (
    run_id                bigint,
    snapshot_date         date,
    status                text,
    triggered_by          text,
    started_at            timestamptz,
    updated_at            timestamptz,
    progress              integer,
    total                 integer,
    percent               numeric,
    portfolios_per_second numeric,
    eta                   interval,
    worker_pid            integer,
    worker_state          text)
AS 'MODULE_PATHNAME', 'capture_progress_rows'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION @extschema@.capture_progress_rows() FROM PUBLIC;

CREATE VIEW @extschema@.capture_progress AS
    SELECT p.* FROM @extschema@.capture_progress_rows() AS p;
REVOKE ALL ON @extschema@.capture_progress FROM PUBLIC;
COMMENT ON VIEW @extschema@.capture_progress IS
    'Active runs with their progress; reading it records runs whose worker is gone as failed/interrupted.';
