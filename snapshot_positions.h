/*-------------------------------------------------------------------------
 *
 * snapshot_positions.h
 *	  The positions array of a snapshot, written straight in jsonb's binary
 *	  format (snapshot_positions.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SNAPSHOT_POSITIONS_H
#define SNAPSHOT_POSITIONS_H

#include "lib/stringinfo.h"
#include "utils/jsonb.h"

/*
 * The keys of one position's object, in jsonb's order (shorter first, then
 * bytewise), which is the order they are written in.  An assertion-enabled
 * build checks the order once per backend.
 */
typedef enum PositionKey
{
	POS_PRICE,					/* numeric */
	POS_SYMBOL,					/* text */
	POS_FX_RATE,				/* numeric */
	POS_ASSET_ID,				/* text */
	POS_CURRENCY,				/* text */
	POS_QUANTITY,				/* numeric */
	POS_COST_BASIS,				/* numeric */
	POS_PRICE_DATE,				/* text */
	POS_MARKET_VALUE,			/* numeric */
	POS_PRICE_SOURCE,			/* text */
	POSITION_KEYS
} PositionKey;

/*
 * A positions array being written: start it with the number of positions,
 * add each position's values (a C string or a Numeric by key, NULL for
 * JSON null; strlen of each string in lens, which the caller knows), and
 * finish it into a Jsonb in the current memory context.
 */
typedef struct PositionsWriter
{
	StringInfoData buf;
	int			n;				/* positions announced */
	int			added;
	int			entries;		/* offset of the array's JEntries */
	int			total;			/* bytes of child data so far */
} PositionsWriter;

extern void snapshot_positions_start(PositionsWriter *w, int n);
extern void snapshot_positions_add(PositionsWriter *w, const void *const values[POSITION_KEYS],
								   const int lens[POSITION_KEYS]);
extern Jsonb *snapshot_positions_finish(PositionsWriter *w);

#endif							/* SNAPSHOT_POSITIONS_H */
