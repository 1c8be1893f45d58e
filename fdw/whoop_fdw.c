/*-------------------------------------------------------------------------
 *
 * whoop_fdw.c
 *		  Foreign-data wrapper callbacks for the WHOOP developer API (v2):
 *		  planning, scanning, rescanning, EXPLAIN and IMPORT FOREIGN SCHEMA.
 *
 * A scan turns into a list of requests -- one paged collection per account,
 * by-id lookups, or one object per account -- decided at scan start, when
 * the pushed-down values (constants, parameters, stable expressions) are
 * known.  What to ask is planned in pushdown.c; the callbacks here run
 * that plan.  Records are converted one at a time from the current page; a
 * page's JSON lives in a memory context that is reset when the next page
 * is fetched, and each row's values in one reset per row, so memory does
 * not grow with the size of the scan.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "whoop_fdw.h"

#include "access/table.h"
#include "commands/defrem.h"
#include "commands/explain.h"
#if PG_VERSION_NUM >= 180000
#include "commands/explain_format.h"
#include "commands/explain_state.h"
#endif
#include "executor/executor.h"
#include "foreign/fdwapi.h"
#include "foreign/foreign.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/pathnode.h"
#include "optimizer/planmain.h"
#include "optimizer/restrictinfo.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/ruleutils.h"
#include "utils/tuplestore.h"

#ifdef PG_MODULE_MAGIC_EXT
PG_MODULE_MAGIC_EXT(.name = "whoop_fdw", .version = WHOOP_FDW_VERSION);
#else
PG_MODULE_MAGIC;
#endif

/* executor's per-scan state */
typedef struct WhoopScanState
{
	WhoopServer *server;
	WhoopScanPlan *plan;
	WhoopColumn *columns;
	int			ncolumns;
	List	   *clauses;		/* pushed clauses, for EXPLAIN */
	List	   *values;			/* ExprState of each pushed value */
	Bitmapset  *param_ids;		/* PARAM_EXEC ids the values depend on */

	MemoryContext scan_cxt;		/* lives as long as the scan */
	MemoryContext page_cxt;		/* the current page; reset per page */
	MemoryContext row_cxt;		/* one row's values; reset per row */
	MemoryContext values_cxt;	/* the planned pushed values */

	bool		planned;		/* requests decided */
	bool		complete;		/* every request read to the end */
	WhoopRequests requests;
	int			request_index;	/* next request to send */
	WhoopScanRequest *current;
	char	   *next_token;
	List	   *found_ids;		/* by-id: ids already found */

	WhoopJsonDoc *doc;
	int			doc_records;
	int			next_record;
	int64		rows;

	Datum	   *planned_values; /* the pushed values the requests were made for */
	bool	   *planned_nulls;
	Tuplestorestate *store;		/* rows kept for rescans, or NULL */
	TupleTableSlot *replay_slot;	/* reads the store's minimal tuples */
	bool		replaying;
	WhoopFetchStats stats;
} WhoopScanState;

PG_FUNCTION_INFO_V1(whoop_fdw_handler);
PG_FUNCTION_INFO_V1(whoop_fetch_stats);
PG_FUNCTION_INFO_V1(whoop_request_budget);

/* whoop_fdw.request_class: in the order of WhoopRequestClass */
static const struct config_enum_entry request_class_options[] = {
	{"interactive", WHOOP_CLASS_INTERACTIVE, false},
	{"webhook", WHOOP_CLASS_WEBHOOK, false},
	{"cycle", WHOOP_CLASS_CYCLE, false},
	{"reconcile", WHOOP_CLASS_RECONCILE, false},
	{"backfill", WHOOP_CLASS_BACKFILL, false},
	{NULL, 0, false}
};

void		_PG_init(void);

static void whoopGetForeignRelSize(PlannerInfo *root, RelOptInfo *baserel,
								   Oid foreigntableid);
static void whoopGetForeignPaths(PlannerInfo *root, RelOptInfo *baserel,
								 Oid foreigntableid);
static ForeignScan *whoopGetForeignPlan(PlannerInfo *root, RelOptInfo *baserel,
										Oid foreigntableid, ForeignPath *best_path,
										List *tlist, List *scan_clauses,
										Plan *outer_plan);
