/*-------------------------------------------------------------------------
 *
 * bulk_load.c
 *		  Loads several emptied tables at once, each with the result of its
 *		  own query, the queries computed side by side in parallel workers.
 *
 * A first build of the maintained facts and metrics (whoop.refresh())
 * fills each emptied rows table with its definition's result.  PostgreSQL
 * 15-18 never run an INSERT ... SELECT in parallel, and the definitions'
 * window functions would run above any Gather anyway, so one definition
 * keeps one core busy.  Definitions that do not read each other can run at
 * the same time, though.  whoop_internal.load_rows() hands its queries out,
 * one at a time, to itself and to parallel workers, which share its
 * transaction and snapshot.  A worker runs its query read-only and sends
 * the rows through a shared-memory queue; the leader inserts every row, as
 * CREATE TABLE AS does under a Gather: in parallel mode only the leader may
 * write.  With two workers (max_parallel_workers_per_gather's default) the
 * leader only inserts; with one it runs queries too.
 *
 * The leader inserts with table_multi_insert(), which maintains no index
 * and fires no trigger.  So every target must have no index, trigger,
 * CHECK constraint, generated column or row security (a first build drops
 * the indexes and recreates them afterwards); NOT NULL is checked here.
 * When a target does not qualify, when parallel workers are off or none
 * starts, the leader runs each query itself as INSERT ... SELECT: the same
 * rows, one after the other.
 *
 * This file stands apart from the foreign-data wrapper: it uses only the
 * server's SPI, table access and parallel-context interfaces.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <dlfcn.h>

#include "access/heapam.h"
#include "access/parallel.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "optimizer/cost.h"
#include "port/atomics.h"
#include "storage/latch.h"
#include "storage/shm_mq.h"
#include "storage/shm_toc.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/plancache.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

PG_FUNCTION_INFO_V1(load_rows);

PGDLLEXPORT void whoop_load_worker_main(dsm_segment *seg, shm_toc *toc);

/* keys of the parallel context's table of contents */
#define LOAD_KEY_SHARED		UINT64CONST(0x77686F6F70000001)
#define LOAD_KEY_QUEUES		UINT64CONST(0x77686F6F70000002)

/* one queue per worker: big enough that a worker rarely waits for the leader */
#define LOAD_QUEUE_SIZE		((Size) 4 * 1024 * 1024)

/* how many of its own rows the leader inserts between looks at the queues */
#define LOAD_POLL_ROWS		64

/*
 * The leader inserts rows in batches, as COPY does: heap_multi_insert()
 * fills a page with one WAL record, where heap_insert() writes one per row.
 */
#define LOAD_BATCH_ROWS		1000
#define LOAD_BATCH_BYTES	((Size) 64 * 1024)

/*
 * LoadShared is what the leader and the workers share: the tasks (a target
 * and a query each, the queries as consecutive NUL-terminated strings after
 * the targets) and the counter through which each participant claims the
 * next task.
 */
typedef struct LoadShared
{
	pg_atomic_uint32 next_task;
	int			ntasks;
	Oid			targets[FLEXIBLE_ARRAY_MEMBER];
} LoadShared;

/* a worker's message: a task begins or ends, or a row of it follows */
typedef enum LoadMessageKind
{
	LOAD_TASK_BEGIN = 'B',
	LOAD_ROW = 'R',
	LOAD_TASK_END = 'E'
} LoadMessageKind;

typedef struct LoadMessage
{
	char		kind;
	int32		task;
} LoadMessage;

#define LOAD_MESSAGE_SIZE	MAXALIGN(sizeof(LoadMessage))

/* the leader's side of one task */
typedef struct LoadTarget
{
	Relation	rel;
	const char *query;
	TupleTableSlot *slot;		/* holds a worker's row while it is copied */
	BulkInsertState bistate;
	TupleTableSlot **batch;		/* rows waiting for table_multi_insert() */
	int			nbatched;
	Size		batched_bytes;
	AttrNumber *not_null;
	int			n_not_null;
	uint64		rows;
	TimestampTz started;
	TimestampTz finished;
	bool		done;			/* its query ran to the end, its rows inserted */
} LoadTarget;

