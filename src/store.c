/*-------------------------------------------------------------------------
 *
 * store.c
 *	  Table access: model lookups, local writes, clocks, history pages and
 *	  the sequencer's reservation row (through SPI; the clock and history
 *	  pages, read after every commit a peer is sent, by index scans).
 *
 * Tables (see the install script): registry (one row per model), clocks
 * (per model and source, the greatest timestamp accepted) and updates
 * (the updates a model holds, each exactly as on the wire).
 *
 * Ordering: a peer that has seen timestamp t from a source never asks for
 * older ones, so no reader may see a source's update while an older one
 * could still commit.  Updates from other sources (applied batches) first
 * upsert their sources' clock rows and hold the row locks until commit:
 * per (model, source) commit order equals timestamp order.  This node's
 * own writes take timestamps from the shared-memory sequencer instead
 * (sequencer.c), which lets writers run side by side and holds readers
 * below the oldest timestamp still running; without the library preloaded
 * they lock the clock row like the others.
 *
 * Merge rule: merge.h states it and holds the SQL that applies it (the
 * WHERE of the updates upsert, SB_MERGE_SQL_UPSERT): for a key, the update
 * with the greater (timestamp, source) wins, comparing sources byte-wise
 * (COLLATE "C"), so every node converges whatever the arrival order.
 * Events have no row key (NULL never conflicts): all are kept.  Updates
 * from elsewhere are applied in batches by apply.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/genam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/memutils.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"

#include "bulk_insert.h"
#include "ext_relation.h"
#include "merge.h"
#include "model_cache.h"
#include "privileges.h"
#include "rejoin.h"
#include "sequencer.h"
#include "shmem.h"
#include "spi_util.h"
#include "store.h"
#include "trusted_keys.h"
#include "timestamp.h"
#include "wire.h"

static SPIPlanPtr lookup_plan;
static SPIPlanPtr local_clock_plan;
static SPIPlanPtr set_clock_plan;
static SPIPlanPtr local_write_plan;
static SPIPlanPtr local_clock_past_key_plan;
static SPIPlanPtr key_ts_plan;
static SPIPlanPtr upsert_local_many_plan;
static SPIPlanPtr any_row_plan;
static SPIPlanPtr raise_clock_plan;

/*
 * SB_LOCK_ORDER: writers of many keys take their rows in byte order
 * (COLLATE "C", strcmp), whatever the database's collation: the upserts
 * here and in apply.c, and the bulk paths (bulk_insert.c), so a
 * set_many() and the worker applying a peer's batch over the same keys
 * wait for each other instead of deadlocking.
 */
#define UPSERT_CONFLICT_CLAUSE SB_MERGE_SQL_UPSERT

/* ---- model lookups ---- */

/* A model by name, of the expected kind, or an ERROR */
void
SbModelLookup(const char *name, int expected_kind, SbModelRef *model)
{

	if (name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("model name must not be null")));

	if (!SbModelTryLookup(name, model))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("scuttlebutt model \"%s\" does not exist", name),
				 errhint("Create it with scuttlebutt.create_model().")));

	if (expected_kind != SB_KIND_ANY && model->kind != (SbKind) expected_kind)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("scuttlebutt model \"%s\" is of kind \"%s\", not \"%s\"",
						name, SbKindName(model->kind),
						SbKindName((SbKind) expected_kind))));
}

/* A model by name (cached per backend); false if there is none */
bool
SbModelTryLookup(const char *name, SbModelRef *model)
{
	MemoryContext caller = CurrentMemoryContext;
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	SPIPlanPtr	plan;
	bool		isnull;
	char	   *kind_name;
	char	   *alg_name;

	if (SbModelCacheGet(name, model))
		return true;

	SPI_connect();
	plan = SbPrepareOnce(&lookup_plan,
						"SELECT id, kind, signature_algorithm"
						" FROM scuttlebutt.registry WHERE name = $1",
						1, argtypes);
	values[0] = CStringGetTextDatum(name);
	SbExecutePlan(plan, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
	{
		SPI_finish();
		return false;
	}

	model->id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
											SPI_tuptable->tupdesc, 1, &isnull));
	kind_name = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	if (!SbKindFromName(kind_name, &model->kind))
		elog(ERROR, "unknown model kind \"%s\"", kind_name);
	alg_name = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);
	model->signature = SB_SIG_NONE;
	if (alg_name != NULL && !SbSignatureAlgorithmFromName(alg_name, &model->signature))
		elog(ERROR, "unknown signature algorithm \"%s\"", alg_name);
	model->name = MemoryContextStrdup(caller, name);
	model->node_id = MemoryContextStrdup(caller, SbLocalNodeId());
	SPI_finish();
	SbModelCachePut(model);
	return true;
}

