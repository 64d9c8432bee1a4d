/*-------------------------------------------------------------------------
 *
 * sql_peers.c
 *	  SQL functions for replication peers and their monitoring.
 *
 * Peers live in scuttlebutt.peers (so they survive restarts); a trigger on
 * that table wakes the worker at commit to re-read it.  What the worker
 * holds right now is read from shared memory: _peer_status() (behind the
 * peer_status view), connection_errors(), wait_for_sync().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "commands/dbcommands.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "conninfo.h"
#include "privileges.h"
#include "store.h"
#include "shmem.h"
#include "sql_util.h"

PG_FUNCTION_INFO_V1(scuttlebutt_add_stream_peer);
PG_FUNCTION_INFO_V1(scuttlebutt_add_peer);
PG_FUNCTION_INFO_V1(scuttlebutt_conninfo_shown);
PG_FUNCTION_INFO_V1(scuttlebutt_conninfo_address);
PG_FUNCTION_INFO_V1(scuttlebutt_remove_peer);
PG_FUNCTION_INFO_V1(scuttlebutt_peers_changed);
PG_FUNCTION_INFO_V1(scuttlebutt_peers_check);
PG_FUNCTION_INFO_V1(scuttlebutt_peer_status);
PG_FUNCTION_INFO_V1(scuttlebutt_connection_errors);
PG_FUNCTION_INFO_V1(scuttlebutt_worker_conf_load_time);
PG_FUNCTION_INFO_V1(scuttlebutt_wait_for_sync);

/* A stream peer's TLS options (all NULL but tls = false: plain TCP) */
typedef struct PeerTls
{
	bool		tls;
	text	   *sslrootcert;
	text	   *sslcert;
	text	   *sslkey;
} PeerTls;

static void
set_text_arg(Datum *value, char *null, text *t)
{
	*value = PointerGetDatum(t);
	*null = t ? ' ' : 'n';
}

/* Inserts a peer (host/port for a stream, conninfo for libpq); returns its id */
/*
 * The role adding a peer must hold what the peer does with the model:
 * read to send it (the worker sends what the model holds), write to
 * receive into it
 */
static void
check_peer_privileges(const SbModelRef *model, bool send, bool receive)
{
	if (send)
		SbCheckModelPrivilege(model->id, model->name, SB_PRIV_READ);
	if (receive)
		SbCheckModelPrivilege(model->id, model->name, SB_PRIV_WRITE);
}

