/*-------------------------------------------------------------------------
 *
 * snapshot_performance.c
 *	  What the snapshots are for: a portfolio's time-weighted and
 *	  money-weighted returns and drawdown over a period, and the daily series
 *	  behind a chart, computed from portfolio_snapshots alone.
 *
 * Both functions run with the caller's rights (row-level security on
 * portfolio_snapshots applies) and read one portfolio's snapshots of the
 * period in date order, with one prepared statement kept for the backend.
 *
 * The rules (README.md, "Returns: what the snapshots are for"):
 *
 *	- Flows.  The external flow between two consecutive snapshots is the
 *	  change of net_contribution, so that flows on days without a snapshot
 *	  are never lost.  As Portfolio Performance's true time-weighted rate of
 *	  return has it, a flow into the portfolio counts at the start of the
 *	  later snapshot's day and a flow out at its end:
 *		  1 + r = (MVE + out) / (MVB + in)
 *	- Gaps.  The chain links over missing days; they are reported, never
 *	  filled.
 *	- A day whose start value (MVB + in) is not positive, or whose end value
 *	  plus outflows is negative, has no return: NULL, the index unchanged,
 *	  counted.
 *	- The money-weighted return is the internal rate of return of the
 *	  start value (paid in at the first date), the flows (in at the start of
 *	  their day, out at its end) and the end value, over the period; solved
 *	  by Newton's method safeguarded by bisection on the logarithm of the
 *	  period's growth, to 1e-13.  Annualised with 365-day years.
 *	- Annualised figures only for periods of 365 days or more.
 *	- Rates are computed in double precision and returned as numeric rounded
 *	  to 10 decimal places; money (net worth, contributions, gain) is
 *	  numeric, exact.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/fmgrprotos.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/tuplestore.h"
#include "utils/uuid.h"

#include "snapshot_valuation.h"
#include "snapshot_performance.h"

PG_FUNCTION_INFO_V1(portfolio_performance);
PG_FUNCTION_INFO_V1(performance_series);

/* Decimal places of the rates returned. */
#define RATE_SCALE 10

/* Days in the year of annualised figures. */
#define YEAR_DAYS 365.0

/* One snapshot of the period. */
typedef struct PerfDay
{
	DateADT		date;
	Numeric		net_worth;
	Numeric		net_contribution;
	Numeric		day_flow;
	double		nw;
	double		nc;
	/* computed */
	double		flow;			/* change of net_contribution since the last */
	bool		has_return;
	double		daily_return;
	double		index;			/* cumulative time-weighted index */
	double		drawdown;		/* 1 - index / its peak so far */
	int			gap_days;		/* days without a snapshot before this one */
} PerfDay;

/* A portfolio's snapshots of a period, with everything computed. */
typedef struct PerfSeries
{
	PerfDay    *days;
	int			ndays;
	char	   *base_currency;
	int			without_return;
	double		max_drawdown;
	int			peak;			/* indexes of the deepest drawdown's peak */
	int			trough;			/* ... and trough */
} PerfSeries;

/* the statements, prepared once per backend and schema */
static SPIPlanPtr period_plan = NULL;
static SPIPlanPtr exists_plan = NULL;
static Oid	plans_nsp = InvalidOid;

static double
numeric_to_double(Numeric n)
{
	return DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow, NumericGetDatum(n)));
}

/* A rate as numeric rounded to RATE_SCALE places; NULL when not finite. */
static Datum
rate_datum(double r, bool *isnull)
{
	*isnull = !isfinite(r);
	if (*isnull)
		return (Datum) 0;
	return DirectFunctionCall2(numeric_round,
							   DirectFunctionCall1(float8_numeric, Float8GetDatum(r)),
							   Int32GetDatum(RATE_SCALE));
}

/*
 * Prepare (once) the statements reading portfolio_snapshots in the schema
 * the function belongs to.
 */
static void
prepare_plans(Oid nspid)
{
	Oid			types[3] = {UUIDOID, DATEOID, DATEOID};
	const char *nsp;
	SPIPlanPtr	plan;

	if (period_plan != NULL && plans_nsp == nspid)
		return;
	nsp = quote_identifier(get_namespace_name(nspid));
	/*
	 * A generic plan, pruned at run time: planning the partitioned table for
	 * each call would cost more than reading a year of snapshots.
	 */
	plan = SPI_prepare_cursor(psprintf("SELECT s.snapshot_date, s.base_currency, s.net_worth,"
								" s.net_contribution, s.day_flow"
								" FROM %s.portfolio_snapshots s"
								" WHERE s.portfolio_id OPERATOR(pg_catalog.=) $1"
								" AND s.snapshot_date OPERATOR(pg_catalog.>=) $2"
								" AND s.snapshot_date OPERATOR(pg_catalog.<=) $3"
								" ORDER BY s.snapshot_date", nsp), 3, types, CURSOR_OPT_GENERIC_PLAN);
	if (plan == NULL || SPI_keepplan(plan) != 0)
		elog(ERROR, "snapshot: could not prepare the performance query: %s",
			 SPI_result_code_string(SPI_result));
	period_plan = plan;
	plan = SPI_prepare(psprintf("SELECT FROM %s.portfolio_snapshots s"
								" WHERE s.portfolio_id OPERATOR(pg_catalog.=) $1 LIMIT 1", nsp),
					   1, types);
	if (plan == NULL || SPI_keepplan(plan) != 0)
		elog(ERROR, "snapshot: could not prepare the performance query: %s",
			 SPI_result_code_string(SPI_result));
	exists_plan = plan;
	plans_nsp = nspid;
}

