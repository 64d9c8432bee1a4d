/*-------------------------------------------------------------------------
 *
 * stream.c
 *	  The stream transport: the scuttlebutt line protocol on a byte channel.
 *
 * One connection carries one scuttlebutt stream for one model, as the
 * reference's createStream() speaks it: newline-terminated JSON lines.  An
 * incoming connection learns its model from the peer's header meta (a
 * string, or an object with a "model" field); an outgoing one names it in
 * its own header's meta.  A line that is not JSON, a header without a
 * clock, or a line longer than scuttlebutt.max_line_bytes ends the session
 * (the first line, the peer's header, may take scuttlebutt.max_header_bytes).
 * An incoming connection's header is also where scuttlebutt.listen_rules
 * decide whether it may go on and as which role (listen_rules.c), before
 * anything is sent to it.
 *
 * With TLS (scuttlebutt.ssl for the listener, a peer row's tls for a
 * dialed peer) the channel's handshake comes first, a step per event in
 * the worker's one wait set, within the same handshake timeout as the
 * header; a dialed peer's header goes out once it is done.  Which channel
 * to open and that step are all this file knows of TLS.
 *
 * An incoming connection whose first bytes are "GET " (after TLS, if on)
 * is a WebSocket client (websocket.c): its channel is wrapped in a
 * WebSocket one, whose handshake (the HTTP upgrade) runs the same way, and
 * the line protocol goes on inside its frames.  A token its request
 * carried stands in for the header's meta.token when that has none.
 *
 * An incoming connection whose first line is a JSON array, not a header
 * object, is a mux-demux one (mux_demux.c): its frames carry sub-streams,
 * each a stream session of its own (SbStreamOpenSub) whose channel is the
 * sub-stream, for the model its meta names; the connection's own session
 * only carries them.
 *
 * A header that names no model takes scuttlebutt.default_model; with none
 * set the client is sent one JSON line saying why (the reference's stream
 * then emits "error") and closed.  A client that sends nothing at all
 * (the reference's createWriteStream() without sendClock waits for our
 * header first) is served the default model after
 * scuttlebutt.default_model_wait, as if its header had named it with an
 * empty clock.
 *
 * Outgoing connections try every address the host name resolves to, in
 * order, as libpq does with a multi-address host: a refused ::1 falls
 * through to 127.0.0.1.  Each new socket is announced to the worker
 * (sockets_changed), since it may reuse the descriptor number of the one
 * just closed.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/ip.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "channel.h"
#include "guc.h"
#include "jstext.h"
#include "listen_rules.h"
#include "mux_demux.h"
#include "stream.h"
#include "transport.h"
#include "websocket.h"

/* Bytes read from one socket before the loop serves the others */
#define SB_READ_BUDGET (512 * 1024)

typedef struct SbStream
{
	SbChannel	ch;				/* ch.sock PGINVALID_SOCKET: none */
	StringInfoData in;			/* bytes not yet split into lines */
	bool		connecting;		/* outgoing: connect() in progress */
	bool		header_received;
	bool		handshaking;	/* the channel's handshake is not done */
	bool		received;		/* a byte came over this connection */
	bool		detected;		/* incoming: its first bytes told lines
								 * from a WebSocket upgrade */
	bool		line_bytes;		/* a byte of the line protocol came */
	bool		mux_checked;	/* incoming: its first line told a
								 * scuttlebutt header from a mux-demux frame */
	SbMux	   *mux;			/* a multiplexed connection's sub-streams */
	char	   *sub_model;		/* a sub-stream: the model its meta named */
	TimestampTz quiet_deadline; /* incoming and silent: when it gets the
								 * default model (0: never) */
	bool		started_silent; /* it got the default model that way */
	bool		input_done;		/* the client ended its side after its
								 * "SYNC": ours still goes, then we close */
	TimestampTz deadline;		/* connect or handshake timeout */
	/* incoming */
	SockAddr	client_addr;	/* as accept() gave it: listen_rules match it */
	/* outgoing */
	char	   *host;
	int			port;
	struct addrinfo *addrs;		/* getaddrinfo's answer, being tried */
	struct addrinfo *trying;	/* the address connect() is under way to */
	struct addrinfo *next_addr; /* the address to try next */
	SbTlsClientConfig *tls;		/* dial with TLS (NULL: plain TCP) */
	StringInfoData failures;	/* why each address tried failed */
} SbStream;

