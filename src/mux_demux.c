/*-------------------------------------------------------------------------
 *
 * mux_demux.c
 *	  Many models over one stream connection, as the npm mux-demux does it.
 *
 * level-scuttlebutt's clients open one connection and, per model, pipe
 * model.createStream() into mux.createStream(name): the sub-stream's meta
 * names the model, and the scuttlebutt line protocol's text travels as its
 * "data" (see mux_demux.h for the frames).  An incoming connection whose
 * first line is a JSON array rather than a header object is such a one
 * (stream.c hands it over).
 *
 * Each sub-stream is a session of its own in a status slot of the worker
 * (SbWorkerAdopt), with the stream transport over a "sub-channel" that
 * reads what "data" frames brought and writes "data" frames into the
 * connection's outbox: its header, listen rules (for its model, with the
 * connection's address, certificate and token), privileges, history and
 * limits are those of a connection of its own.  A sub-stream that is
 * closed sends "error" with the reason (unless the client ended it), then
 * "end" and "close"; the connection and its other sub-streams go on.
 *
 * Bounds: scuttlebutt.max_substreams open sub-streams per connection; a
 * frame at most twice the longest line a sub-stream may send (its text is
 * escaped once more), plus room for the id and the event; a sub-stream
 * writes only while the connection's outbox is below SB_OUT_HIGH_WATER,
 * and frames the server sends of its own accord (answers to unknown ids,
 * refusals) are dropped while the outbox is past twice that.  A frame that
 * is not JSON, not [string, string, ...], or opens an id already open
 * closes the connection (everything on it): the client is broken.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "channel.h"
#include "compat.h"
#include "guc.h"
#include "jstext.h"
#include "mux_demux.h"
#include "stream.h"
#include "transport.h"
#include "wire.h"
#include "worker.h"

/* Longest sub-stream id taken (mux-demux makes ids of 26 hex digits) */
#define SB_MUX_MAX_ID_BYTES 128
/* Most text of a sub-stream's output per "data" frame */
#define SB_MUX_FRAME_BYTES (64 * 1024)
/* Ids of sub-streams closed lately: frames still on their way are dropped */
#define SB_MUX_RECENT 32
/* At most one log message this often for sub-streams refused at "new" */
#define SB_MUX_REFUSAL_LOG_INTERVAL_MS 10000
/* Longest error message taken from the client (the log shows it) */
#define SB_MUX_MAX_ERROR_BYTES 256

typedef struct SbMuxSub
{
	SbMux	   *mux;			/* NULL once the connection is gone */
	SbSession  *session;
	char	   *id;
	const char *in;				/* text of a "data" frame being read */
	int			in_len;
	bool		eof;			/* the client ended its side ("end") */
	bool		paused;			/* the client asked for a pause */
} SbMuxSub;

struct SbMux
{
	SbSession  *carrier;
	MemoryContext cxt;			/* the carrier's; the frame's parse */
	MemoryContext frame_cxt;
	SbMuxSub  **subs;
	int			nsubs;
	int			max_subs;		/* scuttlebutt.max_substreams at the start */
	char	   *recent[SB_MUX_RECENT];
	int			next_recent;
};

/* ---- frames out ---- */

/* Starts a frame ["id","event" in buf */
static void
frame_start(StringInfo buf, const char *id, const char *event)
{
	resetStringInfo(buf);
	appendStringInfoChar(buf, '[');
	JsAppendString(buf, id, strlen(id));
	appendStringInfoString(buf, ",\"");
	appendStringInfoString(buf, event);
	appendStringInfoChar(buf, '"');
}

/*
 * Sends a frame the server says of its own accord (not a sub-stream's
 * data): dropped while the connection's outbox is far behind, so a client
 * that sends without reading cannot grow it
 */
static void
send_control(SbMux *mux, const char *id, const char *event, const char *text)
{
	StringInfoData buf;

	if (SbSessionOutboxLength(mux->carrier) > 2 * SB_OUT_HIGH_WATER)
		return;
	initStringInfo(&buf);
	frame_start(&buf, id, event);
	if (text != NULL)
	{
		appendStringInfoChar(&buf, ',');
		JsAppendString(&buf, text, strlen(text));
	}
	appendStringInfoChar(&buf, ']');
	SbSessionAppendLine(mux->carrier, buf.data, buf.len);
	pfree(buf.data);
}

