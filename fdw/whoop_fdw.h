/*-------------------------------------------------------------------------
 *
 * whoop_fdw.h
 *		  Declarations shared by the files of whoop_fdw.
 *
 * Every .c file includes postgres.h first, then this header.
 *
 * Dependencies point one way, downward.  The files stand in layers, top
 * down; a file uses functions and variables of files on lower lines only,
 * never of its neighbours on the same line or of anything above, so there
 * is no cycle (test/suites/test_layering.py checks this against the code):
 *
 *	whoop_fdw.c account.c procedure.c webhook.c -- FDW callbacks; SQL functions
 *	fetch.c pushdown.c		-- an API call with its token; request planning
 *	oauth.c					-- token cache, serialized refresh, token hand-off
 *	transport.c option.c	-- retries, 429 waits, the budget's waits, counters; settings
 *	http.c token_writer.c record.c token.c webhook_parse.c
 *	json.c parse.c endpoint.c store.c rolling.c budget.c bulk_load.c jsonb_number.c
 *
 * http.c (the wire) and transport.c (the policy: what is retried, waited
 * for and counted) are the transport layer; the callers above it only say
 * what an answer means to them.  What WHOOP sends is read by json, parse,
 * token and webhook_parse, which need neither libcurl nor the server's
 * catalogs, so test/fuzz/ can link them alone.  libcurl appears only in
 * http.c and json-c only in json.c; rolling.c, bulk_load.c (the
 * parallel load of a first build) and jsonb_number.c (the staging views'
 * reader of scores) stand apart.  budget.c
 * keeps the app's request budget in shared memory and only counts:
 * transport.c waits or refuses on its word.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WHOOP_FDW_H
#define WHOOP_FDW_H

#include "access/attnum.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "nodes/bitmapset.h"
#include "nodes/pg_list.h"
#include "utils/palloc.h"

#ifndef WHOOP_FDW_VERSION
#define WHOOP_FDW_VERSION "unknown"
#endif

#define WHOOP_USER_AGENT "whoop_fdw/" WHOOP_FDW_VERSION

/* WHOOP's own limits: a page holds at most 25 records */
#define WHOOP_MAX_PAGE_SIZE 25

/* scopes requested at authorization; offline is what yields a refresh token */
#define WHOOP_SCOPES \
	"offline read:recovery read:cycles read:workout read:sleep read:profile read:body_measurement"

/*
 * The SQL objects the C code names, in one place: the token table (queried
 * by store.c, named in messages), the webhook queue (webhook.c) and the
 * functions and view that hints point users to.
 */
#define WHOOP_ACCOUNT_SCHEMA		"whoop_internal"
#define WHOOP_ACCOUNT_TABLE			"account"
#define WHOOP_ACCOUNT_RELATION		WHOOP_ACCOUNT_SCHEMA "." WHOOP_ACCOUNT_TABLE
#define WHOOP_SQL_AUTHORIZE_URL		"whoop.authorize_url()"
#define WHOOP_SQL_CONNECT_ACCOUNT	"whoop.connect_account()"
#define WHOOP_SQL_ADD_ACCOUNT		"whoop.add_account()"
#define WHOOP_SQL_DISCONNECT_ACCOUNT "whoop.disconnect_account()"
#define WHOOP_SQL_CLAIM_ACCOUNTS	"whoop.claim_accounts()"
#define WHOOP_SQL_ACCOUNTS			"whoop.accounts"
#define WHOOP_WEBHOOK_QUEUE_RELATION "whoop.webhook_events"


/* ---------------------------------------------------------------------
 * option.c -- table-driven validation and the resolved server settings
 * ---------------------------------------------------------------------
 */

/*
 * The classes of requests, in the order they lose the day's budget when it
 * runs low: the last class first (whoop_fdw.request_class names them).
 */
