/*-------------------------------------------------------------------------
 *
 * fuzz.h
 *		  The harness the fuzz targets share (see pg_shim.c).
 *
 * Each target runs one input as PostgreSQL would run one query:
 *
 *		MemoryContext input = fuzz_begin();
 *		PG_TRY(); { ...code under test... } PG_CATCH(); { FlushErrorState(); } PG_END_TRY();
 *		MemoryContextSwitchTo(input);
 *		fuzz_end(input);
 *
 * An ERROR is an expected outcome for hostile input; a crash, a sanitizer
 * report, a leak or a failed FUZZ_CHECK is a finding.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WHOOP_FUZZ_H
#define WHOOP_FUZZ_H

#include <stdio.h>
#include <stdlib.h>

extern void fuzz_init(void);
extern MemoryContext fuzz_begin(void);
extern void fuzz_end(MemoryContext context);

/* FUZZ_CHECK aborts (a finding) when an invariant of the code does not hold */
#define FUZZ_CHECK(cond, ...) \
	do { \
		if (!(cond)) \
		{ \
			fprintf(stderr, "fuzz invariant failed at %s:%d: %s\n  ", \
					__FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__); \
			fputc('\n', stderr); \
			abort(); \
		} \
	} while (0)

#endif							/* WHOOP_FUZZ_H */
