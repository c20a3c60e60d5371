/*-------------------------------------------------------------------------
 *
 * snapshot_capture.c
 *	  One capture's machinery, shared by the calling backend and the
 *	  valuation workers: configuration, market data, the ordered ledger walk
 *	  with per-portfolio isolation, and the writer (partitions, the batched
 *	  upsert, run errors, progress).
 *
 * It calls only downward (the sources, the valuation, the amounts).  What a
 * walk values goes to the capture's sink when it has one (a valuation
 * worker's queue, snapshot_parallel.c), else to the batch and
 * snapshot_run_errors: the walk never asks who listens.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/backend_status.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/datum.h"
#include "utils/fmgrprotos.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "snapshot.h"
#include "snapshot_capture.h"
#include "snapshot_source.h"

/*
 * A batch is written once its values take this many bytes, whatever
 * snapshot.batch_size says, so that no batch column nears the 1 GB a value
 * may take; a single snapshot may take at most SNAPSHOT_ROW_MAX.
 */
#define SNAPSHOT_BATCH_BYTES ((Size) 32 * 1024 * 1024)
#define SNAPSHOT_ROW_MAX ((Size) 64 * 1024 * 1024)

/*
 * The most ledger rows a portfolio may have up to its snapshot date: their
 * entries (some 400 bytes each with their amounts) stay well within memory
 * and within the 1 GB a palloc may take.
 */
#define SNAPSHOT_LEDGER_MAX 1000000

int			snapshot_batch_size = 1000;


/*
 * Run one statement through SPI with parameters and check its result code.
 * Every statement of the capture that is not a read of the sources goes
 * through here or through a prepared plan checked the same way.
 */
void
snapshot_spi_run(const char *sql, int nargs, Oid *types, Datum *values,
		const char *nulls, bool read_only, int expected)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, values, nulls,
										   read_only, 0);

	if (rc != expected)
		elog(ERROR, "snapshot: SPI_execute_with_args returned %s for: %s",
			 SPI_result_code_string(rc), sql);
}

/*
 * Load the configuration and check the configured relations, locking them
 * until the transaction ends; 55000 when snapshot_configure() was never
 * called, or when the extension's SQL objects predate this library.
 */
static void
load_config(Capture *cap)
{
	StringInfoData sql;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	char	   *names[SNAPSHOT_RELATIONS];
	char	  **targets[SNAPSHOT_RELATIONS] = {&cap->config.portfolios, &cap->config.assets,
		&cap->config.transactions, &cap->config.prices, &cap->config.fx_rates};

	/* the date locks arrived with the 1.3 objects, which this library needs */
	if (!OidIsValid(get_relname_relid("capture_date_locks", cap->nspid)))
		ereport(ERROR,
				errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				errmsg("the snapshot extension's SQL objects are older than its library"),
				errdetail("This library needs version 1.3 or later of the extension's SQL objects."),
				errhint("Run ALTER EXTENSION snapshot UPDATE."));

	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "SELECT c.portfolios::pg_catalog.oid, c.assets::pg_catalog.oid,"
					 " c.transactions::pg_catalog.oid, c.prices::pg_catalog.oid,"
					 " c.fx_rates::pg_catalog.oid, c.cost_method, c.stale_after_days"
					 " FROM %s.snapshot_config c",
					 cap->nsp);
	snapshot_spi_run(sql.data, 0, NULL, NULL, NULL, true, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				errmsg("snapshot is not configured"),
				errhint("Call snapshot_configure() with the names of the application's portfolios, assets, transactions and prices relations."));

	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	for (int i = 0; i < SNAPSHOT_RELATIONS; i++)
	{
		Datum		d = SPI_getbinval(tup, desc, i + 1, &isnull);

		cap->config.relids[i] = isnull ? InvalidOid : DatumGetObjectId(d);
	}
	cap->config.cost_method_name = SPI_getvalue(tup, desc, 6);
	cap->config.stale_after_days = DatumGetInt32(SPI_getbinval(tup, desc, 7, &isnull));
	if (cap->config.cost_method_name == NULL || isnull)
		elog(ERROR, "snapshot: snapshot_config holds a NULL setting");
	cap->config.cost_method = strcmp(cap->config.cost_method_name, "average") == 0
		? COST_AVERAGE : COST_FIFO;

	/*
	 * The relations as they are now, not as they were configured; locked
	 * first, so that they stay so until this capture ends.
	 */
	cap->config.owner = snapshot_check_sources(cap->config.relids, true, names);
	for (int i = 0; i < SNAPSHOT_RELATIONS; i++)
		*targets[i] = names[i];
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
asset_filter(Capture *cap, const char *column)
{
	if (!cap->single)
		return "";
	return psprintf(" AND %s IN (SELECT t.asset_id::pg_catalog.uuid FROM %s t"
					" WHERE t.portfolio_id::pg_catalog.uuid = $2)",
					column, cap->config.transactions);
}

/*
 * The id of an FX currency (a code of at most SNAPSHOT_CURRENCY_MAXLEN
 * bytes), numbering it when new.
 */
static int
intern_currency(MarketData *md, const char *code)
{
	bool		found;
	CurrencyInfo *c = hash_search(md->currencies, code, HASH_ENTER, &found);

	if (!found)
		c->id = (int) hash_get_num_entries(md->currencies) - 1;
	return c->id;
}

/*
 * Build the asset, price and FX maps once for the capture, from the same
 * snapshot of the sources as the ledger walk.  A row whose key or value is
 * NULL, or whose amount is out of bounds, is skipped and counted in
 * cap->skipped_market (the same rows for every load of one capture).
 */
