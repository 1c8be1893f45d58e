/*-------------------------------------------------------------------------
 *
 * fetch.c
 *		  One WHOOP API call done right: token attached, paced under the
 *		  app's rate limit, retried when that is safe, parsed.
 *
 * The outcomes, in order of preference:
 *	- 200: the body parsed as JSON (an error names the endpoint and offset);
 *	- 404: NULL when the caller expects it (by-id lookups, a member without
 *	  a body measurement), else an error;
 *	- 401: the token is refreshed once and the call retried;
 *	- 429: wait X-RateLimit-Reset seconds (interruptibly) and retry;
 *	- 5xx and transport failures: bounded exponential backoff, up to the
 *	  server's max_retries, then an error with the status and an excerpt;
 *	- anything else: an error at once.
 * Never a silently empty or partial answer.
 *
 * Pacing: WHOOP's limits are per app (100/minute, 10,000/day).  Every
 * answer says how many requests are left in the window closest to
 * exhaustion and when it resets; when few are left, the next request is
 * spaced so that the window lasts, which keeps a long backfill free of 429s.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "whoop_fdw.h"

#include "miscadmin.h"
#include "utils/timestamp.h"

/* waits longer than this are a daily limit: report instead of hanging */
#define MAX_RATE_LIMIT_WAIT_S 300
/* give up after this many 429s in a row */
#define MAX_THROTTLED_IN_A_ROW 30
/* pace only windows that reset within this (the per-minute window) */
#define PACE_MAX_WINDOW_S 120
/* start spacing requests when less than this share of the window is left */
#define PACE_RESERVE_FRACTION 0.2

/* what this backend has sent, for whoop.fetch_stats() and the sync log */
WhoopFetchStats whoop_backend_fetch_stats;

/* the rate-limit headers of the last answer, per backend */
static struct
{
	Oid			serverid;
	WhoopRateLimit rate;
	TimestampTz observed_at;
} last_rate = {InvalidOid, {-1, -1, -1}, 0};

static void pace(const WhoopServer *server, WhoopFetchStats *stats);
static void observe_rate(const WhoopServer *server, const WhoopRateLimit *rate);
static char *request_label(const char *method, const char *path_and_query);

/*
 * pace sleeps before a request when the app's window is nearly used up.
 */
static void
pace(const WhoopServer *server, WhoopFetchStats *stats)
{
	long		elapsed_ms;
	double		window_ms;
	double		delay_ms = 0;
	int			remaining = last_rate.rate.remaining;
	int			limit = last_rate.rate.limit;

	if (last_rate.serverid != server->serverid || remaining < 0 ||
		last_rate.rate.reset_s < 0 || last_rate.rate.reset_s > PACE_MAX_WINDOW_S)
		return;

	elapsed_ms = TimestampDifferenceMilliseconds(last_rate.observed_at,
												 GetCurrentTimestamp());
	/* Reset is rounded to whole seconds: allow for the rounding */
	window_ms = last_rate.rate.reset_s * 1000.0 + 500.0;
	if (remaining == 0)
		delay_ms = window_ms - elapsed_ms;
	else if (remaining < (limit > 0 ? limit * PACE_RESERVE_FRACTION : 20))
		delay_ms = window_ms / remaining - elapsed_ms;

	if (delay_ms >= 1)
	{
		stats->paced_ms += delay_ms;
		whoop_backend_fetch_stats.paced_ms += delay_ms;
		whoop_http_sleep((int) delay_ms);
	}
}

/*
 * observe_rate remembers the rate-limit headers of an answer.
 */
