/*-------------------------------------------------------------------------
 *
 * snapshot_valuation.h
 *	  Ledger to figures (snapshot_valuation.c): one portfolio's ledger and
 *	  the day's market data in, one snapshot row out.  No SPI, no catalogs.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SNAPSHOT_VALUATION_H
#define SNAPSHOT_VALUATION_H

#include "datatype/timestamp.h"
#include "utils/date.h"
#include "utils/hsearch.h"
#include "utils/uuid.h"

#include "snapshot_amount.h"
#include "snapshot_row.h"

/* Currency codes longer than this never take part in an FX conversion. */
#define SNAPSHOT_CURRENCY_MAXLEN 63

typedef enum CostMethod
{
	COST_FIFO,
	COST_AVERAGE
} CostMethod;

typedef enum TxnType
{
	TXN_UNKNOWN = 0,
	TXN_BUY,
	TXN_SELL,
	TXN_DEPOSIT,
	TXN_WITHDRAWAL,
	TXN_DIVIDEND,
	TXN_FEE,
	TXN_INTEREST,
	TXN_TAX,
	TXN_SPLIT,
	TXN_TRANSFER_IN,
	TXN_TRANSFER_OUT
} TxnType;

/* The rules a capture values by (snapshot_configure()'s settings). */
typedef struct ValuationRules
{
	CostMethod	cost_method;
	int			stale_after_days;
	Numeric		quantity_tolerance; /* >= 0; 0 is exact */
	Amount		tolerance;		/* ... as an amount */
	bool		has_tolerance;	/* it is not 0 */
} ValuationRules;

/*
 * The type of the ledger's transaction ids as the ledger cursor reads them
 * (snapshot_open_ledger): an integer type or uuid, compared as they are, or
 * a text type, compared by their characters; any other type is read as its
 * ::text cast.  Turned into text only for a message.
 */
typedef struct TxnIdType
{
	Oid			type;
	int16		typlen;
	bool		typbyval;
	Oid			typoutput;
	bool		by_text;		/* compared by characters, not as they are */
} TxnIdType;

/* One ledger row as read from the transactions relation. */
typedef struct LedgerEntry
{
	Datum		txn_id;			/* the row's id (see TxnIdType) */
	bool		txn_id_null;
	text	   *type_text;		/* the type as written in the ledger */
	TxnType		type;
	bool		has_asset;
	pg_uuid_t	asset_id;
	const struct AssetInfo *asset;	/* set by the valuation's checks */
	int			position;		/* ... and the index of its position */
	Numeric		quantity;		/* NULL pointer when SQL NULL */
	Numeric		price;
	Numeric		fee;
	Numeric		rate;
	bool		date_is_null;	/* transaction_date was SQL NULL */
	TimestampTz transaction_date;
	/* the amounts above, set by the valuation's checks (fee, rate: 0, 1 if NULL) */
	Amount		a_quantity;
	Amount		a_price;
	Amount		a_fee;
	Amount		a_rate;
} LedgerEntry;

/* A portfolio and its ledger up to the snapshot date, in ledger order. */
typedef struct PortfolioLedger
{
	pg_uuid_t	id;
	const TxnIdType *txn_id_type;	/* of its entries' ids */
	char	   *base_currency;	/* NULL when SQL NULL */
	LedgerEntry *entries;
	int			nentries;
	int			maxentries;
	bool		too_long;		/* more rows than a capture values */
} PortfolioLedger;

/* An asset, with its latest close on or before the snapshot date. */
typedef struct AssetInfo
{
	pg_uuid_t	asset_id;		/* hash key */
	char	   *id_text;		/* asset_id as the positions array shows it */
	char	   *symbol;
	char	   *currency;		/* NULL when SQL NULL */
	int			symbol_len;		/* strlen of symbol, of currency (0 when NULL) */
	int			currency_len;
	int			currency_id;	/* its id among the FX currencies, or -1 */
	int			rank;			/* its place by symbol, then id */
	bool		has_price;
	Amount		close;			/* the latest close, when has_price */
	Numeric		close_rounded;	/* ... to SNAPSHOT_SCALE places */
	DateADT		price_date;
	char	   *price_date_iso;	/* ... as the positions array shows it */
	int			price_date_iso_len;
} AssetInfo;

/* A currency of the FX table, numbered from 0. */
typedef struct CurrencyInfo
{
	char		code[SNAPSHOT_CURRENCY_MAXLEN + 1]; /* hash key */
	int			id;
} CurrencyInfo;

/* The rate from one currency to another, by currency ids. */
typedef struct FxKey
{
	int			from;
	int			to;
} FxKey;

typedef struct FxInfo
{
	FxKey		key;			/* hash key */
	Amount		rate;
	Numeric		rate_rounded;	/* ... to SNAPSHOT_SCALE places */
} FxInfo;

/* Everything a valuation needs besides the ledger; built once per capture. */
typedef struct MarketData
{
	HTAB	   *assets;			/* AssetInfo by asset id, with its price */
	struct assetmap_hash *by_id;	/* the same, for the valuation's lookups */
	HTAB	   *currencies;		/* CurrencyInfo by code; NULL without FX */
	HTAB	   *fx;				/* FxInfo: the latest rate on or before the
								 * date, or the inverse of the latest rate
								 * the other way when there is none; NULL
								 * without FX */
	DateADT		snapshot_date;
	ValuationRules rules;
	MemoryContext cxt;			/* where the maps live; NULL: the loader's
								 * current context */
} MarketData;

extern TxnType snapshot_parse_txn_type(const text *type_text);
/* A ledger entry's id as text, for a message ("(null)" for SQL NULL). */
extern const char *snapshot_txn_id_text(const PortfolioLedger *ledger, const LedgerEntry *e);
extern DateADT snapshot_utc_date(TimestampTz ts);
extern char *snapshot_date_iso(DateADT d);
extern int	snapshot_currency_id(const MarketData *md, const char *code);
extern int	snapshot_intern_currency(MarketData *md, const char *code);
extern void snapshot_rank_assets(MarketData *md);

/*
 * Value one portfolio as of md->snapshot_date into row (every column; the
 * id's field points at ledger->id).  Raises a class 22 error on bad data.
 */
extern void snapshot_value_portfolio(const MarketData *md,
									 const PortfolioLedger *ledger,
									 SnapshotRow *row);

#endif							/* SNAPSHOT_VALUATION_H */
