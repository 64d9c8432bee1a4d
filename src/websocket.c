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
 * The request may carry a bearer token, for browsers that cannot set an
 * Authorization header: in the query string (token= or access_token=) or
 * as an offered subprotocol "token.<jwt>".  The listen rules take it as
 * they take the header's meta.token (stream.c).  A request with an Origin
 * header (every browser's) is refused (403) unless scuttlebutt.
 * websocket_origins lists that origin or "*".
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include <openssl/sha.h>

#include "common/base64.h"
#include "storage/latch.h"
#include "utils/memutils.h"

#include "guc.h"
#include "session.h"
#include "websocket.h"
#include "wire.h"

/* the GUID of RFC 6455 section 1.3 */
#define SB_WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* Bytes read from the channel below at a time (frame headers, payload) */
#define SB_WS_READ_BUFFER (16 * 1024)
/* Payload bytes per outgoing frame, at most */
#define SB_WS_OUT_FRAME (64 * 1024)
/* The subprotocol answered when offered, and the token's prefix */
#define SB_WS_PROTOCOL "scuttlebutt"
#define SB_WS_TOKEN_PREFIX "token."

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

char	   *sb_websocket_origins = NULL;

typedef struct WsState
{
	MemoryContext cxt;
	SbChannel	inner;			/* the TCP or TLS channel below */
	bool		handshaken;
	bool		responding;		/* the handshake's answer is being written */
	bool		refused;		/* ... and it is an HTTP error */
	StringInfoData head;		/* the request, until its blank line */

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

/* Whether a comma-separated header value lists token (case-insensitive) */
static bool
list_has(const char *value, const char *token)
{
	size_t		tlen = strlen(token);
	const char *p = value;

	while (*p)
	{
		const char *end;

		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		end = p;
		while (*end && *end != ',')
			end++;
		{
			const char *e = end;

			while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
				e--;
			if ((size_t) (e - p) == tlen && pg_strncasecmp(p, token, tlen) == 0)
				return true;
		}
		p = end;
	}
	return false;
}

/* %XX decoding of a query string value (NULL if malformed) */
static char *
percent_decode(const char *s, int len)
{
	char	   *out = palloc(len + 1);
	int			n = 0;

	for (int i = 0; i < len; i++)
	{
		if (s[i] == '%')
		{
			int			v;

			if (i + 2 >= len)
				return NULL;
			if (!isxdigit((unsigned char) s[i + 1]) || !isxdigit((unsigned char) s[i + 2]))
				return NULL;
			v = (isdigit((unsigned char) s[i + 1]) ? s[i + 1] - '0' : (tolower((unsigned char) s[i + 1]) - 'a' + 10)) * 16 +
				(isdigit((unsigned char) s[i + 2]) ? s[i + 2] - '0' : (tolower((unsigned char) s[i + 2]) - 'a' + 10));
			if (v == 0)
				return NULL;
			out[n++] = (char) v;
			i += 2;
		}
		else
			out[n++] = s[i];
	}
	out[n] = '\0';
	return out;
}

/* A copy of s for the log, with any byte that is not printable ASCII as '?' */
static char *
printable(const char *s)
{
	char	   *out = pstrdup(s);

	for (char *p = out; *p; p++)
		if ((unsigned char) *p < 0x20 || (unsigned char) *p > 0x7E)
			*p = '?';
	return out;
}

/* What the request asks for, as the handshake reads it */
typedef struct WsRequest
{
	char	   *target;
	char	   *host;
	char	   *upgrade;
	char	   *connection;
	char	   *version;
	char	   *key;
	char	   *origin;
	StringInfoData protocols;	/* every Sec-WebSocket-Protocol, joined */
	char	   *token;
	bool		several_tokens;
	bool		offers_protocol;	/* SB_WS_PROTOCOL is offered */
} WsRequest;

/* Takes one token the request carries; two different ones are refused */
static void
take_token(WsRequest *r, char *token)
{
	if (r->token != NULL && strcmp(r->token, token) != 0)
		r->several_tokens = true;
	r->token = token;
}

/* The query string's token= or access_token= */
static bool
query_tokens(WsRequest *r, const char *query)
{
	const char *p = query;

	while (*p)
	{
		const char *end = strchr(p, '&');
		const char *eq;
		int			len = end ? end - p : (int) strlen(p);

		eq = memchr(p, '=', len);
		if (eq != NULL &&
			(((eq - p) == 5 && strncmp(p, "token", 5) == 0) ||
			 ((eq - p) == 12 && strncmp(p, "access_token", 12) == 0)))
		{
			char	   *v = percent_decode(eq + 1, len - (eq + 1 - p));

			if (v == NULL)
				return false;
			take_token(r, v);
		}
		if (end == NULL)
			break;
		p = end + 1;
	}
	return true;
}

/* The offered subprotocols: ours, and a token.<jwt> */
static void
offered_protocols(WsRequest *r)
{
	char	   *p = r->protocols.data;

	while (*p)
	{
		char	   *end;
		char	   *e;

		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		end = p;
		while (*end && *end != ',')
			end++;
		e = end;
		while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if ((size_t) (e - p) == strlen(SB_WS_PROTOCOL) &&
			strncmp(p, SB_WS_PROTOCOL, e - p) == 0)
			r->offers_protocol = true;
		else if ((size_t) (e - p) > strlen(SB_WS_TOKEN_PREFIX) &&
				 strncmp(p, SB_WS_TOKEN_PREFIX, strlen(SB_WS_TOKEN_PREFIX)) == 0)
			take_token(r, pnstrdup(p + strlen(SB_WS_TOKEN_PREFIX),
								   e - p - strlen(SB_WS_TOKEN_PREFIX)));
		p = end;
	}
}

/* Whether scuttlebutt.websocket_origins lets origin in */
static bool
origin_allowed(const char *origin)
{
	char	   *list = pstrdup(sb_websocket_origins ? sb_websocket_origins : "");
	char	   *save = NULL;

	for (char *item = strtok_r(list, ", \t", &save); item != NULL;
		 item = strtok_r(NULL, ", \t", &save))
	{
		if (strcmp(item, "*") == 0 || pg_strcasecmp(item, origin) == 0)
			return true;
	}
	return false;
}

/*
 * Sets the handshake's HTTP error answer; the session ends with reason and
 * detail once it is written (or could not be)
 */
static void
refuse(SbChannel *ch, WsState *w, const char *status, const char *extra,
	   int reason, const char *detail)
{
	MemoryContext old = MemoryContextSwitchTo(w->cxt);

	resetStringInfo(&w->out);
	w->out_off = 0;
	appendStringInfo(&w->out,
					 "HTTP/1.1 %s\r\n%sConnection: close\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s\n",
					 status, extra ? extra : "", (int) strlen(detail) + 1, detail);
	MemoryContextSwitchTo(old);
	w->responding = true;
	w->refused = true;
	w->close_sent = true;		/* no frame may follow an HTTP error */
	strlcpy(ch->error, detail, sizeof(ch->error));
	ch->fail_reason = reason;
}

/*
 * Reads the request (head: its text up to the blank line, NUL-terminated)
 * and sets the answer: 101, or an HTTP error
 */
static void
answer_request(SbChannel *ch, WsState *w, char *head)
{
	WsRequest	r;
	char	   *line;
	char	   *save = NULL;
	char	   *query;
	char		digest[SHA_DIGEST_LENGTH];
	char		accept[64];
	char		keybuf[64];
	int			n;
	MemoryContext old = MemoryContextSwitchTo(w->cxt);

	memset(&r, 0, sizeof(r));
	initStringInfo(&r.protocols);

	/* request line: GET <target> HTTP/1.1 */
	line = strtok_r(head, "\n", &save);
	if (line != NULL)
	{
		char	   *sp1 = strchr(line, ' ');
		char	   *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
		size_t		ll = strlen(line);

		if (ll > 0 && line[ll - 1] == '\r')
			line[--ll] = '\0';
		if (sp1 && sp2 && strcmp(sp2 + 1, "HTTP/1.1") == 0 && sp2 > sp1 + 1)
			r.target = pnstrdup(sp1 + 1, sp2 - sp1 - 1);
	}
	if (r.target == NULL)
	{
		refuse(ch, w, "400 Bad Request", NULL, SB_CLOSE_WEBSOCKET_HANDSHAKE,
			   "The request line is not \"GET <target> HTTP/1.1\".");
		goto done;
	}

	/* header fields */
	while ((line = strtok_r(NULL, "\n", &save)) != NULL)
	{
		char	   *colon;
		char	   *value;
		char	   *vend;
		size_t		ll = strlen(line);

		if (ll > 0 && line[ll - 1] == '\r')
			line[--ll] = '\0';
		if (ll == 0)
			continue;
		colon = strchr(line, ':');
		if (line[0] == ' ' || line[0] == '\t' || colon == NULL || colon == line)
		{
			refuse(ch, w, "400 Bad Request", NULL, SB_CLOSE_WEBSOCKET_HANDSHAKE,
				   "A header field of the request is malformed.");
			goto done;
		}
		*colon = '\0';
		value = colon + 1;
		while (*value == ' ' || *value == '\t')
			value++;
		vend = value + strlen(value);
		while (vend > value && (vend[-1] == ' ' || vend[-1] == '\t'))
			*--vend = '\0';

#define FIELD(name, dst) \
		if (pg_strcasecmp(line, name) == 0) \
		{ \
			if (dst != NULL) \
			{ \
				refuse(ch, w, "400 Bad Request", NULL, SB_CLOSE_WEBSOCKET_HANDSHAKE, \
					   "The request has the header field \"" name "\" twice."); \
				goto done; \
			} \
			dst = pstrdup(value); \
			continue; \
		}
		FIELD("Host", r.host);
		FIELD("Upgrade", r.upgrade);
		FIELD("Connection", r.connection);
		FIELD("Sec-WebSocket-Version", r.version);
		FIELD("Sec-WebSocket-Key", r.key);
		FIELD("Origin", r.origin);
#undef FIELD
		if (pg_strcasecmp(line, "Sec-WebSocket-Protocol") == 0)
		{
			appendStringInfo(&r.protocols, "%s%s", r.protocols.len ? "," : "", value);
			continue;
		}
	}

	if (r.upgrade == NULL || !list_has(r.upgrade, "websocket") ||
		r.connection == NULL || !list_has(r.connection, "upgrade"))
	{
		refuse(ch, w, "426 Upgrade Required",
			   "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n",
			   SB_CLOSE_WEBSOCKET_HANDSHAKE,
			   "Only WebSocket upgrades are served here (Upgrade: websocket, Connection: Upgrade).");
		goto done;
	}
	if (r.version == NULL || strcmp(r.version, "13") != 0)
	{
		refuse(ch, w, "426 Upgrade Required", "Sec-WebSocket-Version: 13\r\n",
			   SB_CLOSE_WEBSOCKET_HANDSHAKE, "Sec-WebSocket-Version must be 13.");
		goto done;
	}
	if (r.host == NULL)
	{
		refuse(ch, w, "400 Bad Request", NULL, SB_CLOSE_WEBSOCKET_HANDSHAKE,
			   "The request has no Host header field.");
		goto done;
	}
	/* the key: base64 of 16 bytes */
	if (r.key == NULL || strlen(r.key) != 24 ||
		pg_b64_decode(r.key, 24, keybuf, sizeof(keybuf)) != 16)
	{
		refuse(ch, w, "400 Bad Request", NULL, SB_CLOSE_WEBSOCKET_HANDSHAKE,
			   "Sec-WebSocket-Key is missing or is not the base64 of 16 bytes.");
		goto done;
	}
	/* browsers send an Origin: only the listed ones may connect */
	if (r.origin != NULL && !origin_allowed(r.origin))
	{
		refuse(ch, w, "403 Forbidden", NULL, SB_CLOSE_ORIGIN_REFUSED,
			   psprintf("The origin \"%s\" is not in scuttlebutt.websocket_origins.",
						printable(r.origin)));
		/* the body names the setting, not the list */
		goto done;
	}

	/* a token: in the query string, or offered as a subprotocol */
	query = strchr(r.target, '?');
	if (query != NULL && !query_tokens(&r, query + 1))
	{
		refuse(ch, w, "400 Bad Request", NULL, SB_CLOSE_WEBSOCKET_HANDSHAKE,
			   "The query string has a malformed %-escape in its token.");
		goto done;
	}
	offered_protocols(&r);
	if (r.several_tokens)
	{
		refuse(ch, w, "400 Bad Request", NULL, SB_CLOSE_WEBSOCKET_HANDSHAKE,
			   "The request carries two different tokens.");
		goto done;
	}
	if (r.token != NULL)
	{
		if (strlen(r.token) > SB_MAX_TOKEN_BYTES)
			ch->token_too_long = true;
		else
			ch->token = r.token;
	}

	/* Sec-WebSocket-Accept: base64(SHA-1(key + GUID)) */
	{
		char	   *joined = psprintf("%s%s", r.key, SB_WS_GUID);

		SHA1((unsigned char *) joined, strlen(joined), (unsigned char *) digest);
		n = pg_b64_encode(digest, SHA_DIGEST_LENGTH, accept, sizeof(accept) - 1);
		accept[Max(n, 0)] = '\0';
	}
	resetStringInfo(&w->out);
	w->out_off = 0;
	appendStringInfo(&w->out,
					 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s\r\n",
					 accept,
					 r.offers_protocol ? "Sec-WebSocket-Protocol: " SB_WS_PROTOCOL "\r\n" : "");
	w->responding = true;

done:
	MemoryContextSwitchTo(old);
}

/* The end of the request head in w->head (past its blank line), or -1 */
static int
head_end(WsState *w)
{
	for (int i = 0; i + 1 < w->head.len; i++)
	{
		if (w->head.data[i] != '\n')
			continue;
		if (w->head.data[i + 1] == '\n')
			return i + 2;
		if (w->head.data[i + 1] == '\r' && i + 2 < w->head.len &&
			w->head.data[i + 2] == '\n')
			return i + 3;
	}
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
			answer_request(ch, w, head);
			pfree(w->head.data);
			w->head.data = NULL;
			break;
		}
		if (w->head.len > sb_max_line_bytes)
		{
			refuse(ch, w, "431 Request Header Fields Too Large", NULL,
				   SB_CLOSE_LINE_TOO_LONG,
				   psprintf("The WebSocket request is longer than scuttlebutt.max_line_bytes (%d).",
							sb_max_line_bytes));
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

/* Read bytes not decoded yet, and what the channel below holds */
static size_t
ws_pending(SbChannel *ch)
{
	WsState    *w = ws_of(ch);

	if (!w->handshaken)
		return 0;
	return (w->raw_len - w->raw_off) + w->inner.ops->pending(&w->inner);
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

/* ---- scuttlebutt.websocket_origins ---- */

/*
 * Each item: "*", "null", or scheme://host[:port] as browsers send it (no
 * path, no trailing slash)
 */
bool
SbCheckWebSocketOrigins(char **newval, void **extra pg_attribute_unused(),
						GucSource source pg_attribute_unused())
{
	char	   *list = pstrdup(*newval ? *newval : "");
	char	   *save = NULL;

	for (char *item = strtok_r(list, ", \t", &save); item != NULL;
		 item = strtok_r(NULL, ", \t", &save))
	{
		const char *p = item;
		const char *sep;

		if (strcmp(item, "*") == 0 || strcmp(item, "null") == 0)
			continue;
		while (isalnum((unsigned char) *p) || *p == '+' || *p == '-' || *p == '.')
			p++;
		sep = strstr(item, "://");
		if (p == item || sep != p || p[3] == '\0' || strchr(p + 3, '/') != NULL ||
			strchr(p + 3, '?') != NULL || strchr(p + 3, '#') != NULL)
		{
			GUC_check_errdetail("\"%s\" is not an origin: write scheme://host or scheme://host:port (no path), \"null\" or \"*\".",
								item);
			pfree(list);
			return false;
		}
	}
	pfree(list);
	return true;
}
