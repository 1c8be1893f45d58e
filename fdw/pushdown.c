/*-------------------------------------------------------------------------
 *
 * pushdown.c
 *		  Turning WHERE clauses into WHOOP request parameters.
 *
 * Pushdown here is a prefilter: the API is asked for a superset of the
 * rows the clauses accept, and PostgreSQL still checks every clause
 * locally, so results are exact whatever the API's boundary semantics.
 * What can be pushed:
 *	- comparisons of start and "end" with a value  -> API start/end (records
 *	  overlapping [start, end));
 *	- updated_at >= value, only where an update window is declared: WHOOP
 *	  changes a record at most that long after it began, so
 *	  start = value - window finds every record updated since value;
 *	- id = value (cycle_id for recovery), = ANY(array)  -> by-id endpoint;
 *	- user_id = value, = ANY(array)  -> which accounts are asked.
 * A "value" is anything without Vars of this query level and without
 * volatile functions: constants, parameters, and stable expressions such
 * as now() - interval '7 days'.  It is evaluated at execution time.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "whoop_fdw.h"

#include "access/stratnum.h"
#include "catalog/pg_am.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/clauses.h"
#include "optimizer/optimizer.h"
#include "optimizer/pathnode.h"
#include "parser/parse_coerce.h"
#include "parser/parsetree.h"
#include "utils/lsyscache.h"

static Var *column_of(Node *node, Index relid);
static bool is_pushable_value(Node *node);
static int	btree_strategy(Oid opno, Oid lefttype);
static Node *coerce_value(Node *value, Oid type, bool array);
static void push(List **kinds, List **exprs, WhoopPushKind kind, Expr *clause,
				 Node *value);

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
 * whoop_classify_quals finds the restriction clauses that can shape the
 * requests.  PUSHED_KINDS gets a WhoopPushKind per pushed entry,
 * PUSHED_EXPRS a (clause, value) pair per entry, PUSHED_QUALS the
 * RestrictInfos involved.  All clauses stay local quals as well.
 */
void
whoop_classify_quals(PlannerInfo *root, RelOptInfo *baserel,
					 const WhoopEndpoint *endpoint, int64 update_window_us,
					 List **pushed_kinds, List **pushed_exprs, List **pushed_quals)
{
	RangeTblEntry *rte = planner_rt_fetch(baserel->relid, root);
	ListCell   *cell;

	*pushed_kinds = NIL;
	*pushed_exprs = NIL;
	*pushed_quals = NIL;

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
				if (strategy == BTGreaterStrategyNumber ||
					strategy == BTGreaterEqualStrategyNumber ||
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
				if (strategy == BTGreaterStrategyNumber ||
					strategy == BTGreaterEqualStrategyNumber ||
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
			*pushed_quals = lappend(*pushed_quals, rinfo);
	}
}
