/*-------------------------------------------------------------------------
 *
 * whoop_fdw.c
 *		  Foreign-data wrapper callbacks for the WHOOP developer API (v2):
 *		  planning, scanning, rescanning, EXPLAIN and IMPORT FOREIGN SCHEMA.
 *
 * A scan turns into a list of requests -- one paged collection per account,
 * by-id lookups, or one object per account -- decided at scan start, when
 * the pushed-down values (constants, parameters, stable expressions) are
 * known.  Records are converted one at a time from the current page; a
 * page's JSON lives in a memory context that is reset when the next page
 * is fetched, and each row's values in one reset per row, so memory does
 * not grow with the size of the scan.
 *
 *-------------------------------------------------------------------------
 */
#include "whoop_fdw.h"

#include <math.h>

#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
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
#include "optimizer/optimizer.h"
#include "optimizer/pathnode.h"
#include "optimizer/planmain.h"
#include "optimizer/restrictinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/datetime.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/ruleutils.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#ifdef PG_MODULE_MAGIC_EXT
PG_MODULE_MAGIC_EXT(.name = "whoop_fdw", .version = WHOOP_FDW_VERSION);
#else
PG_MODULE_MAGIC;
#endif

/*
 * Indexes of the items in a ForeignScan's fdw_private list.  fdw_exprs
 * holds a (clause, value) pair per pushed entry: the clause for EXPLAIN,
 * the value (coerced to the column's type) for execution.
 */
enum WhoopFdwPrivateIndex
{
	FdwPrivateEndpoint,			/* String: endpoint name */
	FdwPrivateRetrievedAttrs,	/* IntList: attnums to fill */
	FdwPrivatePushedKinds,		/* IntList: WhoopPushKind per pushed entry */
	FdwPrivateLimit,			/* Integer: rows the query needs, -1: all */
	FdwPrivateUpdateWindow		/* String: update window in microseconds */
};

/* planner's per-relation state */
typedef struct WhoopRelInfo
{
	const WhoopEndpoint *endpoint;
	WhoopServer *server;
	int64		update_window_us;
	Bitmapset  *attrs_used;
	List	   *pushed_kinds;
	List	   *pushed_exprs;
	List	   *pushed_quals;
	double		fetched_rows;
	double		requests;
} WhoopRelInfo;

/* one request of a scan; collections page on from it with nextToken */
typedef struct WhoopScanRequest
{
	int64		user_id;
	char	   *path;			/* relative to api_url, with query */
	char	   *id;				/* by-id lookups: the id, else NULL */
	bool		missing_ok;		/* 404 means no row */
} WhoopScanRequest;