typedef enum WhoopRequestClass
{
	WHOOP_CLASS_INTERACTIVE,	/* ad-hoc queries: never reserved against */
	WHOOP_CLASS_WEBHOOK,		/* webhook applies: never reserved against */
	WHOOP_CLASS_CYCLE,			/* today's cycle and profile polling */
	WHOOP_CLASS_RECONCILE,		/* re-reading the update window */
	WHOOP_CLASS_BACKFILL		/* history */
} WhoopRequestClass;

#define WHOOP_REQUEST_CLASSES 5

/* Settings of one WHOOP server (one WHOOP app), defaults applied. */
typedef struct WhoopServer
{
	Oid			serverid;
	char	   *server_name;
	char	   *api_url;		/* no trailing slash */
	char	   *oauth_url;		/* no trailing slash */
	int			timeout_ms;
	int			connect_timeout_ms;
	int			max_retries;
	int			page_size;
	int64		update_window_us;	/* -1: not declared */
	int			max_sync_deletions; /* per account and endpoint and sync */
	int64		cycle_poll_interval_us; /* -1: cycles every sync */
	bool		poll_cycles_on_event;	/* the applier polls marked cycles */
	int64		reconcile_interval_us;	/* -1: sleeps, workouts, recoveries every sync */
	int64		webhook_retention_us;	/* applied webhook events are kept this long */
	int64		recovery_follow_up_us;	/* a scored sleep's recovery event is awaited this long */
	int64		profile_poll_interval_us;	/* 0: profile every sync */
	int			backfill_first_days;	/* a member's first sync: newest days */
	int			backfill_chunk_days;	/* then older history, chunks of days */
	int			backfill_max_chunks;	/* chunk fetches per sync; -1: no limit */
	char	   *app_client_id;	/* the app's client_id, or NULL: no mapping */
	int			requests_per_minute;	/* the budget's two windows */
	int			requests_per_day;
	/* per class: percent of requests_per_day it must leave to the others */
	int			day_reserve_pct[WHOOP_REQUEST_CLASSES];
	/* per class: percent of the minute's requests it must leave to the others */
	int			minute_reserve_pct[WHOOP_REQUEST_CLASSES];
} WhoopServer;

/* OAuth client credentials from a user mapping. */
typedef struct WhoopClient
{
	char	   *client_id;
	char	   *client_secret;
} WhoopClient;

extern WhoopServer *whoop_get_server(Oid serverid);
extern WhoopServer *whoop_get_server_by_name(const char *name, bool check_usage);
extern WhoopClient *whoop_get_client(Oid serverid, Oid userid);
extern int64 whoop_table_update_window(Oid foreigntableid, const WhoopServer *server);
extern char *whoop_table_endpoint_name(Oid foreigntableid);
extern int64 whoop_parse_interval_us(const char *value, const char *option);
extern void whoop_parse_reserve(const char *option, const char *value, int *pct);


/* ---------------------------------------------------------------------
 * endpoint.c -- the six WHOOP record types
 * ---------------------------------------------------------------------
 */

/* How a column gets its value. */
typedef enum WhoopFieldSource
{
	WHOOP_FIELD_JSON,			/* a leaf of the API record */
	WHOOP_FIELD_RAW,			/* the whole record as jsonb */
	WHOOP_FIELD_ACCOUNT_USER_ID /* the account's user_id (record lacks one) */
} WhoopFieldSource;

typedef struct WhoopField
{
	const char *name;			/* column name: the leaf name of the field */
	const char *path;			/* dotted path inside the record */
	const char *sql_type;		/* column type IMPORT FOREIGN SCHEMA uses */
	WhoopFieldSource source;
} WhoopField;

typedef struct WhoopEndpoint
{
	const char *name;			/* foreign table name and endpoint option */
	const char *collection_path;	/* paged collection, or NULL */
	const char *single_path;	/* one object per account, or NULL */
	const char *by_id_path;		/* printf pattern with the id, or NULL */
	const char *by_id_column;	/* column whose equality selects by_id_path */
	bool		has_time_range; /* has start/end columns the API filters */
	double		rows_per_day;	/* planner estimate per account */
	const WhoopField *fields;
	int			nfields;
} WhoopEndpoint;

