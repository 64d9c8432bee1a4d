/*-------------------------------------------------------------------------
 *
 * poll_functions.c
 *	  poll(): the remote end of a libpq peer.
 *
 * A server that dials another over libpq pulls with
 *
 *	  SELECT scuttlebutt.poll(model, <what it holds>, <page>, <wait>)
 *
 * which returns at once the updates newer than what the caller holds (a
 * page of history(), so a prefix of each source's updates), and when there
 * are none waits in shared memory for the next commit that writes a model,
 * then returns nothing: the caller asks again with what it holds by then.
 * Not returning the new rows straight away is deliberate: the caller's
 * clock may be stale by the time a commit wakes us (it may have pushed the
 * very updates that woke us), and re-asking costs one round trip where
 * answering would echo them back.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "model_store.h"
#include "shmem.h"

#define SB_POLL_MAX_UPDATES 1000000
#define SB_POLL_MAX_WAIT_MS 3600000

PG_FUNCTION_INFO_V1(scuttlebutt_poll);

static SPIPlanPtr poll_plan = NULL;

/* Appends up to limit updates of history(model, sources) to the result */
static int64
read_history_page(text *model, Jsonb *sources, int32 limit, ReturnSetInfo *rsinfo)
{
	Datum		values[3];
	int64		n;

	SPI_connect();
	if (poll_plan == NULL)
	{
		Oid			argtypes[3] = {TEXTOID, JSONBOID, INT4OID};
		SPIPlanPtr	plan = SPI_prepare("SELECT h FROM scuttlebutt.history($1, $2) h LIMIT $3",
									   3, argtypes);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		poll_plan = plan;
	}
	values[0] = PointerGetDatum(model);
	values[1] = JsonbPGetDatum(sources);
	values[2] = Int32GetDatum(limit);
	if (SPI_execute_plan(poll_plan, values, NULL, false, limit) != SPI_OK_SELECT)
		elog(ERROR, "could not read the history of a scuttlebutt model");
	n = SPI_processed;
	for (int64 i = 0; i < n; i++)
	{
		bool		isnull;
		Datum		doc = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &doc, &isnull);
	}
	SPI_finish();
	return n;
}

/*
 * scuttlebutt.poll(model, sources, max_updates, wait_ms): at most
 * max_updates updates newer than sources, per source in timestamp order;
 * if there are none, waits up to wait_ms for a commit and returns none.
 */
Datum
scuttlebutt_poll(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	text	   *model;
	Jsonb	   *sources;
	int32		max_updates;
	int32		wait_ms;
	uint64		commits;
	SbModelRef	ref;

	for (int i = 0; i < 4; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("arguments of poll() must not be null")));
	model = PG_GETARG_TEXT_PP(0);
	sources = PG_GETARG_JSONB_P(1);
	max_updates = PG_GETARG_INT32(2);
	wait_ms = PG_GETARG_INT32(3);
	if (max_updates < 1 || max_updates > SB_POLL_MAX_UPDATES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_updates %d is out of range", max_updates),
				 errhint("max_updates is between 1 and %d.", SB_POLL_MAX_UPDATES)));
	if (wait_ms < 0 || wait_ms > SB_POLL_MAX_WAIT_MS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("wait_ms %d is out of range", wait_ms),
				 errhint("wait_ms is between 0 and %d (one hour).", SB_POLL_MAX_WAIT_MS)));
	SbModelLookup(text_to_cstring(model), SB_KIND_ANY, &ref);

	/* a scalar SETOF: the tuplestore's descriptor is the caller's */
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);

	/* the count first: a commit after it is either seen below or waited for */
	commits = SbCommitCount();
	if (read_history_page(model, sources, max_updates, rsinfo) > 0)
		return (Datum) 0;

	/* under a transaction snapshot nothing new would ever be seen */
	if (wait_ms > 0 && !IsolationUsesXactSnapshot())
		(void) SbWaitForCommit(commits, wait_ms);
	return (Datum) 0;
}
