/*-------------------------------------------------------------------------
 *
 * asan_canary.c
 *		  Two deliberate bugs that test/check_asan.py builds with the same
 *		  sanitizer flags as whoop_fdw and calls once, to prove that a bug in
 *		  an extension would be reported in that setup before trusting a
 *		  clean run.  Not part of the extension.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <stdlib.h>

#include "fmgr.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(asan_canary_overflow);
PG_FUNCTION_INFO_V1(asan_canary_signed_overflow);

/*
 * asan_canary_overflow writes one byte past a malloc'd buffer of SIZE bytes:
 * a heap-buffer-overflow for AddressSanitizer.  The buffer is volatile so
 * the store is not dropped as dead, and its size is not a constant so the
 * object-size check of UBSan does not report it first.
 */
Datum
asan_canary_overflow(PG_FUNCTION_ARGS)
{
	int32		size = PG_GETARG_INT32(0);
	volatile char *buffer = malloc(size);

	buffer[size] = 'x';
	free((void *) buffer);
	PG_RETURN_VOID();
}

/*
 * asan_canary_signed_overflow adds one to its argument: with 2147483647 a
 * signed overflow for UndefinedBehaviorSanitizer (built without -fwrapv).
 */
Datum
asan_canary_signed_overflow(PG_FUNCTION_ARGS)
{
	int32		value = PG_GETARG_INT32(0);

	PG_RETURN_INT32(value + 1);
}
