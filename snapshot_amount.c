/*-------------------------------------------------------------------------
 *
 * snapshot_amount.c
 *	  Exact decimal amounts for the valuation: numeric's arithmetic, held in
 *	  128-bit fixed point while the values are short.
 *
 * A valuation does some 250 additions, multiplications and roundings per
 * portfolio.  Through numeric.c each one unpacks its operands and allocates
 * and normalizes a result, which made arithmetic a third of the valuation.
 * An Amount is the same value as an integer scaled by 10^dscale (numeric's
 * display scale), so add, subtract, multiply, compare and round are integer
 * operations, and a numeric is built only for what is stored.
 *
 * Every operation gives exactly what numeric.c gives: the same value and the
 * same display scale (add and subtract keep the larger scale, multiply adds
 * them, round sets it), and amount_numeric() writes the digits, weight and
 * header numeric.c's make_result() would, so the stored bytes are the same.
 * When a value would not fit (more than 34 significant digits, or a scale
 * above 34), when an operand is NaN or infinite, and for every division, the
 * operation is numeric.c's own, and its result is taken back into fixed
 * point when it fits.  Building with -DSNAPSHOT_VERIFY_ARITHMETIC runs
 * numeric.c beside every fixed-point operation and raises an error on any
 * difference in the bytes.
 *
 * Reading and writing numerics relies on numeric's on-disk format, which
 * pg_upgrade keeps stable across major versions; the constants below restate
 * those of numeric.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/numeric.h"

#include "snapshot_amount.h"

/* numeric's on-disk format (numeric.c) */
#define NBASE				10000
#define DEC_DIGITS			4
#define N_SIGN_MASK			0xC000
#define N_POS				0x0000
#define N_NEG				0x4000
#define N_SHORT				0x8000
#define N_SPECIAL			0xC000
#define N_SHORT_SIGN_MASK	0x2000
#define N_SHORT_DSCALE_MASK 0x1F80
#define N_SHORT_DSCALE_SHIFT 7
#define N_SHORT_DSCALE_MAX	(N_SHORT_DSCALE_MASK >> N_SHORT_DSCALE_SHIFT)
#define N_SHORT_WEIGHT_SIGN_MASK 0x0040
#define N_SHORT_WEIGHT_MASK 0x003F
#define N_SHORT_WEIGHT_MAX	N_SHORT_WEIGHT_MASK
#define N_SHORT_WEIGHT_MIN	(-(N_SHORT_WEIGHT_MASK + 1))
#define N_DSCALE_MASK		0x3FFF

/* See snapshot_amount.h. */
bool
amount_is_special(Numeric num)
{
	uint16		header;

	memcpy(&header, VARDATA_ANY(num), sizeof(uint16));
	return (header & N_SIGN_MASK) == N_SPECIAL;
}

/*
 * Whether a value read from the ledger or the market data is within the
 * bounds a valuation accepts: fewer than 10^SNAPSHOT_MAX_INTEGER_DIGITS and
 * at most SNAPSHOT_MAX_DECIMALS decimal places.  Read from the header alone,
 * so a value of 65,000 digits costs no more to refuse than one of four.
 * NaN and the infinities pass: the valuation refuses them by name.
 */
bool
amount_in_bounds(Numeric num)
{
	const char *p = VARDATA_ANY(num);
	int			len = VARSIZE_ANY_EXHDR(num);
	uint16		header;
	int16		weight;
	int			dscale;
	int			ndigits;

	memcpy(&header, p, sizeof(uint16));
	if ((header & N_SIGN_MASK) == N_SPECIAL)
		return true;
	if (header & N_SHORT)
	{
		dscale = (header & N_SHORT_DSCALE_MASK) >> N_SHORT_DSCALE_SHIFT;
		weight = (int16) (((header & N_SHORT_WEIGHT_SIGN_MASK) ? ~N_SHORT_WEIGHT_MASK : 0) |
						  (header & N_SHORT_WEIGHT_MASK));
		ndigits = (len - (int) sizeof(uint16)) / (int) sizeof(int16);
	}
	else
	{
		dscale = header & N_DSCALE_MASK;
		memcpy(&weight, p + sizeof(uint16), sizeof(int16));
		ndigits = (len - 2 * (int) sizeof(uint16)) / (int) sizeof(int16);
	}
	if (dscale > SNAPSHOT_MAX_DECIMALS)
		return false;
	/* a nonzero value is below NBASE^(weight + 1) */
	return ndigits == 0 || (weight + 1) * DEC_DIGITS <= SNAPSHOT_MAX_INTEGER_DIGITS;
}

