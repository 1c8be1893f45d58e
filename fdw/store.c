/*-------------------------------------------------------------------------
 *
 * store.c
 *		  The account store: the token table (WHOOP_ACCOUNT_RELATION), its
 *		  reads and writes, and the per-account refresh lock.
 *
 * Every statement on the table runs with the table owner's rights and a
 * safe search_path, as a SECURITY DEFINER function would: the tokens are
 * readable by no other role.  Reads take a fresh snapshot, so a backend
 * sees a refresh committed by another session even inside a REPEATABLE
 * READ transaction.  Writes run in the current transaction; making them
 * durable whatever that transaction does is token_writer.c's business,
 * which runs them in a background worker's transaction of its own.
 * Refreshes are serialized per account with a session-level advisory lock
 * in a lock space of our own.
 *
 * Every account remembers its home: the cluster (system identifier) and
 * database (name) that stored its tokens.  A dump restored elsewhere brings
 * the tokens along, and a copy that used them would rotate them and log the
 * original out; so an account read away from home says so (at_home), and
 * its tokens are handed out only once whoop_store_claim has made this
 * database its home.  The name, not the OID, is compared: a database
 * restored under its own name in its own cluster is still at home, and
 * pg_upgrade keeps names (it changes the system identifier, so an upgraded
 * cluster claims its accounts once).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "whoop_fdw.h"

#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

/* advisory-lock field4 of our own, apart from user advisory locks (1, 2) */
#define WHOOP_LOCK_SPACE 0x5748

/* what store_begin saved, for store_end */
typedef struct StoreSession
{
	Oid			save_userid;
	int			save_sec;
	int			save_nestlevel;
} StoreSession;

static void store_begin(StoreSession *session);
static void store_end(StoreSession *session);
static void account_locktag(LOCKTAG *tag, const char *server_name, int64 user_id);

/*
 * whoop_store_owner returns the role owning the token table: the rights
 * every access to the tokens runs with.
 */
Oid
whoop_store_owner(void)
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
 * store_begin switches to the token table's owner with a safe search_path
 * and connects to SPI; store_end undoes both.  An error in between is
 * unwound by transaction abort.
 */
static void
store_begin(StoreSession *session)
{
	Oid			owner = whoop_store_owner();

	GetUserIdAndSecContext(&session->save_userid, &session->save_sec);
	SetUserIdAndSecContext(owner, session->save_sec | SECURITY_LOCAL_USERID_CHANGE);
	session->save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

static void
store_end(StoreSession *session)
{
	SPI_finish();
	AtEOXact_GUC(true, session->save_nestlevel);
	SetUserIdAndSecContext(session->save_userid, session->save_sec);
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
		"access_expires_at, token_version, home_system_identifier, home_database, "
		"access_expires_at operator(pg_catalog.-) last_refresh_at "
		"from " WHOOP_ACCOUNT_RELATION " "
		"where server_name operator(pg_catalog.=) $1 "
		"and user_id operator(pg_catalog.=) $2";
	Oid			argtypes[2] = {NAMEOID, INT8OID};
	Datum		values[2];
	MemoryContext caller = CurrentMemoryContext;
	StoreSession session;
	SPIPlanPtr	plan;
	NameData	server;

	memset(account, 0, sizeof(WhoopStoredAccount));
	account->user_id = user_id;
	namestrcpy(&server, server_name);
	values[0] = NameGetDatum(&server);
	values[1] = Int64GetDatum(user_id);

	store_begin(&session);
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
		account->home_system_identifier = DatumGetInt64(SPI_getbinval(tuple, desc, 7, &isnull));
		account->home_database = SPI_getvalue(tuple, desc, 8);
		d = SPI_getbinval(tuple, desc, 9, &isnull);
		if (isnull)
			account->access_lifetime_us = -1;
		else
		{
			Interval   *lifetime = DatumGetIntervalP(d);

			account->access_lifetime_us = lifetime->time +
				((int64) lifetime->day * USECS_PER_DAY);
		}
		account->at_home =
			account->home_system_identifier == (int64) GetSystemIdentifier() &&
			strcmp(account->home_database, get_database_name(MyDatabaseId)) == 0;
		MemoryContextSwitchTo(spi);
	}
	store_end(&session);
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
	StoreSession session;
	NameData	server;

	namestrcpy(&server, server_name);
	values[0] = NameGetDatum(&server);
	values[1] = ObjectIdGetDatum(userid);

	store_begin(&session);
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
	store_end(&session);
	return user_ids;
}

/*
 * whoop_store_write applies one change to an account in the current
 * transaction.  A save never hands an account to a role without the
 * privileges of its owner: account.c checks that before it asks WHOOP for
 * tokens, and the upsert checks it again, against a link by another role
 * in between.
 */
