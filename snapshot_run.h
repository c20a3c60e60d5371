/*-------------------------------------------------------------------------
 *
 * snapshot_run.h
 *	  Runs that own themselves (snapshot_run.c): a background worker per
 *	  run that commits it in batches, so that the run outlives its caller,
 *	  shows its progress, is recorded whatever ends it, and resumes after a
 *	  crash from its last committed batch.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SNAPSHOT_RUN_H
#define SNAPSHOT_RUN_H

#include "datatype/timestamp.h"
#include "utils/date.h"

/* snapshot.commit_every: portfolios per committed batch of a run */
extern PGDLLIMPORT int snapshot_commit_every;

/* snapshot.max_runs: runs under way at once in the cluster, at most */
extern PGDLLIMPORT int snapshot_max_runs;

extern void snapshot_run_init(void);

/*
 * Start a run of date in the extension's schema nspid, or resume run
 * resume_run_id (0: by date: the date's active run is joined, its last run
 * resumed when it was interrupted, else a new run begins).  Returns the run
 * id once the run's worker has committed it as queued; with wait, once the
 * run has ended, and a cancel of the caller (or its statement_timeout)
 * cancels the run.  53400 when snapshot.max_runs runs are under way, or
 * when no background worker slot is free.
 */
extern int64 snapshot_run_start(Oid nspid, DateADT date, const char *triggered_by,
								int64 resume_run_id, bool wait);

/* Whether run_id's worker is alive (it holds the run's lock). */
extern bool snapshot_run_is_alive(int64 run_id);

/*
 * The id of date's active run whose worker is alive, or 0.  Runs inside
 * SPI.
 */
extern int64 snapshot_run_active(const char *nsp, DateADT date);

/*
 * Record as failed/interrupted every queued or running run whose worker is
 * gone; returns how many.  Runs inside SPI.
 */
extern int	snapshot_reap_runs(const char *nsp);

/*
 * Whether the latest run of date was interrupted: recorded so, or queued or
 * running without its worker.  Runs inside SPI.
 */
extern bool snapshot_run_interrupted(const char *nsp, DateADT date);

/*
 * Wait until no run of date is active: a capture in a transaction takes
 * the date's lock, which a run holds only while it starts.  Runs inside SPI.
 */
extern void snapshot_run_wait_for_date(const char *nsp, DateADT date);

/*
 * Cancel run_id: signal its worker and wait until it has recorded the run
 * as cancelled.  False when the run was not active.  Runs inside SPI.
 */
extern bool snapshot_run_cancel(const char *nsp, int64 run_id);

#endif							/* SNAPSHOT_RUN_H */
