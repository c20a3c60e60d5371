/*-------------------------------------------------------------------------
 *
 * snapshot_writer.c
 *	  What a capture writes, in the calling backend: the month partitions,
 *	  the batched upsert of the rows its sink receives, run errors,
 *	  progress, the date's lock and the snapshots' metadata.  Every
 *	  statement runs with the capture's rights (the extension owner's, in
 *	  its own tables), through snapshot_spi_run() or a prepared plan.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/heaptoast.h"
#include "access/hio.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/toast_internals.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/backend_status.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/acl.h"
#include "utils/resowner.h"

#include "snapshot_writer.h"

/*
 * A batch is written once its values take this many bytes, whatever
 * snapshot.batch_size says, so that no batch column nears the 1 GB a value
 * may take.
 */
#define SNAPSHOT_BATCH_BYTES ((Size) 32 * 1024 * 1024)

/* The most direct inserts a writer makes, each in a subtransaction. */
#define SNAPSHOT_MAX_INSERTS 32

/* The columns of the direct write that are the capture's, not a row's */
#define DIRECT_DATE (SNAPSHOT_COLUMNS + 1)
#define DIRECT_RUN_ID (SNAPSHOT_COLUMNS + 2)
#define DIRECT_METADATA (SNAPSHOT_COLUMNS + 3)
#define DIRECT_CAPTURED_AT (SNAPSHOT_COLUMNS + 4)

static const struct
{
	const char *name;
	int			value;
	Oid			type;
}			direct_extras[] =
{
	{"snapshot_date", DIRECT_DATE, DATEOID},
	{"run_id", DIRECT_RUN_ID, INT8OID},
	{"metadata", DIRECT_METADATA, JSONBOID},
	{"captured_at", DIRECT_CAPTURED_AT, TIMESTAMPTZOID},
};

int			snapshot_batch_size = 1000;

/*
 * Define snapshot.batch_size, which bounds a batch's work, so only a
 * superuser may change it.
 */
