/*-------------------------------------------------------------------------
 *
 * fuzz_page.c
 *		  Fuzz target: a WHOOP API response body through the path that turns
 *		  it into rows (json.c, endpoint.c, parse.c).
 *
 * The input is a response body as fetch.c hands it to whoop_json_parse(): a
 * page of records, a single record, a profile.  The page's next_token is
 * read; in every record, every field path of every endpoint is looked up
 * (so each record is also read as each other record type), the value is
 * rendered as the text a type input function would get, string values go
 * through whoop_parse_timestamp(), and the record is serialized as for the
 * raw jsonb column.  An ERROR is an accepted outcome for hostile input.
 *
 * Invariants (a violation aborts, which the fuzzer reports):
 *	- string values are NUL-terminated at their length and valid UTF-8 up to
 *	  any NUL (only a \u0000 escape yields one), because they become text
 *	  and jsonb values stored in the database;
 *	- integers and doubles render as text that reads back as the same value;
 *	- a timestamp that parses is a valid timestamptz;
 *	- a record's serialization is valid UTF-8 without NULs, and parses back
 *	  (strictly, as json.c parses) to the same serialization.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <errno.h>
#include <math.h>

#include <json.h>

#include "whoop_fdw.h"

#include "mb/pg_wchar.h"

#include "fuzz.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * check_utf8 verifies that S (LEN bytes, NUL-terminated there) is valid
 * UTF-8 up to its first NUL, if any.
 */
static void
check_utf8(const char *s, int len, const char *what)
{
	int			text_len = (int) strnlen(s, len);

	FUZZ_CHECK(s[len] == '\0', "%s is not NUL-terminated at its length %d", what, len);
	FUZZ_CHECK(pg_encoding_verifymbstr(PG_UTF8, s, text_len) == text_len,
			   "%s is not valid UTF-8: \"%.*s\"", what, text_len, s);
}

/*
 * check_field looks up one field path and checks the value and its text.
 */
static void
check_field(WhoopJsonDoc *doc, int record, const char *path)
{
	WhoopJsonValue value;
	char	   *text;
	char	   *end;

	whoop_json_field(doc, record, path, &value);
	text = whoop_json_value_text(&value);

	switch (value.kind)
	{
		case WHOOP_JSON_ABSENT:
		case WHOOP_JSON_NULL:
			FUZZ_CHECK(text == NULL, "absent %s rendered as \"%s\"", path, text);
			break;
		case WHOOP_JSON_BOOL:
			FUZZ_CHECK(strcmp(text, value.b ? "true" : "false") == 0,
					   "boolean %s rendered as \"%s\"", path, text);
			break;
		case WHOOP_JSON_INT:
			{
				long long	back;

				errno = 0;
				back = strtoll(text, &end, 10);
				FUZZ_CHECK(errno == 0 && *end == '\0' && back == value.i,
						   "integer %s " INT64_FORMAT " rendered as \"%s\"", path, value.i, text);
				FUZZ_CHECK(value.d == (double) value.i, "integer %s has d %g", path, value.d);
				break;
			}
		case WHOOP_JSON_DOUBLE:
			{
				double		back = strtod(text, &end);

				FUZZ_CHECK(*end == '\0' &&
						   (back == value.d || (isnan(back) && isnan(value.d))),
						   "double %s %.17g rendered as \"%s\"", path, value.d, text);
				break;
			}
		case WHOOP_JSON_STRING:
			{
				TimestampTz ts;

				FUZZ_CHECK(value.s != NULL && value.len >= 0, "string %s without bytes", path);
				check_utf8(value.s, value.len, path);
				FUZZ_CHECK(strlen(text) == strnlen(value.s, value.len) &&
						   memcmp(text, value.s, strlen(text)) == 0,
						   "string %s rendered as \"%s\"", path, text);
				if (whoop_parse_timestamp(value.s, value.len, &ts))
					FUZZ_CHECK(IS_VALID_TIMESTAMP(ts), "timestamp %s out of range: \"%s\"",
							   path, text);
				break;
			}
		case WHOOP_JSON_COMPOSITE:
			FUZZ_CHECK(value.s != NULL && (int) strlen(value.s) == value.len,
					   "composite %s has length %d", path, value.len);
			check_utf8(value.s, value.len, path);
			FUZZ_CHECK(strcmp(text, value.s) == 0, "composite %s rendered as \"%s\"", path, text);
			break;
		default:
			FUZZ_CHECK(false, "field %s has kind %d", path, (int) value.kind);
	}
}

