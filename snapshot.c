/*-------------------------------------------------------------------------
 *
 * snapshot.c
 *	  SQL-callable entry points of the snapshot extension: _PG_init, argument
 *	  checks, the once-per-transaction rule, the run's start and finish, and
 *	  snapshot_configure().  The layers below, top first: the valuation
 *	  workers (snapshot_leader.c, snapshot_worker.c), the walk and the
 *	  writer (snapshot_walk.c, snapshot_writer.c), the reads
 *	  (snapshot_reads.c, snapshot_source.c), the row descriptor
 *	  (snapshot_row.c), the valuation (snapshot_valuation.c,
 *	  snapshot_positions.c) and the amounts (snapshot_amount.c); see
 *	  scripts/check_layers.sh.
 *
 * capture_all_snapshots() and capture_snapshot() share one path: merge two
 * index-ordered cursors (portfolios by id, the ledger by portfolio, date and
 * id) into one ledger per portfolio, value each and upsert the rows in
 * batches.  The only differences are a filter on one portfolio, and whether
 * a portfolio's data error is isolated and recorded (all) or raised (one).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/backend_status.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/datum.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "funcapi.h"
#include "utils/tuplestore.h"

#include "snapshot.h"
#include "snapshot_amount.h"
#include "snapshot_leader.h"
#include "snapshot_run.h"
#include "snapshot_writer.h"

PG_MODULE_MAGIC;

/* One capture, all or one: what it reads, values and writes. */
typedef struct Capture
{
	Oid			nspid;			/* the extension's schema */
	const char *nsp;			/* ... quoted */
	SnapshotConfig config;
	MarketData	md;
	int64		skipped_market; /* market-data rows skipped */
	Walk		walk;
	SnapshotWriter writer;
	int64		total;			/* portfolios (capture of all), for progress */
	int			workers;		/* valuation workers that took part */
} Capture;

/* snapshot.min_date: the earliest date a capture accepts, and its text */
static char *snapshot_min_date_text = NULL;
static DateADT snapshot_min_date = 0;

/*
 * The captures of the current top-level transaction (by its local id), for
 * the rule that a role other than a superuser captures once per
 * transaction, and the subtransactions that made them (a capture rolled
 * back to a savepoint is undone, and no longer counts).
 */
static LocalTransactionId xact_capture_lxid = InvalidLocalTransactionId;
static bool xact_captured_all = false;
static bool xact_captured_date = false;
static DateADT xact_capture_date = 0;
static SubTransactionId xact_all_subxid = InvalidSubTransactionId;
static SubTransactionId xact_date_subxid = InvalidSubTransactionId;

/*
 * The transaction (by local id) that started a run: a run outlives its
 * starter's rollback, so the claim is never undone by one either.
 */
static LocalTransactionId xact_run_lxid = InvalidLocalTransactionId;

PG_FUNCTION_INFO_V1(capture_all_snapshots);
PG_FUNCTION_INFO_V1(capture_all_snapshots_if_missing);
PG_FUNCTION_INFO_V1(capture_snapshot);
PG_FUNCTION_INFO_V1(snapshot_configure);
PG_FUNCTION_INFO_V1(start_capture);
PG_FUNCTION_INFO_V1(resume_capture);
PG_FUNCTION_INFO_V1(cancel_capture);
PG_FUNCTION_INFO_V1(capture_progress_rows);

/*
 * GUC check hook of snapshot.min_date: a date written YYYY-MM-DD, from
 * 0001-01-01 on; its DateADT goes to the assign hook as extra.
 */
static bool
check_min_date(char **newval, void **extra, GucSource source)
{
	int			y,
				m,
				d;
	char		tail;
	DateADT    *date;

	if (*newval == NULL ||
		sscanf(*newval, "%d-%d-%d%c", &y, &m, &d, &tail) != 3 ||
		y < 1 || y > 9999 || m < 1 || m > 12 || d < 1 || d > day_tab[isleap(y)][m - 1])
	{
		GUC_check_errdetail("snapshot.min_date is a date written YYYY-MM-DD, from 0001-01-01 on.");
		return false;
	}
	date = malloc(sizeof(DateADT));
	if (date == NULL)
		return false;
	*date = date2j(y, m, d) - POSTGRES_EPOCH_JDATE;
	*extra = date;
	return true;
}

static void
assign_min_date(const char *newval, void *extra)
{
	snapshot_min_date = *(DateADT *) extra;
}

/*
 * Subtransaction callback: a capture made in a subtransaction that aborts is
 * undone, so it no longer counts against the transaction; one made in a
 * subtransaction that commits now belongs to the parent.  Subtransaction
 * ids grow, so whatever was claimed at or below an aborting one has a
 * subxid no smaller than its id.
 */
