/*-------------------------------------------------------------------------
 *
 * account.c
 *		  SQL functions that link WHOOP accounts to a server:
 *		  whoop.authorize_url, whoop.connect_account, whoop.add_account,
 *		  whoop.disconnect_account and whoop.claim_accounts.
 *
 * A server is one WHOOP app (OAuth client, from the caller's user
 * mapping); each linked member is an account with its own tokens, owned by
 * the role that linked it.  Tokens obtained here are saved through the
 * same hand-off to the autonomous writer as refreshed ones
 * (whoop_oauth_grant), before the function returns.
 *
 * Codes and refresh tokens are single-use, so nothing WHOOP would refuse
 * anyway is sent: NULL and empty arguments, text that cannot be a token, a
 * redirect URI that is not absolute https (or http to a loopback host),
 * and an api_url that does not answer like the WHOOP API are refused
 * before the token request.  Arguments are never NULL-tolerant: a NULL is
 * an error naming the argument, not a NULL result.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "whoop_fdw.h"

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "port.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

PG_FUNCTION_INFO_V1(whoop_authorize_url);
PG_FUNCTION_INFO_V1(whoop_connect_account);
PG_FUNCTION_INFO_V1(whoop_add_account);
PG_FUNCTION_INFO_V1(whoop_disconnect_account);
PG_FUNCTION_INFO_V1(whoop_claim_accounts);

#define STATE_LENGTH 8

#define SERVER_NULL_HINT "Name a foreign server of the whoop_fdw wrapper."

/* How one of the linking functions reads its arguments and its refusals. */
typedef struct LinkKind
{
	const char *grant_type;
	const char *grant_field;	/* form field of the grant: code, refresh_token */
	const char *what;			/* "authorization code", "refresh token" */
	const char *value_hint;		/* for a NULL or empty grant */
	bool		takes_redirect_uri; /* argument 2 */
	const char *refused_hint;	/* after invalid_grant */
} LinkKind;

static const LinkKind link_by_code = {
	.grant_type = "authorization_code",
	.grant_field = "code",
	.what = "authorization code",
	.value_hint = "Pass the code parameter WHOOP added to the redirect after the member authorized the app (see " WHOOP_SQL_AUTHORIZE_URL ").",
	.takes_redirect_uri = true,
	.refused_hint = "Codes are single-use and short-lived, and redirect_uri must be the one given to " WHOOP_SQL_AUTHORIZE_URL "; authorize again.",
};

static const LinkKind link_by_refresh_token = {
	.grant_type = "refresh_token",
	.grant_field = "refresh_token",
	.what = "refresh token",
	.value_hint = "Pass a refresh token WHOOP issued to this server's app, or link with " WHOOP_SQL_CONNECT_ACCOUNT " instead.",
	.takes_redirect_uri = false,
	.refused_hint = "Refresh tokens are single-use: a token that was already used (or issued to another app) cannot link an account.",
};

static void check_not_null(FunctionCallInfo fcinfo, int argno, const char *name,
						   const char *hint);
static void check_redirect_uri(const char *redirect_uri);
static void check_grant_value(const char *value, const LinkKind *kind);
static void hide_statement(void *arg);
static WhoopProfile *fetch_profile(const WhoopServer *server, const char *access_token);
static void check_relink(const WhoopServer *server, int64 user_id);
static WhoopProfile *identify_member(const WhoopServer *server,
									 const WhoopTokens *tokens, void *arg);
static int64 link_account(FunctionCallInfo fcinfo, const LinkKind *kind);

/*
 * check_not_null raises the error for a NULL argument: a linking function
 * has nothing sensible to return for one, and a NULL result would pass
 * unnoticed.
 */
static void
check_not_null(FunctionCallInfo fcinfo, int argno, const char *name, const char *hint)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name),
				 errhint("%s", hint)));
}

/*
 * check_redirect_uri refuses a redirect URI WHOOP could not send a member's
 * browser back to with a code: anything but an absolute https URL, or an
 * http URL of a loopback host for local testing.
 */
static void
check_redirect_uri(const char *redirect_uri)
{
	const char *why;

	if (!whoop_http_url_acceptable(redirect_uri, true, &why))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid redirect_uri: \"%s\"", redirect_uri),
				 errdetail("%s", why),
				 errhint("Use the https:// URL registered for the WHOOP app, or an http:// URL of a loopback host (127.0.0.1, ::1, localhost) while testing.")));
}

