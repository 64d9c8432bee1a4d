/*-------------------------------------------------------------------------
 *
 * sequencer.c
 *	  This node's timestamps, handed out in shared memory, and the horizon
 *	  below which readers may see them.
 *
 * A peer that has seen timestamp t from a source never asks for older
 * ones again, so no reader may be shown a source's update while an older
 * one of that source could still commit.  For the sources of other nodes
 * the clock row lock keeps commit order equal to timestamp order (see
 * store.c).  For this node's own source, that lock would make every
 * local writer of a model wait for the previous one to commit; instead:
 *
 *	- Writers take timestamps from a slot per (database, model, node id)
 *	  in shared memory, under the slot's LWLock, and in the same critical
 *	  section publish an entry "transaction X has taken timestamps from m
 *	  on" in their own backend's array.  Writers never wait for each other.
 *	- A reader computes, for its snapshot S, the limit below which every
 *	  timestamp handed out is either in S or will never commit: the
 *	  greatest timestamp committed (read first; for a slot made from the
 *	  clocks row, after a restart or an eviction, the latest update held
 *	  or what a peer vouches for: see find_slot), capped below the
 *	  smallest timestamp of any entry still running or committed after S
 *	  (XidInMVCCSnapshot).  Every reader of this node's source goes
 *	  through scuttlebutt._visible_ts(), so history(), clock(), export(),
 *	  poll() and the worker all show a prefix in timestamp order, and
 *	  clock() is the latest update that prefix holds, not a timestamp of a
 *	  write that rolled back.
 *	- A committed entry stays until no snapshot can see its transaction as
 *	  running (GlobalVisCheckRemovableXid).  When a backend needs the room
 *	  before that, the entry is folded into the backend's floor: per model
 *	  the smallest timestamp folded, and latestCompletedXid as of the last
 *	  folded commit.  It caps only snapshots whose xmax is not past that,
 *	  which may have been taken before that commit (coarse, but only for
 *	  snapshots older than a few of that backend's transactions).
 *
 * Persistence: the clocks row of this node's source holds a reservation,
 * a timestamp no handed-out timestamp exceeds.  A transaction that takes a
 * timestamp past the committed reservation must move it ahead (by
 * scuttlebutt.timestamp_reserve) in its own transaction, so that they
 * commit or vanish together, waiting if another one holds the row.  So
 * that this is rare, the first writer past half the reservation moves it
 * early, if nobody holds the row (SKIP LOCKED), while the others go on
 * below the committed one.  After a restart the slot starts from the row.
 * (reservation.c reads and writes the row: SbReadReservation,
 * SbWriteReservation.)
 * That is about two row updates per model per reservation instead of one
 * per write; readers never show the reservation itself, unless none of
 * this node's updates of the model is held after a restart.
 *
 * Without the library preloaded there is no shared memory: store.c
 * then locks the clock row until commit, as for other sources.
 *
 * Bounds: no timestamp from elsewhere (a key's current one as floor, our
 * own source's updates adopted) more than scuttlebutt.max_clock_skew ahead
 * of the wall clock may move a slot: that is an ERROR before anything in
 * shared memory is touched.  apply.c applies no such update, so only a
 * direct caller of _next_local_ts() or a row written past the bound before
 * it existed can meet it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/transam.h"
#include "access/xlog.h"
#include "access/xact.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/float.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "compat.h"
#include "model_cache.h"
#include "guc.h"
#include "rejoin.h"
#include "reservation.h"
#include "sequencer.h"
#include "shmem.h"
#include "timestamp.h"

/* Models with timestamps handed out at once (idle ones are evicted) */
#define SB_SEQ_SLOTS 1024
/* Recent transactions remembered per backend */
#define SB_SEQ_ENTRIES 16
/* Models an entry lists with their own smallest timestamp */
#define SB_SEQ_ENTRY_MODELS 4

typedef struct SeqKey
{
	Oid			dboid;
	int32		model_id;
	uint32		node_hash;		/* a new node id (re-created extension) is a new slot */
} SeqKey;

typedef struct SeqHashEntry
{
	SeqKey		key;
	int			slot;
} SeqHashEntry;

/* Guarded by its LWLock, but inflight (atomic) */
typedef struct SeqSlot
{
	SeqKey		key;
	bool		valid;
	double		last;			/* new timestamps go past this */
	double		shown;			/* the greatest timestamp committed */
	double		reserved;		/* the committed reservation (clocks row) */
	bool		bumping;		/* a transaction is moving it early */
	pg_atomic_uint32 inflight;	/* running transactions that took timestamps */
} SeqSlot;

typedef enum SeqEntryState
{
	ENTRY_FREE = 0,
	ENTRY_RUNNING,
	ENTRY_COMMITTED
} SeqEntryState;

/*
 * A transaction that took timestamps, in its backend's array: per model
 * written, the smallest timestamp it took (beyond the first few models,
 * one bit per model id % 64 and one smallest timestamp for all of them).
 */