static void load_market_data(Capture *cap, int64 *skipped);

void
snapshot_load_market_data(Capture *cap)
{
	int64		skipped = 0;

	load_market_data(cap, &skipped);
	cap->skipped_market = Max(cap->skipped_market, skipped);
}

/*
 * snapshot_load_market_data(), counting the rows skipped in *skipped.
 */
static void
load_market_data(Capture *cap, int64 *skipped)
{
	Oid			types[2] = {DATEOID, UUIDOID};
	Datum		values[2];
	char	   *sql;
	MarketData *md = &cap->md;
	Oid			owner = cap->config.owner;

	values[0] = DateADTGetDatum(md->snapshot_date);
	values[1] = UUIDPGetDatum(&cap->portfolio_id);

	sql = psprintf("SELECT a.id::pg_catalog.uuid, a.symbol::pg_catalog.text,"
				   " a.currency::pg_catalog.text FROM %s a"
				   " WHERE $1 IS NOT NULL%s",
				   cap->config.assets, asset_filter(cap, "a.id::pg_catalog.uuid"));
	snapshot_source_query(owner, sql, cap->single ? 2 : 1, types, values, 0);
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
		a->symbol = SPI_getvalue(tup, desc, 2);
		if (a->symbol == NULL)
			a->symbol = "";
		a->currency = SPI_getvalue(tup, desc, 3);
		a->currency_id = -1;
		a->has_price = false;
	}
	SPI_freetuptable(SPI_tuptable);
	snapshot_rank_assets(md);

	sql = psprintf("SELECT DISTINCT ON (p.asset_id::pg_catalog.uuid)"
				   " p.asset_id::pg_catalog.uuid, p.price_date::pg_catalog.date,"
				   " p.close::pg_catalog.numeric FROM %s p"
				   " WHERE p.price_date::pg_catalog.date OPERATOR(pg_catalog.<=) $1"
				   " AND p.close::pg_catalog.numeric OPERATOR(pg_catalog.>=) 0"
				   " AND p.close::pg_catalog.numeric OPERATOR(pg_catalog.<) 'Infinity'%s"
				   " ORDER BY p.asset_id::pg_catalog.uuid, p.price_date::pg_catalog.date DESC",
				   cap->config.prices, asset_filter(cap, "p.asset_id::pg_catalog.uuid"));
	snapshot_source_query(owner, sql, cap->single ? 2 : 1, types, values, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		id_null,
					date_null,
					close_null;
		Datum		id = SPI_getbinval(tup, desc, 1, &id_null);
		Datum		date = SPI_getbinval(tup, desc, 2, &date_null);
		Datum		close = SPI_getbinval(tup, desc, 3, &close_null);
		AssetInfo  *a;

		if (id_null || date_null || close_null || !amount_in_bounds(DatumGetNumeric(close)))
		{
			(*skipped)++;
			continue;
		}

		/* a price of an asset the assets relation lacks is never used */
		a = hash_search(md->assets, DatumGetUUIDP(id), HASH_FIND, NULL);
		if (a == NULL)
			continue;
		a->price_date = DatumGetDateADT(date);
		a->has_price = true;
		a->close = amount_of(DatumGetNumericCopy(close));
		a->close_rounded = amount_numeric(amount_round(a->close));
	}
	SPI_freetuptable(SPI_tuptable);

	md->currencies = NULL;
	md->fx = NULL;
	if (cap->config.fx_rates == NULL)
		return;
	sql = psprintf("SELECT DISTINCT ON (f.from_currency::pg_catalog.text, f.to_currency::pg_catalog.text)"
				   " f.from_currency::pg_catalog.text, f.to_currency::pg_catalog.text,"
				   " f.rate::pg_catalog.numeric FROM %s f"
				   " WHERE f.rate_date::pg_catalog.date OPERATOR(pg_catalog.<=) $1"
				   " AND f.rate::pg_catalog.numeric OPERATOR(pg_catalog.>) 0"
				   " AND f.rate::pg_catalog.numeric OPERATOR(pg_catalog.<) 'Infinity'"
				   " ORDER BY 1, 2, f.rate_date::pg_catalog.date DESC",
				   cap->config.fx_rates);
	snapshot_source_query(owner, sql, 1, types, values, 0);
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
			key.from = intern_currency(md, pass == 0 ? from : to);
			key.to = intern_currency(md, pass == 0 ? to : from);
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
}

/*
 * The metadata stored with every snapshot of this capture.
 */
Datum
snapshot_build_metadata(Capture *cap, const char *triggered_by)
{
	Oid			types[4] = {TEXTOID, TEXTOID, INT4OID, INT8OID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', cap->run_id ? ' ' : 'n'};
	bool		isnull;

	values[0] = CStringGetTextDatum(triggered_by);
	values[1] = CStringGetTextDatum(cap->config.cost_method_name);
	values[2] = Int32GetDatum(cap->config.stale_after_days);
	values[3] = Int64GetDatum(cap->run_id);
	snapshot_spi_run("SELECT pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object("
			"'triggered_by', $1, 'cost_method', $2, 'stale_after_days', $3, 'run_id', $4,"
			" 'extension_version', (SELECT e.extversion FROM pg_catalog.pg_extension e"
			" WHERE e.extname OPERATOR(pg_catalog.=) 'snapshot')))",
			4, types, values, nulls, true, SPI_OK_SELECT);
	return SPI_datumTransfer(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
										   1, &isnull),
							 false, -1);
}

/*
 * The month holding date d: its first day, the first day of the next, and
 * the name of its partition.
 */
