/*-------------------------------------------------------------------------
 *
 * snapshot_batches.c
 *	  A run's batches: each a range of portfolio ids that one process of the
 *	  run (its worker, or one of the valuation workers it started) values,
 *	  writes and commits, with the batch's counts added to the run row, in a
 *	  transaction of its own.
 *
 * Batches are taken in order, and commit in order: the process of batch k,
 * once its rows are written, waits for the transaction of batch k - 1 to
 * end (a wait on its transaction id, which the deadlock detector sees), and
 * commits only if that one committed.  So the committed batches are always
 * a prefix of the plan: the run row's counts are exactly those of the
 * committed snapshots, and its last_portfolio_id is where a resume begins.
 * Each batch locks the sources and then takes a snapshot of its own, so
 * every portfolio is valued against one consistent view of its ledger.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "storage/procarray.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "snapshot_amount.h"
#include "snapshot_batches.h"
#include "snapshot_walk.h"
#include "snapshot_writer.h"

/* See snapshot_batches.h. */
void
snapshot_batch_plan_init(BatchPlan *plan, const SnapshotRange *ranges, int n)
{
	SpinLockInit(&plan->mutex);
	plan->nbatches = n;
	plan->next = 0;
	plan->workers = 0;
	for (int i = 0; i < n; i++)
	{
		plan->batches[i].range = ranges[i];
		plan->batches[i].xid = InvalidTransactionId;
	}
}