static void
capture_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						 SubTransactionId parentSubid, void *arg)
{
	if (xact_capture_lxid != MyProc->lxid)
		return;
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		if (xact_captured_date && xact_date_subxid >= mySubid)
			xact_captured_date = xact_captured_all = false;
		if (xact_captured_all && xact_all_subxid >= mySubid)
			xact_captured_all = false;
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		if (xact_date_subxid == mySubid)
			xact_date_subxid = parentSubid;
		if (xact_all_subxid == mySubid)
			xact_all_subxid = parentSubid;
	}
}

/*
 * Module load: each module defines its snapshot.* settings, and the prefix is
 * reserved.  Each setting bounds the work of a capture, so only a superuser
 * may change it.
 */
void
_PG_init(void)
{
	snapshot_writer_init();
	snapshot_leader_init();
	snapshot_run_init();
	DefineCustomStringVariable("snapshot.min_date",
							   "The earliest snapshot date a capture accepts.",
							   "Earlier dates are refused, so that no call creates partitions for them.",
							   &snapshot_min_date_text,
							   "1970-01-01",
							   PGC_SUSET, 0,
							   check_min_date, assign_min_date, NULL);
	MarkGUCPrefixReserved("snapshot");
	RegisterSubXactCallback(capture_subxact_callback, NULL);
}

/*
 * The UTC calendar day of the current transaction's start.
 */
static DateADT
utc_today(void)
{
	return snapshot_utc_date(GetCurrentTransactionStartTimestamp());
}

/*
 * Reject a snapshot date that is NULL, not finite, before snapshot.min_date
 * (BC dates always are), or after today (UTC): every capture function
 * checks its date here, before anything is written.
 */
static DateADT
check_snapshot_date(FunctionCallInfo fcinfo, int argno)
{
	DateADT		d;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				errmsg("snapshot_date must not be null"));
	d = PG_GETARG_DATEADT(argno);
	if (DATE_NOT_FINITE(d) || d < snapshot_min_date)
		ereport(ERROR,
				errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				errmsg("snapshot_date %s is out of range", snapshot_date_iso(d)),
				errdetail("A snapshot date runs from snapshot.min_date, %s, to today, %s in UTC.",
						  snapshot_date_iso(snapshot_min_date), snapshot_date_iso(utc_today())),
				errhint("A superuser may lower snapshot.min_date to capture earlier days."));
	if (d > utc_today())
		ereport(ERROR,
				errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				errmsg("snapshot_date %s is in the future", snapshot_date_iso(d)),
				errdetail("Today is %s in UTC.", snapshot_date_iso(utc_today())),
				errhint("A snapshot values a day that has begun; capture today or an earlier day."));
	return d;
}

/*
 * Enforce, for a role that is not a superuser, one capture per transaction:
 * captures of one date only, with at most one capture_all_snapshots() (all)
 * among them; capture_snapshot() calls of that date are not limited, and a
 * capture rolled back to a savepoint does not count.  Together with
 * snapshot.min_date this bounds the partitions one statement can make.
 * Superusers, who could create them by hand, are not bound.
 */
static void
claim_transaction_capture(DateADT d, bool all)
{
	if (xact_capture_lxid != MyProc->lxid)
	{
		xact_capture_lxid = MyProc->lxid;
		xact_captured_all = false;
		xact_captured_date = false;
	}
	if (superuser_arg(GetOuterUserId()))
		return;
	if (xact_captured_date && (d != xact_capture_date || (all && xact_captured_all)))
		ereport(ERROR,
				errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				errmsg("a transaction may capture only once"),
				xact_captured_all
				? errdetail("This transaction already ran capture_all_snapshots() for %s.",
							snapshot_date_iso(xact_capture_date))
				: errdetail("This transaction already captured snapshots of %s.",
							snapshot_date_iso(xact_capture_date)),
				errhint("Commit, then capture again in a new transaction."));
	if (!xact_captured_date)
	{
		xact_captured_date = true;
		xact_capture_date = d;
		xact_date_subxid = GetCurrentSubTransactionId();
	}
	if (all)
	{
		xact_captured_all = true;
		xact_all_subxid = GetCurrentSubTransactionId();
	}
}

/*
 * Open SPI and load and check the configuration, with lock locking the
 * sources (a capture in this transaction), without for a run's start (the
 * run's worker locks them): the bracket every capture function opens.
 * Everything allocated lives until SPI_finish().
 */
