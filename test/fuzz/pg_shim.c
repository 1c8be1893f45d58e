/*-------------------------------------------------------------------------
 *
 * pg_shim.c
 *		  The few PostgreSQL backend services that whoop_fdw's parsers of
 *		  outside input use, for fuzz targets that run without a server.
 *
 * Memory contexts.  Every palloc is a malloc'd chunk of its own, linked into
 * its context, so that AddressSanitizer knows each allocation's exact
 * bounds (inside an AllocSet block an overrun would go unnoticed).
 * Resetting or deleting a context runs its reset callbacks, as mcxt.c
 * does, then frees its chunks and child contexts.  Memory the code under
 * test mallocs itself (json-c's trees) is released only through those
 * callbacks, so LeakSanitizer reports whatever the death of a context
 * fails to release.  repalloc always moves, so a stale pointer is caught.
 *
 * Errors.  ereport()/elog() format their fields as elog.c would (with
 * PostgreSQL's own snprintf and StringInfo, from libpgport/libpgcommon),
 * run the error context callbacks, and for ERROR switch to ErrorContext
 * and siglongjmp to the innermost PG_TRY, which is what PG_CATCH blocks in
 * the real code expect.  FlushErrorState() resets ErrorContext, so error
 * data used after it is a use-after-free.  An ERROR outside any PG_TRY,
 * FATAL and PANIC abort: a crash the fuzzer reports.  Messages below ERROR
 * are formatted and dropped.
 *
 * date2j() is computed here independently (days from the civil calendar);
 * the timestamp fuzz oracle compares the results with timegm(3).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <stdio.h>
#include <stdlib.h>

#include "lib/stringinfo.h"
#include "nodes/memnodes.h"
#include "utils/datetime.h"
#include "utils/memutils.h"

#include "fuzz.h"

/* a palloc'd chunk: this header, then the caller's bytes */
typedef struct ShimChunk
{
	struct ShimChunk *prev;
	struct ShimChunk *next;
	struct ShimContext *context;
	Size		size;
} ShimChunk;

StaticAssertDecl(sizeof(ShimChunk) % MAXIMUM_ALIGNOF == 0,
				 "chunk header must keep the caller's bytes aligned");

typedef struct ShimContext
{
	MemoryContextData header;	/* first: a MemoryContext points here */
	ShimChunk  *chunks;
	int			nchunks;
} ShimContext;

/* ErrorData is PostgreSQL's; the shim fills the fields it formats */
#define ERROR_STACK_SIZE 5

MemoryContext CurrentMemoryContext = NULL;
MemoryContext TopMemoryContext = NULL;
MemoryContext ErrorContext = NULL;
sigjmp_buf *PG_exception_stack = NULL;
ErrorContextCallback *error_context_stack = NULL;

static ErrorData errordata[ERROR_STACK_SIZE];
static int	errordata_depth = -1;
static MemoryContext error_saved_context[ERROR_STACK_SIZE];

/* 18 replaced the pg_attribute_noreturn() suffix by a pg_noreturn specifier */
#if PG_VERSION_NUM >= 180000
static pg_noreturn void shim_fatal(const char *what, const char *detail);
#else
static void shim_fatal(const char *what, const char *detail) pg_attribute_noreturn();
#endif


/* ---------------------------------------------------------------------
 * Memory contexts
 * ---------------------------------------------------------------------
 */

/*
 * shim_fatal reports a misuse of the backend API and aborts, which the
 * fuzzer records as a crash with this input.
 */
