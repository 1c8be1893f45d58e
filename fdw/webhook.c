/*-------------------------------------------------------------------------
 *
 * webhook.c
 *		  whoop.receive_webhook: one signed WHOOP webhook checked and queued.
 *
 * WHOOP signs each webhook with the app's client secret: the
 * X-WHOOP-Signature header is the base64 HMAC-SHA256 of the
 * X-WHOOP-Signature-Timestamp header's text followed by the raw body.  The
 * receiver (webhookd/, outside the server) passes both headers and the
 * body here; this file checks them in the order that needs no secret
 * first -- headers present, timestamp within WEBHOOK_WINDOW_MS of the
 * database clock, body well-formed -- then finds the member's account, the
 * secret in the user mapping of the role that owns it, and compares the
 * signature in constant time.  Only then is the event queued, once per
 * trace_id: WHOOP retries and duplicates deliveries.
 *
 * Every refusal has its own SQLSTATE (README, "Webhooks"), stores nothing,
 * and keeps the statement out of the server log.  A mismatch never says
 * which part of the signature was wrong.  The secret and the computed
 * signature are never shown and are wiped once compared.  The HMAC is
 * PostgreSQL's own (common/hmac.h, in the server binary): no new crypto
 * library.  The SQL function is SECURITY DEFINER, so the role the receiver
 * logs in as needs no right but EXECUTE.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "whoop_fdw.h"

#include "catalog/pg_type.h"
#include "common/base64.h"
#include "common/hmac.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

/* the replay window, both ways: older is a replay, newer a skewed clock */
#define WEBHOOK_WINDOW_MS (300 * 1000)

/* base64 of a 32-byte HMAC-SHA256, with padding */
#define SIGNATURE_LENGTH 44

PG_FUNCTION_INFO_V1(whoop_receive_webhook);

static void hide_statement(void *arg);
static bool signature_matches(const char *secret, const char *stamp,
							  const char *body, size_t body_len,
							  const char *signature);
static bool enqueue(const char *server_name, const WhoopWebhookEvent *event,
					TimestampTz signed_at);

/*
 * hide_statement keeps the statement -- its parameters are a signature
 * and a body -- out of the server log, and names what failed.
 */
static void
hide_statement(void *arg)
{
	errhidestmt(true);
	errcontext("receiving a WHOOP webhook for server \"%s\"", (const char *) arg);
}

/*
 * signature_matches computes base64(HMAC-SHA256(secret, stamp || body))
 * and compares it with SIGNATURE in time that does not depend on where
 * they differ.
 */
static bool
signature_matches(const char *secret, const char *stamp, const char *body,
				  size_t body_len, const char *signature)
{
	pg_hmac_ctx *ctx = pg_hmac_create(PG_SHA256);
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	char		expected[SIGNATURE_LENGTH + 1];
	int			encoded;
	volatile unsigned char difference = 0;

	if (ctx == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	if (pg_hmac_init(ctx, (const uint8 *) secret, strlen(secret)) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) stamp, strlen(stamp)) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) body, body_len) < 0 ||
		pg_hmac_final(ctx, digest, sizeof(digest)) < 0)
	{
		char	   *why = pstrdup(pg_hmac_error(ctx));

		pg_hmac_free(ctx);
		elog(ERROR, "could not compute the webhook signature: %s", why);
	}
	pg_hmac_free(ctx);

	/* the source is char in 15-17 and uint8 in 18: pass it untyped */
	encoded = pg_b64_encode((const void *) digest, sizeof(digest), expected,
							SIGNATURE_LENGTH);
	explicit_bzero(digest, sizeof(digest));
	if (encoded != SIGNATURE_LENGTH)
		elog(ERROR, "could not encode the webhook signature");

	/* the length is public (always 44); the bytes are compared in full */
	if (strlen(signature) != SIGNATURE_LENGTH)
		difference = 1;
	else
	{
		for (int i = 0; i < SIGNATURE_LENGTH; i++)
			difference |= (unsigned char) (expected[i] ^ signature[i]);
	}
	explicit_bzero(expected, sizeof(expected));
	return difference == 0;
}

/*
 * enqueue inserts the event into the queue unless its trace_id is there
 * already; returns whether it did.
 */
