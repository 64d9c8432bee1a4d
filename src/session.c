/*-------------------------------------------------------------------------
 *
 * session.c
 *	  A transport-neutral peer session: one model replicated with one peer.
 *
 * A session runs as the reference's createStream() does:
 *
 *	  both sides send a header {"id", "clock"[, "meta"]}; on the peer's
 *	  header a side sends the history the peer's clock lacks, then "SYNC",
 *	  then keeps sending new updates (tailing); both "SYNC"s exchanged, the
 *	  session is live.
 *
 * One difference, on incoming connections: our "SYNC" also waits for the
 * peer's, and for what the peer sent before it to be committed, so that a
 * client's "sync" event means its writes are in the database (durable
 * sync).  A reference client sends its "SYNC" without waiting for ours; a
 * server dialing us (add_stream_peer) does not wait either, so neither
 * side waits for the other.
 *
 * How headers travel is the transport's business (a line on a stream, the
 * answer to a handshake query over libpq); it hands the peer's clock to
 * SbSessionPeerHeader and every other message to SbSessionReceive.
 *
 * What the peer holds is tracked per source (SbRemoteClock): its header
 * clock, then every update sent to it or received from it.  Sending is a
 * "pump": per source, the held updates newer than what the peer holds, a
 * page at a time, each page in its own short transaction, into the outbox
 * and only while the outbox is below its high-water mark.  So an initial
 * sync of any size goes out with bounded memory and no long transaction,
 * and a slow peer only slows itself.  Tailing is the same pump, run when a
 * commit anywhere bumps the shared commit counter.  Updates received from
 * this peer count as held by it: they are never echoed back.
 *
 * Received updates are applied in batches, one transaction per batch,
 * under the same rules as apply_update().  An update that is JSON but
 * invalid is dropped and counted (as the reference drops it), and the
 * session goes on; a line that is not JSON ends it.
 *
 * An update more than scuttlebutt.max_clock_skew ahead of our wall clock
 * is deferred: not applied, and neither the model's clock nor what we
 * think the peer holds moves past it, so the peer offers it again when it
 * reconnects.  A source's updates arrive in timestamp order, so its later
 * ones on this connection are deferred with it (applying them would move
 * the source's clock past the deferred one, which would then never come
 * again), and a clock the peer vouches for leaves that source out.
 *
 * Errors from table work (a transaction that fails) close this session
 * with the error's message; so does any other ERROR raised while the
 * worker serves this session (SbSessionGuard): none reaches the worker's
 * main loop.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/condition_variable.h"
#include "storage/lwlock.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "commit.h"
#include "guc.h"
#include "privileges.h"
#include "session.h"
#include "shmem.h"
#include "timestamp.h"
#include "transport.h"
#include "trusted_keys.h"

/* At most one WARNING per session this often for rejected updates */
#define SB_REJECT_WARNING_INTERVAL_MS 10000

const char *
SbSessionStateName(SbSessionState state)
{
	switch (state)
	{
		case SB_SESSION_CONNECTING:
			return "connecting";
		case SB_SESSION_HANDSHAKE:
			return "handshake";
		case SB_SESSION_SYNCING:
			return "syncing";
		case SB_SESSION_LIVE:
			return "live";
		case SB_SESSION_BACKOFF:
			return "backoff";
		case SB_SESSION_CLOSED:
			return "closed";
	}
	return "?";
}

SbSession *
SbSessionCreate(MemoryContext parent, bool outgoing, const SbTransportOps *ops)
{
	MemoryContext cxt = AllocSetContextCreate(parent, "scuttlebutt session",
											  ALLOCSET_SMALL_SIZES);
	SbSession  *s = MemoryContextAllocZero(cxt, sizeof(SbSession));

	s->cxt = cxt;
	/* small at first: thousands of sessions may be idle */
	s->session_cxt = AllocSetContextCreate(cxt, "scuttlebutt connection",
										   ALLOCSET_START_SMALL_SIZES);
	s->batch_cxt = AllocSetContextCreate(cxt, "scuttlebutt batch",
										 ALLOCSET_START_SMALL_SIZES);
	s->ops = ops;
	s->slot = -1;
	s->outgoing = outgoing;
	s->send_enabled = s->want_send = true;
	s->receive_enabled = s->want_receive = true;
	s->role = InvalidOid;
	s->state = outgoing ? SB_SESSION_BACKOFF : SB_SESSION_HANDSHAKE;
	s->deadline = 0;			/* outgoing: connect at once */
	s->close_reason = -1;
	s->deferred_first = INFINITY;
	return s;
}

void
SbSessionFree(SbSession *s)
{
	s->ops->disconnect(s);
	MemoryContextDelete(s->cxt);
}

/* Raises the peer's entry for source to ts (allocating in the connection) */
static void
remote_raise(SbSession *s, const char *source, double ts)
{
	SbRemoteClockRaise(&s->remote, s->session_cxt, source, ts);
}

/* ---- starting and ending ---- */

static void
forget_pending(SbSession *s)
{
	/* the array stays (session_cxt): the next batch fills it again */
	s->npending = 0;
	s->pending_clock = NULL;
	s->npending_clock = 0;
	MemoryContextReset(s->batch_cxt);
}

