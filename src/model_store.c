/*-------------------------------------------------------------------------
 *
 * model_store.c
 *	  Reading and writing models in their tables (through SPI).
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
 * Merge rule (one place: the WHERE of the updates upsert): for a key, the
 * update with the greater (timestamp, source) wins, comparing sources
 * byte-wise (COLLATE "C"), so every node converges whatever the arrival
 * order.  Events have no row key (NULL never conflicts): all are kept.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "jstext.h"
#include "model_cache.h"
#include "model_store.h"
#include "sequencer.h"
#include "shmem.h"
#include "timestamp.h"

static SPIPlanPtr lookup_plan;
static SPIPlanPtr local_clock_plan;
static SPIPlanPtr set_clock_plan;
static SPIPlanPtr local_write_plan;
static SPIPlanPtr local_write_locking_plan;
static SPIPlanPtr key_ts_plan;
static SPIPlanPtr upsert_many_plan;
static SPIPlanPtr upsert_local_many_plan;
static SPIPlanPtr lock_clocks_plan;
static SPIPlanPtr advance_clocks_plan;
static SPIPlanPtr read_clock_plan;
static SPIPlanPtr history_page_plan;
static SPIPlanPtr raise_clock_plan;

/*
 * SB_LOCK_ORDER: upserts of many keys take their rows in key order, so a
 * set_many() and the worker applying a peer's batch over the same keys
 * wait for each other instead of deadlocking.
 */
#define UPSERT_CONFLICT_CLAUSE \
	" ON CONFLICT (model_id, key) DO UPDATE" \
	" SET source = excluded.source, ts = excluded.ts, doc = excluded.doc" \
	" WHERE (excluded.ts, excluded.source) > (u.ts, u.source)"

/* Prepares a statement once per backend and keeps it. */
SPIPlanPtr
SbPrepareOnce(SPIPlanPtr *cache, const char *sql, int nargs, Oid *argtypes)
{
	if (*cache == NULL)
	{
		/*
		 * Generic plans: these statements are planned once; custom plans
		 * would re-plan them on every call for no better plan.
		 */
		SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, argtypes,
											  CURSOR_OPT_GENERIC_PLAN);

		if (plan == NULL)
			elog(ERROR, "could not prepare \"%s\": %s", sql,
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		*cache = plan;
	}
	return *cache;
}

static void
execute_plan(SPIPlanPtr plan, Datum *values, const char *nulls, int expected)
{
	int			rc = SPI_execute_plan(plan, values, nulls, false, 0);

	if (rc != expected)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
}

static Datum
make_text_array(char **items, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));
	bool	   *nulls = palloc(sizeof(bool) * Max(n, 1));
	int			dims[1] = {n};
	int			lbs[1] = {1};

	for (int i = 0; i < n; i++)
	{
		nulls[i] = items[i] == NULL;
		d[i] = nulls[i] ? (Datum) 0 : CStringGetTextDatum(items[i]);
	}
	return PointerGetDatum(construct_md_array(d, nulls, 1, dims, lbs, TEXTOID,
											  -1, false, TYPALIGN_INT));
}

/* json[] from texts already known to be valid JSON (json is text inside) */
static Datum
make_json_array(char **items, int *lens, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = PointerGetDatum(cstring_to_text_with_len(items[i], lens[i]));
	return PointerGetDatum(construct_array(d, n, JSONOID, -1, false,
										   TYPALIGN_INT));
}