/* ---- local writes ---- */

/*
 * Without the sequencer: takes the next timestamp of this node's source in
 * a model, past the clock and the wall clock, and locks the clock row to
 * commit (set_many's first step; SbLocalWrite does the same inside its
 * single statement).
 */
static double
advance_local_clock(SbModelRef *model)
{
	Oid			argtypes[3] = {INT4OID, TEXTOID, FLOAT8OID};
	Datum		values[3];
	bool		isnull;

	SbPrepareOnce(&local_clock_plan,
				 "INSERT INTO scuttlebutt.clocks AS c (model_id, source, ts)"
				 " VALUES ($1, $2, $3)"
				 " ON CONFLICT (model_id, source) DO UPDATE"
				 " SET ts = greatest(excluded.ts, scuttlebutt._ts_after(c.ts))"
				 " RETURNING c.ts",
				 3, argtypes);
	values[0] = Int32GetDatum(model->id);
	values[1] = CStringGetTextDatum(model->node_id);
	values[2] = Float8GetDatum(SbNowMillis());
	SbExecutePlan(local_clock_plan, values, NULL, SPI_OK_INSERT_RETURNING);
	return DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[0],
										SPI_tuptable->tupdesc, 1, &isnull));
}

/* A local update's wire text into buf (reset): [change,ts,node], signed when the model is */
static void
build_update_text(StringInfo buf, const SbModelRef *model,
				  const char *change_text, double ts)
{
	resetStringInfo(buf);
	SbAppendUpdateText(buf, change_text, ts, model->node_id);
	SbSignLocalUpdate(model, buf);
}

/*
 * A local update's wire text as a json datum, built in buf (reused):
 * [change,ts,node], signed when the model is
 */
Datum
SbUpdateTextDatum(StringInfo buf, const SbModelRef *model,
				  const char *change_text, double ts)
{
	build_update_text(buf, model, change_text, ts);
	return PointerGetDatum(cstring_to_text_with_len(buf->data, buf->len));
}

/* Stores [change, ts, node] (signed if the model is); false if it lost */
static bool
store_local_update(SbModelRef *model, Datum *values, const char *nulls,
				   StringInfo doc, const char *change_text, double ts)
{
	SbPrepareOnce(&local_write_plan,
				  "INSERT INTO scuttlebutt.updates AS u (model_id, source, ts, key, doc)"
				  " VALUES ($1, $2, $3, $4, $5)"
				  UPSERT_CONFLICT_CLAUSE,
				  5, (Oid[]) {INT4OID, TEXTOID, FLOAT8OID, TEXTOID, JSONOID});
	values[2] = Float8GetDatum(ts);
	values[4] = SbUpdateTextDatum(doc, model, change_text, ts);
	SbExecutePlan(local_write_plan, values, nulls, SPI_OK_INSERT);
	return SPI_processed == 1;
}

/*
 * The local write of a key on the open table (SbLocalWrite, with the
 * sequencer): stored as the upsert would, with neither a plan nor an
 * executor; if the key holds a newer update (a peer whose clock runs
 * ahead), once more past it.  The table is opened before the timestamp
 * is taken: its opening is not among what holds readers of this node's
 * source back until the commit (the sequencer's reservation).
 */