static void whoopBeginForeignScan(ForeignScanState *node, int eflags);
static TupleTableSlot *whoopIterateForeignScan(ForeignScanState *node);
static void whoopReScanForeignScan(ForeignScanState *node);
static void whoopEndForeignScan(ForeignScanState *node);
static void whoopExplainForeignScan(ForeignScanState *node, ExplainState *es);
static List *whoopImportForeignSchema(ImportForeignSchemaStmt *stmt, Oid serverOid);

static void check_import_name(const char *name, const char *prefix, bool limit_to);
static const WhoopEndpoint *table_endpoint(Oid foreigntableid);
static void check_columns(Relation rel, const WhoopEndpoint *endpoint);
static Bitmapset *exec_param_ids(Node *node);
static bool exec_param_walker(Node *node, Bitmapset **ids);
static void evaluate_values(WhoopScanState *state, ExprContext *econtext,
							MemoryContext target, Datum **values, bool **nulls);
static bool values_unchanged(WhoopScanState *state, ExprContext *econtext);
static void plan_requests(WhoopScanState *state, ExprContext *econtext, bool explain_only);
static bool fetch_next_page(WhoopScanState *state);

/*
 * whoop_fdw_handler returns the FdwRoutine of whoop_fdw.
 */
Datum
whoop_fdw_handler(PG_FUNCTION_ARGS)
{
	FdwRoutine *routine = makeNode(FdwRoutine);

	routine->GetForeignRelSize = whoopGetForeignRelSize;
	routine->GetForeignPaths = whoopGetForeignPaths;
	routine->GetForeignPlan = whoopGetForeignPlan;
	routine->BeginForeignScan = whoopBeginForeignScan;
	routine->IterateForeignScan = whoopIterateForeignScan;
	routine->ReScanForeignScan = whoopReScanForeignScan;
	routine->EndForeignScan = whoopEndForeignScan;
	routine->ExplainForeignScan = whoopExplainForeignScan;
	routine->ImportForeignSchema = whoopImportForeignSchema;

	PG_RETURN_POINTER(routine);
}

/*
 * _PG_init defines whoop_fdw.request_class and, when the library is being
 * preloaded, asks for the request budget's shared memory.
 */
void
_PG_init(void)
{
	DefineCustomEnumVariable("whoop_fdw.request_class",
							 "The class of the WHOOP requests this session sends.",
							 "When the day's request budget runs low, backfill stops first, then reconcile, then cycle; interactive and webhook requests are kept longest.",
							 &whoop_request_class,
							 WHOOP_CLASS_INTERACTIVE,
							 request_class_options,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);
#if PG_VERSION_NUM >= 150000
	MarkGUCPrefixReserved("whoop_fdw");
#endif
	whoop_budget_init();
}

/*
 * whoop_request_budget returns the request budget of a server's app: one
 * row for the minute window and one for the day.
 */
