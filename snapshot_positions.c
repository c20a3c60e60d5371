/*-------------------------------------------------------------------------
 *
 * snapshot_positions.c
 *	  The positions array of a snapshot, written straight in jsonb's binary
 *	  format.
 *
 * Built as jsonb_util.c's convertToJsonb() lays a value out (its JsonbValue
 * tree, built and sorted by pushJsonbValue(), was a fifth of a capture's
 * time): a container is a header word (count and kind) and one JEntry per
 * child (for an object, the keys' then the values'), then the children's
 * data, each numeric and container padded to a 4-byte boundary; a JEntry
 * holds the child's length, or every JB_OFFSET_STRIDE'th the end offset of
 * its data.  An object's keys must be in jsonb's order, which
 * position_keys[] is (checked by assertion-enabled builds).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/memutils.h"

#include "snapshot_positions.h"

typedef enum PositionField
{
	FIELD_STRING,
	FIELD_NUMERIC
} PositionField;

static const struct
{
	const char *key;
	PositionField kind;
}			position_keys[POSITION_KEYS] =
{
	[POS_PRICE] = {"price", FIELD_NUMERIC},
	[POS_SYMBOL] = {"symbol", FIELD_STRING},
	[POS_FX_RATE] = {"fx_rate", FIELD_NUMERIC},
	[POS_ASSET_ID] = {"asset_id", FIELD_STRING},
	[POS_CURRENCY] = {"currency", FIELD_STRING},
	[POS_QUANTITY] = {"quantity", FIELD_NUMERIC},
	[POS_COST_BASIS] = {"cost_basis", FIELD_NUMERIC},
	[POS_PRICE_DATE] = {"price_date", FIELD_STRING},
	[POS_MARKET_VALUE] = {"market_value", FIELD_NUMERIC},
	[POS_PRICE_SOURCE] = {"price_source", FIELD_STRING},
};

#ifdef USE_ASSERT_CHECKING
/*
 * The keys are in the order jsonb keeps an object's keys in (jsonb_util.c's
 * lengthCompareJsonbString: shorter first, then bytewise), so the object
 * written is the one jsonb_in would build.
 */
static void
check_key_order(void)
{
	static bool checked = false;

	if (checked)
		return;
	for (int i = 1; i < POSITION_KEYS; i++)
	{
		const char *a = position_keys[i - 1].key;
		const char *b = position_keys[i].key;
		size_t		la = strlen(a);
		size_t		lb = strlen(b);

		Assert(la < lb || (la == lb && memcmp(a, b, la) < 0));
	}
	checked = true;
}
#endif

/* Pad buf with zeros to a 4-byte boundary; returns the padding. */
static int
jsonb_pad(StringInfo buf)
{
	int			pad = INTALIGN(buf->len) - buf->len;

	for (int i = 0; i < pad; i++)
		appendStringInfoCharMacro(buf, '\0');
	return pad;
}

/* Reserve n JEntries in buf; returns their offset. */
static int
jsonb_reserve(StringInfo buf, int n)
{
	int			offset = buf->len;

	enlargeStringInfo(buf, n * (int) sizeof(JEntry));
	memset(buf->data + offset, 0, n * sizeof(JEntry));
	buf->len += n * sizeof(JEntry);
	buf->data[buf->len] = '\0';
	return offset;
}

/*
 * Store the JEntry of child i, whose data (len bytes) ended the container's
 * data at *total bytes in: its length, or every JB_OFFSET_STRIDE'th child
 * the offset of its end.
 */
static void
jsonb_entry(StringInfo buf, int entries, int i, uint32 type, int len, int *total)
{
	JEntry		entry;

	*total += len;
	if (*total > JENTRY_OFFLENMASK)
		ereport(ERROR,
				errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				errmsg("the positions of a portfolio exceed the maximum jsonb size (%d bytes)",
					   JENTRY_OFFLENMASK));
	entry = (i % JB_OFFSET_STRIDE) == 0 ? type | *total | JENTRY_HAS_OFF : type | len;
	memcpy(buf->data + entries + i * sizeof(JEntry), &entry, sizeof(JEntry));
}

/*
 * Start a positions array of n positions.
 */
void
snapshot_positions_start(PositionsWriter *w, int n)
{
	uint32		header = n | JB_FARRAY;

#ifdef USE_ASSERT_CHECKING
	check_key_order();
#endif
	initStringInfo(&w->buf);
	enlargeStringInfo(&w->buf, 64 + 400 * n);
	w->buf.len = VARHDRSZ;
	appendBinaryStringInfo(&w->buf, (char *) &header, sizeof(uint32));
	w->entries = jsonb_reserve(&w->buf, n);
	w->n = n;
	w->added = 0;
	w->total = 0;
}