static int32
insert_peer(text *model, const char *transport, const char *host, int32 port,
			const char *conninfo, bool send, bool receive, const PeerTls *tls)
{
	Oid			argtypes[11] = {TEXTOID, TEXTOID, TEXTOID, INT4OID, TEXTOID, BOOLOID, BOOLOID,
	BOOLOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[11];
	char		nulls[11] = "           ";
	bool		isnull;
	int32		id;

	values[0] = PointerGetDatum(model);
	values[1] = CStringGetTextDatum(transport);
	values[2] = host ? CStringGetTextDatum(host) : (Datum) 0;
	nulls[2] = host ? ' ' : 'n';
	values[3] = Int32GetDatum(port);
	nulls[3] = host ? ' ' : 'n';
	values[4] = conninfo ? CStringGetTextDatum(conninfo) : (Datum) 0;
	nulls[4] = conninfo ? ' ' : 'n';
	values[5] = BoolGetDatum(send);
	values[6] = BoolGetDatum(receive);
	values[7] = BoolGetDatum(tls ? tls->tls : false);
	set_text_arg(&values[8], &nulls[8], tls ? tls->sslrootcert : NULL);
	set_text_arg(&values[9], &nulls[9], tls ? tls->sslcert : NULL);
	set_text_arg(&values[10], &nulls[10], tls ? tls->sslkey : NULL);
	SPI_connect();
	if (SPI_execute_with_args("INSERT INTO scuttlebutt.peers"
							  " (model, transport, host, port, conninfo, send, receive,"
							  "  tls, sslrootcert, sslcert, sslkey)"
							  " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
							  11, argtypes, values, nulls, false, 0) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "could not insert into scuttlebutt.peers");
	id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	return id;
}

Datum
scuttlebutt_add_stream_peer(PG_FUNCTION_ARGS)
{
	char	   *host;
	int32		port;
	SbModelRef	ref;
	PeerTls		tls;

	SbRequireWorker("add_stream_peer()");
	/* the files may be NULL; nothing before them */
	for (int i = 0; i < 6; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("arguments of add_stream_peer() must not be null"),
					 errdetail("Only sslrootcert, sslcert and sslkey may be null.")));
	host = text_to_cstring(PG_GETARG_TEXT_PP(1));
	port = PG_GETARG_INT32(2);
	if (host[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("host must not be empty")));
	if (port < 1 || port > 65535)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("port %d is out of range", port),
				 errhint("A TCP port is between 1 and 65535.")));
	tls.tls = PG_GETARG_BOOL(5);
	tls.sslrootcert = PG_ARGISNULL(6) ? NULL : PG_GETARG_TEXT_PP(6);
	tls.sslcert = PG_ARGISNULL(7) ? NULL : PG_GETARG_TEXT_PP(7);
	tls.sslkey = PG_ARGISNULL(8) ? NULL : PG_GETARG_TEXT_PP(8);
	if (!tls.tls && (tls.sslrootcert || tls.sslcert || tls.sslkey))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sslrootcert, sslcert and sslkey need tls => true")));
	if ((tls.sslcert == NULL) != (tls.sslkey == NULL))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sslcert and sslkey must be given together")));
	SbModelLookup(text_to_cstring(PG_GETARG_TEXT_PP(0)), SB_KIND_ANY, &ref);
	check_peer_privileges(&ref, PG_GETARG_BOOL(3), PG_GETARG_BOOL(4));
	PG_RETURN_INT32(insert_peer(PG_GETARG_TEXT_PP(0), "stream", host, port, NULL,
								PG_GETARG_BOOL(3), PG_GETARG_BOOL(4), &tls));
}

Datum
scuttlebutt_add_peer(PG_FUNCTION_ARGS)
{
	char	   *conninfo;
	SbModelRef	ref;

	SbRequireWorker("add_peer()");
	SbCheckArgsNotNull(fcinfo, "add_peer()");
	conninfo = text_to_cstring(PG_GETARG_TEXT_PP(1));
	SbConninfoCheck(conninfo);
	SbModelLookup(text_to_cstring(PG_GETARG_TEXT_PP(0)), SB_KIND_ANY, &ref);
	check_peer_privileges(&ref, PG_GETARG_BOOL(2), PG_GETARG_BOOL(3));
	PG_RETURN_INT32(insert_peer(PG_GETARG_TEXT_PP(0), "libpq", NULL, 0, conninfo,
								PG_GETARG_BOOL(2), PG_GETARG_BOOL(3), NULL));
}

Datum
scuttlebutt_conninfo_shown(PG_FUNCTION_ARGS)
{
	char	   *shown = SbConninfoShown(text_to_cstring(PG_GETARG_TEXT_PP(0)));

	if (shown == NULL)
		PG_RETURN_TEXT_P(cstring_to_text("(invalid connection string)"));
	PG_RETURN_TEXT_P(cstring_to_text(shown));
}

Datum
scuttlebutt_conninfo_address(PG_FUNCTION_ARGS)
{
	char	   *address = SbConninfoAddress(text_to_cstring(PG_GETARG_TEXT_PP(0)));

	if (address == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(address));
}