static inline SbStream *
stream_of(SbSession *s)
{
	return (SbStream *) s->transport;
}

static SbStream *
stream_new(SbSession *s)
{
	SbStream   *st = MemoryContextAllocZero(s->cxt, sizeof(SbStream));

	st->ch.sock = PGINVALID_SOCKET;
	s->transport = st;
	return st;
}

/* ---- the connection's start and end ---- */

static void
stream_disconnect(SbSession *s)
{
	SbStream   *st = stream_of(s);

	if (st->mux != NULL)
	{
		SbMux	   *mux = st->mux;

		st->mux = NULL;
		SbMuxEnd(mux, s->close_reason);
	}
	if (st->ch.sock != PGINVALID_SOCKET)
	{
		/* a channel that can say why the session ends says it first */
		if (st->ch.ops->farewell)
			st->ch.ops->farewell(&st->ch, s->close_reason >= 0
								 ? s->close_reason : SB_CHANNEL_GOING_AWAY);
		st->ch.ops->close(&st->ch);
		s->sockets_changed = true;
	}
	if (st->addrs)
		freeaddrinfo(st->addrs);
	st->addrs = st->trying = st->next_addr = NULL;
	st->connecting = false;
	st->handshaking = false;
	st->input_done = false;
	s->tls = false;
	s->websocket = false;
}

/* Our header: {"id":...,"clock":{...}} with meta = model when we dialed */
static void
header_txn(SbSession *s, void *arg pg_attribute_unused())
{
	SbClockEntry *clock;
	int			n = SbReadClock(&s->model, &clock, false);

	SbSessionAppendHeader(s, clock, n, s->outgoing ? s->model_name : NULL);
}

static bool
send_header(SbSession *s)
{
	return SbSessionResolveModel(s) &&
		SbSessionTransaction(s, "scuttlebutt: sending header", header_txn, NULL);
}

/* A connected channel: the session begins, the peer has a while for its header */
static void
stream_begin(SbSession *s)
{
	SbStream   *st = stream_of(s);

	SbSessionBegin(s);
	st->in.data = MemoryContextAlloc(s->session_cxt, SB_OUT_INITIAL);
	st->in.maxlen = SB_OUT_INITIAL;
	resetStringInfo(&st->in);
	st->connecting = false;
	st->header_received = false;
	st->handshaking = false;
	st->received = false;
	st->detected = s->outgoing;
	s->websocket = false;
	st->line_bytes = false;
	st->mux_checked = s->outgoing;
	st->quiet_deadline = 0;
	st->started_silent = false;
	s->tls = false;
	st->deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
											   sb_handshake_timeout_ms);
}

/*
 * An incoming channel ready for lines: with a default model, a client that
 * stays silent gets it after scuttlebutt.default_model_wait
 */
static void
arm_default_model_wait(SbSession *s)
{
	SbStream   *st = stream_of(s);

	st->quiet_deadline = 0;
	if (!s->outgoing && (st->sub_model != NULL ||
						 (sb_default_model != NULL && sb_default_model[0] != '\0')) &&
		sb_default_model_wait_ms > 0)
		st->quiet_deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														 sb_default_model_wait_ms);
}

static void stream_read(SbSession *s);
static bool stream_flush(SbSession *s);

/*
 * Advances the channel's handshake; once done, the dialed side sends its
 * header, and whatever already came is read.
 */
static void
continue_handshake(SbSession *s)
{
	SbStream   *st = stream_of(s);
	int			rc = st->ch.ops->handshake(&st->ch);

	if (rc == SB_CHANNEL_WOULD_BLOCK)
		return;
	if (rc != SB_CHANNEL_DONE)
	{
		SbSessionClose(s, st->ch.fail_reason >= 0
					   ? st->ch.fail_reason : SB_CLOSE_TLS_HANDSHAKE_FAILED,
					   st->ch.error[0] ? st->ch.error : strerror(errno));
		return;
	}
	st->handshaking = false;
	s->tls = st->ch.tls;
	s->websocket = st->ch.websocket;
	arm_default_model_wait(s);
	if (s->outgoing && !send_header(s))
		return;
	if (!stream_flush(s))
		return;
	stream_read(s);
}

