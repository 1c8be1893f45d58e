/*-------------------------------------------------------------------------
 *
 * jsonb_number.c
 *		  The number at a path of a jsonb document, read in place.
 *
 * The staging views type the scores of the raw records: a sleep has
 * fourteen numbers in its score, a workout fourteen.  Written as
 * (record -> 'score' -> 'stage_summary' ->> 'total_in_bed_time_milli')
 * ::double precision, every field copies the containers on its way down,
 * then the value's text, then parses it.  jsonb_number() walks the document
 * in place and converts the value with the very functions the cast uses,
 * so its results are those of ->> and ::double precision, value for value
 * and error for error: a JSON number goes through numeric_float8() (an
 * integer within 2^53 straight to the double its text denotes), anything
 * else through float8in() on the text ->> would give (a string's contents,
 * 'true', a nested document's JSON); a missing key, a JSON null or a step
 * through a non-object gives NULL.  Over 1.5 million sleeps that is about a
 * second less on a first build's critical path.
 *
 * This file stands apart from the foreign-data wrapper: it needs only the
 * fmgr interface and the server's jsonb and numeric functions.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#if PG_VERSION_NUM >= 160000
#include "varatt.h"
#endif

PG_FUNCTION_INFO_V1(jsonb_number);

/* how deep a path may reach: WHOOP's scores nest two objects deep */
#define JSONB_NUMBER_MAX_KEYS	8

/*
 * JsonbPath is the path argument split into keys, kept in fn_extra between
 * calls: a view passes the same constant for every row.
 */
typedef struct JsonbPath
{
	MemoryContext context;		/* holds this; deleted when the path changes */
	text	   *source;			/* the path it was parsed from */
	int			nkeys;
	const char *keys[JSONB_NUMBER_MAX_KEYS];
	int			key_lengths[JSONB_NUMBER_MAX_KEYS];
	Numeric		exact_max;		/* 2^53 and -2^53: integers within convert exactly */
	Numeric		exact_min;
} JsonbPath;

/*
 * jsonb_path_parse splits a dotted path into its keys, in a context of its
 * own under the function's.
 */
static JsonbPath *
jsonb_path_parse(FunctionCallInfo fcinfo, text *source)
{
	MemoryContext context = AllocSetContextCreate(fcinfo->flinfo->fn_mcxt, "jsonb_number path",
												  ALLOCSET_SMALL_SIZES);
	MemoryContext old_context = MemoryContextSwitchTo(context);
	JsonbPath  *path = palloc0(sizeof(JsonbPath));
	char	   *keys;

	path->context = context;
	path->source = (text *) palloc(VARSIZE_ANY(source));
	memcpy(path->source, source, VARSIZE_ANY(source));
	keys = text_to_cstring(source);
	for (;;)
	{
		char	   *dot = strchr(keys, '.');

		if (path->nkeys == JSONB_NUMBER_MAX_KEYS)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("path of jsonb_number has more than %d keys", JSONB_NUMBER_MAX_KEYS),
					 errhint("Extract the value with #>> instead.")));
		path->keys[path->nkeys] = keys;
		path->key_lengths[path->nkeys] = dot ? (int) (dot - keys) : (int) strlen(keys);
		path->nkeys++;
		if (dot == NULL)
			break;
		keys = dot + 1;
	}
	path->exact_max = DatumGetNumeric(DirectFunctionCall1(int8_numeric, Int64GetDatum(INT64CONST(1) << 53)));
	path->exact_min = DatumGetNumeric(DirectFunctionCall1(int8_numeric, Int64GetDatum(-(INT64CONST(1) << 53))));
	MemoryContextSwitchTo(old_context);
	return path;
}

/*
 * jsonb_number_float8 converts a JSON number as numeric_float8() does.  An
 * integer within 2^53 is taken as such: its decimal text, which
 * numeric_float8() would parse, denotes exactly that double.
 */
static float8
jsonb_number_float8(JsonbPath *path, Numeric number)
{
	Datum		datum = NumericGetDatum(number);

	if (DatumGetInt32(DirectFunctionCall1(numeric_scale, datum)) == 0 &&
		DatumGetInt32(DirectFunctionCall2(numeric_cmp, datum, NumericGetDatum(path->exact_max))) <= 0 &&
		DatumGetInt32(DirectFunctionCall2(numeric_cmp, datum, NumericGetDatum(path->exact_min))) >= 0)
		return (float8) DatumGetInt64(DirectFunctionCall1(numeric_int8, datum));
	return DatumGetFloat8(DirectFunctionCall1(numeric_float8, datum));
}

/*
 * jsonb_number returns the value at a dotted path of a jsonb document as
 * ->> and ::double precision would, or NULL where there is none.
 */
Datum
jsonb_number(PG_FUNCTION_ARGS)
{
	Jsonb	   *document = PG_GETARG_JSONB_P(0);
	text	   *source = PG_GETARG_TEXT_PP(1);
	JsonbPath  *path = (JsonbPath *) fcinfo->flinfo->fn_extra;
	JsonbContainer *container = &document->root;
	JsonbValue	value;
	const char *text;

	if (path == NULL || VARSIZE_ANY_EXHDR(path->source) != VARSIZE_ANY_EXHDR(source) ||
		memcmp(VARDATA_ANY(path->source), VARDATA_ANY(source), VARSIZE_ANY_EXHDR(source)) != 0)
	{
		if (path != NULL)
		{
			fcinfo->flinfo->fn_extra = NULL;
			MemoryContextDelete(path->context);
		}
		path = jsonb_path_parse(fcinfo, source);
		fcinfo->flinfo->fn_extra = path;
	}
	for (int k = 0; k < path->nkeys; k++)
	{
		if (!JsonContainerIsObject(container) ||
			!getKeyJsonValueFromContainer(container, path->keys[k], path->key_lengths[k], &value))
			PG_RETURN_NULL();
		if (k < path->nkeys - 1)
		{
			if (value.type != jbvBinary)
				PG_RETURN_NULL();
			container = value.val.binary.data;
		}
	}
	switch (value.type)
	{
		case jbvNull:
			PG_RETURN_NULL();
		case jbvNumeric:
			PG_RETURN_FLOAT8(jsonb_number_float8(path, value.val.numeric));
		case jbvString:
			text = pnstrdup(value.val.string.val, value.val.string.len);
			break;
		case jbvBool:
			text = value.val.boolean ? "true" : "false";
			break;
		default:
			/* a nested object or array: ->> gives its JSON text */
			text = JsonbToCString(NULL, value.val.binary.data, value.val.binary.len);
			break;
	}
	return DirectFunctionCall1(float8in, CStringGetDatum(text));
}
