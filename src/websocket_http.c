/*-------------------------------------------------------------------------
 *
 * websocket_http.c
 *	  The WebSocket opening handshake: the client's HTTP/1.1 Upgrade
 *	  request, and our answer.
 *
 * The request must be "GET <target> HTTP/1.1" with Host, Upgrade:
 * websocket, Connection: Upgrade, Sec-WebSocket-Version: 13 and a
 * Sec-WebSocket-Key of 16 bytes (RFC 6455 section 4.2.1); the answer is
 * 101 with Sec-WebSocket-Accept, base64(SHA-1(key + GUID)), and the
 * subprotocol "scuttlebutt" when the client offered it.  Anything else is
 * answered with an HTTP error (400, 403, 426) whose short text body says
 * what was wrong; no extension is ever agreed.
 *
 * The request may carry a bearer token, for browsers that cannot set an
 * Authorization header: in the query string (token= or access_token=,
 * RFC 6750's name) or as an offered subprotocol "token.<jwt>".  Two
 * different ones are refused.  A request with an Origin header (every
 * browser's) is refused (403) unless scuttlebutt.websocket_origins lists
 * that origin or "*": see the README's "WebSocket origins" for why none is
 * listed by default.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include <openssl/sha.h>

#include "common/base64.h"
#include "lib/stringinfo.h"

#include "close_reason.h"
#include "websocket.h"
#include "websocket_http.h"
#include "wire.h"

/* the GUID of RFC 6455 section 1.3 */
#define SB_WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* The subprotocol answered when offered, and the token's prefix */
#define SB_WS_PROTOCOL "scuttlebutt"
#define SB_WS_TOKEN_PREFIX "token."

char	   *sb_websocket_origins = NULL;

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
 * An HTTP error whose short text body says what was wrong; the connection
 * closes once it is written
 */
void
SbWebSocketRefusal(SbWsAnswer *a, const char *status, const char *extra,
				   int reason, const char *detail)
{
	memset(a, 0, sizeof(*a));
	a->response = psprintf("HTTP/1.1 %s\r\n%sConnection: close\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s\n",
						   status, extra ? extra : "", (int) strlen(detail) + 1, detail);
	a->reason = reason;
	a->detail = pstrdup(detail);
}

/*
 * Checks the request line and the fields RFC 6455 section 4.2.1 asks for,
 * the origin, and the tokens; answers 101 or the first thing wrong
 */
void
SbWebSocketAnswer(char *head, SbWsAnswer *a)
{
	WsRequest	r;
	char	   *line;
	char	   *save = NULL;
	char	   *query;
	char		digest[SHA_DIGEST_LENGTH];
	char		accept[64];
	char		keybuf[64];
	int			n;

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
		SbWebSocketRefusal(a, "400 Bad Request", NULL, SB_CLOSE_WEBSOCKET_HANDSHAKE,
						   "The request line is not \"GET <target> HTTP/1.1\".");
		return;
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
			SbWebSocketRefusal(a, "400 Bad Request", NULL, SB_CLOSE_WEBSOCKET_HANDSHAKE,
							   "A header field of the request is malformed.");
			return;
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
				SbWebSocketRefusal(a, "400 Bad Request", NULL, \
								   SB_CLOSE_WEBSOCKET_HANDSHAKE, \
								   "The request has the header field \"" name "\" twice."); \
				return; \
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
		SbWebSocketRefusal(a, "426 Upgrade Required",
						   "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n",
						   SB_CLOSE_WEBSOCKET_HANDSHAKE,
						   "Only WebSocket upgrades are served here (Upgrade: websocket, Connection: Upgrade).");
		return;
	}
	if (r.version == NULL || strcmp(r.version, "13") != 0)
	{
		SbWebSocketRefusal(a, "426 Upgrade Required", "Sec-WebSocket-Version: 13\r\n",
						   SB_CLOSE_WEBSOCKET_HANDSHAKE, "Sec-WebSocket-Version must be 13.");
		return;
	}
	if (r.host == NULL)
	{
		SbWebSocketRefusal(a, "400 Bad Request", NULL, SB_CLOSE_WEBSOCKET_HANDSHAKE,
						   "The request has no Host header field.");
		return;
	}
	/* the key: base64 of 16 bytes */
	if (r.key == NULL || strlen(r.key) != 24 ||
		pg_b64_decode(r.key, 24, keybuf, sizeof(keybuf)) != 16)
	{
		SbWebSocketRefusal(a, "400 Bad Request", NULL, SB_CLOSE_WEBSOCKET_HANDSHAKE,
						   "Sec-WebSocket-Key is missing or is not the base64 of 16 bytes.");
		return;
	}
	/* browsers send an Origin: only the listed ones may connect */
	if (r.origin != NULL && !origin_allowed(r.origin))
	{
		SbWebSocketRefusal(a, "403 Forbidden", NULL, SB_CLOSE_ORIGIN_REFUSED,
						   psprintf("The origin \"%s\" is not in scuttlebutt.websocket_origins.",
								    printable(r.origin)));
		/* the body names the setting, not the list */
		return;
	}

	/* a token: in the query string, or offered as a subprotocol */
	query = strchr(r.target, '?');
	if (query != NULL && !query_tokens(&r, query + 1))
	{
		SbWebSocketRefusal(a, "400 Bad Request", NULL, SB_CLOSE_WEBSOCKET_HANDSHAKE,
						   "The query string has a malformed %-escape in its token.");
		return;
	}
	offered_protocols(&r);
	if (r.several_tokens)
	{
		SbWebSocketRefusal(a, "400 Bad Request", NULL, SB_CLOSE_WEBSOCKET_HANDSHAKE,
						   "The request carries two different tokens.");
		return;
	}
	memset(a, 0, sizeof(*a));
	a->upgrade = true;
	if (r.token != NULL)
	{
		if (strlen(r.token) > SB_MAX_TOKEN_BYTES)
			a->token_too_long = true;
		else
			a->token = r.token;
	}

	/* Sec-WebSocket-Accept: base64(SHA-1(key + GUID)) */
	{
		char	   *joined = psprintf("%s%s", r.key, SB_WS_GUID);

		SHA1((unsigned char *) joined, strlen(joined), (unsigned char *) digest);
		n = pg_b64_encode(digest, SHA_DIGEST_LENGTH, accept, sizeof(accept) - 1);
		accept[Max(n, 0)] = '\0';
	}
	a->response = psprintf("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s\r\n",
						   accept,
						   r.offers_protocol ? "Sec-WebSocket-Protocol: " SB_WS_PROTOCOL "\r\n" : "");
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
