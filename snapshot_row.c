/*-------------------------------------------------------------------------
 *
 * snapshot_row.c
 *	  The snapshot row's descriptor: every column a valuation fills, its
 *	  kind, and the encoding of a row in a valuation worker's queue message.
 *	  The writer builds its upsert and batch arrays from the same table.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "libpq/pqformat.h"
#include "utils/uuid.h"

#include "snapshot_row.h"

const SnapshotColumnDesc snapshot_columns[SNAPSHOT_COLUMNS] = {
	[SNAP_PORTFOLIO_ID] = {"portfolio_id", SNAPSHOT_KIND_UUID},
	[SNAP_BASE_CURRENCY] = {"base_currency", SNAPSHOT_KIND_TEXT},
	[SNAP_MARKET_VALUE] = {"market_value", SNAPSHOT_KIND_NUMERIC},
	[SNAP_CASH_BALANCE] = {"cash_balance", SNAPSHOT_KIND_NUMERIC},
	[SNAP_NET_WORTH] = {"net_worth", SNAPSHOT_KIND_NUMERIC},
	[SNAP_TOTAL_COST] = {"total_cost", SNAPSHOT_KIND_NUMERIC},
	[SNAP_UNREALIZED_PNL] = {"unrealized_pnl", SNAPSHOT_KIND_NUMERIC},
	[SNAP_REALIZED_PNL] = {"realized_pnl", SNAPSHOT_KIND_NUMERIC},
	[SNAP_INCOME] = {"income", SNAPSHOT_KIND_NUMERIC},
	[SNAP_FEES] = {"fees", SNAPSHOT_KIND_NUMERIC},
	[SNAP_TAXES] = {"taxes", SNAPSHOT_KIND_NUMERIC},
	[SNAP_NET_CONTRIBUTION] = {"net_contribution", SNAPSHOT_KIND_NUMERIC},
	[SNAP_DAY_FLOW] = {"day_flow", SNAPSHOT_KIND_NUMERIC},
	[SNAP_POSITION_COUNT] = {"position_count", SNAPSHOT_KIND_INT4},
	[SNAP_MISSING_PRICES] = {"missing_prices", SNAPSHOT_KIND_INT4},
	[SNAP_STALE_PRICES] = {"stale_prices", SNAPSHOT_KIND_INT4},
	[SNAP_MISSING_FX] = {"missing_fx", SNAPSHOT_KIND_INT4},
	[SNAP_POSITIONS] = {"positions", SNAPSHOT_KIND_JSONB},
};

Oid
snapshot_column_type(SnapshotColumn column)
{
	switch (snapshot_columns[column].kind)
	{
		case SNAPSHOT_KIND_UUID:
			return UUIDOID;
		case SNAPSHOT_KIND_TEXT:
			return TEXTOID;
		case SNAPSHOT_KIND_NUMERIC:
			return NUMERICOID;
		case SNAPSHOT_KIND_INT4:
			return INT4OID;
		case SNAPSHOT_KIND_JSONB:
			return JSONBOID;
	}
	elog(ERROR, "snapshot: column %d has no kind", (int) column);
	return InvalidOid;			/* keep the compiler quiet */
}

int16
snapshot_column_typlen(SnapshotColumn column)
{
	switch (snapshot_columns[column].kind)
	{
		case SNAPSHOT_KIND_UUID:
			return UUID_LEN;
		case SNAPSHOT_KIND_INT4:
			return (int16) sizeof(int32);
		default:
			return -1;
	}
}

char
snapshot_column_typalign(SnapshotColumn column)
{
	return snapshot_columns[column].kind == SNAPSHOT_KIND_UUID ? TYPALIGN_CHAR : TYPALIGN_INT;
}

const void *
snapshot_row_value(const SnapshotRow *row, SnapshotColumn column)
{
	return snapshot_columns[column].kind == SNAPSHOT_KIND_INT4
		? (const void *) &row->ints[column] : row->fields[column];
}

/* The size a varlena's header gives, read without assuming alignment. */
static Size
varlena_size(const char *data)
{
	uint32		header;

	if (VARATT_IS_1B(data))
		return VARSIZE_1B(data);
	memcpy(&header, data, sizeof(uint32));
	return VARSIZE_4B(&header);
}

/*
 * Append a row to a message: each column in descriptor order, a uuid as its
 * 16 bytes, an int4 in network order, a varlena as its length and bytes.
 */
void
snapshot_row_encode(StringInfo buf, const SnapshotRow *row)
{
	for (int c = 0; c < SNAPSHOT_COLUMNS; c++)
	{
		switch (snapshot_columns[c].kind)
		{
			case SNAPSHOT_KIND_UUID:
				pq_sendbytes(buf, (const char *) row->fields[c], UUID_LEN);
				break;
			case SNAPSHOT_KIND_INT4:
				pq_sendint32(buf, row->ints[c]);
				break;
			default:
				{
					int			len = VARSIZE_ANY(row->fields[c]);

					pq_sendint32(buf, len);
					pq_sendbytes(buf, (const char *) row->fields[c], len);
				}
				break;
		}
	}
}

/*
 * Read a row written by snapshot_row_encode(); its fields point into the
 * message, which must outlive the row.
 */
void
snapshot_row_decode(StringInfo msg, SnapshotRow *row)
{
	for (int c = 0; c < SNAPSHOT_COLUMNS; c++)
	{
		switch (snapshot_columns[c].kind)
		{
			case SNAPSHOT_KIND_UUID:
				row->fields[c] = pq_getmsgbytes(msg, UUID_LEN);
				break;
			case SNAPSHOT_KIND_INT4:
				row->ints[c] = (int32) pq_getmsgint(msg, 4);
				row->fields[c] = NULL;
				break;
			default:
				{
					int			len = pq_getmsgint(msg, 4);
					const char *data = pq_getmsgbytes(msg, len);

					if (len < (int) VARHDRSZ_SHORT || varlena_size(data) != (Size) len)
						elog(ERROR, "snapshot: malformed %s in a worker's message",
							 snapshot_columns[c].name);
					row->fields[c] = data;
				}
				break;
		}
	}
}
