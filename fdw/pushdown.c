/*-------------------------------------------------------------------------
 *
 * pushdown.c
 *		  Request planning: WHERE clauses turned into WHOOP request
 *		  parameters, the estimates, and the list of requests a scan sends.
 *
 * Pushdown here is a prefilter: the API is asked for a superset of the
 * rows the clauses accept, and PostgreSQL still checks every clause
 * locally, so results are exact whatever the API's boundary semantics.
 * A value the API cannot express is not pushed (the request asks for more):
 * a time outside years 1 to 9999, which ISO-8601 writes with four digits,
 * or an id that is not a non-negative int64 (cycles) or a UUID (sleeps,
 * workouts).  A value that no row can match sends no request: a comparison
 * with NULL, start > 'infinity', start < '-infinity', contradictory bounds.
 * What can be pushed:
 *	- comparisons of start and "end" with a value  -> API start/end (records
 *	  overlapping [start, end));
 *	- updated_at >= value, only where an update window is declared: WHOOP
 *	  changes a record at most that long after it began, so
 *	  start = value - window finds every record updated since value;
 *	- for recovery, which has no start but is listed by its sleep:
 *	  created_at >= value likewise (start = value - window), and
 *	  created_at < value -> API end (its sleep began before it was created);
 *	- id = value (cycle_id for recovery), = ANY(array)  -> by-id endpoint;
 *	- user_id = value, = ANY(array)  -> which accounts are asked.
 * A "value" is anything without Vars of this query level and without
 * volatile functions: constants, parameters, and stable expressions such
 * as now() - interval '7 days'.  It is evaluated at execution time.
 *
 * The planner's part (whoop_plan_scan, whoop_plan_private) yields a
 * WhoopScanPlan: what was pushed, the estimates, the columns to fill and
 * the LIMIT the scan may stop at, kept in the ForeignScan's fdw_private.
 * The executor's part (whoop_plan_requests) turns the plan and the values
 * its pushed expressions have at scan start into the requests: which
 * accounts, which endpoint, which start/end.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <math.h>

#include "whoop_fdw.h"

#include "access/stratnum.h"
#include "access/sysattr.h"
#include "access/tupdesc.h"
#include "access/xact.h"
#include "catalog/pg_am.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/clauses.h"
#include "optimizer/cost.h"
#include "optimizer/optimizer.h"
#include "optimizer/pathnode.h"
#include "parser/parse_coerce.h"
#include "parser/parsetree.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

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

static Var *column_of(Node *node, Index relid);
static bool is_pushable_value(Node *node);
static int	btree_strategy(Oid opno, Oid lefttype);
static Node *coerce_value(Node *value, Oid type, bool array);
static void push(List **kinds, List **exprs, WhoopPushKind kind, Expr *clause,
				 Node *value);
static void classify_quals(PlannerInfo *root, RelOptInfo *baserel,
						   WhoopScanPlan *plan);
static void estimate(PlannerInfo *root, const WhoopServer *server,
					 WhoopScanPlan *plan);
static int	pushable_limit(PlannerInfo *root, RelOptInfo *baserel);
static TimestampTz floor_ms(TimestampTz ts);
static TimestampTz ceil_ms(TimestampTz ts);
static TimestampTz api_time_min(void);
static TimestampTz api_time_max(void);
static char *api_timestamp(TimestampTz ts);
static char *datum_text(Datum value, Oid type);
static bool id_expressible(const WhoopEndpoint *endpoint, const char *id);
static List *array_values(Datum array_datum, bool as_user_ids);
static bool same_text(const void *a, const void *b);
static bool same_user_id(const void *a, const void *b);
static List *intersect(List *current, List *next, bool constrained,
					   bool (*same) (const void *, const void *));

/*
 * column_of returns the Var if NODE is a plain column of the scanned
 * relation (possibly under a binary-compatible relabeling).
 */
static Var *
column_of(Node *node, Index relid)
{
	while (node && IsA(node, RelabelType))
		node = (Node *) ((RelabelType *) node)->arg;
	if (node && IsA(node, Var) &&
		((Var *) node)->varno == relid &&
		((Var *) node)->varlevelsup == 0 &&
		((Var *) node)->varattno > 0)
		return (Var *) node;
	return NULL;
}

