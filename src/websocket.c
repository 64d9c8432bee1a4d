/*-------------------------------------------------------------------------
 *
 * websocket.c
 *	  WebSocket (RFC 6455) as a byte channel over TCP or TLS.
 *
 * The channel wraps the connection's TCP or TLS channel: its handshake
 * reads the client's HTTP/1.1 Upgrade request and answers 101 Switching
 * Protocols (or an HTTP error, and the session ends); then reads return
 * the payload of the client's data frames, text or binary, and writes send
 * frames of the kind the client's first message was (binary until then,
 * text frames cut at UTF-8 character boundaries).  Frames are not
 * buffered whole: a data frame's payload is unmasked and handed on as it
 * arrives, so a message may hold any number of lines or part of one, and
 * the line protocol above bounds lines as it does on TCP.  What this file
 * buffers per connection is a read buffer of SB_WS_READ_BUFFER bytes, the
 * request head until its end, and at most one outgoing frame.
 *
 * Checked, each closing with its RFC 6455 code and a close reason the
 * session logs: client frames must be masked, reserved bits clear (no
 * extension is negotiated), opcodes known, control frames whole and at
 * most 125 bytes, continuations inside a message and new messages outside
 * one; a frame longer than any line may be (scuttlebutt.max_header_bytes,
 * or max_line_bytes if larger) is refused at its header (1009).  Pings are
 * answered with pongs, and a close frame with a close frame, after which
 * the input ends.  The request head may take scuttlebutt.max_line_bytes.
 *
 * What the request asks for, and the answer, are websocket_http.c's: a
 * token it carries is kept for the listen rules (stream.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "storage/latch.h"
#include "utils/memutils.h"

#include "guc.h"
#include "session.h"
#include "websocket.h"
#include "websocket_http.h"

/* Bytes read from the channel below at a time (frame headers, payload) */
#define SB_WS_READ_BUFFER (16 * 1024)
/* Payload bytes per outgoing frame, at most: its buffer stays below SB_OUT_KEEP */
#define SB_WS_OUT_FRAME (16 * 1024)
/* opcodes */
#define WS_CONTINUATION 0x0
#define WS_TEXT 0x1
#define WS_BINARY 0x2
#define WS_CLOSE 0x8
#define WS_PING 0x9
#define WS_PONG 0xA

/* close codes */
#define WS_NORMAL 1000
#define WS_GOING_AWAY 1001
#define WS_PROTOCOL_ERROR 1002
#define WS_INVALID_DATA 1007
#define WS_POLICY 1008
#define WS_TOO_BIG 1009
#define WS_INTERNAL 1011
#define WS_TRY_LATER 1013

typedef struct WsState
{
	MemoryContext cxt;
	SbChannel	inner;			/* the TCP or TLS channel below */
	bool		handshaken;
	bool		responding;		/* the handshake's answer is being written */
	bool		refused;		/* ... and it is an HTTP error */
	StringInfoData head;		/* the request, until its blank line */
	int			head_scanned;	/* head.data[0 .. head_scanned) hold no end */

	/* input: raw[raw_off .. raw_len) are read but not decoded */
	char	   *raw;
	int			raw_off;
	int			raw_len;
	int			raw_cap;

	/* the frame being read */
	bool		in_frame;
	int			opcode;
	bool		fin;
	uint64		remaining;		/* payload bytes not yet read */
	uint8		mask[4];
	int			mask_pos;
	bool		in_message;		/* a fragmented data message is open */
	bool		opcode_chosen;	/* the client's first message decided ours */
	int			out_opcode;		/* WS_BINARY or WS_TEXT */

	/* output: out.data[out_off .. out.len) are frames not yet written */
	StringInfoData out;
	int			out_off;
	bool		close_sent;
	bool		close_received;
	bool		failed;			/* a protocol error closed the input */
} WsState;

static inline WsState *
ws_of(SbChannel *ch)
{
	return (WsState *) ch->state;
}

/* A WebSocket client's first bytes are its request line: "GET " */
SbUpgradeGuess
SbWebSocketGuess(const char *bytes, int len)
{
	static const char get[] = "GET ";
	int			n = Min(len, 4);

	if (memcmp(bytes, get, n) != 0)
		return SB_UPGRADE_NO;
	return n == 4 ? SB_UPGRADE_YES : SB_UPGRADE_UNDECIDED;
}

