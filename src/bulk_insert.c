/*-------------------------------------------------------------------------
 *
 * bulk_insert.c
 *	  Storing a batch of updates to keys a model does not hold yet with
 *	  COPY's multi-insert, as logical replication's initial table copy does.
 *
 * An initial sync into an empty model is a stream of new keys: the merge
 * path's upsert (a speculative insertion per row, its confirmation record,
 * a sort and a RETURNING) then does work that cannot change the outcome.
 * Here the batch is handed to COPY FROM (binary format, fed from memory):
 * heap pages are filled many rows at a time, one WAL record per page, and
 * the indexes are maintained as for any insert.
 *
 * Whether every key is new is not checked first (that costs the probe the
 * upsert makes): the COPY runs in a subtransaction, and a unique violation,
 * a key the model already held or one a concurrent writer committed,
 * rolls it back; the caller then stores the batch through the merge path.
 * Rows go in key order, the merge path's lock order (SB_LOCK_ORDER), so two
 * writers of the same new keys wait for each other rather than deadlock.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "commands/copy.h"
#include "nodes/makefuncs.h"
#include "parser/parse_relation.h"
#include "port/pg_bswap.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "bulk_insert.h"

/* COPY's binary signature, flags and header extension length */
static const char copy_binary_header[] = "PGCOPY\n\377\r\n\0";

/* The batch being copied: COPY's data source callback takes no argument */
static StringInfo copy_source;
static int	copy_source_offset;

static int
read_copy_source(void *outbuf, int minread pg_attribute_unused(), int maxread)
{
	int			n = Min(maxread, copy_source->len - copy_source_offset);

	memcpy(outbuf, copy_source->data + copy_source_offset, n);
	copy_source_offset += n;
	return n;
}

static void
append_int16(StringInfo buf, int16 v)
{
	uint16		n = pg_hton16((uint16) v);

	appendBinaryStringInfo(buf, (char *) &n, sizeof(n));
}

static void
append_int32(StringInfo buf, int32 v)
{
	uint32		n = pg_hton32((uint32) v);

	appendBinaryStringInfo(buf, (char *) &n, sizeof(n));
}

static void
append_field(StringInfo buf, const char *data, int len)
{
	append_int32(buf, len);
	appendBinaryStringInfo(buf, data, len);
}

/* The batch as COPY's binary format: (model_id, source, ts, key, doc) */
static void
build_copy_data(StringInfo buf, int32 model_id, const SbBulkRow *rows, int n)
{
	appendBinaryStringInfo(buf, copy_binary_header, sizeof(copy_binary_header) - 1);
	append_int32(buf, 0);
	append_int32(buf, 0);
	for (int i = 0; i < n; i++)
	{
		const SbBulkRow *r = &rows[i];
		uint32		model_be = pg_hton32((uint32) model_id);
		union
		{
			float8		f;
			uint64		u;
		}			ts;

		append_int16(buf, 5);
		append_field(buf, (char *) &model_be, sizeof(model_be));
		append_field(buf, r->source, strlen(r->source));
		ts.f = r->ts;
		ts.u = pg_hton64(ts.u);
		append_field(buf, (char *) &ts.u, sizeof(ts.u));
		if (r->key)
			append_field(buf, r->key, strlen(r->key));
		else
			append_int32(buf, -1);
		append_field(buf, r->doc, r->doclen);
	}
	append_int16(buf, -1);
}

/* COPY FROM the data into scuttlebutt.updates */
static void
copy_into_updates(StringInfo data)
{
	Oid			nsp = get_namespace_oid("scuttlebutt", false);
	Relation	rel = table_open(get_relname_relid("updates", nsp), RowExclusiveLock);
	ParseState *pstate = make_parsestate(NULL);
	List	   *options = list_make1(makeDefElem("format",
												 (Node *) makeString("binary"), -1));
	CopyFromState cstate;

	(void) addRangeTableEntryForRelation(pstate, rel, RowExclusiveLock,
										 NULL, false, false);
	copy_source = data;
	copy_source_offset = 0;
	cstate = BeginCopyFrom(pstate, rel, NULL, NULL, false, read_copy_source,
						   NIL, options);
	(void) CopyFrom(cstate);
	EndCopyFrom(cstate);
	copy_source = NULL;
	table_close(rel, NoLock);
}

bool
SbBulkInsertUpdates(int32 model_id, const SbBulkRow *rows, int n)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	StringInfoData data;
	volatile bool stored = true;

	initStringInfo(&data);
	build_copy_data(&data, model_id, rows, n);

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		copy_into_updates(&data);
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
		copy_source = NULL;
		/* only "a key is held already" sends the batch the other way */
		if (edata->sqlerrcode != ERRCODE_UNIQUE_VIOLATION)
			ReThrowError(edata);
		FreeErrorData(edata);
		stored = false;
	}
	PG_END_TRY();
	pfree(data.data);
	return stored;
}