Datum
scuttlebutt_remove_peer(PG_FUNCTION_ARGS)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1];

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("peer id must not be null")));
	values[0] = Int32GetDatum(PG_GETARG_INT32(0));
	SPI_connect();
	if (SPI_execute_with_args("DELETE FROM scuttlebutt.peers WHERE id = $1",
							  1, argtypes, values, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not delete from scuttlebutt.peers");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("scuttlebutt peer %d does not exist", PG_GETARG_INT32(0))));
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * Row trigger before every write of scuttlebutt.peers: who owns the row,
 * and whether that role may make the worker connect as it says.  A role
 * that is not superuser names only itself (or a role it has the
 * privileges of) as owner and may not waive the password; the libpq peer
 * of a role that is not superuser needs a password and no option that
 * reads the server's files, unless a superuser set password_required to
 * false.  The files a TLS stream peer names (sslrootcert, sslcert,
 * sslkey) are read by the worker as the server's OS user: as libpq's
 * options of the same names, only a superuser may set them.
 */
Datum
scuttlebutt_peers_check(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	HeapTuple	tuple;
	int			owner_att;
	int			required_att;
	bool		isnull;
	Oid			owner;
	bool		password_required;
	char	   *transport;
	char	   *conninfo;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		elog(ERROR, "scuttlebutt_peers_check: not called as a row trigger before a write");
	desc = trigdata->tg_relation->rd_att;
	tuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event)
		? trigdata->tg_newtuple : trigdata->tg_trigtuple;
	owner_att = SPI_fnumber(desc, "owner");
	required_att = SPI_fnumber(desc, "password_required");
	if (owner_att <= 0 || required_att <= 0)
		elog(ERROR, "scuttlebutt.peers lacks its owner or password_required column");

	owner = DatumGetObjectId(SPI_getbinval(tuple, desc, owner_att, &isnull));
	if (isnull)
	{
		Datum		value = ObjectIdGetDatum(GetUserId());
		bool		replace_null = false;

		tuple = heap_modify_tuple_by_cols(tuple, desc, 1, &owner_att, &value, &replace_null);
		owner = GetUserId();
	}
	password_required = DatumGetBool(SPI_getbinval(tuple, desc, required_att, &isnull));
	if (!superuser())
	{
		if (!has_privs_of_role(GetUserId(), owner))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("only a superuser may add a scuttlebutt peer for another role")));
		if (!password_required)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("password_required=false is superuser-only"),
					 errdetail("A scuttlebutt peer written by a role that is not superuser must authenticate with a password.")));
	}

	if (!superuser())
	{
		static const char *const files[] = {"sslrootcert", "sslcert", "sslkey"};

		for (size_t i = 0; i < lengthof(files); i++)
		{
			int			att = SPI_fnumber(desc, files[i]);

			if (att <= 0)
				elog(ERROR, "scuttlebutt.peers lacks its %s column", files[i]);
			(void) SPI_getbinval(tuple, desc, att, &isnull);
			if (!isnull)
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("only a superuser may set %s of a scuttlebutt peer", files[i]),
						 errdetail("The replication worker reads the file as the server's operating-system user.")));
		}
	}

	transport = SPI_getvalue(tuple, desc, SPI_fnumber(desc, "transport"));
	conninfo = SPI_getvalue(tuple, desc, SPI_fnumber(desc, "conninfo"));
	if (transport && strcmp(transport, "libpq") == 0 && conninfo &&
		password_required && !superuser_arg(owner))
	{
		const char *problem;

		SbConninfoCheck(conninfo);
		problem = SbConninfoUnprivilegedProblem(conninfo);
		if (problem)
			ereport(ERROR,
					(errcode(ERRCODE_S_R_E_PROHIBITED_SQL_STATEMENT_ATTEMPTED),
					 errmsg("password is required"),
					 errdetail("Non-superusers must provide a password in the connection string, and may not name the server's files: %s.",
							   problem)));
	}
	return PointerGetDatum(tuple);
}

