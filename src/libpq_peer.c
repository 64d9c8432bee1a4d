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
 *	- pull: scuttlebutt.poll(model, <what we hold>, page) in a loop.
 *	  Each answer is a page of the remote's history newer than what we
 *	  hold; the next poll is sent as soon as a page arrives, so the remote
 *	  reads a page while we apply the last one.  Once caught up, CALL
 *	  scuttlebutt.wait_for_commit(model, <what we hold>, wait, page) waits
 *	  there in shared memory for a commit, outside any transaction, which
 *	  makes the live path prompt without NOTIFY or sleeping, and answers
 *	  with the page a poll would then return: one round trip per commit.
 *	  Our pushes are numbered, and each wait says how many came before it
 *	  (their updates are in what we hold): a wait that a later push may
 *	  have reached answers no page, lest it send the pushed updates back,
 *	  and we poll with what we hold by then.  A poll cannot tell our
 *	  pushes apart: none is sent while a poll is in flight.
 *	- push: the session's pump (session.c) fills its outbox with the local
 *	  history the remote's clock lacks, and each outbox is sent as one
 *	  scuttlebutt._push(model, lines, ...), import() that also takes our
 *	  header: when updates the remote lacked were superseded here before
 *	  the pump read them, the pump ends a pass with our clock, read with
 *	  the pages it sent, and the remote's clock rises to it.  The statement
 *	  is prepared once per connection.  A remote role that may not write
 *	  is told by the remote (insufficient_privilege): the session then
 *	  only pulls, and last_error says why.
 *
 * "What we hold" is this server's clock, read from the tables when a
 * commit happened or we pushed since it was last read, raised by every
 * update pulled: what we pushed is thereby never pulled back, whatever
 * its source.
 *
 * Each link starts with a handshake: session settings, then the model's
 * kind and the remote's header (its node id and clock, as a stream would
 * send it).  Both links must meet one node: a remote that answers as
 * another (its extension created again: the second handshake, a pull
 * page's header, or _push(), told the node id the handshakes met) closes
 * the session, and the next one starts afresh.  Any failure (connect,
 * authentication, a missing extension or model, an error, a stalled
 * query past scuttlebutt.peer_timeout) closes the session with the reason
 * in last_error, and it is retried with back-off.  libpq never blocks
 * the worker: connections are made with PQconnectStartParams/
 * PQconnectPoll and queries are sent asynchronously (host names are
 * resolved when connecting, as libpq does: give hostaddr to avoid a DNS
 * lookup).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>

#include "common/pg_prng.h"
#include "libpq-fe.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "conninfo.h"
#include "guc.h"
#include "jstext.h"
#include "model_store.h"
#include "privileges.h"
#include "shmem.h"
#include "transport.h"

#define LINK_PULL 0
#define LINK_PUSH 1
/* A libpq peer has two connections ("links"): one pulls, one pushes */
#define SB_LIBPQ_LINKS 2
StaticAssertDecl(SB_LIBPQ_LINKS <= SB_SESSION_SOCKETS,
				 "a session waits on every link of a libpq peer");

/* Updates per poll: a page of the remote's history */
#define SB_POLL_PAGE 10000
/* How long wait_for_commit() waits on the remote before it returns */
#define SB_POLL_WAIT_MS 5000

/* Reads of a link's socket per wake-up (a budget of some 2 MB) */
#define SB_LIBPQ_READS 64

#define SQLSTATE_INSUFFICIENT_PRIVILEGE "42501"

/*
 * The push link's statement, prepared by its handshake: a live push is
 * one per commit, and the remote would otherwise parse and plan it each
 * time before it applies the update.  (The pull's wait, a CALL, stays
 * unnamed: a prepared CALL is not planned again when its procedure is
 * created anew, and its parse is done before the remote waits.)
 */
#define SB_PUSH_STATEMENT "scuttlebutt_push"
#define SB_PUSH_SQL "SELECT scuttlebutt._push($1, $2, $3, $4, $5)"
#define SB_PUSH_NPARAMS 5

#define SQLSTATE_CONNECTION_EXCEPTION "08000"

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
	bool		page_answered;	/* wait: the answer held a page (maybe empty) */
	bool		preparing;		/* push handshake: SB_PUSH_STATEMENT's preparation sent (stays set) */
} SbLink;

typedef struct SbLibpqPeer
{
	char	   *conninfo;
	bool		want_send;		/* as configured: a session may narrow them */
	bool		want_receive;
	Oid			owner;			/* the role of the peer row */
	bool		password_required;	/* false: waived by a superuser */
	bool		password_checked;	/* this session: the password must be used */
	bool		wait_in_flight; /* the pull link waits for a commit */
	SbLink		links[SB_LIBPQ_LINKS];
	SbRemoteClock held;			/* what this server holds, per source */
	uint64		held_commits;	/* commit count when held was last read */
	uint32		held_pushes;	/* pushes_sent when held was last read */
	bool		pull_caught_up; /* the last poll answered all it had */
	bool		pull_started;	/* the first poll was sent */
	uint32		pusher;			/* this session's number, for the remote's waits */
	uint32		pushes_sent;	/* _push calls sent in this session */
} SbLibpqPeer;

