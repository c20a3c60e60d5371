/*-------------------------------------------------------------------------
 *
 * snapshot_valuation.c
 *	  Ledger to figures: values one portfolio as of one UTC day.
 *
 * Nothing here touches SPI or the catalogs: the caller hands over the
 * portfolio's ledger (in ledger order) and the market data for the day, and
 * gets the snapshot's figures back.  A data error in the ledger is raised
 * with a SQLSTATE of class 22 and a message naming the portfolio, the
 * transaction and the reason; the caller decides whether to isolate it.
 *
 * All amounts are numeric and exact until the figures are rounded to 8
 * decimal places at the end (FIFO partial lots and the average method divide,
 * and those quotients carry numeric's usual significant digits).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/datetime.h"
#include "utils/fmgrprotos.h"
#include "utils/memutils.h"

#include "snapshot_positions.h"
#include "snapshot_valuation.h"


/* An open lot (FIFO) of one position. */
typedef struct Lot
{
	Amount		quantity;
	Amount		cost;
} Lot;

/* A position held by the portfolio, keyed by asset id. */
typedef struct Position
{
	pg_uuid_t	asset_id;
	const AssetInfo *asset;
	Amount		quantity;
	Amount		cost;			/* cost of the open quantity, base currency */
	Lot		   *lots;			/* FIFO lots; lots[head..nlots-1] are open */
	int			head;
	int			nlots;
	int			maxlots;
	/* the latest BUY/SELL of this asset: the price and FX fallbacks */
	Amount		trade_price;
	Amount		trade_rate;
	DateADT		trade_date;
} Position;

/* An open position, valued, for the positions array. */
typedef struct ValuedPosition
{
	Position   *pos;
	Amount		price;
	Numeric		price_rounded;	/* ... as the positions array shows it */
	const char *price_date;		/* ISO */
	int			price_date_len;
	const char *price_source;
	int			price_source_len;
	Amount		fx_rate;
	Numeric		fx_rate_rounded;
	Amount		market_value;
} ValuedPosition;

/* The running totals of one valuation. */
typedef struct Totals
{
	bool		has_cash;		/* a DEPOSIT or WITHDRAWAL is in the ledger */
	Amount		cash;
	Amount		realized;
	Amount		income;
	Amount		fees;
	Amount		taxes;
	Amount		flows;
	Amount		day_flow;
	int64		split_work;		/* lots adjusted by splits so far */
} Totals;

/*
 * The positions of one valuation: an array, indexed by asset id through a
 * simplehash.  Ledger rows of the same asset meet their position through
 * LedgerEntry.position, found once per row.
 */
typedef struct PositionSlot
{
	pg_uuid_t	key;
	int			index;			/* into Positions.items */
	char		status;
} PositionSlot;

/*
 * Asset ids come from relations that their owner writes, and simplehash
 * walks a cluster of equal hashes on every insert: ids are hashed whole,
 * keyed by a random seed of this process (asset_hash_seed_once), so that no
 * set of ids chosen in advance collides.
 */
static uint64 asset_hash_seed;
static bool asset_hash_seeded = false;

static void
asset_hash_seed_once(void)
{
	if (asset_hash_seeded)
		return;
	if (!pg_strong_random(&asset_hash_seed, sizeof(asset_hash_seed)))
		ereport(ERROR,
				errcode(ERRCODE_INTERNAL_ERROR),
				errmsg("could not generate a random seed"));
	asset_hash_seeded = true;
}

/* a bijective mix of 64 bits (the finalizer of MurmurHash3) */
static inline uint64
mix64(uint64 h)
{
	h ^= h >> 33;
	h *= UINT64CONST(0xff51afd7ed558ccd);
	h ^= h >> 33;
	h *= UINT64CONST(0xc4ceb9fe1a85ec53);
	h ^= h >> 33;
	return h;
}

static inline uint32
asset_key_hash(pg_uuid_t key)
{
	uint64		hi;
	uint64		lo;

	Assert(asset_hash_seeded);
	memcpy(&hi, key.data, sizeof(hi));
	memcpy(&lo, key.data + sizeof(hi), sizeof(lo));
	return (uint32) mix64(mix64(hi ^ asset_hash_seed) ^ lo);
}

#define SH_PREFIX posmap
#define SH_ELEMENT_TYPE PositionSlot
#define SH_KEY_TYPE pg_uuid_t
#define SH_KEY key
#define SH_HASH_KEY(tb, key) asset_key_hash(key)
#define SH_EQUAL(tb, a, b) (memcmp((a).data, (b).data, UUID_LEN) == 0)
#define SH_SCOPE static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

/*
 * The market data's assets by id, for the first row of each asset in a
 * ledger: built once per load, with the ranks (snapshot_rank_assets).
 */
typedef struct AssetSlot
{
	pg_uuid_t	key;
	AssetInfo  *asset;
	char		status;
} AssetSlot;

#define SH_PREFIX assetmap
#define SH_ELEMENT_TYPE AssetSlot
#define SH_KEY_TYPE pg_uuid_t
#define SH_KEY key
#define SH_HASH_KEY(tb, key) asset_key_hash(key)
#define SH_EQUAL(tb, a, b) (memcmp((a).data, (b).data, UUID_LEN) == 0)
#define SH_SCOPE static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

typedef struct Positions
{
	posmap_hash *map;
	Position   *items;
	int			n;
	int			max;
} Positions;

static Amount const_zero;
static Amount const_one;
static Numeric const_one_rounded;

/* an amount rounded as the snapshot stores it, as a numeric */
static inline Numeric
n_stored(Amount a)
{
	return amount_numeric(amount_round(a));
}

static inline char *
n_text(Numeric a)
{
	return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(a)));
}

/*
 * A uuid as text (what uuid_out prints), without a StringInfo per call: the
 * positions array prints one per open position.
 */
