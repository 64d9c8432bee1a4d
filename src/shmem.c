/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  Shared state between the replication worker and backends.
 *
 * Locking protocol:
 *	- sb_shared->lock (LWLock, tranche "scuttlebutt") guards worker_pid,
 *	  worker_latch, the connection status slots and the error counters.
 *	  Only the worker writes slots and counters (exclusive); backends read
 *	  them (shared) for the peer_status and connection_errors views.
 *	- commits, peers_changed and privileges_changed are atomics, touched
 *	  without the lock: a
 *	  backend bumps them at commit and sets the worker's latch; the worker
 *	  reads them after resetting its latch, so no wake-up is lost.
 *	- status_cv is broadcast by the worker after it publishes statuses;
 *	  wait_for_sync() sleeps on it.
 *	- model_cv[slot] is broadcast at the commit of a write to a model of
 *	  that slot (model id % SB_MODEL_COMMIT_SLOTS), but only while some
 *	  backend waits for it in poll() (model_pollers[slot] > 0): a libpq
 *	  peer's long poll.  Writers to other models wake nobody.  Both sides
 *	  use full-barrier atomics (the committer bumps model_commits[slot]
 *	  then reads model_pollers[slot]; the poller bumps model_pollers[slot]
 *	  then reads model_commits[slot]), so either the poller sees the new
 *	  count or the committer sees the poller and broadcasts.
 *
 * At commit: any backend that writes a model notes it, and at commit
 * (after the transaction is visible) bumps the commit counter and wakes
 * the worker, which then sends the new updates to connected peers.  A
 * transaction that wrote nothing pays nothing; with no connection open the
 * worker is not woken (a new connection starts from the tables anyway).
 * This is SbShmemXactEvent, which commit.c's transaction callback calls
 * after the sequencer has published the transaction's timestamps.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "rejoin.h"
#include "sequencer.h"
#include "shmem.h"

SbShared   *sb_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* The model slots this transaction wrote (bit i: slot i) */
static uint64 wrote_model_slots = 0;
/* The counts this process's latest counted commit moved the total and each slot to */
static uint64 last_counted_commit = 0;
static uint64 last_counted_model_commit[SB_MODEL_COMMIT_SLOTS];
static bool changed_peers_this_xact = false;
static bool changed_privileges_this_xact = false;

#define model_slot(model_id) ((uint32) (model_id) % SB_MODEL_COMMIT_SLOTS)

/*
 * Status slots for the server's life: scuttlebutt.max_connections as the
 * configuration sets it at start (a reload may raise it up to here), never
 * fewer than SB_MIN_INCOMING_SLOTS, and the dialed peers'.  Each costs
 * sizeof(SbConnStatus), about 1.5 kB.  Fixed when the space is requested:
 * a restart after a crash sets the memory up again in the same space.
 */
static int	requested_slots = 0;

static Size
shared_size(int nslots)
{
	return add_size(offsetof(SbShared, conns),
					mul_size(nslots, sizeof(SbConnStatus)));
}

static void
sb_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	requested_slots = Max(sb_max_connections, SB_MIN_INCOMING_SLOTS) + SB_MAX_PEERS;
	RequestAddinShmemSpace(MAXALIGN(shared_size(requested_slots)));
	RequestNamedLWLockTranche("scuttlebutt", 1);
	SbSequencerShmemRequest();
}

