-- performance: portfolio_performance() and performance_series() on
-- snapshots written by hand, each figure worked out on paper below.
-- Conventions (README.md, "Returns"): the flow between two snapshots is
-- the change of net_contribution; as in Portfolio Performance's true
-- time-weighted rate of return, 1 + r = (MVE + out) / (MVB + in): a flow in
-- counts at the start of its day, a flow out at its end.  Rates have 10
-- decimal places.
\i test/preamble.sql
BEGIN;
CREATE EXTENSION pgtap;
CREATE EXTENSION snapshot;
SELECT plan(30);

-- a snapshot with the figures the functions read (the others are zero)
CREATE FUNCTION pg_temp.snap(portfolio text, d date, net_worth numeric, net_contribution numeric,
                             day_flow numeric DEFAULT 0, currency text DEFAULT 'USD') RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    month date := date_trunc('month', d)::date;
    part text := format('portfolio_snapshots_y%sm%s', to_char(d, 'YYYY'), to_char(d, 'MM'));
BEGIN
    IF to_regclass('snapshot.' || part) IS NULL THEN
        EXECUTE format('CREATE TABLE snapshot.%I PARTITION OF snapshot.portfolio_snapshots FOR VALUES FROM (%L) TO (%L)',
                       part, month, (month + interval '1 month')::date);
    END IF;
    INSERT INTO snapshot.portfolio_snapshots
    VALUES (portfolio::uuid, d, currency, net_worth, 0, net_worth, 0, 0, 0, 0, 0, net_contribution, day_flow,
            0, 0, 0, 0, '[]', '{}', NULL, now());
END $$;

-- A. A deposit, then a gain: the time-weighted and money-weighted returns differ.
-- 01-01: 100.  01-02: 110 (+10%).  01-03: 1,000 deposited, no gain: 1,110.
-- 01-04: +10%: 1,221.
-- TWR: 110/100 x 1,110/(110 + 1,000) x 1,221/1,110 - 1 = 1.1 x 1 x 1.1 - 1 = 0.21.
-- MWR: 100 paid in at t = 0, 1,000 at the start of 01-03 (= day 1), 1,221 out
-- at day 3.  With g the growth per day: 100 g^3 + 1,000 g^2 = 1,221; the root
-- g = 1.05110...; the period's return g^3 - 1 = 0.1613516169: the deposit
-- earned the second 10% only, so the money earned less than the time did.
SELECT pg_temp.snap('a0000000-0000-0000-0000-000000000001', '2026-01-01', 100, 100, 100);
SELECT pg_temp.snap('a0000000-0000-0000-0000-000000000001', '2026-01-02', 110, 100);
SELECT pg_temp.snap('a0000000-0000-0000-0000-000000000001', '2026-01-03', 1110, 1100, 1000);
SELECT pg_temp.snap('a0000000-0000-0000-0000-000000000001', '2026-01-04', 1221, 1100);
SELECT results_eq(
    $$SELECT first_date, last_date, base_currency, start_net_worth, end_net_worth, net_contribution, absolute_gain,
             time_weighted_return, money_weighted_return, days, snapshots, missing_days
        FROM snapshot.portfolio_performance('a0000000-0000-0000-0000-000000000001', '2026-01-01', '2026-01-31')$$,
    $$VALUES ('2026-01-01'::date, '2026-01-04'::date, 'USD', 100::numeric, 1221::numeric, 1000::numeric, 121::numeric,
              0.2100000000, 0.1613516169, 3, 4, 0)$$,
    'A: deposit then gain: TWR 21%, MWR 16.14%, gain 121 (1,221 - 100 - 1,000)');
SELECT results_eq(
    $$SELECT time_weighted_return_annualised, money_weighted_return_annualised
        FROM snapshot.portfolio_performance('a0000000-0000-0000-0000-000000000001', '2026-01-01', '2026-01-31')$$,
    $$VALUES (NULL::numeric, NULL::numeric)$$, 'A: a period under a year is never annualised');