static char *
uuid_text(const pg_uuid_t *u)
{
	static const char hex[] = "0123456789abcdef";
	char	   *out = palloc(2 * UUID_LEN + 5);
	char	   *p = out;

	for (int i = 0; i < UUID_LEN; i++)
	{
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*p++ = '-';
		*p++ = hex[u->data[i] >> 4];
		*p++ = hex[u->data[i] & 0x0F];
	}
	*p = '\0';
	return out;
}

/*
 * An amount in the transaction's currency in the base currency; a NULL rate
 * is 1, and multiplying by it is skipped.
 */
static inline Amount
to_base(Amount amount, const LedgerEntry *e)
{
	return e->rate == NULL ? amount : amount_mul(amount, e->a_rate);
}

/* gross + fee and gross - fee, skipping a NULL fee */
static inline Amount
plus_fee(Amount gross, const LedgerEntry *e)
{
	return e->fee == NULL ? gross : amount_add(gross, e->a_fee);
}

static inline Amount
minus_fee(Amount gross, const LedgerEntry *e)
{
	return e->fee == NULL ? gross : amount_sub(gross, e->a_fee);
}

/*
 * Make the constants 0 and 1 once per backend.
 */
static void
init_constants(void)
{
	MemoryContext old;

	if (const_one_rounded != NULL)
		return;
	asset_hash_seed_once();
	old = MemoryContextSwitchTo(TopMemoryContext);
	const_zero = amount_of(int64_to_numeric(0));
	const_one = amount_of(int64_to_numeric(1));
	const_one_rounded = n_stored(const_one);
	MemoryContextSwitchTo(old);
}

/*
 * Map a ledger type to TxnType, case-insensitively; TXN_UNKNOWN for anything
 * else (the application once wrote "sync").
 */
TxnType
snapshot_parse_txn_type(const text *type_text)
{
	static const struct
	{
		const char *name;
		TxnType		type;
	}			types[] =
	{
		{"BUY", TXN_BUY},
		{"SELL", TXN_SELL},
		{"DEPOSIT", TXN_DEPOSIT},
		{"WITHDRAWAL", TXN_WITHDRAWAL},
		{"DIVIDEND", TXN_DIVIDEND},
		{"FEE", TXN_FEE},
		{"INTEREST", TXN_INTEREST},
		{"TAX", TXN_TAX},
		{"SPLIT", TXN_SPLIT},
		{"TRANSFER_IN", TXN_TRANSFER_IN},
		{"TRANSFER_OUT", TXN_TRANSFER_OUT},
	};

	const char *chars;
	size_t		len;

	if (type_text == NULL)
		return TXN_UNKNOWN;
	chars = VARDATA_ANY(type_text);
	len = VARSIZE_ANY_EXHDR(type_text);
	for (int i = 0; i < (int) lengthof(types); i++)
		if (strlen(types[i].name) == len && pg_strncasecmp(chars, types[i].name, len) == 0)
			return types[i].type;
	return TXN_UNKNOWN;
}

/*
 * The UTC calendar day that a timestamptz falls on.
 */
DateADT
snapshot_utc_date(TimestampTz ts)
{
	if (ts >= 0)
		return (DateADT) (ts / USECS_PER_DAY);
	return (DateADT) (-((-ts - 1) / USECS_PER_DAY) - 1);
}

/*
 * A date as YYYY-MM-DD (YYYY-MM-DD BC, infinity, -infinity), whatever the
 * session's DateStyle.
 */
char *
snapshot_date_iso(DateADT d)
{
	int			y,
				m,
				day;

	/* palloc'd, as every result: a caller may free it */
	if (DATE_NOT_FINITE(d))
		return pstrdup(DATE_IS_NOBEGIN(d) ? "-infinity" : "infinity");
	j2date(d + POSTGRES_EPOCH_JDATE, &y, &m, &day);

	/* the positions array prints one per open position: no format parsing */
	if (y >= 1 && y <= 9999)
	{
		char	   *out = palloc(11);

		out[0] = '0' + y / 1000;
		out[1] = '0' + y / 100 % 10;
		out[2] = '0' + y / 10 % 10;
		out[3] = '0' + y % 10;
		out[4] = '-';
		out[5] = '0' + m / 10;
		out[6] = '0' + m % 10;
		out[7] = '-';
		out[8] = '0' + day / 10;
		out[9] = '0' + day % 10;
		out[10] = '\0';
		return out;
	}
	if (y <= 0)
		return psprintf("%04d-%02d-%02d BC", 1 - y, m, day);
	return psprintf("%04d-%02d-%02d", y, m, day);
}

/*
 * The id of a currency of the FX table, or -1 (not in it, too long a code,
 * NULL, or no FX table).
 */
int
snapshot_currency_id(const MarketData *md, const char *code)
{
	CurrencyInfo *c;

	if (code == NULL || md->currencies == NULL || strlen(code) > SNAPSHOT_CURRENCY_MAXLEN)
		return -1;
	c = hash_search(md->currencies, code, HASH_FIND, NULL);
	return c ? c->id : -1;
}

/*
 * The id of an FX currency (a code of at most SNAPSHOT_CURRENCY_MAXLEN
 * bytes), numbering it when new: the market data's loader calls it for
 * each currency of the FX table.
 */
int
snapshot_intern_currency(MarketData *md, const char *code)
{
	bool		found;
	CurrencyInfo *c = hash_search(md->currencies, code, HASH_ENTER, &found);

	if (!found)
		c->id = (int) hash_get_num_entries(md->currencies) - 1;
	return c->id;
}

/*
 * Raise a data error about one transaction of one portfolio.
 */
