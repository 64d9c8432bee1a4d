/*-------------------------------------------------------------------------
 *
 * apply.c
 *	  Applying batches of updates from elsewhere (peers, import(),
 *	  apply_update()) to a model's tables.
 *
 * A batch is applied in a few set-based statements whatever its size (a
 * batch of one source locks and advances its clock with plain ones: an
 * unnest, or its join, costs more to set up than the row to write).  A
 * lone update its clock takes, as a live pull brings them, is applied
 * without a plan (lone_apply.c), or else in one statement
 * (apply_lone_update):
 *
 *	1. lock the clock rows of the batch's sources (creating missing ones),
 *	   in source order, and read them: per (model, source) commit order is
 *	   then timestamp order (see store.c);
 *	2. in arrival order, accept the updates past their source's clock
 *	   (merge.h's clock rule) and advance the clock in memory;
 *	3. of several accepted updates to one key keep only the winner
 *	   (merge.h's version order), counting the others that would have
 *	   changed the state had they been applied one by one;
 *	4. store the winners under the merge rule, in key order (SB_LOCK_ORDER,
 *	   as set_many does): a batch of SB_BULK_MIN_ROWS or more by
 *	   multi-insert (bulk_store), else by upsert (SB_MERGE_SQL_UPSERT);
 *	5. write the clocks that advanced.
 *
 * Our own source coming back past our clock (a peer kept what a crash
 * lost here) is adopted by the sequencer, so that later local timestamps
 * pass it and readers wait for this transaction as for a local write.
 *
 * No update more than scuttlebutt.max_clock_skew ahead of the wall clock
 * is applied, whatever its source (ours included: that is forgery or a
 * broken clock), so no clock, and not the sequencer, can be moved past
 * that bound from elsewhere.  Replication defers such updates before they
 * get here (session.c); SQL callers get an ERROR.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/float.h"

#include "apply.h"
#include "bulk_insert.h"
#include "guc.h"
#include "lone_apply.h"
#include "merge.h"
#include "sequencer.h"
#include "shmem.h"
#include "spi_util.h"
#include "timestamp.h"

static SPIPlanPtr lock_clocks_plan;
static SPIPlanPtr lock_held_clocks_plan;
static SPIPlanPtr lock_held_clock_plan;
static SPIPlanPtr advance_clocks_plan;
static SPIPlanPtr advance_clock_plan;
static SPIPlanPtr own_latest_plan;
static SPIPlanPtr held_plan;

/* Batches of at least so many winners are stored by multi-insert (bulk_insert.c) */
#define SB_BULK_MIN_ROWS 1000
/* After a model's batch found a key held, its next so many skip the bulk insert */
#define SB_BULK_BACKOFF 64
/* Models whose recent batches found keys held (a few: the worker's peers) */
#define SB_BULK_BACKOFF_SLOTS 8

typedef struct BulkBackoff
{
	int32		model_id;		/* 0: free */
	int			batches_left;
} BulkBackoff;

static BulkBackoff bulk_backoff[SB_BULK_BACKOFF_SLOTS];

/* One batch being applied */
typedef struct ApplyBatch
{
	SbModelRef *model;
	SbMessage  *updates;
	int			n;
	bool	   *stored;			/* per update, or NULL */
	char	  **sources;		/* distinct, sorted: the clock lock order */
	int			nsources;
	double	   *clock;			/* per source */
	bool	   *advanced;		/* per source */
	bool	   *fresh;			/* per source: no clock before this batch */
	int		   *accepted;		/* indexes of updates past their clock */
	int			naccepted;
	int		   *winners;		/* indexes of the updates to store */
	int			nwinners;
} ApplyBatch;

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

/* by key, then by version: the last of a key's run is its winner */
static int
cmp_by_key_then_version(const void *a, const void *b)
{
	const SbMessage *ua = &sort_updates[*(const int *) a];
	const SbMessage *ub = &sort_updates[*(const int *) b];
	int			c = strcmp(ua->key, ub->key);

	if (c != 0)
		return c;
	return SbVersionCmp(ua->ts, ua->source, ub->ts, ub->source);
}