void
SbSessionBegin(SbSession *s)
{
	MemoryContextReset(s->session_cxt);
	s->pending = NULL;
	s->pending_alloc = 0;
	forget_pending(s);
	s->input_waiting = false;
	s->unflushed = false;
	s->out.data = MemoryContextAlloc(s->session_cxt, SB_OUT_INITIAL);
	s->out.maxlen = SB_OUT_INITIAL;
	resetStringInfo(&s->out);
	s->out_off = 0;
	s->remote_id = NULL;
	/* the role's privileges narrow these again once the model is known */
	s->send_enabled = s->want_send;
	s->receive_enabled = s->want_receive;
	s->write_denied = false;
	s->peer_clock_known = false;
	s->sync_sent = false;
	/* a side that accepts nothing has no SYNC to wait for (reference) */
	s->sync_received = !s->receive_enabled;
	memset(&s->remote, 0, sizeof(s->remote));
	memset(&s->deferred, 0, sizeof(s->deferred));
	s->deferred_first = INFINITY;
	s->clock_owed = false;
	s->caught_up = false;
	s->applied_alone = 0;
	s->counters.synced_at = 0;
	s->state = SB_SESSION_HANDSHAKE;
	s->counters.last_activity = GetCurrentTimestamp();
}

void
SbSessionClose(SbSession *s, SbCloseReason reason, const char *detail)
{
	SbSessionCloseWithCode(s, reason, 0, detail);
}

void
SbSessionCloseWithCode(SbSession *s, SbCloseReason reason, int sqlerrcode,
					   const char *detail)
{
	const char *name = SbCloseReasonName(reason);

	ereport(SbCloseReasonLevel(reason),
			(errcode(sqlerrcode ? sqlerrcode : SbCloseReasonErrcode(reason)),
			 errmsg("scuttlebutt: closing connection %s %s: %s",
					s->outgoing ? "to" : "from", s->remote_addr, name),
			 detail ? errdetail_internal("%s", detail) : 0));
	SbCountConnectionError(reason, s->remote_addr);
	snprintf(s->last_error, sizeof(s->last_error), "%s%s%s",
			 name, detail ? ": " : "", detail ? detail : "");

	s->close_reason = reason;
	s->ops->disconnect(s);
	s->close_reason = -1;
	forget_pending(s);
	s->deferred_first = INFINITY;	/* the next connection offers them again */
	if (s->outgoing)
	{
		int			delay = s->backoff_ms > 0 ? s->backoff_ms : sb_reconnect_min_ms;

		s->state = SB_SESSION_BACKOFF;
		s->deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), delay);
		s->backoff_ms = Min((int64) delay * 2, (int64) sb_reconnect_max_ms);
	}
	else
		s->state = SB_SESSION_CLOSED;
}

/*
 * Counts one more of a kind of update left out, and says whether a
 * WARNING is due for those not reported yet (at most one per session and
 * kind every SB_REJECT_WARNING_INTERVAL_MS).
 */
static bool
warning_due(TimestampTz *last_warning, int64 *unreported)
{
	TimestampTz now = GetCurrentTimestamp();

	(*unreported)++;
	if (!TimestampDifferenceExceeds(*last_warning, now,
									SB_REJECT_WARNING_INTERVAL_MS))
		return false;
	*last_warning = now;
	return true;
}

void
SbSessionReject(SbSession *s, const char *why)
{
	s->counters.rejected++;
	if (warning_due(&s->last_reject_warning, &s->rejects_unreported))
	{
		ereport(WARNING,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("scuttlebutt: dropped %lld invalid update(s) from %s: %s",
						(long long) s->rejects_unreported, s->remote_addr, why)));
		s->rejects_unreported = 0;
	}
	snprintf(s->last_error, sizeof(s->last_error), "rejected update: %s", why);
}

/*
 * Notes an update dropped because the session's role may not write the
 * model: counted as rejected, with a WARNING now and then; the session
 * goes on (as the reference's writable: false side does).
 */
static void
reject_unwritable(SbSession *s)
{
	s->counters.rejected++;
	if (warning_due(&s->last_reject_warning, &s->rejects_unreported))
	{
		ereport(WARNING,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("scuttlebutt: dropped %lld update(s) from %s: no write privilege on model \"%s\"",
						(long long) s->rejects_unreported, s->remote_addr,
						s->model_name)));
		s->rejects_unreported = 0;
	}
	snprintf(s->last_error, sizeof(s->last_error),
			 "rejected update: no write privilege on model \"%s\"", s->model_name);
}

/* ---- errors ---- */

/*
 * After an ERROR raised while serving s, caught with the memory context
 * cxt current before: the error state is cleared, whatever the step held
 * is released (its transaction, or lightweight locks and a condition
 * variable sleep outside one), and the session is closed under reason
 * with the error's message.  Only this session suffers.
 */
static void
close_after_error(SbSession *s, MemoryContext cxt, SbCloseReason reason)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(cxt);
	edata = CopyErrorData();
	FlushErrorState();
	AbortCurrentTransaction();
	LWLockReleaseAll();
	ConditionVariableCancelSleep();
	MemoryContextSwitchTo(cxt);
	/* the detail (a deadlock's lock cycle, say) goes to the log only */
	if (edata->detail)
		ereport(LOG,
				(errmsg("scuttlebutt: %s while serving %s", edata->message,
						s->remote_addr),
				 errdetail_internal("%s", edata->detail)));
	SbSessionCloseWithCode(s, reason, edata->sqlerrcode, edata->message);
	FreeErrorData(edata);
}

