/*-------------------------------------------------------------------------
 *
 * oauth.c
 *		  OAuth for whoop_fdw: the token endpoint, the per-backend cache of
 *		  access tokens, and the serialized refresh.
 *
 * An access token is reused until shortly before it expires.  When it must
 * be refreshed, the backend takes the account's refresh lock, re-reads the
 * stored tokens (another session may have refreshed them while it waited:
 * then it simply uses the new access token), and only otherwise spends the
 * refresh token.  The rotated refresh token is saved by the autonomous
 * writer (token_writer.c) before the lock is released.
 *
 * Every token request whose answer must be kept -- a refresh, or linking
 * an account -- goes through whoop_oauth_grant, the one hand-off to the
 * writer: the writer is started before the request, so no token is
 * requested that could not be saved, and it is given the tokens (or the
 * refusal of a refresh) before anything else can fail.  The request itself
 * is sent by transport.c with interrupts held: a cancel arriving while
 * WHOOP is rotating the token would otherwise throw the new token away.
 * It is bounded by the server's timeout_ms.
 *
 * What no client can prevent: WHOOP rotates the token and its answer is
 * lost (a timeout after WHOOP accepted the request).  The retry with the
 * spent token is refused, the account is durably marked
 * reauthorization_required, and the message says that an earlier attempt
 * failed and its answer was probably lost.  The account must be linked
 * again; the next sync then resumes from its high-water marks.
 *
 * Only a refusal of the grant itself (invalid_grant) marks an account.  When
 * WHOOP refuses the app's credentials (a wrong client_secret in the user
 * mapping) or what answered is no token endpoint at all (a wrong
 * oauth_url), the refresh token was not looked at and stays good: the error
 * says what to fix, and the account works again once it is fixed.
 *
 * Tokens are handed out only at the account's home (see store.c): a
 * restored copy of the database refuses them until its accounts are
 * claimed there.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "whoop_fdw.h"

#include "access/xlog.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

/*
 * Refresh this long before WHOOP would reject the token: a minute, but no
 * more than a tenth of the token's lifetime, so that a short-lived token
 * (a test server's, or one WHOOP might issue) is still used many times.
 */
#define EXPIRY_MARGIN_US (60 * USECS_PER_SEC)
#define EXPIRY_MARGIN_FRACTION 10

typedef struct TokenCacheKey
{
	Oid			serverid;
	int64		user_id;
} TokenCacheKey;

typedef struct TokenCacheEntry
{
	TokenCacheKey key;
	char	   *access_token;	/* in TopMemoryContext, or NULL */
	TimestampTz expires_at;
	int64		margin_us;		/* refresh this long before expires_at */
	int64		token_version;
} TokenCacheEntry;

static HTAB *token_cache = NULL;

static TokenCacheEntry *cache_entry(const WhoopServer *server, int64 user_id);
static int64 expiry_margin(const WhoopStoredAccount *account);
static void cache_set(TokenCacheEntry *entry, const char *token,
					  TimestampTz expires_at, int64 margin_us, int64 version);
static bool token_usable(const WhoopStoredAccount *account, const char *rejected,
						 int64 margin_us);
static void check_account(const WhoopServer *server, const WhoopStoredAccount *account);
static char *refresh_locked(const WhoopServer *server, WhoopStoredAccount *account);
static void shorten_by_wait(WhoopTokens *tokens, TimestampTz sent);
static WhoopVerdict classify_token_answer(WhoopSend *send,
										  const WhoopHttpResponse *response);
static WhoopTokens *token_request(const WhoopServer *server, const char *form,
								  char **rejection, WhoopRefusal *refusal);

static const WhoopSendKind token_post = {
	.classify = classify_token_answer,
	.token_answer = true,
	.unreachable = "could not reach the WHOOP token endpoint",
	.unreachable_hint = "Check the server's oauth_url, the network, and timeout_ms.",
	.failing = "WHOOP token endpoint",
	.failing_hint = "WHOOP may be having trouble; try again later.",
};

/*
 * cache_entry finds or creates the cache entry of an account.
 */