/*
 * is_pushable_value says whether an expression can be evaluated once at
 * scan start: no columns of this query level, nothing volatile, no
 * subplans.
 */
static bool
is_pushable_value(Node *node)
{
	return !contain_var_clause(node) &&
		!contain_volatile_functions(node) &&
		!contain_subplans(node) &&
		!contain_agg_clause(node) &&
		!contain_window_function(node);
}

/*
 * btree_strategy returns the btree strategy (1..5) of an operator in the
 * default btree family of the column's type (which holds the cross-type
 * comparisons too, such as timestamptz against date), or 0 when it is not
 * one of its comparisons.
 */
static int
btree_strategy(Oid opno, Oid column_type)
{
	Oid			opclass = GetDefaultOpClass(column_type, BTREE_AM_OID);

	if (!OidIsValid(opclass))
		return 0;
	return get_op_opfamily_strategy(opno, get_opclass_family(opclass));
}

/*
 * push records one pushed clause: its kind, the clause itself (for
 * EXPLAIN) and the value expression coerced to the column's type.
 */
static void
push(List **kinds, List **exprs, WhoopPushKind kind, Expr *clause, Node *value)
{
	*kinds = lappend_int(*kinds, kind);
	*exprs = lappend(*exprs, clause);
	*exprs = lappend(*exprs, value);
}

/*
 * coerce_value casts a value to TYPE (e.g. a date compared with a
 * timestamptz column); NULL when no implicit or assignment cast exists.
 */
static Node *
coerce_value(Node *value, Oid type, bool array)
{
	Oid			target = array ? get_array_type(type) : type;
	Oid			source = exprType(value);

	if (source == target)
		return value;
	if (!OidIsValid(target))
		return NULL;
	return coerce_to_target_type(NULL, value, source, target, -1,
								 COERCION_ASSIGNMENT, COERCE_IMPLICIT_CAST, -1);
}

/*
 * classify_quals finds the restriction clauses that can shape the
 * requests: the plan's pushed_kinds get a WhoopPushKind per pushed entry,
 * pushed_exprs a (clause, value) pair per entry, pushed_quals the
 * RestrictInfos involved.  All clauses stay local quals as well.
 */