bool
SbSessionGuard(SbSession *s, SbSessionTxnFn fn, void *arg)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	volatile bool ok = true;

	PG_TRY();
	{
		fn(s, arg);
	}
	PG_CATCH();
	{
		close_after_error(s, oldcxt, SB_CLOSE_INTERNAL_ERROR);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/*
 * Whether an update is deferred (see the banner): too far ahead of our
 * clock, or of a source already deferred on this connection.  Counts it,
 * with a WARNING now and then naming the peer and the skew (that of the
 * source's first deferred update, which holds back the rest).
 */
static bool
defer_if_ahead(SbSession *s, SbMessage *msg)
{
	double		first = SbRemoteClockGet(&s->deferred, msg->source);
	double		ahead;

	if (first == -INFINITY)
	{
		if (msg->ts - SbNowMillis() <= sb_max_clock_skew_ms)
			return false;
		first = msg->ts;
		SbRemoteClockRaise(&s->deferred, s->session_cxt, msg->source, first);
		s->deferred_first = Min(s->deferred_first, first);
	}
	ahead = first - SbNowMillis();
	s->counters.rejected_skew++;
	if (warning_due(&s->last_skew_warning, &s->skews_unreported))
	{
		ereport(WARNING,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("scuttlebutt: deferred %lld update(s) from %s: source \"%s\" sent one %g ms ahead of this server's clock",
						(long long) s->skews_unreported, s->remote_addr,
						msg->source, ahead),
				 errdetail("scuttlebutt.max_clock_skew is %d ms. That update and the later ones of its source are applied when the peer sends them again on a later connection.",
						   sb_max_clock_skew_ms)));
		s->skews_unreported = 0;
	}
	snprintf(s->last_error, sizeof(s->last_error),
			 "deferred update: source \"%s\" sent one %g ms ahead of this server's clock",
			 msg->source, ahead);
	return true;
}

/* ---- transactions ---- */

bool
SbSessionTransaction(SbSession *s, const char *activity, SbSessionTxnFn fn, void *arg)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	volatile bool ok = true;

	PG_TRY();
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		debug_query_string = activity;
		pgstat_report_activity(STATE_RUNNING, activity);

		fn(s, arg);

		PopActiveSnapshot();
		CommitTransactionCommand();
		MemoryContextSwitchTo(oldcxt);
	}
	PG_CATCH();
	{
		close_after_error(s, oldcxt, SB_CLOSE_DATABASE_ERROR);
		ok = false;
	}
	PG_END_TRY();
	debug_query_string = NULL;
	/* a background worker's table statistics reach autovacuum only so */
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return ok;
}

typedef struct LookupArg
{
	bool		found;
	bool		may_read;
	bool		may_write;
	char	   *role_name;		/* for the log */
} LookupArg;

/*
 * The model, and what the session's role may do with it.  The model's
 * name and node id live as long as the connection.
 */
static void
lookup_txn(SbSession *s, void *arg)
{
	LookupArg  *la = arg;
	MemoryContext old = MemoryContextSwitchTo(s->session_cxt);

	la->found = SbModelTryLookup(s->model_name, &s->model);
	if (la->found && OidIsValid(s->role))
	{
		char	   *name = GetUserNameFromId(s->role, true);

		la->role_name = name ? name : psprintf("%u", s->role);
		if (name != NULL)
		{
			la->may_read = SbModelPrivilegeHeld(s->role, s->model.id, SB_PRIV_READ);
			la->may_write = SbModelPrivilegeHeld(s->role, s->model.id, SB_PRIV_WRITE);
		}
	}
	MemoryContextSwitchTo(old);
}

/*
 * What the connection does, as the role's privileges allow: without read
 * it sends nothing but its header and "SYNC"; without write it drops what
 * it receives (counted).  Neither: it is closed.
 */
static bool
apply_privileges(SbSession *s, LookupArg *la)
{
	if (!la->may_read && !la->may_write)
	{
		SbSessionClose(s, SB_CLOSE_PERMISSION_DENIED,
					   la->role_name
					   ? psprintf("Role \"%s\" holds neither read nor write on model \"%s\".",
								  la->role_name, s->model_name)
					   : psprintf("The connection acts as no role: it may not use model \"%s\".",
								  s->model_name));
		return false;
	}
	s->send_enabled = s->want_send && la->may_read;
	s->receive_enabled = s->want_receive && la->may_write;
	s->write_denied = s->want_receive && !la->may_write;
	/* a side that accepts nothing has no SYNC to wait for (as at Begin) */
	if (!s->receive_enabled)
		s->sync_received = true;
	return true;
}

bool
SbSessionResolveModel(SbSession *s)
{
	LookupArg	la = {false, false, false, NULL};

	/* the model may have been dropped and made again: look it up anew */
	if (!SbSessionTransaction(s, "scuttlebutt: looking up a model", lookup_txn, &la))
		return false;
	if (!la.found)
	{
		SbSessionClose(s, SB_CLOSE_UNKNOWN_MODEL,
					   psprintf("There is no scuttlebutt model \"%s\" here.", s->model_name));
		return false;
	}
	if (!apply_privileges(s, &la))
		return false;
	s->model_known = true;
	return true;
}

/* ---- receiving ---- */

/*
 * Adds the peer's clock of this node's own source to the clock entries
 * queued for the next apply (kept: a libpq pull may have queued its
 * remote's clock in the same batch)
 */
static void
queue_own_clock(SbSession *s, const SbClockEntry *own)
{
	SbClockEntry *all = palloc(sizeof(SbClockEntry) * (s->npending_clock + 1));
	int			n = 0;

	for (int i = 0; i < s->npending_clock; i++)
	{
		if (strcmp(s->pending_clock[i].source, own->source) == 0)
			return;
		all[n++] = s->pending_clock[i];
	}
	all[n++] = *own;
	SbSessionQueueClock(s, all, n);
}

