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
 * wait_for_commit() returns nothing: the caller's clock may be stale by
 * the time a commit wakes it (it may have pushed the very updates that
 * woke it), and re-asking costs one round trip where answering would echo
 * them back.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "nodes/parsenodes.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/snapmgr.h"

#include "model_store.h"
#include "privileges.h"
#include "shmem.h"
#include "spi_util.h"
#include "sql_util.h"

#define SB_POLL_MAX_UPDATES 1000000
#define SB_POLL_MAX_WAIT_MS 3600000
/* An answer stops once its updates pass this many bytes (one beyond at most) */
#define SB_POLL_PAGE_BYTES (1024 * 1024)

PG_FUNCTION_INFO_V1(scuttlebutt_poll);
PG_FUNCTION_INFO_V1(scuttlebutt_wait_for_commit);

/*
 * Whether the clock of model $1 holds more than sources $2: an update the
 * caller lacks, or one superseded since (as readers may see the clock)
 */
#define CLOCK_AHEAD_SQL \
	"EXISTS (SELECT FROM scuttlebutt.clocks c WHERE c.model_id = $1" \
	"  AND scuttlebutt._visible_ts(c.model_id, c.source, c.ts)" \
	"   > coalesce(($2 ->> c.source)::float8, '-infinity'))"

static SPIPlanPtr page_plan = NULL;
static SPIPlanPtr header_plan = NULL;
static SPIPlanPtr ahead_plan = NULL;

/* read_page's rows: each update into the result */
static int64
page_row(TupleTableSlot *slot, void *arg)
{
	ReturnSetInfo *rsinfo = arg;
	bool		isnull;
	Datum		doc = slot_getattr(slot, 1, &isnull);

	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &doc, &isnull);
	return isnull ? 0 : toast_raw_datum_size(doc);
}

/*
 * Appends up to limit updates of history(model, sources) to the result,
 * none more once SB_POLL_PAGE_BYTES were (a page of large values is cut
 * by its size: the caller asks again), and, when that is all there is,
 * the model's header {"id","clock"} read in the same snapshot.  Returns
 * the updates appended; *clock_ahead says whether the clock holds more
 * than sources (updates since superseded).
 */
static int64
read_page(text *model, int32 model_id, Jsonb *sources, int32 limit,
		  ReturnSetInfo *rsinfo, bool *clock_ahead)
{
	Oid			page_types[3] = {TEXTOID, JSONBOID, INT4OID};
	Oid			header_types[2] = {INT4OID, JSONBOID};
	Datum		values[3];
	int64		n;
	bool		cut;

	*clock_ahead = false;
	SPI_connect();
	/* one snapshot for both queries: the header vouches for the page */
	PushActiveSnapshot(GetTransactionSnapshot());
	values[0] = PointerGetDatum(model);
	values[1] = JsonbPGetDatum(sources);
	values[2] = Int32GetDatum(limit);
	n = (int64) SbExecuteBounded(SbPrepareOnce(&page_plan,
											   "SELECT h FROM scuttlebutt.history($1, $2) h LIMIT $3",
											   3, page_types),
								 page_types, values, SB_POLL_PAGE_BYTES,
								 page_row, rsinfo, &cut);
	if (n < limit && !cut)
	{
		bool		isnull;
		Datum		header;

		values[0] = Int32GetDatum(model_id);
		values[1] = JsonbPGetDatum(sources);
		if (SPI_execute_plan(SbPrepareOnce(&header_plan,
										  "SELECT scuttlebutt._export_header($1)::json, " CLOCK_AHEAD_SQL,
										  2, header_types),
							 values, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "could not read the clock of a scuttlebutt model");
		*clock_ahead = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
		if (n > 0 || *clock_ahead)
		{
			header = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &header, &isnull);
		}
	}
	PopActiveSnapshot();
	SPI_finish();
	return n;
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
	bool		clock_ahead;
	SbOwnerScope scope;

	SbCheckArgsNotNull(fcinfo, "poll()");
	model = PG_GETARG_TEXT_PP(0);
	max_updates = PG_GETARG_INT32(2);
	if (max_updates < 1 || max_updates > SB_POLL_MAX_UPDATES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_updates %d is out of range", max_updates),
				 errhint("max_updates is between 1 and %d.", SB_POLL_MAX_UPDATES)));
	SbModelLookup(text_to_cstring(model), SB_KIND_ANY, &ref);
	SbCheckModelPrivilege(ref.id, ref.name, SB_PRIV_READ);

	/* a scalar SETOF: the tuplestore's descriptor is the caller's */
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	SbBeginOwnerScope(&scope);
	(void) read_page(model, ref.id, PG_GETARG_JSONB_P(1), max_updates, rsinfo,
					 &clock_ahead);
	SbEndOwnerScope(&scope);
	return (Datum) 0;
}

/* Whether this server holds more of the model than sources, as of now */
static bool
clock_ahead_now(int32 model_id, Jsonb *sources)
{
	Datum		values[2] = {Int32GetDatum(model_id), JsonbPGetDatum(sources)};
	bool		isnull;
	bool		ahead;

	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_execute_plan(SbPrepareOnce(&ahead_plan, "SELECT " CLOCK_AHEAD_SQL,
									  2, (Oid[]) {INT4OID, JSONBOID}),
						 values, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not read the clock of a scuttlebutt model");
	ahead = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	PopActiveSnapshot();
	return ahead;
}

/*
 * CALL scuttlebutt.wait_for_commit(model, sources, wait_ms): returns at
 * once if this server holds more of the model than sources; else commits
 * (so that no snapshot of the caller's is held) and waits up to wait_ms for
 * a commit that writes the model.  Only where a procedure may commit: a
 * CALL outside a transaction block.
 */
Datum
scuttlebutt_wait_for_commit(PG_FUNCTION_ARGS)
{
	int32		wait_ms;
	uint64		commits;
	SbModelRef	ref;

	SbCheckArgsNotNull(fcinfo, "wait_for_commit()");
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
	SbModelLookup(text_to_cstring(PG_GETARG_TEXT_PP(0)), SB_KIND_ANY, &ref);
	/* as the caller: it reads the clock, which its read privilege shows */
	SbCheckModelPrivilege(ref.id, ref.name, SB_PRIV_READ);

	/* the count first: a commit after it is either seen below or waited for */
	commits = SbModelCommitCount(ref.id);
	SPI_connect_ext(SPI_OPT_NONATOMIC);
	if (clock_ahead_now(ref.id, PG_GETARG_JSONB_P(1)) || wait_ms == 0)
	{
		SPI_finish();
		PG_RETURN_VOID();
	}
	/* from here on this backend holds no snapshot, hence no xmin */
	SPI_commit();
	SPI_finish();
	(void) SbWaitForModelCommit(ref.id, commits, wait_ms);
	PG_RETURN_VOID();
}
