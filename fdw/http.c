/*-------------------------------------------------------------------------
 *
 * http.c
 *		  HTTP for whoop_fdw: the one reused libcurl handle of a backend.
 *
 * This is the wire: one request, one answer (or a transport failure).
 * What is retried, waited for and counted is transport.c's business.
 * One handle per backend keeps its connections alive between pages and
 * queries.  Every request has a connect and a total timeout, follows no
 * redirects, speaks only http/https, and identifies itself with
 * User-Agent whoop_fdw/<version>.  Query cancel and statement_timeout abort
 * a transfer through the progress callback (which runs about once a second
 * even when no bytes arrive); the interrupt is then served outside libcurl,
 * because an ereport must never longjmp through it.  For the same reason
 * the callbacks here never raise errors: they allocate with NO_OOM and tell
 * libcurl to stop instead.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <curl/curl.h>

#include "whoop_fdw.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"

/* a WHOOP page is about 4 KB per record; anything near this is not WHOOP */
#define MAX_BODY_BYTES (64 * 1024 * 1024)

typedef struct BodyBuffer
{
	char	   *data;
	size_t		len;
	size_t		cap;
	bool		too_large;
	bool		out_of_memory;
} BodyBuffer;

static CURL *curl_handle = NULL;

static CURL *get_handle(void);
static void cleanup_handle(int code, Datum arg);
static size_t write_body(char *data, size_t size, size_t nmemb, void *userdata);
static size_t read_header(char *data, size_t size, size_t nmemb, void *userdata);
static int	check_interrupts(void *clientp, curl_off_t dltotal, curl_off_t dlnow,
							 curl_off_t ultotal, curl_off_t ulnow);

/*
 * whoop_wait_event is the wait event shown in pg_stat_activity while a
 * backend waits for WHOOP -- for an answer, or before the next attempt: a
 * named one ("WhoopHttp") from PostgreSQL 17 on, else the generic
 * "Extension".
 */
uint32
whoop_wait_event(void)
{
#if PG_VERSION_NUM >= 170000
	static uint32 wait_event = 0;

	if (wait_event == 0)
		wait_event = WaitEventExtensionNew("WhoopHttp");
	return wait_event;
#else
	return PG_WAIT_EXTENSION;
#endif
}

/*
 * get_handle creates the backend's curl handle on first use.
 */
static CURL *
get_handle(void)
{
	if (curl_handle == NULL)
	{
		if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
					 errmsg("could not initialize libcurl")));
		curl_handle = curl_easy_init();
		if (curl_handle == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
					 errmsg("could not create a libcurl handle")));
		on_proc_exit(cleanup_handle, (Datum) 0);
	}
	return curl_handle;
}

/*
 * cleanup_handle closes the handle's connections when the backend exits.
 */
static void
cleanup_handle(int code, Datum arg)
{
	if (curl_handle != NULL)
		curl_easy_cleanup(curl_handle);
	curl_handle = NULL;
}

/*
 * whoop_http_request performs one HTTP request.  HTTP answers of any status
 * come back in RESPONSE; transport failures (refused, timed out, reset, a
 * body cut short) set transport_failed, so the caller can decide to retry.
 * A cancel or statement timeout raises the usual query-canceled error.
 */