extern const WhoopEndpoint whoop_endpoints[];
extern const int whoop_endpoint_count;
extern const WhoopEndpoint *whoop_endpoint_by_name(const char *name);
extern int	whoop_endpoint_field(const WhoopEndpoint *endpoint, const char *column);
extern char *whoop_endpoint_names(void);


/* ---------------------------------------------------------------------
 * json.c -- the only file that knows json-c
 * ---------------------------------------------------------------------
 */

typedef struct WhoopJsonDoc WhoopJsonDoc;

typedef enum WhoopJsonKind
{
	WHOOP_JSON_ABSENT,
	WHOOP_JSON_NULL,
	WHOOP_JSON_BOOL,
	WHOOP_JSON_INT,
	WHOOP_JSON_DOUBLE,
	WHOOP_JSON_STRING,
	WHOOP_JSON_COMPOSITE		/* object or array */
} WhoopJsonKind;

typedef struct WhoopJsonValue
{
	WhoopJsonKind kind;
	bool		b;
	int64		i;
	double		d;
	const char *s;				/* STRING: NUL-terminated, owned by the doc */
	int			len;
} WhoopJsonValue;

extern WhoopJsonDoc *whoop_json_parse(const char *data, size_t len,
									  MemoryContext owner, const char *what);
extern int	whoop_json_record_count(WhoopJsonDoc *doc);
extern char *whoop_json_next_token(WhoopJsonDoc *doc);
extern void whoop_json_field(WhoopJsonDoc *doc, int record, const char *path,
							 WhoopJsonValue *value);
extern bool whoop_json_members_are(WhoopJsonDoc *doc, const char *const *names,
								   int count);
extern char *whoop_json_record_text(WhoopJsonDoc *doc, int record);
extern char *whoop_json_value_text(const WhoopJsonValue *value);


/* ---------------------------------------------------------------------
 * record.c -- one JSON record into a tuple
 * ---------------------------------------------------------------------
 */

/* How a column's datum is produced from JSON. */
typedef enum WhoopConversion
{
	WHOOP_CONVERT_INT8,
	WHOOP_CONVERT_INT4,
	WHOOP_CONVERT_FLOAT8,
	WHOOP_CONVERT_BOOL,
	WHOOP_CONVERT_TEXT,
	WHOOP_CONVERT_TIMESTAMPTZ,
	WHOOP_CONVERT_JSONB,
	WHOOP_CONVERT_GENERIC		/* through the type's input function */
} WhoopConversion;

/* A column the scan fills; the others stay NULL. */
typedef struct WhoopColumn
{
	AttrNumber	attnum;
	const WhoopField *field;
	Oid			type;
	int32		typmod;
	WhoopConversion conversion;
	FmgrInfo	input;
	Oid			ioparam;
} WhoopColumn;

struct FormData_pg_attribute;

extern void whoop_column_init(WhoopColumn *column, const WhoopField *field,
							  struct FormData_pg_attribute *attr);
extern void whoop_record_values(WhoopJsonDoc *doc, int record, int64 account_user_id,
								const WhoopEndpoint *endpoint,
								WhoopColumn *columns, int ncolumns,
								Datum *values, bool *nulls);


/* ---------------------------------------------------------------------
 * http.c -- the one reused libcurl handle: one exchange on the wire
 * ---------------------------------------------------------------------
 */

typedef struct WhoopRateLimit
{
	int			limit;			/* -1: header absent */
	int			remaining;
	int			reset_s;
	/* from the Limit header's "n;window=s" entries, when it has them */
	double		window_s[2];	/* the shortest and longest window; -1: none */
	int			described;		/* 0/1: the window Remaining is of; -1: unknown */
} WhoopRateLimit;

