/*-------------------------------------------------------------------------
 *
 * snapshot_reads.h
 *	  Every read a capture makes, with its SQL (snapshot_reads.c): the
 *	  configuration, the market data, the ordered cursors of the walk, the
 *	  count and the split of the portfolios.  Reads of the application's
 *	  relations go through snapshot_source.c, as their owner.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SNAPSHOT_READS_H
#define SNAPSHOT_READS_H

#include "snapshot_source.h"
#include "snapshot_valuation.h"

/* The stored configuration, checked, with the relations' quoted names. */
typedef struct SnapshotConfig
{
	Oid			relids[SOURCE_RELATIONS];	/* InvalidOid when not configured */
	char	   *names[SOURCE_RELATIONS];	/* NULL when not configured */
	Oid			owner;			/* their owner, whose rights every read uses */
	ValuationRules rules;
	char	   *cost_method_name;
} SnapshotConfig;

/*
 * A range of portfolio ids, [lo, hi); a missing bound is unbounded.  A
 * capture of all walks the whole range, or splits it among workers.
 */
typedef struct SnapshotRange
{
	bool		has_lo;
	bool		has_hi;
	pg_uuid_t	lo;
	pg_uuid_t	hi;
} SnapshotRange;

/* The portfolios a read covers: one (single), or a range. */
typedef struct SourceScope
{
	bool		single;
	pg_uuid_t	portfolio_id;	/* when single */
	SnapshotRange range;		/* otherwise */
} SourceScope;

/*
 * Load snapshot_config from the extension's schema (nspid, quoted nsp) and
 * check the configured relations; with lock, locking them first (ACCESS
 * SHARE, until the transaction ends), as every capture that reads them
 * does.  Runs inside SPI.
 */
extern void snapshot_load_config(SnapshotConfig *config, Oid nspid, const char *nsp, bool lock);

/*
 * Build md's asset, price and FX maps for the scope (a single capture reads
 * only the assets of its portfolio's ledger), under the active snapshot;
 * md->snapshot_date is set.  Rows with a NULL key or value, or an amount out
 * of bounds, are skipped and counted in *skipped.
 */
extern void snapshot_read_market_data(const SnapshotConfig *config, const SourceScope *scope,
									  MarketData *md, int64 *skipped);

/* The number of portfolios with an id (within a range, unless NULL). */
extern int64 snapshot_count_portfolios(const SnapshotConfig *config, const SnapshotRange *within);

/*
 * Split the portfolio ids of a range into consecutive ranges of every
 * portfolios (the last may hold fewer, and takes in the range's end) in one
 * ordered pass of a cursor; returns their number, and the ranges palloc'd
 * in *ranges.
 */
extern int	snapshot_split_every(const SnapshotConfig *config, const SnapshotRange *within,
								 int64 every, SnapshotRange **ranges);

/*
 * An ordered, read-only cursor over the sources, read in batches as their
 * owner, one row at a time.  The current row's values point into the
 * fetched batch, valid until the next call to snapshot_reader_next() fetches
 * the next batch; a held reader (snapshot_reader_hold) keeps them until it is
 * released.
 */
#define SNAPSHOT_READER_COLUMNS 9

typedef struct RowBuffer RowBuffer;	/* a fetched batch (snapshot_reads.c) */

typedef struct RowReader
{
	SourceCursor cursor;
	long		fetch_rows;
	RowBuffer  *buffer;
	uint64		next;			/* the next row of the batch */
	bool		exhausted;
	Datum	   *values;			/* the current row's */
	bool	   *nulls;
	Oid		   *types;			/* of its columns */
} RowReader;

/*
 * The walk's two cursors, both in index order: the portfolios in scope by
 * id (id, base currency: no more than one byte beyond the longest a
 * valuation accepts), and their ledger rows dated before the end of date's
 * UTC day, or not dated (which the valuation refuses), by (portfolio_id,
 * transaction_date, id).  The portfolio ids alone, within a range unless
 * NULL, for the coverage check and the split.
 */
extern void snapshot_open_portfolios(RowReader *r, const SnapshotConfig *config,
									 const SourceScope *scope, long fetch_rows);
extern void snapshot_open_ledger(RowReader *r, const SnapshotConfig *config,
								 const SourceScope *scope, DateADT date, long fetch_rows);
extern void snapshot_open_portfolio_ids(RowReader *r, const SnapshotConfig *config,
										const SnapshotRange *within, long fetch_rows);

/*
 * Advance to the next row whose portfolio id is not NULL, counting the rows
 * passed over in *skipped; false at the end.
 */
extern bool snapshot_reader_next(RowReader *r, int64 *skipped);
extern void snapshot_reader_close(RowReader *r);

/* The current row's portfolio id (every cursor's first column). */
static inline const pg_uuid_t *
snapshot_reader_portfolio(const RowReader *r)
{
	return DatumGetUUIDP(r->values[0]);
}

/* A portfolios row's base currency, in the current context, or NULL. */
extern char *snapshot_reader_base_currency(const RowReader *r);

/*
 * A ledger row as a ledger entry, in the current context; its values by
 * reference point into the reader's buffer, which must be held.
 */
extern void snapshot_reader_ledger_entry(const RowReader *r, LedgerEntry *e);

/*
 * Keep the values of a reader's earlier fetches until it is released: what
 * was read stays where it is until the walk is done with it.
 */
extern void snapshot_reader_hold(RowReader *r);
extern void snapshot_reader_release(RowReader *r);
/* The type of the ledger cursor's transaction ids. */
extern void snapshot_reader_txn_id_type(const RowReader *r, TxnIdType *type);

#endif							/* SNAPSHOT_READS_H */
