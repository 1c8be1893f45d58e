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
 * The budget: WHOOP's limits are per app (100/minute, 10,000/day), shared
 * by every backend.  Before each request -- API pages, token requests
 * (WHOOP's simulator counts everything under /oauth too, so they are
 * charged, to the class of the request that needed them) and the
 * revocation -- one unit is taken from the app's budget (budget.c).  An
 * empty minute means an interruptible wait until it refills; a day down
 * to the reserve of the session's request class (whoop_fdw.request_class)
 * means the request is refused with SQLSTATE 53400 before it is sent, so
 * that callers can defer it.  Every answer's X-RateLimit-* headers feed
 * the budget, and a 429 is still waited out as the last resort.
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
/* a wait for the budget longer than this: refuse instead of hanging */
#define MAX_BUDGET_WAIT_MS (MAX_RATE_LIMIT_WAIT_S * 1000)

/* what this backend has sent, for whoop.fetch_stats() and the sync log */
WhoopFetchStats whoop_backend_fetch_stats;

static void spend_budget(const WhoopServer *server, WhoopSend *send);
static void send_once(WhoopSend *send, WhoopHttpResponse *response);
static int	rate_limit_wait_s(const WhoopRateLimit *rate, const char *label,
							  bool give_up);
static int	backoff_ms(int attempt);
static void sleep_ms(int ms);
static void give_up(const WhoopSend *send, const WhoopHttpResponse *response,
					int attempts);

/*
 * spend_budget takes one unit of the app's budget for SEND, waiting while
 * the minute (or, for a class without a reserve, the day) is empty; a
 * request the day's reserve keeps back, or one that would wait too long,
 * is refused with SQLSTATE 53400 before anything is sent.
 */
static void
spend_budget(const WhoopServer *server, WhoopSend *send)
{
	for (;;)
	{
		int64		wait_ms;
		double		day_available;
		int			day_reserve;
		WhoopBudgetVerdict verdict;
		const char *class_name = whoop_request_class_name(whoop_request_class);

		verdict = whoop_budget_take(server, whoop_request_class, &wait_ms,
									&day_available, &day_reserve);
		if (verdict == WHOOP_BUDGET_GRANTED)
			return;
		if (verdict == WHOOP_BUDGET_REFUSED)
			ereport(ERROR,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("whoop request budget: the rest of the day is reserved for higher-priority requests"),
					 errdetail("%s was not sent: server \"%s\" has %.0f of its %d requests of the day left, and a request of class \"%s\" may spend only while more than %d (%d%%) are left.",
							   send->label, server->server_name, Max(day_available, 0),
							   server->requests_per_day, class_name, day_reserve,
							   server->day_reserve_pct[whoop_request_class]),
					 errhint("Nothing was spent; run it again once the day's budget has refilled, or change the server's requests_per_day or day_budget_reserve.")));
		if (wait_ms > MAX_BUDGET_WAIT_MS)
			ereport(ERROR,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("whoop request budget: the app's requests are used up"),
					 errdetail("%s was not sent: server \"%s\" may send its next request of class \"%s\" in %lld s (%.0f of the day's %d are left).",
							   send->label, server->server_name, class_name,
							   (long long) (wait_ms / 1000), Max(day_available, 0),
							   server->requests_per_day),
					 errhint("Try again later; if WHOOP raised the app's limit, raise the server's requests_per_day or requests_per_minute.")));
		if (send->stats != NULL)
			send->stats->paced_ms += wait_ms;
		whoop_backend_fetch_stats.paced_ms += wait_ms;
		sleep_ms((int) Max(wait_ms, 1));
	}
}

/*
 * send_once sends SEND's request once; an error on the way (a cancel) ends
 * its unit of the budget's in-flight count before it propagates.
 */
static void
send_once(WhoopSend *send, WhoopHttpResponse *response)
{
	PG_TRY();
	{
		whoop_http_request(&send->request, response);
	}
	PG_CATCH();
	{
		whoop_budget_abandon();
		PG_RE_THROW();
	}
	PG_END_TRY();
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

		spend_budget(server, send);

		/*
		 * A token answer must not be thrown away by a cancel: WHOOP may
		 * have rotated the token already.  timeout_ms bounds the wait.
		 */
		if (kind->token_answer)
			HOLD_INTERRUPTS();
		send_once(send, response);
		if (kind->token_answer)
			RESUME_INTERRUPTS();
		if (send->stats != NULL)
			send->stats->requests++;
		whoop_backend_fetch_stats.requests++;
		whoop_budget_answered(server, response->transport_failed ? NULL : &response->rate);

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