typedef struct SeqEntry
{
	SeqEntryState state;
	Oid			dboid;
	FullTransactionId fxid;
	int			nmodels;
	int32		model_ids[SB_SEQ_ENTRY_MODELS];
	double		min_ts[SB_SEQ_ENTRY_MODELS];
	uint64		more_models;
	double		more_min_ts;
	FullTransactionId completed;	/* latestCompletedXid once it committed */
} SeqEntry;

/* Per backend; written only by its backend, under mutex */
typedef struct SeqProc
{
	slock_t		mutex;
	int			nused;
	SeqEntry	entries[SB_SEQ_ENTRIES];
	SeqEntry	floor;			/* committed entries folded together */
} SeqProc;

typedef struct SeqShared
{
	LWLockPadded *locks;		/* [0] the hash table, [1 + i] slot i */
	pg_atomic_uint64 evictions;
	SeqSlot		slots[SB_SEQ_SLOTS];
	SeqProc		procs[FLEXIBLE_ARRAY_MEMBER];	/* MaxBackends */
} SeqShared;

static SeqShared *seq = NULL;
static HTAB *seq_hash = NULL;

#define hash_lock() (&seq->locks[0].lock)
#define slot_lock(i) (&seq->locks[1 + (i)].lock)
#define model_bit(model_id) (UINT64CONST(1) << ((uint32) (model_id) % 64))

/* This backend's slot lookups: the last one */
static SeqKey cached_key;
static int	cached_slot = -1;

/* This transaction: its entry and the slots it took timestamps from */
typedef struct TouchedSlot
{
	int			slot;
	double		max_ts;			/* the greatest timestamp we took */
	CommandId	max_cid;		/* in this command */
	double		bump;			/* reservation written, 0 if none */
	SubTransactionId bump_subid;
	bool		bumping;		/* we set the slot's bumping */
} TouchedSlot;

static int	my_entry = -1;
static double last_taken = 0;
static TouchedSlot *touched = NULL;
static int	ntouched = 0;
static int	touched_size = 0;

static Size
seq_shmem_size(void)
{
	return add_size(offsetof(SeqShared, procs),
					mul_size(sizeof(SeqProc), MaxBackends));
}

void
SbSequencerShmemRequest(void)
{
	RequestAddinShmemSpace(MAXALIGN(seq_shmem_size()));
	RequestAddinShmemSpace(hash_estimate_size(SB_SEQ_SLOTS, sizeof(SeqHashEntry)));
	RequestNamedLWLockTranche("scuttlebutt sequencer", 1 + SB_SEQ_SLOTS);
}

/* Called with AddinShmemInitLock held */
void
SbSequencerShmemInit(void)
{
	HASHCTL		info;
	bool		found;

	seq = ShmemInitStruct("scuttlebutt sequencer", seq_shmem_size(), &found);
	if (!found)
	{
		memset(seq, 0, seq_shmem_size());
		seq->locks = GetNamedLWLockTranche("scuttlebutt sequencer");
		pg_atomic_init_u64(&seq->evictions, 0);
		for (int i = 0; i < SB_SEQ_SLOTS; i++)
			pg_atomic_init_u32(&seq->slots[i].inflight, 0);
		for (int i = 0; i < MaxBackends; i++)
			SpinLockInit(&seq->procs[i].mutex);
	}
	info.keysize = sizeof(SeqKey);
	info.entrysize = sizeof(SeqHashEntry);
	seq_hash = ShmemInitHash("scuttlebutt sequencer slots", SB_SEQ_SLOTS,
							 SB_SEQ_SLOTS, &info, HASH_ELEM | HASH_BLOBS);
}

/*
 * Not on a hot standby: its readers see the primary's commits as replayed
 * (see the README: a standby is no replication source).
 */
bool
SbSequencerActive(void)
{
	return seq != NULL && SbHasBackendSlot() && !RecoveryInProgress();
}

/* The full xid of xid, which is at most 2^31 before next */
static FullTransactionId
full_xid_before(FullTransactionId next, TransactionId xid)
{
	uint32		back = XidFromFullTransactionId(next) - xid;

	return FullTransactionIdFromU64(U64FromFullTransactionId(next) - back);
}

static SeqProc *
my_proc(void)
{
	return &seq->procs[SbMyBackendSlot()];
}

static void
make_key(SeqKey *key, int32 model_id, const char *node_id)
{
	memset(key, 0, sizeof(SeqKey));
	key->dboid = MyDatabaseId;
	key->model_id = model_id;
	key->node_hash = hash_bytes((const unsigned char *) node_id, strlen(node_id));
}

