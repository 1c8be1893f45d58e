/*-------------------------------------------------------------------------
 *
 * budget.c
 *		  The request budget of a WHOOP app, shared by every backend of the
 *		  cluster: two token buckets, the minute and the day window.
 *
 * WHOOP limits an app (an OAuth client), across all its members, to 100
 * requests a minute and 10,000 a day unless raised.  An app is known here
 * by its client_id together with the api_url (simulators on other ports
 * are other apps); never by its secret.  Each window is a token bucket of
 * the server's requests_per_minute or requests_per_day, refilled
 * continuously at capacity/window.  Every request takes one unit of both
 * (whoop_budget_take); every answer with X-RateLimit-* headers sets the
 * bucket of the window they describe to what WHOOP says is left, less the
 * app's other requests still in flight (which that answer may not count
 * yet), and holds it there until the window resets (whoop_budget_answered).
 * Within one window WHOOP's word only lowers the bucket (answers may arrive
 * out of order); a new window, or a new limit, sets it also when that is
 * more than we thought.  A request of a lower class may spend the day's
 * budget only while more than its reserve is left (else it is refused),
 * and the minute's likewise (else it waits): so a team's history load
 * leaves room in every minute for the webhook applies.
 *
 * Where the state lives:
 *	- whoop_fdw in shared_preload_libraries: the main shared memory
 *	  (shmem_request_hook / shmem_startup_hook);
 *	- else, PostgreSQL 17 and later: a segment of the DSM registry, made by
 *	  the first backend that needs it;
 *	- else (PostgreSQL 15 and 16 without preloading): per backend, and
 *	  whoop.request_budget says shared = false.
 * There are BUDGET_SLOTS apps; when all are taken, the slot used longest
 * ago is given to the new app (the old one starts again from full buckets,
 * which the next answer's headers correct).  A spinlock guards the slots:
 * what it covers is arithmetic on one slot and a scan of hashes.
 *
 * This file only counts; transport.c waits or refuses on its word.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "whoop_fdw.h"

#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#if PG_VERSION_NUM >= 170000
#include "storage/dsm_registry.h"
#endif

#define BUDGET_SLOTS 64
#define BUDGET_KEY_LEN 256
#define BUDGET_SHMEM_NAME "whoop_fdw request budget"
/* window lengths until headers say otherwise */
#define MINUTE_WINDOW_S 60.0
#define DAY_WINDOW_S 86400.0
/* answers without window lists: a Reset longer than this is the day's */
#define MINUTE_RESET_MAX_S 120
/* Reset is in whole seconds: hold a little longer */
#define RESET_ROUNDING_US 500000
/* resets this close together are the same window's */
#define SAME_WINDOW_US 1500000

typedef struct BudgetBucket
{
	double		tokens;
	double		window_s;
	int			capacity;
	TimestampTz updated_at;		/* tokens are as of then */
	TimestampTz hold_until;		/* WHOOP said: no refill before then */
	int			observed_remaining; /* -1: no header about this window yet */
	int			observed_reset_s;
	int			observed_limit;
	TimestampTz observed_at;
} BudgetBucket;

typedef struct BudgetSlot
{
	uint64		hash;			/* of the whole key; 0: free */
	char		key[BUDGET_KEY_LEN];	/* truncated when longer */
	TimestampTz last_used;
	int			inflight;		/* requests taken, not yet answered */
	BudgetBucket window[2];
} BudgetSlot;

typedef struct BudgetState
{
	slock_t		mutex;
	BudgetSlot	slots[BUDGET_SLOTS];
} BudgetState;

/* the request class of this session (GUC whoop_fdw.request_class) */
int			whoop_request_class = WHOOP_CLASS_INTERACTIVE;

static const char *const class_names[WHOOP_REQUEST_CLASSES] = {
	"interactive", "webhook", "cycle", "reconcile", "backfill"
};

static BudgetState *budget = NULL;
static bool budget_shared = false;

/* the slot (its hash) of this backend's request in flight, or 0 */
static uint64 inflight_hash = 0;
static bool exit_callback_registered = false;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void budget_shmem_request(void);
static void budget_shmem_startup(void);
static void init_state(void *ptr);
static BudgetState *get_state(void);
static BudgetSlot *find_slot(BudgetState *state, const char *key, bool create,
							 TimestampTz now);
