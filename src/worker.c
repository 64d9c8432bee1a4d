/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The scuttlebutt replication worker: one background worker per
 *	  cluster, holding every peer session of one database.
 *
 * The worker owns the loop, the wait set and the peer list; it drives
 * every session through its transport's callbacks (transport.h) and knows
 * no transport by name.  One long-lived WaitEventSet holds the latch (set
 * by backends at the commit of a model write or a change of peers, and by
 * signals), postmaster death, the listening sockets and every session's
 * sockets.  The set is rebuilt only when a socket comes, goes or is
 * replaced (a transport says so); a change of interest (read, write) is a
 * ModifyWaitEvent.  The wait's timeout is the nearest deadline (a
 * handshake or query timeout, a reconnect time, the next statistics
 * flush), or none: nothing sleeps and nothing polls.  Each iteration:
 *
 *	1. handles the ready sockets (accept, connect, read, write);
 *	2. applies what was read, one transaction per session's batch;
 *	3. sends history peers lack ("pump"), a page per session, when a
 *	   commit happened or a session is still syncing;
 *	4. enforces deadlines, reconnects, and publishes the sessions'
 *	   status to shared memory for the peer_status view.
 *
 * No transaction is open while waiting.  The worker starts once recovery
 * has finished; table work runs only when the extension exists (its
 * install script wakes the worker, as every change of scuttlebutt.peers
 * does).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/resource.h>

#include "access/xact.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "commit.h"
#include "compat.h"
#include "guc.h"
#include "listener.h"
#include "node_key.h"
#include "privileges.h"
#include "rejoin.h"
#include "shmem.h"
#include "stream.h"
#include "tls_context.h"
#include "transport.h"
#include "worker.h"

/* The transports a row of scuttlebutt.peers may name */
static const SbTransportOps *const transports[] = {&SbStreamTransport, &SbLibpqTransport};

/* A socket as the wait set holds it */
typedef struct Registered
{
	pgsocket	sock;			/* PGINVALID_SOCKET: not in the set */
	uint32		events;
	int			pos;			/* its position in the set */
} Registered;

typedef struct WorkerState
{
	MemoryContext cxt;
	MemoryContext loop_cxt;		/* reset at every iteration */
	/* per status slot: the session, its peer row (outgoing), its sockets */
	SbSession **sessions;
	SbPeerConfig **configs;
	Registered (*registered)[SB_SESSION_SOCKETS];
	/* the slots in use, in no order; the free ones, a stack */
	int		   *active;
	int			nactive;
	int		   *free;
	int			nfree;
	/* incoming connections, in all and per remote host (AddressCount) */
	int			nincoming;
	int			nsubstreams;	/* sub-streams of multiplexed connections */
	HTAB	   *per_address;
	int			fd_room;		/* sockets the descriptor limit leaves room for */
	bool		fd_room_logged;
	TimestampTz refusal_logged_at;	/* refusals are logged now and then */
	int64		refusals_unlogged;
	WaitEventSet *set;
	bool		set_dirty;		/* membership changed: build the set anew */
	/*
	 * Some session may have changed since its status was published: one
	 * was worked on, came, went, or all were (an iteration that only
	 * woke for a commit it leaves to the next round touches none)
	 */
	bool		touched;
	WaitEvent  *events;			/* room for every event of the set */
	int			nevents_room;
	uint64		commits;		/* last value of sb_shared->commits taken */
	TimestampTz commits_taken_at;	/* ... when (the last live round) */
	long		stats_timeout_ms;	/* until statistics are due (-1: none) */
	bool		extension_ready;
} WorkerState;

static WorkerState ws;

PGDLLEXPORT void scuttlebutt_worker_main(Datum main_arg);

void
SbWorkerInit(void)
{
	BackgroundWorker worker;

	if (!process_shared_preload_libraries_in_progress)
		return;
	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 1;
	strcpy(worker.bgw_library_name, "scuttlebutt");
	strcpy(worker.bgw_function_name, "scuttlebutt_worker_main");
	strcpy(worker.bgw_name, "scuttlebutt replication worker");
	strcpy(worker.bgw_type, "scuttlebutt replication worker");
	RegisterBackgroundWorker(&worker);
}

/* ---- session slots ---- */

/* Incoming connections from one remote host */
typedef struct AddressCount
{
	char		host[SB_TEXT_SHORT];	/* the key: remote_addr without its port */
	int			count;
} AddressCount;

/* At most one refusal WARNING this often (each one is counted) */
#define SB_REFUSAL_LOG_INTERVAL_MS 10000

/*
 * Descriptors kept for the worker's own files, listeners and libpq: fd.c
 * gives way under pressure (it closes cached files), accept() does not.
 */
#define SB_FD_RESERVE 128

static int
free_slot(void)
{
	return ws.nfree > 0 ? ws.free[--ws.nfree] : -1;
}

/* "host:port" or "[v6]:port" without its port */
static void
address_host(const char *remote_addr, char *host)
{
	const char *colon = strrchr(remote_addr, ':');
	size_t		len = colon ? (size_t) (colon - remote_addr) : strlen(remote_addr);

	memset(host, 0, SB_TEXT_SHORT);
	memcpy(host, remote_addr, Min(len, SB_TEXT_SHORT - 1));
}

