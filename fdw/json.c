/*-------------------------------------------------------------------------
 *
 * json.c
 *		  WHOOP response parsing: the only file that includes json-c.
 *
 * json-c's json_object type collides with PostgreSQL's json_object() SQL
 * function declaration, so json-c stays behind this small API and this file
 * includes no utils/builtins.h or fmgrprotos.h.
 *
 * json-c allocates with malloc.  A parsed document is tied to a memory
 * context through a reset callback, so it is freed when that context is
 * reset or deleted -- also when an error unwinds the query -- and never
 * leaks per page.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include <json.h>

#include "whoop_fdw.h"

#include "mb/pg_wchar.h"

struct WhoopJsonDoc
{
	struct json_object *root;
	struct json_object *records;	/* the page's array, NULL for one object */
	MemoryContextCallback free_callback;
};

static struct json_object *tokenize(const char *data, size_t len, int flags,
									enum json_tokener_error *error,
									size_t *parse_end);
static bool strict_mode_refuses_utf8(void);
static void free_document(void *arg);
static struct json_object *record_object(WhoopJsonDoc *doc, int record);

/*
 * whoop_json_parse parses one response body whose top level must be an
 * object: a page ({"records": [...], "next_token": ...}) or a single record.
 * Malformed or truncated JSON raises an error naming WHAT (the endpoint)
 * and the byte offset where parsing stopped; json-c's strict mode is used,
 * so that what is not JSON (a number such as 000e, comments, single
 * quotes, trailing commas) is not read as data.  So does a body that is not
 * valid UTF-8 (or holds a NUL byte): json-c copies such bytes into strings
 * and keys unchecked, and they would reach text and jsonb values unverified.
 */
WhoopJsonDoc *
whoop_json_parse(const char *data, size_t len, MemoryContext owner,
				 const char *what)
{
	struct json_object *root;
	enum json_tokener_error error;
	size_t		parse_end;
	bool		multibyte = false;
	WhoopJsonDoc *doc;

	if (len > PG_INT32_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_STRING_FORMAT),
				 errmsg("WHOOP response from %s is too large", what)));

	for (size_t i = 0; i < len && !multibyte; i++)
		multibyte = IS_HIGHBIT_SET(data[i]);

	/* not json-c's lenient default: no comments, quotes, leading zeros ... */
	if (!multibyte || !strict_mode_refuses_utf8())
		root = tokenize(data, len, JSON_TOKENER_STRICT, &error, &parse_end);
	else
	{
		/*
		 * Outside strings and keys a non-ASCII byte is an error, and so is
		 * '?'; inside them both are plain characters.  So the copy with every
		 * such byte masked as '?' is strict JSON exactly when the body is
		 * (its UTF-8 is verified below), with the same error offsets; a
		 * lenient parse of the body, which accepts all strict JSON alike,
		 * then builds the tree from the real characters.
		 */
		char	   *masked = palloc(len);

		for (size_t i = 0; i < len; i++)
			masked[i] = IS_HIGHBIT_SET(data[i]) ? '?' : data[i];
		root = tokenize(masked, len, JSON_TOKENER_STRICT, &error, &parse_end);
		pfree(masked);
		if (root != NULL && error == json_tokener_success)
		{
			json_object_put(root);
			root = tokenize(data, len, 0, &error, &parse_end);
		}
	}

	if (root == NULL || error != json_tokener_success)
	{
		if (root != NULL)
			json_object_put(root);
		if (error == json_tokener_continue || (error == json_tokener_success && len == 0))
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_STRING_FORMAT),
					 errmsg("truncated JSON in WHOOP response from %s", what),
					 errdetail("The body ended at byte offset %zu before the JSON document was complete.",
							   len),
					 errhint("The connection may have been cut; the query can be retried.")));
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_STRING_FORMAT),
				 errmsg("invalid JSON in WHOOP response from %s", what),
				 errdetail("Parsing failed at byte offset %zu of %zu: %s.",
						   parse_end, len, json_tokener_error_desc(error))));
	}

	/* only whitespace may follow the document */
	for (size_t i = parse_end; i < len; i++)
	{
		if (!isspace((unsigned char) data[i]))
		{
			json_object_put(root);
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_STRING_FORMAT),
					 errmsg("invalid JSON in WHOOP response from %s", what),
					 errdetail("Unexpected data after the JSON document at byte offset %zu of %zu.",
							   i, len)));
		}
	}

	/* JSON is UTF-8; checked once parsed, so a cut body reads as truncated */
	{
		int			valid = pg_encoding_verifymbstr(PG_UTF8, data, (int) len);

		if (valid < (int) len)
		{
			json_object_put(root);
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_STRING_FORMAT),
					 errmsg("invalid UTF-8 in WHOOP response from %s", what),
					 errdetail("The bytes at byte offset %d of %zu are not valid UTF-8.",
							   valid, len)));
		}
	}

	if (!json_object_is_type(root, json_type_object))
	{
		json_object_put(root);
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_STRING_FORMAT),
				 errmsg("unexpected JSON in WHOOP response from %s", what),
				 errdetail("The top level is not a JSON object.")));
	}

	doc = MemoryContextAllocZero(owner, sizeof(WhoopJsonDoc));
	doc->root = root;
	doc->free_callback.func = free_document;
	doc->free_callback.arg = doc;
	MemoryContextRegisterResetCallback(owner, &doc->free_callback);

	{
		struct json_object *records;

		if (json_object_object_get_ex(root, "records", &records))
		{
			if (!json_object_is_type(records, json_type_array))
				ereport(ERROR,
						(errcode(ERRCODE_FDW_INVALID_STRING_FORMAT),
						 errmsg("unexpected JSON in WHOOP response from %s", what),
						 errdetail("\"records\" is not an array.")));
			doc->records = records;
			for (size_t i = 0; i < json_object_array_length(records); i++)
			{
				if (!json_object_is_type(json_object_array_get_idx(records, i),
										 json_type_object))
					ereport(ERROR,
							(errcode(ERRCODE_FDW_INVALID_STRING_FORMAT),
							 errmsg("unexpected JSON in WHOOP response from %s", what),
							 errdetail("Record %zu of the page is not a JSON object.", i)));
			}
		}
	}
	return doc;
}

