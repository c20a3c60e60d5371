/*-------------------------------------------------------------------------
 *
 * snapshot_run.c
 *	  Runs that own themselves: start_capture() registers a background
 *	  worker that owns the run, in a database connection of its own.
 *
 * The starter and the worker share a small shm_toc segment (RunShared).
 * The worker, in its first transaction, takes the date's lock, then joins
 * the date's active run, resumes its interrupted one, or inserts a new run
 * row (queued), takes the run's lock and commits; it tells the starter the
 * run id and sets its latch.  Then, a transaction per batch of
 * snapshot.commit_every portfolios, it walks the portfolios after the last
 * committed one (the first batch counts them, sets the run running and
 * loads the market data, kept for the whole run), writes them and commits
 * the batch with the run's progress (portfolios, captured, failed,
 * last_portfolio_id, updated_at).  Each batch reads under a snapshot of its
 * own, so each portfolio is valued against one consistent view of its own
 * ledger.  The last transaction sets the run's final status.
 *
 * The run's lock is a session lock on an object lock tag of a class no
 * catalog has (SNAPSHOT_RUN_LOCK_CLASS), which no SQL can take or release:
 * while the worker lives it holds the lock, and the lock goes with the
 * process however it ends: released by a before_shmem_exit callback (an
 * exit, a FATAL error), by the abort of its transaction (an error, which the
 * worker then records), or with shared memory (a kill -9, a crash).  A queued or running run whose lock is free has lost its worker:
 * snapshot_reap_runs() records it as failed with reason 'interrupted'.
 *
 * A cancel reaches the worker as SIGINT (a query cancel): from
 * cancel_capture(), or from a waiting caller that was cancelled or timed
 * out, which leaves the reason in the segment; the worker records the run as
 * cancelled with that reason.  Any other error fails the run with the
 * error as its reason.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shm_toc.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/backend_status.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"
#include "utils/wait_event.h"

#include "snapshot_batches.h"
#include "snapshot_leader.h"
#include "snapshot_parallel.h"
#include "snapshot_run.h"
#include "snapshot_walk.h"
#include "snapshot_writer.h"

#define SNAPSHOT_RUN_MAGIC		0x534e5255	/* "SNRU" */
#define SNAPSHOT_RUN_KEY		UINT64CONST(0x5352000000000001)

/*
 * A run's lock: an object lock of the default lock method on a class id no
 * catalog has, so that nothing in SQL can take it, or release it (SQL's
 * advisory-lock functions, pg_advisory_unlock_all() included, act on the
 * user lock method only).
 */
#define SNAPSHOT_RUN_LOCK_CLASS	((Oid) 0x534E5255)

/* what the worker has got to, as the starter sees it */
typedef enum RunState
{
	RUN_STARTING,				/* the worker has not committed a run yet */
	RUN_STARTED,				/* run_id is committed (queued), or joined */
	RUN_ENDED					/* the run has its final status, or failed to
								 * start (sqlerrcode) */
} RunState;

/* how long cancel_capture() waits for a cancelled run before terminating it */
#define SNAPSHOT_CANCEL_GRACE_MS 5000

/* batches of one attempt, at most (each takes a RunBatch of the segment) */
#define SNAPSHOT_MAX_BATCHES 100000

#define SNAPSHOT_REASON_LEN 16
#define SNAPSHOT_MESSAGE_LEN 512

typedef struct RunShared
{
	Oid			dboid;
	Oid			userid;			/* the capture's user, whom the worker is */
	Oid			nspid;
	DateADT		snapshot_date;
	int64		resume_run_id;	/* 0: by date */
	char		triggered_by[256];
	int			batch_size;
	int			commit_every;
	char		max_workers[16];	/* the starter's snapshot.* settings */
	char		portfolios_per_worker[16];
	PGPROC	   *starter;

	slock_t		mutex;			/* protects what follows */
	RunState	state;
	int64		run_id;
	bool		joined;			/* the run was already active */
	int			worker_pid;
	char		cancel_reason[SNAPSHOT_REASON_LEN];	/* set by a waiting starter */
	int			sqlerrcode;		/* a failure before any run existed */
	char		message[SNAPSHOT_MESSAGE_LEN];
} RunShared;

int			snapshot_commit_every = 20000;
int			snapshot_max_runs = 4;

PGDLLEXPORT void snapshot_run_worker(Datum main_arg);

/*
 * Define snapshot.commit_every, which bounds what a crash can cost a run, so
 * only a superuser may change it.
 */
