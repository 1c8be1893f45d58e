/*-------------------------------------------------------------------------
 *
 * whoop_fdw.c
 *		  Foreign-data wrapper callbacks for the WHOOP developer API.
 *
 *-------------------------------------------------------------------------
 */
#include "whoop_fdw.h"

#include "fmgr.h"
#include "foreign/fdwapi.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(whoop_fdw_handler);
PG_FUNCTION_INFO_V1(whoop_fdw_validator);

/*
 * whoop_fdw_handler returns the FdwRoutine with the scan callbacks.
 */
Datum
whoop_fdw_handler(PG_FUNCTION_ARGS)
{
	FdwRoutine *routine = makeNode(FdwRoutine);

	PG_RETURN_POINTER(routine);
}

/*
 * whoop_fdw_validator checks options given to the wrapper's objects.
 */
Datum
whoop_fdw_validator(PG_FUNCTION_ARGS)
{
	PG_RETURN_VOID();
}
