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
 * with TCP_NODELAY and its address as text, or PGINVALID_SOCKET when none
 * is waiting.
 */
extern pgsocket SbListenerAccept(int i, char *remote, size_t remote_len);

#endif							/* SCUTTLEBUTT_LISTENER_H */
