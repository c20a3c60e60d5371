/*-------------------------------------------------------------------------
 *
 * snapshot_capture.h
 *	  One capture's machinery (snapshot_capture.c), called by the entry
 *	  points (snapshot.c) and by the valuation workers (snapshot_parallel.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SNAPSHOT_CAPTURE_H
#define SNAPSHOT_CAPTURE_H

#include "snapshot.h"

/*
 * The month holding date d: its first day, the first day of the next, and
 * the name of its partition.
 */
typedef struct SnapshotMonth
{
	DateADT		first;
	DateADT		next;
	char	   *partition;
} SnapshotMonth;

extern PGDLLIMPORT int snapshot_batch_size;

/* setup: SPI, configuration (checked and locked), market data */
extern void snapshot_spi_run(const char *sql, int nargs, Oid *types, Datum *values,
							 const char *nulls, bool read_only, int expected);
extern void snapshot_capture_setup(Capture *cap, Oid nspid, DateADT snapshot_date);
extern void snapshot_load_market_data(Capture *cap);

/* the walk: portfolios and ledgers, valued, to the sink or the batch */
extern void snapshot_walk(Capture *cap);
extern bool snapshot_date_is_covered(Capture *cap);

/* the writer */
extern SnapshotMonth snapshot_month_of(DateADT d);
extern void snapshot_lock_date(Capture *cap, DateADT d);
extern Datum snapshot_build_metadata(Capture *cap, const char *triggered_by);
extern void snapshot_ensure_partition(Capture *cap, DateADT d);
extern void snapshot_prepare_upsert(Capture *cap);
extern void snapshot_batch_add(Capture *cap, const void *const *fields);
extern void snapshot_batch_flush(Capture *cap);
extern void snapshot_report_progress(Capture *cap);
extern void snapshot_record_error(Capture *cap, const pg_uuid_t *portfolio_id,
								  int sqlerrcode, const char *message,
								  const char *detail);

#endif							/* SNAPSHOT_CAPTURE_H */