/* ---- output ---- */

/* A frame (server frames are never masked) appended to the output */
static void
queue_frame(WsState *w, int opcode, const char *payload, size_t len)
{
	MemoryContext old = MemoryContextSwitchTo(w->cxt);
	unsigned char hdr[10];
	int			n = 0;

	hdr[n++] = 0x80 | opcode;
	if (len < 126)
		hdr[n++] = (unsigned char) len;
	else if (len <= 0xFFFF)
	{
		hdr[n++] = 126;
		hdr[n++] = (unsigned char) (len >> 8);
		hdr[n++] = (unsigned char) len;
	}
	else
	{
		hdr[n++] = 127;
		for (int i = 7; i >= 0; i--)
			hdr[n++] = (unsigned char) ((uint64) len >> (8 * i));
	}
	appendBinaryStringInfo(&w->out, (char *) hdr, n);
	if (len > 0)
		appendBinaryStringInfo(&w->out, payload, len);
	MemoryContextSwitchTo(old);
}

/* A close frame with code and text (at most 123 bytes, cut at a character) */
static void
queue_close(WsState *w, int code, const char *text)
{
	char		payload[125];
	size_t		tlen = text ? strlen(text) : 0;

	if (w->close_sent)
		return;
	if (tlen > 123)
	{
		tlen = 123;
		while (tlen > 0 && ((unsigned char) text[tlen] & 0xC0) == 0x80)
			tlen--;
	}
	payload[0] = (char) (code >> 8);
	payload[1] = (char) (code & 0xFF);
	if (tlen > 0)
		memcpy(payload + 2, text, tlen);
	queue_frame(w, WS_CLOSE, payload, 2 + tlen);
	w->close_sent = true;
}

/*
 * Writes what output waits to the channel below: 0 when all of it went,
 * SB_CHANNEL_WOULD_BLOCK when some waits, SB_CHANNEL_ERROR (ch->error set)
 */
static int
flush_out(SbChannel *ch, WsState *w)
{
	while (w->out_off < w->out.len)
	{
		ssize_t		n = w->inner.ops->write(&w->inner, w->out.data + w->out_off,
											w->out.len - w->out_off);

		if (n == SB_CHANNEL_WOULD_BLOCK)
			return SB_CHANNEL_WOULD_BLOCK;
		if (n < 0)
		{
			strlcpy(ch->error, w->inner.error, sizeof(ch->error));
			return SB_CHANNEL_ERROR;
		}
		w->out_off += n;
	}
	w->out_off = 0;
	resetStringInfo(&w->out);
	/* a buffer grown by a long frame is not kept by an idle connection */
	if (w->out.maxlen > SB_OUT_KEEP)
	{
		pfree(w->out.data);
		w->out.data = MemoryContextAlloc(w->cxt, SB_OUT_INITIAL);
		w->out.maxlen = SB_OUT_INITIAL;
		resetStringInfo(&w->out);
	}
	return 0;
}

/* ---- the handshake ---- */

/*
 * Takes the answer to the request: the response to write, and when it is
 * an HTTP error, why the session ends once it is written (or could not be)
 */
static void
set_answer(SbChannel *ch, WsState *w, const SbWsAnswer *a)
{
	MemoryContext old = MemoryContextSwitchTo(w->cxt);

	resetStringInfo(&w->out);
	w->out_off = 0;
	appendStringInfoString(&w->out, a->response);
	MemoryContextSwitchTo(old);
	w->responding = true;
	if (a->upgrade)
	{
		ch->token = a->token;
		ch->token_too_long = a->token_too_long;
		return;
	}
	w->refused = true;
	w->close_sent = true;		/* no frame may follow an HTTP error */
	strlcpy(ch->error, a->detail, sizeof(ch->error));
	ch->fail_reason = a->reason;
}