SnapshotMonth
snapshot_month_of(DateADT d)
{
	SnapshotMonth month;
	int			y,
				m,
				day;

	j2date(d + POSTGRES_EPOCH_JDATE, &y, &m, &day);
	month.first = date2j(y, m, 1) - POSTGRES_EPOCH_JDATE;
	month.next = (m == 12 ? date2j(y + 1, 1, 1) : date2j(y, m + 1, 1)) - POSTGRES_EPOCH_JDATE;
	month.partition = psprintf("portfolio_snapshots_y%04dm%02d", y, m);
	return month;
}

/*
 * Make sure the month partition holding date d exists.  It is created as a
 * plain table and then attached, because ATTACH PARTITION takes only a SHARE
 * UPDATE EXCLUSIVE lock on portfolio_snapshots, which readers and writers of
 * snapshots never wait for (CREATE TABLE ... PARTITION OF would block them
 * until the capture commits).
 */
void
snapshot_ensure_partition(Capture *cap, DateADT d)
{
	SnapshotMonth month = snapshot_month_of(d);
	const char *name = month.partition;
	char	   *qualified;
	Oid			parent;
	char	   *parent_name;

	if (OidIsValid(get_relname_relid(name, cap->nspid)))
		return;

	/* serialize creators; LockRelationOid also refreshes our catalog view */
	parent = get_relname_relid("portfolio_snapshots", cap->nspid);
	if (!OidIsValid(parent))
		elog(ERROR, "snapshot: table portfolio_snapshots is missing");
	LockRelationOid(parent, ShareUpdateExclusiveLock);
	if (OidIsValid(get_relname_relid(name, cap->nspid)))
		return;

	qualified = psprintf("%s.%s", cap->nsp, quote_identifier(name));
	parent_name = psprintf("%s.portfolio_snapshots", cap->nsp);
	snapshot_spi_run(psprintf("CREATE TABLE %s (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS"
					 " INCLUDING STORAGE INCLUDING COMPRESSION,"
					 " PRIMARY KEY (portfolio_id, snapshot_date))",
					 qualified, parent_name),
			0, NULL, NULL, NULL, false, SPI_OK_UTILITY);
	snapshot_spi_run(psprintf("ALTER TABLE %s ATTACH PARTITION %s FOR VALUES FROM ('%s') TO ('%s')",
					 parent_name, qualified,
					 snapshot_date_iso(month.first), snapshot_date_iso(month.next)),
			0, NULL, NULL, NULL, false, SPI_OK_UTILITY);
}

/*
 * Prepare the upsert of a batch of snapshots: one statement per batch, the
 * rows passed as parallel arrays.  The date's partition must exist.
 */
void
snapshot_prepare_upsert(Capture *cap)
{
	/* the columns fed by the batch arrays $5.., in the order of cap->batch */
	static const char *const columns[SNAPSHOT_BATCH_ARRAYS] = {
		"portfolio_id", "base_currency",
		"market_value", "cash_balance", "net_worth", "total_cost", "unrealized_pnl",
		"realized_pnl", "income", "fees", "net_contribution", "day_flow",
		"position_count", "missing_prices", "stale_prices", "missing_fx", "positions",
	};
	Oid			types[4 + SNAPSHOT_BATCH_ARRAYS] = {DATEOID, INT8OID, JSONBOID, TIMESTAMPTZOID};
	StringInfoData sql;
	StringInfoData select;
	StringInfoData update;

	initStringInfo(&sql);
	initStringInfo(&select);
	initStringInfo(&update);

	/*
	 * Every row of a capture has the same date, so the upsert goes straight
	 * to that month's partition and its primary key arbitrates conflicts.
	 * The arrays are unnested in the select list (in lockstep), which
	 * streams the rows; unnest in FROM would first copy the whole batch into
	 * a tuplestore.
	 */
	appendStringInfo(&sql, "INSERT INTO %s.%s AS s (snapshot_date, run_id, metadata, captured_at",
					 cap->nsp, quote_identifier(snapshot_month_of(cap->md.snapshot_date).partition));
	appendStringInfoString(&select, "SELECT $1, $2, $3, $4");
	appendStringInfoString(&update, "run_id = EXCLUDED.run_id, metadata = EXCLUDED.metadata,"
						   " captured_at = EXCLUDED.captured_at");
	for (int i = 0; i < SNAPSHOT_BATCH_ARRAYS; i++)
	{
		Oid			elemtype = i == 0 ? UUIDOID
			: i == 1 ? TEXTOID
			: i < 12 ? NUMERICOID
			: i < 16 ? INT4OID
			: JSONBOID;

		types[4 + i] = get_array_type(elemtype);
		appendStringInfo(&sql, ", %s", columns[i]);
		appendStringInfo(&select, ", pg_catalog.unnest($%d)", i + 5);
		if (i > 0)
			appendStringInfo(&update, ", %s = EXCLUDED.%s", columns[i], columns[i]);
	}
	appendStringInfo(&sql, ") %s ON CONFLICT (portfolio_id, snapshot_date) DO UPDATE SET %s",
					 select.data, update.data);

	cap->upsert_plan = SPI_prepare(sql.data, 4 + SNAPSHOT_BATCH_ARRAYS, types);
	if (cap->upsert_plan == NULL)
		elog(ERROR, "snapshot: SPI_prepare failed (%s) for: %s",
			 SPI_result_code_string(SPI_result), sql.data);
}

/*
 * Start the batch's columns: portfolio_id, base_currency, the ten numeric
 * figures, the four counts and positions, in the order of the upsert's
 * arrays.  Their buffers live in the batch context.
 */