static void
sb_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	sb_shared = ShmemInitStruct("scuttlebutt", shared_size(requested_slots), &found);
	if (!found)
	{
		memset(sb_shared, 0, shared_size(requested_slots));
		sb_shared->nslots = requested_slots;
		sb_shared->lock = &(GetNamedLWLockTranche("scuttlebutt"))->lock;
		pg_atomic_init_u64(&sb_shared->commits, 0);
		pg_atomic_init_u32(&sb_shared->peers_changed, 0);
		pg_atomic_init_u32(&sb_shared->privileges_changed, 0);
		pg_atomic_init_u32(&sb_shared->connections, 0);
		pg_atomic_init_u32(&sb_shared->rsa_signers, 0);
		pg_atomic_init_u64(&sb_shared->rsa_contended_until, 0);
		SbRejoinStartup();
		ConditionVariableInit(&sb_shared->status_cv);
		for (int i = 0; i < SB_MODEL_COMMIT_SLOTS; i++)
		{
			pg_atomic_init_u64(&sb_shared->model_commits[i], 0);
			pg_atomic_init_u32(&sb_shared->model_pollers[i], 0);
			ConditionVariableInit(&sb_shared->model_cv[i]);
		}
		for (int i = 0; i < SB_PUSH_SLOTS; i++)
			pg_atomic_init_u64(&sb_shared->pushes[i], 0);
	}
	SbSequencerShmemInit();
	LWLockRelease(AddinShmemInitLock);
}

static void
wake_worker(void)
{
	Latch	   *latch;

	/* a torn read is harmless: the pointer is set once per worker start */
	latch = sb_shared->worker_latch;
	if (latch != NULL)
		SetLatch(latch);
}

/* Moves the commit counts of the model slots in mask, waking their pollers */
static void
count_model_commits(uint64 mask)
{
	for (int i = 0; i < SB_MODEL_COMMIT_SLOTS; i++)
		if (mask & (UINT64CONST(1) << i))
		{
			last_counted_model_commit[i] =
				pg_atomic_fetch_add_u64(&sb_shared->model_commits[i], 1) + 1;
			if (pg_atomic_read_u32(&sb_shared->model_pollers[i]) > 0)
				ConditionVariableBroadcast(&sb_shared->model_cv[i]);
		}
	last_counted_commit = pg_atomic_fetch_add_u64(&sb_shared->commits, 1) + 1;
}

/*
 * A transaction that took local timestamps of model_id ended without
 * committing (the sequencer has dropped its entry).  Readers were held
 * below its timestamps; they may now see later local writes that committed
 * meanwhile, so the worker and poll() must look again, as after a commit:
 * the count is of changes a reader may see, not only of commits.
 */
void
SbNoteHorizonMoved(int32 model_id)
{
	if (sb_shared == NULL)
		return;
	count_model_commits(UINT64CONST(1) << model_slot(model_id));
	if (pg_atomic_read_u32(&sb_shared->connections) > 0)
		wake_worker();
}

/*
 * Shared memory's step of the transaction callback (commit.c calls it
 * after the sequencer's): at a commit that wrote a model, moves the commit
 * counts, wakes the pollers of its slots and the worker.
 */
void
SbShmemXactEvent(XactEvent event)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (sb_shared != NULL && (wrote_model_slots != 0 || changed_peers_this_xact))
			{
				if (wrote_model_slots != 0)
					count_model_commits(wrote_model_slots);
				if (changed_peers_this_xact)
					pg_atomic_write_u32(&sb_shared->peers_changed, 1);
				/* no connection, nobody to tell: spare the wake-up */
				if (changed_peers_this_xact ||
					pg_atomic_read_u32(&sb_shared->connections) > 0)
					wake_worker();
			}
			/* only open connections have privileges to check again */
			if (sb_shared != NULL && changed_privileges_this_xact &&
				pg_atomic_read_u32(&sb_shared->connections) > 0)
			{
				pg_atomic_write_u32(&sb_shared->privileges_changed, 1);
				wake_worker();
			}
			wrote_model_slots = 0;
			changed_peers_this_xact = false;
			changed_privileges_this_xact = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			wrote_model_slots = 0;
			changed_peers_this_xact = false;
			changed_privileges_this_xact = false;
			break;
		default:
			break;
	}
}

/* Installs the shared memory hooks, when preloaded */
void
SbShmemInit(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = sb_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = sb_shmem_startup;
}