/* by source, then ts: the order of the upsert's RETURNING lookup */
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

static int
cmp_int(const void *a, const void *b)
{
	return *(const int *) a - *(const int *) b;
}

/* Step 0: the batch's distinct sources, sorted */
static void
collect_sources(ApplyBatch *b)
{
	b->sources = palloc(sizeof(char *) * b->n);
	for (int i = 0; i < b->n; i++)
		b->sources[i] = b->updates[i].source;
	qsort(b->sources, b->n, sizeof(char *), cmp_cstring_ptr);
	b->nsources = 0;
	for (int i = 0; i < b->n; i++)
		if (b->nsources == 0 ||
			strcmp(b->sources[b->nsources - 1], b->sources[i]) != 0)
			b->sources[b->nsources++] = b->sources[i];
	b->clock = palloc(sizeof(double) * b->nsources);
	b->advanced = palloc0(sizeof(bool) * b->nsources);
	b->fresh = palloc0(sizeof(bool) * b->nsources);
}

/*
 * This node's own source: its clock row is the sequencer's reservation,
 * ahead of the timestamps handed out.  Updates of ours from elsewhere
 * between the latest we hold and the reservation are ones we lost (this
 * server was restored from a backup, the reservation with it): they are
 * taken, so the clock they are judged by is the latest update we hold.
 * (Local timestamps handed out since the start are past the reservation.)
 */
static void
own_source_clock(ApplyBatch *b)
{
	int			own;
	Oid			argtypes[2] = {INT4OID, TEXTOID};
	Datum		values[2];
	bool		isnull;
	Datum		d;

	if (!SbSequencerActive())
		return;
	own = find_source(b->sources, b->nsources, b->model->node_id);
	if (own < 0)
		return;
	SbPrepareOnce(&own_latest_plan,
				  "SELECT max(ts) FROM scuttlebutt.updates"
				  " WHERE model_id = $1 AND source = $2",
				  2, argtypes);
	values[0] = Int32GetDatum(b->model->id);
	values[1] = CStringGetTextDatum(b->model->node_id);
	SbExecutePlan(own_latest_plan, values, NULL, SPI_OK_SELECT);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	b->clock[own] = Min(b->clock[own], isnull ? -INFINITY : DatumGetFloat8(d));
}

/*
 * Step 1: locks the sources' clock rows (creating missing ones), reads
 * them.  Rows that exist are locked without a new version of each (the
 * advance writes one); only a batch with a new source inserts.
 */
static void
lock_clocks(ApplyBatch *b)
{
	Oid			argtypes[2] = {INT4OID, TEXTARRAYOID};
	Oid			one_argtypes[2] = {INT4OID, TEXTOID};
	bool		one = b->nsources == 1;
	Datum		values[2];

	values[0] = Int32GetDatum(b->model->id);
	values[1] = one ? CStringGetTextDatum(b->sources[0]) :
		SbTextArray(b->sources, b->nsources);
	SbExecutePlan(one ?
				  SbPrepareOnce(&lock_held_clock_plan,
								"SELECT c.source, c.ts FROM scuttlebutt.clocks c"
								" WHERE c.model_id = $1 AND c.source = $2 FOR UPDATE",
								2, one_argtypes) :
				  SbPrepareOnce(&lock_held_clocks_plan,
								"SELECT c.source, c.ts FROM scuttlebutt.clocks c"
								" WHERE c.model_id = $1 AND c.source = ANY ($2)"
								" ORDER BY c.source FOR UPDATE",
								2, argtypes),
				  values, NULL, SPI_OK_SELECT);
	if (SPI_processed < (uint64) b->nsources)
	{
		values[1] = SbTextArray(b->sources, b->nsources);
		SbPrepareOnce(&lock_clocks_plan,
					  "INSERT INTO scuttlebutt.clocks AS c (model_id, source, ts)"
					  " SELECT $1, s, '-infinity' FROM unnest($2) AS s"
					  " ON CONFLICT (model_id, source) DO UPDATE SET ts = c.ts"
					  " RETURNING c.source, c.ts",
					  2, argtypes);
		SbExecutePlan(lock_clocks_plan, values, NULL, SPI_OK_INSERT_RETURNING);
	}
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		bool		isnull;
		char	   *src = SPI_getvalue(SPI_tuptable->vals[r],
									   SPI_tuptable->tupdesc, 1);
		int			idx = find_source(b->sources, b->nsources, src);

		Assert(idx >= 0);
		b->clock[idx] = DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[r],
													 SPI_tuptable->tupdesc,
													 2, &isnull));
		b->fresh[idx] = b->clock[idx] == -INFINITY;
	}
	own_source_clock(b);
}