static double
write_key_direct(SbUpdatesWriter *writer, SbModelRef *model, const char *key,
				 const char *change_text)
{
	StringInfoData doc;
	double		floor = NAN;
	double		ts = NAN;

	initStringInfo(&doc);
	for (int attempt = 0; attempt < 2; attempt++)
	{
		SbBulkRow	row;

		ts = SbSequencerNext(model->id, model->node_id, floor, 1);
		build_update_text(&doc, model, change_text, ts);
		row = (SbBulkRow) {model->node_id, ts, key, doc.data, doc.len};
		/* (the newer row stays locked: a second try cannot lose to it) */
		if (SbStoreOneUpdate(writer, model->id, &row, &floor))
			break;
	}
	pfree(doc.data);
	return ts;
}

/*
 * The local write through SQL statements (SbLocalWrite): with the
 * sequencer, one statement stores it, and only if the key holds a newer
 * value do we read it and write again past it; without, one statement
 * reads the key and advances this node's clock row (locking it until
 * commit), and a second stores.
 */
static double
write_by_statement(SbModelRef *model, const char *key, const char *change_text)
{
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	bool		isnull;
	double		ts;
	StringInfoData doc;

	SPI_connect();
	initStringInfo(&doc);
	values[0] = Int32GetDatum(model->id);
	values[1] = CStringGetTextDatum(model->node_id);
	if (key)
		values[3] = CStringGetTextDatum(key);
	else
		nulls[3] = 'n';
	if (SbSequencerActive())
	{
		double		floor = NAN;

		for (int attempt = 0; attempt < 2; attempt++)
		{
			ts = SbSequencerNext(model->id, model->node_id, floor, 1);
			if (store_local_update(model, values, nulls, &doc, change_text, ts) ||
				attempt == 1)
				break;
			/* the key holds a newer value: once more, past it */
			SbPrepareOnce(&key_ts_plan,
						 "SELECT ts FROM scuttlebutt.updates WHERE model_id = $1 AND key = $2",
						 2, (Oid[]) {INT4OID, TEXTOID});
			SbExecutePlan(key_ts_plan, (Datum[]) {values[0], values[3]}, NULL, SPI_OK_SELECT);
			if (SPI_processed == 1)
				floor = DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[0],
													 SPI_tuptable->tupdesc, 1, &isnull));
		}
		/* stored, or lost again to a concurrent write: ours is the last taken */
	}
	else
	{
		/*
		 * The clock row takes the timestamp past the key's current one and
		 * stays locked to commit; the text is made (and signed) here.
		 */
		SbPrepareOnce(&local_clock_past_key_plan,
					 "INSERT INTO scuttlebutt.clocks AS c (model_id, source, ts)"
					 " VALUES ($1, $2, greatest($3, scuttlebutt._ts_after("
					 "   (SELECT u.ts FROM scuttlebutt.updates u"
					 "    WHERE u.model_id = $1 AND u.key = $4))))"
					 " ON CONFLICT (model_id, source) DO UPDATE"
					 " SET ts = greatest(excluded.ts, scuttlebutt._ts_after(c.ts))"
					 " RETURNING c.ts",
					 4, (Oid[]) {INT4OID, TEXTOID, FLOAT8OID, TEXTOID});
		values[2] = Float8GetDatum(SbNowMillis());
		SbExecutePlan(local_clock_past_key_plan, values, nulls, SPI_OK_INSERT_RETURNING);
		ts = DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull));
		(void) store_local_update(model, values, nulls, &doc, change_text, ts);
	}
	SPI_finish();
	return ts;
}

/*
 * A local write, the hot path of set(), emit() and set_value(): store
 * [change, ts, node] under the merge rule, with a timestamp past the key's
 * current one.  Returns ts even when a concurrent newer update of the key
 * wins.  The timestamp is taken here, not by a function in a statement:
 * no SQL-callable function moves the sequencer, so none is PUBLIC's.
 *
 * A key of a latest-per-key model, with the sequencer, is written on the
 * table directly where it is as the extension made it (as a live pull's
 * update is, lone_apply.c: a held key's row is deleted and the new one
 * inserted, where the upsert updates it); anything else, or a transaction
 * the direct write does not suit (SbOpenUpdatesWriter: a published table
 * among them), by statements.
 */