/* A channel failed to open: the session ends with the channel's reason */
static void
channel_unavailable(SbSession *s)
{
	SbStream   *st = stream_of(s);
	char		why[SB_CHANNEL_ERROR_LEN];

	strlcpy(why, st->ch.error, sizeof(why));
	SbSessionClose(s, SB_CLOSE_TLS_UNAVAILABLE, why);
}

void
SbStreamAccept(SbSession *s, pgsocket sock, const SockAddr *addr,
			   const char *remote_addr)
{
	SbStream   *st = stream_new(s);

	SbChannelTcpOpen(&st->ch, sock);
	st->client_addr = *addr;
	s->sockets_changed = true;
	strlcpy(s->remote_addr, remote_addr, sizeof(s->remote_addr));
	stream_begin(s);
	if (sb_ssl)
	{
		/* with scuttlebutt.ssl on, never plain text */
		if (!SbChannelTlsAccept(&st->ch, sock))
		{
			channel_unavailable(s);
			return;
		}
		st->handshaking = true;
	}
	else
		arm_default_model_wait(s);
}

void
SbStreamOpenSub(SbSession *s, SbSession *carrier, const SbChannelOps *ops,
				void *state, const char *model, const char *token)
{
	SbStream   *cst = stream_of(carrier);
	SbStream   *st = stream_new(s);

	SbChannelInit(&st->ch, ops, cst->ch.sock, state);
	/* who the client is: as its connection showed it */
	st->ch.tls = cst->ch.tls;
	st->ch.websocket = cst->ch.websocket;
	if (cst->ch.peer_cn)
		st->ch.peer_cn = MemoryContextStrdup(s->cxt, cst->ch.peer_cn);
	if (token != NULL)
		st->ch.token = MemoryContextStrdup(s->cxt, token);
	else if (cst->ch.token != NULL)
		st->ch.token = MemoryContextStrdup(s->cxt, cst->ch.token);
	st->ch.token_too_long = token == NULL && cst->ch.token_too_long;
	st->client_addr = cst->client_addr;
	st->sub_model = MemoryContextStrdup(s->cxt, model);
	strlcpy(s->remote_addr, carrier->remote_addr, sizeof(s->remote_addr));
	stream_begin(s);
	st->detected = true;
	st->mux_checked = true;		/* no sub-streams within sub-streams */
	s->tls = st->ch.tls;
	s->websocket = st->ch.websocket;
	arm_default_model_wait(s);
}

/* ---- dialing ---- */

static void
stream_configure(SbSession *s, const SbPeerConfig *config)
{
	SbStream   *st = stream_new(s);

	st->host = MemoryContextStrdup(s->cxt, config->host);
	st->port = config->port;
	st->failures.data = MemoryContextAlloc(s->cxt, 256);
	st->failures.maxlen = 256;
	resetStringInfo(&st->failures);
	snprintf(s->remote_addr, sizeof(s->remote_addr), "%s:%d", st->host, st->port);
	if (config->tls)
	{
		st->tls = MemoryContextAllocZero(s->cxt, sizeof(SbTlsClientConfig));
		st->tls->host = st->host;
		if (config->sslrootcert)
			st->tls->rootcert = MemoryContextStrdup(s->cxt, config->sslrootcert);
		if (config->sslcert)
			st->tls->cert = MemoryContextStrdup(s->cxt, config->sslcert);
		if (config->sslkey)
			st->tls->key = MemoryContextStrdup(s->cxt, config->sslkey);
	}
}

static void
note_address_failure(SbStream *st, struct addrinfo *ai, int err)
{
	char		host[NI_MAXHOST];

	if (pg_getnameinfo_all((struct sockaddr_storage *) ai->ai_addr, ai->ai_addrlen,
						   host, sizeof(host), NULL, 0, NI_NUMERICHOST) != 0)
		strlcpy(host, "?", sizeof(host));
	appendStringInfo(&st->failures, "%s%s%s%s port %d: %s",
					 st->failures.len > 0 ? "; " : "",
					 ai->ai_family == AF_INET6 ? "[" : "", host,
					 ai->ai_family == AF_INET6 ? "]" : "", st->port, strerror(err));
}

