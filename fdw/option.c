/*-------------------------------------------------------------------------
 *
 * option.c
 *		  Option validation for whoop_fdw servers, user mappings and foreign
 *		  tables, and the resolved settings the rest of the code uses.
 *
 * Validation is table driven: every option names the catalog it belongs to
 * and how its value is checked, so an unknown option or a bad value is
 * caught by CREATE/ALTER with a message naming the valid choices.
 *
 * A user mapping's statement carries the client secret, so it is kept out
 * of the server log when it fails: by the validator for the errors it
 * raises, and by an event trigger with a log hook for those PostgreSQL
 * raises before the validator is called.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "whoop_fdw.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/reloptions.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_foreign_table.h"
#include "catalog/pg_user_mapping.h"
#include "commands/defrem.h"
#include "commands/event_trigger.h"
#include "foreign/foreign.h"
#include "miscadmin.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

typedef enum WhoopOptionKind
{
	WHOOP_OPTION_URL,
	WHOOP_OPTION_INT,
	WHOOP_OPTION_TEXT,
	WHOOP_OPTION_INTERVAL,
	WHOOP_OPTION_ENDPOINT,
	WHOOP_OPTION_RESERVE,
	WHOOP_OPTION_BOOL
} WhoopOptionKind;

typedef struct WhoopOption
{
	const char *name;
	Oid			context;		/* catalog of the object the option is for */
	WhoopOptionKind kind;
	int			min;			/* WHOOP_OPTION_INT bounds */
	int			max;
	const char *min_interval;	/* WHOOP_OPTION_INTERVAL lower bound, or NULL */
} WhoopOption;

static const WhoopOption whoop_options[] = {
	{"api_url", ForeignServerRelationId, WHOOP_OPTION_URL},
	{"oauth_url", ForeignServerRelationId, WHOOP_OPTION_URL},
	{"timeout_ms", ForeignServerRelationId, WHOOP_OPTION_INT, 1, 3600000},
	{"connect_timeout_ms", ForeignServerRelationId, WHOOP_OPTION_INT, 1, 600000},
	{"max_retries", ForeignServerRelationId, WHOOP_OPTION_INT, 0, 20},
	{"page_size", ForeignServerRelationId, WHOOP_OPTION_INT, 1, WHOOP_MAX_PAGE_SIZE},
	{"update_window", ForeignServerRelationId, WHOOP_OPTION_INTERVAL},
	{"max_sync_deletions", ForeignServerRelationId, WHOOP_OPTION_INT, 0, 1000000},
	{"cycle_poll_interval", ForeignServerRelationId, WHOOP_OPTION_INTERVAL},
	{"poll_cycles_on_event", ForeignServerRelationId, WHOOP_OPTION_BOOL},
	{"reconcile_interval", ForeignServerRelationId, WHOOP_OPTION_INTERVAL},
	{"webhook_retention", ForeignServerRelationId, WHOOP_OPTION_INTERVAL, 0, 0, "1 day"},
	{"recovery_follow_up", ForeignServerRelationId, WHOOP_OPTION_INTERVAL, 0, 0, "1 second"},
	{"profile_poll_interval", ForeignServerRelationId, WHOOP_OPTION_INTERVAL},
	{"backfill_first_days", ForeignServerRelationId, WHOOP_OPTION_INT, 1, 36500},
	{"backfill_chunk_days", ForeignServerRelationId, WHOOP_OPTION_INT, 1, 36500},
	{"backfill_max_chunks_per_sync", ForeignServerRelationId, WHOOP_OPTION_INT, 0, 1000000},
	{"requests_per_minute", ForeignServerRelationId, WHOOP_OPTION_INT, 1, 1000000000},
	{"requests_per_day", ForeignServerRelationId, WHOOP_OPTION_INT, 1, 1000000000},
	{"day_budget_reserve", ForeignServerRelationId, WHOOP_OPTION_RESERVE},
	{"minute_budget_reserve", ForeignServerRelationId, WHOOP_OPTION_RESERVE},
	{"client_id", UserMappingRelationId, WHOOP_OPTION_TEXT},
	{"client_secret", UserMappingRelationId, WHOOP_OPTION_TEXT},
	{"endpoint", ForeignTableRelationId, WHOOP_OPTION_ENDPOINT},
	{"update_window", ForeignTableRelationId, WHOOP_OPTION_INTERVAL},
};