double
SbLocalWrite(SbModelRef *model, const char *key, const char *change_text)
{
	SbUpdatesWriter *writer = NULL;
	double		ts;

	if (SbSequencerActive() && model->kind == SB_KIND_MODEL && key != NULL)
		writer = SbOpenUpdatesWriter();
	if (writer)
	{
		ts = write_key_direct(writer, model, key, change_text);
		SbCloseUpdatesWriter(writer);
		/* what follows in this transaction sees the row, as after a statement */
		CommandCounterIncrement();
	}
	else
		ts = write_by_statement(model, key, change_text);
	SbNoteModelWrite(model->id);
	return ts;
}

/* Local batches of at least so many keys are stored by multi-insert */
#define SB_LOCAL_BULK_MIN_ROWS 1000

static bool
model_holds_rows(SbModelRef *model)
{
	SbPrepareOnce(&any_row_plan,
				  "SELECT FROM scuttlebutt.updates WHERE model_id = $1 LIMIT 1",
				  1, (Oid[]) {INT4OID});
	SbExecutePlan(any_row_plan, (Datum[]) {Int32GetDatum(model->id)}, NULL, SPI_OK_SELECT);
	return SPI_processed > 0;
}

/*
 * A large batch stored by the table's multi-insert (bulk_insert.c), as an
 * initial sync's pages are: into a model that held no key when looked at,
 * inserted (no key can lose to a held one, so the upsert's probe per key
 * is work that cannot change the outcome); else each replacing its key's
 * row where newer.  *stored counts the rows stored.  False, with nothing
 * stored, where the upsert must store them: a new key a concurrent writer
 * committed first, a trigger or constraint of the table's own, or a
 * transaction that uses one snapshot throughout.
 */
static bool
bulk_store_local(SbModelRef *model, int n, char **keys, Datum *docs,
				 double *ts, uint64 *stored)
{
	SbBulkRow  *rows;
	int			replaced;

	if (n < SB_LOCAL_BULK_MIN_ROWS)
		return false;
	rows = palloc(sizeof(SbBulkRow) * n);
	for (int i = 0; i < n; i++)
	{
		text	   *doc = DatumGetTextPP(docs[i]);

		rows[i] = (SbBulkRow) {model->node_id, ts[i], keys[i],
			VARDATA_ANY(doc), VARSIZE_ANY_EXHDR(doc)};
	}
	if (!model_holds_rows(model))
		switch (SbBulkInsertUpdates(model->id, rows, n))
		{
			case SB_BULK_STORED:
				elog(DEBUG1, "scuttlebutt: set_many() stored %d keys of model \"%s\" by bulk insert",
					 n, model->name);
				*stored = n;
				return true;
			case SB_BULK_UNSUITED:
				return false;	/* a replace would find the same */
			case SB_BULK_KEY_HELD:
				break;
		}
	if (SbBulkReplaceUpdates(model->id, rows, n, &replaced) != SB_BULK_STORED)
		return false;
	elog(DEBUG1, "scuttlebutt: set_many() stored %d of %d keys of model \"%s\" by bulk replace",
		 replaced, n, model->name);
	*stored = replaced;
	return true;
}

/*
 * Stores local updates of keys at timestamps ts under the merge rule, keys
 * in SB_LOCK_ORDER: a large batch by multi-insert (bulk_store_local), else
 * one upsert; returns how many were stored (the others lost to a newer
 * value).
 */
