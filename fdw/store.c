/*-------------------------------------------------------------------------
 *
 * store.c
 *		  The account table (WHOOP_ACCOUNT_RELATION) and its autonomous writer.
 *
 * WHOOP rotates refresh tokens: the moment a refresh succeeds, the old
 * refresh token is dead.  The new one must therefore be durable before
 * anything else can go wrong -- even if the statement that caused the
 * refresh is canceled or its transaction rolls back.  A write in the
 * caller's transaction cannot promise that, so token writes go through a
 * short-lived dynamic background worker that commits them in its own
 * transaction.  The worker is started BEFORE the token request is sent, so
 * a refresh is never attempted when the token could not be saved (no free
 * worker slot, say); the backend hands it the tokens through a shared
 * memory segment and waits, with interrupts held, until it has committed.
 *
 * Reads run with the table owner's rights and a fresh snapshot, so a
 * backend sees a refresh committed by another session even inside a
 * REPEATABLE READ transaction.  Refreshes are serialized per account with
 * a session-level advisory lock in a lock space of our own.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "whoop_fdw.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

/* PGPROC lost its pgprocno field in PostgreSQL 17 */
#if PG_VERSION_NUM >= 170000
#define WHOOP_MY_PROCNO ((int) GetNumberFromPGProc(MyProc))
#else
#define WHOOP_MY_PROCNO (MyProc->pgprocno)
#endif

/* advisory-lock field4 of our own, apart from user advisory locks (1, 2) */
#define WHOOP_LOCK_SPACE 0x5748

/* the writer's shared segment: fixed header plus room for the strings */
#define WRITER_SEGMENT_SIZE 65536

/* how long a backend waits for the writer, and the writer for the backend */
#define WRITER_COMMIT_TIMEOUT_MS 60000
#define WRITER_IDLE_TIMEOUT_MS 600000

typedef enum WriterState
{
	WRITER_STARTING,			/* worker not yet connected */
	WRITER_READY,				/* connected, waiting for work */
	WRITER_GO,					/* work handed over: do it */
	WRITER_ABANDON,				/* nothing to write: exit */
	WRITER_DONE,				/* committed */
	WRITER_FAILED				/* could not connect or write; see error */
} WriterState;

typedef enum WriterOp
{
	WRITER_SAVE_TOKENS,
	WRITER_MARK_FAILED,
	WRITER_FORGET
} WriterOp;

/* strings passed to the writer, stored back to back after the header */
typedef enum WriterString
{
	WS_SERVER,
	WS_ACCESS_TOKEN,
	WS_REFRESH_TOKEN,
	WS_SCOPE,
	WS_EMAIL,
	WS_FIRST_NAME,
	WS_LAST_NAME,
	WS_STATUS,
	WS_ERROR,
	WS_COUNT
} WriterString;

typedef struct WriterShared
{
	slock_t		mutex;
	WriterState state;
	pid_t		backend_pid;
	int			backend_procno;
	int			worker_procno;
	Oid			database;
	Oid			role;
	WriterOp	op;
	int64		user_id;
	Oid			owner;
	int			expires_in;
	int			string_offset[WS_COUNT];	/* -1: NULL */
	int			used;
	char		error[512];
	char		strings[FLEXIBLE_ARRAY_MEMBER];
} WriterShared;

struct WhoopTokenWriter
{
	dsm_segment *segment;
	WriterShared *shared;
	BackgroundWorkerHandle *handle;
};

PGDLLEXPORT void whoop_token_writer_main(Datum main_arg);

static Oid	account_table_owner(void);
static void run_as_owner_begin(Oid *save_userid, int *save_sec, int *save_nestlevel);
static void run_as_owner_end(Oid save_userid, int save_sec, int save_nestlevel);
static WriterState writer_state(WriterShared *shared);
static void writer_set_state(WriterShared *shared, WriterState state);
static void writer_put(WriterShared *shared, WriterString which, const char *value);
static const char *writer_get(WriterShared *shared, WriterString which);
static void writer_commit(WhoopTokenWriter *writer);
static void writer_execute(WriterShared *shared);
static void set_latch_of(int procno);

/*
 * account_table_owner returns the role owning the token table: the rights
 * every access to the tokens runs with.
 */