#ifdef SNAPSHOT_FIXED_POINT

/*
 * Fixed-point values keep |mant| < 10^FIXED_DIGITS and scale <=
 * FIXED_DIGITS, so that aligning a value on an NBASE digit (at most 10^3
 * more) never overflows 128 bits.
 */
#define FIXED_DIGITS 34

static int128 pow10_128[FIXED_DIGITS + 1];

static void
init_pow10(void)
{
	if (pow10_128[0] != 0)
		return;
	pow10_128[0] = 1;
	for (int i = 1; i <= FIXED_DIGITS; i++)
		pow10_128[i] = pow10_128[i - 1] * 10;
}

static inline bool
fits(int128 mant, int scale)
{
	return scale <= FIXED_DIGITS &&
		mant < pow10_128[FIXED_DIGITS] && mant > -pow10_128[FIXED_DIGITS];
}

/* a * b into *r; false on overflow.  64-bit operands take one multiply. */
static inline bool
mul_fits(int128 a, int128 b, int128 *r)
{
	if (a == (int64) a && b == (int64) b)
	{
		*r = (int128) (int64) a * (int64) b;
		return true;
	}
	return !__builtin_mul_overflow(a, b, r);
}

/*
 * Read a finite numeric into fixed point; false when it is NaN or infinite
 * or does not fit.
 */
static bool
fixed_from_numeric(Numeric num, Amount *a)
{
	const char *p = VARDATA_ANY(num);
	int			len = VARSIZE_ANY_EXHDR(num);
	uint16		header;
	int16		weight;
	bool		negative;
	int			ndigits;
	const char *digits;
	int			frac_digits;
	int			trailing;
	int128		mant;
	int			scale;
	uint64		low = 0;
	int			i;

	memcpy(&header, p, sizeof(uint16));
	if ((header & N_SIGN_MASK) == N_SPECIAL)
		return false;
	if (header & N_SHORT)
	{
		negative = (header & N_SHORT_SIGN_MASK) != 0;
		a->scale = (header & N_SHORT_DSCALE_MASK) >> N_SHORT_DSCALE_SHIFT;
		weight = (int16) (((header & N_SHORT_WEIGHT_SIGN_MASK) ? ~N_SHORT_WEIGHT_MASK : 0) |
						  (header & N_SHORT_WEIGHT_MASK));
		digits = p + sizeof(uint16);
		ndigits = (len - (int) sizeof(uint16)) / (int) sizeof(int16);
	}
	else
	{
		negative = (header & N_SIGN_MASK) == N_NEG;
		a->scale = header & N_DSCALE_MASK;
		memcpy(&weight, p + sizeof(uint16), sizeof(int16));
		digits = p + 2 * sizeof(uint16);
		ndigits = (len - 2 * (int) sizeof(uint16)) / (int) sizeof(int16);
	}
	a->num = NULL;
	if (a->scale > FIXED_DIGITS)
		return false;
	if (ndigits == 0)
	{
		a->mant = 0;
		return true;
	}

	/* NBASE digits after the point, and zero NBASE digits implied before it */
	frac_digits = Max(ndigits - 1 - weight, 0);
	trailing = Max(weight - (ndigits - 1), 0);
	if ((ndigits + trailing) * DEC_DIGITS > FIXED_DIGITS)
		return false;

	/* the first 4 NBASE digits (16 decimal) in 64 bits, the rest in 128 */
	for (i = 0; i < ndigits && i < 4; i++)
	{
		int16		d;

		memcpy(&d, digits + i * sizeof(int16), sizeof(int16));
		low = low * NBASE + (uint64) d;
	}
	mant = (int128) low;
	for (; i < ndigits; i++)
	{
		int16		d;

		memcpy(&d, digits + i * sizeof(int16), sizeof(int16));
		mant = mant * NBASE + d;
	}
	if (trailing > 0)
		mant *= pow10_128[DEC_DIGITS * trailing];

	/* from scale 4 * frac_digits to the display scale */
	scale = DEC_DIGITS * frac_digits;
	if (scale > a->scale)
	{
		/* the zeros that pad the last NBASE digit (numeric.c writes no others) */
		int128		unit = pow10_128[scale - a->scale];

		if (mant <= (int128) PG_UINT64_MAX && unit <= (int128) PG_UINT64_MAX)
		{
			if ((uint64) mant % (uint64) unit != 0)
				return false;
			mant = (uint64) mant / (uint64) unit;
		}
		else
		{
			if (mant % unit != 0)
				return false;
			mant /= unit;
		}
	}
	else if (scale < a->scale && !mul_fits(mant, pow10_128[a->scale - scale], &mant))
		return false;
	if (!fits(mant, a->scale))
		return false;
	a->mant = negative ? -mant : mant;
	return true;
}