/*
 * tokenize parses DATA with one json-c tokener set to FLAGS and reports
 * json-c's verdict and the offset where parsing stopped; NULL on failure.
 */
static struct json_object *
tokenize(const char *data, size_t len, int flags,
		 enum json_tokener_error *error, size_t *parse_end)
{
	struct json_tokener *tokener = json_tokener_new();
	struct json_object *root;

	if (tokener == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	json_tokener_set_flags(tokener, flags);
	root = json_tokener_parse_ex(tokener, data, (int) len);
	*error = json_tokener_get_error(tokener);
	*parse_end = json_tokener_get_parse_end(tokener);
	json_tokener_free(tokener);
	return root;
}

/*
 * strict_mode_refuses_utf8 tells whether this json-c's strict mode rejects
 * a string holding a non-ASCII character.  json-c 0.18 refuses control
 * characters in strict mode by comparing a plain char with 0x1f, so on
 * platforms where char is signed every byte from 0x80 up counts as one
 * ("invalid string sequence"); 0.19 compares unsigned, 0.17 and earlier do
 * not check.  Asked once of the library loaded, so a fixed build of 0.18
 * takes the direct path.
 */
static bool
strict_mode_refuses_utf8(void)
{
	static int	refuses = -1;

	if (refuses < 0)
	{
		static const char probe[] = "{\"name\":\"Zo\xc3\xab\"}";
		enum json_tokener_error error;
		size_t		parse_end;
		struct json_object *root = tokenize(probe, sizeof(probe) - 1,
											JSON_TOKENER_STRICT,
											&error, &parse_end);

		refuses = (root == NULL || error != json_tokener_success) ? 1 : 0;
		if (root != NULL)
			json_object_put(root);
	}
	return refuses == 1;
}

/*
 * free_document releases json-c's malloc'd tree when its context goes away.
 */
static void
free_document(void *arg)
{
	WhoopJsonDoc *doc = (WhoopJsonDoc *) arg;

	if (doc->root != NULL)
		json_object_put(doc->root);
	doc->root = NULL;
	doc->records = NULL;
}

/*
 * whoop_json_record_count returns the number of records: the page size for
 * a page, 1 for a single object.
 */
int
whoop_json_record_count(WhoopJsonDoc *doc)
{
	if (doc->records == NULL)
		return 1;
	return (int) json_object_array_length(doc->records);
}

/*
 * whoop_json_next_token returns a page's next_token, or NULL on the last
 * page (absent, null or empty).
 */
char *
whoop_json_next_token(WhoopJsonDoc *doc)
{
	struct json_object *token;
	const char *text;

	if (!json_object_object_get_ex(doc->root, "next_token", &token) ||
		!json_object_is_type(token, json_type_string))
		return NULL;
	text = json_object_get_string(token);
	if (text == NULL || text[0] == '\0')
		return NULL;
	return pstrdup(text);
}

/*
 * record_object returns record number RECORD of a page, or the document's
 * top-level object when it is not a page.
 */
static struct json_object *
record_object(WhoopJsonDoc *doc, int record)
{
	if (doc->records == NULL)
		return doc->root;
	return json_object_array_get_idx(doc->records, record);
}

/*
 * whoop_json_field looks up a dotted PATH in a record.  A missing member
 * anywhere along the path yields WHOOP_JSON_ABSENT; a non-object in the
 * middle of the path counts as missing.
 */
void
whoop_json_field(WhoopJsonDoc *doc, int record, const char *path,
				 WhoopJsonValue *value)
{
	struct json_object *node = record_object(doc, record);
	const char *segment = path;

	memset(value, 0, sizeof(WhoopJsonValue));
	value->kind = WHOOP_JSON_ABSENT;

	while (node != NULL)
	{
		const char *dot = strchr(segment, '.');
		char		key[64];
		size_t		keylen = dot ? (size_t) (dot - segment) : strlen(segment);

		if (keylen >= sizeof(key) || !json_object_is_type(node, json_type_object))
			return;
		memcpy(key, segment, keylen);
		key[keylen] = '\0';
		if (!json_object_object_get_ex(node, key, &node))
			return;
		if (dot == NULL)
			break;
		segment = dot + 1;
	}

	switch (json_object_get_type(node))
	{
		case json_type_null:
			value->kind = WHOOP_JSON_NULL;
			break;
		case json_type_boolean:
			value->kind = WHOOP_JSON_BOOL;
			value->b = json_object_get_boolean(node);
			break;
		case json_type_int:
			value->kind = WHOOP_JSON_INT;
			value->i = json_object_get_int64(node);
			value->d = (double) value->i;
			break;
		case json_type_double:
			value->kind = WHOOP_JSON_DOUBLE;
			value->d = json_object_get_double(node);
			break;
		case json_type_string:
			value->kind = WHOOP_JSON_STRING;
			value->s = json_object_get_string(node);
			value->len = json_object_get_string_len(node);
			break;
		case json_type_object:
		case json_type_array:
			value->kind = WHOOP_JSON_COMPOSITE;
			value->s = json_object_to_json_string_ext(node, JSON_C_TO_STRING_PLAIN |
													  JSON_C_TO_STRING_NOSLASHESCAPE);
			value->len = (int) strlen(value->s);
			break;
	}
}

/*
 * whoop_json_members_are says whether the document's top-level object has
 * exactly the COUNT members NAMES, no other: what a fixed message format
 * such as a webhook body must be.  json-c keeps the last of duplicate keys,
 * so a repeated name counts once.
 */
bool
whoop_json_members_are(WhoopJsonDoc *doc, const char *const *names, int count)
{
	if (json_object_object_length(doc->root) != count)
		return false;
	for (int i = 0; i < count; i++)
	{
		if (!json_object_object_get_ex(doc->root, names[i], NULL))
			return false;
	}
	return true;
}

/*
 * whoop_json_record_text serializes a whole record, for the raw column.
 */
char *
whoop_json_record_text(WhoopJsonDoc *doc, int record)
{
	return pstrdup(json_object_to_json_string_ext(record_object(doc, record),
												  JSON_C_TO_STRING_PLAIN |
												  JSON_C_TO_STRING_NOSLASHESCAPE));
}

/*
 * whoop_json_value_text renders a scalar as the text a type's input
 * function accepts; NULL for absent or null.
 */
char *
whoop_json_value_text(const WhoopJsonValue *value)
{
	switch (value->kind)
	{
		case WHOOP_JSON_ABSENT:
		case WHOOP_JSON_NULL:
			return NULL;
		case WHOOP_JSON_BOOL:
			return pstrdup(value->b ? "true" : "false");
		case WHOOP_JSON_INT:
			return psprintf(INT64_FORMAT, value->i);
		case WHOOP_JSON_DOUBLE:
			return psprintf("%.17g", value->d);
		case WHOOP_JSON_STRING:
		case WHOOP_JSON_COMPOSITE:
			return pnstrdup(value->s, value->len);
	}
	return NULL;
}