static void set_capacities(BudgetSlot *slot, const WhoopServer *server);
static void refill(BudgetBucket *bucket, TimestampTz now);
static int64 wait_for(const BudgetBucket *bucket, double need, TimestampTz now);
static void land(BudgetState *state);
static void budget_exit(int code, Datum arg);

/*
 * whoop_budget_init asks for the budget's shared memory when the library
 * is being preloaded; otherwise the state is found on first use.
 */
void
whoop_budget_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = budget_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = budget_shmem_startup;
}

/*
 * budget_shmem_request reserves the main shared memory the budget needs.
 */
static void
budget_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(BudgetState)));
}

/*
 * budget_shmem_startup finds or makes the budget in the main shared memory.
 */
static void
budget_shmem_startup(void)
{
	bool		found;
	BudgetState *state;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	state = ShmemInitStruct(BUDGET_SHMEM_NAME, sizeof(BudgetState), &found);
	if (!found)
		init_state(state);
	LWLockRelease(AddinShmemInitLock);
	budget = state;
	budget_shared = true;
}

/*
 * init_state makes an empty budget: no app known yet.
 */
static void
init_state(void *ptr)
{
	BudgetState *state = (BudgetState *) ptr;

	memset(state, 0, sizeof(BudgetState));
	SpinLockInit(&state->mutex);
}

/*
 * get_state returns the budget: preloaded shared memory, the DSM registry's
 * segment, or this backend's own.
 */
static BudgetState *
get_state(void)
{
	if (budget != NULL)
		return budget;
#if PG_VERSION_NUM >= 170000
	{
		bool		found;

		budget = GetNamedDSMSegment(BUDGET_SHMEM_NAME, sizeof(BudgetState),
									init_state, &found);
		budget_shared = true;
	}
#else
	budget = MemoryContextAlloc(TopMemoryContext, sizeof(BudgetState));
	init_state(budget);
	budget_shared = false;
#endif
	return budget;
}

/*
 * whoop_request_class_name names a request class as the GUC spells it.
 */
const char *
whoop_request_class_name(int request_class)
{
	if (request_class < 0 || request_class >= WHOOP_REQUEST_CLASSES)
		return "?";
	return class_names[request_class];
}

/*
 * whoop_budget_app_key is what identifies a server's app: its client_id and
 * api_url.  It holds no secret.
 */
char *
whoop_budget_app_key(const WhoopServer *server)
{
	return psprintf("%s@%s", server->app_client_id ? server->app_client_id : "",
					server->api_url);
}

/*
 * find_slot returns the slot of KEY, or with CREATE a new one (a free slot,
 * else the one used longest ago), or NULL.  The caller holds the mutex.
 */
static BudgetSlot *
find_slot(BudgetState *state, const char *key, bool create, TimestampTz now)
{
	uint64		hash = hash_bytes_extended((const unsigned char *) key,
										   strlen(key), 0);
	BudgetSlot *victim = NULL;

	if (hash == 0)
		hash = 1;
	for (int i = 0; i < BUDGET_SLOTS; i++)
	{
		BudgetSlot *slot = &state->slots[i];

		if (slot->hash == hash && strncmp(slot->key, key, BUDGET_KEY_LEN - 1) == 0)
			return slot;
		if (victim == NULL || (victim->hash != 0 &&
							   (slot->hash == 0 || slot->last_used < victim->last_used)))
			victim = slot;
	}
	if (!create)
		return NULL;

	memset(victim, 0, sizeof(BudgetSlot));
	victim->hash = hash;
	strlcpy(victim->key, key, BUDGET_KEY_LEN);
	victim->last_used = now;
	for (int w = 0; w < 2; w++)
	{
		BudgetBucket *bucket = &victim->window[w];

		bucket->tokens = -1;	/* full, once set_capacities knows how full */
		bucket->window_s = w == WHOOP_BUDGET_MINUTE ? MINUTE_WINDOW_S : DAY_WINDOW_S;
		bucket->updated_at = now;
		bucket->observed_remaining = -1;
		bucket->observed_reset_s = -1;
		bucket->observed_limit = -1;
	}
	return victim;
}