static const char *const link_names[SB_LIBPQ_LINKS] = {"pull", "push"};

static bool libpq_flush(SbSession *s);
static void send_import(SbSession *s);

static inline SbLibpqPeer *
lp_of(SbSession *s)
{
	return (SbLibpqPeer *) s->transport;
}

static void
libpq_configure(SbSession *s, const SbPeerConfig *config)
{
	SbLibpqPeer *lp = MemoryContextAllocZero(s->cxt, sizeof(SbLibpqPeer));
	char	   *address = SbConninfoAddress(config->conninfo);

	lp->conninfo = MemoryContextStrdup(s->cxt, config->conninfo);
	lp->want_send = config->send;
	lp->want_receive = config->receive;
	lp->owner = config->owner;
	lp->password_required = config->password_required;
	s->transport = lp;
	strlcpy(s->remote_addr, address ? address : "?", sizeof(s->remote_addr));
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

/*
 * libpq quotes the first byte an address answered with when it is not a
 * PostgreSQL server ("received invalid response to SSL negotiation: S"):
 * last_error must not echo what another service sent, so it is masked.
 */
static void
mask_quoted_byte(char *msg)
{
	static const char *const before_byte[] = {"negotiation: ", "but received "};

	for (size_t i = 0; i < lengthof(before_byte); i++)
	{
		char	   *p = strstr(msg, before_byte[i]);

		if (p && p[strlen(before_byte[i])] != '\0')
			p[strlen(before_byte[i])] = '?';
	}
}

/* Closes the session over a link's connection-level failure */
static void
link_failed(SbSession *s, int i, SbCloseReason reason)
{
	SbLink	   *l = &lp_of(s)->links[i];
	char	   *detail = one_line(l->pg ? PQerrorMessage(l->pg) : NULL);

	mask_quoted_byte(detail);

	SbSessionClose(s, reason,
				   psprintf("%s connection: %s", link_names[i],
							detail[0] ? detail : "no message from libpq"));
}

/* Closes the session over an error the remote reported for a query */
static void
query_failed(SbSession *s, int i, PGresult *res)
{
	const char *sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	SbCloseReason reason = SB_CLOSE_REMOTE_ERROR;
	int			code = 0;

	/* (a failed prepare says what the remote lacks in its own words) */
	if (sqlstate && lp_of(s)->links[i].state == LINK_HANDSHAKE && !lp_of(s)->links[i].preparing &&
		(strcmp(sqlstate, "3F000") == 0 || strcmp(sqlstate, "42P01") == 0 ||
		 strcmp(sqlstate, "42883") == 0))
		reason = SB_CLOSE_NO_REMOTE_EXTENSION;
	else if (sqlstate && i == LINK_PUSH && lp_of(s)->links[i].state == LINK_BUSY &&
			 strcmp(sqlstate, SQLSTATE_CONNECTION_EXCEPTION) == 0)
		reason = SB_CLOSE_REMOTE_ID_CHANGED;	/* _push(): another node now */
	else if (sqlstate && strlen(sqlstate) == 5)
		code = MAKE_SQLSTATE(sqlstate[0], sqlstate[1], sqlstate[2], sqlstate[3],
							 sqlstate[4]);
	SbSessionCloseWithCode(s, reason, code,
						   psprintf("%s connection: %s (SQLSTATE %s)", link_names[i],
									one_line(primary ? primary : PQresultErrorMessage(res)),
									sqlstate ? sqlstate : "?"));
}

/* ---- connecting ---- */

/* Closes one link's connection */
static void
link_close(SbSession *s, SbLink *l)
{
	if (l->pg)
	{
		PQfinish(l->pg);
		s->sockets_changed = true;
	}
	memset(l, 0, sizeof(*l));
	l->state = LINK_OFF;
}

static void
libpq_disconnect(SbSession *s)
{
	for (int i = 0; i < SB_LIBPQ_LINKS; i++)
		link_close(s, &lp_of(s)->links[i]);
}

/*
 * What the remote says besides results (WARNING, NOTICE): logged as the
 * remote's; a push its signed model refused in part (SQLSTATE 28000 from
 * _push) is counted in this session's rejected updates
 */
static void
remote_notice(void *arg, const PGresult *res)
{
	SbSession  *s = arg;
	const char *sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	const char *message = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	const char *refused;
	long long	n = 0;

	if (message == NULL)
		return;
	refused = strstr(message, "\" refused ");
	if (sqlstate != NULL && strcmp(sqlstate, "28000") == 0 && refused != NULL &&
		sscanf(refused, "\" refused %lld pushed", &n) == 1 && n > 0)
	{
		const char *detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
		char	   *why = psprintf("the remote refused pushed updates: %s",
								   detail ? detail : message);

		for (long long k = 0; k < n; k++)
			SbSessionReject(s, why);
		pfree(why);
		return;
	}
	ereport(LOG,
			(errmsg("scuttlebutt: remote %s says: %s", s->remote_addr, message)));
}

static void
link_connect(SbSession *s, int i)
{
	SbLink	   *l = &lp_of(s)->links[i];
	const char *keywords[] = {"fallback_application_name", "dbname", "client_encoding", NULL};
	const char *values[4];

	/* later keywords win: the conninfo may name the application, not the encoding */
	values[0] = i == LINK_PULL ? "scuttlebutt pull" : "scuttlebutt push";
	values[1] = lp_of(s)->conninfo;
	values[2] = "UTF8";
	values[3] = NULL;
	l->pg = PQconnectStartParams(keywords, values, 1);
	if (l->pg == NULL)
	{
		SbSessionClose(s, SB_CLOSE_CONNECT_FAILED, "out of memory in libpq");
		return;
	}
	s->sockets_changed = true;
	if (PQstatus(l->pg) == CONNECTION_BAD)
	{
		link_failed(s, i, SB_CLOSE_CONNECT_FAILED);
		return;
	}
	PQsetNoticeReceiver(l->pg, remote_notice, s);
	l->state = LINK_CONNECTING;
	l->polling = PGRES_POLLING_WRITING;
	l->deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), sb_handshake_timeout_ms);
}

