/*-------------------------------------------------------------------------
 *
 * snapshot_leader.c
 *	  The leader's side of capture_all_snapshots() with valuation workers:
 *	  whether to use them, the shared memory segment (a shm_toc), starting
 *	  and stopping the workers, and the loop that receives what they value.
 *
 * The leader keeps everything that writes (the run row, the batched upserts,
 * snapshot_run_errors) in its own transaction, so a capture still commits or
 * rolls back whole: what the workers send goes to the walk's sink, the
 * writer.  Each worker restores the leader's snapshot, as parallel query
 * does, and runs the very walk the leader would over ranges of portfolio
 * ids (snapshot_worker.c).
 *
 * Workers are used only where they see exactly what the leader sees
 * (snapshot_other_process_sees_all(), the rule a run's own worker follows
 * too).  The ranges no worker took, the leader walks itself.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "libpq/pqformat.h"
#include "libpq/pqmq.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "storage/shm_mq.h"
#include "storage/shm_toc.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/wait_event.h"

#include "snapshot_leader.h"
#include "snapshot_parallel.h"

static int	snapshot_max_workers = 2;
static int	snapshot_portfolios_per_worker = 10000;

/*
 * The queue from each worker to the leader: large enough to absorb the
 * leader's pauses while it writes a batch (1 MB queues left the cores idle
 * 15% of the time), within 32 MB of shared memory for all of them.
 */
#define SNAPSHOT_QUEUE_MAX ((Size) 8 * 1024 * 1024)
#define SNAPSHOT_QUEUES_TOTAL ((Size) 32 * 1024 * 1024)
#define SNAPSHOT_QUEUE_MIN ((Size) 256 * 1024)

/* The leader's handles on its workers, for stopping them on error. */
typedef struct WorkerSet
{
	int			n;
	BackgroundWorkerHandle *handles[FLEXIBLE_ARRAY_MEMBER];
} WorkerSet;

/*
 * Define snapshot.max_workers and snapshot.portfolios_per_worker; each
 * bounds a capture's use of the server, so only a superuser may change it.
 */
