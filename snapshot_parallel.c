/*-------------------------------------------------------------------------
 *
 * snapshot_parallel.c
 *	  Valuation workers for capture_all_snapshots(): dynamic background
 *	  workers that walk and value ranges of portfolios under the calling
 *	  backend's snapshot and send the figures back through shared memory
 *	  queues, while the calling backend (the leader) writes them.
 *
 * The leader keeps everything that writes (the run row, the batched upserts,
 * snapshot_run_errors) in its own transaction, so a capture still commits or
 * rolls back whole.  Each worker restores the leader's snapshot, as parallel
 * query does, and runs the very walk the leader would (snapshot_walk) over
 * its range of portfolio ids, with its own subtransaction per portfolio.  It
 * sends one message per portfolio:
 *
 *	'r'  the figures of a valued portfolio
 *	'f'  a portfolio that could not be valued (SQLSTATE, message, detail)
 *	'z'  the range is done (with the rows it skipped)
 *
 * and its own errors arrive as protocol messages ('E', 'N', through
 * pq_redirect_to_shm_mq), which the leader rethrows, failing the capture.
 *
 * Workers are used only where they see exactly what the leader sees: not
 * when the calling transaction wrote before the capture (a worker's own
 * transaction cannot see those rows), not when a configured relation is
 * temporary (it belongs to the leader's session), and not under SERIALIZABLE
 * (a worker's reads would not take part in the leader's conflict checks).
 * A worker that cannot be started leaves its range to the leader.
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
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shm_mq.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/wait_event.h"

#include "snapshot.h"
#include "snapshot_capture.h"
#include "snapshot_source.h"

int			snapshot_max_workers = 2;
int			snapshot_portfolios_per_worker = 10000;

/*
 * The queue from each worker to the leader: large enough to absorb the
 * leader's pauses while it writes a batch (1 MB queues left the cores idle
 * 15% of the time), within 32 MB of shared memory for all of them.
 */
#define SNAPSHOT_QUEUE_MAX ((Size) 8 * 1024 * 1024)
#define SNAPSHOT_QUEUES_TOTAL ((Size) 32 * 1024 * 1024)
#define SNAPSHOT_QUEUE_MIN ((Size) 256 * 1024)

/* settings a worker takes from the leader (besides search_path) */
static const char *const copied_settings[] = {
	"TimeZone", "DateStyle", "IntervalStyle", "jit", "snapshot.batch_size",
};

#define SNAPSHOT_SETTING_LEN 256

/* What the leader shares with its workers, at the start of the segment. */
typedef struct ParallelShared
{
	Oid			dboid;
	Oid			userid;			/* the capture's effective user */
	Oid			nspid;			/* the extension's schema */
	PGPROC	   *leader;
	int			leader_pid;
	DateADT		snapshot_date;
	int			nworkers;
	Size		snapshot_offset;	/* the leader's serialized snapshot */
	Size		queues_offset;	/* nworkers queues of queue_size bytes */
	Size		queue_size;
	char		settings[lengthof(copied_settings)][SNAPSHOT_SETTING_LEN];
	SnapshotRange ranges[FLEXIBLE_ARRAY_MEMBER];	/* one per worker */
} ParallelShared;

/* The leader's handles on its workers, for stopping them on error. */
typedef struct WorkerSet
{
	int			n;
	BackgroundWorkerHandle *handles[FLEXIBLE_ARRAY_MEMBER];
} WorkerSet;

PGDLLEXPORT void snapshot_valuation_worker(Datum main_arg);

/* a worker's reusable message buffer */
static StringInfoData message;

/*
 * How many valuation workers a capture of all should use: 0 unless they
 * would read exactly what the leader reads (see the file header), else one
 * per snapshot.portfolios_per_worker portfolios, at most
 * snapshot.max_workers.
 */
