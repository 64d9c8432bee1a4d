/*-------------------------------------------------------------------------
 *
 * listener.h
 *	  The worker's listening sockets for incoming stream peers.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_LISTENER_H
#define SCUTTLEBUTT_LISTENER_H

#include "port.h"

#include "libpq/pqcomm.h"

/*
 * (Re)opens the listeners when scuttlebutt.port or listen_addresses
 * changed; true if the set of listening sockets changed.
 */
extern bool SbListenerConfigure(void);

extern void SbListenerCloseAll(void);

extern int	SbListenerCount(void);
extern pgsocket SbListenerSocket(int i);

/*
 * Accepts one waiting connection on listener i: a non-blocking socket
 * with TCP_NODELAY, its address as accept() gave it (*addr) and as text,
 * or PGINVALID_SOCKET when none is waiting.
 */
extern pgsocket SbListenerAccept(int i, SockAddr *addr, char *remote,
								 size_t remote_len);

#endif							/* SCUTTLEBUTT_LISTENER_H */