void
SbSessionPeerHeader(SbSession *s, const char *id, const SbClockEntry *clock, int n)
{
	if (id && s->remote_id == NULL)
		s->remote_id = MemoryContextStrdup(s->session_cxt, id);
	for (int i = 0; i < n; i++)
	{
		remote_raise(s, clock[i].source, clock[i].ts);

		/*
		 * The peer holds this node's own source at that timestamp: queued
		 * so that the sequencer passes it before anything is applied
		 * (SbRaiseClock), the restore case (rejoin.c).
		 */
		if (s->model_known && s->model.node_id != NULL &&
			strcmp(clock[i].source, s->model.node_id) == 0)
			queue_own_clock(s, &clock[i]);
	}
	s->peer_clock_known = true;
	s->caught_up = false;
	if (s->state == SB_SESSION_CONNECTING || s->state == SB_SESSION_HANDSHAKE)
		s->state = SB_SESSION_SYNCING;
}

static void
note_live(SbSession *s)
{
	if (s->sync_sent && s->sync_received && s->state == SB_SESSION_SYNCING)
	{
		s->state = SB_SESSION_LIVE;
		s->counters.synced_at = GetCurrentTimestamp();
		s->backoff_ms = 0;		/* a good session resets the back-off */
	}
}

void
SbSessionPeerSynced(SbSession *s)
{
	s->sync_received = true;
	note_live(s);
}

/* The privileges of the session's role on its model as it is now */
static void
recheck_txn(SbSession *s, void *arg)
{
	LookupArg  *la = arg;
	SbModelRef	now;
	char	   *name = GetUserNameFromId(s->role, true);

	/* a model dropped (or made anew) is not the one the session serves */
	la->found = SbModelTryLookup(s->model_name, &now) && now.id == s->model.id;
	if (name != NULL)
		la->role_name = MemoryContextStrdup(s->session_cxt, name);
	if (la->found && name != NULL)
	{
		la->may_read = SbModelPrivilegeHeld(s->role, s->model.id, SB_PRIV_READ);
		la->may_write = SbModelPrivilegeHeld(s->role, s->model.id, SB_PRIV_WRITE);
	}
}

void
SbSessionRecheckPrivileges(SbSession *s)
{
	LookupArg	la = {false, false, false, NULL};

	if (!SbSessionIsOpen(s) || !s->model_known || !OidIsValid(s->role))
		return;
	if (!SbSessionTransaction(s, "scuttlebutt: checking privileges", recheck_txn, &la))
		return;
	/* a model dropped: the session's next use of it says so, as before */
	if (!la.found)
		return;
	if (!la.may_read && !la.may_write)
	{
		SbSessionClose(s, SB_CLOSE_PERMISSION_DENIED,
					   la.role_name
					   ? psprintf("Role \"%s\" no longer holds read or write on model \"%s\".",
								  la.role_name, s->model_name)
					   : psprintf("The connection's role no longer exists: it may not use model \"%s\".",
								  s->model_name));
		return;
	}

	/*
	 * A libpq peer's links were opened for what it did: it connects again,
	 * and its next session does what the role may do now
	 */
	if (s->ops == &SbLibpqTransport &&
		((!la.may_write && s->receive_enabled) || (!la.may_read && s->send_enabled)))
	{
		SbSessionClose(s, SB_CLOSE_PERMISSION_DENIED,
					   psprintf("Role \"%s\" lost a privilege on model \"%s\": connecting again.",
								la.role_name ? la.role_name : "?", s->model_name));
		return;
	}
	if (!la.may_write && s->receive_enabled)
	{
		/* from now on dropped and counted, as for a role that never had it */
		s->receive_enabled = false;
		s->write_denied = true;
		if (!s->sync_received)
		{
			s->sync_received = true;
			note_live(s);
		}
	}
	if (!la.may_read && s->send_enabled)
		s->send_enabled = false;
}

static void
queue_update(SbSession *s, SbMessage *msg)
{
	MemoryContext old = MemoryContextSwitchTo(s->batch_cxt);
	SbMessage  *copy;

	if (s->npending == s->pending_alloc)
	{
		s->pending_alloc = Max(64, s->pending_alloc * 2);
		s->pending = s->pending
			? repalloc(s->pending, sizeof(SbMessage) * s->pending_alloc)
			: MemoryContextAlloc(s->session_cxt,
								 sizeof(SbMessage) * s->pending_alloc);
	}
	copy = &s->pending[s->npending++];
	*copy = *msg;
	copy->text = pnstrdup(msg->text, msg->len);
	copy->source = pstrdup(msg->source);
	copy->key = msg->key ? pstrdup(msg->key) : NULL;
	copy->signature = msg->signature ? pstrdup(msg->signature) : NULL;
	copy->clock = NULL;
	MemoryContextSwitchTo(old);
}