void
snapshot_leader_init(void)
{
	DefineCustomIntVariable("snapshot.max_workers",
							"Background workers that value portfolios for one capture_all_snapshots() call.",
							"The calling backend writes the snapshots while the workers walk and value "
							"ranges of portfolios; 0 values every portfolio in the calling backend.",
							&snapshot_max_workers,
							2, 0, 64,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("snapshot.portfolios_per_worker",
							"Portfolios each valuation worker is given at least.",
							"Smaller captures use fewer workers, or none.",
							&snapshot_portfolios_per_worker,
							10000, 1, INT_MAX,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
}

/*
 * How many valuation workers to use (see the file header); else one per
 * snapshot.portfolios_per_worker portfolios, at most snapshot.max_workers.
 */
int
snapshot_parallel_workers(const SnapshotConfig *config, int64 total, bool wrote_before)
{
	int64		n;

	if (snapshot_max_workers <= 0 ||
		!snapshot_other_process_sees_all(config->relids, wrote_before))
		return 0;
	n = Min(total / snapshot_portfolios_per_worker, (int64) snapshot_max_workers);
	if (n < 1)
		return 0;
	for (int i = 0; i < (int) SNAPSHOT_COPIED_SETTINGS; i++)
		if (strlen(GetConfigOption(snapshot_copied_settings[i], false, false)) >= SNAPSHOT_SETTING_LEN)
			return 0;
	return (int) n;
}

/*
 * on_dsm_detach callback of the leader: stop the workers still running (the
 * capture is ending, normally after they all finished, or on error).
 */
static void
stop_workers(dsm_segment *seg, Datum arg)
{
	WorkerSet  *ws = (WorkerSet *) DatumGetPointer(arg);

	for (int i = 0; i < ws->n; i++)
		if (ws->handles[i] != NULL)
			TerminateBackgroundWorker(ws->handles[i]);
}

/*
 * Count a portfolio a worker walked; the walk's last id is the greatest
 * received (workers walk their ranges at once).
 */
static void
note_walked(Walk *walk, const void *id)
{
	if (walk->walked == 0 || memcmp(id, walk->last_id.data, UUID_LEN) > 0)
		memcpy(walk->last_id.data, id, UUID_LEN);
	walk->walked++;
}

/* Read a length-prefixed byte string as a C string in the current context. */
static char *
get_cstring(StringInfo msg)
{
	int			len = pq_getmsgint(msg, 4);

	return pnstrdup(pq_getmsgbytes(msg, len), len);
}

/*
 * Raise a worker's error or notice (a protocol message 'E' or 'N') in the
 * leader: a worker's error fails the capture, but never the session.
 */
static void
rethrow_worker_message(StringInfo msg)
{
	ErrorData	edata;

	pq_parse_errornotice(msg, &edata);
	if (edata.elevel > ERROR)
		edata.elevel = ERROR;
	edata.context = edata.context
		? psprintf("%s\nsnapshot valuation worker", edata.context)
		: pstrdup("snapshot valuation worker");
	ThrowErrorData(&edata);
}

/*
 * Act on one message from a worker; true when it says the worker is done.
 * Allocations go to the current (per-message) context.
 */
static bool
receive_message(Walk *walk, int64 *skipped_market, int *workers, char *data, Size nbytes)
{
	StringInfoData msg;

	msg.data = data;
	msg.len = (int) nbytes;
	msg.maxlen = (int) nbytes;
	msg.cursor = 1;

	switch (data[0])
	{
		case SNAPSHOT_MSG_ROW:
			{
				/* the batch copies the values straight out of the message */
				SnapshotRow row;

				snapshot_row_decode(&msg, &row);
				pq_getmsgend(&msg);
				note_walked(walk, row.fields[SNAP_PORTFOLIO_ID]);
				walk->sink->receive_row(walk->sink, &row);
				return false;
			}
		case SNAPSHOT_MSG_FAILED:
			{
				pg_uuid_t	id;
				int			sqlerrcode;
				char	   *text;
				char	   *detail = NULL;

				memcpy(id.data, pq_getmsgbytes(&msg, UUID_LEN), UUID_LEN);
				sqlerrcode = (int) pq_getmsgint(&msg, 4);
				text = get_cstring(&msg);
				if (pq_getmsgbyte(&msg))
					detail = get_cstring(&msg);
				pq_getmsgend(&msg);
				note_walked(walk, &id);
				walk->sink->receive_error(walk->sink, &id, sqlerrcode, text, detail);
				return false;
			}
		case SNAPSHOT_MSG_DONE:
			{
				int64		market = (int64) pq_getmsgint64(&msg);

				/* every worker loaded the same market data */
				*skipped_market = Max(*skipped_market, market);
				walk->skipped += (int64) pq_getmsgint64(&msg);
				pq_getmsgend(&msg);
				(*workers)++;
				return true;
			}
		case 'E':
		case 'N':
			rethrow_worker_message(&msg);
			return false;
		default:
			/* other protocol messages (parameter status, say) mean nothing here */
			return false;
	}
}

/*
 * Register a worker on the segment, to run function; false when no
 * background worker slot is free.  The handle lives in cxt, for
 * stop_workers().
 */
static bool
start_worker(dsm_segment *seg, int i, const char *function, MemoryContext cxt,
			 BackgroundWorkerHandle **handle)
{
	BackgroundWorker worker;
	MemoryContext old;
	bool		started;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "snapshot");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(worker.bgw_name, BGW_MAXLEN, "snapshot valuation worker %d for PID %d",
			 i + 1, MyProcPid);
	snprintf(worker.bgw_type, BGW_MAXLEN, "snapshot valuation worker");
	worker.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(seg));
	worker.bgw_notify_pid = MyProcPid;

	old = MemoryContextSwitchTo(cxt);
	started = RegisterDynamicBackgroundWorker(&worker, handle);
	MemoryContextSwitchTo(old);
	return started;
}