int
snapshot_parallel_workers(Capture *cap, bool wrote_before)
{
	int64		n;
	HeapTuple	tup;
	bool		canlogin;

	if (snapshot_max_workers <= 0 || wrote_before || !IsUnderPostmaster ||
		IsolationIsSerializable())
		return 0;
	n = Min(cap->total / snapshot_portfolios_per_worker, (int64) snapshot_max_workers);
	if (n < 1)
		return 0;

	for (int i = 0; i < SNAPSHOT_RELATIONS; i++)
		if (OidIsValid(cap->config.relids[i]) &&
			get_rel_persistence(cap->config.relids[i]) == RELPERSISTENCE_TEMP)
			return 0;

	/* a worker connects as the capture's user, which must be able to */
	tup = SearchSysCache1(AUTHOID, ObjectIdGetDatum(GetUserId()));
	if (!HeapTupleIsValid(tup))
		return 0;
	canlogin = ((Form_pg_authid) GETSTRUCT(tup))->rolcanlogin;
	ReleaseSysCache(tup);
	if (!canlogin)
		return 0;

	for (int i = 0; i < (int) lengthof(copied_settings); i++)
		if (strlen(GetConfigOption(copied_settings[i], false, false)) >= SNAPSHOT_SETTING_LEN)
			return 0;
	return (int) n;
}

/*
 * Split the portfolio ids into at most nworkers ranges of about equal counts,
 * at the ids found by offset under the active snapshot.  Returns the number
 * of ranges.
 */
static int
split_ranges(Capture *cap, int nworkers, SnapshotRange *ranges)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1];
	char	   *sql;
	int			nranges = 1;

	memset(ranges, 0, sizeof(SnapshotRange) * nworkers);
	sql = psprintf("SELECT p.id::pg_catalog.uuid FROM %s p WHERE p.id IS NOT NULL"
				   " ORDER BY p.id::pg_catalog.uuid OFFSET $1 LIMIT 1",
				   cap->config.portfolios);
	for (int i = 1; i < nworkers; i++)
	{
		bool		isnull;
		pg_uuid_t  *bound;

		values[0] = Int64GetDatum(cap->total * i / nworkers);
		snapshot_source_query(cap->config.owner, sql, 1, types, values, 1);
		if (SPI_processed == 0)
			break;
		bound = DatumGetUUIDP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
											1, &isnull));
		if (isnull)
			break;
		if (ranges[nranges - 1].has_lo &&
			memcmp(ranges[nranges - 1].lo.data, bound->data, UUID_LEN) == 0)
			continue;
		ranges[nranges - 1].has_hi = true;
		ranges[nranges - 1].hi = *bound;
		ranges[nranges].has_lo = true;
		ranges[nranges].lo = *bound;
		nranges++;
	}
	return nranges;
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

/* Append a length-prefixed byte string to a message. */
static void
put_bytes(StringInfo buf, const void *data, int len)
{
	pq_sendint32(buf, len);
	pq_sendbytes(buf, (const char *) data, len);
}

/* A length-prefixed varlena in a message, where it lies (perhaps unaligned). */
static const char *
get_varlena(StringInfo msg)
{
	int			len = pq_getmsgint(msg, 4);

	return pq_getmsgbytes(msg, len);
}

/* Read a length-prefixed byte string as a C string in the current context. */
static char *
get_cstring(StringInfo msg)
{
	int			len = pq_getmsgint(msg, 4);

	return pnstrdup(pq_getmsgbytes(msg, len), len);
}

/*
 * Send the message built in buf to the leader; a leader that has gone away
 * ends the worker.
 */
static void
send_message(Capture *cap, StringInfo buf, bool flush)
{
	if (shm_mq_send(cap->out, buf->len, buf->data, false, flush) != SHM_MQ_SUCCESS)
		ereport(ERROR,
				errcode(ERRCODE_ADMIN_SHUTDOWN),
				errmsg("the capture this valuation worker served has ended"));
}

/* The worker's message buffer, emptied and started with a message type. */
static StringInfo
start_message(char type)
{
	if (message.data == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		initStringInfo(&message);
		MemoryContextSwitchTo(old);
	}
	resetStringInfo(&message);
	pq_sendbyte(&message, type);
	return &message;
}

/*
 * In a worker: send one valued portfolio to the leader.
 */
