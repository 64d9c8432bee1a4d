/*-------------------------------------------------------------------------
 *
 * sql_streams.c
 *	  The persistence streams: export() and import(), the database's side
 *	  of the reference's createReadStream() and createWriteStream().
 *
 * A dump is the lines a read stream writes: the header, the whole history
 * and "SYNC".  export() is SQL (header + history + "SYNC"); this file
 * gives it the header and "SYNC" lines (written by the wire codec) and
 * reads dumps back.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "apply.h"
#include "guc.h"
#include "model_cache.h"
#include "privileges.h"
#include "remote_clock.h"
#include "sql_util.h"
#include "store.h"
#include "timestamp.h"
#include "trusted_keys.h"
#include "wire.h"

/* Updates applied per batch by import(): bounds memory on large dumps */
#define SB_IMPORT_BATCH 10000

PG_FUNCTION_INFO_V1(scuttlebutt_export_header);
PG_FUNCTION_INFO_V1(scuttlebutt_import);
PG_FUNCTION_INFO_V1(scuttlebutt_sync_line);
PG_FUNCTION_INFO_V1(scuttlebutt_push);
PG_FUNCTION_INFO_V1(scuttlebutt_push_header);

/*
 * scuttlebutt._export_header(model_id): {"id":...,"clock":{...}}, in the
 * caller's snapshot (export() and poll() read the history in it)
 */
Datum
scuttlebutt_export_header(PG_FUNCTION_ARGS)
{
	SbModelRef	model;
	SbClockEntry *clock;
	int			n;
	StringInfoData buf;

	model.id = PG_GETARG_INT32(0);
	model.node_id = (char *) SbLocalNodeId();
	n = SbReadClock(&model, &clock, true);
	initStringInfo(&buf);
	SbWireAppendHeader(&buf, model.node_id, clock, n, NULL);
	PG_RETURN_TEXT_P(cstring_to_text_with_len(buf.data, buf.len));
}

/*
 * scuttlebutt._push_header(model): the header a libpq peer's push link
 * starts from (what this server holds, so that the pusher sends only the
 * rest), for a role that may write the model, whether or not it may read
 * it (as a stream peer that may only write gets the header and "SYNC").
 * A role that may only read gets it too: its push is refused at _push(),
 * and the peer goes on pulling.
 */
Datum
scuttlebutt_push_header(PG_FUNCTION_ARGS)
{
	char	   *name = SbRequiredTextArg(fcinfo, 0, "model name");
	SbModelRef	model;
	SbClockEntry *clock;
	int			n;
	StringInfoData buf;
	SbOwnerScope scope;

	SbModelLookup(name, SB_KIND_ANY, &model);
	if (!SbModelPrivilegeHeld(GetUserId(), model.id, SB_PRIV_READ))
		SbCheckModelPrivilege(model.id, model.name, SB_PRIV_WRITE);
	SbBeginOwnerScope(&scope);
	n = SbReadClock(&model, &clock, true);
	SbEndOwnerScope(&scope);
	initStringInfo(&buf);
	SbWireAppendHeader(&buf, model.node_id, clock, n, NULL);
	PG_RETURN_TEXT_P(cstring_to_text_with_len(buf.data, buf.len));
}

/* scuttlebutt._sync_line(): the "SYNC" line that ends export() */
Datum
scuttlebutt_sync_line(PG_FUNCTION_ARGS)
{
	StringInfoData buf;

	initStringInfo(&buf);
	SbWireAppendSync(&buf);
	PG_RETURN_TEXT_P(cstring_to_text_with_len(buf.data, buf.len));
}

/*
 * For a push: an update more than max_clock_skew ahead is deferred (the
 * pusher sends it again on its next connection), with every later update
 * of its source among the lines, so that the source's clock does not pass
 * it.  Returns whether msg is deferred.
 */
static bool
defer_for_push(SbMessage *msg, double bound, SbRemoteClock *deferred,
			   MemoryContext cxt)
{
	SbMessageError err;

	if (SbCheckClockSkew(msg, bound, &err) &&
		SbRemoteClockGet(deferred, msg->source) == -INFINITY)
		return false;
	SbRemoteClockRaise(deferred, cxt, msg->source, msg->ts);
	return true;
}

/*
 * A pusher's header, less the entries of deferred sources; nothing for a
 * signed model, whose clock moves on verified updates only (see
 * SbSessionQueueClock)
 */
static void
raise_to_pushed_clock(SbModelRef *model, SbMessage *header, SbRemoteClock *deferred)
{
	int			n = 0;

	if (model->signature != SB_SIG_NONE)
		return;

	for (int i = 0; i < header->nclock; i++)
		if (SbRemoteClockGet(deferred, header->clock[i].source) == -INFINITY)
			header->clock[n++] = header->clock[i];
	SbRaiseClock(model, header->clock, n);
}

