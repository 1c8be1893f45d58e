/*-------------------------------------------------------------------------
 *
 * rolling.c
 *		  Window aggregates: rolling variance and standard deviation,
 *		  momentum (least-squares slope against time) and EWMA.
 *
 * The built-in float8 variance and regression aggregates have no inverse
 * transition function, so over a sliding frame Postgres recomputes every
 * frame from scratch.  The aggregates here support moving-aggregate mode:
 * a row leaving the frame is subtracted from the state, so each output row
 * costs O(1).
 *
 * Subtracting is where naive implementations drift, so the state keeps
 * sums of shifted data, (x - K) with K a value of the frame, in
 * double-double arithmetic (about 106 bits) built from the error-free
 * transformations TwoSum and TwoProd.  Alongside each sum we keep a
 * running bound on its accumulated rounding error.  After every removal
 * the inverse transition function compares that bound with the centred
 * sum it would produce; when the bound is no longer negligible (a dominant
 * value has left, or the frame has cancelled down to a tiny variance) it
 * returns NULL, and the executor restarts the frame from its first row
 * with a fresh shift.  A window whose values are all equal is recognised
 * exactly, by tracking the run of equal values at the frame's tail, and
 * reset in O(1) without any restart.
 *
 * Non-finite inputs are counted, not summed, so they can leave the frame
 * again; while any is present the result is NaN, as for stddev_samp().
 *
 * sum_each, last in this file, is a plain aggregate: element-wise float8
 * sums in the aggregate's input order, so that several ordered sums cost
 * one sort per group.
 *
 * This file stands apart from the foreign-data wrapper: it needs only the
 * fmgr interface and the date/time types.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <float.h>
#include <math.h>

#include "datatype/timestamp.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/date.h"
#include "utils/float.h"
#include "utils/timestamp.h"
#if PG_VERSION_NUM >= 160000
#include "varatt.h"
#endif

PG_FUNCTION_INFO_V1(rolling_var_accum);
PG_FUNCTION_INFO_V1(rolling_var_accum_inv);
PG_FUNCTION_INFO_V1(rolling_var_combine);
PG_FUNCTION_INFO_V1(rolling_var_serialize);
PG_FUNCTION_INFO_V1(rolling_var_deserialize);
PG_FUNCTION_INFO_V1(rolling_var_final);
PG_FUNCTION_INFO_V1(rolling_stddev_final);
PG_FUNCTION_INFO_V1(rolling_avg_final);
PG_FUNCTION_INFO_V1(momentum_accum_date);
PG_FUNCTION_INFO_V1(momentum_accum_inv_date);
PG_FUNCTION_INFO_V1(momentum_accum_timestamptz);
PG_FUNCTION_INFO_V1(momentum_accum_inv_timestamptz);
PG_FUNCTION_INFO_V1(momentum_combine);
PG_FUNCTION_INFO_V1(momentum_serialize);
PG_FUNCTION_INFO_V1(momentum_deserialize);
PG_FUNCTION_INFO_V1(momentum_final);
PG_FUNCTION_INFO_V1(ewma_accum);
PG_FUNCTION_INFO_V1(ewma_final);
PG_FUNCTION_INFO_V1(sum_each_accum);
PG_FUNCTION_INFO_V1(sum_each_final);

/*
 * Rounding-error bookkeeping.  Every double-double operation used on the
 * sums has a relative error of at most a few u^2 (u = 2^-53) of its
 * operands' magnitude; ERROR_UNIT is 16 u^2, a deliberately generous
 * constant per unit of magnitude that passed through a sum.
 */
#define ERROR_UNIT		(1.0 / 5070602400912917605986812821504.0)	/* 2^-102 */

/*
 * A removal is accepted only while the error bound stays below TOLERANCE
 * times the quantity it perturbs.  2^-60 (about 9e-19) leaves the result,
 * a double, accurate to a few units in the last place, and is loose enough
 * that ordinary data never restarts for accumulated rounding alone.
 */
#define TOLERANCE		(1.0 / 1152921504606846976.0)	/* 2^-60 */

/*
 * SLACK bounds, relative to the operands, the rounding of a centred sum
 * formed in plain double from the high parts (4u, generously).
 */
#define SLACK			(4.0 * DBL_EPSILON / 2.0)

/* Version tag of the serialized states, for a clear error on mismatch. */
#define ROLLING_STATE_MAGIC		0x524F4C31	/* "ROL1" */

/*
 * A double-double: the unevaluated sum hi + lo with |lo| <= ulp(hi)/2.
 */
typedef struct DD
{
	double		hi;
	double		lo;
} DD;

/*
 * The error-free transformations below rely on every operation being
 * rounded to double.  With hardware FMA, the compiler may contract a
 * product and a sum into one instruction (GCC does so by default), which
 * would break Dekker's splitting; so there we compute the product error
 * with fma() itself, which is exact.  Without hardware FMA no contraction
 * can happen and Dekker's algorithm is exact.
 */
#if defined(FP_FAST_FMA) || defined(__FP_FAST_FMA)
#define ROLLING_USE_FMA 1
#endif

/*
 * dd_two_sum returns a + b exactly as a double-double (Knuth's TwoSum).
 */
static inline DD
dd_two_sum(double a, double b)
{
	DD			r;
	double		bb;

	r.hi = a + b;
	bb = r.hi - a;
	r.lo = (a - (r.hi - bb)) + (b - bb);
	return r;
}

/*
 * dd_fast_two_sum returns a + b exactly, given |a| >= |b| or a == 0.
 */
static inline DD
dd_fast_two_sum(double a, double b)
{
	DD			r;

	r.hi = a + b;
	r.lo = b - (r.hi - a);
	return r;
}

/*
 * dd_two_prod returns a * b exactly as a double-double (barring overflow
 * or underflow).
 */
static inline DD
dd_two_prod(double a, double b)
{
	DD			r;

	r.hi = a * b;
#ifdef ROLLING_USE_FMA
	r.lo = fma(a, b, -r.hi);
#else
	{
		/* Veltkamp's split into 26-bit halves, then Dekker's product. */
		const double split = 134217729.0;	/* 2^27 + 1 */
		double		t,
					ah,
					al,
					bh,
					bl;

		t = split * a;
		ah = t - (t - a);
		al = a - ah;
		t = split * b;
		bh = t - (t - b);
		bl = b - bh;
		r.lo = ((ah * bh - r.hi) + ah * bl + al * bh) + al * bl;
	}
#endif
	return r;
}