static void
owner_superuser_txn(SbSession *s, void *arg)
{
	*(bool *) arg = superuser_arg(lp_of(s)->owner);
}

/*
 * The worker connects as the server itself: a peer whose owner is not
 * (or no longer) superuser gets dblink's rules, as add_peer() checked
 * them: a password in the conninfo and no option that reads the server's
 * files, and (connect_step) the remote must have asked for that password.
 */
static bool
check_owner_rules(SbSession *s)
{
	SbLibpqPeer *lp = lp_of(s);
	bool		owner_superuser = false;
	const char *problem;

	lp->password_checked = false;
	if (!lp->password_required)
		return true;
	if (!SbSessionTransaction(s, "scuttlebutt: checking a peer's owner",
							  owner_superuser_txn, &owner_superuser))
		return false;
	if (owner_superuser)
		return true;
	problem = SbConninfoUnprivilegedProblem(lp->conninfo);
	if (problem)
	{
		SbSessionClose(s, SB_CLOSE_PASSWORD_REQUIRED,
					   psprintf("Peer %d belongs to a role that is not superuser: %s.",
								s->peer_id, problem));
		return false;
	}
	lp->password_checked = true;
	return true;
}

static void
libpq_start(SbSession *s)
{
	SbLibpqPeer *lp = lp_of(s);

	/* a refused push narrowed the last session: this one tries again */
	s->send_enabled = lp->want_send;
	s->receive_enabled = lp->want_receive;
	SbSessionBegin(s);
	s->state = SB_SESSION_CONNECTING;
	memset(&lp->held, 0, sizeof(lp->held));	/* its memory went with the session */
	lp->held_commits = 0;
	lp->held_pushes = 0;
	lp->pull_caught_up = false;
	lp->pull_started = false;
	lp->wait_in_flight = false;
	lp->pusher = 1 + pg_prng_uint32(&pg_global_prng_state) % PG_INT32_MAX;
	lp->pushes_sent = 0;

	if (!SbSessionResolveModel(s))
		return;
	/* libpq's parse errors quote the string, password and all: say less */
	if (SbConninfoAddress(lp->conninfo) == NULL)
	{
		SbSessionClose(s, SB_CLOSE_INVALID_CONNINFO,
					   psprintf("The conninfo of peer %d is not a libpq connection string.",
								s->peer_id));
		return;
	}
	if (!s->send_enabled && !s->receive_enabled)
	{
		SbSessionClose(s, SB_CLOSE_NOTHING_TO_DO, "The peer neither sends nor receives.");
		return;
	}
	if (!check_owner_rules(s))
		return;
	if (s->receive_enabled)
		link_connect(s, LINK_PULL);
	if (s->send_enabled && SbSessionIsOpen(s))
		link_connect(s, LINK_PUSH);
}

/*
 * The link is in state once libpq took its query (sent), with a deadline
 * timeout_ms away.  False if the session was closed.
 */
static bool
query_sent(SbSession *s, int i, bool sent, SbLinkState state, int timeout_ms)
{
	SbLink	   *l = &lp_of(s)->links[i];
	int			rc;

	if (!sent || (rc = PQflush(l->pg)) < 0)
	{
		link_failed(s, i, SB_CLOSE_CONNECTION_LOST);
		return false;
	}
	l->flush_wanted = rc == 1;
	l->rows = 0;
	l->header_seen = false;
	l->page_answered = false;
	l->state = state;
	l->deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	return true;
}

/*
 * Sends a query: with parameters, or (params NULL) as a simple query that
 * may hold several statements
 */
