/*-------------------------------------------------------------------------
 *
 * session.h
 *	  A transport-neutral peer session: one model replicated with one peer.
 *
 * The session knows what the peer holds, what it sent us (the pending
 * batch) and what we still owe it (the outbox of lines filled by the
 * history sender, "pump").  It knows nothing of sockets or libpq: a
 * transport (transport.h) moves its lines and calls back into it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_SESSION_H
#define SCUTTLEBUTT_SESSION_H

#include "datatype/timestamp.h"
#include "lib/stringinfo.h"

#include "close_reason.h"
#include "model_store.h"
#include "remote_clock.h"
#include "shmem.h"
#include "wire_message.h"

struct SbTransportOps;

typedef enum SbSessionState
{
	SB_SESSION_CONNECTING,		/* outgoing: the transport is connecting */
	SB_SESSION_HANDSHAKE,		/* waiting for the peer's header */
	SB_SESSION_SYNCING,			/* history being exchanged */
	SB_SESSION_LIVE,			/* both sides sent "SYNC": tailing */
	SB_SESSION_BACKOFF,			/* outgoing: waiting to reconnect */
	SB_SESSION_CLOSED			/* to be freed (incoming) */
} SbSessionState;

/* Room for the longest message libpq gives for a multi-address failure */
#define SB_LAST_ERROR_LEN 1024

typedef struct SbSession
{
	MemoryContext cxt;			/* everything of this session's peer */
	MemoryContext session_cxt;	/* reset at each (re)connect */
	MemoryContext batch_cxt;	/* received updates; reset after each apply */
	int			slot;			/* status slot in shared memory */

	const struct SbTransportOps *ops;	/* the transport */
	void	   *transport;		/* the transport's own state */
	bool		sockets_changed;	/* a socket was opened, replaced or
									 * closed: the wait set must follow */

	SbSessionState state;
	TimestampTz deadline;		/* backoff: when to reconnect */
	int32		peer_id;		/* outgoing: scuttlebutt.peers.id */
	bool		outgoing;
	bool		substream;		/* a sub-stream of a multiplexed connection
								 * (mux_demux.c): it holds no socket and is
								 * no connection of its own */
	int			backoff_ms;
	bool		send_enabled;	/* false: read-only replica's side */
	bool		receive_enabled;	/* false: master's side */
	/* what the peer row or the listener settings ask for, before the
	 * role's privileges narrow it at each connection */
	bool		want_send;
	bool		want_receive;
	bool		write_denied;	/* updates dropped: the role may not write */
	char		remote_addr[64];
	char	   *remote_id;

	/*
	 * The role the connection acts as (incoming: decided at the header by
	 * scuttlebutt.listen_rules; outgoing: the owner of its peer row;
	 * InvalidOid while unknown), and how an incoming one was authenticated
	 * ("trust", "cert", "token"; "" for outgoing)
	 */
	Oid			role;
	char		auth_method[8];

	/* the model, once known (outgoing: at once; incoming: from the header) */
	char	   *model_name;
	bool		model_known;
	SbModelRef	model;

	/* outbox: out.data[out_off .. out.len) are lines not yet sent */
	StringInfoData out;
	int			out_off;

	bool		peer_clock_known;	/* the pump may run */
	bool		sync_sent;
	bool		sync_received;
	SbRemoteClock remote;		/* what the peer holds */
	SbRemoteClock deferred;		/* sources with an update too far ahead:
								 * the rest of theirs waits for a reconnect */
	double		deferred_first; /* the earliest of those updates (or
								 * Infinity) */
	bool		clock_owed;		/* remote raised past what it was sent: tell it */
	bool		caught_up;		/* nothing left to send as of commits_seen */
	uint64		commits_seen;
	/*
	 * The model slot's commit count the last apply's commit made, when it
	 * was the only commit of the slot counted meanwhile (else 0)
	 */
	uint64		applied_alone;

	/* received updates waiting to be applied in one transaction */
	SbMessage  *pending;
	int			npending;
	int			pending_alloc;
	/* a clock to raise ours to after them (vouched for by the peer) */
	SbClockEntry *pending_clock;
	int			npending_clock;

	/*
	 * The transport stopped reading with input still waiting (set by
	 * stream.c): on an outgoing stream what is applied meanwhile commits
	 * without waiting for the WAL flush (unflushed), and the apply that
	 * finds no more input waiting flushes it all (SbSessionApplyPending)
	 */
	bool		input_waiting;
	bool		unflushed;

	SbPeerCounters counters;	/* for peer_status */
	TimestampTz last_reject_warning;
	int64		rejects_unreported;
	TimestampTz last_skew_warning;
	int64		skews_unreported;
	char		last_error[SB_LAST_ERROR_LEN];
	bool		tls;			/* the connection is TLS (its handshake done) */
	bool		websocket;		/* ... and WebSocket (its upgrade done) */
	int			close_reason;	/* while it is closed: why (SbCloseReason);
								 * -1 otherwise, and when the worker lets it
								 * go */
} SbSession;

/*
 * Output beyond this waits for the transport before more history is read;
 * a page of history stops once past it (one update beyond at most).
 */
#define SB_OUT_HIGH_WATER (256 * 1024)
/*
 * A connection's buffers (the outbox, a stream's input) start this small;
 * grown past SB_OUT_KEEP, they are made small again once empty.
 */
#define SB_OUT_INITIAL 1024
#define SB_OUT_KEEP (64 * 1024)
/* Updates read per page of history (at most), and applied per transaction */
#define SB_HISTORY_PAGE 2000
#define SB_APPLY_BATCH 5000