bool
SbSessionReceive(SbSession *s, SbMessage *msg, bool ok, SbMessageError *err)
{
	if (!ok)
	{
		/* not JSON, or a header without a clock: the stream is broken */
		if (msg->type == SB_MSG_HEADER)
		{
			SbSessionClose(s, SB_CLOSE_INVALID_HEADER, err->message);
			return false;
		}
		if (err->sqlerrcode == ERRCODE_INVALID_TEXT_REPRESENTATION)
		{
			SbSessionClose(s, SB_CLOSE_INVALID_JSON, err->message);
			return false;
		}
		/* not parsed at all: whether it is JSON is unknown */
		if (err->sqlerrcode == ERRCODE_STATEMENT_TOO_COMPLEX)
		{
			SbSessionClose(s, SB_CLOSE_TOO_DEEP, err->message);
			return false;
		}
		/* JSON, but an update we cannot take: drop it, as the reference does */
		SbSessionReject(s, err->message);
		return true;
	}

	switch (msg->type)
	{
		case SB_MSG_HEADER:		/* the transport's; a second one changes nothing */
		case SB_MSG_IGNORED:
			return true;
		case SB_MSG_SYNC:
			SbSessionPeerSynced(s);
			/* the batch that ends a sync waits for the flush (input_waiting) */
			s->input_waiting = false;
			return true;
		case SB_MSG_UPDATE:
			break;
	}

	if (!s->model_known)
	{
		SbSessionClose(s, SB_CLOSE_UPDATE_BEFORE_HEADER,
					   "An incoming stream must start with a header naming its model.");
		return false;
	}
	s->counters.received++;
	if (!s->receive_enabled)
	{
		/* the role may not write the model: dropped, and counted */
		if (s->write_denied)
			reject_unwritable(s);
		return true;			/* read-only: accepted, not applied */
	}
	if (!SbCheckUpdateForKind(msg, s->model.kind, err))
	{
		SbSessionReject(s, err->message);
		return true;
	}
	if (defer_if_ahead(s, msg))
		return true;
	queue_update(s, msg);
	return true;
}

/* ---- applying ---- */

/* A deferred source's entry, or one past the bound, is left out */
void
SbSessionQueueClock(SbSession *s, const SbClockEntry *entries, int n)
{
	MemoryContext old = MemoryContextSwitchTo(s->batch_cxt);
	double		bound = SbTimestampBound();

	s->pending_clock = palloc(sizeof(SbClockEntry) * Max(n, 1));
	s->npending_clock = 0;

	/*
	 * A signed model's clock moves on verified updates only: a peer's word
	 * could raise a source past updates it never sent, and the genuine
	 * ones would then be dropped as old.
	 */
	if (s->model.signature != SB_SIG_NONE)
		n = 0;
	for (int i = 0; i < n; i++)
	{
		if (entries[i].ts > bound ||
			SbRemoteClockGet(&s->deferred, entries[i].source) != -INFINITY)
			continue;
		s->pending_clock[s->npending_clock].source = pstrdup(entries[i].source);
		s->pending_clock[s->npending_clock].ts = entries[i].ts;
		s->npending_clock++;
	}
	MemoryContextSwitchTo(old);
}

/*
 * Leaves out of the batch the updates a signed model refuses, each counted
 * as rejected (no clock they could raise: a signed model queues none)
 */
static void
verify_pending(SbSession *s)
{
	SbUpdateVerification v;
	int			kept = 0;

	if (s->model.signature == SB_SIG_NONE)
		return;
	SbVerifyUpdatesStart(&v, &s->model, s->pending, s->npending);
	SbVerifyUpdatesFinish(&v, s->pending);
	for (int i = 0; i < s->npending; i++)
	{
		if (v.errs[i].sqlerrcode == 0)
			s->pending[kept++] = s->pending[i];
		else
			SbSessionReject(s, v.errs[i].message);
	}
	s->npending = kept;
}

/*
 * Whether this apply may commit without waiting for the WAL flush: the
 * transport's peer sends again what a crash lost here, or (an outgoing
 * stream: a server we dialed, which sends all our clock lacks on every
 * connection) more of its input is waiting: a sync's batches then commit
 * as a libpq pull's do, and the last one, once the input is drained,
 * flushes them all, as a flush per batch would have by then.
 */
static bool
commits_without_flush(SbSession *s)
{
	return s->ops->applies_without_flush || (s->outgoing && s->input_waiting);
}

/*
 * Leaves out of the queued clock the entries of other sources that an
 * update of the batch reaches: applying it moves that source's clock at
 * least as far (or finds it there), so raising it is a statement for
 * nothing.  A live pull's page ends with the remote's clock, most often
 * exactly where its updates end.  This node's own entries stay: they go
 * to the sequencer, not to a statement.
 */
static void
drop_clock_reached(SbSession *s)
{
	SbRemoteClock reached = {0};
	int			kept = 0;

	if (s->npending_clock == 0)
		return;					/* most pages of a sync: no header */
	for (int i = 0; i < s->npending; i++)
		SbRemoteClockRaise(&reached, s->batch_cxt, s->pending[i].source, s->pending[i].ts);
	for (int i = 0; i < s->npending_clock; i++)
	{
		SbClockEntry *e = &s->pending_clock[i];

		if (strcmp(e->source, s->model.node_id) == 0 ||
			e->ts > SbRemoteClockGet(&reached, e->source))
			s->pending_clock[kept++] = *e;
	}
	s->npending_clock = kept;
}

static void
apply_txn(SbSession *s, void *arg pg_attribute_unused())
{
	/* the worker's session commits without the flush (SbSessionCommitsWithoutFlush) */
	if (!commits_without_flush(s))
		SbCommitWithFlush();
	verify_pending(s);
	if (s->npending > 0)
		SbApplyUpdates(&s->model, s->pending, s->npending, NULL);
	drop_clock_reached(s);
	if (s->npending_clock > 0)
		SbRaiseClock(&s->model, s->pending_clock, s->npending_clock);
}

/*
 * Whether SbSessionApplyPending has work: updates or a clock to apply, or
 * the flush owed for an outgoing stream's batches once its input is
 * drained (a drained read may bring no new line)
 */
bool
SbSessionHasPending(SbSession *s)
{
	return s->npending > 0 || s->npending_clock > 0 ||
		(s->unflushed && !s->input_waiting);
}