void
snapshot_writer_init(void)
{
	DefineCustomIntVariable("snapshot.batch_size",
							"Portfolios valued and written per batch by the capture functions.",
							"The ledger cursor is fetched ten rows per portfolio of a batch at a time; "
							"a batch is also written once it holds 32 MB.",
							&snapshot_batch_size,
							1000, 1, 100000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
}

/*
 * Serialize captures of one date: lock the date's row of
 * capture_date_locks until the transaction ends, creating it first.  Only
 * the extension's owner has any privilege on that table, so no other role
 * can hold the lock; a capture that waits shows "Lock" in pg_stat_activity.
 */
void
snapshot_lock_date(const char *nsp, DateADT d)
{
	Oid			types[1] = {DATEOID};
	Datum		values[1] = {DateADTGetDatum(d)};

	pgstat_report_activity(STATE_RUNNING,
						   "capture_all_snapshots: waiting for another capture of the same date");
	snapshot_spi_run(psprintf("INSERT INTO %s.capture_date_locks AS l (snapshot_date) VALUES ($1)"
					 " ON CONFLICT (snapshot_date) DO NOTHING", nsp),
			1, types, values, NULL, false, SPI_OK_INSERT);
	snapshot_spi_run(psprintf("SELECT FROM %s.capture_date_locks l"
					 " WHERE l.snapshot_date OPERATOR(pg_catalog.=) $1 FOR UPDATE", nsp),
			1, types, values, NULL, false, SPI_OK_SELECT);
}

/*
 * The metadata stored with every snapshot of a capture.
 */
Datum
snapshot_build_metadata(const char *triggered_by, const char *cost_method,
						const ValuationRules *rules, int64 run_id)
{
	Oid			types[5] = {TEXTOID, TEXTOID, INT4OID, INT8OID, NUMERICOID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', run_id ? ' ' : 'n', ' '};
	bool		isnull;

	values[0] = CStringGetTextDatum(triggered_by);
	values[1] = CStringGetTextDatum(cost_method);
	values[2] = Int32GetDatum(rules->stale_after_days);
	values[3] = Int64GetDatum(run_id);
	values[4] = NumericGetDatum(rules->quantity_tolerance);
	snapshot_spi_run("SELECT pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object("
					 "'triggered_by', $1, 'cost_method', $2, 'stale_after_days', $3,"
					 " 'quantity_tolerance', $5, 'run_id', $4,"
					 " 'extension_version', (SELECT e.extversion FROM pg_catalog.pg_extension e"
					 " WHERE e.extname OPERATOR(pg_catalog.=) 'snapshot')))",
					 5, types, values, nulls, true, SPI_OK_SELECT);
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
snapshot_ensure_partition(Oid nspid, const char *nsp, DateADT d)
{
	SnapshotMonth month = snapshot_month_of(d);
	const char *name = month.partition;
	char	   *qualified;
	Oid			parent;
	char	   *parent_name;

	if (OidIsValid(get_relname_relid(name, nspid)))
		return;

	/* serialize creators; LockRelationOid also refreshes our catalog view */
	parent = get_relname_relid("portfolio_snapshots", nspid);
	if (!OidIsValid(parent))
		elog(ERROR, "snapshot: table portfolio_snapshots is missing");
	LockRelationOid(parent, ShareUpdateExclusiveLock);
	if (OidIsValid(get_relname_relid(name, nspid)))
		return;

	qualified = psprintf("%s.%s", nsp, quote_identifier(name));
	parent_name = psprintf("%s.portfolio_snapshots", nsp);
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
 * See snapshot_writer.h.  A capture in the current month also creates next
 * month's partition, so that the first captures of a month find it
 * committed and never wait for one another's uncommitted partition.
 */
void
snapshot_ensure_partitions(Oid nspid, const char *nsp, DateADT d)
{
	DateADT		today = snapshot_utc_date(GetCurrentTransactionStartTimestamp());

	snapshot_ensure_partition(nspid, nsp, d);
	if (snapshot_month_of(d).next == snapshot_month_of(today).next)
		snapshot_ensure_partition(nspid, nsp, snapshot_month_of(d).next);
}

/*
 * Prepare the upsert of a batch of snapshots: one statement per batch, the
 * rows passed as parallel arrays, one per column of the row descriptor
 * ($5 on).  The date's partition must exist.
 */
static SPIPlanPtr
prepare_upsert(SnapshotWriter *w)
{
	Oid			types[4 + SNAPSHOT_COLUMNS] = {DATEOID, INT8OID, JSONBOID, TIMESTAMPTZOID};
	StringInfoData sql;
	StringInfoData select;
	StringInfoData update;
	SPIPlanPtr	plan;

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
					 w->nsp, quote_identifier(snapshot_month_of(w->snapshot_date).partition));
	appendStringInfoString(&select, "SELECT $1, $2, $3, $4");
	appendStringInfoString(&update, "run_id = EXCLUDED.run_id, metadata = EXCLUDED.metadata,"
						   " captured_at = EXCLUDED.captured_at");
	for (int c = 0; c < SNAPSHOT_COLUMNS; c++)
	{
		const char *column = snapshot_columns[c].name;

		types[4 + c] = get_array_type(snapshot_column_type(c));
		appendStringInfo(&sql, ", %s", column);
		appendStringInfo(&select, ", pg_catalog.unnest($%d)", c + 5);
		if (c != SNAP_PORTFOLIO_ID)
			appendStringInfo(&update, ", %s = EXCLUDED.%s", column, column);
	}
	appendStringInfo(&sql, ") %s ON CONFLICT (portfolio_id, snapshot_date) DO UPDATE SET %s",
					 select.data, update.data);

	/* the same plan for every batch: a custom plan per batch gains nothing */
	plan = SPI_prepare_cursor(sql.data, 4 + SNAPSHOT_COLUMNS, types, CURSOR_OPT_GENERIC_PLAN);
	if (plan == NULL)
		elog(ERROR, "snapshot: SPI_prepare failed (%s) for: %s",
			 SPI_result_code_string(SPI_result), sql.data);
	return plan;
}

/*
 * Start the batch's columns, one per column of the row descriptor.  Their
 * buffers live in the batch context.
 */
static void
batch_init(SnapshotWriter *w)
{
	for (int c = 0; c < SNAPSHOT_COLUMNS; c++)
	{
		BatchColumn *col = &w->batch[c];

		col->elemtype = snapshot_column_type(c);
		col->typlen = snapshot_column_typlen(c);
		col->typalign = snapshot_column_typalign(c);
		col->size = 8192;
		col->buf = MemoryContextAllocZero(w->batch_cxt, col->size);
		col->len = ARR_OVERHEAD_NONULLS(1);
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
 * The direct write.  While a capture's snapshots are new, its batches skip
 * the executor: each row is formed into a tuple of the date's partition as
 * it arrives, and a batch goes in with the table's multi-insert, its
 * indexes maintained and its constraints checked as INSERT does.  That is
 * only INSERT's meaning when nothing else would run on an insert into the
 * partition, so it is used only for a plain heap table that has no
 * triggers, no rules, no row security and no generated or identity
 * columns, whose columns are exactly those the writer fills (no typmod to
 * coerce to), on which the capture may insert, and when no security module
 * hooks the executor's permission checks (sepgsql, pgaudit's object audit);
 * otherwise every batch is upserted.  Each direct insert takes a
 * subtransaction id of its own.
 */
static bool
direct_begin(SnapshotWriter *w)
{
	const char *partition = snapshot_month_of(w->snapshot_date).partition;
	Oid			relid;
	Relation	rel;
	TupleDesc	desc;
	bool		ok;
	int			matched = 0;

	relid = DatumGetObjectId(DirectFunctionCall1(regclassin,
												 CStringGetDatum(psprintf("%s.%s", w->nsp,
																		  quote_identifier(partition)))));
	/* the lock INSERT takes, kept until the transaction ends */
	rel = table_open(relid, RowExclusiveLock);
	desc = RelationGetDescr(rel);
	ok = rel->rd_rel->relkind == RELKIND_RELATION && rel->rd_rel->relam == HEAP_TABLE_AM_OID &&
		rel->trigdesc == NULL && rel->rd_rules == NULL &&
		!(desc->constr && desc->constr->has_generated_stored) &&
		check_enable_rls(relid, InvalidOid, true) != RLS_ENABLED &&
		pg_class_aclcheck(relid, GetUserId(), ACL_INSERT) == ACLCHECK_OK &&
		ExecutorCheckPerms_hook == NULL;

	/*
	 * The columns are exactly the ones the writer fills, each once, of the
	 * type it writes, without a typmod to coerce to, and none an identity.
	 */
	w->natts = desc->natts;
	w->attnum = MemoryContextAlloc(w->batch_cxt, sizeof(int) * desc->natts);
	for (int i = 0; ok && i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		const char *name = NameStr(att->attname);
		Oid			type = InvalidOid;

		w->attnum[i] = -1;
		if (att->attisdropped)
			continue;
		for (int c = 0; c < SNAPSHOT_COLUMNS; c++)
			if (strcmp(name, snapshot_columns[c].name) == 0)
			{
				w->attnum[i] = c;
				type = snapshot_column_type(c);
			}
		for (int e = 0; e < (int) lengthof(direct_extras); e++)
			if (strcmp(name, direct_extras[e].name) == 0)
			{
				w->attnum[i] = direct_extras[e].value;
				type = direct_extras[e].type;
			}
		ok = type == att->atttypid && att->atttypmod == -1 && att->attidentity == '\0';
		matched += ok;
	}
	ok = ok && matched == SNAPSHOT_COLUMNS + (int) lengthof(direct_extras);
	if (ok)
	{
		MemoryContext old = MemoryContextSwitchTo(w->batch_cxt);

		w->partition = relid;
		w->desc = CreateTupleDescCopy(desc);
		w->values = palloc(sizeof(Datum) * desc->natts);
		w->isnull = palloc(sizeof(bool) * desc->natts);
		w->maxtuples = 64;
		w->tuples = palloc(sizeof(HeapTuple) * w->maxtuples);
		w->slots = palloc(sizeof(TupleTableSlot *) * w->maxtuples);
		for (int i = 0; i < w->maxtuples; i++)
			w->slots[i] = MakeSingleTupleTableSlot(w->desc, &TTSOpsHeapTuple);
		/* as COPY: a ring of buffers, so the writes do not evict the reads */
		w->bistate = GetBulkInsertState();
		w->toast_target = RelationGetToastTupleTarget(rel, (int) TOAST_TUPLE_TARGET);
		w->positions_att = -1;
		for (int i = 0; i < desc->natts; i++)
			if (w->attnum[i] == SNAP_POSITIONS)
				w->positions_att = i;
		MemoryContextSwitchTo(old);
	}
	table_close(rel, NoLock);
	return ok;
}

/*
 * A varlena of a row, its 4-byte header int-aligned (a queue message's need
 * not be; a 1-byte header needs no alignment).
 */
static Datum
aligned_varlena(const void *value)
{
	uint32		header;
	void	   *copy;

	if (VARATT_IS_1B(value) || ((uintptr_t) value) % sizeof(uint32) == 0)
		return PointerGetDatum(value);
	memcpy(&header, value, sizeof(uint32));
	copy = palloc(VARSIZE_4B(&header));
	memcpy(copy, value, VARSIZE_4B(&header));
	return PointerGetDatum(copy);
}

/*
 * A row's size as heap_form_tuple() would make it: header, null bitmap and
 * data; *data the data alone.
 */
static Size
row_size(const SnapshotWriter *w, Size *data)
{
	bool		has_nulls = false;

	for (int i = 0; i < w->natts; i++)
		has_nulls |= w->isnull[i];
	*data = heap_compute_data_size(w->desc, w->values, w->isnull);
	return MAXALIGN(SizeofHeapTupleHeader + (has_nulls ? BITMAPLEN(w->natts) : 0)) + *data;
}

/*
 * Compress the positions array before the row is formed, where the toaster
 * would compress it and do nothing else: the row is over
 * TOAST_TUPLE_THRESHOLD and its data over the partition's toast tuple
 * target, the array is the value the toaster takes first (its largest
 * compressible one, the first of equals), compressing it saves more than 2
 * bytes (toast_compress_datum() decides, with the column's method), and the
 * data then fits the target.  The toaster would form the row a second time
 * around the compressed array; formed once, the row is the same.  In any
 * other case the row goes to the toaster as it is.  Returns the bytes the
 * compression saved.  The target is the partition's when the writer began
 * and as each batch is inserted (a change during a capture holds from the
 * next batch on: a row compressed under the old one is as valid).
 */
static Size
compress_positions(SnapshotWriter *w)
{
	int			p = w->positions_att;
	struct varlena *value;
	Size		size;
	Size		data;
	Datum		compressed;
	Form_pg_attribute att;

	if (p < 0 || w->isnull[p])
		return 0;
	value = (struct varlena *) DatumGetPointer(w->values[p]);
	att = TupleDescAttr(w->desc, p);
	if (VARATT_IS_EXTENDED(value) || att->attstorage != TYPSTORAGE_EXTENDED)
		return 0;
	size = row_size(w, &data);
	if (size <= TOAST_TUPLE_THRESHOLD || (int64) data <= (int64) w->toast_target - (int64) (size - data))
		return 0;
	for (int i = 0; i < w->natts; i++)
	{
		Form_pg_attribute other = TupleDescAttr(w->desc, i);
		struct varlena *v;

		if (i == p || w->isnull[i] || other->attlen != -1 ||
			(other->attstorage != TYPSTORAGE_EXTENDED && other->attstorage != TYPSTORAGE_EXTERNAL))
			continue;
		v = (struct varlena *) DatumGetPointer(w->values[i]);
		if (VARATT_IS_COMPRESSED(v))
			continue;
		if (VARSIZE_ANY(v) > VARSIZE(value) || (i < p && VARSIZE_ANY(v) == VARSIZE(value)))
			return 0;
	}
	compressed = toast_compress_datum(w->values[p], att->attcompression);
	if (DatumGetPointer(compressed) == NULL)
		return 0;
	w->values[p] = compressed;
	size = row_size(w, &data);
	if ((int64) data > (int64) w->toast_target - (int64) (size - data))
	{
		/* the toaster would go on: it gets the row as it is */
		pfree(DatumGetPointer(compressed));
		w->values[p] = PointerGetDatum(value);
		return 0;
	}
	return VARSIZE(value) - VARSIZE(DatumGetPointer(compressed));
}

/* Form a row into a tuple of the partition, held until the batch is written. */
static void
direct_append(SnapshotWriter *w, const SnapshotRow *row)
{
	MemoryContext old = MemoryContextSwitchTo(w->tuple_cxt);
	HeapTuple	tuple;
	Size		saved;

	for (int i = 0; i < w->natts; i++)
	{
		int			c = w->attnum[i];

		w->isnull[i] = false;
		switch (c)
		{
			case -1:
				w->isnull[i] = true;	/* a dropped column */
				break;
			case DIRECT_DATE:
				w->values[i] = DateADTGetDatum(w->snapshot_date);
				break;
			case DIRECT_RUN_ID:
				w->values[i] = Int64GetDatum(w->run_id);
				w->isnull[i] = w->run_id == 0;
				break;
			case DIRECT_METADATA:
				w->values[i] = w->metadata;
				break;
			case DIRECT_CAPTURED_AT:
				w->values[i] = TimestampTzGetDatum(w->captured_at);
				break;
			default:
				switch (snapshot_columns[c].kind)
				{
					case SNAPSHOT_KIND_INT4:
						w->values[i] = Int32GetDatum(row->ints[c]);
						break;
					case SNAPSHOT_KIND_UUID:
						w->values[i] = UUIDPGetDatum((pg_uuid_t *) row->fields[c]);
						break;
					default:
						w->values[i] = aligned_varlena(row->fields[c]);
						break;
				}
		}
	}
	saved = compress_positions(w);
	tuple = heap_form_tuple(w->desc, w->values, w->isnull);
	if (w->nbatch >= w->maxtuples)
	{
		MemoryContextSwitchTo(w->batch_cxt);
		w->tuples = repalloc(w->tuples, sizeof(HeapTuple) * w->maxtuples * 2);
		w->slots = repalloc(w->slots, sizeof(TupleTableSlot *) * w->maxtuples * 2);
		for (int i = w->maxtuples; i < w->maxtuples * 2; i++)
			w->slots[i] = MakeSingleTupleTableSlot(w->desc, &TTSOpsHeapTuple);
		w->maxtuples *= 2;
		MemoryContextSwitchTo(w->tuple_cxt);
	}
	w->tuples[w->nbatch] = tuple;
	/* the batch's bound is on its values as an upsert would hold them */
	w->batch_bytes += tuple->t_len + saved;
	MemoryContextSwitchTo(old);
}

/*
 * Insert the batch's tuples into the partition, in a subtransaction; false,
 * with nothing written, when a snapshot of the batch exists already (23505).
 * Any other error is raised.
 */
static bool
insert_direct(SnapshotWriter *w)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool inserted = true;

	w->inserts++;
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		Relation	rel = table_open(w->partition, RowExclusiveLock);
		EState	   *estate = CreateExecutorState();
		ResultRelInfo *rri = makeNode(ResultRelInfo);
		TupleTableSlot **slots = w->slots;

		/* what the statement would see: a snapshot of its own, as SPI takes */
		PushActiveSnapshot(GetTransactionSnapshot());
		estate->es_snapshot = GetActiveSnapshot();
		w->toast_target = RelationGetToastTupleTarget(rel, (int) TOAST_TUPLE_TARGET);
		InitResultRelInfo(rri, rel, 0, NULL, 0);
		ExecOpenIndices(rri, false);
		for (int i = 0; i < w->nbatch; i++)
		{
			/* the slot's to free, once the batch is written (see the flush) */
			ExecStoreHeapTuple(w->tuples[i], slots[i], true);

			/*
			 * NOT NULL and CHECK constraints; a row without a NULL meets
			 * every NOT NULL, so without a CHECK it is not deformed again.
			 */
			if (rel->rd_att->constr &&
				(rel->rd_att->constr->num_check > 0 || HeapTupleHasNulls(w->tuples[i])))
				ExecConstraints(rri, slots[i], estate);
			ResetPerTupleExprContext(estate);
		}
		/* the rows share their date: the partition's bounds checked once */
		if (rel->rd_rel->relispartition)
			(void) ExecPartitionCheck(rri, slots[0], estate, true);
		table_multi_insert(rel, slots, w->nbatch, GetCurrentCommandId(true), 0, w->bistate);
		/* the pin belongs to the subtransaction's resource owner */
		ReleaseBulkInsertStatePin(w->bistate);
		for (int i = 0; i < w->nbatch; i++)
		{
			list_free(ExecInsertIndexTuples(rri, slots[i], estate, false, false, NULL, NIL));
			ResetPerTupleExprContext(estate);
		}
		ExecCloseIndices(rri);
		FreeExecutorState(estate);
		table_close(rel, NoLock);
		PopActiveSnapshot();
		CommandCounterIncrement();

		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		/*
		 * The rollback released the pin the bulk-insert state held; the
		 * state is dropped (not freed: it would release the pin again), as
		 * the writer upserts from here or the error ends the capture.
		 */
		w->bistate = NULL;
		if (edata->sqlerrcode != ERRCODE_UNIQUE_VIOLATION)
			ReThrowError(edata);
		inserted = false;
	}
	PG_END_TRY();
	return inserted;
}

/* Move the batch's tuples into its columns, for the upsert. */
static void
tuples_to_columns(SnapshotWriter *w)
{
	for (int t = 0; t < w->nbatch; t++)
	{
		heap_deform_tuple(w->tuples[t], w->desc, w->values, w->isnull);
		for (int i = 0; i < w->natts; i++)
		{
			int			c = w->attnum[i];
			int32		v;

			if (c < 0 || c >= SNAPSHOT_COLUMNS)
				continue;
			if (snapshot_columns[c].kind == SNAPSHOT_KIND_INT4)
			{
				v = DatumGetInt32(w->values[i]);
				w->batch_bytes += batch_append(&w->batch[c], (const char *) &v);
			}
			else if (snapshot_columns[c].kind == SNAPSHOT_KIND_UUID)
				w->batch_bytes += batch_append(&w->batch[c], DatumGetPointer(w->values[i]));
			else
				/* the positions array may have been compressed */
				w->batch_bytes += batch_append(&w->batch[c],
											   (const char *) pg_detoast_datum_packed((struct varlena *) DatumGetPointer(w->values[i])));
		}
	}
}

/*
 * The writer's sink: add one valued portfolio to the batch, copying its
 * values; the batch is written once it holds snapshot.batch_size portfolios
 * or SNAPSHOT_BATCH_BYTES of values.
 */
static void
writer_receive_row(CaptureSink *self, const SnapshotRow *row)
{
	SnapshotWriter *w = (SnapshotWriter *) self;

	if (w->direct)
		direct_append(w, row);
	else
		for (int c = 0; c < SNAPSHOT_COLUMNS; c++)
			w->batch_bytes += batch_append(&w->batch[c], snapshot_row_value(row, c));
	w->nbatch++;
	w->captured++;
	if (w->nbatch >= snapshot_batch_size || w->batch_bytes >= SNAPSHOT_BATCH_BYTES)
		snapshot_writer_flush(w);
}

/*
 * Show the run's progress in pg_stat_activity.query.
 */
void
snapshot_report_progress(const SnapshotWriter *w)
{
	char		activity[128];

	snprintf(activity, sizeof(activity),
			 "capture_all_snapshots: " INT64_FORMAT "/" INT64_FORMAT " portfolios",
			 w->captured + w->failed, w->total);
	pgstat_report_activity(STATE_RUNNING, activity);
}

/*
 * Upsert the batch's columns: one statement, one row per element.
 */
static void
upsert_batch(SnapshotWriter *w)
{
	Datum		values[4 + SNAPSHOT_COLUMNS];
	char		nulls[4 + SNAPSHOT_COLUMNS];
	int			rc;

	memset(nulls, ' ', sizeof(nulls));
	values[0] = DateADTGetDatum(w->snapshot_date);
	values[1] = Int64GetDatum(w->run_id);
	nulls[1] = w->run_id ? ' ' : 'n';
	values[2] = w->metadata;
	values[3] = TimestampTzGetDatum(w->captured_at);
	for (int i = 0; i < SNAPSHOT_COLUMNS; i++)
		values[4 + i] = batch_column_array(&w->batch[i], w->nbatch);
	if (w->upsert_plan == NULL)
		w->upsert_plan = prepare_upsert(w);
	rc = SPI_execute_plan(w->upsert_plan, values, nulls, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "snapshot: upsert of snapshots returned %s", SPI_result_code_string(rc));
}

/*
 * Write the batch and report progress.  A writer of new snapshots inserts
 * its batches straight into the partition (insert_direct()), each in a
 * subtransaction; once a snapshot of the date turns out to exist, or after
 * SNAPSHOT_MAX_INSERTS batches, it upserts.  The bound keeps the
 * subtransactions that took an XID within what each backend caches (64), so
 * other sessions' snapshots stay cheap.
 */
void
snapshot_writer_flush(SnapshotWriter *w)
{
	if (w->nbatch > 0)
	{
		if (w->direct)
		{
			bool		inserted = insert_direct(w);

			/* the date has snapshots already: this batch and the next upsert */
			if (!inserted)
				tuples_to_columns(w);
			for (int i = 0; i < w->nbatch; i++)
				ExecClearTuple(w->slots[i]);
			w->direct = inserted && w->inserts < SNAPSHOT_MAX_INSERTS;
			if (!inserted)
				upsert_batch(w);
		}
		else
			upsert_batch(w);
		w->nbatch = 0;
		w->batch_bytes = 0;
		for (int i = 0; i < SNAPSHOT_COLUMNS; i++)
			w->batch[i].len = ARR_OVERHEAD_NONULLS(1);
		MemoryContextReset(w->tuple_cxt);
	}

	if (w->total >= 0)
		snapshot_report_progress(w);
}

/*
 * The writer's sink: record a portfolio that could not be valued in
 * snapshot_run_errors.
 */
static void
writer_receive_error(CaptureSink *self, const pg_uuid_t *portfolio_id, int sqlerrcode,
					 const char *message, const char *detail)
{
	SnapshotWriter *w = (SnapshotWriter *) self;
	Oid			types[5] = {INT8OID, UUIDOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', detail ? ' ' : 'n'};
	char	   *sql;

	w->failed++;
	values[0] = Int64GetDatum(w->run_id);
	values[1] = UUIDPGetDatum(portfolio_id);
	values[2] = CStringGetTextDatum(unpack_sql_state(sqlerrcode));
	values[3] = CStringGetTextDatum(message ? message : "unknown error");
	values[4] = detail ? CStringGetTextDatum(detail) : (Datum) 0;
	sql = psprintf("INSERT INTO %s.snapshot_run_errors"
				   " (run_id, portfolio_id, sqlstate, message, detail)"
				   " VALUES ($1, $2, $3, $4, $5)", w->nsp);
	snapshot_spi_run(sql, 5, types, values, nulls, false, SPI_OK_INSERT);
}

/*
 * Start a writer (see snapshot_writer.h).
 */
void
snapshot_writer_begin(SnapshotWriter *w, const char *nsp, DateADT date, int64 run_id,
					  Datum metadata, int64 total, bool insert_first)
{
	memset(w, 0, sizeof(SnapshotWriter));
	w->sink.receive_row = writer_receive_row;
	w->sink.receive_error = writer_receive_error;
	w->nsp = nsp;
	w->snapshot_date = date;
	w->run_id = run_id;
	w->metadata = metadata;
	w->captured_at = GetCurrentTransactionStartTimestamp();
	w->total = total;
	w->batch_cxt = AllocSetContextCreate(CurrentMemoryContext, "snapshot batch",
										 ALLOCSET_DEFAULT_SIZES);
	w->tuple_cxt = AllocSetContextCreate(w->batch_cxt, "snapshot batch tuples",
										 ALLOCSET_DEFAULT_SIZES);
	batch_init(w);
	w->direct = insert_first && direct_begin(w);
	if (total >= 0)
		snapshot_report_progress(w);
}