static Datum
make_float8_array(double *items, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = Float8GetDatum(items[i]);
	return PointerGetDatum(construct_array(d, n, FLOAT8OID, sizeof(float8),
										   FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

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

bool
SbModelTryLookup(const char *name, SbModelRef *model)
{
	MemoryContext caller = CurrentMemoryContext;
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	SPIPlanPtr	plan;
	bool		isnull;
	char	   *kind_name;

	if (SbModelCacheGet(name, model))
		return true;

	SPI_connect();
	plan = SbPrepareOnce(&lookup_plan,
						"SELECT r.id, r.kind, n.id"
						" FROM scuttlebutt.registry r, scuttlebutt.node n"
						" WHERE r.name = $1",
						1, argtypes);
	values[0] = CStringGetTextDatum(name);
	execute_plan(plan, values, NULL, SPI_OK_SELECT);
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
	model->name = MemoryContextStrdup(caller, name);
	model->node_id = MemoryContextStrdup(caller,
										 SPI_getvalue(SPI_tuptable->vals[0],
													  SPI_tuptable->tupdesc, 3));
	SPI_finish();
	SbModelCachePut(model);
	return true;
}

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
	execute_plan(local_clock_plan, values, NULL, SPI_OK_INSERT_RETURNING);
	return DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[0],
										SPI_tuptable->tupdesc, 1, &isnull));
}

/* Appends [change,ts,"source"] as JSON.stringify writes it */
void
SbAppendUpdateText(StringInfo buf, const char *change_text, double ts,
				   const char *source)
{
	appendStringInfoChar(buf, '[');
	appendStringInfoString(buf, change_text);
	appendStringInfoChar(buf, ',');
	JsAppendNumber(buf, ts);
	appendStringInfoChar(buf, ',');
	JsAppendString(buf, source, strlen(source));
	appendStringInfoChar(buf, ']');
}

/*
 * A local write, the hot path of set(), emit() and set_value(): store
 * [change, ts, node] under the merge rule, with a timestamp past the key's
 * current one.  Returns ts even when a concurrent newer update of the key
 * wins.
 *
 * With the sequencer, one statement takes the next timestamp from shared
 * memory and stores; only if the key holds a newer value (a peer whose
 * clock runs ahead) do we read it and write again past it.  Without the
 * sequencer, one statement reads the key, advances this node's clock row
 * (locking it until commit) and stores.
 */
double
SbLocalWrite(SbModelRef *model, const char *key, const char *change_text)
{
	Oid			argtypes[5] = {INT4OID, TEXTOID, FLOAT8OID, TEXTOID, TEXTOID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	bool		isnull;
	double		ts;

	SPI_connect();
	values[0] = Int32GetDatum(model->id);
	values[1] = CStringGetTextDatum(model->node_id);
	if (key)
		values[3] = CStringGetTextDatum(key);
	else
		nulls[3] = 'n';
	values[4] = CStringGetTextDatum(change_text);
	if (SbSequencerActive())
	{
		/* $3: the floor, NULL but when written again past a newer value */
		SbPrepareOnce(&local_write_plan,
					 "INSERT INTO scuttlebutt.updates AS u (model_id, source, ts, key, doc)"
					 " SELECT $1, $2, t.ts, $4, scuttlebutt._update_text($5, t.ts, $2)"
					 " FROM (SELECT scuttlebutt._next_local_ts($1, $2, $3) AS ts) t"
					 UPSERT_CONFLICT_CLAUSE
					 " RETURNING u.ts",
					 5, argtypes);
		nulls[2] = 'n';
		execute_plan(local_write_plan, values, nulls, SPI_OK_INSERT_RETURNING);
		if (SPI_processed == 0)
		{
			SbPrepareOnce(&key_ts_plan,
						 "SELECT ts FROM scuttlebutt.updates WHERE model_id = $1 AND key = $2",
						 2, (Oid[]) {INT4OID, TEXTOID});
			execute_plan(key_ts_plan, (Datum[]) {values[0], values[3]}, NULL, SPI_OK_SELECT);
			if (SPI_processed == 1)
			{
				values[2] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
				nulls[2] = ' ';
			}
			execute_plan(local_write_plan, values, nulls, SPI_OK_INSERT_RETURNING);
		}
		/* stored, or lost again to a concurrent write: ours is the last taken */
		ts = SPI_processed == 1
			? DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull))
			: SbSequencerLastTaken();
	}
	else
	{
		SbPrepareOnce(&local_write_locking_plan,
					 "WITH clock AS ("
					 " INSERT INTO scuttlebutt.clocks AS c (model_id, source, ts)"
					 " VALUES ($1, $2, greatest($3, scuttlebutt._ts_after("
					 "   (SELECT u.ts FROM scuttlebutt.updates u"
					 "    WHERE u.model_id = $1 AND u.key = $4))))"
					 " ON CONFLICT (model_id, source) DO UPDATE"
					 " SET ts = greatest(excluded.ts, scuttlebutt._ts_after(c.ts))"
					 " RETURNING c.ts"
					 "), stored AS ("
					 " INSERT INTO scuttlebutt.updates AS u (model_id, source, ts, key, doc)"
					 " SELECT $1, $2, clock.ts, $4, scuttlebutt._update_text($5, clock.ts, $2)"
					 " FROM clock"
					 UPSERT_CONFLICT_CLAUSE
					 ") SELECT ts FROM clock",
					 5, argtypes);
		values[2] = Float8GetDatum(SbNowMillis());
		execute_plan(local_write_locking_plan, values, nulls, SPI_OK_SELECT);
		ts = DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull));
	}
	SPI_finish();
	SbNoteModelWrite(model->id);
	return ts;
}