typedef struct WhoopHttpRequest
{
	const char *method;			/* GET, POST or DELETE */
	const char *url;
	const char *bearer;			/* access token, or NULL */
	const char *form;			/* urlencoded POST body, or NULL */
	int			timeout_ms;
	int			connect_timeout_ms;
} WhoopHttpRequest;

typedef struct WhoopHttpResponse
{
	long		status;			/* 0 when no HTTP answer arrived */
	bool		transport_failed;	/* timeout, reset, refused, cut body */
	char		transport_error[256];
	char	   *body;			/* NUL-terminated, palloc'd */
	size_t		body_len;
	WhoopRateLimit rate;
	double		elapsed_ms;
} WhoopHttpResponse;

extern void whoop_http_request(const WhoopHttpRequest *request,
							   WhoopHttpResponse *response);
extern bool whoop_http_url_acceptable(const char *url, bool allow_query,
									  const char **why);
extern char *whoop_http_escape(const char *text);
extern uint32 whoop_wait_event(void);


/* ---------------------------------------------------------------------
 * parse.c -- parsers of header lines, timestamps and body excerpts
 * ---------------------------------------------------------------------
 */

extern void whoop_rate_limit_init(WhoopRateLimit *rate);
extern bool whoop_parse_rate_limit_header(const char *line, size_t len,
										  WhoopRateLimit *rate);
extern bool whoop_parse_timestamp(const char *text, int len, TimestampTz *result);
extern char *whoop_body_excerpt(const char *body, size_t len);
extern bool whoop_body_looks_json(const char *body, size_t len);


/* ---------------------------------------------------------------------
 * token.c -- the token endpoint's answers
 * ---------------------------------------------------------------------
 */

/* The token set an OAuth token endpoint answers with. */
typedef struct WhoopTokens
{
	char	   *access_token;
	char	   *refresh_token;	/* NULL when none was granted */
	int			expires_in;
	char	   *scope;
} WhoopTokens;

/* Whom the token endpoint blamed for refusing a request. */
typedef enum WhoopRefusal
{
	WHOOP_REFUSED_GRANT,		/* invalid_grant: the code or refresh token */
	WHOOP_REFUSED_CLIENT,		/* invalid_client: the app's credentials */
	WHOOP_REFUSED_OTHER,		/* another OAuth error */
	WHOOP_REFUSED_NOT_OAUTH		/* no OAuth error at all: not a token endpoint? */
} WhoopRefusal;

extern WhoopTokens *whoop_oauth_parse_tokens(const char *body, size_t len);
extern char *whoop_oauth_rejection(long status, const char *body, size_t len);
extern WhoopRefusal whoop_oauth_refusal(long status, const char *body, size_t len);
extern bool whoop_oauth_text_valid(const char *token, int len);


/* ---------------------------------------------------------------------
 * webhook_parse.c -- a webhook's body and signature timestamp
 * ---------------------------------------------------------------------
 */

/* WHOOP's bodies are about 150 bytes; anything near this is not WHOOP's */
#define WHOOP_WEBHOOK_MAX_BODY 4096
#define WHOOP_WEBHOOK_MAX_TRACE_ID 128
#define WHOOP_UUID_LENGTH 36

/* One event as WHOOP posts it: who, which record, what happened. */
typedef struct WhoopWebhookEvent
{
	int64		user_id;
	char		record_id[WHOOP_UUID_LENGTH + 1];	/* lower-case, hyphenated */
	const char *type;			/* one of whoop_webhook_types */
	char	   *trace_id;
} WhoopWebhookEvent;

extern const char *const whoop_webhook_types[];
extern const int whoop_webhook_type_count;
extern void whoop_webhook_parse(const char *body, size_t len, WhoopWebhookEvent *event);
extern bool whoop_webhook_parse_timestamp(const char *text, size_t len, int64 *ms);


/* ---------------------------------------------------------------------
 * store.c -- the account table: reads, writes, the refresh lock
 * ---------------------------------------------------------------------
 */