static void
shim_fatal(const char *what, const char *detail)
{
	fprintf(stderr, "pg_shim: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
	abort();
}

/*
 * context_create makes an empty context under PARENT.
 */
static MemoryContext
context_create(MemoryContext parent, const char *name)
{
	ShimContext *context = calloc(1, sizeof(ShimContext));

	if (context == NULL)
		shim_fatal("out of memory creating a context", name);
	context->header.type = T_AllocSetContext;
	context->header.isReset = true;
	context->header.name = name;
	context->header.parent = parent;
	if (parent != NULL)
	{
		context->header.nextchild = parent->firstchild;
		if (parent->firstchild != NULL)
			parent->firstchild->prevchild = &context->header;
		parent->firstchild = &context->header;
	}
	return &context->header;
}

MemoryContext
AllocSetContextCreateInternal(MemoryContext parent, const char *name,
							  Size minContextSize, Size initBlockSize,
							  Size maxBlockSize)
{
	if (parent == NULL)
		shim_fatal("a context needs a parent", name);
	return context_create(parent, name);
}

/*
 * call_reset_callbacks runs and forgets a context's callbacks, newest
 * first, as mcxt.c does.
 */
static void
call_reset_callbacks(MemoryContext context)
{
	MemoryContextCallback *cb;

	while ((cb = context->reset_cbs) != NULL)
	{
		context->reset_cbs = cb->next;
		cb->func(cb->arg);
	}
}

/*
 * free_chunks releases every chunk of a context.
 */
static void
free_chunks(ShimContext *context)
{
	while (context->chunks != NULL)
	{
		ShimChunk  *chunk = context->chunks;

		context->chunks = chunk->next;
		free(chunk);
	}
	context->nchunks = 0;
}

void
MemoryContextDeleteChildren(MemoryContext context)
{
	while (context->firstchild != NULL)
		MemoryContextDelete(context->firstchild);
}

void
MemoryContextResetOnly(MemoryContext context)
{
	if (!context->isReset)
	{
		call_reset_callbacks(context);
		free_chunks((ShimContext *) context);
		context->isReset = true;
	}
}

void
MemoryContextReset(MemoryContext context)
{
	MemoryContextDeleteChildren(context);
	MemoryContextResetOnly(context);
}

void
MemoryContextDelete(MemoryContext context)
{
	if (context == TopMemoryContext || context == ErrorContext)
		shim_fatal("deleting a permanent context", context->name);
	if (context == CurrentMemoryContext)
		shim_fatal("deleting the current memory context", context->name);
	MemoryContextDeleteChildren(context);
	call_reset_callbacks(context);
	if (context->prevchild != NULL)
		context->prevchild->nextchild = context->nextchild;
	else
		context->parent->firstchild = context->nextchild;
	if (context->nextchild != NULL)
		context->nextchild->prevchild = context->prevchild;
	free_chunks((ShimContext *) context);
	free(context);
}

void
MemoryContextRegisterResetCallback(MemoryContext context,
								   MemoryContextCallback *cb)
{
	cb->next = context->reset_cbs;
	context->reset_cbs = cb;
	context->isReset = false;
}

/*
 * chunk_alloc is the one allocator: size checks as in mcxt.c, then a chunk
 * of exactly SIZE bytes linked into CONTEXT.
 */
static void *
chunk_alloc(MemoryContext context, Size size, int flags)
{
	ShimContext *shim = (ShimContext *) context;
	ShimChunk  *chunk;

	if (context == NULL)
		shim_fatal("palloc without a current memory context", NULL);
	if (!((flags & MCXT_ALLOC_HUGE) ? AllocHugeSizeIsValid(size) : AllocSizeIsValid(size)))
		elog(ERROR, "invalid memory alloc request size %zu", size);
	chunk = malloc(sizeof(ShimChunk) + size);
	if (chunk == NULL)
	{
		if (flags & MCXT_ALLOC_NO_OOM)
			return NULL;
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Failed on request of size %zu in memory context \"%s\".",
						   size, context->name)));
	}
	chunk->prev = NULL;
	chunk->next = shim->chunks;
	if (shim->chunks != NULL)
		shim->chunks->prev = chunk;
	shim->chunks = chunk;
	shim->nchunks++;
	chunk->context = shim;
	chunk->size = size;
	context->isReset = false;
	if (flags & MCXT_ALLOC_ZERO)
		memset(chunk + 1, 0, size);
	return chunk + 1;
}

void *
MemoryContextAlloc(MemoryContext context, Size size)
{
	return chunk_alloc(context, size, 0);
}

void *
MemoryContextAllocZero(MemoryContext context, Size size)
{
	return chunk_alloc(context, size, MCXT_ALLOC_ZERO);
}

void *
MemoryContextAllocZeroAligned(MemoryContext context, Size size)
{
	return chunk_alloc(context, size, MCXT_ALLOC_ZERO);
}

void *
MemoryContextAllocExtended(MemoryContext context, Size size, int flags)
{
	return chunk_alloc(context, size, flags);
}

void *
palloc(Size size)
{
	return chunk_alloc(CurrentMemoryContext, size, 0);
}

void *
palloc0(Size size)
{
	return chunk_alloc(CurrentMemoryContext, size, MCXT_ALLOC_ZERO);
}

void *
palloc_extended(Size size, int flags)
{
	return chunk_alloc(CurrentMemoryContext, size, flags);
}

void
pfree(void *pointer)
{
	ShimChunk  *chunk = ((ShimChunk *) pointer) - 1;
	ShimContext *context = chunk->context;

	if (chunk->prev != NULL)
		chunk->prev->next = chunk->next;
	else
		context->chunks = chunk->next;
	if (chunk->next != NULL)
		chunk->next->prev = chunk->prev;
	context->nchunks--;
	free(chunk);
}