static TokenCacheEntry *
cache_entry(const WhoopServer *server, int64 user_id)
{
	TokenCacheKey key;
	bool		found;
	TokenCacheEntry *entry;

	if (token_cache == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(TokenCacheKey);
		ctl.entrysize = sizeof(TokenCacheEntry);
		token_cache = hash_create("whoop_fdw access tokens", 16, &ctl,
								  HASH_ELEM | HASH_BLOBS);
	}
	memset(&key, 0, sizeof(key));
	key.serverid = server->serverid;
	key.user_id = user_id;
	entry = hash_search(token_cache, &key, HASH_ENTER, &found);
	if (!found)
	{
		entry->access_token = NULL;
		entry->expires_at = DT_NOBEGIN;
		entry->margin_us = EXPIRY_MARGIN_US;
		entry->token_version = -1;
	}
	return entry;
}

/*
 * expiry_margin returns how long before its expiry an account's stored
 * access token is refreshed.
 */
static int64
expiry_margin(const WhoopStoredAccount *account)
{
	if (account->access_lifetime_us <= 0)
		return EXPIRY_MARGIN_US;
	return Min(EXPIRY_MARGIN_US, account->access_lifetime_us / EXPIRY_MARGIN_FRACTION);
}

/*
 * cache_set replaces the cached access token of an entry, wiping the old
 * one.
 */
static void
cache_set(TokenCacheEntry *entry, const char *token, TimestampTz expires_at,
		  int64 margin_us, int64 version)
{
	if (entry->access_token != NULL)
	{
		memset(entry->access_token, 0, strlen(entry->access_token));
		pfree(entry->access_token);
	}
	entry->access_token = token ? MemoryContextStrdup(TopMemoryContext, token) : NULL;
	entry->expires_at = expires_at;
	entry->margin_us = margin_us;
	entry->token_version = version;
}

/*
 * token_usable says whether a stored access token can be sent: present,
 * not the one WHOOP just rejected, and valid for MARGIN_US more.
 */
static bool
token_usable(const WhoopStoredAccount *account, const char *rejected, int64 margin_us)
{
	if (account->access_token == NULL)
		return false;
	if (rejected != NULL && strcmp(account->access_token, rejected) == 0)
		return false;
	return account->access_expires_at - margin_us > GetCurrentTimestamp();
}

/*
 * check_account raises an error for an account that is missing or needs to
 * be linked again.
 */
static void
check_account(const WhoopServer *server, const WhoopStoredAccount *account)
{
	if (!account->found)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
				 errmsg("WHOOP account " INT64_FORMAT " is not linked to server \"%s\"",
						account->user_id, server->server_name),
				 errhint("Link it with " WHOOP_SQL_CONNECT_ACCOUNT " or " WHOOP_SQL_ADD_ACCOUNT ".")));
	if (!account->at_home)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("WHOOP account " INT64_FORMAT " on server \"%s\" belongs to another database",
						account->user_id, server->server_name),
				 errdetail("Its tokens were stored by database \"%s\" of the cluster with system identifier " UINT64_FORMAT "; this is database \"%s\" of cluster " UINT64_FORMAT ".  A copy that used them would rotate them and log the original out.",
						   account->home_database,
						   (uint64) account->home_system_identifier,
						   get_database_name(MyDatabaseId),
						   GetSystemIdentifier()),
				 errhint("If this database is to take the accounts over, run SELECT " WHOOP_SQL_CLAIM_ACCOUNTS "; here as the extension owner, and stop syncing in the original.")));
	if (strcmp(account->status, "active") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("WHOOP account " INT64_FORMAT " on server \"%s\" must be authorized again",
						account->user_id, server->server_name),
				 errdetail("WHOOP refused its refresh token earlier; see " WHOOP_SQL_ACCOUNTS ".last_error."),
				 errhint("Link it again with " WHOOP_SQL_CONNECT_ACCOUNT " (authorization code) or " WHOOP_SQL_ADD_ACCOUNT " (refresh token).")));
	if (account->refresh_token == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("WHOOP account " INT64_FORMAT " on server \"%s\" has no refresh token",
						account->user_id, server->server_name),
				 errhint("Authorize with the \"offline\" scope, which " WHOOP_SQL_AUTHORIZE_URL " requests.")));
}