/* Stores many rows at once; returns how many were stored (RETURNING) */
static void
upsert_rows(SbModelRef *model, int n, char **sources, double *ts, char **keys,
			char **docs, int *doclens)
{
	Oid			argtypes[5] = {INT4OID, TEXTARRAYOID, FLOAT8ARRAYOID,
	TEXTARRAYOID, JSONARRAYOID};
	Datum		values[5];
	SPIPlanPtr	plan;

	plan = SbPrepareOnce(&upsert_many_plan,
						"INSERT INTO scuttlebutt.updates AS u (model_id, source, ts, key, doc)"
						" SELECT $1, t.source, t.ts, t.key, t.doc"
						" FROM unnest($2, $3, $4, $5) AS t(source, ts, key, doc)"
						" ORDER BY t.key" /* see SB_LOCK_ORDER */
						UPSERT_CONFLICT_CLAUSE
						" RETURNING u.source, u.ts",
						5, argtypes);
	values[0] = Int32GetDatum(model->id);
	values[1] = make_text_array(sources, n);
	values[2] = make_float8_array(ts, n);
	values[3] = make_text_array(keys, n);
	values[4] = make_json_array(docs, doclens, n);
	execute_plan(plan, values, NULL, SPI_OK_INSERT_RETURNING);
}

/* A local update's wire text as a json datum, built in buf (reused) */
static Datum
local_update_datum(StringInfo buf, const char *change_text, double ts,
				   const char *source)
{
	resetStringInfo(buf);
	SbAppendUpdateText(buf, change_text, ts, source);
	return PointerGetDatum(cstring_to_text_with_len(buf->data, buf->len));
}

/*
 * Many local updates to distinct keys of a key/value model.  Timestamps
 * follow the clock; a key whose current value is newer (a peer ahead of
 * our clock) loses the upsert, and only then do we read those keys and
 * write them again past their timestamps, so the common case is one
 * statement for the whole batch.
 */