/* Step 2: in arrival order, an update at or below its source's clock is old */
static void
accept_new(ApplyBatch *b)
{
	b->accepted = palloc(sizeof(int) * b->n);
	b->naccepted = 0;
	for (int i = 0; i < b->n; i++)
	{
		int			s = find_source(b->sources, b->nsources, b->updates[i].source);

		if (SbClockAccepts(b->clock[s], b->updates[i].ts))
		{
			b->clock[s] = b->updates[i].ts;
			b->advanced[s] = true;
			b->accepted[b->naccepted++] = i;
		}
	}
}

/*
 * Of the accepted updates of sources this model had no clock for (a new
 * source, or one whose clock row a pg_dump left out: the former node's
 * own, see the clocks table's dump filter), drops those held already: a
 * restored database holds updates of sources its peers then send again,
 * and an event's (source, ts) must not be stored twice.
 */
static void
drop_held(ApplyBatch *b)
{
	char	  **sources = palloc(sizeof(char *) * Max(b->naccepted, 1));
	double	   *ts = palloc(sizeof(double) * Max(b->naccepted, 1));
	int		   *at = palloc(sizeof(int) * Max(b->naccepted, 1));
	bool	   *held = palloc0(sizeof(bool) * Max(b->naccepted, 1));
	int			m = 0;
	int			kept = 0;
	Oid			argtypes[3] = {INT4OID, TEXTARRAYOID, FLOAT8ARRAYOID};
	Datum		values[3];

	for (int i = 0; i < b->naccepted; i++)
	{
		SbMessage  *u = &b->updates[b->accepted[i]];

		if (b->fresh[find_source(b->sources, b->nsources, u->source)])
		{
			sources[m] = u->source;
			ts[m] = u->ts;
			at[m++] = i;
		}
	}
	if (m == 0)
		return;
	/* the positions (1-based) in the arrays of those held */
	SbPrepareOnce(&held_plan,
				  "SELECT t.i::integer FROM unnest($2, $3) WITH ORDINALITY AS t(source, ts, i)"
				  " WHERE EXISTS (SELECT FROM scuttlebutt.updates u"
				  "   WHERE u.model_id = $1 AND u.source = t.source AND u.ts = t.ts)",
				  3, argtypes);
	values[0] = Int32GetDatum(b->model->id);
	values[1] = SbTextArray(sources, m);
	values[2] = SbFloat8Array(ts, m);
	SbExecutePlan(held_plan, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return;
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		bool		isnull;
		int			k = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[r],
													SPI_tuptable->tupdesc, 1, &isnull));

		held[at[k - 1]] = true;
	}
	for (int i = 0; i < b->naccepted; i++)
		if (!held[i])
			b->accepted[kept++] = b->accepted[i];
	b->naccepted = kept;
}

/*
 * Our own updates coming back past our clock (say, a peer kept what a
 * crash lost here): later local timestamps must pass them, and readers
 * must wait for this transaction as for a local write.
 */
