/*-------------------------------------------------------------------------
 *
 * snapshot_leader.h
 *	  The leader's side of a capture with valuation workers
 *	  (snapshot_leader.c), called by the entry points.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SNAPSHOT_LEADER_H
#define SNAPSHOT_LEADER_H

#include "snapshot_batches.h"
#include "snapshot_walk.h"

extern void snapshot_leader_init(void);

/*
 * How many valuation workers a capture of all of total portfolios should
 * use; 0 when they could not read exactly what the calling transaction
 * reads.  wrote_before says whether that transaction wrote before the
 * capture began.
 */
extern int	snapshot_parallel_workers(const SnapshotConfig *config, int64 total,
									  bool wrote_before);

/*
 * Walk walk->scope's range (of about total portfolios) with up to nworkers
 * valuation workers,
 * handing what they send to walk->sink and counting it in walk; what no
 * worker walks, the leader walks itself, loading md first if it is not
 * loaded.  total is the number of portfolios, nspid the extension's schema.
 * Returns the number of workers that took part.
 */
extern int	snapshot_walk_parallel(Walk *walk, MarketData *md, int64 *skipped_market,
								   int nworkers, int64 total, Oid nspid);

/*
 * Run the batches of a run's plan, outside any transaction: with nworkers
 * batch workers (snapshot_batch_worker), while the calling run worker reads
 * their queues, then alone whatever no worker took (all of them when none
 * started).  The first error of a worker is raised; on any error the
 * workers are stopped, and waited for, first.  Returns the number of
 * workers started.
 */
extern int	snapshot_run_batches(BatchPlan *plan, BatchRunner *br, int nworkers);

#endif							/* SNAPSHOT_LEADER_H */
