/*-------------------------------------------------------------------------
 *
 * snapshot.h
 *	  The snapshot extension's entry points (snapshot.c): what the server
 *	  calls by name.  The library is built with hidden visibility, so these,
 *	  the performance functions (snapshot_performance.h) and the main
 *	  functions of the valuation worker (snapshot_parallel.h) and the run's
 *	  worker (snapshot_run.c) are all it exports.
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
extern PGDLLEXPORT Datum start_capture(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum resume_capture(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum cancel_capture(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum capture_progress_rows(PG_FUNCTION_ARGS);

#endif							/* SNAPSHOT_EXT_H */