void
whoop_http_request(const WhoopHttpRequest *request, WhoopHttpResponse *response)
{
	CURL	   *curl = get_handle();
	struct curl_slist *volatile headers = NULL;
	BodyBuffer	body = {0};
	volatile CURLcode code = CURLE_OK;
	double		total_time = 0;

	memset(response, 0, sizeof(WhoopHttpResponse));
	whoop_rate_limit_init(&response->rate);

	/* reset keeps the connection cache: that is the point of one handle */
	curl_easy_reset(curl);
	curl_easy_setopt(curl, CURLOPT_URL, request->url);
	curl_easy_setopt(curl, CURLOPT_USERAGENT, WHOOP_USER_AGENT);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long) request->timeout_ms);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long) request->connect_timeout_ms);
	curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(curl, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, write_body);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
	curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, read_header);
	curl_easy_setopt(curl, CURLOPT_HEADERDATA, &response->rate);
	curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, check_interrupts);
	curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);

	PG_TRY();
	{
		headers = curl_slist_append(headers, "Accept: application/json");
		if (request->bearer != NULL)
		{
			char	   *authorization = psprintf("Authorization: Bearer %s",
												 request->bearer);

			headers = curl_slist_append(headers, authorization);
			memset(authorization, 0, strlen(authorization));
			pfree(authorization);
		}
		if (strcmp(request->method, "POST") == 0)
		{
			headers = curl_slist_append(headers,
										"Content-Type: application/x-www-form-urlencoded");
			curl_easy_setopt(curl, CURLOPT_POSTFIELDS, request->form ? request->form : "");
		}
		else if (strcmp(request->method, "GET") != 0)
			curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, request->method);
		if (headers == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory")));
		curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);

		pgstat_report_wait_start(whoop_wait_event());
		code = curl_easy_perform(curl);
		pgstat_report_wait_end();
	}
	PG_FINALLY();
	{
		curl_slist_free_all(headers);
		/* the handle must not keep pointers to freed memory */
		curl_easy_setopt(curl, CURLOPT_HTTPHEADER, NULL);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, NULL);
	}
	PG_END_TRY();

	if (code == CURLE_ABORTED_BY_CALLBACK && !body.too_large && !body.out_of_memory)
	{
		if (body.data)
			pfree(body.data);
		CHECK_FOR_INTERRUPTS();
		/* not reached unless the interrupt vanished; report it as a failure */
		response->transport_failed = true;
		strlcpy(response->transport_error, "request interrupted",
				sizeof(response->transport_error));
		response->body = pstrdup("");
		return;
	}
	if (body.out_of_memory)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while receiving a WHOOP response")));
	if (body.too_large)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_STRING_LENGTH_OR_BUFFER_LENGTH),
				 errmsg("WHOOP response exceeds %d bytes", MAX_BODY_BYTES)));

	curl_easy_getinfo(curl, CURLINFO_TOTAL_TIME, &total_time);
	response->elapsed_ms = total_time * 1000.0;
	if (code != CURLE_OK)
	{
		response->transport_failed = true;
		strlcpy(response->transport_error, curl_easy_strerror(code),
				sizeof(response->transport_error));
		if (body.data)
			pfree(body.data);
		response->body = pstrdup("");
		return;
	}

	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &response->status);
	if (body.data == NULL)
		response->body = pstrdup("");
	else
	{
		body.data[body.len] = '\0';
		response->body = body.data;
	}
	response->body_len = body.len;
}

/*
 * write_body appends received bytes to the body buffer; returning a short
 * count makes libcurl abort the transfer instead of raising an error here.
 */
static size_t
write_body(char *data, size_t size, size_t nmemb, void *userdata)
{
	BodyBuffer *body = (BodyBuffer *) userdata;
	size_t		bytes = size * nmemb;

	if (body->len + bytes + 1 > MAX_BODY_BYTES)
	{
		body->too_large = true;
		return 0;
	}
	if (body->len + bytes + 1 > body->cap)
	{
		size_t		cap = Max(body->cap * 2, 16384);
		char	   *grown;

		while (cap < body->len + bytes + 1)
			cap *= 2;
		grown = MemoryContextAllocExtended(CurrentMemoryContext, cap,
										   MCXT_ALLOC_NO_OOM);
		if (grown == NULL)
		{
			body->out_of_memory = true;
			return 0;
		}
		if (body->data)
		{
			memcpy(grown, body->data, body->len);
			pfree(body->data);
		}
		body->data = grown;
		body->cap = cap;
	}
	memcpy(body->data + body->len, data, bytes);
	body->len += bytes;
	return bytes;
}