void
snapshot_run_init(void)
{
	DefineCustomIntVariable("snapshot.commit_every",
							"Portfolios a run commits per batch.",
							"A run started by start_capture() commits its snapshots and its progress "
							"every this many portfolios; a crash costs at most one batch.",
							&snapshot_commit_every,
							20000, 1, INT_MAX,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("snapshot.max_runs",
							"Runs (start_capture) that may be under way at once in the cluster.",
							"Each run holds a background worker slot for as long as it runs; a start beyond "
							"this fails with 53400.",
							&snapshot_max_runs,
							4, 1, 1024,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
}

/* The runs' workers alive in the cluster now. */
static int
runs_under_way(void)
{
	int			n = 0;
	int			backends = pgstat_fetch_stat_numbackends();

	for (int i = 1; i <= backends; i++)
	{
		LocalPgBackendStatus *local = pgstat_fetch_stat_local_beentry(i);
		const char *type;

		if (local == NULL || local->backendStatus.st_backendType != B_BG_WORKER)
			continue;
		type = GetBackgroundWorkerTypeByPid(local->backendStatus.st_procpid);
		if (type != NULL && strcmp(type, "snapshot capture run") == 0)
			n++;
	}
	return n;
}

static void
run_locktag(LOCKTAG *tag, int64 run_id)
{
	SET_LOCKTAG_OBJECT(*tag, MyDatabaseId, SNAPSHOT_RUN_LOCK_CLASS, (uint32) run_id,
					   (uint16) ((uint64) run_id >> 32));
}

/*
 * before_shmem_exit callback of a run's worker: release the run's lock.  A
 * session lock of the default lock method outlives the process's
 * transactions' ends (but not an abort) and is not released at exit, so the
 * worker releases it however it exits, a FATAL error included.
 */
static void
release_run_lock(int code, Datum arg)
{
	LOCKTAG		tag;

	run_locktag(&tag, DatumGetInt64(arg));
	if (LockHeldByMe(&tag, ExclusiveLock))
		LockRelease(&tag, ExclusiveLock, true);
}

/* See snapshot_run.h. */
bool
snapshot_run_is_alive(int64 run_id)
{
	LOCKTAG		tag;

	run_locktag(&tag, run_id);
	if (LockAcquire(&tag, ExclusiveLock, true, true) == LOCKACQUIRE_NOT_AVAIL)
		return true;
	LockRelease(&tag, ExclusiveLock, true);
	return false;
}

/*
 * The ids of the queued and running runs, of one date (date not NULL) or
 * all; with lock_rows, each row locked (FOR UPDATE), a row being locked by
 * someone else skipped.  In the current memory context; *n of them.
 */
static int64 *
active_runs(const char *nsp, const DateADT *date, bool lock_rows, uint64 *n)
{
	Oid			types[1] = {DATEOID};
	Datum		values[1] = {DateADTGetDatum(date ? *date : 0)};
	char		nulls[1] = {date ? ' ' : 'n'};
	int64	   *runs;

	snapshot_spi_run(psprintf("SELECT r.run_id FROM %s.snapshot_runs r"
							  " WHERE r.status OPERATOR(pg_catalog.=) ANY ('{queued,running}')"
							  " AND ($1 IS NULL OR r.snapshot_date OPERATOR(pg_catalog.=) $1)%s",
							  nsp, lock_rows ? " FOR UPDATE SKIP LOCKED" : ""),
					 1, types, values, nulls, false, SPI_OK_SELECT);
	*n = SPI_processed;
	runs = palloc(sizeof(int64) * Max(*n, 1));
	for (uint64 i = 0; i < *n; i++)
	{
		bool		isnull;

		runs[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
											  1, &isnull));
	}
	SPI_freetuptable(SPI_tuptable);
	return runs;
}

/* See snapshot_run.h. */
int64
snapshot_run_active(const char *nsp, DateADT date)
{
	uint64		n;
	int64	   *runs = active_runs(nsp, &date, false, &n);

	for (uint64 i = 0; i < n; i++)
		if (snapshot_run_is_alive(runs[i]))
			return runs[i];
	return 0;
}

/* See snapshot_run.h. */
int
snapshot_reap_runs(const char *nsp)
{
	int			reaped = 0;
	uint64		n;
	int64	   *runs;
	Oid			types[1] = {INT8OID};

	/*
	 * Each active run's row is locked first (a row a worker is committing is
	 * skipped), then its worker's lock tested: a worker that takes its row
	 * takes its lock before it commits, so a locked row with a free lock is
	 * a run without a worker.
	 */
	runs = active_runs(nsp, NULL, true, &n);
	for (uint64 i = 0; i < n; i++)
	{
		Datum		values[1] = {Int64GetDatum(runs[i])};

		if (snapshot_run_is_alive(runs[i]))
			continue;
		snapshot_spi_run(psprintf("UPDATE %s.snapshot_runs SET status = 'failed', reason = 'interrupted',"
								  " finished_at = pg_catalog.clock_timestamp()"
								  " WHERE run_id OPERATOR(pg_catalog.=) $1", nsp),
						 1, types, values, NULL, false, SPI_OK_UPDATE);
		reaped += (int) SPI_processed;
	}
	return reaped;
}

/*
 * Wait until run_id's worker has gone (its lock is free): a wait in the lock
 * manager, which pg_stat_activity shows and the deadlock detector sees.
 */
static void
wait_for_run_end(int64 run_id)
{
	LOCKTAG		tag;

	run_locktag(&tag, run_id);
	(void) LockAcquire(&tag, ShareLock, false, false);
	LockRelease(&tag, ShareLock, false);
}

/*
 * Record run_id as ended with status and reason, unless it has ended
 * already (its worker recorded it, or the reaper did).  Runs inside SPI.
 */
static void
record_run_end(const char *nsp, int64 run_id, const char *status, const char *reason)
{
	Oid			types[3] = {INT8OID, TEXTOID, TEXTOID};
	Datum		values[3];

	values[0] = Int64GetDatum(run_id);
	values[1] = CStringGetTextDatum(status);
	values[2] = CStringGetTextDatum(reason);
	snapshot_spi_run(psprintf("UPDATE %s.snapshot_runs SET status = $2, reason = $3,"
							  " finished_at = pg_catalog.clock_timestamp(),"
							  " updated_at = pg_catalog.clock_timestamp()"
							  " WHERE run_id OPERATOR(pg_catalog.=) $1"
							  " AND status OPERATOR(pg_catalog.=) ANY ('{queued,running}')", nsp),
					 3, types, values, NULL, false, SPI_OK_UPDATE);
}

/*
 * Wait until run_id's lock is free (its worker has ended) for at most
 * timeout_ms; whether it is.
 */
static bool
wait_for_run_end_within(int64 run_id, long timeout_ms)
{
	LOCKTAG		tag;
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);

	run_locktag(&tag, run_id);
	for (;;)
	{
		if (LockAcquire(&tag, ShareLock, false, true) != LOCKACQUIRE_NOT_AVAIL)
		{
			LockRelease(&tag, ShareLock, false);
			return true;
		}
		if (GetCurrentTimestamp() >= deadline)
			return false;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 100L,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * Send sig to pid if it is a run's worker (the pid was written by the run's
 * worker, which holds the run's lock; a process that took a recycled pid is
 * never signalled).
 */
static void
signal_run_worker(int pid, int sig)
{
	const char *type = GetBackgroundWorkerTypeByPid(pid);

	if (type != NULL && strcmp(type, "snapshot capture run") == 0)
		(void) kill(pid, sig);
}

/* See snapshot_run.h. */
bool
snapshot_run_interrupted(const char *nsp, DateADT date)
{
	Oid			types[1] = {DATEOID};
	Datum		values[1] = {DateADTGetDatum(date)};
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	char	   *status;
	char	   *reason;
	int64		run_id;

	snapshot_spi_run(psprintf("SELECT r.run_id, r.status, r.reason FROM %s.snapshot_runs r"
							  " WHERE r.snapshot_date OPERATOR(pg_catalog.=) $1"
							  " ORDER BY r.run_id DESC LIMIT 1", nsp),
					 1, types, values, NULL, false, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return false;
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	run_id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	status = SPI_getvalue(tup, desc, 2);
	reason = SPI_getvalue(tup, desc, 3);
	if (strcmp(status, "failed") == 0)
		return reason != NULL && strcmp(reason, "interrupted") == 0;
	return (strcmp(status, "queued") == 0 || strcmp(status, "running") == 0) &&
		!snapshot_run_is_alive(run_id);
}

/* See snapshot_run.h. */
void
snapshot_run_wait_for_date(const char *nsp, DateADT date)
{
	int64		run_id;

	while ((run_id = snapshot_run_active(nsp, date)) != 0)
		wait_for_run_end(run_id);
}

/* See snapshot_run.h. */
bool
snapshot_run_cancel(const char *nsp, int64 run_id)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(run_id)};
	bool		isnull;
	char	   *status;
	Datum		pid;

	snapshot_spi_run(psprintf("SELECT r.status, r.worker_pid FROM %s.snapshot_runs r"
							  " WHERE r.run_id OPERATOR(pg_catalog.=) $1", nsp),
					 1, types, values, NULL, false, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				errcode(ERRCODE_NO_DATA_FOUND),
				errmsg("run " INT64_FORMAT " does not exist", run_id));
	status = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	pid = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	if (strcmp(status, "queued") != 0 && strcmp(status, "running") != 0)
		return false;
	if (!snapshot_run_is_alive(run_id) || isnull)
	{
		(void) snapshot_reap_runs(nsp);
		return false;
	}

	signal_run_worker(DatumGetInt32(pid), SIGINT);

	/*
	 * The source owner's code can catch a query cancel and go on: after a
	 * grace period the worker is terminated, and the run recorded here.
	 */
	if (!wait_for_run_end_within(run_id, SNAPSHOT_CANCEL_GRACE_MS))
	{
		ereport(LOG,
				errmsg("run " INT64_FORMAT " did not end within %d ms of its cancel: terminating its worker",
					   run_id, SNAPSHOT_CANCEL_GRACE_MS));
		signal_run_worker(DatumGetInt32(pid), SIGTERM);
		wait_for_run_end(run_id);
	}
	record_run_end(nsp, run_id, "cancelled", "cancelled");
	return true;
}