static void
classify_quals(PlannerInfo *root, RelOptInfo *baserel, WhoopScanPlan *plan)
{
	RangeTblEntry *rte = planner_rt_fetch(baserel->relid, root);
	const WhoopEndpoint *endpoint = plan->endpoint;
	int64		update_window_us = plan->update_window_us;
	List	  **pushed_kinds = &plan->pushed_kinds;
	List	  **pushed_exprs = &plan->pushed_exprs;
	ListCell   *cell;

	foreach(cell, baserel->baserestrictinfo)
	{
		RestrictInfo *rinfo = lfirst_node(RestrictInfo, cell);
		Expr	   *clause = rinfo->clause;
		int			before = list_length(*pushed_kinds);

		if (IsA(clause, OpExpr) && list_length(((OpExpr *) clause)->args) == 2)
		{
			OpExpr	   *op = (OpExpr *) clause;
			Node	   *left = linitial(op->args);
			Node	   *right = lsecond(op->args);
			Var		   *var = column_of(left, baserel->relid);
			Node	   *value = right;
			bool		commuted = false;
			char	   *column;
			int			strategy;
			Node	   *coerced;

			if (var == NULL)
			{
				var = column_of(right, baserel->relid);
				value = left;
				commuted = true;
			}
			if (var == NULL || !is_pushable_value(value))
				continue;

			strategy = btree_strategy(op->opno, var->vartype);
			if (strategy == 0)
				continue;
			if (commuted)
			{
				/* value OP column: flip the comparison to column OP' value */
				if (strategy == BTLessStrategyNumber)
					strategy = BTGreaterStrategyNumber;
				else if (strategy == BTLessEqualStrategyNumber)
					strategy = BTGreaterEqualStrategyNumber;
				else if (strategy == BTGreaterStrategyNumber)
					strategy = BTLessStrategyNumber;
				else if (strategy == BTGreaterEqualStrategyNumber)
					strategy = BTLessEqualStrategyNumber;
			}

			column = get_attname(rte->relid, var->varattno, false);
			coerced = coerce_value(value, var->vartype, false);
			if (coerced == NULL)
				continue;

			if (endpoint->has_time_range && var->vartype == TIMESTAMPTZOID &&
				strcmp(column, "start") == 0)
			{
				if (strategy == BTGreaterStrategyNumber)
					push(pushed_kinds, pushed_exprs, WHOOP_PUSH_LOWER_EXCLUSIVE, clause,
						 coerced);
				if (strategy == BTGreaterEqualStrategyNumber ||
					strategy == BTEqualStrategyNumber)
					push(pushed_kinds, pushed_exprs, WHOOP_PUSH_LOWER, clause, coerced);
				if (strategy == BTLessStrategyNumber)
					push(pushed_kinds, pushed_exprs, WHOOP_PUSH_UPPER, clause, coerced);
				if (strategy == BTLessEqualStrategyNumber ||
					strategy == BTEqualStrategyNumber)
					push(pushed_kinds, pushed_exprs, WHOOP_PUSH_UPPER_INCLUSIVE,
						 clause, coerced);
			}
			else if (endpoint->has_time_range && var->vartype == TIMESTAMPTZOID &&
					 strcmp(column, "end") == 0)
			{
				if (strategy == BTGreaterStrategyNumber)
					push(pushed_kinds, pushed_exprs, WHOOP_PUSH_LOWER_BY_END_EXCLUSIVE,
						 clause, coerced);
				if (strategy == BTGreaterEqualStrategyNumber ||
					strategy == BTEqualStrategyNumber)
					push(pushed_kinds, pushed_exprs, WHOOP_PUSH_LOWER_BY_END, clause, coerced);
				if (strategy == BTLessStrategyNumber)
					push(pushed_kinds, pushed_exprs, WHOOP_PUSH_UPPER, clause, coerced);
				if (strategy == BTLessEqualStrategyNumber ||
					strategy == BTEqualStrategyNumber)
					push(pushed_kinds, pushed_exprs, WHOOP_PUSH_UPPER_INCLUSIVE,
						 clause, coerced);
			}
			else if (endpoint->collection_path != NULL && update_window_us >= 0 &&
					 var->vartype == TIMESTAMPTZOID &&
					 strcmp(column, "updated_at") == 0 &&
					 (strategy == BTGreaterStrategyNumber ||
					  strategy == BTGreaterEqualStrategyNumber ||
					  strategy == BTEqualStrategyNumber))
				push(pushed_kinds, pushed_exprs, WHOOP_PUSH_UPDATED_SINCE, clause, coerced);
			else if (!endpoint->has_time_range && endpoint->collection_path != NULL &&
					 var->vartype == TIMESTAMPTZOID && strcmp(column, "created_at") == 0)
			{
				/*
				 * A recovery has no start; WHOOP lists it by its sleep, which
				 * began before the recovery was created and at most the
				 * update window before (created_at <= updated_at).
				 */
				if (update_window_us >= 0 &&
					(strategy == BTGreaterStrategyNumber ||
					 strategy == BTGreaterEqualStrategyNumber ||
					 strategy == BTEqualStrategyNumber))
					push(pushed_kinds, pushed_exprs, WHOOP_PUSH_UPDATED_SINCE, clause,
						 coerced);
				if (strategy == BTLessStrategyNumber)
					push(pushed_kinds, pushed_exprs, WHOOP_PUSH_UPPER, clause, coerced);
				if (strategy == BTLessEqualStrategyNumber ||
					strategy == BTEqualStrategyNumber)
					push(pushed_kinds, pushed_exprs, WHOOP_PUSH_UPPER_INCLUSIVE,
						 clause, coerced);
			}
			else if (strategy == BTEqualStrategyNumber &&
					 endpoint->by_id_column != NULL &&
					 strcmp(column, endpoint->by_id_column) == 0)
				push(pushed_kinds, pushed_exprs, WHOOP_PUSH_ID, clause, coerced);
			else if (strategy == BTEqualStrategyNumber &&
					 strcmp(column, "user_id") == 0 && var->vartype == INT8OID)
				push(pushed_kinds, pushed_exprs, WHOOP_PUSH_USER, clause, coerced);
		}
		else if (IsA(clause, ScalarArrayOpExpr) &&
				 ((ScalarArrayOpExpr *) clause)->useOr)
		{
			ScalarArrayOpExpr *saop = (ScalarArrayOpExpr *) clause;
			Var		   *var = column_of(linitial(saop->args), baserel->relid);
			Node	   *value = lsecond(saop->args);
			char	   *column;
			Node	   *coerced;

			if (var == NULL || !is_pushable_value(value) ||
				btree_strategy(saop->opno, var->vartype) != BTEqualStrategyNumber)
				continue;
			column = get_attname(rte->relid, var->varattno, false);
			coerced = coerce_value(value, var->vartype, true);
			if (coerced == NULL)
				continue;
			if (endpoint->by_id_column != NULL &&
				strcmp(column, endpoint->by_id_column) == 0)
				push(pushed_kinds, pushed_exprs, WHOOP_PUSH_ID_ARRAY, clause, coerced);
			else if (strcmp(column, "user_id") == 0 && var->vartype == INT8OID)
				push(pushed_kinds, pushed_exprs, WHOOP_PUSH_USER_ARRAY, clause, coerced);
		}

		if (list_length(*pushed_kinds) > before)
			plan->pushed_quals = lappend(plan->pushed_quals, rinfo);
	}
}