static void
connected(SbSession *s)
{
	SbStream   *st = stream_of(s);

	if (st->addrs)
		freeaddrinfo(st->addrs);
	st->addrs = st->trying = st->next_addr = NULL;
	stream_begin(s);
	if (st->tls)
	{
		if (!SbChannelTlsConnect(&st->ch, st->ch.sock, st->tls))
		{
			channel_unavailable(s);
			return;
		}
		st->handshaking = true;
		continue_handshake(s);
		return;
	}
	(void) send_header(s);
}

/*
 * Tries the addresses not tried yet, until a connect() succeeds or is under
 * way; closes the session when none is left.
 */
static void
try_next_address(SbSession *s)
{
	SbStream   *st = stream_of(s);

	while (st->next_addr != NULL)
	{
		struct addrinfo *ai = st->next_addr;
		pgsocket	sock = socket(ai->ai_family, SOCK_STREAM, 0);
		int			one = 1;
		int			rc;

		st->next_addr = ai->ai_next;
		if (sock == PGINVALID_SOCKET || !pg_set_noblock(sock))
		{
			note_address_failure(st, ai, errno);
			if (sock != PGINVALID_SOCKET)
				closesocket(sock);
			continue;
		}
		(void) setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		SbChannelTcpOpen(&st->ch, sock);
		s->sockets_changed = true;
		rc = connect(sock, ai->ai_addr, ai->ai_addrlen);
		if (rc == 0)
		{
			connected(s);
			return;
		}
		if (errno == EINPROGRESS)
		{
			st->trying = ai;
			st->connecting = true;
			s->state = SB_SESSION_CONNECTING;
			return;
		}
		note_address_failure(st, ai, errno);
		st->ch.ops->close(&st->ch);
	}
	SbSessionClose(s, SB_CLOSE_CONNECT_FAILED, st->failures.data);
}

static void
stream_start(SbSession *s)
{
	SbStream   *st = stream_of(s);
	struct addrinfo hints;
	char		portstr[16];
	int			rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	snprintf(portstr, sizeof(portstr), "%d", st->port);
	/* blocking, as libpq's own resolution: give an address to avoid DNS */
	rc = getaddrinfo(st->host, portstr, &hints, &st->addrs);
	if (rc != 0)
	{
		st->addrs = NULL;
		SbSessionClose(s, SB_CLOSE_RESOLVE_FAILED, gai_strerror(rc));
		return;
	}
	st->next_addr = st->addrs;
	resetStringInfo(&st->failures);
	s->state = SB_SESSION_CONNECTING;
	st->deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
											   sb_handshake_timeout_ms);
	try_next_address(s);
}

