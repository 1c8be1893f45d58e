/*-------------------------------------------------------------------------
 *
 * db.c
 *		  Handing a delivery to whoop.receive_webhook() through a small pool
 *		  of libpq connections, and what its answer means in HTTP.
 *
 * A request takes a connection from the pool (waiting at most db_wait
 * seconds), calls the function in its own implicit transaction and gets
 * its answer only once that transaction has committed: a 2XX is never
 * sent for an event that is not stored.  The session makes sure commits
 * wait for the WAL flush (synchronous_commit off would break that
 * promise) and bounds each statement with statement_timeout.
 *
 * A broken connection is closed and opened again by the next request that
 * needs it, so a database restart costs 503s -- which WHOOP retries --
 * and nothing else.  A request whose pooled connection turns out dead is
 * sent once more on a new one: the function dedupes on trace_id, so a
 * delivery that committed before the connection broke reads "duplicate".
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "webhookd.h"

typedef struct Slot
{
	PGconn	   *conn;			/* NULL until (re)connected */
	bool		busy;
} Slot;

static const WebhookdConfig *config;
static Slot *slots;
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_freed;

static Slot *acquire(void);
static void release(Slot *slot);
static bool open_connection(Slot *slot, WebhookdOutcome *outcome);
static void set_outcome(WebhookdOutcome *outcome, int http_status, const char *result,
						const char *sqlstate, const char *message);
static void judge_error(const char *sqlstate, WebhookdOutcome *outcome);

/*
 * set_outcome fills OUTCOME; the message is cut to one printable line.
 */
static void
set_outcome(WebhookdOutcome *outcome, int http_status, const char *result,
			const char *sqlstate, const char *message)
{
	size_t		i;

	outcome->http_status = http_status;
	snprintf(outcome->result, sizeof(outcome->result), "%s", result);
	snprintf(outcome->sqlstate, sizeof(outcome->sqlstate), "%s", sqlstate ? sqlstate : "");
	message = message ? message : "";
	for (i = 0; i < sizeof(outcome->message) - 1 && message[i] != '\0'; i++)
		outcome->message[i] = (message[i] >= 0x20 && message[i] < 0x7f) ? message[i] : ' ';
	while (i > 0 && outcome->message[i - 1] == ' ')
		i--;
	outcome->message[i] = '\0';
}

/*
 * judge_error says what an error of whoop.receive_webhook() means to WHOOP.
 * The refusals are README's table; a database that is shutting down,
 * restarting, out of connections, read-only after a failover or too slow
 * is 503, so that WHOOP retries; anything else (the extension missing, no
 * EXECUTE right) is the operator's to fix: 500, which WHOOP retries too.
 */
static void
judge_error(const char *sqlstate, WebhookdOutcome *outcome)
{
	static const struct
	{
		const char *sqlstate;
		int			http_status;
		const char *result;
	}			refusals[] = {
		{"28000", 401, "unsigned"},
		{"28P01", 401, "forged"},
		{"22008", 401, "stale"},
		{"42704", 401, "unknown"},
		{"22007", 400, "malformed"},
		{"22P02", 400, "malformed"},
		{"54000", 413, "too_large"},
	};
	static const char *const unavailable[] = {
		"08", "53", "57", "58", "40", "55P03", "25006"
	};

	for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++)
	{
		if (strcmp(sqlstate, refusals[i].sqlstate) == 0)
		{
			outcome->http_status = refusals[i].http_status;
			snprintf(outcome->result, sizeof(outcome->result), "%s", refusals[i].result);
			return;
		}
	}
	for (size_t i = 0; i < sizeof(unavailable) / sizeof(unavailable[0]); i++)
	{
		if (strncmp(sqlstate, unavailable[i], strlen(unavailable[i])) == 0)
		{
			outcome->http_status = 503;
			snprintf(outcome->result, sizeof(outcome->result), "unavailable");
			return;
		}
	}
	outcome->http_status = 500;
	snprintf(outcome->result, sizeof(outcome->result), "failed");
}

/*
 * webhookd_db_init sets up the pool; connections open on first use, so
 * the receiver starts (and answers 503) while the database is down.
 */
void
webhookd_db_init(const WebhookdConfig *conf)
{
	pthread_condattr_t attr;

	config = conf;
	if (!PQisthreadsafe())
	{
		fprintf(stderr, "this libpq is not thread-safe\n");
		exit(1);
	}
	slots = calloc(conf->db_connections, sizeof(Slot));
	if (slots == NULL)
	{
		fprintf(stderr, "out of memory\n");
		exit(1);
	}
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&pool_freed, &attr);
	pthread_condattr_destroy(&attr);
}