static bool
send_query(SbSession *s, int i, const char *sql, int nparams, const char *const *params,
		   SbLinkState state, int timeout_ms)
{
	PGconn	   *pg = lp_of(s)->links[i].pg;

	return query_sent(s, i,
					  params ? PQsendQueryParams(pg, sql, nparams, NULL, params, NULL, NULL, 0)
					  : PQsendQuery(pg, sql),
					  state, timeout_ms);
}

/*
 * The handshake: search_path pg_catalog (as postgres_fdw sets it) and
 * pg_temp last (every call names its schema, so no object of another
 * role's on the remote's search_path can stand in for a function, type or
 * operator of ours or PostgreSQL's; and the owner scope of our functions,
 * which sets the same, finds it set), read committed (wait_for_commit()
 * waits for commits poll() then sees), no statement timeout (the wait is on
 * purpose; peer_timeout guards stalls), then the model's kind and the
 * remote's header: the pull link's needs the remote role's read
 * privilege, the push link's its write privilege.  The push link then
 * prepares its statement (prepare_push).
 */
static void
send_handshake(SbSession *s, int i)
{
	SbLink	   *l = &lp_of(s)->links[i];
	char	   *name = PQescapeLiteral(l->pg, s->model_name, strlen(s->model_name));
	char	   *sql;

	if (name == NULL)
	{
		link_failed(s, i, SB_CLOSE_CONNECTION_LOST);
		return;
	}
	sql = psprintf("SET search_path TO " SB_OWNER_SEARCH_PATH ";"
				   " SET default_transaction_isolation TO 'read committed';"
				   " SET statement_timeout TO 0;"
				   " SELECT m.kind, %s"
				   " FROM scuttlebutt.models m WHERE m.name = %s",
				   i == LINK_PULL
				   ? "scuttlebutt._export_header(scuttlebutt._model_id(m.name))"
				   : "scuttlebutt._push_header(m.name)",
				   name);
	PQfreemem(name);
	(void) send_query(s, i, sql, 0, NULL, LINK_HANDSHAKE, sb_handshake_timeout_ms);
}

/*
 * The push link's statement, the handshake's last step: prepared under
 * the handshake's search_path, with its own source text as the remote's
 * log and pg_stat_activity show it
 */
static void
prepare_push(SbSession *s)
{
	SbLink	   *l = &lp_of(s)->links[LINK_PUSH];

	l->preparing = true;
	(void) query_sent(s, LINK_PUSH,
					  PQsendPrepare(l->pg, SB_PUSH_STATEMENT, SB_PUSH_SQL, SB_PUSH_NPARAMS, NULL),
					  LINK_HANDSHAKE, sb_handshake_timeout_ms);
}

static void
connect_step(SbSession *s, int i)
{
	SbLink	   *l = &lp_of(s)->links[i];

	/*
	 * libpq may close a refused address's socket and open the next one's,
	 * under the same descriptor number: the worker must register it anew.
	 */
	l->polling = PQconnectPoll(l->pg);
	s->sockets_changed = true;
	switch (l->polling)
	{
		case PGRES_POLLING_FAILED:
			link_failed(s, i, SB_CLOSE_CONNECT_FAILED);
			return;
		case PGRES_POLLING_OK:
			if (lp_of(s)->password_checked && !PQconnectionUsedPassword(l->pg))
			{
				SbSessionClose(s, SB_CLOSE_PASSWORD_REQUIRED,
							   psprintf("%s connection: peer %d belongs to a role that is not superuser, and the remote did not ask for the password.",
										link_names[i], s->peer_id));
				return;
			}
			if (PQsetnonblocking(l->pg, 1) != 0)
			{
				link_failed(s, i, SB_CLOSE_CONNECT_FAILED);
				return;
			}
			send_handshake(s, i);
			if (SbSessionIsOpen(s) && s->state == SB_SESSION_CONNECTING)
				s->state = SB_SESSION_HANDSHAKE;
			return;
		default:
			return;				/* reading or writing: wait for the socket */
	}
}

/* ---- pulling ---- */

static void
read_clock_txn(SbSession *s, void *arg pg_attribute_unused())
{
	SbLibpqPeer *lp = lp_of(s);
	SbClockEntry *clock;
	int			n = SbReadClock(&s->model, &clock, false);

	for (int i = 0; i < n; i++)
		SbRemoteClockRaise(&lp->held, s->session_cxt, clock[i].source, clock[i].ts);
}

/*
 * What this server holds, as a clock argument (into clock); false if the
 * session was closed reading it
 */
static bool
held_clock_json(SbSession *s, StringInfo clock)
{
	SbLibpqPeer *lp = lp_of(s);
	uint64		commits = SbModelCommitCount(s->model.id);

	/*
	 * What committed to the model here since the last look (ours,
	 * relayed), and what we pushed since: a commit is visible, and may be
	 * pushed, before its backend counts it.  A clock without a pushed
	 * update would have the remote send it back.  Our last apply's commit,
	 * the only one since the last look, moved our clock as far as held
	 * went with what the remote sent.
	 */
	if (commits == s->applied_alone && lp->held_commits + 1 == commits)
		lp->held_commits = commits;
	if (commits != lp->held_commits || lp->pushes_sent != lp->held_pushes ||
		lp->held.n == 0)
	{
		uint32		pushes = lp->pushes_sent;

		if (!SbSessionTransaction(s, "scuttlebutt: reading a clock", read_clock_txn, NULL))
			return false;
		lp->held_commits = commits;
		lp->held_pushes = pushes;
	}
	initStringInfo(clock);
	SbAppendClockJson(clock, SbRemoteClockEntries(&lp->held), lp->held.n);
	s->counters.bytes_out += clock->len;
	return true;
}