#define DEFAULT_API_URL "https://api.prod.whoop.com/developer"
#define DEFAULT_OAUTH_URL "https://api.prod.whoop.com/oauth/oauth2"
#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_CONNECT_TIMEOUT_MS 10000
#define DEFAULT_MAX_RETRIES 4
#define DEFAULT_MAX_SYNC_DELETIONS 10
#define DEFAULT_PROFILE_POLL_INTERVAL_US USECS_PER_DAY
#define DEFAULT_WEBHOOK_RETENTION_US (30 * USECS_PER_DAY)
#define DEFAULT_RECOVERY_FOLLOW_UP_US (5 * USECS_PER_MINUTE)
#define DEFAULT_BACKFILL_FIRST_DAYS 60
#define DEFAULT_BACKFILL_CHUNK_DAYS 180
#define DEFAULT_REQUESTS_PER_MINUTE 100
#define DEFAULT_REQUESTS_PER_DAY 10000

/* day_budget_reserve: percent of requests_per_day each class leaves */
static const int default_day_reserve_pct[WHOOP_REQUEST_CLASSES] = {0, 0, 10, 25, 40};
/* minute_budget_reserve: percent of the minute's requests each class leaves */
static const int default_minute_reserve_pct[WHOOP_REQUEST_CLASSES] = {0, 0, 0, 10, 25};
#define RESERVE_HINT "Give percentages of %s as 'cycle=%d,reconcile=%d,backfill=%d': classes cycle, reconcile and backfill, integers from 0 to 99, in that order non-decreasing (a lower class keeps at least the reserve of a higher one)."

static void check_option_value(const WhoopOption *option, DefElem *def);
static char *valid_option_names(Oid context);
static char *strip_trailing_slash(const char *url);
static char *app_client_id(Oid serverid);
static void interval_option_context(void *arg);
static void hide_mapping_statement(void *arg);
static void hide_marked_statement(ErrorData *edata);
static void forget_marked_statement(XactEvent event, void *arg);

/* the statement text hide_marked_statement keeps out of the log, or NULL */
static const char *marked_statement = NULL;
static bool log_hook_installed = false;
static emit_log_hook_type prev_emit_log_hook = NULL;

PG_FUNCTION_INFO_V1(whoop_fdw_validator);
PG_FUNCTION_INFO_V1(whoop_hide_user_mapping_statement);

/*
 * whoop_fdw_validator checks the options of a whoop_fdw server, user mapping
 * or foreign table; the wrapper itself takes none.
 */
Datum
whoop_fdw_validator(PG_FUNCTION_ARGS)
{
	List	   *options = untransformRelOptions(PG_GETARG_DATUM(0));
	Oid			catalog = PG_GETARG_OID(1);
	ListCell   *cell;
	ErrorContextCallback callback;

	/* a user mapping's statement carries the client secret */
	callback.callback = hide_mapping_statement;
	callback.arg = NULL;
	callback.previous = error_context_stack;
	if (catalog == UserMappingRelationId)
		error_context_stack = &callback;

	foreach(cell, options)
	{
		DefElem    *def = (DefElem *) lfirst(cell);
		const WhoopOption *match = NULL;

		for (int i = 0; i < lengthof(whoop_options); i++)
		{
			if (whoop_options[i].context == catalog &&
				strcmp(whoop_options[i].name, def->defname) == 0)
			{
				match = &whoop_options[i];
				break;
			}
		}

		if (match == NULL)
		{
			char	   *valid = valid_option_names(catalog);

			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
					 errmsg("invalid option \"%s\"", def->defname),
					 valid[0] != '\0'
					 ? errhint("Valid options in this context are: %s.", valid)
					 : errhint("There are no valid options in this context.")));
		}

		check_option_value(match, def);
	}

	error_context_stack = callback.previous;
	PG_RETURN_VOID();
}

