/*-------------------------------------------------------------------------
 *
 * bulk_insert.c
 *	  Storing a batch of updates to keys a model does not hold yet with the
 *	  table's multi-insert, as COPY and logical replication's initial table
 *	  copy do.
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
 * committed, rolls it back; the caller then stores the batch through the
 * merge path.  Rows go in key order, the merge path's lock order
 * (SB_LOCK_ORDER), so two writers of the same new keys wait for each other
 * rather than deadlock.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "executor/executor.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"

#include "bulk_insert.h"
#include "compat.h"

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

/*
 * Whether the table is as the extension's script made it: its columns,
 * its one CHECK and no trigger.  Anything else is the merge path's job
 * (which fires triggers and evaluates every constraint).
 */
static bool
table_is_plain(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	TupleConstr *constr = desc->constr;

	return desc->natts == NCOLS && rel->trigdesc == NULL &&
		constr != NULL && constr->num_check == 1 &&
		strcmp(constr->check[0].ccname, ONE_LINE_CHECK) == 0;
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

/* The row into the slot as a virtual tuple; its datums in the current context */
static void
fill_slot(TupleTableSlot *slot, int32 model_id, const SbBulkRow *r)
{
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

/*
 * Inserts the rows into the heap, SB_BULK_CHUNK at a time, then each into
 * the indexes (as COPY's multi-insert does); nothing if the table is not
 * plain
 */
static SbBulkResult
insert_rows(int32 model_id, const SbBulkRow *rows, int n)
{
	Oid			nsp = get_namespace_oid("scuttlebutt", false);
	Relation	rel = table_open(get_relname_relid("updates", nsp), RowExclusiveLock);
	TupleDesc	desc;
	EState	   *estate;
	ResultRelInfo *rri;
	BulkInsertState bistate;
	TupleTableSlot *slots[SB_BULK_CHUNK];
	MemoryContext chunk_cxt;
	MemoryContext old;
	CommandId	cid;
	int			nslots = Min(n, SB_BULK_CHUNK);
	int			encoding = GetDatabaseEncoding();

	if (!table_is_plain(rel))
	{
		table_close(rel, RowExclusiveLock);
		return SB_BULK_TABLE_CHANGED;
	}
	estate = CreateExecutorState();
	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	ExecOpenIndices(rri, false);
	bistate = GetBulkInsertState();
	cid = GetCurrentCommandId(true);
	/* not the relcache's (counted) descriptor: no resource owner entry per slot */
	desc = CreateTupleDescCopy(RelationGetDescr(rel));
	for (int i = 0; i < nslots; i++)
		slots[i] = MakeSingleTupleTableSlot(desc, table_slot_callbacks(rel));
	chunk_cxt = AllocSetContextCreate(CurrentMemoryContext, "scuttlebutt bulk rows",
									  ALLOCSET_DEFAULT_SIZES);

	for (int start = 0; start < n; start += SB_BULK_CHUNK)
	{
		int			m = Min(n - start, SB_BULK_CHUNK);

		old = MemoryContextSwitchTo(chunk_cxt);
		for (int i = 0; i < m; i++)
		{
			check_row(rel, &rows[start + i], encoding);
			fill_slot(slots[i], model_id, &rows[start + i]);
		}
		MemoryContextSwitchTo(old);
		table_multi_insert(rel, slots, m, cid, 0, bistate);
		for (int i = 0; i < m; i++)
		{
			List	   *recheck = SbExecInsertIndexTuples(rri, slots[i], estate);

			list_free(recheck);
			ResetPerTupleExprContext(estate);
			ExecClearTuple(slots[i]);
		}
		MemoryContextReset(chunk_cxt);
	}

	MemoryContextDelete(chunk_cxt);
	for (int i = 0; i < nslots; i++)
		ExecDropSingleTupleTableSlot(slots[i]);
	FreeBulkInsertState(bistate);
	ExecCloseIndices(rri);
	FreeExecutorState(estate);
	table_close(rel, NoLock);
	return SB_BULK_STORED;
}

SbBulkResult
SbBulkInsertUpdates(int32 model_id, const SbBulkRow *rows, int n)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile SbBulkResult result = SB_BULK_STORED;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		result = insert_rows(model_id, rows, n);
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
