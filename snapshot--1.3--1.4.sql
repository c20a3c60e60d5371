/* snapshot--1.3--1.4.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION snapshot UPDATE TO '1.4'" to load this file. \quit

/*
 * Real ledgers (README.md, "Valuation rules"): SPLIT, TRANSFER_IN and
 * TRANSFER_OUT, INTEREST and TAX; fee-only FEE and TAX rows; a tolerance for
 * quantities written from floating point; rows of one instant in a fixed
 * order.  Snapshots gain the figure taxes (0 in the snapshots of earlier
 * versions, which had no TAX rows).
 */
ALTER TABLE @extschema@.portfolio_snapshots
    ADD COLUMN taxes numeric NOT NULL DEFAULT 0;
COMMENT ON COLUMN @extschema@.portfolio_snapshots.taxes IS
    'Taxes paid (TAX rows: quantity x price x rate), in the base currency.';

ALTER TABLE @extschema@.snapshot_config
    ADD COLUMN quantity_tolerance numeric NOT NULL DEFAULT 0 CHECK (quantity_tolerance >= 0);
COMMENT ON COLUMN @extschema@.snapshot_config.quantity_tolerance IS
    'A SELL or TRANSFER_OUT exceeding the holding by at most this much removes the whole holding, and a holding left within it of zero is closed; 0 is exact.';

/*
 * snapshot_configure gains quantity_tolerance (before search_path, which is
 * meant to be left to its default).
 */
DROP FUNCTION @extschema@.snapshot_configure(text, text, text, text, text, text, integer, name[]);
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
