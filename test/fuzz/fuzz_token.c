/*-------------------------------------------------------------------------
 *
 * fuzz_token.c
 *		  Fuzz target: the answers of the OAuth token endpoint (token.c).
 *
 * The input is a token endpoint's response body.  It is read as a granted
 * request's token set (whoop_oauth_parse_tokens, which may raise an error)
 * and as a refused request's body (whoop_oauth_rejection, which must not:
 * it is called while an account is being marked as needing authorization).
 *
 * Invariants:
 *	- tokens are non-empty and made of visible ASCII (RFC 6749's VSCHAR):
 *	  they go into an Authorization header and are stored as text;
 *	- the scope is valid UTF-8, expires_in is positive;
 *	- a refusal summary is printable ASCII, short, and names the status.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "whoop_fdw.h"

#include "mb/pg_wchar.h"

#include "fuzz.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * check_token verifies that a token is a non-empty run of VSCHAR.
 */
static void
check_token(const char *token, const char *what)
{
	FUZZ_CHECK(token != NULL && token[0] != '\0', "empty %s accepted", what);
	for (const char *p = token; *p; p++)
		FUZZ_CHECK(*p >= 0x20 && *p <= 0x7e, "%s contains byte 0x%02x: \"%s\"", what,
				   (unsigned char) *p, token);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	MemoryContext input = fuzz_begin();
	char	   *rejection;
	static const char prefix[] = "The token endpoint answered HTTP 400";

	PG_TRY();
	{
		WhoopTokens *tokens = whoop_oauth_parse_tokens((const char *) data, size);

		check_token(tokens->access_token, "access_token");
		if (tokens->refresh_token != NULL)
			check_token(tokens->refresh_token, "refresh_token");
		if (tokens->scope != NULL)
		{
			int			len = (int) strlen(tokens->scope);

			FUZZ_CHECK(pg_encoding_verifymbstr(PG_UTF8, tokens->scope, len) == len,
					   "scope is not valid UTF-8");
		}
		FUZZ_CHECK(tokens->expires_in > 0, "expires_in %d", tokens->expires_in);
	}
	PG_CATCH();
	{
		FlushErrorState();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(input);

	/* outside PG_TRY: an ERROR here aborts */
	rejection = whoop_oauth_rejection(400, (const char *) data, size);
	FUZZ_CHECK(strncmp(rejection, prefix, sizeof(prefix) - 1) == 0, "rejection \"%s\"", rejection);
	FUZZ_CHECK(strlen(rejection) <= 512, "rejection of %zu bytes", strlen(rejection));
	for (const char *p = rejection; *p; p++)
		FUZZ_CHECK(*p >= 0x20 && *p < 0x7f, "rejection contains byte 0x%02x", (unsigned char) *p);

	fuzz_end(input);
	return 0;
}
