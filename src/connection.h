/*-------------------------------------------------------------------------
 *
 * connection.h
 *	  One scuttlebutt stream: a socket, one model, its state machine.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_CONNECTION_H
#define SCUTTLEBUTT_CONNECTION_H

#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "port.h"

#include "model_store.h"
#include "wire_message.h"

typedef enum SbConnState
{
	SB_CONN_CONNECTING,			/* outgoing: connect() in progress */
	SB_CONN_HANDSHAKE,			/* waiting for the peer's header */
	SB_CONN_SYNCING,			/* history being exchanged */
	SB_CONN_LIVE,				/* both sides sent "SYNC": tailing */
	SB_CONN_BACKOFF,			/* outgoing: waiting to reconnect */
	SB_CONN_CLOSED				/* to be freed (incoming) */
} SbConnState;

typedef enum SbTransport
{
	SB_TRANSPORT_STREAM,		/* a socket speaking the scuttlebutt protocol */
	SB_TRANSPORT_LIBPQ			/* a PostgreSQL server, through libpq */
} SbTransport;

/* What the peer is known to hold, per source: it needs only newer updates */
typedef struct SbRemoteClock
{
	int			n;
	int			alloc;
	SbClockEntry *entries;		/* sorted by source (strcmp) */
} SbRemoteClock;

typedef struct SbConn
{
	MemoryContext cxt;			/* everything of this connection */
	MemoryContext session_cxt;	/* reset at each (re)connect */
	MemoryContext batch_cxt;	/* received updates; reset after each apply */
	int			slot;			/* status slot in shared memory */
	SbTransport transport;
	pgsocket	sock;			/* stream only */
	struct SbLibpqPeer *libpq;	/* libpq only (libpq_peer.c) */
	SbConnState state;
	TimestampTz deadline;		/* handshake timeout or reconnect time */

	/* outgoing peers (peer_id > 0) */
	int32		peer_id;
	char	   *host;
	int			port;
	int			backoff_ms;

	bool		outgoing;
	bool		send_enabled;	/* false: read-only replica's side */
	bool		receive_enabled;	/* false: master's side */
	char		remote_addr[64];
	char	   *remote_id;

	/* the model, once known (outgoing: at once; incoming: from the header) */
	char	   *model_name;
	bool		model_known;
	SbModelRef	model;

	/* input: bytes not yet split into lines */
	StringInfoData in;
	/* output: out.data[out_off .. out.len) still to write */
	StringInfoData out;
	int			out_off;

	bool		header_sent;
	bool		header_received;
	bool		sync_sent;
	bool		sync_received;
	SbRemoteClock remote;		/* what the peer holds */
	bool		clock_owed;		/* remote raised past what it was sent: tell it */
	bool		caught_up;		/* nothing left to send as of commits_seen */
	uint64		commits_seen;

	/* received updates waiting to be applied in one transaction */
	SbMessage  *pending;
	int			npending;
	int			pending_alloc;
	/* a clock to raise ours to after them (libpq: vouched for by a snapshot) */
	SbClockEntry *pending_clock;
	int			npending_clock;

	/* counters for peer_status */
	TimestampTz synced_at;
	TimestampTz last_activity;
	int64		sent;
	int64		received;
	int64		rejected;
	int64		bytes_in;
	int64		bytes_out;
	TimestampTz last_reject_warning;
	int64		rejects_unreported;
	char		last_error[256];
} SbConn;

/* Output beyond this waits for the socket before more history is read */
#define SB_OUT_HIGH_WATER (256 * 1024)
/* Updates read per page of history, and applied per transaction */
#define SB_HISTORY_PAGE 2000
#define SB_APPLY_BATCH 5000
/* Bytes read from one socket before the loop serves the others */
#define SB_READ_BUDGET (512 * 1024)

extern SbConn *SbConnCreate(MemoryContext parent, bool outgoing);
extern void SbConnFree(SbConn *conn);

/* Starts a session on an accepted or just connected socket */
extern void SbConnStart(SbConn *conn, pgsocket sock, const char *remote_addr);

/* Resets the per-session state (what the peer holds, buffers, flags) */
extern void SbConnBeginSession(SbConn *conn);

/* Whether a session is under way (connecting, or connected) */
static inline bool
SbConnIsOpen(SbConn *conn)
{
	return conn->state != SB_CONN_BACKOFF && conn->state != SB_CONN_CLOSED;
}

/*
 * Closes the socket, logging reason at WARNING (NULL: a normal close) and
 * counting it; outgoing connections go to backoff, incoming ones to
 * SB_CONN_CLOSED.
 */
extern void SbConnClose(SbConn *conn, const char *reason, const char *detail);

/* Reads what the socket has; handles complete lines.  False if closed. */
extern bool SbConnRead(SbConn *conn);

/*
 * Takes a parsed line from the peer (parsed_ok and err as SbParseMessage
 * left them): a header, "SYNC", or an update queued for applying.  False
 * if the connection was closed.
 */
extern bool SbConnReceive(SbConn *conn, SbMessage *msg, bool parsed_ok,
						  SbMessageError *err);

/*
 * Queues a peer's clock to raise this model's clock to, after the updates
 * queued before it: only for a clock that came with all of the peer's
 * history beyond what we held, read in one snapshot (see poll()).
 */
extern void SbConnQueueClock(SbConn *conn, SbClockEntry *entries, int n);

/* Goes live once "SYNC" went both ways */
extern void SbConnNoteSynced(SbConn *conn);

typedef void (*SbConnTxnFn) (SbConn *conn, void *arg);

/*
 * Runs fn in a transaction of its own, with an active snapshot.  An error
 * aborts the transaction and closes this connection (with the message);
 * returns false then.
 */
extern bool SbConnTransaction(SbConn *conn, const char *activity,
							  SbConnTxnFn fn, void *arg);

/* A clock of what someone holds: the entry of source, and raising it */
extern double SbRemoteClockGet(SbRemoteClock *rc, const char *source);
extern void SbRemoteClockRaise(SbRemoteClock *rc, MemoryContext cxt,
							   const char *source, double ts);

/* Writes buffered output to the socket (streams).  False if closed. */
extern bool SbConnWrite(SbConn *conn);

/*
 * Sends what is due: a stream's buffered output; a libpq peer's push of
 * it, or its first poll.  False if closed.
 */
extern bool SbConnFlush(SbConn *conn);

/* Applies received updates (one transaction).  False if closed. */
extern bool SbConnApplyPending(SbConn *conn);

/*
 * Appends history the peer lacks, a page at a time while the output
 * buffer is below its high-water mark, then "SYNC".  False if closed.
 */
extern bool SbConnPump(SbConn *conn, uint64 commits);

/* Whether the connection has output waiting for the socket */
static inline bool
SbConnWantsWrite(SbConn *conn)
{
	return conn->out_off < conn->out.len;
}

extern const char *SbConnStateName(SbConnState state);

#endif							/* SCUTTLEBUTT_CONNECTION_H */
