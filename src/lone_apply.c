/*-------------------------------------------------------------------------
 *
 * lone_apply.c
 *	  A live pull's lone update applied by direct table access, as logical
 *	  replication's apply worker writes a row: no plan, no executor.
 *
 * A live pull brings one update per commit, and its latency is what the
 * peer's user sees.  Through SPI, its one statement (apply.c,
 * apply_lone_update) cost more to start and end than to run: an executor
 * per statement, the table's CHECK prepared again at each start, a CTE
 * for the clock.  Here the same two steps are taken on the tables:
 *
 *	1. the clock row of the update's source is advanced to its timestamp,
 *	   if it is below it and was advanced before (as the statement's UPDATE
 *	   ... WHERE ts < $3 AND ts > '-infinity'); a row another transaction
 *	   is writing is waited for and judged again, as the UPDATE would.
 *	   The row is looked for first where this process last advanced it
 *	   (a hint, checked before it is taken), then by the primary key;
 *	2. only then is the update stored, as the statement's upsert would
 *	   (SbStoreOneUpdate, bulk_insert.c): the key's held row deleted if
 *	   older, the update inserted, speculatively where no row was held.
 *
 * Neither step takes a subtransaction: one per update would spend a
 * second transaction id on each, and overflow the subtransaction cache of
 * a user's transaction that applies many.  Where this does not fit
 * (another kind of model, a table given triggers, constraints or another
 * index, a published table, a read-only transaction or one with one
 * snapshot throughout) nothing is written and the statement does the
 * work.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/heapam.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_am_d.h"
#include "common/hashfn.h"
#include "executor/executor.h"
#include "storage/bufmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "bulk_insert.h"
#include "compat.h"
#include "ext_relation.h"
#include "lone_apply.h"

/* scuttlebutt.clocks' columns */
enum
{
	CLOCK_MODEL_ID,
	CLOCK_SOURCE,
	CLOCK_TS,
	CLOCK_NCOLS
};

/*
 * Whether clocks is as the extension's script made it: a heap of its
 * columns, its primary key its one index (a HOT update then needs no
 * entry), no CHECK, no trigger but the checks of its immediate foreign
 * key to registry (an update of ts alone leaves the key as checked when
 * the row was inserted)
 */
static bool
clocks_are_plain(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	List	   *indexes;
	Oid			registry = SbRelationOid("registry");
	bool		plain;

	if (rel->rd_rel->relam != HEAP_TABLE_AM_OID || desc->natts != CLOCK_NCOLS ||
		(desc->constr && desc->constr->num_check > 0))
		return false;
	indexes = RelationGetIndexList(rel);
	plain = list_length(indexes) == 1;
	list_free(indexes);
	for (int i = 0; plain && rel->trigdesc && i < rel->trigdesc->numtriggers; i++)
	{
		Trigger    *trigger = &rel->trigdesc->triggers[i];

		plain = (trigger->tgfoid == F_RI_FKEY_CHECK_INS || trigger->tgfoid == F_RI_FKEY_CHECK_UPD) &&
			trigger->tgconstrrelid == registry && !trigger->tgdeferrable;
	}
	return plain;
}

/* The new version of the clock row in held: ts its only change */
static void
form_advanced(TupleTableSlot *held, TupleTableSlot *next, double ts)
{
	slot_getallattrs(held);
	ExecClearTuple(next);
	memcpy(next->tts_values, held->tts_values, sizeof(Datum) * CLOCK_NCOLS);
	memcpy(next->tts_isnull, held->tts_isnull, sizeof(bool) * CLOCK_NCOLS);
	next->tts_values[CLOCK_TS] = Float8GetDatum(ts);
	ExecStoreVirtualTuple(next);
}

