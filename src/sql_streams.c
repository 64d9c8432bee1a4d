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
#include "commit.h"
#include "guc.h"
#include "model_cache.h"
#include "privileges.h"
#include "remote_clock.h"
#include "shmem.h"
#include "sql_util.h"
#include "store.h"
#include "timestamp.h"
#include "trusted_keys.h"
#include "wire.h"

/* Updates applied per batch by import(): bounds memory on large dumps */
#define SB_IMPORT_BATCH 10000

/*
 * Per batch of a signed model: the first batch's verification has no
 * storing beside it, so a smaller one starts the overlap sooner
 */
#define SB_IMPORT_SIGNED_BATCH 2000

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

/* One batch of a dump's updates, from parsed to stored */
typedef struct ImportBatch
{
	MemoryContext cxt;			/* the updates' memory */
	SbMessage  *updates;		/* batch_size of them */
	int		   *linenos;
	int			n;
	SbUpdateVerification verification;
	bool		verifying;		/* started and not finished */
} ImportBatch;

/*
 * One call of import() or _push().  Lines are parsed into one batch while
 * the one before is stored; a full batch's signatures are verified by
 * other threads while the one before it is stored (see verify_pool.c).
 */
typedef struct Import
{
	SbModelRef	model;
	bool		push;
	double		bound;
	ImportBatch batches[2];
	ImportBatch *filling;		/* lines are parsed into it */
	int			batch_size;
	MemoryContext call_cxt;
	int64		nstored;
	SbRemoteClock deferred;
	int64		ndeferred;
	int64		nrefused;
	char	   *first_refusal;
} Import;

static void
start_verifying(Import *imp, ImportBatch *b)
{
	MemoryContext old;

	if (b->n == 0)
		return;
	old = MemoryContextSwitchTo(b->cxt);
	SbVerifyUpdatesStart(&b->verification, &imp->model, b->updates, b->n);
	MemoryContextSwitchTo(old);
	b->verifying = true;
}

static void
finish_verifying(ImportBatch *b)
{
	if (!b->verifying)
		return;
	SbVerifyUpdatesFinish(&b->verification, b->updates);
	b->verifying = false;
}

/*
 * Stores a verified batch: an update a signed model refuses is an ERROR
 * naming its line (for a push: counted and left out), one too far ahead
 * is deferred (a push only: see defer_for_push)
 */
static void
store_batch(Import *imp, ImportBatch *b)
{
	int			kept = 0;

	if (b->n == 0)
		return;
	for (int i = 0; i < b->n; i++)
	{
		SbMessageError *err = &b->verification.errs[i];
		SbMessage  *msg = &b->updates[i];

		if (err->sqlerrcode != 0)
		{
			if (!imp->push)
				ereport(ERROR,
						(errcode(err->sqlerrcode),
						 errmsg("line %d of scuttlebutt dump refused by signed model \"%s\": %s",
								b->linenos[i], imp->model.name, err->message)));
			/* (a signed model takes no pushed header: see raise_to_pushed_clock) */
			if (imp->nrefused++ == 0)
				imp->first_refusal = MemoryContextStrdup(imp->call_cxt, err->message);
			continue;
		}
		/* (the deferred sources outlive the batch: the call's context) */
		if (imp->push && defer_for_push(msg, imp->bound, &imp->deferred, imp->call_cxt))
		{
			imp->ndeferred++;
			continue;
		}
		b->updates[kept++] = *msg;
	}
	if (kept > 0)
		imp->nstored += SbApplyUpdates(&imp->model, b->updates, kept, NULL);
	MemoryContextReset(b->cxt);
	b->n = 0;
}

/* The filled batch starts verifying; the one before it is stored */
static void
rotate(Import *imp)
{
	ImportBatch *before = imp->filling == &imp->batches[0]
		? &imp->batches[1] : &imp->batches[0];

	finish_verifying(before);
	start_verifying(imp, imp->filling);
	store_batch(imp, before);
	imp->filling = before;
}

/* Every line parsed so far stored (or refused) */
static void
drain(Import *imp)
{
	rotate(imp);
	rotate(imp);
}

/* Reports a bad line, once the lines before it are dealt with */
static void pg_attribute_noreturn()
bad_line(Import *imp, int lineno, SbMessageError *err)
{
	int			sqlerrcode = err->sqlerrcode;

	/* (the message may be in the batch's memory, which drain() empties) */
	char	   *message = pstrdup(err->message);

	/* an update refused before it is the first error of the dump */
	drain(imp);
	ereport(ERROR,
			(errcode(sqlerrcode),
			 errmsg("invalid line %d of scuttlebutt dump: %s",
					lineno, message)));
}