/* The segment of the starter's run, and the worker's handle, for callbacks. */
typedef struct StartedRun
{
	RunShared  *shared;
	BackgroundWorkerHandle *handle;
} StartedRun;

/*
 * Ask the worker to cancel the run, giving reason, unless it has ended.
 */
static void
cancel_worker(RunShared *shared, const char *reason)
{
	int			pid = 0;

	/* once: a second signal could interrupt the worker's recording of it */
	SpinLockAcquire(&shared->mutex);
	if (shared->cancel_reason[0] == '\0')
	{
		strlcpy(shared->cancel_reason, reason, SNAPSHOT_REASON_LEN);
		if (shared->state != RUN_ENDED && !shared->joined)
			pid = shared->worker_pid;
	}
	SpinLockRelease(&shared->mutex);
	if (pid != 0)
		(void) kill(pid, SIGINT);
}

/*
 * on_dsm_detach callback of a waiting starter: a caller that goes away
 * (an error, its backend's exit) before its run has ended cancels it.
 */
static void
cancel_on_detach(dsm_segment *seg, Datum arg)
{
	cancel_worker((RunShared *) DatumGetPointer(arg), "cancelled");
}

/*
 * The starter waits on its latch, where the deadlock detector cannot see
 * it: fail (and cancel the worker) if the worker waits for a lock this
 * transaction holds, such as the date's lock after a capture of the date, or
 * a run row it recorded as interrupted.
 */