/*
 * hide_mapping_statement keeps a rejected CREATE/ALTER USER MAPPING, whose
 * text holds the client secret, out of the server log.
 */
static void
hide_mapping_statement(void *arg)
{
	errhidestmt(true);
}

/*
 * whoop_hide_user_mapping_statement, the ddl_command_start event trigger of
 * CREATE and ALTER USER MAPPING, keeps the statement -- which may hold a
 * client secret, ours or another wrapper's password -- out of the server
 * log also when PostgreSQL itself refuses it before the validator runs: an
 * unknown role or server, a mapping that exists already, an option given
 * twice, no USAGE on the server.  It marks the statement for the log hook
 * it installs (loading this library is what the trigger is for); the mark
 * ends with the transaction.
 */
Datum
whoop_hide_user_mapping_statement(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function \"%s\" must be fired by an event trigger",
						"whoop_internal.hide_user_mapping_statement")));
	if (!log_hook_installed)
	{
		prev_emit_log_hook = emit_log_hook;
		emit_log_hook = hide_marked_statement;
		RegisterXactCallback(forget_marked_statement, NULL);
		log_hook_installed = true;
	}
	marked_statement = debug_query_string;
	PG_RETURN_NULL();
}

/*
 * hide_marked_statement, an emit_log_hook, drops the STATEMENT line of the
 * marked statement's messages.  An error is reported before its transaction
 * is aborted, so the mark is still set then.
 */
static void
hide_marked_statement(ErrorData *edata)
{
	if (marked_statement != NULL && marked_statement == debug_query_string)
		edata->hide_stmt = true;
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

/*
 * forget_marked_statement ends the mark when its transaction ends.
 */
static void
forget_marked_statement(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
		marked_statement = NULL;
}

/*
 * check_option_value raises an error when an option's value is unusable.
 */
static void
check_option_value(const WhoopOption *option, DefElem *def)
{
	char	   *value = defGetString(def);

	switch (option->kind)
	{
		case WHOOP_OPTION_URL:
			{
				const char *why;

				if (!whoop_http_url_acceptable(value, false, &why))
					ereport(ERROR,
							(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
							 errmsg("invalid value for option \"%s\": \"%s\"",
									option->name, value),
							 errdetail("%s", why),
							 errhint("Use an https:// URL, or http:// to a loopback address (127.0.0.1, ::1, localhost) for a local simulator.")));
				break;
			}
		case WHOOP_OPTION_INT:
			{
				char	   *end;
				long		number;

				errno = 0;
				number = strtol(value, &end, 10);
				if (errno != 0 || end == value || *end != '\0' ||
					number < option->min || number > option->max)
					ereport(ERROR,
							(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
							 errmsg("invalid value for option \"%s\": \"%s\"",
									option->name, value),
							 errhint("\"%s\" must be an integer from %d to %d.",
									 option->name, option->min, option->max)));
				break;
			}
		case WHOOP_OPTION_TEXT:
			if (value[0] == '\0')
				ereport(ERROR,
						(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
						 errmsg("option \"%s\" must not be empty", option->name)));
			break;
		case WHOOP_OPTION_INTERVAL:
			if (whoop_parse_interval_us(value, option->name) <
				(option->min_interval ?
				 whoop_parse_interval_us(option->min_interval, option->name) : 0))
				ereport(ERROR,
						(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
						 errmsg("invalid value for option \"%s\": \"%s\"",
								option->name, value),
						 errhint("\"%s\" must be at least %s.", option->name,
								 option->min_interval)));
			break;
		case WHOOP_OPTION_ENDPOINT:
			if (whoop_endpoint_by_name(value) == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
						 errmsg("invalid value for option \"endpoint\": \"%s\"", value),
						 errhint("Valid endpoints are: %s.", whoop_endpoint_names())));
			break;
		case WHOOP_OPTION_RESERVE:
			{
				int			pct[WHOOP_REQUEST_CLASSES];

				whoop_parse_reserve(option->name, value, pct);
				break;
			}
		case WHOOP_OPTION_BOOL:
			{
				bool		flag;

				if (!parse_bool(value, &flag))
					ereport(ERROR,
							(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
							 errmsg("invalid value for option \"%s\": \"%s\"",
									option->name, value),
							 errhint("\"%s\" must be a boolean: true or false.",
									 option->name)));
				break;
			}
	}
}