void
SbLocalWriteMany(SbModelRef *model, int n, char **keys, char **change_texts)
{
	Oid			argtypes[5] = {INT4OID, TEXTOID, FLOAT8ARRAYOID, TEXTARRAYOID, JSONARRAYOID};
	Datum		values[5];
	Datum	   *docs;
	double	   *ts;
	double		last;
	StringInfoData buf;

	if (n == 0)
		return;

	docs = palloc(sizeof(Datum) * n);
	ts = palloc(sizeof(double) * n);
	initStringInfo(&buf);

	SPI_connect();
	SbPrepareOnce(&upsert_local_many_plan,
				 "INSERT INTO scuttlebutt.updates AS u (model_id, source, ts, key, doc)"
				 " SELECT $1, $2, t.ts, t.key, t.doc"
				 " FROM unnest($3, $4, $5) AS t(ts, key, doc)"
				 " ORDER BY t.key" /* see SB_LOCK_ORDER */
				 UPSERT_CONFLICT_CLAUSE,
				 5, argtypes);
	last = SbSequencerActive()
		? SbSequencerNext(model->id, model->node_id, NAN, n)
		: advance_local_clock(model);
	for (int i = 0; i < n; i++)
	{
		ts[i] = i == 0 ? last : SbTimestampAfter(ts[i - 1]);
		docs[i] = local_update_datum(&buf, change_texts[i], ts[i], model->node_id);
	}
	last = ts[n - 1];
	values[0] = Int32GetDatum(model->id);
	values[1] = CStringGetTextDatum(model->node_id);
	values[2] = make_float8_array(ts, n);
	values[3] = make_text_array(keys, n);
	values[4] = PointerGetDatum(construct_array(docs, n, JSONOID, -1, false,
												TYPALIGN_INT));
	execute_plan(upsert_local_many_plan, values, NULL, SPI_OK_INSERT);

	if (SPI_processed < (uint64) n)
	{
		/* keys holding a newer value than ours: write them again past it */
		Oid			qtypes[4] = {INT4OID, TEXTOID, FLOAT8ARRAYOID, TEXTARRAYOID};
		Datum		qvalues[4];
		int			m;
		char	  **lost_keys;
		char	  **lost_changes;
		double		newest = last;

		qvalues[0] = values[0];
		qvalues[1] = values[1];
		qvalues[2] = values[2];
		qvalues[3] = values[3];
		if (SPI_execute_with_args("SELECT u.key, u.ts, t.i"
								  " FROM scuttlebutt.updates u"
								  " JOIN unnest($4, $3) WITH ORDINALITY AS t(key, ts, i) ON u.key = t.key"
								  " WHERE u.model_id = $1 AND (u.source <> $2 OR u.ts <> t.ts)",
								  4, qtypes, qvalues, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read scuttlebutt.updates");
		m = SPI_processed;
		lost_keys = palloc(sizeof(char *) * Max(m, 1));
		lost_changes = palloc(sizeof(char *) * Max(m, 1));
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
			docs[i] = local_update_datum(&buf, lost_changes[i], ts[i], model->node_id);
		}
		if (m > 0)
		{
			last = ts[m - 1];
			values[2] = make_float8_array(ts, m);
			values[3] = make_text_array(lost_keys, m);
			values[4] = PointerGetDatum(construct_array(docs, m, JSONOID, -1, false,
														TYPALIGN_INT));
			execute_plan(upsert_local_many_plan, values, NULL, SPI_OK_INSERT);
		}
	}

	/* without the sequencer the clock row is ours until commit: move it */
	if (!SbSequencerActive())
	{
		Oid			ctypes[3] = {INT4OID, TEXTOID, FLOAT8OID};
		Datum		cvalues[3];

		SbPrepareOnce(&set_clock_plan,
					 "UPDATE scuttlebutt.clocks SET ts = $3"
					 " WHERE model_id = $1 AND source = $2",
					 3, ctypes);
		cvalues[0] = values[0];
		cvalues[1] = values[1];
		cvalues[2] = Float8GetDatum(last);
		execute_plan(set_clock_plan, cvalues, NULL, SPI_OK_UPDATE);
	}
	SPI_finish();
	SbNoteModelWrite(model->id);
}

/* ---- applying updates from elsewhere ---- */

static int
cmp_cstring_ptr(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Index of source in the sorted, distinct array; -1 if absent */
static int
find_source(char **sorted, int n, const char *source)
{
	char	  **hit = bsearch(&source, sorted, n, sizeof(char *), cmp_cstring_ptr);

	return hit ? (int) (hit - sorted) : -1;
}

static SbMessage *sort_updates;	/* qsort context for the comparators */

/* by key, then by (ts, source): the last of a key's run is its winner */
static int
cmp_by_key_then_version(const void *a, const void *b)
{
	const SbMessage *ua = &sort_updates[*(const int *) a];
	const SbMessage *ub = &sort_updates[*(const int *) b];
	int			c = strcmp(ua->key, ub->key);

	if (c != 0)
		return c;
	if (ua->ts != ub->ts)
		return ua->ts < ub->ts ? -1 : 1;
	return strcmp(ua->source, ub->source);
}

static int
cmp_by_source_ts(const void *a, const void *b)
{
	const SbMessage *ua = &sort_updates[*(const int *) a];
	const SbMessage *ub = &sort_updates[*(const int *) b];
	int			c = strcmp(ua->source, ub->source);

	if (c != 0)
		return c;
	if (ua->ts != ub->ts)
		return ua->ts < ub->ts ? -1 : 1;
	return 0;
}

/* (ts, source) ordering of versions: the merge rule, for in-batch counting */
static int
cmp_version(double ts_a, const char *src_a, double ts_b, const char *src_b)
{
	if (ts_a != ts_b)
		return ts_a < ts_b ? -1 : 1;
	return strcmp(src_a, src_b);
}

static int
cmp_int(const void *a, const void *b)
{
	return *(const int *) a - *(const int *) b;
}

/*
 * A batch may update one key several times; only the winner is written,
 * but applied one by one each update that beat the value of its moment
 * would have changed the model's state.  Counts those that are not the
 * winner (the winner is counted by the upsert), reading the stored
 * versions of the keys concerned, and marks them in stored[].  accepted[]
 * is sorted by key then version.
 */
static int64
count_superseded_in_batch(SbModelRef *model, SbMessage *updates,
						  int *accepted, int naccepted, bool *stored)
{
	char	  **keys = palloc(sizeof(char *) * naccepted);
	int		   *group_start = palloc(sizeof(int) * naccepted);
	double	   *base_ts = palloc(sizeof(double) * naccepted);
	char	  **base_source = palloc0(sizeof(char *) * naccepted);
	int			ngroups = 0;
	int64		count = 0;
	Oid			argtypes[2] = {INT4OID, TEXTARRAYOID};
	Datum		values[2];

	for (int i = 0; i + 1 < naccepted; i++)
	{
		const char *key = updates[accepted[i]].key;

		if (strcmp(key, updates[accepted[i + 1]].key) == 0 &&
			(ngroups == 0 || strcmp(keys[ngroups - 1], key) != 0))
		{
			keys[ngroups] = (char *) key;
			group_start[ngroups++] = i;
		}
	}

	values[0] = Int32GetDatum(model->id);
	values[1] = make_text_array(keys, ngroups);
	if (SPI_execute_with_args("SELECT key, ts, source FROM scuttlebutt.updates"
							  " WHERE model_id = $1 AND key = ANY ($2)",
							  2, argtypes, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read scuttlebutt.updates");
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		char	   *key = SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1);
		char	  **hit = bsearch(&key, keys, ngroups, sizeof(char *), cmp_cstring_ptr);
		bool		isnull;

		if (hit == NULL)
			continue;
		base_ts[hit - keys] = DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[r],
														   SPI_tuptable->tupdesc,
														   2, &isnull));
		base_source[hit - keys] = SPI_getvalue(SPI_tuptable->vals[r],
											   SPI_tuptable->tupdesc, 3);
	}

	for (int g = 0; g < ngroups; g++)
	{
		int			start = group_start[g];
		int			end = start;
		int		   *members;
		int			nmembers;
		double		ts = base_ts[g];
		const char *source = base_source[g];

		while (end < naccepted && strcmp(updates[accepted[end]].key, keys[g]) == 0)
			end++;
		nmembers = end - start;
		members = palloc(sizeof(int) * nmembers);
		memcpy(members, accepted + start, sizeof(int) * nmembers);
		qsort(members, nmembers, sizeof(int), cmp_int);	/* arrival order */

		for (int m = 0; m < nmembers; m++)
		{
			SbMessage  *u = &updates[members[m]];
			bool		is_winner = members[m] == accepted[end - 1];

			if (source == NULL || cmp_version(u->ts, u->source, ts, source) > 0)
			{
				ts = u->ts;
				source = u->source;
				if (!is_winner)
				{
					count++;
					if (stored)
						stored[members[m]] = true;
				}
			}
		}
	}
	return count;
}