/* Refuses a sub-stream: "error" with why, then "end" and "close" */
static void
refuse_sub(SbMux *mux, const char *id, const char *why)
{
	send_control(mux, id, "error", why);
	send_control(mux, id, "end", NULL);
	send_control(mux, id, "close", NULL);
}

/* ---- the sub-channel: a sub-stream as a byte channel ---- */

static ssize_t
sub_read(SbChannel *ch, void *buf, size_t len)
{
	SbMuxSub   *sub = ch->state;
	size_t		n;

	if (sub->in_len > 0)
	{
		n = Min(len, (size_t) sub->in_len);
		memcpy(buf, sub->in, n);
		sub->in += n;
		sub->in_len -= n;
		return n;
	}
	if (sub->eof)
		return 0;
	if (sub->mux == NULL)
	{
		strlcpy(ch->error, "the multiplexed connection closed", sizeof(ch->error));
		return SB_CHANNEL_ERROR;
	}
	return SB_CHANNEL_WOULD_BLOCK;
}

/* How much of len bytes of text fit a frame, cut between characters */
static size_t
frame_cut(const char *text, size_t len)
{
	size_t		n = Min(len, SB_MUX_FRAME_BYTES);

	if (n == len)
		return n;
	/* a newline, else the start of a UTF-8 character */
	for (size_t i = n; i > n / 2; i--)
		if (text[i - 1] == '\n')
			return i;
	while (n > 1 && (text[n] & 0xC0) == 0x80)
		n--;
	return n;					/* never 0: the caller would write forever */
}

static ssize_t
sub_write(SbChannel *ch, const void *buf, size_t len)
{
	SbMuxSub   *sub = ch->state;
	SbMux	   *mux = sub->mux;
	StringInfoData frame;
	size_t		n;

	if (mux == NULL)
	{
		strlcpy(ch->error, "the multiplexed connection closed", sizeof(ch->error));
		return SB_CHANNEL_ERROR;
	}
	if (sub->paused || SbSessionOutboxLength(mux->carrier) >= SB_OUT_HIGH_WATER)
		return SB_CHANNEL_WOULD_BLOCK;
	n = frame_cut(buf, len);
	initStringInfo(&frame);
	frame_start(&frame, sub->id, "data");
	appendStringInfoChar(&frame, ',');
	JsAppendString(&frame, buf, n);
	appendStringInfoChar(&frame, ']');
	SbSessionAppendLine(mux->carrier, frame.data, frame.len);
	pfree(frame.data);
	return n;
}

static int
sub_handshake(SbChannel *ch pg_attribute_unused())
{
	return SB_CHANNEL_DONE;
}

static uint32
sub_wait_events(SbChannel *ch pg_attribute_unused(), bool output pg_attribute_unused())
{
	return 0;					/* the connection's socket is waited on */
}

static size_t
sub_pending(SbChannel *ch)
{
	return ((SbMuxSub *) ch->state)->in_len;
}

/* Forgets sub (its id kept a while: frames still on their way are dropped) */
static void
unlink_sub(SbMuxSub *sub)
{
	SbMux	   *mux = sub->mux;

	if (mux == NULL)
		return;
	for (int i = 0; i < mux->nsubs; i++)
		if (mux->subs[i] == sub)
		{
			mux->subs[i] = mux->subs[--mux->nsubs];
			break;
		}
	if (mux->recent[mux->next_recent])
		pfree(mux->recent[mux->next_recent]);
	mux->recent[mux->next_recent] = MemoryContextStrdup(mux->cxt, sub->id);
	mux->next_recent = (mux->next_recent + 1) % SB_MUX_RECENT;
	sub->mux = NULL;
}

/*
 * The sub-stream ends: the client learns why (unless it ended it, or the
 * server only stops), then "end" and "close".  A client the rules or
 * privileges refuse learns the reason and the model only, as a WebSocket
 * one does: nothing it could use to guess a secret (the log says more).
 */