static void
capture_setup(Capture *cap, FunctionCallInfo fcinfo, DateADT snapshot_date, bool lock)
{
	memset(cap, 0, sizeof(Capture));
	cap->nspid = get_func_namespace(fcinfo->flinfo->fn_oid);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "snapshot: SPI_connect failed");
	cap->nsp = quote_identifier(get_namespace_name(cap->nspid));
	snapshot_load_config(&cap->config, cap->nspid, cap->nsp, lock);
	cap->md.snapshot_date = snapshot_date;
	cap->md.rules = cap->config.rules;
	cap->walk.config = &cap->config;
	cap->walk.md = &cap->md;
	cap->walk.sink = &cap->writer.sink;
	cap->walk.batch_size = snapshot_batch_size;
}

/*
 * For a role that is not a superuser, one run started per transaction,
 * whatever is rolled back: the run's worker commits it on its own.
 */
static void
claim_transaction_run(void)
{
	if (superuser_arg(GetOuterUserId()))
		return;
	if (xact_run_lxid == MyProc->lxid)
		ereport(ERROR,
				errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				errmsg("a transaction may start only one run"),
				errdetail("A run outlives its starter: rolling back does not stop it."),
				errhint("Commit, then start the next run in a new transaction."));
	xact_run_lxid = MyProc->lxid;
}

/*
 * Read the sources under one snapshot and write the snapshots: the shared
 * middle of both capture functions.  wrote_before says whether the calling
 * transaction had written anything before the capture began (which
 * valuation workers, in transactions of their own, could not see).
 */
static void
capture_run(Capture *cap, const char *triggered_by, int64 run_id, bool wrote_before)
{
	DateADT		date = cap->md.snapshot_date;
	bool		single = cap->walk.scope.single;
	int			nworkers;
	Datum		metadata;

	/*
	 * Every read below is read-only SPI under this one snapshot, so all
	 * portfolios are valued against one consistent view of the sources, as of
	 * the moment the capture got its turn.
	 */
	PushActiveSnapshot(GetTransactionSnapshot());

	/* with workers, the leader needs market data only for a range of its own */
	nworkers = single ? 0 : snapshot_parallel_workers(&cap->config, cap->total, wrote_before);
	if (nworkers == 0)
		snapshot_read_market_data(&cap->config, &cap->walk.scope, &cap->md,
								  &cap->skipped_market);
	metadata = snapshot_build_metadata(triggered_by, cap->config.cost_method_name,
									   &cap->config.rules, run_id);
	snapshot_ensure_partitions(cap->nspid, cap->nsp, date);
	snapshot_writer_begin(&cap->writer, cap->nsp, date, run_id, metadata,
						  single ? -1 : cap->total, !single);
	if (nworkers > 0)
		cap->workers = snapshot_walk_parallel(&cap->walk, &cap->md, &cap->skipped_market,
											  nworkers, cap->total, cap->nspid);
	else
		snapshot_walk(&cap->walk);
	snapshot_writer_flush(&cap->writer);
	PopActiveSnapshot();
}

/*
 * The triggered_by argument, checked: not NULL, not empty, at most 64
 * characters.
 */
static char *
check_triggered_by(FunctionCallInfo fcinfo, int argno)
{
	char	   *triggered_by;

	if (PG_ARGISNULL(argno) || VARSIZE_ANY_EXHDR(PG_GETARG_TEXT_PP(argno)) == 0)
		ereport(ERROR,
				errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				errmsg("triggered_by must not be null or empty"),
				errhint("Name what started the capture, for example 'manual', 'airflow' or 'pg_cron'."));
	triggered_by = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	if (pg_mbstrlen(triggered_by) > 64)
		ereport(ERROR,
				errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				errmsg("triggered_by must be at most 64 characters long"));
	return triggered_by;
}

/*
 * capture_all_snapshots() and capture_all_snapshots_if_missing(): value every
 * portfolio as of snapshot_date and upsert one snapshot each, returning the
 * run's row.  With if_missing, return instead the latest succeeded run of
 * the date, doing nothing, when every current portfolio has a snapshot of
 * it.  The arguments have been checked.
 */
