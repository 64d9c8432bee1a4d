/*-------------------------------------------------------------------------
 *
 * bulk_insert.c
 *	  Storing updates in scuttlebutt.updates without the executor: a batch
 *	  with the table's multi-insert, as COPY and logical replication's
 *	  initial table copy do (updates to keys a model does not hold yet, or
 *	  updates replacing the rows of keys it holds), and a lone update as
 *	  ON CONFLICT would store it (SbStoreOneUpdate, for lone_apply.c).
 *
 * An initial sync into an empty model is a stream of new keys: the merge
 * path's upsert (a speculative insertion per row, its confirmation record,
 * a sort and a RETURNING) then does work that cannot change the outcome.
 * Here the rows are formed directly from the parsed updates and handed to
 * table_multi_insert(): heap pages are filled many rows at a time, one WAL
 * record per page, and the indexes are maintained as for any insert.
 *
 * The rows are not sent through COPY FROM: its input functions would check
 * again what the parser (wire.c) has just checked.  Every doc here is a
 * line SbParseMessage accepted: JSON by pg_parse_json, which json_in runs
 * too, valid UTF-8, and one line (no line break outside strings, and none
 * can be inside one); the table's one CHECK (updates_doc_one_line), and
 * the encoding of a database that is not UTF-8, are tested here in C.  A
 * table with anything more (a trigger, another CHECK) is not stored this
 * way.
 *
 * Whether every key is new is not checked first (that costs the probe the
 * upsert makes): the insert runs in a subtransaction, and a unique
 * violation, a key the model already held or one a concurrent writer
 * committed, rolls it back; the caller then stores the batch by bulk
 * replace (below) or through the merge path.  Rows go in key order, the
 * merge path's lock order (SB_LOCK_ORDER), so two writers of the same new
 * keys wait for each other rather than deadlock.
 *
 * A batch over keys the model holds (a set_many() over existing keys) is
 * stored the same way, rather than by the upsert's row-by-row updates:
 * an update moves ts, which updates_pkey holds, so it is never HOT and
 * costs an index entry in both indexes anyway; what the upsert adds for a
 * held key is the executor around the row, its speculative-insertion
 * probe and a heap update.  Here each key's held row is found by
 * updates_latest_per_key, judged by the merge rule (SbMerge) and, where
 * the batch's update is newer, deleted (where it is older, locked, as the
 * upsert locks it); the new rows are then multi-inserted.  Key order is
 * kept as the upsert keeps it: the rows are deleted in key order, and a
 * key held by none is inserted when its turn comes (others wait on it as
 * on an upsert's), so the batch waits only on rows it reaches in key
 * order and cannot deadlock with a writer that also goes in key order.
 * The replacements inserted at the end wait on nobody: the rows they
 * replace are ours, deleted, so no one else can have inserted their keys.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_am_d.h"
#include "catalog/pg_publication.h"
#include "executor/executor.h"
#include "mb/pg_wchar.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"

#include "bulk_insert.h"
#include "compat.h"
#include "ext_relation.h"
#include "merge.h"

/* Rows per table_multi_insert() call, as COPY buffers them */
#define SB_BULK_CHUNK 1000

/* scuttlebutt.updates' columns, in order */
enum
{
	COL_MODEL_ID,
	COL_SOURCE,
	COL_TS,
	COL_KEY,
	COL_DOC,
	NCOLS
};

#define ONE_LINE_CHECK "updates_doc_one_line"

/* What a batch is written with */
typedef struct BulkTarget
{
	Relation	rel;
	EState	   *estate;
	ResultRelInfo *rri;
	BulkInsertState bistate;
	TupleDesc	desc;			/* the slots' */
	TupleTableSlot **slots;		/* nslots of them: one for a lone row */
	int			nslots;
	MemoryContext chunk_cxt;	/* a chunk's datums */
	CommandId	cid;
	int			encoding;
	/* replacing: the held rows' scan of updates_latest_per_key (rri's) */
	Relation	key_index;
	List	   *key_arbiter;	/* key_index, as ON CONFLICT names it */
	IndexScanDesc key_scan;
	SnapshotData dirty;			/* sees uncommitted rows, to wait for them */
	TupleTableSlot *held;
	double		held_ts;		/* the ts of the row last judged */
	MemoryContext key_cxt;		/* the key looked for, the held row's source */
} BulkTarget;

/* What was held of a key, and what became of it */
typedef enum HeldRow
{
	HELD_NONE,					/* no row: the key is new */
	HELD_DELETED,				/* older than the batch's update: deleted */
	HELD_NEWER					/* newer: kept (locked), the batch's update loses */
} HeldRow;

