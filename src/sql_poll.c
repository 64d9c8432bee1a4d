/*-------------------------------------------------------------------------
 *
 * sql_poll.c
 *	  poll() and wait_for_commit(): the remote end of a libpq peer.
 *
 * A server that dials another over libpq pulls with
 *
 *	  SELECT scuttlebutt.poll(model, <what it holds>, <page>)
 *
 * which returns at once the updates newer than what the caller holds (a
 * page of history(), so a prefix of each source's updates: at most <page>
 * of them, and no more once they pass SB_POLL_PAGE_BYTES), and once it
 * has them all, waits with
 *
 *	  CALL scuttlebutt.wait_for_commit(model, <what it holds>, <wait>)
 *
 * until this server holds something newer or a commit writes the model.
 * The procedure commits before it waits, so the wait holds no snapshot:
 * no vacuum horizon is held back, and no cursor or other statement of the
 * caller's can lose rows under it (a function could only drop its xmin
 * while snapshots of the same transaction were still in use).
 *
 * An answer that holds all the rest ends with the model's header (node
 * id and clock) read in the same snapshot.  The caller, once it applied
 * the answer, holds every update up to that clock or one that beats it,
 * so its clock may rise to it: this is how it learns of updates that were
 * superseded here before it could pull them (a value overwritten by a
 * push, say), as a stream peer would have, having received them.
 * wait_for_commit() with max_updates answers with that page once the
 * wait ends, in the same round trip: a live pull costs one round trip per
 * commit.  The caller's clock is then the one it waited with, and may be
 * stale: it may have pushed, meanwhile, the very updates that woke the
 * wait.  Its pushes are numbered (_push()'s pusher and push), the wait is
 * told how many came before it, and a wait that a later one may have
 * reached answers nothing (NULL) rather than send those updates back: the
 * caller polls with its clock of now.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/detoast.h"
#include "access/htup_details.h"
#include "access/xact.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "nodes/parsenodes.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/snapmgr.h"

#include "jstext.h"
#include "model_cache.h"
#include "model_store.h"
#include "privileges.h"
#include "shmem.h"
#include "sql_util.h"
#include "store.h"
#include "wire.h"

#define SB_POLL_MAX_UPDATES 1000000
#define SB_POLL_MAX_WAIT_MS 3600000
/* An answer stops once its updates pass this many bytes (one beyond at most) */
#define SB_POLL_PAGE_BYTES (1024 * 1024)

PG_FUNCTION_INFO_V1(scuttlebutt_poll);
PG_FUNCTION_INFO_V1(scuttlebutt_wait_for_commit);
PG_FUNCTION_INFO_V1(scuttlebutt_wait_for_page);

/*
 * Where a page goes: poll()'s rows (rsinfo), or the lines of one text
 * (wait_for_commit()'s page)
 */
typedef struct PageSink
{
	ReturnSetInfo *rsinfo;
	StringInfo	lines;
} PageSink;

