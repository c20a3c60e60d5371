/*-------------------------------------------------------------------------
 *
 * snapshot_worker.c
 *	  A valuation worker of capture_all_snapshots(): a dynamic background
 *	  worker that takes a queue, and the range of portfolio ids of the same
 *	  number, from the leader's segment, walks and values it under the
 *	  leader's snapshot, and sends every result to the leader through its
 *	  sink, the queue.
 *
 * A batch worker of a run (snapshot_batch_worker) instead takes the run's
 * batches and commits each itself (snapshot_batches.c).
 *
 * See snapshot_parallel.h for the segment and the messages, and
 * snapshot_leader.c for when workers are used.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "access/xact.h"
#include "libpq/pqformat.h"
#include "libpq/pqmq.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/shm_mq.h"
#include "storage/shm_toc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "snapshot_batches.h"
#include "snapshot_parallel.h"
#include "snapshot_walk.h"
#include "snapshot_writer.h"

/* The worker's sink: everything its walk values goes to the leader. */
typedef struct QueueSink
{
	CaptureSink sink;			/* first, so the walk's sink is this */
	shm_mq_handle *queue;
	StringInfoData message;		/* reused for every message */
} QueueSink;

/* Put a length-prefixed byte string in a message. */
static void
put_bytes(StringInfo buf, const void *data, int len)
{
	pq_sendint32(buf, len);
	pq_sendbytes(buf, (const char *) data, len);
}

/* The sink's message buffer, emptied and started with a message type. */
static StringInfo
start_message(QueueSink *qs, char type)
{
	resetStringInfo(&qs->message);
	pq_sendbyte(&qs->message, type);
	return &qs->message;
}

/*
 * Send the message built to the leader; a leader that has gone away ends
 * the worker.
 */
static void
send_message(QueueSink *qs, bool flush)
{
	if (shm_mq_send(qs->queue, qs->message.len, qs->message.data, false, flush) != SHM_MQ_SUCCESS)
		ereport(ERROR,
				errcode(ERRCODE_ADMIN_SHUTDOWN),
				errmsg("the capture this valuation worker served has ended"));
}

static void
queue_receive_row(CaptureSink *self, const SnapshotRow *row)
{
	QueueSink  *qs = (QueueSink *) self;

	snapshot_row_encode(start_message(qs, SNAPSHOT_MSG_ROW), row);
	send_message(qs, false);
}

static void
queue_receive_error(CaptureSink *self, const pg_uuid_t *id, int sqlerrcode,
					const char *message, const char *detail)
{
	QueueSink  *qs = (QueueSink *) self;
	StringInfo	buf = start_message(qs, SNAPSHOT_MSG_FAILED);

	if (message == NULL)
		message = "unknown error";
	pq_sendbytes(buf, (const char *) id->data, UUID_LEN);
	pq_sendint32(buf, sqlerrcode);
	put_bytes(buf, message, strlen(message));
	pq_sendbyte(buf, detail != NULL);
	if (detail != NULL)
		put_bytes(buf, detail, strlen(detail));
	send_message(qs, false);
}

/*
 * Attach to the segment whose handle is main_arg (the leader's, or the
 * run's worker's) and find its ParallelShared.
 */
static ParallelShared *
attach_segment(Datum main_arg, dsm_segment **seg, shm_toc **toc)
{
	*seg = dsm_attach(DatumGetUInt32(main_arg));
	if (*seg == NULL)
		ereport(ERROR,
				errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				errmsg("could not map the capture's dynamic shared memory segment"));
	*toc = shm_toc_attach(SNAPSHOT_PARALLEL_MAGIC, dsm_segment_address(*seg));
	if (*toc == NULL)
		ereport(ERROR,
				errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				errmsg("the capture's shared memory segment has the wrong magic number"));
	return shm_toc_lookup(*toc, SNAPSHOT_KEY_SHARED, false);
}

/*
 * Take the next queue of the segment, become its sender and send this
 * process's errors there; the queue's number, which is also its range's
 * (a capture of all), or -1 when every queue is taken.
 */
static int
take_queue(dsm_segment *seg, shm_toc *toc, ParallelShared *shared, shm_mq_handle **queue)
{
	int			slot;
	shm_mq	   *mq;

	SpinLockAcquire(&shared->mutex);
	slot = shared->queues_taken < shared->nqueues ? shared->queues_taken++ : -1;
	SpinLockRelease(&shared->mutex);
	if (slot < 0)
		return -1;
	mq = shm_toc_lookup(toc, SNAPSHOT_KEY_QUEUE + slot, false);
	shm_mq_set_sender(mq, MyProc);
	*queue = shm_mq_attach(mq, seg, NULL);
	pq_redirect_to_shm_mq(seg, *queue);
	return slot;
}

/*
 * A capture process allocates and frees the same few megabytes for every
 * batch: its tuples, their compressed copies, its fetched rows.  By default
 * glibc maps large blocks on their own and trims the top of its heap once
 * more than a threshold is free (both thresholds grow as blocks are freed,
 * but from 128 kB), so each batch took page faults and zeroed its pages
 * again: half of a capture's page faults, some 3% of its time.  These
 * processes live for one run; they keep what they freed, up to 64 MB, for
 * the next batch.  (Fixed thresholds also stop glibc's adjusting them; the
 * process's peak is what it keeps, and it ends with its run.)
 */
void
snapshot_worker_keep_memory(void)
{
#if defined(__GLIBC__) && defined(M_MMAP_THRESHOLD) && defined(M_TRIM_THRESHOLD)
	mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
	mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
#endif
}