/* The end of the request head in w->head (past its blank line), or -1 */
static int
head_end(WsState *w)
{
	int			i;

	for (i = w->head_scanned; i + 1 < w->head.len; i++)
	{
		if (w->head.data[i] != '\n')
			continue;
		if (w->head.data[i + 1] == '\n')
			return i + 2;
		if (w->head.data[i + 1] == '\r' && i + 2 < w->head.len &&
			w->head.data[i + 2] == '\n')
			return i + 3;
	}
	/* the last two bytes may begin the end: look at them again */
	w->head_scanned = Max(i - 2, 0);
	return -1;
}

/*
 * Reads the request a step at a time, then writes the answer; once the
 * 101 is written the channel carries frames
 */
static int
ws_handshake(SbChannel *ch)
{
	WsState    *w = ws_of(ch);
	int			rc;

	if (w->handshaken)
		return SB_CHANNEL_DONE;
	while (!w->responding)
	{
		int			end = head_end(w);
		char		buf[4096];
		ssize_t		n;

		if (end >= 0)
		{
			char	   *head = MemoryContextAlloc(w->cxt, end + 1);

			memcpy(head, w->head.data, end);
			head[end] = '\0';

			/* bytes after the head are the client's first frames */
			if (w->head.len > end)
			{
				int			extra = w->head.len - end;

				if (extra > w->raw_cap)
				{
					w->raw = repalloc(w->raw, extra);
					w->raw_cap = extra;
				}
				memcpy(w->raw, w->head.data + end, extra);
				w->raw_len = extra;
			}
			{
				SbWsAnswer	answer;
				MemoryContext old = MemoryContextSwitchTo(w->cxt);

				SbWebSocketAnswer(head, &answer);
				MemoryContextSwitchTo(old);
				set_answer(ch, w, &answer);
			}
			pfree(w->head.data);
			w->head.data = NULL;
			break;
		}
		if (w->head.len > sb_max_line_bytes)
		{
			SbWsAnswer	answer;
			MemoryContext old = MemoryContextSwitchTo(w->cxt);

			SbWebSocketRefusal(&answer, "431 Request Header Fields Too Large", NULL,
							   SB_CLOSE_LINE_TOO_LONG,
							   psprintf("The WebSocket request is longer than scuttlebutt.max_line_bytes (%d).",
										sb_max_line_bytes));
			MemoryContextSwitchTo(old);
			set_answer(ch, w, &answer);
			break;
		}
		n = w->inner.ops->read(&w->inner, buf, sizeof(buf));
		if (n == SB_CHANNEL_WOULD_BLOCK)
			return SB_CHANNEL_WOULD_BLOCK;
		if (n <= 0)
		{
			snprintf(ch->error, sizeof(ch->error),
					 "%s during the WebSocket handshake",
					 n == 0 ? "the peer closed the connection"
					 : (w->inner.error[0] ? w->inner.error : strerror(errno)));
			ch->fail_reason = SB_CLOSE_WEBSOCKET_HANDSHAKE;
			return SB_CHANNEL_ERROR;
		}
		{
			MemoryContext old = MemoryContextSwitchTo(w->cxt);

			appendBinaryStringInfo(&w->head, buf, n);
			MemoryContextSwitchTo(old);
		}
	}
	rc = flush_out(ch, w);
	if (rc == SB_CHANNEL_WOULD_BLOCK)
		return SB_CHANNEL_WOULD_BLOCK;
	if (rc == SB_CHANNEL_ERROR)
	{
		ch->fail_reason = SB_CLOSE_WEBSOCKET_HANDSHAKE;
		return SB_CHANNEL_ERROR;
	}
	if (w->refused)
	{
		/* ch->error and fail_reason say why; the answer is written */
		return SB_CHANNEL_ERROR;
	}
	w->handshaken = true;
	ch->websocket = true;
	ereport(DEBUG1,
			(errmsg_internal("scuttlebutt: WebSocket handshake done%s",
							 ch->token || ch->token_too_long ? " (with a token)" : "")));
	return SB_CHANNEL_DONE;
}

/* ---- input ---- */

/*
 * A protocol error: a close frame with code goes out (at close), the input
 * ends, and the session closes with reason and detail
 */