static void
check_not_blocking(RunShared *shared)
{
	int			pids[32];
	int			npids = 0;
	int			pid;

	SpinLockAcquire(&shared->mutex);
	pid = shared->state == RUN_STARTING ? shared->worker_pid : 0;
	SpinLockRelease(&shared->mutex);
	if (pid == 0)
		return;

	/* who blocks the worker, and who blocks them, breadth first */
	pids[npids++] = pid;
	for (int next = 0; next < npids; next++)
	{
		ArrayType  *blockers;
		Datum	   *elems;
		bool	   *nulls;
		int			n;

		blockers = DatumGetArrayTypeP(DirectFunctionCall1(pg_blocking_pids,
														  Int32GetDatum(pids[next])));
		deconstruct_array(blockers, INT4OID, sizeof(int32), true, TYPALIGN_INT,
						  &elems, &nulls, &n);
		for (int i = 0; i < n; i++)
		{
			int			blocker = nulls[i] ? 0 : DatumGetInt32(elems[i]);
			bool		seen = blocker == 0;

			if (blocker == MyProcPid)
			{
				cancel_worker(shared, "cancelled");
				ereport(ERROR,
						errcode(ERRCODE_T_R_DEADLOCK_DETECTED),
						errmsg("the capture's worker waits for a lock this transaction holds"),
						errdetail("This transaction captured the same date, recorded one of its runs, or holds a lock another session waits for ahead of the worker."),
						errhint("Commit, then start the capture in a transaction of its own."));
			}
			for (int j = 0; j < npids && !seen; j++)
				seen = pids[j] == blocker;
			if (!seen && npids < (int) lengthof(pids))
				pids[npids++] = blocker;
		}
	}
}