/*
 * whoop_plan_scan plans a scan of ENDPOINT for the planner: the columns to
 * convert, the pushed clauses, the rows and the cost.
 */
WhoopScanPlan *
whoop_plan_scan(PlannerInfo *root, RelOptInfo *baserel, const WhoopEndpoint *endpoint,
				const WhoopServer *server, int64 update_window_us)
{
	WhoopScanPlan *plan = palloc0(sizeof(WhoopScanPlan));
	List	   *local_quals;
	ListCell   *cell;

	plan->endpoint = endpoint;
	plan->update_window_us = update_window_us;
	plan->limit = -1;

	/* the columns to convert: those selected and those the quals recheck */
	pull_varattnos((Node *) baserel->reltarget->exprs, baserel->relid,
				   &plan->attrs_used);
	foreach(cell, baserel->baserestrictinfo)
		pull_varattnos((Node *) lfirst_node(RestrictInfo, cell)->clause,
					   baserel->relid, &plan->attrs_used);

	classify_quals(root, baserel, plan);
	estimate(root, server, plan);
	local_quals = list_difference_ptr(baserel->baserestrictinfo, plan->pushed_quals);
	plan->rows = clamp_row_est(plan->fetched_rows *
							   clauselist_selectivity(root, local_quals,
													  baserel->relid,
													  JOIN_INNER, NULL));
	return plan;
}

/*
 * estimate guesses the rows a scan fetches -- about rows_per_day per day
 * of the requested range and account (two years when unbounded), one per
 * id for by-id lookups, one per account for profile/body -- the requests
 * that takes, and the cost.  Each request costs as much as reading many
 * rows, so plans that repeat a scan (say, the inner side of a nested loop)
 * look as expensive as they are.
 */