/* table_tuple_update() of a heap; whether the new version needs index entries */
static TM_Result
update_row(Relation rel, ItemPointer tid, TupleTableSlot *slot, bool *index_entries)
{
	TM_FailureData tmfd;
	LockTupleMode lockmode;
	TM_Result	result;
#if PG_VERSION_NUM >= 160000
	TU_UpdateIndexes update_indexes;

	result = table_tuple_update(rel, tid, slot, GetCurrentCommandId(true), InvalidSnapshot,
								InvalidSnapshot, true, &tmfd, &lockmode, &update_indexes);
	/* clocks' one index is a b-tree (clocks_are_plain): HOT needs none */
	*index_entries = update_indexes != TU_None;
#else
	result = table_tuple_update(rel, tid, slot, GetCurrentCommandId(true), InvalidSnapshot,
								InvalidSnapshot, true, &tmfd, &lockmode, index_entries);
#endif
	return result;
}

/*
 * Where the clock row of a source went at its last advance here: a live
 * pull advances the same few sources commit after commit, and the row's
 * new version (a HOT update: the same page) is where the next advance
 * finds it, without the index.  Only a hint: the row found there is taken
 * if it is the live, settled row of the same model and source; else the
 * index is asked.  Slots are chosen by hash; a collision only costs a
 * probe.
 */
typedef struct ClockHint
{
	int32		model_id;
	uint32		source_hash;
	ItemPointerData tid;
} ClockHint;

#define SB_CLOCK_HINTS 64

static ClockHint clock_hints[SB_CLOCK_HINTS];

static ClockHint *
hint_of(int32 model_id, const char *source, uint32 *source_hash)
{
	*source_hash = hash_bytes((const unsigned char *) source, strlen(source));
	return &clock_hints[hash_combine(*source_hash, (uint32) model_id) % SB_CLOCK_HINTS];
}

/*
 * The clock row of (model_id, source) at the hint's TID into held, if it
 * is there, live and settled (no transaction in progress inserted or is
 * changing it: the probe waits for those)
 */
static bool
fetch_hinted(Relation rel, const ClockHint *hint, int32 model_id, uint32 source_hash,
			 const char *source, SnapshotData *dirty, TupleTableSlot *held)
{
	bool		isnull;
	text	   *held_source;

	if (!ItemPointerIsValid(&hint->tid) || hint->model_id != model_id ||
		hint->source_hash != source_hash ||
	/* a table truncated (by VACUUM, say) since: the page may be gone */
		ItemPointerGetBlockNumber(&hint->tid) >= RelationGetNumberOfBlocks(rel))
		return false;
	if (!table_tuple_fetch_row_version(rel, (ItemPointer) &hint->tid, dirty, held))
		return false;
	if (TransactionIdIsValid(dirty->xmin) || TransactionIdIsValid(dirty->xmax) ||
		DatumGetInt32(slot_getattr(held, CLOCK_MODEL_ID + 1, &isnull)) != model_id)
		return false;
	held_source = DatumGetTextPP(slot_getattr(held, CLOCK_SOURCE + 1, &isnull));
	return VARSIZE_ANY_EXHDR(held_source) == strlen(source) &&
		memcmp(VARDATA_ANY(held_source), source, strlen(source)) == 0;
}

typedef enum
{
	CLOCK_ADVANCED,
	CLOCK_NOT_DUE,				/* at or past ts, or not advanced before */
	CLOCK_CHANGED				/* changed since it was read: look again */
} ClockStep;

/* Advances the clock row in held to ts, into next, if it is due */
static ClockStep
advance_held(Relation rel, TupleTableSlot *held, TupleTableSlot *next, double ts,
			 bool *index_entries)
{
	bool		isnull;
	double		clock = DatumGetFloat8(slot_getattr(held, CLOCK_TS + 1, &isnull));
	TM_Result	result;

	if (!(clock < ts && clock > -INFINITY))
		return CLOCK_NOT_DUE;
	form_advanced(held, next, ts);
	result = update_row(rel, &held->tts_tid, next, index_entries);
	if (result == TM_Ok)
		return CLOCK_ADVANCED;
	if (result != TM_Updated && result != TM_Deleted)
		elog(ERROR, "unexpected result advancing a clock row");
	return CLOCK_CHANGED;
}

/*
 * The clock row found by the primary key, and advanced as advance_held
 * does (a row changed meanwhile is found and judged again)
 */