/*
 * Statement trigger on scuttlebutt.peers, and the install script's last
 * step (so a worker waiting for CREATE EXTENSION needs no polling): the
 * worker rereads the peers at commit.
 */
Datum
scuttlebutt_peers_changed(PG_FUNCTION_ARGS)
{
	SbNotePeersChanged();
	if (CALLED_AS_TRIGGER(fcinfo))
		return PointerGetDatum(NULL);
	PG_RETURN_VOID();
}

static Datum
timestamp_or_null(TimestampTz ts, bool *isnull)
{
	*isnull = ts == 0;
	return TimestampTzGetDatum(ts);
}

Datum
scuttlebutt_peer_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	if (sb_shared == NULL)
		return (Datum) 0;		/* not preloaded: nothing is connected */
	/* peer ids are those of the worker's database: elsewhere they mean nothing */
	if (sb_database == NULL || strcmp(get_database_name(MyDatabaseId), sb_database) != 0)
		return (Datum) 0;

	LWLockAcquire(sb_shared->lock, LW_SHARED);
	for (int i = 0; i < sb_shared->nslots; i++)
	{
		SbConnStatus *st = &sb_shared->conns[i];
		Datum		values[20];
		bool		nulls[20] = {0};
		char	   *role_name;

		if (!st->in_use)
			continue;
		values[0] = Int32GetDatum(st->peer_id);
		nulls[0] = st->peer_id == 0;
		values[1] = CStringGetTextDatum(st->direction == 'o' ? "out" : "in");
		values[2] = CStringGetTextDatum(st->transport);
		values[3] = CStringGetTextDatum(st->model);
		nulls[3] = st->model[0] == '\0';
		values[4] = CStringGetTextDatum(st->remote_addr);
		values[5] = CStringGetTextDatum(st->remote_id);
		nulls[5] = st->remote_id[0] == '\0';
		values[6] = CStringGetTextDatum(st->state);
		values[7] = timestamp_or_null(st->counters.synced_at, &nulls[7]);
		values[8] = Int64GetDatum(st->counters.sent);
		values[9] = Int64GetDatum(st->counters.received);
		values[10] = Int64GetDatum(st->counters.rejected);
		values[11] = Int64GetDatum(st->counters.rejected_skew);
		values[12] = Int64GetDatum(st->counters.bytes_in);
		values[13] = Int64GetDatum(st->counters.bytes_out);
		values[14] = CStringGetTextDatum(st->last_error);
		nulls[14] = st->last_error[0] == '\0';
		values[15] = timestamp_or_null(st->counters.last_activity, &nulls[15]);
		/* a role dropped since shows as NULL */
		role_name = OidIsValid(st->role) ? GetUserNameFromId(st->role, true) : NULL;
		values[16] = role_name ? DirectFunctionCall1(namein, CStringGetDatum(role_name)) : (Datum) 0;
		nulls[16] = role_name == NULL;
		values[17] = CStringGetTextDatum(st->method);
		nulls[17] = st->method[0] == '\0';
		values[18] = BoolGetDatum(st->tls);
		values[19] = BoolGetDatum(st->websocket);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	LWLockRelease(sb_shared->lock);
	return (Datum) 0;
}

/*
 * When the worker last read the configuration files (as pg_conf_load_time()
 * says for the calling backend); NULL when no worker runs
 */
Datum
scuttlebutt_worker_conf_load_time(PG_FUNCTION_ARGS)
{
	TimestampTz loaded = 0;

	if (sb_shared != NULL)
	{
		LWLockAcquire(sb_shared->lock, LW_SHARED);
		loaded = sb_shared->worker_conf_loaded;
		LWLockRelease(sb_shared->lock);
	}
	if (loaded == 0)
		PG_RETURN_NULL();
	PG_RETURN_TIMESTAMPTZ(loaded);
}