static void
send_figures(Capture *cap, const pg_uuid_t *id, const char *base_currency,
					  const SnapshotFigures *f)
{
	Numeric		figures[10] = {f->market_value, f->cash_balance, f->net_worth, f->total_cost,
		f->unrealized_pnl, f->realized_pnl, f->income, f->fees, f->net_contribution, f->day_flow};
	int32		counts[4] = {f->position_count, f->missing_prices, f->stale_prices, f->missing_fx};
	StringInfo	buf = start_message('r');
	text	   *currency = cstring_to_text(base_currency);

	pq_sendbytes(buf, (const char *) id->data, UUID_LEN);
	put_bytes(buf, currency, VARSIZE(currency));
	for (int i = 0; i < 10; i++)
		put_bytes(buf, figures[i], VARSIZE_ANY(figures[i]));
	for (int i = 0; i < 4; i++)
		pq_sendint32(buf, counts[i]);
	put_bytes(buf, f->positions, VARSIZE_ANY(f->positions));
	send_message(cap, buf, false);
}

/*
 * In a worker: send one portfolio that could not be valued to the leader.
 */
static void
send_error(Capture *cap, const pg_uuid_t *id, int sqlerrcode,
					const char *message_text, const char *detail)
{
	StringInfo	buf = start_message('f');

	if (message_text == NULL)
		message_text = "unknown error";
	pq_sendbytes(buf, (const char *) id->data, UUID_LEN);
	pq_sendint32(buf, sqlerrcode);
	put_bytes(buf, message_text, strlen(message_text));
	pq_sendbyte(buf, detail != NULL);
	if (detail != NULL)
		put_bytes(buf, detail, strlen(detail));
	send_message(cap, buf, false);
}

/* A worker's sink: everything its walk values goes to the leader. */
static const CaptureSink queue_sink = {send_figures, send_error};

/*
 * Act on one message from a worker; true when it says the worker is done.
 * Allocations go to the current (per-message) context.
 */
static bool
receive_message(Capture *cap, char *data, Size nbytes)
{
	StringInfoData msg;
	pg_uuid_t	id;

	msg.data = data;
	msg.len = (int) nbytes;
	msg.maxlen = (int) nbytes;
	msg.cursor = 1;

	switch (data[0])
	{
		case 'r':
			{
				/* the batch copies the fields straight out of the message */
				const void *fields[SNAPSHOT_BATCH_ARRAYS];
				int32		counts[4];

				fields[0] = pq_getmsgbytes(&msg, UUID_LEN);
				for (int i = 1; i < 12; i++)
					fields[i] = get_varlena(&msg);
				for (int i = 0; i < 4; i++)
				{
					counts[i] = (int32) pq_getmsgint(&msg, 4);
					fields[12 + i] = &counts[i];
				}
				fields[16] = get_varlena(&msg);
				pq_getmsgend(&msg);
				cap->walked++;
				snapshot_batch_add(cap, fields);
				return false;
			}
		case 'f':
			{
				int			sqlerrcode;
				char	   *text;
				char	   *detail = NULL;

				memcpy(id.data, pq_getmsgbytes(&msg, UUID_LEN), UUID_LEN);
				sqlerrcode = (int) pq_getmsgint(&msg, 4);
				text = get_cstring(&msg);
				if (pq_getmsgbyte(&msg))
					detail = get_cstring(&msg);
				pq_getmsgend(&msg);
				cap->walked++;
				snapshot_record_error(cap, &id, sqlerrcode, text, detail);
				return false;
			}
		case 'z':
			{
				/* every worker loaded the same market data */
				int64		skipped_market = (int64) pq_getmsgint64(&msg);

				cap->skipped_market = Max(cap->skipped_market, skipped_market);
				cap->skipped_walk += (int64) pq_getmsgint64(&msg);
				pq_getmsgend(&msg);
				return true;
			}
		case 'E':
		case 'N':
			{
				ErrorData	edata;

				/* a worker's error fails the capture, but never the session */
				pq_parse_errornotice(&msg, &edata);
				if (edata.elevel > ERROR)
					edata.elevel = ERROR;
				edata.context = edata.context
					? psprintf("%s\nsnapshot valuation worker", edata.context)
					: pstrdup("snapshot valuation worker");
				ThrowErrorData(&edata);
				return false;
			}
		default:
			/* other protocol messages (parameter status, say) mean nothing here */
			return false;
	}
}

/*
 * Start a worker for ranges[i]; false when no background worker slot is
 * free.  The handle lives in TopTransactionContext, for stop_workers().
 */