/*
 * Whether the table is as the extension's script made it: a heap, its
 * columns, its one CHECK and no trigger.  Anything else is the merge
 * path's job (which fires triggers and evaluates every constraint).
 */
static bool
table_is_plain(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	TupleConstr *constr = desc->constr;

	return rel->rd_rel->relam == HEAP_TABLE_AM_OID &&
		desc->natts == NCOLS && rel->trigdesc == NULL &&
		constr != NULL && constr->num_check == 1 &&
		strcmp(constr->check[0].ccname, ONE_LINE_CHECK) == 0;
}

/*
 * Whether a publication replicates any change of the table: subscribers
 * then need the upsert's UPDATE, not a replacement's DELETE and INSERT
 * (one publishing inserts and updates only would be sent the INSERT of a
 * key it holds)
 */
static bool
table_is_published(Relation rel)
{
	PublicationDesc pubdesc;

	RelationBuildPublicationDesc(rel, &pubdesc);
	return pubdesc.pubactions.pubinsert || pubdesc.pubactions.pubupdate ||
		pubdesc.pubactions.pubdelete || pubdesc.pubactions.pubtruncate;
}

/*
 * What the parser left to the table: its CHECK updates_doc_one_line, and
 * in a database whose encoding is not UTF-8 (the parser checked UTF-8)
 * the text's encoding, as the columns' input functions would
 */
static void
check_row(Relation rel, const SbBulkRow *r, int encoding)
{
	if (encoding != PG_UTF8 && encoding != PG_SQL_ASCII)
	{
		(void) pg_verify_mbstr(encoding, r->source, strlen(r->source), false);
		if (r->key)
			(void) pg_verify_mbstr(encoding, r->key, strlen(r->key), false);
		(void) pg_verify_mbstr(encoding, r->doc, r->doclen, false);
	}
	if (memchr(r->doc, '\n', r->doclen) == NULL && memchr(r->doc, '\r', r->doclen) == NULL)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_CHECK_VIOLATION),
			 errmsg("new row for relation \"%s\" violates check constraint \"%s\"",
					RelationGetRelationName(rel), ONE_LINE_CHECK),
			 errtableconstraint(rel, ONE_LINE_CHECK)));
}

/* The row, checked, into the slot as a virtual tuple; its datums in the current context */
static void
fill_slot(BulkTarget *t, TupleTableSlot *slot, int32 model_id, const SbBulkRow *r)
{
	check_row(t->rel, r, t->encoding);
	ExecClearTuple(slot);
	memset(slot->tts_isnull, 0, sizeof(bool) * NCOLS);
	slot->tts_values[COL_MODEL_ID] = Int32GetDatum(model_id);
	slot->tts_values[COL_SOURCE] = CStringGetTextDatum(r->source);
	slot->tts_values[COL_TS] = Float8GetDatum(r->ts);
	if (r->key)
		slot->tts_values[COL_KEY] = CStringGetTextDatum(r->key);
	else
		slot->tts_isnull[COL_KEY] = true;
	/* json is text: the line as received */
	slot->tts_values[COL_DOC] = PointerGetDatum(cstring_to_text_with_len(r->doc, r->doclen));
	ExecStoreVirtualTuple(slot);
}

/* The open index of rri whose OID is indexoid */
static Relation
open_index_of(ResultRelInfo *rri, Oid indexoid)
{
	for (int i = 0; i < rri->ri_NumIndices; i++)
		if (RelationGetRelid(rri->ri_IndexRelationDescs[i]) == indexoid)
			return rri->ri_IndexRelationDescs[i];
	elog(ERROR, "index %u of scuttlebutt.updates is not open", indexoid);
	return NULL;				/* keep the compiler quiet */
}

/*
 * Opens the table for a batch of n rows (and its key index to find held
 * rows, when replacing); false, with nothing open, where the upsert must
 * store them: the table is not plain, or the transaction is read-only
 * (the upsert raises its error); and to replace, the table is published,
 * or the transaction uses one snapshot throughout (the upsert raises the
 * serialization failures such a transaction expects)
 */