/*
 * reparse parses TEXT (LEN bytes) with a fresh tokener set to FLAGS; NULL
 * unless the whole text is one JSON object.
 */
static struct json_object *
reparse(const char *text, int len, int flags)
{
	struct json_tokener *tokener = json_tokener_new();
	struct json_object *obj;

	json_tokener_set_flags(tokener, flags);
	obj = json_tokener_parse_ex(tokener, text, len);
	if (obj != NULL && (json_tokener_get_error(tokener) != json_tokener_success ||
						!json_object_is_type(obj, json_type_object)))
	{
		json_object_put(obj);
		obj = NULL;
	}
	json_tokener_free(tokener);
	return obj;
}

/*
 * check_record_text serializes a record as the raw column does and parses
 * the text again.  The strict check runs on a copy with non-ASCII bytes
 * masked, as json.c does where json-c 0.18's strict mode refuses UTF-8; the
 * text is valid UTF-8 (checked first), and a lenient parse of strict JSON
 * builds the same tree.
 */
static void
check_record_text(WhoopJsonDoc *doc, int record)
{
	int			flags = JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE;
	char	   *text = whoop_json_record_text(doc, record);
	int			len = (int) strlen(text);
	char	   *masked = pstrdup(text);
	struct json_object *again;

	FUZZ_CHECK(pg_encoding_verifymbstr(PG_UTF8, text, len) == len,
			   "record %d serializes to invalid UTF-8", record);
	for (int i = 0; i < len; i++)
		if (IS_HIGHBIT_SET(masked[i]))
			masked[i] = '?';
	again = reparse(masked, len, JSON_TOKENER_STRICT);
	FUZZ_CHECK(again != NULL, "record %d serializes to text that is not strict JSON: %s",
			   record, text);
	json_object_put(again);
	again = reparse(text, len, 0);
	FUZZ_CHECK(again != NULL, "record %d serializes to text that does not parse: %s",
			   record, text);
	FUZZ_CHECK(strcmp(json_object_to_json_string_ext(again, flags), text) == 0,
			   "record %d serialization is not stable: %s", record, text);
	json_object_put(again);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	MemoryContext input = fuzz_begin();

	PG_TRY();
	{
		WhoopJsonDoc *doc = whoop_json_parse((const char *) data, size, input,
											 "GET /fuzz");
		int			records = whoop_json_record_count(doc);
		char	   *token = whoop_json_next_token(doc);

		FUZZ_CHECK(records >= 0, "record count %d", records);
		if (token != NULL)
		{
			FUZZ_CHECK(token[0] != '\0', "empty next_token returned");
			check_utf8(token, (int) strlen(token), "next_token");
		}
		for (int r = 0; r < records; r++)
		{
			for (int e = 0; e < whoop_endpoint_count; e++)
			{
				const WhoopEndpoint *endpoint = &whoop_endpoints[e];

				for (int f = 0; f < endpoint->nfields; f++)
				{
					if (endpoint->fields[f].source == WHOOP_FIELD_JSON)
						check_field(doc, r, endpoint->fields[f].path);
				}
			}
			check_record_text(doc, r);
		}
	}
	PG_CATCH();
	{
		FlushErrorState();
	}
	PG_END_TRY();

	MemoryContextSwitchTo(input);
	fuzz_end(input);
	return 0;
}
