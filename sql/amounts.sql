-- amounts: the valuation's arithmetic is exact at any size.  Amounts of up
-- to 34 digits are computed in fixed point and larger ones, finer ones and
-- quotients by numeric itself (snapshot_amount.c); both give numeric's
-- results, rounded half away from zero to 8 places.  The expected values were
-- worked out with exact decimal arithmetic (Python's decimal, 200 digits).
\i test/preamble.sql
BEGIN;
CREATE EXTENSION pgtap;
CREATE EXTENSION snapshot;
\i examples/schema.sql
SELECT plan(8);

INSERT INTO assets (id, symbol, currency) VALUES
    ('0b000000-0000-0000-0000-000000000001', 'BIG', 'USD'),
    ('0b000000-0000-0000-0000-000000000002', 'TINY', 'USD'),
    ('0b000000-0000-0000-0000-000000000003', 'THIRD', 'USD'),
    ('0b000000-0000-0000-0000-000000000004', 'FINE', 'USD');
INSERT INTO asset_prices (asset_id, price_date, close) VALUES
    ('0b000000-0000-0000-0000-000000000001', '2026-03-04', 2.5),
    ('0b000000-0000-0000-0000-000000000002', '2026-03-04', 0),
    ('0b000000-0000-0000-0000-000000000003', '2026-03-04', 11),
    ('0b000000-0000-0000-0000-000000000004', '2026-03-04', 3);
INSERT INTO portfolios (id, name, base_currency) VALUES
    ('b0000000-0000-0000-0000-000000000001', 'beyond 34 digits', 'USD'),
    ('b0000000-0000-0000-0000-000000000002', 'half a unit of the 8th place', 'USD'),
    ('b0000000-0000-0000-0000-000000000003', 'a third of a lot', 'USD'),
    ('b0000000-0000-0000-0000-000000000004', '40 decimal places', 'USD');
INSERT INTO transactions (portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date) VALUES
    ('b0000000-0000-0000-0000-000000000001', NULL, 'DEPOSIT', 1, 9999999999999999999999999999999999.5, 0, NULL, '2026-03-01 09:00+00'),
    ('b0000000-0000-0000-0000-000000000001', '0b000000-0000-0000-0000-000000000001', 'BUY',
     123456789012345678.123456789, 98765432109876543.21, 0, NULL, '2026-03-02 09:00+00'),
    ('b0000000-0000-0000-0000-000000000002', '0b000000-0000-0000-0000-000000000002', 'BUY', 1, 0.000000005, 0, NULL, '2026-03-02 09:00+00'),
    ('b0000000-0000-0000-0000-000000000003', '0b000000-0000-0000-0000-000000000003', 'BUY', 3, 10, 1, NULL, '2026-03-02 09:00+00'),
    ('b0000000-0000-0000-0000-000000000003', '0b000000-0000-0000-0000-000000000003', 'SELL', 1, 12, 0, NULL, '2026-03-03 09:00+00'),
    ('b0000000-0000-0000-0000-000000000004', '0b000000-0000-0000-0000-000000000004', 'BUY',
     2, 1.0000000000000000000000000000000000000001, 0, NULL, '2026-03-02 09:00+00');
SELECT snapshot.snapshot_configure();
SELECT is(status, 'succeeded', 'every portfolio is valued') FROM snapshot.capture_all_snapshots('2026-03-05', 'amounts');

-- 123456789012345678.123456789 x 98765432109876543.21
--   = 12193263113702179445679012224706599.59112635269 (45 digits)
SELECT results_eq(
    $$SELECT total_cost, market_value, cash_balance, net_worth, unrealized_pnl, net_contribution
        FROM snapshot.portfolio_snapshots WHERE portfolio_id = 'b0000000-0000-0000-0000-000000000001'$$,
    $$VALUES (12193263113702179445679012224706599.59112635::numeric,
              308641972530864195.30864197::numeric,
              -2193263113702179445679012224706600.09112635::numeric,
              -2193263113702179137037039693842404.78248438::numeric,
              -12193263113702179137037039693842404.28248438::numeric,
              9999999999999999999999999999999999.50000000::numeric)$$,
    'amounts beyond 34 digits: exact, then rounded');
SELECT is((SELECT positions->0->>'cost_basis' FROM snapshot.portfolio_snapshots
            WHERE portfolio_id = 'b0000000-0000-0000-0000-000000000001'),
          '12193263113702179445679012224706599.59112635', '... also in positions');

-- 0.000000005 is half a unit of the 8th place: away from zero either way
SELECT results_eq(
    $$SELECT total_cost::text, market_value::text, unrealized_pnl::text, net_contribution::text,
             positions->0->>'cost_basis', positions->0->>'price'
        FROM snapshot.portfolio_snapshots WHERE portfolio_id = 'b0000000-0000-0000-0000-000000000002'$$,
    $$VALUES ('0.00000001', '0.00000000', '-0.00000001', '0.00000001', '0.00000001', '0.00000000')$$,
    'half a unit of the 8th place rounds away from zero, positive and negative, with 8 places shown');

-- BUY 3 at 10 with a fee of 1 (cost 31), SELL 1 at 12: the lot gives up
-- 31/3 = 10.333...; realized 12 - 10.333... = 1.666..., 20.666... stays,
-- worth 2 x 11 = 22, unrealized 1.333...
SELECT results_eq(
    $$SELECT realized_pnl, total_cost, market_value, unrealized_pnl
        FROM snapshot.portfolio_snapshots WHERE portfolio_id = 'b0000000-0000-0000-0000-000000000003'$$,
    $$VALUES (1.66666667::numeric, 20.66666667::numeric, 22::numeric, 1.33333333::numeric)$$,
    'a third of a lot: the quotient carried exactly, rounded once at the end');
SELECT is((SELECT positions->0->>'quantity' FROM snapshot.portfolio_snapshots
            WHERE portfolio_id = 'b0000000-0000-0000-0000-000000000003'),
          '2.00000000', 'quantities are shown with 8 places');

-- 2 x 1.0000000000000000000000000000000000000001 = 2.0000000000000000000000000000000000000002;
-- worth 2 x 3 = 6, unrealized 3.9999999999999999999999999999999999999998
SELECT results_eq(
    $$SELECT total_cost::text, unrealized_pnl::text, positions->0->>'price'
        FROM snapshot.portfolio_snapshots WHERE portfolio_id = 'b0000000-0000-0000-0000-000000000004'$$,
    $$VALUES ('2.00000000', '4.00000000', '3.00000000')$$,
    '40 decimal places: exact, then rounded');

-- capture_snapshot, the same code, agrees
SELECT is((SELECT count(*) FROM snapshot.portfolio_snapshots s,
                  LATERAL snapshot.capture_snapshot(s.portfolio_id, s.snapshot_date) c
            WHERE (s.total_cost, s.market_value, s.cash_balance, s.realized_pnl, s.unrealized_pnl, s.positions)
                  IS DISTINCT FROM (c.total_cost, c.market_value, c.cash_balance, c.realized_pnl, c.unrealized_pnl, c.positions)),
          0::bigint, 'capture_snapshot gives the same figures');

SELECT * FROM finish();
ROLLBACK;