typedef struct LoadState
{
	int			ntasks;
	LoadTarget *targets;
	CommandId	cid;
	MemoryContext load_context; /* lives as long as the call */
	MemoryContext row_context;
	LoadShared *shared;
	ParallelContext *pcxt;
	int			nqueues;		/* workers launched */
	shm_mq_handle **queues;
	int		   *current_task;	/* per worker: the task it sends, or -1 */
	bool	   *detached;
	int			nattached;
} LoadState;

/* DestReceiver of the leader's own tasks: inserts each row at once */
typedef struct InsertReceiver
{
	DestReceiver pub;
	LoadState  *state;
	int			task;
	int			since_poll;
} InsertReceiver;

/* DestReceiver of a worker's tasks: sends each row to the leader */
typedef struct QueueReceiver
{
	DestReceiver pub;
	shm_mq_handle *queue;
	Relation	target;
	int			task;
} QueueReceiver;

static void check_result_columns(TupleDesc result, Relation target);
static bool target_qualifies(Relation rel);
static void run_task(const char *query, DestReceiver *dest);
static void check_select(SPIPlanPtr plan);
static const char *task_query(LoadShared *shared, int task);
static void insert_row(LoadState *state, int task, TupleTableSlot *slot);
static void flush_batch(LoadState *state, LoadTarget *target);
static void drain_queues(LoadState *state, bool wait);
static void load_serially(LoadState *state);
static void load_in_parallel(LoadState *state, int nworkers);


/*
 * check_result_columns errors out unless a query's result has the target's
 * columns, in its order and of its types, as "INSERT INTO target SELECT *"
 * would need them without any cast.
 */
static void
check_result_columns(TupleDesc result, Relation target)
{
	TupleDesc	desc = RelationGetDescr(target);
	int			i;

	if (result->natts != desc->natts)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("query returns %d columns, table \"%s\" has %d",
						result->natts, RelationGetRelationName(target), desc->natts),
				 errhint("The table and its query must have the same columns in the same order.")));
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute want = TupleDescAttr(desc, i);
		Form_pg_attribute have = TupleDescAttr(result, i);

		if (want->attisdropped || want->atttypid != have->atttypid ||
			(want->atttypmod >= 0 && want->atttypmod != have->atttypmod))
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("column %d of the query does not match column \"%s\" of table \"%s\"",
							i + 1, NameStr(want->attname), RelationGetRelationName(target)),
					 errhint("The table and its query must have the same columns in the same order.")));
	}
}

/*
 * target_qualifies says whether rows may go into rel by table_multi_insert()
 * alone: a plain table without indexes, triggers, CHECK constraints,
 * generated columns or row security.
 */
static bool
target_qualifies(Relation rel)
{
	TupleConstr *constr = RelationGetDescr(rel)->constr;

	return rel->rd_rel->relkind == RELKIND_RELATION &&
		RelationGetIndexList(rel) == NIL &&
		rel->trigdesc == NULL &&
		(constr == NULL || (constr->num_check == 0 && !constr->has_generated_stored)) &&
		check_enable_rls(RelationGetRelid(rel), InvalidOid, true) != RLS_ENABLED;
}

/*
 * run_task runs one read-only query into dest.  The plan is never parallel:
 * the leader is already in parallel mode, and workers cannot launch workers.
 */
static void
run_task(const char *query, DestReceiver *dest)
{
	SPIPrepareOptions prepare = {0};
	SPIExecuteOptions execute = {0};
	SPIPlanPtr	plan;
	int			rc;

	prepare.cursorOptions = 0;
	plan = SPI_prepare_extended(query, &prepare);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare_extended failed: %s", SPI_result_code_string(SPI_result));
	check_select(plan);
	execute.read_only = true;
	execute.dest = dest;
	rc = SPI_execute_plan_extended(plan, &execute);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_plan_extended failed: %s", SPI_result_code_string(rc));
	SPI_freeplan(plan);
}