/* Counts an incoming connection from remote_addr in (+1) or out (-1) */
static void
count_address(const char *remote_addr, int delta)
{
	char		host[SB_TEXT_SHORT];
	AddressCount *entry;
	bool		found;

	address_host(remote_addr, host);
	entry = hash_search(ws.per_address, host,
						delta > 0 ? HASH_ENTER : HASH_FIND, &found);
	if (entry == NULL)
		return;
	if (!found)
		entry->count = 0;
	entry->count += delta;
	if (entry->count <= 0)
		(void) hash_search(ws.per_address, host, HASH_REMOVE, NULL);
}

/* Incoming connections from remote_addr's host now */
static int
address_count(const char *remote_addr)
{
	char		host[SB_TEXT_SHORT];
	AddressCount *entry;

	address_host(remote_addr, host);
	entry = hash_search(ws.per_address, host, HASH_FIND, NULL);
	return entry ? entry->count : 0;
}

static int
count_open_sessions(void)
{
	int			n = 0;

	for (int a = 0; a < ws.nactive; a++)
		if (SbSessionIsOpen(ws.sessions[ws.active[a]]))
			n++;
	return n;
}

static void
add_session(int slot, SbSession *s, SbPeerConfig *config)
{
	s->slot = slot;
	ws.sessions[slot] = s;
	ws.configs[slot] = config;
	for (int k = 0; k < SB_SESSION_SOCKETS; k++)
		ws.registered[slot][k].sock = PGINVALID_SOCKET;
	ws.active[ws.nactive++] = slot;
	ws.touched = true;
	if (s->substream)
		ws.nsubstreams++;
	else if (!s->outgoing)
	{
		ws.nincoming++;
		count_address(s->remote_addr, 1);
	}
}

static void
drop_session(int slot)
{
	if (ws.sessions[slot]->substream)
		ws.nsubstreams--;
	else if (!ws.sessions[slot]->outgoing)
	{
		ws.nincoming--;
		count_address(ws.sessions[slot]->remote_addr, -1);
	}
	SbSessionFree(ws.sessions[slot]);
	if (ws.configs[slot])
	{
		SbPeerConfig *c = ws.configs[slot];

		if (c->model)
			pfree(c->model);
		if (c->transport)
			pfree(c->transport);
		if (c->host)
			pfree(c->host);
		if (c->conninfo)
			pfree(c->conninfo);
		if (c->sslrootcert)
			pfree(c->sslrootcert);
		if (c->sslcert)
			pfree(c->sslcert);
		if (c->sslkey)
			pfree(c->sslkey);
		pfree(c);
	}
	ws.sessions[slot] = NULL;
	ws.configs[slot] = NULL;
	ws.free[ws.nfree++] = slot;
	for (int a = 0; a < ws.nactive; a++)
		if (ws.active[a] == slot)
		{
			ws.active[a] = ws.active[--ws.nactive];
			break;
		}
	ws.set_dirty = true;
	ws.touched = true;
	LWLockAcquire(sb_shared->lock, LW_EXCLUSIVE);
	sb_shared->conns[slot].in_use = false;
	LWLockRelease(sb_shared->lock);
}

/* Sessions of the peers this server dials */
static int
dialed_count(void)
{
	return ws.nactive - ws.nincoming - ws.nsubstreams;
}

/*
 * Whether incoming connections and their sub-streams hold every slot they
 * may: the last SB_MAX_PEERS are the dialed peers'
 */
static bool
incoming_slots_full(void)
{
	return ws.nincoming + ws.nsubstreams >= SbIncomingSlots();
}

bool
SbWorkerAdopt(SbSession *s)
{
	int			slot;

	if (incoming_slots_full() || (slot = free_slot()) < 0)
		return false;
	add_session(slot, s, NULL);
	return true;
}

/* ---- one session's work ---- */

/*
 * Every piece of work for one session runs through here: an ERROR in it
 * closes that session alone (SbSessionGuard), and the wait set is built
 * anew, since the session's sockets went with it.
 */
static void
guarded(SbSession *s, SbSessionTxnFn step, void *arg)
{
	ws.touched = true;
	if (!SbSessionGuard(s, step, arg))
		ws.set_dirty = true;
}

typedef struct Accepted
{
	pgsocket	sock;
	SockAddr	addr;
	const char *remote;
} Accepted;

static void
accept_step(SbSession *s, void *arg)
{
	Accepted   *a = arg;

	SbStreamAccept(s, a->sock, &a->addr, a->remote);
}

/* What one of a session's sockets is ready for */
typedef struct SocketReady
{
	int			index;			/* among the session's sockets */
	uint32		events;
} SocketReady;

static void
event_step(SbSession *s, void *arg)
{
	SocketReady *ready = arg;

	s->ops->handle(s, ready->index, ready->events);
}

static void
apply_step(SbSession *s, void *arg pg_attribute_unused())
{
	(void) SbSessionApplyPending(s);
}

static void
pump_step(SbSession *s, void *arg pg_attribute_unused())
{
	if (SbSessionPump(s, ws.commits))
		(void) s->ops->flush(s);
}

/* ---- incoming connections ---- */

/*
 * Raises the soft limit on descriptors to the hard one (every connection
 * holds one) and notes how many sockets it leaves room for.
 */