/* Frees an idle slot; hash lock held exclusively */
static void
evict_idle_slot(void)
{
	HASH_SEQ_STATUS status;
	SeqHashEntry *entry;

	hash_seq_init(&status, seq_hash);
	while ((entry = hash_seq_search(&status)) != NULL)
	{
		SeqSlot    *slot = &seq->slots[entry->slot];
		bool		idle;

		LWLockAcquire(slot_lock(entry->slot), LW_EXCLUSIVE);
		idle = pg_atomic_read_u32(&slot->inflight) == 0;
		if (idle)
			slot->valid = false;
		LWLockRelease(slot_lock(entry->slot));
		if (idle)
		{
			pg_atomic_fetch_add_u64(&seq->evictions, 1);
			hash_search(seq_hash, &entry->key, HASH_REMOVE, NULL);
			hash_seq_term(&status);
			return;
		}
	}
	ereport(ERROR,
			(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
			 errmsg("too many scuttlebutt models are being written at once"),
			 errdetail("Running transactions hold timestamps of %d models.", SB_SEQ_SLOTS)));
}

/* The slot of key, created from the clocks row if needed */
static int
find_slot(const SeqKey *key, int32 model_id, const char *node_id, bool create)
{
	SeqHashEntry *entry;

	if (cached_slot >= 0 && memcmp(&cached_key, key, sizeof(SeqKey)) == 0)
		return cached_slot;

	LWLockAcquire(hash_lock(), LW_SHARED);
	entry = hash_search(seq_hash, key, HASH_FIND, NULL);
	cached_slot = entry ? entry->slot : -1;
	LWLockRelease(hash_lock());

	while (cached_slot < 0 && create)
	{
		uint64		evictions = pg_atomic_read_u64(&seq->evictions);
		double		reserved;
		double		latest;
		bool		found;

		SbReadReservation(model_id, node_id, &reserved, &latest);

		LWLockAcquire(hash_lock(), LW_EXCLUSIVE);
		entry = hash_search(seq_hash, key, HASH_FIND, NULL);
		if (entry != NULL)
			cached_slot = entry->slot;
		else if (pg_atomic_read_u64(&seq->evictions) == evictions)
		{
			/*
			 * No eviction since the read: no reservation of this key can
			 * have committed after it without its slot still being here.
			 */
			int			free_slot = -1;

			if (hash_get_num_entries(seq_hash) >= SB_SEQ_SLOTS)
				evict_idle_slot();
			for (int i = 0; i < SB_SEQ_SLOTS && free_slot < 0; i++)
				if (!seq->slots[i].valid &&
					pg_atomic_read_u32(&seq->slots[i].inflight) == 0)
					free_slot = i;
			if (free_slot < 0)
				elog(ERROR, "no free scuttlebutt sequencer slot");
			entry = hash_search(seq_hash, key, HASH_ENTER, &found);
			entry->slot = free_slot;
			LWLockAcquire(slot_lock(free_slot), LW_EXCLUSIVE);
			seq->slots[free_slot].key = *key;
			seq->slots[free_slot].last = reserved;

			/*
			 * Shown until a timestamp commits: the latest update held, or,
			 * with none held (other nodes' writes superseded them all), the
			 * reservation, past every timestamp handed out before: a clock
			 * entry must be a number, and nothing of this source can commit
			 * at or below the reservation any more.  When the latest held
			 * was superseded, a peer's clock may be ahead of it:
			 * SbSequencerRaiseShown takes that.
			 */
			seq->slots[free_slot].shown = isfinite(latest) ? latest : reserved;
			seq->slots[free_slot].reserved = reserved;
			seq->slots[free_slot].bumping = false;
			seq->slots[free_slot].valid = true;
			LWLockRelease(slot_lock(free_slot));
			cached_slot = free_slot;
		}
		LWLockRelease(hash_lock());
	}
	if (cached_slot >= 0)
		cached_key = *key;
	return cached_slot;
}

/* This transaction's record of slot i (added if new) */
static TouchedSlot *
touch(int slot)
{
	for (int i = 0; i < ntouched; i++)
		if (touched[i].slot == slot)
			return &touched[i];
	if (ntouched == touched_size)
	{
		touched_size = Max(8, touched_size * 2);
		touched = touched == NULL
			? MemoryContextAlloc(TopMemoryContext, sizeof(TouchedSlot) * touched_size)
			: repalloc(touched, sizeof(TouchedSlot) * touched_size);
	}
	touched[ntouched].slot = -1;	/* until the slot counts us */
	touched[ntouched].bump = 0;
	touched[ntouched].max_ts = -INFINITY;
	touched[ntouched].bump_subid = InvalidSubTransactionId;
	touched[ntouched].bumping = false;
	return &touched[ntouched++];
}

/*
 * The smallest timestamp an entry took for a model (-1: any model);
 * Infinity if none.
 */
