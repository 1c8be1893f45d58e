-- 10_accounts.sql: linked WHOOP accounts, their tokens, and the SQL API
-- that links them.
--
-- Tokens live in whoop_internal.account, which no role but its owner (the role that
-- created the extension) can read.  The C functions read and write it
-- with the owner's rights; the rotated refresh token is written by a
-- short-lived background worker in a transaction of its own, so it is
-- durable the moment WHOOP returns it, whatever happens to the statement
-- or transaction that triggered the refresh.
--
-- Every account remembers its home, the cluster and database that stored
-- its tokens.  The table travels with pg_dump, home included: a restored
-- copy elsewhere refuses to use the tokens (using them would rotate them
-- and log the original out) until whoop.claim_accounts() claims them there.

--upgrade 1.0--1.1: alter table whoop.account set schema whoop_internal;

create table whoop_internal.account (
    server_name       name not null,
    user_id           bigint not null,
    owner             regrole not null,
    email             text,
    first_name        text,
    last_name         text,
    status            text not null default 'active'
                      check (status in ('active', 'reauthorization_required')),
    refresh_token     text,
    access_token      text,
    access_expires_at timestamptz,
    scope             text,
    token_version     bigint not null default 0,
    linked_at         timestamptz not null default now(),
    last_refresh_at   timestamptz,
    last_error        text,
    home_system_identifier bigint not null,
    home_database     name not null,
    primary key (server_name, user_id)
);
select pg_catalog.pg_extension_config_dump('whoop_internal.account', '');
-- the accounts of a database updated from 1.0 belong to it
--upgrade 1.0--1.1: alter table whoop_internal.account add column home_system_identifier bigint, add column home_database name;
--upgrade 1.0--1.1: update whoop_internal.account set home_system_identifier = (pg_catalog.pg_control_system()).system_identifier, home_database = pg_catalog.current_database();
--upgrade 1.0--1.1: alter table whoop_internal.account alter column home_system_identifier set not null, alter column home_database set not null;

comment on table whoop_internal.account is
    'WHOOP accounts linked to whoop_fdw servers, with their OAuth tokens; readable only by the extension owner';
comment on column whoop_internal.account.owner is
    'role that linked the account; it and its members may query the account''s data';
