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

static void read_oauth_error(const char *body, size_t len, char **error,
							 char **description);

/*
 * whoop_oauth_text_valid says whether a token or code is a non-empty run of
 * VSCHAR (0x20-0x7E), as RFC 6749 defines codes and tokens.
 */
bool
whoop_oauth_text_valid(const char *token, int len)
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
	if (!whoop_oauth_text_valid(value.s, value.len))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_STRING_FORMAT),
				 errmsg("WHOOP token answer has an invalid access_token"),
				 errdetail("A token must consist of printable ASCII characters.")));
	tokens->access_token = pnstrdup(value.s, value.len);
	whoop_json_field(doc, 0, "refresh_token", &value);
	if (value.kind == WHOOP_JSON_STRING && value.len > 0)
	{
		if (!whoop_oauth_text_valid(value.s, value.len))
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
 * read_oauth_error reads the OAuth error and error_description fields of a
 * refused token request, made printable and cut short; either is NULL when
 * absent, both when the body is not JSON.  It raises no error.
 */
static void
read_oauth_error(const char *body, size_t len, char **error, char **description)
{
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext parse_context = AllocSetContextCreate(caller,
														"whoop_fdw oauth error",
														ALLOCSET_SMALL_SIZES);

	*error = NULL;
	*description = NULL;
	MemoryContextSwitchTo(parse_context);
	PG_TRY();
	{
		WhoopJsonDoc *doc = whoop_json_parse(body, len, parse_context,
											 "the token endpoint");
		WhoopJsonValue value;

		MemoryContextSwitchTo(caller);
		whoop_json_field(doc, 0, "error", &value);
		if (value.kind == WHOOP_JSON_STRING)
			*error = whoop_body_excerpt(value.s, value.len);
		whoop_json_field(doc, 0, "error_description", &value);
		if (value.kind == WHOOP_JSON_STRING)
			*description = whoop_body_excerpt(value.s, value.len);
	}
	PG_CATCH();
	{
		/* not JSON: neither field */
		MemoryContextSwitchTo(caller);
		FlushErrorState();
	}
	PG_END_TRY();
	MemoryContextDelete(parse_context);
}

/*
 * whoop_oauth_rejection summarizes a refused token request (HTTP STATUS,
 * BODY) from its OAuth error and error_description fields, made printable
 * and cut short; a body that is not JSON yields the status alone.
 */
char *
whoop_oauth_rejection(long status, const char *body, size_t len)
{
	char	   *error;
	char	   *description;

	read_oauth_error(body, len, &error, &description);
	return psprintf("The token endpoint answered HTTP %ld%s%s%s%s.",
					status,
					error ? ": " : "", error ? error : "",
					description ? " -- " : "", description ? description : "");
}

/*
 * whoop_oauth_refusal says whom a refused token request (HTTP STATUS, BODY)
 * blames: the grant itself (invalid_grant: a spent, revoked or unknown code
 * or refresh token), the app's credentials (invalid_client,
 * unauthorized_client), something else, or nobody in OAuth terms.  A token
 * endpoint refuses with 400, or 401 for the client (RFC 6749, 5.2), and an
 * OAuth error field; any other status, or a body without one -- a web page,
 * a 404 -- is not from a token endpoint.
 */
WhoopRefusal
whoop_oauth_refusal(long status, const char *body, size_t len)
{
	char	   *error;
	char	   *description;

	if (status != 400 && status != 401)
		return WHOOP_REFUSED_NOT_OAUTH;
	read_oauth_error(body, len, &error, &description);
	if (error == NULL)
		return WHOOP_REFUSED_NOT_OAUTH;
	if (strcmp(error, "invalid_grant") == 0)
		return WHOOP_REFUSED_GRANT;
	if (strcmp(error, "invalid_client") == 0 || strcmp(error, "unauthorized_client") == 0)
		return WHOOP_REFUSED_CLIENT;
	return WHOOP_REFUSED_OTHER;
}
