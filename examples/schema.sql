-- examples/schema.sql: the reference source schema, modelled on the
-- application: uuid keys, portfolios.base_currency, and
-- transactions.exchange_rate = transaction currency -> portfolio base
-- currency at trade time.  The extension only reads these tables.

CREATE TABLE portfolios (
    id            uuid PRIMARY KEY,
    name          text NOT NULL,
    base_currency text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE assets (
    id       uuid PRIMARY KEY,
    symbol   text NOT NULL UNIQUE,
    name     text,
    currency text NOT NULL
);

-- No CHECK on type: the application once wrote 'sync', and the capture must
-- report such rows, not be shielded from them.
CREATE TABLE transactions (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    portfolio_id     uuid NOT NULL REFERENCES portfolios (id),
    asset_id         uuid REFERENCES assets (id),
    type             text NOT NULL,
    quantity         numeric,
    price            numeric,
    fee              numeric,
    exchange_rate    numeric,
    transaction_date timestamptz NOT NULL
);

-- The index the capture's ordered walk uses: it reads every portfolio's
-- ledger in (portfolio_id, transaction_date, id) order without a sort, and
-- (covering the columns the capture reads) without visiting the table once
-- the visibility map is set, i.e. after (auto)vacuum.
CREATE INDEX transactions_snapshot_walk_idx
    ON transactions (portfolio_id, transaction_date, id)
    INCLUDE (asset_id, type, quantity, price, fee, exchange_rate);

CREATE TABLE asset_prices (
    asset_id   uuid NOT NULL REFERENCES assets (id),
    price_date date NOT NULL,
    close      numeric NOT NULL,
    PRIMARY KEY (asset_id, price_date)
);

CREATE TABLE fx_rates (
    from_currency text NOT NULL,
    to_currency   text NOT NULL,
    rate_date     date NOT NULL,
    rate          numeric NOT NULL,
    PRIMARY KEY (from_currency, to_currency, rate_date)
);