Datum
whoop_request_budget(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	WhoopServer *server = whoop_get_server_by_name(NameStr(*PG_GETARG_NAME(0)), true);
	WhoopBudgetWindow windows[2];
	bool		shared = whoop_budget_windows(server, windows);
	char	   *key = whoop_budget_app_key(server);

	InitMaterializedSRF(fcinfo, 0);
	for (int w = 0; w < 2; w++)
	{
		Datum		values[10];
		bool		nulls[10] = {0};
		bool		observed = windows[w].observed_remaining >= 0;

		values[0] = CStringGetTextDatum(server->server_name);
		values[1] = CStringGetTextDatum(key);
		values[2] = CStringGetTextDatum(w == WHOOP_BUDGET_MINUTE ? "minute" : "day");
		values[3] = Int32GetDatum(windows[w].capacity);
		values[4] = Float8GetDatum(windows[w].available);
		values[5] = TimestampTzGetDatum(windows[w].full_at);
		values[6] = Int32GetDatum(windows[w].observed_remaining);
		nulls[6] = !observed;
		values[7] = Int32GetDatum(windows[w].observed_reset_s);
		nulls[7] = !observed;
		values[8] = TimestampTzGetDatum(windows[w].observed_at);
		nulls[8] = !observed;
		values[9] = BoolGetDatum(shared);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * whoop_fetch_stats reports this backend's WHOOP API calls so far.
 */
Datum
whoop_fetch_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[5];
	bool		nulls[5] = {false, false, false, false, false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	values[0] = Int64GetDatum(whoop_backend_fetch_stats.requests);
	values[1] = Int64GetDatum(whoop_backend_fetch_stats.pages);
	values[2] = Int64GetDatum(whoop_backend_fetch_stats.retries);
	values[3] = Int64GetDatum(whoop_backend_fetch_stats.throttled);
	values[4] = Float8GetDatum(whoop_backend_fetch_stats.paced_ms);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

/*
 * table_endpoint returns the endpoint a foreign table reads.
 */
static const WhoopEndpoint *
table_endpoint(Oid foreigntableid)
{
	char	   *name = whoop_table_endpoint_name(foreigntableid);
	const WhoopEndpoint *endpoint = whoop_endpoint_by_name(name);

	if (endpoint == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_TABLE_NOT_FOUND),
				 errmsg("foreign table \"%s\" does not name a WHOOP endpoint",
						get_rel_name(foreigntableid)),
				 errhint("Set OPTIONS (endpoint '...') to one of: %s.",
						 whoop_endpoint_names())));
	return endpoint;
}

/*
 * check_columns makes sure every column of the table is a field of the
 * endpoint, so a typo is reported instead of reading as NULL forever.
 */
static void
check_columns(Relation rel, const WhoopEndpoint *endpoint)
{
	TupleDesc	desc = RelationGetDescr(rel);

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute attr = TupleDescAttr(desc, i);

		if (attr->attisdropped)
			continue;
		if (whoop_endpoint_field(endpoint, NameStr(attr->attname)) < 0)
		{
			StringInfoData valid;

			initStringInfo(&valid);
			for (int f = 0; f < endpoint->nfields; f++)
				appendStringInfo(&valid, "%s%s", f > 0 ? ", " : "",
								 endpoint->fields[f].name);
			ereport(ERROR,
					(errcode(ERRCODE_FDW_COLUMN_NAME_NOT_FOUND),
					 errmsg("column \"%s\" of foreign table \"%s\" is not a field of WHOOP endpoint \"%s\"",
							NameStr(attr->attname), RelationGetRelationName(rel),
							endpoint->name),
					 errhint("Columns of %s are: %s.", endpoint->name, valid.data)));
		}
	}
}

/*
 * whoopGetForeignRelSize checks the table and plans the scan (pushdown.c),
 * which gives the row estimate.
 */
static void
whoopGetForeignRelSize(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid)
{
	const WhoopEndpoint *endpoint = table_endpoint(foreigntableid);
	WhoopServer *server = whoop_get_server(GetForeignTable(foreigntableid)->serverid);
	Relation	rel;
	WhoopScanPlan *plan;

	rel = table_open(foreigntableid, NoLock);
	check_columns(rel, endpoint);
	table_close(rel, NoLock);

	plan = whoop_plan_scan(root, baserel, endpoint, server,
						   whoop_table_update_window(foreigntableid, server));
	baserel->fdw_private = plan;
	baserel->rows = plan->rows;
}

/*
 * whoopGetForeignPaths offers the one way to scan: asking the API, at the
 * cost the plan estimated.
 */
static void
whoopGetForeignPaths(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid)
{
	WhoopScanPlan *plan = (WhoopScanPlan *) baserel->fdw_private;

	add_path(baserel, (Path *) create_foreignscan_path(root, baserel, NULL,
													   baserel->rows,
#if PG_VERSION_NUM >= 180000
													   0,	/* disabled_nodes */
#endif
													   plan->startup_cost,
													   plan->total_cost,
													   NIL, NULL, NULL,
#if PG_VERSION_NUM >= 170000
													   NIL, /* fdw_restrictinfo */
#endif
													   NIL));
}

/*
 * whoopGetForeignPlan builds the ForeignScan.  Every qual stays a local
 * qual: pushdown only narrows what is asked of the API.
 */