/* check_select errors out unless plan is one plain SELECT. */
static void
check_select(SPIPlanPtr plan)
{
	List	   *sources = SPI_plan_get_plan_sources(plan);

	if (list_length(sources) != 1 ||
		((CachedPlanSource *) linitial(sources))->commandTag != CMDTAG_SELECT)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("query of a load must be one SELECT"),
				 errhint("Pass a query that only reads, such as \"select * from a_view\".")));
}

/* task_query finds the query of a task among the shared strings. */
static const char *
task_query(LoadShared *shared, int task)
{
	const char *query = (const char *) &shared->targets[shared->ntasks];

	while (task-- > 0)
		query += strlen(query) + 1;
	return query;
}

/*
 * insert_row checks the row in slot against the target of task and adds a
 * copy to the target's batch, inserting the batch when it is full.
 */
static void
insert_row(LoadState *state, int task, TupleTableSlot *slot)
{
	LoadTarget *target = &state->targets[task];
	TupleTableSlot *copy;
	int			i;

	for (i = 0; i < target->n_not_null; i++)
		if (slot_attisnull(slot, target->not_null[i]))
			ereport(ERROR,
					(errcode(ERRCODE_NOT_NULL_VIOLATION),
					 errmsg("null value in column \"%s\" of relation \"%s\" violates not-null constraint",
							NameStr(TupleDescAttr(RelationGetDescr(target->rel),
												  target->not_null[i] - 1)->attname),
							RelationGetRelationName(target->rel)),
					 errtable(target->rel)));
	copy = target->batch[target->nbatched];
	if (copy == NULL)
	{
		/* not in the executor's context of the leader's own query: it ends */
		MemoryContext old = MemoryContextSwitchTo(state->load_context);

		copy = target->batch[target->nbatched] = table_slot_create(target->rel, NULL);
		MemoryContextSwitchTo(old);
	}
	ExecCopySlot(copy, slot);
	target->nbatched++;
	target->batched_bytes += ExecFetchSlotHeapTuple(copy, false, NULL)->t_len;
	target->rows++;
	if (target->nbatched == LOAD_BATCH_ROWS || target->batched_bytes >= LOAD_BATCH_BYTES)
		flush_batch(state, target);
}

/*
 * flush_batch inserts the rows batched for target, in a memory context
 * reset afterwards (toasting allocates there).
 */
static void
flush_batch(LoadState *state, LoadTarget *target)
{
	MemoryContext old;
	int			i;

	if (target->nbatched == 0)
		return;
	old = MemoryContextSwitchTo(state->row_context);
	table_multi_insert(target->rel, target->batch, target->nbatched, state->cid,
					   TABLE_INSERT_SKIP_FSM, target->bistate);
	MemoryContextSwitchTo(old);
	MemoryContextReset(state->row_context);
	for (i = 0; i < target->nbatched; i++)
		ExecClearTuple(target->batch[i]);
	target->nbatched = 0;
	target->batched_bytes = 0;
}

/*
 * drain_queues inserts every row the workers have sent so far; with wait,
 * it waits for more until every worker has ended.  A worker that ends in
 * the middle of a task has failed: its error is raised here.
 */