static bool
start_worker(dsm_segment *seg, int i, BackgroundWorkerHandle **handle)
{
	BackgroundWorker worker;
	MemoryContext old;
	bool		started;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "snapshot");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "snapshot_valuation_worker");
	snprintf(worker.bgw_name, BGW_MAXLEN, "snapshot valuation worker %d for PID %d",
			 i + 1, MyProcPid);
	snprintf(worker.bgw_type, BGW_MAXLEN, "snapshot valuation worker");
	worker.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(seg));
	worker.bgw_notify_pid = MyProcPid;
	memcpy(worker.bgw_extra, &i, sizeof(int));

	old = MemoryContextSwitchTo(TopTransactionContext);
	started = RegisterDynamicBackgroundWorker(&worker, handle);
	MemoryContextSwitchTo(old);
	return started;
}

/*
 * Walk one range in the leader itself (its worker could not start).
 */
static void
walk_range_here(Capture *cap, const SnapshotRange *range)
{
	SnapshotRange all = cap->range;

	if (cap->md.assets == NULL)
		snapshot_load_market_data(cap);
	cap->range = *range;
	snapshot_walk(cap);
	cap->range = all;
}

/*
 * The leader's side of a capture of all with nworkers valuation workers:
 * split the portfolios into ranges, start a worker per range, and write
 * what they send, in batches, as the walk would.  Runs under the capture's
 * active snapshot, which the workers restore.
 */
void
snapshot_walk_parallel(Capture *cap, int nworkers)
{
	SnapshotRange *ranges = palloc(sizeof(SnapshotRange) * nworkers);
	Snapshot	snapshot = GetActiveSnapshot();
	Size		header;
	Size		snapshot_size = EstimateSnapshotSpace(snapshot);
	Size		queue_size;
	dsm_segment *seg;
	ParallelShared *shared;
	WorkerSet  *ws;
	shm_mq_handle **queues;
	int			active = 0;
	MemoryContext message_cxt;

	nworkers = split_ranges(cap, nworkers, ranges);
	queue_size = MAXALIGN(Max(Min(SNAPSHOT_QUEUE_MAX, SNAPSHOT_QUEUES_TOTAL / nworkers),
							  SNAPSHOT_QUEUE_MIN));

	header = MAXALIGN(add_size(offsetof(ParallelShared, ranges),
							   mul_size(sizeof(SnapshotRange), nworkers)));
	seg = dsm_create(add_size(add_size(header, MAXALIGN(snapshot_size)),
							  mul_size(queue_size, nworkers)), 0);
	shared = dsm_segment_address(seg);
	shared->dboid = MyDatabaseId;
	shared->userid = GetUserId();
	shared->nspid = cap->nspid;
	shared->leader = MyProc;
	shared->leader_pid = MyProcPid;
	shared->snapshot_date = cap->md.snapshot_date;
	shared->nworkers = nworkers;
	shared->snapshot_offset = header;
	shared->queues_offset = header + MAXALIGN(snapshot_size);
	shared->queue_size = queue_size;
	for (int i = 0; i < (int) lengthof(copied_settings); i++)
		strlcpy(shared->settings[i], GetConfigOption(copied_settings[i], false, false),
				SNAPSHOT_SETTING_LEN);
	memcpy(shared->ranges, ranges, sizeof(SnapshotRange) * nworkers);
	SerializeSnapshot(snapshot, (char *) shared + shared->snapshot_offset);

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

	queues = palloc0(sizeof(shm_mq_handle *) * nworkers);
	for (int i = 0; i < nworkers; i++)
	{
		shm_mq	   *mq = shm_mq_create((char *) shared + shared->queues_offset +
									   i * queue_size, queue_size);

		shm_mq_set_receiver(mq, MyProc);
		if (start_worker(seg, i, &ws->handles[i]))
		{
			queues[i] = shm_mq_attach(mq, seg, ws->handles[i]);
			active++;
		}
	}
	/* the ranges of workers that found no slot (their handle stays NULL) */
	for (int i = 0; i < nworkers; i++)
		if (ws->handles[i] == NULL)
			walk_range_here(cap, &ranges[i]);

	message_cxt = AllocSetContextCreate(CurrentMemoryContext, "snapshot worker message",
										ALLOCSET_DEFAULT_SIZES);
	while (active > 0)
	{
		bool		received = false;

		for (int i = 0; i < nworkers; i++)
		{
			Size		nbytes;
			void	   *data;
			shm_mq_result res;
			shm_mq	   *mq;
			MemoryContext old;
			bool		done;

			if (queues[i] == NULL)
				continue;
			res = shm_mq_receive(queues[i], &nbytes, &data, true);
			if (res == SHM_MQ_WOULD_BLOCK)
				continue;
			received = true;
			if (res == SHM_MQ_DETACHED)
			{
				mq = shm_mq_get_queue(queues[i]);
				shm_mq_detach(queues[i]);
				queues[i] = NULL;
				active--;
				/* a worker that never attached sent nothing: do its range */
				if (shm_mq_get_sender(mq) == NULL)
				{
					walk_range_here(cap, &ranges[i]);
					continue;
				}
				ereport(ERROR,
						errcode(ERRCODE_INTERNAL_ERROR),
						errmsg("a snapshot valuation worker exited before valuing all of its portfolios"),
						errhint("The server log may say why."));
			}
			old = MemoryContextSwitchTo(message_cxt);
			done = receive_message(cap, data, nbytes);
			MemoryContextSwitchTo(old);
			MemoryContextReset(message_cxt);
			if (done)
			{
				shm_mq_detach(queues[i]);
				queues[i] = NULL;
				active--;
				cap->workers++;
			}
		}
		if (!received)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH, -1L,
							 PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
		CHECK_FOR_INTERRUPTS();
	}
	snapshot_batch_flush(cap);

	/* let the workers end their read-only transactions, then part */
	for (int i = 0; i < nworkers; i++)
		if (ws->handles[i] != NULL)
			(void) WaitForBackgroundWorkerShutdown(ws->handles[i]);
	ws->n = 0;
	dsm_detach(seg);
	MemoryContextDelete(message_cxt);
}