void
SbNoteModelWrite(int32 model_id)
{
	wrote_model_slots |= UINT64CONST(1) << model_slot(model_id);
}

void
SbNotePeersChanged(void)
{
	changed_peers_this_xact = true;
}

void
SbNotePrivilegesChanged(void)
{
	changed_privileges_this_xact = true;
}

uint64
SbCommitCount(void)
{
	return sb_shared ? pg_atomic_read_u64(&sb_shared->commits) : 0;
}

uint64
SbLastCountedCommit(void)
{
	return last_counted_commit;
}

uint64
SbLastCountedModelCommit(int32 model_id)
{
	return last_counted_model_commit[model_slot(model_id)];
}

uint64
SbModelCommitCount(int32 model_id)
{
	return sb_shared ? pg_atomic_read_u64(&sb_shared->model_commits[model_slot(model_id)]) : 0;
}

bool
SbWaitForModelCommit(int32 model_id, uint64 commits, int timeout_ms)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	uint32		slot;
	bool		committed = false;

	if (sb_shared == NULL)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		return false;
	}

	slot = model_slot(model_id);
	pg_atomic_fetch_add_u32(&sb_shared->model_pollers[slot], 1);
	PG_TRY();
	{
		ConditionVariablePrepareToSleep(&sb_shared->model_cv[slot]);
		for (;;)
		{
			long		ms;

			committed = pg_atomic_read_u64(&sb_shared->model_commits[slot]) != commits;
			ms = (long) ((deadline - GetCurrentTimestamp()) / 1000);
			if (committed || ms <= 0)
				break;
			(void) ConditionVariableTimedSleep(&sb_shared->model_cv[slot], ms,
											   PG_WAIT_EXTENSION);
		}
		ConditionVariableCancelSleep();
	}
	PG_FINALLY();
	{
		pg_atomic_fetch_sub_u32(&sb_shared->model_pollers[slot], 1);
	}
	PG_END_TRY();
	return committed;
}

void
SbNotePush(uint32 pusher, uint32 push)
{
	pg_atomic_uint64 *slot;
	uint64		old;
	uint64		new;

	if (sb_shared == NULL || pusher == 0)
		return;
	slot = &sb_shared->pushes[pusher % SB_PUSH_SLOTS];
	old = pg_atomic_read_u64(slot);
	/* a full barrier: noted before any of the push's writes can be seen */
	do
	{
		uint32		latest = (uint32) (old >> 32) == pusher ? (uint32) old : 0;

		new = ((uint64) pusher << 32) | Max(latest, push);
	} while (!pg_atomic_compare_exchange_u64(slot, &old, new));
}

bool
SbPushesSince(uint32 pusher, uint32 pushes)
{
	uint64		now;

	if (sb_shared == NULL || pusher == 0)
		return false;
	/* read after the caller's snapshot */
	pg_memory_barrier();
	now = pg_atomic_read_u64(&sb_shared->pushes[pusher % SB_PUSH_SLOTS]);
	/* the session's own: a push it sent after those it counted */
	if ((uint32) (now >> 32) == pusher)
		return (uint32) now > pushes;
	/* another session's: it may have overwritten one of ours, at any time */
	return now != 0;
}

void
SbRequireWorker(const char *what)
{
	if (sb_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s requires the scuttlebutt replication worker", what),
				 errhint("Add scuttlebutt to shared_preload_libraries in postgresql.conf and restart the server.")));
}

void
SbCountConnectionError(SbCloseReason reason, const char *peer)
{
	SbErrorCount *slot = &sb_shared->errors[reason];

	LWLockAcquire(sb_shared->lock, LW_EXCLUSIVE);
	slot->count++;
	slot->last_at = GetCurrentTimestamp();
	strlcpy(slot->last_peer, peer ? peer : "", sizeof(slot->last_peer));
	LWLockRelease(sb_shared->lock);
}