static Datum
capture_all(FunctionCallInfo fcinfo, DateADT snapshot_date, const char *triggered_by,
			bool if_missing)
{
	Capture		cap;
	const char *saved_activity = debug_query_string;
	Oid			types[7] = {DATEOID, TEXTOID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID};
	Datum		values[7];
	bool		isnull;
	const char *status;
	Datum		result;
	bool		wrote_before;
	int64		run_id;
	int64		skipped;

	claim_transaction_capture(snapshot_date, true);

	/* before the lock and the run row below give this transaction an XID */
	wrote_before = TransactionIdIsValid(GetTopTransactionIdIfAny());

	capture_setup(&cap, fcinfo, snapshot_date, false);

	/*
	 * A capture that is its statement's whole transaction (psql's autocommit,
	 * pg_cron) is a run of its own, started and waited for, wherever a run's
	 * worker may read for this transaction (the one rule, shared with the
	 * valuation workers): a cancel or statement_timeout of the caller is then
	 * recorded in the run.  In a transaction block the capture belongs to the
	 * block, as before runs existed; so it does when the block wrote first.
	 * The fallback resumes its date's latest run when it was interrupted,
	 * and otherwise captures in its caller's transaction as before.  Neither
	 * the date's lock nor the sources' locks are held meanwhile (the run's
	 * worker takes them).
	 */
	if (snapshot_other_process_sees_all(cap.config.relids, wrote_before) &&
		!IsolationUsesXactSnapshot() &&
		(if_missing ? snapshot_run_interrupted(cap.nsp, snapshot_date) : !IsTransactionBlock()))
	{
		const char *nsp = MemoryContextStrdup(TopTransactionContext, cap.nsp);

		SPI_finish();
		claim_transaction_run();
		run_id = snapshot_run_start(cap.nspid, snapshot_date, triggered_by, 0, true);
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "snapshot: SPI_connect failed");
		(void) snapshot_reap_runs(nsp);
		values[0] = Int64GetDatum(run_id);
		types[0] = INT8OID;
		snapshot_spi_run(psprintf("SELECT r.* FROM %s.snapshot_runs r"
								  " WHERE r.run_id OPERATOR(pg_catalog.=) $1", nsp),
						 1, types, values, NULL, false, SPI_OK_SELECT);
		if (SPI_processed != 1)
			elog(ERROR, "snapshot: run " INT64_FORMAT " was not found", run_id);
		result = PointerGetDatum(SPI_returntuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc));
		SPI_finish();
		pgstat_report_activity(STATE_RUNNING, saved_activity);
		PG_RETURN_DATUM(result);
	}

	/* a capture in this transaction: the sources locked until it ends */
	cap.config.owner = snapshot_check_sources(cap.config.relids, true, cap.config.names);

	/*
	 * One capture of a date at a time; the second waits, then replaces.  A
	 * run of the date holds its lock only while it starts, so an active run
	 * is waited for too.
	 */
	snapshot_lock_date(cap.nsp, snapshot_date);
	snapshot_run_wait_for_date(cap.nsp, snapshot_date);
	pgstat_report_activity(STATE_RUNNING, "capture_all_snapshots: counting the portfolios");

	/*
	 * Read after the lock with a snapshot of its own (not read-only SPI,
	 * which would reuse the statement's, from before the wait): a fallback
	 * that waited for the date's primary run finds it done.
	 */
	if (if_missing)
	{
		values[0] = DateADTGetDatum(snapshot_date);
		snapshot_spi_run(psprintf("SELECT r.* FROM %s.snapshot_runs r"
								  " WHERE r.snapshot_date OPERATOR(pg_catalog.=) $1"
								  " AND r.status OPERATOR(pg_catalog.=) 'succeeded'"
								  " ORDER BY r.run_id DESC LIMIT 1", cap.nsp),
						 1, types, values, NULL, false, SPI_OK_SELECT);
		if (SPI_processed == 1)
		{
			bool		covered;

			result = PointerGetDatum(SPI_returntuple(SPI_tuptable->vals[0],
													 SPI_tuptable->tupdesc));
			PushActiveSnapshot(GetTransactionSnapshot());
			covered = snapshot_date_is_covered(&cap.config, cap.nsp, snapshot_date);
			PopActiveSnapshot();
			if (covered)
			{
				SPI_finish();
				pgstat_report_activity(STATE_RUNNING, saved_activity);
				PG_RETURN_DATUM(result);
			}
		}
	}

	PushActiveSnapshot(GetTransactionSnapshot());
	cap.total = snapshot_count_portfolios(&cap.config, NULL);
	PopActiveSnapshot();

	values[0] = DateADTGetDatum(snapshot_date);
	values[1] = CStringGetTextDatum(triggered_by);
	snapshot_spi_run(psprintf("INSERT INTO %s.snapshot_runs (snapshot_date, triggered_by, status, started_at)"
							  " VALUES ($1, $2, 'running', pg_catalog.clock_timestamp()) RETURNING run_id",
							  cap.nsp),
					 2, types, values, NULL, false, SPI_OK_INSERT_RETURNING);
	run_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
										 1, &isnull));

	capture_run(&cap, triggered_by, run_id, wrote_before);

	skipped = cap.skipped_market + cap.walk.skipped;
	if (skipped > 0)
		ereport(NOTICE,
				errmsg("capture of %s skipped " INT64_FORMAT " source rows",
					   snapshot_date_iso(snapshot_date), skipped),
				errdetail("Market-data rows with a NULL or out-of-bounds value: " INT64_FORMAT
						  "; portfolio and ledger rows without a portfolio id: " INT64_FORMAT ".",
						  cap.skipped_market, cap.walk.skipped));

	if (cap.writer.failed == 0)
		status = "succeeded";
	else if (cap.writer.captured == 0)
		status = "failed";
	else
		status = "partial";
	values[0] = Int64GetDatum(run_id);
	values[1] = CStringGetTextDatum(status);
	values[2] = Int64GetDatum(cap.walk.walked);
	values[3] = Int64GetDatum(cap.writer.captured);
	values[4] = Int64GetDatum(cap.writer.failed);
	values[5] = Int64GetDatum(cap.workers);
	values[6] = Int64GetDatum(skipped);
	types[0] = INT8OID;
	snapshot_spi_run(psprintf("UPDATE %s.snapshot_runs SET status = $2,"
							  " finished_at = pg_catalog.clock_timestamp(), portfolios = $3,"
							  " captured = $4, failed = $5, workers = $6, skipped_rows = $7"
							  " WHERE run_id OPERATOR(pg_catalog.=) $1 RETURNING *",
							  cap.nsp),
					 7, types, values, NULL, false, SPI_OK_UPDATE_RETURNING);
	result = PointerGetDatum(SPI_returntuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc));

	SPI_finish();
	pgstat_report_activity(STATE_RUNNING, saved_activity);
	PG_RETURN_DATUM(result);
}