static ssize_t
fail(SbChannel *ch, WsState *w, int code, int reason, const char *detail)
{
	queue_close(w, code, reason == SB_CLOSE_LINE_TOO_LONG ? "message too big" : "protocol error");
	w->failed = true;
	snprintf(ch->error, sizeof(ch->error), "%s (close code %d)", detail, code);
	ch->fail_reason = reason;
	return SB_CHANNEL_ERROR;
}

/* The longest frame a client may send: as long as any line may be, and its newline */
static uint64
max_frame(void)
{
	return (uint64) Max(sb_max_line_bytes, sb_max_header_bytes) + 1;
}

/*
 * Reads more from the channel below into the read buffer (moving what is
 * left to its start): bytes read, 0 at its end, or SB_CHANNEL_*
 */
static ssize_t
fill(SbChannel *ch, WsState *w)
{
	ssize_t		n;

	if (w->raw_off > 0)
	{
		memmove(w->raw, w->raw + w->raw_off, w->raw_len - w->raw_off);
		w->raw_len -= w->raw_off;
		w->raw_off = 0;
	}
	if (w->raw_len >= w->raw_cap)
		return SB_CHANNEL_WOULD_BLOCK;	/* cannot happen: a header is short */
	n = w->inner.ops->read(&w->inner, w->raw + w->raw_len, w->raw_cap - w->raw_len);
	if (n > 0)
		w->raw_len += n;
	else if (n == SB_CHANNEL_ERROR)
		strlcpy(ch->error, w->inner.error, sizeof(ch->error));
	return n;
}

/*
 * Parses a frame header from the read buffer: 1 when one was taken, 0 when
 * more bytes are needed, SB_CHANNEL_ERROR for a bad one
 */
static int
take_frame_header(SbChannel *ch, WsState *w)
{
	unsigned char *p = (unsigned char *) w->raw + w->raw_off;
	int			avail = w->raw_len - w->raw_off;
	int			opcode;
	bool		fin;
	int			len7;
	int			need;
	uint64		len;

	if (avail < 2)
		return 0;
	fin = (p[0] & 0x80) != 0;
	opcode = p[0] & 0x0F;
	len7 = p[1] & 0x7F;
	/* what two bytes show is refused before the rest arrives */
	if (p[0] & 0x70)
		return fail(ch, w, WS_PROTOCOL_ERROR, SB_CLOSE_WEBSOCKET_PROTOCOL,
					"A frame has reserved bits set (no extension was negotiated).");
	if (opcode != WS_CONTINUATION && opcode != WS_TEXT && opcode != WS_BINARY &&
		opcode != WS_CLOSE && opcode != WS_PING && opcode != WS_PONG)
		return fail(ch, w, WS_PROTOCOL_ERROR, SB_CLOSE_WEBSOCKET_PROTOCOL,
					psprintf("A frame has the unknown opcode %d.", opcode));
	if (!(p[1] & 0x80))
		return fail(ch, w, WS_PROTOCOL_ERROR, SB_CLOSE_WEBSOCKET_PROTOCOL,
					"A client frame is not masked.");
	if (opcode & 0x8)
	{
		if (!fin)
			return fail(ch, w, WS_PROTOCOL_ERROR, SB_CLOSE_WEBSOCKET_PROTOCOL,
						"A control frame is fragmented.");
		if (len7 > 125)
			return fail(ch, w, WS_PROTOCOL_ERROR, SB_CLOSE_WEBSOCKET_PROTOCOL,
						"A control frame is longer than 125 bytes.");
	}
	else if (opcode == WS_CONTINUATION && !w->in_message)
		return fail(ch, w, WS_PROTOCOL_ERROR, SB_CLOSE_WEBSOCKET_PROTOCOL,
					"A continuation frame came outside a fragmented message.");
	else if (opcode != WS_CONTINUATION && w->in_message)
		return fail(ch, w, WS_PROTOCOL_ERROR, SB_CLOSE_WEBSOCKET_PROTOCOL,
					"A new message began inside a fragmented one.");

	need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + 4;
	if (avail < need)
		return 0;
	if (len7 == 126)
		len = ((uint64) p[2] << 8) | p[3];
	else if (len7 == 127)
	{
		len = 0;
		for (int i = 0; i < 8; i++)
			len = (len << 8) | p[2 + i];
		if (len >> 63)
			return fail(ch, w, WS_PROTOCOL_ERROR, SB_CLOSE_WEBSOCKET_PROTOCOL,
						"A frame's 64-bit length has its most significant bit set.");
	}
	else
		len = len7;
	if (!(opcode & 0x8) && len > max_frame())
		return fail(ch, w, WS_TOO_BIG, SB_CLOSE_LINE_TOO_LONG,
					psprintf("A WebSocket frame of " UINT64_FORMAT " bytes is longer than a line may be (%s, %d).",
							 len,
							 sb_max_header_bytes > sb_max_line_bytes
							 ? "scuttlebutt.max_header_bytes" : "scuttlebutt.max_line_bytes",
							 Max(sb_max_header_bytes, sb_max_line_bytes)));
	memcpy(w->mask, p + need - 4, 4);
	w->mask_pos = 0;
	w->raw_off += need;
	w->in_frame = true;
	w->opcode = opcode;
	w->fin = fin;
	w->remaining = len;
	if (opcode == WS_TEXT || opcode == WS_BINARY)
	{
		/* we answer in the kind of the client's first message */
		if (!w->opcode_chosen)
			w->out_opcode = opcode;
		w->opcode_chosen = true;
		w->in_message = !fin;
	}
	else if (opcode == WS_CONTINUATION)
		w->in_message = !fin;
	return 1;
}

