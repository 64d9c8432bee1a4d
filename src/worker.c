/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The scuttlebutt replication worker: one background worker per
 *	  cluster, holding every peer connection of one database.
 *
 * One loop, one WaitEventSet: the latch (set by backends at the commit of
 * a model write, by add/remove peer, and by signals), postmaster death,
 * the listening sockets and every connection's socket.  The wait's timeout
 * is the nearest deadline (a handshake timeout or a reconnect time);
 * nothing sleeps and nothing polls.  Each iteration:
 *
 *	1. handles the ready sockets (accept, connect completion, read, write);
 *	2. applies what was read, one transaction per connection's batch;
 *	3. sends history peers lack ("pump"), a page per connection, when a
 *	   commit happened or a connection is still syncing;
 *	4. enforces deadlines, reconnects, and publishes the connections'
 *	   status to shared memory for the peer_status view.
 *
 * No transaction is open while waiting.  Table work runs only when the
 * extension exists and the server is not in recovery.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "common/ip.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "compat.h"
#include "connection.h"
#include "guc.h"
#include "libpq_peer.h"
#include "shmem.h"
#include "worker.h"

#define SB_MAX_LISTENERS 16

typedef struct WorkerState
{
	MemoryContext cxt;
	MemoryContext loop_cxt;		/* reset at every iteration */
	SbConn	  **conns;			/* SB_STATUS_SLOTS entries, NULL if free */
	pgsocket	listeners[SB_MAX_LISTENERS];
	int			nlisteners;
	int			listen_port;	/* what the listeners are bound to */
	char	   *listen_addresses;
	uint64		commits;		/* last value of sb_shared->commits seen */
	bool		set_dirty;		/* sockets changed: rebuild the wait set */
	WaitEventSet *set;
	/* per slot and link: the socket and events the wait set holds */
	pgsocket	(*wait_socks)[SB_LIBPQ_LINKS];
	uint32		(*wait_events)[SB_LIBPQ_LINKS];
	bool		extension_ready;
} WorkerState;

static WorkerState ws;

PGDLLEXPORT void scuttlebutt_worker_main(Datum main_arg);