void *
repalloc(void *pointer, Size size)
{
	ShimChunk  *chunk = ((ShimChunk *) pointer) - 1;
	void	   *moved = chunk_alloc(&chunk->context->header, size, 0);

	memcpy(moved, pointer, Min(size, chunk->size));
	pfree(pointer);
	return moved;
}

char *
MemoryContextStrdup(MemoryContext context, const char *string)
{
	Size		len = strlen(string) + 1;
	char	   *copy = chunk_alloc(context, len, 0);

	memcpy(copy, string, len);
	return copy;
}

char *
pstrdup(const char *in)
{
	return MemoryContextStrdup(CurrentMemoryContext, in);
}

char *
pnstrdup(const char *in, Size len)
{
	char	   *out;

	len = strnlen(in, len);
	out = palloc(len + 1);
	memcpy(out, in, len);
	out[len] = '\0';
	return out;
}


/* ---------------------------------------------------------------------
 * Errors
 * ---------------------------------------------------------------------
 */

bool
errstart(int elevel, const char *domain)
{
	ErrorData  *edata;

	if (errordata_depth + 1 >= ERROR_STACK_SIZE)
		shim_fatal("error stack overflow (errors raised while reporting errors)", NULL);
	edata = &errordata[++errordata_depth];
	memset(edata, 0, sizeof(ErrorData));
	edata->elevel = elevel;
	edata->domain = domain;
	edata->sqlerrcode = (elevel >= ERROR) ? ERRCODE_INTERNAL_ERROR : ERRCODE_SUCCESSFUL_COMPLETION;
	error_saved_context[errordata_depth] = CurrentMemoryContext;
	return true;
}

bool
errstart_cold(int elevel, const char *domain)
{
	return errstart(elevel, domain);
}

/*
 * format_field formats an error message field in ErrorContext, as elog.c
 * does (retrying with a larger buffer until the text fits).
 */
static char *
format_field(const char *fmt, va_list args)
{
	MemoryContext old = MemoryContextSwitchTo(ErrorContext);
	StringInfoData buf;

	initStringInfo(&buf);
	for (;;)
	{
		va_list		copy;
		int			needed;

		va_copy(copy, args);
		needed = appendStringInfoVA(&buf, fmt, copy);
		va_end(copy);
		if (needed == 0)
			break;
		enlargeStringInfo(&buf, needed);
	}
	MemoryContextSwitchTo(old);
	return buf.data;
}

#define FORMAT_FIELD(field, fmt) \
	do { \
		va_list		args; \
		if (errordata_depth < 0) \
			shim_fatal("error field set outside ereport", fmt); \
		va_start(args, fmt); \
		errordata[errordata_depth].field = format_field(fmt, args); \
		va_end(args); \
	} while (0)

int
errcode(int sqlerrcode)
{
	errordata[errordata_depth].sqlerrcode = sqlerrcode;
	return 0;
}

int
errmsg(const char *fmt,...)
{
	FORMAT_FIELD(message, fmt);
	return 0;
}

int
errmsg_internal(const char *fmt,...)
{
	FORMAT_FIELD(message, fmt);
	return 0;
}

int
errdetail(const char *fmt,...)
{
	FORMAT_FIELD(detail, fmt);
	return 0;
}

int
errdetail_internal(const char *fmt,...)
{
	FORMAT_FIELD(detail, fmt);
	return 0;
}

int
errhint(const char *fmt,...)
{
	FORMAT_FIELD(hint, fmt);
	return 0;
}

int
errcontext_msg(const char *fmt,...)
{
	FORMAT_FIELD(context, fmt);
	return 0;
}

int
set_errcontext_domain(const char *domain)
{
	return 0;
}

int
errhidestmt(bool hide_stmt)
{
	return 0;
}

void
errfinish(const char *filename, int lineno, const char *funcname)
{
	ErrorData  *edata = &errordata[errordata_depth];
	ErrorContextCallback *econtext;

	edata->filename = filename;
	edata->lineno = lineno;
	edata->funcname = funcname;

	MemoryContextSwitchTo(ErrorContext);
	for (econtext = error_context_stack; econtext != NULL; econtext = econtext->previous)
		econtext->callback(econtext->arg);

	if (edata->elevel < ERROR)
	{
		/* formatted, not reported */
		MemoryContextSwitchTo(error_saved_context[errordata_depth]);
		errordata_depth--;
		if (errordata_depth < 0)
			MemoryContextReset(ErrorContext);
		return;
	}
	if (edata->elevel > ERROR || PG_exception_stack == NULL)
		shim_fatal(edata->elevel > ERROR ? "FATAL or PANIC reported" : "ERROR outside any PG_TRY",
				   edata->message);

	/* like elog.c: leave CurrentMemoryContext = ErrorContext and jump */
	siglongjmp(*PG_exception_stack, 1);
}