static void
batch_init(Capture *cap)
{
	for (int i = 0; i < SNAPSHOT_BATCH_ARRAYS; i++)
	{
		BatchColumn *c = &cap->batch[i];

		c->elemtype = i == 0 ? UUIDOID
			: i == 1 ? TEXTOID
			: i < 12 ? NUMERICOID
			: i < 16 ? INT4OID
			: JSONBOID;
		c->typlen = i == 0 ? UUID_LEN : (i >= 12 && i < 16) ? (int16) sizeof(int32) : -1;
		c->typalign = i == 0 ? TYPALIGN_CHAR : TYPALIGN_INT;
		c->size = 8192;
		c->buf = MemoryContextAllocZero(cap->batch_cxt, c->size);
		c->len = ARR_OVERHEAD_NONULLS(1);
	}
}

/*
 * Append one element to a batch column: typlen bytes, or a varlena (whose
 * pointer need not be aligned) with its 4-byte header.
 */
static Size
batch_append(BatchColumn *c, const char *value)
{
	Size		start = att_align_nominal(c->len, c->typalign);
	Size		n;
	uint32		header = 0;
	bool		short_header = false;

	if (c->typlen > 0)
		n = c->typlen;
	else if (VARATT_IS_1B(value))
	{
		/* a short header is widened: array elements carry 4-byte headers */
		if (VARATT_IS_1B_E(value))
			elog(ERROR, "snapshot: unexpected TOAST pointer in a snapshot value");
		short_header = true;
		n = VARSIZE_1B(value) - VARHDRSZ_SHORT + VARHDRSZ;
	}
	else
	{
		memcpy(&header, value, sizeof(uint32));
		if (VARATT_IS_4B_C(&header))
			elog(ERROR, "snapshot: unexpected compressed snapshot value");
		n = VARSIZE_4B(&header);
	}

	if (start + n > c->size)
	{
		Size		size = c->size;

		while (start + n > size)
			size *= 2;
		c->buf = repalloc(c->buf, size);
		memset(c->buf + c->size, 0, size - c->size);
		c->size = size;
	}
	memset(c->buf + c->len, 0, start - c->len);
	if (short_header)
	{
		SET_VARSIZE(c->buf + start, n);
		memcpy(c->buf + start + VARHDRSZ, value + VARHDRSZ_SHORT, n - VARHDRSZ);
	}
	else
		memcpy(c->buf + start, value, n);
	c->len = start + n;
	return n;
}

/*
 * The column as an array of its nbatch elements.
 */
static Datum
batch_column_array(BatchColumn *c, int nbatch)
{
	ArrayType  *a;
	Size		end = att_align_nominal(c->len, c->typalign);

	/* padded after the last element too, as construct_array does */
	if (end > c->size)
	{
		c->buf = repalloc(c->buf, end);
		c->size = end;
	}
	memset(c->buf + c->len, 0, end - c->len);
	c->len = end;
	a = (ArrayType *) c->buf;
	SET_VARSIZE(a, c->len);
	a->ndim = 1;
	a->dataoffset = 0;
	a->elemtype = c->elemtype;
	ARR_DIMS(a)[0] = nbatch;
	ARR_LBOUND(a)[0] = 1;
	return PointerGetDatum(a);
}

/*
 * Add one valued portfolio to the batch.  fields points to the portfolio
 * id (pg_uuid_t), the base currency (text), the ten numeric figures, the
 * four counts (int32) and positions (jsonb), in the order of the batch
 * columns; varlenas may be unaligned.  They are copied.  The batch is
 * written once it holds snapshot.batch_size portfolios or
 * SNAPSHOT_BATCH_BYTES of values.
 */
void
snapshot_batch_add(Capture *cap, const void *const *fields)
{
	if (cap->batch[0].buf == NULL)
		batch_init(cap);
	for (int i = 0; i < SNAPSHOT_BATCH_ARRAYS; i++)
		cap->batch_bytes += batch_append(&cap->batch[i], fields[i]);
	cap->nbatch++;
	cap->captured++;
	if (cap->nbatch >= snapshot_batch_size || cap->batch_bytes >= SNAPSHOT_BATCH_BYTES)
		snapshot_batch_flush(cap);
}

/*
 * Queue one portfolio's figures: into the batch, or to the leader when this
 * is a valuation worker.
 */
static void
queue_figures(Capture *cap, const PortfolioLedger *ledger, const SnapshotFigures *f)
{
	const void *fields[SNAPSHOT_BATCH_ARRAYS] = {
		&ledger->id, NULL,
		f->market_value, f->cash_balance, f->net_worth, f->total_cost, f->unrealized_pnl,
		f->realized_pnl, f->income, f->fees, f->net_contribution, f->day_flow,
		&f->position_count, &f->missing_prices, &f->stale_prices, &f->missing_fx,
		f->positions,
	};

	if (cap->sink != NULL)
	{
		cap->sink->figures(cap, &ledger->id, ledger->base_currency, f);
		cap->captured++;
		return;
	}
	fields[1] = cstring_to_text(ledger->base_currency);
	snapshot_batch_add(cap, fields);
}

/*
 * Show the run's progress in pg_stat_activity.query.
 */
void
snapshot_report_progress(Capture *cap)
{
	char		activity[128];

	snprintf(activity, sizeof(activity),
			 "capture_all_snapshots: " INT64_FORMAT "/" INT64_FORMAT " portfolios",
			 cap->walked, cap->total);
	pgstat_report_activity(STATE_RUNNING, activity);
}

/*
 * Write the batch with one upsert and report progress.
 */