/*
 * Write a fixed-point value as numeric.c's make_result() would: NBASE digits
 * with no leading or trailing zero digit, in the short format when the
 * display scale and weight allow it.
 */
static Numeric
fixed_to_numeric(const Amount *a)
{
	int16		digits[FIXED_DIGITS / DEC_DIGITS + 3];
	int			first = lengthof(digits);
	int			ndigits;
	int			weight = 0;
	bool		negative = a->mant < 0;
	int128		mant = negative ? -a->mant : a->mant;
	int			pad = (DEC_DIGITS - a->scale % DEC_DIGITS) % DEC_DIGITS;
	uint64		low;
	Numeric		result;
	char	   *p;
	int			len;

	/* align the point on an NBASE digit: scale up to a multiple of 4 */
	mant *= pow10_128[pad];

	/* NBASE digits, least significant first, into the end of digits[] */
	while (mant > (int128) PG_UINT64_MAX)
	{
		digits[--first] = (int16) (mant % NBASE);
		mant /= NBASE;
	}
	for (low = (uint64) mant; low > 0; low /= NBASE)
		digits[--first] = (int16) (low % NBASE);
	ndigits = lengthof(digits) - first;
	if (ndigits > 0)
		weight = ndigits - 1 - (a->scale + pad) / DEC_DIGITS;
	while (ndigits > 0 && digits[first + ndigits - 1] == 0)
		ndigits--;
	if (ndigits == 0)
	{
		weight = 0;
		negative = false;
	}

	if (a->scale <= N_SHORT_DSCALE_MAX && weight <= N_SHORT_WEIGHT_MAX &&
		weight >= N_SHORT_WEIGHT_MIN)
	{
		uint16		header = N_SHORT | (negative ? N_SHORT_SIGN_MASK : 0) |
			(a->scale << N_SHORT_DSCALE_SHIFT) |
			(weight < 0 ? N_SHORT_WEIGHT_SIGN_MASK : 0) |
			(weight & N_SHORT_WEIGHT_MASK);

		len = VARHDRSZ + sizeof(uint16) + ndigits * sizeof(int16);
		result = (Numeric) palloc(len);
		p = VARDATA(result);
		memcpy(p, &header, sizeof(uint16));
		p += sizeof(uint16);
	}
	else
	{
		uint16		sign_dscale = (negative ? N_NEG : N_POS) | (a->scale & N_DSCALE_MASK);
		int16		w = (int16) weight;

		len = VARHDRSZ + 2 * sizeof(uint16) + ndigits * sizeof(int16);
		result = (Numeric) palloc(len);
		p = VARDATA(result);
		memcpy(p, &sign_dscale, sizeof(uint16));
		memcpy(p + sizeof(uint16), &w, sizeof(int16));
		p += 2 * sizeof(uint16);
	}
	SET_VARSIZE(result, len);
	memcpy(p, &digits[first], ndigits * sizeof(int16));
	return result;
}