static bool
target_open(BulkTarget *t, int n, bool replacing)
{
	memset(t, 0, sizeof(BulkTarget));
	if (XactReadOnly || (replacing && IsolationUsesXactSnapshot()))
		return false;
	t->rel = table_open(SbRelationOid("updates"), RowExclusiveLock);
	if (!table_is_plain(t->rel) || (replacing && table_is_published(t->rel)))
	{
		table_close(t->rel, RowExclusiveLock);
		return false;
	}
	t->estate = CreateExecutorState();
	t->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(t->rri, t->rel, 1, NULL, 0);
	ExecOpenIndices(t->rri, false);
	/* a ring of buffers and a held target page pay off over many rows */
	t->bistate = n > 1 ? GetBulkInsertState() : NULL;
	/* rows an earlier call of the same command wrote are rows held, not ours */
	CommandCounterIncrement();
	t->cid = GetCurrentCommandId(true);
	t->encoding = GetDatabaseEncoding();
	/* not the relcache's (counted) descriptor: no resource owner entry per slot */
	t->desc = CreateTupleDescCopy(RelationGetDescr(t->rel));
	t->nslots = Min(n, SB_BULK_CHUNK);
	t->slots = palloc(sizeof(TupleTableSlot *) * t->nslots);
	for (int i = 0; i < t->nslots; i++)
		t->slots[i] = MakeSingleTupleTableSlot(t->desc, table_slot_callbacks(t->rel));
	t->chunk_cxt = AllocSetContextCreate(CurrentMemoryContext, "scuttlebutt bulk rows",
										 ALLOCSET_DEFAULT_SIZES);
	if (replacing)
	{
		t->key_index = open_index_of(t->rri, SbRelationOid("updates_latest_per_key"));
		t->key_arbiter = list_make1_oid(RelationGetRelid(t->key_index));
		InitDirtySnapshot(t->dirty);
		t->key_scan = index_beginscan(t->rel, t->key_index, &t->dirty, 2, 0);
		t->held = table_slot_create(t->rel, NULL);
		t->key_cxt = AllocSetContextCreate(CurrentMemoryContext, "scuttlebutt held key",
										   ALLOCSET_SMALL_SIZES);
	}
	return true;
}

static void
target_close(BulkTarget *t)
{
	if (t->key_scan)
	{
		MemoryContextDelete(t->key_cxt);
		ExecDropSingleTupleTableSlot(t->held);
		index_endscan(t->key_scan);
		list_free(t->key_arbiter);
	}
	MemoryContextDelete(t->chunk_cxt);
	for (int i = 0; i < t->nslots; i++)
		ExecDropSingleTupleTableSlot(t->slots[i]);
	pfree(t->slots);
	FreeTupleDesc(t->desc);
	if (t->bistate)
		FreeBulkInsertState(t->bistate);
	ExecCloseIndices(t->rri);
	FreeExecutorState(t->estate);
	table_close(t->rel, NoLock);
}

/* Enters the slot's row in every index (a unique violation is raised) */
static void
insert_index_entries(BulkTarget *t, TupleTableSlot *slot)
{
	List	   *recheck = SbExecInsertIndexTuples(t->rri, slot, t->estate);

	list_free(recheck);
	ResetPerTupleExprContext(t->estate);
	ExecClearTuple(slot);
}

/*
 * Inserts rows[which[0..m-1]] (rows[0..m-1] if which is NULL) into the
 * heap, SB_BULK_CHUNK at a time, then each into the indexes (as COPY's
 * multi-insert does)
 */
static void
insert_chunked(BulkTarget *t, int32 model_id, const SbBulkRow *rows,
			   const int *which, int m)
{
	for (int start = 0; start < m; start += SB_BULK_CHUNK)
	{
		int			k = Min(m - start, SB_BULK_CHUNK);
		MemoryContext old = MemoryContextSwitchTo(t->chunk_cxt);

		for (int i = 0; i < k; i++)
			fill_slot(t, t->slots[i], model_id,
					  &rows[which ? which[start + i] : start + i]);
		MemoryContextSwitchTo(old);
		table_multi_insert(t->rel, t->slots, k, t->cid, 0, t->bistate);
		for (int i = 0; i < k; i++)
			insert_index_entries(t, t->slots[i]);
		MemoryContextReset(t->chunk_cxt);
	}
}

/* Inserts one row, heap and indexes */
static void
insert_one(BulkTarget *t, int32 model_id, const SbBulkRow *r)
{
	MemoryContext old = MemoryContextSwitchTo(t->chunk_cxt);

	fill_slot(t, t->slots[0], model_id, r);
	MemoryContextSwitchTo(old);
	table_tuple_insert(t->rel, t->slots[0], t->cid, 0, t->bistate);
	insert_index_entries(t, t->slots[0]);
	MemoryContextReset(t->chunk_cxt);
}