void
pg_re_throw(void)
{
	if (PG_exception_stack == NULL)
		shim_fatal("PG_RE_THROW outside any PG_TRY",
				   errordata_depth >= 0 ? errordata[errordata_depth].message : NULL);
	siglongjmp(*PG_exception_stack, 1);
}

void
FlushErrorState(void)
{
	errordata_depth = -1;
	MemoryContextReset(ErrorContext);
}

/*
 * CopyErrorData copies the error being handled into the current context,
 * which must not be ErrorContext, as elog.c requires.
 */
ErrorData *
CopyErrorData(void)
{
	ErrorData  *copy;

	if (errordata_depth < 0)
		shim_fatal("CopyErrorData without an error", NULL);
	if (CurrentMemoryContext == ErrorContext)
		shim_fatal("CopyErrorData into ErrorContext", NULL);
	copy = palloc(sizeof(ErrorData));
	memcpy(copy, &errordata[errordata_depth], sizeof(ErrorData));
	copy->message = copy->message ? pstrdup(copy->message) : NULL;
	copy->detail = copy->detail ? pstrdup(copy->detail) : NULL;
	copy->hint = copy->hint ? pstrdup(copy->hint) : NULL;
	copy->context = copy->context ? pstrdup(copy->context) : NULL;
	return copy;
}


/* ---------------------------------------------------------------------
 * Dates
 * ---------------------------------------------------------------------
 */

const int	day_tab[2][13] = {
	{31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31, 0},
	{31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31, 0}
};

/*
 * date2j returns the Julian day number of a Gregorian date: the days since
 * 1970-01-01 counted in 400-year eras, plus the Julian day of 1970-01-01.
 */
int
date2j(int year, int month, int day)
{
	int			y = year - (month <= 2);
	int			era = (y >= 0 ? y : y - 399) / 400;
	int			year_of_era = y - era * 400;
	int			day_of_year = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
	int			day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;

	return era * 146097 + day_of_era - 719468 + 2440588;
}


/* ---------------------------------------------------------------------
 * The harness around each input
 * ---------------------------------------------------------------------
 */

/*
 * fuzz_init creates the permanent contexts, once.
 */
void
fuzz_init(void)
{
	if (TopMemoryContext != NULL)
		return;
	TopMemoryContext = context_create(NULL, "TopMemoryContext");
	ErrorContext = context_create(TopMemoryContext, "ErrorContext");
	CurrentMemoryContext = TopMemoryContext;
}

/*
 * fuzz_begin gives one input a context of its own and makes it current.
 */
MemoryContext
fuzz_begin(void)
{
	MemoryContext context;

	fuzz_init();
	context = AllocSetContextCreate(TopMemoryContext, "fuzz input", ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(context);
	return context;
}

/*
 * fuzz_end deletes the input's context -- PostgreSQL's end of query -- and
 * checks that nothing was left behind: no error state, no PG_TRY or error
 * context still pushed, nothing allocated in TopMemoryContext.
 */
void
fuzz_end(MemoryContext context)
{
	if (error_context_stack != NULL)
		shim_fatal("error_context_stack not popped", NULL);
	if (PG_exception_stack != NULL)
		shim_fatal("PG_exception_stack not restored", NULL);
	if (errordata_depth >= 0)
		shim_fatal("error state not flushed", errordata[errordata_depth].message);
	if (CurrentMemoryContext != context)
		shim_fatal("CurrentMemoryContext not switched back",
				   CurrentMemoryContext ? CurrentMemoryContext->name : NULL);
	MemoryContextSwitchTo(TopMemoryContext);
	MemoryContextDelete(context);
	if (((ShimContext *) TopMemoryContext)->nchunks != 0)
		shim_fatal("memory allocated in TopMemoryContext", NULL);
	if (TopMemoryContext->firstchild != ErrorContext || ErrorContext->nextchild != NULL)
		shim_fatal("a context outlived the input", TopMemoryContext->firstchild->name);
	if (((ShimContext *) ErrorContext)->nchunks != 0)
		shim_fatal("memory left in ErrorContext", NULL);
}