static void
observe_rate(const WhoopServer *server, const WhoopRateLimit *rate)
{
	if (rate->remaining < 0)
		return;
	last_rate.serverid = server->serverid;
	last_rate.rate = *rate;
	last_rate.observed_at = GetCurrentTimestamp();
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
 * whoop_rate_limit_wait_s returns the seconds to wait after LABEL was
 * answered 429: X-RateLimit-Reset, at least one.  A longer wait than
 * MAX_RATE_LIMIT_WAIT_S (a daily limit, or a hostile header), or GIVE_UP,
 * raises an error instead; so the wait in milliseconds always fits an int.
 */
int
whoop_rate_limit_wait_s(const WhoopRateLimit *rate, const char *label, bool give_up)
{
	int			wait_s = Max(rate->reset_s, 1);

	if (give_up || wait_s > MAX_RATE_LIMIT_WAIT_S)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("WHOOP rate limit exhausted"),
				 errdetail("%s answered HTTP 429; X-RateLimit-Reset says %d s.",
						   label, rate->reset_s),
				 errhint("The app's limits (100 requests/minute, 10,000/day unless raised by WHOOP) are shared by all its accounts; sync less often or ask WHOOP for a higher limit.")));
	return wait_s;
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
	char	   *url = psprintf("%s%s", server->api_url, path_and_query);
	char	   *label = request_label("GET", path_and_query);
	char	   *token = NULL;
	char	   *rejected = NULL;
	int			attempt = 0;
	int			throttled = 0;
	WhoopHttpResponse response;

	for (;;)
	{
		WhoopHttpRequest request;

		pace(server, stats);
		if (token == NULL)
			token = bearer ? pstrdup(bearer)
				: whoop_access_token(server, user_id, rejected);

		request.method = "GET";
		request.url = url;
		request.bearer = token;
		request.form = NULL;
		request.timeout_ms = server->timeout_ms;
		request.connect_timeout_ms = server->connect_timeout_ms;
		whoop_http_request(&request, &response);
		stats->requests++;
		whoop_backend_fetch_stats.requests++;
		observe_rate(server, &response.rate);

		if (!response.transport_failed)
		{
			if (response.status == 200)
				break;
			if (response.status == 404 && missing_ok)
			{
				pfree(response.body);
				return NULL;
			}
			if (response.status == 401 && bearer == NULL && rejected == NULL)
			{
				/* expired or revoked under us: refresh once and retry */
				rejected = token;
				token = NULL;
				pfree(response.body);
				continue;
			}
			if (response.status == 401)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
						 errmsg("WHOOP rejected the access token for account " INT64_FORMAT,
								user_id),
						 errdetail("%s answered HTTP 401%s: %s", label,
								   bearer ? "" : " again after a token refresh",
								   whoop_body_excerpt(response.body, response.body_len)),
						 errhint("Check that the account granted the scope this endpoint needs (link it again with " WHOOP_SQL_CONNECT_ACCOUNT " if not).")));
			if (response.status == 429)
			{
				int			wait_s = whoop_rate_limit_wait_s(&response.rate, label,
															 ++throttled > MAX_THROTTLED_IN_A_ROW);

				stats->throttled++;
				whoop_backend_fetch_stats.throttled++;
				pfree(response.body);
				whoop_http_sleep(wait_s * 1000);
				continue;
			}
			if (response.status < 500)
				ereport(ERROR,
						(errcode(ERRCODE_FDW_ERROR),
						 errmsg("WHOOP API request failed with HTTP %ld", response.status),
						 errdetail("%s answered: %s", label,
								   whoop_body_excerpt(response.body, response.body_len)),
						 response.status == 400
						 ? errhint("WHOOP rejected the request parameters; check the values compared with start, end and id.")
						 : errhint("Check the server's api_url and the account's scopes.")));
		}

		/* 5xx or transport failure: retry with backoff, boundedly */
		if (attempt >= server->max_retries)
		{
			if (response.transport_failed)
				ereport(ERROR,
						(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
						 errmsg("could not reach the WHOOP API"),
						 errdetail("%s failed after %d attempts: %s.",
								   label, attempt + 1, response.transport_error),
						 errhint("Check the server's api_url and the network; timeout_ms and max_retries bound the wait.")));
			ereport(ERROR,
					(errcode(ERRCODE_FDW_ERROR),
					 errmsg("WHOOP API request failed with HTTP %ld", response.status),
					 errdetail("%s answered %ld after %d attempts: %s", label,
							   response.status, attempt + 1,
							   whoop_body_excerpt(response.body, response.body_len)),
					 errhint("WHOOP may be having trouble; try again later, or raise the server's max_retries.")));
		}
		pfree(response.body);
		stats->retries++;
		whoop_backend_fetch_stats.retries++;
		whoop_http_sleep(whoop_http_backoff_ms(attempt++));
	}

	{
		WhoopJsonDoc *doc = whoop_json_parse(response.body, response.body_len,
											 doc_context, label);

		pfree(response.body);
		stats->pages++;
		whoop_backend_fetch_stats.pages++;
		return doc;
	}
}

/*
 * whoop_revoke asks WHOOP to revoke an access token and its grant; returns
 * false when WHOOP says the token is no longer valid anyway.
 */
bool
whoop_revoke(const WhoopServer *server, const char *bearer)
{
	char	   *url = psprintf("%s/v2/user/access", server->api_url);
	WhoopHttpRequest request = {"DELETE", url, bearer, NULL, server->timeout_ms,
	server->connect_timeout_ms};
	WhoopHttpResponse response;
	int			attempt = 0;

	for (;;)
	{
		whoop_http_request(&request, &response);
		whoop_backend_fetch_stats.requests++;
		if (!response.transport_failed && response.status < 300)
			return true;
		if (!response.transport_failed && (response.status == 401 || response.status == 403))
			return false;
		if (!response.transport_failed && response.status < 500 && response.status != 429)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_ERROR),
					 errmsg("WHOOP refused to revoke access with HTTP %ld", response.status),
					 errdetail("DELETE /v2/user/access answered: %s",
							   whoop_body_excerpt(response.body, response.body_len))));
		if (attempt >= server->max_retries)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
					 errmsg("could not revoke access at WHOOP"),
					 errdetail("DELETE /v2/user/access failed after %d attempts: %s.",
							   attempt + 1,
							   response.transport_failed ? response.transport_error
							   : psprintf("HTTP %ld", response.status)),
					 errhint("The account was not forgotten; try again later.")));
		whoop_http_sleep(response.status == 429
						 ? whoop_rate_limit_wait_s(&response.rate, "DELETE /v2/user/access",
												   false) * 1000
						 : whoop_http_backoff_ms(attempt));
		attempt++;
	}
}