static void
sub_farewell(SbChannel *ch, int reason)
{
	SbMuxSub   *sub = ch->state;
	SbSession  *s = sub->session;

	if (sub->mux == NULL)
		return;
	if (reason == SB_CHANNEL_GOING_AWAY)
		send_control(sub->mux, sub->id, "error", "the server is going away");
	else if (reason == SB_CLOSE_REJECTED_BY_RULE || reason == SB_CLOSE_NO_MATCHING_RULE ||
			 reason == SB_CLOSE_AUTH_FAILED || reason == SB_CLOSE_PERMISSION_DENIED)
		send_control(sub->mux, sub->id, "error",
					 psprintf("%s on model \"%s\"", SbCloseReasonName(reason),
							  s->model_name ? s->model_name : ""));
	else if (reason != SB_CLOSE_PEER_CLOSED)
		send_control(sub->mux, sub->id, "error", s->last_error);
	send_control(sub->mux, sub->id, "end", NULL);
	send_control(sub->mux, sub->id, "close", NULL);
}

static void
sub_close(SbChannel *ch)
{
	unlink_sub(ch->state);
	ch->sock = PGINVALID_SOCKET;
}

static const SbChannelOps sub_ops = {
	.read = sub_read,
	.write = sub_write,
	.handshake = sub_handshake,
	.wait_events = sub_wait_events,
	.pending = sub_pending,
	.close = sub_close,
	.farewell = sub_farewell,
};

/* ---- frames in ---- */

typedef struct Frame
{
	JsonLexContext *lex;
	bool		is_array;
	int			index;			/* the top-level element being parsed */
	int			nstrings;		/* leading elements that were strings */
	char	   *id;
	char	   *event;
	/* element 2 */
	bool		arg_is_string;
	char	   *arg;			/* its text, de-escaped, when a string */
	int			arg_len;
	bool		in_meta;		/* in {"meta": ...} of a "new" */
	bool		in_model;		/* in {"meta": {"model": ...}} */
	bool		in_token;		/* in {"meta": {"token": ...}} */
	char	   *model;
	char	   *token;
} Frame;

static SbJsonAction
on_array_start(void *state)
{
	Frame	   *f = state;

	if (f->lex->lex_level == 0)
		f->is_array = true;
	SB_JSON_ACTION_RETURN;
}

static SbJsonAction
on_element_start(void *state, bool isnull pg_attribute_unused())
{
	Frame	   *f = state;

	if (f->lex->lex_level == 1)
		f->index++;
	SB_JSON_ACTION_RETURN;
}

static SbJsonAction
on_field_start(void *state, char *fname, bool isnull pg_attribute_unused())
{
	Frame	   *f = state;
	int			level = f->lex->lex_level;

	if (level == 2 && f->index == 3)
		f->in_meta = strcmp(fname, "meta") == 0;
	else if (level == 3 && f->in_meta)
	{
		f->in_model = strcmp(fname, "model") == 0;
		f->in_token = strcmp(fname, "token") == 0;
	}
	SB_JSON_ACTION_RETURN;
}

static SbJsonAction
on_field_end(void *state, char *fname pg_attribute_unused(), bool isnull pg_attribute_unused())
{
	Frame	   *f = state;
	int			level = f->lex->lex_level;

	if (level == 2)
		f->in_meta = false;
	else if (level == 3)
		f->in_model = f->in_token = false;
	SB_JSON_ACTION_RETURN;
}

static SbJsonAction
on_scalar(void *state, char *token, JsonTokenType tokentype)
{
	Frame	   *f = state;
	int			level = f->lex->lex_level;
	bool		str = tokentype == JSON_TOKEN_STRING;

	if (level == 1)
	{
		if (str && f->index == f->nstrings + 1)
			f->nstrings++;
		if (f->index == 1 && str)
			f->id = token;
		else if (f->index == 2 && str)
			f->event = token;
		else if (f->index == 3 && str)
		{
			f->arg_is_string = true;
			f->arg = token;
			f->arg_len = strlen(token);
		}
	}
	else if (level == 2 && f->in_meta && str)
		f->model = token;		/* "meta": "name" */
	else if (level == 3 && f->in_model && str)
		f->model = token;
	else if (level == 3 && f->in_token && str)
		f->token = token;
	SB_JSON_ACTION_RETURN;
}

/*
 * Parses one frame into f (in the current context); an error message if
 * it is no frame, with the reason to close the connection for
 */