/*
 * set_capacities takes the server's capacities: a new bucket starts full,
 * and a lowered capacity cuts the bucket down to it.  Servers of one app
 * that disagree: the last one to send sets them.
 */
static void
set_capacities(BudgetSlot *slot, const WhoopServer *server)
{
	int			capacity[2];

	capacity[WHOOP_BUDGET_MINUTE] = server->requests_per_minute;
	capacity[WHOOP_BUDGET_DAY] = server->requests_per_day;
	for (int w = 0; w < 2; w++)
	{
		BudgetBucket *bucket = &slot->window[w];

		if (bucket->tokens < 0)
			bucket->tokens = capacity[w];
		else if (capacity[w] < bucket->capacity)
			bucket->tokens = Min(bucket->tokens, capacity[w]);
		bucket->capacity = capacity[w];
	}
}

/*
 * refill adds what BUCKET has earned since it was last brought up to date
 * (nothing while WHOOP's word holds), up to its capacity.
 */
static void
refill(BudgetBucket *bucket, TimestampTz now)
{
	TimestampTz from = Max(bucket->updated_at, bucket->hold_until);

	if (now > from && bucket->tokens < bucket->capacity && bucket->window_s > 0)
	{
		double		earned = (double) (now - from) / USECS_PER_SEC *
			bucket->capacity / bucket->window_s;

		bucket->tokens = Min((double) bucket->capacity, bucket->tokens + earned);
	}
	bucket->updated_at = now;
}

/*
 * wait_for is how long (microseconds) until BUCKET holds NEED units.
 */
static int64
wait_for(const BudgetBucket *bucket, double need, TimestampTz now)
{
	TimestampTz from = Max(now, bucket->hold_until);
	double		rate;

	if (bucket->tokens >= need)
		return 0;
	rate = bucket->capacity / bucket->window_s; /* per second */
	return (from - now) + (int64) ((need - bucket->tokens) / rate * USECS_PER_SEC) + 1;
}

/*
 * minute_limit is what a minute reserve is a share of: the configured
 * capacity, or WHOOP's own limit from the headers when that is lower (a
 * share of a capacity WHOOP does not grant would keep the bucket from ever
 * rising above the reserve).
 */
static double
minute_limit(const BudgetBucket *minute)
{
	if (minute->observed_remaining >= 0 && minute->observed_limit > 0)
		return Min(minute->capacity, minute->observed_limit);
	return minute->capacity;
}

/*
 * held_share is the part of the window still to run while WHOOP's word
 * holds BUCKET (its window resets at hold_until), else 1.
 */
static double
held_share(const BudgetBucket *bucket, TimestampTz now)
{
	if (bucket->hold_until <= now || bucket->window_s <= 0)
		return 1.0;
	return Min(1.0, (double) (bucket->hold_until - now) /
			   (bucket->window_s * USECS_PER_SEC));
}

/*
 * minute_reserve_wait says how long a request of a class with a minute
 * reserve of PCT percent must wait (0: not at all).  While WHOOP's word
 * holds the bucket -- a fixed window, nothing refills before its reset --
 * the reserve shrinks with the time the window has left: what the classes
 * above have not taken by the reset is lost, so the class below gets it.
 */
static int64
minute_reserve_wait(const BudgetBucket *minute, int pct, TimestampTz now)
{
	double		full = minute_limit(minute) * pct / 100.0;
	double		reserve = floor(full * held_share(minute, now));
	double		tokens = floor(minute->tokens);
	int64		wait;

	if (minute->tokens >= reserve + 1)
		return 0;
	wait = wait_for(minute, reserve + 1, now);
	/*
	 * the reserve is down to tokens - 1 once less than tokens / full of the
	 * window is left
	 */
	if (tokens >= 1 && full > 0 && minute->hold_until > now)
	{
		TimestampTz released = minute->hold_until -
			(int64) (tokens / full * minute->window_s * USECS_PER_SEC);

		wait = Min(wait, Max(released - now, 0) + 1);
	}
	return wait;
}

