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

#include "session.h"

/*
 * Starts an incoming session on an accepted, non-blocking socket; addr is
 * the client's address as accept() gave it (for scuttlebutt.listen_rules)
 */
extern void SbStreamAccept(SbSession *s, pgsocket sock, const SockAddr *addr,
						   const char *remote_addr);

#endif							/* SCUTTLEBUTT_STREAM_H */
