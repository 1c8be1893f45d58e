/*-------------------------------------------------------------------------
 *
 * transport.c
 *		  Sending a request to WHOOP: pacing under the app's rate limit,
 *		  429 waits, the one retry policy, and the counters.
 *
 * Every request whoop_fdw sends -- an API page, a token request, the
 * revocation -- goes through whoop_send, so they share one policy:
 *	- 429: wait X-RateLimit-Reset seconds (interruptibly) and send again;
 *	- 5xx and transport failures: bounded exponential backoff, up to the
 *	  server's max_retries, then an error with the status (and an excerpt
 *	  of the body, except for token answers);
 *	- any other answer: the caller's kind says what it means -- take it,
 *	  retry it like a 5xx, or send a changed request again (a new token).
 * Never a silently empty or partial answer.
 *
 * Pacing: WHOOP's limits are per app (100/minute, 10,000/day).  Every API
 * answer says how many requests are left in the window closest to
 * exhaustion and when it resets; when few are left, the next API request
 * is spaced so that the window lasts, which keeps a long backfill free of
 * 429s.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "whoop_fdw.h"

#include "common/pg_prng.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/timestamp.h"

/* waits longer than this are a daily limit: report instead of hanging */
#define MAX_RATE_LIMIT_WAIT_S 300
/* give up after this many 429s for one request */
#define MAX_THROTTLED 30
/* pace only windows that reset within this (the per-minute window) */
#define PACE_MAX_WINDOW_S 120
/* start spacing requests when less than this share of the window is left */
#define PACE_RESERVE_FRACTION 0.2

/* what this backend has sent, for whoop.fetch_stats() and the sync log */
WhoopFetchStats whoop_backend_fetch_stats;

/* the rate-limit headers of the last API answer, per backend */
static struct
{
	Oid			serverid;
	WhoopRateLimit rate;
	TimestampTz observed_at;
} last_rate = {InvalidOid, {-1, -1, -1}, 0};

static void pace(const WhoopServer *server, WhoopFetchStats *stats);
static void observe_rate(const WhoopServer *server, const WhoopRateLimit *rate);
static int	rate_limit_wait_s(const WhoopRateLimit *rate, const char *label,
							  bool give_up);
static int	backoff_ms(int attempt);
static void sleep_ms(int ms);
static void give_up(const WhoopSend *send, const WhoopHttpResponse *response,
					int attempts);

/*
 * pace sleeps before an API request when the app's window is nearly used
 * up.
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
		if (stats != NULL)
			stats->paced_ms += delay_ms;
		whoop_backend_fetch_stats.paced_ms += delay_ms;
		sleep_ms((int) delay_ms);
	}
}

/*
 * observe_rate remembers the rate-limit headers of an API answer.
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
 * rate_limit_wait_s returns the seconds to wait after LABEL was answered
 * 429: X-RateLimit-Reset, at least one.  A longer wait than
 * MAX_RATE_LIMIT_WAIT_S (a daily limit, or a hostile header), or GIVE_UP,
 * raises an error instead; so the wait in milliseconds always fits an int.
 */
static int
rate_limit_wait_s(const WhoopRateLimit *rate, const char *label, bool give_up)
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
 * backoff_ms is the wait before retry number ATTEMPT (0-based): exponential
 * from 250 ms, capped at 8 s, with +-25% jitter so that sessions failing
 * together do not retry in lockstep.
 */
static int
backoff_ms(int attempt)
{
	double		base = 250.0 * (double) (1 << Min(attempt, 5));

	base = Min(base, 8000.0);
	return (int) (base * (0.75 + 0.5 * pg_prng_double(&pg_global_prng_state)));
}

/*
 * sleep_ms waits MS milliseconds; a cancel or statement timeout ends the
 * wait with the usual error.
 */
static void
sleep_ms(int ms)
{
	TimestampTz until = GetCurrentTimestamp() + (int64) ms * 1000;

	for (;;)
	{
		long		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), until);

		CHECK_FOR_INTERRUPTS();
		if (left <= 0)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Min(left, 1000), whoop_wait_event());
		ResetLatch(MyLatch);
	}
}

