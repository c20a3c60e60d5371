/* snapshot--1.0--1.1.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION snapshot UPDATE TO '1.1'" to load this file. \quit

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
 * snapshot_configure: resolve and validate the application's relations and
 * store them.  Runs with the caller's rights and search_path, so the names
 * resolve exactly as the caller sees them.  Calling it again replaces the
 * configuration.  Since 1.1 it also raises a NOTICE when the transactions
 * table has no index that serves the capture's ordered walk.
 */
CREATE OR REPLACE FUNCTION @extschema@.snapshot_configure(
    portfolios       text DEFAULT 'portfolios',
    assets           text DEFAULT 'assets',
    transactions     text DEFAULT 'transactions',
    prices           text DEFAULT 'asset_prices',
    fx_rates         text DEFAULT NULL,
    cost_method      text DEFAULT 'fifo',
    stale_after_days integer DEFAULT 5)
RETURNS void
LANGUAGE plpgsql
AS $function$
DECLARE
    rels      pg_catalog.regclass[] := ARRAY[NULL, NULL, NULL, NULL, NULL]::pg_catalog.regclass[];
    names     text[] := ARRAY[portfolios, assets, transactions, prices, fx_rates];
    roles     text[] := ARRAY['portfolios', 'assets', 'transactions', 'prices', 'fx_rates'];
    req       record;
    rel       pg_catalog.regclass;
BEGIN
    IF cost_method IS NULL OR cost_method NOT IN ('fifo', 'average') THEN
        RAISE EXCEPTION 'invalid cost method: %', coalesce(pg_catalog.quote_literal(cost_method), 'NULL')
            USING ERRCODE = '22023',
                  HINT = 'The cost method is "fifo" or "average".';
    END IF;
    IF stale_after_days IS NULL OR stale_after_days < 0 THEN
        RAISE EXCEPTION 'invalid stale_after_days: %', coalesce(stale_after_days::text, 'NULL')
            USING ERRCODE = '22023',
                  HINT = 'stale_after_days is a number of days, zero or more.';
    END IF;

    FOR i IN 1 .. 5 LOOP
        CONTINUE WHEN i = 5 AND names[i] IS NULL;
        IF names[i] IS NULL THEN
            RAISE EXCEPTION 'the % relation must be named', roles[i]
                USING ERRCODE = '22004';
        END IF;
        rels[i] := pg_catalog.to_regclass(names[i]);
        IF rels[i] IS NULL THEN
            RAISE EXCEPTION 'relation "%" does not exist', names[i]
                USING ERRCODE = '42P01',
                      DETAIL = pg_catalog.format('It was given as the %s relation.', roles[i]);
        END IF;
    END LOOP;

    /* Each required column must exist and cast to the type the capture reads. */
    FOR req IN
        SELECT r.idx, r.col, r.typ
          FROM (VALUES
                (1, 'id', 'uuid'), (1, 'base_currency', 'text'),
                (2, 'id', 'uuid'), (2, 'symbol', 'text'), (2, 'currency', 'text'),
                (3, 'id', NULL), (3, 'portfolio_id', 'uuid'), (3, 'asset_id', 'uuid'),
                (3, 'type', 'text'), (3, 'quantity', 'numeric'), (3, 'price', 'numeric'),
                (3, 'fee', 'numeric'), (3, 'exchange_rate', 'numeric'),
                (3, 'transaction_date', 'timestamptz'),
                (4, 'asset_id', 'uuid'), (4, 'price_date', 'date'), (4, 'close', 'numeric'),
                (5, 'from_currency', 'text'), (5, 'to_currency', 'text'),
                (5, 'rate_date', 'date'), (5, 'rate', 'numeric')) AS r(idx, col, typ)
         ORDER BY r.idx
    LOOP
        rel := rels[req.idx];
        CONTINUE WHEN rel IS NULL;
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_attribute a
                        WHERE a.attrelid = rel AND a.attname = req.col
                          AND a.attnum > 0 AND NOT a.attisdropped) THEN
            RAISE EXCEPTION 'column "%" of relation % does not exist', req.col, rel
                USING ERRCODE = '42703',
                      DETAIL = pg_catalog.format('The %s relation needs the column %s%s.',
                                                 roles[req.idx], req.col,
                                                 coalesce(' of a type castable to ' || req.typ, ''));
        END IF;
        BEGIN
            IF req.typ IS NULL THEN
                /* the ledger's id only has to be orderable */
                EXECUTE pg_catalog.format('SELECT FROM %s ORDER BY %I LIMIT 0', rel, req.col);
            ELSE
                EXECUTE pg_catalog.format('SELECT %I::%s FROM %s LIMIT 0', req.col, req.typ, rel);
            END IF;
        EXCEPTION WHEN undefined_function OR cannot_coerce THEN
            RAISE EXCEPTION 'column "%" of relation % has an unusable type', req.col, rel
                USING ERRCODE = '42804',
                      DETAIL = pg_catalog.format('The column must be %s.',
                                                 coalesce('castable to ' || req.typ, 'orderable'));
        END;
    END LOOP;

    /* The walk reads the ledger in (portfolio_id, transaction_date, id) order. */
    IF (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = rels[3]) IN ('r', 'p', 'm')
       AND NOT EXISTS (
           SELECT FROM pg_catalog.pg_index i
             JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
             JOIN pg_catalog.pg_am am ON am.oid = ic.relam AND am.amname = 'btree'
            WHERE i.indrelid = rels[3] AND i.indpred IS NULL AND i.indnkeyatts >= 2
              AND (SELECT a.attname FROM pg_catalog.pg_attribute a
                    WHERE a.attrelid = rels[3] AND a.attnum = i.indkey[0]) = 'portfolio_id'
              AND (SELECT a.attname FROM pg_catalog.pg_attribute a
                    WHERE a.attrelid = rels[3] AND a.attnum = i.indkey[1]) = 'transaction_date') THEN
        RAISE NOTICE 'relation % has no index that serves the ledger walk', rels[3]
            USING DETAIL = 'capture_all_snapshots reads the ledger ordered by portfolio_id, transaction_date, id; without an index it sorts the whole ledger.',
                  HINT = pg_catalog.format('CREATE INDEX ON %s (portfolio_id, transaction_date, id) INCLUDE (asset_id, type, quantity, price, fee, exchange_rate);', rels[3]);
    END IF;

    DELETE FROM @extschema@.snapshot_config;
    INSERT INTO @extschema@.snapshot_config
           (portfolios, assets, transactions, prices, fx_rates, cost_method, stale_after_days)
    VALUES (rels[1], rels[2], rels[3], rels[4], rels[5], cost_method, stale_after_days);
END;
$function$;
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