/*
 * Check the arguments (22004, 22023) and read the portfolio's snapshots of
 * the period, in date order, into series (in the caller's context).  P0002
 * when the portfolio has no snapshot at all; with none in the period, a
 * NOTICE and series->ndays = 0.  22023 when the base currency changes.
 */
static void
read_series(FunctionCallInfo fcinfo, PerfSeries *series)
{
	Datum		values[3];
	pg_uuid_t  *id;
	DateADT		from;
	DateADT		to;
	MemoryContext caller = CurrentMemoryContext;
	int			rc;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				errmsg("portfolio_id, from_date and to_date must not be null"));
	id = PG_GETARG_UUID_P(0);
	from = PG_GETARG_DATEADT(1);
	to = PG_GETARG_DATEADT(2);
	if (from > to)
		ereport(ERROR,
				errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				errmsg("from_date %s is after to_date %s", snapshot_date_iso(from), snapshot_date_iso(to)));

	memset(series, 0, sizeof(PerfSeries));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "snapshot: SPI_connect failed");
	prepare_plans(get_func_namespace(fcinfo->flinfo->fn_oid));
	values[0] = UUIDPGetDatum(id);
	values[1] = DateADTGetDatum(from);
	values[2] = DateADTGetDatum(to);
	rc = SPI_execute_plan(period_plan, values, NULL, true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "snapshot: the performance query returned %s", SPI_result_code_string(rc));

	if (SPI_processed == 0)
	{
		rc = SPI_execute_plan(exists_plan, values, NULL, true, 1);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "snapshot: the performance query returned %s", SPI_result_code_string(rc));
		if (SPI_processed == 0)
			ereport(ERROR,
					errcode(ERRCODE_NO_DATA_FOUND),
					errmsg("portfolio %s has no snapshots",
						   DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(id)))),
					errhint("Capture it first, or check that row-level security lets you read its snapshots."));
		ereport(NOTICE,
				errmsg("portfolio %s has no snapshot from %s to %s",
					   DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(id))),
					   snapshot_date_iso(from), snapshot_date_iso(to)));
		SPI_finish();
		return;
	}

	series->ndays = (int) SPI_processed;
	series->days = MemoryContextAllocZero(caller, sizeof(PerfDay) * series->ndays);
	for (int i = 0; i < series->ndays; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		PerfDay    *day = &series->days[i];
		bool		nulls[5];
		Datum		d[5];
		char	   *currency;
		MemoryContext old;

		heap_deform_tuple(tup, desc, d, nulls);
		for (int c = 0; c < 5; c++)
			if (nulls[c])
				elog(ERROR, "snapshot: a snapshot has a NULL figure");
		currency = TextDatumGetCString(d[1]);
		if (series->base_currency == NULL)
			series->base_currency = MemoryContextStrdup(caller, currency);
		else if (strcmp(series->base_currency, currency) != 0)
			ereport(ERROR,
					errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					errmsg("the base currency of portfolio %s changes from %s to %s on %s",
						   DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(id))),
						   series->base_currency, currency, snapshot_date_iso(DatumGetDateADT(d[0]))),
					errdetail("Returns are computed in one base currency."),
					errhint("Ask for a period on one side of the change."));
		old = MemoryContextSwitchTo(caller);
		day->date = DatumGetDateADT(d[0]);
		day->net_worth = DatumGetNumericCopy(d[2]);
		day->net_contribution = DatumGetNumericCopy(d[3]);
		day->day_flow = DatumGetNumericCopy(d[4]);
		MemoryContextSwitchTo(old);
		day->nw = numeric_to_double(day->net_worth);
		day->nc = numeric_to_double(day->net_contribution);
	}
	SPI_finish();
}

/*
 * Link the daily returns into the time-weighted index and its drawdowns.
 */