static void
drain_queues(LoadState *state, bool wait)
{
	for (;;)
	{
		bool		received = false;
		int			i;

		for (i = 0; i < state->nqueues; i++)
		{
			while (!state->detached[i])
			{
				Size		nbytes;
				void	   *data;
				LoadMessage *message;
				shm_mq_result result;

				result = shm_mq_receive(state->queues[i], &nbytes, &data, true);
				if (result == SHM_MQ_WOULD_BLOCK)
					break;
				if (result == SHM_MQ_DETACHED)
				{
					state->detached[i] = true;
					state->nattached--;
					if (state->current_task[i] >= 0)
					{
						/* raises the worker's error, if it sent one */
						WaitForParallelWorkersToFinish(state->pcxt);
						ereport(ERROR,
								(errcode(ERRCODE_INTERNAL_ERROR),
								 errmsg("parallel worker ended before it loaded table \"%s\"",
										RelationGetRelationName(state->targets[state->current_task[i]].rel))));
					}
					break;
				}
				received = true;
				message = (LoadMessage *) data;
				if (nbytes < LOAD_MESSAGE_SIZE || message->task < 0 || message->task >= state->ntasks)
					elog(ERROR, "invalid message from a parallel load worker");
				switch (message->kind)
				{
					case LOAD_TASK_BEGIN:
						state->current_task[i] = message->task;
						state->targets[message->task].started = GetCurrentTimestamp();
						break;
					case LOAD_ROW:
						{
							LoadTarget *target = &state->targets[message->task];
							char	   *tuple = (char *) data + LOAD_MESSAGE_SIZE;
							Size		length = nbytes - LOAD_MESSAGE_SIZE;
							char	   *aligned = tuple;

							/* shm_mq promises no alignment: copy an unaligned tuple */
							if ((uintptr_t) tuple % MAXIMUM_ALIGNOF != 0)
							{
								aligned = palloc(length);
								memcpy(aligned, tuple, length);
							}
							ExecStoreMinimalTuple((MinimalTuple) aligned, target->slot, false);
							insert_row(state, message->task, target->slot);
							ExecClearTuple(target->slot);
							if (aligned != tuple)
								pfree(aligned);
						}
						break;
					case LOAD_TASK_END:
						flush_batch(state, &state->targets[message->task]);
						state->targets[message->task].finished = GetCurrentTimestamp();
						state->targets[message->task].done = true;
						state->current_task[i] = -1;
						break;
					default:
						elog(ERROR, "invalid message from a parallel load worker");
				}
			}
		}
		if (!wait || state->nattached == 0)
			return;
		if (!received)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH, -1L,
							 PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
		CHECK_FOR_INTERRUPTS();
	}
}

/* insert_receive inserts one of the leader's own rows, then looks at the queues. */
static bool
insert_receive(TupleTableSlot *slot, DestReceiver *self)
{
	InsertReceiver *receiver = (InsertReceiver *) self;

	insert_row(receiver->state, receiver->task, slot);
	if (++receiver->since_poll >= LOAD_POLL_ROWS)
	{
		receiver->since_poll = 0;
		drain_queues(receiver->state, false);
	}
	return true;
}

/* insert_startup checks the leader's query against its target. */
static void
insert_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
	InsertReceiver *receiver = (InsertReceiver *) self;

	check_result_columns(typeinfo, receiver->state->targets[receiver->task].rel);
}

/* queue_receive sends one of a worker's rows to the leader. */
static bool
queue_receive(TupleTableSlot *slot, DestReceiver *self)
{
	QueueReceiver *receiver = (QueueReceiver *) self;
	LoadMessage message = {LOAD_ROW, receiver->task};
	char		header[LOAD_MESSAGE_SIZE] = {0};
	shm_mq_iovec iov[2];
	bool		should_free;
	MinimalTuple tuple = ExecFetchSlotMinimalTuple(slot, &should_free);
	shm_mq_result result;

	memcpy(header, &message, sizeof(message));
	iov[0].data = header;
	iov[0].len = LOAD_MESSAGE_SIZE;
	iov[1].data = (const char *) tuple;
	iov[1].len = tuple->t_len;
	result = shm_mq_sendv(receiver->queue, iov, 2, false, false);
	if (should_free)
		pfree(tuple);
	/* the leader has gone: stop the query, the worker is ending anyway */
	return result == SHM_MQ_SUCCESS;
}

/* queue_startup checks a worker's query against its target. */
static void
queue_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
	QueueReceiver *receiver = (QueueReceiver *) self;

	check_result_columns(typeinfo, receiver->target);
}

static void
receiver_shutdown(DestReceiver *self)
{
}

static void
receiver_destroy(DestReceiver *self)
{
}

/* send_control sends a worker's begin or end of a task to the leader. */
static void
send_control(shm_mq_handle *queue, LoadMessageKind kind, int task)
{
	LoadMessage message = {kind, task};
	char		header[LOAD_MESSAGE_SIZE] = {0};

	memcpy(header, &message, sizeof(message));
	(void) shm_mq_send(queue, LOAD_MESSAGE_SIZE, header, false, true);
}

/*
 * whoop_load_worker_main is a parallel worker's entry point: it claims
 * tasks until none is left and sends each one's rows to the leader.
 */