/*
 * whoop_budget_take asks SERVER's app for one request of REQUEST_CLASS.
 * Granted: a unit of both windows is spent.  Refused: the day's budget is
 * down to the class's reserve (DAY_AVAILABLE and DAY_RESERVE say how far).
 * Wait: the minute's bucket is down to the class's minute reserve (empty,
 * for a class without one), or the day's is empty for a class without a
 * day reserve; WAIT_MS says when to ask again.
 */
WhoopBudgetVerdict
whoop_budget_take(const WhoopServer *server, int request_class, int64 *wait_ms,
				  double *day_available, int *day_reserve)
{
	BudgetState *state = get_state();
	char	   *key = whoop_budget_app_key(server);
	TimestampTz now = GetCurrentTimestamp();
	int			reserve;
	int64		minute_wait;
	WhoopBudgetVerdict verdict;
	BudgetSlot *slot;
	BudgetBucket *minute;
	BudgetBucket *day;

	if (request_class < 0 || request_class >= WHOOP_REQUEST_CLASSES)
		request_class = WHOOP_CLASS_INTERACTIVE;
	reserve = (int) ((int64) server->day_reserve_pct[request_class] *
					 server->requests_per_day / 100);

	SpinLockAcquire(&state->mutex);
	slot = find_slot(state, key, true, now);
	set_capacities(slot, server);
	slot->last_used = now;
	minute = &slot->window[WHOOP_BUDGET_MINUTE];
	day = &slot->window[WHOOP_BUDGET_DAY];
	refill(minute, now);
	refill(day, now);
	minute_wait = minute_reserve_wait(minute, server->minute_reserve_pct[request_class], now);
	*wait_ms = 0;
	*day_available = day->tokens;
	*day_reserve = reserve;
	if (day->tokens < reserve + 1)
	{
		if (reserve > 0)
			verdict = WHOOP_BUDGET_REFUSED;
		else
		{
			verdict = WHOOP_BUDGET_WAIT;
			*wait_ms = (wait_for(day, 1, now) + 999) / 1000;
		}
	}
	else if (minute_wait > 0)
	{
		verdict = WHOOP_BUDGET_WAIT;
		*wait_ms = (minute_wait + 999) / 1000;
	}
	else
	{
		minute->tokens -= 1;
		day->tokens -= 1;
		land(state);			/* a request before it that never landed */
		slot->inflight++;
		inflight_hash = slot->hash;
		verdict = WHOOP_BUDGET_GRANTED;
	}
	SpinLockRelease(&state->mutex);
	if (verdict == WHOOP_BUDGET_GRANTED && !exit_callback_registered)
	{
		before_shmem_exit(budget_exit, (Datum) 0);
		exit_callback_registered = true;
	}
	pfree(key);
	return verdict;
}

/*
 * land ends this backend's request in flight, if any.  The caller holds
 * the mutex.
 */
static void
land(BudgetState *state)
{
	if (inflight_hash == 0)
		return;
	for (int i = 0; i < BUDGET_SLOTS; i++)
	{
		BudgetSlot *slot = &state->slots[i];

		if (slot->hash == inflight_hash && slot->inflight > 0)
		{
			slot->inflight--;
			break;
		}
	}
	inflight_hash = 0;
}

/*
 * budget_exit, at backend exit, ends a request in flight that an error
 * or FATAL left behind.
 */
static void
budget_exit(int code, Datum arg)
{
	whoop_budget_abandon();
}

/*
 * whoop_budget_abandon ends this backend's request in flight without an
 * answer (an error while it was on its way); it allocates nothing.
 */
void
whoop_budget_abandon(void)
{
	if (inflight_hash == 0 || budget == NULL)
		return;
	SpinLockAcquire(&budget->mutex);
	land(budget);
	SpinLockRelease(&budget->mutex);
}

/*
 * whoop_budget_answered ends this backend's request in flight and takes
 * what its answer's rate-limit headers (RATE, may be NULL) say, when all
 * three came: the window they describe has Remaining left until Reset (at
 * most the window's length), less the app's requests still in flight;
 * within the same window and limit that only lowers the bucket.  The other window holds at least as much, as far as its
 * capacity goes.  Window lengths the Limit header lists replace the
 * defaults (a simulator's minute may last a second).
 */
