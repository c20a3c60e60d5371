/*-------------------------------------------------------------------------
 *
 * snapshot_walk.c
 *	  The ordered walk: portfolios and their ledgers merged in one pass,
 *	  each portfolio valued in isolation, duplicates detected, and every
 *	  result handed to a sink that the walk never asks about.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "snapshot_walk.h"

/* The most a single snapshot's positions may take. */
#define SNAPSHOT_ROW_MAX ((Size) 64 * 1024 * 1024)

/*
 * The most ledger rows a portfolio may have up to its snapshot date: their
 * entries (some 400 bytes each with their amounts) stay well within memory
 * and within the 1 GB a palloc may take.
 */
#define SNAPSHOT_LEDGER_MAX 1000000

/*
 * Value one portfolio inside a subtransaction, as PL/pgSQL's exception block
 * does, so that a data error rolls back only this portfolio.  Returns false
 * and sets *edata (allocated in errcxt) on error; what the valuation
 * allocated is freed with it.  The valuation does no SPI
 * and writes nothing, so the subtransaction never takes an XID.
 */
static bool
value_isolated(const MarketData *md, const PortfolioLedger *ledger,
			   SnapshotRow *out, MemoryContext errcxt, ErrorData **edata)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	volatile bool ok = true;

	/*
	 * The valuation allocates in a context of its own, a child of the
	 * caller's: a valuation that fails is deleted with it before the error
	 * is handed on, however much it took.
	 */
	MemoryContext valuation_cxt = AllocSetContextCreate(oldcxt, "snapshot valuation",
														ALLOCSET_DEFAULT_SIZES);

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(valuation_cxt);
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
		MemoryContextDelete(valuation_cxt);

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
duplicate_portfolio(Walk *walk, PortfolioLedger *ledger)
{
	const char *detail = "Its ledger was valued once, with the first row.";
	char	   *message;

	message = psprintf("portfolio %s is listed more than once by the portfolios relation",
					   DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(&ledger->id))));
	walk->walked++;
	if (walk->scope.single)
		ereport(ERROR,
				errcode(ERRCODE_DATA_EXCEPTION),
				errmsg_internal("%s", message),
				errdetail_internal("%s", detail),
				errhint("Make the portfolios relation list each id once."));
	walk->sink->receive_error(walk->sink, &ledger->id, ERRCODE_DATA_EXCEPTION, message, detail);
}

/*
 * A portfolio beyond what a capture values (54000): raised by a single
 * capture, recorded by a capture of all.
 */
static void
portfolio_too_large(Walk *walk, PortfolioLedger *ledger, const char *message,
					const char *detail)
{
	if (walk->scope.single)
		ereport(ERROR,
				errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				errmsg_internal("%s", message),
				errdetail_internal("%s", detail));
	walk->sink->receive_error(walk->sink, &ledger->id, ERRCODE_PROGRAM_LIMIT_EXCEEDED, message, detail);
}

/*
 * Value one portfolio whose whole ledger has been read, and queue its
 * snapshot with the sink.  Runs in the per-portfolio memory context.  A
 * single capture raises data errors; a capture of all isolates them and
 * hands them to the sink, keeping any earlier snapshot of that portfolio and
 * date.
 */
static void
finish_portfolio(Walk *walk, PortfolioLedger *ledger)
{
	SnapshotRow row;
	ErrorData  *edata = NULL;

	walk->walked++;
	if (ledger->too_long)
	{
		portfolio_too_large(walk, ledger,
							psprintf("portfolio %s has more than %d ledger rows up to %s",
									 DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(&ledger->id))),
									 SNAPSHOT_LEDGER_MAX, snapshot_date_iso(walk->md->snapshot_date)),
							"A capture values a portfolio of at most 1,000,000 ledger rows.");
		return;
	}
	if (walk->scope.single)
		snapshot_value_portfolio(walk->md, ledger, &row);
	else if (!value_isolated(walk->md, ledger, &row, CurrentMemoryContext, &edata))
	{
		walk->sink->receive_error(walk->sink, &ledger->id, edata->sqlerrcode, edata->message,
							  edata->detail);
		return;
	}
	if (VARSIZE(row.fields[SNAP_POSITIONS]) > SNAPSHOT_ROW_MAX)
	{
		portfolio_too_large(walk, ledger,
							psprintf("portfolio %s: its snapshot would take %zu MB, more than the %zu MB a snapshot may take",
									 DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(&ledger->id))),
									 (Size) VARSIZE(row.fields[SNAP_POSITIONS]) / (1024 * 1024),
									 SNAPSHOT_ROW_MAX / (1024 * 1024)),
							psprintf("Its positions array holds %d positions.", row.ints[SNAP_POSITION_COUNT]));
		return;
	}
	walk->sink->receive_row(walk->sink, &row);
}

/* A new entry at the end of the ledger being collected. */
static LedgerEntry *
next_entry(PortfolioLedger *ledger)
{
	if (ledger->nentries == ledger->maxentries)
	{
		ledger->maxentries = ledger->maxentries == 0 ? 16 : ledger->maxentries * 2;
		ledger->entries = ledger->entries == NULL
			? palloc(sizeof(LedgerEntry) * ledger->maxentries)
			: repalloc(ledger->entries, sizeof(LedgerEntry) * ledger->maxentries);
	}
	return &ledger->entries[ledger->nentries++];
}