/* See snapshot_batches.h. */
void
snapshot_batch_settings(bool quiet)
{
	/*
	 * Database and role defaults reach background workers too: a batch waits
	 * for the batch before it for as long as that one takes, and updates the
	 * run row after it did, which only READ COMMITTED allows.
	 */
	SetConfigOption("default_transaction_isolation", "read committed", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_read_only", "off", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("lock_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("statement_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("idle_in_transaction_session_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	/* notices of the owner's code would fill the queue the errors take */
	if (quiet)
		SetConfigOption("client_min_messages", "error", PGC_SUSET, PGC_S_OVERRIDE);
}

/* See snapshot_batches.h. */
void
snapshot_batch_begin_reads(SnapshotConfig *config, Oid nspid, const char *nsp)
{
	/*
	 * The sources are locked before the snapshot is taken: a table rewritten
	 * (ALTER TABLE) just before would look empty to a snapshot taken before
	 * the rewrite committed.
	 */
	PushActiveSnapshot(GetTransactionSnapshot());
	snapshot_load_config(config, nspid, nsp, true);
	PopActiveSnapshot();
	PushActiveSnapshot(GetTransactionSnapshot());
}

/* See snapshot_batches.h. */
int64
snapshot_batch_load_market_data(BatchRunner *br, const SnapshotConfig *config)
{
	MemoryContext old = MemoryContextSwitchTo(br->cxt);
	SourceScope all;
	int64		skipped = 0;

	memset(&all, 0, sizeof(all));
	memset(&br->md, 0, sizeof(br->md));
	br->md.cxt = br->cxt;
	br->md.snapshot_date = br->snapshot_date;
	br->md.rules = config->rules;
	br->md.rules.quantity_tolerance =
		DatumGetNumericCopy(NumericGetDatum(config->rules.quantity_tolerance));
	br->md.rules.tolerance = amount_of(br->md.rules.quantity_tolerance);
	snapshot_read_market_data(config, &all, &br->md, &skipped);
	MemoryContextSwitchTo(old);
	br->md_loaded = true;
	return skipped;
}

/*
 * Wait for the transaction of batch k to end; whether it committed.  Batch
 * k was taken before the caller's, so its transaction id is set.
 */
static bool
batch_committed(BatchPlan *plan, int k)
{
	TransactionId xid;

	SpinLockAcquire(&plan->mutex);
	xid = plan->batches[k].xid;
	SpinLockRelease(&plan->mutex);
	Assert(TransactionIdIsValid(xid));
	if (TransactionIdIsCurrentTransactionId(xid))
		return false;			/* not reached: a process commits each batch it takes */
	XactLockTableWait(xid, NULL, NULL, XLTW_None);
	return TransactionIdDidCommit(xid);
}

/* Add what a batch did to the run row; false when the run is no longer active. */
static bool
record_batch(BatchPlan *plan, BatchRunner *br, const Walk *walk, const SnapshotWriter *writer)
{
	Oid			types[8] = {INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, UUIDOID, INT4OID, INT4OID};
	Datum		values[8];
	char		nulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	int			workers;

	SpinLockAcquire(&plan->mutex);
	workers = plan->workers;
	SpinLockRelease(&plan->mutex);
	values[6] = Int32GetDatum(workers);

	values[0] = Int64GetDatum(br->run_id);
	values[1] = Int64GetDatum(walk->walked);
	values[2] = Int64GetDatum(writer->captured);
	values[3] = Int64GetDatum(writer->failed);
	values[4] = Int64GetDatum(walk->skipped);
	values[5] = UUIDPGetDatum(&walk->last_id);
	if (walk->walked == 0)
		nulls[5] = 'n';
	values[7] = Int32GetDatum(br->run_worker_pid);

	/* only into the attempt of this run's worker: a resumed run has another */
	snapshot_spi_run(psprintf("UPDATE %s.snapshot_runs SET status = 'running', reason = NULL,"
							  " portfolios = portfolios OPERATOR(pg_catalog.+) $2,"
							  " captured = captured OPERATOR(pg_catalog.+) $3,"
							  " failed = failed OPERATOR(pg_catalog.+) $4,"
							  " skipped_rows = skipped_rows OPERATOR(pg_catalog.+) $5,"
							  " last_portfolio_id = coalesce($6, last_portfolio_id),"
							  " workers = GREATEST(workers, $7),"
							  " updated_at = pg_catalog.clock_timestamp()"
							  " WHERE run_id OPERATOR(pg_catalog.=) $1"
							  " AND status OPERATOR(pg_catalog.=) ANY ('{queued,running}')"
							  " AND worker_pid OPERATOR(pg_catalog.=) $8",
							  br->nsp),
					 8, types, values, nulls, false, SPI_OK_UPDATE);
	return SPI_processed == 1;
}

/* See snapshot_batches.h. */
bool
snapshot_run_next_batch(BatchPlan *plan, BatchRunner *br, bool *earlier_failed)
{
	TransactionId xid;
	int			k;
	SnapshotConfig config;
	SnapshotWriter writer;
	Walk		walk;
	Datum		metadata;
	char		activity[128];

	*earlier_failed = false;
	SpinLockAcquire(&plan->mutex);
	k = plan->next;
	SpinLockRelease(&plan->mutex);
	if (k >= plan->nbatches)
		return false;

	/* the batch is taken by a transaction that has its id already */
	StartTransactionCommand();
	xid = GetTopTransactionId();
	SpinLockAcquire(&plan->mutex);
	k = plan->next < plan->nbatches ? plan->next++ : -1;
	if (k >= 0)
		plan->batches[k].xid = xid;
	SpinLockRelease(&plan->mutex);
	if (k < 0)
	{
		AbortCurrentTransaction();
		return false;
	}

	snprintf(activity, sizeof(activity), "snapshot capture run " INT64_FORMAT ": batch %d of %d",
			 br->run_id, k + 1, plan->nbatches);
	pgstat_report_activity(STATE_RUNNING, activity);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "snapshot: SPI_connect failed");
	snapshot_batch_begin_reads(&config, br->nspid, br->nsp);
	if (!br->md_loaded)
		(void) snapshot_batch_load_market_data(br, &config);

	metadata = snapshot_build_metadata(br->triggered_by, config.cost_method_name,
									   &config.rules, br->run_id);
	snapshot_writer_begin(&writer, br->nsp, br->snapshot_date, br->run_id, metadata, -1, true);
	memset(&walk, 0, sizeof(walk));
	walk.config = &config;
	walk.md = &br->md;
	walk.sink = &writer.sink;
	walk.batch_size = br->batch_size;
	walk.scope.range = plan->batches[k].range;
	snapshot_walk(&walk);
	snapshot_writer_flush(&writer);

	/* commit in order: after the batch before this one, or not at all */
	if (k > 0 && !batch_committed(plan, k - 1))
	{
		SPI_finish();
		PopActiveSnapshot();
		AbortCurrentTransaction();
		*earlier_failed = true;
		return false;
	}
	if (!record_batch(plan, br, &walk, &writer))
		ereport(ERROR,
				errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				errmsg("run " INT64_FORMAT " is no longer running in this attempt", br->run_id),
				errdetail("Batch %d of %d was rolled back.", k + 1, plan->nbatches));
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();

	/* session advisory locks the owner's code took end with the batch */
	LockReleaseAll(USER_LOCKMETHOD, true);
	pgstat_report_activity(STATE_IDLE, NULL);
	return true;
}

/* See snapshot_batches.h. */
bool
snapshot_batches_committed(BatchPlan *plan, int *batch)
{
	TransactionId xid;
	int			taken;

	if (plan->nbatches == 0)
		return true;
	SpinLockAcquire(&plan->mutex);
	taken = plan->next;
	xid = plan->batches[plan->nbatches - 1].xid;
	SpinLockRelease(&plan->mutex);

	/* batches commit in order: the last one committed means all did */
	if (taken < plan->nbatches || !TransactionIdIsValid(xid) ||
		TransactionIdIsInProgress(xid) || !TransactionIdDidCommit(xid))
	{
		*batch = Min(taken, plan->nbatches - 1);
		return false;
	}
	return true;
}
