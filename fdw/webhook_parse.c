/*-------------------------------------------------------------------------
 *
 * webhook_parse.c
 *		  What a WHOOP webhook carries: its JSON body and the timestamp
 *		  header its signature covers.
 *
 * The body is read before the signature can be checked -- the member it
 * names says whose client secret signed it -- so anyone on the internet
 * can send this parser anything.  It is strict: WHOOP's body is exactly
 * {"user_id": <int>, "id": "<uuid>", "type": "<kind>.<updated|deleted>",
 * "trace_id": "<text>"}, and everything else is refused with
 * ERRCODE_INVALID_TEXT_REPRESENTATION (or ERRCODE_PROGRAM_LIMIT_EXCEEDED
 * for a body over WHOOP_WEBHOOK_MAX_BODY), whatever the JSON layer raised.
 * Like parse.c and token.c it uses only the JSON layer and palloc, so the
 * fuzz targets in test/fuzz/ link it as it is.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "whoop_fdw.h"

#include "utils/memutils.h"

/* WHOOP's event types; creates arrive as updates */
const char *const whoop_webhook_types[] = {
	"workout.updated", "workout.deleted",
	"sleep.updated", "sleep.deleted",
	"recovery.updated", "recovery.deleted",
};
const int	whoop_webhook_type_count = lengthof(whoop_webhook_types);

static const char *const body_members[] = {"user_id", "id", "type", "trace_id"};

/* 18 replaced the pg_attribute_noreturn() suffix by a pg_noreturn specifier */
#if PG_VERSION_NUM >= 180000
static pg_noreturn void malformed(const char *detail);
#else
static void malformed(const char *detail) pg_attribute_noreturn();
#endif
static bool uuid_text(const char *text, int len, char *canonical);

/*
 * malformed raises the one error every refused body gets.
 */
static void
malformed(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
			 errmsg("malformed WHOOP webhook body"),
			 errdetail("%s", detail),
			 errhint("WHOOP posts {\"user_id\": ..., \"id\": ..., \"type\": ..., \"trace_id\": ...} and nothing else.")));
}

/*
 * uuid_text checks the hyphenated 8-4-4-4-12 form of a UUID, the only one
 * WHOOP writes, and copies it lower-cased into CANONICAL.
 */
static bool
uuid_text(const char *text, int len, char *canonical)
{
	if (len != WHOOP_UUID_LENGTH)
		return false;
	for (int i = 0; i < WHOOP_UUID_LENGTH; i++)
	{
		char		c = text[i];

		if (i == 8 || i == 13 || i == 18 || i == 23)
		{
			if (c != '-')
				return false;
		}
		else if (c >= 'A' && c <= 'F')
			c += 'a' - 'A';
		else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
		canonical[i] = c;
	}
	canonical[WHOOP_UUID_LENGTH] = '\0';
	return true;
}

/*
 * whoop_webhook_parse reads one webhook body into EVENT (trace_id palloc'd
 * in the current context) or raises an error saying what is wrong with it.
 * The JSON layer's own errors (not JSON, truncated, not UTF-8) are raised
 * again as a malformed body, keeping their detail, which gives offsets and
 * never quotes the body.
 */
void
whoop_webhook_parse(const char *body, size_t len, WhoopWebhookEvent *event)
{
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext doc_context;
	WhoopJsonDoc *volatile doc = NULL;
	WhoopJsonValue value;

	memset(event, 0, sizeof(WhoopWebhookEvent));
	if (len > WHOOP_WEBHOOK_MAX_BODY)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("WHOOP webhook body is too large"),
				 errdetail("The body has %zu bytes; at most %d are accepted.",
						   len, WHOOP_WEBHOOK_MAX_BODY),
				 errhint("WHOOP's bodies are a few hundred bytes: this request does not come from WHOOP.")));
	if (len == 0)
		malformed("The body is empty.");

	doc_context = AllocSetContextCreate(caller, "whoop_fdw webhook body",
										ALLOCSET_SMALL_SIZES);
	PG_TRY();
	{
		doc = whoop_json_parse(body, len, doc_context, "a webhook");
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(caller);
		edata = CopyErrorData();
		FlushErrorState();
		malformed(edata->detail ? edata->detail : edata->message);
	}
	PG_END_TRY();

	if (!whoop_json_members_are(doc, body_members, lengthof(body_members)))
		malformed("The body must have exactly the members user_id, id, type and trace_id.");

	whoop_json_field(doc, 0, "user_id", &value);
	if (value.kind != WHOOP_JSON_INT || value.i <= 0)
		malformed("\"user_id\" is not a positive integer.");
	event->user_id = value.i;

	whoop_json_field(doc, 0, "id", &value);
	if (value.kind != WHOOP_JSON_STRING ||
		!uuid_text(value.s, value.len, event->record_id))
		malformed("\"id\" is not a UUID.");

	whoop_json_field(doc, 0, "type", &value);
	if (value.kind == WHOOP_JSON_STRING)
	{
		for (int i = 0; i < whoop_webhook_type_count; i++)
		{
			if (strlen(whoop_webhook_types[i]) == value.len &&
				memcmp(whoop_webhook_types[i], value.s, value.len) == 0)
				event->type = whoop_webhook_types[i];
		}
	}
	if (event->type == NULL)
		malformed("\"type\" is not one of workout.updated, workout.deleted, sleep.updated, sleep.deleted, recovery.updated, recovery.deleted.");

	/* WHOOP sends a UUID; any short visible-ASCII identifier dedupes as well */
	whoop_json_field(doc, 0, "trace_id", &value);
	if (value.kind != WHOOP_JSON_STRING || value.len == 0 ||
		value.len > WHOOP_WEBHOOK_MAX_TRACE_ID)
		malformed("\"trace_id\" is not a non-empty string of at most 128 characters.");
	for (int i = 0; i < value.len; i++)
	{
		if ((unsigned char) value.s[i] <= 0x20 || (unsigned char) value.s[i] >= 0x7f)
			malformed("\"trace_id\" holds characters other than visible ASCII.");
	}
	event->trace_id = MemoryContextStrdup(caller, value.s);

	MemoryContextDelete(doc_context);
}

/*
 * whoop_webhook_parse_timestamp reads the X-WHOOP-Signature-Timestamp
 * header: milliseconds since 1970 as decimal digits, nothing else (no sign,
 * no blanks, no fraction).  Returns false for anything else.
 */
bool
whoop_webhook_parse_timestamp(const char *text, size_t len, int64 *ms)
{
	int64		value = 0;

	/* 15 digits reach the year 33658: enough, and far from overflow */
	if (len == 0 || len > 15)
		return false;
	for (size_t i = 0; i < len; i++)
	{
		if (text[i] < '0' || text[i] > '9')
			return false;
		value = value * 10 + (text[i] - '0');
	}
	*ms = value;
	return true;
}