static void
adopt_own_updates(ApplyBatch *b)
{
	int			own;
	double		first = INFINITY;

	if (!SbSequencerActive())
		return;
	own = find_source(b->sources, b->nsources, b->model->node_id);
	if (own < 0 || !b->advanced[own])
		return;
	for (int i = 0; i < b->naccepted; i++)
		if (strcmp(b->updates[b->accepted[i]].source, b->model->node_id) == 0)
			first = Min(first, b->updates[b->accepted[i]].ts);
	SbSequencerAdopt(b->model->id, b->model->node_id, first, b->clock[own]);
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
	values[1] = SbTextArray(keys, ngroups);
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

			if (SbMerge(model->kind, ts, source, u->ts, u->source) != SB_MERGE_LOSE)
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

/*
 * Step 3: of several updates to one key, only the winner can be stored
 * (every event is); returns how many others count as applied.
 */
static int64
pick_winners(ApplyBatch *b)
{
	b->winners = palloc(sizeof(int) * Max(b->naccepted, 1));
	b->nwinners = 0;
	if (SbKindKeeps(b->model->kind) == SB_KEEP_ALL)
	{
		memcpy(b->winners, b->accepted, sizeof(int) * b->naccepted);
		b->nwinners = b->naccepted;
		return 0;
	}
	sort_updates = b->updates;
	qsort(b->accepted, b->naccepted, sizeof(int), cmp_by_key_then_version);
	for (int i = 0; i < b->naccepted; i++)
		if (i == b->naccepted - 1 ||
			strcmp(b->updates[b->accepted[i]].key,
				   b->updates[b->accepted[i + 1]].key) != 0)
			b->winners[b->nwinners++] = b->accepted[i];
	/* keys updated more than once: count as if applied one by one */
	if (b->nwinners < b->naccepted)
		return count_superseded_in_batch(b->model, b->updates, b->accepted,
										 b->naccepted, b->stored);
	return 0;
}

/*
 * Stores many rows at once under the merge rule; with returning, the
 * statement returns the stored rows' (source, ts) (a caller that needs
 * to know which: apply_update, not the worker, which counts them)
 */
static void
upsert_rows(SbModelRef *model, int n, char **sources, double *ts, char **keys,
			char **docs, int *doclens, bool returning)
{
#define UPSERT_MANY_SQL \
	"INSERT INTO scuttlebutt.updates AS u (model_id, source, ts, key, doc)" \
	" SELECT $1, t.source, t.ts, t.key, t.doc" \
	" FROM unnest($2, $3, $4, $5) AS t(source, ts, key, doc)" \
	" ORDER BY t.key COLLATE \"C\""	/* see SB_LOCK_ORDER in store.c */ \
	SB_MERGE_SQL_UPSERT
	static SPIPlanPtr returning_plan;
	static SPIPlanPtr counting_plan;
	Oid			argtypes[5] = {INT4OID, TEXTARRAYOID, FLOAT8ARRAYOID,
	TEXTARRAYOID, JSONARRAYOID};
	Datum		values[5];
	SPIPlanPtr	plan;

	if (returning)
		plan = SbPrepareOnce(&returning_plan,
							 UPSERT_MANY_SQL " RETURNING u.source, u.ts",
							 5, argtypes);
	else
		plan = SbPrepareOnce(&counting_plan, UPSERT_MANY_SQL, 5, argtypes);
#undef UPSERT_MANY_SQL
	values[0] = Int32GetDatum(model->id);
	values[1] = SbTextArray(sources, n);
	values[2] = SbFloat8Array(ts, n);
	values[3] = SbTextArray(keys, n);
	values[4] = SbJsonArray(docs, doclens, n);
	SbExecutePlan(plan, values, NULL,
				  returning ? SPI_OK_INSERT_RETURNING : SPI_OK_INSERT);
}

/* Marks in stored[] the winners the upsert returned (source, ts) */
static void
mark_stored(ApplyBatch *b)
{
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		bool		isnull;
		char	   *source = SPI_getvalue(SPI_tuptable->vals[r],
										  SPI_tuptable->tupdesc, 1);
		double		ts = DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[r],
													  SPI_tuptable->tupdesc,
													  2, &isnull));
		int			lo = 0;
		int			hi = b->nwinners - 1;

		/* winners[] is sorted by (source, ts): cmp_by_source_ts */
		while (lo <= hi)
		{
			int			mid = (lo + hi) / 2;
			SbMessage  *u = &b->updates[b->winners[mid]];
			int			c = strcmp(u->source, source);

			if (c == 0)
				c = u->ts < ts ? -1 : (u->ts > ts ? 1 : 0);
			if (c == 0)
			{
				b->stored[b->winners[mid]] = true;
				break;
			}
			if (c < 0)
				lo = mid + 1;
			else
				hi = mid - 1;
		}
	}
}