typedef struct WhoopStoredAccount
{
	bool		found;
	int64		user_id;
	Oid			owner;
	char	   *status;
	char	   *refresh_token;
	char	   *access_token;
	TimestampTz access_expires_at;
	int64		access_lifetime_us; /* expires_in it was issued with; -1 unknown */
	int64		token_version;
	int64		home_system_identifier; /* where its tokens were stored */
	char	   *home_database;
	bool		at_home;		/* ... which is this cluster and database */
} WhoopStoredAccount;

typedef struct WhoopProfile
{
	int64		user_id;
	char	   *email;
	char	   *first_name;
	char	   *last_name;
} WhoopProfile;

typedef enum WhoopStoreOp
{
	WHOOP_STORE_SAVE_TOKENS,	/* link an account, or store its rotated tokens */
	WHOOP_STORE_MARK_FAILED,	/* record why the account needs attention */
	WHOOP_STORE_FORGET			/* delete the account and its tokens */
} WhoopStoreOp;

/* One change to one account; token_writer.c makes it durable at once. */
typedef struct WhoopStoreWrite
{
	WhoopStoreOp op;
	const char *server_name;
	int64		user_id;
	Oid			owner;			/* SAVE_TOKENS: the role it belongs to */
	const WhoopTokens *tokens;	/* SAVE_TOKENS */
	const WhoopProfile *profile;	/* SAVE_TOKENS: of a new link, or NULL */
	const char *status;			/* MARK_FAILED */
	const char *error;			/* MARK_FAILED, or NULL */
} WhoopStoreWrite;

extern Oid	whoop_store_owner(void);
extern void whoop_store_read(const char *server_name, int64 user_id,
							 WhoopStoredAccount *account);
extern List *whoop_store_usable_accounts(const char *server_name, Oid userid);
extern void whoop_store_write(const WhoopStoreWrite *write);
extern int64 whoop_store_claim(void);
extern void whoop_account_lock(const char *server_name, int64 user_id);
extern void whoop_account_unlock(const char *server_name, int64 user_id);


/* ---------------------------------------------------------------------
 * token_writer.c -- a background worker that commits a store write
 * ---------------------------------------------------------------------
 */

typedef struct WhoopTokenWriter WhoopTokenWriter;

extern WhoopTokenWriter *whoop_token_writer_start(void);
extern void whoop_token_writer_commit(WhoopTokenWriter *writer,
									  const WhoopStoreWrite *write);
extern void whoop_token_writer_abandon(WhoopTokenWriter *writer);


/* ---------------------------------------------------------------------
 * transport.c -- sending a request: pacing, 429 waits, retries, counters
 * ---------------------------------------------------------------------
 */

/* What this backend, or one scan, has sent. */
typedef struct WhoopFetchStats
{
	int			requests;		/* HTTP requests sent, retries included */
	int			pages;			/* successful pages (counted by fetch.c) */
	int			retries;
	int			throttled;		/* 429 answers waited out */
	double		paced_ms;		/* time spent waiting for the budget */
} WhoopFetchStats;

/* What a caller makes of an answer that is neither a 429 nor a 5xx. */
typedef enum WhoopVerdict
{
	WHOOP_TAKE,					/* final: whoop_send returns it */
	WHOOP_RETRY,				/* transient: back off, send again, boundedly */
	WHOOP_RESEND				/* the caller changed the request: send it now */
} WhoopVerdict;

typedef struct WhoopSend WhoopSend;

/* One kind of request: what its answers mean, and how its failure reads. */
typedef struct WhoopSendKind
{
	WhoopVerdict (*classify) (WhoopSend *send, const WhoopHttpResponse *response);
	bool		token_answer;	/* sent with interrupts held, never quoted */
	const char *unreachable;	/* errmsg when the last attempt got no answer */
	const char *unreachable_hint;
	const char *failing;		/* "<failing> failed with HTTP n" after 5xx */
	const char *failing_hint;
} WhoopSendKind;

