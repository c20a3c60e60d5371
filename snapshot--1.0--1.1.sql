/* snapshot--1.0--1.1.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION snapshot UPDATE TO '1.1'" to load this file. \quit

/*
 * positions and metadata are compressed with lz4 rather than pglz: the same
 * job in a fraction of the CPU time (pglz was a fifth of a capture's time).
 * Partitions follow the parent.
 */
ALTER TABLE @extschema@.portfolio_snapshots
    ALTER COLUMN positions SET COMPRESSION lz4,
    ALTER COLUMN metadata SET COMPRESSION lz4;

/*
 * capture_all_snapshots_if_missing: the fallback's job.  Returns the latest
 * succeeded run of the date, doing no work, when every current portfolio has
 * a snapshot for that date; otherwise captures, exactly like
 * capture_all_snapshots (which also validates the arguments).  It takes the
 * capture's advisory lock first, so a fallback that fires while the primary
 * run of the date is still going waits for it and then finds it done.
 */
CREATE FUNCTION @extschema@.capture_all_snapshots_if_missing(
    snapshot_date date DEFAULT (pg_catalog.now() AT TIME ZONE 'UTC')::date - 1,
    triggered_by  text DEFAULT 'pg_cron')
RETURNS @extschema@.snapshot_runs
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    d         date := $1;
    portfolios pg_catalog.regclass;
    done      @extschema@.snapshot_runs;
    uncovered boolean;
BEGIN
    SELECT c.portfolios INTO portfolios FROM @extschema@.snapshot_config c;
    -- with bad arguments, skip ahead: capture_all_snapshots reports them
    IF d IS NOT NULL AND portfolios IS NOT NULL
       AND $2 IS NOT NULL AND $2 OPERATOR(pg_catalog.<>) '' AND pg_catalog.length($2) OPERATOR(pg_catalog.<=) 64 THEN
        -- the same key as capture_all_snapshots: (1397637456, days since 2000-01-01)
        PERFORM pg_catalog.pg_advisory_xact_lock(1397637456, d OPERATOR(pg_catalog.-) DATE '2000-01-01');

        SELECT r.* INTO done FROM @extschema@.snapshot_runs r
         WHERE r.snapshot_date OPERATOR(pg_catalog.=) d AND r.status OPERATOR(pg_catalog.=) 'succeeded'
         ORDER BY r.run_id DESC LIMIT 1;
        IF FOUND THEN
            EXECUTE pg_catalog.format(
                'SELECT EXISTS (SELECT FROM %s p WHERE p.id IS NOT NULL AND NOT EXISTS ('
                ' SELECT FROM %I.portfolio_snapshots s'
                ' WHERE s.portfolio_id OPERATOR(pg_catalog.=) p.id::pg_catalog.uuid'
                ' AND s.snapshot_date OPERATOR(pg_catalog.=) $1))',
                portfolios, '@extschema@')
              INTO uncovered USING d;
            IF NOT uncovered THEN
                RETURN done;
            END IF;
        END IF;
    END IF;
    RETURN @extschema@.capture_all_snapshots(d, $2);
END;
$function$;
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
 * schedule_snapshot_fallback: create or update (never duplicate) the pg_cron
 * job portfolio_daily_snapshot_fallback, which runs the fallback as the
 * calling role; returns its job id.  pg_cron is optional: without it in this
 * database, this fails with 55000.
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
    IF schedule IS NULL OR schedule = '' THEN
        RAISE EXCEPTION 'schedule must not be null or empty'
            USING ERRCODE = '22023', HINT = 'Give a cron expression in UTC, for example ''30 1 * * *''.';
    END IF;
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