SELECT results_eq(
    $$SELECT snapshot_date, flow, daily_return, twr_index, drawdown, gap_days
        FROM snapshot.performance_series('a0000000-0000-0000-0000-000000000001', '2026-01-01', '2026-01-31')$$,
    $$VALUES ('2026-01-01'::date, NULL::numeric, NULL::numeric, 1.0000000000, 0.0000000000, 0),
             ('2026-01-02', 0, 0.1000000000, 1.1000000000, 0.0000000000, 0),
             ('2026-01-03', 1000, 0.0000000000, 1.1000000000, 0.0000000000, 0),
             ('2026-01-04', 0, 0.1000000000, 1.2100000000, 0.0000000000, 0)$$,
    'A: the series: flows, daily returns, the index from 1 and no drawdown');
SELECT results_eq(
    $$SELECT time_weighted_return, start_net_worth, net_contribution
        FROM snapshot.portfolio_performance('a0000000-0000-0000-0000-000000000001', '2026-01-02', '2026-01-03')$$,
    $$VALUES (0.0000000000, 110::numeric, 1000::numeric)$$,
    'A: a sub-period starts from its first snapshot: only the deposit, no gain');

-- B. A withdrawal in the middle.  1,000; 1,100 (+10%); 500 withdrawn at the
-- end of the day, no gain: 600; +10%: 660.
-- TWR: 1.1 x (600 + 500)/1,100 x 660/600 - 1 = 1.1 x 1 x 1.1 - 1 = 0.21.
-- MWR: 1,000 in at 0, 500 out at day 2, 660 out at day 3:
-- 1,000 g^3 = 500 g + 660, g = 1.05913...; g^3 - 1 = 0.1898229764.
SELECT pg_temp.snap('b0000000-0000-0000-0000-000000000001', '2026-02-01', 1000, 1000, 1000);
SELECT pg_temp.snap('b0000000-0000-0000-0000-000000000001', '2026-02-02', 1100, 1000);
SELECT pg_temp.snap('b0000000-0000-0000-0000-000000000001', '2026-02-03', 600, 500, -500);
SELECT pg_temp.snap('b0000000-0000-0000-0000-000000000001', '2026-02-04', 660, 500);
SELECT results_eq(
    $$SELECT net_contribution, absolute_gain, time_weighted_return, money_weighted_return
        FROM snapshot.portfolio_performance('b0000000-0000-0000-0000-000000000001', '2026-02-01', '2026-02-28')$$,
    $$VALUES (-500::numeric, 160::numeric, 0.2100000000, 0.1898229764)$$,
    'B: a withdrawal counts at the end of its day: TWR 21%, MWR 18.98%, gain 160');

-- C. A missing day, with the flow made on it.  01-01: 100; 01-02: no
-- snapshot, 100 deposited; 01-03: 220.  The chain links over the gap with the
-- change of net_contribution (100) as the flow in: 220/(100 + 100) - 1 = 0.1.
-- MWR: 100 g^2 + 100 g = 220, g = (-1 + sqrt(9.8))/2; g^2 - 1 = 0.1347524158.
SELECT pg_temp.snap('c0000000-0000-0000-0000-000000000001', '2026-03-01', 100, 100, 100);
SELECT pg_temp.snap('c0000000-0000-0000-0000-000000000001', '2026-03-03', 220, 200, 0);
SELECT results_eq(
    $$SELECT time_weighted_return, money_weighted_return, days, snapshots, missing_days
        FROM snapshot.portfolio_performance('c0000000-0000-0000-0000-000000000001', '2026-03-01', '2026-03-31')$$,
    $$VALUES (0.1000000000, 0.1347524158, 2, 2, 1)$$,
    'C: a missing day is linked over and reported, never filled');
SELECT results_eq(
    $$SELECT snapshot_date, day_flow, flow, gap_days
        FROM snapshot.performance_series('c0000000-0000-0000-0000-000000000001', '2026-03-01', '2026-03-31')$$,
    $$VALUES ('2026-03-01'::date, 100::numeric, NULL::numeric, 0), ('2026-03-03', 0, 100, 1)$$,
    'C: the flow made on the missing day is not lost');