/*
 * An apply's commit that was the only one counted since the apply began
 * holds nothing the peer lacks: updates it sent, a clock it vouched for.
 * A session caught up before it stays caught up, with no transaction to
 * find that out, and a transport that reads our clock may take it as it
 * knows it (applied_alone).
 */
static void
note_own_commit(SbSession *s, uint64 commits_before, uint64 model_before)
{
	if (SbLastCountedCommit() == commits_before + 1 &&
		s->caught_up && s->commits_seen == commits_before)
		s->commits_seen = commits_before + 1;
	s->applied_alone = SbLastCountedModelCommit(s->model.id) == model_before + 1 ?
		model_before + 1 : 0;
}

bool
SbSessionApplyPending(SbSession *s)
{
	uint64		commits_before;
	uint64		model_before;

	if (s->npending == 0 && s->npending_clock == 0)
	{
		/* the batches an outgoing stream committed while its input was waiting */
		if (SbSessionHasPending(s))
		{
			XLogFlush(XactLastCommitEnd);
			s->unflushed = false;
		}
		return true;
	}
	commits_before = SbCommitCount();
	model_before = SbModelCommitCount(s->model.id);
	if (!SbSessionTransaction(s, "scuttlebutt: applying updates", apply_txn, NULL))
		return false;
	note_own_commit(s, commits_before, model_before);
	/* a flushed commit flushes the ones before it too */
	s->unflushed = !s->ops->applies_without_flush && commits_without_flush(s);
	/* the peer holds what it sent us (and its clock): never echo it back */
	for (int i = 0; i < s->npending; i++)
		remote_raise(s, s->pending[i].source, s->pending[i].ts);
	for (int i = 0; i < s->npending_clock; i++)
		remote_raise(s, s->pending_clock[i].source, s->pending_clock[i].ts);
	forget_pending(s);
	return true;
}

/* ---- the outbox ---- */

void
SbSessionAppendLine(SbSession *s, const char *text, int len)
{
	MemoryContext old = MemoryContextSwitchTo(s->session_cxt);

	appendBinaryStringInfo(&s->out, text, len);
	appendStringInfoChar(&s->out, '\n');
	MemoryContextSwitchTo(old);
}

static int
cmp_entry_newest_first(const void *a, const void *b)
{
	double		ta = ((const SbClockEntry *) a)->ts;
	double		tb = ((const SbClockEntry *) b)->ts;

	return ta > tb ? -1 : (ta < tb ? 1 : 0);
}

/*
 * Of a clock too long for a header, the entries that fit in budget bytes
 * of JSON, newest first: the peer sends the history of the sources left
 * out again, and that of long-idle sources is the shortest.  Sorts clock;
 * returns how many of its entries to keep.
 */
static int
entries_that_fit(SbClockEntry *clock, int n, int budget)
{
	StringInfoData member;
	int			used = 0;
	int			keep;

	qsort(clock, n, sizeof(SbClockEntry), cmp_entry_newest_first);
	initStringInfo(&member);
	for (keep = 0; keep < n; keep++)
	{
		resetStringInfo(&member);
		SbAppendClockJson(&member, &clock[keep], 1);
		used += member.len - 1; /* "source":ts and a comma, in "{...}" */
		if (used > budget)
			break;
	}
	pfree(member.data);
	return keep;
}

/*
 * Our header, never longer than a peer with the default settings accepts
 * (SB_DEFAULT_MAX_HEADER_BYTES, whatever ours is): a clock too long for it
 * leaves out the sources with the oldest entries.  Nothing is lost: the
 * peer sends their history again, and it is dropped here as old.
 */
void
SbSessionAppendHeader(SbSession *s, const SbClockEntry *clock, int n,
					  const char *meta_model)
{
	StringInfoData line;

	initStringInfo(&line);
	SbWireAppendHeader(&line, s->model.node_id, clock, n, meta_model);
	if (line.len > SB_DEFAULT_MAX_HEADER_BYTES)
	{
		SbClockEntry *kept = palloc(sizeof(SbClockEntry) * n);
		int			keep;

		memcpy(kept, clock, sizeof(SbClockEntry) * n);
		resetStringInfo(&line);
		SbWireAppendHeader(&line, s->model.node_id, NULL, 0, meta_model);
		keep = entries_that_fit(kept, n, SB_DEFAULT_MAX_HEADER_BYTES - line.len);
		resetStringInfo(&line);
		SbWireAppendHeader(&line, s->model.node_id, kept, keep, meta_model);
		pfree(kept);
	}
	SbSessionAppendLine(s, line.data, line.len);
	pfree(line.data);
}

void
SbSessionOutboxConsumed(SbSession *s, int n)
{
	Assert(n <= s->out.len - s->out_off);
	s->out_off += n;
	s->counters.bytes_out += n;
	s->counters.last_activity = GetCurrentTimestamp();
	if (s->out_off == s->out.len)
	{
		/* a buffer grown by a page of large values is not kept when idle */
		if (s->out.maxlen > SB_OUT_KEEP)
		{
			pfree(s->out.data);
			s->out.data = MemoryContextAlloc(s->session_cxt, SB_OUT_INITIAL);
			s->out.maxlen = SB_OUT_INITIAL;
		}
		resetStringInfo(&s->out);
		s->out_off = 0;
	}
}

/* ---- sending history ---- */

typedef struct PumpArg
{
	bool		more;
	int64		lines;
	struct SharedPage *record;	/* fill it with what was read, or NULL */
} PumpArg;