static void
raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
	{
		ws.fd_room = sb_shared->nslots; /* unknown: accept() will tell */
		return;
	}
	if (rl.rlim_cur < rl.rlim_max)
	{
		struct rlimit want = rl;

		want.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &want) == 0)
			rl = want;
		else
			ereport(LOG,
					(errmsg("scuttlebutt: could not raise the file-descriptor limit from %llu to %llu: %m",
							(unsigned long long) rl.rlim_cur,
							(unsigned long long) rl.rlim_max)));
	}
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (rlim_t) (INT_MAX / 2))
		ws.fd_room = INT_MAX / 2;
	else
		ws.fd_room = Max((int) rl.rlim_cur - SB_FD_RESERVE, 0);
}

/* How many incoming connections may be held now */
static int
incoming_limit(void)
{
	/* the dialed peers' sockets come first */
	int			room = ws.fd_room - dialed_count() * SB_SESSION_SOCKETS;

	if (room < sb_max_connections && !ws.fd_room_logged)
	{
		ereport(LOG,
				(errmsg("scuttlebutt: the file-descriptor limit leaves room for %d incoming connections, fewer than scuttlebutt.max_connections (%d)",
						Max(room, 0), sb_max_connections),
				 errhint("Raise the hard limit on open files (ulimit -n, LimitNOFILE) of the server.")));
		ws.fd_room_logged = true;
	}
	return Min(Min(room, sb_max_connections), SbIncomingSlots());
}

/* Says so when scuttlebutt.max_connections passes the status slots */
static void
check_slots(void)
{
	if (sb_max_connections > SbIncomingSlots())
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("scuttlebutt: the worker holds at most %d incoming connections until the server restarts, fewer than scuttlebutt.max_connections (%d)",
						SbIncomingSlots(), sb_max_connections),
				 errdetail("Its status slots in shared memory are set up at server start, for scuttlebutt.max_connections as it was then (%d at least).",
						   SB_MIN_INCOMING_SLOTS)));
}

/* Closes a connection refused at once; counted always, logged now and then */
static void
refuse_connection(pgsocket sock, const char *remote, SbCloseReason reason)
{
	TimestampTz now = GetCurrentTimestamp();

	/* counted first: a client that sees the close finds it counted */
	SbCountConnectionError(reason, remote);
	closesocket(sock);
	ws.refusals_unlogged++;
	if (!TimestampDifferenceExceeds(ws.refusal_logged_at, now, SB_REFUSAL_LOG_INTERVAL_MS))
		return;
	ereport(WARNING,
			(errcode(SbCloseReasonErrcode(reason)),
			 errmsg("scuttlebutt: closing connection from %s: %s",
					remote, SbCloseReasonName(reason)),
			 reason == SB_CLOSE_TOO_MANY_FROM_ADDRESS
			 ? errdetail("scuttlebutt.max_connections_per_address is %d; %lld connection(s) refused since the last such message.",
						 sb_max_connections_per_address, (long long) ws.refusals_unlogged)
			 : errdetail("scuttlebutt.max_connections is %d; %lld connection(s) refused since the last such message.",
						 sb_max_connections, (long long) ws.refusals_unlogged)));
	ws.refusal_logged_at = now;
	ws.refusals_unlogged = 0;
}

static void
accept_connections(int listener)
{
	char		remote[64];
	pgsocket	sock;
	Accepted	accepted;

	while ((sock = SbListenerAccept(listener, &accepted.addr, remote,
									 sizeof(remote))) != PGINVALID_SOCKET)
	{
		int			slot;
		SbSession  *s;

		if (ws.nincoming >= incoming_limit() || incoming_slots_full() ||
			(slot = free_slot()) < 0)
		{
			refuse_connection(sock, remote, SB_CLOSE_TOO_MANY_CONNECTIONS);
			continue;
		}
		if (address_count(remote) >= sb_max_connections_per_address)
		{
			refuse_connection(sock, remote, SB_CLOSE_TOO_MANY_FROM_ADDRESS);
			continue;
		}
		s = SbSessionCreate(ws.cxt, false, &SbStreamTransport);
		s->send_enabled = s->want_send = sb_listen_send;
		s->receive_enabled = s->want_receive = sb_listen_receive;
		/* counted under its address before the accept can fail */
		strlcpy(s->remote_addr, remote, sizeof(s->remote_addr));
		add_session(slot, s, NULL);
		accepted.sock = sock;
		accepted.remote = remote;
		guarded(s, accept_step, &accepted);
	}
}

/* ---- the peer list (scuttlebutt.peers) ---- */

static bool
same_text(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

static bool
same_config(const SbPeerConfig *a, const SbPeerConfig *b)
{
	return same_text(a->model, b->model) && same_text(a->transport, b->transport) &&
		same_text(a->host, b->host) && a->port == b->port &&
		same_text(a->conninfo, b->conninfo) &&
		a->send == b->send && a->receive == b->receive &&
		a->owner == b->owner && a->password_required == b->password_required &&
		a->tls == b->tls && same_text(a->sslrootcert, b->sslrootcert) &&
		same_text(a->sslcert, b->sslcert) && same_text(a->sslkey, b->sslkey);
}

/* A row of scuttlebutt.peers, copied into cxt */
static SbPeerConfig *
read_peer_row(HeapTuple tup, TupleDesc desc, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	SbPeerConfig *c = palloc0(sizeof(SbPeerConfig));
	bool		isnull;

	c->id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
	c->model = SPI_getvalue(tup, desc, 2);
	c->transport = SPI_getvalue(tup, desc, 3);
	c->host = SPI_getvalue(tup, desc, 4);
	c->port = DatumGetInt32(SPI_getbinval(tup, desc, 5, &isnull));
	if (isnull)
		c->port = 0;
	c->conninfo = SPI_getvalue(tup, desc, 6);
	c->send = DatumGetBool(SPI_getbinval(tup, desc, 7, &isnull));
	c->receive = DatumGetBool(SPI_getbinval(tup, desc, 8, &isnull));
	c->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 9, &isnull));
	c->password_required = DatumGetBool(SPI_getbinval(tup, desc, 10, &isnull));
	c->tls = DatumGetBool(SPI_getbinval(tup, desc, 11, &isnull));
	c->sslrootcert = SPI_getvalue(tup, desc, 12);
	c->sslcert = SPI_getvalue(tup, desc, 13);
	c->sslkey = SPI_getvalue(tup, desc, 14);
	MemoryContextSwitchTo(old);
	return c;
}

