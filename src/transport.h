/*-------------------------------------------------------------------------
 *
 * transport.h
 *	  What a transport fills in to carry peer sessions.
 *
 * A transport moves a session's lines: the stream transport over a byte
 * channel speaking the scuttlebutt line protocol (stream.c), the libpq
 * transport through another server's SQL functions (libpq_peer.c).  The
 * worker drives every session through these callbacks alone, so it has no
 * transport branches: it asks for the sockets to wait on, hands back their
 * readiness, lets the transport send what the session queued, and enforces
 * the deadlines it is given.
 *
 * A transport sets session->sockets_changed whenever it opens, replaces or
 * closes a socket (even one that reuses the old descriptor number): the
 * worker then registers the session's sockets anew.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_TRANSPORT_H
#define SCUTTLEBUTT_TRANSPORT_H

#include "datatype/timestamp.h"
#include "port.h"

#include "session.h"

/* Sockets one session may wait on at once (libpq: a pull and a push link) */
#define SB_SESSION_SOCKETS 2

typedef struct SbWaitSocket
{
	pgsocket	sock;			/* PGINVALID_SOCKET: none */
	uint32		events;			/* WL_SOCKET_* */
} SbWaitSocket;

/* A row of scuttlebutt.peers: a peer this server dials */
typedef struct SbPeerConfig
{
	int32		id;
	char	   *model;
	char	   *transport;		/* "stream" or "libpq" */
	char	   *host;			/* stream */
	int			port;
	bool		tls;			/* stream: dial with TLS ... */
	char	   *sslrootcert;	/* ... verified against this CA file (NULL:
								 * the system's CAs) */
	char	   *sslcert;		/* ... presenting this client certificate */
	char	   *sslkey;
	char	   *conninfo;		/* libpq */
	bool		send;
	bool		receive;
	Oid			owner;			/* whose rules apply when connecting */
	bool		password_required;	/* false: waived by a superuser */
} SbPeerConfig;

typedef struct SbTransportOps
{
	/* as peer_status.transport and scuttlebutt.peers.transport name it */
	const char *name;

	/*
	 * Whether the peer raises its clock to a header sent after history
	 * (libpq: _push() does; the reference's stream takes a clock only in
	 * the first header)
	 */
	bool		takes_clock;

	/*
	 * The peer holds what it sends durably and sends it again on the next
	 * connection (a PostgreSQL server): what it sent is applied without
	 * waiting for the WAL flush (the worker's session commits so:
	 * SbSessionCommitsWithoutFlush).  A stream peer, a
	 * JavaScript process, may be gone by then: its updates are flushed
	 * (a server we dialed, once its input is drained: see session.c's
	 * commits_without_flush).
	 */
	bool		applies_without_flush;

	/* outgoing: makes s a peer of config (copied into s->cxt) */
	void		(*configure) (SbSession *s, const SbPeerConfig *config);

	/* outgoing: starts connecting (the session is in backoff and due) */
	void		(*start) (SbSession *s);

	/* the sockets to wait on now, SB_SESSION_SOCKETS entries */
	void		(*wait_sockets) (SbSession *s, SbWaitSocket *socks);

	/* socket number index is ready for events */
	void		(*handle) (SbSession *s, int index, uint32 events);

	/* sends what the session queued, if it can; false if the session closed */
	bool		(*flush) (SbSession *s);

	/* the nearest deadline of the open connection (0: none) ... */
	TimestampTz (*deadline) (SbSession *s);

	/* ... and closing the session when it passed */
	void		(*check_deadline) (SbSession *s, TimestampTz now);

	/* whether nothing is in flight either way (for wait_for_sync) */
	bool		(*idle) (SbSession *s);

	/* releases the connection (the session ends); may be called when closed */
	void		(*disconnect) (SbSession *s);
} SbTransportOps;

extern const SbTransportOps SbStreamTransport;
extern const SbTransportOps SbLibpqTransport;

#endif							/* SCUTTLEBUTT_TRANSPORT_H */