static bool
enqueue(const char *server_name, const WhoopWebhookEvent *event,
		TimestampTz signed_at)
{
	static const char sql[] =
		"insert into " WHOOP_WEBHOOK_QUEUE_RELATION
		" (server_name, trace_id, user_id, event_type, record_id, signed_at) "
		"values ($1, $2, $3, $4, $5, $6) "
		"on conflict (server_name, trace_id) do nothing "
		"returning id";
	Oid			types[6] = {NAMEOID, TEXTOID, INT8OID, TEXTOID, UUIDOID, TIMESTAMPTZOID};
	Datum		values[6];
	NameData	server;
	bool		inserted;
	int			rc;

	namestrcpy(&server, server_name);
	values[0] = NameGetDatum(&server);
	values[1] = CStringGetTextDatum(event->trace_id);
	values[2] = Int64GetDatum(event->user_id);
	values[3] = CStringGetTextDatum(event->type);
	values[4] = DirectFunctionCall1(uuid_in, CStringGetDatum(event->record_id));
	values[5] = TimestampTzGetDatum(signed_at);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	rc = SPI_execute_with_args(sql, 6, types, values, NULL, false, 0);
	if (rc != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "queueing the WHOOP webhook failed: %s", SPI_result_code_string(rc));
	inserted = (SPI_processed == 1);
	SPI_finish();
	return inserted;
}

/*
 * whoop_receive_webhook checks one webhook delivery and queues its event;
 * returns 'queued', or 'duplicate' for a trace_id already queued.
 */
Datum
whoop_receive_webhook(PG_FUNCTION_ARGS)
{
	char	   *server_name;
	char	   *signature;
	char	   *stamp;
	bytea	   *body;
	const char *body_data;
	size_t		body_len;
	int64		stamp_ms;
	int64		now_ms;
	WhoopWebhookEvent event;
	WhoopServer *server;
	WhoopStoredAccount account;
	WhoopClient *client;
	bool		matches;
	bool		queued;
	ErrorContextCallback callback;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("server and body must not be null")));
	server_name = NameStr(*PG_GETARG_NAME(0));

	callback.callback = hide_statement;
	callback.arg = server_name;
	callback.previous = error_context_stack;
	error_context_stack = &callback;

	signature = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	stamp = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	body = PG_GETARG_BYTEA_PP(3);
	body_data = VARDATA_ANY(body);
	body_len = VARSIZE_ANY_EXHDR(body);

	if (signature == NULL || signature[0] == '\0' || stamp == NULL || stamp[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("WHOOP webhook is not signed"),
				 errdetail("Both X-WHOOP-Signature and X-WHOOP-Signature-Timestamp are required."),
				 errhint("Only requests WHOOP signed are accepted.")));

	if (!whoop_webhook_parse_timestamp(stamp, strlen(stamp), &stamp_ms))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_DATETIME_FORMAT),
				 errmsg("invalid WHOOP webhook timestamp"),
				 errdetail("X-WHOOP-Signature-Timestamp must be milliseconds since 1970-01-01 UTC in decimal digits."),
				 errhint("Only requests WHOOP signed are accepted.")));
	now_ms = (GetCurrentTimestamp() +
			  (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY) / 1000;
	if (stamp_ms < now_ms - WEBHOOK_WINDOW_MS || stamp_ms > now_ms + WEBHOOK_WINDOW_MS)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_FIELD_OVERFLOW),
				 errmsg("WHOOP webhook timestamp is outside the accepted window"),
				 errdetail("The timestamp is " INT64_FORMAT " seconds from the database server's clock; at most %d are accepted either way.",
						   (stamp_ms - now_ms) / 1000, WEBHOOK_WINDOW_MS / 1000),
				 errhint("A replayed or long-delayed request is refused; if WHOOP's fresh deliveries are refused too, check the database server's clock.")));

	whoop_webhook_parse(body_data, body_len, &event);

	server = whoop_get_server_by_name(server_name, false);
	whoop_store_read(server->server_name, event.user_id, &account);
	if (!account.found)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("WHOOP member " INT64_FORMAT " is not linked to server \"%s\"",
						event.user_id, server->server_name),
				 errhint("Events are accepted for the members linked with " WHOOP_SQL_CONNECT_ACCOUNT " or " WHOOP_SQL_ADD_ACCOUNT "; see " WHOOP_SQL_ACCOUNTS ".")));

	client = whoop_get_client(server->serverid, account.owner);
	matches = signature_matches(client->client_secret, stamp, body_data, body_len,
								signature);
	explicit_bzero(client->client_secret, strlen(client->client_secret));
	if (!matches)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PASSWORD),
				 errmsg("WHOOP webhook signature does not match"),
				 errhint("The request was not signed with the client secret of the user mapping that owns member " INT64_FORMAT "'s account on this server, or it was altered; after rotating the secret at WHOOP, update the user mapping.",
						 event.user_id)));

	queued = enqueue(server->server_name, &event,
					 stamp_ms * 1000 - (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY);

	error_context_stack = callback.previous;
	PG_RETURN_TEXT_P(cstring_to_text(queued ? "queued" : "duplicate"));
}