/* refreshes this backend has asked WHOOP for (whoop_oauth_refreshes) */
static uint64 backend_refreshes = 0;

/*
 * whoop_oauth_refreshes returns how many refreshes this backend has asked
 * WHOOP for, so a caller can tell a token it refreshed itself from one
 * another session had just fetched.
 */
uint64
whoop_oauth_refreshes(void)
{
	return backend_refreshes;
}

/*
 * whoop_access_token returns an access token for an account (palloc'd in
 * the caller's context).  REJECTED, if not NULL, is a token WHOOP has just
 * answered 401 to: a different one is returned, refreshing if needed.
 */
char *
whoop_access_token(const WhoopServer *server, int64 user_id, const char *rejected)
{
	TokenCacheEntry *entry = cache_entry(server, user_id);
	WhoopStoredAccount account;
	int64		seen_version;
	char	   *token = NULL;

	if (entry->access_token != NULL &&
		(rejected == NULL || strcmp(entry->access_token, rejected) != 0) &&
		entry->expires_at - entry->margin_us > GetCurrentTimestamp())
		return pstrdup(entry->access_token);

	whoop_store_read(server->server_name, user_id, &account);
	check_account(server, &account);
	if (token_usable(&account, rejected, expiry_margin(&account)))
	{
		cache_set(entry, account.access_token, account.access_expires_at,
				  expiry_margin(&account), account.token_version);
		return pstrdup(account.access_token);
	}

	seen_version = account.token_version;
	whoop_account_lock(server->server_name, user_id);
	PG_TRY();
	{
		whoop_store_read(server->server_name, user_id, &account);
		check_account(server, &account);

		/*
		 * Someone refreshed while we waited for the lock: their token is
		 * brand new, use it even if its lifetime is shorter than the margin.
		 */
		if (account.token_version != seen_version && token_usable(&account, rejected, 0))
			token = pstrdup(account.access_token);
		else
		{
			token = refresh_locked(server, &account);
			whoop_store_read(server->server_name, user_id, &account);
		}
	}
	PG_FINALLY();
	{
		whoop_account_unlock(server->server_name, user_id);
	}
	PG_END_TRY();

	cache_set(entry, token, account.access_expires_at, expiry_margin(&account),
			  account.token_version);
	return token;
}

/*
 * refresh_locked spends the account's refresh token (the caller holds the
 * account lock) and returns the new access token once the rotated tokens
 * are durably saved.  If WHOOP refuses the refresh token, the account is
 * durably marked as needing authorization before the error is raised.
 */
static char *
refresh_locked(const WhoopServer *server, WhoopStoredAccount *account)
{
	WhoopClient *client = whoop_get_client(server->serverid, account->owner);
	WhoopGrant	grant = {0};
	WhoopTokens *tokens;
	char	   *role;

	backend_refreshes++;
	grant.form = whoop_oauth_form(client, "refresh_token", "refresh_token",
								  account->refresh_token, NULL);
	grant.user_id = account->user_id;
	grant.owner = account->owner;
	tokens = whoop_oauth_grant(server, &grant);
	if (tokens != NULL)
		return tokens->access_token;

	role = GetUserNameFromId(account->owner, true);
	if (grant.refusal == WHOOP_REFUSED_CLIENT)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("WHOOP refused the app's credentials when refreshing account " INT64_FORMAT " on server \"%s\"",
						account->user_id, server->server_name),
				 errdetail("%s The account's refresh token was not used and stays valid.",
						   grant.rejection),
				 errhint("Check client_id and client_secret in the user mapping of role \"%s\" for server \"%s\".",
						 role ? role : "?", server->server_name)));
	if (grant.refusal == WHOOP_REFUSED_NOT_OAUTH)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("WHOOP token endpoint of server \"%s\" gave no OAuth answer",
						server->server_name),
				 errdetail("%s The account's refresh token was probably not used.", grant.rejection),
				 errhint("Check the server's oauth_url (by default https://api.prod.whoop.com/oauth/oauth2).")));
	if (grant.refusal == WHOOP_REFUSED_OTHER)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("WHOOP refused to refresh the tokens of account " INT64_FORMAT " on server \"%s\"",
						account->user_id, server->server_name),
				 errdetail("%s", grant.rejection),
				 errhint("If this persists, link the account again with " WHOOP_SQL_CONNECT_ACCOUNT " or " WHOOP_SQL_ADD_ACCOUNT ".")));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
			 errmsg("WHOOP refused the refresh token of account " INT64_FORMAT " on server \"%s\"",
					account->user_id, server->server_name),
			 errdetail("%s", grant.rejection),
			 errhint("Link the account again with " WHOOP_SQL_CONNECT_ACCOUNT " or " WHOOP_SQL_ADD_ACCOUNT ".")));
}

