/* snapshot--1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION snapshot" to load this file. \quit

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
    configured_by    name NOT NULL DEFAULT CURRENT_USER
);

/* One row per capture_all_snapshots() call. */
CREATE TABLE @extschema@.snapshot_runs (
    run_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    snapshot_date date NOT NULL,
    triggered_by  text NOT NULL,
    status        text NOT NULL
                  CHECK (status IN ('running', 'succeeded', 'partial', 'failed')),
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz,
    portfolios    integer NOT NULL DEFAULT 0,
    captured      integer NOT NULL DEFAULT 0,
    failed        integer NOT NULL DEFAULT 0
);
CREATE INDEX snapshot_runs_snapshot_date_idx
    ON @extschema@.snapshot_runs (snapshot_date, run_id);

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
    captured_at      timestamptz NOT NULL
) PARTITION BY RANGE (snapshot_date);

SELECT pg_catalog.pg_extension_config_dump('@extschema@.snapshot_config', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.snapshot_runs', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.snapshot_runs_run_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.snapshot_run_errors', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.portfolio_snapshots', '');

/*
 * snapshot_configure: resolve and validate the application's relations and
 * store them.  Runs with the caller's rights and search_path, so the names
 * resolve exactly as the caller sees them.  Calling it again replaces the
 * configuration.
 */
CREATE FUNCTION @extschema@.snapshot_configure(
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

    DELETE FROM @extschema@.snapshot_config;
    INSERT INTO @extschema@.snapshot_config
           (portfolios, assets, transactions, prices, fx_rates, cost_method, stale_after_days)
    VALUES (rels[1], rels[2], rels[3], rels[4], rels[5], cost_method, stale_after_days);
END;
$function$;
REVOKE ALL ON FUNCTION @extschema@.snapshot_configure(text, text, text, text, text, text, integer) FROM PUBLIC;

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
SET search_path = pg_catalog, pg_temp;
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
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION @extschema@.capture_snapshot(uuid, date) FROM PUBLIC;