/* See snapshot_run.h. */
int64
snapshot_run_start(Oid nspid, DateADT date, const char *triggered_by, int64 resume_run_id,
				   bool wait)
{
	shm_toc_estimator estimator;
	Size		segsize;
	dsm_segment *seg;
	shm_toc    *toc;
	RunShared  *shared;
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	MemoryContext old;
	bool		registered;
	RunState	target = wait ? RUN_ENDED : RUN_STARTED;
	int64		run_id;
	bool		joined;

	/* a bound on the slots runs take, whoever starts them */
	if (runs_under_way() >= snapshot_max_runs)
		ereport(ERROR,
				errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				errmsg("%d capture runs are under way, as many as snapshot.max_runs allows",
					   snapshot_max_runs),
				errhint("Wait for a run to end (snapshot.capture_progress), or have a superuser raise snapshot.max_runs."));

	shm_toc_initialize_estimator(&estimator);
	shm_toc_estimate_chunk(&estimator, sizeof(RunShared));
	shm_toc_estimate_keys(&estimator, 1);
	segsize = shm_toc_estimate(&estimator);
	seg = dsm_create(segsize, 0);
	toc = shm_toc_create(SNAPSHOT_RUN_MAGIC, dsm_segment_address(seg), segsize);
	shared = shm_toc_allocate(toc, sizeof(RunShared));
	memset(shared, 0, sizeof(RunShared));
	shared->dboid = MyDatabaseId;
	shared->userid = GetUserId();
	shared->nspid = nspid;
	shared->snapshot_date = date;
	shared->resume_run_id = resume_run_id;
	strlcpy(shared->triggered_by, triggered_by, sizeof(shared->triggered_by));
	shared->batch_size = snapshot_batch_size;
	shared->commit_every = snapshot_commit_every;
	strlcpy(shared->max_workers, GetConfigOption("snapshot.max_workers", false, false),
			sizeof(shared->max_workers));
	strlcpy(shared->portfolios_per_worker,
			GetConfigOption("snapshot.portfolios_per_worker", false, false),
			sizeof(shared->portfolios_per_worker));
	shared->starter = MyProc;
	SpinLockInit(&shared->mutex);
	shared->state = RUN_STARTING;
	shm_toc_insert(toc, SNAPSHOT_RUN_KEY, shared);

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "snapshot");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "snapshot_run_worker");
	snprintf(worker.bgw_name, BGW_MAXLEN, "snapshot capture run of %s", snapshot_date_iso(date));
	snprintf(worker.bgw_type, BGW_MAXLEN, "snapshot capture run");
	worker.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(seg));
	worker.bgw_notify_pid = MyProcPid;
	old = MemoryContextSwitchTo(TopTransactionContext);
	registered = RegisterDynamicBackgroundWorker(&worker, &handle);
	MemoryContextSwitchTo(old);
	if (!registered)
		ereport(ERROR,
				errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				errmsg("no background worker slot is free to run the capture of %s",
					   snapshot_date_iso(date)),
				errdetail("Background worker slots are shared with pg_cron, parallel query and valuation workers."),
				errhint("Raise max_worker_processes (now %d), or start the capture again when a slot is free.",
						max_worker_processes));
	if (wait)
		on_dsm_detach(seg, cancel_on_detach, PointerGetDatum(shared));

	pgstat_report_activity(STATE_RUNNING, wait ? "capture_all_snapshots: waiting for its run"
							: "start_capture: waiting for the run to start");
	for (;;)
	{
		RunState	state;
		pid_t		pid;

		SpinLockAcquire(&shared->mutex);
		state = shared->state;
		SpinLockRelease(&shared->mutex);
		if (state >= target || (state == RUN_STARTED && shared->joined))
			break;
		if (GetBackgroundWorkerPid(handle, &pid) == BGWH_STOPPED)
		{
			SpinLockAcquire(&shared->mutex);
			state = shared->state;
			SpinLockRelease(&shared->mutex);
			if (state >= target || (state == RUN_STARTED && shared->joined))
				break;
			if (state == RUN_STARTING)
				ereport(ERROR,
						errcode(ERRCODE_INTERNAL_ERROR),
						errmsg("the capture's worker exited before starting the run"),
						errhint("The server log may say why."));
			break;				/* it ended the run, recorded by its lock */
		}

		/* a waiting caller that is cancelled, or times out, cancels its run */
		if (wait && QueryCancelPending)
			cancel_worker(shared, get_timeout_indicator(STATEMENT_TIMEOUT, false)
						  ? "timeout" : "cancelled");
		CHECK_FOR_INTERRUPTS();
		if (WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 1000L,
					  PG_WAIT_EXTENSION) & WL_TIMEOUT)
			check_not_blocking(shared);
		ResetLatch(MyLatch);
	}

	SpinLockAcquire(&shared->mutex);
	run_id = shared->run_id;
	joined = shared->joined;
	SpinLockRelease(&shared->mutex);
	if (shared->sqlerrcode != 0 && (run_id == 0 || wait))
		ereport(ERROR,
				errcode(shared->sqlerrcode),
				errmsg_internal("%s", shared->message),
				run_id != 0 ? errdetail("Run " INT64_FORMAT " is recorded as failed.", run_id) : 0);

	/* waiting for a run that another worker owns: wait for its lock */
	if (wait && joined)
		wait_for_run_end(run_id);
	if (wait)
		cancel_on_dsm_detach(seg, cancel_on_detach, PointerGetDatum(shared));
	dsm_detach(seg);
	return run_id;
}

/* Tell the starter how far the run has got. */
static void
report_state(RunShared *shared, RunState state)
{
	SpinLockAcquire(&shared->mutex);
	shared->state = state;
	SpinLockRelease(&shared->mutex);
	SetLatch(&shared->starter->procLatch);
}

/* The portfolio id after id; false when id is the largest. */
static bool
uuid_successor(const pg_uuid_t *id, pg_uuid_t *next)
{
	*next = *id;
	for (int i = UUID_LEN - 1; i >= 0; i--)
		if (++next->data[i] != 0)
			return true;
	return false;
}

/* One run as its worker holds it. */
typedef struct RunWork
{
	RunShared  *shared;
	Oid			nspid;
	const char *nsp;
	DateADT		date;
	int64		run_id;
	bool		has_last;		/* last: the last committed portfolio */
	pg_uuid_t	last;
	bool		counted;		/* total recorded, for this attempt */
	bool		market_counted; /* the market data's skipped rows recorded */
	MemoryContext run_cxt;		/* the plan and the market data, for the run */
	BatchRunner br;				/* the run's worker's own batches */
} RunWork;

/*
 * The worker's first transaction: join, resume or insert the run under the
 * date's lock, take the run's lock, and commit it queued.
 */