static ForeignScan *
whoopGetForeignPlan(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid,
					ForeignPath *best_path, List *tlist, List *scan_clauses,
					Plan *outer_plan)
{
	WhoopScanPlan *plan = (WhoopScanPlan *) baserel->fdw_private;
	Relation	rel = table_open(foreigntableid, NoLock);
	List	   *fdw_private = whoop_plan_private(root, baserel, plan,
												 RelationGetDescr(rel));

	table_close(rel, NoLock);
	return make_foreignscan(tlist, extract_actual_clauses(scan_clauses, false),
							baserel->relid, plan->pushed_exprs, fdw_private,
							NIL, NIL, outer_plan);
}

/*
 * exec_param_walker collects the PARAM_EXEC ids an expression reads.
 */
static bool
exec_param_walker(Node *node, Bitmapset **ids)
{
	if (node == NULL)
		return false;
	if (IsA(node, Param) && ((Param *) node)->paramkind == PARAM_EXEC)
		*ids = bms_add_member(*ids, ((Param *) node)->paramid);
	return expression_tree_walker(node, exec_param_walker, ids);
}

static Bitmapset *
exec_param_ids(Node *node)
{
	Bitmapset  *ids = NULL;

	(void) exec_param_walker(node, &ids);
	return ids;
}

/*
 * whoopBeginForeignScan prepares the scan; requests are decided on the
 * first fetch, when parameter values are known.
 */
static void
whoopBeginForeignScan(ForeignScanState *node, int eflags)
{
	ForeignScan *plan = (ForeignScan *) node->ss.ps.plan;
	EState	   *estate = node->ss.ps.state;
	Relation	rel = node->ss.ss_currentRelation;
	TupleDesc	desc = RelationGetDescr(rel);
	WhoopScanState *state = palloc0(sizeof(WhoopScanState));
	const WhoopEndpoint *endpoint;
	ListCell   *cell;
	int			i;

	node->fdw_state = state;
	state->server = whoop_get_server(GetForeignTable(RelationGetRelid(rel))->serverid);
	state->plan = whoop_plan_restore(plan->fdw_private, plan->fdw_exprs);
	endpoint = state->plan->endpoint;

	state->ncolumns = list_length(state->plan->retrieved_attrs);
	state->columns = palloc0(sizeof(WhoopColumn) * Max(state->ncolumns, 1));
	i = 0;
	foreach(cell, state->plan->retrieved_attrs)
	{
		Form_pg_attribute attr = TupleDescAttr(desc, lfirst_int(cell) - 1);
		int			field = whoop_endpoint_field(endpoint, NameStr(attr->attname));

		if (field < 0)
			elog(ERROR, "whoop_fdw: column \"%s\" has no field", NameStr(attr->attname));
		whoop_column_init(&state->columns[i++], &endpoint->fields[field], attr);
	}

	for (i = 0; i < list_length(plan->fdw_exprs); i += 2)
	{
		Expr	   *value = list_nth(plan->fdw_exprs, i + 1);

		state->clauses = lappend(state->clauses, list_nth(plan->fdw_exprs, i));
		state->values = lappend(state->values, ExecInitExpr(value, (PlanState *) node));
		state->param_ids = bms_join(state->param_ids, exec_param_ids((Node *) value));
	}

	state->scan_cxt = AllocSetContextCreate(estate->es_query_cxt,
											"whoop_fdw scan", ALLOCSET_DEFAULT_SIZES);
	state->page_cxt = AllocSetContextCreate(state->scan_cxt,
											"whoop_fdw page", ALLOCSET_DEFAULT_SIZES);
	state->row_cxt = AllocSetContextCreate(state->scan_cxt,
										   "whoop_fdw row", ALLOCSET_SMALL_SIZES);
	state->values_cxt = AllocSetContextCreate(state->scan_cxt,
											  "whoop_fdw values", ALLOCSET_SMALL_SIZES);

	/* keep the rows only if a rescan could reuse them */
	if ((eflags & EXEC_FLAG_REWIND) || state->param_ids != NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(estate->es_query_cxt);

		state->store = tuplestore_begin_heap(false, false, work_mem);
		state->replay_slot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
		MemoryContextSwitchTo(old);
	}

	/* EXPLAIN shows the requests; values that need a running plan wait */
	if ((eflags & EXEC_FLAG_EXPLAIN_ONLY) && state->param_ids == NULL)
		plan_requests(state, node->ss.ps.ps_ExprContext, true);
}