static void
estimate(PlannerInfo *root, const WhoopServer *server, WhoopScanPlan *plan)
{
	const WhoopEndpoint *endpoint = plan->endpoint;
	TimestampTz upper = GetCurrentTransactionStartTimestamp();
	TimestampTz lower = upper - 730 * USECS_PER_DAY;
	double		accounts = 1;
	double		ids = -1;
	double		rows;
	ListCell   *kind_cell;
	int			i = 0;

	foreach(kind_cell, plan->pushed_kinds)
	{
		WhoopPushKind kind = lfirst_int(kind_cell);
		Node	   *value = estimate_expression_value(root,
													  list_nth(plan->pushed_exprs, 2 * i + 1));

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
				 ((Const *) value)->consttype == TIMESTAMPTZOID &&
				 !TIMESTAMP_NOT_FINITE(DatumGetTimestampTz(((Const *) value)->constvalue)))
		{
			TimestampTz ts = DatumGetTimestampTz(((Const *) value)->constvalue);

			if (kind == WHOOP_PUSH_LOWER || kind == WHOOP_PUSH_LOWER_EXCLUSIVE ||
				kind == WHOOP_PUSH_LOWER_BY_END || kind == WHOOP_PUSH_LOWER_BY_END_EXCLUSIVE)
				lower = Max(lower, ts);
			else if (kind == WHOOP_PUSH_UPDATED_SINCE)
				lower = Max(lower, ts - plan->update_window_us);
			else if (kind == WHOOP_PUSH_UPPER || kind == WHOOP_PUSH_UPPER_INCLUSIVE)
				upper = Min(upper, ts);
		}
	}

	if (endpoint->collection_path == NULL)
		rows = accounts;
	else if (ids >= 0)
		rows = ids;
	else
		rows = Max(1.0, ((double) upper - (double) lower) / USECS_PER_DAY + 1) *
			endpoint->rows_per_day * accounts;
	plan->fetched_rows = rows;
	plan->requests = endpoint->collection_path == NULL || ids >= 0
		? rows * accounts
		: ceil(rows / server->page_size) + accounts - 1;
	plan->startup_cost = 100.0;
	plan->total_cost = plan->startup_cost + plan->requests * 100.0 +
		plan->fetched_rows * cpu_tuple_cost * 10;
}

/*
 * pushable_limit returns how many rows the query can possibly need when
 * the scan's rows go straight to a LIMIT (no local quals, no sort, no
 * grouping, no join), so paging can stop early; -1 otherwise.
 */
static int
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
	return (int) (count + offset);
}

/*
 * whoop_plan_private finishes the plan when the path is chosen -- the
 * columns to fill (those of DESC the query uses), the LIMIT the scan may
 * stop at -- and serializes it for the ForeignScan's fdw_private.
 */
List *
whoop_plan_private(PlannerInfo *root, RelOptInfo *baserel, WhoopScanPlan *plan,
				   TupleDesc desc)
{
	bool		whole_row = bms_is_member(0 - FirstLowInvalidHeapAttributeNumber,
										  plan->attrs_used);

	plan->retrieved_attrs = NIL;
	for (int i = 1; i <= desc->natts; i++)
	{
		if (TupleDescAttr(desc, i - 1)->attisdropped)
			continue;
		if (whole_row ||
			bms_is_member(i - FirstLowInvalidHeapAttributeNumber, plan->attrs_used))
			plan->retrieved_attrs = lappend_int(plan->retrieved_attrs, i);
	}
	plan->limit = pushable_limit(root, baserel);

	return list_make5(makeString(pstrdup(plan->endpoint->name)),
					  plan->retrieved_attrs,
					  plan->pushed_kinds,
					  makeInteger(plan->limit),
					  makeString(psprintf(INT64_FORMAT, plan->update_window_us)));
}

/*
 * whoop_plan_restore reads back, at execution, the plan that
 * whoop_plan_private serialized; FDW_EXPRS are the pushed expressions.
 */