/* A json line of the page (an update, or the header) into the sink */
static int64
sink_put(PageSink *sink, Datum doc, bool isnull)
{
	text	   *t;

	if (sink->rsinfo)
	{
		tuplestore_putvalues(sink->rsinfo->setResult, sink->rsinfo->setDesc, &doc, &isnull);
		return isnull ? 0 : toast_raw_datum_size(doc);
	}
	if (isnull)
		return 0;
	/* one line each: the updates' one-line check, the header as built */
	t = DatumGetTextPP(doc);
	appendBinaryStringInfo(sink->lines, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
	appendStringInfoChar(sink->lines, '\n');
	return VARSIZE_ANY_EXHDR(t);
}

/* The page's update lines (each ending in a newline) as poll()'s rows */
static void
put_rows(PageSink *sink, StringInfo lines)
{
	const char *p = lines->data;
	const char *end = lines->data + lines->len;

	while (p < end)
	{
		const char *nl = memchr(p, '\n', end - p);

		(void) sink_put(sink, PointerGetDatum(cstring_to_text_with_len(p, nl - p)), false);
		p = nl + 1;
	}
}

/* The entry of source in sources (a valid clock argument), or -Infinity */
static double
sources_entry(Jsonb *sources, const char *source)
{
	JsonbValue	key;
	JsonbValue *v;

	key.type = jbvString;
	key.val.string.val = (char *) source;
	key.val.string.len = strlen(source);
	v = findJsonbValueFromContainer(&sources->root, JB_FOBJECT, &key);
	return v && v->type == jbvNumeric ? JsNumericToDouble(v->val.numeric) : -INFINITY;
}

/*
 * The model's clock as readers may see it, in the active snapshot (this
 * node's source at its visible limit)
 */
static int
read_clock(int32 model_id, const char *model_name, SbModelRef *model,
		   SbClockEntry **clock)
{
	memset(model, 0, sizeof(*model));
	model->id = model_id;
	model->name = (char *) model_name;
	model->node_id = (char *) SbLocalNodeId();
	return SbReadClock(model, clock, true);
}

/* Whether the clock holds more than sources: an update the caller lacks, or one superseded since */
static bool
clock_ahead(const SbClockEntry *clock, int n, Jsonb *sources)
{
	for (int i = 0; i < n; i++)
		if (clock[i].ts > sources_entry(sources, clock[i].source))
			return true;
	return false;
}

/* The caller's pushes, for a page answered with a wait (see SbPushesSince) */
typedef struct PushCheck
{
	uint32		pusher;
	uint32		pushes;
} PushCheck;

/*
 * Appends up to limit updates of history(model, sources) (a clock
 * SbCheckClockArg passed) to the sink,
 * none more once SB_POLL_PAGE_BYTES were (a page of large values is cut
 * by its size: the caller asks again), and, when that is all there is,
 * the model's header {"id","clock"} if the clock holds more than sources
 * (updates since superseded, too), all read in one snapshot: the clock
 * first (this node's source at its visible limit), then each source it
 * holds past sources, as the worker's pump reads them (SbReadHistoryPage:
 * one plain index range scan each).  Returns the updates appended.  With
 * pushes not NULL, reads nothing and returns -1 if a push of the caller's
 * beyond those it counted may have begun: the snapshot could hold what it
 * pushed.
 */
static int64
read_page(text *model_name, int32 model_id, Jsonb *sources, int32 limit,
		  PageSink *sink, const PushCheck *pushes)
{
	SbModelRef	model;
	SbClockEntry *clock;
	int			nclock;
	StringInfoData rows;
	/* a wait's page is read straight into its text; poll()'s rows after */
	StringInfo	lines = sink->lines ? sink->lines : &rows;
	int			start;
	int64		n = 0;
	bool		complete = true;

	/* one snapshot for the clock and the pages: the header vouches for them */
	PushActiveSnapshot(GetTransactionSnapshot());
	if (pushes && SbPushesSince(pushes->pusher, pushes->pushes))
	{
		PopActiveSnapshot();
		return -1;
	}
	nclock = read_clock(model_id, text_to_cstring(model_name), &model, &clock);
	if (lines == &rows)
		initStringInfo(&rows);
	start = lines->len;
	for (int i = 0; i < nclock && complete; i++)
	{
		double		after = sources_entry(sources, clock[i].source);
		double		last;

		if (clock[i].ts <= after)
			continue;
		if (n == limit || lines->len - start >= SB_POLL_PAGE_BYTES)
			complete = false;
		else
			n += SbReadHistoryPage(&model, clock[i].source, after, clock[i].ts,
								   limit - n, SB_POLL_PAGE_BYTES - (lines->len - start),
								   lines, &last, &complete);
	}
	if (lines == &rows)
		put_rows(sink, &rows);
	if (complete && n < limit && clock_ahead(clock, nclock, sources))
	{
		StringInfoData header;

		initStringInfo(&header);
		SbWireAppendHeader(&header, model.node_id, clock, nclock, NULL);
		(void) sink_put(sink, PointerGetDatum(cstring_to_text_with_len(header.data, header.len)), false);
	}
	PopActiveSnapshot();
	return n;
}

static void
check_max_updates(int32 max_updates)
{
	if (max_updates < 1 || max_updates > SB_POLL_MAX_UPDATES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_updates %d is out of range", max_updates),
				 errhint("max_updates is between 1 and %d.", SB_POLL_MAX_UPDATES)));
}

/*
 * scuttlebutt.poll(model, sources, max_updates): at most max_updates
 * updates newer than sources (fewer when they are large), per source in timestamp order, then, if that
 * was all, the model's header (its clock in the same snapshot).  Never
 * waits (see wait_for_commit()).
 */
Datum
scuttlebutt_poll(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	text	   *model;
	int32		max_updates;
	SbModelRef	ref;
	SbOwnerScope scope;
	PageSink	sink = {0};

	SbCheckArgsNotNull(fcinfo, "poll()");
	model = PG_GETARG_TEXT_PP(0);
	max_updates = PG_GETARG_INT32(2);
	check_max_updates(max_updates);
	SbModelLookup(text_to_cstring(model), SB_KIND_ANY, &ref);
	SbCheckModelPrivilege(ref.id, ref.name, SB_PRIV_READ);
	SbCheckClockArg(PG_GETARG_JSONB_P(1));

	/* a scalar SETOF: the tuplestore's descriptor is the caller's */
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	sink.rsinfo = rsinfo;
	SbBeginOwnerScope(&scope);
	(void) read_page(model, ref.id, PG_GETARG_JSONB_P(1), max_updates, &sink,
					 NULL);
	SbEndOwnerScope(&scope);
	return (Datum) 0;
}

