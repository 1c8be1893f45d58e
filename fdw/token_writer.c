/*-------------------------------------------------------------------------
 *
 * token_writer.c
 *		  The token writer: a short-lived background worker that commits one
 *		  store write in a transaction of its own.
 *
 * WHOOP rotates refresh tokens: the moment a refresh succeeds, the old
 * refresh token is dead.  The new one must therefore be durable before
 * anything else can go wrong -- even if the statement that caused the
 * refresh is canceled or its transaction rolls back.  A write in the
 * caller's transaction cannot promise that, so token writes go through a
 * dynamic background worker that commits them in its own transaction.
 * The worker is started BEFORE the token request is sent, so a refresh is
 * never attempted when the token could not be saved (no free worker slot,
 * say); the backend hands it the write through a shared memory segment
 * and waits, with interrupts held, until it has committed.  What is
 * written, and how, is store.c's: the worker only runs whoop_store_write.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "whoop_fdw.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

/* PGPROC lost its pgprocno field in PostgreSQL 17 */
#if PG_VERSION_NUM >= 170000
#define WHOOP_MY_PROCNO ((int) GetNumberFromPGProc(MyProc))
#else
#define WHOOP_MY_PROCNO (MyProc->pgprocno)
#endif

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
	WhoopStoreOp op;
	int64		user_id;
	Oid			owner;
	int			expires_in;
	bool		has_profile;
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

static uint32 writer_wait_event(void);
static WriterState writer_state(WriterShared *shared);
static void writer_set_state(WriterShared *shared, WriterState state);
static void writer_put(WriterShared *shared, WriterString which, const char *value);
static const char *writer_get(WriterShared *shared, WriterString which);
static void writer_execute(WriterShared *shared);
static void set_latch_of(int procno);

/*
 * writer_wait_event is the wait event of a backend waiting for its writer,
 * and of the writer waiting for work: a named one ("WhoopTokenWriter")
 * from PostgreSQL 17 on, else the generic "Extension".
 */
static uint32
writer_wait_event(void)
{
#if PG_VERSION_NUM >= 170000
	static uint32 wait_event = 0;

	if (wait_event == 0)
		wait_event = WaitEventExtensionNew("WhoopTokenWriter");
	return wait_event;
#else
	return PG_WAIT_EXTENSION;
#endif
}

/*
 * writer_state and writer_set_state read and set the hand-off state.
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
	writer->shared->role = whoop_store_owner();
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
						 100, writer_wait_event());
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

/*
 * writer_get returns one string of the segment, NULL if it was NULL.
 */
static const char *
writer_get(WriterShared *shared, WriterString which)
{
	if (shared->string_offset[which] < 0)
		return NULL;
	return shared->strings + shared->string_offset[which];
}

/*
 * whoop_token_writer_commit hands WRITE to a writer the caller started
 * (before it asked WHOOP for the tokens) and waits, with interrupts held,
 * until the writer has committed it: once the write is handed over, the
 * account lock must not be released before it is visible.
 */
void
whoop_token_writer_commit(WhoopTokenWriter *writer, const WhoopStoreWrite *write)
{
	WriterShared *shared = writer->shared;
	TimestampTz deadline;
	WriterState state;

	shared->op = write->op;
	shared->user_id = write->user_id;
	shared->owner = write->owner;
	writer_put(shared, WS_SERVER, write->server_name);
	if (write->tokens != NULL)
	{
		shared->expires_in = write->tokens->expires_in;
		writer_put(shared, WS_ACCESS_TOKEN, write->tokens->access_token);
		writer_put(shared, WS_REFRESH_TOKEN, write->tokens->refresh_token);
		writer_put(shared, WS_SCOPE, write->tokens->scope);
	}
	if (write->profile != NULL)
	{
		shared->has_profile = true;
		writer_put(shared, WS_EMAIL, write->profile->email);
		writer_put(shared, WS_FIRST_NAME, write->profile->first_name);
		writer_put(shared, WS_LAST_NAME, write->profile->last_name);
	}
	writer_put(shared, WS_STATUS, write->status);
	writer_put(shared, WS_ERROR, write->error);

	deadline = GetCurrentTimestamp() + (int64) WRITER_COMMIT_TIMEOUT_MS * 1000;

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
						 100, writer_wait_event());
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
						 1000, writer_wait_event());
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
 * writer_execute performs the handed-over write and commits it.
 */
static void
writer_execute(WriterShared *shared)
{
	WhoopStoreWrite write = {0};
	WhoopTokens tokens = {0};
	WhoopProfile profile = {0};

	write.op = shared->op;
	write.server_name = writer_get(shared, WS_SERVER);
	write.user_id = shared->user_id;
	write.owner = shared->owner;
	write.status = writer_get(shared, WS_STATUS);
	write.error = writer_get(shared, WS_ERROR);
	if (shared->op == WHOOP_STORE_SAVE_TOKENS)
	{
		tokens.access_token = (char *) writer_get(shared, WS_ACCESS_TOKEN);
		tokens.refresh_token = (char *) writer_get(shared, WS_REFRESH_TOKEN);
		tokens.scope = (char *) writer_get(shared, WS_SCOPE);
		tokens.expires_in = shared->expires_in;
		write.tokens = &tokens;
	}
	if (shared->has_profile)
	{
		profile.user_id = shared->user_id;
		profile.email = (char *) writer_get(shared, WS_EMAIL);
		profile.first_name = (char *) writer_get(shared, WS_FIRST_NAME);
		profile.last_name = (char *) writer_get(shared, WS_LAST_NAME);
		write.profile = &profile;
	}

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();

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
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "whoop_fdw: saving account tokens");
	whoop_store_write(&write);
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
}
