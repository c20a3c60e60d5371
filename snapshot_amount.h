/*-------------------------------------------------------------------------
 *
 * snapshot_amount.h
 *	  Exact decimal amounts (snapshot_amount.c): numeric's arithmetic, in
 *	  128-bit fixed point while the values are short.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SNAPSHOT_AMOUNT_H
#define SNAPSHOT_AMOUNT_H

#include "utils/numeric.h"

/*
 * An amount: numeric's value and display scale, held as mant / 10^scale
 * while it fits in 128 bits, else as a numeric.  Operations give exactly
 * what numeric.c gives.
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

/*
 * The largest values a valuation accepts from the ledger and market data:
 * more than any SQL decimal type holds (38 digits), far less than numeric's
 * 131,072 digits, whose arithmetic takes seconds per operation.
 */
#define SNAPSHOT_MAX_INTEGER_DIGITS 40
#define SNAPSHOT_MAX_DECIMALS 40

/* Decimal places of the amounts a snapshot stores (amount_round()). */
#define SNAPSHOT_SCALE 8

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
/* Whether a numeric is NaN or an infinity (a short header read as it is). */
extern bool amount_is_special(Numeric num);

#endif							/* SNAPSHOT_AMOUNT_H */