/*
 * dd_add returns x + y; relative error at most 3u^2 of the result
 * (Joldes, Muller and Popescu 2017, AccurateDWPlusDW).
 */
static inline DD
dd_add(DD x, DD y)
{
	DD			s = dd_two_sum(x.hi, y.hi);
	DD			t = dd_two_sum(x.lo, y.lo);
	DD			v;

	v = dd_fast_two_sum(s.hi, s.lo + t.hi);
	return dd_fast_two_sum(v.hi, t.lo + v.lo);
}

/*
 * dd_add_d returns x + b for a double b; relative error at most 2u^2
 * (DWPlusFP).
 */
static inline DD
dd_add_d(DD x, double b)
{
	DD			s = dd_two_sum(x.hi, b);

	return dd_fast_two_sum(s.hi, x.lo + s.lo);
}

/*
 * dd_neg returns -x, exactly.
 */
static inline DD
dd_neg(DD x)
{
	x.hi = -x.hi;
	x.lo = -x.lo;
	return x;
}

/*
 * dd_mul returns x * y with a relative error of a few u^2.
 */
static inline DD
dd_mul(DD x, DD y)
{
	DD			p = dd_two_prod(x.hi, y.hi);

	return dd_fast_two_sum(p.hi, p.lo + (x.hi * y.lo + x.lo * y.hi));
}

/*
 * dd_mul_d returns x * b for a double b.
 */
static inline DD
dd_mul_d(DD x, double b)
{
	DD			p = dd_two_prod(x.hi, b);

	return dd_fast_two_sum(p.hi, p.lo + x.lo * b);
}

/*
 * dd_div_d returns x / b for a double b.
 */
static inline DD
dd_div_d(DD x, double b)
{
	double		q = x.hi / b;
	DD			p = dd_two_prod(q, b);

	return dd_fast_two_sum(q, (((x.hi - p.hi) - p.lo) + x.lo) / b);
}

/*
 * dd_div returns x / y: the quotient of the high parts plus one correction
 * from the exact remainder.
 */
static inline DD
dd_div(DD x, DD y)
{
	double		q = x.hi / y.hi;
	DD			r = dd_add(x, dd_neg(dd_mul_d(y, q)));

	return dd_fast_two_sum(q, r.hi / y.hi);
}

/*
 * dd_from_double makes a double-double of a double.
 */
static inline DD
dd_from_double(double a)
{
	DD			r;

	r.hi = a;
	r.lo = 0.0;
	return r;
}

/*
 * dd_square_of returns d^2 for a double-double d; the dropped lo^2 term is
 * below u^2 d^2, inside the per-operation error budget.
 */
static inline DD
dd_square_of(DD d)
{
	DD			p = dd_two_prod(d.hi, d.hi);

	if (d.lo == 0.0)
		return p;
	return dd_fast_two_sum(p.hi, p.lo + 2.0 * d.hi * d.lo);
}

/*
 * dd_times_double returns a * d for a double a and double-double d.
 */
static inline DD
dd_times_double(double a, DD d)
{
	DD			p = dd_two_prod(a, d.hi);

	if (d.lo == 0.0)
		return p;
	return dd_fast_two_sum(p.hi, p.lo + a * d.lo);
}

/*
 * dd_is_finite says whether both parts of x are finite.
 */
static inline bool
dd_is_finite(DD x)
{
	return isfinite(x.hi) && isfinite(x.lo);
}

/*
 * rolling_aggcontext returns the aggregate memory context, or fails when a
 * support function is called outside an aggregate.
 */
static MemoryContext
rolling_aggcontext(FunctionCallInfo fcinfo, const char *fname)
{
	MemoryContext aggcontext;

	if (!AggCheckCallContext(fcinfo, &aggcontext))
		elog(ERROR, "%s called in non-aggregate context", fname);
	return aggcontext;
}

/*
 * state_to_bytea copies a fixed-size state into bytea; parallel workers run
 * the same binary, so a raw copy is a faithful serialization.
 */
static bytea *
state_to_bytea(const void *state, size_t size)
{
	bytea	   *result = (bytea *) palloc(VARHDRSZ + size);

	SET_VARSIZE(result, VARHDRSZ + size);
	memcpy(VARDATA(result), state, size);
	return result;
}

/*
 * state_from_bytea is the inverse of state_to_bytea; it checks the size and
 * the version tag every state starts with.
 */
static void *
state_from_bytea(bytea *data, size_t size, const char *aggregate)
{
	void	   *state;

	if (VARSIZE_ANY_EXHDR(data) != size)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("invalid %s state", aggregate),
				 errdetail("The serialized state has %d bytes, expected %d.",
						   (int) VARSIZE_ANY_EXHDR(data), (int) size)));
	state = palloc(size);
	memcpy(state, VARDATA_ANY(data), size);
	if (*(int32 *) state != ROLLING_STATE_MAGIC)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("invalid %s state", aggregate),
				 errdetail("The serialized state has an unknown version tag.")));
	return state;
}

/* ------------------------------------------------------------------------
 * rolling_variance, rolling_stddev
 * ------------------------------------------------------------------------
 */

/*
 * State of rolling_variance/rolling_stddev.  The sums cover the finite
 * inputs only; run_value/run_len describe the run of equal finite values
 * at the tail of the frame (the most recently added ones), which is the
 * whole frame exactly when the frame is constant.
 */
typedef struct VarState
{
	int32		magic;
	int64		n;				/* non-null inputs in the frame */
	int64		nonfinite;		/* of which NaN or +/-Infinity */
	int64		posinf;			/* of which +Infinity */
	int64		neginf;			/* of which -Infinity */
	double		shift;			/* K: a finite value of the frame */
	DD			s1;				/* sum of (x - K) */
	DD			s2;				/* sum of (x - K)^2 */
	double		b1;				/* magnitude that passed through s1 */
	double		b2;				/* magnitude that passed through s2 */
	double		run_value;
	int64		run_len;
} VarState;

/*
 * var_reset_sums makes the sums exact again around shift k; valid when every
 * finite value in the frame equals k (or there is none).
 */
static inline void
var_reset_sums(VarState *state, double k)
{
	state->shift = k;
	state->s1 = dd_from_double(0.0);
	state->s2 = dd_from_double(0.0);
	state->b1 = 0.0;
	state->b2 = 0.0;
}