static void
compute_series(PerfSeries *series)
{
	double		peak_index = 1.0;
	int			peak = 0;

	series->max_drawdown = 0.0;
	series->peak = series->trough = -1;
	for (int i = 0; i < series->ndays; i++)
	{
		PerfDay    *day = &series->days[i];
		PerfDay    *prev = i > 0 ? &series->days[i - 1] : NULL;

		CHECK_FOR_INTERRUPTS();
		if (prev == NULL)
		{
			day->index = 1.0;
			continue;
		}
		day->gap_days = day->date - prev->date - 1;
		day->flow = day->nc - prev->nc;
		day->index = prev->index;
		{
			double		in = day->flow > 0 ? day->flow : 0.0;
			double		out = day->flow < 0 ? -day->flow : 0.0;
			double		start = prev->nw + in;
			double		end = day->nw + out;

			day->has_return = start > 0 && end >= 0;
			if (day->has_return)
			{
				day->daily_return = end / start - 1.0;
				day->index = prev->index * (1.0 + day->daily_return);
			}
			else
				series->without_return++;
		}
		if (day->index > peak_index)
		{
			peak_index = day->index;
			peak = i;
		}
		day->drawdown = 1.0 - day->index / peak_index;
		if (day->drawdown > series->max_drawdown)
		{
			series->max_drawdown = day->drawdown;
			series->peak = peak;
			series->trough = i;
		}
	}
}

/*
 * The IRR equation on x = ln(1 + the period's return), with each cash flow
 * at its fraction of the period: its value and derivative.  Solving for
 * the period's growth, not the year's, keeps x within reach for any
 * realistic period (a 20% day is x = 0.18, where per year it would be 66).
 */
typedef struct Cashflow
{
	double		at;				/* fraction of the period, 0 to 1 */
	double		amount;			/* to the investor: paid in < 0 */
} Cashflow;

static void
irr_equation(const Cashflow *flows, int n, double x, double *value, double *slope)
{
	*value = 0.0;
	*slope = 0.0;
	for (int i = 0; i < n; i++)
	{
		double		term = flows[i].amount * exp(-x * flows[i].at);

		*value += term;
		*slope -= flows[i].at * term;
	}
}

/*
 * The internal rate of return of the series' money over the whole period
 * (not per year): the start value paid in, the flows (in at the start of
 * their day, out at its end), the end value paid out.  NaN when there is
 * none to be found.
 */
static double
money_weighted_return(const PerfSeries *series)
{
	const PerfDay *first = &series->days[0];
	const PerfDay *last = &series->days[series->ndays - 1];
	double		period = last->date - first->date;
	Cashflow   *flows = palloc(sizeof(Cashflow) * (series->ndays + 1));
	int			n = 0;
	double		lo = 0.0,
				hi = 0.0,
				f0,
				flo,
				fhi,
				slope,
				x;
	bool		bracketed = false;

	if (last->date == first->date)
		return NAN;
	flows[n].at = 0.0;
	flows[n++].amount = -first->nw;
	for (int i = 1; i < series->ndays; i++)
	{
		const PerfDay *day = &series->days[i];

		if (day->flow == 0.0)
			continue;
		flows[n].at = (day->flow > 0 ? day->date - 1 - first->date : day->date - first->date)
			/ period;
		flows[n++].amount = -day->flow;
	}
	flows[n].at = 1.0;
	flows[n++].amount = last->nw;

	/* bracket a root, outward from r = 0 (x = 0) on both sides */
	irr_equation(flows, n, 0.0, &f0, &slope);
	if (f0 == 0.0)
		return 0.0;
	for (double width = 0.5, below = 0.0, above = 0.0; width <= 64.0 && !bracketed; width *= 2)
	{
		double		fa,
					fb;

		irr_equation(flows, n, -width, &fa, &slope);
		irr_equation(flows, n, width, &fb, &slope);
		if (isfinite(fa) && (fa < 0) != (f0 < 0))
		{
			lo = -width;
			hi = below;
			bracketed = true;
		}
		else if (isfinite(fb) && (fb < 0) != (f0 < 0))
		{
			lo = above;
			hi = width;
			bracketed = true;
		}
		below = -width;
		above = width;
	}
	if (!bracketed)
		return NAN;

	/* Newton's method on x, kept inside the bracket by bisection */
	irr_equation(flows, n, lo, &flo, &slope);
	irr_equation(flows, n, hi, &fhi, &slope);
	x = (lo + hi) / 2;
	for (int iter = 0; iter < 200; iter++)
	{
		double		fx,
					next;

		irr_equation(flows, n, x, &fx, &slope);
		if (fx == 0.0)
			break;
		if ((fx < 0) == (flo < 0))
		{
			lo = x;
			flo = fx;
		}
		else
		{
			hi = x;
			fhi = fx;
		}
		next = slope != 0.0 ? x - fx / slope : NAN;
		if (!isfinite(next) || next <= fmin(lo, hi) || next >= fmax(lo, hi))
			next = (lo + hi) / 2;
		if (fabs(next - x) < 1e-13 || fabs(hi - lo) < 1e-13)
		{
			x = next;
			break;
		}
		x = next;
	}
	return exp(x) - 1.0;
}