void
whoop_load_worker_main(dsm_segment *seg, shm_toc *toc)
{
	LoadShared *shared = shm_toc_lookup(toc, LOAD_KEY_SHARED, false);
	char	   *queues = shm_toc_lookup(toc, LOAD_KEY_QUEUES, false);
	shm_mq	   *mq = (shm_mq *) (queues + ParallelWorkerNumber * LOAD_QUEUE_SIZE);
	shm_mq_handle *queue;
	QueueReceiver receiver = {{0}};

	shm_mq_set_sender(mq, MyProc);
	queue = shm_mq_attach(mq, seg, NULL);
	receiver.pub.receiveSlot = queue_receive;
	receiver.pub.rStartup = queue_startup;
	receiver.pub.rShutdown = receiver_shutdown;
	receiver.pub.rDestroy = receiver_destroy;
	receiver.pub.mydest = DestTupleQueue;	/* anything but DestNone: SPI reports a SELECT */
	receiver.queue = queue;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	for (;;)
	{
		uint32		task = pg_atomic_fetch_add_u32(&shared->next_task, 1);

		if (task >= (uint32) shared->ntasks)
			break;
		receiver.task = (int) task;
		receiver.target = table_open(shared->targets[task], AccessShareLock);
		send_control(queue, LOAD_TASK_BEGIN, (int) task);
		run_task(task_query(shared, (int) task), &receiver.pub);
		send_control(queue, LOAD_TASK_END, (int) task);
		table_close(receiver.target, NoLock);
	}
	SPI_finish();
	shm_mq_detach(queue);
}

/* load_serially runs each task as INSERT ... SELECT, one after the other. */
static void
load_serially(LoadState *state)
{
	int			i;

	for (i = 0; i < state->ntasks; i++)
	{
		LoadTarget *target = &state->targets[i];
		Relation	rel = target->rel;
		StringInfoData sql;

		initStringInfo(&sql);
		appendStringInfo(&sql, "insert into %s %s",
						 quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
													RelationGetRelationName(rel)),
						 target->query);
		target->started = GetCurrentTimestamp();
		if (SPI_execute(sql.data, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "SPI_execute failed: %s", SPI_result_code_string(SPI_result));
		target->rows = SPI_processed;
		target->finished = GetCurrentTimestamp();
		pfree(sql.data);
	}
}

/*
 * load_in_parallel runs the tasks in the leader and up to nworkers
 * parallel workers, the leader inserting every row.
 */