static void
begin_run(RunWork *rw)
{
	RunShared  *shared = rw->shared;
	Oid			types[3] = {DATEOID, INT8OID, TEXTOID};
	Datum		values[3];
	bool		isnull;
	int64		found = 0;
	char	   *status = NULL;
	char	   *reason = NULL;
	bool		resume = false;
	LOCKTAG		tag;

	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "snapshot: SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	/* for the whole run, beyond this transaction */
	rw->nsp = MemoryContextStrdup(rw->run_cxt, quote_identifier(get_namespace_name(rw->nspid)));

	/* the date; resume_capture() found it with the run it resumes */
	rw->date = shared->snapshot_date;

	/* one owner per date at a time: the run's lock is taken under this one */
	snapshot_lock_date(rw->nsp, rw->date);
	values[0] = DateADTGetDatum(rw->date);
	values[1] = Int64GetDatum(shared->resume_run_id);
	snapshot_spi_run(psprintf("SELECT r.run_id, r.status, r.reason, r.last_portfolio_id,"
							  " r.total IS NOT NULL FROM %s.snapshot_runs r"
							  " WHERE %s ORDER BY r.run_id DESC LIMIT 1 FOR UPDATE NOWAIT", rw->nsp,
							  shared->resume_run_id != 0 ? "r.run_id OPERATOR(pg_catalog.=) $2"
							  : "r.snapshot_date OPERATOR(pg_catalog.=) $1 AND $2 IS NOT NULL"),
					 2, types, values, NULL, false, SPI_OK_SELECT);
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Datum		last;

		found = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		status = SPI_getvalue(tup, desc, 2);
		reason = SPI_getvalue(tup, desc, 3);
		last = SPI_getbinval(tup, desc, 4, &isnull);
		rw->has_last = !isnull;
		if (!isnull)
			rw->last = *DatumGetUUIDP(last);
		rw->counted = DatumGetBool(SPI_getbinval(tup, desc, 5, &isnull));
		/* the attempt that set total added the market data's skips with it */
		rw->market_counted = rw->counted;
	}

	if (found != 0 && (strcmp(status, "queued") == 0 || strcmp(status, "running") == 0) &&
		snapshot_run_is_alive(found))
	{
		/* the date's run is active: its id, and nothing started */
		rw->run_id = found;
		SpinLockAcquire(&shared->mutex);
		shared->run_id = found;
		shared->joined = true;
		SpinLockRelease(&shared->mutex);
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		return;
	}
	if (shared->resume_run_id != 0)
	{
		if (found == 0)
			ereport(ERROR,
					errcode(ERRCODE_NO_DATA_FOUND),
					errmsg("run " INT64_FORMAT " does not exist", shared->resume_run_id));

		/* only the date's latest run resumes, so that a date has one run */
		values[0] = DateADTGetDatum(rw->date);
		snapshot_spi_run(psprintf("SELECT pg_catalog.max(r.run_id) FROM %s.snapshot_runs r"
								  " WHERE r.snapshot_date OPERATOR(pg_catalog.=) $1 AND $2 IS NOT NULL",
								  rw->nsp),
						 2, types, values, NULL, false, SPI_OK_SELECT);
		if (DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull))
			!= found)
			ereport(ERROR,
					errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					errmsg("run " INT64_FORMAT " is not the latest run of %s", found,
						   snapshot_date_iso(rw->date)),
					errhint("Start the date again with start_capture(), or resume its latest run."));
		if (strcmp(status, "failed") != 0 && strcmp(status, "cancelled") != 0 &&
			strcmp(status, "queued") != 0 && strcmp(status, "running") != 0)
			ereport(ERROR,
					errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					errmsg("run " INT64_FORMAT " has finished (%s); only a failed or cancelled run resumes",
						   found, status));
		resume = true;
	}
	else if (found != 0 &&
			 (strcmp(status, "queued") == 0 || strcmp(status, "running") == 0 ||
			  (strcmp(status, "failed") == 0 && reason != NULL &&
			   strcmp(reason, "interrupted") == 0)))
		resume = true;			/* its worker is gone: continue it */

	if (resume)
	{
		if (!rw->has_last)
			rw->counted = false;
	}
	else
	{
		values[2] = CStringGetTextDatum(shared->triggered_by);
		snapshot_spi_run(psprintf("INSERT INTO %s.snapshot_runs (snapshot_date, triggered_by, status, started_at)"
								  " VALUES ($1, $3, 'queued', pg_catalog.clock_timestamp()) RETURNING run_id",
								  rw->nsp),
						 3, types, values, NULL, false, SPI_OK_INSERT_RETURNING);
		found = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
											1, &isnull));
		rw->has_last = false;
		rw->counted = false;
		rw->market_counted = false;
	}

	/*
	 * The run's lock, until this process exits, however it exits; the run is
	 * this worker's only once it holds it.
	 */
	run_locktag(&tag, found);
	if (LockAcquire(&tag, ExclusiveLock, true, true) == LOCKACQUIRE_NOT_AVAIL)
		ereport(ERROR,
				errcode(ERRCODE_OBJECT_IN_USE),
				errmsg("run " INT64_FORMAT " is being run by another worker", found));
	before_shmem_exit(release_run_lock, Int64GetDatum(found));
	rw->run_id = found;

	types[0] = INT8OID;
	values[0] = Int64GetDatum(rw->run_id);
	values[1] = Int32GetDatum(MyProcPid);
	types[1] = INT4OID;
	snapshot_spi_run(psprintf("UPDATE %s.snapshot_runs SET status = 'queued', reason = NULL,"
							  " finished_at = NULL, worker_pid = $2,"
							  " updated_at = pg_catalog.clock_timestamp()"
							  " WHERE run_id OPERATOR(pg_catalog.=) $1", rw->nsp),
					 2, types, values, NULL, false, SPI_OK_UPDATE);
	SpinLockAcquire(&shared->mutex);
	shared->run_id = rw->run_id;
	SpinLockRelease(&shared->mutex);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/*
 * The plan of one attempt at the run, in a transaction of its own: lock the
 * sources, count the portfolios (once per run), read the market data,
 * split the portfolios after the last committed one into batches, and
 * record the run as running.  Returns the number of valuation workers to
 * start; *plan is allocated in the run's context.
 */