/*
 * Walk the portfolios and their ledgers in one ordered pass and value each:
 * two cursors, portfolios by id and the ledger by (portfolio_id,
 * transaction_date, id), both in the order of an index (so nothing is
 * sorted), merged here.  The cursors are read outside any subtransaction (a
 * portal read inside a subtransaction that rolls back would be marked
 * failed), as the sources' owner; rows are gathered per portfolio in a
 * context reset after each one, their values left where the ledger cursor's
 * fetches put them until the portfolio is valued, so memory stays flat.  A
 * row without a portfolio id belongs to no portfolio: it is skipped and
 * counted.
 */
void
snapshot_walk(Walk *walk)
{
	RowReader	portfolios;
	RowReader	ledger_rows;
	bool		have_txn;
	MemoryContext portfolio_cxt;
	PortfolioLedger ledger;
	TxnIdType	txn_id_type;
	pg_uuid_t	previous;
	bool		have_previous = false;
	int64		start = walk->walked;

	snapshot_open_portfolios(&portfolios, walk->config, &walk->scope,
							 Max(walk->batch_size, 100));
	snapshot_open_ledger(&ledger_rows, walk->config, &walk->scope, walk->md->snapshot_date,
						 Max(walk->batch_size * 10L, 100L));
	snapshot_reader_txn_id_type(&ledger_rows, &txn_id_type);
	/* ledger entries point into what the ledger cursor fetched */
	snapshot_reader_hold(&ledger_rows);

	portfolio_cxt = AllocSetContextCreate(CurrentMemoryContext, "snapshot portfolio",
										  ALLOCSET_DEFAULT_SIZES);
	have_txn = snapshot_reader_next(&ledger_rows, &walk->skipped);
	while ((walk->limit <= 0 || walk->walked - start < walk->limit) &&
		   snapshot_reader_next(&portfolios, &walk->skipped))
	{
		MemoryContext old;
		int			cmp = -1;

		CHECK_FOR_INTERRUPTS();
		memset(&ledger, 0, sizeof(ledger));
		ledger.id = *snapshot_reader_portfolio(&portfolios);
		ledger.txn_id_type = &txn_id_type;
		old = MemoryContextSwitchTo(portfolio_cxt);
		ledger.base_currency = snapshot_reader_base_currency(&portfolios);

		/*
		 * Skip the ledger rows of portfolios the portfolios relation lacks,
		 * then gather this one's.  A fetch returns in the SPI procedure's
		 * context, so the portfolio's context is selected again after each.
		 * Fetches that no entry points into are let go as the walk passes
		 * them (the current row is always in the current fetch, never held),
		 * so skipped rows, and the rows of a portfolio refused as too long,
		 * cost no more memory than one fetch.
		 */
		while (have_txn &&
			   (cmp = memcmp(snapshot_reader_portfolio(&ledger_rows)->data, ledger.id.data,
							 UUID_LEN)) < 0)
		{
			snapshot_reader_release(&ledger_rows);
			have_txn = snapshot_reader_next(&ledger_rows, &walk->skipped);
		}
		while (have_txn && cmp == 0)
		{
			MemoryContextSwitchTo(portfolio_cxt);
			if (ledger.too_long)
				snapshot_reader_release(&ledger_rows);
			else if (ledger.nentries < SNAPSHOT_LEDGER_MAX)
				snapshot_reader_ledger_entry(&ledger_rows, next_entry(&ledger));
			else
			{
				/* refused whole (finish_portfolio): its entries are dropped */
				ledger.too_long = true;
				ledger.nentries = 0;
				snapshot_reader_release(&ledger_rows);
			}
			have_txn = snapshot_reader_next(&ledger_rows, &walk->skipped);
			cmp = have_txn ? memcmp(snapshot_reader_portfolio(&ledger_rows)->data,
									ledger.id.data, UUID_LEN) : 1;
		}

		MemoryContextSwitchTo(portfolio_cxt);
		if (have_previous && memcmp(previous.data, ledger.id.data, UUID_LEN) == 0)
			duplicate_portfolio(walk, &ledger);
		else
			finish_portfolio(walk, &ledger);
		previous = ledger.id;
		have_previous = true;
		walk->last_id = ledger.id;
		MemoryContextSwitchTo(old);
		MemoryContextReset(portfolio_cxt);
		snapshot_reader_release(&ledger_rows);
	}
	snapshot_reader_close(&ledger_rows);
	snapshot_reader_close(&portfolios);
	MemoryContextDelete(portfolio_cxt);
}

/*
 * Whether every portfolio the portfolios relation lists now has a snapshot
 * of the capture's date: the portfolio ids, read by a cursor as the
 * sources' owner, merged in id order with the date's snapshots, read in
 * pages with the capture's own rights.  No cursor with the capture's rights
 * is open while the owner's code runs.
 */
bool
snapshot_date_is_covered(const SnapshotConfig *config, const char *nsp, DateADT date)
{
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

	values[0] = DateADTGetDatum(date);
	page_sql = psprintf("SELECT s.portfolio_id FROM %s.portfolio_snapshots s"
						" WHERE s.snapshot_date OPERATOR(pg_catalog.=) $1"
						" AND ($2 IS NULL OR s.portfolio_id OPERATOR(pg_catalog.>) $2)"
						" ORDER BY s.portfolio_id LIMIT 1000", nsp);
	snapshot_open_portfolio_ids(&portfolios, config, NULL, 1000);
	while (covered && snapshot_reader_next(&portfolios, &skipped))
	{
		const pg_uuid_t *id = snapshot_reader_portfolio(&portfolios);
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
	snapshot_reader_close(&portfolios);
	return covered;
}