/* Unmasks len payload bytes into dst */
static void
unmask(WsState *w, char *dst, const char *src, size_t len)
{
	for (size_t i = 0; i < len; i++)
	{
		dst[i] = src[i] ^ w->mask[w->mask_pos];
		w->mask_pos = (w->mask_pos + 1) & 3;
	}
}

/*
 * A whole control frame in the read buffer: answers a ping, notes a close
 * (answering it); returns 0 for a close (the input ends), 1 otherwise,
 * SB_CHANNEL_ERROR for a bad close frame
 */
static int
take_control(SbChannel *ch, WsState *w)
{
	char		payload[125];
	int			len = (int) w->remaining;

	unmask(w, payload, w->raw + w->raw_off, len);
	w->raw_off += len;
	w->remaining = 0;
	w->in_frame = false;
	switch (w->opcode)
	{
		case WS_PING:
			if (!w->close_sent)
				queue_frame(w, WS_PONG, payload, len);
			return 1;
		case WS_PONG:
			return 1;
		case WS_CLOSE:
			{
				int			code = WS_NORMAL;

				if (len == 1)
					return fail(ch, w, WS_PROTOCOL_ERROR, SB_CLOSE_WEBSOCKET_PROTOCOL,
								"A close frame has a one-byte payload.");
				if (len >= 2)
				{
					code = ((unsigned char) payload[0] << 8) | (unsigned char) payload[1];
					if (code < 1000 || code >= 5000 ||
						code == 1004 || code == 1005 || code == 1006 ||
						(code > 1011 && code < 3000))
						return fail(ch, w, WS_PROTOCOL_ERROR, SB_CLOSE_WEBSOCKET_PROTOCOL,
									psprintf("A close frame has the invalid code %d.", code));
				}
				w->close_received = true;
				queue_close(w, code, NULL);
				return 0;
			}
	}
	return 1;
}

/*
 * Payload bytes of data frames, as they arrive; control frames between
 * them are answered on the way.  0 once the client's close frame came (or
 * the connection ended), SB_CHANNEL_ERROR for a bad frame.
 */