static uint64
upsert_local_rows(SbModelRef *model, int n, char **keys, char **change_texts,
				  double *ts)
{
	Oid			argtypes[5] = {INT4OID, TEXTOID, FLOAT8ARRAYOID, TEXTARRAYOID, JSONARRAYOID};
	Datum		values[5];
	Datum	   *docs = palloc(sizeof(Datum) * n);
	StringInfoData buf;
	uint64		stored;

	initStringInfo(&buf);
	for (int i = 0; i < n; i++)
		docs[i] = SbUpdateTextDatum(&buf, model, change_texts[i], ts[i]);
	if (bulk_store_local(model, n, keys, docs, ts, &stored))
		return stored;
	SbPrepareOnce(&upsert_local_many_plan,
				  "INSERT INTO scuttlebutt.updates AS u (model_id, source, ts, key, doc)"
				  " SELECT $1, $2, t.ts, t.key, t.doc"
				  " FROM unnest($3, $4, $5) AS t(ts, key, doc)"
				  " ORDER BY t.key COLLATE \"C\"" /* see SB_LOCK_ORDER */
				  UPSERT_CONFLICT_CLAUSE,
				  5, argtypes);
	values[0] = Int32GetDatum(model->id);
	values[1] = CStringGetTextDatum(model->node_id);
	values[2] = SbFloat8Array(ts, n);
	values[3] = SbTextArray(keys, n);
	values[4] = PointerGetDatum(construct_array(docs, n, JSONOID, -1, false,
												TYPALIGN_INT));
	SbExecutePlan(upsert_local_many_plan, values, NULL, SPI_OK_INSERT);
	return SPI_processed;
}

/*
 * After upsert_local_rows lost some keys (they hold a newer value than
 * ours, from a peer whose clock runs ahead): reads those keys and writes
 * them again past their timestamps.  ts[] holds the timestamps first used
 * (and is reused).  Returns the last timestamp taken (last if none).
 */
static double
rewrite_lost_keys(SbModelRef *model, int n, char **keys, char **change_texts,
				  double *ts, double last)
{
	Oid			qtypes[4] = {INT4OID, TEXTOID, FLOAT8ARRAYOID, TEXTARRAYOID};
	Datum		qvalues[4];
	int			m;
	char	  **lost_keys;
	char	  **lost_changes;
	double		newest = last;

	qvalues[0] = Int32GetDatum(model->id);
	qvalues[1] = CStringGetTextDatum(model->node_id);
	qvalues[2] = SbFloat8Array(ts, n);
	qvalues[3] = SbTextArray(keys, n);
	if (SPI_execute_with_args("SELECT u.key, u.ts, t.i"
							  " FROM scuttlebutt.updates u"
							  " JOIN unnest($4, $3) WITH ORDINALITY AS t(key, ts, i) ON u.key = t.key"
							  " WHERE u.model_id = $1 AND (u.source <> $2 OR u.ts <> t.ts)",
							  4, qtypes, qvalues, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read scuttlebutt.updates");
	m = SPI_processed;
	if (m == 0)
		return last;
	lost_keys = palloc(sizeof(char *) * m);
	lost_changes = palloc(sizeof(char *) * m);
	for (int i = 0; i < m; i++)
	{
		bool		isnull;
		double		held = DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[i],
														SPI_tuptable->tupdesc, 2, &isnull));
		int64		pos = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
													  SPI_tuptable->tupdesc, 3, &isnull));

		lost_keys[i] = keys[pos - 1];
		lost_changes[i] = change_texts[pos - 1];
		newest = Max(newest, held);
	}
	for (int i = 0; i < m; i++)
	{
		if (i > 0)
			ts[i] = SbTimestampAfter(ts[i - 1]);
		else if (SbSequencerActive())
			ts[i] = SbSequencerNext(model->id, model->node_id, newest, m);
		else
			ts[i] = SbTimestampAfter(newest);
	}
	(void) upsert_local_rows(model, m, lost_keys, lost_changes, ts);
	return ts[m - 1];
}

/* A key and its change, sorted together */
typedef struct KeyedChange
{
	char	   *key;
	char	   *change_text;
} KeyedChange;

static int
keyed_change_cmp(const void *a, const void *b)
{
	return strcmp(((const KeyedChange *) a)->key, ((const KeyedChange *) b)->key);
}

/*
 * Sorts keys, and change_texts with them, in SB_LOCK_ORDER (byte order,
 * as COLLATE "C" and strcmp compare): a bulk insert takes the keys in the
 * order given, and two writers of the same keys must take them in one
 * order.  Timestamps then rise in the order the rows are stored, so the
 * primary key (model, source, ts) grows at its right end, as the key index
 * does in key order; and the upsert's sort finds its input sorted.
 */