/*
 * capture_all_snapshots(snapshot_date date, triggered_by text)
 *		RETURNS snapshot_runs
 *
 * Value every portfolio as of snapshot_date and upsert one snapshot each.  A
 * portfolio's data error is recorded in snapshot_run_errors and does not stop
 * the run.  Captures of the same date serialize on the date's lock.
 */
Datum
capture_all_snapshots(PG_FUNCTION_ARGS)
{
	DateADT		snapshot_date = check_snapshot_date(fcinfo, 0);
	char	   *triggered_by = check_triggered_by(fcinfo, 1);

	return capture_all(fcinfo, snapshot_date, triggered_by, false);
}

/*
 * capture_all_snapshots_if_missing(snapshot_date date, triggered_by text)
 *		RETURNS snapshot_runs
 *
 * The pg_cron fallback's job: the latest succeeded run of the date when
 * every current portfolio has a snapshot of it (nothing is done), else a
 * capture exactly like capture_all_snapshots().  It takes the date's lock
 * first, so a fallback that fires while the primary run of the date is
 * still going waits for it and then finds it done.
 */
Datum
capture_all_snapshots_if_missing(PG_FUNCTION_ARGS)
{
	DateADT		snapshot_date = check_snapshot_date(fcinfo, 0);
	char	   *triggered_by = check_triggered_by(fcinfo, 1);

	return capture_all(fcinfo, snapshot_date, triggered_by, true);
}

/*
 * capture_snapshot(portfolio_id uuid, snapshot_date date)
 *		RETURNS portfolio_snapshots
 *
 * Value one portfolio as of snapshot_date with the same code as
 * capture_all_snapshots() and upsert its snapshot; errors are raised.
 */
Datum
capture_snapshot(PG_FUNCTION_ARGS)
{
	Capture		cap;
	DateADT		snapshot_date;
	Oid			types[2] = {UUIDOID, DATEOID};
	Datum		values[2];
	Datum		result;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				errmsg("portfolio_id must not be null"));
	snapshot_date = check_snapshot_date(fcinfo, 1);
	claim_transaction_capture(snapshot_date, false);

	capture_setup(&cap, fcinfo, snapshot_date, true);
	cap.walk.scope.single = true;
	cap.walk.scope.portfolio_id = *PG_GETARG_UUID_P(0);
	capture_run(&cap, "capture_snapshot", 0, true);
	if (cap.walk.walked == 0)
		ereport(ERROR,
				errcode(ERRCODE_NO_DATA_FOUND),
				errmsg("portfolio %s does not exist",
					   DatumGetCString(DirectFunctionCall1(uuid_out,
														   UUIDPGetDatum(&cap.walk.scope.portfolio_id)))));

	/* read the row back through the parent, whose row type we return */
	values[0] = UUIDPGetDatum(&cap.walk.scope.portfolio_id);
	values[1] = DateADTGetDatum(snapshot_date);
	snapshot_spi_run(psprintf("SELECT s.* FROM %s.portfolio_snapshots s"
					 " WHERE s.portfolio_id OPERATOR(pg_catalog.=) $1"
					 " AND s.snapshot_date OPERATOR(pg_catalog.=) $2", cap.nsp),
			2, types, values, NULL, false, SPI_OK_SELECT);
	if (SPI_processed != 1)
		elog(ERROR, "snapshot: the snapshot just written was not found");
	result = PointerGetDatum(SPI_returntuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc));
	SPI_finish();
	PG_RETURN_DATUM(result);
}

