/*-------------------------------------------------------------------------
 *
 * shmem.h
 *	  Shared state between the replication worker and backends.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_SHMEM_H
#define SCUTTLEBUTT_SHMEM_H

#include "access/xact.h"
#include "datatype/timestamp.h"
#include "port/atomics.h"
#include "storage/condition_variable.h"
#include "storage/latch.h"
#include "storage/lwlock.h"

#include "close_reason.h"
#include "guc.h"

/* Commit counters per model: model id modulo this many */
#define SB_MODEL_COMMIT_SLOTS 64

/* The last push of libpq peers' sessions: the session's number modulo this many */
#define SB_PUSH_SLOTS 1024

#define SB_TEXT_SHORT 64
#define SB_TEXT_LONG 256
/* last_error: room for libpq's message about every address it tried */
#define SB_TEXT_ERROR 1024

/* What a peer session has done, as peer_status shows it */
typedef struct SbPeerCounters
{
	TimestampTz synced_at;		/* both sides had sent "SYNC" (0: not yet) */
	TimestampTz last_activity;
	int64		sent;			/* updates */
	int64		received;
	int64		rejected;		/* invalid: dropped */
	int64		rejected_skew;	/* too far ahead: deferred to a reconnect */
	int64		bytes_in;
	int64		bytes_out;
} SbPeerCounters;

typedef struct SbConnStatus
{
	bool		in_use;
	int32		peer_id;		/* 0 for an incoming connection */
	char		direction;		/* 'i' or 'o' */
	char		transport[8];
	char		model[SB_TEXT_LONG];
	char		remote_addr[SB_TEXT_SHORT];
	char		remote_id[SB_TEXT_SHORT];
	char		state[16];
	SbPeerCounters counters;
	char		last_error[SB_TEXT_ERROR];
	bool		tls;			/* the connection is TLS */
	bool		websocket;		/* ... WebSocket */
	bool		caught_up;		/* live, and nothing left to send ... */
	uint64		commits_seen;	/* ... as of this many commits */
	Oid			role;			/* the role it acts as (InvalidOid: unknown) */
	char		method[8];		/* incoming: how it was authenticated */
} SbConnStatus;

/* Sessions closed for one reason (close_reason.h) */
typedef struct SbErrorCount
{
	int64		count;
	TimestampTz last_at;
	char		last_peer[SB_TEXT_SHORT];
} SbErrorCount;

typedef struct SbShared
{
	LWLock	   *lock;			/* guards everything below but the atomics */
	pid_t		worker_pid;		/* 0 when no worker runs */
	Latch	   *worker_latch;
	TimestampTz worker_conf_loaded; /* when it last read the settings */
	pg_atomic_uint64 commits;	/* bumped at each commit that wrote a model */
	pg_atomic_uint32 peers_changed; /* set when the peers table changed */
	pg_atomic_uint32 privileges_changed;	/* set when grants or models changed */
	pg_atomic_uint32 connections;	/* sockets the worker holds */
	pg_atomic_uint32 rejoining; /* restored: local writes wait (rejoin.c) */
	ConditionVariable status_cv;	/* broadcast when statuses change */
	/*
	 * Per model slot (model id % slots): commits that wrote a model of the
	 * slot, the backends waiting for one in poll(), and their condition
	 * variable (broadcast at such a commit only while some wait).
	 */
	pg_atomic_uint64 model_commits[SB_MODEL_COMMIT_SLOTS];
	pg_atomic_uint32 model_pollers[SB_MODEL_COMMIT_SLOTS];
	ConditionVariable model_cv[SB_MODEL_COMMIT_SLOTS];
	/*
	 * Per libpq peer session (its number % slots): the session's number
	 * (high 32 bits) and the sequence number of its latest push (low 32
	 * bits) that began here (see SbNotePush).
	 */
	pg_atomic_uint64 pushes[SB_PUSH_SLOTS];
	SbErrorCount errors[SB_CLOSE_REASONS];
	/*
	 * Processes signing with a two-prime RSA key now, and until when none
	 * splits its signature on two threads (signature.c)
	 */
	pg_atomic_uint32 rsa_signers;
	pg_atomic_uint64 rsa_contended_until;

	/*
	 * One slot per connection the worker holds or peer it is dialing: the
	 * last SB_MAX_PEERS are the dialed peers'.  Sized at server start from
	 * scuttlebutt.max_connections (SB_MIN_INCOMING_SLOTS at least).
	 */
	int			nslots;
	SbConnStatus conns[FLEXIBLE_ARRAY_MEMBER];
} SbShared;

/* NULL unless the library was preloaded */
extern SbShared *sb_shared;

/* Incoming connections the status slots hold (sb_shared must be set) */
#define SbIncomingSlots() (sb_shared->nslots - SB_MAX_PEERS)

extern void SbShmemInit(void);

/* The end of a transaction: commit counts and wake-ups (called by commit.c) */
extern void SbShmemXactEvent(XactEvent event);

/* Notes that this transaction wrote a model: the worker is woken at commit */
extern void SbNoteModelWrite(int32 model_id);

/*
 * The count of all commits that wrote a model, and what this process's
 * latest such commit moved it (and model_id's slot count) to: 0 if it
 * moved none.  A commit whose count is the one read just before it began
 * plus one was the only commit counted in between.
 */
extern uint64 SbCommitCount(void);
extern uint64 SbLastCountedCommit(void);
extern uint64 SbLastCountedModelCommit(int32 model_id);

/* A transaction that took local timestamps of a model ended uncommitted */
extern void SbNoteHorizonMoved(int32 model_id);

/* Notes that this transaction changed the peers: the worker rereads them */
extern void SbNotePeersChanged(void);

/*
 * Notes that this transaction changed grants or models: the worker checks
 * again what its open connections' roles may do
 */
extern void SbNotePrivilegesChanged(void);

/*
 * The count of commits that wrote model_id (or a model sharing its slot),
 * and a wait of up to timeout_ms for it to pass commits (read before
 * looking at the tables): true if such a commit came.  Without the library
 * preloaded nothing can wake the wait: it sleeps the whole timeout and
 * returns false.
 */
extern uint64 SbModelCommitCount(int32 model_id);
extern bool SbWaitForModelCommit(int32 model_id, uint64 commits, int timeout_ms);

/*
 * A libpq peer's session picks a number (pusher), and numbers its pushes
 * 1, 2, ...  SbNotePush notes a push here as it begins, before its
 * transaction commits.  A wait that answers with a page (wait_for_commit()
 * with max_updates) is told the pushes its session sent before the wait:
 * those are in the clock it waits with.  A later one could be in the page,
 * which would send those updates back: SbPushesSince, read after the
 * page's snapshot, says whether one may have begun.  Sessions share slots
 * (pusher % SB_PUSH_SLOTS): a slot another session holds may have
 * overwritten one of ours, so it costs a wait its page (the caller polls).
 * A session that never pushes waits with pusher 0: no check.
 */
extern void SbNotePush(uint32 pusher, uint32 push);
extern bool SbPushesSince(uint32 pusher, uint32 pushes);

/* ERROR with a hint unless the library was preloaded */
extern void SbRequireWorker(const char *what);

/* Counts a connection closed for reason (worker only) */
extern void SbCountConnectionError(SbCloseReason reason, const char *peer);

#endif							/* SCUTTLEBUTT_SHMEM_H */