static Oid
account_table_owner(void)
{
	Oid			nspid = get_namespace_oid(WHOOP_ACCOUNT_SCHEMA, false);
	Oid			relid = get_relname_relid(WHOOP_ACCOUNT_TABLE, nspid);
	HeapTuple	tuple;
	Oid			owner;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table %s does not exist", WHOOP_ACCOUNT_RELATION),
				 errhint("Is the whoop_fdw extension installed in this database?")));
	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);
	return owner;
}

/*
 * run_as_owner_begin switches to the account table's owner with a safe
 * search_path, as a SECURITY DEFINER function would; run_as_owner_end
 * switches back.  An error in between is unwound by transaction abort.
 */
static void
run_as_owner_begin(Oid *save_userid, int *save_sec, int *save_nestlevel)
{
	Oid			owner = account_table_owner();

	GetUserIdAndSecContext(save_userid, save_sec);
	SetUserIdAndSecContext(owner, *save_sec | SECURITY_LOCAL_USERID_CHANGE);
	*save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

static void
run_as_owner_end(Oid save_userid, int save_sec, int save_nestlevel)
{
	AtEOXact_GUC(true, save_nestlevel);
	SetUserIdAndSecContext(save_userid, save_sec);
}

/*
 * whoop_store_read reads one account's tokens with a fresh snapshot, so a
 * refresh another session committed a moment ago is visible.
 */
void
whoop_store_read(const char *server_name, int64 user_id, WhoopStoredAccount *account)
{
	static const char query[] =
		"select owner::oid, status, refresh_token, access_token, "
		"access_expires_at, token_version "
		"from " WHOOP_ACCOUNT_RELATION " "
		"where server_name operator(pg_catalog.=) $1 "
		"and user_id operator(pg_catalog.=) $2";
	Oid			argtypes[2] = {NAMEOID, INT8OID};
	Datum		values[2];
	MemoryContext caller = CurrentMemoryContext;
	Oid			save_userid;
	int			save_sec;
	int			save_nestlevel;
	SPIPlanPtr	plan;
	NameData	server;

	memset(account, 0, sizeof(WhoopStoredAccount));
	account->user_id = user_id;
	namestrcpy(&server, server_name);
	values[0] = NameGetDatum(&server);
	values[1] = Int64GetDatum(user_id);

	run_as_owner_begin(&save_userid, &save_sec, &save_nestlevel);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	plan = SPI_prepare(query, 2, argtypes);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	if (SPI_execute_snapshot(plan, values, NULL, GetLatestSnapshot(),
							 InvalidSnapshot, true, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read %s", WHOOP_ACCOUNT_RELATION);
	if (SPI_processed == 1)
	{
		HeapTuple	tuple = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		d;
		MemoryContext spi = MemoryContextSwitchTo(caller);

		account->found = true;
		account->owner = DatumGetObjectId(SPI_getbinval(tuple, desc, 1, &isnull));
		account->status = SPI_getvalue(tuple, desc, 2);
		account->refresh_token = SPI_getvalue(tuple, desc, 3);
		account->access_token = SPI_getvalue(tuple, desc, 4);
		d = SPI_getbinval(tuple, desc, 5, &isnull);
		account->access_expires_at = isnull ? DT_NOBEGIN : DatumGetTimestampTz(d);
		account->token_version = DatumGetInt64(SPI_getbinval(tuple, desc, 6, &isnull));
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();
	run_as_owner_end(save_userid, save_sec, save_nestlevel);
}

/*
 * whoop_store_usable_accounts lists the user_ids of a server's accounts
 * that USERID may use (it is the owner or a member of the owner role).
 */
List *
whoop_store_usable_accounts(const char *server_name, Oid userid)
{
	static const char query[] =
		"select user_id from " WHOOP_ACCOUNT_RELATION " "
		"where server_name operator(pg_catalog.=) $1 "
		"and pg_catalog.pg_has_role($2, owner::oid, 'usage') "
		"order by user_id";
	Oid			argtypes[2] = {NAMEOID, OIDOID};
	Datum		values[2];
	MemoryContext caller = CurrentMemoryContext;
	List	   *user_ids = NIL;
	Oid			save_userid;
	int			save_sec;
	int			save_nestlevel;
	NameData	server;

	namestrcpy(&server, server_name);
	values[0] = NameGetDatum(&server);
	values[1] = ObjectIdGetDatum(userid);

	run_as_owner_begin(&save_userid, &save_sec, &save_nestlevel);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args(query, 2, argtypes, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read %s", WHOOP_ACCOUNT_RELATION);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		int64		user_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
														  SPI_tuptable->tupdesc, 1,
														  &isnull));
		MemoryContext spi = MemoryContextSwitchTo(caller);
		int64	   *boxed = palloc(sizeof(int64));

		*boxed = user_id;
		user_ids = lappend(user_ids, boxed);
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();
	run_as_owner_end(save_userid, save_sec, save_nestlevel);
	return user_ids;
}

/*
 * account_locktag fills the advisory lock tag that serializes refreshes of
 * one account across all backends of the database.
 */
static void
account_locktag(LOCKTAG *tag, const char *server_name, int64 user_id)
{
	uint32		server_hash = hash_bytes((const unsigned char *) server_name,
										 strlen(server_name));

	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, server_hash,
						 (uint32) (user_id ^ (user_id >> 32)), WHOOP_LOCK_SPACE);
}

/*
 * whoop_account_lock waits (interruptibly) for the account's refresh lock.
 * It is a session lock -- a rollback does not release it -- so callers
 * release it in PG_FINALLY.
 */
void
whoop_account_lock(const char *server_name, int64 user_id)
{
	LOCKTAG		tag;

	account_locktag(&tag, server_name, user_id);
	(void) LockAcquire(&tag, ExclusiveLock, true, false);
}

void
whoop_account_unlock(const char *server_name, int64 user_id)
{
	LOCKTAG		tag;

	account_locktag(&tag, server_name, user_id);
	LockRelease(&tag, ExclusiveLock, true);
}


/* ---------------------------------------------------------------------
 * The autonomous writer
 * ---------------------------------------------------------------------
 */

static WriterState
writer_state(WriterShared *shared)
{
	WriterState state;

	SpinLockAcquire(&shared->mutex);
	state = shared->state;
	SpinLockRelease(&shared->mutex);
	return state;
}

static void
writer_set_state(WriterShared *shared, WriterState state)
{
	SpinLockAcquire(&shared->mutex);
	shared->state = state;
	SpinLockRelease(&shared->mutex);
}

/*
 * set_latch_of wakes the process with the given PGPROC number.
 */
static void
set_latch_of(int procno)
{
	if (procno >= 0)
		SetLatch(&ProcGlobal->allProcs[procno].procLatch);
}

/*
 * whoop_token_writer_start starts a writer worker and waits until it is
 * connected to this database, so that a token obtained afterwards can
 * certainly be saved.  Fails (before any token is spent) when no worker
 * slot is free.
 */
WhoopTokenWriter *
whoop_token_writer_start(void)
{
	WhoopTokenWriter *writer = palloc0(sizeof(WhoopTokenWriter));
	BackgroundWorker worker;
	pid_t		pid;

	writer->segment = dsm_create(WRITER_SEGMENT_SIZE, 0);
	writer->shared = dsm_segment_address(writer->segment);
	memset(writer->shared, 0, offsetof(WriterShared, strings));
	SpinLockInit(&writer->shared->mutex);
	writer->shared->state = WRITER_STARTING;
	writer->shared->backend_pid = MyProcPid;
	writer->shared->backend_procno = WHOOP_MY_PROCNO;
	writer->shared->worker_procno = -1;
	writer->shared->database = MyDatabaseId;
	writer->shared->role = account_table_owner();
	for (int i = 0; i < WS_COUNT; i++)
		writer->shared->string_offset[i] = -1;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "$libdir/whoop_fdw");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "whoop_token_writer_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "whoop_fdw token writer for PID %d", MyProcPid);
	snprintf(worker.bgw_type, BGW_MAXLEN, "whoop_fdw token writer");
	worker.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(writer->segment));
	worker.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&worker, &writer->handle))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start the whoop_fdw token writer"),
				 errdetail("No background worker slot is free; no token was requested from WHOOP."),
				 errhint("Raise max_worker_processes, or retry when fewer background workers run.")));
	if (WaitForBackgroundWorkerStartup(writer->handle, &pid) != BGWH_STARTED)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("could not start the whoop_fdw token writer"),
				 errdetail("The background worker did not start; no token was requested from WHOOP.")));

	for (;;)
	{
		WriterState state = writer_state(writer->shared);

		if (state == WRITER_READY)
			break;
		if (state == WRITER_FAILED ||
			GetBackgroundWorkerPid(writer->handle, &pid) == BGWH_STOPPED)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
					 errmsg("could not start the whoop_fdw token writer"),
					 errdetail("%s", writer->shared->error[0] ? writer->shared->error
							   : "The background worker exited before connecting."),
					 errhint("The worker connects as the owner of table " WHOOP_ACCOUNT_RELATION ", which must be allowed to log in.")));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 100, whoop_wait_event());
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	return writer;
}