/*
 * snapshot_configure(portfolios text, assets text, transactions text,
 *					  prices text, fx_rates text, cost_method text,
 *					  stale_after_days integer, quantity_tolerance numeric,
 *					  search_path name[])
 *		RETURNS void
 *
 * Resolve the application's relations, check them from the catalogs as
 * every capture will, and store them.  Runs with the caller's rights and
 * search_path = pg_catalog, pg_temp; search_path, by default the caller's
 * (current_schemas(true), evaluated before the call), is where unqualified
 * names are looked up.  Nothing of the relations is planned or run.  A
 * NOTICE names what was resolved and the role the captures will read as.
 */
Datum
snapshot_configure(PG_FUNCTION_ARGS)
{
	Oid			relids[SOURCE_RELATIONS];
	const char *cost_method = PG_ARGISNULL(5) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(5));
	List	   *path = NIL;
	Oid			owner;
	char	   *names[SOURCE_RELATIONS];
	StringInfoData listing;
	Oid			types[8] = {OIDOID, OIDOID, OIDOID, OIDOID, OIDOID, TEXTOID, INT4OID, NUMERICOID};
	Datum		values[8];
	char		nulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	Numeric		tolerance;
	const char *nsp;

	/* the 1.3 objects declare this function with eight arguments */
	if (PG_NARGS() != 9)
		ereport(ERROR,
				errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				errmsg("the snapshot extension's SQL objects are older than its library"),
				errdetail("This library needs version 1.4 or later of the extension's SQL objects."),
				errhint("Run ALTER EXTENSION snapshot UPDATE."));
	tolerance = PG_ARGISNULL(7) ? NULL : PG_GETARG_NUMERIC(7);
	if (cost_method == NULL || (strcmp(cost_method, "fifo") != 0 && strcmp(cost_method, "average") != 0))
		ereport(ERROR,
				errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				errmsg("invalid cost method: %s",
					   cost_method ? quote_literal_cstr(cost_method) : "NULL"),
				errhint("The cost method is \"fifo\" or \"average\"."));
	if (PG_ARGISNULL(6) || PG_GETARG_INT32(6) < 0)
		ereport(ERROR,
				errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				errmsg("invalid stale_after_days: %s",
					   PG_ARGISNULL(6) ? "NULL" : psprintf("%d", PG_GETARG_INT32(6))),
				errhint("stale_after_days is a number of days, zero or more."));
	if (tolerance == NULL || numeric_is_nan(tolerance) || numeric_is_inf(tolerance) ||
		!amount_in_bounds(tolerance) || amount_sign(amount_of(tolerance)) < 0)
		ereport(ERROR,
				errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				errmsg("invalid quantity_tolerance: %s",
					   tolerance ? DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(tolerance)))
					   : "NULL"),
				errhint("quantity_tolerance is a quantity, zero or more: 0 (exact) or, for ledgers written from floating-point numbers, 1e-9."));
	if (PG_ARGISNULL(8))
		ereport(ERROR,
				errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				errmsg("search_path must not be null"),
				errhint("Leave it out to resolve names in the caller's search_path."));
	else
	{
		Datum	   *elems;
		bool	   *elem_nulls;
		int			n;

		deconstruct_array(PG_GETARG_ARRAYTYPE_P(8), NAMEOID, NAMEDATALEN, false,
						  TYPALIGN_CHAR, &elems, &elem_nulls, &n);
		for (int i = 0; i < n; i++)
			if (!elem_nulls[i])
				path = lappend(path, makeString(pstrdup(NameStr(*DatumGetName(elems[i])))));
	}

	for (int i = 0; i < SOURCE_RELATIONS; i++)
	{
		const char *name;

		relids[i] = InvalidOid;
		if (PG_ARGISNULL(i))
		{
			if (i == SOURCE_FX_RATES)
				continue;
			ereport(ERROR,
					errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					errmsg("the %s relation must be named", snapshot_source_roles[i]));
		}
		name = text_to_cstring(PG_GETARG_TEXT_PP(i));
		relids[i] = snapshot_resolve_relation(name, path);
		if (!OidIsValid(relids[i]))
			ereport(ERROR,
					errcode(ERRCODE_UNDEFINED_TABLE),
					errmsg("relation \"%s\" does not exist", name),
					errdetail("It was given as the %s relation.", snapshot_source_roles[i]));
	}

	owner = snapshot_check_sources(relids, true, names);

	initStringInfo(&listing);
	for (int i = 0; i < SOURCE_RELATIONS; i++)
		if (OidIsValid(relids[i]))
			appendStringInfo(&listing, "%s%s %s", listing.len ? ", " : "", snapshot_source_roles[i],
							 names[i]);
	ereport(NOTICE,
			errmsg("snapshot will read %s as role %s", listing.data, GetUserNameFromId(owner, false)),
			errdetail("Captures read the configured relations with their owner's rights."));

	/* the walk reads the ledger in (portfolio_id, transaction_date, id) order */
	if (!snapshot_ledger_has_walk_index(relids[SOURCE_TRANSACTIONS]))
	{
		char	   *ledger = names[SOURCE_TRANSACTIONS];

		ereport(NOTICE,
				errmsg("relation %s has no index that serves the ledger walk", ledger),
				errdetail("capture_all_snapshots reads the ledger ordered by portfolio_id, transaction_date, id; without an index it sorts the whole ledger."),
				errhint("CREATE INDEX ON %s (portfolio_id, transaction_date, id) INCLUDE (asset_id, type, quantity, price, fee, exchange_rate);",
						ledger));
	}

	for (int i = 0; i < SOURCE_RELATIONS; i++)
	{
		values[i] = ObjectIdGetDatum(relids[i]);
		nulls[i] = OidIsValid(relids[i]) ? ' ' : 'n';
	}
	values[5] = CStringGetTextDatum(cost_method);
	values[6] = PG_GETARG_DATUM(6);
	values[7] = NumericGetDatum(tolerance);
	nsp = quote_identifier(get_namespace_name(get_func_namespace(fcinfo->flinfo->fn_oid)));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "snapshot: SPI_connect failed");
	snapshot_spi_run(psprintf("DELETE FROM %s.snapshot_config", nsp), 0, NULL, NULL, NULL, false,
			SPI_OK_DELETE);
	snapshot_spi_run(psprintf("INSERT INTO %s.snapshot_config (portfolios, assets, transactions, prices,"
					 " fx_rates, cost_method, stale_after_days, quantity_tolerance)"
					 " VALUES ($1::pg_catalog.regclass, $2::pg_catalog.regclass,"
					 " $3::pg_catalog.regclass, $4::pg_catalog.regclass,"
					 " $5::pg_catalog.regclass, $6, $7, $8)", nsp),
			8, types, values, nulls, false, SPI_OK_INSERT);
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * The extension's schema (the function's), quoted, inside SPI.
 */