void
snapshot_batch_flush(Capture *cap)
{
	Datum		values[4 + SNAPSHOT_BATCH_ARRAYS];
	char		nulls[4 + SNAPSHOT_BATCH_ARRAYS];
	int			rc;

	if (cap->nbatch > 0)
	{
		memset(nulls, ' ', sizeof(nulls));
		values[0] = DateADTGetDatum(cap->md.snapshot_date);
		values[1] = Int64GetDatum(cap->run_id);
		nulls[1] = cap->run_id ? ' ' : 'n';
		values[2] = cap->metadata;
		values[3] = TimestampTzGetDatum(cap->captured_at);
		for (int i = 0; i < SNAPSHOT_BATCH_ARRAYS; i++)
			values[4 + i] = batch_column_array(&cap->batch[i], cap->nbatch);

		rc = SPI_execute_plan(cap->upsert_plan, values, nulls, false, 0);
		if (rc != SPI_OK_INSERT)
			elog(ERROR, "snapshot: upsert of snapshots returned %s",
				 SPI_result_code_string(rc));
		cap->nbatch = 0;
		cap->batch_bytes = 0;
		for (int i = 0; i < SNAPSHOT_BATCH_ARRAYS; i++)
			cap->batch[i].len = ARR_OVERHEAD_NONULLS(1);
	}

	if (!cap->single && cap->sink == NULL)
		snapshot_report_progress(cap);
}

/*
 * Record a portfolio that could not be valued, in snapshot_run_errors or, in
 * a valuation worker, by telling the leader.
 */
void
snapshot_record_error(Capture *cap, const pg_uuid_t *portfolio_id, int sqlerrcode,
					  const char *message, const char *detail)
{
	Oid			types[5] = {INT8OID, UUIDOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', detail ? ' ' : 'n'};
	char	   *sql;

	cap->failed++;
	if (cap->sink != NULL)
	{
		cap->sink->error(cap, portfolio_id, sqlerrcode, message, detail);
		return;
	}
	values[0] = Int64GetDatum(cap->run_id);
	values[1] = UUIDPGetDatum(portfolio_id);
	values[2] = CStringGetTextDatum(unpack_sql_state(sqlerrcode));
	values[3] = CStringGetTextDatum(message ? message : "unknown error");
	values[4] = detail ? CStringGetTextDatum(detail) : (Datum) 0;
	sql = psprintf("INSERT INTO %s.snapshot_run_errors"
				   " (run_id, portfolio_id, sqlstate, message, detail)"
				   " VALUES ($1, $2, $3, $4, $5)", cap->nsp);
	snapshot_spi_run(sql, 5, types, values, nulls, false, SPI_OK_INSERT);
}

/*
 * Value one portfolio inside a subtransaction, as PL/pgSQL's exception block
 * does, so that a data error rolls back only this portfolio.  Returns false
 * and sets *edata (allocated in errcxt) on error.  The valuation does no SPI
 * and writes nothing, so the subtransaction never takes an XID.
 */
static bool
value_isolated(const MarketData *md, const PortfolioLedger *ledger,
			   SnapshotFigures *out, MemoryContext errcxt, ErrorData **edata)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	volatile bool ok = true;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		snapshot_value_portfolio(md, ledger, out);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(errcxt);
		*edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;

		/*
		 * A cancel, a statement timeout or a shutdown ends the capture, never
		 * just this portfolio (PL/pgSQL's WHEN OTHERS does not catch it either).
		 */
		if (ERRCODE_TO_CATEGORY((*edata)->sqlerrcode) == ERRCODE_OPERATOR_INTERVENTION)
			ReThrowError(*edata);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/*
 * A portfolio id the portfolios relation lists again (a view, say): its
 * ledger went with the first row, which was valued; this one is an error,
 * raised by a single capture and recorded by a capture of all.
 */
static void
duplicate_portfolio(Capture *cap, PortfolioLedger *ledger)
{
	const char *detail = "Its ledger was valued once, with the first row.";
	char	   *message;

	message = psprintf("portfolio %s is listed more than once by the portfolios relation",
					   DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(&ledger->id))));
	cap->walked++;
	if (cap->single)
		ereport(ERROR,
				errcode(ERRCODE_DATA_EXCEPTION),
				errmsg_internal("%s", message),
				errdetail_internal("%s", detail),
				errhint("Make the portfolios relation list each id once."));
	snapshot_record_error(cap, &ledger->id, ERRCODE_DATA_EXCEPTION, message, detail);
}

/*
 * A portfolio beyond what a capture values (54000): raised by a single
 * capture, recorded by a capture of all.
 */
static void
portfolio_too_large(Capture *cap, PortfolioLedger *ledger, const char *message,
					const char *detail)
{
	if (cap->single)
		ereport(ERROR,
				errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				errmsg_internal("%s", message),
				errdetail_internal("%s", detail));
	snapshot_record_error(cap, &ledger->id, ERRCODE_PROGRAM_LIMIT_EXCEEDED, message, detail);
}

/*
 * Value one portfolio whose whole ledger has been read, and queue its
 * snapshot.  Runs in the per-portfolio memory context.  A single capture raises data errors; a capture of all isolates
 * and records them, keeping any earlier snapshot of that portfolio and date.
 */