static void
load_in_parallel(LoadState *state, int nworkers)
{
	Size		shared_size;
	Size		strings = 0;
	ParallelContext *pcxt;
	char	   *queue_space;
	InsertReceiver receiver = {{0}};
	Dl_info		library;
	int			i;
	int			j;

	for (i = 0; i < state->ntasks; i++)
		strings = add_size(strings, strlen(state->targets[i].query) + 1);
	shared_size = add_size(offsetof(LoadShared, targets) + sizeof(Oid) * state->ntasks, strings);

	/*
	 * What the leader writes in parallel mode carries this transaction id,
	 * which cannot be assigned in parallel mode, and this command id.
	 */
	(void) GetCurrentTransactionId();
	state->cid = GetCurrentCommandId(true);
	for (i = 0; i < state->ntasks; i++)
	{
		LoadTarget *target = &state->targets[i];

		target->bistate = GetBulkInsertState();
		target->batch = palloc0(sizeof(TupleTableSlot *) * LOAD_BATCH_ROWS);
		target->slot = MakeSingleTupleTableSlot(RelationGetDescr(target->rel),
												&TTSOpsMinimalTuple);
	}

	/*
	 * The workers must run this very file: an installation for tests or
	 * packaging may load it from elsewhere than $libdir.
	 */
	if (dladdr((void *) whoop_load_worker_main, &library) == 0 || library.dli_fname == NULL)
		elog(ERROR, "could not find the file of the whoop_fdw library");

	EnterParallelMode();
	pcxt = CreateParallelContext(library.dli_fname, "whoop_load_worker_main", nworkers);
	shm_toc_estimate_chunk(&pcxt->estimator, shared_size);
	shm_toc_estimate_chunk(&pcxt->estimator, mul_size(LOAD_QUEUE_SIZE, nworkers));
	shm_toc_estimate_keys(&pcxt->estimator, 2);
	InitializeParallelDSM(pcxt);

	state->shared = shm_toc_allocate(pcxt->toc, shared_size);
	pg_atomic_init_u32(&state->shared->next_task, 0);
	state->shared->ntasks = state->ntasks;
	{
		char	   *query = (char *) &state->shared->targets[state->ntasks];

		for (i = 0; i < state->ntasks; i++)
		{
			Size		len = strlen(state->targets[i].query) + 1;

			state->shared->targets[i] = RelationGetRelid(state->targets[i].rel);
			memcpy(query, state->targets[i].query, len);
			query += len;
		}
	}
	shm_toc_insert(pcxt->toc, LOAD_KEY_SHARED, state->shared);
	queue_space = shm_toc_allocate(pcxt->toc, mul_size(LOAD_QUEUE_SIZE, nworkers));
	for (i = 0; i < nworkers; i++)
		shm_mq_set_receiver(shm_mq_create(queue_space + i * LOAD_QUEUE_SIZE, LOAD_QUEUE_SIZE),
							MyProc);
	shm_toc_insert(pcxt->toc, LOAD_KEY_QUEUES, queue_space);

	state->pcxt = pcxt;
	LaunchParallelWorkers(pcxt);
	state->nqueues = pcxt->nworkers_launched;
	state->nattached = state->nqueues;
	state->queues = palloc0(sizeof(shm_mq_handle *) * Max(state->nqueues, 1));
	state->current_task = palloc(sizeof(int) * Max(state->nqueues, 1));
	state->detached = palloc0(sizeof(bool) * Max(state->nqueues, 1));
	for (i = 0; i < state->nqueues; i++)
	{
		state->queues[i] = shm_mq_attach((shm_mq *) (queue_space + i * LOAD_QUEUE_SIZE),
										 pcxt->seg, pcxt->worker[i].bgwhandle);
		state->current_task[i] = -1;
	}

	receiver.pub.receiveSlot = insert_receive;
	receiver.pub.rStartup = insert_startup;
	receiver.pub.rShutdown = receiver_shutdown;
	receiver.pub.rDestroy = receiver_destroy;
	receiver.pub.mydest = DestIntoRel;	/* as CREATE TABLE AS: SPI reports a SELECT */
	receiver.state = state;

	/*
	 * With two workers or more the leader only inserts: a worker whose queue
	 * is full waits, and the leader, busy with a query of its own, would
	 * empty the queues only between that query's rows.  It runs only what no
	 * worker took (a worker that was launched but never started takes
	 * nothing).  With fewer workers the cores would idle while it waits, so
	 * it claims tasks from the start.
	 */
	for (;;)
	{
		uint32		task;

		if (state->nqueues >= 2 && state->nattached > 0)
			drain_queues(state, true);
		task = pg_atomic_fetch_add_u32(&state->shared->next_task, 1);
		if (task >= (uint32) state->ntasks)
			break;
		receiver.task = (int) task;
		receiver.since_poll = 0;
		state->targets[task].started = GetCurrentTimestamp();
		run_task(state->targets[task].query, &receiver.pub);
		flush_batch(state, &state->targets[task]);
		state->targets[task].finished = GetCurrentTimestamp();
		state->targets[task].done = true;
		drain_queues(state, false);
	}
	drain_queues(state, true);
	for (i = 0; i < state->ntasks; i++)
		if (!state->targets[i].done)
			elog(ERROR, "parallel load ended without loading table \"%s\"",
				 RelationGetRelationName(state->targets[i].rel));

	WaitForParallelWorkersToFinish(pcxt);
	DestroyParallelContext(pcxt);
	ExitParallelMode();

	for (i = 0; i < state->ntasks; i++)
	{
		LoadTarget *target = &state->targets[i];

		ExecDropSingleTupleTableSlot(target->slot);
		for (j = 0; j < LOAD_BATCH_ROWS && target->batch[j] != NULL; j++)
			ExecDropSingleTupleTableSlot(target->batch[j]);
		FreeBulkInsertState(target->bistate);
		table_finish_bulk_insert(target->rel, TABLE_INSERT_SKIP_FSM);
	}
}