-- D. A drawdown and its recovery, no flows: 100, 120, 90, 60, 130, 150.
-- The index is the value / 100; its peak 1.2 on 04-02, its trough 0.6 on
-- 04-04: a drawdown of 1 - 0.6/1.2 = 0.5.  TWR 0.5.
SELECT pg_temp.snap('d0000000-0000-0000-0000-000000000001', '2026-04-01'::date + i, v, 100, 0)
  FROM unnest(ARRAY[100, 120, 90, 60, 130, 150]) WITH ORDINALITY AS t(v, n), LATERAL (SELECT (n - 1)::int AS i) AS k;
SELECT results_eq(
    $$SELECT time_weighted_return, max_drawdown, drawdown_peak_date, drawdown_trough_date
        FROM snapshot.portfolio_performance('d0000000-0000-0000-0000-000000000001', '2026-04-01', '2026-04-30')$$,
    $$VALUES (0.5000000000, 0.5000000000, '2026-04-02'::date, '2026-04-04'::date)$$,
    'D: the maximum drawdown, 50% from the peak of 04-02 to the trough of 04-04');
SELECT results_eq(
    $$SELECT drawdown FROM snapshot.performance_series('d0000000-0000-0000-0000-000000000001', '2026-04-01', '2026-04-30')$$,
    $$VALUES (0.0000000000), (0.0000000000), (0.2500000000), (0.5000000000), (0.0000000000), (0.0000000000)$$,
    'D: the drawdown series: 1 - index / its peak so far');

-- E. Several years.  2024-01-01: 100; 2025-01-01: 110; 2026-01-01: 121; no
-- flows.  731 days (2024 has 366).  TWR 0.21; annualised with 365-day years:
-- 1.21^(365/731) - 1 = 0.0998565877; without flows the money-weighted
-- return is the same, period and annualised.
SELECT pg_temp.snap('e0000000-0000-0000-0000-000000000001', '2024-01-01', 100, 100, 100);
SELECT pg_temp.snap('e0000000-0000-0000-0000-000000000001', '2025-01-01', 110, 100);
SELECT pg_temp.snap('e0000000-0000-0000-0000-000000000001', '2026-01-01', 121, 100);
SELECT results_eq(
    $$SELECT time_weighted_return, time_weighted_return_annualised, money_weighted_return,
             money_weighted_return_annualised, days, missing_days
        FROM snapshot.portfolio_performance('e0000000-0000-0000-0000-000000000001', '2023-06-01', '2026-06-01')$$,
    $$VALUES (0.2100000000, 0.0998565877, 0.2100000000, 0.0998565877, 731, 729)$$,
    'E: over two years both returns are annualised, with 365-day years');

-- F. Zero and negative starting values.  From 0, 100 deposited and 105 at the
-- end of the day: 105/(0 + 100) - 1 = 0.05.  Then two days at 0 (no return:
-- nothing was invested), then -50 and -40 (no return: a negative start).
SELECT pg_temp.snap('f0000000-0000-0000-0000-000000000001', '2026-05-01', 0, 0, 0);
SELECT pg_temp.snap('f0000000-0000-0000-0000-000000000001', '2026-05-02', 105, 100, 100);
SELECT pg_temp.snap('f0000000-0000-0000-0000-000000000002', '2026-05-01', 0, 0, 0);
SELECT pg_temp.snap('f0000000-0000-0000-0000-000000000002', '2026-05-02', 0, 0, 0);
SELECT pg_temp.snap('f0000000-0000-0000-0000-000000000002', '2026-05-03', -50, 0, 0);
SELECT pg_temp.snap('f0000000-0000-0000-0000-000000000002', '2026-05-04', -40, 0, 0);
SELECT results_eq(
    $$SELECT time_weighted_return, money_weighted_return, days_without_return
        FROM snapshot.portfolio_performance('f0000000-0000-0000-0000-000000000001', '2026-05-01', '2026-05-31')$$,
    $$VALUES (0.0500000000, 0.0500000000, 0)$$, 'F: from zero, a deposit made that morning is what the day starts with');
SELECT results_eq(
    $$SELECT time_weighted_return, money_weighted_return, days_without_return
        FROM snapshot.portfolio_performance('f0000000-0000-0000-0000-000000000002', '2026-05-01', '2026-05-31')$$,
    $$VALUES (0.0000000000, NULL::numeric, 3)$$,
    'F: days starting at zero or below have no return (no division by zero); no money, no MWR');