int64
SbApplyUpdates(SbModelRef *model, SbMessage *updates, int n, bool *stored)
{
	char	  **sources;
	int			nsources = 0;
	double	   *clock;
	bool	   *advanced;
	int		   *accepted;
	int			naccepted = 0;
	int		   *winners;
	int			nwinners = 0;
	int64		nstored;
	int64		nsuperseded = 0;

	if (stored)
		memset(stored, 0, sizeof(bool) * n);
	if (n == 0)
		return 0;

	/* the distinct sources, sorted: also the order we lock their clocks in */
	sources = palloc(sizeof(char *) * n);
	for (int i = 0; i < n; i++)
		sources[i] = updates[i].source;
	qsort(sources, n, sizeof(char *), cmp_cstring_ptr);
	for (int i = 0; i < n; i++)
		if (nsources == 0 || strcmp(sources[nsources - 1], sources[i]) != 0)
			sources[nsources++] = sources[i];
	clock = palloc(sizeof(double) * nsources);
	advanced = palloc0(sizeof(bool) * nsources);

	SPI_connect();

	/* lock the sources' clock rows (creating missing ones) and read them */
	{
		Oid			argtypes[2] = {INT4OID, TEXTARRAYOID};
		Datum		values[2];

		SbPrepareOnce(&lock_clocks_plan,
					 "INSERT INTO scuttlebutt.clocks AS c (model_id, source, ts)"
					 " SELECT $1, s, '-infinity' FROM unnest($2) AS s"
					 " ON CONFLICT (model_id, source) DO UPDATE SET ts = c.ts"
					 " RETURNING c.source, c.ts",
					 2, argtypes);
		values[0] = Int32GetDatum(model->id);
		values[1] = make_text_array(sources, nsources);
		execute_plan(lock_clocks_plan, values, NULL, SPI_OK_INSERT_RETURNING);
		for (uint64 r = 0; r < SPI_processed; r++)
		{
			bool		isnull;
			char	   *src = SPI_getvalue(SPI_tuptable->vals[r],
										   SPI_tuptable->tupdesc, 1);
			int			idx = find_source(sources, nsources, src);

			Assert(idx >= 0);
			clock[idx] = DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[r],
													  SPI_tuptable->tupdesc,
													  2, &isnull));
		}
	}

	/* in arrival order: an update at or below its source's clock is old */
	accepted = palloc(sizeof(int) * n);
	for (int i = 0; i < n; i++)
	{
		int			s = find_source(sources, nsources, updates[i].source);

		if (updates[i].ts > clock[s])
		{
			clock[s] = updates[i].ts;
			advanced[s] = true;
			accepted[naccepted++] = i;
		}
	}

	/*
	 * Our own updates coming back past our clock (say, a peer kept what a
	 * crash lost here): later local timestamps must pass them, and readers
	 * must wait for this transaction as for a local write.
	 */
	if (SbSequencerActive())
	{
		int			own = find_source(sources, nsources, model->node_id);

		if (own >= 0 && advanced[own])
		{
			double		first = INFINITY;

			for (int i = 0; i < naccepted; i++)
				if (strcmp(updates[accepted[i]].source, model->node_id) == 0)
					first = Min(first, updates[accepted[i]].ts);
			SbSequencerAdopt(model->id, model->node_id, first, clock[own]);
		}
	}

	/* of several updates to one key, only the winner can be stored */
	sort_updates = updates;
	winners = palloc(sizeof(int) * Max(naccepted, 1));
	if (model->kind == SB_KIND_EVENTS)
	{
		memcpy(winners, accepted, sizeof(int) * naccepted);
		nwinners = naccepted;
	}
	else
	{
		qsort(accepted, naccepted, sizeof(int), cmp_by_key_then_version);
		for (int i = 0; i < naccepted; i++)
			if (i == naccepted - 1 ||
				strcmp(updates[accepted[i]].key, updates[accepted[i + 1]].key) != 0)
				winners[nwinners++] = accepted[i];
		/* keys updated more than once: count as if applied one by one */
		if (nwinners < naccepted)
			nsuperseded = count_superseded_in_batch(model, updates, accepted,
													naccepted, stored);
	}

	nstored = 0;
	if (nwinners > 0)
	{
		char	  **w_sources = palloc(sizeof(char *) * nwinners);
		double	   *w_ts = palloc(sizeof(double) * nwinners);
		char	  **w_keys = palloc(sizeof(char *) * nwinners);
		char	  **w_docs = palloc(sizeof(char *) * nwinners);
		int		   *w_lens = palloc(sizeof(int) * nwinners);

		qsort(winners, nwinners, sizeof(int), cmp_by_source_ts);
		for (int i = 0; i < nwinners; i++)
		{
			SbMessage  *u = &updates[winners[i]];

			w_sources[i] = u->source;
			w_ts[i] = u->ts;
			w_keys[i] = u->key;
			w_docs[i] = (char *) u->text;
			w_lens[i] = u->len;
		}
		upsert_rows(model, nwinners, w_sources, w_ts, w_keys, w_docs, w_lens);
		nstored = SPI_processed;

		/* mark which were stored: RETURNING gives (source, ts) */
		for (uint64 r = 0; stored && r < SPI_processed; r++)
		{
			bool		isnull;
			char	   *source = SPI_getvalue(SPI_tuptable->vals[r],
											  SPI_tuptable->tupdesc, 1);
			double		ts = DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[r],
														  SPI_tuptable->tupdesc,
														  2, &isnull));
			int			lo = 0;
			int			hi = nwinners - 1;

			while (lo <= hi)
			{
				int			mid = (lo + hi) / 2;
				SbMessage  *u = &updates[winners[mid]];
				int			c = strcmp(u->source, source);

				if (c == 0)
					c = u->ts < ts ? -1 : (u->ts > ts ? 1 : 0);
				if (c == 0)
				{
					stored[winners[mid]] = true;
					break;
				}
				if (c < 0)
					lo = mid + 1;
				else
					hi = mid - 1;
			}
		}
	}

	/* move the clocks of the sources that advanced */
	{
		char	  **a_sources = palloc(sizeof(char *) * nsources);
		double	   *a_ts = palloc(sizeof(double) * nsources);
		int			na = 0;
		Oid			argtypes[3] = {INT4OID, TEXTARRAYOID, FLOAT8ARRAYOID};
		Datum		values[3];

		for (int s = 0; s < nsources; s++)
			if (advanced[s])
			{
				a_sources[na] = sources[s];
				a_ts[na++] = clock[s];
			}
		if (na > 0)
		{
			SbPrepareOnce(&advance_clocks_plan,
						 "UPDATE scuttlebutt.clocks AS c SET ts = v.ts"
						 " FROM unnest($2, $3) AS v(source, ts)"
						 " WHERE c.model_id = $1 AND c.source = v.source"
						 "   AND c.ts < v.ts",
						 3, argtypes);
			values[0] = Int32GetDatum(model->id);
			values[1] = make_text_array(a_sources, na);
			values[2] = make_float8_array(a_ts, na);
			execute_plan(advance_clocks_plan, values, NULL, SPI_OK_UPDATE);
		}
	}

	SPI_finish();
	if (nstored > 0)
		SbNoteModelWrite(model->id);
	return nstored + nsuperseded;
}

