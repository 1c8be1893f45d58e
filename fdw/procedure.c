/*-------------------------------------------------------------------------
 *
 * procedure.c
 *		  What the extension's SQL procedures need of the server and cannot
 *		  ask in SQL: whether they run inside a transaction block.
 *
 * whoop.run_pipeline commits after each step, so that every step's outcome
 * is recorded even when a later one fails.  Inside BEGIN ... COMMIT its
 * first COMMIT would fail with a bare "invalid transaction termination"
 * (2D000) after the run had been admitted; asked first, the procedure
 * refuses at once and says what to do.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "whoop_fdw.h"

#include "access/xact.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(whoop_assert_outside_transaction_block);

/*
 * whoop_assert_outside_transaction_block raises an error naming the
 * procedure CALLER when it is called inside a transaction block.
 */
Datum
whoop_assert_outside_transaction_block(PG_FUNCTION_ARGS)
{
	char	   *caller = PG_ARGISNULL(0) ? "this procedure"
		: text_to_cstring(PG_GETARG_TEXT_PP(0));

	if (IsTransactionBlock())
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("%s cannot run inside a transaction block", caller),
				 errdetail("It commits after each step, so that every step's outcome is recorded even when a later step fails."),
				 errhint("CALL it on its own, outside BEGIN ... COMMIT (with autocommit on, as psql has by default).")));
	PG_RETURN_VOID();
}