SELECT results_eq(
    $$SELECT daily_return, twr_index FROM snapshot.performance_series('f0000000-0000-0000-0000-000000000002', '2026-05-01', '2026-05-31')$$,
    $$VALUES (NULL::numeric, 1.0000000000), (NULL, 1.0000000000), (NULL, 1.0000000000), (NULL, 1.0000000000)$$,
    'F: ... NULL in the series, the index unchanged');

-- Extreme periods: +20% in one day (per year that growth has a logarithm of
-- 66, so the rate is solved per period), and -99.99% in three days.
SELECT pg_temp.snap('f1000000-0000-0000-0000-000000000001', '2026-05-10', 100, 100, 100);
SELECT pg_temp.snap('f1000000-0000-0000-0000-000000000001', '2026-05-11', 120, 100);
SELECT pg_temp.snap('f1000000-0000-0000-0000-000000000002', '2026-05-10', 10000, 10000, 10000);
SELECT pg_temp.snap('f1000000-0000-0000-0000-000000000002', '2026-05-13', 1, 10000);
SELECT results_eq(
    $$SELECT p.time_weighted_return, p.money_weighted_return
        FROM unnest(ARRAY['f1000000-0000-0000-0000-000000000001', 'f1000000-0000-0000-0000-000000000002']::uuid[]) AS id,
             LATERAL snapshot.portfolio_performance(id, '2026-05-01', '2026-05-31') AS p$$,
    $$VALUES (0.2000000000, 0.2000000000), (-0.9999000000, -0.9999000000)$$,
    'extreme periods: +20% in a day and -99.99% in three days, both returns');

-- G. Portfolio Performance's own worked example (portfolio-help,
-- docs/en/concepts/performance/time-weighted.md, "TTWROR at portfolio
-- level", demo-portfolio-03 over two years from 2021-06-12): 177.94 at the
-- start; 160.26 at the end of the first holding period; 84 paid in, 264.57;
-- 67 paid in, 426.82.  Its holding periods: -9.94%, 8.31%, 28.73%, and
-- "a total performance of the portfolio of 25.58%":
-- 160.26/177.94 x 264.57/(160.26 + 84) x 426.82/(264.57 + 67) - 1 = 0.2557677598.
SELECT pg_temp.snap('99000000-0000-0000-0000-000000000003', '2021-06-12', 177.94, 155, 0, 'EUR');
SELECT pg_temp.snap('99000000-0000-0000-0000-000000000003', '2022-01-13', 160.26, 155, 0, 'EUR');
SELECT pg_temp.snap('99000000-0000-0000-0000-000000000003', '2022-06-14', 264.57, 239, 84, 'EUR');
SELECT pg_temp.snap('99000000-0000-0000-0000-000000000003', '2023-06-12', 426.82, 306, 0, 'EUR');
SELECT results_eq(
    $$SELECT round(daily_return, 4) FROM snapshot.performance_series('99000000-0000-0000-0000-000000000003', '2021-06-12', '2023-06-12')$$,
    $$VALUES (NULL::numeric), (-0.0994), (0.0831), (0.2873)$$, 'G: Portfolio Performance''s three holding periods');
SELECT results_eq(
    $$SELECT time_weighted_return, round(time_weighted_return * 100, 2)
        FROM snapshot.portfolio_performance('99000000-0000-0000-0000-000000000003', '2021-06-12', '2023-06-12')$$,
    $$VALUES (0.2557677598, 25.58)$$, 'G: ... and its total, 25.58%');

-- bad input
SELECT throws_ok($$SELECT * FROM snapshot.portfolio_performance('a0000000-0000-0000-0000-000000000001', '2026-02-01', '2026-01-01')$$,
    '22023', 'from_date 2026-02-01 is after to_date 2026-01-01', 'from_date after to_date');
SELECT throws_ok($$SELECT * FROM snapshot.performance_series('a0000000-0000-0000-0000-000000000001', '2026-02-01', '2026-01-01')$$,
    '22023', NULL, '... in the series too');
SELECT throws_ok($$SELECT * FROM snapshot.portfolio_performance(NULL, '2026-01-01', '2026-01-31')$$,
    '22004', 'portfolio_id, from_date and to_date must not be null', 'a NULL portfolio');
