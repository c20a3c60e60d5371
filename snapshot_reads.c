/*-------------------------------------------------------------------------
 *
 * snapshot_reads.c
 *	  Every read of a capture and its SQL: the configuration, the market
 *	  data, the walk's ordered cursors, the count and the split of the
 *	  portfolios.
 *
 * Each read of the application's relations goes through snapshot_source.c,
 * which runs it as the relations' owner; the SQL here is read-only,
 * parameterised, schema-qualified, with every column cast to the type read
 * (casts and operators checked by snapshot_check_sources()).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgrprotos.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "snapshot_reads.h"

static void reader_open(RowReader *r, Oid owner, const char *sql, int nargs, Oid *types,
						Datum *values, const Oid *result_types, int nresult, long fetch_rows);
static bool reader_next_row(RowReader *r);
static bool txn_id_read_as_is(Oid type);

/*
 * Load the configuration and check the configured relations, locking them
 * until the transaction ends; 55000 when snapshot_configure() was never
 * called, or when the extension's SQL objects predate this library.
 */
void
snapshot_load_config(SnapshotConfig *config, Oid nspid, const char *nsp, bool lock)
{
	StringInfoData sql;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Oid			config_relid = get_relname_relid("snapshot_config", nspid);

	/*
	 * This library needs the 1.5 objects: the 1.3 security model (whose
	 * date locks, configure and fallback the older objects lack), 1.4's
	 * quantity tolerance and taxes column, and 1.5's run columns.
	 */
	Oid			runs_relid = get_relname_relid("snapshot_runs", nspid);

	if (!OidIsValid(get_relname_relid("capture_date_locks", nspid)) ||
		!OidIsValid(config_relid) ||
		get_attnum(config_relid, "quantity_tolerance") == InvalidAttrNumber ||
		!OidIsValid(runs_relid) || get_attnum(runs_relid, "worker_pid") == InvalidAttrNumber)
		ereport(ERROR,
				errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				errmsg("the snapshot extension's SQL objects are older than its library"),
				errdetail("This library needs version 1.5 or later of the extension's SQL objects."),
				errhint("Run ALTER EXTENSION snapshot UPDATE."));

	memset(config, 0, sizeof(SnapshotConfig));
	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "SELECT c.portfolios::pg_catalog.oid, c.assets::pg_catalog.oid,"
					 " c.transactions::pg_catalog.oid, c.prices::pg_catalog.oid,"
					 " c.fx_rates::pg_catalog.oid, c.cost_method, c.stale_after_days,"
					 " c.quantity_tolerance"
					 " FROM %s.snapshot_config c",
					 nsp);
	snapshot_spi_run(sql.data, 0, NULL, NULL, NULL, true, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				errmsg("snapshot is not configured"),
				errhint("Call snapshot_configure() with the names of the application's portfolios, assets, transactions and prices relations."));

	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	for (int i = 0; i < SOURCE_RELATIONS; i++)
	{
		Datum		d = SPI_getbinval(tup, desc, i + 1, &isnull);

		config->relids[i] = isnull ? InvalidOid : DatumGetObjectId(d);
	}
	config->cost_method_name = SPI_getvalue(tup, desc, 6);
	config->rules.stale_after_days = DatumGetInt32(SPI_getbinval(tup, desc, 7, &isnull));
	if (config->cost_method_name == NULL || isnull)
		elog(ERROR, "snapshot: snapshot_config holds a NULL setting");
	config->rules.quantity_tolerance = DatumGetNumericCopy(SPI_getbinval(tup, desc, 8, &isnull));
	if (isnull)
		elog(ERROR, "snapshot: snapshot_config holds a NULL setting");
	config->rules.tolerance = amount_of(config->rules.quantity_tolerance);
	config->rules.has_tolerance = amount_sign(config->rules.tolerance) > 0;
	config->rules.cost_method = strcmp(config->cost_method_name, "average") == 0
		? COST_AVERAGE : COST_FIFO;

	/*
	 * The relations as they are now, not as they were configured; locked
	 * first, so that they stay so until this capture ends.
	 */
	config->owner = snapshot_check_sources(config->relids, lock, config->names);
}

/*
 * Create a hash table in the current memory context.
 */
static HTAB *
make_hash(const char *name, Size keysize, Size entrysize, long nelem, bool blobs)
{
	HASHCTL		hctl;

	hctl.keysize = keysize;
	hctl.entrysize = entrysize;
	hctl.hcxt = CurrentMemoryContext;
	return hash_create(name, Max(nelem, 16), &hctl,
					   HASH_ELEM | HASH_CONTEXT | (blobs ? HASH_BLOBS : HASH_STRINGS));
}

/*
 * A filter restricting the assets read to those in one portfolio's ledger
 * (single capture), or nothing (all portfolios).  $2 is the portfolio id.
 */