/*
 * evaluate_values computes the pushed values for the current parameters,
 * copied into the scan's memory.
 */
static void
evaluate_values(WhoopScanState *state, ExprContext *econtext, MemoryContext target,
				Datum **values, bool **nulls)
{
	int			n = list_length(state->values);
	ListCell   *cell;
	int			i = 0;

	*values = MemoryContextAlloc(target, sizeof(Datum) * Max(n, 1));
	*nulls = MemoryContextAlloc(target, sizeof(bool) * Max(n, 1));
	foreach(cell, state->values)
	{
		ExprState  *expr = (ExprState *) lfirst(cell);
		MemoryContext old = MemoryContextSwitchTo(econtext->ecxt_per_tuple_memory);
		Datum		value = ExecEvalExpr(expr, econtext, &(*nulls)[i]);
		int16		typlen;
		bool		typbyval;

		MemoryContextSwitchTo(target);
		get_typlenbyval(exprType((Node *) expr->expr), &typlen, &typbyval);
		(*values)[i] = (*nulls)[i] ? (Datum) 0 : datumCopy(value, typbyval, typlen);
		MemoryContextSwitchTo(old);
		i++;
	}
}

/*
 * values_unchanged says whether the pushed values are still those the
 * requests were made for.
 */
static bool
values_unchanged(WhoopScanState *state, ExprContext *econtext)
{
	Datum	   *values;
	bool	   *nulls;
	ListCell   *cell;
	int			i = 0;

	if (state->planned_values == NULL)
		return false;
	evaluate_values(state, econtext, econtext->ecxt_per_tuple_memory, &values, &nulls);
	foreach(cell, state->values)
	{
		Oid			type = exprType((Node *) ((ExprState *) lfirst(cell))->expr);
		int16		typlen;
		bool		typbyval;

		get_typlenbyval(type, &typlen, &typbyval);
		if (nulls[i] != state->planned_nulls[i] ||
			(!nulls[i] && !datumIsEqual(values[i], state->planned_values[i],
										typbyval, typlen)))
		{
			ResetExprContext(econtext);
			return false;
		}
		i++;
	}
	ResetExprContext(econtext);
	return true;
}

/*
 * plan_requests evaluates the pushed values and has pushdown.c decide the
 * requests for them and the accounts the user may read.  With
 * EXPLAIN_ONLY it only describes them (and does not insist on linked
 * accounts).
 */
static void
plan_requests(WhoopScanState *state, ExprContext *econtext, bool explain_only)
{
	MemoryContext old = MemoryContextSwitchTo(state->scan_cxt);
	List	   *accounts;

	state->request_index = 0;
	MemoryContextReset(state->values_cxt);
	evaluate_values(state, econtext, state->values_cxt, &state->planned_values,
					&state->planned_nulls);
	ResetExprContext(econtext);

	accounts = whoop_store_usable_accounts(state->server->server_name, GetUserId());
	if (accounts == NIL && !explain_only)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
				 errmsg("no WHOOP account is linked to server \"%s\" for role \"%s\"",
						state->server->server_name, GetUserNameFromId(GetUserId(), false)),
				 errhint("Link one with " WHOOP_SQL_CONNECT_ACCOUNT " or " WHOOP_SQL_ADD_ACCOUNT ".")));
	whoop_plan_requests(state->plan, state->server, accounts, state->planned_values,
						state->planned_nulls, &state->requests);
	state->planned = true;
	MemoryContextSwitchTo(old);
}

/*
 * fetch_next_page reads the next page of the current request, or the first
 * page of the next one.  Returns false when no request is left.
 */
