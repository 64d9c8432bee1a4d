/*-------------------------------------------------------------------------
 *
 * channel.h
 *	  A byte channel under the stream transport's line protocol.
 *
 * The line protocol never knows what carries its bytes: plain TCP
 * (channel_tcp.c) or TLS (channel_tls.c) fill in the same calls, as
 * PostgreSQL's secure_read()/secure_write() hide TLS from its protocol
 * code.  A channel may need a handshake before it carries bytes, and may
 * need to wait for other events than its user asks for (TLS reads that
 * must write, and writes that must read): the user asks it which.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_CHANNEL_H
#define SCUTTLEBUTT_CHANNEL_H

#include "port.h"

#include "close_reason.h"

/* What a read or a write did, besides moving bytes */
#define SB_CHANNEL_WOULD_BLOCK (-1)	/* try again when the socket is ready */
#define SB_CHANNEL_ERROR (-2)	/* the connection is lost; ch->error (or,
								 * when empty, errno) says why */
#define SB_CHANNEL_DONE 0		/* the handshake is complete */

/* farewell(): the session ends because the worker stops or drops it */
#define SB_CHANNEL_GOING_AWAY (-1)

/* room for a channel's error message */
#define SB_CHANNEL_ERROR_LEN 256

typedef struct SbChannel SbChannel;

typedef struct SbChannelOps
{
	/* bytes read (0: the peer closed), or SB_CHANNEL_* */
	ssize_t		(*read) (SbChannel *ch, void *buf, size_t len);
	/* bytes written, or SB_CHANNEL_* */
	ssize_t		(*write) (SbChannel *ch, const void *buf, size_t len);
	/* advances the handshake: SB_CHANNEL_DONE, or SB_CHANNEL_* */
	int			(*handshake) (SbChannel *ch);
	/* the WL_SOCKET_* events to wait for; output: bytes are waiting to go */
	uint32		(*wait_events) (SbChannel *ch, bool output);
	/* bytes already read from the socket that read() would return now */
	size_t		(*pending) (SbChannel *ch);
	/* closes the socket, frees what the channel holds */
	void		(*close) (SbChannel *ch);

	/*
	 * Optional: tells the peer why the session ends (an SbCloseReason, or
	 * SB_CHANNEL_GOING_AWAY), before close().  WebSocket sends a close
	 * frame; TCP and TLS have nothing to say.
	 */
	void		(*farewell) (SbChannel *ch, int reason);
} SbChannelOps;

struct SbChannel
{
	const SbChannelOps *ops;
	pgsocket	sock;
	bool		tls;			/* the TLS handshake completed */
	char	   *peer_cn;		/* the CN of a client certificate verified
								 * against scuttlebutt.ssl_ca_file
								 * (TopMemoryContext), or NULL */
	bool		websocket;		/* the WebSocket handshake completed */
	const char *token;			/* a bearer token the channel's handshake
								 * carried (WebSocket: the query string or
								 * Sec-WebSocket-Protocol), or NULL */
	bool		token_too_long; /* one was sent, longer than
								 * SB_MAX_TOKEN_BYTES */
	void	   *state;			/* the implementation's own */
	char		error[SB_CHANNEL_ERROR_LEN];	/* why it failed ("": errno) */
	int			fail_reason;	/* the SbCloseReason of that failure, or -1:
								 * the caller's (TLS: the handshake's,
								 * else a lost connection) */
};

/* The fields every channel starts with (no TLS, no WebSocket, no error) */
static inline void
SbChannelInit(SbChannel *ch, const SbChannelOps *ops, pgsocket sock, void *state)
{
	ch->ops = ops;
	ch->sock = sock;
	ch->tls = false;
	ch->peer_cn = NULL;
	ch->websocket = false;
	ch->token = NULL;
	ch->token_too_long = false;
	ch->state = state;
	ch->error[0] = '\0';
	ch->fail_reason = -1;
}

/* A plain TCP channel on a connected, non-blocking socket */
extern void SbChannelTcpOpen(SbChannel *ch, pgsocket sock);

/* Closes ch's socket with our end sent and unread input dropped first */
extern void SbChannelCloseSocket(SbChannel *ch);

/*
 * A TLS channel accepting on a connected, non-blocking socket with the
 * listener's context (tls_context.h); false, with ch->error set and the
 * socket left open, when scuttlebutt.ssl is on but no certificate could
 * be loaded.
 */
extern bool SbChannelTlsAccept(SbChannel *ch, pgsocket sock);

/* What a dialed TLS channel checks and presents (NULL: none) */
typedef struct SbTlsClientConfig
{
	const char *host;			/* verified as libpq's verify-full; SNI */
	const char *rootcert;		/* CA file; NULL: the system's CAs */
	const char *cert;			/* client certificate and key */
	const char *key;
} SbTlsClientConfig;

/*
 * A TLS channel dialing on a connected, non-blocking socket; false, with
 * ch->error set and the socket left open, when a file cannot be used.
 */
extern bool SbChannelTlsConnect(SbChannel *ch, pgsocket sock,
								const SbTlsClientConfig *config);

#endif							/* SCUTTLEBUTT_CHANNEL_H */