static char *
asset_filter(const SnapshotConfig *config, const SourceScope *scope, const char *column)
{
	if (!scope->single)
		return "";
	return psprintf(" AND %s IN (SELECT t.asset_id::pg_catalog.uuid FROM %s t"
					" WHERE t.portfolio_id::pg_catalog.uuid = $2)",
					column, config->names[SOURCE_TRANSACTIONS]);
}

/*
 * Move what a position shows of its asset (its rounded close, id, symbol,
 * currency and price date) into one block, in CurrentMemoryContext, and
 * free where they were: the valuation copies them into every positions
 * array, and copied from where each was allocated they missed the cache.
 */
static void
pack_asset(AssetInfo *a)
{
	Size		close_len = a->has_price ? VARSIZE(a->close_rounded) : 0;
	int			id_len = strlen(a->id_text);
	char	   *old[5] = {a->has_price ? (char *) a->close_rounded : NULL, a->id_text,
		a->symbol_len > 0 ? a->symbol : NULL,	/* else maybe the literal "" */
		a->currency_len > 0 ? a->currency : NULL,
	a->has_price ? a->price_date_iso : NULL};
	char	   *block;
	char	   *p;

	block = palloc(MAXALIGN(close_len) + id_len + 1 + a->symbol_len + 1 + a->currency_len + 1 +
				   (a->has_price ? a->price_date_iso_len + 1 : 0));
	p = block;
	if (a->has_price)
	{
		memcpy(p, a->close_rounded, close_len);
		a->close_rounded = (Numeric) p;
		p += MAXALIGN(close_len);
	}
	memcpy(p, a->id_text, id_len + 1);
	a->id_text = p;
	p += id_len + 1;
	memcpy(p, a->symbol, a->symbol_len + 1);
	a->symbol = p;
	p += a->symbol_len + 1;
	if (a->currency != NULL)
	{
		memcpy(p, a->currency, a->currency_len + 1);
		a->currency = p;
		p += a->currency_len + 1;
	}
	if (a->has_price)
	{
		memcpy(p, a->price_date_iso, a->price_date_iso_len + 1);
		a->price_date_iso = p;
	}
	for (int i = 0; i < (int) lengthof(old); i++)
		if (old[i] != NULL)
			pfree(old[i]);
}

/*
 * Build the asset, price and FX maps (see snapshot_reads.h).
 */
