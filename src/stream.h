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

#include "session.h"

/* Starts an incoming session on an accepted, non-blocking socket */
extern void SbStreamAccept(SbSession *s, pgsocket sock, const char *remote_addr);

#endif							/* SCUTTLEBUTT_STREAM_H */