Datum
scuttlebutt_connection_errors(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	if (sb_shared == NULL)
		return (Datum) 0;

	LWLockAcquire(sb_shared->lock, LW_SHARED);
	for (int i = 0; i < SB_CLOSE_REASONS; i++)
	{
		SbErrorCount *e = &sb_shared->errors[i];
		Datum		values[4];
		bool		nulls[4] = {0};

		if (e->count == 0)
			continue;
		values[0] = CStringGetTextDatum(SbCloseReasonName(i));
		values[1] = Int64GetDatum(e->count);
		values[2] = timestamp_or_null(e->last_at, &nulls[2]);
		values[3] = CStringGetTextDatum(e->last_peer);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	LWLockRelease(sb_shared->lock);
	return (Datum) 0;
}

/*
 * Every connection of the model live and caught up with the commits so
 * far, and every configured peer of the model among them.
 */
static bool
model_synced(const char *model, uint64 commits, int npeers, int32 *peers)
{
	bool		synced = true;

	LWLockAcquire(sb_shared->lock, LW_SHARED);
	for (int i = 0; i < sb_shared->nslots && synced; i++)
	{
		SbConnStatus *st = &sb_shared->conns[i];

		if (st->in_use && strcmp(st->model, model) == 0)
			synced = st->caught_up && st->commits_seen >= commits;
	}
	for (int p = 0; p < npeers && synced; p++)
	{
		bool		held = false;

		for (int i = 0; i < sb_shared->nslots && !held; i++)
			held = sb_shared->conns[i].in_use && sb_shared->conns[i].peer_id == peers[p];
		synced = held;
	}
	LWLockRelease(sb_shared->lock);
	return synced;
}

/* The ids of the configured peers of a model */
static int
model_peers(const char *model, int32 **ids)
{
	MemoryContext caller = CurrentMemoryContext;
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	int			n;

	values[0] = CStringGetTextDatum(model);
	SPI_connect();
	if (SPI_execute_with_args("SELECT id FROM scuttlebutt.peers WHERE model = $1",
							  1, argtypes, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read scuttlebutt.peers");
	n = SPI_processed;
	*ids = MemoryContextAlloc(caller, sizeof(int32) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		bool		isnull;

		(*ids)[i] = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i],
												SPI_tuptable->tupdesc, 1, &isnull));
	}
	SPI_finish();
	return n;
}

/*
 * wait_for_sync(model, timeout): true once every connection of the model
 * has exchanged "SYNC" and has nothing left to send (of the commits made
 * before the call); false at the timeout.  Sleeps on the condition
 * variable the worker broadcasts after publishing statuses.
 */
Datum
scuttlebutt_wait_for_sync(PG_FUNCTION_ARGS)
{
	char	   *model;
	Interval   *timeout;
	TimestampTz deadline;
	uint64		commits;
	bool		synced;
	int32	   *peers;
	int			npeers;

	SbRequireWorker("wait_for_sync()");
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("arguments of wait_for_sync() must not be null")));
	model = text_to_cstring(PG_GETARG_TEXT_PP(0));
	timeout = PG_GETARG_INTERVAL_P(1);
	deadline = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
													   TimestampTzGetDatum(GetCurrentTimestamp()),
													   IntervalPGetDatum(timeout)));
	commits = pg_atomic_read_u64(&sb_shared->commits);
	npeers = model_peers(model, &peers);

	ConditionVariablePrepareToSleep(&sb_shared->status_cv);
	for (;;)
	{
		TimestampTz now = GetCurrentTimestamp();
		long		ms;

		synced = model_synced(model, commits, npeers, peers);
		if (synced || now >= deadline)
			break;
		/* every publication of statuses wakes us: sleep up to the deadline */
		ms = (long) ((deadline - now) / 1000 + 1);
		(void) ConditionVariableTimedSleep(&sb_shared->status_cv, ms,
										   PG_WAIT_EXTENSION);
	}
	ConditionVariableCancelSleep();
	PG_RETURN_BOOL(synced);
}