void
snapshot_read_market_data(const SnapshotConfig *config, const SourceScope *scope,
						  MarketData *md, int64 *skipped)
{
	Oid			types[2] = {DATEOID, UUIDOID};
	Datum		values[2];
	char	   *sql;
	Oid			owner = config->owner;
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext cxt = md->cxt != NULL ? md->cxt : caller;

	values[0] = DateADTGetDatum(md->snapshot_date);
	values[1] = UUIDPGetDatum(&scope->portfolio_id);

	sql = psprintf("SELECT a.id::pg_catalog.uuid, a.symbol::pg_catalog.text,"
				   " a.currency::pg_catalog.text FROM %s a"
				   " WHERE $1 IS NOT NULL%s",
				   config->names[SOURCE_ASSETS], asset_filter(config, scope, "a.id::pg_catalog.uuid"));
	snapshot_source_query(owner, sql, scope->single ? 2 : 1, types, values, 0);
	MemoryContextSwitchTo(cxt);	/* SPI returns in its own context */
	md->assets = make_hash("snapshot assets", sizeof(pg_uuid_t), sizeof(AssetInfo),
						   SPI_processed, true);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		id = SPI_getbinval(tup, desc, 1, &isnull);
		AssetInfo  *a;

		if (isnull)
		{
			(*skipped)++;
			continue;
		}
		a = hash_search(md->assets, DatumGetUUIDP(id), HASH_ENTER, NULL);
		a->id_text = DatumGetCString(DirectFunctionCall1(uuid_out, id));
		a->symbol = SPI_getvalue(tup, desc, 2);
		if (a->symbol == NULL)
			a->symbol = "";
		a->currency = SPI_getvalue(tup, desc, 3);
		a->symbol_len = strlen(a->symbol);
		a->currency_len = a->currency ? strlen(a->currency) : 0;
		a->currency_id = -1;
		a->has_price = false;
	}
	SPI_freetuptable(SPI_tuptable);
	snapshot_rank_assets(md);

	/*
	 * Each asset's latest valid close on or before the date.  The prices
	 * are read in no order and the latest row kept per asset id here: a
	 * sort of a long price history (on disk beyond work_mem) took longer
	 * than reading it, in every process of a run.  What is kept is what a
	 * DISTINCT ON (asset_id) ... ORDER BY price_date DESC gave: one row per
	 * asset id, of its latest date (the first read among rows of one date),
	 * then a skipped row when its close is beyond what a valuation accepts
	 * (the asset has no price then, not an older one), ignored when the
	 * assets relation lacks the asset; rows without an asset id are one
	 * skipped row.
	 */
	{
		typedef struct LatestPrice
		{
			pg_uuid_t	asset_id;	/* hash key */
			DateADT		date;
			Numeric		close;
		} LatestPrice;
		static const Oid price_types[] = {UUIDOID, DATEOID, NUMERICOID};
		RowReader	prices;
		bool		null_asset = false;
		MemoryContext latest_cxt = AllocSetContextCreate(caller, "snapshot latest prices",
														 ALLOCSET_DEFAULT_SIZES);
		HTAB	   *latest;
		HASH_SEQ_STATUS seq;
		LatestPrice *l;

		sql = psprintf("SELECT p.asset_id::pg_catalog.uuid, p.price_date::pg_catalog.date,"
					   " p.close::pg_catalog.numeric FROM %s p"
					   " WHERE p.price_date::pg_catalog.date OPERATOR(pg_catalog.<=) $1"
					   " AND p.close::pg_catalog.numeric OPERATOR(pg_catalog.>=) 0"
					   " AND p.close::pg_catalog.numeric OPERATOR(pg_catalog.<) 'Infinity'%s",
					   config->names[SOURCE_PRICES],
					   asset_filter(config, scope, "p.asset_id::pg_catalog.uuid"));
		MemoryContextSwitchTo(latest_cxt);
		latest = make_hash("snapshot latest prices", sizeof(pg_uuid_t), sizeof(LatestPrice),
						   hash_get_num_entries(md->assets), true);
		reader_open(&prices, owner, sql, scope->single ? 2 : 1, types, values,
					price_types, lengthof(price_types), 10000);
		while (reader_next_row(&prices))
		{
			DateADT		date;
			bool		found;

			CHECK_FOR_INTERRUPTS();
			if (prices.nulls[0])
			{
				null_asset = true;
				continue;
			}
			if (prices.nulls[1] || prices.nulls[2])
			{
				/* not a price (the filter above lets none through) */
				(*skipped)++;
				continue;
			}
			date = DatumGetDateADT(prices.values[1]);
			l = hash_search(latest, DatumGetUUIDP(prices.values[0]), HASH_ENTER, &found);
			if (found && date <= l->date)
				continue;
			MemoryContextSwitchTo(latest_cxt);
			if (found)
				pfree(l->close);
			l->close = DatumGetNumericCopy(prices.values[2]);
			l->date = date;
		}
		snapshot_reader_close(&prices);
		if (null_asset)
			(*skipped)++;
		MemoryContextSwitchTo(cxt);
		hash_seq_init(&seq, latest);
		while ((l = hash_seq_search(&seq)) != NULL)
		{
			AssetInfo  *a;

			if (!amount_in_bounds(l->close))
			{
				(*skipped)++;
				continue;
			}
			/* a price of an asset the assets relation lacks is never used */
			a = hash_search(md->assets, &l->asset_id, HASH_FIND, NULL);
			if (a == NULL)
				continue;
			a->price_date = l->date;
			a->price_date_iso = snapshot_date_iso(a->price_date);
			a->price_date_iso_len = strlen(a->price_date_iso);
			a->has_price = true;
			a->close = amount_of(DatumGetNumericCopy(NumericGetDatum(l->close)));
			a->close_rounded = amount_numeric(amount_round(a->close));
		}
		MemoryContextSwitchTo(caller);
		MemoryContextDelete(latest_cxt);
	}

	/* each asset's strings and close in one block */
	{
		HASH_SEQ_STATUS seq;
		AssetInfo  *a;

		MemoryContextSwitchTo(cxt);
		hash_seq_init(&seq, md->assets);
		while ((a = hash_seq_search(&seq)) != NULL)
			pack_asset(a);
		MemoryContextSwitchTo(caller);
	}

	md->currencies = NULL;
	md->fx = NULL;
	if (config->names[SOURCE_FX_RATES] == NULL)
	{
		MemoryContextSwitchTo(caller);
		return;
	}
	sql = psprintf("SELECT DISTINCT ON (f.from_currency::pg_catalog.text, f.to_currency::pg_catalog.text)"
				   " f.from_currency::pg_catalog.text, f.to_currency::pg_catalog.text,"
				   " f.rate::pg_catalog.numeric FROM %s f"
				   " WHERE f.rate_date::pg_catalog.date OPERATOR(pg_catalog.<=) $1"
				   " AND f.rate::pg_catalog.numeric OPERATOR(pg_catalog.>) 0"
				   " AND f.rate::pg_catalog.numeric OPERATOR(pg_catalog.<) 'Infinity'"
				   " ORDER BY 1, 2, f.rate_date::pg_catalog.date DESC",
				   config->names[SOURCE_FX_RATES]);
	snapshot_source_query(owner, sql, 1, types, values, 0);
	MemoryContextSwitchTo(cxt);
	md->currencies = make_hash("snapshot currencies", SNAPSHOT_CURRENCY_MAXLEN + 1,
							   sizeof(CurrencyInfo), 64, false);
	md->fx = make_hash("snapshot fx rates", sizeof(FxKey), sizeof(FxInfo),
					   SPI_processed * 2, true);

	/*
	 * Two passes: the latest rate of every pair, then, for a pair quoted only
	 * the other way, the inverse of that rate.
	 */
	for (int pass = 0; pass < 2; pass++)
	{
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			char	   *from = SPI_getvalue(tup, desc, 1);
			char	   *to = SPI_getvalue(tup, desc, 2);
			bool		isnull;
			Datum		rate_datum = SPI_getbinval(tup, desc, 3, &isnull);
			bool		found;
			FxKey		key;
			FxInfo	   *fx;
			Numeric		rate;

			if (from == NULL || to == NULL || isnull ||
				!amount_in_bounds(DatumGetNumeric(rate_datum)))
			{
				if (pass == 0)
					(*skipped)++;
				continue;
			}
			if (strlen(from) > SNAPSHOT_CURRENCY_MAXLEN || strlen(to) > SNAPSHOT_CURRENCY_MAXLEN)
				continue;
			key.from = snapshot_intern_currency(md, pass == 0 ? from : to);
			key.to = snapshot_intern_currency(md, pass == 0 ? to : from);
			fx = hash_search(md->fx, &key, HASH_ENTER, &found);
			if (found)
				continue;
			rate = DatumGetNumeric(rate_datum);
			fx->rate = pass == 0 ? amount_of(DatumGetNumericCopy(NumericGetDatum(rate)))
				: amount_div(amount_of(int64_to_numeric(1)), amount_of(rate));
			fx->rate_rounded = amount_numeric(amount_round(fx->rate));
		}
	}
	SPI_freetuptable(SPI_tuptable);

	/* the FX currency of each asset, looked up once */
	{
		HASH_SEQ_STATUS seq;
		AssetInfo  *a;

		hash_seq_init(&seq, md->assets);
		while ((a = hash_seq_search(&seq)) != NULL)
			a->currency_id = snapshot_currency_id(md, a->currency);
	}
	MemoryContextSwitchTo(caller);
}