static const char *
parse_frame(const char *text, int len, Frame *f, SbCloseReason *reason)
{
	JsonSemAction sem;
	JsonParseErrorType rc;
	bool		line_break;

	memset(f, 0, sizeof(*f));
	*reason = SB_CLOSE_INVALID_JSON;
	if (SbJsonScan(text, len, &line_break) < 0)
	{
		*reason = SB_CLOSE_TOO_DEEP;
		return "JSON nesting is deeper than " CppAsString2(SB_MAX_JSON_DEPTH) " levels";
	}
	if (pg_encoding_verifymbstr(PG_UTF8, text, len) != len)
		return "invalid UTF-8";
	f->lex = SbMakeJsonLexContext(text, len, GetDatabaseEncoding(), true);
	memset(&sem, 0, sizeof(sem));
	sem.semstate = f;
	sem.array_start = on_array_start;
	sem.array_element_start = on_element_start;
	sem.object_field_start = on_field_start;
	sem.object_field_end = on_field_end;
	sem.scalar = on_scalar;
	rc = pg_parse_json(f->lex, &sem);
	if (rc != JSON_SUCCESS)
		return psprintf("invalid JSON: %s", json_errdetail(rc, f->lex));
	*reason = SB_CLOSE_MUX_PROTOCOL;
	if (!f->is_array || f->nstrings < 2)
		return "a frame must be a JSON array [id, event, ...] of two strings at least";
	if (strlen(f->id) > SB_MUX_MAX_ID_BYTES)
		return psprintf("a sub-stream id is longer than %d bytes", SB_MUX_MAX_ID_BYTES);
	return NULL;
}

static SbMuxSub *
find_sub(SbMux *mux, const char *id)
{
	for (int i = 0; i < mux->nsubs; i++)
		if (strcmp(mux->subs[i]->id, id) == 0)
			return mux->subs[i];
	return NULL;
}

static bool
closed_lately(SbMux *mux, const char *id)
{
	for (int i = 0; i < SB_MUX_RECENT; i++)
		if (mux->recent[i] && strcmp(mux->recent[i], id) == 0)
			return true;
	return false;
}

/*
 * Refused before it had a session: counted as a connection is, logged at
 * most once per SB_MUX_REFUSAL_LOG_INTERVAL_MS (a client may send "new"
 * frames as fast as it likes)
 */
static void
refuse_new(SbMux *mux, const char *id, SbCloseReason reason, const char *detail)
{
	static TimestampTz logged_at = 0;
	static int64 unlogged = 0;
	TimestampTz now = GetCurrentTimestamp();
	char	   *why = psprintf("%s: %s", SbCloseReasonName(reason), detail);

	SbCountConnectionError(reason, mux->carrier->remote_addr);
	unlogged++;
	if (TimestampDifferenceExceeds(logged_at, now, SB_MUX_REFUSAL_LOG_INTERVAL_MS))
	{
		ereport(SbCloseReasonLevel(reason),
				(errcode(SbCloseReasonErrcode(reason)),
				 errmsg("scuttlebutt: refusing a sub-stream from %s: %s",
						mux->carrier->remote_addr, SbCloseReasonName(reason)),
				 errdetail_internal("%s (%lld sub-stream(s) refused since the last such message, this one included)",
									detail, (long long) unlogged)));
		logged_at = now;
		unlogged = 0;
	}
	refuse_sub(mux, id, why);
}

