/*-------------------------------------------------------------------------
 *
 * snapshot_writer.h
 *	  What a capture writes, in the calling backend (snapshot_writer.c):
 *	  the month partitions, the batched upsert of snapshot rows, run
 *	  errors, progress, the date's lock and the snapshots' metadata.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SNAPSHOT_WRITER_H
#define SNAPSHOT_WRITER_H

#include "access/heapam.h"
#include "executor/spi.h"

#include "snapshot_walk.h"

/* snapshot.batch_size: portfolios per batch (a superuser-only setting) */
extern PGDLLIMPORT int snapshot_batch_size;

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

/*
 * One column of a batch, built in place as a one-dimensional array without
 * nulls: the upsert takes it as is, so nothing is copied twice, and its
 * buffer is kept from batch to batch.
 */
typedef struct BatchColumn
{
	Oid			elemtype;
	int16		typlen;			/* -1 (varlena), 4 (int4) or 16 (uuid) */
	char		typalign;
	char	   *buf;			/* the ArrayType being built */
	Size		len;			/* bytes used */
	Size		size;			/* bytes allocated */
} BatchColumn;

/*
 * The writer of one capture: the caller's sink.  Rows are upserted in
 * batches of snapshot.batch_size portfolios (or 32 MB); errors go to
 * snapshot_run_errors.
 */
typedef struct SnapshotWriter
{
	CaptureSink sink;			/* first, so the walk's sink is the writer */
	const char *nsp;			/* the extension's schema, quoted */
	DateADT		snapshot_date;
	int64		run_id;			/* 0 for capture_snapshot() */
	Datum		metadata;		/* jsonb, the same for every row */
	TimestampTz captured_at;
	int64		total;			/* portfolios expected, for progress; -1: none shown */

	MemoryContext batch_cxt;
	SPIPlanPtr	upsert_plan;	/* prepared when first used */

	/* the direct write of new snapshots (snapshot_writer.c) */
	bool		direct;			/* rows are formed into tuples, inserted directly */
	int			inserts;		/* direct inserts made */
	Oid			partition;		/* the date's partition */
	TupleDesc	desc;			/* its row type */
	int			natts;
	int		   *attnum;			/* per attribute, the value written */
	Datum	   *values;			/* a row being formed */
	bool	   *isnull;
	MemoryContext tuple_cxt;	/* the batch's tuples; reset after each write */
	HeapTuple  *tuples;
	TupleTableSlot **slots;		/* one per tuple, kept from batch to batch */
	BulkInsertState bistate;	/* the writes' ring of buffers */
	int			toast_target;	/* the partition's toast tuple target */
	int			positions_att;	/* the positions array's attribute, or -1 */
	int			maxtuples;
	int			nbatch;
	Size		batch_bytes;	/* of the values in the batch */
	BatchColumn batch[SNAPSHOT_COLUMNS];

	int64		captured;
	int64		failed;
} SnapshotWriter;

extern void snapshot_writer_init(void);

/* Serialize captures of date d on its row of capture_date_locks. */
extern void snapshot_lock_date(const char *nsp, DateADT d);

extern SnapshotMonth snapshot_month_of(DateADT d);
extern void snapshot_ensure_partition(Oid nspid, const char *nsp, DateADT d);

/*
 * The partition of date d, and of the next month too when d is in the
 * current month (UTC).
 */
extern void snapshot_ensure_partitions(Oid nspid, const char *nsp, DateADT d);

/* The metadata stored with every snapshot of a capture. */
extern Datum snapshot_build_metadata(const char *triggered_by, const char *cost_method,
									 const ValuationRules *rules, int64 run_id);

/*
 * Start a writer of date's snapshots (its partition exists) for run_id;
 * total >= 0 shows progress in pg_stat_activity at every batch.
 * insert_first: the snapshots are most likely new (a capture of all), so
 * the writer inserts them directly until one turns out to exist.
 */
extern void snapshot_writer_begin(SnapshotWriter *w, const char *nsp, DateADT date,
								  int64 run_id, Datum metadata, int64 total,
								  bool insert_first);
extern void snapshot_writer_flush(SnapshotWriter *w);
extern void snapshot_report_progress(const SnapshotWriter *w);

#endif							/* SNAPSHOT_WRITER_H */