/*
 * check_grant_value refuses a code or refresh token that cannot be one: an
 * empty string, or text that is not a run of printable ASCII characters
 * (RFC 6749's VSCHAR), such as one pasted with a line break.  The value
 * itself is never shown.
 */
static void
check_grant_value(const char *value, const LinkKind *kind)
{
	if (value[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", kind->what),
				 errhint("%s", kind->value_hint)));
	if (!whoop_oauth_text_valid(value, (int) strlen(value)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid %s", kind->what),
				 errdetail("OAuth codes and tokens consist of printable ASCII characters; this one has a line break, another control character or a non-ASCII character."),
				 errhint("Copy it again, without what surrounds it.")));
}

/*
 * whoop_authorize_url returns the URL a member opens to authorize the
 * server's app.  The state defaults to 8 random characters, the length
 * WHOOP's documentation asks for.
 */
Datum
whoop_authorize_url(PG_FUNCTION_ARGS)
{
	WhoopServer *server;
	WhoopClient *client;
	char	   *redirect_uri;
	char	   *state;

	check_not_null(fcinfo, 0, "server", SERVER_NULL_HINT);
	check_not_null(fcinfo, 1, "redirect_uri",
				   "Pass the URL WHOOP is to send the member back to, as registered for the app.");
	redirect_uri = text_to_cstring(PG_GETARG_TEXT_PP(1));
	check_redirect_uri(redirect_uri);
	server = whoop_get_server_by_name(NameStr(*PG_GETARG_NAME(0)), true);
	client = whoop_get_client(server->serverid, GetUserId());

	if (!PG_ARGISNULL(2))
	{
		state = text_to_cstring(PG_GETARG_TEXT_PP(2));
		if (strlen(state) != STATE_LENGTH)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("state must be exactly %d characters long", STATE_LENGTH),
					 errhint("WHOOP requires an 8-character state; omit it to get a random one.")));
	}
	else
	{
		static const char alphabet[] =
			"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
		unsigned char random_bytes[STATE_LENGTH];

		state = palloc(STATE_LENGTH + 1);
		if (!pg_strong_random(random_bytes, sizeof(random_bytes)))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate a random state")));
		for (int i = 0; i < STATE_LENGTH; i++)
			state[i] = alphabet[random_bytes[i] % (sizeof(alphabet) - 1)];
		state[STATE_LENGTH] = '\0';
	}

	PG_RETURN_TEXT_P(cstring_to_text(psprintf("%s/auth?response_type=code&client_id=%s&redirect_uri=%s&scope=%s&state=%s",
											  server->oauth_url,
											  whoop_http_escape(client->client_id),
											  whoop_http_escape(redirect_uri),
											  whoop_http_escape(WHOOP_SCOPES),
											  whoop_http_escape(state))));
}

/*
 * hide_statement keeps the statement text -- which carries a code or a
 * refresh token -- out of the server log when linking fails, whatever the
 * reason (also a misspelt server, a missing user mapping or a NULL).
 */
static void
hide_statement(void *arg)
{
	errhidestmt(true);
	if (arg != NULL)
		errcontext("linking a WHOOP account to server \"%s\"", (const char *) arg);
	else
		errcontext("linking a WHOOP account");
}

/*
 * fetch_profile reads the member's basic profile with a fresh access token,
 * to learn who authorized.
 */
static WhoopProfile *
fetch_profile(const WhoopServer *server, const char *access_token)
{
	WhoopFetchStats stats = {0};
	WhoopJsonDoc *doc = whoop_fetch(server, 0, access_token, "/v2/user/profile/basic",
									false, CurrentMemoryContext, &stats);
	WhoopProfile *profile = palloc0(sizeof(WhoopProfile));
	WhoopJsonValue value;

	whoop_json_field(doc, 0, "user_id", &value);
	if (value.kind != WHOOP_JSON_INT)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
				 errmsg("WHOOP profile lacks a numeric user_id")));
	profile->user_id = value.i;
	whoop_json_field(doc, 0, "email", &value);
	profile->email = whoop_json_value_text(&value);
	whoop_json_field(doc, 0, "first_name", &value);
	profile->first_name = whoop_json_value_text(&value);
	whoop_json_field(doc, 0, "last_name", &value);
	profile->last_name = whoop_json_value_text(&value);
	return profile;
}