/*
 * give_up reports a request whose retries are used up, in the words of its
 * kind.
 */
static void
give_up(const WhoopSend *send, const WhoopHttpResponse *response, int attempts)
{
	const WhoopSendKind *kind = send->kind;

	if (response->transport_failed)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
				 errmsg("%s", kind->unreachable),
				 errdetail_plural("%s failed after %d attempt: %s.",
								  "%s failed after %d attempts: %s.",
								  attempts, send->label, attempts,
								  response->transport_error),
				 errhint("%s", kind->unreachable_hint)));
	if (kind->token_answer)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("%s failed with HTTP %ld", kind->failing, response->status),
				 errdetail_plural("%s answered %ld after %d attempt.",
								  "%s answered %ld after %d attempts.",
								  attempts, send->label, response->status, attempts),
				 errhint("%s", kind->failing_hint)));
	ereport(ERROR,
			(errcode(ERRCODE_FDW_ERROR),
			 errmsg("%s failed with HTTP %ld", kind->failing, response->status),
			 errdetail_plural("%s answered %ld after %d attempt: %s",
							  "%s answered %ld after %d attempts: %s",
							  attempts, send->label, response->status, attempts,
							  whoop_body_excerpt(response->body, response->body_len)),
			 errhint("%s", kind->failing_hint)));
}

/*
 * whoop_send sends SEND's request until an answer is final, and returns
 * that answer in RESPONSE (its body palloc'd in the caller's context).
 * Answers that are neither a 429 nor a 5xx nor a failure to get one are
 * judged by the request's kind; when the retries are used up, the error
 * is raised here.  SEND's failures list what the retried attempts got,
 * which tells a caller whether an earlier attempt may have reached WHOOP.
 */
void
whoop_send(const WhoopServer *server, WhoopSend *send, WhoopHttpResponse *response)
{
	const WhoopSendKind *kind = send->kind;
	int			attempt = 0;
	int			throttled = 0;
	StringInfoData failures;

	send->request.timeout_ms = server->timeout_ms;
	send->request.connect_timeout_ms = server->connect_timeout_ms;
	send->failed_attempts = 0;
	send->failures = NULL;
	for (;;)
	{
		WhoopVerdict verdict;

		if (kind->paced)
			pace(server, send->stats);

		/*
		 * A token answer must not be thrown away by a cancel: WHOOP may
		 * have rotated the token already.  timeout_ms bounds the wait.
		 */
		if (kind->token_answer)
			HOLD_INTERRUPTS();
		whoop_http_request(&send->request, response);
		if (kind->token_answer)
			RESUME_INTERRUPTS();
		if (send->stats != NULL)
			send->stats->requests++;
		whoop_backend_fetch_stats.requests++;
		if (kind->paced)
			observe_rate(server, &response->rate);

		if (!response->transport_failed && response->status == 429)
		{
			/* not an answer at all: the request was not even looked at */
			int			wait_s = rate_limit_wait_s(&response->rate, send->label,
												   ++throttled > MAX_THROTTLED);

			if (send->stats != NULL)
				send->stats->throttled++;
			whoop_backend_fetch_stats.throttled++;
			pfree(response->body);
			sleep_ms(wait_s * 1000);
			continue;
		}

		if (response->transport_failed || response->status >= 500)
			verdict = WHOOP_RETRY;
		else
			verdict = kind->classify(send, response);
		if (verdict == WHOOP_TAKE)
			return;
		if (verdict == WHOOP_RESEND)
		{
			pfree(response->body);
			continue;
		}

		if (attempt >= server->max_retries)
			give_up(send, response, attempt + 1);
		if (send->failed_attempts++ == 0)
			initStringInfo(&failures);
		else
			appendStringInfoString(&failures, "; ");
		if (response->transport_failed)
			appendStringInfoString(&failures, response->transport_error);
		else
			appendStringInfo(&failures, "HTTP %ld", response->status);
		send->failures = failures.data;
		pfree(response->body);
		if (send->stats != NULL)
			send->stats->retries++;
		whoop_backend_fetch_stats.retries++;
		sleep_ms(backoff_ms(attempt++));
	}
}