static char *
copy_text(const char *text)
{
	return text ? MemoryContextStrdup(ws.cxt, text) : NULL;
}

/* A peer row kept as long as its session */
static SbPeerConfig *
copy_config(const SbPeerConfig *row)
{
	SbPeerConfig *c = MemoryContextAlloc(ws.cxt, sizeof(SbPeerConfig));

	*c = *row;
	c->model = copy_text(row->model);
	c->transport = copy_text(row->transport);
	c->host = copy_text(row->host);
	c->conninfo = copy_text(row->conninfo);
	c->sslrootcert = copy_text(row->sslrootcert);
	c->sslcert = copy_text(row->sslcert);
	c->sslkey = copy_text(row->sslkey);
	return c;
}

/* A session for a peer row, in backoff and due at once */
static SbSession *
make_peer(SbPeerConfig *config)
{
	const SbTransportOps *ops = NULL;
	SbSession  *s;

	for (size_t t = 0; t < lengthof(transports); t++)
		if (strcmp(transports[t]->name, config->transport) == 0)
			ops = transports[t];
	if (ops == NULL)
		return NULL;			/* the table's CHECK allows no other */
	s = SbSessionCreate(ws.cxt, true, ops);
	s->peer_id = config->id;
	s->model_name = MemoryContextStrdup(s->cxt, config->model);
	s->send_enabled = s->want_send = config->send;
	s->receive_enabled = s->want_receive = config->receive;
	s->role = config->owner;	/* a dialed session acts as its row's owner */
	ops->configure(s, config);
	return s;
}

static int
find_peer(int32 id)
{
	for (int a = 0; a < ws.nactive; a++)
	{
		SbSession  *s = ws.sessions[ws.active[a]];

		if (s->outgoing && s->peer_id == id)
			return ws.active[a];
	}
	return -1;
}