/* One request on its way: the caller fills the first part. */
struct WhoopSend
{
	const WhoopSendKind *kind;
	WhoopHttpRequest request;	/* timeouts are set from the server */
	const char *label;			/* "GET /v2/cycle": names it in messages */
	void	   *arg;			/* the caller's, for kind->classify */
	WhoopFetchStats *stats;		/* counted here as well, or NULL */
	int			failed_attempts;	/* set: attempts that were retried */
	char	   *failures;		/* set: what they got, or NULL */
};

extern void whoop_send(const WhoopServer *server, WhoopSend *send,
					   WhoopHttpResponse *response);
extern WhoopFetchStats whoop_backend_fetch_stats;


/* ---------------------------------------------------------------------
 * oauth.c -- token endpoint, per-backend access-token cache, refresh
 * ---------------------------------------------------------------------
 */

/* A token request whose answer is saved before anything else can fail. */
typedef struct WhoopGrant
{
	char	   *form;			/* the request; wiped once sent */
	int64		user_id;		/* the account refreshed (identify is NULL) */
	Oid			owner;			/* role the account belongs to */
	/* linking: learns whose tokens they are, and may refuse, before saving */
	WhoopProfile *(*identify) (const WhoopServer *server,
							   const WhoopTokens *tokens, void *arg);
	void	   *identify_arg;
	char	   *rejection;		/* set when WHOOP refused the request */
	WhoopRefusal refusal;		/* ... and whom it blamed */
} WhoopGrant;

extern char *whoop_access_token(const WhoopServer *server, int64 user_id,
								const char *rejected_token);
extern uint64 whoop_oauth_refreshes(void);
extern WhoopTokens *whoop_oauth_grant(const WhoopServer *server, WhoopGrant *grant);
extern void whoop_oauth_forget(const WhoopServer *server, int64 user_id);
extern char *whoop_oauth_form(const WhoopClient *client, const char *grant_type,
							  const char *grant_field, const char *grant_value,
							  const char *redirect_uri);


/* ---------------------------------------------------------------------
 * fetch.c -- an API call with the account's token
 * ---------------------------------------------------------------------
 */

extern WhoopJsonDoc *whoop_fetch(const WhoopServer *server, int64 user_id,
								 const char *bearer, const char *path_and_query,
								 bool missing_ok, MemoryContext doc_context,
								 WhoopFetchStats *stats);
extern bool whoop_revoke(const WhoopServer *server, const char *bearer);
extern void whoop_check_api_url(const WhoopServer *server);


/* ---------------------------------------------------------------------
 * pushdown.c -- quals turned into a request plan (prefilter)
 * ---------------------------------------------------------------------
 */

/* Which request parameter a pushed qual feeds. */
typedef enum WhoopPushKind
{
	WHOOP_PUSH_LOWER,			/* API start >= value */
	WHOOP_PUSH_LOWER_EXCLUSIVE, /* API start > value */
	WHOOP_PUSH_LOWER_BY_END,	/* "end" >= value: API start, one ms earlier */
	WHOOP_PUSH_LOWER_BY_END_EXCLUSIVE,	/* "end" > value: likewise */
	WHOOP_PUSH_UPPER,			/* API end: record start < value */
	WHOOP_PUSH_UPPER_INCLUSIVE, /* API end: record start <= value */
	WHOOP_PUSH_UPDATED_SINCE,	/* updated_at >= value: start = value - window */
	WHOOP_PUSH_ID,				/* by-id endpoint, scalar */
	WHOOP_PUSH_ID_ARRAY,		/* by-id endpoint, array of ids */
	WHOOP_PUSH_USER,			/* account choice, scalar */
	WHOOP_PUSH_USER_ARRAY		/* account choice, array */
} WhoopPushKind;

/*
 * The plan of a scan.  The planner builds it (the fields marked "planning"
 * live only that long); fdw_private carries the rest to the executor, and
 * fdw_exprs the pushed expressions.
 */