/*
 * The condition restricting a cursor to the portfolios of its scope, on the
 * portfolio id column given: one portfolio ($2), a range ($3, $4) or all.
 */
static char *
walk_filter(const SourceScope *scope, const char *column)
{
	if (scope->single)
		return psprintf(" AND %s::pg_catalog.uuid OPERATOR(pg_catalog.=) $2", column);
	return psprintf("%s%s%s%s",
					scope->range.has_lo ? " AND " : "",
					scope->range.has_lo ? psprintf("%s::pg_catalog.uuid OPERATOR(pg_catalog.>=) $3", column) : "",
					scope->range.has_hi ? " AND " : "",
					scope->range.has_hi ? psprintf("%s::pg_catalog.uuid OPERATOR(pg_catalog.<) $4", column) : "");
}

/*
 * A fetched batch of a cursor's rows, received from the executor as the
 * walk reads them: each row's values and nulls, with the data of its
 * by-reference values copied end to end into blocks of the buffer's
 * context, reset before each fetch.  (SPI's tuple table formed each row
 * into a heap tuple, which the walk then deformed again.)
 */
#define ROW_BUFFER_BLOCK ((Size) 64 * 1024)

struct RowBuffer
{
	DestReceiver pub;			/* first: the buffer is the receiver */
	MemoryContext cxt;			/* the blocks; reset before each fetch */
	int			ncols;
	uint64		maxrows;		/* asked of a fetch */
	uint64		nrows;
	uint64		capacity;		/* rows the arrays hold, grown as rows come */
	Datum	   *values;			/* capacity rows of ncols */
	bool	   *nulls;
	char	   *block;			/* the block being filled */
	Size		used;
	Size		size;
	int16		typlen[SNAPSHOT_READER_COLUMNS];
	bool		typbyval[SNAPSHOT_READER_COLUMNS];

	/*
	 * A held buffer keeps the values of its earlier fetches, each fetch's in
	 * a context of its own, until its reader is released: the walk points
	 * into them until the portfolio they belong to is valued.
	 */
	bool		hold;
	MemoryContext parent;		/* of the fetches' contexts */
	MemoryContext *held;		/* earlier fetches' contexts */
	int			nheld;
	int			maxheld;
};