/*
 * load_rows loads each table of targets with the rows of the query at the
 * same position of queries: in parallel when it can, else one after the
 * other.  It returns, per task, the rows loaded and when the task ran.
 */
Datum
load_rows(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum	   *target_datums;
	Datum	   *query_datums;
	bool	   *target_nulls;
	bool	   *query_nulls;
	int			ntargets;
	int			nqueries;
	LoadState	state = {0};
	bool		qualify = true;
	int			nworkers;
	int			i;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("targets and queries must not be null")));
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(0), REGCLASSOID, sizeof(Oid), true, TYPALIGN_INT,
					  &target_datums, &target_nulls, &ntargets);
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(1), TEXTOID, -1, false, TYPALIGN_INT,
					  &query_datums, &query_nulls, &nqueries);
	if (ntargets != nqueries)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%d targets but %d queries", ntargets, nqueries),
				 errhint("Pass one query per target, in the same order.")));

	InitMaterializedSRF(fcinfo, 0);

	state.ntasks = ntargets;
	state.targets = palloc0(sizeof(LoadTarget) * Max(ntargets, 1));
	state.load_context = CurrentMemoryContext;
	state.row_context = AllocSetContextCreate(CurrentMemoryContext, "whoop load row",
											  ALLOCSET_DEFAULT_SIZES);
	for (i = 0; i < ntargets; i++)
	{
		LoadTarget *target = &state.targets[i];
		TupleDesc	desc;
		AclResult	aclresult;
		int			j;

		if (target_nulls[i] || query_nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("targets and queries must not contain nulls")));
		target->rel = table_open(DatumGetObjectId(target_datums[i]), RowExclusiveLock);
		aclresult = pg_class_aclcheck(RelationGetRelid(target->rel), GetUserId(), ACL_INSERT);
		if (aclresult != ACLCHECK_OK)
			aclcheck_error(aclresult, get_relkind_objtype(target->rel->rd_rel->relkind),
						   RelationGetRelationName(target->rel));
		for (j = 0; j < i; j++)
			if (RelationGetRelid(state.targets[j].rel) == RelationGetRelid(target->rel))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("table \"%s\" is a target twice", RelationGetRelationName(target->rel)),
						 errhint("Load each table once.")));
		target->query = TextDatumGetCString(query_datums[i]);
		desc = RelationGetDescr(target->rel);
		target->not_null = palloc(sizeof(AttrNumber) * Max(desc->natts, 1));
		for (j = 0; j < desc->natts; j++)
			if (TupleDescAttr(desc, j)->attnotnull && !TupleDescAttr(desc, j)->attisdropped)
				target->not_null[target->n_not_null++] = j + 1;
		qualify = qualify && target_qualifies(target->rel);
	}

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* every query a SELECT, before anything is loaded */
	for (i = 0; i < ntargets; i++)
	{
		SPIPrepareOptions prepare = {0};
		SPIPlanPtr	plan = SPI_prepare_extended(state.targets[i].query, &prepare);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare_extended failed: %s", SPI_result_code_string(SPI_result));
		check_select(plan);
		SPI_freeplan(plan);
	}
	nworkers = Min(ntargets, max_parallel_workers_per_gather);
	if (ntargets > 1 && nworkers > 0 && qualify && !IsInParallelMode())
		load_in_parallel(&state, nworkers);
	else
		load_serially(&state);
	SPI_finish();

	for (i = 0; i < ntargets; i++)
	{
		LoadTarget *target = &state.targets[i];
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};

		values[0] = ObjectIdGetDatum(RelationGetRelid(target->rel));
		values[1] = Int64GetDatum((int64) target->rows);
		values[2] = TimestampTzGetDatum(target->started);
		values[3] = TimestampTzGetDatum(target->finished);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		table_close(target->rel, NoLock);
	}
	MemoryContextDelete(state.row_context);
	return (Datum) 0;
}
