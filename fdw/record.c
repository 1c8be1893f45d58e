/*-------------------------------------------------------------------------
 *
 * record.c
 *		  One WHOOP JSON record into the values of a tuple.
 *
 * Only the columns a query references are converted.  Absent and null
 * fields become NULL; unknown fields are ignored.  The common types have
 * direct conversions (WHOOP's ISO-8601 timestamps are parsed here rather
 * than by timestamptz_in, which is several times slower); any other column
 * type is fed the field's text through its input function, so a user may
 * declare, say, a text column for a numeric field.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "whoop_fdw.h"

#include "catalog/pg_attribute.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"

typedef struct ConversionContext
{
	const WhoopEndpoint *endpoint;
	const WhoopField *field;
} ConversionContext;

static void conversion_error_context(void *arg);
static Datum convert_generic(WhoopColumn *column, const WhoopJsonValue *value);

/*
 * whoop_column_init prepares the conversion of one column, choosing a
 * direct path when the column's type allows it.
 */
void
whoop_column_init(WhoopColumn *column, const WhoopField *field,
				  Form_pg_attribute attr)
{
	Oid			input_func;

	column->attnum = attr->attnum;
	column->field = field;
	column->type = attr->atttypid;
	column->typmod = attr->atttypmod;
	getTypeInputInfo(attr->atttypid, &input_func, &column->ioparam);
	fmgr_info(input_func, &column->input);

	switch (attr->atttypid)
	{
		case INT8OID:
			column->conversion = WHOOP_CONVERT_INT8;
			break;
		case INT4OID:
			column->conversion = WHOOP_CONVERT_INT4;
			break;
		case FLOAT8OID:
			column->conversion = WHOOP_CONVERT_FLOAT8;
			break;
		case BOOLOID:
			column->conversion = WHOOP_CONVERT_BOOL;
			break;
		case TEXTOID:
			column->conversion = WHOOP_CONVERT_TEXT;
			break;
		case TIMESTAMPTZOID:
			column->conversion = WHOOP_CONVERT_TIMESTAMPTZ;
			break;
		case JSONBOID:
			column->conversion = WHOOP_CONVERT_JSONB;
			break;
		default:
			column->conversion = WHOOP_CONVERT_GENERIC;
			break;
	}
}

/*
 * conversion_error_context names the field whose value could not be
 * converted.
 */
static void
conversion_error_context(void *arg)
{
	ConversionContext *context = (ConversionContext *) arg;

	if (context->field != NULL)
		errcontext("WHOOP field \"%s\" of a %s record",
				   context->field->path ? context->field->path : context->field->name,
				   context->endpoint->name);
}

/*
 * convert_generic feeds the field's text to the column type's input
 * function.
 */
static Datum
convert_generic(WhoopColumn *column, const WhoopJsonValue *value)
{
	char	   *text = whoop_json_value_text(value);

	return InputFunctionCall(&column->input, text, column->ioparam, column->typmod);
}

/*
 * whoop_record_values fills VALUES/NULLS (indexed by attnum - 1) for the
 * given columns from record RECORD of DOC.
 */
void
whoop_record_values(WhoopJsonDoc *doc, int record, int64 account_user_id,
					const WhoopEndpoint *endpoint, WhoopColumn *columns,
					int ncolumns, Datum *values, bool *nulls)
{
	ConversionContext context = {endpoint, NULL};
	ErrorContextCallback callback;

	callback.callback = conversion_error_context;
	callback.arg = &context;
	callback.previous = error_context_stack;
	error_context_stack = &callback;

	for (int i = 0; i < ncolumns; i++)
	{
		WhoopColumn *column = &columns[i];
		int			index = column->attnum - 1;
		WhoopJsonValue value;

		context.field = column->field;
		nulls[index] = false;

		if (column->field->source == WHOOP_FIELD_RAW)
		{
			char	   *text = whoop_json_record_text(doc, record);

			if (column->conversion == WHOOP_CONVERT_JSONB)
				values[index] = DirectFunctionCall1(jsonb_in, CStringGetDatum(text));
			else
				values[index] = InputFunctionCall(&column->input, text,
												  column->ioparam, column->typmod);
			continue;
		}
		if (column->field->source == WHOOP_FIELD_ACCOUNT_USER_ID)
		{
			value.kind = WHOOP_JSON_INT;
			value.i = account_user_id;
			value.d = (double) account_user_id;
		}
		else
			whoop_json_field(doc, record, column->field->path, &value);

		if (value.kind == WHOOP_JSON_ABSENT || value.kind == WHOOP_JSON_NULL)
		{
			values[index] = (Datum) 0;
			nulls[index] = true;
			continue;
		}

		switch (column->conversion)
		{
			case WHOOP_CONVERT_INT8:
				if (value.kind == WHOOP_JSON_INT)
					values[index] = Int64GetDatum(value.i);
				else
					values[index] = convert_generic(column, &value);
				break;
			case WHOOP_CONVERT_INT4:
				if (value.kind == WHOOP_JSON_INT && value.i >= PG_INT32_MIN &&
					value.i <= PG_INT32_MAX)
					values[index] = Int32GetDatum((int32) value.i);
				else
					values[index] = convert_generic(column, &value);
				break;
			case WHOOP_CONVERT_FLOAT8:
				if (value.kind == WHOOP_JSON_INT || value.kind == WHOOP_JSON_DOUBLE)
					values[index] = Float8GetDatum(value.d);
				else
					values[index] = convert_generic(column, &value);
				break;
			case WHOOP_CONVERT_BOOL:
				if (value.kind == WHOOP_JSON_BOOL)
					values[index] = BoolGetDatum(value.b);
				else
					values[index] = convert_generic(column, &value);
				break;
			case WHOOP_CONVERT_TEXT:
				if (value.kind == WHOOP_JSON_STRING || value.kind == WHOOP_JSON_COMPOSITE)
				{
					if (memchr(value.s, '\0', value.len) != NULL)
						ereport(ERROR,
								(errcode(ERRCODE_UNTRANSLATABLE_CHARACTER),
								 errmsg("WHOOP string contains a NUL character")));
					values[index] = PointerGetDatum(cstring_to_text_with_len(value.s,
																			 value.len));
				}
				else
					values[index] = CStringGetTextDatum(whoop_json_value_text(&value));
				break;
			case WHOOP_CONVERT_TIMESTAMPTZ:
				{
					TimestampTz ts;

					if (value.kind == WHOOP_JSON_STRING &&
						whoop_parse_timestamp(value.s, value.len, &ts))
						values[index] = TimestampTzGetDatum(ts);
					else
						values[index] = convert_generic(column, &value);
					break;
				}
			case WHOOP_CONVERT_JSONB:
				{
					char	   *text = whoop_json_value_text(&value);

					if (value.kind == WHOOP_JSON_STRING)
					{
						/* a JSON string value must stay a JSON string */
						StringInfoData quoted;

						initStringInfo(&quoted);
						escape_json(&quoted, text);
						text = quoted.data;
					}
					values[index] = DirectFunctionCall1(jsonb_in, CStringGetDatum(text));
					break;
				}
			case WHOOP_CONVERT_GENERIC:
				values[index] = convert_generic(column, &value);
				break;
		}
	}

	error_context_stack = callback.previous;
}