/*
 * portfolio_performance(portfolio_id uuid, from_date date, to_date date)
 *		RETURNS TABLE (first_date, last_date, base_currency, start_net_worth,
 *		end_net_worth, net_contribution, absolute_gain, time_weighted_return,
 *		time_weighted_return_annualised, money_weighted_return,
 *		money_weighted_return_annualised, max_drawdown, drawdown_peak_date,
 *		drawdown_trough_date, days, snapshots, missing_days,
 *		days_without_return)
 *
 * One row for the portfolio's snapshots from from_date to to_date; none
 * (with a NOTICE) when there are none.  See the file header for the rules.
 */
Datum
portfolio_performance(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	PerfSeries	series;
	Datum		values[18];
	bool		nulls[18];
	const PerfDay *first;
	const PerfDay *last;
	int			days;
	double		twr;
	double		mwr;

	InitMaterializedSRF(fcinfo, 0);
	read_series(fcinfo, &series);
	if (series.ndays == 0)
		return (Datum) 0;
	compute_series(&series);
	first = &series.days[0];
	last = &series.days[series.ndays - 1];
	days = last->date - first->date;
	twr = last->index - 1.0;
	mwr = money_weighted_return(&series);

	memset(nulls, 0, sizeof(nulls));
	values[0] = DateADTGetDatum(first->date);
	values[1] = DateADTGetDatum(last->date);
	values[2] = CStringGetTextDatum(series.base_currency);
	values[3] = NumericGetDatum(first->net_worth);
	values[4] = NumericGetDatum(last->net_worth);
	values[5] = DirectFunctionCall2(numeric_sub, NumericGetDatum(last->net_contribution),
									NumericGetDatum(first->net_contribution));
	values[6] = DirectFunctionCall2(numeric_sub,
									DirectFunctionCall2(numeric_sub, NumericGetDatum(last->net_worth),
														NumericGetDatum(first->net_worth)),
									values[5]);
	values[7] = rate_datum(twr, &nulls[7]);
	values[8] = rate_datum(days >= YEAR_DAYS ? pow(1.0 + twr, YEAR_DAYS / days) - 1.0 : NAN,
						   &nulls[8]);
	values[9] = rate_datum(mwr, &nulls[9]);
	values[10] = rate_datum(days >= YEAR_DAYS ? pow(1.0 + mwr, YEAR_DAYS / days) - 1.0 : NAN,
							&nulls[10]);
	values[11] = rate_datum(series.max_drawdown, &nulls[11]);
	nulls[12] = nulls[13] = series.peak < 0;
	values[12] = series.peak < 0 ? (Datum) 0 : DateADTGetDatum(series.days[series.peak].date);
	values[13] = series.trough < 0 ? (Datum) 0 : DateADTGetDatum(series.days[series.trough].date);
	values[14] = Int32GetDatum(days);
	values[15] = Int32GetDatum(series.ndays);
	values[16] = Int32GetDatum(days + 1 - series.ndays);
	values[17] = Int32GetDatum(series.without_return);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}

/*
 * performance_series(portfolio_id uuid, from_date date, to_date date)
 *		RETURNS TABLE (snapshot_date, net_worth, net_contribution, day_flow,
 *		flow, daily_return, twr_index, drawdown, gap_days)
 *
 * One row per snapshot of the period, ready for a chart: the index is 1 at
 * the first snapshot.
 */
Datum
performance_series(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	PerfSeries	series;

	InitMaterializedSRF(fcinfo, 0);
	read_series(fcinfo, &series);
	compute_series(&series);
	for (int i = 0; i < series.ndays; i++)
	{
		const PerfDay *day = &series.days[i];
		Datum		values[9];
		bool		nulls[9];

		memset(nulls, 0, sizeof(nulls));
		values[0] = DateADTGetDatum(day->date);
		values[1] = NumericGetDatum(day->net_worth);
		values[2] = NumericGetDatum(day->net_contribution);
		values[3] = NumericGetDatum(day->day_flow);
		if (i == 0)
			nulls[4] = true;
		else
			values[4] = DirectFunctionCall2(numeric_sub, NumericGetDatum(day->net_contribution),
											NumericGetDatum(series.days[i - 1].net_contribution));
		values[5] = rate_datum(day->has_return ? day->daily_return : NAN, &nulls[5]);
		values[6] = rate_datum(day->index, &nulls[6]);
		values[7] = rate_datum(day->drawdown, &nulls[7]);
		values[8] = Int32GetDatum(day->gap_days);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