static bool
fetch_next_page(WhoopScanState *state)
{
	MemoryContext old;
	char	   *path;
	WhoopJsonDoc *doc;

	MemoryContextReset(state->page_cxt);
	state->doc = NULL;
	state->doc_records = 0;
	state->next_record = 0;

	if (state->next_token == NULL)
	{
		/* next request, skipping lookups of ids already found */
		for (;;)
		{
			if (state->request_index >= list_length(state->requests.requests))
				return false;
			state->current = list_nth(state->requests.requests, state->request_index++);
			if (state->current->id == NULL ||
				!list_member_ptr(state->found_ids, state->current->id))
				break;
		}
	}

	old = MemoryContextSwitchTo(state->page_cxt);
	path = state->next_token == NULL ? state->current->path
		: psprintf("%s&nextToken=%s", state->current->path,
				   whoop_http_escape(state->next_token));
	doc = whoop_fetch(state->server, state->current->user_id, NULL, path,
					  state->current->missing_ok, state->page_cxt, &state->stats);
	MemoryContextSwitchTo(old);

	if (state->next_token != NULL)
		pfree(state->next_token);
	state->next_token = NULL;
	if (doc == NULL)
		return true;			/* 404: nothing here, go on */

	state->doc = doc;
	state->doc_records = whoop_json_record_count(doc);
	if (state->current->id != NULL)
		state->found_ids = lappend(state->found_ids, state->current->id);
	else
	{
		char	   *token = whoop_json_next_token(doc);

		if (token != NULL)
			state->next_token = MemoryContextStrdup(state->scan_cxt, token);
	}
	return true;
}

/*
 * whoopIterateForeignScan returns the next row: from the current page,
 * fetching the next page when it is used up.
 */
static TupleTableSlot *
whoopIterateForeignScan(ForeignScanState *node)
{
	WhoopScanState *state = (WhoopScanState *) node->fdw_state;
	TupleTableSlot *slot = node->ss.ss_ScanTupleSlot;

	if (state->replaying)
	{
		if (!tuplestore_gettupleslot(state->store, true, false, state->replay_slot))
			return ExecClearTuple(slot);
		return ExecCopySlot(slot, state->replay_slot);
	}

	if (!state->planned)
		plan_requests(state, node->ss.ps.ps_ExprContext, false);

	for (;;)
	{
		if (state->doc != NULL && state->next_record < state->doc_records)
		{
			MemoryContext old;

			ExecClearTuple(slot);
			MemoryContextReset(state->row_cxt);
			old = MemoryContextSwitchTo(state->row_cxt);
			memset(slot->tts_isnull, true, sizeof(bool) * slot->tts_tupleDescriptor->natts);
			whoop_record_values(state->doc, state->next_record, state->current->user_id,
								state->plan->endpoint, state->columns, state->ncolumns,
								slot->tts_values, slot->tts_isnull);
			MemoryContextSwitchTo(old);
			ExecStoreVirtualTuple(slot);
			state->next_record++;
			state->rows++;
			if (state->store != NULL)
				tuplestore_puttupleslot(state->store, slot);
			return slot;
		}
		if (state->plan->limit >= 0 && state->rows >= state->plan->limit)
			break;
		if (!fetch_next_page(state))
		{
			state->complete = true;
			break;
		}
	}
	MemoryContextReset(state->page_cxt);
	state->doc = NULL;
	return ExecClearTuple(slot);
}

/*
 * whoopReScanForeignScan restarts the scan.  When the pushed values did
 * not change (a parameter may be set again to the same value) and the
 * first pass was read to the end, the kept rows are replayed instead of
 * asking WHOOP again.
 */
static void
whoopReScanForeignScan(ForeignScanState *node)
{
	WhoopScanState *state = (WhoopScanState *) node->fdw_state;

	if (state->store != NULL && state->complete &&
		(!bms_overlap(node->ss.ps.chgParam, state->param_ids) ||
		 values_unchanged(state, node->ss.ps.ps_ExprContext)))
	{
		tuplestore_rescan(state->store);
		state->replaying = true;
		return;
	}

	MemoryContextReset(state->page_cxt);
	state->doc = NULL;
	state->doc_records = state->next_record = 0;
	if (state->next_token)
		pfree(state->next_token);
	state->next_token = NULL;
	state->found_ids = NIL;
	state->planned = false;
	state->complete = false;
	state->replaying = false;
	state->rows = 0;
	if (state->store != NULL)
		tuplestore_clear(state->store);
}

/*
 * whoopEndForeignScan frees the scan's memory, and with it any JSON.
 */