static ssize_t
ws_read(SbChannel *ch, void *buf, size_t len)
{
	WsState    *w = ws_of(ch);

	/* a pong or close answer waiting goes first, if it can */
	if (flush_out(ch, w) == SB_CHANNEL_ERROR)
		return SB_CHANNEL_ERROR;
	if (w->failed)
		return SB_CHANNEL_ERROR;
	if (w->close_received)
		return 0;
	for (;;)
	{
		int			avail = w->raw_len - w->raw_off;
		ssize_t		n;

		if (w->in_frame && !(w->opcode & 0x8))
		{
			size_t		take;

			if (w->remaining == 0)
			{
				w->in_frame = false;
				continue;
			}
			if (avail > 0)
			{
				take = Min((uint64) avail, w->remaining);
				take = Min(take, len);
				unmask(w, buf, w->raw + w->raw_off, take);
				w->raw_off += take;
				w->remaining -= take;
				if (w->remaining == 0)
					w->in_frame = false;
				return take;
			}
		}
		else if (w->in_frame)
		{
			/* a control frame is taken whole */
			if ((uint64) avail >= w->remaining)
			{
				int			rc = take_control(ch, w);

				if (rc <= 0)
				{
					(void) flush_out(ch, w);
					return rc;
				}
				if (flush_out(ch, w) == SB_CHANNEL_ERROR)
					return SB_CHANNEL_ERROR;
				continue;
			}
		}
		else
		{
			int			rc = take_frame_header(ch, w);

			if (rc < 0)
				return rc;
			if (rc > 0)
				continue;
		}
		n = fill(ch, w);
		if (n <= 0)
			return n;
	}
}

/* ---- output ---- */

/*
 * Takes up to SB_WS_OUT_FRAME bytes as one frame once the previous frame
 * is written: the bytes taken, or SB_CHANNEL_WOULD_BLOCK while it waits
 */
static ssize_t
ws_write(SbChannel *ch, const void *buf, size_t len)
{
	WsState    *w = ws_of(ch);
	size_t		n = Min(len, SB_WS_OUT_FRAME);
	int			rc;

	if (w->close_sent)
	{
		strlcpy(ch->error, "the WebSocket session is closing", sizeof(ch->error));
		return SB_CHANNEL_ERROR;
	}
	rc = flush_out(ch, w);
	if (rc != 0)
		return rc;
	/* a text frame holds whole characters: cut before a continuation byte */
	if (w->out_opcode == WS_TEXT && n < len)
	{
		size_t		cut = n;

		while (cut > 0 && (((const unsigned char *) buf)[cut] & 0xC0) == 0x80)
			cut--;
		if (cut > 0)
			n = cut;
	}
	queue_frame(w, w->out_opcode, buf, n);
	if (flush_out(ch, w) == SB_CHANNEL_ERROR)
		return SB_CHANNEL_ERROR;
	return n;
}

/* The channel below's events, with writability while frames wait to go */
static uint32
ws_wait_events(SbChannel *ch, bool output)
{
	WsState    *w = ws_of(ch);

	return w->inner.ops->wait_events(&w->inner,
									 output || w->out_off < w->out.len);
}

/*
 * Bytes a read would take without reading the socket: payload (or a whole
 * frame header, or a whole control frame) in the read buffer, else what the
 * channel below holds.  A partial frame header does not count: the loop
 * that reads past its budget while bytes are pending must not go on
 * reading the socket to complete headers one after another.
 */
static size_t
ws_pending(SbChannel *ch)
{
	WsState    *w = ws_of(ch);
	int			avail;
	size_t		below;

	if (!w->handshaken)
		return 0;
	avail = w->raw_len - w->raw_off;
	below = w->inner.ops->pending(&w->inner);
	if (w->in_frame && !(w->opcode & 0x8))
		return avail > 0 ? (size_t) avail : below;
	if (w->in_frame)
		return (uint64) avail >= w->remaining ? (size_t) avail : below;
	if (avail >= 2)
	{
		int			len7 = ((unsigned char) w->raw[w->raw_off + 1]) & 0x7F;
		int			need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + 4;

		if (avail >= need)
			return avail;
	}
	return below;
}