/*
 * check_relink refuses to take over an account that another role (one the
 * caller has no rights over) has linked.
 */
static void
check_relink(const WhoopServer *server, int64 user_id)
{
	WhoopStoredAccount existing;

	whoop_store_read(server->server_name, user_id, &existing);
	if (existing.found && !has_privs_of_role(GetUserId(), existing.owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("WHOOP account " INT64_FORMAT " is already linked to server \"%s\" by another role",
						user_id, server->server_name),
				 errhint("That role can disconnect it with " WHOOP_SQL_DISCONNECT_ACCOUNT " first.")));
}

/*
 * identify_member learns whose tokens were granted, before they are saved:
 * the member's profile, read with the new access token; a member another
 * role has linked is refused.
 */
static WhoopProfile *
identify_member(const WhoopServer *server, const WhoopTokens *tokens, void *arg)
{
	WhoopProfile *profile;

	if (tokens->refresh_token == NULL)
		ereport(WARNING,
				(errmsg("WHOOP granted no refresh token"),
				 errdetail("Without one the account stops working when the access token expires."),
				 errhint("Authorize with the \"offline\" scope, which " WHOOP_SQL_AUTHORIZE_URL " requests.")));
	profile = fetch_profile(server, tokens->access_token);
	check_relink(server, profile->user_id);
	return profile;
}

/*
 * link_account sends a token request (code exchange or refresh) of KIND
 * with the caller's client credentials for the server named by the first
 * argument, learns the member's user_id from the profile and durably saves
 * the tokens.  Every error from the start, the arguments' included, hides
 * the statement; nothing is sent to the token endpoint before the
 * arguments and the server's api_url have been found usable.
 */
static int64
link_account(FunctionCallInfo fcinfo, const LinkKind *kind)
{
	WhoopServer *server;
	WhoopClient *client;
	WhoopGrant	grant = {0};
	ErrorContextCallback callback;
	char	   *server_name;
	char	   *value;
	char	   *redirect_uri = NULL;

	callback.callback = hide_statement;
	callback.arg = NULL;
	callback.previous = error_context_stack;
	error_context_stack = &callback;

	check_not_null(fcinfo, 0, "server", SERVER_NULL_HINT);
	server_name = NameStr(*PG_GETARG_NAME(0));
	callback.arg = server_name;
	check_not_null(fcinfo, 1, kind->grant_field, kind->value_hint);
	value = text_to_cstring(PG_GETARG_TEXT_PP(1));
	check_grant_value(value, kind);
	if (kind->takes_redirect_uri)
	{
		check_not_null(fcinfo, 2, "redirect_uri",
					   "Pass the redirect_uri given to " WHOOP_SQL_AUTHORIZE_URL ".");
		redirect_uri = text_to_cstring(PG_GETARG_TEXT_PP(2));
		check_redirect_uri(redirect_uri);
	}

	server = whoop_get_server_by_name(server_name, true);
	client = whoop_get_client(server->serverid, GetUserId());
	whoop_check_api_url(server);
	grant.form = whoop_oauth_form(client, kind->grant_type, kind->grant_field, value,
								  redirect_uri);
	memset(value, 0, strlen(value));
	grant.owner = GetUserId();
	grant.identify = identify_member;
	if (whoop_oauth_grant(server, &grant) == NULL)
	{
		if (grant.refusal == WHOOP_REFUSED_CLIENT)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
					 errmsg("WHOOP refused the app's credentials"),
					 errdetail("%s", grant.rejection),
					 errhint("Check client_id and client_secret in your user mapping for server \"%s\" (ALTER USER MAPPING FOR CURRENT_USER SERVER %s OPTIONS (SET client_secret '...')); WHOOP looks at the %s only once they are right.",
							 server->server_name, quote_identifier(server->server_name),
							 kind->what)));
		if (grant.refusal == WHOOP_REFUSED_NOT_OAUTH)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_ERROR),
					 errmsg("WHOOP token endpoint of server \"%s\" gave no OAuth answer",
							server->server_name),
					 errdetail("%s", grant.rejection),
					 errhint("Check the server's oauth_url (by default https://api.prod.whoop.com/oauth/oauth2).")));
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("WHOOP refused the %s", kind->what),
				 errdetail("%s", grant.rejection),
				 errhint("%s", kind->refused_hint)));
	}

	error_context_stack = callback.previous;
	return grant.user_id;
}