void
whoop_budget_answered(const WhoopServer *server, const WhoopRateLimit *rate)
{
	BudgetState *state;
	char	   *key;
	TimestampTz now;
	BudgetSlot *slot;
	BudgetBucket *described;
	BudgetBucket *other;
	TimestampTz hold;
	double		truth;
	bool		same_window;
	int			w;

	/* WHOOP sends all three headers; a part of them is not taken */
	if (rate == NULL || rate->remaining < 0 || rate->limit < 0 || rate->reset_s < 0)
	{
		whoop_budget_abandon();
		return;
	}
	w = rate->described;
	if (w < 0)
		w = rate->reset_s > MINUTE_RESET_MAX_S ? WHOOP_BUDGET_DAY : WHOOP_BUDGET_MINUTE;

	state = get_state();
	key = whoop_budget_app_key(server);
	now = GetCurrentTimestamp();
	SpinLockAcquire(&state->mutex);
	land(state);
	slot = find_slot(state, key, true, now);
	set_capacities(slot, server);
	described = &slot->window[w];
	other = &slot->window[1 - w];
	if (rate->window_s[0] > 0 && rate->window_s[1] > rate->window_s[0])
	{
		slot->window[WHOOP_BUDGET_MINUTE].window_s = rate->window_s[0];
		slot->window[WHOOP_BUDGET_DAY].window_s = rate->window_s[1];
	}
	refill(described, now);
	refill(other, now);
	/* a Reset beyond the window's length is not believed past it */
	hold = now + (int64) (Min((double) rate->reset_s, described->window_s) * USECS_PER_SEC) +
		RESET_ROUNDING_US;
	truth = Max(0, rate->remaining - slot->inflight);
	same_window = described->observed_remaining >= 0 &&
		described->observed_limit == rate->limit &&
		now < described->hold_until &&
		hold < described->hold_until + SAME_WINDOW_US &&
		hold > described->hold_until - SAME_WINDOW_US;
	if (same_window)
	{
		described->tokens = Min(described->tokens, truth);
		described->hold_until = Max(described->hold_until, hold);
	}
	else
	{
		described->tokens = truth;
		described->hold_until = hold;
	}
	described->observed_remaining = rate->remaining;
	described->observed_reset_s = rate->reset_s;
	described->observed_limit = rate->limit;
	described->observed_at = now;
	other->tokens = Max(other->tokens, Min(truth, (double) other->capacity));
	SpinLockRelease(&state->mutex);
	pfree(key);
}

/*
 * whoop_budget_windows fills WINDOWS (minute, day) with SERVER's app's
 * budget as of now -- full buckets when the app has not been used yet --
 * and says whether the budget is shared by every backend.
 */
bool
whoop_budget_windows(const WhoopServer *server, WhoopBudgetWindow *windows)
{
	BudgetState *state = get_state();
	char	   *key = whoop_budget_app_key(server);
	TimestampTz now = GetCurrentTimestamp();
	BudgetSlot	copy;
	BudgetSlot *slot;

	SpinLockAcquire(&state->mutex);
	slot = find_slot(state, key, false, now);
	if (slot != NULL)
		copy = *slot;
	SpinLockRelease(&state->mutex);
	pfree(key);

	if (slot == NULL)
	{
		memset(&copy, 0, sizeof(copy));
		for (int w = 0; w < 2; w++)
		{
			copy.window[w].tokens = -1;
			copy.window[w].window_s = w == WHOOP_BUDGET_MINUTE ? MINUTE_WINDOW_S : DAY_WINDOW_S;
			copy.window[w].updated_at = now;
			copy.window[w].observed_remaining = -1;
			copy.window[w].observed_reset_s = -1;
		}
	}
	set_capacities(&copy, server);

	for (int w = 0; w < 2; w++)
	{
		BudgetBucket *bucket = &copy.window[w];

		refill(bucket, now);
		windows[w].capacity = bucket->capacity;
		windows[w].window_s = bucket->window_s;
		windows[w].available = bucket->tokens;
		windows[w].full_at = now + wait_for(bucket, bucket->capacity, now);
		windows[w].observed_remaining = bucket->observed_remaining;
		windows[w].observed_reset_s = bucket->observed_reset_s;
		windows[w].observed_at = bucket->observed_at;
	}
	return budget_shared;
}