/* Whether r is newer than the held row in t->held (the merge rule) */
static bool
newer_than_held(BulkTarget *t, const SbBulkRow *r)
{
	bool		isnull;
	MemoryContext old = MemoryContextSwitchTo(t->key_cxt);
	char	   *held_source = TextDatumGetCString(slot_getattr(t->held, COL_SOURCE + 1, &isnull));

	MemoryContextSwitchTo(old);
	t->held_ts = DatumGetFloat8(slot_getattr(t->held, COL_TS + 1, &isnull));
	return SbMerge(SB_KIND_MODEL, t->held_ts, held_source, r->ts, r->source) == SB_MERGE_REPLACE;
}

/*
 * The row scan's keys find (slot), as committed: a row an uncommitted
 * transaction wrote or deleted is waited for, as a unique index's check
 * waits (a speculative insertion only until it is decided), and the scan
 * repeated.  scan was begun with the dirty snapshot; false if no row.
 */
bool
SbFetchCommittedRow(IndexScanDesc scan, SnapshotData *dirty, ScanKey keys,
					int nkeys, TupleTableSlot *slot, XLTW_Oper waiting_to)
{
	index_rescan(scan, keys, nkeys, NULL, 0);
	for (;;)
	{
		TransactionId xwait;
		ItemPointerData tid;
		bool		found = index_getnext_slot(scan, ForwardScanDirection, slot);

		/*
		 * Off the index page before anything may wait (a wait in the caller's
		 * delete or lock, too), as the executor's unique check leaves it: a
		 * pin held while waiting would hold up VACUUM's cleanup of the page.
		 * (The rescan also starts the next look.)
		 */
		index_rescan(scan, keys, nkeys, NULL, 0);
		if (!found)
			return false;
		xwait = TransactionIdIsValid(dirty->xmin) ? dirty->xmin : dirty->xmax;
		if (!TransactionIdIsValid(xwait))
			return true;
		tid = slot->tts_tid;
		ExecClearTuple(slot);
		if (dirty->speculativeToken)
			SpeculativeInsertionWait(dirty->xmin, dirty->speculativeToken);
		else
			XactLockTableWait(xwait, scan->heapRelation, &tid, waiting_to);
	}
}

/*
 * Finds the row the model holds of r's key and judges it by the merge
 * rule: deletes it if r is newer, or else locks it, as the upsert locks the row its update loses to: the
 * key is then rewritten past it (store.c), out of key order, and the lock
 * keeps any writer in key order from taking the key first and waiting for
 * a later one of ours.  A row changed between the look and the delete or
 * lock is looked at again.
 */
static HeldRow
judge_held_row(BulkTarget *t, int32 model_id, const SbBulkRow *r)
{
	ScanKeyData skey[2];
	HeldRow		result;
	MemoryContext old;

	/* (the scan's own memory is the caller's: it lives to index_endscan) */
	MemoryContextReset(t->key_cxt);
	old = MemoryContextSwitchTo(t->key_cxt);
	ScanKeyInit(&skey[1], 2, BTEqualStrategyNumber, F_TEXTEQ, CStringGetTextDatum(r->key));
	MemoryContextSwitchTo(old);
	ScanKeyInit(&skey[0], 1, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(model_id));
	for (;;)
	{
		TM_FailureData tmfd;
		TM_Result	done;

		if (!SbFetchCommittedRow(t->key_scan, &t->dirty, skey, 2, t->held,
								 XLTW_InsertIndexUnique))
		{
			result = HELD_NONE;
			break;
		}
		/* the heap's delete and lock need no snapshot (table_is_plain: a heap) */
		if (newer_than_held(t, r))
		{
			result = HELD_DELETED;
			done = table_tuple_delete(t->rel, &t->held->tts_tid, t->cid, InvalidSnapshot,
									  InvalidSnapshot, true, &tmfd, false);
		}
		else
		{
			result = HELD_NEWER;
			done = table_tuple_lock(t->rel, &t->held->tts_tid, InvalidSnapshot, t->held,
									t->cid, LockTupleExclusive, LockWaitBlock, 0, &tmfd);
		}
		if (done == TM_Ok)
			break;
		if (done != TM_Updated && done != TM_Deleted)
			elog(ERROR, "unexpected result writing a held update");
		/* changed since we looked: again */
	}
	ExecClearTuple(t->held);
	return result;
}

/*
 * Inserts one row of a key no row held when looked at, as ON CONFLICT
 * does: speculatively, the key index's check not raising a conflict but
 * reporting it, the insertion then confirmed or undone.  False if a
 * concurrent writer's row of the key came first (undone).
 */