/* executor's per-scan state */
typedef struct WhoopScanState
{
	WhoopServer *server;
	const WhoopEndpoint *endpoint;
	WhoopColumn *columns;
	int			ncolumns;
	List	   *kinds;
	List	   *clauses;		/* pushed clauses, for EXPLAIN */
	List	   *values;			/* ExprState of each pushed value */
	Bitmapset  *param_ids;		/* PARAM_EXEC ids the values depend on */
	int64		limit;
	int64		update_window_us;

	MemoryContext scan_cxt;		/* lives as long as the scan */
	MemoryContext page_cxt;		/* the current page; reset per page */
	MemoryContext row_cxt;		/* one row's values; reset per row */
	MemoryContext values_cxt;	/* the planned pushed values */

	bool		planned;		/* requests decided */
	bool		complete;		/* every request read to the end */
	List	   *requests;
	int			request_index;	/* next request to send */
	WhoopScanRequest *current;
	char	   *next_token;
	List	   *found_ids;		/* by-id: ids already found */
	List	   *descriptions;	/* distinct requests, for EXPLAIN */
	int			naccounts;

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

static const WhoopEndpoint *table_endpoint(Oid foreigntableid);
static void check_columns(Relation rel, const WhoopEndpoint *endpoint);
static double estimate_rows(PlannerInfo *root, WhoopRelInfo *info);
static int64 pushable_limit(PlannerInfo *root, RelOptInfo *baserel);
static Bitmapset *exec_param_ids(Node *node);
static bool exec_param_walker(Node *node, Bitmapset **ids);
static void plan_requests(WhoopScanState *state, ExprContext *econtext, bool explain_only);
static bool fetch_next_page(WhoopScanState *state);
static char *api_timestamp(TimestampTz ts);
static TimestampTz floor_ms(TimestampTz ts);
static TimestampTz ceil_ms(TimestampTz ts);
static char *datum_text(Datum value, Oid type);

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
 * whoopGetForeignRelSize classifies the quals and estimates the rows.
 */
static void
whoopGetForeignRelSize(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid)
{
	WhoopRelInfo *info = palloc0(sizeof(WhoopRelInfo));
	Relation	rel;
	ListCell   *cell;
	List	   *local_quals;

	baserel->fdw_private = info;
	info->endpoint = table_endpoint(foreigntableid);
	info->server = whoop_get_server(GetForeignTable(foreigntableid)->serverid);
	info->update_window_us = whoop_table_update_window(foreigntableid, info->server);

	rel = table_open(foreigntableid, NoLock);
	check_columns(rel, info->endpoint);
	table_close(rel, NoLock);

	/* the columns to convert: those selected and those the quals recheck */
	pull_varattnos((Node *) baserel->reltarget->exprs, baserel->relid,
				   &info->attrs_used);
	foreach(cell, baserel->baserestrictinfo)
		pull_varattnos((Node *) lfirst_node(RestrictInfo, cell)->clause,
					   baserel->relid, &info->attrs_used);

	whoop_classify_quals(root, baserel, info->endpoint, info->update_window_us,
						 &info->pushed_kinds, &info->pushed_exprs,
						 &info->pushed_quals);

	info->fetched_rows = estimate_rows(root, info);
	local_quals = list_difference_ptr(baserel->baserestrictinfo, info->pushed_quals);
	baserel->rows = clamp_row_est(info->fetched_rows *
								  clauselist_selectivity(root, local_quals,
														 baserel->relid,
														 JOIN_INNER, NULL));
}

/*
 * estimate_rows guesses the rows a scan fetches: about rows_per_day per
 * day of the requested range and account (two years when unbounded), one
 * per id for by-id lookups, one per account for profile/body.
 */
static double
estimate_rows(PlannerInfo *root, WhoopRelInfo *info)
{
	const WhoopEndpoint *endpoint = info->endpoint;
	TimestampTz upper = GetCurrentTransactionStartTimestamp();
	TimestampTz lower = upper - 730 * USECS_PER_DAY;
	double		accounts = 1;
	double		ids = -1;
	double		rows;
	ListCell   *kind_cell;
	int			i = 0;

	foreach(kind_cell, info->pushed_kinds)
	{
		WhoopPushKind kind = lfirst_int(kind_cell);
		Node	   *value = estimate_expression_value(root,
													  list_nth(info->pushed_exprs, 2 * i + 1));

		i++;
		if (kind == WHOOP_PUSH_ID)
			ids = 1;
		else if (kind == WHOOP_PUSH_ID_ARRAY)
			ids = ids < 0 ? 10 : ids;
		else if (kind == WHOOP_PUSH_USER_ARRAY && IsA(value, Const) &&
				 !((Const *) value)->constisnull)
			accounts = Max(1, ArrayGetNItems(ARR_NDIM(DatumGetArrayTypeP(((Const *) value)->constvalue)),
											 ARR_DIMS(DatumGetArrayTypeP(((Const *) value)->constvalue))));
		else if (IsA(value, Const) && !((Const *) value)->constisnull &&
				 ((Const *) value)->consttype == TIMESTAMPTZOID)
		{
			TimestampTz ts = DatumGetTimestampTz(((Const *) value)->constvalue);

			if (kind == WHOOP_PUSH_LOWER || kind == WHOOP_PUSH_LOWER_BY_END)
				lower = Max(lower, ts);
			else if (kind == WHOOP_PUSH_UPDATED_SINCE)
				lower = Max(lower, ts - info->update_window_us);
			else if (kind == WHOOP_PUSH_UPPER || kind == WHOOP_PUSH_UPPER_INCLUSIVE)
				upper = Min(upper, ts);
		}
	}

	if (endpoint->collection_path == NULL)
		rows = accounts;
	else if (ids >= 0)
		rows = ids;
	else
		rows = Max(1.0, (double) (upper - lower) / USECS_PER_DAY + 1) *
			endpoint->rows_per_day * accounts;
	info->requests = endpoint->collection_path == NULL || ids >= 0
		? rows * accounts
		: ceil(rows / info->server->page_size) + accounts - 1;
	return rows;
}

/*
 * whoopGetForeignPaths offers the one way to scan: asking the API.  Each
 * request costs as much as reading many rows, so plans that repeat a scan
 * (say, the inner side of a nested loop) look as expensive as they are.
 */
static void
whoopGetForeignPaths(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid)
{
	WhoopRelInfo *info = (WhoopRelInfo *) baserel->fdw_private;
	Cost		startup_cost = 100.0;
	Cost		total_cost = startup_cost + info->requests * 100.0 +
		info->fetched_rows * cpu_tuple_cost * 10;

	add_path(baserel, (Path *) create_foreignscan_path(root, baserel, NULL,
													   baserel->rows,
#if PG_VERSION_NUM >= 180000
													   0,	/* disabled_nodes */
#endif
													   startup_cost, total_cost,
													   NIL, NULL, NULL,
#if PG_VERSION_NUM >= 170000
													   NIL, /* fdw_restrictinfo */
#endif
													   NIL));
}

/*
 * pushable_limit returns how many rows the query can possibly need when
 * the scan's rows go straight to a LIMIT (no local quals, no sort, no
 * grouping, no join), so paging can stop early; -1 otherwise.
 */
static int64
pushable_limit(PlannerInfo *root, RelOptInfo *baserel)
{
	Query	   *parse = root->parse;
	int64		count;
	int64		offset = 0;

	if (baserel->baserestrictinfo != NIL ||
		parse->limitCount == NULL || !IsA(parse->limitCount, Const) ||
		parse->limitOption == LIMIT_OPTION_WITH_TIES ||
		parse->sortClause != NIL || parse->groupClause != NIL ||
		parse->groupingSets != NIL || parse->distinctClause != NIL ||
		parse->hasAggs || parse->hasWindowFuncs || parse->havingQual != NULL ||
		parse->hasTargetSRFs || parse->setOperations != NULL ||
		bms_membership(root->all_baserels) != BMS_SINGLETON)
		return -1;
	if (((Const *) parse->limitCount)->constisnull)
		return -1;
	count = DatumGetInt64(((Const *) parse->limitCount)->constvalue);
	if (parse->limitOffset != NULL)
	{
		if (!IsA(parse->limitOffset, Const))
			return -1;
		if (!((Const *) parse->limitOffset)->constisnull)
			offset = DatumGetInt64(((Const *) parse->limitOffset)->constvalue);
	}
	if (count < 0 || offset < 0 || count > PG_INT32_MAX - offset)
		return -1;
	return count + offset;
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
	WhoopRelInfo *info = (WhoopRelInfo *) baserel->fdw_private;
	List	   *retrieved_attrs = NIL;
	bool		whole_row = bms_is_member(0 - FirstLowInvalidHeapAttributeNumber,
										  info->attrs_used);
	Relation	rel = table_open(foreigntableid, NoLock);
	TupleDesc	desc = RelationGetDescr(rel);
	List	   *fdw_private;

	for (int i = 1; i <= desc->natts; i++)
	{
		if (TupleDescAttr(desc, i - 1)->attisdropped)
			continue;
		if (whole_row ||
			bms_is_member(i - FirstLowInvalidHeapAttributeNumber, info->attrs_used))
			retrieved_attrs = lappend_int(retrieved_attrs, i);
	}
	table_close(rel, NoLock);

	scan_clauses = extract_actual_clauses(scan_clauses, false);
	fdw_private = list_make5(makeString(pstrdup(info->endpoint->name)),
							 retrieved_attrs,
							 info->pushed_kinds,
							 makeInteger((int) pushable_limit(root, baserel)),
							 makeString(psprintf(INT64_FORMAT, info->update_window_us)));

	return make_foreignscan(tlist, scan_clauses, baserel->relid,
							info->pushed_exprs, fdw_private, NIL, NIL, outer_plan);
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
	List	   *retrieved_attrs;
	ListCell   *cell;
	int			i;

	node->fdw_state = state;
	state->server = whoop_get_server(GetForeignTable(RelationGetRelid(rel))->serverid);
	state->endpoint = whoop_endpoint_by_name(strVal(list_nth(plan->fdw_private,
															  FdwPrivateEndpoint)));
	if (state->endpoint == NULL)
		elog(ERROR, "whoop_fdw: unknown endpoint in plan");
	retrieved_attrs = (List *) list_nth(plan->fdw_private, FdwPrivateRetrievedAttrs);
	state->kinds = (List *) list_nth(plan->fdw_private, FdwPrivatePushedKinds);
	state->limit = intVal(list_nth(plan->fdw_private, FdwPrivateLimit));
	state->update_window_us = strtoi64(strVal(list_nth(plan->fdw_private,
													   FdwPrivateUpdateWindow)),
									   NULL, 10);

	state->ncolumns = list_length(retrieved_attrs);
	state->columns = palloc0(sizeof(WhoopColumn) * Max(state->ncolumns, 1));
	i = 0;
	foreach(cell, retrieved_attrs)
	{
		Form_pg_attribute attr = TupleDescAttr(desc, lfirst_int(cell) - 1);
		int			field = whoop_endpoint_field(state->endpoint, NameStr(attr->attname));

		if (field < 0)
			elog(ERROR, "whoop_fdw: column \"%s\" has no field", NameStr(attr->attname));
		whoop_column_init(&state->columns[i++], &state->endpoint->fields[field], attr);
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
 * floor_ms and ceil_ms round to WHOOP's millisecond resolution.
 */
static TimestampTz
floor_ms(TimestampTz ts)
{
	TimestampTz r = ts - ts % 1000;

	return (ts % 1000 < 0) ? r - 1000 : r;
}

static TimestampTz
ceil_ms(TimestampTz ts)
{
	TimestampTz f = floor_ms(ts);

	return f == ts ? f : f + 1000;
}

/*
 * api_timestamp formats a timestamp the way WHOOP's examples do
 * (2024-01-01T00:00:00.000Z).
 */
static char *
api_timestamp(TimestampTz ts)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (TIMESTAMP_NOT_FINITE(ts) ||
		timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range for a WHOOP request")));
	return psprintf("%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
					tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min,
					tm.tm_sec, (int) (fsec / 1000));
}

/*
 * datum_text renders an id value for a URL path.
 */
static char *
datum_text(Datum value, Oid type)
{
	Oid			output;
	bool		varlena;

	getTypeOutputInfo(type, &output, &varlena);
	return whoop_http_escape(OidOutputFunctionCall(output, value));
}

/*
 * array_values returns the non-NULL elements of an array value as a list
 * of ids (as text) or user ids.
 */
static List *
array_values(Datum array_datum, bool as_user_ids)
{
	ArrayType  *array = DatumGetArrayTypeP(array_datum);
	Oid			elemtype = ARR_ELEMTYPE(array);
	int16		typlen;
	bool		typbyval;
	char		typalign;
	Datum	   *elems;
	bool	   *elem_nulls;
	int			nelems;
	List	   *result = NIL;

	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	deconstruct_array(array, elemtype, typlen, typbyval, typalign,
					  &elems, &elem_nulls, &nelems);
	for (int i = 0; i < nelems; i++)
	{
		if (elem_nulls[i])
			continue;
		if (as_user_ids)
		{
			int64	   *boxed = palloc(sizeof(int64));

			*boxed = DatumGetInt64(elems[i]);
			result = lappend(result, boxed);
		}
		else
			result = lappend(result, datum_text(elems[i], elemtype));
	}
	return result;
}

/*
 * same_text and same_user_id compare list members: ids as text, user ids
 * as boxed int64.
 */
static bool
same_text(const void *a, const void *b)
{
	return strcmp((const char *) a, (const char *) b) == 0;
}

static bool
same_user_id(const void *a, const void *b)
{
	return *(const int64 *) a == *(const int64 *) b;
}

/*
 * intersect keeps the members of CURRENT that are also in NEXT; when
 * CURRENT does not constrain anything yet, NEXT is the answer.
 */
static List *
intersect(List *current, List *next, bool constrained,
		  bool (*same) (const void *, const void *))
{
	List	   *result = NIL;
	ListCell   *a;

	if (!constrained)
		return next;
	foreach(a, current)
	{
		ListCell   *b;

		foreach(b, next)
		{
			if (same(lfirst(a), lfirst(b)))
			{
				result = lappend(result, lfirst(a));
				break;
			}
		}
	}
	return result;
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
 * plan_requests evaluates the pushed values and decides the requests:
 * which accounts, which endpoint, which start/end.  With EXPLAIN_ONLY it
 * only describes them (and does not insist on linked accounts).
 */
static void
plan_requests(WhoopScanState *state, ExprContext *econtext, bool explain_only)
{
	MemoryContext old = MemoryContextSwitchTo(state->scan_cxt);
	const WhoopEndpoint *endpoint = state->endpoint;
	TimestampTz lower = DT_NOBEGIN;
	TimestampTz upper = DT_NOEND;
	List	   *ids = NIL;
	bool		ids_constrained = false;
	List	   *users = NIL;
	bool		users_constrained = false;
	bool		empty = false;
	List	   *accounts;
	ListCell   *kind_cell;
	ListCell   *value_cell;
	ListCell   *cell;
	int			page_limit;
	int			i;
	StringInfoData query;

	state->requests = NIL;
	state->descriptions = NIL;
	state->request_index = 0;

	MemoryContextReset(state->values_cxt);
	evaluate_values(state, econtext, state->values_cxt, &state->planned_values,
					&state->planned_nulls);
	ResetExprContext(econtext);
	i = 0;
	forboth(kind_cell, state->kinds, value_cell, state->values)
	{
		WhoopPushKind kind = lfirst_int(kind_cell);
		bool		isnull = state->planned_nulls[i];
		Datum		value = state->planned_values[i];

		i++;
		if (isnull)
		{
			/* a comparison with NULL is never true */
			empty = true;
			continue;
		}
		switch (kind)
		{
			case WHOOP_PUSH_LOWER:
				lower = Max(lower, floor_ms(DatumGetTimestampTz(value)));
				break;
			case WHOOP_PUSH_LOWER_BY_END:
				lower = Max(lower, floor_ms(DatumGetTimestampTz(value)) - 1000);
				break;
			case WHOOP_PUSH_UPDATED_SINCE:
				{
					TimestampTz since = DatumGetTimestampTz(value);

					if (!TIMESTAMP_NOT_FINITE(since) &&
						since > MIN_TIMESTAMP + state->update_window_us)
						lower = Max(lower, floor_ms(since - state->update_window_us));
					break;
				}
			case WHOOP_PUSH_UPPER:
				upper = Min(upper, ceil_ms(DatumGetTimestampTz(value)));
				break;
			case WHOOP_PUSH_UPPER_INCLUSIVE:
				upper = Min(upper, floor_ms(DatumGetTimestampTz(value)) + 1000);
				break;
			case WHOOP_PUSH_ID:
				{
					Oid			type = exprType((Node *) ((ExprState *) lfirst(value_cell))->expr);

					ids = intersect(ids, list_make1(datum_text(value, type)),
									ids_constrained, same_text);
					ids_constrained = true;
					break;
				}
			case WHOOP_PUSH_ID_ARRAY:
				ids = intersect(ids, array_values(value, false), ids_constrained, same_text);
				ids_constrained = true;
				break;
			case WHOOP_PUSH_USER:
				{
					int64	   *boxed = palloc(sizeof(int64));

					*boxed = DatumGetInt64(value);
					users = intersect(users, list_make1(boxed), users_constrained, same_user_id);
					users_constrained = true;
					break;
				}
			case WHOOP_PUSH_USER_ARRAY:
				users = intersect(users, array_values(value, true), users_constrained,
								  same_user_id);
				users_constrained = true;
				break;
		}
	}
	if (ids_constrained && ids == NIL)
		empty = true;
	if (users_constrained && users == NIL)
		empty = true;
	if (!TIMESTAMP_NOT_FINITE(lower) && !TIMESTAMP_NOT_FINITE(upper) && lower >= upper)
		empty = true;

	accounts = whoop_store_usable_accounts(state->server->server_name, GetUserId());
	if (accounts == NIL && !explain_only)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
				 errmsg("no WHOOP account is linked to server \"%s\" for role \"%s\"",
						state->server->server_name, GetUserNameFromId(GetUserId(), false)),
				 errhint("Link one with whoop.connect_account() or whoop.add_account().")));
	if (users_constrained)
		accounts = intersect(accounts, users, true, same_user_id);
	state->naccounts = list_length(accounts);
	if (accounts == NIL)
		empty = true;
	if (empty)
	{
		state->planned = true;
		MemoryContextSwitchTo(old);
		return;
	}

	page_limit = state->server->page_size;
	if (state->limit >= 0)
		page_limit = (int) Max(1, Min(page_limit, state->limit));

	initStringInfo(&query);
	if (endpoint->collection_path != NULL && !ids_constrained)
	{
		appendStringInfoString(&query, endpoint->collection_path);
		appendStringInfoChar(&query, '?');
		if (!TIMESTAMP_NOT_FINITE(lower))
			appendStringInfo(&query, "start=%s&", api_timestamp(lower));
		if (!TIMESTAMP_NOT_FINITE(upper))
			appendStringInfo(&query, "end=%s&", api_timestamp(upper));
		appendStringInfo(&query, "limit=%d", page_limit);
		state->descriptions = list_make1(psprintf("GET %s", query.data));
	}
	else if (endpoint->collection_path == NULL)
	{
		appendStringInfoString(&query, endpoint->single_path);
		state->descriptions = list_make1(psprintf("GET %s", query.data));
	}

	if (ids_constrained)
	{
		/* one lookup per id; the first account that has it wins */
		foreach(cell, ids)
		{
			char	   *path = psprintf(endpoint->by_id_path, (char *) lfirst(cell));
			ListCell   *account;

			state->descriptions = lappend(state->descriptions, psprintf("GET %s", path));
			foreach(account, accounts)
			{
				WhoopScanRequest *request = palloc0(sizeof(WhoopScanRequest));

				request->user_id = *(int64 *) lfirst(account);
				request->path = path;
				request->id = lfirst(cell);
				request->missing_ok = true;
				state->requests = lappend(state->requests, request);
			}
		}
	}
	else
	{
		foreach(cell, accounts)
		{
			WhoopScanRequest *request = palloc0(sizeof(WhoopScanRequest));

			request->user_id = *(int64 *) lfirst(cell);
			request->path = query.data;
			request->missing_ok = (endpoint->collection_path == NULL);
			state->requests = lappend(state->requests, request);
		}
	}
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
			if (state->request_index >= list_length(state->requests))
				return false;
			state->current = list_nth(state->requests, state->request_index++);
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
								state->endpoint, state->columns, state->ncolumns,
								slot->tts_values, slot->tts_isnull);
			MemoryContextSwitchTo(old);
			ExecStoreVirtualTuple(slot);
			state->next_record++;
			state->rows++;
			if (state->store != NULL)
				tuplestore_puttupleslot(state->store, slot);
			return slot;
		}
		if (state->limit >= 0 && state->rows >= state->limit)
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
		if (state->descriptions == NIL)
			ExplainPropertyText("WHOOP request",
								state->naccounts == 0
								? "none (no linked account matches)"
								: "none (the conditions exclude every row)", es);
		else if (list_length(state->descriptions) == 1)
			ExplainPropertyText("WHOOP request", linitial(state->descriptions), es);
		else
			ExplainPropertyList("WHOOP requests", state->descriptions, es);
		ExplainPropertyInteger("WHOOP accounts", NULL, state->naccounts, es);
	}
	else
		ExplainPropertyText("WHOOP request",
							psprintf("GET %s (parameters known at run time)",
									 state->endpoint->collection_path
									 ? state->endpoint->collection_path
									 : state->endpoint->single_path),
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
		if (state->limit >= 0)
			ExplainPropertyInteger("WHOOP limit", NULL, state->limit, es);
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
 * table_prefix (prepended to each table name; LIMIT TO and EXCEPT then
 * name the prefixed tables).
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