/*
 * whoop_connect_account exchanges an authorization code for tokens and
 * returns the member's user_id.
 */
Datum
whoop_connect_account(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(link_account(fcinfo, &link_by_code));
}

/*
 * whoop_add_account links an account from an existing refresh token (which
 * WHOOP rotates at once) and returns the member's user_id.
 */
Datum
whoop_add_account(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(link_account(fcinfo, &link_by_refresh_token));
}

/*
 * whoop_disconnect_account revokes the account's access at WHOOP and
 * forgets its tokens.  Returns whether WHOOP confirmed the revocation (it
 * does not when the tokens were already dead; the account is forgotten
 * either way).  An account that belongs to another database (this one is
 * a restored copy) is only forgotten here: revoking it would cut off the
 * original.
 */
Datum
whoop_disconnect_account(PG_FUNCTION_ARGS)
{
	WhoopServer *server;
	int64		user_id;
	WhoopStoredAccount account;
	bool		revoked;
	char	   *volatile token = NULL;
	MemoryContext caller = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;

	check_not_null(fcinfo, 0, "server", SERVER_NULL_HINT);
	check_not_null(fcinfo, 1, "user_id",
				   "See " WHOOP_SQL_ACCOUNTS " for the accounts linked to the server.");
	server = whoop_get_server_by_name(NameStr(*PG_GETARG_NAME(0)), true);
	user_id = PG_GETARG_INT64(1);
	whoop_store_read(server->server_name, user_id, &account);
	if (!account.found || !has_privs_of_role(GetUserId(), account.owner))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("WHOOP account " INT64_FORMAT " is not linked to server \"%s\" for this role",
						user_id, server->server_name),
				 errhint("See " WHOOP_SQL_ACCOUNTS " for the accounts you may use.")));

	if (!account.at_home)
	{
		ereport(WARNING,
				(errmsg("WHOOP access of account " INT64_FORMAT " was not revoked", user_id),
				 errdetail("The account's tokens belong to database \"%s\" of the cluster with system identifier " UINT64_FORMAT ", which may still use them; the account is forgotten here only.",
						   account.home_database, (uint64) account.home_system_identifier)));
		whoop_oauth_forget(server, user_id);
		PG_RETURN_BOOL(false);
	}

	/*
	 * A dead refresh token must not prevent forgetting the account: get the
	 * token in a subtransaction and carry on with a warning if WHOOP refuses.
	 */
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(caller);
	PG_TRY();
	{
		token = whoop_access_token(server, user_id, NULL);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(caller);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(caller);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(caller);
		CurrentResourceOwner = owner;
		if (edata->sqlerrcode != ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION)
			ReThrowError(edata);
		ereport(WARNING,
				(errmsg("could not obtain an access token to revoke WHOOP access: %s",
						edata->message),
				 errdetail("The account is forgotten locally; WHOOP may still list the app as authorized.")));
	}
	PG_END_TRY();

	revoked = token != NULL && whoop_revoke(server, token);
	whoop_oauth_forget(server, user_id);
	PG_RETURN_BOOL(revoked);
}

/*
 * whoop_claim_accounts makes this database the home of every account whose
 * tokens another database (or cluster) stored -- a restored copy's -- so
 * that this one may use them, and returns how many it claimed.  Only the
 * extension owner may call it (99_grants.sql).
 */
Datum
whoop_claim_accounts(PG_FUNCTION_ARGS)
{
	int64		claimed = whoop_store_claim();
	char	   *database = get_database_name(MyDatabaseId);

	if (claimed == 0)
		ereport(NOTICE,
				(errmsg("no WHOOP account to claim: every account belongs to database \"%s\" already",
						database)));
	else
		ereport(NOTICE,
				(errmsg_plural("claimed " INT64_FORMAT " WHOOP account for database \"%s\"",
							   "claimed " INT64_FORMAT " WHOOP accounts for database \"%s\"",
							   claimed, claimed, database),
				 errdetail("The database they were copied from must stop syncing them now: the first refresh here rotates their tokens, and WHOOP honours only the newest."),
				 errhint("Stop the pipeline there (SELECT whoop.unschedule();); to remove the accounts there, drop its server: " WHOOP_SQL_DISCONNECT_ACCOUNT " would revoke the members for this database too.")));
	PG_RETURN_INT64(claimed);
}