void
whoop_store_write(const WhoopStoreWrite *write)
{
	static const char save_sql[] =
		"insert into " WHOOP_ACCOUNT_RELATION " as a (server_name, user_id, owner, email, "
		"  first_name, last_name, status, refresh_token, access_token, access_expires_at, "
		"  scope, token_version, last_refresh_at, last_error, home_system_identifier, "
		"  home_database) "
		"values ($1, $2, $3, $4, $5, $6, 'active', $7, $8, "
		"  pg_catalog.now() operator(pg_catalog.+) pg_catalog.make_interval(secs => $9), "
		"  $10, 1, pg_catalog.now(), null, $11, pg_catalog.current_database()) "
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
		"  last_error = null, "
		"  home_system_identifier = excluded.home_system_identifier, "
		"  home_database = excluded.home_database "
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
	Oid			types[11] = {NAMEOID, INT8OID};
	Datum		values[11];
	char		nulls[11];
	StoreSession session;
	NameData	server;
	int			rc;

	namestrcpy(&server, write->server_name);
	values[0] = NameGetDatum(&server);
	values[1] = Int64GetDatum(write->user_id);
	memset(nulls, ' ', sizeof(nulls));

	store_begin(&session);
	if (write->op == WHOOP_STORE_SAVE_TOKENS)
	{
		const WhoopProfile *profile = write->profile;
		const char *texts[] = {
			profile ? profile->email : NULL,
			profile ? profile->first_name : NULL,
			profile ? profile->last_name : NULL,
			write->tokens->refresh_token,
			write->tokens->access_token
		};

		types[2] = REGROLEOID;
		values[2] = ObjectIdGetDatum(write->owner);
		for (int i = 0; i < lengthof(texts); i++)
		{
			types[3 + i] = TEXTOID;
			values[3 + i] = texts[i] ? CStringGetTextDatum(texts[i]) : (Datum) 0;
			nulls[3 + i] = texts[i] ? ' ' : 'n';
		}
		types[8] = FLOAT8OID;
		values[8] = Float8GetDatum((double) write->tokens->expires_in);
		types[9] = TEXTOID;
		values[9] = write->tokens->scope ? CStringGetTextDatum(write->tokens->scope) : (Datum) 0;
		nulls[9] = write->tokens->scope ? ' ' : 'n';
		/* tokens obtained here belong here, also those of a relinked copy */
		types[10] = INT8OID;
		values[10] = Int64GetDatum((int64) GetSystemIdentifier());
		rc = SPI_execute_with_args(save_sql, 11, types, values, nulls, false, 0);
		if (rc != SPI_OK_INSERT)
			elog(ERROR, "saving WHOOP tokens failed: %s", SPI_result_code_string(rc));
		if (SPI_processed != 1)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("WHOOP account " INT64_FORMAT " was linked to server \"%s\" by another role meanwhile",
							write->user_id, write->server_name)));
	}
	else if (write->op == WHOOP_STORE_MARK_FAILED)
	{
		types[2] = TEXTOID;
		values[2] = CStringGetTextDatum(write->status);
		types[3] = TEXTOID;
		values[3] = write->error ? CStringGetTextDatum(write->error) : (Datum) 0;
		nulls[3] = write->error ? ' ' : 'n';
		rc = SPI_execute_with_args(mark_sql, 4, types, values, nulls, false, 0);
		if (rc != SPI_OK_UPDATE)
			elog(ERROR, "marking the WHOOP account failed: %s", SPI_result_code_string(rc));
	}
	else
	{
		rc = SPI_execute_with_args(forget_sql, 2, types, values, NULL, false, 0);
		if (rc != SPI_OK_DELETE)
			elog(ERROR, "forgetting the WHOOP account failed: %s", SPI_result_code_string(rc));
	}
	store_end(&session);
}

/*
 * whoop_store_claim makes this cluster and database the home of every
 * account that has another, in the current transaction, and returns how
 * many it claimed.
 */
int64
whoop_store_claim(void)
{
	static const char claim_sql[] =
		"update " WHOOP_ACCOUNT_RELATION " "
		"set home_system_identifier = $1, home_database = pg_catalog.current_database() "
		"where home_system_identifier operator(pg_catalog.<>) $1 "
		"or home_database operator(pg_catalog.<>) pg_catalog.current_database()";
	Oid			types[1] = {INT8OID};
	Datum		values[1];
	StoreSession session;
	int64		claimed;
	int			rc;

	values[0] = Int64GetDatum((int64) GetSystemIdentifier());
	store_begin(&session);
	rc = SPI_execute_with_args(claim_sql, 1, types, values, NULL, false, 0);
	if (rc != SPI_OK_UPDATE)
		elog(ERROR, "claiming the WHOOP accounts failed: %s", SPI_result_code_string(rc));
	claimed = (int64) SPI_processed;
	store_end(&session);
	return claimed;
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

/*
 * whoop_account_unlock releases the account's refresh lock.
 */
void
whoop_account_unlock(const char *server_name, int64 user_id)
{
	LOCKTAG		tag;

	account_locktag(&tag, server_name, user_id);
	LockRelease(&tag, ExclusiveLock, true);
}