/*
 * A valuation worker's main function: attach to the leader's segment and
 * queue, connect as the capture's user, restore the leader's snapshot and
 * settings, walk and value this worker's range, and say when done.
 */
void
snapshot_valuation_worker(Datum main_arg)
{
	dsm_segment *seg;
	ParallelShared *shared;
	shm_mq	   *mq;
	shm_mq_handle *mqh;
	int			index;
	Snapshot	snapshot;
	Capture		cap;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	seg = dsm_attach(DatumGetUInt32(main_arg));
	if (seg == NULL)
		ereport(ERROR,
				errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				errmsg("could not map the capture's dynamic shared memory segment"));
	shared = dsm_segment_address(seg);

	/* a leader that has already gone needs nothing more */
	if (!BecomeLockGroupMember(shared->leader, shared->leader_pid))
		proc_exit(0);
	memcpy(&index, MyBgworkerEntry->bgw_extra, sizeof(int));
	if (index < 0 || index >= shared->nworkers)
		elog(ERROR, "snapshot: valuation worker index %d out of range", index);
	mq = (shm_mq *) ((char *) shared + shared->queues_offset + index * shared->queue_size);
	shm_mq_set_sender(mq, MyProc);
	mqh = shm_mq_attach(mq, seg, NULL);
	pq_redirect_to_shm_mq(seg, mqh);

	BackgroundWorkerInitializeConnectionByOid(shared->dboid, shared->userid,
											  BGWORKER_BYPASS_ALLOWCONN);
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();

	/* the leader's snapshot first: settings may look at the catalogs */
	snapshot = RestoreSnapshot((char *) shared + shared->snapshot_offset);
	RestoreTransactionSnapshot(snapshot, shared->leader);
	PushActiveSnapshot(snapshot);
	for (int i = 0; i < (int) lengthof(copied_settings); i++)
		SetConfigOption(copied_settings[i], shared->settings[i], PGC_SUSET, PGC_S_SESSION);
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_SESSION);
	pgstat_report_activity(STATE_RUNNING, "snapshot valuation worker");

	memset(&cap, 0, sizeof(cap));
	snapshot_capture_setup(&cap, shared->nspid, shared->snapshot_date);
	cap.range = shared->ranges[index];
	cap.sink = &queue_sink;
	cap.out = mqh;
	snapshot_load_market_data(&cap);
	snapshot_walk(&cap);
	{
		StringInfo	done = start_message('z');

		pq_sendint64(done, cap.skipped_market);
		pq_sendint64(done, cap.skipped_walk);
		send_message(&cap, done, true);
	}

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	dsm_detach(seg);
	proc_exit(0);
}
