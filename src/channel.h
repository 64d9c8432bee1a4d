/*-------------------------------------------------------------------------
 *
 * channel.h
 *	  A byte channel under the stream transport's line protocol.
 *
 * The line protocol never knows what carries its bytes: plain TCP today
 * (channel_tcp.c); an encrypted or framed channel fills in the same calls,
 * as PostgreSQL's secure_read()/secure_write() hide TLS from its protocol
 * code.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_CHANNEL_H
#define SCUTTLEBUTT_CHANNEL_H

#include "port.h"

/* What a read or a write did, besides moving bytes */
#define SB_CHANNEL_WOULD_BLOCK (-1)	/* try again when the socket is ready */
#define SB_CHANNEL_ERROR (-2)	/* the connection is lost; errno says why */

typedef struct SbChannel SbChannel;

typedef struct SbChannelOps
{
	/* bytes read (0: the peer closed), or SB_CHANNEL_* */
	ssize_t		(*read) (SbChannel *ch, void *buf, size_t len);
	/* bytes written, or SB_CHANNEL_* */
	ssize_t		(*write) (SbChannel *ch, const void *buf, size_t len);
	/* closes the socket */
	void		(*close) (SbChannel *ch);
} SbChannelOps;

struct SbChannel
{
	const SbChannelOps *ops;
	pgsocket	sock;
	bool		tls;			/* true once the TLS handshake completed */
	char	   *peer_cn;		/* CN of a verified client certificate, or
								 * NULL */
};

/* A plain TCP channel on a connected, non-blocking socket */
extern void SbChannelTcpOpen(SbChannel *ch, pgsocket sock);

#endif							/* SCUTTLEBUTT_CHANNEL_H */