/*
 * valid_option_names lists the options allowed for one catalog, for hints.
 */
static char *
valid_option_names(Oid context)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < lengthof(whoop_options); i++)
	{
		if (whoop_options[i].context != context)
			continue;
		if (buf.len > 0)
			appendStringInfoString(&buf, ", ");
		appendStringInfoString(&buf, whoop_options[i].name);
	}
	return buf.data;
}

/*
 * whoop_parse_interval_us turns an interval option into microseconds,
 * counting a month as 30 days, and rejects negative or unparsable values.
 */
int64
whoop_parse_interval_us(const char *value, const char *option)
{
	ErrorContextCallback context;
	Interval   *interval;
	int64		us;

	context.callback = interval_option_context;
	context.arg = (void *) option;
	context.previous = error_context_stack;
	error_context_stack = &context;
	interval = DatumGetIntervalP(DirectFunctionCall3(interval_in,
													 CStringGetDatum(value),
													 ObjectIdGetDatum(InvalidOid),
													 Int32GetDatum(-1)));
	error_context_stack = context.previous;

#ifdef INTERVAL_NOT_FINITE
	if (INTERVAL_NOT_FINITE(interval))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("invalid value for option \"%s\": \"%s\"", option, value),
				 errhint("\"%s\" must be finite.", option)));
#endif
	us = interval->time +
		((int64) interval->month * DAYS_PER_MONTH + interval->day) * USECS_PER_DAY;
	if (us < 0)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("invalid value for option \"%s\": \"%s\"", option, value),
				 errhint("\"%s\" must not be negative.", option)));
	return us;
}

/*
 * whoop_parse_reserve reads the value of OPTION, day_budget_reserve or
 * minute_budget_reserve, such as 'cycle=10,reconcile=25,backfill=40' into
 * PCT (a percentage per request class; classes not named keep their
 * defaults, interactive and webhook have none) and rejects anything else.
 */
void
whoop_parse_reserve(const char *option, const char *value, int *pct)
{
	bool		day = strcmp(option, "day_budget_reserve") == 0;
	const int  *defaults = day ? default_day_reserve_pct : default_minute_reserve_pct;
	const char *window = day ? "requests_per_day" : "the minute's requests (requests_per_minute)";
	char	   *copy = pstrdup(value);
	char	   *item;
	char	   *save = NULL;

	memcpy(pct, defaults, sizeof(default_day_reserve_pct));
	for (item = strtok_r(copy, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save))
	{
		char	   *eq = strchr(item, '=');
		char	   *name = item;
		char	   *end = NULL;
		long		number = 0;
		int			cls = -1;

		if (eq != NULL)
		{
			*eq = '\0';
			name = pstrdup(item);
			while (*name == ' ')
				name++;
			while (name[0] != '\0' && name[strlen(name) - 1] == ' ')
				name[strlen(name) - 1] = '\0';
			for (int c = WHOOP_CLASS_CYCLE; c < WHOOP_REQUEST_CLASSES; c++)
				if (strcmp(name, whoop_request_class_name(c)) == 0)
					cls = c;
			errno = 0;
			number = strtol(eq + 1, &end, 10);
			while (*end == ' ')
				end++;
		}
		if (eq == NULL || cls < 0 || errno != 0 || end == eq + 1 || *end != '\0' ||
			number < 0 || number > 99)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
					 errmsg("invalid value for option \"%s\": \"%s\"", option, value),
					 eq == NULL || cls < 0
					 ? errdetail("\"%s\" is not a class=percent pair of a class with a reserve.", item)
					 : errdetail("The reserve of class \"%s\" is not an integer from 0 to 99.", name),
					 errhint(RESERVE_HINT, window, defaults[WHOOP_CLASS_CYCLE],
							 defaults[WHOOP_CLASS_RECONCILE], defaults[WHOOP_CLASS_BACKFILL])));
		pct[cls] = (int) number;
	}
	if (pct[WHOOP_CLASS_CYCLE] > pct[WHOOP_CLASS_RECONCILE] ||
		pct[WHOOP_CLASS_RECONCILE] > pct[WHOOP_CLASS_BACKFILL])
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("invalid value for option \"%s\": \"%s\"", option, value),
				 errdetail("The reserves would be cycle=%d, reconcile=%d, backfill=%d: a lower class would outlast a higher one.",
						   pct[WHOOP_CLASS_CYCLE], pct[WHOOP_CLASS_RECONCILE],
						   pct[WHOOP_CLASS_BACKFILL]),
				 errhint(RESERVE_HINT, window, defaults[WHOOP_CLASS_CYCLE],
						 defaults[WHOOP_CLASS_RECONCILE], defaults[WHOOP_CLASS_BACKFILL])));
	pfree(copy);
}