/* The backoff slot of a model, or NULL */
static BulkBackoff *
backoff_slot(int32 model_id)
{
	for (int i = 0; i < SB_BULK_BACKOFF_SLOTS; i++)
		if (bulk_backoff[i].model_id == model_id)
			return &bulk_backoff[i];
	return NULL;
}

/*
 * Whether a large batch should try a bulk insert: unless the model's
 * batches found keys held lately (an initial sync into an empty model
 * never does; a live sync over held keys always would).
 */
static bool
bulk_worth_trying(int32 model_id)
{
	BulkBackoff *slot = backoff_slot(model_id);

	if (slot == NULL)
		return true;
	if (--slot->batches_left > 0)
		return false;
	slot->model_id = 0;
	return true;
}

static void
bulk_back_off(int32 model_id)
{
	BulkBackoff *slot = backoff_slot(model_id);

	if (slot == NULL)
		slot = &bulk_backoff[(uint32) model_id % SB_BULK_BACKOFF_SLOTS];
	slot->model_id = model_id;
	slot->batches_left = SB_BULK_BACKOFF;
}

/*
 * The winners, in key order (pick_winners' order, the merge path's lock
 * order), stored by the table's multi-insert (bulk_insert.c): a bulk
 * insert, unless the model's batches found keys held lately; else, where
 * the caller needs no per-update outcome, each replacing its key's held
 * row if newer.  Sets *nstored; false, with nothing stored, where the
 * upsert must store them.
 */
static bool
bulk_store(ApplyBatch *b, int64 *nstored)
{
	bool		try_insert = bulk_worth_trying(b->model->id);
	/* a replace tells no update's outcome */
	bool		may_replace = !b->stored && b->model->kind == SB_KIND_MODEL;
	SbBulkRow  *rows;
	int			replaced;

	if (!try_insert && !may_replace)
		return false;
	rows = palloc(sizeof(SbBulkRow) * b->nwinners);
	for (int i = 0; i < b->nwinners; i++)
	{
		SbMessage  *u = &b->updates[b->winners[i]];

		rows[i].source = u->source;
		rows[i].ts = u->ts;
		rows[i].key = u->key;
		rows[i].doc = u->text;
		rows[i].doclen = u->len;
	}
	if (try_insert)
	{
		switch (SbBulkInsertUpdates(b->model->id, rows, b->nwinners))
		{
			case SB_BULK_STORED:
				elog(DEBUG1, "scuttlebutt: %d updates of model \"%s\" stored by bulk insert",
					 b->nwinners, b->model->name);
				if (b->stored)
					for (int i = 0; i < b->nwinners; i++)
						b->stored[b->winners[i]] = true;
				*nstored = b->nwinners;
				return true;
			case SB_BULK_KEY_HELD:
				elog(DEBUG1, "scuttlebutt: model \"%s\" held a key of a batch of %d updates",
					 b->model->name, b->nwinners);
				bulk_back_off(b->model->id);
				break;
			case SB_BULK_UNSUITED:
				elog(DEBUG1, "scuttlebutt: scuttlebutt.updates has triggers or constraints of its own, or the transaction is read-only: %d updates of model \"%s\" stored by merging",
					 b->nwinners, b->model->name);
				bulk_back_off(b->model->id);
				return false;
		}
	}
	if (!may_replace ||
		SbBulkReplaceUpdates(b->model->id, rows, b->nwinners, &replaced) != SB_BULK_STORED)
		return false;
	elog(DEBUG1, "scuttlebutt: %d of %d updates of model \"%s\" stored by bulk replace",
		 replaced, b->nwinners, b->model->name);
	*nstored = replaced;
	return true;
}