WhoopScanPlan *
whoop_plan_restore(List *fdw_private, List *fdw_exprs)
{
	WhoopScanPlan *plan = palloc0(sizeof(WhoopScanPlan));

	plan->endpoint = whoop_endpoint_by_name(strVal(list_nth(fdw_private,
														   FdwPrivateEndpoint)));
	if (plan->endpoint == NULL)
		elog(ERROR, "whoop_fdw: unknown endpoint in plan");
	plan->retrieved_attrs = (List *) list_nth(fdw_private, FdwPrivateRetrievedAttrs);
	plan->pushed_kinds = (List *) list_nth(fdw_private, FdwPrivatePushedKinds);
	plan->limit = intVal(list_nth(fdw_private, FdwPrivateLimit));
	plan->update_window_us = strtoi64(strVal(list_nth(fdw_private,
													 FdwPrivateUpdateWindow)),
									  NULL, 10);
	plan->pushed_exprs = fdw_exprs;
	return plan;
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
 * api_time_min and api_time_max are the first and the last millisecond an
 * ISO-8601 date-time with a four-digit year can name: 0001-01-01T00:00:00.000Z
 * and 9999-12-31T23:59:59.999Z.
 */
static TimestampTz
api_time_min(void)
{
	return (TimestampTz) (date2j(1, 1, 1) - POSTGRES_EPOCH_JDATE) * USECS_PER_DAY;
}

static TimestampTz
api_time_max(void)
{
	return (TimestampTz) (date2j(10000, 1, 1) - POSTGRES_EPOCH_JDATE) * USECS_PER_DAY - 1000;
}

/*
 * api_timestamp formats a timestamp the way WHOOP's examples do
 * (2024-01-01T00:00:00.000Z); the caller keeps it within api_time_min and
 * api_time_max.
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
 * datum_text renders an id value as text, as a by-id path needs it.
 */
static char *
datum_text(Datum value, Oid type)
{
	Oid			output;
	bool		varlena;

	getTypeOutputInfo(type, &output, &varlena);
	return OidOutputFunctionCall(output, value);
}

/*
 * id_expressible says whether ID, the text of a value compared with the
 * endpoint's id column, is something its by-id path accepts: a
 * non-negative int64 in decimal for cycles (and recoveries, by cycle), a
 * UUID in its 8-4-4-4-12 form for sleeps and workouts.  A column declared
 * with another type (text, numeric) can hold values that are neither.
 */
static bool
id_expressible(const WhoopEndpoint *endpoint, const char *id)
{
	const WhoopField *field =
		&endpoint->fields[whoop_endpoint_field(endpoint, endpoint->by_id_column)];
	size_t		len = strlen(id);

	if (strcmp(field->sql_type, "uuid") == 0)
	{
		if (len != 36)
			return false;
		for (size_t i = 0; i < len; i++)
		{
			bool		dash = (i == 8 || i == 13 || i == 18 || i == 23);

			if (dash ? id[i] != '-' : !isxdigit((unsigned char) id[i]))
				return false;
		}
		return true;
	}
	if (len == 0 || len > 19 || strspn(id, "0123456789") != len)
		return false;
	return len < 19 || strcmp(id, "9223372036854775807") <= 0;
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
 * whoop_plan_requests decides the requests of a scan from its plan, the
 * VALUES (and NULLS) its pushed expressions have now, and the ACCOUNTS the
 * user may read (boxed user_ids): which accounts, which endpoint, which
 * start/end.  REQUESTS gets no request when the values exclude every row.
 */
void
whoop_plan_requests(const WhoopScanPlan *plan, const WhoopServer *server,
					List *accounts, const Datum *values, const bool *nulls,
					WhoopRequests *requests)
{
	const WhoopEndpoint *endpoint = plan->endpoint;
	TimestampTz lower = DT_NOBEGIN;
	TimestampTz upper = DT_NOEND;
	List	   *ids = NIL;
	bool		ids_constrained = false;
	List	   *users = NIL;
	bool		users_constrained = false;
	bool		empty = false;
	ListCell   *kind_cell;
	ListCell   *cell;
	int			page_limit;
	int			i = 0;
	StringInfoData query;

	requests->requests = NIL;
	requests->descriptions = NIL;
	foreach(kind_cell, plan->pushed_kinds)
	{
		WhoopPushKind kind = lfirst_int(kind_cell);
		Node	   *expr = list_nth(plan->pushed_exprs, 2 * i + 1);
		bool		isnull = nulls[i];
		Datum		value = values[i];

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
			case WHOOP_PUSH_LOWER_EXCLUSIVE:
			case WHOOP_PUSH_LOWER_BY_END:
			case WHOOP_PUSH_LOWER_BY_END_EXCLUSIVE:
				{
					TimestampTz ts = DatumGetTimestampTz(value);
					bool		by_end = (kind == WHOOP_PUSH_LOWER_BY_END ||
										  kind == WHOOP_PUSH_LOWER_BY_END_EXCLUSIVE);

					/*
					 * Nothing is later than 'infinity'; only 'infinity' is
					 * as late, which no request can ask for.
					 */
					if (TIMESTAMP_IS_NOEND(ts))
						empty |= (kind == WHOOP_PUSH_LOWER_EXCLUSIVE ||
								  kind == WHOOP_PUSH_LOWER_BY_END_EXCLUSIVE);
					else if (!TIMESTAMP_IS_NOBEGIN(ts))
						lower = Max(lower, floor_ms(ts) - (by_end ? 1000 : 0));
					break;
				}
			case WHOOP_PUSH_UPDATED_SINCE:
				{
					TimestampTz since = DatumGetTimestampTz(value);

					if (!TIMESTAMP_NOT_FINITE(since) &&
						since > MIN_TIMESTAMP + plan->update_window_us)
						lower = Max(lower, floor_ms(since - plan->update_window_us));
					break;
				}
			case WHOOP_PUSH_UPPER:
			case WHOOP_PUSH_UPPER_INCLUSIVE:
				{
					TimestampTz ts = DatumGetTimestampTz(value);

					/* likewise, nothing is earlier than '-infinity' */
					if (TIMESTAMP_IS_NOBEGIN(ts))
						empty |= (kind == WHOOP_PUSH_UPPER);
					else if (!TIMESTAMP_IS_NOEND(ts))
						upper = Min(upper, kind == WHOOP_PUSH_UPPER
									? ceil_ms(ts) : floor_ms(ts) + 1000);
					break;
				}
			case WHOOP_PUSH_ID:
			case WHOOP_PUSH_ID_ARRAY:
				{
					List	   *these = kind == WHOOP_PUSH_ID
						? list_make1(datum_text(value, exprType(expr)))
						: array_values(value, false);

					/*
					 * A row may have an id its by-id path cannot ask for:
					 * then the collection is read and the ids checked here.
					 */
					foreach(cell, these)
					{
						if (!id_expressible(endpoint, (char *) lfirst(cell)))
							break;
					}
					if (cell != NULL)
						break;
					ids = intersect(ids, these, ids_constrained, same_text);
					ids_constrained = true;
					break;
				}
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
	/* a bound ISO-8601 cannot write is not sent: the request asks for more */
	if (!TIMESTAMP_NOT_FINITE(lower) && (lower < api_time_min() || lower > api_time_max()))
		lower = DT_NOBEGIN;
	if (!TIMESTAMP_NOT_FINITE(upper) && (upper < api_time_min() || upper > api_time_max()))
		upper = DT_NOEND;

	if (users_constrained)
		accounts = intersect(accounts, users, true, same_user_id);
	requests->naccounts = list_length(accounts);
	if (accounts == NIL || empty)
		return;

	page_limit = server->page_size;
	if (plan->limit >= 0)
		page_limit = Max(1, Min(page_limit, plan->limit));

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
		requests->descriptions = list_make1(psprintf("GET %s", query.data));
	}
	else if (endpoint->collection_path == NULL)
	{
		appendStringInfoString(&query, endpoint->single_path);
		requests->descriptions = list_make1(psprintf("GET %s", query.data));
	}

	if (ids_constrained)
	{
		/* one lookup per id; the first account that has it wins */
		foreach(cell, ids)
		{
			char	   *path = psprintf(endpoint->by_id_path,
										whoop_http_escape((char *) lfirst(cell)));
			ListCell   *account;

			requests->descriptions = lappend(requests->descriptions,
											 psprintf("GET %s", path));
			foreach(account, accounts)
			{
				WhoopScanRequest *request = palloc0(sizeof(WhoopScanRequest));

				request->user_id = *(int64 *) lfirst(account);
				request->path = path;
				request->id = lfirst(cell);
				request->missing_ok = true;
				requests->requests = lappend(requests->requests, request);
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
			requests->requests = lappend(requests->requests, request);
		}
	}
}