static double
entry_min_ts(const SeqEntry *e, int32 model_id)
{
	double		min_ts = INFINITY;

	for (int i = 0; i < e->nmodels; i++)
		if (model_id < 0 || e->model_ids[i] == model_id)
			min_ts = Min(min_ts, e->min_ts[i]);
	if (model_id < 0 || (e->more_models & model_bit(model_id)))
		min_ts = Min(min_ts, e->more_min_ts);
	return min_ts;
}

/* Records that an entry's transaction took ts (or later) for a model */
static void
entry_add(SeqEntry *e, int32 model_id, double ts)
{
	int			i;

	for (i = 0; i < e->nmodels && e->model_ids[i] != model_id; i++)
		;
	if (i < e->nmodels)
		e->min_ts[i] = Min(e->min_ts[i], ts);
	else if (i < SB_SEQ_ENTRY_MODELS)
	{
		e->model_ids[i] = model_id;
		e->min_ts[i] = ts;
		e->nmodels++;
	}
	else
	{
		e->more_models |= model_bit(model_id);
		e->more_min_ts = Min(e->more_min_ts, ts);
	}
}

/* Adds e's models and timestamps to floor; the backend's mutex is held */
static void
fold_into_floor(SeqEntry *floor, const SeqEntry *e)
{
	if (floor->state != ENTRY_COMMITTED)
	{
		*floor = *e;
		return;
	}
	if (FullTransactionIdFollows(e->completed, floor->completed))
		floor->completed = e->completed;
	floor->dboid = e->dboid == floor->dboid ? e->dboid : InvalidOid;
	for (int i = 0; i < e->nmodels; i++)
		entry_add(floor, e->model_ids[i], e->min_ts[i]);
	floor->more_models |= e->more_models;
	floor->more_min_ts = Min(floor->more_min_ts, e->more_min_ts);
}

/*
 * Makes my_entry an entry this transaction may publish: free, or already
 * its own.  A committed entry that some snapshot may still see running
 * is folded into the floor.
 */
static void
prepare_entry(void)
{
	SeqProc    *p = my_proc();
	int			oldest = -1;
	bool		removable;

	if (my_entry >= 0)
		return;
	/* only this backend writes its entries: reading them needs no lock */
	for (int i = 0; i < SB_SEQ_ENTRIES; i++)
	{
		if (p->entries[i].state == ENTRY_FREE)
		{
			my_entry = i;
			return;
		}
		if (oldest < 0 || FullTransactionIdPrecedes(p->entries[i].fxid, p->entries[oldest].fxid))
			oldest = i;
	}
	Assert(p->entries[oldest].state == ENTRY_COMMITTED);
	removable = GlobalVisCheckRemovableFullXid(NULL, p->entries[oldest].fxid);
	/* a floor no snapshot predates is forgotten */
	if (!removable && p->floor.state == ENTRY_COMMITTED &&
		GlobalVisCheckRemovableFullXid(NULL, p->floor.completed))
	{
		SpinLockAcquire(&p->mutex);
		p->floor.state = ENTRY_FREE;
		SpinLockRelease(&p->mutex);
	}

	SpinLockAcquire(&p->mutex);
	if (!removable)
		fold_into_floor(&p->floor, &p->entries[oldest]);
	p->entries[oldest].state = ENTRY_FREE;
	p->nused--;
	SpinLockRelease(&p->mutex);
	my_entry = oldest;
}

/* Publishes this transaction's entry; the slot's lock is held */
static void
publish_entry(int32 model_id, FullTransactionId fxid, double first)
{
	SeqProc    *p = my_proc();
	SeqEntry   *e = &p->entries[my_entry];

	SpinLockAcquire(&p->mutex);
	if (e->state == ENTRY_FREE)
	{
		e->dboid = MyDatabaseId;
		e->fxid = fxid;
		e->nmodels = 0;
		e->more_models = 0;
		e->more_min_ts = INFINITY;
		e->state = ENTRY_RUNNING;
		p->nused++;
	}
	entry_add(e, model_id, first);
	SpinLockRelease(&p->mutex);
}

/*
 * The common part of Next, Adopt and Learn: under the slot's lock, moves
 * the slot past [first, last] (chosen here, or adopt_first..adopt_last)
 * and publishes this transaction's entry; then writes a reservation if
 * the committed one does not cover last.  Unless stores (Learn: only the
 * slot and the reservation move), readers are shown last once we commit.
 */
