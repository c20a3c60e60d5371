/* snapshot--1.2--1.3.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION snapshot UPDATE TO '1.3'" to load this file. \quit

/*
 * The security model of 1.3 (README.md, "Security model"): captures read the
 * configured relations with their owner's rights, check them from the
 * catalogs at every capture, and serialize on a lock that only the
 * extension's owner can take.
 */

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

/*
 * Rows a run skipped: market-data rows whose key or value is NULL or out of
 * bounds, and portfolio or ledger rows without a portfolio id.
 */
ALTER TABLE @extschema@.snapshot_runs
    ADD COLUMN skipped_rows integer NOT NULL DEFAULT 0 CHECK (skipped_rows >= 0);
COMMENT ON COLUMN @extschema@.snapshot_runs.skipped_rows IS
    'Source rows the run skipped: market data with a NULL or out-of-bounds value, portfolio or ledger rows without a portfolio id.';

/*
 * snapshot_configure is now C: it resolves the names (qualified as given,
 * unqualified in search_path, which defaults to the caller's path, evaluated
 * before the call) and checks the relations from the catalogs, with the
 * same code every capture runs, never planning a query over them.  It runs
 * with the caller's rights and a fixed search_path.
 */
DROP FUNCTION @extschema@.snapshot_configure(text, text, text, text, text, text, integer);
CREATE FUNCTION @extschema@.snapshot_configure(
    portfolios       text DEFAULT 'portfolios',
    assets           text DEFAULT 'assets',
    transactions     text DEFAULT 'transactions',
    prices           text DEFAULT 'asset_prices',
    fx_rates         text DEFAULT NULL,
    cost_method      text DEFAULT 'fifo',
    stale_after_days integer DEFAULT 5,
    search_path      name[] DEFAULT pg_catalog.current_schemas(true))
RETURNS void
AS 'MODULE_PATHNAME', 'snapshot_configure'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION @extschema@.snapshot_configure(text, text, text, text, text, text, integer, name[]) FROM PUBLIC;

/*
 * capture_all_snapshots_if_missing is now C, sharing capture_all_snapshots'
 * path: its check that every portfolio has a snapshot reads the portfolios
 * with their owner's rights (1.1-1.2 read them as the extension's owner).
 */
CREATE OR REPLACE FUNCTION @extschema@.capture_all_snapshots_if_missing(
    snapshot_date date DEFAULT (pg_catalog.now() AT TIME ZONE 'UTC')::date - 1,
    triggered_by  text DEFAULT 'pg_cron')
RETURNS @extschema@.snapshot_runs
AS 'MODULE_PATHNAME', 'capture_all_snapshots_if_missing'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off;

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
 * schedule_snapshot_fallback: as in 1.1, with the schedule checked first.
 */
CREATE OR REPLACE FUNCTION @extschema@.schedule_snapshot_fallback(schedule text DEFAULT '30 1 * * *')
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