PG_FUNCTION_INFO_V1(scuttlebutt_update_text);

/* scuttlebutt._update_text(change, ts, source): for SbLocalWrite's statement */
Datum
scuttlebutt_update_text(PG_FUNCTION_ARGS)
{
	StringInfoData buf;

	initStringInfo(&buf);
	return local_update_datum(&buf, text_to_cstring(PG_GETARG_TEXT_PP(0)),
							  PG_GETARG_FLOAT8(1),
							  text_to_cstring(PG_GETARG_TEXT_PP(2)));
}

/* ---- reading, for the replication worker ---- */

int
SbReadClock(SbModelRef *model, SbClockEntry **entries, bool in_caller_snapshot)
{
	MemoryContext caller = CurrentMemoryContext;
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1];
	int			n;

	SPI_connect();
	SbPrepareOnce(&read_clock_plan,
				 "SELECT source, scuttlebutt._visible_ts(model_id, source, ts)"
				 " FROM scuttlebutt.clocks"
				 " WHERE model_id = $1 ORDER BY source",
				 1, argtypes);
	values[0] = Int32GetDatum(model->id);
	if (SPI_execute_plan(read_clock_plan, values, NULL, in_caller_snapshot, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read scuttlebutt.clocks");
	n = SPI_processed;
	*entries = MemoryContextAlloc(caller, sizeof(SbClockEntry) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		bool		isnull;

		(*entries)[i].source = MemoryContextStrdup(caller,
												   SPI_getvalue(SPI_tuptable->vals[i],
																SPI_tuptable->tupdesc, 1));
		(*entries)[i].ts = DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[i],
														SPI_tuptable->tupdesc,
														2, &isnull));
	}
	SPI_finish();
	return n;
}