/*
 * interval_option_context names the option whose value failed to parse.
 */
static void
interval_option_context(void *arg)
{
	errcontext("option \"%s\" (an interval such as '14 days')", (const char *) arg);
}

/*
 * strip_trailing_slash copies a URL without the slashes it ends with, so
 * paths can be appended uniformly.
 */
static char *
strip_trailing_slash(const char *url)
{
	char	   *copy = pstrdup(url);
	size_t		len = strlen(copy);

	while (len > 0 && copy[len - 1] == '/')
		copy[--len] = '\0';
	return copy;
}

/*
 * whoop_get_server reads a server's options, applying the defaults.
 */
WhoopServer *
whoop_get_server(Oid serverid)
{
	ForeignServer *fs = GetForeignServer(serverid);
	WhoopServer *server = palloc0(sizeof(WhoopServer));
	ListCell   *cell;

	server->serverid = serverid;
	server->server_name = pstrdup(fs->servername);
	server->api_url = DEFAULT_API_URL;
	server->oauth_url = DEFAULT_OAUTH_URL;
	server->timeout_ms = DEFAULT_TIMEOUT_MS;
	server->connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
	server->max_retries = DEFAULT_MAX_RETRIES;
	server->page_size = WHOOP_MAX_PAGE_SIZE;
	server->update_window_us = -1;
	server->max_sync_deletions = DEFAULT_MAX_SYNC_DELETIONS;
	server->cycle_poll_interval_us = -1;
	server->poll_cycles_on_event = true;
	server->reconcile_interval_us = -1;
	server->webhook_retention_us = DEFAULT_WEBHOOK_RETENTION_US;
	server->recovery_follow_up_us = DEFAULT_RECOVERY_FOLLOW_UP_US;
	server->profile_poll_interval_us = DEFAULT_PROFILE_POLL_INTERVAL_US;
	server->backfill_first_days = DEFAULT_BACKFILL_FIRST_DAYS;
	server->backfill_chunk_days = DEFAULT_BACKFILL_CHUNK_DAYS;
	server->backfill_max_chunks = -1;
	server->requests_per_minute = DEFAULT_REQUESTS_PER_MINUTE;
	server->requests_per_day = DEFAULT_REQUESTS_PER_DAY;
	memcpy(server->day_reserve_pct, default_day_reserve_pct,
		   sizeof(default_day_reserve_pct));
	memcpy(server->minute_reserve_pct, default_minute_reserve_pct,
		   sizeof(default_minute_reserve_pct));

	foreach(cell, fs->options)
	{
		DefElem    *def = (DefElem *) lfirst(cell);
		char	   *value = defGetString(def);

		if (strcmp(def->defname, "api_url") == 0)
			server->api_url = value;
		else if (strcmp(def->defname, "oauth_url") == 0)
			server->oauth_url = value;
		else if (strcmp(def->defname, "timeout_ms") == 0)
			server->timeout_ms = atoi(value);
		else if (strcmp(def->defname, "connect_timeout_ms") == 0)
			server->connect_timeout_ms = atoi(value);
		else if (strcmp(def->defname, "max_retries") == 0)
			server->max_retries = atoi(value);
		else if (strcmp(def->defname, "page_size") == 0)
			server->page_size = atoi(value);
		else if (strcmp(def->defname, "update_window") == 0)
			server->update_window_us = whoop_parse_interval_us(value, def->defname);
		else if (strcmp(def->defname, "max_sync_deletions") == 0)
			server->max_sync_deletions = atoi(value);
		else if (strcmp(def->defname, "cycle_poll_interval") == 0)
			server->cycle_poll_interval_us = whoop_parse_interval_us(value, def->defname);
		else if (strcmp(def->defname, "poll_cycles_on_event") == 0)
			(void) parse_bool(value, &server->poll_cycles_on_event);
		else if (strcmp(def->defname, "reconcile_interval") == 0)
			server->reconcile_interval_us = whoop_parse_interval_us(value, def->defname);
		else if (strcmp(def->defname, "webhook_retention") == 0)
			server->webhook_retention_us = whoop_parse_interval_us(value, def->defname);
		else if (strcmp(def->defname, "recovery_follow_up") == 0)
			server->recovery_follow_up_us = whoop_parse_interval_us(value, def->defname);
		else if (strcmp(def->defname, "profile_poll_interval") == 0)
			server->profile_poll_interval_us = whoop_parse_interval_us(value, def->defname);
		else if (strcmp(def->defname, "backfill_first_days") == 0)
			server->backfill_first_days = atoi(value);
		else if (strcmp(def->defname, "backfill_chunk_days") == 0)
			server->backfill_chunk_days = atoi(value);
		else if (strcmp(def->defname, "backfill_max_chunks_per_sync") == 0)
			server->backfill_max_chunks = atoi(value);
		else if (strcmp(def->defname, "requests_per_minute") == 0)
			server->requests_per_minute = atoi(value);
		else if (strcmp(def->defname, "requests_per_day") == 0)
			server->requests_per_day = atoi(value);
		else if (strcmp(def->defname, "day_budget_reserve") == 0)
			whoop_parse_reserve(def->defname, value, server->day_reserve_pct);
		else if (strcmp(def->defname, "minute_budget_reserve") == 0)
			whoop_parse_reserve(def->defname, value, server->minute_reserve_pct);
	}
	server->api_url = strip_trailing_slash(server->api_url);
	server->oauth_url = strip_trailing_slash(server->oauth_url);
	server->app_client_id = app_client_id(serverid);
	return server;
}