/* Parses one line into the batch being filled */
static void
take_line(Import *imp, const char *line, int len, int lineno)
{
	ImportBatch *b = imp->filling;
	SbMessage  *msg = &b->updates[b->n];
	SbMessageError err;
	MemoryContext old = MemoryContextSwitchTo(b->cxt);
	bool		ok = SbParseMessage(line, len, msg, &err);

	MemoryContextSwitchTo(old);
	if (!ok ||
		(msg->type == SB_MSG_UPDATE &&
		 (!SbCheckUpdateForKind(msg, imp->model.kind, &err) ||
		  (!imp->push && !SbCheckClockSkew(msg, imp->bound, &err)))))
		bad_line(imp, lineno, &err);
	if (msg->type == SB_MSG_HEADER && imp->push)
	{
		/* the header vouches for the updates before it: those first */
		SbMessage	header = *msg;

		/* (its clock outlives the batch's memory, which drain() empties) */
		header.clock = palloc(sizeof(SbClockEntry) * Max(header.nclock, 1));
		for (int i = 0; i < header.nclock; i++)
		{
			header.clock[i].source = pstrdup(msg->clock[i].source);
			header.clock[i].ts = msg->clock[i].ts;
		}
		drain(imp);
		raise_to_pushed_clock(&imp->model, &header, &imp->deferred);
		return;
	}
	if (msg->type != SB_MSG_UPDATE)
		return;					/* header, "SYNC" or ignored */
	b->linenos[b->n] = lineno;
	if (++b->n == imp->batch_size)
		rotate(imp);
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
	Import		imp = {0};
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
	SbModelLookup(model_name, SB_KIND_ANY, &imp.model);
	SbCheckModelPrivilege(imp.model.id, imp.model.name, SB_PRIV_WRITE);
	SbBeginOwnerScope(&scope);

	imp.push = push;
	imp.batch_size = imp.model.signature != SB_SIG_NONE
		? SB_IMPORT_SIGNED_BATCH : SB_IMPORT_BATCH;
	imp.bound = SbTimestampBound();
	imp.call_cxt = CurrentMemoryContext;
	for (int i = 0; i < 2; i++)
	{
		ImportBatch *b = &imp.batches[i];

		b->updates = palloc(sizeof(SbMessage) * imp.batch_size);
		b->linenos = palloc(sizeof(int) * imp.batch_size);
		b->cxt = AllocSetContextCreate(CurrentMemoryContext,
									   "scuttlebutt import batch",
									   ALLOCSET_DEFAULT_SIZES);
	}
	imp.filling = &imp.batches[0];

	p = VARDATA_ANY(lines);
	end = p + VARSIZE_ANY_EXHDR(lines);
	while (p < end)
	{
		const char *nl = memchr(p, '\n', end - p);
		const char *line = p;
		int			len = (nl ? nl : end) - p;

		p = nl ? nl + 1 : end;
		lineno++;
		SbTrimJsonText(&line, &len);
		if (len > 0)
			take_line(&imp, line, len, lineno);
	}
	drain(&imp);

	for (int i = 0; i < 2; i++)
		MemoryContextDelete(imp.batches[i].cxt);
	if (imp.ndeferred > 0)
		ereport(WARNING,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("scuttlebutt: deferred %lld pushed update(s) more than scuttlebutt.max_clock_skew (%d ms) ahead of this server's clock",
						(long long) imp.ndeferred, sb_max_clock_skew_ms),
				 errdetail("They are applied when pushed again, once within bounds.")));
	if (imp.nrefused > 0)
		ereport(WARNING,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("scuttlebutt: signed model \"%s\" refused %lld pushed update(s)",
						imp.model.name, (long long) imp.nrefused),
				 errdetail("The first one: %s.", imp.first_refusal)));
	SbEndOwnerScope(&scope);
	return imp.nstored;
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
 * The pusher holds them durably and, after a crash here, pushes again
 * from the clock it then reads: committed without waiting for the flush.
 * pusher and push, when not 0, are the pusher's session and this push's
 * number in it: its pull session's wait must not answer with what this
 * push stores (SbNotePush).  node, when not NULL, is the node id the
 * pusher's session began with: another one here (the extension created
 * again) refuses, lest it take the pusher's clock for its own.
 */
Datum
scuttlebutt_push(PG_FUNCTION_ARGS)
{
	if (PG_NARGS() > 4 && !PG_ARGISNULL(4))
	{
		const char *expected = text_to_cstring(PG_GETARG_TEXT_PP(4));
		const char *node_id = SbLocalNodeId();

		if (strcmp(expected, node_id) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_EXCEPTION),
					 errmsg("this node is \"%s\", not \"%s\" that the pushing session began with",
							node_id, expected),
					 errhint("The pusher connects again, and learns this node's clock.")));
	}
	if (PG_NARGS() > 3 && !PG_ARGISNULL(2) && !PG_ARGISNULL(3))
		SbNotePush((uint32) PG_GETARG_INT32(2), (uint32) PG_GETARG_INT32(3));
	SbCommitWithoutFlush();
	PG_RETURN_INT64(import_lines(fcinfo, true));
}