/*
 * whoop_token_writer_abandon tells a writer that there is nothing to save.
 */
void
whoop_token_writer_abandon(WhoopTokenWriter *writer)
{
	if (writer == NULL || writer->shared == NULL)
		return;
	writer_set_state(writer->shared, WRITER_ABANDON);
	set_latch_of(writer->shared->worker_procno);
	dsm_detach(writer->segment);
	writer->shared = NULL;
}

/*
 * writer_put copies one string into the writer's segment.
 */
static void
writer_put(WriterShared *shared, WriterString which, const char *value)
{
	size_t		room = WRITER_SEGMENT_SIZE - offsetof(WriterShared, strings);
	size_t		len;

	if (value == NULL)
	{
		shared->string_offset[which] = -1;
		return;
	}
	len = strlen(value) + 1;
	if (shared->used + len > room)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("WHOOP token data is too large to store")));
	memcpy(shared->strings + shared->used, value, len);
	shared->string_offset[which] = shared->used;
	shared->used += len;
}

static const char *
writer_get(WriterShared *shared, WriterString which)
{
	if (shared->string_offset[which] < 0)
		return NULL;
	return shared->strings + shared->string_offset[which];
}

/*
 * writer_commit hands the prepared work to the writer and waits, with
 * interrupts held, until it has committed: once the work is handed over,
 * the account lock must not be released before the write is visible.
 */