/* Step 4: stores the winners; returns how many were stored */
static int64
store_winners(ApplyBatch *b)
{
	int			nw = b->nwinners;
	char	  **w_sources;
	double	   *w_ts;
	char	  **w_keys;
	char	  **w_docs;
	int		   *w_lens;
	int64		nstored;

	if (nw == 0)
		return 0;
	if (nw >= SB_BULK_MIN_ROWS && bulk_store(b, &nstored))
		return nstored;

	w_sources = palloc(sizeof(char *) * nw);
	w_ts = palloc(sizeof(double) * nw);
	w_keys = palloc(sizeof(char *) * nw);
	w_docs = palloc(sizeof(char *) * nw);
	w_lens = palloc(sizeof(int) * nw);

	sort_updates = b->updates;
	qsort(b->winners, nw, sizeof(int), cmp_by_source_ts);
	for (int i = 0; i < nw; i++)
	{
		SbMessage  *u = &b->updates[b->winners[i]];

		w_sources[i] = u->source;
		w_ts[i] = u->ts;
		w_keys[i] = u->key;
		w_docs[i] = (char *) u->text;
		w_lens[i] = u->len;
	}
	upsert_rows(b->model, nw, w_sources, w_ts, w_keys, w_docs, w_lens,
				b->stored != NULL);
	if (b->stored)
		mark_stored(b);
	return SPI_processed;
}

/* Step 5: moves the clocks of the sources that advanced */
static void
advance_clocks(ApplyBatch *b)
{
	char	  **a_sources = palloc(sizeof(char *) * b->nsources);
	double	   *a_ts = palloc(sizeof(double) * b->nsources);
	int			na = 0;
	Oid			argtypes[3] = {INT4OID, TEXTARRAYOID, FLOAT8ARRAYOID};
	Oid			one_argtypes[3] = {INT4OID, TEXTOID, FLOAT8OID};
	Datum		values[3];

	for (int s = 0; s < b->nsources; s++)
		if (b->advanced[s])
		{
			a_sources[na] = b->sources[s];
			a_ts[na++] = b->clock[s];
		}
	if (na == 0)
		return;
	values[0] = Int32GetDatum(b->model->id);
	values[1] = na == 1 ? CStringGetTextDatum(a_sources[0]) : SbTextArray(a_sources, na);
	values[2] = na == 1 ? Float8GetDatum(a_ts[0]) : SbFloat8Array(a_ts, na);
	SbExecutePlan(na == 1 ?
				  SbPrepareOnce(&advance_clock_plan,
								"UPDATE scuttlebutt.clocks AS c SET ts = $3"
								" WHERE c.model_id = $1 AND c.source = $2 AND c.ts < $3",
								3, one_argtypes) :
				  SbPrepareOnce(&advance_clocks_plan,
								"UPDATE scuttlebutt.clocks AS c SET ts = v.ts"
								" FROM unnest($2, $3) AS v(source, ts)"
								" WHERE c.model_id = $1 AND c.source = v.source"
								"   AND c.ts < v.ts",
								3, argtypes),
				  values, NULL, SPI_OK_UPDATE);
}

/*
 * A lone update of another node's source the model has a clock for, as a
 * live pull brings them, where SbApplyLoneDirect (lone_apply.c, the same
 * steps without a plan) does not fit: one statement advances the clock
 * (which locks it, as step 1 does) and stores the update under the merge
 * rule if the clock took it.  Returns whether it was stored, or -1 when the clock did
 * not take it (no row, or one never advanced, or at or past the update):
 * the batch's steps decide then, and nothing was written.
 */