static ClockStep
advance_probed(Relation rel, int32 model_id, const char *source, double ts,
			   SnapshotData *dirty, TupleTableSlot *held, TupleTableSlot *next,
			   bool *index_entries)
{
	Relation	pkey = index_open(SbRelationOid("clocks_pkey"), RowExclusiveLock);
	IndexScanDesc scan;
	ScanKeyData keys[2];
	ClockStep	step = CLOCK_NOT_DUE;

	/*
	 * (a row an earlier call of the same command wrote is one to update:
	 * the writer, opened first, moved the command counter past it)
	 */
	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(model_id));
	ScanKeyInit(&keys[1], 2, BTEqualStrategyNumber, F_TEXTEQ, CStringGetTextDatum(source));
	scan = index_beginscan(rel, pkey, dirty, 2, 0);
	while (SbFetchCommittedRow(scan, dirty, keys, 2, held, XLTW_Update))
	{
		step = advance_held(rel, held, next, ts, index_entries);
		if (step != CLOCK_CHANGED)
			break;
	}
	index_endscan(scan);
	index_close(pkey, NoLock);
	return step == CLOCK_CHANGED ? CLOCK_NOT_DUE : step;
}

/* The clocks_pkey entry of the row version in slot */
static void
insert_key_entry(Relation rel, TupleTableSlot *slot)
{
	EState	   *estate = CreateExecutorState();
	ResultRelInfo *rri = makeNode(ResultRelInfo);

	InitResultRelInfo(rri, rel, 1, NULL, 0);
	ExecOpenIndices(rri, false);
	list_free(SbExecInsertIndexTuples(rri, slot, estate));
	ExecCloseIndices(rri);
	FreeExecutorState(estate);
}

/*
 * Step 1 on an open clocks: advances the clock row of (model_id, source)
 * to ts if it is below ts and above -Infinity; false, with nothing
 * written, if not (or if there is no such row)
 */
static bool
advance_clock(Relation rel, int32 model_id, const char *source, double ts)
{
	SnapshotData dirty;
	TupleTableSlot *held = table_slot_create(rel, NULL);
	TupleTableSlot *next = MakeSingleTupleTableSlot(RelationGetDescr(rel), &TTSOpsVirtual);
	uint32		source_hash;
	ClockHint  *hint = hint_of(model_id, source, &source_hash);
	ClockStep	step = CLOCK_CHANGED;
	bool		index_entries = false;

	InitDirtySnapshot(dirty);
	if (fetch_hinted(rel, hint, model_id, source_hash, source, &dirty, held))
		step = advance_held(rel, held, next, ts, &index_entries);
	if (step == CLOCK_CHANGED)
		step = advance_probed(rel, model_id, source, ts, &dirty, held, next, &index_entries);
	if (step == CLOCK_ADVANCED)
	{
		/* not a HOT update (its page was full): the new version's key entry */
		if (index_entries)
			insert_key_entry(rel, next);
		hint->model_id = model_id;
		hint->source_hash = source_hash;
		hint->tid = next->tts_tid;
	}
	ExecDropSingleTupleTableSlot(next);
	ExecDropSingleTupleTableSlot(held);
	return step == CLOCK_ADVANCED;
}

int
SbApplyLoneDirect(SbModelRef *model, const SbMessage *u)
{
	Relation	clocks;
	SbUpdatesWriter *updates;
	int			result;

	if (model->kind != SB_KIND_MODEL || u->key == NULL)
		return SB_LONE_UNSUITED;
	clocks = table_open(SbRelationOid("clocks"), RowExclusiveLock);
	/* opened first: where it cannot store the row, the clock stays as it is */
	updates = clocks_are_plain(clocks) ? SbOpenUpdatesWriter() : NULL;
	if (updates == NULL)
	{
		table_close(clocks, RowExclusiveLock);
		return SB_LONE_UNSUITED;
	}
	if (!advance_clock(clocks, model->id, u->source, u->ts))
		result = SB_LONE_NOT_TAKEN;
	else
	{
		SbBulkRow	row = {u->source, u->ts, u->key, u->text, u->len};

		result = SbStoreOneUpdate(updates, model->id, &row, NULL);
	}
	SbCloseUpdatesWriter(updates);
	table_close(clocks, NoLock);
	/* what follows in this transaction sees the rows */
	CommandCounterIncrement();
	return result;
}