static void
finish_portfolio(Capture *cap, PortfolioLedger *ledger)
{
	SnapshotFigures figures;
	ErrorData  *edata = NULL;

	cap->walked++;
	if (ledger->too_long)
	{
		portfolio_too_large(cap, ledger,
							psprintf("portfolio %s has more than %d ledger rows up to %s",
									 DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(&ledger->id))),
									 SNAPSHOT_LEDGER_MAX, snapshot_date_iso(cap->md.snapshot_date)),
							"A capture values a portfolio of at most 1,000,000 ledger rows.");
		return;
	}
	if (cap->single)
		snapshot_value_portfolio(&cap->md, ledger, &figures);
	else if (!value_isolated(&cap->md, ledger, &figures, CurrentMemoryContext, &edata))
	{
		snapshot_record_error(cap, &ledger->id, edata->sqlerrcode, edata->message,
							  edata->detail);
		return;
	}
	if (VARSIZE(figures.positions) > SNAPSHOT_ROW_MAX)
	{
		portfolio_too_large(cap, ledger,
							psprintf("portfolio %s: its snapshot would take %zu MB, more than the %zu MB a snapshot may take",
									 DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(&ledger->id))),
									 (Size) VARSIZE(figures.positions) / (1024 * 1024),
									 SNAPSHOT_ROW_MAX / (1024 * 1024)),
							psprintf("Its positions array holds %d positions.", figures.position_count));
		return;
	}
	queue_figures(cap, ledger, &figures);
}

/*
 * An ordered, read-only cursor over the sources, read in batches as their
 * owner, one deformed row at a time.  The current row's values point into
 * the fetched batch, which stays valid until the next call to reader_next().
 */
typedef struct RowReader
{
	SourceCursor cursor;
	long		fetch_rows;
	SPITupleTable *tuptable;
	uint64		nrows;
	uint64		next;
	bool		exhausted;
	Datum		values[9];
	bool		nulls[9];
} RowReader;

/*
 * Open a no-scroll cursor for sql under the active snapshot; its rows have
 * the nresult types of result_types.
 */
static void
reader_open(RowReader *r, Oid owner, const char *sql, int nargs, Oid *types,
			Datum *values, const Oid *result_types, int nresult, long fetch_rows)
{
	memset(r, 0, sizeof(RowReader));
	r->fetch_rows = fetch_rows;
	snapshot_source_cursor_open(&r->cursor, owner, sql, nargs, types, values,
								result_types, nresult);
}

/*
 * Advance to the next row and deform it into r->values / r->nulls; false at
 * the end.  Fetches the next batch when the current one is used up.
 */
static bool
reader_next(RowReader *r)
{
	if (r->next >= r->nrows)
	{
		if (r->tuptable != NULL)
			SPI_freetuptable(r->tuptable);
		r->tuptable = NULL;
		r->nrows = r->next = 0;
		if (r->exhausted)
			return false;
		snapshot_source_cursor_fetch(&r->cursor, r->fetch_rows);
		r->tuptable = SPI_tuptable;
		r->nrows = SPI_processed;
		r->exhausted = SPI_processed < (uint64) r->fetch_rows;
		if (r->nrows == 0)
			return false;
		Assert(r->tuptable->tupdesc->natts <= (int) lengthof(r->values));
	}
	heap_deform_tuple(r->tuptable->vals[r->next++], r->tuptable->tupdesc,
					  r->values, r->nulls);
	return true;
}

/*
 * Advance to the next row whose first column (a portfolio id) is not NULL,
 * counting the rows passed over in *skipped; false at the end.
 */
static bool
reader_next_keyed(RowReader *r, int64 *skipped)
{
	while (reader_next(r))
	{
		if (!r->nulls[0])
			return true;
		(*skipped)++;
	}
	return false;
}

static void
reader_close(RowReader *r)
{
	if (r->tuptable != NULL)
		SPI_freetuptable(r->tuptable);
	snapshot_source_cursor_close(&r->cursor);
}

/* a NULL pointer for SQL NULL, else a copy in the current context */
#define NUMERIC_OR_NULL(r, i) \
	((r)->nulls[i] ? NULL : DatumGetNumericCopy((r)->values[i]))

/*
 * Append the ledger reader's current row to the ledger being collected.
 * Columns: portfolio_id, asset_id, type, quantity, price, fee,
 * exchange_rate, transaction_date, id (as text).  A NULL where the
 * valuation needs a value is left for it to report.
 */
static void
collect_row(PortfolioLedger *ledger, RowReader *t)
{
	LedgerEntry *e;

	if (ledger->nentries == ledger->maxentries)
	{
		ledger->maxentries = ledger->maxentries == 0 ? 16 : ledger->maxentries * 2;
		ledger->entries = ledger->entries == NULL
			? palloc(sizeof(LedgerEntry) * ledger->maxentries)
			: repalloc(ledger->entries, sizeof(LedgerEntry) * ledger->maxentries);
	}
	e = &ledger->entries[ledger->nentries++];
	e->asset = NULL;
	e->has_asset = !t->nulls[1];
	if (e->has_asset)
		e->asset_id = *DatumGetUUIDP(t->values[1]);
	e->type_text = t->nulls[2] ? NULL : TextDatumGetCString(t->values[2]);
	e->type = snapshot_parse_txn_type(e->type_text);
	e->quantity = NUMERIC_OR_NULL(t, 3);
	e->price = NUMERIC_OR_NULL(t, 4);
	e->fee = NUMERIC_OR_NULL(t, 5);
	e->rate = NUMERIC_OR_NULL(t, 6);
	e->date_is_null = t->nulls[7];
	e->transaction_date = t->nulls[7] ? 0 : DatumGetTimestampTz(t->values[7]);
	e->txn_id = t->nulls[8] ? "(null)" : TextDatumGetCString(t->values[8]);
}

/*
 * The condition restricting a walk to the portfolios it covers, on the
 * portfolio id column given: one portfolio ($2), a range ($3, $4) or all.
 */