static void
whoopEndForeignScan(ForeignScanState *node)
{
	WhoopScanState *state = (WhoopScanState *) node->fdw_state;

	if (state == NULL)
		return;
	if (state->store != NULL)
	{
		tuplestore_end(state->store);
		ExecDropSingleTupleTableSlot(state->replay_slot);
	}
	MemoryContextDelete(state->scan_cxt);
}

/*
 * whoopExplainForeignScan shows the requests the scan sends; VERBOSE adds
 * the pushed clauses and limit, ANALYZE what was actually sent.
 */
static void
whoopExplainForeignScan(ForeignScanState *node, ExplainState *es)
{
	WhoopScanState *state = (WhoopScanState *) node->fdw_state;
	ForeignScan *plan = (ForeignScan *) node->ss.ps.plan;

	if (state->planned)
	{
		List	   *descriptions = state->requests.descriptions;

		if (descriptions == NIL)
			ExplainPropertyText("WHOOP request",
								state->requests.naccounts == 0
								? "none (no linked account matches)"
								: "none (the conditions exclude every row)", es);
		else if (list_length(descriptions) == 1)
			ExplainPropertyText("WHOOP request", linitial(descriptions), es);
		else
			ExplainPropertyList("WHOOP requests", descriptions, es);
		ExplainPropertyInteger("WHOOP accounts", NULL, state->requests.naccounts, es);
	}
	else
		ExplainPropertyText("WHOOP request",
							psprintf("GET %s (parameters known at run time)",
									 state->plan->endpoint->collection_path
									 ? state->plan->endpoint->collection_path
									 : state->plan->endpoint->single_path),
							es);

	if (es->verbose)
	{
		List	   *context = set_deparse_context_plan(es->deparse_cxt, (Plan *) plan, NIL);
		List	   *pushed = NIL;
		ListCell   *cell;

		foreach(cell, state->clauses)
		{
			char	   *text = deparse_expression(lfirst(cell), context,
												  list_length(es->rtable) > 1, false);

			if (!list_member(pushed, makeString(text)))
				pushed = lappend(pushed, makeString(text));
		}
		if (pushed != NIL)
		{
			List	   *texts = NIL;

			foreach(cell, pushed)
				texts = lappend(texts, strVal(lfirst(cell)));
			ExplainPropertyList("WHOOP pushed", texts, es);
		}
		if (state->plan->limit >= 0)
			ExplainPropertyInteger("WHOOP limit", NULL, state->plan->limit, es);
	}

	if (es->analyze)
	{
		ExplainPropertyInteger("WHOOP requests sent", NULL, state->stats.requests, es);
		ExplainPropertyInteger("WHOOP pages", NULL, state->stats.pages, es);
		if (state->stats.retries > 0 || es->format != EXPLAIN_FORMAT_TEXT)
			ExplainPropertyInteger("WHOOP retries", NULL, state->stats.retries, es);
		if (state->stats.throttled > 0 || es->format != EXPLAIN_FORMAT_TEXT)
			ExplainPropertyInteger("WHOOP throttled", NULL, state->stats.throttled, es);
	}
}

/*
 * whoopImportForeignSchema creates the six WHOOP tables.  The remote
 * schema is "whoop".  Options: update_window (stored on each table) and
 * table_prefix (prepended to each table name).  LIMIT TO names tables as
 * they are imported, prefix included, because PostgreSQL keeps only the
 * tables it names so; EXCEPT takes either name.  A name that is no table
 * of the import is an error, not a silently smaller import.
 */
