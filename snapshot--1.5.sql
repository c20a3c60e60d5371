/* snapshot--1.5.sql: the full install script of version 1.5 */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION snapshot" to load this file. \quit

/*
 * The objects of version 1.5, written out whole: CREATE EXTENSION runs this
 * script rather than 1.0 and the upgrades.  sql/upgrade.sql checks that
 * 1.0 updated to 1.5 gives exactly these objects.  The security model
 * (README.md, "Security model"): captures read the configured relations
 * with their owner's rights, check them from the catalogs at every capture,
 * and serialize on a lock that only the extension's owner can take.
 */

/*
 * Configuration: which of the application's relations hold the portfolios,
 * assets, ledger, prices and FX rates.  One row at most; the relations are
 * stored as regclass so that renames survive.  The extension never owns the
 * application's tables, so DROP EXTENSION can never drop a portfolio.
 */
CREATE TABLE @extschema@.snapshot_config (
    singleton        boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    portfolios       pg_catalog.regclass NOT NULL,
    assets           pg_catalog.regclass NOT NULL,
    transactions     pg_catalog.regclass NOT NULL,
    prices           pg_catalog.regclass NOT NULL,
    fx_rates         pg_catalog.regclass,
    cost_method      text NOT NULL CHECK (cost_method IN ('fifo', 'average')),
    stale_after_days integer NOT NULL CHECK (stale_after_days >= 0),
    configured_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    configured_by    name NOT NULL DEFAULT CURRENT_USER,
    quantity_tolerance numeric NOT NULL DEFAULT 0 CHECK (quantity_tolerance >= 0)
);
COMMENT ON COLUMN @extschema@.snapshot_config.quantity_tolerance IS
    'A SELL or TRANSFER_OUT exceeding the holding by at most this much removes the whole holding, and a holding left within it of zero is closed; 0 is exact.';

/* One row per capture_all_snapshots() call. */
CREATE TABLE @extschema@.snapshot_runs (
    run_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    snapshot_date date NOT NULL,
    triggered_by  text NOT NULL,
    status        text NOT NULL
                  CHECK (status IN ('queued', 'running', 'succeeded', 'partial', 'failed', 'cancelled')),
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz,
    portfolios    integer NOT NULL DEFAULT 0,
    captured      integer NOT NULL DEFAULT 0,
    failed        integer NOT NULL DEFAULT 0,
    workers       integer NOT NULL DEFAULT 0 CHECK (workers >= 0),
    skipped_rows  integer NOT NULL DEFAULT 0 CHECK (skipped_rows >= 0),
    reason        text,
    total         integer,
    updated_at    timestamptz,
    last_portfolio_id uuid,
    worker_pid    integer
);
CREATE INDEX snapshot_runs_snapshot_date_idx
    ON @extschema@.snapshot_runs (snapshot_date, run_id);
COMMENT ON COLUMN @extschema@.snapshot_runs.workers IS
    'Valuation workers that took part in the run; 0 when the calling backend valued every portfolio.';
COMMENT ON COLUMN @extschema@.snapshot_runs.skipped_rows IS
    'Source rows the run skipped: market data with a NULL or out-of-bounds value, portfolio or ledger rows without a portfolio id.';
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

/* The portfolios a run could not value, and why. */
CREATE TABLE @extschema@.snapshot_run_errors (
    run_id       bigint NOT NULL
                 REFERENCES @extschema@.snapshot_runs (run_id) ON DELETE CASCADE,
    portfolio_id uuid NOT NULL,
    sqlstate     text NOT NULL,
    message      text NOT NULL,
    detail       text,
    PRIMARY KEY (run_id, portfolio_id)
);

/*
 * One valuation per portfolio and UTC day.  Range-partitioned by month; the
 * capture functions create (and attach) a month's partition on demand, each
 * with the primary key (portfolio_id, snapshot_date).  Since snapshot_date is
 * the partition key, those keys make (portfolio_id, snapshot_date) unique in
 * the whole table.  The key is declared per partition rather than on this
 * parent because the parent belongs to the extension and the partitions do
 * not: pg_dump restores a member parent's key before the partitions and then
 * fails to add theirs ("multiple primary keys"), so a key here would break
 * pg_dump/pg_restore of every snapshot.
 */
