/*-------------------------------------------------------------------------
 *
 * account.c
 *		  SQL functions that link WHOOP accounts to a server:
 *		  whoop.authorize_url, whoop.connect_account, whoop.add_account and
 *		  whoop.disconnect_account.
 *
 * A server is one WHOOP app (OAuth client, from the caller's user
 * mapping); each linked member is an account with its own tokens, owned by
 * the role that linked it.  Tokens obtained here are saved through the
 * same hand-off to the autonomous writer as refreshed ones
 * (whoop_oauth_grant), before the function returns.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "whoop_fdw.h"

#include "access/xact.h"
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

#define STATE_LENGTH 8

static void hide_statement(void *arg);
static WhoopProfile *fetch_profile(const WhoopServer *server, const char *access_token);
static void check_relink(const WhoopServer *server, int64 user_id);
static WhoopProfile *identify_member(const WhoopServer *server,
									 const WhoopTokens *tokens, void *arg);
static int64 link_account(const char *server_name, const char *grant_type,
						  const char *grant_field, const char *grant_value,
						  const char *redirect_uri, const char *what,
						  const char *hint);

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

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("server and redirect_uri must not be null")));
	server = whoop_get_server_by_name(NameStr(*PG_GETARG_NAME(0)), true);
	client = whoop_get_client(server->serverid, GetUserId());
	redirect_uri = text_to_cstring(PG_GETARG_TEXT_PP(1));

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
 * reason (also a misspelt server or a missing user mapping).
 */
static void
hide_statement(void *arg)
{
	errhidestmt(true);
	errcontext("linking a WHOOP account to server \"%s\"", (const char *) arg);
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
 * link_account sends a token request (code exchange or refresh) with the
 * caller's client credentials for SERVER_NAME, learns the member's user_id
 * from the profile and durably saves the tokens.  Every error from the
 * start, server lookup included, hides the statement.
 */
static int64
link_account(const char *server_name, const char *grant_type,
			 const char *grant_field, const char *grant_value,
			 const char *redirect_uri, const char *what, const char *hint)
{
	WhoopServer *server;
	WhoopClient *client;
	WhoopGrant	grant = {0};
	ErrorContextCallback callback;

	callback.callback = hide_statement;
	callback.arg = (void *) server_name;
	callback.previous = error_context_stack;
	error_context_stack = &callback;

	server = whoop_get_server_by_name(server_name, true);
	client = whoop_get_client(server->serverid, GetUserId());
	grant.form = whoop_oauth_form(client, grant_type, grant_field, grant_value,
								  redirect_uri);
	grant.owner = GetUserId();
	grant.identify = identify_member;
	if (whoop_oauth_grant(server, &grant) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("WHOOP refused the %s", what),
				 errdetail("%s", grant.rejection),
				 errhint("%s", hint)));

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
	PG_RETURN_INT64(link_account(NameStr(*PG_GETARG_NAME(0)),
								 "authorization_code", "code",
								 text_to_cstring(PG_GETARG_TEXT_PP(1)),
								 text_to_cstring(PG_GETARG_TEXT_PP(2)),
								 "authorization code",
								 "Codes are single-use and short-lived, and redirect_uri must be the one given to " WHOOP_SQL_AUTHORIZE_URL "; authorize again."));
}

/*
 * whoop_add_account links an account from an existing refresh token (which
 * WHOOP rotates at once) and returns the member's user_id.
 */
Datum
whoop_add_account(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(link_account(NameStr(*PG_GETARG_NAME(0)),
								 "refresh_token", "refresh_token",
								 text_to_cstring(PG_GETARG_TEXT_PP(1)), NULL,
								 "refresh token",
								 "Refresh tokens are single-use: a token that was already used (or issued to another app) cannot link an account."));
}

/*
 * whoop_disconnect_account revokes the account's access at WHOOP and
 * forgets its tokens.  Returns whether WHOOP confirmed the revocation (it
 * does not when the tokens were already dead; the account is forgotten
 * either way).
 */
Datum
whoop_disconnect_account(PG_FUNCTION_ARGS)
{
	WhoopServer *server = whoop_get_server_by_name(NameStr(*PG_GETARG_NAME(0)), true);
	int64		user_id = PG_GETARG_INT64(1);
	WhoopStoredAccount account;
	bool		revoked = false;
	char	   *volatile token = NULL;
	MemoryContext caller = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;

	whoop_store_read(server->server_name, user_id, &account);
	if (!account.found || !has_privs_of_role(GetUserId(), account.owner))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("WHOOP account " INT64_FORMAT " is not linked to server \"%s\" for this role",
						user_id, server->server_name),
				 errhint("See " WHOOP_SQL_ACCOUNTS " for the accounts you may use.")));

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

	if (token != NULL)
		revoked = whoop_revoke(server, token);
	whoop_oauth_forget(server, user_id);
	PG_RETURN_BOOL(revoked);
}