/*
 * A pull query: sql takes the model, what we hold and one or two numbers
 * (a page size; or a wait in ms and a page size).
 */
static void
send_pull(SbSession *s, const char *sql, int number, bool waits, int timeout_ms)
{
	SbLibpqPeer *lp = lp_of(s);
	StringInfoData clock;
	char		text[4][16];
	const char *params[6];

	if (!held_clock_json(s, &clock))
		return;
	snprintf(text[0], sizeof(text[0]), "%d", number);
	/* a wait's page, and the pushes its clock holds (pusher 0: none, ever) */
	snprintf(text[1], sizeof(text[1]), "%d", SB_POLL_PAGE);
	snprintf(text[2], sizeof(text[2]), "%d",
			 s->send_enabled || lp->pushes_sent > 0 ? (int) lp->pusher : 0);
	snprintf(text[3], sizeof(text[3]), "%d", (int) lp->pushes_sent);
	params[0] = s->model_name;
	params[1] = clock.data;
	params[2] = text[0];
	params[3] = text[1];
	params[4] = text[2];
	params[5] = text[3];
	lp->wait_in_flight = waits;
	(void) send_query(s, LINK_PULL, sql, waits ? 6 : 3, params, LINK_BUSY, timeout_ms);
}

/* Asks the remote for what it holds beyond what we hold */
static void
send_poll(SbSession *s)
{
	send_pull(s, "SELECT scuttlebutt.poll($1, $2::pg_catalog.jsonb, $3)",
			  SB_POLL_PAGE, false, sb_peer_timeout_ms);
}

/*
 * Caught up: the remote waits, outside any transaction, until it holds
 * something we lack or a commit writes the model, and answers with the
 * page a poll would then return.
 */
static void
send_wait(SbSession *s)
{
	send_pull(s, "CALL scuttlebutt.wait_for_commit($1, $2::pg_catalog.jsonb, $3, $4, $5, $6)",
			  SB_POLL_WAIT_MS, true, SB_POLL_WAIT_MS + sb_peer_timeout_ms);
}

/*
 * Whether the node id a header names (NULL: none) is the one the
 * session's first handshake met; else another node answers (the remote's
 * extension created again, say): what the session knows of the remote's
 * clock is void, and the session is closed, for a new one's handshakes to
 * learn it anew.
 */
static bool
same_remote_node(SbSession *s, const char *id)
{
	if (id == NULL || s->remote_id == NULL || strcmp(id, s->remote_id) == 0)
		return true;
	SbSessionClose(s, SB_CLOSE_REMOTE_ID_CHANGED,
				   psprintf("The remote's node id changed from \"%s\" to \"%s\"; connecting anew to sync with it.",
							s->remote_id, id));
	return false;
}

/* One line of a page of the remote's history: an update, or its header */
static bool
take_pull_line(SbSession *s, const char *line, int len)
{
	SbLibpqPeer *lp = lp_of(s);
	SbMessage	msg;
	SbMessageError err;
	bool		ok = SbParseMessage(line, len, &msg, &err);

	s->counters.bytes_in += len;
	/* the remote's clock, after all it held beyond ours: ours rises to it */
	if (ok && msg.type == SB_MSG_HEADER)
	{
		if (!same_remote_node(s, msg.id))
			return false;
		lp->links[LINK_PULL].header_seen = true;
		for (int c = 0; c < msg.nclock; c++)
			SbRemoteClockRaise(&lp->held, s->session_cxt,
							   msg.clock[c].source, msg.clock[c].ts);
		SbSessionQueueClock(s, msg.clock, msg.nclock);
		return true;
	}
	/* held rises past every update read, even one we reject */
	lp->links[LINK_PULL].rows++;
	if (ok && msg.type == SB_MSG_UPDATE)
		SbRemoteClockRaise(&lp->held, s->session_cxt, msg.source, msg.ts);
	return SbSessionReceive(s, &msg, ok, &err);
}

/* A page of the remote's history, a row per line (poll()) */
static bool
take_poll_rows(SbSession *s, PGresult *res)
{
	int			n = PQntuples(res);

	for (int r = 0; r < n; r++)
		if (!take_pull_line(s, PQgetvalue(res, r, 0), PQgetlength(res, r, 0)))
			return false;
	s->counters.last_activity = GetCurrentTimestamp();
	return true;
}

/*
 * The wait's answer: a page as one text of lines, each ending in a
 * newline, or NULL (no page: our push reached the remote meanwhile)
 */