/*
 * app_client_id returns the client_id of a server's app: that of the
 * server's oldest user mapping that has one (every backend finds the same,
 * whoever it runs as), or NULL when none has.  The secret is not read.
 */
static char *
app_client_id(Oid serverid)
{
	Relation	rel;
	SysScanDesc scan;
	HeapTuple	tuple;
	Oid			best_oid = InvalidOid;
	char	   *best = NULL;

	rel = table_open(UserMappingRelationId, AccessShareLock);
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 0, NULL);
	while (HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		Form_pg_user_mapping form = (Form_pg_user_mapping) GETSTRUCT(tuple);
		bool		isnull;
		Datum		options;
		ListCell   *cell;

		if (form->umserver != serverid ||
			(OidIsValid(best_oid) && form->oid > best_oid))
			continue;
		options = heap_getattr(tuple, Anum_pg_user_mapping_umoptions,
							   RelationGetDescr(rel), &isnull);
		if (isnull)
			continue;
		foreach(cell, untransformRelOptions(options))
		{
			DefElem    *def = (DefElem *) lfirst(cell);

			if (strcmp(def->defname, "client_id") == 0)
			{
				best_oid = form->oid;
				best = pstrdup(defGetString(def));
			}
		}
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return best;
}

/*
 * whoop_get_server_by_name resolves a server given to an SQL function,
 * checking that it belongs to whoop_fdw and, if asked, that the current
 * role may use it.
 */
