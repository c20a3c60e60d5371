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
#include "executor/spi.h"
#include "utils/date.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/uuid.h"

/*
 * An exact decimal amount (snapshot_amount.c): numeric's value and display
 * scale, held as mant / 10^scale while it fits in 128 bits, else as a
 * numeric.  Operations give exactly what numeric.c gives.
 */
#if defined(HAVE_INT128) && defined(HAVE__BUILTIN_OP_OVERFLOW)
#define SNAPSHOT_FIXED_POINT 1
#endif

typedef struct Amount
{
#ifdef SNAPSHOT_FIXED_POINT
	int128		mant;
#endif
	int			scale;
	Numeric		num;			/* when not NULL, the amount */
} Amount;

extern Amount amount_of(Numeric num);
extern Numeric amount_numeric(Amount a);
extern Amount amount_add(Amount a, Amount b);
extern Amount amount_sub(Amount a, Amount b);
extern Amount amount_mul(Amount a, Amount b);
extern Amount amount_div(Amount a, Amount b);
extern Amount amount_round(Amount a);
extern int	amount_cmp(Amount a, Amount b);
extern int	amount_sign(Amount a);
extern char *amount_text(Amount a);
extern bool amount_in_bounds(Numeric num);

/*
 * The largest values a valuation accepts from the ledger and market data:
 * more than any SQL decimal type holds (38 digits), far less than numeric's
 * 131,072 digits, whose arithmetic takes seconds per operation.
 */
#define SNAPSHOT_MAX_INTEGER_DIGITS 40
#define SNAPSHOT_MAX_DECIMALS 40

/* Decimal places of the amounts a snapshot stores. */
#define SNAPSHOT_SCALE 8

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
	char	   *symbol;
	char	   *currency;		/* NULL when SQL NULL */
	int			currency_id;	/* its id among the FX currencies, or -1 */
	int			rank;			/* its place by symbol, then id */
	bool		has_price;
	Amount		close;			/* the latest close, when has_price */
	Numeric		close_rounded;	/* ... to SNAPSHOT_SCALE places */
	DateADT		price_date;
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
	HTAB	   *currencies;		/* CurrencyInfo by code; NULL without FX */
	HTAB	   *fx;				/* FxInfo: the latest rate on or before the
								 * date, or the inverse of the latest rate
								 * the other way when there is none; NULL
								 * without FX */
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

/*
 * A batch is written as parallel arrays: portfolio_id, base_currency, the ten
 * numeric figures, the four counts and positions.
 */
#define SNAPSHOT_BATCH_ARRAYS 17

/* The relations snapshot_configure() names, in this order. */
#define SNAPSHOT_RELATIONS 5

/* The stored configuration, resolved to quoted, qualified names. */
typedef struct SnapshotConfig
{
	Oid			relids[SNAPSHOT_RELATIONS]; /* InvalidOid when not configured */
	Oid			owner;			/* their owner, whose rights every read uses */
	char	   *portfolios;
	char	   *assets;
	char	   *transactions;
	char	   *prices;
	char	   *fx_rates;		/* NULL when not configured */
	CostMethod	cost_method;
	char	   *cost_method_name;
	int			stale_after_days;
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

struct shm_mq_handle;

/*
 * One column of a batch, built in place as a one-dimensional array without
 * nulls: the upsert takes it as is, so nothing is copied twice, and its
 * buffer is kept from batch to batch.
 */
typedef struct BatchColumn
{
	Oid			elemtype;
	int16		typlen;			/* -1 (varlena), 4 (int4) or 16 (uuid) */
	char		typalign;
	char	   *buf;			/* the ArrayType being built */
	Size		len;			/* bytes used */
	Size		size;			/* bytes allocated */
} BatchColumn;

struct Capture;

/*
 * A receiver of what a walk values, in place of the batch and
 * snapshot_run_errors, as a DestReceiver receives tuples.
 */
typedef struct CaptureSink
{
	void		(*figures) (struct Capture *cap, const pg_uuid_t *id,
							const char *base_currency, const SnapshotFigures *f);
	void		(*error) (struct Capture *cap, const pg_uuid_t *id, int sqlerrcode,
						  const char *message, const char *detail);
} CaptureSink;

/* The state of one capture, all or one, or of one worker's share of it. */
typedef struct Capture
{
	Oid			nspid;			/* the extension's schema */
	const char *nsp;			/* ... quoted */
	SnapshotConfig config;
	MarketData	md;
	bool		single;			/* capture_snapshot(): one portfolio, raise */
	pg_uuid_t	portfolio_id;	/* when single */
	SnapshotRange range;		/* the portfolios walked (all when unbounded) */
	int64		run_id;			/* 0 when single */
	Datum		metadata;		/* jsonb, the same for every row of a capture */
	TimestampTz captured_at;

	/*
	 * Where valued portfolios and errors go instead of the batch and
	 * snapshot_run_errors (a valuation worker's queue), or NULL; out is the
	 * queue the worker's sink writes to.
	 */
	const struct CaptureSink *sink;
	struct shm_mq_handle *out;

	/* the batch of valued portfolios not yet written */
	MemoryContext batch_cxt;
	SPIPlanPtr	upsert_plan;
	int			nbatch;
	Size		batch_bytes;	/* of the values in the batch */
	BatchColumn batch[SNAPSHOT_BATCH_ARRAYS];

	/* counts */
	int64		total;			/* portfolios expected (for progress) */
	int64		walked;
	int64		captured;
	int64		failed;
	int64		skipped_market; /* market-data rows skipped (NULL, too large) */
	int64		skipped_walk;	/* portfolio and ledger rows without an id */
	int			workers;		/* valuation workers that took part */
} Capture;

/* snapshot_parallel.c: the leader's side, called by the entry points */
extern int	snapshot_max_workers;
extern int	snapshot_portfolios_per_worker;
extern int	snapshot_parallel_workers(Capture *cap, bool wrote_before);
extern void snapshot_walk_parallel(Capture *cap, int nworkers);

/* snapshot_valuation.c */
extern TxnType snapshot_parse_txn_type(const char *type_text);
extern DateADT snapshot_utc_date(TimestampTz ts);
extern char *snapshot_date_iso(DateADT d);
extern int	snapshot_currency_id(const MarketData *md, const char *code);
extern void snapshot_rank_assets(MarketData *md);
extern void snapshot_value_portfolio(const MarketData *md,
									 const PortfolioLedger *ledger,
									 SnapshotFigures *out);

#endif							/* SNAPSHOT_EXT_H */
