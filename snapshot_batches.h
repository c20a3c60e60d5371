/*-------------------------------------------------------------------------
 *
 * snapshot_batches.h
 *	  A run's batches (snapshot_batches.c): ranges of portfolio ids, each
 *	  valued, written and committed with the run's progress in a
 *	  transaction of its own by whichever of the run's processes takes it,
 *	  the commits in the order of the ranges.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SNAPSHOT_BATCHES_H
#define SNAPSHOT_BATCHES_H

#include "storage/spin.h"

#include "snapshot_reads.h"

/* One batch: its range, and the transaction that took it. */
typedef struct RunBatch
{
	SnapshotRange range;
	TransactionId xid;			/* InvalidTransactionId until taken */
} RunBatch;

/*
 * The batches of one attempt at a run, in local memory when the run's
 * worker writes alone, in the segment it shares with its valuation workers
 * otherwise.  A process takes the next batch under the mutex, in the
 * transaction that will commit it, and records that transaction's id there;
 * a batch commits only after the batch before it committed, so what is
 * committed is always the batches up to one, and last_portfolio_id tells
 * where a resume begins.
 */
typedef struct BatchPlan
{
	slock_t		mutex;			/* protects next, workers and the xids */
	int			nbatches;
	int			next;			/* the next batch to take */
	int			workers;		/* valuation workers started, for the run row */
	RunBatch	batches[FLEXIBLE_ARRAY_MEMBER];
} BatchPlan;

#define BatchPlanSize(n) (offsetof(BatchPlan, batches) + sizeof(RunBatch) * (n))

/* Fill plan (of BatchPlanSize(n) bytes) with n ranges, none taken. */
extern void snapshot_batch_plan_init(BatchPlan *plan, const SnapshotRange *ranges, int n);

/*
 * What one process of a run needs to run its batches.  The market data is
 * read by the first batch it runs, into cxt, and kept for the run.
 */
typedef struct BatchRunner
{
	Oid			nspid;
	const char *nsp;			/* the extension's schema, quoted */
	DateADT		snapshot_date;
	int64		run_id;
	const char *triggered_by;
	int			run_worker_pid;	/* the attempt's own: its batches only */
	int			batch_size;		/* portfolios per fetch and per upsert */
	MemoryContext cxt;			/* outlives the batches' transactions */
	MarketData	md;
	bool		md_loaded;
} BatchRunner;

/*
 * Settings of a process that takes a run's batches, whatever the database's
 * and the role's defaults: READ COMMITTED, read-write, no lock, statement
 * or idle timeout; quiet, no notices to the client (a valuation worker's
 * queue).
 */
extern void snapshot_batch_settings(bool quiet);

/*
 * Load the configuration with the sources locked, then push the snapshot
 * the transaction reads them with (the caller pops it).
 */
extern void snapshot_batch_begin_reads(SnapshotConfig *config, Oid nspid, const char *nsp);

/*
 * Read the market data of br's run into br->cxt (a run reads it once per
 * process), under the active snapshot; returns the rows skipped.  Runs
 * inside SPI.
 */
extern int64 snapshot_batch_load_market_data(BatchRunner *br, const SnapshotConfig *config);

/*
 * Take the next batch of plan and commit it, in a transaction of its own
 * (none may be open): lock the sources, take a snapshot, value and write the
 * batch's portfolios, wait until the batch before it has committed, add the
 * batch's counts to the run row and commit.  Returns false, with nothing
 * done, when no batch remains, and when the batch before the one taken was
 * not committed (*earlier_failed is then true, and the batch taken is rolled
 * back: its process ended with an error, which it reported itself).
 */
extern bool snapshot_run_next_batch(BatchPlan *plan, BatchRunner *br, bool *earlier_failed);

/*
 * Whether every batch of plan has been taken and committed (batches commit
 * in order, so the last one says); else a batch that was not, in *batch.
 */
extern bool snapshot_batches_committed(BatchPlan *plan, int *batch);

#endif							/* SNAPSHOT_BATCHES_H */
