/*-------------------------------------------------------------------------
 *
 * snapshot_walk.h
 *	  The ordered walk of portfolios and their ledgers (snapshot_walk.c),
 *	  and the sink it hands each valued portfolio or error to.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SNAPSHOT_WALK_H
#define SNAPSHOT_WALK_H

#include "snapshot_reads.h"
#include "snapshot_row.h"

/*
 * A receiver of what a walk values, as a DestReceiver receives tuples: the
 * writer's batch (snapshot_writer.c) in the calling backend, a queue to the
 * leader (snapshot_worker.c) in a valuation worker.  Implementations embed
 * it as their first member.
 */
typedef struct CaptureSink CaptureSink;

struct CaptureSink
{
	/* one valued portfolio; the row is valid during the call only */
	void		(*receive_row) (CaptureSink *self, const SnapshotRow *row);
	/* one portfolio that could not be valued */
	void		(*receive_error) (CaptureSink *self, const pg_uuid_t *portfolio_id,
								  int sqlerrcode, const char *message, const char *detail);
};

/* One walk: what it reads, where the results go, and its counts. */
typedef struct Walk
{
	const SnapshotConfig *config;
	const MarketData *md;		/* loaded for the scope */
	SourceScope scope;
	CaptureSink *sink;
	int			batch_size;		/* portfolios per fetch of the portfolios */
	int64		limit;			/* stop after this many portfolios; 0: no limit */

	int64		walked;			/* portfolios valued or failed */
	int64		skipped;		/* portfolio and ledger rows without an id */
	pg_uuid_t	last_id;		/* the last portfolio walked, when walked > 0 */
} Walk;

/*
 * Walk the portfolios of walk->scope and their ledgers in one ordered pass,
 * value each, and hand the row or the error to the sink; with a limit, stop
 * after that many portfolios (walk->last_id says where).  A single capture
 * raises a portfolio's error instead; a capture of all isolates it in a
 * subtransaction.
 */
extern void snapshot_walk(Walk *walk);

/*
 * Whether every portfolio the portfolios relation lists has a snapshot of
 * date in the extension's schema nsp (quoted).
 */
extern bool snapshot_date_is_covered(const SnapshotConfig *config, const char *nsp,
									 DateADT date);

#endif							/* SNAPSHOT_WALK_H */