/*
 * Pages shared by the sessions of one pass (SbSessionPumpShareBegin to
 * SbSessionPumpShareEnd).  With thousands of clients of one model, those
 * at the same point of its history lack the same page: every live one
 * after a commit, a reconnect storm's clients page by page.  The first
 * reads it in a transaction; the others, their outboxes as empty and
 * their peers' clocks the same as the reader's on every source of ours,
 * append its text with no transaction.  A page read during the pass
 * holds every commit counted before the pass began, all that
 * commits_seen promises.  Transports that take a clock (told ours after
 * a pass) read their own.
 */
typedef struct SharedPage
{
	int32		model_id;
	int			n;				/* the clock the page was read with */
	SbClockEntry *clock;
	double	   *from;			/* per source: the reader's peer's clock before */
	double	   *to;				/* ... and after the page */
	StringInfoData text;
	int64		lines;
	bool		more;
} SharedPage;

#define SB_SHARED_PAGES 16

static MemoryContext share_cxt;
static List *shared_pages;
static bool share_active;

/* Whether s's next page may be one shared in this pass */
static bool
may_share(SbSession *s)
{
	return share_active && !s->ops->takes_clock && SbSessionOutboxLength(s) == 0;
}

static bool
page_fits(SharedPage *p, SbSession *s)
{
	if (p->model_id != s->model.id)
		return false;
	for (int i = 0; i < p->n; i++)
		if (SbRemoteClockGet(&s->remote, p->clock[i].source) != p->from[i])
			return false;
	return true;
}

/* A page read this pass that s lacks as it stands, or NULL */
static SharedPage *
find_shared_page(SbSession *s)
{
	ListCell   *lc;

	if (!may_share(s))
		return NULL;
	foreach(lc, shared_pages)
	{
		SharedPage *p = lfirst(lc);

		if (page_fits(p, s))
			return p;
	}
	return NULL;
}

/* An empty page to record s's read in, or NULL when s's read is not shared */
static SharedPage *
new_shared_page(SbSession *s)
{
	SharedPage *p;

	if (!may_share(s) || list_length(shared_pages) >= SB_SHARED_PAGES)
		return NULL;
	p = MemoryContextAllocZero(share_cxt, sizeof(SharedPage));
	p->model_id = s->model.id;
	return p;
}

/* Notes, in record, the clock read and where s stood before the page */
static void
record_start(SharedPage *record, SbSession *s, const SbClockEntry *clock, int n)
{
	MemoryContext old = MemoryContextSwitchTo(share_cxt);

	record->n = n;
	record->clock = palloc(sizeof(SbClockEntry) * Max(n, 1));
	record->from = palloc(sizeof(double) * Max(n, 1));
	record->to = palloc(sizeof(double) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		record->clock[i].source = pstrdup(clock[i].source);
		record->clock[i].ts = clock[i].ts;
		record->from[i] = SbRemoteClockGet(&s->remote, clock[i].source);
	}
	MemoryContextSwitchTo(old);
}

/* ... and, once read, where s stands and what it was sent */
static void
record_end(SharedPage *record, SbSession *s, PumpArg *pa)
{
	MemoryContext old = MemoryContextSwitchTo(share_cxt);

	for (int i = 0; i < record->n; i++)
		record->to[i] = SbRemoteClockGet(&s->remote, record->clock[i].source);
	initStringInfo(&record->text);
	appendBinaryStringInfo(&record->text, s->out.data + s->out_off,
						   SbSessionOutboxLength(s));
	record->lines = pa->lines;
	record->more = pa->more;
	shared_pages = lappend(shared_pages, record);
	MemoryContextSwitchTo(old);
}

/* s is sent page p as if it had read it */
static void
take_shared_page(SbSession *s, SharedPage *p, PumpArg *pa)
{
	appendBinaryStringInfo(&s->out, p->text.data, p->text.len);
	for (int i = 0; i < p->n; i++)
		if (p->to[i] > SbRemoteClockGet(&s->remote, p->clock[i].source))
			remote_raise(s, p->clock[i].source, p->to[i]);
	pa->lines = p->lines;
	pa->more = p->more;
}

void
SbSessionPumpShareBegin(void)
{
	if (share_cxt == NULL)
		share_cxt = AllocSetContextCreate(TopMemoryContext, "scuttlebutt shared pages",
										  ALLOCSET_DEFAULT_SIZES);
	shared_pages = NIL;
	share_active = true;
}

void
SbSessionPumpShareEnd(void)
{
	share_active = false;
	shared_pages = NIL;
	if (share_cxt)
		MemoryContextReset(share_cxt);
}

/*
 * A page of what the peer lacks, per source, all read in this
 * transaction's one snapshot with the clock that bounds it.  A page ends
 * at SB_HISTORY_PAGE updates or once the outbox passes its high-water
 * mark, whichever comes first: the outbox holds at most one update beyond
 * the mark, whatever the values' sizes.
 *
 * A source read to its end that came short of our clock holds no more
 * updates up to it: the rest were superseded here (a local write
 * overwritten by one pulled before this read it, say).  The peer holds what superseded them,
 * or gets it from this pass, but not their timestamps, so its clock would
 * stay behind ours for good.  A peer whose transport takes a clock is then
 * told ours, after the updates of a pass that read everything it lacked
 * (its apply vouches for them, as poll()'s header does the other way).  A
 * stream peer cannot be told: the reference's protocol carries a clock
 * only in the first header.
 */
