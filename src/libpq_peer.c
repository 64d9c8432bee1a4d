/*-------------------------------------------------------------------------
 *
 * libpq_peer.c
 *	  A peer that is another PostgreSQL server, reached through libpq.
 *
 * The same reconciliation as a stream, with the extension's SQL functions
 * as the transport, so PostgreSQL's roles, pg_hba rules, passwords and TLS
 * guard it.  A peer is two libpq connections ("links"), both non-blocking
 * and waited on in the worker's one WaitEventSet:
 *
 *	- pull: scuttlebutt.poll(model, <what we hold>, page, wait) in a loop.
 *	  Each answer is a page of the remote's history newer than what we
 *	  hold; the next poll is sent as soon as a page arrives, so the remote
 *	  reads a page while we apply the last one.  When the remote has
 *	  nothing new, poll() waits there in shared memory for a commit, which
 *	  makes the live path prompt without NOTIFY or sleeping.
 *	- push: the stream's pump (connection.c) fills the output buffer with
 *	  the local history the remote's clock lacks, and each buffer is sent
 *	  as one scuttlebutt._push(model, lines), import() that also takes our
 *	  header: when updates the remote lacked were superseded here before
 *	  the pump read them, the pump ends a pass with our clock, read with
 *	  the pages it sent, and the remote's clock rises to it.  A remote role
 *	  that may not write is told by the remote (insufficient_privilege):
 *	  the session then only pulls, and last_error says why.
 *
 * "What we hold" is this server's clock, read from the tables when a
 * commit happened since it was last read, raised by every update pulled:
 * what we pushed is thereby never pulled back, whatever its source.
 *
 * Each link starts with a handshake: session settings, then the model's
 * kind and the remote's header (its node id and clock, as a stream would
 * send it).  Any failure (connect, authentication, a missing extension or
 * model, an error, a stalled query past scuttlebutt.peer_timeout) closes
 * the session with the reason in last_error, and it is retried with
 * back-off.  libpq never blocks the worker: connections are made with
 * PQconnectStartParams/PQconnectPoll and queries are sent asynchronously
 * (host names are resolved when connecting, as libpq does: give hostaddr
 * to avoid a DNS lookup).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>

#include "libpq-fe.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "conninfo.h"
#include "guc.h"
#include "jstext.h"
#include "libpq_peer.h"
#include "model_store.h"
#include "shmem.h"

#define LINK_PULL 0
#define LINK_PUSH 1

/* Updates per poll: a page of the remote's history */
#define SB_POLL_PAGE 10000
/* How long a poll waits on the remote for a commit before it returns */
#define SB_POLL_WAIT_MS 5000

/* Reads of a link's socket per wake-up (a budget of some 2 MB) */
#define SB_LIBPQ_READS 64

#define SQLSTATE_INSUFFICIENT_PRIVILEGE "42501"

typedef enum SbLinkState
{
	LINK_OFF,					/* not connected */
	LINK_CONNECTING,			/* PQconnectPoll in progress */
	LINK_HANDSHAKE,				/* the handshake query in flight */
	LINK_READY,					/* connected, no query in flight */
	LINK_BUSY					/* a poll or an import in flight */
} SbLinkState;

typedef struct SbLink
{
	PGconn	   *pg;
	SbLinkState state;
	PostgresPollingStatusType polling;	/* while connecting */
	bool		flush_wanted;	/* libpq has output the socket did not take */
	TimestampTz deadline;		/* 0: none */
	int64		rows;			/* rows of the query's result so far */
	bool		header_seen;	/* poll: the answer ended with the remote's header */
} SbLink;

typedef struct SbLibpqPeer
{
	char	   *conninfo;
	bool		want_send;		/* as configured: a session may narrow them */
	bool		want_receive;
	SbLink		links[SB_LIBPQ_LINKS];
	SbRemoteClock held;			/* what this server holds, per source */
	uint64		held_commits;	/* commit count when held was last read */
	bool		pull_caught_up; /* the last poll answered less than a page */
	bool		pull_started;	/* the first poll was sent */
} SbLibpqPeer;