static void
sort_by_key(int n, char **keys, char **change_texts)
{
	KeyedChange *pairs = palloc(sizeof(KeyedChange) * n);

	for (int i = 0; i < n; i++)
		pairs[i] = (KeyedChange) {keys[i], change_texts[i]};
	qsort(pairs, n, sizeof(KeyedChange), keyed_change_cmp);
	for (int i = 0; i < n; i++)
	{
		keys[i] = pairs[i].key;
		change_texts[i] = pairs[i].change_text;
	}
	pfree(pairs);
}

/*
 * Many local updates to distinct keys of a key/value model.  Timestamps
 * follow the clock, in key order; a large batch is bulk inserted into a
 * model that holds no key, and bulk replaced over one that does, else
 * upserted.  A key whose current value is newer (a peer ahead of our
 * clock) loses either way, and only then do we read those keys and write
 * them again past their timestamps, so the common case is one pass over
 * the batch.
 */
void
SbLocalWriteMany(SbModelRef *model, int n, char **keys, char **change_texts)
{
	double	   *ts;
	double		last;

	if (n == 0)
		return;

	sort_by_key(n, keys, change_texts);
	ts = palloc(sizeof(double) * n);
	SPI_connect();
	last = SbSequencerActive()
		? SbSequencerNext(model->id, model->node_id, NAN, n)
		: advance_local_clock(model);
	for (int i = 0; i < n; i++)
		ts[i] = i == 0 ? last : SbTimestampAfter(ts[i - 1]);
	last = ts[n - 1];

	if (upsert_local_rows(model, n, keys, change_texts, ts) < (uint64) n)
		last = rewrite_lost_keys(model, n, keys, change_texts, ts, last);

	/* without the sequencer the clock row is ours until commit: move it */
	if (!SbSequencerActive())
	{
		Oid			ctypes[3] = {INT4OID, TEXTOID, FLOAT8OID};
		Datum		cvalues[3];

		SbPrepareOnce(&set_clock_plan,
					  "UPDATE scuttlebutt.clocks SET ts = $3"
					  " WHERE model_id = $1 AND source = $2",
					  3, ctypes);
		cvalues[0] = Int32GetDatum(model->id);
		cvalues[1] = CStringGetTextDatum(model->node_id);
		cvalues[2] = Float8GetDatum(last);
		SbExecutePlan(set_clock_plan, cvalues, NULL, SPI_OK_UPDATE);
	}
	SPI_finish();
	SbNoteModelWrite(model->id);
}

/* ---- clocks and history, for the replication worker and export ---- */

double
SbVisibleTs(int32 model_id, const char *source, double ts)
{
	const char *node_id;

	if (!SbSequencerActive())
		return ts;
	node_id = SbLocalNodeId();
	if (strcmp(source, node_id) != 0)
		return ts;
	return Min(ts, SbSequencerVisibleLimit(model_id, node_id));
}

/*
 * Whether the calling role may see the clock rows of model_id: the
 * table's SELECT privilege, then its row-level security policy
 * (clocks_readers: _may_read(model_id)) where it applies to the role, as a
 * query of the table would judge them.  (A query would also accept
 * column-level SELECT on every column, and apply policies an administrator
 * added to the table; neither is the extension's.)
 */
static bool
clock_rows_visible(Relation rel, int32 model_id)
{
	Oid			relid = RelationGetRelid(rel);
	AclResult	acl = pg_class_aclcheck(relid, GetUserId(), ACL_SELECT);

	if (acl != ACLCHECK_OK)
		aclcheck_error(acl, OBJECT_TABLE, RelationGetRelationName(rel));
	return check_enable_rls(relid, InvalidOid, false) != RLS_ENABLED ||
		SbModelPrivilegeHeld(GetUserId(), model_id, SB_PRIV_READ);
}

/*
 * The clock as readers may see it (this node's source at its visible
 * limit), in source order, by one scan of clocks_pkey: the clock is read
 * before every page a peer is sent, and a planned query's start-up cost
 * many times the scan of a few rows.  In the caller's snapshot, or else in
 * a new one, as a statement of its own would read it.
 */
