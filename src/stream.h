/*-------------------------------------------------------------------------
 *
 * stream.h
 *	  The stream transport: the scuttlebutt line protocol on a byte channel.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_STREAM_H
#define SCUTTLEBUTT_STREAM_H

#include "port.h"

#include "libpq/pqcomm.h"

#include "channel.h"
#include "session.h"

/*
 * Starts an incoming session on an accepted, non-blocking socket; addr is
 * the client's address as accept() gave it (for scuttlebutt.listen_rules)
 */
extern void SbStreamAccept(SbSession *s, pgsocket sock, const SockAddr *addr,
						   const char *remote_addr);

/*
 * Starts s as a sub-stream of carrier, a multiplexed incoming connection
 * (mux_demux.c): its bytes come and go through a channel of ops with state,
 * for the model its mux-demux meta named.  It is checked as its carrier
 * would be (address, certificate, the token given, else the carrier's).
 */
extern void SbStreamOpenSub(SbSession *s, SbSession *carrier,
							const SbChannelOps *ops, void *state,
							const char *model, const char *token);

#endif							/* SCUTTLEBUTT_STREAM_H */