static const char *const link_names[SB_LIBPQ_LINKS] = {"pull", "push"};

void
SbLibpqInit(SbConn *conn, const char *conninfo)
{
	SbLibpqPeer *lp = MemoryContextAllocZero(conn->cxt, sizeof(SbLibpqPeer));
	char	   *address = SbConninfoAddress(conninfo);

	lp->conninfo = MemoryContextStrdup(conn->cxt, conninfo);
	lp->want_send = conn->send_enabled;
	lp->want_receive = conn->receive_enabled;
	conn->transport = SB_TRANSPORT_LIBPQ;
	conn->libpq = lp;
	strlcpy(conn->remote_addr, address ? address : "?", sizeof(conn->remote_addr));
	conn->state = SB_CONN_BACKOFF;
	conn->deadline = 0;			/* connect now */
}

bool
SbLibpqConfiguredAs(SbConn *conn, const char *conninfo, bool send, bool receive)
{
	SbLibpqPeer *lp = conn->libpq;

	return strcmp(lp->conninfo, conninfo) == 0 && lp->want_send == send &&
		lp->want_receive == receive;
}

/* ---- errors ---- */

/* libpq's message on one line: runs of white space become one space */
static char *
one_line(const char *msg)
{
	StringInfoData buf;
	bool		space = false;

	initStringInfo(&buf);
	for (const char *p = msg ? msg : ""; *p; p++)
	{
		if (*p == '\n' || *p == '\t' || *p == '\r' || *p == ' ')
		{
			space = buf.len > 0;
			continue;
		}
		if (space)
			appendStringInfoChar(&buf, ' ');
		space = false;
		appendStringInfoChar(&buf, *p);
	}
	return buf.data;
}

/* Closes the session over a link's connection-level failure */
static void
link_failed(SbConn *conn, int i, const char *reason)
{
	SbLink	   *l = &conn->libpq->links[i];
	char	   *detail = one_line(l->pg ? PQerrorMessage(l->pg) : NULL);

	SbConnClose(conn, reason,
				psprintf("%s connection: %s", link_names[i],
						 detail[0] ? detail : "no message from libpq"));
}

/* Closes the session over an error the remote reported for a query */
static void
query_failed(SbConn *conn, int i, PGresult *res)
{
	const char *sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	const char *reason = "remote error";

	if (sqlstate && conn->libpq->links[i].state == LINK_HANDSHAKE &&
		(strcmp(sqlstate, "3F000") == 0 || strcmp(sqlstate, "42P01") == 0 ||
		 strcmp(sqlstate, "42883") == 0))
		reason = "no scuttlebutt extension on the remote";
	SbConnClose(conn, reason,
				psprintf("%s connection: %s (SQLSTATE %s)", link_names[i],
						 one_line(primary ? primary : PQresultErrorMessage(res)),
						 sqlstate ? sqlstate : "?"));
}

/* ---- connecting ---- */

void
SbLibpqDisconnect(SbConn *conn)
{
	SbLibpqPeer *lp = conn->libpq;

	for (int i = 0; i < SB_LIBPQ_LINKS; i++)
	{
		SbLink	   *l = &lp->links[i];

		if (l->pg)
			PQfinish(l->pg);
		memset(l, 0, sizeof(*l));
		l->state = LINK_OFF;
	}
}

static void
link_connect(SbConn *conn, int i)
{
	SbLink	   *l = &conn->libpq->links[i];
	const char *keywords[] = {"fallback_application_name", "dbname", "client_encoding", NULL};
	const char *values[4];

	/* later keywords win: the conninfo may name the application, not the encoding */
	values[0] = i == LINK_PULL ? "scuttlebutt pull" : "scuttlebutt push";
	values[1] = conn->libpq->conninfo;
	values[2] = "UTF8";
	values[3] = NULL;
	l->pg = PQconnectStartParams(keywords, values, 1);
	if (l->pg == NULL)
	{
		SbConnClose(conn, "could not connect", "out of memory in libpq");
		return;
	}
	if (PQstatus(l->pg) == CONNECTION_BAD)
	{
		link_failed(conn, i, "could not connect");
		return;
	}
	l->state = LINK_CONNECTING;
	l->polling = PGRES_POLLING_WRITING;
	l->deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), sb_handshake_timeout_ms);
}

