/*-------------------------------------------------------------------------
 *
 * websocket.h
 *	  WebSocket (RFC 6455) as a byte channel over TCP or TLS.
 *
 * A browser (or the npm websocket-stream package) reaches the stream
 * listener with an HTTP/1.1 Upgrade request; once the handshake is done the
 * channel carries the same line protocol as plain TCP, each message any
 * number of whole or partial lines.  The stream transport recognises the
 * request by its first bytes and wraps its channel (channel.h).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_WEBSOCKET_H
#define SCUTTLEBUTT_WEBSOCKET_H

#include "utils/guc.h"

#include "channel.h"

/* What the first bytes of an incoming connection are */
typedef enum SbUpgradeGuess
{
	SB_UPGRADE_NO,				/* the line protocol */
	SB_UPGRADE_YES,				/* an HTTP request: "GET " */
	SB_UPGRADE_UNDECIDED		/* too few bytes to tell */
} SbUpgradeGuess;

extern SbUpgradeGuess SbWebSocketGuess(const char *bytes, int len);

/*
 * Wraps ch (a connected channel whose own handshake is done) in a
 * WebSocket server channel whose handshake reads the HTTP request, the
 * first len bytes of which were already read (initial).  Its memory is a
 * child context of parent, deleted when the channel closes.
 */
extern void SbChannelWebSocketAccept(SbChannel *ch, MemoryContext parent,
									 const char *initial, int len);

/* scuttlebutt.websocket_origins */
extern char *sb_websocket_origins;
extern bool SbCheckWebSocketOrigins(char **newval, void **extra, GucSource source);

#endif							/* SCUTTLEBUTT_WEBSOCKET_H */
