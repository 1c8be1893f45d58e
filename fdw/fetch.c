/*-------------------------------------------------------------------------
 *
 * fetch.c
 *		  One WHOOP API call with the account's token: a page (or object)
 *		  read and parsed, or the app's access revoked.
 *
 * transport.c sends the request (pacing, 429 waits, retries of 5xx and
 * transport failures); what an answer means to an API read is said here:
 *	- 200: the body parsed as JSON (an error names the endpoint and offset;
 *	  a body that is no JSON at all, such as a web page, points at api_url);
 *	- 404: NULL when the caller expects it (by-id lookups, a member without
 *	  a body measurement), else an error;
 *	- 401: the request is sent again with a newer token.  When that token
 *	  is one another session had just fetched, an expiry may already have
 *	  ended it too: a second 401 then gets one more token (refreshed here
 *	  unless yet another session was quicker).  A 401 to a token this
 *	  backend refreshed itself is final;
 *	- anything else: an error at once.
 *
 * Before a code or refresh token is spent on linking an account, the API is
 * asked, without a token, for a member's profile: WHOOP answers 401, while
 * a wrong api_url answers a web page, a 404 or a redirect -- and would only
 * be found out once the grant was spent and the new tokens could not be
 * used to learn whose they are.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "whoop_fdw.h"

/* an API read in progress, for classify_read */
typedef struct ApiRead
{
	const WhoopServer *server;
	int64		user_id;
	bool		own_token;		/* the account's token: a 401 may refresh it */
	bool		missing_ok;
	int			renewals;		/* newer tokens this read has asked for */
	bool		refreshed;		/* one of them this backend refreshed itself */
} ApiRead;

static WhoopVerdict classify_read(WhoopSend *send, const WhoopHttpResponse *response);
static WhoopVerdict classify_revoke(WhoopSend *send, const WhoopHttpResponse *response);
static WhoopVerdict classify_probe(WhoopSend *send, const WhoopHttpResponse *response);
static char *request_label(const char *method, const char *path_and_query);

static const WhoopSendKind api_read = {
	.classify = classify_read,
	.unreachable = "could not reach the WHOOP API",
	.unreachable_hint = "Check the server's api_url and the network; timeout_ms and max_retries bound the wait.",
	.failing = "WHOOP API request",
	.failing_hint = "WHOOP may be having trouble; try again later, or raise the server's max_retries.",
};

static const WhoopSendKind api_probe = {
	.classify = classify_probe,
	.unreachable = "could not reach the WHOOP API",
	.unreachable_hint = "Check the server's api_url and the network; nothing was sent to the token endpoint, so the code or refresh token was not used.",
	.failing = "WHOOP API request",
	.failing_hint = "WHOOP may be having trouble; try again later: the code or refresh token was not used.",
};

static const WhoopSendKind api_revoke = {
	.classify = classify_revoke,
	.unreachable = "could not revoke access at WHOOP",
	.unreachable_hint = "The account was not forgotten; try again later.",
	.failing = "WHOOP access revocation",
	.failing_hint = "The account was not forgotten; try again later.",
};

/*
 * classify_read says what an answer to an API read means: see the file
 * header.
 */
static WhoopVerdict
classify_read(WhoopSend *send, const WhoopHttpResponse *response)
{
	ApiRead    *api = (ApiRead *) send->arg;

	if (response->status == 200 || (response->status == 404 && api->missing_ok))
		return WHOOP_TAKE;
	if (response->status == 401 && api->own_token && !api->refreshed && api->renewals < 2)
	{
		/* expired or revoked under us: a newer token, and send again */
		uint64		refreshes = whoop_oauth_refreshes();

		api->renewals++;
		send->request.bearer = whoop_access_token(api->server, api->user_id,
												  send->request.bearer);
		api->refreshed = whoop_oauth_refreshes() != refreshes;
		return WHOOP_RESEND;
	}
	if (response->status == 401)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("WHOOP rejected the access token for account " INT64_FORMAT,
						api->user_id),
				 errdetail("%s answered HTTP 401%s: %s", send->label,
						   api->own_token ? " again after a token refresh" : "",
						   whoop_body_excerpt(response->body, response->body_len)),
				 errhint("Check that the account granted the scope this endpoint needs (link it again with " WHOOP_SQL_CONNECT_ACCOUNT " if not).")));
	ereport(ERROR,
			(errcode(ERRCODE_FDW_ERROR),
			 errmsg("WHOOP API request failed with HTTP %ld", response->status),
			 errdetail("%s answered: %s", send->label,
					   whoop_body_excerpt(response->body, response->body_len)),
			 response->status == 400
			 ? errhint("WHOOP rejected the request parameters; check the values compared with start, end and id.")
			 : errhint("Check the server's api_url and the account's scopes.")));
}

/*
 * request_label is "METHOD /path" without the query, for messages.
 */