/*
 * shorten_by_wait counts a token's life from SENT, when its request left:
 * WHOOP's expires_in runs from when it issued the token, and the store
 * adds it to the time the token is saved, which is later by the answer's
 * way back and, when linking, the profile request -- up to timeout_ms
 * each, which may exceed the margin a token is refreshed ahead by.
 */
static void
shorten_by_wait(WhoopTokens *tokens, TimestampTz sent)
{
	int64		waited_s = (GetCurrentTimestamp() - sent + USECS_PER_SEC - 1) / USECS_PER_SEC;

	tokens->expires_in = waited_s >= tokens->expires_in ? 0
		: tokens->expires_in - (int) waited_s;
}

/*
 * whoop_oauth_grant sends GRANT's token request and hands its outcome to
 * the token writer, which commits it at once: the tokens, for the account
 * refreshed or -- when linking -- for the member identify names; or, when
 * WHOOP refuses the refresh token of a stored account, the mark that it
 * must be authorized again.  Returns the saved tokens, or NULL with the
 * refusal in grant->rejection and grant->refusal.  The writer is started
 * before the request is sent, so WHOOP is not asked for tokens that could
 * not be saved.
 */
WhoopTokens *
whoop_oauth_grant(const WhoopServer *server, WhoopGrant *grant)
{
	WhoopTokenWriter *volatile writer = whoop_token_writer_start();
	WhoopTokens *tokens = NULL;
	TimestampTz sent = GetCurrentTimestamp();

	PG_TRY();
	{
		tokens = token_request(server, grant->form, &grant->rejection,
							   &grant->refusal);

		/*
		 * A refused link leaves nothing to write, nor does a refresh refused
		 * for any reason but its refresh token.
		 */
		if (tokens != NULL ||
			(grant->identify == NULL && grant->refusal == WHOOP_REFUSED_GRANT))
		{
			WhoopStoreWrite write = {0};
			WhoopTokenWriter *w = writer;

			write.server_name = server->server_name;
			write.user_id = grant->user_id;
			if (tokens == NULL)
			{
				write.op = WHOOP_STORE_MARK_FAILED;
				write.status = "reauthorization_required";
				write.error = grant->rejection;
			}
			else
			{
				write.op = WHOOP_STORE_SAVE_TOKENS;
				write.owner = grant->owner;
				write.tokens = tokens;
				if (grant->identify != NULL)
				{
					write.profile = grant->identify(server, tokens, grant->identify_arg);
					write.user_id = grant->user_id = write.profile->user_id;
				}
			}
			if (tokens != NULL)
				shorten_by_wait(tokens, sent);
			writer = NULL;
			whoop_token_writer_commit(w, &write);
		}
	}
	PG_CATCH();
	{
		if (writer != NULL)
			whoop_token_writer_abandon(writer);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (writer != NULL)
		whoop_token_writer_abandon(writer);

	memset(grant->form, 0, strlen(grant->form));
	if (tokens != NULL)
		cache_set(cache_entry(server, grant->user_id), NULL, DT_NOBEGIN,
				  EXPIRY_MARGIN_US, -1);
	return tokens;
}

/*
 * whoop_oauth_forget durably deletes an account and its tokens, and drops
 * its cached access token.
 */
void
whoop_oauth_forget(const WhoopServer *server, int64 user_id)
{
	WhoopStoreWrite forget = {WHOOP_STORE_FORGET, server->server_name, user_id};

	whoop_token_writer_commit(whoop_token_writer_start(), &forget);
	cache_set(cache_entry(server, user_id), NULL, DT_NOBEGIN, EXPIRY_MARGIN_US, -1);
}

/*
 * whoop_oauth_form builds a urlencoded token request body with the client
 * credentials in it, as WHOOP expects.
 */
char *
whoop_oauth_form(const WhoopClient *client, const char *grant_type,
				 const char *grant_field, const char *grant_value,
				 const char *redirect_uri)
{
	StringInfoData form;

	initStringInfo(&form);
	appendStringInfo(&form, "grant_type=%s&%s=%s&client_id=%s&client_secret=%s",
					 grant_type, grant_field, whoop_http_escape(grant_value),
					 whoop_http_escape(client->client_id),
					 whoop_http_escape(client->client_secret));
	if (redirect_uri != NULL)
		appendStringInfo(&form, "&redirect_uri=%s", whoop_http_escape(redirect_uri));
	if (strcmp(grant_type, "refresh_token") == 0)
		appendStringInfoString(&form, "&scope=offline");
	return form.data;
}

/*
 * classify_token_answer takes a grant (200) and a refusal (4xx, which
 * token_request reports); anything else is retried like a 5xx.
 */
static WhoopVerdict
classify_token_answer(WhoopSend *send, const WhoopHttpResponse *response)
{
	if (response->status == 200 || (response->status >= 400 && response->status < 500))
		return WHOOP_TAKE;
	return WHOOP_RETRY;
}

/*
 * token_request POSTs a token request (code exchange or refresh).  Returns
 * the tokens; or NULL with *REJECTION and *REFUSAL set when WHOOP refuses
 * the request (4xx); raises an error when WHOOP cannot be reached after the
 * server's retries, or when what answered is not JSON.
 */
static WhoopTokens *
token_request(const WhoopServer *server, const char *form, char **rejection,
			  WhoopRefusal *refusal)
{
	WhoopSend	send = {0};
	WhoopHttpResponse response;
	WhoopTokens *tokens;

	send.kind = &token_post;
	send.request.method = "POST";
	send.request.url = psprintf("%s/token", server->oauth_url);
	send.request.form = form;
	send.label = psprintf("POST %s", send.request.url);
	whoop_send(server, &send, &response);

	*rejection = NULL;
	*refusal = WHOOP_REFUSED_OTHER;
	if (response.status != 200)
	{
		*rejection = whoop_oauth_rejection(response.status, response.body,
										   response.body_len);
		*refusal = whoop_oauth_refusal(response.status, response.body,
									   response.body_len);

		/*
		 * Grants are single-use.  A retry refused after an attempt whose
		 * answer never came is most likely the lost-rotation case: WHOOP
		 * took the grant, rotated, and the answer with the new tokens was
		 * lost.  Nothing here can get them back; say so.
		 */
		if (send.failed_attempts > 0)
			*rejection = psprintf("%s %s of this request failed (%s); if WHOOP "
								  "received %s, it used the grant then and its answer "
								  "with the new tokens was lost.",
								  *rejection,
								  send.failed_attempts == 1 ? "An earlier attempt" : "Earlier attempts",
								  send.failures,
								  send.failed_attempts == 1 ? "it" : "one of them");
		pfree(response.body);
		return NULL;
	}
	if (!whoop_body_looks_json(response.body, response.body_len))
	{
		memset(response.body, 0, response.body_len);
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_STRING_FORMAT),
				 errmsg("WHOOP token endpoint of server \"%s\" answered with something other than JSON",
						server->server_name),
				 errdetail("%s answered HTTP 200 with a body that is not a JSON object, as a web page is.",
						   send.label),
				 errhint("Check the server's oauth_url (by default https://api.prod.whoop.com/oauth/oauth2).")));
	}
	tokens = whoop_oauth_parse_tokens(response.body, response.body_len);
	memset(response.body, 0, response.body_len);
	pfree(response.body);
	return tokens;
}