/* Whether this server holds more of the model than sources, as of now */
static bool
clock_ahead_now(const SbModelRef *ref, Jsonb *sources)
{
	SbModelRef	model;
	SbClockEntry *clock;
	int			n;
	bool		ahead;

	PushActiveSnapshot(GetTransactionSnapshot());
	n = read_clock(ref->id, ref->name, &model, &clock);
	ahead = clock_ahead(clock, n, sources);
	PopActiveSnapshot();
	return ahead;
}

/*
 * The wait of wait_for_commit(): returns at once if this server holds more
 * of the model than sources; else commits (so that no snapshot of the
 * caller's is held) and waits up to wait_ms for a commit that writes the
 * model.  Only where a procedure may commit: a CALL outside a transaction
 * block.  Returns the model; the first three arguments are checked.
 */
static void
wait_for_commit(FunctionCallInfo fcinfo, SbModelRef *ref)
{
	int32		wait_ms;
	uint64		commits;

	SbCheckFirstArgsNotNull(fcinfo, 3, "wait_for_commit()");
	if (fcinfo->context == NULL || !IsA(fcinfo->context, CallContext) ||
		castNode(CallContext, fcinfo->context)->atomic)
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("wait_for_commit() cannot run inside a transaction block"),
				 errdetail("It commits before it waits, so that the wait holds no snapshot."),
				 errhint("CALL it on its own, outside BEGIN ... COMMIT.")));
	wait_ms = PG_GETARG_INT32(2);
	if (wait_ms < 0 || wait_ms > SB_POLL_MAX_WAIT_MS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("wait_ms %d is out of range", wait_ms),
				 errhint("wait_ms is between 0 and %d (one hour).", SB_POLL_MAX_WAIT_MS)));
	SbModelLookup(text_to_cstring(PG_GETARG_TEXT_PP(0)), SB_KIND_ANY, ref);
	/* as the caller: it reads the clock, which its read privilege shows */
	SbCheckModelPrivilege(ref->id, ref->name, SB_PRIV_READ);
	SbCheckClockArg(PG_GETARG_JSONB_P(1));

	/* the count first: a commit after it is either seen below or waited for */
	commits = SbModelCommitCount(ref->id);
	SPI_connect_ext(SPI_OPT_NONATOMIC);
	if (clock_ahead_now(ref, PG_GETARG_JSONB_P(1)) || wait_ms == 0)
	{
		SPI_finish();
		return;
	}
	/* from here on this backend holds no snapshot, hence no xmin */
	SPI_commit();
	SPI_finish();
	(void) SbWaitForModelCommit(ref->id, commits, wait_ms);
}

/* CALL scuttlebutt.wait_for_commit(model, sources, wait_ms) */
Datum
scuttlebutt_wait_for_commit(PG_FUNCTION_ARGS)
{
	SbModelRef	ref;

	wait_for_commit(fcinfo, &ref);
	PG_RETURN_VOID();
}

/*
 * CALL scuttlebutt.wait_for_commit(model, sources, wait_ms, max_updates,
 * pusher, pushes, page): the same wait, then in a new snapshot the page
 * poll() would return, as the text of its lines (each ending in a
 * newline); page NULL if a push of the caller's session beyond its first
 * pushes may have begun (SbNotePush).
 */
Datum
scuttlebutt_wait_for_page(PG_FUNCTION_ARGS)
{
	MemoryContext call_cxt = CurrentMemoryContext;
	int32		max_updates;
	PushCheck	pushes;
	text	   *model;
	Jsonb	   *sources;
	SbModelRef	ref;
	StringInfoData lines;
	PageSink	sink = {0};
	int64		n;
	SbOwnerScope scope;
	TupleDesc	desc;
	Datum		page;
	bool		isnull;

	/* (page, the last, may be NULL) */
	SbCheckFirstArgsNotNull(fcinfo, 6, "wait_for_commit()");
	max_updates = PG_GETARG_INT32(3);
	check_max_updates(max_updates);
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "wait_for_commit() with a page must return a record");
	/* the arguments in the call's memory, which outlives the commit below */
	model = PG_GETARG_TEXT_P_COPY(0);
	sources = PG_GETARG_JSONB_P_COPY(1);
	pushes.pusher = (uint32) PG_GETARG_INT32(4);
	pushes.pushes = (uint32) PG_GETARG_INT32(5);
	wait_for_commit(fcinfo, &ref);
	/*
	 * A revoke may have committed during the wait (after this transaction
	 * began, so its invalidation is not taken yet): judged now, as poll() is
	 */
	AcceptInvalidationMessages();
	SbCheckModelPrivilege(ref.id, ref.name, SB_PRIV_READ);

	MemoryContextSwitchTo(call_cxt);
	initStringInfo(&lines);
	sink.lines = &lines;
	SbBeginOwnerScope(&scope);
	n = read_page(model, ref.id, sources, max_updates, &sink, &pushes);
	SbEndOwnerScope(&scope);
	isnull = n < 0;
	page = isnull ? (Datum) 0 : PointerGetDatum(cstring_to_text_with_len(lines.data, lines.len));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, &page, &isnull)));
}