static char *
request_label(const char *method, const char *path_and_query)
{
	const char *query = strchr(path_and_query, '?');
	int			len = query ? (int) (query - path_and_query) : (int) strlen(path_and_query);

	return psprintf("%s %.*s", method, len, path_and_query);
}

/*
 * whoop_fetch GETs one API path (relative to the server's api_url) for an
 * account, or with an explicit BEARER token when the account is not stored
 * yet.  Returns the parsed document, allocated in DOC_CONTEXT (freed with
 * it), or NULL for a 404 when MISSING_OK.
 */
WhoopJsonDoc *
whoop_fetch(const WhoopServer *server, int64 user_id, const char *bearer,
			const char *path_and_query, bool missing_ok,
			MemoryContext doc_context, WhoopFetchStats *stats)
{
	ApiRead		api = {server, user_id, bearer == NULL, missing_ok, 0, false};
	WhoopSend	send = {0};
	WhoopHttpResponse response;
	WhoopJsonDoc *doc;

	send.kind = &api_read;
	send.request.method = "GET";
	send.request.url = psprintf("%s%s", server->api_url, path_and_query);
	send.request.bearer = bearer ? bearer : whoop_access_token(server, user_id, NULL);
	send.label = request_label("GET", path_and_query);
	send.arg = &api;
	send.stats = stats;
	whoop_send(server, &send, &response);

	if (response.status == 404)
	{
		pfree(response.body);
		return NULL;
	}
	if (!whoop_body_looks_json(response.body, response.body_len))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_STRING_FORMAT),
				 errmsg("WHOOP response from %s is not JSON", send.label),
				 errdetail("%s answered HTTP 200 with: %s", send.label,
						   whoop_body_excerpt(response.body, response.body_len)),
				 errhint("A web page usually means that the server's api_url points at a web site rather than at the WHOOP API (by default https://api.prod.whoop.com/developer); if api_url is right, WHOOP may be having trouble.")));
	doc = whoop_json_parse(response.body, response.body_len, doc_context, send.label);
	pfree(response.body);
	stats->pages++;
	whoop_backend_fetch_stats.pages++;
	return doc;
}

/*
 * classify_revoke takes a success, and a 401 or 403 (the token was dead
 * already); any other refusal is an error.
 */
static WhoopVerdict
classify_revoke(WhoopSend *send, const WhoopHttpResponse *response)
{
	if (response->status < 300 || response->status == 401 || response->status == 403)
		return WHOOP_TAKE;
	ereport(ERROR,
			(errcode(ERRCODE_FDW_ERROR),
			 errmsg("WHOOP refused to revoke access with HTTP %ld", response->status),
			 errdetail("%s answered: %s", send->label,
					   whoop_body_excerpt(response->body, response->body_len))));
}

/*
 * whoop_revoke asks WHOOP to revoke an access token and its grant; returns
 * false when WHOOP says the token is no longer valid anyway.
 */
bool
whoop_revoke(const WhoopServer *server, const char *bearer)
{
	WhoopSend	send = {0};
	WhoopHttpResponse response;

	send.kind = &api_revoke;
	send.request.method = "DELETE";
	send.request.url = psprintf("%s/v2/user/access", server->api_url);
	send.request.bearer = bearer;
	send.label = "DELETE /v2/user/access";
	whoop_send(server, &send, &response);
	pfree(response.body);
	return response.status < 300;
}

/*
 * classify_probe takes the 401 (or 403) the WHOOP API answers a request
 * without a token; anything else says that api_url is wrong.
 */
static WhoopVerdict
classify_probe(WhoopSend *send, const WhoopHttpResponse *response)
{
	const WhoopServer *server = (const WhoopServer *) send->arg;

	if (response->status == 401 || response->status == 403)
		return WHOOP_TAKE;
	ereport(ERROR,
			(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
			 errmsg("api_url of server \"%s\" does not answer like the WHOOP API",
					server->server_name),
			 errdetail("%s without a token answered HTTP %ld, where the WHOOP API answers 401: %s",
					   send->label, response->status,
					   whoop_body_excerpt(response->body, response->body_len)),
			 errhint("Check the server's api_url (by default https://api.prod.whoop.com/developer); nothing was sent to the token endpoint, so the code or refresh token was not used.")));
}

/*
 * whoop_check_api_url makes sure, before a grant is spent, that the
 * server's api_url answers like the WHOOP API: a request for the profile
 * without a token must be refused with 401.
 */
void
whoop_check_api_url(const WhoopServer *server)
{
	WhoopSend	send = {0};
	WhoopHttpResponse response;

	send.kind = &api_probe;
	send.request.method = "GET";
	send.request.url = psprintf("%s/v2/user/profile/basic", server->api_url);
	send.label = "GET /v2/user/profile/basic";
	send.arg = (void *) server;
	whoop_send(server, &send, &response);
	pfree(response.body);
}
