/*-------------------------------------------------------------------------
 *
 * procedure.c
 *		  What the extension's SQL procedures need of the server and cannot
 *		  ask in SQL: whether they run inside a transaction block, and the
 *		  sync settings of a server and its foreign tables.
 *
 * whoop.run_pipeline commits after each step, so that every step's outcome
 * is recorded even when a later one fails.  Inside BEGIN ... COMMIT its
 * first COMMIT would fail with a bare "invalid transaction termination"
 * (2D000) after the run had been admitted; asked first, the procedure
 * refuses at once and says what to do.
 *
 * whoop.sync reads its settings (update window, deletion guard, polling
 * intervals) from here rather than from the catalogs: the defaults and the
 * reading of an interval option (a month counts as 30 days) are option.c's,
 * so the window the sync reconciles is to the microsecond the one the
 * pushdown turns into the API's start parameter.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "whoop_fdw.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "foreign/foreign.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

static Datum interval_datum_us(int64 us);

PG_FUNCTION_INFO_V1(whoop_assert_outside_transaction_block);
PG_FUNCTION_INFO_V1(whoop_sync_settings);
PG_FUNCTION_INFO_V1(whoop_table_update_window_sql);

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

/*
 * whoop_sync_settings returns a server's max_sync_deletions,
 * cycle_poll_interval (NULL when not set), profile_poll_interval,
 * backfill_first_days, backfill_chunk_days, backfill_max_chunks_per_sync
 * (NULL when not set), reconcile_interval (NULL when not set),
 * poll_cycles_on_event, webhook_retention and recovery_follow_up, with the
 * defaults applied.
 */
Datum
whoop_sync_settings(PG_FUNCTION_ARGS)
{
	WhoopServer *server = whoop_get_server_by_name(NameStr(*PG_GETARG_NAME(0)), false);
	TupleDesc	desc;
	Datum		values[10];
	bool		nulls[10] = {false, false, false, false, false, false, false, false, false, false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	values[0] = Int32GetDatum(server->max_sync_deletions);
	if (server->cycle_poll_interval_us < 0)
		nulls[1] = true;
	else
		values[1] = interval_datum_us(server->cycle_poll_interval_us);
	values[2] = interval_datum_us(server->profile_poll_interval_us);
	values[3] = Int32GetDatum(server->backfill_first_days);
	values[4] = Int32GetDatum(server->backfill_chunk_days);
	if (server->backfill_max_chunks < 0)
		nulls[5] = true;
	else
		values[5] = Int32GetDatum(server->backfill_max_chunks);
	if (server->reconcile_interval_us < 0)
		nulls[6] = true;
	else
		values[6] = interval_datum_us(server->reconcile_interval_us);
	values[7] = BoolGetDatum(server->poll_cycles_on_event);
	values[8] = interval_datum_us(server->webhook_retention_us);
	values[9] = interval_datum_us(server->recovery_follow_up_us);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

/*
 * whoop_table_update_window_sql returns the update window of a whoop_fdw
 * foreign table (its own option, else its server's), NULL when neither
 * declares one.
 */
Datum
whoop_table_update_window_sql(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	ForeignTable *table = GetForeignTable(relid);
	int64		us = whoop_table_update_window(relid, whoop_get_server(table->serverid));

	if (us < 0)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(interval_datum_us(us));
}

/*
 * interval_datum_us makes an interval of exactly us microseconds: no days
 * or months, which timestamptz arithmetic would stretch across a daylight
 * saving change.
 */
static Datum
interval_datum_us(int64 us)
{
	Interval   *interval = palloc0(sizeof(Interval));

	interval->time = us;
	return IntervalPGetDatum(interval);
}
