/*-------------------------------------------------------------------------
 *
 * snapshot.h
 *	  The snapshot extension's entry points (snapshot.c): what the server
 *	  calls by name.  The library is built with hidden visibility, so these,
 *	  the performance functions (snapshot_performance.h) and the valuation
 *	  worker's main (snapshot_parallel.h) are all it exports.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SNAPSHOT_EXT_H
#define SNAPSHOT_EXT_H

#include "fmgr.h"

extern PGDLLEXPORT void _PG_init(void);

extern PGDLLEXPORT Datum capture_all_snapshots(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum capture_all_snapshots_if_missing(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum capture_snapshot(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum snapshot_configure(PG_FUNCTION_ARGS);

#endif							/* SNAPSHOT_EXT_H */