/*
 * The keys of a position's object, laid out once: their bytes, and their
 * JEntries (each key's length; the first, at JB_OFFSET_STRIDE, its end).
 */
static struct
{
	bool		ready;
	int			len;			/* bytes of the keys */
	JEntry		entries[POSITION_KEYS];
	char		data[POSITION_KEYS * 16];
}			key_block;

static void
build_key_block(void)
{
	int			total = 0;

	for (int i = 0; i < POSITION_KEYS; i++)
	{
		int			len = strlen(position_keys[i].key);

		Assert(total + len <= (int) sizeof(key_block.data));
		memcpy(key_block.data + total, position_keys[i].key, len);
		total += len;
		key_block.entries[i] = (i % JB_OFFSET_STRIDE) == 0
			? (JEntry) (JENTRY_ISSTRING | total | JENTRY_HAS_OFF) : (JEntry) (JENTRY_ISSTRING | len);
	}
	key_block.len = total;
	key_block.ready = true;
}

/*
 * Append the next position's object: its values by key, with the lengths
 * of its strings (those of the other keys are ignored).
 */
void
snapshot_positions_add(PositionsWriter *w, const void *const values[POSITION_KEYS],
					   const int string_lens[POSITION_KEYS])
{
	StringInfo	buf = &w->buf;
	int			start = buf->len;
	uint32		header = POSITION_KEYS | JB_FOBJECT;
	int			lens[POSITION_KEYS];
	Size		need;
	int			entries;
	int			total;
	char	   *p;

	if (w->added >= w->n)
		elog(ERROR, "snapshot: more positions written than announced");
	if (!key_block.ready)
		build_key_block();

	/* the object's size at most (each numeric padded by up to 3 bytes) */
	need = 3 + sizeof(uint32) + 2 * POSITION_KEYS * sizeof(JEntry) + key_block.len;
	for (int i = 0; i < POSITION_KEYS; i++)
	{
		lens[i] = values[i] == NULL ? 0
			: position_keys[i].kind == FIELD_STRING ? string_lens[i]
			: (int) VARSIZE_ANY(values[i]);
		Assert(values[i] == NULL || position_keys[i].kind != FIELD_STRING ||
			   lens[i] == (int) strlen(values[i]));
		need += lens[i] + 3;
	}
	if (need >= (Size) (MaxAllocSize - buf->len))
		ereport(ERROR,
				errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				errmsg("the positions of a portfolio exceed the maximum jsonb size (%d bytes)",
					   JENTRY_OFFLENMASK));
	enlargeStringInfo(buf, (int) need);

	/* written in place: the buffer holds the whole object */
	jsonb_pad(buf);
	p = buf->data + buf->len;
	memcpy(p, &header, sizeof(uint32));
	entries = buf->len + sizeof(uint32);
	p += sizeof(uint32);
	memcpy(p, key_block.entries, sizeof(key_block.entries));
	p += 2 * POSITION_KEYS * sizeof(JEntry);
	memcpy(p, key_block.data, key_block.len);
	p += key_block.len;
	buf->len = p - buf->data;
	total = key_block.len;
	for (int i = 0; i < POSITION_KEYS; i++)
	{
		int			j = i + POSITION_KEYS;

		if (values[i] == NULL)
			jsonb_entry(buf, entries, j, JENTRY_ISNULL, 0, &total);
		else if (position_keys[i].kind == FIELD_STRING)
		{
			memcpy(buf->data + buf->len, values[i], lens[i]);
			buf->len += lens[i];
			jsonb_entry(buf, entries, j, JENTRY_ISSTRING, lens[i], &total);
		}
		else
		{
			int			pad = jsonb_pad(buf);

			memcpy(buf->data + buf->len, values[i], lens[i]);
			buf->len += lens[i];
			jsonb_entry(buf, entries, j, JENTRY_ISNUMERIC, pad + lens[i], &total);
		}
	}
	buf->data[buf->len] = '\0';
	/* the object's data and the padding before it, as the array's child */
	jsonb_entry(buf, w->entries, w->added++, JENTRY_ISCONTAINER, buf->len - start, &w->total);
}

/*
 * The finished positions array.
 */
Jsonb *
snapshot_positions_finish(PositionsWriter *w)
{
	if (w->added != w->n)
		elog(ERROR, "snapshot: %d positions written of %d announced", w->added, w->n);
	SET_VARSIZE(w->buf.data, w->buf.len);
	return (Jsonb *) w->buf.data;
}