static void
pump_txn(SbSession *s, void *arg)
{
	PumpArg    *pa = arg;
	SbClockEntry *clock;
	int			n = SbReadClock(&s->model, &clock, true);
	int			budget = SB_HISTORY_PAGE;

	if (pa->record)
		record_start(pa->record, s, clock, n);
	for (int i = 0; i < n; i++)
	{
		double		held = SbRemoteClockGet(&s->remote, clock[i].source);
		double		last = held;
		int			got;
		bool		complete;

		if (clock[i].ts <= held)
			continue;
		if (budget == 0 || SbSessionOutboxLength(s) >= SB_OUT_HIGH_WATER)
		{
			pa->more = true;
			break;
		}
		/* the page ends where the outbox passes its high-water mark */
		got = SbReadHistoryPage(&s->model, clock[i].source, held, clock[i].ts,
								budget, SB_OUT_HIGH_WATER - SbSessionOutboxLength(s),
								&s->out, &last, &complete);
		budget -= got;
		pa->lines += got;
		if (got > 0)
			remote_raise(s, clock[i].source, last);
		if (complete)
		{
			/* nothing more is held up to the clock: the rest was superseded */
			if (clock[i].ts > last)
				s->clock_owed = true;
			remote_raise(s, clock[i].source, clock[i].ts);
		}
		else
			pa->more = true;
	}
	if (!pa->more && s->clock_owed && s->ops->takes_clock)
	{
		SbSessionAppendHeader(s, clock, n, NULL);
		s->clock_owed = false;
	}
}

static void
send_sync(SbSession *s)
{
	StringInfoData line;

	if (s->sync_sent)
		return;
	initStringInfo(&line);
	SbWireAppendSync(&line);
	SbSessionAppendLine(s, line.data, line.len);
	pfree(line.data);
	s->sync_sent = true;
	note_live(s);
}

/*
 * "SYNC" once our history is sent; on an incoming connection only once
 * the peer's "SYNC" came and all before it is committed (durable sync)
 */
static void
send_sync_when_durable(SbSession *s)
{
	if (s->outgoing || (s->sync_received && s->npending == 0 && s->npending_clock == 0))
		send_sync(s);
}

bool
SbSessionPump(SbSession *s, uint64 commits)
{
	PumpArg		pa = {false, 0, NULL};
	SharedPage *page;

	if (!s->peer_clock_known ||
		(s->state != SB_SESSION_SYNCING && s->state != SB_SESSION_LIVE))
		return true;

	/*
	 * A side that sends nothing (readable: false) still answers the peer's
	 * header with "SYNC", as the reference does, so the peer can go live.
	 */
	if (!s->send_enabled)
	{
		send_sync_when_durable(s);
		s->caught_up = true;
		s->commits_seen = commits;
		return true;
	}
	if (s->caught_up && s->commits_seen >= commits)
	{
		send_sync_when_durable(s);
		return true;
	}
	if (SbSessionOutboxLength(s) >= SB_OUT_HIGH_WATER)
		return true;

	if ((page = find_shared_page(s)) != NULL)
		take_shared_page(s, page, &pa);
	else
	{
		pa.record = new_shared_page(s);
		if (!SbSessionTransaction(s, "scuttlebutt: sending history", pump_txn, &pa))
			return false;
		if (pa.record)
			record_end(pa.record, s, &pa);
	}
	s->counters.sent += pa.lines;
	if (pa.more)
	{
		s->caught_up = false;
		return true;
	}
	s->caught_up = true;
	s->commits_seen = commits;
	send_sync_when_durable(s);
	return true;
}

/* Further ahead than this, a deferred update is not waited for */
#define SB_REDIAL_HORIZON_MS (24 * 3600 * 1000.0)

TimestampTz
SbSessionRedialAt(SbSession *s)
{
	double		wait_ms;

	if (!s->outgoing || !SbSessionIsOpen(s) || !isfinite(s->deferred_first))
		return 0;
	wait_ms = s->deferred_first - SbTimestampBound();
	if (wait_ms > SB_REDIAL_HORIZON_MS)
		return 0;
	return TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
									   (int64) Max(wait_ms, 0) + 1);
}

void
SbSessionRedialIfDue(SbSession *s)
{
	if (s->outgoing && SbSessionIsOpen(s) &&
		s->deferred_first <= SbTimestampBound())
		SbSessionClose(s, SB_CLOSE_DEFERRED_DUE,
					   "Updates deferred for being ahead of this server's clock are within scuttlebutt.max_clock_skew now: the peer sends them again on the next connection.");
}

/*
 * Whether SbSessionPump (and the flush after it) may have work: not when
 * the session is caught up with these commits, its "SYNC" sent, and
 * nothing waits to be written.
 */
bool
SbSessionPumpDue(SbSession *s, uint64 commits)
{
	return !(s->caught_up && s->commits_seen >= commits && s->sync_sent) ||
		SbSessionOutboxLength(s) > 0 || !s->ops->idle(s);
}

/* Whether history is left to send that the outbox has room for */
bool
SbSessionWantsPump(SbSession *s)
{
	return SbSessionIsOpen(s) && s->send_enabled && s->peer_clock_known &&
		!s->caught_up &&
		(s->state == SB_SESSION_SYNCING || s->state == SB_SESSION_LIVE) &&
		SbSessionOutboxLength(s) == 0;
}

bool
SbSessionCaughtUp(SbSession *s, uint64 commits)
{
	return s->state == SB_SESSION_LIVE && s->npending == 0 &&
		SbSessionOutboxLength(s) == 0 &&
		(!s->send_enabled || (s->caught_up && s->commits_seen >= commits)) &&
		s->ops->idle(s);
}