/* A copy of a by-reference value in the buffer's current block. */
static Datum
buffer_copy(RowBuffer *b, Datum value, int16 typlen)
{
	Pointer		p = DatumGetPointer(value);
	Size		len;
	char	   *copy;

	if (typlen == -1 && VARATT_IS_EXTERNAL_EXPANDED(p))
	{
		/* flattened, as a heap tuple would hold it */
		MemoryContext old = MemoryContextSwitchTo(b->cxt);

		value = datumCopy(value, false, -1);
		MemoryContextSwitchTo(old);
		return value;
	}
	len = typlen > 0 ? (Size) typlen : typlen == -1 ? VARSIZE_ANY(p) : strlen(p) + 1;
	b->used = MAXALIGN(b->used);
	if (b->block == NULL || b->used + len > b->size)
	{
		b->size = Max(ROW_BUFFER_BLOCK, MAXALIGN(len));
		b->block = MemoryContextAlloc(b->cxt, b->size);
		b->used = 0;
	}
	copy = b->block + b->used;
	memcpy(copy, p, len);
	b->used += len;
	return PointerGetDatum(copy);
}

static bool
buffer_receive(TupleTableSlot *slot, DestReceiver *self)
{
	RowBuffer  *b = (RowBuffer *) self;
	Datum	   *values;
	bool	   *nulls;

	if (b->nrows >= b->maxrows)
		elog(ERROR, "snapshot: a fetch returned more rows than it was asked for");
	if (b->nrows == b->capacity)
	{
		b->capacity = Min(b->capacity * 2, b->maxrows);
		b->values = repalloc(b->values, sizeof(Datum) * b->ncols * b->capacity);
		b->nulls = repalloc(b->nulls, sizeof(bool) * b->ncols * b->capacity);
	}
	values = &b->values[b->nrows * b->ncols];
	nulls = &b->nulls[b->nrows * b->ncols];
	slot_getallattrs(slot);
	for (int i = 0; i < b->ncols; i++)
	{
		nulls[i] = slot->tts_isnull[i];
		values[i] = nulls[i] || b->typbyval[i] ? slot->tts_values[i]
			: buffer_copy(b, slot->tts_values[i], b->typlen[i]);
	}
	b->nrows++;
	return true;
}

static void
buffer_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
	RowBuffer  *b = (RowBuffer *) self;

	if (typeinfo->natts != b->ncols)
		elog(ERROR, "snapshot: a source cursor returns %d columns, not %d",
			 typeinfo->natts, b->ncols);
}

static void
buffer_shutdown(DestReceiver *self)
{
}

static void
buffer_destroy(DestReceiver *self)
{
}

/* A buffer for fetches of maxrows rows of the given column types. */
static RowBuffer *
buffer_create(const Oid *result_types, int ncols, long maxrows)
{
	RowBuffer  *b = palloc0(sizeof(RowBuffer));

	Assert(ncols <= SNAPSHOT_READER_COLUMNS);
	b->pub.receiveSlot = buffer_receive;
	b->pub.rStartup = buffer_startup;
	b->pub.rShutdown = buffer_shutdown;
	b->pub.rDestroy = buffer_destroy;
	b->pub.mydest = DestNone;
	b->parent = CurrentMemoryContext;
	b->cxt = AllocSetContextCreate(b->parent, "snapshot fetched rows",
								   ALLOCSET_DEFAULT_SIZES);
	b->ncols = ncols;
	b->maxrows = maxrows;
	b->capacity = Min(maxrows, 64);
	b->values = palloc(sizeof(Datum) * ncols * b->capacity);
	b->nulls = palloc(sizeof(bool) * ncols * b->capacity);
	for (int i = 0; i < ncols; i++)
		get_typlenbyval(result_types[i], &b->typlen[i], &b->typbyval[i]);
	return b;
}

/* Empty the buffer for the next fetch; a held one keeps the last fetch's values. */
static void
buffer_reset(RowBuffer *b)
{
	if (b->hold && b->nrows > 0)
	{
		if (b->nheld == b->maxheld)
		{
			b->maxheld = Max(8, b->maxheld * 2);
			b->held = b->held == NULL
				? MemoryContextAlloc(b->parent, sizeof(MemoryContext) * b->maxheld)
				: repalloc(b->held, sizeof(MemoryContext) * b->maxheld);
		}
		b->held[b->nheld++] = b->cxt;
		b->cxt = AllocSetContextCreate(b->parent, "snapshot fetched rows",
									   ALLOCSET_DEFAULT_SIZES);
	}
	else
		MemoryContextReset(b->cxt);
	b->block = NULL;
	b->used = b->size = 0;
	b->nrows = 0;
}

/*
 * Open a no-scroll cursor for sql under the active snapshot; its rows have
 * the nresult types of result_types, where InvalidOid stands for the type
 * the query gives that column.
 */