int
SbReadClock(SbModelRef *model, SbClockEntry **entries, bool in_caller_snapshot)
{
	Relation	rel = table_open(SbRelationOid("clocks"), AccessShareLock);
	Relation	idx;
	IndexScanDesc scan;
	ScanKeyData key;
	TupleTableSlot *slot;
	int			n = 0;
	int			room = 8;

	*entries = palloc(sizeof(SbClockEntry) * room);
	if (!clock_rows_visible(rel, model->id))
	{
		table_close(rel, NoLock);
		return 0;
	}
	if (!in_caller_snapshot)
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		CommandCounterIncrement();
		UpdateActiveSnapshotCommandId();
	}
	idx = index_open(SbRelationOid("clocks_pkey"), AccessShareLock);
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(model->id));
	scan = index_beginscan(rel, idx, GetActiveSnapshot(), 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	slot = table_slot_create(rel, NULL);
	while (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		char	   *source = TextDatumGetCString(slot_getattr(slot, 2, &isnull));
		double		ts = DatumGetFloat8(slot_getattr(slot, 3, &isnull));

		if (n == room)
		{
			room *= 2;
			*entries = repalloc(*entries, sizeof(SbClockEntry) * room);
		}
		(*entries)[n].source = source;
		(*entries)[n].ts = SbVisibleTs(model->id, source, ts);
		n++;
	}
	ExecDropSingleTupleTableSlot(slot);
	index_endscan(scan);
	if (!in_caller_snapshot)
		PopActiveSnapshot();
	/* the locks are held to the end of the transaction, as a query's */
	index_close(idx, NoLock);
	table_close(rel, NoLock);
	return n;
}

/*
 * Raises the clock to entries where they are ahead, never our own source,
 * and never past what an update could carry: an entry more than
 * max_clock_skew ahead, or of a source longer than the table holds, is
 * left out.
 */
void
SbRaiseClock(SbModelRef *model, SbClockEntry *entries, int n)
{
	Oid			argtypes[4] = {INT4OID, TEXTARRAYOID, FLOAT8ARRAYOID, TEXTOID};
	Datum		values[4];
	char	  **sources = palloc(sizeof(char *) * Max(n, 1));
	double	   *ts = palloc(sizeof(double) * Max(n, 1));
	double		bound = SbTimestampBound();
	int			m = 0;

	for (int i = 0; i < n; i++)
	{
		if (entries[i].ts > bound || strlen(entries[i].source) > SB_MAX_SOURCE_BYTES)
			continue;

		/*
		 * This node's own source: its clock row is the sequencer's
		 * reservation.  A peer holding it at a later timestamp than the
		 * sequencer's last (this server was restored from a backup) means
		 * later local timestamps must pass that one; and readers are
		 * shown what the peer vouches for, up to the reservation.
		 */
		if (strcmp(entries[i].source, model->node_id) == 0)
		{
			if (SbSequencerActive())
			{
				SbSequencerLearn(model->id, model->node_id, entries[i].ts);

				/*
				 * Shown at once, not at our commit: readers must look.  Not
				 * while rejoining after a restore: the peer holds updates of
				 * ours that this copy lacks, and a clock showing them would
				 * tell every peer not to send them back.
				 */
				if (!SbRejoining() &&
					SbSequencerRaiseShown(model->id, model->node_id, entries[i].ts))
					SbNoteHorizonMoved(model->id);
			}
			continue;
		}
		sources[m] = entries[i].source;
		ts[m++] = entries[i].ts;
	}
	if (m == 0)
		return;
	n = m;

	SPI_connect();
	/*
	 * Never this node's own source: its clock is its own writes'.  Rows
	 * already as high are left alone, not locked (clocks only rise).
	 */
	SbPrepareOnce(&raise_clock_plan,
				 "INSERT INTO scuttlebutt.clocks AS c (model_id, source, ts)"
				 " SELECT $1, s, t FROM unnest($2, $3) AS e(s, t) WHERE s <> $4"
				 "  AND NOT EXISTS (SELECT FROM scuttlebutt.clocks o"
				 "   WHERE o.model_id = $1 AND o.source = e.s AND o.ts >= e.t)"
				 " ON CONFLICT (model_id, source) DO UPDATE SET ts = excluded.ts"
				 " WHERE c.ts < excluded.ts",
				 4, argtypes);
	values[0] = Int32GetDatum(model->id);
	values[1] = SbTextArray(sources, n);
	values[2] = SbFloat8Array(ts, n);
	values[3] = CStringGetTextDatum(model->node_id);
	SbExecutePlan(raise_clock_plan, values, NULL, SPI_OK_INSERT);
	SPI_finish();
	/* pollers of this model learn the clock (poll()'s header) */
	SbNoteModelWrite(model->id);
}