/* Both in fixed point at the larger scale; false if not possible. */
static inline bool
aligned(Amount *a, Amount *b)
{
	if (a->num != NULL || b->num != NULL)
		return false;
	if (a->scale < b->scale)
	{
		if (!mul_fits(a->mant, pow10_128[b->scale - a->scale], &a->mant))
			return false;
		a->scale = b->scale;
	}
	else if (b->scale < a->scale)
	{
		if (!mul_fits(b->mant, pow10_128[a->scale - b->scale], &b->mant))
			return false;
		b->scale = a->scale;
	}
	return true;
}

#endif							/* SNAPSHOT_FIXED_POINT */

/*
 * An amount from a numeric, which may have a short header (a ledger value
 * as the ledger cursor fetched it).  One held as a numeric is not copied,
 * and must live as long, unless its header is short: the numeric code and
 * the positions array read a 4-byte header, so it is then copied with one.
 */
Amount
amount_of(Numeric num)
{
	Amount		a;

#ifdef SNAPSHOT_FIXED_POINT
	init_pow10();
	if (fixed_from_numeric(num, &a))
		return a;
#endif
	a.num = (Numeric) pg_detoast_datum((struct varlena *) num);
	return a;
}

/*
 * The amount as a numeric, built in the current memory context when it is
 * held in fixed point.
 */
Numeric
amount_numeric(Amount a)
{
#ifdef SNAPSHOT_FIXED_POINT
	if (a.num == NULL)
		return fixed_to_numeric(&a);
#endif
	return a.num;
}

#ifdef SNAPSHOT_VERIFY_ARITHMETIC
/* The fixed-point result must be the very numeric numeric.c gives. */
static Amount
verified(Amount fixed, Numeric slow, const char *op)
{
	Numeric		mine;

	if (fixed.num != NULL)
		return fixed;
	mine = amount_numeric(fixed);
	if (VARSIZE(mine) != VARSIZE(slow) || memcmp(mine, slow, VARSIZE(mine)) != 0)
		elog(ERROR, "snapshot: fixed-point %s gave %s, numeric gives %s", op,
			 DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(mine))),
			 DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(slow))));
	return fixed;
}
#define VERIFIED(fixed, slow, op) verified((fixed), (slow), (op))
#else
#define VERIFIED(fixed, slow, op) (fixed)
#endif

/*
 * a + b or a - b, as numeric_add() and numeric_sub(): the larger scale.
 * numeric.c's result is taken back into fixed point when it fits.
 */
static Amount
add_or_sub(Amount a, Amount b, bool subtract)
{
#ifdef SNAPSHOT_FIXED_POINT
	Amount		x = a;
	Amount		y = b;
	Amount		r;

	if (aligned(&x, &y) &&
		!(subtract ? __builtin_sub_overflow(x.mant, y.mant, &r.mant)
		  : __builtin_add_overflow(x.mant, y.mant, &r.mant)) &&
		fits(r.mant, x.scale))
	{
		r.scale = x.scale;
		r.num = NULL;
		return VERIFIED(r, subtract
						? numeric_sub_opt_error(amount_numeric(a), amount_numeric(b), NULL)
						: numeric_add_opt_error(amount_numeric(a), amount_numeric(b), NULL),
						subtract ? "sub" : "add");
	}
#endif
	return amount_of(subtract
					 ? numeric_sub_opt_error(amount_numeric(a), amount_numeric(b), NULL)
					 : numeric_add_opt_error(amount_numeric(a), amount_numeric(b), NULL));
}

