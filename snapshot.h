/*-------------------------------------------------------------------------
 *
 * snapshot.h
 *	  Types shared by the capture entry points (snapshot.c) and the ledger
 *	  valuation (snapshot_valuation.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SNAPSHOT_EXT_H
#define SNAPSHOT_EXT_H

#include "datatype/timestamp.h"
#include "utils/date.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/uuid.h"

/* Currency codes longer than this are not looked up in the FX table. */
#define SNAPSHOT_CURRENCY_MAXLEN 32

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
	TXN_FEE
} TxnType;

/* One ledger row as read from the transactions relation. */
typedef struct LedgerEntry
{
	char	   *txn_id;			/* the row's id, as text, for messages */
	char	   *type_text;		/* the type as written in the ledger */
	TxnType		type;
	bool		has_asset;
	pg_uuid_t	asset_id;
	const struct AssetInfo *asset;	/* set by the valuation's checks */
	Numeric		quantity;		/* NULL pointer when SQL NULL */
	Numeric		price;
	Numeric		fee;
	Numeric		rate;
	TimestampTz transaction_date;
} LedgerEntry;

/* A portfolio and its ledger up to the snapshot date, in ledger order. */
typedef struct PortfolioLedger
{
	pg_uuid_t	id;
	char	   *base_currency;	/* NULL when SQL NULL */
	LedgerEntry *entries;
	int			nentries;
	int			maxentries;
} PortfolioLedger;

typedef struct AssetInfo
{
	pg_uuid_t	asset_id;		/* hash key */
	char	   *symbol;
	char	   *currency;		/* NULL when SQL NULL */
} AssetInfo;

typedef struct PriceInfo
{
	pg_uuid_t	asset_id;		/* hash key */
	Numeric		close;
	DateADT		price_date;
} PriceInfo;

typedef struct FxKey
{
	char		from[SNAPSHOT_CURRENCY_MAXLEN + 1];
	char		to[SNAPSHOT_CURRENCY_MAXLEN + 1];
} FxKey;

typedef struct FxInfo
{
	FxKey		key;			/* hash key */
	Numeric		rate;
} FxInfo;

/* Everything a valuation needs besides the ledger; built once per capture. */
typedef struct MarketData
{
	HTAB	   *assets;			/* AssetInfo by asset id */
	HTAB	   *prices;			/* PriceInfo: latest close on or before the date */
	HTAB	   *fx;				/* FxInfo: latest rate on or before the date */
	DateADT		snapshot_date;
	CostMethod	cost_method;
	int			stale_after_days;
} MarketData;

/* The figures of one snapshot, rounded to 8 decimal places. */
typedef struct SnapshotFigures
{
	Numeric		market_value;
	Numeric		cash_balance;
	Numeric		net_worth;
	Numeric		total_cost;
	Numeric		unrealized_pnl;
	Numeric		realized_pnl;
	Numeric		income;
	Numeric		fees;
	Numeric		net_contribution;
	Numeric		day_flow;
	int32		position_count;
	int32		missing_prices;
	int32		stale_prices;
	int32		missing_fx;
	Jsonb	   *positions;
} SnapshotFigures;

/* snapshot_valuation.c */
extern TxnType snapshot_parse_txn_type(const char *type_text);
extern DateADT snapshot_utc_date(TimestampTz ts);
extern char *snapshot_date_iso(DateADT d);
extern void snapshot_fx_key(FxKey *key, const char *from, const char *to);
extern void snapshot_value_portfolio(const MarketData *md,
									 const PortfolioLedger *ledger,
									 SnapshotFigures *out);

#endif							/* SNAPSHOT_EXT_H */