static void
reader_open(RowReader *r, Oid owner, const char *sql, int nargs, Oid *types,
			Datum *values, const Oid *result_types, int nresult, long fetch_rows)
{
	TupleDesc	desc;

	memset(r, 0, sizeof(RowReader));
	r->fetch_rows = fetch_rows;
	r->types = palloc(sizeof(Oid) * nresult);
	memcpy(r->types, result_types, sizeof(Oid) * nresult);
	snapshot_source_cursor_open(&r->cursor, owner, sql, nargs, types, values,
								r->types, nresult);
	/* a column of any type takes the one the query gives it, checked from then on */
	desc = r->cursor.portal->tupDesc;
	if (desc == NULL || desc->natts != nresult)
		elog(ERROR, "snapshot: a source cursor returns %d columns, not %d",
			 desc ? desc->natts : 0, nresult);
	for (int i = 0; i < nresult; i++)
		if (r->types[i] == InvalidOid)
			r->types[i] = TupleDescAttr(desc, i)->atttypid;
	r->buffer = buffer_create(r->types, nresult, fetch_rows);
}

/*
 * Advance to the next row, pointing r->values / r->nulls at it; false at
 * the end.  Fetches the next batch when the current one is used up.
 */
static bool
reader_next_row(RowReader *r)
{
	RowBuffer  *b = r->buffer;

	if (r->next >= b->nrows)
	{
		buffer_reset(b);
		r->next = 0;
		r->values = NULL;
		r->nulls = NULL;
		if (r->exhausted)
			return false;
		r->exhausted = snapshot_source_cursor_fetch(&r->cursor, r->fetch_rows, &b->pub)
			< (uint64) r->fetch_rows;
		if (b->nrows == 0)
			return false;
	}
	r->values = &b->values[r->next * b->ncols];
	r->nulls = &b->nulls[r->next * b->ncols];
	r->next++;
	return true;
}

/* See snapshot_reads.h. */
bool
snapshot_reader_next(RowReader *r, int64 *skipped)
{
	while (reader_next_row(r))
	{
		if (!r->nulls[0])
			return true;
		(*skipped)++;
	}
	return false;
}

/* See snapshot_reads.h. */
void
snapshot_reader_hold(RowReader *r)
{
	r->buffer->hold = true;
}

/* See snapshot_reads.h. */
void
snapshot_reader_release(RowReader *r)
{
	RowBuffer  *b = r->buffer;

	for (int i = 0; i < b->nheld; i++)
		MemoryContextDelete(b->held[i]);
	b->nheld = 0;
}

void
snapshot_reader_close(RowReader *r)
{
	RowBuffer  *b = r->buffer;

	snapshot_reader_release(r);
	if (b->held != NULL)
		pfree(b->held);

	snapshot_source_cursor_close(&r->cursor);
	MemoryContextDelete(b->cxt);
	pfree(b->values);
	pfree(b->nulls);
	pfree(b);
	r->buffer = NULL;
	pfree(r->types);
	r->types = NULL;
}

/*
 * A NULL pointer for SQL NULL, else the value in the held buffer (a short
 * header kept: the valuation reads numerics through VARDATA_ANY and the
 * fmgr), or a copy in the current context when it is compressed or
 * external.
 */
static inline Numeric
ledger_numeric(const RowReader *r, int i)
{
	struct varlena *v;

	if (r->nulls[i])
		return NULL;
	v = (struct varlena *) DatumGetPointer(r->values[i]);
	if (VARATT_IS_COMPRESSED(v) || VARATT_IS_EXTERNAL(v))
		return DatumGetNumericCopy(r->values[i]);
	return (Numeric) v;
}

/*
 * The ledger cursor's current row as a ledger entry.  Columns: portfolio_id,
 * asset_id, type, quantity, price, fee, exchange_rate, transaction_date, id
 * (of its own type: turned into text only for a message).  A NULL where the valuation needs a value is left for it to
 * report.
 */
void
snapshot_reader_ledger_entry(const RowReader *t, LedgerEntry *e)
{
	const RowBuffer *b = t->buffer;

	e->asset = NULL;
	e->has_asset = !t->nulls[1];
	if (e->has_asset)
		e->asset_id = *DatumGetUUIDP(t->values[1]);
	e->type_text = t->nulls[2] ? NULL : pg_detoast_datum_packed((struct varlena *) DatumGetPointer(t->values[2]));
	e->type = snapshot_parse_txn_type(e->type_text);
	e->quantity = ledger_numeric(t, 3);
	e->price = ledger_numeric(t, 4);
	e->fee = ledger_numeric(t, 5);
	e->rate = ledger_numeric(t, 6);
	e->date_is_null = t->nulls[7];
	e->transaction_date = t->nulls[7] ? 0 : DatumGetTimestampTz(t->values[7]);
	e->txn_id_null = t->nulls[8];
	e->txn_id = t->nulls[8] ? (Datum) 0 : datumCopy(t->values[8], b->typbyval[8], b->typlen[8]);
}