static bool
take_wait_page(SbSession *s, PGresult *res)
{
	const char *page;
	const char *end;

	if (PQntuples(res) != 1 || PQnfields(res) != 1 || PQgetisnull(res, 0, 0))
		return true;
	lp_of(s)->links[LINK_PULL].page_answered = true;
	page = PQgetvalue(res, 0, 0);
	end = page + PQgetlength(res, 0, 0);
	while (page < end)
	{
		const char *nl = memchr(page, '\n', end - page);
		const char *stop = nl ? nl : end;

		if (!take_pull_line(s, page, (int) (stop - page)))
			return false;
		page = stop + 1;
	}
	s->counters.last_activity = GetCurrentTimestamp();
	return true;
}

/*
 * Whether a poll is in flight.  A poll, unlike a wait, cannot tell our
 * pushes from other commits: a push sent after it could reach the remote
 * before its snapshot and come back in its page.  Pushes wait for its
 * answer, and go before the next poll, whose clock then holds them.
 */
static bool
poll_in_flight(SbLibpqPeer *lp)
{
	return lp->links[LINK_PULL].state == LINK_BUSY && !lp->wait_in_flight;
}

static void
push_outbox(SbSession *s)
{
	SbLibpqPeer *lp = lp_of(s);

	if (SbSessionIsOpen(s) && lp->links[LINK_PUSH].state == LINK_READY &&
		SbSessionOutboxLength(s) > 0 && !poll_in_flight(lp))
		send_import(s);
}

static void
poll_done(SbSession *s)
{
	SbLibpqPeer *lp = lp_of(s);

	/* what waited for the poll's answer goes before the next pull query */
	push_outbox(s);
	if (!SbSessionIsOpen(s))
		return;

	/* a wait that answered no page: we ask with what we hold now */
	if (lp->wait_in_flight && !lp->links[LINK_PULL].page_answered)
	{
		send_poll(s);
		return;
	}

	/*
	 * All the remote had came with its header (or was nothing); a page cut
	 * short by its size, as a full one, has none: more is to come.
	 */
	lp->pull_caught_up = lp->links[LINK_PULL].rows == 0 ||
		lp->links[LINK_PULL].header_seen;
	if (lp->pull_caught_up && !s->sync_received)
		SbSessionPeerSynced(s);
	/* more to come: asked at once, the remote reads it while we apply this */
	if (!lp->pull_caught_up)
	{
		send_poll(s);
		return;
	}

	/*
	 * Caught up: applied first, then the wait.  The wait reads our clock,
	 * a transaction whenever a commit came since (our last apply's, say):
	 * taken before the apply, it would delay what this page brought.
	 */
	if (SbSessionApplyPending(s) && SbSessionIsOpen(s))
		send_wait(s);
}

/* ---- pushing ---- */

static void
send_import(SbSession *s)
{
	SbLibpqPeer *lp = lp_of(s);
	const char *params[SB_PUSH_NPARAMS];
	char		numbers[2][16];
	int			len = SbSessionOutboxLength(s);

	/* numbered: a wait of our pull must not answer with what we push */
	snprintf(numbers[0], sizeof(numbers[0]), "%d", (int) lp->pusher);
	snprintf(numbers[1], sizeof(numbers[1]), "%d", (int) ++lp->pushes_sent);
	params[0] = s->model_name;
	params[1] = s->out.data + s->out_off;
	params[2] = numbers[0];
	params[3] = numbers[1];
	/* to the node the handshakes met, or refused */
	params[4] = s->remote_id;
	if (!query_sent(s, LINK_PUSH,
					PQsendQueryPrepared(lp->links[LINK_PUSH].pg, SB_PUSH_STATEMENT, SB_PUSH_NPARAMS,
										params, NULL, NULL, 0),
					LINK_BUSY, sb_peer_timeout_ms))
		return;
	/* libpq holds its own copy of the parameters now */
	SbSessionOutboxConsumed(s, len);
}

/*
 * The remote role may not write the model: this session only pulls.  The
 * next session (after a reconnect) tries again.
 */
static void
push_refused(SbSession *s, PGresult *res)
{
	SbLink	   *l = &lp_of(s)->links[LINK_PUSH];
	const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

	ereport(WARNING,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("scuttlebutt: %s refused updates of model \"%s\": %s",
					s->remote_addr, s->model_name, primary ? primary : "?"),
			 errdetail("Until the next reconnect this peer only pulls."),
			 errhint("Grant the remote role the write privilege on the model there (scuttlebutt.grant()), or add the peer with send => false.")));
	snprintf(s->last_error, sizeof(s->last_error),
			 "push refused by the remote: %s (SQLSTATE %s)",
			 primary ? primary : "?", SQLSTATE_INSUFFICIENT_PRIVILEGE);
	link_close(s, l);
	s->send_enabled = false;
	SbSessionOutboxConsumed(s, SbSessionOutboxLength(s));
}

/* ---- results ---- */