CREATE TABLE @extschema@.portfolio_snapshots (
    portfolio_id     uuid NOT NULL,
    snapshot_date    date NOT NULL,
    base_currency    text NOT NULL,
    market_value     numeric NOT NULL,
    cash_balance     numeric NOT NULL,
    net_worth        numeric NOT NULL,
    total_cost       numeric NOT NULL,
    unrealized_pnl   numeric NOT NULL,
    realized_pnl     numeric NOT NULL,
    income           numeric NOT NULL,
    fees             numeric NOT NULL,
    net_contribution numeric NOT NULL,
    day_flow         numeric NOT NULL,
    position_count   integer NOT NULL,
    missing_prices   integer NOT NULL,
    stale_prices     integer NOT NULL,
    missing_fx       integer NOT NULL,
    positions        jsonb NOT NULL,
    metadata         jsonb NOT NULL,
    run_id           bigint,
    captured_at      timestamptz NOT NULL,
    taxes            numeric NOT NULL DEFAULT 0
) PARTITION BY RANGE (snapshot_date);
COMMENT ON COLUMN @extschema@.portfolio_snapshots.taxes IS
    'Taxes paid (TAX rows: quantity x price x rate), in the base currency.';

/*
 * positions and metadata are compressed with lz4 rather than pglz where the
 * server has lz4: the same job in a fraction of the CPU time (pglz was a
 * fifth of a capture's time).  Partitions follow the parent.
 */
DO $lz4$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_settings s
                WHERE s.name OPERATOR(pg_catalog.=) 'default_toast_compression'
                  AND 'lz4'::pg_catalog.text OPERATOR(pg_catalog.=) ANY (s.enumvals)) THEN
        ALTER TABLE @extschema@.portfolio_snapshots
            ALTER COLUMN positions SET COMPRESSION lz4,
            ALTER COLUMN metadata SET COMPRESSION lz4;
    END IF;
END
$lz4$;

/*
 * Captures of one date serialize on the date's row here, locked FOR UPDATE
 * until the capture's transaction ends.  No role but the extension's owner
 * has any privilege on this table, so no other role can take or hold the
 * lock (1.2 used an advisory lock, which any role could take).  Rows are
 * only locks: pg_dump need not keep them.
 */
CREATE TABLE @extschema@.capture_date_locks (
    snapshot_date date PRIMARY KEY
);
REVOKE ALL ON @extschema@.capture_date_locks FROM PUBLIC;
COMMENT ON TABLE @extschema@.capture_date_locks IS
    'One row per captured date; a capture locks its date''s row until it commits.';

SELECT pg_catalog.pg_extension_config_dump('@extschema@.snapshot_config', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.snapshot_runs', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.snapshot_runs_run_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.snapshot_run_errors', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.portfolio_snapshots', '');


/*
 * snapshot_configure: resolve the application's relations (qualified names
 * as given, unqualified ones in search_path, which defaults to the caller's
 * path, evaluated before the call), check them from the catalogs with the
 * same code every capture runs, never planning a query over them, and store
 * them.  It runs with the caller's rights and a fixed search_path.
 */
CREATE FUNCTION @extschema@.snapshot_configure(
    portfolios         text DEFAULT 'portfolios',
    assets             text DEFAULT 'assets',
    transactions       text DEFAULT 'transactions',
    prices             text DEFAULT 'asset_prices',
    fx_rates           text DEFAULT NULL,
    cost_method        text DEFAULT 'fifo',
    stale_after_days   integer DEFAULT 5,
    quantity_tolerance numeric DEFAULT 0,
    search_path        name[] DEFAULT pg_catalog.current_schemas(true))
RETURNS void
AS 'MODULE_PATHNAME', 'snapshot_configure'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION @extschema@.snapshot_configure(text, text, text, text, text, text, integer, numeric, name[]) FROM PUBLIC;

/*
 * The capture functions run with jit = off: their queries are an ordered
 * walk and a few small lookups, and JIT compiling them (the ledger walk of
 * 100,000 portfolios costs enough to trigger it) only loads LLVM into the
 * backend and its workers.
 */
/*
 * capture_all_snapshots: value every portfolio as of snapshot_date and upsert
 * one snapshot each; returns the run's row.  See README.md for the rules.
 */
CREATE FUNCTION @extschema@.capture_all_snapshots(
    snapshot_date date DEFAULT (pg_catalog.now() AT TIME ZONE 'UTC')::date,
    triggered_by  text DEFAULT 'manual')
RETURNS @extschema@.snapshot_runs
AS 'MODULE_PATHNAME', 'capture_all_snapshots'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off;
REVOKE ALL ON FUNCTION @extschema@.capture_all_snapshots(date, text) FROM PUBLIC;

/*
 * capture_snapshot: the same valuation for one portfolio (the application's
 * on-demand path); errors are raised, not recorded.
 */
CREATE FUNCTION @extschema@.capture_snapshot(
    portfolio_id  uuid,
    snapshot_date date DEFAULT (pg_catalog.now() AT TIME ZONE 'UTC')::date)
RETURNS @extschema@.portfolio_snapshots
AS 'MODULE_PATHNAME', 'capture_snapshot'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off;
REVOKE ALL ON FUNCTION @extschema@.capture_snapshot(uuid, date) FROM PUBLIC;

/*
 * capture_all_snapshots_if_missing: the pg_cron fallback's job.  Returns the
 * latest succeeded run of the date, doing no work, when every current
 * portfolio has a snapshot of it; otherwise captures, exactly like
 * capture_all_snapshots.  It takes the date's lock first, so a fallback that
 * fires while the primary run of the date is still going waits for it and
 * then finds it done.
 */
CREATE FUNCTION @extschema@.capture_all_snapshots_if_missing(
    snapshot_date date DEFAULT (pg_catalog.now() AT TIME ZONE 'UTC')::date - 1,
    triggered_by  text DEFAULT 'pg_cron')
RETURNS @extschema@.snapshot_runs
AS 'MODULE_PATHNAME', 'capture_all_snapshots_if_missing'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off;
REVOKE ALL ON FUNCTION @extschema@.capture_all_snapshots_if_missing(date, text) FROM PUBLIC;

/*
 * require_pg_cron: raise 55000 unless pg_cron is installed in this database.
 * The extension never requires pg_cron; only scheduling the fallback does.
 */
CREATE FUNCTION @extschema@.require_pg_cron()
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $function$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'pg_cron') THEN
        RAISE EXCEPTION 'pg_cron is not installed in database %', pg_catalog.current_database()
            USING ERRCODE = '55000',
                  HINT = 'Add pg_cron to shared_preload_libraries, set cron.database_name to this database, '
                         'restart PostgreSQL, then run CREATE EXTENSION pg_cron.';
    END IF;