/*
 * var_apply adds (sign +1) or removes (sign -1) finite x.  Both directions
 * compute bit-identical terms, so only the accumulation rounds.
 */
static inline void
var_apply(VarState *state, double x, double sign)
{
	DD			d = dd_two_sum(x, -state->shift);
	DD			sq = dd_square_of(d);

	if (!isfinite(d.hi) || !dd_is_finite(sq))
		float_overflow_error();

	state->b1 += fabs(state->s1.hi) + fabs(d.hi);
	state->b2 += fabs(state->s2.hi) + sq.hi;
	if (sign < 0)
	{
		d = dd_neg(d);
		sq = dd_neg(sq);
	}
	state->s1 = dd_add(state->s1, d);
	state->s2 = dd_add(state->s2, sq);

	if (!dd_is_finite(state->s2))
		float_overflow_error();
}

/*
 * var_m2 returns the centred sum of squares, s2 - s1^2/nf, with *err set
 * to a bound on its absolute error.
 */
static inline DD
var_m2(const VarState *state, double nf, double *err)
{
	DD			mean_part = dd_div_d(dd_mul(state->s1, state->s1), nf);

	*err = ERROR_UNIT * (state->b2 + 2.0 * fabs(state->s1.hi) * state->b1 / nf +
						 mean_part.hi + fabs(state->s2.hi));
	return dd_add(state->s2, dd_neg(mean_part));
}

/*
 * var_new_state allocates an empty state in the aggregate context.
 */
static VarState *
var_new_state(FunctionCallInfo fcinfo, const char *fname)
{
	MemoryContext aggcontext = rolling_aggcontext(fcinfo, fname);
	VarState   *state;

	state = (VarState *) MemoryContextAllocZero(aggcontext, sizeof(VarState));
	state->magic = ROLLING_STATE_MAGIC;
	return state;
}

/*
 * rolling_var_accum is the transition function of rolling_variance and
 * rolling_stddev, in plain and moving-aggregate mode.  It is not strict,
 * because an internal state needs creating on the first row, and a
 * moving-aggregate state must exist even when the first input is NULL.
 */
Datum
rolling_var_accum(PG_FUNCTION_ARGS)
{
	VarState   *state;
	double		x;
	int64		nf;

	if (PG_ARGISNULL(0))
		state = var_new_state(fcinfo, "rolling_var_accum");
	else
		state = (VarState *) PG_GETARG_POINTER(0);

	if (PG_ARGISNULL(1))
		PG_RETURN_POINTER(state);
	x = PG_GETARG_FLOAT8(1);

	state->n++;
	if (!isfinite(x))
	{
		state->nonfinite++;
		state->posinf += (x > 0 && isinf(x));
		state->neginf += (x < 0 && isinf(x));
		PG_RETURN_POINTER(state);
	}

	nf = state->n - state->nonfinite;
	if (nf == 1)
	{
		var_reset_sums(state, x);
		state->run_value = x;
		state->run_len = 1;
		PG_RETURN_POINTER(state);
	}

	if (x == state->run_value)
		state->run_len++;
	else
	{
		state->run_value = x;
		state->run_len = 1;
	}
	var_apply(state, x, 1.0);

	PG_RETURN_POINTER(state);
}

/*
 * rolling_var_accum_inv is the inverse transition function: it removes the
 * oldest row of the frame, or returns NULL to make the executor restart the
 * frame when the removal would leave too much rounding error behind.
 */
Datum
rolling_var_accum_inv(PG_FUNCTION_ARGS)
{
	VarState   *state;
	double		x;
	int64		nf;
	DD			m2;
	double		err;

	if (PG_ARGISNULL(0))
		elog(ERROR, "rolling_var_accum_inv called with a null state");
	state = (VarState *) PG_GETARG_POINTER(0);

	if (PG_ARGISNULL(1))
		PG_RETURN_POINTER(state);
	x = PG_GETARG_FLOAT8(1);

	state->n--;
	if (!isfinite(x))
	{
		state->nonfinite--;
		state->posinf -= (x > 0 && isinf(x));
		state->neginf -= (x < 0 && isinf(x));
		PG_RETURN_POINTER(state);
	}

	nf = state->n - state->nonfinite;
	if (state->run_len > nf)
		state->run_len = nf;
	if (nf == 0)
	{
		var_reset_sums(state, 0.0);
		PG_RETURN_POINTER(state);
	}

	/* The tail run covers the frame: all remaining values are run_value. */
	if (state->run_len == nf)
	{
		var_reset_sums(state, state->run_value);
		PG_RETURN_POINTER(state);
	}

	var_apply(state, x, -1.0);

	/*
	 * The usual case is settled in plain double: a lower bound on the
	 * centred sum, from the high parts, that already clears the tolerance.
	 * Only near the limit is the exact double-double check needed.
	 */
	{
		double		mean_part = state->s1.hi * state->s1.hi / (double) nf;
		double		bound = ERROR_UNIT * (state->b2 + 2.0 * fabs(state->s1.hi) *
										  state->b1 / (double) nf +
										  mean_part + fabs(state->s2.hi));
		double		low = state->s2.hi - mean_part -
			SLACK * (fabs(state->s2.hi) + mean_part) - bound;

		if (bound <= TOLERANCE * low)
			PG_RETURN_POINTER(state);
	}

	m2 = var_m2(state, (double) nf, &err);
	if (!(err <= TOLERANCE * m2.hi))
		PG_RETURN_NULL();

	PG_RETURN_POINTER(state);
}

/*
 * rolling_var_combine merges two partial states (parallel aggregation),
 * re-expressing the second one's sums around the first one's shift.
 */