/* The rows of scuttlebutt.peers (ws.loop_cxt), or none without the extension */
static List *
read_peers(void)
{
	List	   *rows = NIL;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	debug_query_string = "scuttlebutt: reading peers";
	pgstat_report_activity(STATE_RUNNING, debug_query_string);

	ws.extension_ready = OidIsValid(get_extension_oid("scuttlebutt", true));
	if (ws.extension_ready)
	{
		SPI_connect();
		if (SPI_execute("SELECT id, model, transport, host, port, conninfo, send, receive,"
						" owner, password_required, tls, sslrootcert, sslcert, sslkey"
						" FROM scuttlebutt.peers",
						true, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read scuttlebutt.peers");
		for (uint64 r = 0; r < SPI_processed; r++)
			rows = lappend(rows, read_peer_row(SPI_tuptable->vals[r],
											   SPI_tuptable->tupdesc, ws.loop_cxt));
		SPI_finish();
	}
	PopActiveSnapshot();
	CommitTransactionCommand();
	debug_query_string = NULL;
	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextSwitchTo(ws.loop_cxt);
	return rows;
}

/*
 * The id of the signing key ("" without one), read anew after a reload:
 * the setting may name another file, or the same file hold another key.
 * A file that cannot be read now (replaced after the reload checked it)
 * counts as a change: every connection then fails until it is fixed.
 */
static char *
signing_key_id(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	char	   *id = NULL;

	PG_TRY();
	{
		const SbNodeKey *key = SbGetNodeKey();

		id = pstrdup(key ? key->id : "");
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		EmitErrorReport();
		FlushErrorState();
		id = pstrdup("(unreadable)");
	}
	PG_END_TRY();
	return id;
}

/*
 * Closes every connection: each one's header and model were those of the
 * old node id (outgoing ones redial, incoming peers reconnect)
 */
static void
close_all_sessions(SbCloseReason reason)
{
	ws.touched = true;
	for (int a = 0; a < ws.nactive; a++)
	{
		SbSession  *s = ws.sessions[ws.active[a]];

		if (s->state != SB_SESSION_CLOSED && s->state != SB_SESSION_BACKOFF)
			SbSessionClose(s, reason, NULL);
	}
}

/*
 * Grants or models changed: each open session's role may hold less on its
 * model than when it started (a revoke applies to connections already open)
 */
static void
recheck_privileges(void)
{
	/* the change is visible, its invalidation may still be on its way */
	SbPrivilegesForget();
	ws.touched = true;
	for (int a = 0; a < ws.nactive; a++)
		SbSessionRecheckPrivileges(ws.sessions[ws.active[a]]);
}

/*
 * Reads scuttlebutt.peers: adds new peers, drops removed ones, and makes
 * anew those whose row changed (a fixed password, say).
 */
static void
reload_peers(void)
{
	List	   *rows = read_peers();
	ListCell   *lc;

	/* peers no longer in the table, or changed */
	for (int a = ws.nactive - 1; a >= 0; a--)
	{
		int			slot = ws.active[a];
		bool		listed = false;

		if (!ws.sessions[slot]->outgoing)
			continue;
		foreach(lc, rows)
		{
			SbPeerConfig *row = lfirst(lc);

			listed = listed || (row->id == ws.configs[slot]->id &&
								same_config(row, ws.configs[slot]));
		}
		if (!listed)
			drop_session(slot);
	}
	foreach(lc, rows)
	{
		SbPeerConfig *row = lfirst(lc);
		int			slot;
		SbSession  *s;

		if (find_peer(row->id) >= 0)
			continue;
		if (dialed_count() >= SB_MAX_PEERS || (slot = free_slot()) < 0)
		{
			ereport(WARNING,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("scuttlebutt: peer %d is not dialed: the worker dials at most %d peers",
							row->id, SB_MAX_PEERS)));
			continue;
		}
		s = make_peer(row);
		if (s)
			add_session(slot, s, copy_config(row));
	}
}

/* ---- status ---- */

/* Whether text, as strlcpy would copy it into size bytes, is shared */
static bool
same_shared_text(const char *shared, const char *text, size_t size)
{
	return strncmp(shared, text ? text : "", size - 1) == 0;
}

/*
 * Whether a session's published status is out of date.  The worker alone
 * writes the slots: it reads them without the lock.
 */
static bool
status_stale(SbConnStatus *st, SbSession *s, bool caught_up)
{
	return !st->in_use || st->caught_up != caught_up ||
		st->commits_seen != ws.commits ||
		memcmp(&st->counters, &s->counters, sizeof(s->counters)) != 0 ||
		!same_shared_text(st->state, SbSessionStateName(s->state), sizeof(st->state)) ||
		!same_shared_text(st->model, s->model_name, sizeof(st->model)) ||
		!same_shared_text(st->remote_id, s->remote_id, sizeof(st->remote_id)) ||
		!same_shared_text(st->last_error, s->last_error, sizeof(st->last_error)) ||
		st->role != s->role ||
		!same_shared_text(st->method, s->auth_method, sizeof(st->method)) ||
		st->tls != s->tls || st->websocket != s->websocket;
}

/*
 * Publishes the status of the sessions whose status changed: with
 * thousands of idle connections, an event on one writes one slot.
 */
static void
publish_status(void)
{
	bool		locked = false;

	if (!ws.touched)
		return;
	ws.touched = false;
	for (int a = 0; a < ws.nactive; a++)
	{
		int			slot = ws.active[a];
		SbSession  *s = ws.sessions[slot];
		SbConnStatus *st = &sb_shared->conns[slot];
		bool		caught_up = SbSessionCaughtUp(s, ws.commits);

		if (!status_stale(st, s, caught_up))
			continue;
		if (!locked)
			LWLockAcquire(sb_shared->lock, LW_EXCLUSIVE);
		locked = true;
		st->in_use = true;
		st->peer_id = s->peer_id;
		st->direction = s->outgoing ? 'o' : 'i';
		strlcpy(st->transport, s->ops->name, sizeof(st->transport));
		strlcpy(st->model, s->model_name ? s->model_name : "", sizeof(st->model));
		strlcpy(st->remote_addr, s->remote_addr, sizeof(st->remote_addr));
		strlcpy(st->remote_id, s->remote_id ? s->remote_id : "", sizeof(st->remote_id));
		strlcpy(st->state, SbSessionStateName(s->state), sizeof(st->state));
		st->counters = s->counters;
		strlcpy(st->last_error, s->last_error, sizeof(st->last_error));
		st->tls = s->tls;
		st->websocket = s->websocket;
		st->caught_up = caught_up;
		st->commits_seen = ws.commits;
		st->role = s->role;
		strlcpy(st->method, s->auth_method, sizeof(st->method));
	}
	if (locked)
		LWLockRelease(sb_shared->lock);
	pg_atomic_write_u32(&sb_shared->connections, count_open_sessions());
	ConditionVariableBroadcast(&sb_shared->status_cv);
}

/* ---- the wait set ---- */

/*
 * Event tags: listeners are -(i + 1), session sockets
 * 1 + slot * SB_SESSION_SOCKETS + index.
 */
static void
rebuild_wait_set(void)
{
	int			nsocks = 0;

	for (int a = 0; a < ws.nactive; a++)
	{
		SbSession  *s = ws.sessions[ws.active[a]];
		SbWaitSocket socks[SB_SESSION_SOCKETS];

		s->ops->wait_sockets(s, socks);
		for (int k = 0; k < SB_SESSION_SOCKETS; k++)
			if (socks[k].sock != PGINVALID_SOCKET && socks[k].events != 0)
				nsocks++;
	}
	if (ws.set)
		FreeWaitEventSet(ws.set);
	ws.set = SbCreateWaitEventSet(ws.cxt, 2 + SbListenerCount() + nsocks);

	/*
	 * Every ready socket is handled in the iteration that finds it: with a
	 * fixed few per wait, a set built anew (whose ready list starts in the
	 * same order each time) served the same first sockets over and over,
	 * and those after them waited for seconds, their header unread.
	 */
	if (ws.nevents_room < 2 + SbListenerCount() + nsocks)
	{
		if (ws.events)
			pfree(ws.events);
		ws.nevents_room = Max(2 + SbListenerCount() + nsocks, 2 * ws.nevents_room);
		ws.events = MemoryContextAlloc(ws.cxt, sizeof(WaitEvent) * ws.nevents_room);
	}
	AddWaitEventToSet(ws.set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(ws.set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	for (int i = 0; i < SbListenerCount(); i++)
		AddWaitEventToSet(ws.set, WL_SOCKET_READABLE, SbListenerSocket(i), NULL,
						  (void *) (intptr_t) -(i + 1));
	for (int a = 0; a < ws.nactive; a++)
	{
		int			slot = ws.active[a];
		SbSession  *s = ws.sessions[slot];
		SbWaitSocket socks[SB_SESSION_SOCKETS];

		s->ops->wait_sockets(s, socks);
		s->sockets_changed = false;
		for (int k = 0; k < SB_SESSION_SOCKETS; k++)
		{
			Registered *r = &ws.registered[slot][k];

			r->sock = PGINVALID_SOCKET;
			if (socks[k].sock == PGINVALID_SOCKET || socks[k].events == 0)
				continue;
			r->sock = socks[k].sock;
			r->events = socks[k].events;
			r->pos = AddWaitEventToSet(ws.set, r->events, r->sock, NULL,
									   (void *) (intptr_t) (1 + slot * SB_SESSION_SOCKETS + k));
		}
	}
	ws.set_dirty = false;
}

/*
 * Brings the wait set in line with what the sessions wait for: built anew
 * when a socket came, went or was replaced, else only changed interests
 * are modified.
 */
static void
sync_wait_set(void)
{
	for (int a = 0; a < ws.nactive && !ws.set_dirty; a++)
	{
		int			slot = ws.active[a];
		SbSession  *s = ws.sessions[slot];
		SbWaitSocket socks[SB_SESSION_SOCKETS];

		if (s->sockets_changed)
		{
			ws.set_dirty = true;
			break;
		}
		s->ops->wait_sockets(s, socks);
		for (int k = 0; k < SB_SESSION_SOCKETS; k++)
		{
			Registered *r = &ws.registered[slot][k];
			pgsocket	want = socks[k].events != 0 ? socks[k].sock : PGINVALID_SOCKET;

			if (want != r->sock)
				ws.set_dirty = true;
			else if (want != PGINVALID_SOCKET && socks[k].events != r->events)
			{
				ModifyWaitEvent(ws.set, r->pos, socks[k].events, NULL);
				r->events = socks[k].events;
			}
		}
	}
	if (ws.set_dirty || ws.set == NULL)
		rebuild_wait_set();
}

static void
handle_socket_event(WaitEvent *ev)
{
	intptr_t	tag = (intptr_t) ev->user_data;
	int			slot;
	int			k;
	SbSession  *s;
	SocketReady ready;

	if (tag < 0)
	{
		accept_connections(-tag - 1);
		return;
	}
	slot = (tag - 1) / SB_SESSION_SOCKETS;
	k = (tag - 1) % SB_SESSION_SOCKETS;
	s = ws.sessions[slot];
	/* a session gone, or a socket replaced since the wait began */
	if (s == NULL || s->sockets_changed || ws.registered[slot][k].sock != ev->fd)
		return;
	ready.index = k;
	ready.events = ev->events;
	guarded(s, event_step, &ready);
}

/* ---- live rounds ---- */

/*
 * Commits that come close together are sent together when many sessions
 * are held.  A live round costs about one send() per session, whatever it
 * carries, and the kernel's work for each (on the loopback, the receiver's
 * too) is most of the worker's time: after a round, commits are taken
 * again only once a gap of SB_COALESCE_US_PER_SESSION per session held
 * has passed (at most SB_COALESCE_MAX_MS; under a millisecond, none).  A
 * commit after a quiet gap goes out at once; at 1,000 clients and 1,000
 * commits a second, each send() carries about 25 updates.  A shorter gap
 * costs more CPU than it saves in waiting: on two cores shared with the
 * clients, 8 µs gave p99 46 to 166 ms, 15 µs 49 to 70 ms, and 25 µs 41
 * to 43 ms (test/bench/fanout.sh, 1,000 clients, 1,000 writes/s).
 */
#define SB_COALESCE_US_PER_SESSION 25
#define SB_COALESCE_MAX_MS 25

/* The gap between live rounds now (0: none) */
static long
round_gap_us(void)
{
	long		us = (long) ws.nactive * SB_COALESCE_US_PER_SESSION;

	return us < 1000 ? 0 : Min(us, SB_COALESCE_MAX_MS * 1000L);
}

/* When new commits may be taken: 0 if none wait, or they may be now */
static TimestampTz
round_due_at(void)
{
	TimestampTz due = ws.commits_taken_at + round_gap_us();

	if (pg_atomic_read_u64(&sb_shared->commits) == ws.commits ||
		due <= GetCurrentTimestamp())
		return 0;
	return due;
}

/* Takes the commits counted so far, unless the gap since the last is short */
static void
take_commits(void)
{
	uint64		commits = pg_atomic_read_u64(&sb_shared->commits);

	if (commits == ws.commits || round_due_at() != 0)
		return;
	ws.commits = commits;
	ws.commits_taken_at = GetCurrentTimestamp();
	ws.touched = true;
}

/* ---- deadlines ---- */

/*
 * Whether a peer in backoff may connect now: dialed peers never wait for
 * connection slots (incoming connections cannot take theirs).
 */
static bool
may_dial(void)
{
	return ws.extension_ready;
}

/* Milliseconds to the nearest deadline, -1 for none */
static long
next_timeout(void)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz next = round_due_at();
	bool		dial = may_dial();
	long		ms;

	for (int a = 0; a < ws.nactive; a++)
	{
		SbSession  *s = ws.sessions[ws.active[a]];
		TimestampTz d;

		/* history left to send, and the outbox is not what holds it back */
		if (SbSessionWantsPump(s))
			return 0;
		if (s->state == SB_SESSION_BACKOFF)
		{
			if (!dial)
				continue;		/* a closing session or CREATE EXTENSION wakes us */
			if (s->deadline <= now)
				return 0;
			d = s->deadline;
		}
		else
		{
			TimestampTz redial = SbSessionRedialAt(s);

			d = SbSessionIsOpen(s) ? s->ops->deadline(s) : 0;
			if (redial != 0 && (d == 0 || redial < d))
				d = redial;
		}
		if (d != 0 && (next == 0 || d < next))
			next = d;
	}
	if (next == 0)
		ms = -1;
	else if (next <= now)
		return 0;
	else
		ms = (long) ((next - now + 999) / 1000);
	if (ws.stats_timeout_ms > 0 && (ms < 0 || ws.stats_timeout_ms < ms))
		ms = ws.stats_timeout_ms;
	return ms;
}

static void
deadline_step(SbSession *s, void *arg)
{
	TimestampTz now = *(TimestampTz *) arg;

	if (s->state == SB_SESSION_BACKOFF)
	{
		if (s->deadline <= now && may_dial())
			s->ops->start(s);
	}
	else if (SbSessionIsOpen(s))
	{
		s->ops->check_deadline(s, now);
		if (SbSessionIsOpen(s))
			SbSessionRedialIfDue(s);
	}
}

static void
enforce_deadlines(void)
{
	TimestampTz now = GetCurrentTimestamp();

	for (int a = 0; a < ws.nactive; a++)
	{
		SbSession  *s = ws.sessions[ws.active[a]];

		/* an incoming session has nothing to do before its deadline */
		if (!s->outgoing && SbSessionIsOpen(s))
		{
			TimestampTz d = s->ops->deadline(s);

			if (d == 0 || d > now)
				continue;
		}
		guarded(s, deadline_step, &now);
	}
}

/* ---- the loop ---- */

/*
 * For worker_conf_load_time(): a reload reaches the worker after the
 * backend that asked for it, so whoever changes a setting the worker acts
 * on can tell when it took the change.
 */
static void
note_conf_loaded(void)
{
	LWLockAcquire(sb_shared->lock, LW_EXCLUSIVE);
	sb_shared->worker_conf_loaded = GetCurrentTimestamp();
	LWLockRelease(sb_shared->lock);
}

/* Forgets the worker in shared memory, however it exits */
static void
worker_shmem_exit(int code pg_attribute_unused(), Datum arg pg_attribute_unused())
{
	LWLockAcquire(sb_shared->lock, LW_EXCLUSIVE);
	sb_shared->worker_pid = 0;
	sb_shared->worker_latch = NULL;
	sb_shared->worker_conf_loaded = 0;
	LWLockRelease(sb_shared->lock);
}

static void
worker_setup(void)
{
	HASHCTL		ctl;

	memset(&ws, 0, sizeof(ws));
	ws.cxt = AllocSetContextCreate(TopMemoryContext, "scuttlebutt worker",
								   ALLOCSET_DEFAULT_SIZES);
	ws.loop_cxt = AllocSetContextCreate(ws.cxt, "scuttlebutt worker loop",
										ALLOCSET_DEFAULT_SIZES);
	ws.sessions = MemoryContextAllocZero(ws.cxt, sizeof(SbSession *) * sb_shared->nslots);
	ws.configs = MemoryContextAllocZero(ws.cxt, sizeof(SbPeerConfig *) * sb_shared->nslots);
	ws.registered = MemoryContextAllocZero(ws.cxt, sizeof(*ws.registered) * sb_shared->nslots);
	ws.active = MemoryContextAllocZero(ws.cxt, sizeof(int) * sb_shared->nslots);
	ws.free = MemoryContextAlloc(ws.cxt, sizeof(int) * sb_shared->nslots);
	/* lowest first, as a scan for the first free one took them */
	for (int i = sb_shared->nslots - 1; i >= 0; i--)
		ws.free[ws.nfree++] = i;
	ws.set_dirty = true;
	ws.stats_timeout_ms = -1;
	ctl.keysize = SB_TEXT_SHORT;
	ctl.entrysize = sizeof(AddressCount);
	ctl.hcxt = ws.cxt;
	ws.per_address = hash_create("scuttlebutt connections per address", 256, &ctl,
								 HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	raise_fd_limit();
	check_slots();

	before_shmem_exit(worker_shmem_exit, (Datum) 0);
	LWLockAcquire(sb_shared->lock, LW_EXCLUSIVE);
	sb_shared->worker_pid = MyProcPid;
	sb_shared->worker_latch = MyLatch;
	LWLockRelease(sb_shared->lock);
	note_conf_loaded();
}

/* Applies what was read, then sends what peers lack */
static void
serve_sessions(void)
{
	for (int a = 0; a < ws.nactive; a++)
	{
		SbSession  *s = ws.sessions[ws.active[a]];

		if (SbSessionIsOpen(s) && SbSessionHasPending(s))
			guarded(s, apply_step, NULL);
	}
	take_commits();
	SbSessionPumpShareBegin();
	for (int a = 0; a < ws.nactive; a++)
	{
		SbSession  *s = ws.sessions[ws.active[a]];

		if (SbSessionIsOpen(s) && SbSessionPumpDue(s, ws.commits))
			guarded(s, pump_step, NULL);
	}
	SbSessionPumpShareEnd();
}

/*
 * After a restore (rejoin.c), local writes wait until what the peers hold
 * of this node is here: once every peer this server dials is live at the
 * same time (each has sent its history over our clock, then "SYNC", and
 * that was applied), or, dialing none, once any connection is.
 */
static void
check_rejoined(void)
{
	int			dialed = 0;
	int			dialed_live = 0;
	int			other_live = 0;

	if (!SbRejoining())
		return;
	for (int a = 0; a < ws.nactive; a++)
	{
		int			slot = ws.active[a];
		SbSession  *s = ws.sessions[slot];
		bool		live = SbSessionIsOpen(s) && s->state == SB_SESSION_LIVE;

		if (ws.configs[slot] != NULL)
		{
			dialed++;
			dialed_live += live;
		}
		else
			other_live += live;
	}
	if (dialed > 0 && dialed_live == dialed)
		(void) SbRejoinEnd(psprintf("every peer it dials synced: %d", dialed));
	else if (dialed == 0 && other_live > 0)
		(void) SbRejoinEnd("a peer that dialed it synced");
}

void
scuttlebutt_worker_main(Datum main_arg pg_attribute_unused())
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(sb_database, NULL, 0);
	pgstat_report_appname("scuttlebutt replication worker");

	/*
	 * In a lock cycle with a local writer, be the one that gives way: we
	 * check for deadlock first, so the cycle costs our transaction (the
	 * session resumes from the clocks) rather than the application's.
	 */
	SetConfigOption("deadlock_timeout", "100ms", PGC_SUSET, PGC_S_SESSION);

	/*
	 * The worker runs as a superuser: objects of other roles in the
	 * database's or role's search_path (say a public.unnest(text[]), an
	 * exact match that outranks pg_catalog.unnest(anyarray)) must not
	 * stand in for those its statements call.  As the owner scope of the
	 * SQL functions (privileges.c) does, pg_catalog then pg_temp only;
	 * every statement names schema scuttlebutt.
	 */
	SetConfigOption("search_path", SB_OWNER_SEARCH_PATH, PGC_SUSET, PGC_S_SESSION);

	/*
	 * Applies commit without the flush unless they ask for it
	 * (SbCommitWithFlush): what a peer sent, it sends again after a crash
	 */
	SbSessionCommitsWithoutFlush();

	worker_setup();
	ereport(LOG, (errmsg("scuttlebutt replication worker started for database \"%s\"",
						 sb_database)));
	SbTlsServerReload();
	(void) SbListenerConfigure();
	reload_peers();

	while (!ShutdownRequestPending)
	{
		int			nevents;

		MemoryContextSwitchTo(ws.loop_cxt);
		MemoryContextReset(ws.loop_cxt);

		if (ConfigReloadPending)
		{
			char	   *key_id = signing_key_id();

			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			check_slots();
			if (strcmp(key_id, signing_key_id()) != 0)
				close_all_sessions(SB_CLOSE_SIGNING_KEY_CHANGED);
			/* new connections take the certificate files as they are now */
			SbTlsServerReload();
			if (SbListenerConfigure())
				ws.set_dirty = true;
			reload_peers();
			note_conf_loaded();
		}
		if (pg_atomic_exchange_u32(&sb_shared->peers_changed, 0) != 0)
			reload_peers();

		sync_wait_set();
		nevents = WaitEventSetWait(ws.set, next_timeout(), ws.events, ws.nevents_room,
								   PG_WAIT_EXTENSION);
		/*
		 * Before reading the sockets: what a client sent after a revoke
		 * committed (whose commit set our latch) is judged by it
		 */
		if (pg_atomic_exchange_u32(&sb_shared->privileges_changed, 0) != 0)
			recheck_privileges();
		for (int e = 0; e < nevents; e++)
		{
			if (ws.events[e].events & WL_LATCH_SET)
				ResetLatch(MyLatch);
			else if (ws.events[e].events & (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE))
				handle_socket_event(&ws.events[e]);
		}
		CHECK_FOR_INTERRUPTS();
		if (pg_atomic_exchange_u32(&sb_shared->peers_changed, 0) != 0)
			reload_peers();

		serve_sessions();
		check_rejoined();
		enforce_deadlines();
		for (int a = ws.nactive - 1; a >= 0; a--)
			if (ws.sessions[ws.active[a]]->state == SB_SESSION_CLOSED)
				drop_session(ws.active[a]);
		publish_status();
		/* a background worker's table statistics reach autovacuum only so */
		ws.stats_timeout_ms = pgstat_report_stat(false);
	}

	/* clean exit: close everything */
	while (ws.nactive > 0)
		drop_session(ws.active[0]);
	SbListenerCloseAll();
	publish_status();

	/*
	 * Exit status 1: the postmaster restarts us after bgw_restart_time, so a
	 * pg_terminate_backend() is a restart; at server shutdown nothing is
	 * restarted anyway.
	 */
	proc_exit(1);
}