typedef struct LookupArg
{
	bool		found;
} LookupArg;

static void
lookup_txn(SbConn *conn, void *arg)
{
	((LookupArg *) arg)->found = SbModelTryLookup(conn->model_name, &conn->model);
}

void
SbLibpqStart(SbConn *conn)
{
	SbLibpqPeer *lp = conn->libpq;
	LookupArg	la = {false};

	conn->send_enabled = lp->want_send;
	conn->receive_enabled = lp->want_receive;
	SbConnBeginSession(conn);
	conn->sync_sent = !conn->send_enabled;
	memset(&lp->held, 0, sizeof(lp->held));	/* its memory went with the session */
	lp->held_commits = 0;
	lp->pull_caught_up = false;
	lp->pull_started = false;

	/* the model may have been dropped and made again: look it up anew */
	if (!SbConnTransaction(conn, "scuttlebutt: looking up a model", lookup_txn, &la))
		return;
	if (!la.found)
	{
		SbConnClose(conn, "unknown model",
					psprintf("There is no scuttlebutt model \"%s\" here.", conn->model_name));
		return;
	}
	conn->model_known = true;
	/* libpq's parse errors quote the string, password and all: say less */
	if (SbConninfoAddress(lp->conninfo) == NULL)
	{
		SbConnClose(conn, "invalid connection string",
					psprintf("The conninfo of peer %d is not a libpq connection string.",
							 conn->peer_id));
		return;
	}
	conn->state = SB_CONN_CONNECTING;
	if (conn->receive_enabled)
		link_connect(conn, LINK_PULL);
	if (conn->send_enabled && SbConnIsOpen(conn))
		link_connect(conn, LINK_PUSH);
	if (!conn->send_enabled && !conn->receive_enabled && SbConnIsOpen(conn))
		SbConnClose(conn, "nothing to do", "The peer neither sends nor receives.");
}

/*
 * Sends a query: with parameters, or (params NULL) as a simple query that
 * may hold several statements.  The link is then in state, with a
 * deadline timeout_ms away.  False if the session was closed.
 */
static bool
send_query(SbConn *conn, int i, const char *sql, int nparams, const char *const *params,
		   SbLinkState state, int timeout_ms)
{
	SbLink	   *l = &conn->libpq->links[i];
	int			rc;

	if (!(params ? PQsendQueryParams(l->pg, sql, nparams, NULL, params, NULL, NULL, 0)
		  : PQsendQuery(l->pg, sql)) ||
		(rc = PQflush(l->pg)) < 0)
	{
		link_failed(conn, i, "connection lost");
		return false;
	}
	l->flush_wanted = rc == 1;
	l->rows = 0;
	l->header_seen = false;
	l->state = state;
	l->deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	return true;
}

/*
 * The handshake: read committed (poll() waits for commits it then sees),
 * no statement timeout (poll() waits on purpose; peer_timeout guards
 * stalls), then the model's kind and the remote's header.
 */
static void
send_handshake(SbConn *conn, int i)
{
	SbLink	   *l = &conn->libpq->links[i];
	char	   *name = PQescapeLiteral(l->pg, conn->model_name, strlen(conn->model_name));
	char	   *sql;

	if (name == NULL)
	{
		link_failed(conn, i, "connection lost");
		return;
	}
	sql = psprintf("SET default_transaction_isolation TO 'read committed';"
				   " SET statement_timeout TO 0;"
				   " SELECT m.kind, scuttlebutt._export_header(scuttlebutt._model_id(m.name))"
				   " FROM scuttlebutt.models m WHERE m.name = %s", name);
	PQfreemem(name);
	(void) send_query(conn, i, sql, 0, NULL, LINK_HANDSHAKE, sb_handshake_timeout_ms);
}