/* The type of the ledger's transaction ids. */
void
snapshot_reader_txn_id_type(const RowReader *t, TxnIdType *type)
{
	bool		varlena;
	Oid			base;

	type->type = t->types[8];
	Assert(txn_id_read_as_is(type->type));
	get_typlenbyval(type->type, &type->typlen, &type->typbyval);
	getTypeOutputInfo(type->type, &type->typoutput, &varlena);
	base = getBaseType(type->type);
	type->by_text = base == TEXTOID || base == VARCHAROID;
}

/* The portfolios cursor's current base currency, or NULL. */
char *
snapshot_reader_base_currency(const RowReader *r)
{
	return r->nulls[1] ? NULL : TextDatumGetCString(r->values[1]);
}

/*
 * The walk's cursor parameters: $1 the end of the snapshot date's UTC day,
 * $2 the one portfolio of a single capture, $3 and $4 a range's bounds.
 * Datums by reference point into scope, which the cursor copies.
 */
static void
walk_params(const SourceScope *scope, DateADT date, Datum values[4])
{
	values[0] = TimestampTzGetDatum(((TimestampTz) date + 1) * USECS_PER_DAY);
	values[1] = UUIDPGetDatum(&scope->portfolio_id);
	values[2] = UUIDPGetDatum(&scope->range.lo);
	values[3] = UUIDPGetDatum(&scope->range.hi);
}

void
snapshot_open_portfolios(RowReader *r, const SnapshotConfig *config,
						 const SourceScope *scope, long fetch_rows)
{
	static const Oid result_types[] = {UUIDOID, TEXTOID};
	Oid			types[4] = {TIMESTAMPTZOID, UUIDOID, UUIDOID, UUIDOID};
	Datum		values[4];

	/* $1 is only there so that the parameters number as the ledger's do */
	walk_params(scope, 0, values);
	reader_open(r, config->owner,
				psprintf("SELECT p.id::pg_catalog.uuid,"
						 " pg_catalog.left(p.base_currency::pg_catalog.text, %d)"
						 " FROM %s p WHERE p.id IS NOT NULL AND $1 IS NOT NULL%s"
						 " ORDER BY p.id::pg_catalog.uuid",
						 SNAPSHOT_CURRENCY_MAXLEN + 1,
						 config->names[SOURCE_PORTFOLIOS], walk_filter(scope, "p.id")),
				4, types, values, result_types, lengthof(result_types), fetch_rows);
}

/*
 * The ledger cursor's query: the transaction ids as they are, or as text.
 */
static char *
ledger_sql(const SnapshotConfig *config, const SourceScope *scope, bool id_as_text)
{
	return psprintf("SELECT t.portfolio_id::pg_catalog.uuid, t.asset_id::pg_catalog.uuid,"
					" t.type::pg_catalog.text, t.quantity::pg_catalog.numeric,"
					" t.price::pg_catalog.numeric, t.fee::pg_catalog.numeric,"
					" t.exchange_rate::pg_catalog.numeric,"
					" t.transaction_date::pg_catalog.timestamptz, t.id%s"
					" FROM %s t"
					" WHERE (t.transaction_date::pg_catalog.timestamptz OPERATOR(pg_catalog.<) $1"
					" OR t.transaction_date IS NULL)"
					" AND t.portfolio_id IS NOT NULL%s"
					" ORDER BY t.portfolio_id::pg_catalog.uuid,"
					" t.transaction_date::pg_catalog.timestamptz, t.id",
					id_as_text ? "::pg_catalog.text" : "",
					config->names[SOURCE_TRANSACTIONS], walk_filter(scope, "t.portfolio_id"));
}

/*
 * Whether transaction ids of this type are read as they are: the integer
 * types, uuid and the text types (and domains over them), whose text is
 * what their built-in output function prints and whose equality is that of
 * their text.  Any other type is read as its ::text cast gives it, computed
 * by the cursor as the sources' owner.
 */
static bool
txn_id_read_as_is(Oid type)
{
	switch (getBaseType(type))
	{
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case OIDOID:
		case UUIDOID:
		case TEXTOID:
		case VARCHAROID:
			return true;
		default:
			return false;
	}
}