comment on column whoop_internal.account.status is
    '''reauthorization_required'' once WHOOP refused the refresh token: link the account again';
comment on column whoop_internal.account.token_version is
    'incremented at every token change; backends use it to notice a refresh made by another session';
--upgrade 1.0--1.1 begin
comment on column whoop_internal.account.home_system_identifier is
    'system identifier of the cluster whose database stored the tokens; elsewhere (a restored copy) they are not used until whoop.claim_accounts()';
comment on column whoop_internal.account.home_database is
    'name of the database that stored the tokens (see home_system_identifier)';
--upgrade 1.0--1.1 end

create view whoop.accounts
with (security_barrier)
as
select server_name,
       user_id,
       owner,
       email,
       first_name,
       last_name,
       status,
       linked_at,
       last_refresh_at,
       access_expires_at,
       scope,
       last_error
from whoop_internal.account
where pg_catalog.pg_has_role(current_user, owner::oid, 'usage');

comment on view whoop.accounts is
    'the linked WHOOP accounts the current role may use, without their tokens';

create function whoop.authorize_url(server name, redirect_uri text, state text default null)
returns text
language c
as 'MODULE_PATHNAME', 'whoop_authorize_url';

-- Not strict: a NULL argument is an error naming it, not a NULL result.
--upgrade 1.0--1.1: alter function whoop.connect_account(name, text, text) called on null input;
--upgrade 1.0--1.1: alter function whoop.add_account(name, text) called on null input;
--upgrade 1.0--1.1: alter function whoop.disconnect_account(name, bigint) called on null input;
create function whoop.connect_account(server name, code text, redirect_uri text)
returns bigint
language c
as 'MODULE_PATHNAME', 'whoop_connect_account';

create function whoop.add_account(server name, refresh_token text)
returns bigint
language c
as 'MODULE_PATHNAME', 'whoop_add_account';

create function whoop.disconnect_account(server name, user_id bigint)
returns boolean
language c
as 'MODULE_PATHNAME', 'whoop_disconnect_account';

create function whoop.fetch_stats(out requests bigint, out pages bigint,
                                  out retries bigint, out throttled bigint,
                                  out paced_ms double precision)
returns record
language c strict
as 'MODULE_PATHNAME', 'whoop_fetch_stats';

comment on function whoop.authorize_url(name, text, text) is
    'WHOOP authorization URL for the server''s app (client_id from your user mapping); open it, log in, copy the code parameter of the redirect';
comment on function whoop.connect_account(name, text, text) is
    'exchanges an authorization code for tokens, stores them, and returns the member''s WHOOP user_id';
comment on function whoop.add_account(name, text) is
    'links an account from an existing refresh token (which WHOOP rotates at once) and returns its user_id';
comment on function whoop.disconnect_account(name, bigint) is
    'revokes the account''s access at WHOOP and forgets its tokens; true when WHOOP confirmed the revocation';
comment on function whoop.fetch_stats() is
    'WHOOP API calls made by this session so far: requests (retries included), pages, retries, 429s waited out, time spent pacing';

--upgrade 1.0--1.1 begin
-- The request budget of each server's app (fdw/budget.c): shared by every
-- backend when whoop_fdw is in shared_preload_libraries (or, from
-- PostgreSQL 17 on, through the DSM registry); else per backend.
create function whoop_internal.request_budget(server name,
                                              out server_name text, out app text,
                                              out "window" text, out capacity integer,
                                              out available double precision,
                                              out full_at timestamptz,
                                              out observed_remaining integer,
                                              out observed_reset_s integer,
                                              out observed_at timestamptz,
                                              out shared boolean)
returns setof record
language c strict
as 'MODULE_PATHNAME', 'whoop_request_budget';

comment on function whoop_internal.request_budget(name) is
    'the request budget of a whoop_fdw server''s app: one row per window (minute, day); see the view whoop.request_budget';

create view whoop.request_budget as
select b.*
  from pg_catalog.pg_foreign_server s
  join pg_catalog.pg_foreign_data_wrapper w on w.oid = s.srvfdw
 cross join lateral whoop_internal.request_budget(s.srvname) b
 where w.fdwname = 'whoop_fdw'
   and pg_catalog.has_server_privilege(s.oid, 'usage');

comment on view whoop.request_budget is
    'WHOOP request budget per server and window (minute, day), shared by every backend of the app: capacity (requests_per_minute/requests_per_day), requests available now, when the bucket is full again, the last rate-limit headers about the window, and whether the budget is shared by the cluster''s backends (false: add whoop_fdw to shared_preload_libraries)';
comment on column whoop.request_budget.server_name is 'the whoop_fdw server';
comment on column whoop.request_budget.app is 'the app the budget belongs to: client_id@api_url (servers with the same app share one budget); no secret';
comment on column whoop.request_budget."window" is 'minute or day';
comment on column whoop.request_budget.capacity is 'the server''s requests_per_minute or requests_per_day';
comment on column whoop.request_budget.available is 'requests that may be sent now in this window (more than capacity when WHOOP said so)';
comment on column whoop.request_budget.full_at is 'when the bucket is full again if nothing is spent (refilled continuously at capacity per window, not before WHOOP''s reset)';
comment on column whoop.request_budget.observed_remaining is 'X-RateLimit-Remaining of the last answer that described this window; null: none yet';
comment on column whoop.request_budget.observed_reset_s is 'X-RateLimit-Reset of that answer, seconds';
comment on column whoop.request_budget.observed_at is 'when that answer came';
comment on column whoop.request_budget.shared is 'true when every backend of the cluster shares the budget; false: per backend (PostgreSQL 15/16 without whoop_fdw in shared_preload_libraries)';
--upgrade 1.0--1.1 end

--upgrade 1.0--1.1 begin
create function whoop.claim_accounts()
returns bigint
language c strict
as 'MODULE_PATHNAME', 'whoop_claim_accounts';

comment on function whoop.claim_accounts() is
    'makes this database the home of the accounts a restored dump brought from another database or cluster, so that it may use their tokens; returns how many it claimed. The original must then stop syncing them. Extension owner only';
--upgrade 1.0--1.1 end

--upgrade 1.0--1.1 begin
-- A CREATE or ALTER USER MAPPING that PostgreSQL itself refuses (the role,
-- server or mapping is unknown, or exists already) fails before the
-- validator, which hides the statement of its own errors, is called.  The
-- trigger marks the statement so that its log lines leave the text -- and
-- the client secret in it -- out.
create function whoop_internal.hide_user_mapping_statement()
returns event_trigger
language c
as 'MODULE_PATHNAME', 'whoop_hide_user_mapping_statement';

comment on function whoop_internal.hide_user_mapping_statement() is
    'event trigger function: keeps the text of a failing CREATE/ALTER USER MAPPING, which holds a client secret, out of the server log';

create event trigger whoop_hide_user_mapping_statements
    on ddl_command_start
    when tag in ('CREATE USER MAPPING', 'ALTER USER MAPPING')
    execute function whoop_internal.hide_user_mapping_statement();

comment on event trigger whoop_hide_user_mapping_statements is
    'whoop_fdw: a failing CREATE/ALTER USER MAPPING is logged without its statement, which holds a client secret';
--upgrade 1.0--1.1 end

--upgrade 1.0--1.1 begin
-- DROP SERVER ... CASCADE drops the server's foreign tables and user
-- mappings; its accounts must go too, or their live refresh tokens would
-- stay behind where no function can reach them (disconnect_account needs
-- the server).  They are forgotten, not revoked: the server that knew how to
-- reach WHOOP is gone.  SECURITY DEFINER because the role dropping its own
-- server may not read the token table.
create function whoop_internal.forget_dropped_servers()
returns event_trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    delete from whoop_internal.account a
     using pg_event_trigger_dropped_objects() d
     where d.object_type = 'server'
       and d.object_identity = quote_ident(a.server_name);
end
$$;

comment on function whoop_internal.forget_dropped_servers() is
    'event trigger function: forgets the accounts, tokens and sync marks of dropped whoop_fdw servers';

create event trigger whoop_forget_dropped_servers
    on sql_drop
    when tag in ('DROP SERVER', 'DROP OWNED')
    execute function whoop_internal.forget_dropped_servers();

comment on event trigger whoop_forget_dropped_servers is
    'whoop_fdw: a dropped server''s accounts, tokens and sync marks are forgotten with it';
--upgrade 1.0--1.1 end
