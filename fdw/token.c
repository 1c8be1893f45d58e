/*-------------------------------------------------------------------------
 *
 * token.c
 *		  The answers of WHOOP's OAuth token endpoint: the token set of a
 *		  granted request and the summary of a refused one.
 *
 * These read what the token endpoint (or anything answering in its place)
 * sends, so they are kept apart from oauth.c, which talks HTTP and to the
 * token store: this file uses only the JSON layer, and the fuzz targets in
 * test/fuzz/ link it as it is.  A refusal is summarized from its OAuth
 * error fields only; the body is never echoed, since token answers may
 * carry secrets.  Tokens must be visible ASCII (RFC 6749's VSCHAR): they
 * are sent in an Authorization header, where a CR or LF would end it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "whoop_fdw.h"

#include "utils/memutils.h"

static bool token_text_valid(const char *token, int len);

/*
 * token_text_valid says whether a token is a non-empty run of VSCHAR
 * (0x20-0x7E), as RFC 6749 defines access and refresh tokens.
 */
static bool
token_text_valid(const char *token, int len)
{
	if (len <= 0)
		return false;
	for (int i = 0; i < len; i++)
	{
		if ((unsigned char) token[i] < 0x20 || (unsigned char) token[i] > 0x7e)
			return false;
	}
	return true;
}

/*
 * whoop_oauth_parse_tokens reads the token set of a granted token request.
 * An answer that is not a JSON object, lacks an access_token or has a token
 * that is not visible ASCII raises an error; an empty refresh_token counts
 * as none, a missing or unusable expires_in as WHOOP's usual hour.
 */
WhoopTokens *
whoop_oauth_parse_tokens(const char *body, size_t len)
{
	MemoryContext parse_context = AllocSetContextCreate(CurrentMemoryContext,
														"whoop_fdw token answer",
														ALLOCSET_SMALL_SIZES);
	WhoopJsonDoc *doc = whoop_json_parse(body, len, parse_context,
										 "the token endpoint");
	WhoopTokens *tokens = palloc0(sizeof(WhoopTokens));
	WhoopJsonValue value;

	whoop_json_field(doc, 0, "access_token", &value);
	if (value.kind != WHOOP_JSON_STRING || value.len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_STRING_FORMAT),
				 errmsg("WHOOP token answer lacks an access_token")));
	if (!token_text_valid(value.s, value.len))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_STRING_FORMAT),
				 errmsg("WHOOP token answer has an invalid access_token"),
				 errdetail("A token must consist of printable ASCII characters.")));
	tokens->access_token = pnstrdup(value.s, value.len);
	whoop_json_field(doc, 0, "refresh_token", &value);
	if (value.kind == WHOOP_JSON_STRING && value.len > 0)
	{
		if (!token_text_valid(value.s, value.len))
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_STRING_FORMAT),
					 errmsg("WHOOP token answer has an invalid refresh_token"),
					 errdetail("A token must consist of printable ASCII characters.")));
		tokens->refresh_token = pnstrdup(value.s, value.len);
	}
	whoop_json_field(doc, 0, "scope", &value);
	if (value.kind == WHOOP_JSON_STRING)
		tokens->scope = pnstrdup(value.s, value.len);
	whoop_json_field(doc, 0, "expires_in", &value);
	tokens->expires_in = (value.kind == WHOOP_JSON_INT && value.i > 0 && value.i < PG_INT32_MAX)
		? (int) value.i : 3600;

	MemoryContextDelete(parse_context);
	return tokens;
}

/*
 * whoop_oauth_rejection summarizes a refused token request (HTTP STATUS,
 * BODY) from its OAuth error and error_description fields, made printable
 * and cut short; a body that is not JSON yields the status alone.
 */
char *
whoop_oauth_rejection(long status, const char *body, size_t len)
{
	MemoryContext parse_context = AllocSetContextCreate(CurrentMemoryContext,
														"whoop_fdw oauth error",
														ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(parse_context);
	char	   *error = NULL;
	char	   *description = NULL;
	char	   *result;

	PG_TRY();
	{
		WhoopJsonDoc *doc = whoop_json_parse(body, len, parse_context,
											 "the token endpoint");
		WhoopJsonValue value;

		whoop_json_field(doc, 0, "error", &value);
		if (value.kind == WHOOP_JSON_STRING)
			error = whoop_body_excerpt(value.s, value.len);
		whoop_json_field(doc, 0, "error_description", &value);
		if (value.kind == WHOOP_JSON_STRING)
			description = whoop_body_excerpt(value.s, value.len);
	}
	PG_CATCH();
	{
		/* not JSON: say only the status */
		FlushErrorState();
	}
	PG_END_TRY();

	MemoryContextSwitchTo(old);
	result = psprintf("The token endpoint answered HTTP %ld%s%s%s%s.",
					  status,
					  error ? ": " : "", error ? error : "",
					  description ? " -- " : "", description ? description : "");
	MemoryContextDelete(parse_context);
	return result;
}