/* Whether every registered worker has exited (or never started). */
static bool
all_workers_stopped(const WorkerSet *ws)
{
	for (int i = 0; i < ws->n; i++)
	{
		pid_t		pid;

		if (ws->handles[i] != NULL &&
			GetBackgroundWorkerPid(ws->handles[i], &pid) != BGWH_STOPPED)
			return false;
	}
	return true;
}

/* The segment's ParallelShared: the leader, the date, its settings. */
static ParallelShared *
insert_shared(shm_toc *toc, Oid nspid, DateADT date, int nqueues)
{
	ParallelShared *shared = shm_toc_allocate(toc, sizeof(ParallelShared));

	memset(shared, 0, sizeof(ParallelShared));
	shared->dboid = MyDatabaseId;
	shared->userid = GetUserId();
	shared->nspid = nspid;
	shared->leader = MyProc;
	shared->leader_pid = MyProcPid;
	shared->snapshot_date = date;
	shared->nqueues = nqueues;
	for (int i = 0; i < (int) SNAPSHOT_COPIED_SETTINGS; i++)
		strlcpy(shared->settings[i], GetConfigOption(snapshot_copied_settings[i], false, false),
				SNAPSHOT_SETTING_LEN);
	SpinLockInit(&shared->mutex);
	shm_toc_insert(toc, SNAPSHOT_KEY_SHARED, shared);
	return shared;
}

/*
 * The leader's side of a capture of all (see snapshot_leader.h): split the
 * portfolios into ranges, build the segment, start the workers, and hand
 * what they send to the sink.  Runs under the capture's active snapshot,
 * which the workers restore.
 */