WhoopServer *
whoop_get_server_by_name(const char *name, bool check_usage)
{
	ForeignServer *fs = GetForeignServerByName(name, false);
	ForeignDataWrapper *fdw = GetForeignDataWrapper(fs->fdwid);

	if (strcmp(fdw->fdwname, "whoop_fdw") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("server \"%s\" does not use the whoop_fdw foreign-data wrapper",
						name)));
	if (check_usage)
	{
#if PG_VERSION_NUM >= 160000
		AclResult	aclresult = object_aclcheck(ForeignServerRelationId, fs->serverid,
												GetUserId(), ACL_USAGE);
#else
		AclResult	aclresult = pg_foreign_server_aclcheck(fs->serverid,
														   GetUserId(),
														   ACL_USAGE);
#endif

		if (aclresult != ACLCHECK_OK)
			aclcheck_error(aclresult, OBJECT_FOREIGN_SERVER, fs->servername);
	}
	return whoop_get_server(fs->serverid);
}

/*
 * whoop_get_client reads the OAuth client credentials of a role's user
 * mapping (or the PUBLIC one).  The secret is never shown in a message.
 */
WhoopClient *
whoop_get_client(Oid serverid, Oid userid)
{
	UserMapping *mapping;
	WhoopClient *client = palloc0(sizeof(WhoopClient));
	ListCell   *cell;

	/* GetUserMapping's own error names neither the server nor a remedy */
	if (!SearchSysCacheExists2(USERMAPPINGUSERSERVER, ObjectIdGetDatum(userid),
							   ObjectIdGetDatum(serverid)) &&
		!SearchSysCacheExists2(USERMAPPINGUSERSERVER, ObjectIdGetDatum(InvalidOid),
							   ObjectIdGetDatum(serverid)))
	{
		const char *server_name = GetForeignServer(serverid)->servername;
		char	   *role = GetUserNameFromId(userid, true);

		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("user mapping for role \"%s\" on server \"%s\" does not exist",
						role ? role : "?", server_name),
				 errdetail("The user mapping holds the WHOOP app's client credentials, which every token request needs."),
				 errhint("Create one: CREATE USER MAPPING FOR %s SERVER %s OPTIONS (client_id '...', client_secret '...');",
						 userid == GetUserId() || role == NULL ? "CURRENT_USER"
						 : quote_identifier(role),
						 quote_identifier(server_name))));
	}
	mapping = GetUserMapping(userid, serverid);

	foreach(cell, mapping->options)
	{
		DefElem    *def = (DefElem *) lfirst(cell);

		if (strcmp(def->defname, "client_id") == 0)
			client->client_id = defGetString(def);
		else if (strcmp(def->defname, "client_secret") == 0)
			client->client_secret = defGetString(def);
	}
	if (client->client_id == NULL || client->client_secret == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("user mapping for role \"%s\" on server \"%s\" lacks %s",
						GetUserNameFromId(userid, true) ? GetUserNameFromId(userid, true) : "?",
						GetForeignServer(serverid)->servername,
						client->client_id == NULL ? "client_id" : "client_secret"),
				 errhint("Set the WHOOP app's credentials: ALTER USER MAPPING FOR ... SERVER ... OPTIONS (ADD client_id '...', ADD client_secret '...').")));
	return client;
}

/*
 * whoop_table_endpoint_name returns a foreign table's endpoint option,
 * defaulting to the table's own name.
 */
char *
whoop_table_endpoint_name(Oid foreigntableid)
{
	ForeignTable *table = GetForeignTable(foreigntableid);
	ListCell   *cell;

	foreach(cell, table->options)
	{
		DefElem    *def = (DefElem *) lfirst(cell);

		if (strcmp(def->defname, "endpoint") == 0)
			return defGetString(def);
	}
	return get_rel_name(foreigntableid);
}

/*
 * whoop_table_update_window returns the update window declared by the
 * table, else by its server, in microseconds; -1 when neither declares one.
 */
int64
whoop_table_update_window(Oid foreigntableid, const WhoopServer *server)
{
	ForeignTable *table = GetForeignTable(foreigntableid);
	ListCell   *cell;

	foreach(cell, table->options)
	{
		DefElem    *def = (DefElem *) lfirst(cell);

		if (strcmp(def->defname, "update_window") == 0)
			return whoop_parse_interval_us(defGetString(def), def->defname);
	}
	return server->update_window_us;
}