static int
apply_lone_update(SbModelRef *model, SbMessage *u)
{
	static SPIPlanPtr plan;
	Oid			argtypes[5] = {INT4OID, TEXTOID, FLOAT8OID, TEXTOID, JSONOID};
	Datum		values[5];
	char		nulls[5] = "     ";
	bool		isnull;

	SbPrepareOnce(&plan,
				  "WITH c AS (UPDATE scuttlebutt.clocks SET ts = $3"
				  "   WHERE model_id = $1 AND source = $2"
				  "     AND ts < $3 AND ts > '-infinity' RETURNING 1),"
				  " i AS (INSERT INTO scuttlebutt.updates AS u (model_id, source, ts, key, doc)"
				  "   SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT FROM c)"
				  SB_MERGE_SQL_UPSERT " RETURNING 1)"
				  " SELECT EXISTS (SELECT FROM c), EXISTS (SELECT FROM i)",
				  5, argtypes);
	values[0] = Int32GetDatum(model->id);
	values[1] = CStringGetTextDatum(u->source);
	values[2] = Float8GetDatum(u->ts);
	values[3] = u->key ? CStringGetTextDatum(u->key) : (Datum) 0;
	nulls[3] = u->key ? ' ' : 'n';
	values[4] = PointerGetDatum(cstring_to_text_with_len(u->text, u->len));
	SbExecutePlan(plan, values, nulls, SPI_OK_SELECT);
	if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
		return SB_LONE_NOT_TAKEN;
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
}

bool
SbCheckClockSkew(const SbMessage *msg, double bound, SbMessageError *err)
{
	if (msg->ts <= bound)
		return true;
	err->sqlerrcode = ERRCODE_DATETIME_VALUE_OUT_OF_RANGE;
	err->message = psprintf("update timestamp %s is more than scuttlebutt.max_clock_skew (%d ms) ahead of this server's clock",
							float8out_internal(msg->ts), sb_max_clock_skew_ms);
	return false;
}

/*
 * Applies a batch (see the banner); returns how many updates changed the
 * model's state, as if applied one by one, and marks them in stored[].
 */
int64
SbApplyUpdates(SbModelRef *model, SbMessage *updates, int n, bool *stored)
{
	ApplyBatch	b;
	int64		nsuperseded;
	int64		nstored;
	double		bound;

	if (stored)
		memset(stored, 0, sizeof(bool) * n);
	if (n == 0)
		return 0;
	bound = SbTimestampBound();
	for (int i = 0; i < n; i++)
	{
		SbMessageError err;

		if (!SbCheckClockSkew(&updates[i], bound, &err))
			ereport(ERROR,
					(errcode(err.sqlerrcode),
					 errmsg("invalid scuttlebutt update: %s", err.message)));
	}

	if (n == 1 && model->node_id && strcmp(updates[0].source, model->node_id) != 0)
	{
		int			lone = SbApplyLoneDirect(model, &updates[0]);

		if (lone == SB_LONE_UNSUITED)
		{
			SPI_connect();
			lone = apply_lone_update(model, &updates[0]);
			SPI_finish();
		}
		if (lone >= 0)
		{
			if (stored)
				stored[0] = lone > 0;
			if (lone > 0)
				SbNoteModelWrite(model->id);
			return lone;
		}
	}

	memset(&b, 0, sizeof(b));
	b.model = model;
	b.updates = updates;
	b.n = n;
	b.stored = stored;
	collect_sources(&b);

	SPI_connect();
	lock_clocks(&b);
	accept_new(&b);
	drop_held(&b);
	adopt_own_updates(&b);
	nsuperseded = pick_winners(&b);
	nstored = store_winners(&b);
	advance_clocks(&b);
	SPI_finish();

	if (nstored > 0)
		SbNoteModelWrite(model->id);
	return nstored + nsuperseded;
}