static char *
walk_filter(Capture *cap, const char *column)
{
	if (cap->single)
		return psprintf(" AND %s::pg_catalog.uuid OPERATOR(pg_catalog.=) $2", column);
	return psprintf("%s%s%s%s",
					cap->range.has_lo ? " AND " : "",
					cap->range.has_lo ? psprintf("%s::pg_catalog.uuid OPERATOR(pg_catalog.>=) $3", column) : "",
					cap->range.has_hi ? " AND " : "",
					cap->range.has_hi ? psprintf("%s::pg_catalog.uuid OPERATOR(pg_catalog.<) $4", column) : "");
}

/*
 * Walk the portfolios and their ledgers in one ordered pass and value each:
 * two cursors, portfolios by id and the ledger by (portfolio_id,
 * transaction_date, id), both in the order of an index (so nothing is
 * sorted), merged here.  The cursors are read outside any subtransaction (a
 * portal read inside a subtransaction that rolls back would be marked
 * failed), as the sources' owner; rows are gathered per portfolio in a
 * context reset after each one, so memory stays flat.  A row without a
 * portfolio id belongs to no portfolio: it is skipped and counted.
 */
void
snapshot_walk(Capture *cap)
{
	Oid			types[4] = {TIMESTAMPTZOID, UUIDOID, UUIDOID, UUIDOID};
	static const Oid portfolio_types[] = {UUIDOID, TEXTOID};
	static const Oid ledger_types[] = {UUIDOID, UUIDOID, TEXTOID, NUMERICOID, NUMERICOID,
	NUMERICOID, NUMERICOID, TIMESTAMPTZOID, TEXTOID};
	Datum		values[4];
	RowReader	portfolios;
	RowReader	ledger_rows;
	bool		have_txn;
	MemoryContext portfolio_cxt;
	PortfolioLedger ledger;
	pg_uuid_t	previous;
	bool		have_previous = false;
	long		fetch_rows = Max(snapshot_batch_size * 10L, 100L);

	/*
	 * The ledger: transactions dated before the end of the UTC day.  $2 is
	 * the one portfolio of a single capture; $3 and $4 bound a worker's range.
	 */
	values[0] = TimestampTzGetDatum(((TimestampTz) cap->md.snapshot_date + 1) * USECS_PER_DAY);
	values[1] = UUIDPGetDatum(&cap->portfolio_id);
	values[2] = UUIDPGetDatum(&cap->range.lo);
	values[3] = UUIDPGetDatum(&cap->range.hi);

	reader_open(&portfolios, cap->config.owner,
				psprintf("SELECT p.id::pg_catalog.uuid, p.base_currency::pg_catalog.text"
						 " FROM %s p WHERE p.id IS NOT NULL AND $1 IS NOT NULL%s"
						 " ORDER BY p.id::pg_catalog.uuid",
						 cap->config.portfolios, walk_filter(cap, "p.id")),
				4, types, values, portfolio_types, lengthof(portfolio_types),
				Max(snapshot_batch_size, 100));
	reader_open(&ledger_rows, cap->config.owner,
				psprintf("SELECT t.portfolio_id::pg_catalog.uuid, t.asset_id::pg_catalog.uuid,"
						 " t.type::pg_catalog.text, t.quantity::pg_catalog.numeric,"
						 " t.price::pg_catalog.numeric, t.fee::pg_catalog.numeric,"
						 " t.exchange_rate::pg_catalog.numeric,"
						 " t.transaction_date::pg_catalog.timestamptz, t.id::pg_catalog.text"
						 " FROM %s t"
						 " WHERE t.transaction_date::pg_catalog.timestamptz OPERATOR(pg_catalog.<) $1"
						 " AND t.portfolio_id IS NOT NULL%s"
						 " ORDER BY t.portfolio_id::pg_catalog.uuid,"
						 " t.transaction_date::pg_catalog.timestamptz, t.id",
						 cap->config.transactions, walk_filter(cap, "t.portfolio_id")),
				4, types, values, ledger_types, lengthof(ledger_types), fetch_rows);

	portfolio_cxt = AllocSetContextCreate(CurrentMemoryContext, "snapshot portfolio",
										  ALLOCSET_DEFAULT_SIZES);
	have_txn = reader_next_keyed(&ledger_rows, &cap->skipped_walk);
	while (reader_next_keyed(&portfolios, &cap->skipped_walk))
	{
		MemoryContext old;
		int			cmp = -1;

		CHECK_FOR_INTERRUPTS();
		memset(&ledger, 0, sizeof(ledger));
		ledger.id = *DatumGetUUIDP(portfolios.values[0]);
		old = MemoryContextSwitchTo(portfolio_cxt);
		ledger.base_currency = portfolios.nulls[1] ? NULL
			: TextDatumGetCString(portfolios.values[1]);

		/*
		 * Skip the ledger rows of portfolios the portfolios relation lacks,
		 * then gather this one's.  A fetch returns in the SPI procedure's
		 * context, so the portfolio's context is selected again after each.
		 */
		while (have_txn &&
			   (cmp = memcmp(DatumGetUUIDP(ledger_rows.values[0])->data, ledger.id.data,
							 UUID_LEN)) < 0)
			have_txn = reader_next_keyed(&ledger_rows, &cap->skipped_walk);
		while (have_txn && cmp == 0)
		{
			MemoryContextSwitchTo(portfolio_cxt);
			if (ledger.nentries < SNAPSHOT_LEDGER_MAX)
				collect_row(&ledger, &ledger_rows);
			else
				ledger.too_long = true;
			have_txn = reader_next_keyed(&ledger_rows, &cap->skipped_walk);
			cmp = have_txn ? memcmp(DatumGetUUIDP(ledger_rows.values[0])->data,
									ledger.id.data, UUID_LEN) : 1;
		}

		MemoryContextSwitchTo(portfolio_cxt);
		if (have_previous && memcmp(previous.data, ledger.id.data, UUID_LEN) == 0)
			duplicate_portfolio(cap, &ledger);
		else
			finish_portfolio(cap, &ledger);
		previous = ledger.id;
		have_previous = true;
		MemoryContextSwitchTo(old);
		MemoryContextReset(portfolio_cxt);
	}
	reader_close(&ledger_rows);
	reader_close(&portfolios);
	snapshot_batch_flush(cap);
	MemoryContextDelete(portfolio_cxt);
}