void
SbWorkerRegister(void)
{
	BackgroundWorker worker;

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

/* ---- connection slots ---- */

static int
free_slot(void)
{
	for (int i = 0; i < SB_STATUS_SLOTS; i++)
		if (ws.conns[i] == NULL)
			return i;
	return -1;
}

static int
count_connections(void)
{
	int			n = 0;

	for (int i = 0; i < SB_STATUS_SLOTS; i++)
		if (ws.conns[i] && SbConnIsOpen(ws.conns[i]))
			n++;
	return n;
}

static void
drop_conn(int i)
{
	SbConnFree(ws.conns[i]);
	ws.conns[i] = NULL;
	ws.set_dirty = true;
}

/* ---- listening ---- */

static void
close_listeners(void)
{
	for (int i = 0; i < ws.nlisteners; i++)
		closesocket(ws.listeners[i]);
	ws.nlisteners = 0;
	ws.set_dirty = true;
}

static void
open_listener(const char *host, int port)
{
	struct addrinfo hints;
	struct addrinfo *res;
	char		portstr[16];
	int			rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	snprintf(portstr, sizeof(portstr), "%d", port);
	rc = getaddrinfo(strcmp(host, "*") == 0 ? NULL : host, portstr, &hints, &res);
	if (rc != 0)
	{
		ereport(WARNING,
				(errmsg("scuttlebutt: could not resolve listen address \"%s\": %s",
						host, gai_strerror(rc))));
		return;
	}
	for (struct addrinfo *ai = res; ai && ws.nlisteners < SB_MAX_LISTENERS; ai = ai->ai_next)
	{
		pgsocket	sock = socket(ai->ai_family, SOCK_STREAM, 0);
		int			one = 1;

		if (sock == PGINVALID_SOCKET)
			continue;
		(void) setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
#ifdef IPV6_V6ONLY
		if (ai->ai_family == AF_INET6)
			(void) setsockopt(sock, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
#endif
		if (bind(sock, ai->ai_addr, ai->ai_addrlen) < 0 ||
			listen(sock, 128) < 0 || !pg_set_noblock(sock))
		{
			ereport(WARNING,
					(errcode_for_socket_access(),
					 errmsg("scuttlebutt: could not listen on \"%s\" port %d: %m",
							host, port)));
			closesocket(sock);
			continue;
		}
		ws.listeners[ws.nlisteners++] = sock;
	}
	freeaddrinfo(res);
}

/* (Re)opens the listeners when the port or addresses changed */
static void
configure_listeners(void)
{
	List	   *hosts;
	ListCell   *lc;
	char	   *raw;

	if (ws.listen_port == sb_port && ws.listen_addresses &&
		strcmp(ws.listen_addresses, sb_listen_addresses) == 0)
		return;

	close_listeners();
	if (ws.listen_addresses)
		pfree(ws.listen_addresses);
	ws.listen_addresses = MemoryContextStrdup(ws.cxt, sb_listen_addresses);
	ws.listen_port = sb_port;
	if (sb_port == 0)
		return;

	raw = pstrdup(sb_listen_addresses);
	if (!SplitGUCList(raw, ',', &hosts))
	{
		ereport(WARNING,
				(errmsg("scuttlebutt: invalid scuttlebutt.listen_addresses \"%s\"",
						sb_listen_addresses)));
		return;
	}
	foreach(lc, hosts)
		open_listener((char *) lfirst(lc), sb_port);
	if (ws.nlisteners > 0)
		ereport(LOG,
				(errmsg("scuttlebutt: listening for stream peers on \"%s\" port %d",
						sb_listen_addresses, sb_port)));
}

static void
format_addr(struct sockaddr *sa, socklen_t len, char *out, size_t outlen)
{
	char		host[NI_MAXHOST];
	char		serv[NI_MAXSERV];

	if (pg_getnameinfo_all((struct sockaddr_storage *) sa, len, host, sizeof(host),
						   serv, sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV) != 0)
		strlcpy(out, "?", outlen);
	else if (sa->sa_family == AF_INET6)
		snprintf(out, outlen, "[%s]:%s", host, serv);
	else
		snprintf(out, outlen, "%s:%s", host, serv);
}

static void
accept_connections(pgsocket listener)
{
	for (;;)
	{
		struct sockaddr_storage addr;
		socklen_t	addrlen = sizeof(addr);
		pgsocket	sock = accept(listener, (struct sockaddr *) &addr, &addrlen);
		char		remote[64];
		int			slot;
		int			one = 1;
		SbConn	   *conn;

		if (sock == PGINVALID_SOCKET)
			return;				/* EAGAIN, or a transient error */
		format_addr((struct sockaddr *) &addr, addrlen, remote, sizeof(remote));
		slot = free_slot();
		if (count_connections() >= sb_max_connections || slot < 0)
		{
			ereport(WARNING,
					(errcode(ERRCODE_TOO_MANY_CONNECTIONS),
					 errmsg("scuttlebutt: closing connection from %s: too many connections",
							remote),
					 errdetail("scuttlebutt.max_connections is %d.", sb_max_connections)));
			SbCountConnectionError("too many connections", remote);
			closesocket(sock);
			continue;
		}
		(void) pg_set_noblock(sock);
		(void) setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		conn = SbConnCreate(ws.cxt, false);
		conn->slot = slot;
		conn->send_enabled = sb_listen_send;
		conn->receive_enabled = sb_listen_receive;
		ws.conns[slot] = conn;
		SbConnStart(conn, sock, remote);
		ws.set_dirty = true;
	}
}

/* ---- outgoing peers ---- */

static void
start_connect(SbConn *conn)
{
	struct addrinfo hints;
	struct addrinfo *res = NULL;
	char		portstr[16];
	int			rc;
	pgsocket	sock;
	int			one = 1;

	snprintf(conn->remote_addr, sizeof(conn->remote_addr), "%s:%d",
			 conn->host, conn->port);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	snprintf(portstr, sizeof(portstr), "%d", conn->port);
	rc = getaddrinfo(conn->host, portstr, &hints, &res);
	if (rc != 0)
	{
		SbConnClose(conn, "could not resolve host", gai_strerror(rc));
		return;
	}
	sock = socket(res->ai_family, SOCK_STREAM, 0);
	if (sock == PGINVALID_SOCKET || !pg_set_noblock(sock))
	{
		if (sock != PGINVALID_SOCKET)
			closesocket(sock);
		freeaddrinfo(res);
		SbConnClose(conn, "could not connect", strerror(errno));
		return;
	}
	(void) setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	rc = connect(sock, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	conn->sock = sock;
	ws.set_dirty = true;
	if (rc == 0)
	{
		SbConnStart(conn, sock, conn->remote_addr);
		return;
	}
	if (errno != EINPROGRESS)
	{
		SbConnClose(conn, "could not connect", strerror(errno));
		return;
	}
	conn->state = SB_CONN_CONNECTING;
	conn->deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												 sb_handshake_timeout_ms);
}

static void
finish_connect(SbConn *conn)
{
	int			err = 0;
	socklen_t	len = sizeof(err);

	if (getsockopt(conn->sock, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err != 0)
	{
		SbConnClose(conn, "could not connect", strerror(err));
		return;
	}
	SbConnStart(conn, conn->sock, conn->remote_addr);
}

/* Whether a held peer still matches its row (else it is made anew) */
static bool
peer_matches(SbConn *conn, HeapTuple tup, TupleDesc desc)
{
	char	   *model = SPI_getvalue(tup, desc, 2);
	char	   *transport = SPI_getvalue(tup, desc, 3);
	bool		isnull;
	bool		send = DatumGetBool(SPI_getbinval(tup, desc, 7, &isnull));
	bool		receive = DatumGetBool(SPI_getbinval(tup, desc, 8, &isnull));

	if (strcmp(model, conn->model_name) != 0)
		return false;
	if (conn->transport == SB_TRANSPORT_LIBPQ)
	{
		char	   *conninfo = SPI_getvalue(tup, desc, 6);

		return strcmp(transport, "libpq") == 0 && conninfo &&
			SbLibpqConfiguredAs(conn, conninfo, send, receive);
	}
	return strcmp(transport, "stream") == 0 &&
		strcmp(SPI_getvalue(tup, desc, 4), conn->host) == 0 &&
		DatumGetInt32(SPI_getbinval(tup, desc, 5, &isnull)) == conn->port &&
		send == conn->send_enabled && receive == conn->receive_enabled;
}

/* A held peer for a row of scuttlebutt.peers, due to connect at once */
static SbConn *
make_peer(HeapTuple tup, TupleDesc desc, int32 id, int slot)
{
	SbConn	   *conn = SbConnCreate(ws.cxt, true);
	MemoryContext old = MemoryContextSwitchTo(conn->cxt);
	bool		isnull;

	conn->peer_id = id;
	conn->slot = slot;
	conn->model_name = SPI_getvalue(tup, desc, 2);
	conn->send_enabled = DatumGetBool(SPI_getbinval(tup, desc, 7, &isnull));
	conn->receive_enabled = DatumGetBool(SPI_getbinval(tup, desc, 8, &isnull));
	if (strcmp(SPI_getvalue(tup, desc, 3), "libpq") == 0)
		SbLibpqInit(conn, SPI_getvalue(tup, desc, 6));
	else
	{
		conn->host = SPI_getvalue(tup, desc, 4);
		conn->port = DatumGetInt32(SPI_getbinval(tup, desc, 5, &isnull));
		snprintf(conn->remote_addr, sizeof(conn->remote_addr), "%s:%d",
				 conn->host, conn->port);
		conn->deadline = 0;		/* connect now */
	}
	MemoryContextSwitchTo(old);
	return conn;
}

static int
find_peer(int32 id)
{
	for (int i = 0; i < SB_STATUS_SLOTS; i++)
		if (ws.conns[i] && ws.conns[i]->outgoing && ws.conns[i]->peer_id == id)
			return i;
	return -1;
}

/*
 * Reads scuttlebutt.peers: adds new peers, drops removed ones, and makes
 * anew those whose row changed (a fixed password, say).
 */
static void
reload_peers(void)
{
	int			n = 0;
	int32	   *ids = NULL;
	MemoryContext caller = CurrentMemoryContext;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "scuttlebutt: reading peers");

	ws.extension_ready = OidIsValid(get_extension_oid("scuttlebutt", true));
	if (ws.extension_ready)
	{
		SPI_connect();
		if (SPI_execute("SELECT id, model, transport, host, port, conninfo, send, receive"
						" FROM scuttlebutt.peers",
						true, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read scuttlebutt.peers");
		n = SPI_processed;
		ids = MemoryContextAlloc(ws.cxt, sizeof(int32) * Max(n, 1));
		for (int r = 0; r < n; r++)
		{
			HeapTuple	tup = SPI_tuptable->vals[r];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			int32		id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
			int			slot = find_peer(id);

			ids[r] = id;
			if (slot >= 0 && !peer_matches(ws.conns[slot], tup, desc))
			{
				drop_conn(slot);
				slot = -1;
			}
			if (slot < 0 && (slot = free_slot()) >= 0)
			{
				ws.conns[slot] = make_peer(tup, desc, id, slot);
				ws.set_dirty = true;
			}
		}
		SPI_finish();
	}
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextSwitchTo(caller);

	/* peers no longer in the table */
	for (int i = 0; i < SB_STATUS_SLOTS; i++)
	{
		SbConn	   *conn = ws.conns[i];
		bool		listed = false;

		if (conn == NULL || !conn->outgoing)
			continue;
		for (int r = 0; r < n && !listed; r++)
			listed = ids[r] == conn->peer_id;
		if (!listed)
			drop_conn(i);
	}
	if (ids)
		pfree(ids);
}

/* ---- status ---- */

static void
publish_status(void)
{
	LWLockAcquire(sb_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < SB_STATUS_SLOTS; i++)
	{
		SbConnStatus *st = &sb_shared->conns[i];
		SbConn	   *c = ws.conns[i];

		if (c == NULL)
		{
			st->in_use = false;
			continue;
		}
		st->in_use = true;
		st->peer_id = c->peer_id;
		st->direction = c->outgoing ? 'o' : 'i';
		strlcpy(st->transport, c->transport == SB_TRANSPORT_LIBPQ ? "libpq" : "stream",
				sizeof(st->transport));
		strlcpy(st->model, c->model_name ? c->model_name : "", sizeof(st->model));
		strlcpy(st->remote_addr, c->remote_addr, sizeof(st->remote_addr));
		strlcpy(st->remote_id, c->remote_id ? c->remote_id : "", sizeof(st->remote_id));
		strlcpy(st->state, SbConnStateName(c->state), sizeof(st->state));
		st->synced_at = c->synced_at;
		st->last_activity = c->last_activity;
		st->sent = c->sent;
		st->received = c->received;
		st->rejected = c->rejected;
		st->bytes_in = c->bytes_in;
		st->bytes_out = c->bytes_out;
		strlcpy(st->last_error, c->last_error, sizeof(st->last_error));
		st->caught_up = c->state == SB_CONN_LIVE && c->npending == 0 &&
			!SbConnWantsWrite(c) &&
			(!c->send_enabled || (c->caught_up && c->commits_seen == ws.commits)) &&
			(c->transport != SB_TRANSPORT_LIBPQ || SbLibpqIdle(c));
		st->commits_seen = ws.commits;
	}
	LWLockRelease(sb_shared->lock);
	pg_atomic_write_u32(&sb_shared->connections, count_connections());
	ConditionVariableBroadcast(&sb_shared->status_cv);
}

/* ---- the loop ---- */

/* The sockets a connection waits on, and for what, per link */
static void
conn_wait_events(SbConn *c, pgsocket *socks, uint32 *events)
{
	if (c->transport == SB_TRANSPORT_LIBPQ)
	{
		SbLibpqWaitEvents(c, socks, events);
		return;
	}
	for (int l = 1; l < SB_LIBPQ_LINKS; l++)
	{
		socks[l] = PGINVALID_SOCKET;
		events[l] = 0;
	}
	socks[0] = c->sock;
	events[0] = c->sock == PGINVALID_SOCKET ? 0
		: c->state == SB_CONN_CONNECTING ? WL_SOCKET_CONNECTED
		: WL_SOCKET_READABLE | (SbConnWantsWrite(c) ? WL_SOCKET_WRITEABLE : 0);
}

/* Whether some connection waits on other sockets or events than the set holds */
static bool
wait_events_changed(void)
{
	for (int i = 0; i < SB_STATUS_SLOTS; i++)
	{
		pgsocket	socks[SB_LIBPQ_LINKS];
		uint32		events[SB_LIBPQ_LINKS];

		if (ws.conns[i] == NULL)
		{
			if (ws.wait_events[i][0] != 0 || ws.wait_events[i][1] != 0)
				return true;
			continue;
		}
		conn_wait_events(ws.conns[i], socks, events);
		for (int l = 0; l < SB_LIBPQ_LINKS; l++)
			if (socks[l] != ws.wait_socks[i][l] || events[l] != ws.wait_events[i][l])
				return true;
	}
	return false;
}

/* Event tags: listeners are negative, connection links 1 + 2 * slot + link */
static void
rebuild_wait_set(void)
{
	int			nsocks = 0;

	for (int i = 0; i < SB_STATUS_SLOTS; i++)
	{
		for (int l = 0; l < SB_LIBPQ_LINKS; l++)
		{
			ws.wait_socks[i][l] = PGINVALID_SOCKET;
			ws.wait_events[i][l] = 0;
		}
		if (ws.conns[i])
		{
			conn_wait_events(ws.conns[i], ws.wait_socks[i], ws.wait_events[i]);
			for (int l = 0; l < SB_LIBPQ_LINKS; l++)
				if (ws.wait_events[i][l] != 0)
					nsocks++;
		}
	}
	if (ws.set)
		FreeWaitEventSet(ws.set);
	ws.set = SbCreateWaitEventSet(ws.cxt, 2 + ws.nlisteners + nsocks);
	AddWaitEventToSet(ws.set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(ws.set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	for (int i = 0; i < ws.nlisteners; i++)
		AddWaitEventToSet(ws.set, WL_SOCKET_READABLE, ws.listeners[i], NULL,
						  (void *) (intptr_t) -(i + 1));
	for (int i = 0; i < SB_STATUS_SLOTS; i++)
		for (int l = 0; l < SB_LIBPQ_LINKS; l++)
			if (ws.wait_events[i][l] != 0)
				AddWaitEventToSet(ws.set, ws.wait_events[i][l], ws.wait_socks[i][l], NULL,
								  (void *) (intptr_t) (1 + 2 * i + l));
	ws.set_dirty = false;
}

/* Milliseconds to the nearest deadline, -1 for none */
static long
next_timeout(void)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz next = 0;

	if (!ws.extension_ready)
		return 10000;			/* re-check for CREATE EXTENSION */
	for (int i = 0; i < SB_STATUS_SLOTS; i++)
	{
		SbConn	   *c = ws.conns[i];

		if (c == NULL)
			continue;
		/* history left to send, and the socket is not what holds it back */
		if (SbConnIsOpen(c) && c->send_enabled && !c->caught_up &&
			(c->state == SB_CONN_SYNCING || c->state == SB_CONN_LIVE) &&
			!SbConnWantsWrite(c))
			return 0;
		if (c->transport == SB_TRANSPORT_LIBPQ && c->state != SB_CONN_BACKOFF)
		{
			TimestampTz d = SbLibpqDeadline(c);

			if (d != 0 && (next == 0 || d < next))
				next = d;
		}
		else if (c->state == SB_CONN_BACKOFF || c->state == SB_CONN_CONNECTING ||
				 c->state == SB_CONN_HANDSHAKE)
			if (next == 0 || c->deadline < next)
				next = c->deadline;
	}
	if (next == 0)
		return -1;
	if (next <= now)
		return 0;
	return (long) ((next - now + 999) / 1000);
}

static void
handle_socket_event(WaitEvent *ev)
{
	intptr_t	tag = (intptr_t) ev->user_data;
	SbConn	   *c;

	if (tag < 0)
	{
		accept_connections(ws.listeners[-tag - 1]);
		return;
	}
	c = ws.conns[(tag - 1) / 2];
	if (c == NULL)
		return;
	if (c->transport == SB_TRANSPORT_LIBPQ)
	{
		SbLibpqHandleEvent(c, (tag - 1) % 2, ev->events);
		return;
	}
	if (c->sock != ev->fd)
		return;
	if (c->state == SB_CONN_CONNECTING)
	{
		finish_connect(c);
		ws.set_dirty = true;
		return;
	}
	if ((ev->events & WL_SOCKET_WRITEABLE) && !SbConnWrite(c))
	{
		ws.set_dirty = true;
		return;
	}
	if ((ev->events & WL_SOCKET_READABLE) && !SbConnRead(c))
		ws.set_dirty = true;
}

static void
enforce_deadlines(void)
{
	TimestampTz now = GetCurrentTimestamp();

	for (int i = 0; i < SB_STATUS_SLOTS; i++)
	{
		SbConn	   *c = ws.conns[i];

		if (c == NULL)
			continue;
		if (c->state == SB_CONN_BACKOFF && c->deadline <= now && ws.extension_ready &&
			count_connections() < sb_max_connections)
		{
			if (c->transport == SB_TRANSPORT_LIBPQ)
				SbLibpqStart(c);
			else
				start_connect(c);
		}
		else if (c->transport == SB_TRANSPORT_LIBPQ)
			SbLibpqCheckDeadlines(c, now);
		else if ((c->state == SB_CONN_HANDSHAKE || c->state == SB_CONN_CONNECTING) &&
				 c->deadline <= now)
		{
			SbConnClose(c, c->state == SB_CONN_CONNECTING ? "connect timeout" : "handshake timeout",
						psprintf("No header within scuttlebutt.handshake_timeout (%d ms).",
								 sb_handshake_timeout_ms));
			ws.set_dirty = true;
		}
	}
}

void
scuttlebutt_worker_main(Datum main_arg)
{
	WaitEvent	events[64];

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(sb_database, NULL, 0);
	pgstat_report_appname("scuttlebutt replication worker");

	/*
	 * In a lock cycle with a local writer, be the one that gives way: we
	 * check for deadlock first, so the cycle costs our transaction (the
	 * connection resumes from the clocks) rather than the application's.
	 */
	SetConfigOption("deadlock_timeout", "100ms", PGC_SUSET, PGC_S_SESSION);

	memset(&ws, 0, sizeof(ws));
	ws.cxt = AllocSetContextCreate(TopMemoryContext, "scuttlebutt worker",
								   ALLOCSET_DEFAULT_SIZES);
	ws.loop_cxt = AllocSetContextCreate(ws.cxt, "scuttlebutt worker loop",
										ALLOCSET_DEFAULT_SIZES);
	ws.conns = MemoryContextAllocZero(ws.cxt, sizeof(SbConn *) * SB_STATUS_SLOTS);
	ws.listen_port = -1;
	ws.wait_socks = MemoryContextAllocZero(ws.cxt, sizeof(*ws.wait_socks) * SB_STATUS_SLOTS);
	ws.wait_events = MemoryContextAllocZero(ws.cxt, sizeof(*ws.wait_events) * SB_STATUS_SLOTS);
	ws.set_dirty = true;

	LWLockAcquire(sb_shared->lock, LW_EXCLUSIVE);
	sb_shared->worker_pid = MyProcPid;
	sb_shared->worker_latch = MyLatch;
	LWLockRelease(sb_shared->lock);

	ereport(LOG, (errmsg("scuttlebutt replication worker started for database \"%s\"",
						 sb_database)));

	while (!ShutdownRequestPending)
	{
		int			nevents;
		bool		reload = false;

		MemoryContextSwitchTo(ws.loop_cxt);
		MemoryContextReset(ws.loop_cxt);

		if (RecoveryInProgress())
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 1000, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			continue;
		}

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			reload = true;
		}
		configure_listeners();
		if (reload || !ws.extension_ready ||
			pg_atomic_exchange_u32(&sb_shared->peers_changed, 0) != 0)
			reload_peers();

		if (ws.set_dirty || wait_events_changed())
			rebuild_wait_set();

		nevents = WaitEventSetWait(ws.set, next_timeout(), events, lengthof(events),
								   PG_WAIT_EXTENSION);
		for (int e = 0; e < nevents; e++)
		{
			if (events[e].events & WL_LATCH_SET)
				ResetLatch(MyLatch);
			else if (events[e].events & (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE))
				handle_socket_event(&events[e]);
		}
		CHECK_FOR_INTERRUPTS();
		if (pg_atomic_exchange_u32(&sb_shared->peers_changed, 0) != 0)
			reload_peers();

		/* apply what was read, then send what peers lack */
		for (int i = 0; i < SB_STATUS_SLOTS; i++)
			if (ws.conns[i] && SbConnIsOpen(ws.conns[i]) &&
				!SbConnApplyPending(ws.conns[i]))
				ws.set_dirty = true;
		ws.commits = pg_atomic_read_u64(&sb_shared->commits);
		for (int i = 0; i < SB_STATUS_SLOTS; i++)
		{
			SbConn	   *c = ws.conns[i];

			if (c && SbConnIsOpen(c) && (!SbConnPump(c, ws.commits) || !SbConnFlush(c)))
				ws.set_dirty = true;
		}

		enforce_deadlines();
		for (int i = 0; i < SB_STATUS_SLOTS; i++)
			if (ws.conns[i] && ws.conns[i]->state == SB_CONN_CLOSED)
				drop_conn(i);
		publish_status();
	}

	/* clean exit: close everything, forget the latch */
	for (int i = 0; i < SB_STATUS_SLOTS; i++)
		if (ws.conns[i])
			drop_conn(i);
	close_listeners();
	publish_status();
	LWLockAcquire(sb_shared->lock, LW_EXCLUSIVE);
	sb_shared->worker_pid = 0;
	sb_shared->worker_latch = NULL;
	LWLockRelease(sb_shared->lock);

	/*
	 * Exit status 1: the postmaster restarts us after bgw_restart_time, so a
	 * pg_terminate_backend() is a restart; at server shutdown nothing is
	 * restarted anyway.
	 */
	proc_exit(1);
}