/* ["id","new",{"meta":...}]: a sub-stream for the model meta names */
static void
open_sub(SbMux *mux, Frame *f)
{
	SbSession  *carrier = mux->carrier;
	const char *model = f->model;
	SbSession  *s;
	SbMuxSub   *sub;

	if (model == NULL && sb_default_model != NULL && sb_default_model[0] != '\0')
		model = sb_default_model;
	if (model == NULL)
	{
		refuse_new(mux, f->id, SB_CLOSE_NO_MODEL_NAMED,
				   "The sub-stream's meta names no model (a string, or an object with a \"model\" field), and scuttlebutt.default_model is empty.");
		return;
	}
	if (f->token != NULL && strlen(f->token) > SB_MAX_TOKEN_BYTES)
	{
		refuse_new(mux, f->id, SB_CLOSE_AUTH_FAILED,
				   psprintf("The token in the sub-stream's meta is longer than %d bytes.",
							SB_MAX_TOKEN_BYTES));
		return;
	}
	if (mux->nsubs >= mux->max_subs)
	{
		refuse_new(mux, f->id, SB_CLOSE_TOO_MANY_SUBSTREAMS,
				   psprintf("This connection has %d sub-streams open already (scuttlebutt.max_substreams).",
							mux->nsubs));
		return;
	}

	s = SbSessionCreate(MemoryContextGetParent(carrier->cxt), false,
						&SbStreamTransport);
	s->substream = true;
	s->send_enabled = s->want_send = carrier->want_send;
	s->receive_enabled = s->want_receive = carrier->want_receive;
	strlcpy(s->remote_addr, carrier->remote_addr, sizeof(s->remote_addr));
	if (!SbWorkerAdopt(s))
	{
		/* it has no transport yet: nothing to disconnect */
		MemoryContextDelete(s->cxt);
		refuse_new(mux, f->id, SB_CLOSE_TOO_MANY_CONNECTIONS,
				   "Every status slot of the worker is taken.");
		return;
	}
	sub = MemoryContextAllocZero(s->cxt, sizeof(SbMuxSub));
	sub->mux = mux;
	sub->session = s;
	sub->id = MemoryContextStrdup(s->cxt, f->id);
	mux->subs[mux->nsubs++] = sub;
	SbStreamOpenSub(s, carrier, &sub_ops, sub, model, f->token);
}

/* Has the sub-stream's session read what came (its own errors are its own) */
static void
read_step(SbSession *s, void *arg pg_attribute_unused())
{
	s->ops->handle(s, 0, WL_SOCKET_READABLE);
}

static void
deliver(SbMuxSub *sub)
{
	SbSession  *s = sub->session;

	if (SbSessionIsOpen(s))
		(void) SbSessionGuard(s, read_step, NULL);
	/* what a closed one was not given is dropped */
	sub->in = NULL;
	sub->in_len = 0;
}

/* Ends the sub-stream as the client asks ("error" or "close") */
static void
end_sub(SbMuxSub *sub, SbCloseReason reason, const char *detail)
{
	SbSession  *s = sub->session;

	if (!SbSessionIsOpen(s))
		return;
	if (SbSessionApplyPending(s))
		SbSessionClose(s, reason, detail);
}

/* Serves one frame; false if the connection was closed */
static bool
handle_frame(SbMux *mux, const char *text, int len)
{
	Frame		f;
	SbCloseReason reason;
	const char *bad = parse_frame(text, len, &f, &reason);
	SbMuxSub   *sub;

	if (bad != NULL)
	{
		SbSessionClose(mux->carrier, reason, bad);
		return false;
	}
	sub = find_sub(mux, f.id);
	if (strcmp(f.event, "new") == 0)
	{
		if (sub != NULL)
		{
			SbSessionClose(mux->carrier, SB_CLOSE_MUX_PROTOCOL,
						   psprintf("A sub-stream \"%s\" is open already.", f.id));
			return false;
		}
		open_sub(mux, &f);
		return true;
	}
	if (sub == NULL)
	{
		/* closed lately, or "close" (mux-demux drops those too) */
		if (closed_lately(mux, f.id) || strcmp(f.event, "close") == 0 ||
			strcmp(f.event, "error") == 0)
			return true;
		send_control(mux, f.id, "error",
					 psprintf("no sub-stream \"%s\" is open on this connection (a \"new\" frame opens one)",
							  f.id));
		return true;
	}
	if (strcmp(f.event, "data") == 0)
	{
		if (!f.arg_is_string)
		{
			end_sub(sub, SB_CLOSE_MUX_PROTOCOL,
					"Sub-stream data must be a string: the text of the scuttlebutt line protocol (createStream() without a \"raw\" wrapper).");
			return true;
		}
		sub->in = f.arg;
		sub->in_len = f.arg_len;
		deliver(sub);
	}
	else if (strcmp(f.event, "end") == 0)
	{
		sub->eof = true;
		deliver(sub);
	}
	else if (strcmp(f.event, "error") == 0)
		end_sub(sub, SB_CLOSE_CONNECTION_LOST,
				psprintf("The client's sub-stream failed: %.*s", SB_MUX_MAX_ERROR_BYTES,
						 f.arg_is_string ? f.arg : "(no message)"));
	else if (strcmp(f.event, "close") == 0)
		end_sub(sub, SB_CLOSE_PEER_CLOSED, NULL);
	else if (strcmp(f.event, "pause") == 0)
		sub->paused = true;
	else if (strcmp(f.event, "resume") == 0)
		sub->paused = false;
	/* other events mean nothing to a scuttlebutt stream: ignored */
	return true;
}