/* connect() finished on the address being tried: go on, or the next one */
static void
finish_connect(SbSession *s)
{
	SbStream   *st = stream_of(s);
	int			err = 0;
	socklen_t	len = sizeof(err);

	if (getsockopt(st->ch.sock, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err == 0)
	{
		connected(s);
		return;
	}
	note_address_failure(st, st->trying, err);
	st->ch.ops->close(&st->ch);
	s->sockets_changed = true;
	st->connecting = false;
	try_next_address(s);
}

/* ---- who the client is (incoming) ---- */

typedef struct AuthArg
{
	const char *token;
	bool		token_too_long;
	SbListenDecision decision;
} AuthArg;

static void
auth_txn(SbSession *s, void *arg)
{
	SbStream   *st = stream_of(s);
	AuthArg    *a = arg;

	SbListenRulesDecide(&st->client_addr, s->model_name, st->ch.tls,
						st->ch.peer_cn, a->token, a->token_too_long,
						&a->decision);
	/* the detail outlives the transaction */
	if (a->decision.detail)
		a->decision.detail = MemoryContextStrdup(s->session_cxt,
												 a->decision.detail);
}

/*
 * Decides by scuttlebutt.listen_rules whether the client may go on, and as
 * which role.  A refused client is closed before our header is sent: it
 * learns nothing but the close (the log says why).
 */
static bool
authenticate(SbSession *s, SbMessage *msg)
{
	SbStream   *st = stream_of(s);
	AuthArg		a;

	/* the header's meta.token, else one the channel's handshake carried */
	if (msg != NULL && (msg->meta_token != NULL || msg->meta_token_too_long))
	{
		a.token = msg->meta_token;
		a.token_too_long = msg->meta_token_too_long;
	}
	else
	{
		a.token = st->ch.token;
		a.token_too_long = st->ch.token_too_long;
	}
	if (!SbSessionTransaction(s, "scuttlebutt: checking listen rules", auth_txn, &a))
		return false;
	if (!a.decision.allowed)
	{
		SbSessionClose(s, a.decision.reason, a.decision.detail);
		return false;
	}
	s->role = a.decision.role;
	strlcpy(s->auth_method, a.decision.method, sizeof(s->auth_method));
	return true;
}

/* ---- input ---- */

/*
 * A header naming no model, and no default: the client is told in a JSON
 * line (to the reference, a header without a clock: its stream emits
 * "error" and ends), then closed
 */
static void
refuse_no_model(SbSession *s)
{
	StringInfoData line;

	initStringInfo(&line);
	appendStringInfoString(&line, "{\"error\":");
	JsAppendString(&line, SB_NO_MODEL_NAMED_TEXT, strlen(SB_NO_MODEL_NAMED_TEXT));
	appendStringInfoChar(&line, '}');
	SbSessionAppendLine(s, line.data, line.len);
	pfree(line.data);
	(void) stream_flush(s);
	if (SbSessionIsOpen(s))
		SbSessionClose(s, SB_CLOSE_NO_MODEL_NAMED,
					   "The header's meta names no model (a string, or an object with a \"model\" field), and scuttlebutt.default_model is empty.");
}

/*
 * A silent client's time is up: it gets the default model, as if its
 * header had named it with an empty clock
 */
static void
start_default_model(SbSession *s)
{
	SbStream   *st = stream_of(s);

	st->quiet_deadline = 0;
	s->model_name = MemoryContextStrdup(s->cxt, st->sub_model ? st->sub_model
										: sb_default_model);
	if (!authenticate(s, NULL) || !send_header(s))
		return;
	st->header_received = true;
	st->started_silent = true;
	SbSessionPeerHeader(s, NULL, NULL, 0);
	/* such a client (a reference write stream) sends no "SYNC" either */
	SbSessionPeerSynced(s);
	(void) stream_flush(s);
}

static bool
handle_header(SbSession *s, SbMessage *msg)
{
	SbStream   *st = stream_of(s);

	if (st->header_received)
	{
		/*
		 * A header after a silent start: it must be for the model given,
		 * and its clock tells what the client already holds
		 */
		if (st->started_silent)
		{
			st->started_silent = false;
			if (msg->meta_model != NULL && strcmp(msg->meta_model, s->model_name) != 0)
			{
				SbSessionClose(s, SB_CLOSE_INVALID_HEADER,
							   psprintf("The header names model \"%s\", but came after scuttlebutt.default_model_wait (%d ms), when the connection had been given the default model \"%s\".",
										msg->meta_model, sb_default_model_wait_ms, s->model_name));
				return false;
			}
			SbSessionPeerHeader(s, msg->id, msg->clock, msg->nclock);
		}
		return true;			/* a second header changes nothing */
	}
	if (!s->outgoing)
	{
		const char *model = msg->meta_model;

		/* a sub-stream's model is the one its mux-demux meta named */
		if (st->sub_model != NULL)
		{
			if (model != NULL && strcmp(model, st->sub_model) != 0)
			{
				SbSessionClose(s, SB_CLOSE_INVALID_HEADER,
							   psprintf("The header names model \"%s\", but the sub-stream's meta named \"%s\".",
										model, st->sub_model));
				return false;
			}
			model = st->sub_model;
		}
		if (model == NULL && sb_default_model != NULL && sb_default_model[0] != '\0')
			model = sb_default_model;
		if (model == NULL)
		{
			refuse_no_model(s);
			return false;
		}
		s->model_name = MemoryContextStrdup(s->cxt, model);
		if (!authenticate(s, msg) || !send_header(s))
			return false;
	}
	st->header_received = true;
	SbSessionPeerHeader(s, msg->id, msg->clock, msg->nclock);
	return true;
}

static bool
handle_line(SbSession *s, const char *line, int len)
{
	SbMessage	msg;
	SbMessageError err;
	bool		ok;

	while (len > 0 && line[len - 1] == '\r')
		len--;
	if (len == 0)
		return true;
	ok = SbParseMessage(line, len, &msg, &err);
	if (ok && msg.type == SB_MSG_HEADER)
		return handle_header(s, &msg);
	/*
	 * A dialed address that is not a scuttlebutt peer: say so without its
	 * bytes, which could be another service's banner (add_stream_peer()
	 * must not become a way to read them through last_error).
	 */
	if (s->outgoing && !stream_of(s)->header_received)
	{
		SbSessionClose(s, SB_CLOSE_INVALID_HEADER,
					   psprintf("peer sent no scuttlebutt header (%d bytes)", len));
		return false;
	}
	return SbSessionReceive(s, &msg, ok, &err);
}

/*
 * The longest line the peer may send now: its header lists every source
 * of the model, so the first line may take scuttlebutt.max_header_bytes
 */
static int
line_limit(SbStream *st, const char **setting)
{
	if (!st->header_received && sb_max_header_bytes > sb_max_line_bytes)
	{
		*setting = "scuttlebutt.max_header_bytes";
		return sb_max_header_bytes;
	}
	*setting = "scuttlebutt.max_line_bytes";
	return sb_max_line_bytes;
}

/* Hands every complete line of the input to the session; false if closed */
static bool
take_lines(SbSession *s)
{
	SbStream   *st = stream_of(s);
	int			start = 0;
	char	   *nl;
	const char *setting;
	int			limit;

	while ((nl = memchr(st->in.data + start, '\n', st->in.len - start)) != NULL)
	{
		int			len = nl - (st->in.data + start);

		limit = line_limit(st, &setting);
		if (len > limit)
		{
			SbSessionClose(s, SB_CLOSE_LINE_TOO_LONG,
						   psprintf("A line of %d bytes is longer than %s (%d).",
									len, setting, limit));
			return false;
		}
		if (!handle_line(s, st->in.data + start, len))
			return false;
		start += len + 1;
	}
	if (start > 0)
	{
		memmove(st->in.data, st->in.data + start, st->in.len - start);
		st->in.len -= start;
		st->in.data[st->in.len] = '\0';
	}
	/* a buffer grown by a long line is not kept by an idle connection */
	if (st->in.len == 0 && st->in.maxlen > SB_OUT_KEEP)
	{
		pfree(st->in.data);
		st->in.data = MemoryContextAlloc(s->session_cxt, SB_OUT_INITIAL);
		st->in.maxlen = SB_OUT_INITIAL;
		resetStringInfo(&st->in);
	}
	/* a partial line past the limit: close now, do not buffer the rest */
	limit = line_limit(st, &setting);
	if (st->in.len > limit)
	{
		SbSessionClose(s, SB_CLOSE_LINE_TOO_LONG,
					   psprintf("More than %s (%d) bytes without a newline.",
								setting, limit));
		return false;
	}
	return true;
}

/* The channel failed or ended: what the peer sent before still counts */
static void
input_ended(SbSession *s, ssize_t rc)
{
	SbStream   *st = stream_of(s);
	int			saved_errno = errno;

	if (!SbSessionApplyPending(s))
		return;
	if (st->mux != NULL)
		SbMuxApplyPending(st->mux);
	/*
	 * A TLS error (an alert) before the first byte: the handshake failed
	 * after all (with TLS 1.3 the server checks a client's certificate
	 * after the client's handshake is done: its verdict comes as the first
	 * read)
	 */
	if (rc == SB_CHANNEL_ERROR && s->tls && !st->received && st->ch.error[0])
		SbSessionClose(s, SB_CLOSE_TLS_HANDSHAKE_FAILED,
					   st->ch.error[0] ? st->ch.error : strerror(saved_errno));
	else if (rc == SB_CHANNEL_ERROR && st->ch.fail_reason >= 0)
		SbSessionClose(s, st->ch.fail_reason, st->ch.error);
	else if (rc == SB_CHANNEL_ERROR)
		SbSessionClose(s, SB_CLOSE_CONNECTION_LOST,
					   st->ch.error[0] ? st->ch.error : strerror(saved_errno));
	else if (st->in.len > 0)
		SbSessionClose(s, SB_CLOSE_UNFINISHED_LINE,
					   psprintf("%d bytes of an unfinished line were dropped.", st->in.len));
	else if (rc == 0 && !s->outgoing && !s->substream && !st->ch.websocket &&
			 s->sync_received && !s->sync_sent && s->state == SB_SESSION_SYNCING)
	{
		/*
		 * A reference stream with tail: false sends "SYNC", half-closes,
		 * and reads on until ours, which waited for its (durable sync): it
		 * goes out before we close (stream_flush).  Over a WebSocket or a
		 * mux-demux sub-stream no one reads on: websocket-stream, a
		 * browser's WebSocket and a mux-demux sub-stream stop reading when
		 * their side ends (README, "One-shot syncs").
		 */
		st->input_done = true;
	}
	else
		SbSessionClose(s, SB_CLOSE_PEER_CLOSED, NULL);
}

/*
 * Reads what the channel has, up to a budget per call: the socket stays
 * readable (the wait set is level-triggered), so the loop serves the other
 * sessions and comes straight back.  Bytes the channel itself holds (TLS:
 * the rest of a decrypted record) would not keep the socket readable:
 * those are taken past the budget, at most a record's worth.
 */
static void
stream_read(SbSession *s)
{
	SbStream   *st = stream_of(s);
	char		buf[65536];
	int			budget = SB_READ_BUDGET;

	/* until a read finds nothing more: see SbSession.input_waiting */
	s->input_waiting = true;
	while (budget > 0 || st->ch.ops->pending(&st->ch) > 0)
	{
		ssize_t		n = st->ch.ops->read(&st->ch, buf, sizeof(buf));
		MemoryContext old;

		if (n == SB_CHANNEL_WOULD_BLOCK)
		{
			s->input_waiting = false;
			return;
		}
		if (n <= 0)
		{
			s->input_waiting = false;
			input_ended(s, n);
			return;
		}
		s->counters.bytes_in += n;
		st->received = true;
		budget -= n;
		s->counters.last_activity = GetCurrentTimestamp();
		old = MemoryContextSwitchTo(s->session_cxt);
		appendBinaryStringInfo(&st->in, buf, n);
		MemoryContextSwitchTo(old);
		if (!st->detected)
		{
			SbUpgradeGuess guess = SbWebSocketGuess(st->in.data, st->in.len);

			if (guess == SB_UPGRADE_UNDECIDED)
				continue;
			st->detected = true;
			if (guess == SB_UPGRADE_YES)
			{
				/* the request's bytes go to the WebSocket handshake */
				SbChannelWebSocketAccept(&st->ch, s->cxt, st->in.data, st->in.len);
				resetStringInfo(&st->in);
				st->handshaking = true;
				continue_handshake(s);
				return;
			}
		}
		st->line_bytes = true;
		/* the first line, unless a silent start already gave the model */
		if (!st->mux_checked && !st->header_received)
		{
			SbMuxGuess	guess = SbMuxGuessFrame(st->in.data, st->in.len);

			if (guess != SB_MUX_UNDECIDED)
				st->mux_checked = true;
			if (guess == SB_MUX_YES)
			{
				/* its frames carry sub-streams: no header of its own */
				st->mux = SbMuxBegin(s);
				st->header_received = true;
				st->quiet_deadline = 0;
				/* peer_status: a live connection of no model of its own */
				s->state = SB_SESSION_LIVE;
			}
		}
		if (st->mux != NULL)
		{
			if (!SbMuxInput(st->mux, &st->in))
				return;
			continue;
		}
		if (!take_lines(s))
			return;
		if (s->npending >= SB_APPLY_BATCH && !SbSessionApplyPending(s))
			return;
	}
}

/* ---- output ---- */

static bool
stream_flush(SbSession *s)
{
	SbStream   *st = stream_of(s);

	while (SbSessionIsOpen(s) && SbSessionOutboxLength(s) > 0 &&
		   st->ch.sock != PGINVALID_SOCKET && !st->connecting && !st->handshaking)
	{
		ssize_t		n = st->ch.ops->write(&st->ch, s->out.data + s->out_off,
										  SbSessionOutboxLength(s));

		if (n == SB_CHANNEL_WOULD_BLOCK)
			break;
		if (n < 0)
		{
			input_ended(s, n);
			break;
		}
		SbSessionOutboxConsumed(s, n);
	}
	if (st->input_done && s->sync_sent && SbSessionOutboxLength(s) == 0)
		SbSessionClose(s, SB_CLOSE_PEER_CLOSED, NULL);
	return SbSessionIsOpen(s);
}

/* ---- the worker's calls ---- */

static void
stream_wait_sockets(SbSession *s, SbWaitSocket *socks)
{
	SbStream   *st = stream_of(s);

	socks[1].sock = PGINVALID_SOCKET;
	socks[1].events = 0;
	socks[0].sock = st->ch.sock;
	if (st->ch.sock == PGINVALID_SOCKET)
		socks[0].events = 0;
	else if (st->connecting)
		socks[0].events = WL_SOCKET_CONNECTED;
	else if (st->input_done)
		socks[0].events = SbSessionOutboxLength(s) > 0 ? WL_SOCKET_WRITEABLE : 0;
	else
		socks[0].events = st->ch.ops->wait_events(&st->ch,
												  !st->handshaking && SbSessionOutboxLength(s) > 0);
}

static void
stream_handle(SbSession *s, int index, uint32 events)
{
	SbStream   *st = stream_of(s);
	bool		output;

	if (index != 0 || st->ch.sock == PGINVALID_SOCKET)
		return;
	if (st->connecting)
	{
		finish_connect(s);
		return;
	}
	if (st->handshaking)
	{
		continue_handshake(s);
		return;
	}
	output = SbSessionOutboxLength(s) > 0;
	if ((events & WL_SOCKET_WRITEABLE) && !stream_flush(s))
		return;
	if (st->input_done)
		return;					/* nothing more to read */
	/* writable with nothing to send: the channel's read waited for it */
	if ((events & WL_SOCKET_READABLE) || ((events & WL_SOCKET_WRITEABLE) && !output))
		stream_read(s);
}

/* Whether a silent client is waiting to be given the default model */
static bool
waiting_for_default(SbStream *st)
{
	return st->quiet_deadline != 0 && !st->header_received &&
		!st->handshaking && !st->line_bytes && !st->connecting;
}

static TimestampTz
stream_deadline(SbSession *s)
{
	SbStream   *st = stream_of(s);

	if (waiting_for_default(st))
		return Min(st->deadline, st->quiet_deadline);
	return st->connecting || !st->header_received ? st->deadline : 0;
}

static void
stream_check_deadline(SbSession *s, TimestampTz now)
{
	SbStream   *st = stream_of(s);
	TimestampTz deadline = stream_deadline(s);

	if (deadline == 0 || deadline > now)
		return;
	if (waiting_for_default(st) && st->quiet_deadline <= now &&
		st->quiet_deadline <= st->deadline)
	{
		start_default_model(s);
		return;
	}
	if (st->connecting)
		SbSessionClose(s, SB_CLOSE_CONNECT_TIMEOUT,
					   psprintf("Not connected within scuttlebutt.handshake_timeout (%d ms).",
								sb_handshake_timeout_ms));
	else if (st->handshaking)
		SbSessionClose(s, SB_CLOSE_HANDSHAKE_TIMEOUT,
					   psprintf("%s handshake not done within scuttlebutt.handshake_timeout (%d ms).",
								st->ch.ops->farewell ? "WebSocket" : "TLS",
								sb_handshake_timeout_ms));
	else
		SbSessionClose(s, SB_CLOSE_HANDSHAKE_TIMEOUT,
					   psprintf("No header within scuttlebutt.handshake_timeout (%d ms).",
								sb_handshake_timeout_ms));
}

static bool
stream_idle(SbSession *s pg_attribute_unused())
{
	return true;				/* the outbox is all it holds */
}

const SbTransportOps SbStreamTransport = {
	.name = "stream",
	.takes_clock = false,
	.applies_without_flush = false,
	.configure = stream_configure,
	.start = stream_start,
	.wait_sockets = stream_wait_sockets,
	.handle = stream_handle,
	.flush = stream_flush,
	.deadline = stream_deadline,
	.check_deadline = stream_check_deadline,
	.idle = stream_idle,
	.disconnect = stream_disconnect,
};