/*
 * Open SPI and load and check the configuration: the bracket both capture
 * functions, and each valuation worker, open.  Everything allocated lives
 * until SPI_finish().
 */
void
snapshot_capture_setup(Capture *cap, Oid nspid, DateADT snapshot_date)
{
	cap->nspid = nspid;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "snapshot: SPI_connect failed");
	cap->nsp = quote_identifier(get_namespace_name(cap->nspid));
	cap->md.snapshot_date = snapshot_date;
	cap->captured_at = GetCurrentTransactionStartTimestamp();
	cap->batch_cxt = AllocSetContextCreate(CurrentMemoryContext, "snapshot batch",
										   ALLOCSET_DEFAULT_SIZES);
	load_config(cap);
	cap->md.cost_method = cap->config.cost_method;
	cap->md.stale_after_days = cap->config.stale_after_days;
}

/*
 * Serialize captures of one date: lock the date's row of
 * capture_date_locks until the transaction ends, creating it first.  Only
 * the extension's owner has any privilege on that table, so no other role
 * can hold the lock; a capture that waits shows "Lock" in pg_stat_activity.
 */
void
snapshot_lock_date(Capture *cap, DateADT d)
{
	Oid			types[1] = {DATEOID};
	Datum		values[1] = {DateADTGetDatum(d)};

	pgstat_report_activity(STATE_RUNNING,
						   "capture_all_snapshots: waiting for another capture of the same date");
	snapshot_spi_run(psprintf("INSERT INTO %s.capture_date_locks AS l (snapshot_date) VALUES ($1)"
					 " ON CONFLICT (snapshot_date) DO NOTHING", cap->nsp),
			1, types, values, NULL, false, SPI_OK_INSERT);
	snapshot_spi_run(psprintf("SELECT FROM %s.capture_date_locks l"
					 " WHERE l.snapshot_date OPERATOR(pg_catalog.=) $1 FOR UPDATE", cap->nsp),
			1, types, values, NULL, false, SPI_OK_SELECT);
}

/*
 * Whether every portfolio the portfolios relation lists now has a snapshot
 * of the capture's date: the portfolio ids, read by a cursor as the
 * sources' owner, merged in id order with the date's snapshots, read in
 * pages with the capture's own rights.  No cursor with the capture's rights
 * is open while the owner's code runs.
 */
bool
snapshot_date_is_covered(Capture *cap)
{
	static const Oid id_types[] = {UUIDOID};
	Oid			types[2] = {DATEOID, UUIDOID};
	Datum		values[2];
	char		nulls[2] = {' ', 'n'};
	char	   *page_sql;
	RowReader	portfolios;
	pg_uuid_t  *page = palloc(sizeof(pg_uuid_t) * 1000);
	pg_uuid_t	last;
	uint64		npage = 0;
	uint64		next = 0;
	bool		exhausted = false;
	bool		covered = true;
	int64		skipped = 0;

	values[0] = DateADTGetDatum(cap->md.snapshot_date);
	page_sql = psprintf("SELECT s.portfolio_id FROM %s.portfolio_snapshots s"
						" WHERE s.snapshot_date OPERATOR(pg_catalog.=) $1"
						" AND ($2 IS NULL OR s.portfolio_id OPERATOR(pg_catalog.>) $2)"
						" ORDER BY s.portfolio_id LIMIT 1000", cap->nsp);
	reader_open(&portfolios, cap->config.owner,
				psprintf("SELECT p.id::pg_catalog.uuid FROM %s p"
						 " WHERE p.id IS NOT NULL AND $1 IS NOT NULL ORDER BY 1",
						 cap->config.portfolios),
				1, types, values, id_types, lengthof(id_types), 1000);
	while (covered && reader_next_keyed(&portfolios, &skipped))
	{
		const pg_uuid_t *id = DatumGetUUIDP(portfolios.values[0]);
		int			cmp = -1;

		CHECK_FOR_INTERRUPTS();
		for (;;)
		{
			if (next == npage)
			{
				if (exhausted)
					break;
				snapshot_spi_run(page_sql, 2, types, values, nulls, true, SPI_OK_SELECT);
				npage = 0;
				for (uint64 i = 0; i < SPI_processed; i++)
				{
					bool		isnull;
					Datum		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
												  1, &isnull);

					if (!isnull)
						page[npage++] = *DatumGetUUIDP(d);
				}
				exhausted = SPI_processed < 1000;
				SPI_freetuptable(SPI_tuptable);
				next = 0;
				if (npage == 0)
					break;
				last = page[npage - 1];
				values[1] = UUIDPGetDatum(&last);
				nulls[1] = ' ';
			}
			cmp = memcmp(page[next].data, id->data, UUID_LEN);
			if (cmp >= 0)
				break;
			next++;
		}
		covered = next < npage && cmp == 0;
	}
	reader_close(&portfolios);
	return covered;
}