static void
connect_step(SbConn *conn, int i)
{
	SbLink	   *l = &conn->libpq->links[i];

	l->polling = PQconnectPoll(l->pg);
	switch (l->polling)
	{
		case PGRES_POLLING_FAILED:
			link_failed(conn, i, "could not connect");
			return;
		case PGRES_POLLING_OK:
			if (PQsetnonblocking(l->pg, 1) != 0)
			{
				link_failed(conn, i, "could not connect");
				return;
			}
			send_handshake(conn, i);
			if (SbConnIsOpen(conn) && conn->state == SB_CONN_CONNECTING)
				conn->state = SB_CONN_HANDSHAKE;
			return;
		default:
			return;				/* reading or writing: wait for the socket */
	}
}

/* ---- pulling ---- */

static void
read_clock_txn(SbConn *conn, void *arg)
{
	SbLibpqPeer *lp = conn->libpq;
	SbClockEntry *clock;
	int			n = SbReadClock(&conn->model, &clock, false);

	for (int i = 0; i < n; i++)
		SbRemoteClockRaise(&lp->held, conn->session_cxt, clock[i].source, clock[i].ts);
}

/* Asks the remote for what it holds beyond what we hold */
static void
send_poll(SbConn *conn)
{
	SbLibpqPeer *lp = conn->libpq;
	uint64		commits = SbModelCommitCount(conn->model.id);
	StringInfoData clock;
	char		page[16];
	char		wait[16];
	const char *params[4];

	/* what committed to the model here since the last look (ours, relayed) */
	if (commits != lp->held_commits || lp->held.n == 0)
	{
		if (!SbConnTransaction(conn, "scuttlebutt: reading a clock", read_clock_txn, NULL))
			return;
		lp->held_commits = commits;
	}
	initStringInfo(&clock);
	SbAppendClockJson(&clock, lp->held.entries, lp->held.n);
	snprintf(page, sizeof(page), "%d", SB_POLL_PAGE);
	/* behind (the last answer was a full page): an empty answer must come at once */
	snprintf(wait, sizeof(wait), "%d", lp->pull_caught_up ? SB_POLL_WAIT_MS : 0);
	params[0] = conn->model_name;
	params[1] = clock.data;
	params[2] = page;
	params[3] = wait;
	(void) send_query(conn, LINK_PULL, "SELECT scuttlebutt.poll($1, $2::jsonb, $3, $4)",
					  4, params, LINK_BUSY, SB_POLL_WAIT_MS + sb_peer_timeout_ms);
	conn->bytes_out += clock.len;
}

/* A page of the remote's history: each update as a received line */
static bool
take_poll_rows(SbConn *conn, PGresult *res)
{
	SbLibpqPeer *lp = conn->libpq;
	int			n = PQntuples(res);

	for (int r = 0; r < n; r++)
	{
		const char *line = PQgetvalue(res, r, 0);
		int			len = PQgetlength(res, r, 0);
		SbMessage	msg;
		SbMessageError err;
		bool		ok = SbParseMessage(line, len, &msg, &err);

		conn->bytes_in += len;
		/* the remote's clock, after all it held beyond ours: ours rises to it */
		if (ok && msg.type == SB_MSG_HEADER)
		{
			lp->links[LINK_PULL].header_seen = true;
			for (int c = 0; c < msg.nclock; c++)
				SbRemoteClockRaise(&lp->held, conn->session_cxt,
								   msg.clock[c].source, msg.clock[c].ts);
			SbConnQueueClock(conn, msg.clock, msg.nclock);
			continue;
		}
		/* held rises past every update read, even one we reject */
		lp->links[LINK_PULL].rows++;
		if (ok && msg.type == SB_MSG_UPDATE)
			SbRemoteClockRaise(&lp->held, conn->session_cxt, msg.source, msg.ts);
		if (!SbConnReceive(conn, &msg, ok, &err))
			return false;
	}
	conn->last_activity = GetCurrentTimestamp();
	return true;
}