Datum
rolling_var_combine(PG_FUNCTION_ARGS)
{
	VarState   *a = PG_ARGISNULL(0) ? NULL : (VarState *) PG_GETARG_POINTER(0);
	VarState   *b = PG_ARGISNULL(1) ? NULL : (VarState *) PG_GETARG_POINTER(1);
	int64		nfa,
				nfb;

	if (b == NULL)
	{
		if (a == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(a);
	}
	if (a == NULL)
	{
		a = var_new_state(fcinfo, "rolling_var_combine");
		*a = *b;
		PG_RETURN_POINTER(a);
	}

	nfa = a->n - a->nonfinite;
	nfb = b->n - b->nonfinite;
	a->n += b->n;
	a->nonfinite += b->nonfinite;
	a->posinf += b->posinf;
	a->neginf += b->neginf;

	if (nfb == 0)
		PG_RETURN_POINTER(a);
	if (nfa == 0)
	{
		a->shift = b->shift;
		a->s1 = b->s1;
		a->s2 = b->s2;
		a->b1 = b->b1;
		a->b2 = b->b2;
		a->run_value = b->run_value;
		a->run_len = b->run_len;
		PG_RETURN_POINTER(a);
	}

	/*
	 * With delta = Kb - Ka: sum(x - Ka) = s1b + nb delta and sum(x - Ka)^2 =
	 * s2b + 2 delta s1b + nb delta^2.
	 */
	{
		DD			delta = dd_two_sum(b->shift, -a->shift);
		double		nb = (double) nfb;
		DD			t1 = dd_add(b->s1, dd_mul_d(delta, nb));
		DD			t2;

		t2 = dd_add(b->s2, dd_mul_d(dd_mul(delta, b->s1), 2.0));
		t2 = dd_add(t2, dd_mul_d(dd_mul(delta, delta), nb));
		if (!dd_is_finite(t1) || !dd_is_finite(t2))
			float_overflow_error();

		a->b1 += b->b1 + fabs(a->s1.hi) + fabs(t1.hi) + nb * fabs(delta.hi);
		a->b2 += b->b2 + fabs(a->s2.hi) + fabs(t2.hi) +
			2.0 * fabs(delta.hi * b->s1.hi) + nb * delta.hi * delta.hi;
		a->s1 = dd_add(a->s1, t1);
		a->s2 = dd_add(a->s2, t2);
		if (!dd_is_finite(a->s2))
			float_overflow_error();
	}

	/* The combined values are all equal only if both sides are. */
	if (b->run_len == nfb && b->run_value == a->run_value)
		a->run_len += nfb;
	else
		a->run_len = b->run_len;
	a->run_value = b->run_value;

	PG_RETURN_POINTER(a);
}

/*
 * rolling_var_serialize turns a state into bytea for a parallel worker's
 * partial aggregate.
 */
Datum
rolling_var_serialize(PG_FUNCTION_ARGS)
{
	PG_RETURN_BYTEA_P(state_to_bytea(PG_GETARG_POINTER(0), sizeof(VarState)));
}

/*
 * rolling_var_deserialize is the inverse of rolling_var_serialize.
 */
Datum
rolling_var_deserialize(PG_FUNCTION_ARGS)
{
	PG_RETURN_POINTER(state_from_bytea(PG_GETARG_BYTEA_PP(0), sizeof(VarState),
									   "rolling_variance"));
}

/*
 * var_result computes the sample variance of a state; returns false for
 * NULL (fewer than two values).
 */
static bool
var_result(const VarState *state, double *result)
{
	int64		nf;
	DD			m2;
	double		err;

	if (state->n < 2)
		return false;
	if (state->nonfinite > 0)
	{
		*result = get_float8_nan();
		return true;
	}

	nf = state->n;
	if (state->run_len >= nf)
	{
		*result = 0.0;
		return true;
	}

	m2 = var_m2(state, (double) nf, &err);
	if (m2.hi <= 0.0)
	{
		/* only reachable through rounding; a variance is never negative */
		*result = 0.0;
		return true;
	}
	m2 = dd_div_d(m2, (double) (nf - 1));
	*result = m2.hi;
	if (!isfinite(*result))
		float_overflow_error();
	return true;
}

/*
 * rolling_var_final is the final function of rolling_variance.
 */
Datum
rolling_var_final(PG_FUNCTION_ARGS)
{
	double		result;

	if (!var_result((VarState *) PG_GETARG_POINTER(0), &result))
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(result);
}

/*
 * rolling_avg_final is the final function of rolling_avg: K + s1/n from the
 * double-double sums, so the mean of a sliding frame does not drift and does
 * not depend on the order the rows came in.  Non-finite inputs behave as in
 * avg(float8): NaN, or +Infinity and -Infinity together, give NaN; one kind
 * of infinity gives that infinity.
 */
Datum
rolling_avg_final(PG_FUNCTION_ARGS)
{
	VarState   *state = (VarState *) PG_GETARG_POINTER(0);
	int64		nf;
	DD			mean;

	if (state->n < 1)
		PG_RETURN_NULL();
	if (state->nonfinite > 0)
	{
		if (state->nonfinite > state->posinf + state->neginf ||
			(state->posinf > 0 && state->neginf > 0))
			PG_RETURN_FLOAT8(get_float8_nan());
		PG_RETURN_FLOAT8(state->posinf > 0 ? get_float8_infinity()
						 : -get_float8_infinity());
	}
	nf = state->n;
	if (state->run_len >= nf)
		PG_RETURN_FLOAT8(state->run_value);
	mean = dd_add_d(dd_div_d(state->s1, (double) nf), state->shift);
	PG_RETURN_FLOAT8(mean.hi);
}

/*
 * rolling_stddev_final is the final function of rolling_stddev: the square
 * root of the double-double variance, with one Newton correction so it is
 * within an ulp.
 */
Datum
rolling_stddev_final(PG_FUNCTION_ARGS)
{
	VarState   *state = (VarState *) PG_GETARG_POINTER(0);
	int64		nf;
	DD			var;
	double		err,
				s;
	DD			sq;

	if (state->n < 2)
		PG_RETURN_NULL();
	if (state->nonfinite > 0)
		PG_RETURN_FLOAT8(get_float8_nan());
	nf = state->n;
	if (state->run_len >= nf)
		PG_RETURN_FLOAT8(0.0);

	var = var_m2(state, (double) nf, &err);
	if (var.hi <= 0.0)
		PG_RETURN_FLOAT8(0.0);
	var = dd_div_d(var, (double) (nf - 1));
	if (!isfinite(var.hi))
		float_overflow_error();

	s = sqrt(var.hi);
	sq = dd_two_prod(s, s);
	s += (((var.hi - sq.hi) - sq.lo) + var.lo) / (2.0 * s);
	PG_RETURN_FLOAT8(s);
}

/* ------------------------------------------------------------------------
 * momentum
 * ------------------------------------------------------------------------
 */

/*
 * State of momentum.  Times are integers (days for date, microseconds for
 * timestamptz), so the time shift is exact.  Rows with a finite time and a
 * finite value are "good"; the sums cover good rows only.  The time run
 * covers every row with a finite time (it decides "fewer than two distinct
 * times"); the value run covers good rows.
 */
typedef struct MomentumState
{
	int32		magic;
	int64		n;				/* rows with non-null value and time */
	int64		xinf;			/* of which time is +/-infinity */
	int64		ybad;			/* finite time, NaN or infinite value */
	double		unit;			/* time units per day */
	int64		kx;				/* time shift */
	double		ky;				/* value shift */
	DD			sx,
				sy,
				sxx,
				syy,
				sxy;			/* sums of dx, dy, dx^2, dy^2, dx dy */
	double		bx,
				by,
				bxx,
				byy,
				bxy;			/* magnitudes that passed through them */
	int64		xrun_value;
	int64		xrun_len;
	double		yrun_value;
	int64		yrun_len;
	int64		last_good_x;	/* time of the newest good row */
} MomentumState;

/*
 * momentum_reset_x makes the time part of the sums exact around shift kx;
 * valid when every good row has time kx.
 */
static inline void
momentum_reset_x(MomentumState *state, int64 kx)
{
	state->kx = kx;
	state->sx = state->sxx = state->sxy = dd_from_double(0.0);
	state->bx = state->bxx = state->bxy = 0.0;
}

/*
 * momentum_reset_y makes the value part of the sums exact around shift ky;
 * valid when every good row has value ky.
 */
static inline void
momentum_reset_y(MomentumState *state, double ky)
{
	state->ky = ky;
	state->sy = state->syy = state->sxy = dd_from_double(0.0);
	state->by = state->byy = state->bxy = 0.0;
}

/*
 * momentum_apply adds (sign +1) or removes (sign -1) a good row.
 */
static inline void
momentum_apply(MomentumState *state, int64 t, double y, double sign)
{
	double		dx = (double) (t - state->kx);
	DD			dy = dd_two_sum(y, -state->ky);
	DD			dyy = dd_square_of(dy);
	DD			dxy = dd_times_double(dx, dy);
	double		dxx_hi = dx * dx;

	if (!isfinite(dy.hi) || !dd_is_finite(dyy) || !dd_is_finite(dxy))
		float_overflow_error();

	state->bx += fabs(state->sx.hi) + fabs(dx);
	state->by += fabs(state->sy.hi) + fabs(dy.hi);
	state->bxx += fabs(state->sxx.hi) + dxx_hi;
	state->byy += fabs(state->syy.hi) + dyy.hi;
	state->bxy += fabs(state->sxy.hi) + fabs(dxy.hi);
	if (sign < 0)
	{
		dx = -dx;
		dy = dd_neg(dy);
		dyy = dd_neg(dyy);
		dxy = dd_neg(dxy);
	}
	state->sx = dd_add_d(state->sx, dx);

	/* dx is an integer: below 2^26 its square is exact in one double */
	if (fabs(dx) < 67108864.0)
		state->sxx = dd_add_d(state->sxx, sign < 0 ? -dxx_hi : dxx_hi);
	else
	{
		DD			dxx = dd_two_prod(dx, dx);

		state->sxx = dd_add(state->sxx, sign < 0 ? dd_neg(dxx) : dxx);
	}
	state->sy = dd_add(state->sy, dy);
	state->syy = dd_add(state->syy, dyy);
	state->sxy = dd_add(state->sxy, dxy);

	if (!dd_is_finite(state->syy) || !dd_is_finite(state->sxy) ||
		!dd_is_finite(state->sy))
		float_overflow_error();
}

/*
 * momentum_centred computes the centred sums cxx, cyy, cxy of the good
 * rows and bounds on their absolute errors.
 */
static inline void
momentum_centred(const MomentumState *state, double ng,
				 DD *cxx, DD *cyy, DD *cxy,
				 double *exx, double *eyy, double *exy)
{
	DD			mx = dd_div_d(dd_mul(state->sx, state->sx), ng);
	DD			my = dd_div_d(dd_mul(state->sy, state->sy), ng);
	DD			mxy = dd_div_d(dd_mul(state->sx, state->sy), ng);
	double		ax = fabs(state->sx.hi);
	double		ay = fabs(state->sy.hi);

	*cxx = dd_add(state->sxx, dd_neg(mx));
	*cyy = dd_add(state->syy, dd_neg(my));
	*cxy = dd_add(state->sxy, dd_neg(mxy));
	*exx = ERROR_UNIT * (state->bxx + 2.0 * ax * state->bx / ng + mx.hi +
						 fabs(state->sxx.hi));
	*eyy = ERROR_UNIT * (state->byy + 2.0 * ay * state->by / ng + my.hi +
						 fabs(state->syy.hi));
	*exy = ERROR_UNIT * (state->bxy + (ax * state->by + ay * state->bx) / ng +
						 fabs(mxy.hi) + fabs(state->sxy.hi));
}

/*
 * momentum_quick_check settles the removal check in plain double when lower
 * bounds of the centred sums, from the high parts, already clear the
 * tolerance; false means "undecided", not "restart".
 */
static inline bool
momentum_quick_check(const MomentumState *state, double ng, bool x_const)
{
	double		inv = 1.0 / ng;
	double		ax = fabs(state->sx.hi);
	double		ay = fabs(state->sy.hi);
	double		mx = ax * ax * inv;
	double		my = ay * ay * inv;
	double		exx = ERROR_UNIT * (state->bxx + 2.0 * ax * state->bx * inv + mx +
									fabs(state->sxx.hi));
	double		eyy = ERROR_UNIT * (state->byy + 2.0 * ay * state->by * inv + my +
									fabs(state->syy.hi));
	double		exy = ERROR_UNIT * (state->bxy + (ax * state->by + ay * state->bx) * inv +
									ax * ay * inv + fabs(state->sxy.hi));
	double		low_yy = state->syy.hi - my - SLACK * (fabs(state->syy.hi) + my) - eyy;
	double		low_xx;

	if (!(eyy <= TOLERANCE * low_yy))
		return false;
	if (x_const)
		return true;
	low_xx = state->sxx.hi - mx - SLACK * (fabs(state->sxx.hi) + mx) - exx;
	if (!(exx <= TOLERANCE * low_xx))
		return false;
	return low_xx > 0.0 && low_yy > 0.0 && exy <= TOLERANCE * sqrt(low_xx * low_yy);
}

/*
 * momentum_new_state allocates an empty state in the aggregate context.
 */
static MomentumState *
momentum_new_state(FunctionCallInfo fcinfo, double unit, const char *fname)
{
	MemoryContext aggcontext = rolling_aggcontext(fcinfo, fname);
	MomentumState *state;

	state = (MomentumState *) MemoryContextAllocZero(aggcontext,
													 sizeof(MomentumState));
	state->magic = ROLLING_STATE_MAGIC;
	state->unit = unit;
	return state;
}

/*
 * momentum_add is the body of both momentum transition functions.
 */
static void
momentum_add(MomentumState *state, int64 t, bool t_finite, double y)
{
	int64		ng;

	state->n++;
	if (!t_finite)
	{
		state->xinf++;
		return;
	}

	if (state->n - state->xinf == 1 || t != state->xrun_value)
	{
		state->xrun_value = t;
		state->xrun_len = 1;
	}
	else
		state->xrun_len++;

	if (!isfinite(y))
	{
		state->ybad++;
		return;
	}

	ng = state->n - state->xinf - state->ybad;
	state->last_good_x = t;
	if (ng == 1)
	{
		momentum_reset_x(state, t);
		momentum_reset_y(state, y);
		state->yrun_value = y;
		state->yrun_len = 1;
		return;
	}

	if (y == state->yrun_value)
		state->yrun_len++;
	else
	{
		state->yrun_value = y;
		state->yrun_len = 1;
	}
	momentum_apply(state, t, y, 1.0);
}

/*
 * momentum_remove is the body of both momentum inverse transition
 * functions; returns false when the frame must be restarted.
 */
static bool
momentum_remove(MomentumState *state, int64 t, bool t_finite, double y)
{
	int64		nx,
				ng;
	bool		x_const,
				y_const;
	DD			cxx,
				cyy,
				cxy;
	double		exx,
				eyy,
				exy;

	state->n--;
	if (!t_finite)
	{
		state->xinf--;
		return true;
	}
	nx = state->n - state->xinf;
	if (state->xrun_len > nx)
		state->xrun_len = nx;

	if (!isfinite(y))
	{
		state->ybad--;
		return true;
	}
	ng = state->n - state->xinf - state->ybad;
	if (state->yrun_len > ng)
		state->yrun_len = ng;
	if (ng == 0)
	{
		momentum_reset_x(state, 0);
		momentum_reset_y(state, 0.0);
		return true;
	}

	momentum_apply(state, t, y, -1.0);

	/* Frames whose times or values are all equal are reset exactly. */
	x_const = (state->xrun_len >= nx);
	y_const = (state->yrun_len >= ng);
	if (ng == 1)
		momentum_reset_x(state, state->last_good_x);
	else if (x_const)
		momentum_reset_x(state, state->xrun_value);
	if (y_const)
		momentum_reset_y(state, state->yrun_value);
	if (ng == 1 || y_const)
		return true;

	if (momentum_quick_check(state, (double) ng, x_const))
		return true;

	momentum_centred(state, (double) ng, &cxx, &cyy, &cxy, &exx, &eyy, &exy);
	if (!(eyy <= TOLERANCE * cyy.hi))
		return false;
	if (!x_const)
	{
		if (!(exx <= TOLERANCE * cxx.hi))
			return false;
		/* the slope's error relative to its natural scale sqrt(cyy/cxx) */
		if (!(exy <= TOLERANCE * sqrt(cxx.hi * cyy.hi)))
			return false;
	}
	return true;
}

/*
 * momentum_state_arg fetches or creates the state of a transition call.
 */
static inline MomentumState *
momentum_state_arg(FunctionCallInfo fcinfo, double unit, const char *fname)
{
	if (PG_ARGISNULL(0))
		return momentum_new_state(fcinfo, unit, fname);
	return (MomentumState *) PG_GETARG_POINTER(0);
}

/*
 * momentum_accum_date is the transition function of momentum(float8, date).
 */
Datum
momentum_accum_date(PG_FUNCTION_ARGS)
{
	MomentumState *state = momentum_state_arg(fcinfo, 1.0, "momentum_accum_date");
	DateADT		d;

	if (PG_ARGISNULL(1) || PG_ARGISNULL(2))
		PG_RETURN_POINTER(state);
	d = PG_GETARG_DATEADT(2);
	momentum_add(state, (int64) d, !DATE_NOT_FINITE(d), PG_GETARG_FLOAT8(1));
	PG_RETURN_POINTER(state);
}

/*
 * momentum_accum_inv_date is the inverse transition function of
 * momentum(float8, date).
 */
Datum
momentum_accum_inv_date(PG_FUNCTION_ARGS)
{
	MomentumState *state;
	DateADT		d;

	if (PG_ARGISNULL(0))
		elog(ERROR, "momentum_accum_inv_date called with a null state");
	state = (MomentumState *) PG_GETARG_POINTER(0);
	if (PG_ARGISNULL(1) || PG_ARGISNULL(2))
		PG_RETURN_POINTER(state);
	d = PG_GETARG_DATEADT(2);
	if (!momentum_remove(state, (int64) d, !DATE_NOT_FINITE(d),
						 PG_GETARG_FLOAT8(1)))
		PG_RETURN_NULL();
	PG_RETURN_POINTER(state);
}

/*
 * momentum_accum_timestamptz is the transition function of
 * momentum(float8, timestamptz); time is kept in microseconds.
 */
Datum
momentum_accum_timestamptz(PG_FUNCTION_ARGS)
{
	MomentumState *state = momentum_state_arg(fcinfo, (double) USECS_PER_DAY,
											  "momentum_accum_timestamptz");
	TimestampTz t;

	if (PG_ARGISNULL(1) || PG_ARGISNULL(2))
		PG_RETURN_POINTER(state);
	t = PG_GETARG_TIMESTAMPTZ(2);
	momentum_add(state, (int64) t, !TIMESTAMP_NOT_FINITE(t), PG_GETARG_FLOAT8(1));
	PG_RETURN_POINTER(state);
}

/*
 * momentum_accum_inv_timestamptz is the inverse transition function of
 * momentum(float8, timestamptz).
 */
Datum
momentum_accum_inv_timestamptz(PG_FUNCTION_ARGS)
{
	MomentumState *state;
	TimestampTz t;

	if (PG_ARGISNULL(0))
		elog(ERROR, "momentum_accum_inv_timestamptz called with a null state");
	state = (MomentumState *) PG_GETARG_POINTER(0);
	if (PG_ARGISNULL(1) || PG_ARGISNULL(2))
		PG_RETURN_POINTER(state);
	t = PG_GETARG_TIMESTAMPTZ(2);
	if (!momentum_remove(state, (int64) t, !TIMESTAMP_NOT_FINITE(t),
						 PG_GETARG_FLOAT8(1)))
		PG_RETURN_NULL();
	PG_RETURN_POINTER(state);
}

/*
 * momentum_combine merges two partial states, re-expressing the second
 * one's sums around the first one's shifts.
 */
Datum
momentum_combine(PG_FUNCTION_ARGS)
{
	MomentumState *a = PG_ARGISNULL(0) ? NULL : (MomentumState *) PG_GETARG_POINTER(0);
	MomentumState *b = PG_ARGISNULL(1) ? NULL : (MomentumState *) PG_GETARG_POINTER(1);
	int64		nxa,
				nxb,
				nga,
				ngb;

	if (b == NULL)
	{
		if (a == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(a);
	}
	if (a == NULL)
	{
		a = momentum_new_state(fcinfo, b->unit, "momentum_combine");
		*a = *b;
		PG_RETURN_POINTER(a);
	}

	nxa = a->n - a->xinf;
	nxb = b->n - b->xinf;
	nga = nxa - a->ybad;
	ngb = nxb - b->ybad;
	a->n += b->n;
	a->xinf += b->xinf;
	a->ybad += b->ybad;

	if (nxb > 0)
	{
		if (nxa == 0)
		{
			a->xrun_value = b->xrun_value;
			a->xrun_len = b->xrun_len;
		}
		else
		{
			if (b->xrun_len == nxb && b->xrun_value == a->xrun_value)
				a->xrun_len += nxb;
			else
				a->xrun_len = b->xrun_len;
			a->xrun_value = b->xrun_value;
		}
	}

	if (ngb == 0)
		PG_RETURN_POINTER(a);
	if (nga == 0)
	{
		int32		magic = a->magic;
		int64		n = a->n,
					xinf = a->xinf,
					ybad = a->ybad,
					xrun_value = a->xrun_value,
					xrun_len = a->xrun_len;

		*a = *b;
		a->magic = magic;
		a->n = n;
		a->xinf = xinf;
		a->ybad = ybad;
		a->xrun_value = xrun_value;
		a->xrun_len = xrun_len;
		PG_RETURN_POINTER(a);
	}

	/*
	 * With shifts differing by (ex, ey): sum dx' = sx + n ex, sum dx'^2 =
	 * sxx + 2 ex sx + n ex^2, and so on for y and the cross term.
	 */
	{
		double		nb = (double) ngb;
		DD			ex = dd_from_double((double) (b->kx - a->kx));
		DD			ey = dd_two_sum(b->ky, -a->ky);
		DD			tx,
					ty,
					txx,
					tyy,
					txy;

		tx = dd_add(b->sx, dd_mul_d(ex, nb));
		ty = dd_add(b->sy, dd_mul_d(ey, nb));
		txx = dd_add(dd_add(b->sxx, dd_mul_d(dd_mul(ex, b->sx), 2.0)),
					 dd_mul_d(dd_mul(ex, ex), nb));
		tyy = dd_add(dd_add(b->syy, dd_mul_d(dd_mul(ey, b->sy), 2.0)),
					 dd_mul_d(dd_mul(ey, ey), nb));
		txy = dd_add(dd_add(b->sxy, dd_mul(ex, b->sy)),
					 dd_add(dd_mul(ey, b->sx), dd_mul_d(dd_mul(ex, ey), nb)));
		if (!dd_is_finite(tyy) || !dd_is_finite(txy) || !dd_is_finite(txx))
			float_overflow_error();

		a->bx += b->bx + fabs(a->sx.hi) + fabs(tx.hi);
		a->by += b->by + fabs(a->sy.hi) + fabs(ty.hi);
		a->bxx += b->bxx + fabs(a->sxx.hi) + fabs(txx.hi);
		a->byy += b->byy + fabs(a->syy.hi) + fabs(tyy.hi);
		a->bxy += b->bxy + fabs(a->sxy.hi) + fabs(txy.hi);
		a->sx = dd_add(a->sx, tx);
		a->sy = dd_add(a->sy, ty);
		a->sxx = dd_add(a->sxx, txx);
		a->syy = dd_add(a->syy, tyy);
		a->sxy = dd_add(a->sxy, txy);
		if (!dd_is_finite(a->syy) || !dd_is_finite(a->sxy))
			float_overflow_error();
	}

	if (b->yrun_len == ngb && b->yrun_value == a->yrun_value)
		a->yrun_len += ngb;
	else
		a->yrun_len = b->yrun_len;
	a->yrun_value = b->yrun_value;
	a->last_good_x = b->last_good_x;

	PG_RETURN_POINTER(a);
}

/*
 * momentum_serialize turns a state into bytea for a parallel worker.
 */
Datum
momentum_serialize(PG_FUNCTION_ARGS)
{
	PG_RETURN_BYTEA_P(state_to_bytea(PG_GETARG_POINTER(0), sizeof(MomentumState)));
}

/*
 * momentum_deserialize is the inverse of momentum_serialize.
 */
Datum
momentum_deserialize(PG_FUNCTION_ARGS)
{
	PG_RETURN_POINTER(state_from_bytea(PG_GETARG_BYTEA_PP(0), sizeof(MomentumState),
									   "momentum"));
}

/*
 * momentum_final returns the least-squares slope per day: NULL below two
 * distinct times, NaN when a time is infinite or a value is not finite,
 * exactly 0 when all values are equal.
 */
Datum
momentum_final(PG_FUNCTION_ARGS)
{
	MomentumState *state = (MomentumState *) PG_GETARG_POINTER(0);
	double		ng;
	DD			cxx,
				cxy;
	double		slope;

	if (state->n < 2)
		PG_RETURN_NULL();
	if (state->xinf > 0)
		PG_RETURN_FLOAT8(get_float8_nan());
	if (state->xrun_len >= state->n)
		PG_RETURN_NULL();
	if (state->ybad > 0)
		PG_RETURN_FLOAT8(get_float8_nan());
	if (state->yrun_len >= state->n)
		PG_RETURN_FLOAT8(0.0);

	/* only the two centred sums the slope needs */
	ng = (double) state->n;
	cxx = dd_add(state->sxx, dd_neg(dd_div_d(dd_mul(state->sx, state->sx), ng)));
	cxy = dd_add(state->sxy, dd_neg(dd_div_d(dd_mul(state->sx, state->sy), ng)));
	if (!(cxx.hi > 0.0))
		PG_RETURN_NULL();		/* unreachable unless rounding wrecked cxx */
	slope = dd_mul_d(dd_div(cxy, cxx), state->unit).hi;
	if (!isfinite(slope))
		float_overflow_error();
	PG_RETURN_FLOAT8(slope);
}

/* ------------------------------------------------------------------------
 * ewma
 * ------------------------------------------------------------------------
 */

typedef struct EwmaState
{
	int32		span;
	bool		seeded;			/* has a first value been seen */
	double		lambda;			/* 2 / (span + 1) */
	double		keep;			/* 1 - lambda */
	double		value;
} EwmaState;

/*
 * ewma_accum is the transition function of ewma(float8, int): it seeds
 * with the first non-null value, then value = lambda x + (1 - lambda)
 * value.  It is not strict so that a NULL span is reported, not skipped.
 */
Datum
ewma_accum(PG_FUNCTION_ARGS)
{
	EwmaState  *state;
	int32		span;
	double		x;

	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("ewma span must not be null"),
				 errhint("Pass the number of periods the average covers, for example ewma(day_strain, 7).")));
	span = PG_GETARG_INT32(2);

	if (PG_ARGISNULL(0))
	{
		MemoryContext aggcontext = rolling_aggcontext(fcinfo, "ewma_accum");

		if (span <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("ewma span must be positive"),
					 errdetail("The span given was %d.", span),
					 errhint("The smoothing factor is 2/(span+1); use for example 7 for acute load or 28 for chronic load.")));
		state = (EwmaState *) MemoryContextAllocZero(aggcontext, sizeof(EwmaState));
		state->span = span;
		state->lambda = 2.0 / ((double) span + 1.0);
		state->keep = 1.0 - state->lambda;
	}
	else
	{
		state = (EwmaState *) PG_GETARG_POINTER(0);
		if (span != state->span)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("ewma span must be the same in every row"),
					 errdetail("The span changed from %d to %d.", state->span, span),
					 errhint("Compute averages of different spans with separate ewma calls.")));
	}

	if (PG_ARGISNULL(1))
		PG_RETURN_POINTER(state);
	x = PG_GETARG_FLOAT8(1);

	if (!state->seeded)
	{
		state->value = x;
		state->seeded = true;
	}
	else
		state->value = state->lambda * x + state->keep * state->value;

	PG_RETURN_POINTER(state);
}