static double
take(int32 model_id, const char *node_id, double floor, int count,
	 double adopt_first, double adopt_last, bool stores)
{
	SeqKey		key;
	FullTransactionId fxid = GetTopFullTransactionId();
	double		now = SbNowMillis();
	double		first = 0;
	double		last = 0;
	double		bump = 0;
	bool		early = false;
	double		reserve = sb_timestamp_reserve_ms;
	int			slot;
	TouchedSlot *t;
	bool		adopt = !isnan(adopt_first);

	/* nothing from elsewhere moves the slot past the bound (apply.c) */
	if ((!isnan(floor) && floor > now + sb_max_clock_skew_ms) ||
		(adopt && adopt_last > now + sb_max_clock_skew_ms))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("scuttlebutt timestamp %s is more than scuttlebutt.max_clock_skew (%d ms) ahead of this server's clock",
						float8out_internal(adopt ? adopt_last : floor),
						sb_max_clock_skew_ms),
				 adopt
				 ? errdetail("An update of this node's own source from elsewhere is adopted only within that bound.")
				 : errdetail("A local write takes a timestamp past that of the key's current value.")));

	make_key(&key, model_id, node_id);
	prepare_entry();
	for (;;)
	{
		SeqSlot    *s;

		slot = find_slot(&key, model_id, node_id, true);
		t = touch(slot);
		s = &seq->slots[slot];
		LWLockAcquire(slot_lock(slot), LW_EXCLUSIVE);
		if (!s->valid || memcmp(&s->key, &key, sizeof(SeqKey)) != 0)
		{
			/* evicted since we looked it up: look again */
			LWLockRelease(slot_lock(slot));
			if (t->slot < 0)
				ntouched--;
			cached_slot = -1;
			continue;
		}
		if (adopt)
		{
			first = adopt_first;
			last = Max(s->last, adopt_last);
		}
		else
		{
			first = Max(now, SbTimestampNext(s->last));
			if (!isnan(floor))
				first = Max(first, SbTimestampNext(floor));
			last = first;
			for (int i = 1; i < count; i++)
				last = SbTimestampNext(last);
			if (!isfinite(last))
			{
				LWLockRelease(slot_lock(slot));
				if (t->slot < 0)
					ntouched--;
				ereport(ERROR,
						(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
						 errmsg("no timestamp is left after %g", s->last),
						 errdetail("A source's timestamps must increase, and this one has reached the largest double.")));
			}
		}
		s->last = Max(s->last, last);
		if (stores && last > t->max_ts)
		{
			t->max_ts = last;
			t->max_cid = GetCurrentCommandId(false);
		}
		if (t->slot < 0)
		{
			t->slot = slot;
			pg_atomic_fetch_add_u32(&s->inflight, 1);
		}
		publish_entry(model_id, fxid, first);
		if (adopt)
		{
			/*
			 * The clock row covers what this transaction stores, not the
			 * slot's last: other takers reserve their own, and one that
			 * adopted and rolled back would make these updates look old
			 * when they come again.
			 */
			if (adopt_last > Max(s->reserved, t->bump))
				bump = adopt_last;
		}
		else if (last > Max(s->reserved, t->bump))
			bump = Max(now, last) + reserve;
		else if (!s->bumping && t->bump == 0 &&
				 last > s->reserved - reserve / 2 && !IsolationUsesXactSnapshot())
		{
			/* a transaction snapshot would fail on a row updated since */
			early = true;
			s->bumping = t->bumping = true;
			bump = Max(now, last) + reserve;
		}
		LWLockRelease(slot_lock(slot));
		break;
	}
	last_taken = first;
	if (bump > 0 && SbWriteReservation(model_id, node_id, bump, early))
	{
		t->bump = Max(t->bump, bump);
		t->bump_subid = GetCurrentSubTransactionId();
	}
	return first;
}

double
SbSequencerNext(int32 model_id, const char *node_id, double floor, int count)
{
	Assert(count >= 1);
	/* after a restore, nothing before the peers told what they hold */
	SbRejoinCheckLocalWrite();
	return take(model_id, node_id, floor, count, NAN, NAN, true);
}

double
SbSequencerLastTaken(void)
{
	return last_taken;
}

void
SbSequencerAdopt(int32 model_id, const char *node_id, double first_ts,
				 double last_ts)
{
	(void) take(model_id, node_id, NAN, 1, first_ts, last_ts, true);
}

void
SbSequencerLearn(int32 model_id, const char *node_id, double ts)
{
	SeqKey		key;
	int			slot;
	bool		behind;

	make_key(&key, model_id, node_id);
	slot = find_slot(&key, model_id, node_id, true);
	LWLockAcquire(slot_lock(slot), LW_SHARED);
	behind = !seq->slots[slot].valid ||
		memcmp(&seq->slots[slot].key, &key, sizeof(SeqKey)) != 0 ||
		seq->slots[slot].last < ts;
	LWLockRelease(slot_lock(slot));
	/*
	 * As an adopted update at ts, the slot and the reservation move past;
	 * but nothing at ts is stored here, so readers are not shown it (after
	 * a restore, the peers would then never send this node's own updates
	 * back: see SbSequencerRaiseShown for when showing it is right)
	 */
	if (behind)
		(void) take(model_id, node_id, NAN, 1, ts, ts, false);
}