static void
poll_done(SbConn *conn)
{
	SbLibpqPeer *lp = conn->libpq;

	lp->pull_caught_up = lp->links[LINK_PULL].rows < SB_POLL_PAGE;
	if (lp->pull_caught_up && !conn->sync_received)
	{
		conn->sync_received = true;
		SbConnNoteSynced(conn);
	}
	/* at once: the remote reads the next page while we apply this one */
	send_poll(conn);
}

/* ---- pushing ---- */

static void
send_import(SbConn *conn)
{
	const char *params[2];
	int			len = conn->out.len - conn->out_off;

	params[0] = conn->model_name;
	params[1] = conn->out.data + conn->out_off;
	if (!send_query(conn, LINK_PUSH, "SELECT scuttlebutt._push($1, $2)", 2, params,
					LINK_BUSY, sb_peer_timeout_ms))
		return;
	conn->bytes_out += len;
	conn->last_activity = GetCurrentTimestamp();
	resetStringInfo(&conn->out);
	conn->out_off = 0;
}

/*
 * The remote role may not write the model: this session only pulls.  The
 * next session (after a reconnect) tries again.
 */
static void
push_refused(SbConn *conn, PGresult *res)
{
	SbLink	   *l = &conn->libpq->links[LINK_PUSH];
	const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

	ereport(WARNING,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("scuttlebutt: %s refused updates of model \"%s\": %s",
					conn->remote_addr, conn->model_name, primary ? primary : "?"),
			 errdetail("Until the next reconnect this peer only pulls."),
			 errhint("Grant the remote role the right to write the scuttlebutt tables, or add the peer with send => false.")));
	snprintf(conn->last_error, sizeof(conn->last_error),
			 "push refused by the remote: %s (SQLSTATE %s)",
			 primary ? primary : "?", SQLSTATE_INSUFFICIENT_PRIVILEGE);
	PQfinish(l->pg);
	memset(l, 0, sizeof(*l));
	l->state = LINK_OFF;
	resetStringInfo(&conn->out);
	conn->out_off = 0;
	conn->send_enabled = false;
	conn->sync_sent = true;
	conn->caught_up = true;
	SbConnNoteSynced(conn);
}

/* ---- results ---- */

static void
no_model_on_remote(SbConn *conn)
{
	SbConnClose(conn, "no such model on the remote",
				psprintf("The remote has no scuttlebutt model \"%s\"; create it there with scuttlebutt.create_model().",
						 conn->model_name));
}

/* The remote's kind and header: the session can start on this link */
static bool
take_handshake_row(SbConn *conn, int i, PGresult *res)
{
	const char *kind;
	const char *header;
	SbMessage	msg;
	SbMessageError err;

	if (PQntuples(res) != 1 || PQnfields(res) != 2)
	{
		no_model_on_remote(conn);
		return false;
	}
	kind = PQgetvalue(res, 0, 0);
	if (strcmp(kind, SbKindName(conn->model.kind)) != 0)
	{
		SbConnClose(conn, "model kinds differ",
					psprintf("Model \"%s\" is a %s here and a %s on the remote.",
							 conn->model_name, SbKindName(conn->model.kind), kind));
		return false;
	}
	header = PQgetvalue(res, 0, 1);
	if (!SbParseMessage(header, PQgetlength(res, 0, 1), &msg, &err) ||
		msg.type != SB_MSG_HEADER)
	{
		SbConnClose(conn, "invalid header", err.message ? err.message : header);
		return false;
	}
	if (msg.id && conn->remote_id == NULL)
		conn->remote_id = MemoryContextStrdup(conn->session_cxt, msg.id);
	/* the push link sends what the remote's clock lacks */
	if (i == LINK_PUSH)
	{
		for (int c = 0; c < msg.nclock; c++)
			SbRemoteClockRaise(&conn->remote, conn->session_cxt,
							   msg.clock[c].source, msg.clock[c].ts);
	}
	conn->libpq->links[i].rows = 1;
	return true;
}