static const char *
connect_in_schema(FunctionCallInfo fcinfo, Oid *nspid)
{
	*nspid = get_func_namespace(fcinfo->flinfo->fn_oid);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "snapshot: SPI_connect failed");
	return quote_identifier(get_namespace_name(*nspid));
}

/*
 * start_capture(snapshot_date date, triggered_by text) RETURNS bigint
 *
 * Start a run of the date owned by a background worker of its own, and
 * return its id once the worker has committed it (queued): the date's
 * active run's id if it has one (nothing is started), its interrupted run's
 * id if its last run was interrupted (resumed).  The same checks as
 * capture_all_snapshots(), configuration included, come first.
 */
Datum
start_capture(PG_FUNCTION_ARGS)
{
	DateADT		snapshot_date = check_snapshot_date(fcinfo, 0);
	char	   *triggered_by = check_triggered_by(fcinfo, 1);
	Capture		cap;
	int64		run_id;

	claim_transaction_capture(snapshot_date, true);
	claim_transaction_run();
	capture_setup(&cap, fcinfo, snapshot_date, false);

	/* the date's active run, even when snapshot.max_runs are under way */
	run_id = snapshot_run_active(cap.nsp, snapshot_date);
	SPI_finish();
	if (run_id == 0)
		run_id = snapshot_run_start(cap.nspid, snapshot_date, triggered_by, 0, false);
	PG_RETURN_INT64(run_id);
}

/*
 * resume_capture(run_id bigint) RETURNS bigint
 *
 * Continue a failed or cancelled run after its last committed portfolio,
 * with the same run id (returned); an active run's id is returned as is.
 */