/*
 * read_header picks the rate-limit headers out of the response.
 */
static size_t
read_header(char *data, size_t size, size_t nmemb, void *userdata)
{
	size_t		bytes = size * nmemb;

	/* a redirect or 100-continue starts a new header block */
	if (bytes > 5 && strncmp(data, "HTTP/", 5) == 0)
		whoop_rate_limit_init((WhoopRateLimit *) userdata);
	whoop_parse_rate_limit_header(data, bytes, (WhoopRateLimit *) userdata);
	return bytes;
}

/*
 * check_interrupts asks libcurl to stop when the query is being canceled or
 * the backend is asked to die; the interrupt itself is served afterwards.
 */
static int
check_interrupts(void *clientp, curl_off_t dltotal, curl_off_t dlnow,
				 curl_off_t ultotal, curl_off_t ulnow)
{
	if ((QueryCancelPending || ProcDiePending) && INTERRUPTS_CAN_BE_PROCESSED())
		return 1;
	return 0;
}

/*
 * whoop_http_url_acceptable checks an absolute URL: https, or plain http
 * only to a loopback host; no credentials or fragment, and a query only if
 * ALLOW_QUERY (a redirect URI may have one, a server URL, to which paths
 * are appended, may not).  WHY explains a rejection.
 */
bool
whoop_http_url_acceptable(const char *url, bool allow_query, const char **why)
{
	CURLU	   *parsed = curl_url();
	char	   *scheme = NULL;
	char	   *host = NULL;
	char	   *part = NULL;
	bool		ok = false;

	*why = NULL;
	if (parsed == NULL)
	{
		*why = "out of memory";
		return false;
	}
	if (curl_url_set(parsed, CURLUPART_URL, url, 0) != CURLUE_OK ||
		curl_url_get(parsed, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK)
		*why = "The value is not an absolute URL.";
	else if (pg_strcasecmp(scheme, "https") != 0 && pg_strcasecmp(scheme, "http") != 0)
		*why = "Only the https scheme (and http to loopback hosts) is allowed.";
	else if (curl_url_get(parsed, CURLUPART_HOST, &host, 0) != CURLUE_OK)
		*why = "The URL has no host.";
	else if (curl_url_get(parsed, CURLUPART_USER, &part, 0) == CURLUE_OK)
		*why = "The URL must not contain credentials.";
	else if (curl_url_get(parsed, CURLUPART_FRAGMENT, &part, 0) == CURLUE_OK)
		*why = allow_query ? "The URL must not have a fragment."
			: "The URL must not have a query or a fragment.";
	else if (!allow_query && curl_url_get(parsed, CURLUPART_QUERY, &part, 0) == CURLUE_OK)
		*why = "The URL must not have a query or a fragment.";
	else if (pg_strcasecmp(scheme, "https") == 0)
		ok = true;
	else if (pg_strcasecmp(scheme, "http") == 0)
	{
		struct in_addr ipv4;

		/* a literal 127.x.x.x address; "127.example.com" is not loopback */
		if (pg_strcasecmp(host, "localhost") == 0 ||
			strcmp(host, "[::1]") == 0 ||
			(inet_pton(AF_INET, host, &ipv4) == 1 &&
			 (ntohl(ipv4.s_addr) >> 24) == 127))
			ok = true;
		else
			*why = "Plain http:// is accepted only for loopback hosts; other hosts must be reached over https://.";
	}

	curl_free(part);
	curl_free(host);
	curl_free(scheme);
	curl_url_cleanup(parsed);
	return ok;
}

/*
 * whoop_http_escape percent-encodes a query-string or form value.
 */
char *
whoop_http_escape(const char *text)
{
	char	   *escaped = curl_easy_escape(get_handle(), text, 0);
	char	   *result;

	if (escaped == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	result = pstrdup(escaped);
	curl_free(escaped);
	return result;
}