static void
writer_commit(WhoopTokenWriter *writer)
{
	WriterShared *shared = writer->shared;
	TimestampTz deadline = GetCurrentTimestamp() +
		(int64) WRITER_COMMIT_TIMEOUT_MS * 1000;
	WriterState state;

	HOLD_INTERRUPTS();
	writer_set_state(shared, WRITER_GO);
	set_latch_of(shared->worker_procno);
	for (;;)
	{
		pid_t		pid;

		state = writer_state(shared);
		if (state == WRITER_DONE || state == WRITER_FAILED)
			break;
		if (GetBackgroundWorkerPid(writer->handle, &pid) == BGWH_STOPPED)
		{
			state = writer_state(shared);
			break;
		}
		if (GetCurrentTimestamp() > deadline)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 100, whoop_wait_event());
		ResetLatch(MyLatch);
	}
	RESUME_INTERRUPTS();

	if (state != WRITER_DONE)
	{
		char		error[512];

		strlcpy(error, shared->error[0] ? shared->error : "the worker did not finish in time",
				sizeof(error));
		dsm_detach(writer->segment);
		writer->shared = NULL;
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not save WHOOP tokens"),
				 errdetail("The token writer failed: %s", error),
				 errhint("If WHOOP rotated the refresh token, the account must be linked again.")));
	}
	dsm_detach(writer->segment);
	writer->shared = NULL;
	CHECK_FOR_INTERRUPTS();
}

/*
 * whoop_store_save_tokens durably saves a token set for an account (a new
 * account, or a refresh of an existing one) through a writer the caller
 * started before it asked WHOOP for the tokens.
 */
void
whoop_store_save_tokens(WhoopTokenWriter *writer, const char *server_name,
							 int64 user_id, Oid owner, const WhoopTokens *tokens,
							 const WhoopProfile *profile)
{
	WriterShared *shared = writer->shared;

	shared->op = WRITER_SAVE_TOKENS;
	shared->user_id = user_id;
	shared->owner = owner;
	shared->expires_in = tokens->expires_in;
	writer_put(shared, WS_SERVER, server_name);
	writer_put(shared, WS_ACCESS_TOKEN, tokens->access_token);
	writer_put(shared, WS_REFRESH_TOKEN, tokens->refresh_token);
	writer_put(shared, WS_SCOPE, tokens->scope);
	if (profile != NULL)
	{
		writer_put(shared, WS_EMAIL, profile->email);
		writer_put(shared, WS_FIRST_NAME, profile->first_name);
		writer_put(shared, WS_LAST_NAME, profile->last_name);
	}
	writer_commit(writer);
}

/*
 * whoop_store_mark_failed durably records that an account needs attention
 * (status and error text) although the caller is about to raise an error.
 */