/* a + b */
Amount
amount_add(Amount a, Amount b)
{
	return add_or_sub(a, b, false);
}

/* a - b */
Amount
amount_sub(Amount a, Amount b)
{
	return add_or_sub(a, b, true);
}

/* a * b, as numeric_mul() */
Amount
amount_mul(Amount a, Amount b)
{
#ifdef SNAPSHOT_FIXED_POINT
	Amount		r;

	/* numeric_mul keeps every digit: the scales add */
	if (a.num == NULL && b.num == NULL && mul_fits(a.mant, b.mant, &r.mant) &&
		fits(r.mant, a.scale + b.scale))
	{
		r.scale = a.scale + b.scale;
		r.num = NULL;
		return VERIFIED(r, numeric_mul_opt_error(amount_numeric(a), amount_numeric(b), NULL),
						"mul");
	}
#endif
	return amount_of(numeric_mul_opt_error(amount_numeric(a), amount_numeric(b), NULL));
}

/* a / b: numeric_div() itself */
Amount
amount_div(Amount a, Amount b)
{
	/* numeric.c chooses the quotient's scale; always its division */
	return amount_of(numeric_div_opt_error(amount_numeric(a), amount_numeric(b), NULL));
}

/*
 * Round to SNAPSHOT_SCALE places, half away from zero; the display scale
 * becomes SNAPSHOT_SCALE, as numeric_round() makes it.
 */
Amount
amount_round(Amount a)
{
#ifdef SNAPSHOT_FIXED_POINT
	Amount		r = a;

	if (a.num == NULL)
	{
		bool		ok = true;

		if (a.scale <= SNAPSHOT_SCALE)
			ok = mul_fits(a.mant, pow10_128[SNAPSHOT_SCALE - a.scale], &r.mant);
		else
		{
			int128		unit = pow10_128[a.scale - SNAPSHOT_SCALE];
			int128		magnitude = a.mant < 0 ? -a.mant : a.mant;
			int128		q = magnitude / unit;

			if ((magnitude % unit) * 2 >= unit)
				q++;
			r.mant = a.mant < 0 ? -q : q;
		}
		r.scale = SNAPSHOT_SCALE;
		if (ok && fits(r.mant, r.scale))
			return VERIFIED(r, DatumGetNumeric(DirectFunctionCall2(numeric_round,
																   NumericGetDatum(amount_numeric(a)),
																   Int32GetDatum(SNAPSHOT_SCALE))),
							"round");
	}
#endif
	return amount_of(DatumGetNumeric(DirectFunctionCall2(numeric_round,
														  NumericGetDatum(amount_numeric(a)),
														  Int32GetDatum(SNAPSHOT_SCALE))));
}

/* -1, 0 or 1 as a is less than, equal to or greater than b */
int
amount_cmp(Amount a, Amount b)
{
#ifdef SNAPSHOT_FIXED_POINT
	Amount		x = a;
	Amount		y = b;

	if (aligned(&x, &y))
		return x.mant < y.mant ? -1 : x.mant > y.mant ? 1 : 0;
#endif
	return DatumGetInt32(DirectFunctionCall2(numeric_cmp,
											 NumericGetDatum(amount_numeric(a)),
											 NumericGetDatum(amount_numeric(b))));
}

/* the sign of a: -1, 0 or 1 */
int
amount_sign(Amount a)
{
#ifdef SNAPSHOT_FIXED_POINT
	if (a.num == NULL)
		return a.mant < 0 ? -1 : a.mant > 0 ? 1 : 0;
#endif
	return amount_cmp(a, amount_of(int64_to_numeric(0)));
}

/* The amount as numeric_out() prints it. */
char *
amount_text(Amount a)
{
	return DatumGetCString(DirectFunctionCall1(numeric_out,
											   NumericGetDatum(amount_numeric(a))));
}
