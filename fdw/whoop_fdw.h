/*-------------------------------------------------------------------------
 *
 * whoop_fdw.h
 *		  Declarations shared by the files of whoop_fdw.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WHOOP_FDW_H
#define WHOOP_FDW_H

#include "postgres.h"

#ifndef WHOOP_FDW_VERSION
#define WHOOP_FDW_VERSION "unknown"
#endif

#endif							/* WHOOP_FDW_H */