static void
no_model_on_remote(SbSession *s)
{
	SbSessionClose(s, SB_CLOSE_NO_REMOTE_MODEL,
				   psprintf("The remote has no scuttlebutt model \"%s\"; create it there with scuttlebutt.create_model().",
							s->model_name));
}

/* The remote's kind and header: the session can start on this link */
static bool
take_handshake_row(SbSession *s, int i, PGresult *res)
{
	const char *kind;
	const char *header;
	SbMessage	msg;
	SbMessageError err;

	if (PQntuples(res) != 1 || PQnfields(res) != 2)
	{
		no_model_on_remote(s);
		return false;
	}
	kind = PQgetvalue(res, 0, 0);
	if (strcmp(kind, SbKindName(s->model.kind)) != 0)
	{
		SbSessionClose(s, SB_CLOSE_KIND_MISMATCH,
					   psprintf("Model \"%s\" is a %s here and a %s on the remote.",
							 s->model_name, SbKindName(s->model.kind), kind));
		return false;
	}
	header = PQgetvalue(res, 0, 1);
	if (!SbParseMessage(header, PQgetlength(res, 0, 1), &msg, &err) ||
		msg.type != SB_MSG_HEADER)
	{
		SbSessionClose(s, SB_CLOSE_INVALID_HEADER, err.message ? err.message : header);
		return false;
	}
	if (!same_remote_node(s, msg.id))
		return false;
	/*
	 * The push link's header says what the remote's clock lacks: the pump
	 * may run.  A session that does not push has nothing to learn from it.
	 */
	if (i == LINK_PUSH)
		SbSessionPeerHeader(s, msg.id, msg.clock, msg.nclock);
	else if (!s->send_enabled)
		SbSessionPeerHeader(s, msg.id, NULL, 0);
	else if (msg.id && s->remote_id == NULL)
		s->remote_id = MemoryContextStrdup(s->session_cxt, msg.id);
	lp_of(s)->links[i].rows = 1;
	return true;
}

/* A query's results have all come: what the link does next */
static void
query_done(SbSession *s, int i)
{
	SbLink	   *l = &lp_of(s)->links[i];
	SbLinkState was = l->state;

	l->state = LINK_READY;
	l->deadline = 0;
	if (was == LINK_HANDSHAKE)
	{
		if (l->rows == 0 && !l->preparing)
		{
			no_model_on_remote(s);
			return;
		}
		if (i == LINK_PUSH && !l->preparing)
		{
			prepare_push(s);
			return;
		}
		(void) libpq_flush(s);
		return;
	}
	if (i == LINK_PULL)
		poll_done(s);
}

/* Takes one result of the query in flight; false if the session closed */
static bool
take_result(SbSession *s, int i, PGresult *res)
{
	SbLink	   *l = &lp_of(s)->links[i];
	ExecStatusType status = PQresultStatus(res);

	if (status == PGRES_FATAL_ERROR)
	{
		const char *sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		if (i == LINK_PUSH && l->state == LINK_BUSY && sqlstate &&
			strcmp(sqlstate, SQLSTATE_INSUFFICIENT_PRIVILEGE) == 0)
		{
			push_refused(s, res);
			return true;
		}
		query_failed(s, i, res);
		return false;
	}
	if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK)
	{
		SbSessionClose(s, SB_CLOSE_REMOTE_ERROR,
					   psprintf("%s connection: unexpected result %s", link_names[i],
							 PQresStatus(status)));
		return false;
	}
	if (status == PGRES_TUPLES_OK)
	{
		if (l->state == LINK_HANDSHAKE)
			return take_handshake_row(s, i, res);
		if (i == LINK_PULL)
			return lp_of(s)->wait_in_flight ? take_wait_page(s, res)
				: take_poll_rows(s, res);
	}
	return true;
}

/*
 * Frees the notifications libpq parsed.  We listen to no channel, but a
 * remote may send them (its session told to LISTEN), and libpq keeps
 * every one until it is taken.
 */