/* Every enabled link past its handshake: the session syncs */
static void
note_link_ready(SbConn *conn)
{
	SbLibpqPeer *lp = conn->libpq;

	for (int i = 0; i < SB_LIBPQ_LINKS; i++)
		if (lp->links[i].state == LINK_CONNECTING || lp->links[i].state == LINK_HANDSHAKE)
			return;
	if (conn->state == SB_CONN_CONNECTING || conn->state == SB_CONN_HANDSHAKE)
	{
		conn->state = SB_CONN_SYNCING;
		conn->header_received = conn->header_sent = true;	/* the pump may run */
		conn->caught_up = false;
		SbConnNoteSynced(conn);
	}
}

/* A query's results have all come: what the link does next */
static void
query_done(SbConn *conn, int i)
{
	SbLink	   *l = &conn->libpq->links[i];
	SbLinkState was = l->state;

	l->state = LINK_READY;
	l->deadline = 0;
	if (was == LINK_HANDSHAKE)
	{
		if (l->rows == 0)
		{
			no_model_on_remote(conn);
			return;
		}
		note_link_ready(conn);
		(void) SbLibpqFlush(conn);
		return;
	}
	if (i == LINK_PULL)
		poll_done(conn);
}

/* Takes one result of the query in flight; false if the session closed */
static bool
take_result(SbConn *conn, int i, PGresult *res)
{
	SbLink	   *l = &conn->libpq->links[i];
	ExecStatusType status = PQresultStatus(res);

	if (status == PGRES_FATAL_ERROR)
	{
		const char *sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		if (i == LINK_PUSH && l->state == LINK_BUSY && sqlstate &&
			strcmp(sqlstate, SQLSTATE_INSUFFICIENT_PRIVILEGE) == 0)
		{
			push_refused(conn, res);
			return true;
		}
		query_failed(conn, i, res);
		return false;
	}
	if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK)
	{
		SbConnClose(conn, "remote error",
					psprintf("%s connection: unexpected result %s", link_names[i],
							 PQresStatus(status)));
		return false;
	}
	if (status == PGRES_TUPLES_OK)
	{
		if (l->state == LINK_HANDSHAKE)
			return take_handshake_row(conn, i, res);
		if (i == LINK_PULL)
			return take_poll_rows(conn, res);
	}
	return true;
}