/*
 * ewma_final returns the current average, NULL before the first value.
 */
Datum
ewma_final(PG_FUNCTION_ARGS)
{
	EwmaState  *state = (EwmaState *) PG_GETARG_POINTER(0);

	if (!state->seeded)
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(state->value);
}

/*
 * sum_each sums float8 arrays element by element, in the aggregate's input
 * order, each element as sum(float8) sums: NULLs skipped, the first value
 * taken as it is, then float8_pl(), NULL without any value.  So
 * sum_each(array[a, b] order by k) equals array[sum(a order by k),
 * sum(b order by k)] bit for bit, and costs one sort per group where
 * PostgreSQL 15 sorts the input of every ordered aggregate on its own.
 */
typedef struct SumEachState
{
	int			n;
	double	   *sums;
	bool	   *seen;
} SumEachState;

/*
 * sum_each_accum adds one array to the sums; every array of a group must
 * have the first one's length.
 */
Datum
sum_each_accum(PG_FUNCTION_ARGS)
{
	MemoryContext aggcontext;
	SumEachState *state = PG_ARGISNULL(0) ? NULL : (SumEachState *) PG_GETARG_POINTER(0);
	Datum	   *values;
	bool	   *nulls;
	int			n;
	int			i;

	if (!AggCheckCallContext(fcinfo, &aggcontext))
		elog(ERROR, "sum_each_accum called in non-aggregate context");
	if (PG_ARGISNULL(1))
	{
		if (state == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(state);
	}
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(1), FLOAT8OID, sizeof(float8), FLOAT8PASSBYVAL,
					  TYPALIGN_DOUBLE, &values, &nulls, &n);
	if (state == NULL)
	{
		state = MemoryContextAlloc(aggcontext, sizeof(SumEachState));
		state->n = n;
		state->sums = MemoryContextAllocZero(aggcontext, sizeof(double) * Max(n, 1));
		state->seen = MemoryContextAllocZero(aggcontext, sizeof(bool) * Max(n, 1));
	}
	else if (n != state->n)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("sum_each got arrays of %d and %d elements", state->n, n),
				 errhint("Sum arrays of one length within a group.")));
	for (i = 0; i < n; i++)
	{
		if (nulls[i])
			continue;
		if (state->seen[i])
			state->sums[i] = float8_pl(state->sums[i], DatumGetFloat8(values[i]));
		else
		{
			state->sums[i] = DatumGetFloat8(values[i]);
			state->seen[i] = true;
		}
	}
	pfree(values);
	pfree(nulls);
	PG_RETURN_POINTER(state);
}

/*
 * sum_each_final returns the sums as an array, NULL where an element never
 * had a value.
 */
Datum
sum_each_final(PG_FUNCTION_ARGS)
{
	SumEachState *state = (SumEachState *) PG_GETARG_POINTER(0);
	Datum	   *values = palloc(sizeof(Datum) * Max(state->n, 1));
	bool	   *nulls = palloc(sizeof(bool) * Max(state->n, 1));
	int			dims[1] = {state->n};
	int			lbs[1] = {1};
	int			i;

	for (i = 0; i < state->n; i++)
	{
		values[i] = Float8GetDatum(state->sums[i]);
		nulls[i] = !state->seen[i];
	}
	PG_RETURN_ARRAYTYPE_P(construct_md_array(values, nulls, 1, dims, lbs, FLOAT8OID, sizeof(float8),
											 FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}
