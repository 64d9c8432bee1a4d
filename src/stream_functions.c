/*-------------------------------------------------------------------------
 *
 * stream_functions.c
 *	  The persistence streams: export() and import(), the database's side
 *	  of the reference's createReadStream() and createWriteStream().
 *
 * A dump is the lines a read stream writes: the header, the whole history
 * and "SYNC".  export() is SQL (header + history + "SYNC"); this file
 * writes its header and reads dumps back.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "jstext.h"
#include "model_cache.h"
#include "model_functions.h"
#include "model_store.h"
#include "wire_message.h"

/* Updates applied per batch by import(): bounds memory on large dumps */
#define SB_IMPORT_BATCH 10000

PG_FUNCTION_INFO_V1(scuttlebutt_export_header);
PG_FUNCTION_INFO_V1(scuttlebutt_import);
PG_FUNCTION_INFO_V1(scuttlebutt_push);

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
	appendStringInfoString(&buf, "{\"id\":");
	JsAppendString(&buf, model.node_id, strlen(model.node_id));
	appendStringInfoString(&buf, ",\"clock\":");
	SbAppendClockJson(&buf, clock, n);
	appendStringInfoChar(&buf, '}');
	PG_RETURN_TEXT_P(cstring_to_text_with_len(buf.data, buf.len));
}

/*
 * Applies lines (a dump), in batches; returns how many updates changed the
 * model's state.  Any bad line is an ERROR naming its line number, and
 * then nothing of the lines is applied.  With raise_to_header, a header
 * line raises the clock to its clock once the updates before it are
 * applied; otherwise headers are ignored, as the reference's write stream
 * ignores them.
 */
static int64
import_lines(FunctionCallInfo fcinfo, bool raise_to_header)
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
			 !SbCheckUpdateForKind(msg, model.kind, &err)))
			ereport(ERROR,
					(errcode(err.sqlerrcode),
					 errmsg("invalid line %d of scuttlebutt dump: %s",
							lineno, err.message)));
		if (msg->type == SB_MSG_HEADER && raise_to_header)
		{
			/* the header vouches for the updates before it: those first */
			if (nbatch > 0)
				nstored += SbApplyUpdates(&model, batch, nbatch, NULL);
			nbatch = 0;
			SbRaiseClock(&model, msg->clock, msg->nclock);
			MemoryContextReset(batch_cxt);
			continue;
		}
		if (msg->type != SB_MSG_UPDATE)
			continue;			/* header, "SYNC" or ignored */

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