static int
plan_run(RunWork *rw, BatchPlan **plan)
{
	SnapshotConfig config;
	SnapshotRange after;
	SnapshotRange *ranges;
	int64		remaining;
	int64		every = rw->shared->commit_every;
	int64		skipped_market;
	int			nworkers;
	int			n;
	Oid			types[3] = {INT8OID, INT8OID, INT8OID};
	Datum		values[3];
	char		nulls[3] = {' ', 'n', ' '};

	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "snapshot: SPI_connect failed");
	snapshot_batch_begin_reads(&config, rw->nspid, rw->nsp);
	skipped_market = snapshot_batch_load_market_data(&rw->br, &config);
	memset(&after, 0, sizeof(after));
	if (rw->has_last)
		after.has_lo = uuid_successor(&rw->last, &after.lo);
	if (rw->has_last && !after.has_lo)
		remaining = 0;			/* the largest id was the last */
	else
		remaining = snapshot_count_portfolios(&config, &after);
	if (!rw->counted)
	{
		/* with nothing committed, the remaining portfolios are all of them */
		values[1] = Int64GetDatum(rw->has_last ? snapshot_count_portfolios(&config, NULL)
								  : remaining);
		nulls[1] = ' ';
	}
	/*
	 * Once per run, with the total that the first attempt set: an attempt
	 * that committed no batch counts the total again, not these.
	 */
	if (rw->market_counted)
		skipped_market = 0;
	snapshot_ensure_partitions(rw->nspid, rw->nsp, rw->date);

	/*
	 * With valuation workers, every process gets several batches, so that
	 * none waits long for the others at the end.
	 */
	nworkers = snapshot_parallel_workers(&config, remaining, false);
	if (nworkers > 0)
		every = Min(every, (remaining + 4 * nworkers - 1) / (4 * nworkers));
	/* the plan stays small, whatever commit_every says */
	every = Max(every, (remaining + SNAPSHOT_MAX_BATCHES - 1) / SNAPSHOT_MAX_BATCHES);
	if (remaining == 0)
	{
		n = 0;
		ranges = NULL;
	}
	else
		n = snapshot_split_every(&config, &after, every, &ranges);
	*plan = MemoryContextAlloc(rw->run_cxt, BatchPlanSize(n));
	snapshot_batch_plan_init(*plan, ranges, n);

	values[0] = Int64GetDatum(rw->run_id);
	values[2] = Int64GetDatum(skipped_market);
	snapshot_spi_run(psprintf("UPDATE %s.snapshot_runs SET status = 'running', reason = NULL,"
							  " total = coalesce($2, total), skipped_rows = skipped_rows + $3,"
							  " updated_at = pg_catalog.clock_timestamp()"
							  " WHERE run_id OPERATOR(pg_catalog.=) $1", rw->nsp),
					 3, types, values, nulls, false, SPI_OK_UPDATE);
	rw->counted = true;
	rw->market_counted = true;
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();

	/* session advisory locks the owner's code took end with the plan */
	LockReleaseAll(USER_LOCKMETHOD, true);
	return nworkers;
}

/* The run's last transaction: its final status from its counts. */
static void
finish_run(RunWork *rw)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(rw->run_id)};

	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "snapshot: SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	snapshot_spi_run(psprintf("UPDATE %s.snapshot_runs SET status = CASE"
							  " WHEN failed OPERATOR(pg_catalog.=) 0 THEN 'succeeded'"
							  " WHEN captured OPERATOR(pg_catalog.=) 0 THEN 'failed' ELSE 'partial' END,"
							  " finished_at = pg_catalog.clock_timestamp(),"
							  " updated_at = pg_catalog.clock_timestamp()"
							  " WHERE run_id OPERATOR(pg_catalog.=) $1", rw->nsp),
					 1, types, values, NULL, false, SPI_OK_UPDATE);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/*
 * After an error: record the run as cancelled (a query cancel, with the
 * reason a waiting starter left, else 'cancelled') or failed (the error),
 * in a transaction of its own.
 */