int
snapshot_walk_parallel(Walk *walk, MarketData *md, int64 *skipped_market, int nworkers,
					   int64 total, Oid nspid)
{
	SnapshotRange *ranges;
	Snapshot	snapshot = GetActiveSnapshot();
	Size		snapshot_size = EstimateSnapshotSpace(snapshot);
	Size		queue_size;
	int			nranges;
	shm_toc_estimator estimator;
	Size		segsize;
	dsm_segment *seg;
	shm_toc    *toc;
	ParallelShared *shared;
	SnapshotRange *shared_ranges;
	char	   *shared_snapshot;
	WorkerSet  *ws;
	shm_mq_handle **queues;
	int			live = 0;
	int			workers = 0;
	int			taken;
	MemoryContext message_cxt;
	SourceScope all = walk->scope;

	nranges = snapshot_split_every(walk->config, &walk->scope.range,
								   (total + nworkers - 1) / nworkers, &ranges);
	if (nranges > nworkers)
	{
		/* total was short: the last worker's range takes in the rest */
		ranges[nworkers - 1].has_hi = walk->scope.range.has_hi;
		ranges[nworkers - 1].hi = walk->scope.range.hi;
		nranges = nworkers;
	}
	nworkers = nranges;
	queue_size = MAXALIGN(Max(Min(SNAPSHOT_QUEUE_MAX, SNAPSHOT_QUEUES_TOTAL / nworkers),
							  SNAPSHOT_QUEUE_MIN));

	shm_toc_initialize_estimator(&estimator);
	shm_toc_estimate_chunk(&estimator, sizeof(ParallelShared));
	shm_toc_estimate_chunk(&estimator, snapshot_size);
	shm_toc_estimate_chunk(&estimator, mul_size(sizeof(SnapshotRange), nranges));
	for (int i = 0; i < nworkers; i++)
		shm_toc_estimate_chunk(&estimator, queue_size);
	shm_toc_estimate_keys(&estimator, 3 + nworkers);
	segsize = shm_toc_estimate(&estimator);

	seg = dsm_create(segsize, 0);
	toc = shm_toc_create(SNAPSHOT_PARALLEL_MAGIC, dsm_segment_address(seg), segsize);

	shared = insert_shared(toc, nspid, md->snapshot_date, nranges);

	shared_snapshot = shm_toc_allocate(toc, snapshot_size);
	SerializeSnapshot(snapshot, shared_snapshot);
	shm_toc_insert(toc, SNAPSHOT_KEY_SNAPSHOT, shared_snapshot);

	shared_ranges = shm_toc_allocate(toc, mul_size(sizeof(SnapshotRange), nranges));
	memcpy(shared_ranges, ranges, sizeof(SnapshotRange) * nranges);
	shm_toc_insert(toc, SNAPSHOT_KEY_RANGES, shared_ranges);

	queues = palloc0(sizeof(shm_mq_handle *) * nworkers);
	for (int i = 0; i < nworkers; i++)
	{
		shm_mq	   *mq = shm_mq_create(shm_toc_allocate(toc, queue_size), queue_size);

		shm_mq_set_receiver(mq, MyProc);
		shm_toc_insert(toc, SNAPSHOT_KEY_QUEUE + i, mq);
		queues[i] = shm_mq_attach(mq, seg, NULL);
	}

	ws = MemoryContextAllocZero(TopTransactionContext,
								offsetof(WorkerSet, handles) +
								sizeof(BackgroundWorkerHandle *) * nworkers);
	ws->n = nworkers;
	on_dsm_detach(seg, stop_workers, PointerGetDatum(ws));

	/*
	 * The workers join the leader's lock group, as parallel query's do: the
	 * locks the leader holds (at least ACCESS SHARE on every source) never
	 * make a worker wait, not even behind an ALTER TABLE queued for them
	 * meanwhile, which the deadlock detector could not see through the
	 * leader's wait on the queues.
	 */
	BecomeLockGroupLeader();

	/* workers take queues (and ranges) in the order they attach: the first n */
	for (int i = 0; i < nworkers; i++)
		if (start_worker(seg, i, "snapshot_valuation_worker", TopTransactionContext,
						 &ws->handles[i]))
			live++;
	for (int i = live; i < nworkers; i++)
	{
		shm_mq_detach(queues[i]);
		queues[i] = NULL;
	}

	message_cxt = AllocSetContextCreate(CurrentMemoryContext, "snapshot worker message",
										ALLOCSET_DEFAULT_SIZES);
	while (live > 0)
	{
		bool		received = false;

		for (int i = 0; i < nworkers; i++)
		{
			Size		nbytes;
			void	   *data;
			shm_mq_result res;
			MemoryContext old;
			bool		done;

			if (queues[i] == NULL)
				continue;
			res = shm_mq_receive(queues[i], &nbytes, &data, true);
			if (res == SHM_MQ_WOULD_BLOCK)
				continue;
			received = true;
			if (res == SHM_MQ_DETACHED)
				ereport(ERROR,
						errcode(ERRCODE_INTERNAL_ERROR),
						errmsg("a snapshot valuation worker exited before valuing all of its portfolios"),
						errhint("The server log may say why."));
			old = MemoryContextSwitchTo(message_cxt);
			done = receive_message(walk, skipped_market, &workers, data, nbytes);
			MemoryContextSwitchTo(old);
			MemoryContextReset(message_cxt);
			if (done)
			{
				shm_mq_detach(queues[i]);
				queues[i] = NULL;
				live--;
			}
		}
		if (received)
		{
			CHECK_FOR_INTERRUPTS();
			continue;
		}

		/*
		 * Once every worker has exited, a queue no worker attached to never
		 * will be: a worker that could not start, or left before taking one.
		 */
		if (all_workers_stopped(ws))
		{
			for (int i = 0; i < nworkers; i++)
				if (queues[i] != NULL &&
					shm_mq_get_sender(shm_mq_get_queue(queues[i])) == NULL)
				{
					shm_mq_detach(queues[i]);
					queues[i] = NULL;
					live--;
				}
			if (live == 0)
				break;
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH, -1L,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}

	/* the ranges of the queues no worker took (every worker has exited) */
	SpinLockAcquire(&shared->mutex);
	taken = shared->queues_taken;
	shared->queues_taken = nranges;
	SpinLockRelease(&shared->mutex);
	for (int range = taken; range < nranges; range++)
	{
		if (md->assets == NULL)
		{
			int64		skipped = 0;

			snapshot_read_market_data(walk->config, &all, md, &skipped);
			*skipped_market = Max(*skipped_market, skipped);
		}
		walk->scope.range = ranges[range];
		snapshot_walk(walk);
	}
	walk->scope = all;

	/* let the workers end their read-only transactions, then part */
	for (int i = 0; i < ws->n; i++)
		if (ws->handles[i] != NULL)
			(void) WaitForBackgroundWorkerShutdown(ws->handles[i]);
	ws->n = 0;
	dsm_detach(seg);
	MemoryContextDelete(message_cxt);
	return workers;
}

/*
 * Act on what the batch workers' queues hold, without waiting: raise a
 * worker's error; a queue whose worker has gone, or never attached once
 * every worker has stopped, is closed.  Returns the queues still open.
 */
static int
poll_batch_queues(shm_mq_handle **queues, int n, const WorkerSet *ws)
{
	int			live = 0;
	bool		stopped = all_workers_stopped(ws);

	for (int i = 0; i < n; i++)
	{
		for (;;)
		{
			Size		nbytes;
			void	   *data;
			shm_mq_result res;
			StringInfoData msg;

			if (queues[i] == NULL)
				break;
			res = shm_mq_receive(queues[i], &nbytes, &data, true);
			if (res == SHM_MQ_WOULD_BLOCK)
			{
				if (stopped && shm_mq_get_sender(shm_mq_get_queue(queues[i])) == NULL)
				{
					shm_mq_detach(queues[i]);
					queues[i] = NULL;
				}
				break;
			}
			if (res == SHM_MQ_DETACHED)
			{
				shm_mq_detach(queues[i]);
				queues[i] = NULL;
				break;
			}
			msg.data = data;
			msg.len = (int) nbytes;
			msg.maxlen = (int) nbytes;
			msg.cursor = 1;
			if (nbytes > 0 && (msg.data[0] == 'E' || msg.data[0] == 'N'))
				rethrow_worker_message(&msg);
		}
		if (queues[i] != NULL)
			live++;
	}
	return live;
}

/*
 * Take and commit the batches of plan that remain, in this process alone
 * (no worker lives), then check that every batch committed: a worker that
 * failed said why on its queue, which was read before.
 */
static void
run_batches_alone(BatchPlan *plan, BatchRunner *br)
{
	bool		failed = false;
	int			batch;

	while (!failed && snapshot_run_next_batch(plan, br, &failed))
		CHECK_FOR_INTERRUPTS();
	if (!snapshot_batches_committed(plan, &batch))
		ereport(ERROR,
				errcode(ERRCODE_INTERNAL_ERROR),
				errmsg("batch %d of %d of run " INT64_FORMAT " was not committed",
					   batch + 1, plan->nbatches, br->run_id),
				errhint("The server log may say why."));
}

/* A batch worker's queue carries only its errors and notices. */
#define SNAPSHOT_BATCH_QUEUE ((Size) 64 * 1024)

/* See snapshot_leader.h. */
int
snapshot_run_batches(BatchPlan *local, BatchRunner *br, int nworkers)
{
	shm_toc_estimator estimator;
	Size		plan_size = BatchPlanSize(local->nbatches);
	Size		segsize;
	dsm_segment *seg;
	shm_toc    *toc;
	ParallelShared *shared;
	BatchPlan  *plan;
	WorkerSet  *ws;
	shm_mq_handle **queues;
	MemoryContext old;
	volatile int started = 0;

	if (nworkers <= 0)
	{
		run_batches_alone(local, br);
		return 0;
	}

	/* everything here outlives the batches' transactions */
	old = MemoryContextSwitchTo(br->cxt);
	shm_toc_initialize_estimator(&estimator);
	shm_toc_estimate_chunk(&estimator, sizeof(ParallelShared));
	shm_toc_estimate_chunk(&estimator, plan_size);
	for (int i = 0; i < nworkers; i++)
		shm_toc_estimate_chunk(&estimator, SNAPSHOT_BATCH_QUEUE);
	shm_toc_estimate_keys(&estimator, 2 + nworkers);
	segsize = shm_toc_estimate(&estimator);
	seg = dsm_create(segsize, 0);
	dsm_pin_mapping(seg);
	toc = shm_toc_create(SNAPSHOT_PARALLEL_MAGIC, dsm_segment_address(seg), segsize);

	shared = insert_shared(toc, br->nspid, br->snapshot_date, nworkers);
	shared->run_id = br->run_id;
	strlcpy(shared->triggered_by, br->triggered_by, sizeof(shared->triggered_by));
	plan = shm_toc_allocate(toc, plan_size);
	memcpy(plan, local, plan_size);
	SpinLockInit(&plan->mutex);
	shm_toc_insert(toc, SNAPSHOT_KEY_BATCHES, plan);

	queues = palloc0(sizeof(shm_mq_handle *) * nworkers);
	for (int i = 0; i < nworkers; i++)
	{
		shm_mq	   *mq = shm_mq_create(shm_toc_allocate(toc, SNAPSHOT_BATCH_QUEUE),
									   SNAPSHOT_BATCH_QUEUE);

		shm_mq_set_receiver(mq, MyProc);
		shm_toc_insert(toc, SNAPSHOT_KEY_QUEUE + i, mq);
		queues[i] = shm_mq_attach(mq, seg, NULL);
	}
	ws = palloc0(offsetof(WorkerSet, handles) + sizeof(BackgroundWorkerHandle *) * nworkers);
	ws->n = nworkers;
	on_dsm_detach(seg, stop_workers, PointerGetDatum(ws));
	MemoryContextSwitchTo(old);

	PG_TRY();
	{
		for (int i = 0; i < nworkers; i++)
			if (start_worker(seg, i, "snapshot_batch_worker", br->cxt, &ws->handles[i]))
				started++;
		SpinLockAcquire(&plan->mutex);
		plan->workers = started;
		SpinLockRelease(&plan->mutex);

		/*
		 * While workers live, the run's worker takes no batch: it only reads
		 * their queues, so that a worker never waits on a full queue for a
		 * process that waits for the worker's batch.
		 */
		pgstat_report_activity(STATE_RUNNING, "snapshot capture run: waiting for its valuation workers");
		while (poll_batch_queues(queues, nworkers, ws) > 0)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 1000L,
							 PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
		for (int i = 0; i < ws->n; i++)
			if (ws->handles[i] != NULL)
				(void) WaitForBackgroundWorkerShutdown(ws->handles[i]);

		/* what no worker took (none started, or they left early) */
		run_batches_alone(plan, br);
	}
	PG_CATCH();
	{
		/*
		 * No batch may commit after the run's end is recorded: the workers
		 * are stopped, and waited for, before the error goes on.  Their
		 * queues are detached first, so that none waits to send on one.
		 */
		HOLD_INTERRUPTS();
		for (int i = 0; i < nworkers; i++)
			if (queues[i] != NULL)
			{
				shm_mq_detach(queues[i]);
				queues[i] = NULL;
			}
		for (int i = 0; i < ws->n; i++)
			if (ws->handles[i] != NULL)
			{
				TerminateBackgroundWorker(ws->handles[i]);
				(void) WaitForBackgroundWorkerShutdown(ws->handles[i]);
			}
		ws->n = 0;
		dsm_detach(seg);
		RESUME_INTERRUPTS();
		PG_RE_THROW();
	}
	PG_END_TRY();

	ws->n = 0;
	dsm_detach(seg);
	return started;
}