/*
 * A peer vouches (a libpq poll() or _push() header) that this node's
 * source reached ts.  The slot shows at least that, up to its committed
 * reservation: after a restart it shows the latest update held, which is
 * behind what its peers hold when this node's latest updates were
 * superseded before the restart, and the clocks would not agree until
 * this node wrote the model again.  Every timestamp at or below the
 * reservation was handed out before the slot was made, so it committed
 * or never will.
 */
bool
SbSequencerRaiseShown(int32 model_id, const char *node_id, double ts)
{
	SeqKey		key;
	int			slot;
	SeqSlot    *s;
	bool		raised = false;

	make_key(&key, model_id, node_id);
	slot = find_slot(&key, model_id, node_id, true);
	s = &seq->slots[slot];
	LWLockAcquire(slot_lock(slot), LW_EXCLUSIVE);
	if (s->valid && memcmp(&s->key, &key, sizeof(SeqKey)) == 0 &&
		s->shown < Min(ts, s->reserved))
	{
		s->shown = Min(ts, s->reserved);
		raised = true;
	}
	LWLockRelease(slot_lock(slot));
	return raised;
}

/*
 * The limit for one snapshot: base (the greatest timestamp committed, read
 * first) and cap (the smallest timestamp still held back in it).
 */
static void
compute_limit(const SeqKey *key, int32 model_id, const char *node_id,
			  Snapshot snapshot, int *slot_out, double *base_out, double *cap_out)
{
	FullTransactionId my_fxid = GetTopFullTransactionIdIfAny();
	FullTransactionId next = ReadNextFullTransactionId();
	FullTransactionId xmin = full_xid_before(next, snapshot->xmin);
	FullTransactionId xmax = full_xid_before(next, snapshot->xmax);
	double		base = INFINITY;
	double		cap = INFINITY;
	int			slot;

	for (;;)
	{
		SeqSlot    *s;
		bool		ok;

		/* (not in parallel mode: creating a slot takes a snapshot) */
		slot = find_slot(key, model_id, node_id, !IsInParallelMode());
		if (slot < 0)
			break;				/* the clock row, capped below, will do */
		s = &seq->slots[slot];
		LWLockAcquire(slot_lock(slot), LW_SHARED);
		ok = s->valid && memcmp(&s->key, key, sizeof(SeqKey)) == 0;
		if (ok)
			base = s->shown;
		LWLockRelease(slot_lock(slot));
		if (ok)
			break;
		cached_slot = -1;
	}

	for (int b = 0; b < MaxBackends; b++)
	{
		SeqProc    *p = &seq->procs[b];
		SeqEntry	entries[SB_SEQ_ENTRIES];
		SeqEntry	floor;

		if (p->nused == 0 && p->floor.state == ENTRY_FREE)
			continue;
		SpinLockAcquire(&p->mutex);
		memcpy(entries, p->entries, sizeof(entries));
		floor = p->floor;
		SpinLockRelease(&p->mutex);

		for (int i = 0; i < SB_SEQ_ENTRIES; i++)
		{
			SeqEntry   *e = &entries[i];
			double		min_ts;

			if (e->state == ENTRY_FREE || e->dboid != MyDatabaseId)
				continue;
			min_ts = entry_min_ts(e, model_id);
			if (!isfinite(min_ts))
				continue;
			if (e->state == ENTRY_RUNNING)
			{
				/* our own writes are in our snapshot */
				if (FullTransactionIdIsValid(my_fxid) &&
					FullTransactionIdEquals(e->fxid, my_fxid))
					continue;
				cap = Min(cap, min_ts);
			}
			else if (!FullTransactionIdPrecedes(e->fxid, xmin) &&
					 XidInMVCCSnapshot(XidFromFullTransactionId(e->fxid), snapshot))
				cap = Min(cap, min_ts);
		}

		/*
		 * The floor's transactions all committed by latestCompletedXid =
		 * floor.completed: a snapshot whose xmax is past floor.completed + 1
		 * was taken after that and sees them all.
		 */
		if (floor.state == ENTRY_COMMITTED &&
			(floor.dboid == MyDatabaseId || floor.dboid == InvalidOid) &&
			U64FromFullTransactionId(xmax) <= U64FromFullTransactionId(floor.completed) + 1)
			cap = Min(cap, entry_min_ts(&floor, model_id));
	}
	*slot_out = slot;
	*base_out = base;
	*cap_out = cap;
}

/*
 * Limits already computed, per snapshot: every reader of one snapshot
 * must get the same limit (a header vouches for the history read with it),
 * while the shared state moves on (a commit is visible a moment before its
 * entry says so, and a running one may abort).  A snapshot is known by
 * what it sees: xmin, xmax and its running xids (in any order).
 *
 * Only within one transaction: on an idle server the next transaction's
 * snapshot sees the same and would be given a limit computed before the
 * shared state moved on (before a commit's entry said so, before a peer
 * vouched for more: SbSequencerRaiseShown), moves that complete no
 * transaction id, until some later commit.
 */