END;
$function$;
REVOKE ALL ON FUNCTION @extschema@.require_pg_cron() FROM PUBLIC;

/*
 * check_cron_schedule: raise 22023 unless schedule is a cron expression of
 * five fields in pg_cron's syntax (minute 0-59, hour 0-23, day of month
 * 1-31 or $ for the last, month 1-12 or jan-dec, day of week 0-7 or
 * sun-sat; each field a comma list of *, N or N-M, each optionally /step);
 * returns it.
 */
CREATE FUNCTION @extschema@.check_cron_schedule(schedule text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    field_names text[] := ARRAY['minute', 'hour', 'day of month', 'month', 'day of week'];
    lows        integer[] := ARRAY[0, 0, 1, 1, 0];
    highs       integer[] := ARRAY[59, 23, 31, 12, 7];
    aliases     text[];
    fields      text[];
    field       text;
    item        text;
    parts       text[];
    low         integer;
    high        integer;
    problem     text;
BEGIN
    IF schedule IS NULL OR pg_catalog.btrim(schedule) OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION 'schedule must not be null or empty'
            USING ERRCODE = '22023',
                  HINT = 'Give a cron expression in UTC, for example ''30 1 * * *''.';
    END IF;
    fields := pg_catalog.regexp_split_to_array(pg_catalog.btrim(schedule), '\s+');
    IF pg_catalog.cardinality(fields) OPERATOR(pg_catalog.<>) 5 THEN
        problem := pg_catalog.format('it has %s fields, not 5', pg_catalog.cardinality(fields));
    END IF;
    FOR f IN 1 .. 5 LOOP
        EXIT WHEN problem IS NOT NULL;
        field := pg_catalog.lower(fields[f]);
        aliases := CASE f WHEN 4 THEN ARRAY['jan', 'feb', 'mar', 'apr', 'may', 'jun',
                                            'jul', 'aug', 'sep', 'oct', 'nov', 'dec']
                          WHEN 5 THEN ARRAY['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat']
                          ELSE ARRAY[]::text[] END;
        FOR a IN 1 .. pg_catalog.cardinality(aliases) LOOP
            field := pg_catalog.replace(field, aliases[a],
                                        (a OPERATOR(pg_catalog.-) CASE f WHEN 5 THEN 1 ELSE 0 END)::text);
        END LOOP;
        FOREACH item IN ARRAY pg_catalog.string_to_array(field, ',') LOOP
            CONTINUE WHEN f OPERATOR(pg_catalog.=) 3 AND item OPERATOR(pg_catalog.=) '$';
            parts := pg_catalog.regexp_match(item, '^(?:(\*)|([0-9]{1,2})(?:-([0-9]{1,2}))?)(?:/([0-9]{1,2}))?$');
            IF parts IS NULL THEN
                problem := pg_catalog.format('the %s field has "%s"', field_names[f], item);
                EXIT;
            END IF;
            low := coalesce(parts[2]::integer, lows[f]);
            high := coalesce(parts[3]::integer, CASE WHEN parts[2] IS NULL THEN highs[f] ELSE low END);
            IF low OPERATOR(pg_catalog.<) lows[f] OR high OPERATOR(pg_catalog.>) highs[f]
               OR low OPERATOR(pg_catalog.>) high OR parts[4]::integer OPERATOR(pg_catalog.=) 0 THEN
                problem := pg_catalog.format('the %s field has "%s", outside %s-%s',
                                             field_names[f], item, lows[f], highs[f]);
                EXIT;
            END IF;
        END LOOP;
    END LOOP;
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'invalid cron schedule "%"', schedule
            USING ERRCODE = '22023',
                  DETAIL = pg_catalog.format('The schedule is not in pg_cron''s syntax: %s.', problem),
                  HINT = 'A schedule has five fields, minute hour day-of-month month day-of-week, in UTC; for example ''30 1 * * *''.';
    END IF;
    RETURN schedule;
END;
$function$;
REVOKE ALL ON FUNCTION @extschema@.check_cron_schedule(text) FROM PUBLIC;

/*
 * schedule_snapshot_fallback: check the schedule, then create or update
 * (never duplicate) the pg_cron job portfolio_daily_snapshot_fallback, which
 * runs the fallback as the calling role; returns its job id.  pg_cron is
 * optional: without it in this database, this fails with 55000.
 */
CREATE FUNCTION @extschema@.schedule_snapshot_fallback(schedule text DEFAULT '30 1 * * *')
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    jobid bigint;
BEGIN
    PERFORM @extschema@.require_pg_cron();
    PERFORM @extschema@.check_cron_schedule(schedule);
    EXECUTE 'SELECT cron.schedule($1, $2, $3)'
       INTO jobid
      USING 'portfolio_daily_snapshot_fallback', schedule,
            pg_catalog.format('SELECT run_id, status FROM %I.capture_all_snapshots_if_missing()', '@extschema@');
    RETURN jobid;
END;
$function$;
REVOKE ALL ON FUNCTION @extschema@.schedule_snapshot_fallback(text) FROM PUBLIC;

/*
 * unschedule_snapshot_fallback: remove the calling role's fallback job;
 * returns whether there was one.
 */
CREATE FUNCTION @extschema@.unschedule_snapshot_fallback()
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    found_job boolean;
BEGIN
    PERFORM @extschema@.require_pg_cron();
    EXECUTE 'SELECT EXISTS (SELECT FROM cron.job j WHERE j.jobname OPERATOR(pg_catalog.=) $1'
            ' AND j.username OPERATOR(pg_catalog.=) CURRENT_USER)'
       INTO found_job USING 'portfolio_daily_snapshot_fallback';
    IF found_job THEN
        EXECUTE 'SELECT cron.unschedule($1)' USING 'portfolio_daily_snapshot_fallback';
    END IF;
    RETURN found_job;
END;
$function$;
REVOKE ALL ON FUNCTION @extschema@.unschedule_snapshot_fallback() FROM PUBLIC;

/*
 * portfolio_performance and performance_series: what the snapshots are for.
 * A portfolio's time-weighted and money-weighted returns, drawdown and daily
 * series over a period, from portfolio_snapshots alone (README.md,
 * "Returns").  They run with the caller's rights, so the caller needs
 * SELECT on portfolio_snapshots, and row-level security on it applies.
 */
CREATE FUNCTION @extschema@.portfolio_performance(portfolio_id uuid, from_date date, to_date date)
RETURNS TABLE (
    first_date                       date,
    last_date                        date,
    base_currency                    text,
    start_net_worth                  numeric,
    end_net_worth                    numeric,
    net_contribution                 numeric,
    absolute_gain                    numeric,
    time_weighted_return             numeric,
    time_weighted_return_annualised  numeric,
    money_weighted_return            numeric,
    money_weighted_return_annualised numeric,
    max_drawdown                     numeric,
    drawdown_peak_date               date,
    drawdown_trough_date             date,
    days                             integer,
    snapshots                        integer,
    missing_days                     integer,
    days_without_return              integer)
AS 'MODULE_PATHNAME', 'portfolio_performance'
LANGUAGE C STABLE PARALLEL RESTRICTED ROWS 1;
REVOKE ALL ON FUNCTION @extschema@.portfolio_performance(uuid, date, date) FROM PUBLIC;

CREATE FUNCTION @extschema@.performance_series(portfolio_id uuid, from_date date, to_date date)
RETURNS TABLE (
    snapshot_date    date,
    net_worth        numeric,
    net_contribution numeric,
    day_flow         numeric,
    flow             numeric,
    daily_return     numeric,
    twr_index        numeric,
    drawdown         numeric,
    gap_days         integer)
AS 'MODULE_PATHNAME', 'performance_series'
LANGUAGE C STABLE PARALLEL RESTRICTED ROWS 366;
REVOKE ALL ON FUNCTION @extschema@.performance_series(uuid, date, date) FROM PUBLIC;

/*
 * Runs that own themselves (README.md, "Runs"): start_capture() starts a
 * background worker that owns the run and commits it in batches.
 */
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