static void
record_end(RunWork *rw, ErrorData *edata)
{
	bool		cancelled = edata->sqlerrcode == ERRCODE_QUERY_CANCELED;
	char		reason[SNAPSHOT_REASON_LEN];

	SpinLockAcquire(&rw->shared->mutex);
	strlcpy(reason, rw->shared->cancel_reason, sizeof(reason));
	SpinLockRelease(&rw->shared->mutex);

	/* the cancel is done with: a second one must not stop the recording */
	QueryCancelPending = false;
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "snapshot: SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	record_run_end(rw->nsp, rw->run_id, cancelled ? "cancelled" : "failed",
				   cancelled ? (reason[0] ? reason : "cancelled")
				   : edata->message ? edata->message : "unknown error");
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/*
 * A run's worker: see the file header.
 */
void
snapshot_run_worker(Datum main_arg)
{
	dsm_segment *seg;
	shm_toc    *toc;
	RunShared  *shared;
	RunWork		rw;
	char		batch_size[16];

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	snapshot_worker_keep_memory();

	seg = dsm_attach(DatumGetUInt32(main_arg));
	if (seg == NULL)
		ereport(ERROR,
				errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				errmsg("could not map the run's dynamic shared memory segment"));
	toc = shm_toc_attach(SNAPSHOT_RUN_MAGIC, dsm_segment_address(seg));
	if (toc == NULL)
		ereport(ERROR,
				errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				errmsg("the run's shared memory segment has the wrong magic number"));
	shared = shm_toc_lookup(toc, SNAPSHOT_RUN_KEY, false);
	SpinLockAcquire(&shared->mutex);
	shared->worker_pid = MyProcPid;
	SpinLockRelease(&shared->mutex);

	BackgroundWorkerInitializeConnectionByOid(shared->dboid, shared->userid, 0);
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_SESSION);
	SetConfigOption("jit", "off", PGC_SUSET, PGC_S_SESSION);
	snapshot_batch_settings(false);
	snprintf(batch_size, sizeof(batch_size), "%d", shared->batch_size);
	SetConfigOption("snapshot.batch_size", batch_size, PGC_SUSET, PGC_S_SESSION);
	SetConfigOption("snapshot.max_workers", shared->max_workers, PGC_SUSET, PGC_S_SESSION);
	SetConfigOption("snapshot.portfolios_per_worker", shared->portfolios_per_worker,
					PGC_SUSET, PGC_S_SESSION);

	memset(&rw, 0, sizeof(rw));
	rw.shared = shared;
	rw.nspid = shared->nspid;
	rw.run_cxt = AllocSetContextCreate(TopMemoryContext, "snapshot run",
									   ALLOCSET_DEFAULT_SIZES);
	PG_TRY();
	{
		begin_run(&rw);
		report_state(shared, RUN_STARTED);
		if (!shared->joined)
		{
			BatchPlan  *plan;
			int			nworkers;

			rw.br.nspid = rw.nspid;
			rw.br.nsp = rw.nsp;
			rw.br.snapshot_date = rw.date;
			rw.br.run_id = rw.run_id;
			rw.br.triggered_by = shared->triggered_by;
			rw.br.run_worker_pid = MyProcPid;
			rw.br.batch_size = shared->batch_size;
			rw.br.cxt = rw.run_cxt;
			nworkers = plan_run(&rw, &plan);
			(void) snapshot_run_batches(plan, &rw.br, nworkers);
			finish_run(&rw);
		}
	}
	PG_CATCH();
	{
		MemoryContext errcxt = MemoryContextSwitchTo(TopMemoryContext);
		ErrorData  *edata = CopyErrorData();

		MemoryContextSwitchTo(errcxt);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		if (rw.run_id != 0 && !shared->joined)
		{
			record_end(&rw, edata);
			/* a waiting starter raises the run's error (a cancel is its own) */
			if (edata->sqlerrcode != ERRCODE_QUERY_CANCELED)
			{
				SpinLockAcquire(&shared->mutex);
				shared->sqlerrcode = edata->sqlerrcode;
				strlcpy(shared->message, edata->message ? edata->message : "unknown error",
						SNAPSHOT_MESSAGE_LEN);
				SpinLockRelease(&shared->mutex);
			}
		}
		else
		{
			SpinLockAcquire(&shared->mutex);
			shared->sqlerrcode = edata->sqlerrcode;
			strlcpy(shared->message, edata->message ? edata->message : "unknown error",
					SNAPSHOT_MESSAGE_LEN);
			SpinLockRelease(&shared->mutex);
		}
	}
	PG_END_TRY();

	report_state(shared, RUN_ENDED);
	pgstat_report_activity(STATE_IDLE, NULL);
	dsm_detach(seg);
	proc_exit(0);
}