void
snapshot_open_ledger(RowReader *r, const SnapshotConfig *config,
					 const SourceScope *scope, DateADT date, long fetch_rows)
{
	Oid			result_types[] = {UUIDOID, UUIDOID, TEXTOID, NUMERICOID, NUMERICOID,
	NUMERICOID, NUMERICOID, TIMESTAMPTZOID, InvalidOid};
	Oid			types[4] = {TIMESTAMPTZOID, UUIDOID, UUIDOID, UUIDOID};
	Datum		values[4];

	StaticAssertStmt(lengthof(result_types) <= SNAPSHOT_READER_COLUMNS,
					 "a reader holds every column of the ledger cursor");
	walk_params(scope, date, values);
	reader_open(r, config->owner, ledger_sql(config, scope, false),
				4, types, values, result_types, lengthof(result_types), fetch_rows);
	if (!txn_id_read_as_is(r->types[8]))
	{
		snapshot_reader_close(r);
		result_types[8] = TEXTOID;
		reader_open(r, config->owner, ledger_sql(config, scope, true),
					4, types, values, result_types, lengthof(result_types), fetch_rows);
	}
}

/*
 * " AND p.id >= $n" / " AND p.id < $m" for the bounds a range has, with
 * their values appended to values[] from *nargs on.
 */
static char *
range_filter(const SnapshotRange *range, Oid *types, Datum *values, int *nargs)
{
	StringInfoData f;

	initStringInfo(&f);
	if (range != NULL && range->has_lo)
	{
		types[*nargs] = UUIDOID;
		values[*nargs] = UUIDPGetDatum(&range->lo);
		(*nargs)++;
		appendStringInfo(&f, " AND p.id::pg_catalog.uuid OPERATOR(pg_catalog.>=) $%d", *nargs);
	}
	if (range != NULL && range->has_hi)
	{
		types[*nargs] = UUIDOID;
		values[*nargs] = UUIDPGetDatum(&range->hi);
		(*nargs)++;
		appendStringInfo(&f, " AND p.id::pg_catalog.uuid OPERATOR(pg_catalog.<) $%d", *nargs);
	}
	return f.data;
}

void
snapshot_open_portfolio_ids(RowReader *r, const SnapshotConfig *config,
							const SnapshotRange *within, long fetch_rows)
{
	static const Oid result_types[] = {UUIDOID};
	Oid			types[2];
	Datum		values[2];
	int			nargs = 0;
	char	   *filter = range_filter(within, types, values, &nargs);

	reader_open(r, config->owner,
				psprintf("SELECT p.id::pg_catalog.uuid FROM %s p"
						 " WHERE p.id IS NOT NULL%s ORDER BY 1",
						 config->names[SOURCE_PORTFOLIOS], filter),
				nargs, types, values, result_types, lengthof(result_types), fetch_rows);
}

/* See snapshot_reads.h. */
int64
snapshot_count_portfolios(const SnapshotConfig *config, const SnapshotRange *within)
{
	bool		isnull;
	Oid			types[2];
	Datum		values[2];
	int			nargs = 0;
	char	   *filter = range_filter(within, types, values, &nargs);

	snapshot_source_query(config->owner,
						  psprintf("SELECT pg_catalog.count(*) FROM %s p WHERE p.id IS NOT NULL%s",
								   config->names[SOURCE_PORTFOLIOS], filter),
						  nargs, types, values, 0);
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									   1, &isnull));
}

/* See snapshot_reads.h. */
int
snapshot_split_every(const SnapshotConfig *config, const SnapshotRange *within, int64 every,
					 SnapshotRange **ranges)
{
	RowReader	ids;
	int64		count = 0;
	int64		skipped = 0;
	int			max = 16;
	int			n = 1;
	SnapshotRange *out = palloc0(sizeof(SnapshotRange) * max);

	/* the ids at positions every + 1, 2 * every + 1, ... start ranges */
	every = Max(every, 1);
	out[0] = *within;
	snapshot_open_portfolio_ids(&ids, config, within, 1000);
	while (snapshot_reader_next(&ids, &skipped))
	{
		const pg_uuid_t *bound = snapshot_reader_portfolio(&ids);
		int64		i = count++;

		CHECK_FOR_INTERRUPTS();
		if (i == 0 || i % every != 0)
			continue;
		/* an id listed more than every times is one bound */
		if (out[n - 1].has_lo && memcmp(out[n - 1].lo.data, bound->data, UUID_LEN) == 0)
			continue;
		if (n == max)
		{
			if ((Size) max * 2 > MaxAllocSize / sizeof(SnapshotRange))
				ereport(ERROR,
						errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						errmsg("too many ranges of %lld portfolios each", (long long) every));
			out = repalloc(out, sizeof(SnapshotRange) * max * 2);
			max *= 2;
		}
		out[n - 1].has_hi = true;
		out[n - 1].hi = *bound;
		memset(&out[n], 0, sizeof(SnapshotRange));
		out[n].has_lo = true;
		out[n].lo = *bound;
		out[n].has_hi = within->has_hi;
		out[n].hi = within->hi;
		n++;
	}
	snapshot_reader_close(&ids);
	*ranges = out;
	return n;
}