typedef struct LimitCacheEntry
{
	SeqKey		key;
	TransactionId xmin;
	TransactionId xmax;
	uint32		xcnt;
	uint64		xip_sum;		/* 0: unused */
	int			slot;
	double		base;
	double		cap;
	double		at_least;		/* see LastLimit */
} LimitCacheEntry;

#define SB_LIMIT_CACHE 8
static LimitCacheEntry limit_cache[SB_LIMIT_CACHE];
static int	limit_cache_next = 0;

/*
 * The last limit this backend computed per slot key, with what its
 * snapshot saw: a later snapshot that sees all of that is given at least
 * that limit.  Without it the limit could go down from one transaction to
 * the next: a backend's floor (folded entries, see above) caps snapshots
 * older than its last folded commit with the smallest timestamp folded,
 * including those of commits such a snapshot sees.
 */
typedef struct LastLimit
{
	SeqKey		key;
	bool		valid;
	TransactionId xmin;
	TransactionId xmax;
	uint32		xcnt;
	int32		subxcnt;		/* -1: suboverflowed */
	TransactionId *xids;		/* xip, then subxip */
	uint32		xids_size;
	double		limit;
} LastLimit;

static LastLimit last_limits[SB_LIMIT_CACHE];
static int	last_limits_next = 0;

static bool
xid_listed(TransactionId xid, const TransactionId *xids, uint32 n)
{
	for (uint32 i = 0; i < n; i++)
		if (xids[i] == xid)
			return true;
	return false;
}

/*
 * Whether snapshot s sees every transaction the remembered one saw: each
 * transaction it has running was running then too, or began after it.
 */
static bool
sees_all_of(Snapshot s, const LastLimit *prev)
{
	if (TransactionIdPrecedes(s->xmax, prev->xmax) ||
		TransactionIdPrecedes(s->xmin, prev->xmin) ||
		s->suboverflowed || prev->subxcnt < 0)
		return false;
	for (uint32 i = 0; i < s->xcnt; i++)
		if (TransactionIdPrecedes(s->xip[i], prev->xmax) &&
			!xid_listed(s->xip[i], prev->xids, prev->xcnt))
			return false;
	for (int32 i = 0; i < s->subxcnt; i++)
		if (TransactionIdPrecedes(s->subxip[i], prev->xmax) &&
			!xid_listed(s->subxip[i], prev->xids + prev->xcnt, prev->subxcnt))
			return false;
	return true;
}

static LastLimit *
last_limit_of(const SeqKey *key)
{
	for (int i = 0; i < SB_LIMIT_CACHE; i++)
		if (last_limits[i].valid && memcmp(&last_limits[i].key, key, sizeof(SeqKey)) == 0)
			return &last_limits[i];
	return NULL;
}

/* The least limit snapshot s may be given for key: -Infinity if none */
static double
limit_at_least(const SeqKey *key, Snapshot s)
{
	LastLimit  *prev = last_limit_of(key);

	return prev != NULL && sees_all_of(s, prev) ? prev->limit : -INFINITY;
}

/* Remembers limit as snapshot s's for key, unless s is older */
static void
remember_limit(const SeqKey *key, Snapshot s, double limit)
{
	LastLimit  *r = last_limit_of(key);
	uint32		n = s->xcnt + (s->suboverflowed ? 0 : s->subxcnt);

	if (r != NULL && TransactionIdPrecedes(s->xmax, r->xmax))
		return;
	if (r == NULL)
	{
		r = &last_limits[last_limits_next];
		last_limits_next = (last_limits_next + 1) % SB_LIMIT_CACHE;
	}
	r->valid = false;			/* in case of an ERROR below */
	if (r->xids_size < Max(n, 1))
	{
		if (r->xids)
			pfree(r->xids);
		r->xids = MemoryContextAlloc(TopMemoryContext, sizeof(TransactionId) * Max(n, 1));
		r->xids_size = Max(n, 1);
	}
	memcpy(r->xids, s->xip, sizeof(TransactionId) * s->xcnt);
	if (!s->suboverflowed)
		memcpy(r->xids + s->xcnt, s->subxip, sizeof(TransactionId) * s->subxcnt);
	r->key = *key;
	r->xmin = s->xmin;
	r->xmax = s->xmax;
	r->xcnt = s->xcnt;
	r->subxcnt = s->suboverflowed ? -1 : s->subxcnt;
	r->limit = limit;
	r->valid = true;
}