/*
 * A valuation worker's main function: attach to the leader's segment, take
 * a queue, connect as the capture's user, restore the leader's snapshot and
 * settings, walk and value the queue's range, and say so.
 */
void
snapshot_valuation_worker(Datum main_arg)
{
	dsm_segment *seg;
	shm_toc    *toc;
	ParallelShared *shared;
	SnapshotRange *ranges;
	int			slot;
	QueueSink	qs;
	Snapshot	snapshot;
	SnapshotConfig config;
	MarketData	md;
	int64		skipped_market = 0;
	Walk		walk;
	const char *nsp;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	snapshot_worker_keep_memory();

	shared = attach_segment(main_arg, &seg, &toc);

	/* a leader that has already gone needs nothing more */
	if (!BecomeLockGroupMember(shared->leader, shared->leader_pid))
		proc_exit(0);
	memset(&qs, 0, sizeof(qs));
	qs.sink.receive_row = queue_receive_row;
	qs.sink.receive_error = queue_receive_error;
	slot = take_queue(seg, toc, shared, &qs.queue);
	if (slot < 0)
		proc_exit(0);
	ranges = shm_toc_lookup(toc, SNAPSHOT_KEY_RANGES, false);

	BackgroundWorkerInitializeConnectionByOid(shared->dboid, shared->userid,
											  BGWORKER_BYPASS_ALLOWCONN);
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();

	/* the leader's snapshot first: settings may look at the catalogs */
	snapshot = RestoreSnapshot(shm_toc_lookup(toc, SNAPSHOT_KEY_SNAPSHOT, false));
	RestoreTransactionSnapshot(snapshot, shared->leader);
	PushActiveSnapshot(snapshot);
	for (int i = 0; i < (int) SNAPSHOT_COPIED_SETTINGS; i++)
		SetConfigOption(snapshot_copied_settings[i], shared->settings[i], PGC_SUSET,
						PGC_S_SESSION);
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_SESSION);
	pgstat_report_activity(STATE_RUNNING, "snapshot valuation worker");

	initStringInfo(&qs.message);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "snapshot: SPI_connect failed");
	nsp = quote_identifier(get_namespace_name(shared->nspid));
	snapshot_load_config(&config, shared->nspid, nsp, true);

	memset(&md, 0, sizeof(md));
	md.snapshot_date = shared->snapshot_date;
	md.rules = config.rules;
	memset(&walk, 0, sizeof(walk));
	walk.config = &config;
	walk.md = &md;
	walk.sink = &qs.sink;
	walk.batch_size = snapshot_batch_size;
	walk.scope.range = ranges[slot];
	snapshot_read_market_data(&config, &walk.scope, &md, &skipped_market);
	snapshot_walk(&walk);

	start_message(&qs, SNAPSHOT_MSG_DONE);
	pq_sendint64(&qs.message, skipped_market);
	pq_sendint64(&qs.message, walk.skipped);
	send_message(&qs, true);

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	dsm_detach(seg);
	proc_exit(0);
}

/*
 * A batch worker of a run (snapshot_run.c): attach to the run worker's
 * segment, take a queue for its errors, connect as the run's user with the
 * run's settings, and take and commit the run's batches
 * (snapshot_batches.c) until none remains, or an earlier batch failed: its
 * process said why.
 */
void
snapshot_batch_worker(Datum main_arg)
{
	dsm_segment *seg;
	shm_toc    *toc;
	ParallelShared *shared;
	BatchPlan  *plan;
	shm_mq_handle *queue;
	BatchRunner br;
	bool		failed;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	snapshot_worker_keep_memory();

	shared = attach_segment(main_arg, &seg, &toc);
	if (take_queue(seg, toc, shared, &queue) < 0)
		proc_exit(0);
	plan = shm_toc_lookup(toc, SNAPSHOT_KEY_BATCHES, false);

	BackgroundWorkerInitializeConnectionByOid(shared->dboid, shared->userid,
											  BGWORKER_BYPASS_ALLOWCONN);
	memset(&br, 0, sizeof(br));
	br.cxt = AllocSetContextCreate(TopMemoryContext, "snapshot run batches",
								   ALLOCSET_DEFAULT_SIZES);
	StartTransactionCommand();
	for (int i = 0; i < (int) SNAPSHOT_COPIED_SETTINGS; i++)
		SetConfigOption(snapshot_copied_settings[i], shared->settings[i], PGC_SUSET,
						PGC_S_SESSION);
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_SESSION);
	snapshot_batch_settings(true);
	br.nspid = shared->nspid;
	br.nsp = MemoryContextStrdup(br.cxt, quote_identifier(get_namespace_name(shared->nspid)));
	CommitTransactionCommand();
	br.snapshot_date = shared->snapshot_date;
	br.run_id = shared->run_id;
	br.triggered_by = shared->triggered_by;
	br.run_worker_pid = shared->leader_pid;
	br.batch_size = snapshot_batch_size;

	PG_TRY();
	{
		while (snapshot_run_next_batch(plan, &br, &failed))
			CHECK_FOR_INTERRUPTS();
	}
	PG_CATCH();
	{
		/*
		 * End the batch's transaction before saying why: the processes
		 * waiting for the batch go on, and the run's worker, which reads
		 * the queue, waits for none of them.
		 */
		HOLD_INTERRUPTS();
		AbortCurrentTransaction();
		EmitErrorReport();
		proc_exit(1);
	}
	PG_END_TRY();

	pgstat_report_activity(STATE_IDLE, NULL);
	dsm_detach(seg);
	proc_exit(0);
}