Datum
resume_capture(PG_FUNCTION_ARGS)
{
	int64		run_id;
	Oid			nspid;
	const char *nsp;
	Oid			types[1] = {INT8OID};
	Datum		values[1];
	DateADT		snapshot_date;
	bool		isnull;
	Capture		cap;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				errmsg("run_id must not be null"));
	run_id = PG_GETARG_INT64(0);
	nsp = connect_in_schema(fcinfo, &nspid);
	values[0] = Int64GetDatum(run_id);
	snapshot_spi_run(psprintf("SELECT r.snapshot_date FROM %s.snapshot_runs r"
							  " WHERE r.run_id OPERATOR(pg_catalog.=) $1", nsp),
					 1, types, values, NULL, true, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				errcode(ERRCODE_NO_DATA_FOUND),
				errmsg("run " INT64_FORMAT " does not exist", run_id));
	snapshot_date = DatumGetDateADT(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
												  1, &isnull));
	SPI_finish();
	claim_transaction_capture(snapshot_date, true);
	claim_transaction_run();
	capture_setup(&cap, fcinfo, snapshot_date, false);
	SPI_finish();
	PG_RETURN_INT64(snapshot_run_start(nspid, snapshot_date, "resume", run_id, false));
}

/*
 * cancel_capture(run_id bigint) RETURNS boolean
 *
 * End an active run as cancelled, waiting until its worker has recorded
 * it; false when the run was not active.
 */
Datum
cancel_capture(PG_FUNCTION_ARGS)
{
	Oid			nspid;
	const char *nsp;
	bool		cancelled;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				errmsg("run_id must not be null"));
	nsp = connect_in_schema(fcinfo, &nspid);
	cancelled = snapshot_run_cancel(nsp, PG_GETARG_INT64(0));
	SPI_finish();
	PG_RETURN_BOOL(cancelled);
}

/*
 * capture_progress_rows() RETURNS TABLE (...), behind the capture_progress
 * view: every active run after the reaping of runs whose worker is gone,
 * with its percent, rate and ETA, and its worker's state.
 */
Datum
capture_progress_rows(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			nspid;
	const char *nsp;
	MemoryContext per_query;
	MemoryContext old;
	TupleDesc	desc;
	Tuplestorestate *store;

	InitMaterializedSRF(fcinfo, 0);
	per_query = rsinfo->econtext->ecxt_per_query_memory;
	store = rsinfo->setResult;
	desc = rsinfo->setDesc;
	nsp = connect_in_schema(fcinfo, &nspid);
	/* a read-only transaction (a standby, say) shows the runs unreaped */
	if (!XactReadOnly && !RecoveryInProgress())
		(void) snapshot_reap_runs(nsp);
	snapshot_spi_run(psprintf("SELECT r.run_id, r.snapshot_date, r.status, r.triggered_by, r.started_at,"
							  " r.updated_at, r.portfolios, r.total,"
							  " CASE WHEN r.total OPERATOR(pg_catalog.>) 0 THEN pg_catalog.round("
							  "  100.0 OPERATOR(pg_catalog.*) r.portfolios OPERATOR(pg_catalog./) r.total, 1) END,"
							  " CASE WHEN r.updated_at OPERATOR(pg_catalog.>) r.started_at THEN pg_catalog.round("
							  "  r.portfolios OPERATOR(pg_catalog./) pg_catalog.date_part('epoch',"
							  "  r.updated_at OPERATOR(pg_catalog.-) r.started_at)::pg_catalog.numeric, 1) END,"
							  " CASE WHEN r.portfolios OPERATOR(pg_catalog.>) 0"
							  "  AND r.updated_at OPERATOR(pg_catalog.>) r.started_at THEN"
							  "  (r.updated_at OPERATOR(pg_catalog.-) r.started_at)"
							  "  OPERATOR(pg_catalog.*) ((r.total OPERATOR(pg_catalog.-) r.portfolios)::pg_catalog.float8"
							  "  OPERATOR(pg_catalog./) r.portfolios) END,"
							  " r.worker_pid,"
							  " (SELECT a.state OPERATOR(pg_catalog.||) coalesce(': ' OPERATOR(pg_catalog.||) a.wait_event, '')"
							  "  FROM pg_catalog.pg_stat_activity a WHERE a.pid OPERATOR(pg_catalog.=) r.worker_pid)"
							  " FROM %s.snapshot_runs r"
							  " WHERE r.status OPERATOR(pg_catalog.=) ANY ('{queued,running}')"
							  " ORDER BY r.run_id", nsp),
					 0, NULL, NULL, NULL, false, SPI_OK_SELECT);
	old = MemoryContextSwitchTo(per_query);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		Datum		values[13];
		bool		nulls[13];

		heap_deform_tuple(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, values, nulls);
		tuplestore_putvalues(store, desc, values, nulls);
	}
	MemoryContextSwitchTo(old);
	SPI_finish();
	return (Datum) 0;
}