double
SbSequencerVisibleLimit(int32 model_id, const char *node_id)
{
	SeqKey		key;
	Snapshot	snapshot;
	LimitCacheEntry *hit = NULL;
	uint64		xip_sum = 1;
	double		limit;

	make_key(&key, model_id, node_id);
	snapshot = ActiveSnapshotSet() ? GetActiveSnapshot() : GetTransactionSnapshot();
	for (uint32 i = 0; i < snapshot->xcnt; i++)
		xip_sum += (uint64) murmurhash32(snapshot->xip[i]) + 1;
	for (int i = 0; i < SB_LIMIT_CACHE && hit == NULL; i++)
		if (limit_cache[i].xip_sum == xip_sum &&
			limit_cache[i].xmin == snapshot->xmin &&
			limit_cache[i].xmax == snapshot->xmax &&
			limit_cache[i].xcnt == snapshot->xcnt &&
			memcmp(&limit_cache[i].key, &key, sizeof(SeqKey)) == 0)
			hit = &limit_cache[i];
	if (hit == NULL)
	{
		hit = &limit_cache[limit_cache_next];
		limit_cache_next = (limit_cache_next + 1) % SB_LIMIT_CACHE;
		hit->xip_sum = 0;		/* in case of an ERROR below */
		compute_limit(&key, model_id, node_id, snapshot, &hit->slot,
					  &hit->base, &hit->cap);
		hit->at_least = limit_at_least(&key, snapshot);
		limit = hit->base;
		if (isfinite(hit->cap))
			limit = Min(limit, SbTimestampBefore(hit->cap));
		remember_limit(&key, snapshot, Max(limit, hit->at_least));
		hit->key = key;
		hit->xmin = snapshot->xmin;
		hit->xmax = snapshot->xmax;
		hit->xcnt = snapshot->xcnt;
		hit->xip_sum = xip_sum;
	}

	/* our own writes, not committed yet, if our snapshot sees them */
	limit = hit->base;
	for (int i = 0; i < ntouched; i++)
		if (touched[i].slot == hit->slot && touched[i].slot >= 0 &&
			touched[i].max_cid < snapshot->curcid)
			limit = Max(limit, touched[i].max_ts);
	if (isfinite(hit->cap))
		limit = Min(limit, SbTimestampBefore(hit->cap));
	return Max(limit, hit->at_least);
}

static void
end_transaction(bool committed)
{
	for (int i = 0; i < SB_LIMIT_CACHE; i++)
		limit_cache[i].xip_sum = 0;
	if (my_entry >= 0)
	{
		SeqProc    *p = my_proc();

		SpinLockAcquire(&p->mutex);
		if (p->entries[my_entry].state == ENTRY_RUNNING)
		{
			if (committed)
			{
				p->entries[my_entry].completed = TransamVariables->latestCompletedXid;
				p->entries[my_entry].state = ENTRY_COMMITTED;
			}
			else
			{
				p->entries[my_entry].state = ENTRY_FREE;
				p->nused--;
			}
		}
		SpinLockRelease(&p->mutex);
		my_entry = -1;
	}
	for (int i = 0; i < ntouched; i++)
	{
		SeqSlot    *s = &seq->slots[touched[i].slot];

		if (committed || touched[i].bumping)
		{
			LWLockAcquire(slot_lock(touched[i].slot), LW_EXCLUSIVE);
			if (committed)
			{
				s->shown = Max(s->shown, touched[i].max_ts);
				s->reserved = Max(s->reserved, touched[i].bump);
			}
			if (touched[i].bumping)
				s->bumping = false;
			LWLockRelease(slot_lock(touched[i].slot));
		}

		/*
		 * Our entry is gone without a commit: readers held below our
		 * timestamps may now see later ones that committed, but no commit
		 * of ours tells the worker or poll() to look (the slot's key is
		 * stable while we count in inflight).
		 */
		if (!committed)
			SbNoteHorizonMoved(s->key.model_id);
		pg_atomic_fetch_sub_u32(&s->inflight, 1);
	}
	ntouched = 0;
}

/*
 * The sequencer's step of the transaction callback (commit.c calls it
 * first at commit): a commit publishes this transaction's timestamps as
 * committed, an abort forgets them; PREPARE cannot carry them.
 */
void
SbSequencerXactEvent(XactEvent event)
{
	if (seq == NULL)
		return;
	switch (event)
	{
		case XACT_EVENT_COMMIT:
			/* after the transaction became visible */
			end_transaction(true);
			break;
		case XACT_EVENT_ABORT:
			end_transaction(false);
			break;
		case XACT_EVENT_PREPARE:
			end_transaction(false);
			break;
		case XACT_EVENT_PRE_PREPARE:
			if (my_entry >= 0 && my_proc()->entries[my_entry].state == ENTRY_RUNNING)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that has written local updates to a scuttlebutt model")));
			break;
		default:
			break;
	}
}

/* The sequencer's step of the subtransaction callback (commit.c) */
void
SbSequencerSubXactEvent(SubXactEvent event, SubTransactionId mySubid)
{
	/* a reservation written in an aborted subtransaction is gone */
	if (event == SUBXACT_EVENT_ABORT_SUB)
		for (int i = 0; i < ntouched; i++)
			if (touched[i].bump > 0 && touched[i].bump_subid >= mySubid)
				touched[i].bump = 0;
}