/*
 * A row of a history page (its doc, at ts) appended to out as a line;
 * returns the bytes taken
 */
static int64
append_history_row(SbModelRef *model, const char *source, double ts,
				   Datum d, StringInfo out)
{
	text	   *doc = DatumGetTextPP(d);	/* json is text inside */
	int			len = VARSIZE_ANY_EXHDR(doc);

	/*
	 * A row written around the updates_doc_one_line constraint (dropped by a
	 * superuser): sent, it would break every peer's stream
	 */
	if (memchr(VARDATA_ANY(doc), '\n', len) || memchr(VARDATA_ANY(doc), '\r', len))
	{
		ereport(WARNING,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("scuttlebutt: not sending the update of model \"%s\" from source \"%s\" at %.17g: its text is not one line",
						model->name, source, ts)));
		len = -1;				/* nothing taken */
	}
	else
	{
		appendBinaryStringInfo(out, VARDATA_ANY(doc), len);
		appendStringInfoChar(out, '\n');
	}
	/* a detoasted copy */
	if ((Pointer) doc != DatumGetPointer(d))
		pfree(doc);
	return len + 1;
}

/*
 * The page is one range scan of updates_pkey (model_id, source, ts), in
 * the active snapshot: it is read after every commit a live peer is sent,
 * and a planned query's start-up cost more than the scan of a row.  As the
 * extension's owner, as its callers read it (the worker, or poll()'s
 * owner scope): neither privileges nor row-level security apply.
 */
int
SbReadHistoryPage(SbModelRef *model, const char *source, double after,
				  double upto, int limit, int64 max_bytes, StringInfo out,
				  double *last_ts, bool *complete)
{
	/* the scan's memory: out grows in its own */
	MemoryContext cxt = AllocSetContextCreate(CurTransactionContext, "scuttlebutt history page",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	Relation	rel = table_open(SbRelationOid("updates"), AccessShareLock);
	Relation	idx = index_open(SbRelationOid("updates_pkey"), AccessShareLock);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	IndexScanDesc scan;
	ScanKeyData keys[4];
	int			n = 0;
	bool		cut = false;

	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(model->id));
	ScanKeyInit(&keys[1], 2, BTEqualStrategyNumber, F_TEXTEQ, CStringGetTextDatum(source));
	ScanKeyInit(&keys[2], 3, BTGreaterStrategyNumber, F_FLOAT8GT, Float8GetDatum(after));
	ScanKeyInit(&keys[3], 3, BTLessEqualStrategyNumber, F_FLOAT8LE, Float8GetDatum(upto));
	scan = index_beginscan(rel, idx, GetActiveSnapshot(), 4, 0);
	index_rescan(scan, keys, 4, NULL, 0);
	while (n < limit && !cut && index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;

		*last_ts = DatumGetFloat8(slot_getattr(slot, 3, &isnull));
		max_bytes -= append_history_row(model, source, *last_ts,
										 slot_getattr(slot, 5, &isnull), out);
		n++;
		cut = max_bytes <= 0;
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	/* the locks are held to the end of the transaction, as a query's */
	index_close(idx, NoLock);
	table_close(rel, NoLock);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
	*complete = !cut && n < limit;
	return n;
}