/* A session for a transport; outgoing ones start in backoff, due at once */
extern SbSession *SbSessionCreate(MemoryContext parent, bool outgoing,
								  const struct SbTransportOps *ops);
extern void SbSessionFree(SbSession *s);

/* Resets the per-connection state (what the peer holds, buffers, flags) */
extern void SbSessionBegin(SbSession *s);

/* Whether a connection is under way (connecting, or connected) */
static inline bool
SbSessionIsOpen(SbSession *s)
{
	return s->state != SB_SESSION_BACKOFF && s->state != SB_SESSION_CLOSED;
}

/*
 * Ends the connection: logs the reason (its errcode; sqlerrcode 0 takes the
 * reason's own) with detail, counts it, keeps it as last_error, releases
 * the transport's connections.  Outgoing sessions go to backoff, incoming
 * ones to SB_SESSION_CLOSED.
 */
extern void SbSessionClose(SbSession *s, SbCloseReason reason,
						   const char *detail);
extern void SbSessionCloseWithCode(SbSession *s, SbCloseReason reason,
								   int sqlerrcode, const char *detail);

/* Notes a rejected update (counted; a WARNING now and then) */
extern void SbSessionReject(SbSession *s, const char *why);

typedef void (*SbSessionTxnFn) (SbSession *s, void *arg);

/*
 * Runs fn in a transaction of its own, with an active snapshot.  An error
 * aborts the transaction and closes this session (with the message);
 * returns false then.
 */
extern bool SbSessionTransaction(SbSession *s, const char *activity,
								 SbSessionTxnFn fn, void *arg);

/*
 * Runs fn, one step of the worker's work for this session (reading its
 * input, sending, a deadline).  An ERROR in it closes this session, with
 * the error's message under reason "internal error", and goes no further:
 * no byte a peer sends can end the worker.  FATAL and PANIC still do.
 * Returns false after an ERROR.
 */
extern bool SbSessionGuard(SbSession *s, SbSessionTxnFn fn, void *arg);

/*
 * Looks the model up by name (a transaction); closes the session if absent.
 * The session's role must hold read or write on it (else it is closed,
 * "permission denied"): without read it sends nothing, without write it
 * drops what it receives (counted as rejected).
 */
extern bool SbSessionResolveModel(SbSession *s);

/*
 * After grants or models changed: what the open session's role may do now.
 * Never widens what the session does (that waits for its next connection);
 * a role that lost write has what it sends dropped, one that lost read is
 * sent nothing more, one that holds neither is closed.
 */
extern void SbSessionRecheckPrivileges(SbSession *s);

/*
 * The peer's header: its id and clock.  From now on the pump sends it what
 * that clock lacks.
 */
extern void SbSessionPeerHeader(SbSession *s, const char *id,
								const SbClockEntry *clock, int n);

/*
 * Takes a parsed message from the peer (parsed_ok and err as
 * SbParseMessage left them): "SYNC", or an update queued for applying.
 * Headers are the transport's.  False if the session was closed.
 */
extern bool SbSessionReceive(SbSession *s, SbMessage *msg, bool parsed_ok,
							 SbMessageError *err);

/* The peer has sent all it had ("SYNC"): goes live once both have */
extern void SbSessionPeerSynced(SbSession *s);

/*
 * Queues a peer's clock to raise this model's clock to, after the updates
 * queued before it: only for a clock that came with all of the peer's
 * history beyond what we held, read in one snapshot (see poll()).
 */
extern void SbSessionQueueClock(SbSession *s, const SbClockEntry *entries, int n);

/* Whether received updates or a clock wait to be applied, or a flush */
extern bool SbSessionHasPending(SbSession *s);

/* Applies received updates (one transaction).  False if closed. */
extern bool SbSessionApplyPending(SbSession *s);

/*
 * Appends to the outbox the history the peer lacks, a page at a time while
 * the outbox is below its high-water mark, then "SYNC".  False if closed.
 */
extern bool SbSessionPump(SbSession *s, uint64 commits);

/* Whether SbSessionPump and a flush may have work (else both may be skipped) */
extern bool SbSessionPumpDue(SbSession *s, uint64 commits);

/*
 * Around one pass of SbSessionPump over the sessions: sessions of a model
 * that lack the same page share one read of it.
 */
extern void SbSessionPumpShareBegin(void);
extern void SbSessionPumpShareEnd(void);

/* Appends one line (text without its newline) to the outbox */
extern void SbSessionAppendLine(SbSession *s, const char *text, int len);

/* Appends our header with clock (and meta_model unless NULL) to the outbox */
extern void SbSessionAppendHeader(SbSession *s, const SbClockEntry *clock, int n,
								  const char *meta_model);

/* Bytes of the outbox not yet sent */
static inline int
SbSessionOutboxLength(SbSession *s)
{
	return s->out.len - s->out_off;
}

/* The transport took n bytes of the outbox */
extern void SbSessionOutboxConsumed(SbSession *s, int n);

/* Whether history is left to send and the outbox has room (no waiting) */
extern bool SbSessionWantsPump(SbSession *s);

/*
 * When an outgoing session should redial because the updates it deferred
 * for being too far ahead are now within bounds (0: not within a day);
 * SbSessionRedialIfDue closes it then (the redial comes with back-off).
 */
extern TimestampTz SbSessionRedialAt(SbSession *s);
extern void SbSessionRedialIfDue(SbSession *s);

/* Whether nothing is owed or waiting either way (for wait_for_sync) */
extern bool SbSessionCaughtUp(SbSession *s, uint64 commits);

extern const char *SbSessionStateName(SbSessionState state);

#endif							/* SCUTTLEBUTT_SESSION_H */