static List *
whoopImportForeignSchema(ImportForeignSchemaStmt *stmt, Oid serverOid)
{
	ForeignServer *server = GetForeignServer(serverOid);
	char	   *update_window = NULL;
	char	   *prefix = "";
	List	   *commands = NIL;
	ListCell   *cell;

	if (strcmp(stmt->remote_schema, "whoop") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_SCHEMA_NOT_FOUND),
				 errmsg("WHOOP has no schema \"%s\"", stmt->remote_schema),
				 errhint("Use IMPORT FOREIGN SCHEMA whoop FROM SERVER %s INTO ...",
						 quote_identifier(server->servername))));

	foreach(cell, stmt->options)
	{
		DefElem    *def = (DefElem *) lfirst(cell);

		if (strcmp(def->defname, "update_window") == 0)
		{
			update_window = defGetString(def);
			(void) whoop_parse_interval_us(update_window, "update_window");
		}
		else if (strcmp(def->defname, "table_prefix") == 0)
			prefix = defGetString(def);
		else
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
					 errmsg("invalid option \"%s\"", def->defname),
					 errhint("Valid options of IMPORT FOREIGN SCHEMA are: update_window, table_prefix.")));
	}

	foreach(cell, stmt->table_list)
		check_import_name(((RangeVar *) lfirst(cell))->relname, prefix,
						  stmt->list_type == FDW_IMPORT_SCHEMA_LIMIT_TO);

	for (int e = 0; e < whoop_endpoint_count; e++)
	{
		const WhoopEndpoint *endpoint = &whoop_endpoints[e];
		char	   *table_name = psprintf("%s%s", prefix, endpoint->name);
		StringInfoData sql;
		bool		listed = false;
		ListCell   *lc;

		foreach(lc, stmt->table_list)
		{
			RangeVar   *rv = (RangeVar *) lfirst(lc);

			if (strcmp(rv->relname, table_name) == 0 ||
				strcmp(rv->relname, endpoint->name) == 0)
				listed = true;
		}
		if ((stmt->list_type == FDW_IMPORT_SCHEMA_LIMIT_TO && !listed) ||
			(stmt->list_type == FDW_IMPORT_SCHEMA_EXCEPT && listed))
			continue;

		initStringInfo(&sql);
		appendStringInfo(&sql, "CREATE FOREIGN TABLE %s (\n",
						 quote_identifier(table_name));
		for (int f = 0; f < endpoint->nfields; f++)
			appendStringInfo(&sql, "  %s %s%s\n",
							 quote_identifier(endpoint->fields[f].name),
							 endpoint->fields[f].sql_type,
							 f + 1 < endpoint->nfields ? "," : "");
		appendStringInfo(&sql, ") SERVER %s OPTIONS (endpoint %s",
						 quote_identifier(server->servername),
						 quote_literal_cstr(endpoint->name));
		if (update_window != NULL && endpoint->collection_path != NULL)
			appendStringInfo(&sql, ", update_window %s",
							 quote_literal_cstr(update_window));
		appendStringInfoString(&sql, ")");
		commands = lappend(commands, sql.data);
	}
	return commands;
}

/*
 * check_import_name refuses a name in IMPORT FOREIGN SCHEMA's LIMIT TO
 * (LIMIT_TO) or EXCEPT list that names no table of the import: with
 * table_prefix PREFIX the tables are called PREFIX || endpoint, and EXCEPT
 * also takes the endpoint's own name.
 */
static void
check_import_name(const char *name, const char *prefix, bool limit_to)
{
	StringInfoData tables;

	for (int e = 0; e < whoop_endpoint_count; e++)
	{
		const char *endpoint = whoop_endpoints[e].name;

		if (strcmp(name, psprintf("%s%s", prefix, endpoint)) == 0 ||
			(!limit_to && strcmp(name, endpoint) == 0))
			return;
		if (strcmp(name, endpoint) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_TABLE_NOT_FOUND),
					 errmsg("LIMIT TO must name table \"%s%s\", not \"%s\"",
							prefix, endpoint, endpoint),
					 errdetail("With table_prefix '%s', endpoint %s is imported as table %s%s, and LIMIT TO names tables as they are imported.",
							   prefix, endpoint, prefix, endpoint),
					 errhint("Write LIMIT TO (%s), or leave table_prefix out.",
							 quote_identifier(psprintf("%s%s", prefix, endpoint)))));
	}

	initStringInfo(&tables);
	for (int e = 0; e < whoop_endpoint_count; e++)
		appendStringInfo(&tables, "%s%s%s", e > 0 ? ", " : "", prefix,
						 whoop_endpoints[e].name);
	ereport(ERROR,
			(errcode(ERRCODE_FDW_TABLE_NOT_FOUND),
			 errmsg("WHOOP has no table \"%s\"", name),
			 errhint("The tables this import can create are: %s.", tables.data)));
}