#define LEDGER_ERROR(code, ledger, entry, detail, ...) \
	ereport(ERROR, \
			errcode(code), \
			errmsg("portfolio %s, transaction %s: " detail, \
				   uuid_text(&(ledger)->id), snapshot_txn_id_text(ledger, entry), ##__VA_ARGS__), \
			errhint("Correct the transaction in the ledger, then capture the portfolio again."))

/* See snapshot_valuation.h. */
const char *
snapshot_txn_id_text(const PortfolioLedger *ledger, const LedgerEntry *e)
{
	if (e->txn_id_null)
		return "(null)";
	return OidOutputFunctionCall(ledger->txn_id_type->typoutput, e->txn_id);
}

/* Whether two entries' ids have the same text (see TxnIdType). */
static bool
same_txn_id(const PortfolioLedger *ledger, const LedgerEntry *a, const LedgerEntry *b)
{
	const TxnIdType *type = ledger->txn_id_type;
	struct varlena *x;
	struct varlena *y;

	if (a->txn_id_null || b->txn_id_null)
		return a->txn_id_null && b->txn_id_null;
	if (!type->by_text)
		return datumIsEqual(a->txn_id, b->txn_id, type->typbyval, type->typlen);
	x = pg_detoast_datum_packed((struct varlena *) DatumGetPointer(a->txn_id));
	y = pg_detoast_datum_packed((struct varlena *) DatumGetPointer(b->txn_id));
	return VARSIZE_ANY_EXHDR(x) == VARSIZE_ANY_EXHDR(y) &&
		memcmp(VARDATA_ANY(x), VARDATA_ANY(y), VARSIZE_ANY_EXHDR(x)) == 0;
}

/*
 * Reject NaN and infinite amounts (numeric has them; money never does).
 */
static void
check_finite(const PortfolioLedger *ledger, const LedgerEntry *e,
			 const char *what, Numeric value)
{
	if (value != NULL && amount_is_special(value))
		LEDGER_ERROR(ERRCODE_INVALID_PARAMETER_VALUE, ledger, e,
					 "%s %s is not a finite number", what, n_text(value));
	if (value != NULL && !amount_in_bounds(value))
		ereport(ERROR,
				errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				errmsg("portfolio %s, transaction %s: %s has too many digits",
					   uuid_text(&ledger->id), snapshot_txn_id_text(ledger, e), what),
				errdetail("A ledger amount has at most %d digits before and %d after the decimal point.",
						  SNAPSHOT_MAX_INTEGER_DIGITS, SNAPSHOT_MAX_DECIMALS),
				errhint("Correct the transaction in the ledger, then capture the portfolio again."));
}

/*
 * The index of the position in an asset, opened empty on the asset's first
 * row; -1 when the asset is unknown.
 */
static int
find_position(const MarketData *md, Positions *ps, pg_uuid_t asset_id)
{
	bool		found;
	PositionSlot *slot = posmap_insert(ps->map, asset_id, &found);
	AssetSlot  *found_asset;
	Position   *pos;

	if (found)
		return slot->index;
	found_asset = assetmap_lookup(md->by_id, asset_id);
	if (found_asset == NULL)
	{
		posmap_delete_item(ps->map, slot);
		return -1;
	}
	if (ps->n == ps->max)
	{
		ps->max = ps->max == 0 ? 16 : ps->max * 2;
		ps->items = ps->items == NULL ? palloc(sizeof(Position) * ps->max)
			: repalloc(ps->items, sizeof(Position) * ps->max);
	}
	slot->index = ps->n++;
	pos = &ps->items[slot->index];
	pos->asset_id = asset_id;
	pos->asset = found_asset->asset;
	pos->quantity = const_zero;
	pos->cost = const_zero;
	pos->lots = NULL;
	pos->head = pos->nlots = pos->maxlots = 0;
	pos->trade_price = const_zero;	/* set by the position's first BUY */
	pos->trade_rate = const_one;
	pos->trade_date = 0;
	return slot->index;
}

/* A transfer of securities: TRANSFER_IN or TRANSFER_OUT with an asset. */
static inline bool
moves_securities(const LedgerEntry *e)
{
	return (e->type == TXN_TRANSFER_IN || e->type == TXN_TRANSFER_OUT) && e->has_asset;
}

/*
 * A movement of the cash account from outside: DEPOSIT and WITHDRAWAL, and
 * TRANSFER_IN and TRANSFER_OUT without an asset.
 */
static inline bool
moves_cash_account(const LedgerEntry *e)
{
	return e->type == TXN_DEPOSIT || e->type == TXN_WITHDRAWAL ||
		((e->type == TXN_TRANSFER_IN || e->type == TXN_TRANSFER_OUT) && !e->has_asset);
}

/*
 * Reject a ledger row that breaks the rules, before any of it is applied;
 * remember the asset of an asset type.
 */
static void
check_entry(const MarketData *md, const PortfolioLedger *ledger, LedgerEntry *e,
			Positions *ps)
{
	CHECK_FOR_INTERRUPTS();
	if (e->type_text == NULL)
		LEDGER_ERROR(ERRCODE_NULL_VALUE_NOT_ALLOWED, ledger, e, "type is null");
	if (e->date_is_null)
		LEDGER_ERROR(ERRCODE_NULL_VALUE_NOT_ALLOWED, ledger, e, "transaction_date is null");
	if (e->type == TXN_UNKNOWN)
		ereport(ERROR,
				errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				errmsg("portfolio %s, transaction %s: unknown transaction type \"%s\"",
					   uuid_text(&ledger->id), snapshot_txn_id_text(ledger, e),
					   e->type_text ? text_to_cstring(e->type_text) : "(null)"),
				errdetail("The type must be one of BUY, SELL, DEPOSIT, WITHDRAWAL, DIVIDEND, FEE, INTEREST, TAX, SPLIT, TRANSFER_IN or TRANSFER_OUT."),
				errhint("Correct the transaction in the ledger, then capture the portfolio again."));
	check_finite(ledger, e, "quantity", e->quantity);
	check_finite(ledger, e, "price", e->price);
	check_finite(ledger, e, "fee", e->fee);
	check_finite(ledger, e, "exchange rate", e->rate);
	if (e->quantity == NULL)
		LEDGER_ERROR(ERRCODE_NULL_VALUE_NOT_ALLOWED, ledger, e, "quantity is null");
	e->a_quantity = amount_of(e->quantity);
	e->a_fee = e->fee ? amount_of(e->fee) : const_zero;
	e->a_rate = e->rate ? amount_of(e->rate) : const_one;

	/* a split's quantity is its ratio; FEE and TAX may carry only a fee */
	if (e->type == TXN_SPLIT)
	{
		if (amount_sign(e->a_quantity) <= 0)
			LEDGER_ERROR(ERRCODE_INVALID_PARAMETER_VALUE, ledger, e,
						 "split ratio %s is not positive", n_text(e->quantity));
	}
	else if (e->type == TXN_FEE || e->type == TXN_TAX)
	{
		if (amount_sign(e->a_quantity) < 0)
			LEDGER_ERROR(ERRCODE_INVALID_PARAMETER_VALUE, ledger, e,
						 "quantity %s is negative", n_text(e->quantity));
	}
	else if (amount_sign(e->a_quantity) <= 0)
		LEDGER_ERROR(ERRCODE_INVALID_PARAMETER_VALUE, ledger, e,
					 "quantity %s is not positive", n_text(e->quantity));

	/* the price is ignored by a split, and by a row of quantity 0 */
	if (e->price == NULL && e->type != TXN_SPLIT && amount_sign(e->a_quantity) != 0)
		LEDGER_ERROR(ERRCODE_NULL_VALUE_NOT_ALLOWED, ledger, e, "price is null");
	e->a_price = e->price && e->type != TXN_SPLIT ? amount_of(e->price) : const_zero;
	if (amount_sign(e->a_price) < 0)
		LEDGER_ERROR(ERRCODE_INVALID_PARAMETER_VALUE, ledger, e,
					 "price %s is negative", n_text(e->price));
	if (amount_sign(e->a_fee) < 0)
		LEDGER_ERROR(ERRCODE_INVALID_PARAMETER_VALUE, ledger, e,
					 "fee %s is negative", n_text(e->fee));
	if (amount_sign(e->a_rate) <= 0)
		LEDGER_ERROR(ERRCODE_INVALID_PARAMETER_VALUE, ledger, e,
					 "exchange rate %s is not positive", n_text(e->rate));
	if (e->type == TXN_BUY || e->type == TXN_SELL || e->type == TXN_DIVIDEND ||
		e->type == TXN_SPLIT || (moves_securities(e)))
	{
		if (!e->has_asset)
			LEDGER_ERROR(ERRCODE_INVALID_PARAMETER_VALUE, ledger, e,
						 "a %s needs an asset_id", text_to_cstring(e->type_text));
		e->position = find_position(md, ps, e->asset_id);
		if (e->position < 0)
			LEDGER_ERROR(ERRCODE_INVALID_PARAMETER_VALUE, ledger, e,
						 "asset %s is unknown", uuid_text(&e->asset_id));
		e->asset = ps->items[e->position].asset;
	}
}

/*
 * Add a bought lot to a position.
 */
static void
add_lot(Position *pos, Amount quantity, Amount cost)
{
	if (pos->nlots == pos->maxlots)
	{
		pos->maxlots = pos->maxlots == 0 ? 4 : pos->maxlots * 2;
		pos->lots = pos->lots == NULL
			? palloc(sizeof(Lot) * pos->maxlots)
			: repalloc(pos->lots, sizeof(Lot) * pos->maxlots);
	}
	pos->lots[pos->nlots].quantity = quantity;
	pos->lots[pos->nlots].cost = cost;
	pos->nlots++;
	pos->quantity = amount_add(pos->quantity, quantity);
	pos->cost = amount_add(pos->cost, cost);
}

/*
 * Remove quantity (no more than is held) from a position and return the cost
 * removed: oldest lots first, a partial lot pro rata (FIFO), or pro rata from
 * the position's total cost (average).  The lots are kept in step under both
 * methods, but only FIFO reads their costs.
 */
static Amount
remove_quantity(Position *pos, Amount quantity, CostMethod method)
{
	Amount		removed = const_zero;
	Amount		remaining = quantity;

	if (method == COST_AVERAGE)
		removed = amount_div(amount_mul(pos->cost, quantity), pos->quantity);

	while (pos->head < pos->nlots && amount_cmp(remaining, const_zero) > 0)
	{
		Lot		   *lot = &pos->lots[pos->head];

		CHECK_FOR_INTERRUPTS();

		if (amount_cmp(lot->quantity, remaining) <= 0)
		{
			if (method == COST_FIFO)
				removed = amount_add(removed, lot->cost);
			remaining = amount_sub(remaining, lot->quantity);
			pos->head++;
		}
		else
		{
			Amount		part = amount_div(amount_mul(lot->cost, remaining), lot->quantity);

			if (method == COST_FIFO)
				removed = amount_add(removed, part);
			lot->cost = amount_sub(lot->cost, part);
			lot->quantity = amount_sub(lot->quantity, remaining);
			remaining = const_zero;
		}
	}

	pos->quantity = amount_sub(pos->quantity, quantity);
	if (amount_cmp(pos->quantity, const_zero) == 0)
	{
		/* fully sold: no residue of a division may linger */
		pos->cost = const_zero;
		pos->head = pos->nlots = 0;
	}
	else
		pos->cost = amount_sub(pos->cost, removed);
	return removed;
}

/*
 * Count a transaction's fee (in the base currency) in fees; none is 0.
 */
static inline void
add_fees(Totals *t, const LedgerEntry *e, Amount fee_base)
{
	if (e->fee != NULL)
		t->fees = amount_add(t->fees, fee_base);
}

/*
 * Money leaves the portfolio (BUY, FEE): out of cash when the portfolio has a
 * cash account, else an external flow in.
 */
static void
pay(Totals *t, Amount amount, bool on_day)
{
	if (t->has_cash)
		t->cash = amount_sub(t->cash, amount);
	else
	{
		t->flows = amount_add(t->flows, amount);
		if (on_day)
			t->day_flow = amount_add(t->day_flow, amount);
	}
}

/*
 * Money reaches the portfolio (SELL, DIVIDEND): into cash, else a flow out.
 */
static void
receive(Totals *t, Amount amount, bool on_day)
{
	if (t->has_cash)
		t->cash = amount_add(t->cash, amount);
	else
	{
		t->flows = amount_sub(t->flows, amount);
		if (on_day)
			t->day_flow = amount_sub(t->day_flow, amount);
	}
}

/*
 * An external flow through the cash account (DEPOSIT +, WITHDRAWAL -).
 */
static void
external_flow(Totals *t, Amount amount, bool on_day)
{
	t->flows = amount_add(t->flows, amount);
	if (on_day)
		t->day_flow = amount_add(t->day_flow, amount);
}

/*
 * Take what a SELL or TRANSFER_OUT removes from its position, and return
 * the cost removed (by the cost method).  More than is held is an error,
 * unless the excess is within the quantity tolerance: then the whole
 * holding goes.  A holding left within the tolerance of zero is closed, and
 * its remaining cost is removed with it.
 */
static Amount
take_out(const MarketData *md, const PortfolioLedger *ledger, const LedgerEntry *e,
		 Position *pos)
{
	const ValuationRules *rules = &md->rules;
	Amount		quantity = e->a_quantity;
	Amount		removed;

	if (amount_cmp(quantity, pos->quantity) > 0)
	{
		if (!rules->has_tolerance ||
			amount_cmp(amount_sub(quantity, pos->quantity), rules->tolerance) > 0)
			LEDGER_ERROR(ERRCODE_DATA_EXCEPTION, ledger, e,
						 "%s %s of asset %s but only %s is held",
						 e->type == TXN_SELL ? "sells" : "transfers out",
						 n_text(e->quantity), uuid_text(&e->asset_id),
						 amount_text(pos->quantity));
		quantity = pos->quantity;
	}
	/* dust of a position already at zero removes nothing (and divides by nothing) */
	removed = amount_sign(quantity) == 0 ? const_zero
		: remove_quantity(pos, quantity, rules->cost_method);
	if (rules->has_tolerance && amount_sign(pos->quantity) > 0 &&
		amount_cmp(pos->quantity, rules->tolerance) <= 0)
	{
		removed = amount_add(removed, pos->cost);
		pos->quantity = const_zero;
		pos->cost = const_zero;
		pos->head = pos->nlots = 0;
	}
	return removed;
}

/*
 * The place of a row among the rows of the same instant: splits first, then
 * what adds, then what removes (rows of one instant are then in id order,
 * the ledger's).
 */
static int
same_instant_rank(TxnType type)
{
	switch (type)
	{
		case TXN_SPLIT:
			return 0;
		case TXN_DEPOSIT:
		case TXN_TRANSFER_IN:
		case TXN_BUY:
		case TXN_DIVIDEND:
		case TXN_INTEREST:
			return 1;
		case TXN_SELL:
		case TXN_TRANSFER_OUT:
		case TXN_WITHDRAWAL:
		case TXN_FEE:
		case TXN_TAX:
			return 2;
		case TXN_UNKNOWN:
			break;
	}
	return 3;
}

/*
 * Order the rows of each instant by same_instant_rank(), keeping the
 * ledger's (id) order among rows of one rank: a stable counting sort of
 * each run of equal transaction dates, linear in its rows, so the walk stays
 * one ordered pass, nothing sorts the whole ledger, and no ledger makes
 * this quadratic.
 */
static void
order_same_instant(const PortfolioLedger *ledger)
{
	LedgerEntry *entries = ledger->entries;
	LedgerEntry *sorted = NULL;
	int			start = 0;

	while (start < ledger->nentries)
	{
		int			end = start + 1;
		bool		ordered = true;
		int			counts[4] = {0, 0, 0, 0};
		int			next[4];

		CHECK_FOR_INTERRUPTS();
		counts[same_instant_rank(entries[start].type)]++;
		while (end < ledger->nentries &&
			   entries[end].date_is_null == entries[start].date_is_null &&
			   entries[end].transaction_date == entries[start].transaction_date)
		{
			int			rank = same_instant_rank(entries[end].type);

			if (rank < same_instant_rank(entries[end - 1].type))
				ordered = false;
			counts[rank]++;
			end++;
		}
		if (!ordered)
		{
			if (sorted == NULL)
				sorted = palloc(sizeof(LedgerEntry) * ledger->nentries);
			next[0] = 0;
			for (int r = 1; r < 4; r++)
				next[r] = next[r - 1] + counts[r - 1];
			for (int i = start; i < end; i++)
				sorted[next[same_instant_rank(entries[i].type)]++] = entries[i];
			memcpy(&entries[start], sorted, sizeof(LedgerEntry) * (end - start));
		}
		start = end;
	}
	if (sorted != NULL)
		pfree(sorted);
}

/*
 * The fee of a row that moves no money of its own (SPLIT, TRANSFER_OUT),
 * paid as a FEE row pays: out of cash, or as a flow in.
 */
static void
pay_fee(Totals *t, const LedgerEntry *e, Amount fee_base, bool on_day)
{
	if (e->fee == NULL)
		return;
	pay(t, fee_base, on_day);
	add_fees(t, e, fee_base);
}

/*
 * A split of ratio new shares per old share: the position's quantity and
 * every open lot's are multiplied by it, the cost is unchanged, and the
 * last-trade price (the fallback price) is divided by it.  A position not
 * held, or a ratio of 1, changes nothing.  The quantity stays within the
 * bounds of a ledger amount (22003), and a portfolio's splits adjust at most
 * SNAPSHOT_SPLIT_WORK_MAX lots in all (54000), so that no ledger makes a
 * valuation's time or memory grow as lots times splits.
 */
#define SNAPSHOT_SPLIT_WORK_MAX 1000000

static void
split_position(const PortfolioLedger *ledger, const LedgerEntry *e, Position *pos,
			   int64 *split_work)
{
	Amount		ratio = e->a_quantity;
	Amount		quantity;

	if (amount_sign(pos->quantity) == 0 || amount_cmp(ratio, const_one) == 0)
		return;
	quantity = amount_mul(pos->quantity, ratio);
	if (!amount_in_bounds(amount_numeric(quantity)))
		ereport(ERROR,
				errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				errmsg("portfolio %s, transaction %s: the split makes the quantity of asset %s too long",
					   uuid_text(&ledger->id), snapshot_txn_id_text(ledger, e), uuid_text(&e->asset_id)),
				errdetail("A quantity has at most %d digits before and %d after the decimal point.",
						  SNAPSHOT_MAX_INTEGER_DIGITS, SNAPSHOT_MAX_DECIMALS),
				errhint("Correct the transaction in the ledger, then capture the portfolio again."));
	*split_work += pos->nlots - pos->head;
	if (*split_work > SNAPSHOT_SPLIT_WORK_MAX)
		ereport(ERROR,
				errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				errmsg("portfolio %s, transaction %s: its splits adjust more than %d open lots in all",
					   uuid_text(&ledger->id), snapshot_txn_id_text(ledger, e), SNAPSHOT_SPLIT_WORK_MAX),
				errdetail("Each split multiplies every open lot of its asset."));
	pos->quantity = quantity;
	for (int i = pos->head; i < pos->nlots; i++)
	{
		CHECK_FOR_INTERRUPTS();
		pos->lots[i].quantity = amount_mul(pos->lots[i].quantity, ratio);
	}
	pos->trade_price = amount_div(pos->trade_price, ratio);
}

/*
 * Apply one checked ledger row to the positions and totals.  Every amount
 * is in the base currency: g = quantity x price, f = fee, r = the rate.
 */
static void
apply_entry(const MarketData *md, const PortfolioLedger *ledger,
			const LedgerEntry *e, Positions *ps, Totals *t)
{
	Amount		gross = amount_mul(e->a_quantity, e->a_price);
	Amount		fee_base = e->fee ? to_base(e->a_fee, e) : const_zero;
	bool		on_day = snapshot_utc_date(e->transaction_date) == md->snapshot_date;
	Position   *pos = NULL;
	Amount		amount;

	TxnType		type = e->type;

	/* a transfer without an asset moves the cash account */
	if (type == TXN_TRANSFER_IN && !e->has_asset)
		type = TXN_DEPOSIT;
	else if (type == TXN_TRANSFER_OUT && !e->has_asset)
		type = TXN_WITHDRAWAL;

	CHECK_FOR_INTERRUPTS();
	switch (type)
	{
		case TXN_BUY:
			amount = to_base(plus_fee(gross, e), e);
			pos = &ps->items[e->position];
			add_lot(pos, e->a_quantity, amount);
			pay(t, amount, on_day);
			add_fees(t, e, fee_base);
			break;

		case TXN_SELL:
			pos = &ps->items[e->position];
			amount = to_base(minus_fee(gross, e), e);
			t->realized = amount_add(t->realized,
									 amount_sub(amount, take_out(md, ledger, e, pos)));
			receive(t, amount, on_day);
			add_fees(t, e, fee_base);
			break;

		case TXN_TRANSFER_IN:
			/* a lot costing (g + f) x r, no cash; the flow in is g x r */
			pos = &ps->items[e->position];
			add_lot(pos, e->a_quantity, to_base(plus_fee(gross, e), e));
			external_flow(t, to_base(gross, e), on_day);
			add_fees(t, e, fee_base);
			break;

		case TXN_TRANSFER_OUT:
			/* removed as a SELL would, no cash, no realized P&L; flow out g x r */
			pos = &ps->items[e->position];
			(void) take_out(md, ledger, e, pos);
			external_flow(t, amount_sub(const_zero, to_base(gross, e)), on_day);
			pay_fee(t, e, fee_base, on_day);
			break;

		case TXN_DEPOSIT:
			amount = to_base(gross, e);
			t->cash = amount_sub(amount_add(t->cash, amount), fee_base);
			external_flow(t, amount, on_day);
			add_fees(t, e, fee_base);
			return;

		case TXN_WITHDRAWAL:
			amount = to_base(gross, e);
			t->cash = amount_sub(amount_sub(t->cash, amount), fee_base);
			external_flow(t, amount_sub(const_zero, amount), on_day);
			add_fees(t, e, fee_base);
			return;

		case TXN_DIVIDEND:
		case TXN_INTEREST:
			t->income = amount_add(t->income, to_base(gross, e));
			receive(t, to_base(minus_fee(gross, e), e), on_day);
			add_fees(t, e, fee_base);
			return;

		case TXN_FEE:
			amount = to_base(plus_fee(gross, e), e);
			pay(t, amount, on_day);
			t->fees = amount_add(t->fees, amount);
			return;

		case TXN_TAX:
			pay(t, to_base(plus_fee(gross, e), e), on_day);
			t->taxes = amount_add(t->taxes, to_base(gross, e));
			add_fees(t, e, fee_base);
			return;

		case TXN_SPLIT:
			split_position(ledger, e, &ps->items[e->position], &t->split_work);
			pay_fee(t, e, fee_base, on_day);
			return;

		case TXN_UNKNOWN:
			elog(ERROR, "unchecked ledger entry");
	}

	/* trades and transfers of securities: the price and FX fallbacks */
	pos->trade_price = e->a_price;
	pos->trade_rate = e->a_rate;
	pos->trade_date = snapshot_utc_date(e->transaction_date);
}

#define SET_PRICE_SOURCE(vp, source) \
	((vp)->price_source = (source), (vp)->price_source_len = sizeof(source) - 1)

/*
 * Price and FX for one open position, counting fallbacks in out.
 */
static void
value_position(const MarketData *md, const char *base_currency, int base_id,
			   Position *pos, ValuedPosition *vp, SnapshotRow *out)
{
	const AssetInfo *asset = pos->asset;
	const char *currency = asset->currency;

	vp->pos = pos;
	if (asset->has_price)
	{
		vp->price = asset->close;
		vp->price_rounded = asset->close_rounded;
		vp->price_date = asset->price_date_iso;
		vp->price_date_len = asset->price_date_iso_len;
		/* in 64 bits: a close dated -infinity is stale, not an overflow */
		if ((int64) md->snapshot_date - asset->price_date > md->rules.stale_after_days)
		{
			SET_PRICE_SOURCE(vp, "stale");
			out->ints[SNAP_STALE_PRICES]++;
		}
		else
			SET_PRICE_SOURCE(vp, "market");
	}
	else
	{
		vp->price = pos->trade_price;
		vp->price_rounded = n_stored(vp->price);
		vp->price_date = snapshot_date_iso(pos->trade_date);
		vp->price_date_len = strlen(vp->price_date);
		SET_PRICE_SOURCE(vp, "last_trade");
		out->ints[SNAP_MISSING_PRICES]++;
	}

	vp->fx_rate_rounded = NULL;
	/* FX currencies have one id per code; others are compared as text */
	if (asset->currency_id >= 0 && base_id >= 0 ? asset->currency_id == base_id
		: currency != NULL && strcmp(currency, base_currency) == 0)
	{
		vp->fx_rate = const_one;
		vp->fx_rate_rounded = const_one_rounded;
	}
	else if (asset->currency_id >= 0 && base_id >= 0)
	{
		/* the direct rate, or the inverse of the opposite one (md->fx has both) */
		FxKey		key = {asset->currency_id, base_id};
		FxInfo	   *fx = hash_search(md->fx, &key, HASH_FIND, NULL);

		if (fx != NULL)
		{
			vp->fx_rate = fx->rate;
			vp->fx_rate_rounded = fx->rate_rounded;
		}
	}
	if (vp->fx_rate_rounded == NULL)
	{
		vp->fx_rate = pos->trade_rate;
		vp->fx_rate_rounded = n_stored(vp->fx_rate);
		out->ints[SNAP_MISSING_FX]++;
	}

	vp->market_value = amount_mul(amount_mul(pos->quantity, vp->price), vp->fx_rate);
}

/*
 * Order assets by symbol, then asset id (bytewise): the order of the
 * positions array.
 */
static int
compare_assets(const void *a, const void *b)
{
	const AssetInfo *pa = *(const AssetInfo *const *) a;
	const AssetInfo *pb = *(const AssetInfo *const *) b;
	int			c = strcmp(pa->symbol, pb->symbol);

	if (c != 0)
		return c;
	return memcmp(pa->asset_id.data, pb->asset_id.data, UUID_LEN);
}

/*
 * Number the assets in the order of the positions array, once per capture,
 * so that a valuation sorts its positions by an integer, and index them by
 * id in CurrentMemoryContext.
 */
void
snapshot_rank_assets(MarketData *md)
{
	long		n = hash_get_num_entries(md->assets);
	AssetInfo **assets = palloc(sizeof(AssetInfo *) * Max(n, 1));
	HASH_SEQ_STATUS seq;
	AssetInfo  *a;
	long		i = 0;

	asset_hash_seed_once();
	md->by_id = assetmap_create(CurrentMemoryContext, Max(n, 1), NULL);
	hash_seq_init(&seq, md->assets);
	while ((a = hash_seq_search(&seq)) != NULL)
	{
		bool		found;

		CHECK_FOR_INTERRUPTS();
		assets[i++] = a;
		assetmap_insert(md->by_id, a->asset_id, &found)->asset = a;
	}
	qsort(assets, n, sizeof(AssetInfo *), compare_assets);
	for (i = 0; i < n; i++)
		assets[i]->rank = (int) i;
	pfree(assets);
}

/* A valued position's place in the positions array. */
typedef struct PositionOrder
{
	int			rank;			/* its asset's */
	int			index;			/* into the valued positions */
} PositionOrder;

static int
compare_order(const void *a, const void *b)
{
	int			ra = ((const PositionOrder *) a)->rank;
	int			rb = ((const PositionOrder *) b)->rank;

	return (ra > rb) - (ra < rb);
}

/*
 * The positions array: one object per open position, by symbol.
 */
static Jsonb *
positions_jsonb(ValuedPosition *vps, const PositionOrder *order, int n)
{
	PositionsWriter w;

	snapshot_positions_start(&w, n);
	for (int i = 0; i < n; i++)
	{
		const ValuedPosition *vp = &vps[order[i].index];
		const void *values[POSITION_KEYS] = {
			[POS_PRICE] = vp->price_rounded,
			[POS_SYMBOL] = vp->pos->asset->symbol,
			[POS_FX_RATE] = vp->fx_rate_rounded,
			[POS_ASSET_ID] = vp->pos->asset->id_text,
			[POS_CURRENCY] = vp->pos->asset->currency,
			[POS_QUANTITY] = n_stored(vp->pos->quantity),
			[POS_COST_BASIS] = n_stored(vp->pos->cost),
			[POS_PRICE_DATE] = vp->price_date,
			[POS_MARKET_VALUE] = n_stored(vp->market_value),
			[POS_PRICE_SOURCE] = vp->price_source,
		};

		const int	lens[POSITION_KEYS] = {
			[POS_SYMBOL] = vp->pos->asset->symbol_len,
			[POS_ASSET_ID] = UUID_LEN * 2 + 4,	/* as uuid_out writes it */
			[POS_CURRENCY] = vp->pos->asset->currency_len,
			[POS_PRICE_DATE] = vp->price_date_len,
			[POS_PRICE_SOURCE] = vp->price_source_len,
		};

		snapshot_positions_add(&w, values, lens);
	}
	return snapshot_positions_finish(&w);
}

/*
 * Value one portfolio as of md->snapshot_date.  The ledger holds the
 * portfolio's transactions dated before the end of that UTC day, in ledger
 * order.  Everything is allocated in CurrentMemoryContext, which the caller
 * resets per portfolio.  Raises a class 22 error on bad data.
 */
void
snapshot_value_portfolio(const MarketData *md, const PortfolioLedger *ledger,
						 SnapshotRow *out)
{
	Positions	ps;
	int			base_id;
	Totals		t;
	ValuedPosition *vps;
	PositionOrder *order;
	int			nvps = 0;
	Amount		market_value;
	Amount		total_cost;

	init_constants();

	if (ledger->base_currency == NULL)
		ereport(ERROR,
				errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				errmsg("portfolio %s has no base currency", uuid_text(&ledger->id)),
				errhint("Set the portfolio's base_currency, then capture it again."));
	if (strlen(ledger->base_currency) > SNAPSHOT_CURRENCY_MAXLEN)
		ereport(ERROR,
				errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				errmsg("portfolio %s has a base currency of %zu bytes", uuid_text(&ledger->id),
					   strlen(ledger->base_currency)),
				errdetail("A currency code has at most %d bytes.", SNAPSHOT_CURRENCY_MAXLEN),
				errhint("Set the portfolio's base_currency, then capture it again."));

	memset(&t, 0, sizeof(t));
	t.cash = t.realized = t.income = t.fees = t.taxes = t.flows = t.day_flow = const_zero;
	memset(&ps, 0, sizeof(ps));
	ps.map = posmap_create(CurrentMemoryContext, 16, NULL);
	/*
	 * In ledger order (by date, then id) a row read twice (a portfolio
	 * listed twice by a view, or a reused transaction id) sits next to its
	 * twin; counting it twice would be silently wrong money.  Checked before
	 * the rows of an instant are reordered by type, which could part twins.
	 */
	for (int i = 1; i < ledger->nentries; i++)
		if (ledger->entries[i].transaction_date == ledger->entries[i - 1].transaction_date &&
			same_txn_id(ledger, &ledger->entries[i], &ledger->entries[i - 1]))
			LEDGER_ERROR(ERRCODE_DATA_EXCEPTION, ledger, &ledger->entries[i],
						 "appears more than once in the ledger");

	order_same_instant(ledger);
	for (int i = 0; i < ledger->nentries; i++)
	{
		check_entry(md, ledger, &ledger->entries[i], &ps);
		if (moves_cash_account(&ledger->entries[i]))
			t.has_cash = true;
	}

	for (int i = 0; i < ledger->nentries; i++)
		apply_entry(md, ledger, &ledger->entries[i], &ps, &t);

	memset(out, 0, sizeof(SnapshotRow));
	out->fields[SNAP_PORTFOLIO_ID] = &ledger->id;
	out->fields[SNAP_BASE_CURRENCY] = cstring_to_text(ledger->base_currency);
	vps = palloc(sizeof(ValuedPosition) * Max(ps.n, 1));
	market_value = const_zero;
	total_cost = const_zero;
	base_id = snapshot_currency_id(md, ledger->base_currency);
	for (int i = 0; i < ps.n; i++)
	{
		Position   *pos = &ps.items[i];

		CHECK_FOR_INTERRUPTS();
		if (amount_sign(pos->quantity) == 0)
			continue;
		value_position(md, ledger->base_currency, base_id, pos, &vps[nvps], out);
		market_value = amount_add(market_value, vps[nvps].market_value);
		total_cost = amount_add(total_cost, pos->cost);
		nvps++;
	}
	order = palloc(sizeof(PositionOrder) * Max(nvps, 1));
	for (int i = 0; i < nvps; i++)
	{
		order[i].rank = vps[i].pos->asset->rank;
		order[i].index = i;
	}
	qsort(order, nvps, sizeof(PositionOrder), compare_order);

	out->fields[SNAP_MARKET_VALUE] = n_stored(market_value);
	out->fields[SNAP_CASH_BALANCE] = n_stored(t.cash);
	out->fields[SNAP_NET_WORTH] = n_stored(amount_add(market_value, t.cash));
	out->fields[SNAP_TOTAL_COST] = n_stored(total_cost);
	out->fields[SNAP_UNREALIZED_PNL] = n_stored(amount_sub(market_value, total_cost));
	out->fields[SNAP_REALIZED_PNL] = n_stored(t.realized);
	out->fields[SNAP_INCOME] = n_stored(t.income);
	out->fields[SNAP_FEES] = n_stored(t.fees);
	out->fields[SNAP_TAXES] = n_stored(t.taxes);
	out->fields[SNAP_NET_CONTRIBUTION] = n_stored(t.flows);
	out->fields[SNAP_DAY_FLOW] = n_stored(t.day_flow);
	out->ints[SNAP_POSITION_COUNT] = nvps;
	out->fields[SNAP_POSITIONS] = positions_jsonb(vps, order, nvps);
}