void
whoop_store_mark_failed(WhoopTokenWriter *writer, const char *server_name,
							 int64 user_id, const char *status, const char *error)
{
	WriterShared *shared = writer->shared;

	shared->op = WRITER_MARK_FAILED;
	shared->user_id = user_id;
	writer_put(shared, WS_SERVER, server_name);
	writer_put(shared, WS_STATUS, status);
	writer_put(shared, WS_ERROR, error);
	writer_commit(writer);
}

/*
 * whoop_store_forget durably deletes an account and its tokens.
 */
void
whoop_store_forget(const char *server_name, int64 user_id)
{
	WhoopTokenWriter *writer = whoop_token_writer_start();
	WriterShared *shared = writer->shared;

	shared->op = WRITER_FORGET;
	shared->user_id = user_id;
	writer_put(shared, WS_SERVER, server_name);
	writer_commit(writer);
}

/*
 * whoop_token_writer_main is the writer worker: connect, say ready, wait
 * for work, write it in a transaction of its own, report, exit.
 */
void
whoop_token_writer_main(Datum main_arg)
{
	dsm_segment *segment;
	WriterShared *shared;
	TimestampTz deadline;
	WriterState state;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	CurrentResourceOwner = ResourceOwnerCreate(NULL, "whoop_fdw token writer");
	segment = dsm_attach(DatumGetUInt32(main_arg));
	if (segment == NULL)
		proc_exit(1);			/* the backend is gone: nothing to write */
	shared = dsm_segment_address(segment);

	BackgroundWorkerInitializeConnectionByOid(shared->database, shared->role, 0);

	SpinLockAcquire(&shared->mutex);
	shared->worker_procno = WHOOP_MY_PROCNO;
	if (shared->state == WRITER_STARTING)
		shared->state = WRITER_READY;
	SpinLockRelease(&shared->mutex);
	set_latch_of(shared->backend_procno);

	/*
	 * Wait for work.  Once the backend said GO the data is here, and is
	 * written even if the backend has gone away meanwhile; before that, a
	 * vanished backend means there is nothing to do.
	 */
	deadline = GetCurrentTimestamp() + (int64) WRITER_IDLE_TIMEOUT_MS * 1000;
	for (;;)
	{
		state = writer_state(shared);
		if (state == WRITER_GO || state == WRITER_ABANDON)
			break;
		if (BackendPidGetProc(shared->backend_pid) == NULL ||
			GetCurrentTimestamp() > deadline)
		{
			state = WRITER_ABANDON;
			break;
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1000, whoop_wait_event());
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	if (state == WRITER_ABANDON)
		proc_exit(0);

	PG_TRY();
	{
		writer_execute(shared);
		writer_set_state(shared, WRITER_DONE);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(TopMemoryContext);
		edata = CopyErrorData();
		strlcpy(shared->error, edata->message ? edata->message : "unknown error",
				sizeof(shared->error));
		writer_set_state(shared, WRITER_FAILED);
		set_latch_of(shared->backend_procno);
		PG_RE_THROW();
	}
	PG_END_TRY();
	set_latch_of(shared->backend_procno);
	proc_exit(0);
}

/*
 * writer_execute performs the handed-over write and commits it.  A save
 * never hands an account to a role without the privileges of its owner:
 * account.c checks that before it asks WHOOP for tokens, and the upsert
 * checks it again, against a link by another role in between.
 */
static void
writer_execute(WriterShared *shared)
{
	static const char save_sql[] =
		"insert into " WHOOP_ACCOUNT_RELATION " as a (server_name, user_id, owner, email, "
		"  first_name, last_name, status, refresh_token, access_token, access_expires_at, "
		"  scope, token_version, last_refresh_at, last_error) "
		"values ($1, $2, $3, $4, $5, $6, 'active', $7, $8, "
		"  pg_catalog.now() operator(pg_catalog.+) pg_catalog.make_interval(secs => $9), "
		"  $10, 1, pg_catalog.now(), null) "
		"on conflict (server_name, user_id) do update set "
		"  status = 'active', "
		"  refresh_token = coalesce(excluded.refresh_token, a.refresh_token), "
		"  access_token = excluded.access_token, "
		"  access_expires_at = excluded.access_expires_at, "
		"  scope = coalesce(excluded.scope, a.scope), "
		"  email = coalesce(excluded.email, a.email), "
		"  first_name = coalesce(excluded.first_name, a.first_name), "
		"  last_name = coalesce(excluded.last_name, a.last_name), "
		"  owner = excluded.owner, "
		"  token_version = a.token_version operator(pg_catalog.+) 1, "
		"  last_refresh_at = excluded.last_refresh_at, "
		"  last_error = null "
		"where pg_catalog.pg_has_role(excluded.owner::oid, a.owner::oid, 'usage')";
	static const char mark_sql[] =
		"update " WHOOP_ACCOUNT_RELATION " set status = $3, last_error = $4, "
		"  token_version = token_version operator(pg_catalog.+) 1 "
		"where server_name operator(pg_catalog.=) $1 "
		"and user_id operator(pg_catalog.=) $2";
	static const char forget_sql[] =
		"delete from " WHOOP_ACCOUNT_RELATION " "
		"where server_name operator(pg_catalog.=) $1 "
		"and user_id operator(pg_catalog.=) $2";
	NameData	server;
	int			rc;

	namestrcpy(&server, writer_get(shared, WS_SERVER));

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SET, true, 0, false);

	/*
	 * "Durable" means flushed when we say done: with synchronous_commit =
	 * off (set for the cluster, the database or the table owner) the commit
	 * would return before its WAL reaches disk, and a crash in the next
	 * moments would bring back the refresh token WHOOP has just killed.
	 * Stronger settings (waiting for a standby too) are kept.
	 */
	if (synchronous_commit < SYNCHRONOUS_COMMIT_LOCAL_FLUSH)
		(void) set_config_option("synchronous_commit", "local",
								 PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SET, true, 0, false);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "whoop_fdw: saving account tokens");

	if (shared->op == WRITER_SAVE_TOKENS)
	{
		Oid			types[10] = {NAMEOID, INT8OID, REGROLEOID, TEXTOID, TEXTOID, TEXTOID,
		TEXTOID, TEXTOID, FLOAT8OID, TEXTOID};
		Datum		values[10];
		char		nulls[10];
		const WriterString strings[] = {WS_EMAIL, WS_FIRST_NAME, WS_LAST_NAME,
		WS_REFRESH_TOKEN, WS_ACCESS_TOKEN};

		values[0] = NameGetDatum(&server);
		values[1] = Int64GetDatum(shared->user_id);
		values[2] = ObjectIdGetDatum(shared->owner);
		memset(nulls, ' ', sizeof(nulls));
		for (int i = 0; i < lengthof(strings); i++)
		{
			const char *s = writer_get(shared, strings[i]);

			values[3 + i] = s ? CStringGetTextDatum(s) : (Datum) 0;
			nulls[3 + i] = s ? ' ' : 'n';
		}
		values[8] = Float8GetDatum((double) shared->expires_in);
		values[9] = writer_get(shared, WS_SCOPE)
			? CStringGetTextDatum(writer_get(shared, WS_SCOPE)) : (Datum) 0;
		nulls[9] = writer_get(shared, WS_SCOPE) ? ' ' : 'n';
		rc = SPI_execute_with_args(save_sql, 10, types, values, nulls, false, 0);
		if (rc != SPI_OK_INSERT)
			elog(ERROR, "saving WHOOP tokens failed: %s", SPI_result_code_string(rc));
		if (SPI_processed != 1)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("WHOOP account " INT64_FORMAT " was linked to server \"%s\" by another role meanwhile",
							shared->user_id, NameStr(server))));
	}
	else if (shared->op == WRITER_MARK_FAILED)
	{
		Oid			types[4] = {NAMEOID, INT8OID, TEXTOID, TEXTOID};
		Datum		values[4];
		char		nulls[4] = {' ', ' ', ' ', ' '};

		values[0] = NameGetDatum(&server);
		values[1] = Int64GetDatum(shared->user_id);
		values[2] = CStringGetTextDatum(writer_get(shared, WS_STATUS));
		if (writer_get(shared, WS_ERROR))
			values[3] = CStringGetTextDatum(writer_get(shared, WS_ERROR));
		else
			nulls[3] = 'n';
		rc = SPI_execute_with_args(mark_sql, 4, types, values, nulls, false, 0);
		if (rc != SPI_OK_UPDATE)
			elog(ERROR, "marking the WHOOP account failed: %s", SPI_result_code_string(rc));
	}
	else
	{
		Oid			types[2] = {NAMEOID, INT8OID};
		Datum		values[2];

		values[0] = NameGetDatum(&server);
		values[1] = Int64GetDatum(shared->user_id);
		rc = SPI_execute_with_args(forget_sql, 2, types, values, NULL, false, 0);
		if (rc != SPI_OK_DELETE)
			elog(ERROR, "forgetting the WHOOP account failed: %s", SPI_result_code_string(rc));
	}

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
}
