/*-------------------------------------------------------------------------
 *
 * snapshot_performance.h
 *	  Returns and drawdown of a portfolio from its snapshots
 *	  (snapshot_performance.c): the SQL-callable portfolio_performance() and
 *	  performance_series(), declared by PG_FUNCTION_INFO_V1 there.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SNAPSHOT_PERFORMANCE_H
#define SNAPSHOT_PERFORMANCE_H

#include "fmgr.h"

extern PGDLLEXPORT Datum portfolio_performance(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum performance_series(PG_FUNCTION_ARGS);

#endif							/* SNAPSHOT_PERFORMANCE_H */