/* The close code and text an ending session's reason gets */
static void
ws_farewell(SbChannel *ch, int reason)
{
	WsState    *w = ws_of(ch);
	int			code;
	const char *text = NULL;

	if (!w->handshaken || w->close_sent)
		return;
	switch (reason)
	{
		case SB_CHANNEL_GOING_AWAY:
			code = WS_GOING_AWAY;
			break;
		case SB_CLOSE_PEER_CLOSED:
		case SB_CLOSE_CONNECTION_LOST:
			return;				/* no one to tell */
		case SB_CLOSE_UNFINISHED_LINE:
		case SB_CLOSE_INVALID_JSON:
		case SB_CLOSE_TOO_DEEP:
		case SB_CLOSE_INVALID_HEADER:
		case SB_CLOSE_UPDATE_BEFORE_HEADER:
		case SB_CLOSE_MUX_PROTOCOL:
			code = WS_INVALID_DATA;
			text = SbCloseReasonName(reason);
			break;
		case SB_CLOSE_LINE_TOO_LONG:
			code = WS_TOO_BIG;
			text = SbCloseReasonName(reason);
			break;
		case SB_CLOSE_NO_MODEL_NAMED:
			code = WS_POLICY;
			text = SB_NO_MODEL_NAMED_TEXT;
			break;
		case SB_CLOSE_HANDSHAKE_TIMEOUT:
		case SB_CLOSE_UNKNOWN_MODEL:
		case SB_CLOSE_KIND_MISMATCH:
			code = WS_POLICY;
			text = SbCloseReasonName(reason);
			break;
		case SB_CLOSE_TOO_MANY_CONNECTIONS:
		case SB_CLOSE_TOO_MANY_FROM_ADDRESS:
		case SB_CLOSE_TOO_MANY_SUBSTREAMS:
			code = WS_TRY_LATER;
			break;
		case SB_CLOSE_REJECTED_BY_RULE:
		case SB_CLOSE_NO_MATCHING_RULE:
		case SB_CLOSE_AUTH_FAILED:
		case SB_CLOSE_PERMISSION_DENIED:
			/* a refused client is told nothing it could use */
			code = WS_POLICY;
			break;
		default:
			code = WS_INTERNAL;
			break;
	}
	queue_close(w, code, text);
}

/*
 * Sends what waits (once), closes the channel below, frees the state.
 * The channel below drops unread input before it closes its socket
 * (SbChannelCloseSocket), so no reset overtakes our last answer (an HTTP
 * error, a close frame).
 */
static void
ws_close(SbChannel *ch)
{
	WsState    *w = ws_of(ch);

	if (w != NULL)
	{
		/* one try at what waits (a close frame, an HTTP error) */
		if (w->out_off < w->out.len)
			(void) flush_out(ch, w);
		ch->peer_cn = NULL;		/* the channel below's, freed with it */
		w->inner.ops->close(&w->inner);
		ch->state = NULL;
		MemoryContextDelete(w->cxt);
	}
	ch->token = NULL;
	ch->websocket = false;
	ch->tls = false;
	ch->sock = PGINVALID_SOCKET;
}

static const SbChannelOps ws_ops = {
	.read = ws_read,
	.write = ws_write,
	.handshake = ws_handshake,
	.wait_events = ws_wait_events,
	.pending = ws_pending,
	.close = ws_close,
	.farewell = ws_farewell,
};

/*
 * The channel below moves into the WebSocket state; ch keeps its socket,
 * TLS flag and client certificate CN, which the stream and rules look at
 */
void
SbChannelWebSocketAccept(SbChannel *ch, MemoryContext parent,
						 const char *initial, int len)
{
	MemoryContext cxt = AllocSetContextCreate(parent, "scuttlebutt websocket",
											  ALLOCSET_SMALL_SIZES);
	WsState    *w = MemoryContextAllocZero(cxt, sizeof(WsState));
	pgsocket	sock = ch->sock;
	bool		tls = ch->tls;
	char	   *peer_cn = ch->peer_cn;

	w->cxt = cxt;
	w->inner = *ch;
	w->raw_cap = SB_WS_READ_BUFFER;
	w->raw = MemoryContextAlloc(cxt, w->raw_cap);
	w->out_opcode = WS_BINARY;
	w->head.data = MemoryContextAlloc(cxt, Max(len + 1, 1024));
	w->head.maxlen = Max(len + 1, 1024);
	w->head.len = 0;
	w->head.cursor = 0;
	memcpy(w->head.data, initial, len);
	w->head.len = len;
	w->head.data[len] = '\0';
	w->out.data = MemoryContextAlloc(cxt, SB_OUT_INITIAL);
	w->out.maxlen = SB_OUT_INITIAL;
	resetStringInfo(&w->out);

	SbChannelInit(ch, &ws_ops, sock, w);
	ch->tls = tls;
	ch->peer_cn = peer_cn;
}