typedef struct WhoopScanPlan
{
	const WhoopEndpoint *endpoint;
	int64		update_window_us;	/* -1: not declared */
	List	   *retrieved_attrs;	/* attnums to fill */
	List	   *pushed_kinds;	/* WhoopPushKind per pushed entry */
	List	   *pushed_exprs;	/* (clause, value) per entry: fdw_exprs */
	int			limit;			/* rows the query needs, -1: all */
	Bitmapset  *attrs_used;		/* planning: columns selected or rechecked */
	List	   *pushed_quals;	/* planning: RestrictInfos pushed */
	double		rows;			/* planning: estimates */
	double		fetched_rows;
	double		requests;
	double		startup_cost;
	double		total_cost;
} WhoopScanPlan;

/* One request of a scan; collections page on from it with nextToken. */
typedef struct WhoopScanRequest
{
	int64		user_id;
	char	   *path;			/* relative to api_url, with query */
	char	   *id;				/* by-id lookups: the id, else NULL */
	bool		missing_ok;		/* 404 means no row */
} WhoopScanRequest;

/* The requests of a scan, for the values its pushed expressions had. */
typedef struct WhoopRequests
{
	List	   *requests;		/* WhoopScanRequest, in the order to send */
	List	   *descriptions;	/* distinct requests, for EXPLAIN */
	int			naccounts;		/* accounts asked */
} WhoopRequests;

struct PlannerInfo;
struct RelOptInfo;
struct TupleDescData;

extern WhoopScanPlan *whoop_plan_scan(struct PlannerInfo *root,
									  struct RelOptInfo *baserel,
									  const WhoopEndpoint *endpoint,
									  const WhoopServer *server,
									  int64 update_window_us);
extern List *whoop_plan_private(struct PlannerInfo *root, struct RelOptInfo *baserel,
								WhoopScanPlan *plan, struct TupleDescData *desc);
extern WhoopScanPlan *whoop_plan_restore(List *fdw_private, List *fdw_exprs);
extern void whoop_plan_requests(const WhoopScanPlan *plan, const WhoopServer *server,
								List *accounts, const Datum *values, const bool *nulls,
								WhoopRequests *requests);



/* ---------------------------------------------------------------------
 * budget.c -- the app's request budget, shared by every backend
 * ---------------------------------------------------------------------
 */

#define WHOOP_BUDGET_MINUTE 0
#define WHOOP_BUDGET_DAY 1

/* What the budget says to one request. */
typedef enum WhoopBudgetVerdict
{
	WHOOP_BUDGET_GRANTED,		/* a unit of both windows is spent */
	WHOOP_BUDGET_WAIT,			/* nothing spent: ask again after wait_ms */
	WHOOP_BUDGET_REFUSED		/* nothing spent: the rest is reserved */
} WhoopBudgetVerdict;

/* One window of an app's budget, as whoop_internal.request_budget shows it. */
typedef struct WhoopBudgetWindow
{
	int			capacity;
	double		window_s;		/* refills from empty to full in this time */
	double		available;		/* now */
	TimestampTz full_at;		/* when it is full again if nothing is spent */
	int			observed_remaining; /* last header about it; -1: none */
	int			observed_reset_s;
	TimestampTz observed_at;
} WhoopBudgetWindow;

extern int	whoop_request_class;
extern void whoop_budget_init(void);
extern const char *whoop_request_class_name(int request_class);
extern char *whoop_budget_app_key(const WhoopServer *server);
extern WhoopBudgetVerdict whoop_budget_take(const WhoopServer *server, int request_class,
											int64 *wait_ms, double *day_available,
											int *day_reserve);
extern void whoop_budget_answered(const WhoopServer *server, const WhoopRateLimit *rate);
extern void whoop_budget_abandon(void);
extern bool whoop_budget_windows(const WhoopServer *server, WhoopBudgetWindow *windows);

#endif							/* WHOOP_FDW_H */