static void
drop_notifications(PGconn *pg)
{
	PGnotify   *n;

	while ((n = PQnotifies(pg)) != NULL)
		PQfreemem(n);
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
read_results(SbSession *s, int i)
{
	SbLink	   *l = &lp_of(s)->links[i];
	int			reads = 0;

	do
	{
		if (!PQconsumeInput(l->pg))
		{
			link_failed(s, i, SB_CLOSE_CONNECTION_LOST);
			return;
		}
	} while (++reads < SB_LIBPQ_READS && PQisBusy(l->pg) && socket_has_data(l->pg));

	drop_notifications(l->pg);
	while (l->state == LINK_HANDSHAKE || l->state == LINK_BUSY)
	{
		PGresult   *res;
		bool		ok;

		if (PQisBusy(l->pg))
			return;
		res = PQgetResult(l->pg);
		if (res == NULL)
		{
			query_done(s, i);
			return;				/* a new query may be in flight: its results come later */
		}
		ok = take_result(s, i, res);
		PQclear(res);
		if (!ok || l->pg == NULL)
			return;				/* the session (or this link) was closed */
	}
	/* idle: a connection the remote closed shows here */
	if (PQstatus(l->pg) == CONNECTION_BAD)
		link_failed(s, i, SB_CLOSE_CONNECTION_LOST);
}

/* ---- the worker's calls ---- */

static void
libpq_wait_sockets(SbSession *s, SbWaitSocket *socks)
{
	SbLibpqPeer *lp = lp_of(s);

	for (int i = 0; i < SB_LIBPQ_LINKS; i++)
	{
		SbLink	   *l = &lp->links[i];

		socks[i].sock = PGINVALID_SOCKET;
		socks[i].events = 0;
		if (l->pg == NULL || l->state == LINK_OFF || PQsocket(l->pg) < 0)
			continue;
		socks[i].sock = PQsocket(l->pg);
		if (l->state == LINK_CONNECTING)
			socks[i].events = l->polling == PGRES_POLLING_READING ? WL_SOCKET_READABLE
				: WL_SOCKET_WRITEABLE;
		else
			socks[i].events = WL_SOCKET_READABLE |
				(l->flush_wanted ? WL_SOCKET_WRITEABLE : 0);
	}
}

static void
libpq_handle(SbSession *s, int i, uint32 events)
{
	SbLink	   *l = &lp_of(s)->links[i];

	if (l->pg == NULL || l->state == LINK_OFF)
		return;
	if (l->state == LINK_CONNECTING)
	{
		connect_step(s, i);
		return;
	}
	if ((events & WL_SOCKET_WRITEABLE) && l->flush_wanted)
	{
		int			rc = PQflush(l->pg);

		if (rc < 0)
		{
			link_failed(s, i, SB_CLOSE_CONNECTION_LOST);
			return;
		}
		l->flush_wanted = rc == 1;
	}
	if (events & WL_SOCKET_READABLE)
		read_results(s, i);
}

/*
 * Whether the first push is still under way.  A session pushes all the
 * remote lacks before it pulls: what it pushes is then read before any
 * pulled update can supersede it, so the remote's clock gets all of ours;
 * the pull, for its part, ends with the remote's clock (see poll()).
 */
static bool
first_push_pending(SbSession *s)
{
	SbLink	   *push = &lp_of(s)->links[LINK_PUSH];

	return s->send_enabled && SbSessionIsOpen(s) &&
		!(s->sync_sent && push->state == LINK_READY && SbSessionOutboxLength(s) == 0);
}

static bool
libpq_flush(SbSession *s)
{
	SbLibpqPeer *lp = lp_of(s);

	push_outbox(s);
	/* no push link (receive only, or refused): the "SYNC" has no way to go */
	if (!s->send_enabled)
		SbSessionOutboxConsumed(s, SbSessionOutboxLength(s));
	/* the first poll (later ones follow each answer) */
	if (SbSessionIsOpen(s) && lp->links[LINK_PULL].state == LINK_READY &&
		!lp->pull_started && !first_push_pending(s))
	{
		lp->pull_started = true;
		send_poll(s);
	}
	return SbSessionIsOpen(s);
}

static TimestampTz
libpq_deadline(SbSession *s)
{
	TimestampTz next = 0;

	for (int i = 0; i < SB_LIBPQ_LINKS; i++)
	{
		TimestampTz d = lp_of(s)->links[i].deadline;

		if (d != 0 && (next == 0 || d < next))
			next = d;
	}
	return next;
}

static void
libpq_check_deadline(SbSession *s, TimestampTz now)
{
	for (int i = 0; i < SB_LIBPQ_LINKS && SbSessionIsOpen(s); i++)
	{
		SbLink	   *l = &lp_of(s)->links[i];

		if (l->deadline == 0 || l->deadline > now)
			continue;
		if (l->state == LINK_CONNECTING || l->state == LINK_HANDSHAKE)
			SbSessionClose(s, SB_CLOSE_CONNECT_TIMEOUT,
						   psprintf("%s connection: not connected within scuttlebutt.handshake_timeout (%d ms).",
								 link_names[i], sb_handshake_timeout_ms));
		else
			SbSessionClose(s, SB_CLOSE_QUERY_TIMEOUT,
						   psprintf("%s connection: no answer within scuttlebutt.peer_timeout (%d ms) beyond the query's wait.",
								 link_names[i], sb_peer_timeout_ms));
	}
}

static bool
libpq_idle(SbSession *s)
{
	SbLibpqPeer *lp = lp_of(s);

	return lp->links[LINK_PUSH].state != LINK_BUSY &&
		(lp->links[LINK_PULL].state == LINK_OFF || lp->pull_caught_up);
}

const SbTransportOps SbLibpqTransport = {
	.name = "libpq",
	.takes_clock = true,
	.applies_without_flush = true,
	.configure = libpq_configure,
	.start = libpq_start,
	.wait_sockets = libpq_wait_sockets,
	.handle = libpq_handle,
	.flush = libpq_flush,
	.deadline = libpq_deadline,
	.check_deadline = libpq_check_deadline,
	.idle = libpq_idle,
	.disconnect = libpq_disconnect,
};
