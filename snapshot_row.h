/*-------------------------------------------------------------------------
 *
 * snapshot_row.h
 *	  The one description of a snapshot row's values (snapshot_row.c): the
 *	  columns a valuation fills, in the order the upsert, the batch arrays
 *	  and the valuation workers' queue messages all take them from here.
 *
 * Adding a figure is one edit here (an enum entry and its line in
 * snapshot_columns[]), the valuation computing it, and the SQL column.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SNAPSHOT_ROW_H
#define SNAPSHOT_ROW_H

#include "lib/stringinfo.h"

/* The columns of portfolio_snapshots a valuation fills, by name. */
typedef enum SnapshotColumn
{
	SNAP_PORTFOLIO_ID,
	SNAP_BASE_CURRENCY,
	SNAP_MARKET_VALUE,
	SNAP_CASH_BALANCE,
	SNAP_NET_WORTH,
	SNAP_TOTAL_COST,
	SNAP_UNREALIZED_PNL,
	SNAP_REALIZED_PNL,
	SNAP_INCOME,
	SNAP_FEES,
	SNAP_TAXES,
	SNAP_NET_CONTRIBUTION,
	SNAP_DAY_FLOW,
	SNAP_POSITION_COUNT,
	SNAP_MISSING_PRICES,
	SNAP_STALE_PRICES,
	SNAP_MISSING_FX,
	SNAP_POSITIONS,
	SNAPSHOT_COLUMNS			/* the number of columns */
} SnapshotColumn;

/* How a column's value is held, and its SQL type. */
typedef enum SnapshotColumnKind
{
	SNAPSHOT_KIND_UUID,			/* pg_uuid_t */
	SNAPSHOT_KIND_TEXT,			/* text (varlena) */
	SNAPSHOT_KIND_NUMERIC,		/* numeric (varlena), rounded to 8 places */
	SNAPSHOT_KIND_INT4,			/* int32 */
	SNAPSHOT_KIND_JSONB			/* jsonb (varlena) */
} SnapshotColumnKind;

typedef struct SnapshotColumnDesc
{
	const char *name;			/* the column of portfolio_snapshots */
	SnapshotColumnKind kind;
} SnapshotColumnDesc;

extern const SnapshotColumnDesc snapshot_columns[SNAPSHOT_COLUMNS];

/*
 * One snapshot row's values.  An int4 column is held in ints[]; every other
 * column is a pointer in fields[]: to a pg_uuid_t, or to a varlena with a
 * 4-byte header that need not be aligned (a decoded message points into the
 * message).  Rows are filled and read in place, never copied.
 */
typedef struct SnapshotRow
{
	const void *fields[SNAPSHOT_COLUMNS];
	int32		ints[SNAPSHOT_COLUMNS];
} SnapshotRow;

/* The SQL type of a column's values, its length (-1: varlena) and alignment. */
extern Oid	snapshot_column_type(SnapshotColumn column);
extern int16 snapshot_column_typlen(SnapshotColumn column);
extern char snapshot_column_typalign(SnapshotColumn column);

/* A column's value as the batch copies it: fields[] or &ints[]. */
extern const void *snapshot_row_value(const SnapshotRow *row, SnapshotColumn column);

/* A row in a queue message, and back (pointing into the message). */
extern void snapshot_row_encode(StringInfo buf, const SnapshotRow *row);
extern void snapshot_row_decode(StringInfo msg, SnapshotRow *row);

#endif							/* SNAPSHOT_ROW_H */