/* Whether the socket has bytes to read right now */
static bool
socket_has_data(PGconn *pg)
{
	char		c;

	return recv(PQsocket(pg), &c, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
}

/*
 * Reads what the link's socket has and takes every complete result.  A
 * page arrives in many reads (libpq takes about 32 kB per call): read on
 * while bytes are waiting, up to a budget, rather than go round the
 * worker's loop for each.
 */
static void
read_results(SbConn *conn, int i)
{
	SbLink	   *l = &conn->libpq->links[i];
	int			reads = 0;

	do
	{
		if (!PQconsumeInput(l->pg))
		{
			link_failed(conn, i, "connection lost");
			return;
		}
	} while (++reads < SB_LIBPQ_READS && PQisBusy(l->pg) && socket_has_data(l->pg));

	while (l->state == LINK_HANDSHAKE || l->state == LINK_BUSY)
	{
		PGresult   *res;
		bool		ok;

		if (PQisBusy(l->pg))
			return;
		res = PQgetResult(l->pg);
		if (res == NULL)
		{
			query_done(conn, i);
			return;				/* a new query may be in flight: its results come later */
		}
		ok = take_result(conn, i, res);
		PQclear(res);
		if (!ok || l->pg == NULL)
			return;				/* the session (or this link) was closed */
	}
	/* idle: a connection the remote closed shows here */
	if (PQstatus(l->pg) == CONNECTION_BAD)
		link_failed(conn, i, "connection lost");
}

/* ---- the worker's calls ---- */

void
SbLibpqWaitEvents(SbConn *conn, pgsocket *socks, uint32 *events)
{
	SbLibpqPeer *lp = conn->libpq;

	for (int i = 0; i < SB_LIBPQ_LINKS; i++)
	{
		SbLink	   *l = &lp->links[i];

		socks[i] = PGINVALID_SOCKET;
		events[i] = 0;
		if (l->pg == NULL || l->state == LINK_OFF || PQsocket(l->pg) < 0)
			continue;
		socks[i] = PQsocket(l->pg);
		if (l->state == LINK_CONNECTING)
			events[i] = l->polling == PGRES_POLLING_READING ? WL_SOCKET_READABLE
				: WL_SOCKET_WRITEABLE;
		else
			events[i] = WL_SOCKET_READABLE | (l->flush_wanted ? WL_SOCKET_WRITEABLE : 0);
	}
}

void
SbLibpqHandleEvent(SbConn *conn, int i, uint32 events)
{
	SbLink	   *l = &conn->libpq->links[i];

	if (l->pg == NULL || l->state == LINK_OFF)
		return;
	if (l->state == LINK_CONNECTING)
	{
		connect_step(conn, i);
		return;
	}
	if ((events & WL_SOCKET_WRITEABLE) && l->flush_wanted)
	{
		int			rc = PQflush(l->pg);

		if (rc < 0)
		{
			link_failed(conn, i, "connection lost");
			return;
		}
		l->flush_wanted = rc == 1;
	}
	if (events & WL_SOCKET_READABLE)
		read_results(conn, i);
}

/*
 * Whether the first push is still under way.  A session pushes all the
 * remote lacks before it pulls: what it pushes is then read before any
 * pulled update can supersede it, so the remote's clock gets all of ours;
 * the pull, for its part, ends with the remote's clock (see poll()).
 */
static bool
first_push_pending(SbConn *conn)
{
	SbLink	   *push = &conn->libpq->links[LINK_PUSH];

	return conn->send_enabled && SbConnIsOpen(conn) &&
		!(conn->sync_sent && push->state == LINK_READY && conn->out_off == conn->out.len);
}

bool
SbLibpqFlush(SbConn *conn)
{
	SbLibpqPeer *lp = conn->libpq;
	SbLink	   *push = &lp->links[LINK_PUSH];

	if (SbConnIsOpen(conn) && push->state == LINK_READY && conn->out_off < conn->out.len)
		send_import(conn);
	/* the first poll (later ones follow each answer) */
	if (SbConnIsOpen(conn) && lp->links[LINK_PULL].state == LINK_READY &&
		!lp->pull_started && !first_push_pending(conn))
	{
		lp->pull_started = true;
		send_poll(conn);
	}
	return SbConnIsOpen(conn);
}

TimestampTz
SbLibpqDeadline(SbConn *conn)
{
	TimestampTz next = 0;

	for (int i = 0; i < SB_LIBPQ_LINKS; i++)
	{
		TimestampTz d = conn->libpq->links[i].deadline;

		if (d != 0 && (next == 0 || d < next))
			next = d;
	}
	return next;
}

void
SbLibpqCheckDeadlines(SbConn *conn, TimestampTz now)
{
	for (int i = 0; i < SB_LIBPQ_LINKS && SbConnIsOpen(conn); i++)
	{
		SbLink	   *l = &conn->libpq->links[i];

		if (l->deadline == 0 || l->deadline > now)
			continue;
		if (l->state == LINK_CONNECTING || l->state == LINK_HANDSHAKE)
			SbConnClose(conn, "connect timeout",
						psprintf("%s connection: not connected within scuttlebutt.handshake_timeout (%d ms).",
								 link_names[i], sb_handshake_timeout_ms));
		else
			SbConnClose(conn, "query timeout",
						psprintf("%s connection: no answer within scuttlebutt.peer_timeout (%d ms) beyond the query's wait.",
								 link_names[i], sb_peer_timeout_ms));
	}
}

bool
SbLibpqIdle(SbConn *conn)
{
	SbLibpqPeer *lp = conn->libpq;

	return lp->links[LINK_PUSH].state != LINK_BUSY &&
		(lp->links[LINK_PULL].state == LINK_OFF || lp->pull_caught_up);
}