/* The longest frame: a sub-stream's longest line, escaped once more */
static int
frame_limit(void)
{
	return 2 * Max(sb_max_line_bytes, sb_max_header_bytes) + 1024;
}

/* ---- the connection ---- */

SbMuxGuess
SbMuxGuessFrame(const char *bytes, int len)
{
	for (int i = 0; i < len; i++)
	{
		if (bytes[i] == ' ' || bytes[i] == '\t' || bytes[i] == '\r' ||
			bytes[i] == '\n')
			continue;
		return bytes[i] == '[' ? SB_MUX_YES : SB_MUX_NO;
	}
	return SB_MUX_UNDECIDED;
}

SbMux *
SbMuxBegin(SbSession *carrier)
{
	SbMux	   *mux = MemoryContextAllocZero(carrier->cxt, sizeof(SbMux));

	mux->carrier = carrier;
	mux->cxt = carrier->cxt;
	mux->frame_cxt = AllocSetContextCreate(carrier->cxt, "scuttlebutt mux frame",
										   ALLOCSET_SMALL_SIZES);
	mux->max_subs = sb_max_substreams;
	mux->subs = MemoryContextAllocZero(carrier->cxt,
									   sizeof(SbMuxSub *) * mux->max_subs);
	return mux;
}

bool
SbMuxInput(SbMux *mux, StringInfo in)
{
	int			start = 0;
	int			limit = frame_limit();
	char	   *nl;

	while ((nl = memchr(in->data + start, '\n', in->len - start)) != NULL)
	{
		int			len = nl - (in->data + start);
		const char *line = in->data + start;
		MemoryContext old;
		bool		ok;

		if (len > limit)
		{
			SbSessionClose(mux->carrier, SB_CLOSE_LINE_TOO_LONG,
						   psprintf("A frame of %d bytes is longer than twice scuttlebutt.max_line_bytes or max_header_bytes, plus 1 kB (%d).",
									len, limit));
			return false;
		}
		start += len + 1;
		while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' '))
			len--;
		if (len == 0)
			continue;
		old = MemoryContextSwitchTo(mux->frame_cxt);
		ok = handle_frame(mux, line, len);
		MemoryContextSwitchTo(old);
		MemoryContextReset(mux->frame_cxt);
		if (!ok)
			return false;
	}
	if (start > 0)
	{
		memmove(in->data, in->data + start, in->len - start);
		in->len -= start;
		in->data[in->len] = '\0';
	}
	if (in->len > limit)
	{
		SbSessionClose(mux->carrier, SB_CLOSE_LINE_TOO_LONG,
					   psprintf("More than %d bytes without a newline.", limit));
		return false;
	}
	return true;
}

static void
apply_step(SbSession *s, void *arg pg_attribute_unused())
{
	(void) SbSessionApplyPending(s);
}

void
SbMuxApplyPending(SbMux *mux)
{
	/* backwards: one that fails is closed, and the last takes its place */
	for (int i = mux->nsubs - 1; i >= 0; i--)
		if (i < mux->nsubs && SbSessionIsOpen(mux->subs[i]->session))
			(void) SbSessionGuard(mux->subs[i]->session, apply_step, NULL);
}

void
SbMuxEnd(SbMux *mux, int reason)
{
	/* each is let go first: closing one must not touch the list or the outbox */
	while (mux->nsubs > 0)
	{
		SbMuxSub   *sub = mux->subs[--mux->nsubs];

		sub->mux = NULL;
		if (SbSessionIsOpen(sub->session))
			SbSessionClose(sub->session,
						   reason >= 0 ? reason : SB_CLOSE_CONNECTION_LOST,
						   "The multiplexed connection the sub-stream came on closed.");
	}
}
