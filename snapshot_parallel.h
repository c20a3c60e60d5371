/*-------------------------------------------------------------------------
 *
 * snapshot_parallel.h
 *	  What a capture's leader (snapshot_leader.c) and its valuation workers
 *	  (snapshot_worker.c) share: the dynamic shared memory segment's table
 *	  of contents, and the messages a worker sends.
 *
 * The segment is a shm_toc with SNAPSHOT_PARALLEL_MAGIC and these keys:
 *
 *	SNAPSHOT_KEY_SHARED		ParallelShared: who, what date, the settings, and
 *							the counter by which workers take their queue
 *	SNAPSHOT_KEY_SNAPSHOT	the leader's serialized snapshot
 *	SNAPSHOT_KEY_RANGES		SnapshotRange[nranges]
 *	SNAPSHOT_KEY_QUEUE + i	the queue of the i'th worker to attach
 *
 * A run's worker shares with its valuation workers (snapshot_batch_worker)
 * a segment of the same magic with SNAPSHOT_KEY_SHARED (run_id set), the
 * BatchPlan under SNAPSHOT_KEY_BATCHES, and a queue per worker, which
 * carries only the worker's errors: the batches are committed by whoever
 * takes them (snapshot_batches.c).
 *
 * A worker takes the next queue under the mutex, and walks the range of
 * portfolio ids of the same number, so no worker index travels in the
 * worker's registration; the ranges of queues no worker took, the leader
 * walks itself once every worker has exited.  On each queue a worker sends:
 *
 *	'r'  a valued portfolio: its row (snapshot_row_encode())
 *	'f'  a portfolio that could not be valued: id, SQLSTATE, message, detail
 *	'z'  done: the source rows skipped
 *
 * and its own errors arrive as protocol messages ('E', 'N', through
 * pq_redirect_to_shm_mq), which the leader rethrows, failing the capture.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SNAPSHOT_PARALLEL_H
#define SNAPSHOT_PARALLEL_H

#include "storage/proc.h"
#include "storage/spin.h"

#include "snapshot_reads.h"

#define SNAPSHOT_PARALLEL_MAGIC		0x534e4150	/* "SNAP" */

#define SNAPSHOT_KEY_SHARED			UINT64CONST(0x5350000000000001)
#define SNAPSHOT_KEY_SNAPSHOT		UINT64CONST(0x5350000000000002)
#define SNAPSHOT_KEY_RANGES			UINT64CONST(0x5350000000000003)
#define SNAPSHOT_KEY_BATCHES		UINT64CONST(0x5350000000000004)
#define SNAPSHOT_KEY_QUEUE			UINT64CONST(0x5350000000001000)

#define SNAPSHOT_MSG_ROW		'r'
#define SNAPSHOT_MSG_FAILED		'f'
#define SNAPSHOT_MSG_DONE		'z'

/* Settings a worker takes from the leader (besides search_path). */
static const char *const snapshot_copied_settings[] = {
	"TimeZone", "DateStyle", "IntervalStyle", "jit", "snapshot.batch_size",
};

#define SNAPSHOT_COPIED_SETTINGS lengthof(snapshot_copied_settings)
#define SNAPSHOT_SETTING_LEN 256

typedef struct ParallelShared
{
	Oid			dboid;
	Oid			userid;			/* the capture's effective user */
	Oid			nspid;			/* the extension's schema */
	PGPROC	   *leader;
	int			leader_pid;
	DateADT		snapshot_date;
	int			nqueues;		/* = the number of ranges, or of batch workers */
	int64		run_id;			/* a run's batches: the run; else 0 */
	char		triggered_by[256];	/* a run's batches: who started it */
	char		settings[SNAPSHOT_COPIED_SETTINGS][SNAPSHOT_SETTING_LEN];

	slock_t		mutex;			/* protects queues_taken */
	int			queues_taken;	/* queues (and ranges) workers took */
} ParallelShared;

/* Keep freed memory in the process for the next batch (snapshot_worker.c). */
extern void snapshot_worker_keep_memory(void);

/* The valuation workers' main functions (snapshot_worker.c), started by name. */
extern PGDLLEXPORT void snapshot_valuation_worker(Datum main_arg);
extern PGDLLEXPORT void snapshot_batch_worker(Datum main_arg);

#endif							/* SNAPSHOT_PARALLEL_H */