SELECT throws_ok($$SELECT * FROM snapshot.portfolio_performance('a0000000-0000-0000-0000-000000000001', NULL, '2026-01-31')$$,
    '22004', NULL, 'a NULL from_date');
SELECT throws_ok($$SELECT * FROM snapshot.performance_series('a0000000-0000-0000-0000-000000000001', '2026-01-01', NULL)$$,
    '22004', NULL, 'a NULL to_date');
SELECT throws_ok($$SELECT * FROM snapshot.portfolio_performance('00000000-0000-0000-0000-00000000dead', '2026-01-01', '2026-01-31')$$,
    'P0002', 'portfolio 00000000-0000-0000-0000-00000000dead has no snapshots', 'an unknown portfolio');
SELECT is_empty($$SELECT * FROM snapshot.portfolio_performance('a0000000-0000-0000-0000-000000000001', '2025-01-01', '2025-12-31')$$,
    'no snapshot in the period: no row (and a NOTICE)');
SELECT is_empty($$SELECT * FROM snapshot.performance_series('a0000000-0000-0000-0000-000000000001', '2025-01-01', '2025-12-31')$$,
    '... no series');
SELECT pg_temp.snap('a1000000-0000-0000-0000-000000000001', '2026-01-01', 100, 100, 100, 'USD');
SELECT pg_temp.snap('a1000000-0000-0000-0000-000000000001', '2026-01-02', 90, 100, 0, 'EUR');
SELECT throws_ok($$SELECT * FROM snapshot.portfolio_performance('a1000000-0000-0000-0000-000000000001', '2026-01-01', '2026-01-31')$$,
    '22023', 'the base currency of portfolio a1000000-0000-0000-0000-000000000001 changes from USD to EUR on 2026-01-02',
    'a base currency that changes within the period');
SELECT is((SELECT snapshots FROM snapshot.portfolio_performance('a1000000-0000-0000-0000-000000000001', '2026-01-02', '2026-01-31')),
    1, '... but not outside it');

-- privileges: only granted roles, and with row-level security on the snapshots
CREATE ROLE snapshot_test_reader;
CREATE ROLE snapshot_test_nobody;
GRANT USAGE ON SCHEMA snapshot TO snapshot_test_reader, snapshot_test_nobody;
GRANT SELECT ON snapshot.portfolio_snapshots TO snapshot_test_reader;
GRANT EXECUTE ON FUNCTION snapshot.portfolio_performance(uuid, date, date),
                          snapshot.performance_series(uuid, date, date) TO snapshot_test_reader;
ALTER TABLE snapshot.portfolio_snapshots ENABLE ROW LEVEL SECURITY;
CREATE POLICY only_a ON snapshot.portfolio_snapshots FOR SELECT TO snapshot_test_reader
    USING (portfolio_id = 'a0000000-0000-0000-0000-000000000001');
SET LOCAL ROLE snapshot_test_nobody;
SELECT throws_ok($$SELECT * FROM snapshot.portfolio_performance('a0000000-0000-0000-0000-000000000001', '2026-01-01', '2026-01-31')$$,
    '42501', NULL, 'a role without EXECUTE cannot call it');
RESET ROLE;
SET LOCAL ROLE snapshot_test_reader;
SELECT is((SELECT time_weighted_return FROM snapshot.portfolio_performance('a0000000-0000-0000-0000-000000000001', '2026-01-01', '2026-01-31')),
    0.2100000000, 'a granted role computes the returns of the snapshots it may read');
SELECT throws_ok($$SELECT * FROM snapshot.portfolio_performance('b0000000-0000-0000-0000-000000000001', '2026-02-01', '2026-02-28')$$,
    'P0002', NULL, 'row-level security applies: a portfolio it may not read is unknown to it');
RESET ROLE;
SELECT ok(NOT bool_or(p.prosecdef), 'both functions run with the caller''s rights')
  FROM pg_proc p WHERE p.oid IN ('snapshot.portfolio_performance(uuid, date, date)'::regprocedure,
                                 'snapshot.performance_series(uuid, date, date)'::regprocedure);

SELECT * FROM finish();
ROLLBACK;