/*
 * webhookd_db_close closes every connection, at shutdown (no request runs).
 */
void
webhookd_db_close(void)
{
	for (int i = 0; i < config->db_connections; i++)
	{
		if (slots[i].conn != NULL)
			PQfinish(slots[i].conn);
		slots[i].conn = NULL;
	}
}

/*
 * acquire takes a free slot, waiting at most db_wait seconds; NULL if none
 * came free.
 */
static Slot *
acquire(void)
{
	struct timespec deadline;
	Slot	   *found = NULL;

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += config->db_wait;
	pthread_mutex_lock(&pool_lock);
	for (;;)
	{
		for (int i = 0; i < config->db_connections && found == NULL; i++)
		{
			if (!slots[i].busy)
				found = &slots[i];
		}
		if (found != NULL)
		{
			found->busy = true;
			break;
		}
		if (pthread_cond_timedwait(&pool_freed, &pool_lock, &deadline) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&pool_lock);
	return found;
}

static void
release(Slot *slot)
{
	pthread_mutex_lock(&pool_lock);
	slot->busy = false;
	pthread_cond_signal(&pool_freed);
	pthread_mutex_unlock(&pool_lock);
}

/*
 * open_connection connects SLOT and prepares its session; on failure it
 * fills OUTCOME (503) and leaves the slot unconnected.
 */
static bool
open_connection(Slot *slot, WebhookdOutcome *outcome)
{
	/* the conninfo is expanded last, so what it says wins */
	const char *const keywords[] = {"fallback_application_name", "connect_timeout",
	"dbname", NULL};
	const char *const values[] = {"whoop-webhookd", "5", config->conninfo, NULL};
	char		timeout[32];
	const char *params[1] = {timeout};
	PGresult   *res;

	slot->conn = PQconnectdbParams(keywords, values, 1);
	if (PQstatus(slot->conn) != CONNECTION_OK)
	{
		set_outcome(outcome, 503, "unavailable", "", PQerrorMessage(slot->conn));
		PQfinish(slot->conn);
		slot->conn = NULL;
		return false;
	}
	snprintf(timeout, sizeof(timeout), "%ds", config->statement_timeout);
	res = PQexecParams(slot->conn,
					   "select pg_catalog.set_config('statement_timeout', $1, false), "
					   "case when pg_catalog.current_setting('synchronous_commit') = 'off' "
					   "then pg_catalog.set_config('synchronous_commit', 'on', false) end",
					   1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		const char *sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		set_outcome(outcome, 503, "unavailable", sqlstate, PQerrorMessage(slot->conn));
		PQclear(res);
		PQfinish(slot->conn);
		slot->conn = NULL;
		return false;
	}
	PQclear(res);
	return true;
}

/*
 * webhookd_db_deliver hands one delivery to whoop.receive_webhook() for
 * SERVER and says how it ended.  SIGNATURE and TIMESTAMP are NULL when the
 * request lacked them: the function refuses that itself.
 */
void
webhookd_db_deliver(const char *server, const char *signature, const char *timestamp,
					const char *body, size_t body_len, WebhookdOutcome *outcome)
{
	const char *params[4] = {server, signature, timestamp, body};
	int			lengths[4] = {0, 0, 0, (int) body_len};
	int			formats[4] = {0, 0, 0, 1};
	Slot	   *slot = acquire();

	if (slot == NULL)
	{
		set_outcome(outcome, 503, "busy", "",
					"no database connection came free within db_wait");
		return;
	}
	for (int attempt = 0; attempt < 2; attempt++)
	{
		bool		fresh = (slot->conn == NULL);
		PGresult   *res;
		const char *sqlstate;

		if (fresh && !open_connection(slot, outcome))
			break;
		res = PQexecParams(slot->conn,
						   "select whoop.receive_webhook($1, $2, $3, $4::pg_catalog.bytea)",
						   4, NULL, params, lengths, formats, 0);
		if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
		{
			set_outcome(outcome, 200, PQgetvalue(res, 0, 0), "", "");
			PQclear(res);
			break;
		}
		sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		if (PQstatus(slot->conn) == CONNECTION_BAD)
		{
			set_outcome(outcome, 503, "unavailable", sqlstate, PQerrorMessage(slot->conn));
			PQclear(res);
			PQfinish(slot->conn);
			slot->conn = NULL;
			/* a pooled connection gone stale: once more, on a new one */
			if (!fresh)
				continue;
			break;
		}
		set_outcome(outcome, 500, "failed", sqlstate,
					PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY)
					? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY)
					: PQerrorMessage(slot->conn));
		judge_error(outcome->sqlstate, outcome);
		PQclear(res);
		break;
	}
	release(slot);
}
