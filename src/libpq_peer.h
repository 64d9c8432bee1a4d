/*-------------------------------------------------------------------------
 *
 * libpq_peer.h
 *	  A peer that is another PostgreSQL server, reached through libpq.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_LIBPQ_PEER_H
#define SCUTTLEBUTT_LIBPQ_PEER_H

#include "datatype/timestamp.h"

#include "connection.h"

/* A libpq peer has two connections: one pulls, one pushes */
#define SB_LIBPQ_LINKS 2

/* Makes conn a libpq peer of conninfo (in backoff, due at once) */
extern void SbLibpqInit(SbConn *conn, const char *conninfo);

/* Whether conn was made with this conninfo and these directions */
extern bool SbLibpqConfiguredAs(SbConn *conn, const char *conninfo, bool send,
								bool receive);

/* Starts a session: connects both links (from backoff) */
extern void SbLibpqStart(SbConn *conn);

/* Closes both links (the session's end; SbConnClose calls it) */
extern void SbLibpqDisconnect(SbConn *conn);

/* The socket and wait events of each link (PGINVALID_SOCKET: none) */
extern void SbLibpqWaitEvents(SbConn *conn, pgsocket *socks, uint32 *events);

/* Handles a wait event of one link */
extern void SbLibpqHandleEvent(SbConn *conn, int link, uint32 events);

/* Starts what can start: a push of the pending output, a poll.  False if closed. */
extern bool SbLibpqFlush(SbConn *conn);

/* Nearest deadline of the links (0: none) */
extern TimestampTz SbLibpqDeadline(SbConn *conn);

/* Closes the session if a link passed its deadline */
extern void SbLibpqCheckDeadlines(SbConn *conn, TimestampTz now);

/* No query in flight that still carries updates either way */
extern bool SbLibpqIdle(SbConn *conn);

#endif							/* SCUTTLEBUTT_LIBPQ_PEER_H */