static bool
insert_speculative(BulkTarget *t, int32 model_id, const SbBulkRow *r)
{
	TransactionId xid = GetCurrentTransactionId();
	MemoryContext old = MemoryContextSwitchTo(t->chunk_cxt);
	bool		conflict = false;
	uint32		token;

	fill_slot(t, t->slots[0], model_id, r);
	MemoryContextSwitchTo(old);
	token = SpeculativeInsertionLockAcquire(xid);
	table_tuple_insert_speculative(t->rel, t->slots[0], t->cid, 0, NULL, token);
	list_free(SbExecInsertIndexTuplesSpeculative(t->rri, t->slots[0], t->estate,
												  &conflict, t->key_arbiter));
	table_tuple_complete_speculative(t->rel, t->slots[0], token, !conflict);
	/* who waits for our decision sees the row confirmed, or dead */
	SpeculativeInsertionLockRelease(xid);
	ResetPerTupleExprContext(t->estate);
	ExecClearTuple(t->slots[0]);
	MemoryContextReset(t->chunk_cxt);
	return !conflict;
}

/*
 * Stores r under the merge rule, as the upsert would: HELD_NEWER if it
 * lost (the held row locked), HELD_NONE if it was a new key (inserted),
 * HELD_DELETED if it replaced the held row, inserted here unless the
 * caller multi-inserts it (deferred): its key is ours until we end, so
 * nobody's insert can come first.
 */
static HeldRow
merge_row(BulkTarget *t, int32 model_id, const SbBulkRow *r, bool deferred)
{
	for (;;)
	{
		HeldRow		held = judge_held_row(t, model_id, r);

		if (held == HELD_DELETED && !deferred)
			insert_one(t, model_id, r);
		if (held != HELD_NONE || insert_speculative(t, model_id, r))
			return held;
		/* another writer's row of the key came first: judged against it */
	}
}

/*
 * The rows, each stored under the merge rule; the replacements
 * multi-inserted once every held row is judged.  *stored counts those
 * stored.  SB_BULK_KEY_HELD, with nothing written, if the batch gives a
 * key twice.
 */
static SbBulkResult
replace_rows(BulkTarget *t, int32 model_id, const SbBulkRow *rows, int n,
			 int *stored)
{
	int		   *replacing = palloc(sizeof(int) * n);
	int			m = 0;

	*stored = 0;
	/* a key given twice is the upsert's to refuse (rows come in key order) */
	for (int i = 1; i < n; i++)
		if (strcmp(rows[i].key, rows[i - 1].key) == 0)
			return SB_BULK_KEY_HELD;
	for (int i = 0; i < n; i++)
	{
		HeldRow		held = merge_row(t, model_id, &rows[i], true);

		if (held == HELD_DELETED)
			replacing[m++] = i;
		else if (held == HELD_NONE)
			(*stored)++;
	}
	insert_chunked(t, model_id, rows, replacing, m);
	*stored += m;
	pfree(replacing);
	return SB_BULK_STORED;
}

SbBulkResult
SbBulkInsertUpdates(int32 model_id, const SbBulkRow *rows, int n)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile SbBulkResult result = SB_BULK_STORED;

	/*
	 * In a subtransaction: a unique violation (a key held already, or one a
	 * concurrent writer committed) rolls it back and is SB_BULK_KEY_HELD
	 */
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		BulkTarget	t;

		if (!target_open(&t, n, false))
			result = SB_BULK_UNSUITED;
		else
		{
			insert_chunked(&t, model_id, rows, NULL, n);
			target_close(&t);
		}
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		/* only "a key is held already" sends the batch the other way */
		if (edata->sqlerrcode != ERRCODE_UNIQUE_VIOLATION)
			ReThrowError(edata);
		FreeErrorData(edata);
		result = SB_BULK_KEY_HELD;
	}
	PG_END_TRY();
	return result;
}

SbBulkResult
SbBulkReplaceUpdates(int32 model_id, const SbBulkRow *rows, int n, int *stored)
{
	BulkTarget	t;
	SbBulkResult result;

	if (!target_open(&t, n, true))
		return SB_BULK_UNSUITED;
	result = replace_rows(&t, model_id, rows, n, stored);
	target_close(&t);
	return result;
}

SbUpdatesWriter *
SbOpenUpdatesWriter(void)
{
	BulkTarget *t = palloc(sizeof(BulkTarget));

	if (target_open(t, 1, true))
		return t;
	pfree(t);
	return NULL;
}

bool
SbStoreOneUpdate(SbUpdatesWriter *w, int32 model_id, const SbBulkRow *r,
				 double *newer_ts)
{
	if (merge_row(w, model_id, r, false) != HELD_NEWER)
		return true;
	if (newer_ts)
		*newer_ts = w->held_ts;
	return false;
}

void
SbCloseUpdatesWriter(SbUpdatesWriter *w)
{
	target_close(w);
	pfree(w);
}
