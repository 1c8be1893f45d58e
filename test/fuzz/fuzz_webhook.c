/*-------------------------------------------------------------------------
 *
 * fuzz_webhook.c
 *		  Fuzz target: what a WHOOP webhook carries (webhook_parse.c) -- its
 *		  body, and the timestamp header its signature covers.
 *
 * The input is read as a body (whoop_webhook_parse, which may raise an
 * error) and as the text of X-WHOOP-Signature-Timestamp
 * (whoop_webhook_parse_timestamp, which must not).  Both run before the
 * signature is checked, so anyone can send them anything.
 *
 * Invariants:
 *	- a refused body raises only 22P02 (malformed) or, over 4096 bytes,
 *	  54000 (too large), with a message; never another error;
 *	- an accepted body fits the limit, names a positive user_id, a
 *	  canonical lower-case UUID, one of the six types, and a trace_id of
 *	  1-128 visible ASCII characters;
 *	- a timestamp is accepted exactly when it is 1-15 decimal digits, and
 *	  then its value is theirs.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "whoop_fdw.h"

#include "fuzz.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * sqlstate_text spells an error code's five characters, for reports.
 */
static const char *
sqlstate_text(int code)
{
	static char text[6];

	for (int i = 0; i < 5; i++)
	{
		text[i] = PGUNSIXBIT(code);
		code >>= 6;
	}
	text[5] = '\0';
	return text;
}

/*
 * check_event verifies an accepted body's event.
 */
static void
check_event(const WhoopWebhookEvent *event, size_t size)
{
	bool		known = false;
	size_t		trace_len;

	FUZZ_CHECK(size <= WHOOP_WEBHOOK_MAX_BODY, "a body of %zu bytes accepted", size);
	FUZZ_CHECK(event->user_id > 0, "user_id " INT64_FORMAT, event->user_id);
	for (int i = 0; i < WHOOP_UUID_LENGTH; i++)
	{
		char		c = event->record_id[i];

		if (i == 8 || i == 13 || i == 18 || i == 23)
			FUZZ_CHECK(c == '-', "record_id \"%s\"", event->record_id);
		else
			FUZZ_CHECK((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'),
					   "record_id \"%s\"", event->record_id);
	}
	FUZZ_CHECK(event->record_id[WHOOP_UUID_LENGTH] == '\0', "record_id not terminated");
	for (int i = 0; i < whoop_webhook_type_count; i++)
		known |= (event->type == whoop_webhook_types[i]);
	FUZZ_CHECK(known, "type not one of the six");
	FUZZ_CHECK(event->trace_id != NULL, "no trace_id");
	trace_len = strlen(event->trace_id);
	FUZZ_CHECK(trace_len >= 1 && trace_len <= WHOOP_WEBHOOK_MAX_TRACE_ID,
			   "trace_id of %zu characters", trace_len);
	for (const char *p = event->trace_id; *p; p++)
		FUZZ_CHECK(*p > 0x20 && *p < 0x7f, "trace_id contains byte 0x%02x", (unsigned char) *p);
}

/*
 * check_timestamp compares the header parser with a plain reading of the
 * digits.
 */
static void
check_timestamp(const uint8_t *data, size_t size)
{
	int64		ms = -1;
	bool		accepted = whoop_webhook_parse_timestamp((const char *) data, size, &ms);
	bool		digits = (size >= 1 && size <= 15);
	int64		expected = 0;

	for (size_t i = 0; digits && i < size; i++)
	{
		if (data[i] < '0' || data[i] > '9')
			digits = false;
		else
			expected = expected * 10 + (data[i] - '0');
	}
	FUZZ_CHECK(accepted == digits, "timestamp of %zu bytes %s", size,
			   accepted ? "accepted" : "refused");
	if (accepted)
		FUZZ_CHECK(ms == expected, "timestamp " INT64_FORMAT " read as " INT64_FORMAT,
				   expected, ms);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	MemoryContext input = fuzz_begin();

	PG_TRY();
	{
		WhoopWebhookEvent event;

		whoop_webhook_parse((const char *) data, size, &event);
		check_event(&event, size);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(input);
		edata = CopyErrorData();
		FlushErrorState();
		FUZZ_CHECK(edata->sqlerrcode == ERRCODE_INVALID_TEXT_REPRESENTATION ||
				   (edata->sqlerrcode == ERRCODE_PROGRAM_LIMIT_EXCEEDED &&
					size > WHOOP_WEBHOOK_MAX_BODY),
				   "body of %zu bytes refused with SQLSTATE %s: %s", size,
				   sqlstate_text(edata->sqlerrcode), edata->message);
		FUZZ_CHECK(edata->message != NULL && edata->message[0] != '\0', "no message");
	}
	PG_END_TRY();
	MemoryContextSwitchTo(input);

	check_timestamp(data, size);

	fuzz_end(input);
	return 0;
}