void
SbRaiseClock(SbModelRef *model, SbClockEntry *entries, int n)
{
	Oid			argtypes[4] = {INT4OID, TEXTARRAYOID, FLOAT8ARRAYOID, TEXTOID};
	Datum		values[4];
	char	  **sources = palloc(sizeof(char *) * Max(n, 1));
	double	   *ts = palloc(sizeof(double) * Max(n, 1));

	if (n == 0)
		return;
	for (int i = 0; i < n; i++)
	{
		sources[i] = entries[i].source;
		ts[i] = entries[i].ts;
	}
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
	values[1] = make_text_array(sources, n);
	values[2] = make_float8_array(ts, n);
	values[3] = CStringGetTextDatum(model->node_id);
	execute_plan(raise_clock_plan, values, NULL, SPI_OK_INSERT);
	SPI_finish();
	/* pollers of this model learn the clock (poll()'s header) */
	SbNoteModelWrite(model->id);
}

int
SbReadHistoryPage(SbModelRef *model, const char *source, double after,
				  int limit, StringInfo out, double *last_ts)
{
	Oid			argtypes[4] = {INT4OID, TEXTOID, FLOAT8OID, INT4OID};
	Datum		values[4];
	int			n;

	SPI_connect();
	SbPrepareOnce(&history_page_plan,
				 "SELECT u.ts, u.doc::text FROM scuttlebutt.updates u"
				 " WHERE u.model_id = $1 AND u.source = $2 AND u.ts > $3"
				 "   AND u.ts <= scuttlebutt._visible_ts($1, $2, 'Infinity')"
				 " ORDER BY u.ts LIMIT $4",
				 4, argtypes);
	values[0] = Int32GetDatum(model->id);
	values[1] = CStringGetTextDatum(source);
	values[2] = Float8GetDatum(after);
	values[3] = Int32GetDatum(limit);
	/* in the caller's snapshot: the clock read with it bounds the page */
	if (SPI_execute_plan(history_page_plan, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the history of a scuttlebutt model");
	n = SPI_processed;
	for (int i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		bool		isnull;
		text	   *doc;

		*last_ts = DatumGetFloat8(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull));
		doc = DatumGetTextPP(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull));
		appendBinaryStringInfo(out, VARDATA_ANY(doc), VARSIZE_ANY_EXHDR(doc));
		appendStringInfoChar(out, '\n');
	}
	SPI_finish();
	return n;
}