/*
 * Applies lines (a dump), in batches; returns how many updates changed the
 * model's state.  Any bad line is an ERROR naming its line number, and
 * then nothing of the lines is applied; so is an update more than
 * scuttlebutt.max_clock_skew ahead of this server's clock, unless this is
 * a push (see defer_for_push).  With push, a header line raises the clock
 * to its clock once the updates before it are applied; otherwise headers
 * are ignored, as the reference's write stream ignores them.
 */
static int64
import_lines(FunctionCallInfo fcinfo, bool push)
{
	text	   *lines;
	char	   *model_name;
	const char *p;
	const char *end;
	int			lineno = 0;
	SbModelRef	model;
	SbMessage  *batch;
	int			nbatch = 0;
	int64		nstored = 0;
	MemoryContext batch_cxt;
	MemoryContext old;
	double		bound = SbTimestampBound();
	SbRemoteClock deferred = {0};
	int64		ndeferred = 0;
	int64		nrefused = 0;
	char	   *first_refusal = NULL;
	SbOwnerScope scope;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("model name must not be null")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("lines must not be null")));
	model_name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	lines = PG_GETARG_TEXT_PP(1);
	SbModelLookup(model_name, SB_KIND_ANY, &model);
	SbCheckModelPrivilege(model.id, model.name, SB_PRIV_WRITE);
	SbBeginOwnerScope(&scope);

	batch = palloc(sizeof(SbMessage) * SB_IMPORT_BATCH);
	batch_cxt = AllocSetContextCreate(CurrentMemoryContext,
									  "scuttlebutt import batch",
									  ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(batch_cxt);

	p = VARDATA_ANY(lines);
	end = p + VARSIZE_ANY_EXHDR(lines);
	while (p < end)
	{
		const char *nl = memchr(p, '\n', end - p);
		const char *line = p;
		int			len = (nl ? nl : end) - p;
		SbMessageError err;
		SbMessage  *msg = &batch[nbatch];

		p = nl ? nl + 1 : end;
		lineno++;
		SbTrimJsonText(&line, &len);
		if (len == 0)
			continue;

		if (!SbParseMessage(line, len, msg, &err) ||
			(msg->type == SB_MSG_UPDATE &&
			 (!SbCheckUpdateForKind(msg, model.kind, &err) ||
			  (!push && !SbCheckClockSkew(msg, bound, &err)))))
			ereport(ERROR,
					(errcode(err.sqlerrcode),
					 errmsg("invalid line %d of scuttlebutt dump: %s",
							lineno, err.message)));
		if (msg->type == SB_MSG_HEADER && push)
		{
			/* the header vouches for the updates before it: those first */
			if (nbatch > 0)
				nstored += SbApplyUpdates(&model, batch, nbatch, NULL);
			nbatch = 0;
			raise_to_pushed_clock(&model, msg, &deferred);
			MemoryContextReset(batch_cxt);
			continue;
		}
		if (msg->type != SB_MSG_UPDATE)
			continue;			/* header, "SYNC" or ignored */
		if (!SbVerifyUpdate(&model, msg, &err))
		{
			if (!push)
				ereport(ERROR,
						(errcode(err.sqlerrcode),
						 errmsg("line %d of scuttlebutt dump refused by signed model \"%s\": %s",
								lineno, model.name, err.message)));
			/* (a signed model takes no pushed header: see raise_to_pushed_clock) */
			if (nrefused++ == 0)
				first_refusal = MemoryContextStrdup(old, err.message);
			continue;
		}
		/* (the deferred sources outlive the batch: the caller's context) */
		if (push && defer_for_push(msg, bound, &deferred, old))
		{
			ndeferred++;
			continue;
		}

		if (++nbatch == SB_IMPORT_BATCH)
		{
			nstored += SbApplyUpdates(&model, batch, nbatch, NULL);
			nbatch = 0;
			MemoryContextReset(batch_cxt);
		}
	}
	if (nbatch > 0)
		nstored += SbApplyUpdates(&model, batch, nbatch, NULL);

	MemoryContextSwitchTo(old);
	MemoryContextDelete(batch_cxt);
	if (ndeferred > 0)
		ereport(WARNING,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("scuttlebutt: deferred %lld pushed update(s) more than scuttlebutt.max_clock_skew (%d ms) ahead of this server's clock",
						(long long) ndeferred, sb_max_clock_skew_ms),
				 errdetail("They are applied when pushed again, once within bounds.")));
	if (nrefused > 0)
		ereport(WARNING,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("scuttlebutt: signed model \"%s\" refused %lld pushed update(s)",
						model.name, (long long) nrefused),
				 errdetail("The first one: %s.", first_refusal)));
	SbEndOwnerScope(&scope);
	return nstored;
}

/*
 * scuttlebutt.import(model, lines): applies a dump, and returns how many
 * updates changed the model's state.
 */
Datum
scuttlebutt_import(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(import_lines(fcinfo, false));
}

/*
 * scuttlebutt._push(model, lines): a libpq peer's push.  As import(), and
 * a header among the lines (the pusher's clock, read with the updates it
 * has sent, in order, on this connection) raises the clock to it: every
 * update up to it the pusher held is here, or one that superseded it.
 */
Datum
scuttlebutt_push(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(import_lines(fcinfo, true));
}
