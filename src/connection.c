/*-------------------------------------------------------------------------
 *
 * connection.c
 *	  One scuttlebutt stream: a socket, one model, its state machine.
 *
 * A stream runs as the reference's createStream() does:
 *
 *	  both sides send a header {"id", "clock"[, "meta"]}; on the peer's
 *	  header a side sends the history the peer's clock lacks, then "SYNC",
 *	  then keeps sending new updates (tailing); both "SYNC"s exchanged, the
 *	  stream is live.
 *
 * An incoming connection learns its model from the peer's header meta (a
 * string, or an object with a "model" field); an outgoing one names it in
 * its own header's meta.
 *
 * What the peer holds is tracked per source (SbRemoteClock): its header
 * clock, then every update sent to it or received from it.  Sending is a
 * "pump": per source, the held updates newer than what the peer holds, a
 * page at a time, each page in its own short transaction, and only while
 * the output buffer is below its high-water mark.  So an initial sync of
 * any size streams with bounded memory and no long transaction, and a slow
 * peer only slows itself.  Tailing is the same pump, run when a commit
 * anywhere bumps the shared commit counter.  Updates received from this
 * peer count as held by it: they are never echoed back.
 *
 * Received updates are applied in batches, one transaction per batch,
 * under the same rules as apply_update().  A line that is not JSON, a
 * header without a clock, or a line longer than scuttlebutt.max_line_bytes
 * closes the connection; an update that is JSON but invalid is dropped and
 * counted (as the reference drops it), and the stream goes on.
 *
 * Errors from table work (a transaction that fails) close this connection
 * with the error's message; they never reach the worker's main loop.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>
#include <sys/socket.h>
#include <unistd.h>

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "connection.h"
#include "guc.h"
#include "jstext.h"
#include "libpq_peer.h"
#include "shmem.h"

/* At most one WARNING per connection this often for rejected updates */
#define SB_REJECT_WARNING_INTERVAL_MS 10000

static bool handle_line(SbConn *conn, const char *line, int len);

const char *
SbConnStateName(SbConnState state)
{
	switch (state)
	{
		case SB_CONN_CONNECTING:
			return "connecting";
		case SB_CONN_HANDSHAKE:
			return "handshake";
		case SB_CONN_SYNCING:
			return "syncing";
		case SB_CONN_LIVE:
			return "live";
		case SB_CONN_BACKOFF:
			return "backoff";
		case SB_CONN_CLOSED:
			return "closed";
	}
	return "?";
}

SbConn *
SbConnCreate(MemoryContext parent, bool outgoing)
{
	MemoryContext cxt = AllocSetContextCreate(parent, "scuttlebutt connection",
											  ALLOCSET_DEFAULT_SIZES);
	SbConn	   *conn = MemoryContextAllocZero(cxt, sizeof(SbConn));

	conn->cxt = cxt;
	conn->session_cxt = AllocSetContextCreate(cxt, "scuttlebutt session",
											  ALLOCSET_DEFAULT_SIZES);
	conn->batch_cxt = AllocSetContextCreate(cxt, "scuttlebutt batch",
											ALLOCSET_DEFAULT_SIZES);
	conn->sock = PGINVALID_SOCKET;
	conn->slot = -1;
	conn->outgoing = outgoing;
	conn->send_enabled = true;
	conn->receive_enabled = true;
	conn->state = outgoing ? SB_CONN_BACKOFF : SB_CONN_HANDSHAKE;
	return conn;
}

void
SbConnFree(SbConn *conn)
{
	if (conn->sock != PGINVALID_SOCKET)
		closesocket(conn->sock);
	if (conn->libpq)
		SbLibpqDisconnect(conn);
	MemoryContextDelete(conn->cxt);
}

/* ---- what the peer holds ---- */

static int
remote_find(SbRemoteClock *rc, const char *source, bool *found)
{
	int			lo = 0;
	int			hi = rc->n - 1;

	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;
		int			c = strcmp(rc->entries[mid].source, source);

		if (c == 0)
		{
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	*found = false;
	return lo;
}

double
SbRemoteClockGet(SbRemoteClock *rc, const char *source)
{
	bool		found;
	int			i = remote_find(rc, source, &found);

	return found ? rc->entries[i].ts : -INFINITY;
}

void
SbRemoteClockRaise(SbRemoteClock *rc, MemoryContext cxt, const char *source, double ts)
{
	bool		found;
	int			i = remote_find(rc, source, &found);

	if (found)
	{
		if (ts > rc->entries[i].ts)
			rc->entries[i].ts = ts;
		return;
	}
	if (rc->n == rc->alloc)
	{
		rc->alloc = Max(16, rc->alloc * 2);
		rc->entries = rc->entries
			? repalloc(rc->entries, sizeof(SbClockEntry) * rc->alloc)
			: MemoryContextAlloc(cxt, sizeof(SbClockEntry) * rc->alloc);
	}
	memmove(&rc->entries[i + 1], &rc->entries[i], sizeof(SbClockEntry) * (rc->n - i));
	rc->entries[i].source = MemoryContextStrdup(cxt, source);
	rc->entries[i].ts = ts;
	rc->n++;
}

/* Raises the peer's entry for source to ts (allocating in the session) */
static void
remote_raise(SbConn *conn, const char *source, double ts)
{
	SbRemoteClockRaise(&conn->remote, conn->session_cxt, source, ts);
}

/* ---- closing ---- */

void
SbConnClose(SbConn *conn, const char *reason, const char *detail)
{
	if (reason != NULL)
	{
		/* a peer's orderly close is news, not a fault */
		bool		orderly = strcmp(reason, "closed by peer") == 0;

		ereport(orderly ? LOG : WARNING,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("scuttlebutt: closing connection %s %s: %s",
						conn->outgoing ? "to" : "from", conn->remote_addr, reason),
				 detail ? errdetail_internal("%s", detail) : 0));
		SbCountConnectionError(reason, conn->remote_addr);
		snprintf(conn->last_error, sizeof(conn->last_error), "%s%s%s",
				 reason, detail ? ": " : "", detail ? detail : "");
	}
	if (conn->sock != PGINVALID_SOCKET)
	{
		closesocket(conn->sock);
		conn->sock = PGINVALID_SOCKET;
	}
	if (conn->libpq)
		SbLibpqDisconnect(conn);
	conn->npending = 0;
	conn->pending = NULL;
	conn->pending_alloc = 0;
	conn->pending_clock = NULL;
	conn->npending_clock = 0;
	MemoryContextReset(conn->batch_cxt);
	if (conn->outgoing)
	{
		int			delay = conn->backoff_ms > 0 ? conn->backoff_ms : sb_reconnect_min_ms;

		conn->state = SB_CONN_BACKOFF;
		conn->deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), delay);
		conn->backoff_ms = Min((int64) delay * 2, (int64) sb_reconnect_max_ms);
	}
	else
		conn->state = SB_CONN_CLOSED;
}

/* ---- transactions ---- */

bool
SbConnTransaction(SbConn *conn, const char *activity, SbConnTxnFn fn, void *arg)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	volatile bool ok = true;

	PG_TRY();
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, activity);

		fn(conn, arg);

		PopActiveSnapshot();
		CommitTransactionCommand();
		pgstat_report_activity(STATE_IDLE, NULL);
		MemoryContextSwitchTo(oldcxt);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		pgstat_report_activity(STATE_IDLE, NULL);
		MemoryContextSwitchTo(oldcxt);
		/* the detail (a deadlock's lock cycle, say) goes to the log only */
		if (edata->detail)
			ereport(LOG,
					(errmsg("scuttlebutt: %s in a transaction for %s", edata->message,
							conn->remote_addr),
					 errdetail_internal("%s", edata->detail)));
		SbConnClose(conn, "database error", edata->message);
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/* ---- output ---- */

static void
append_line(SbConn *conn, const char *text, int len)
{
	MemoryContext old = MemoryContextSwitchTo(conn->session_cxt);

	appendBinaryStringInfo(&conn->out, text, len);
	appendStringInfoChar(&conn->out, '\n');
	MemoryContextSwitchTo(old);
}

/* Appends our header {"id":...,"clock":{...}}, meta = model when we dialed */
static void
append_header(SbConn *conn, SbClockEntry *clock, int n)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"id\":");
	JsAppendString(&buf, conn->model.node_id, strlen(conn->model.node_id));
	appendStringInfoString(&buf, ",\"clock\":");
	SbAppendClockJson(&buf, clock, n);
	if (conn->outgoing)
	{
		appendStringInfoString(&buf, ",\"meta\":");
		JsAppendString(&buf, conn->model_name, strlen(conn->model_name));
	}
	appendStringInfoChar(&buf, '}');
	append_line(conn, buf.data, buf.len);
}

/* Our header, with the clock as it is now */
static void
send_header_txn(SbConn *conn, void *arg)
{
	SbClockEntry *clock;
	int			n = SbReadClock(&conn->model, &clock, false);

	append_header(conn, clock, n);
}

typedef struct HeaderArg
{
	bool		unknown_model;
} HeaderArg;

/* Resolves the model if needed, then writes our header */
static void
header_txn(SbConn *conn, void *arg)
{
	HeaderArg  *ha = arg;

	if (!conn->model_known)
	{
		if (!SbModelTryLookup(conn->model_name, &conn->model))
		{
			ha->unknown_model = true;
			return;
		}
		conn->model_known = true;
	}
	send_header_txn(conn, NULL);
}

static bool
send_header(SbConn *conn)
{
	HeaderArg	ha = {false};

	if (!SbConnTransaction(conn, "scuttlebutt: sending header", header_txn, &ha))
		return false;
	if (ha.unknown_model)
	{
		SbConnClose(conn, "unknown model",
					psprintf("There is no scuttlebutt model \"%s\" here.", conn->model_name));
		return false;
	}
	conn->header_sent = true;
	return true;
}

/*
 * After send() or recv() returned -1: 1 to retry (EINTR), 0 when the socket
 * would block, -1 when the connection is lost (closed here, after applying
 * what the peer had sent).
 */
static int
io_failed(SbConn *conn)
{
	int			saved_errno = errno;

	if (saved_errno == EINTR)
		return 1;
	if (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK)
		return 0;
	if (SbConnApplyPending(conn))
		SbConnClose(conn, "connection lost", strerror(saved_errno));
	return -1;
}

bool
SbConnWrite(SbConn *conn)
{
	while (conn->out_off < conn->out.len)
	{
		ssize_t		n = send(conn->sock, conn->out.data + conn->out_off,
							 conn->out.len - conn->out_off, 0);

		if (n < 0)
		{
			int			rc = io_failed(conn);

			if (rc > 0)
				continue;
			return rc == 0;
		}
		conn->out_off += n;
		conn->bytes_out += n;
		conn->last_activity = GetCurrentTimestamp();
	}
	resetStringInfo(&conn->out);
	conn->out_off = 0;
	return true;
}

bool
SbConnFlush(SbConn *conn)
{
	if (conn->transport == SB_TRANSPORT_LIBPQ)
		return SbLibpqFlush(conn);
	return !SbConnWantsWrite(conn) || SbConnWrite(conn);
}

/* ---- starting ---- */

void
SbConnBeginSession(SbConn *conn)
{
	MemoryContext old;

	MemoryContextReset(conn->session_cxt);
	MemoryContextReset(conn->batch_cxt);
	old = MemoryContextSwitchTo(conn->session_cxt);
	initStringInfo(&conn->in);
	initStringInfo(&conn->out);
	MemoryContextSwitchTo(old);
	conn->out_off = 0;
	conn->remote_id = NULL;
	conn->header_sent = conn->header_received = false;
	conn->sync_sent = conn->sync_received = false;
	memset(&conn->remote, 0, sizeof(conn->remote));
	conn->clock_owed = false;
	conn->caught_up = false;
	conn->pending = NULL;
	conn->npending = conn->pending_alloc = 0;
	conn->pending_clock = NULL;
	conn->npending_clock = 0;
	conn->synced_at = 0;
	conn->state = SB_CONN_HANDSHAKE;
	conn->last_activity = GetCurrentTimestamp();
	conn->deadline = TimestampTzPlusMilliseconds(conn->last_activity,
												 sb_handshake_timeout_ms);
	/* a side that accepts nothing has no SYNC to wait for (reference) */
	if (!conn->receive_enabled)
		conn->sync_received = true;
}

void
SbConnStart(SbConn *conn, pgsocket sock, const char *remote_addr)
{
	SbConnBeginSession(conn);
	conn->sock = sock;
	strlcpy(conn->remote_addr, remote_addr, sizeof(conn->remote_addr));
	if (conn->outgoing)
		(void) send_header(conn);
}

/* ---- input ---- */

bool
SbConnRead(SbConn *conn)
{
	char		buf[65536];
	int			budget = SB_READ_BUDGET;

	/*
	 * Read at most a budget per call, then let the loop serve the other
	 * connections and publish status: the socket stays readable, so the
	 * next iteration comes straight back here.
	 */
	while (budget > 0)
	{
		ssize_t		n = recv(conn->sock, buf, sizeof(buf), 0);
		int			start = 0;
		char	   *nl;

		if (n < 0)
		{
			int			rc = io_failed(conn);

			if (rc > 0)
				continue;
			return rc == 0;
		}
		if (n == 0)
		{
			/* the complete lines a peer sent before going away still count */
			if (!SbConnApplyPending(conn))
				return false;
			if (conn->in.len > 0)
				SbConnClose(conn, "closed in the middle of a line",
							psprintf("%d bytes of an unfinished line were dropped.",
									 conn->in.len));
			else
				SbConnClose(conn, "closed by peer", NULL);
			return false;
		}
		conn->bytes_in += n;
		budget -= n;
		conn->last_activity = GetCurrentTimestamp();

		{
			MemoryContext old = MemoryContextSwitchTo(conn->session_cxt);

			appendBinaryStringInfo(&conn->in, buf, n);
			MemoryContextSwitchTo(old);
		}

		/* every complete line; the rest waits for more bytes */
		while ((nl = memchr(conn->in.data + start, '\n', conn->in.len - start)) != NULL)
		{
			int			len = nl - (conn->in.data + start);

			if (len > sb_max_line_bytes)
			{
				SbConnClose(conn, "line too long",
							psprintf("A line of %d bytes is longer than scuttlebutt.max_line_bytes (%d).",
									 len, sb_max_line_bytes));
				return false;
			}
			if (!handle_line(conn, conn->in.data + start, len))
				return false;
			start += len + 1;
		}
		if (start > 0)
		{
			memmove(conn->in.data, conn->in.data + start, conn->in.len - start);
			conn->in.len -= start;
			conn->in.data[conn->in.len] = '\0';
		}
		/* a partial line past the limit: close now, do not buffer the rest */
		if (conn->in.len > sb_max_line_bytes)
		{
			SbConnClose(conn, "line too long",
						psprintf("More than scuttlebutt.max_line_bytes (%d) bytes without a newline.",
								 sb_max_line_bytes));
			return false;
		}
		if (conn->npending >= SB_APPLY_BATCH && !SbConnApplyPending(conn))
			return false;
	}
	return true;
}

static void
reject_update(SbConn *conn, const char *why)
{
	TimestampTz now = GetCurrentTimestamp();

	conn->rejected++;
	conn->rejects_unreported++;
	if (TimestampDifferenceExceeds(conn->last_reject_warning, now,
								   SB_REJECT_WARNING_INTERVAL_MS))
	{
		ereport(WARNING,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("scuttlebutt: dropped %lld invalid update(s) from %s: %s",
						(long long) conn->rejects_unreported, conn->remote_addr, why)));
		conn->last_reject_warning = now;
		conn->rejects_unreported = 0;
	}
	snprintf(conn->last_error, sizeof(conn->last_error), "rejected update: %s", why);
}

static bool
handle_header(SbConn *conn, SbMessage *msg)
{
	MemoryContext old;

	if (conn->header_received)
		return true;			/* a second header changes nothing */

	if (!conn->outgoing)
	{
		if (msg->meta_model == NULL)
		{
			SbConnClose(conn, "no model named",
						"The header's meta must name a model: a string, or an object with a \"model\" field.");
			return false;
		}
		old = MemoryContextSwitchTo(conn->cxt);
		conn->model_name = pstrdup(msg->meta_model);
		MemoryContextSwitchTo(old);
		if (!send_header(conn))
			return false;
	}

	old = MemoryContextSwitchTo(conn->session_cxt);
	if (msg->id)
		conn->remote_id = pstrdup(msg->id);
	MemoryContextSwitchTo(old);
	for (int i = 0; i < msg->nclock; i++)
		remote_raise(conn, msg->clock[i].source, msg->clock[i].ts);
	conn->header_received = true;
	conn->state = SB_CONN_SYNCING;
	conn->caught_up = false;
	SbConnNoteSynced(conn);
	return true;
}

void
SbConnNoteSynced(SbConn *conn)
{
	if (conn->sync_sent && conn->sync_received && conn->state == SB_CONN_SYNCING)
	{
		conn->state = SB_CONN_LIVE;
		conn->synced_at = GetCurrentTimestamp();
		conn->backoff_ms = 0;	/* a good session resets the back-off */
	}
}

static bool
queue_update(SbConn *conn, SbMessage *msg)
{
	MemoryContext old = MemoryContextSwitchTo(conn->batch_cxt);
	SbMessage  *copy;

	if (conn->npending == conn->pending_alloc)
	{
		conn->pending_alloc = Max(64, conn->pending_alloc * 2);
		conn->pending = conn->pending
			? repalloc(conn->pending, sizeof(SbMessage) * conn->pending_alloc)
			: palloc(sizeof(SbMessage) * conn->pending_alloc);
	}
	copy = &conn->pending[conn->npending++];
	*copy = *msg;
	copy->text = pnstrdup(msg->text, msg->len);
	copy->source = pstrdup(msg->source);
	copy->key = msg->key ? pstrdup(msg->key) : NULL;
	copy->signature = NULL;
	copy->clock = NULL;
	MemoryContextSwitchTo(old);
	return true;
}

static bool
handle_line(SbConn *conn, const char *line, int len)
{
	SbMessage	msg;
	SbMessageError err;
	bool		ok;

	while (len > 0 && line[len - 1] == '\r')
		len--;
	if (len == 0)
		return true;

	ok = SbParseMessage(line, len, &msg, &err);
	return SbConnReceive(conn, &msg, ok, &err);
}

bool
SbConnReceive(SbConn *conn, SbMessage *msg, bool ok, SbMessageError *err)
{
	if (!ok)
	{
		/* not JSON, or a header without a clock: the stream is broken */
		if (msg->type == SB_MSG_HEADER ||
			err->sqlerrcode == ERRCODE_INVALID_TEXT_REPRESENTATION)
		{
			SbConnClose(conn, msg->type == SB_MSG_HEADER ? "invalid header" : "invalid JSON",
						err->message);
			return false;
		}
		/* JSON, but an update we cannot take: drop it, as the reference does */
		reject_update(conn, err->message);
		return true;
	}

	switch (msg->type)
	{
		case SB_MSG_HEADER:
			return handle_header(conn, msg);
		case SB_MSG_SYNC:
			conn->sync_received = true;
			SbConnNoteSynced(conn);
			return true;
		case SB_MSG_IGNORED:
			return true;
		case SB_MSG_UPDATE:
			break;
	}

	if (!conn->model_known)
	{
		SbConnClose(conn, "update before header",
					"An incoming stream must start with a header naming its model.");
		return false;
	}
	conn->received++;
	if (!conn->receive_enabled)
		return true;			/* read-only: accepted, not applied */
	if (!SbCheckUpdateForKind(msg, conn->model.kind, err))
	{
		reject_update(conn, err->message);
		return true;
	}
	return queue_update(conn, msg);
}

/* ---- applying ---- */

void
SbConnQueueClock(SbConn *conn, SbClockEntry *entries, int n)
{
	MemoryContext old = MemoryContextSwitchTo(conn->batch_cxt);

	conn->pending_clock = palloc(sizeof(SbClockEntry) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		conn->pending_clock[i].source = pstrdup(entries[i].source);
		conn->pending_clock[i].ts = entries[i].ts;
	}
	conn->npending_clock = n;
	MemoryContextSwitchTo(old);
}

static void
apply_txn(SbConn *conn, void *arg)
{
	if (conn->npending > 0)
		SbApplyUpdates(&conn->model, conn->pending, conn->npending, NULL);
	if (conn->npending_clock > 0)
		SbRaiseClock(&conn->model, conn->pending_clock, conn->npending_clock);
}

bool
SbConnApplyPending(SbConn *conn)
{
	if (conn->npending == 0 && conn->npending_clock == 0)
		return true;
	if (!SbConnTransaction(conn, "scuttlebutt: applying updates", apply_txn, NULL))
		return false;
	/* the peer holds what it sent us (and its clock): never echo it back */
	for (int i = 0; i < conn->npending; i++)
		remote_raise(conn, conn->pending[i].source, conn->pending[i].ts);
	for (int i = 0; i < conn->npending_clock; i++)
		remote_raise(conn, conn->pending_clock[i].source, conn->pending_clock[i].ts);
	conn->npending = 0;
	conn->pending = NULL;
	conn->pending_alloc = 0;
	conn->pending_clock = NULL;
	conn->npending_clock = 0;
	MemoryContextReset(conn->batch_cxt);
	return true;
}

/* ---- sending history ---- */

typedef struct PumpArg
{
	bool		more;
	int64		lines;
} PumpArg;

/*
 * A page of what the peer lacks, per source, all read in this
 * transaction's one snapshot with the clock that bounds it.
 *
 * A source whose page came short of our clock holds no more updates up to
 * it: the rest were superseded here (a local write overwritten by one
 * pulled before this read it, say).  The peer holds what superseded them,
 * or gets it from this pass, but not their timestamps, so its clock would
 * stay behind ours for good.  A libpq peer is then told our clock, after
 * the updates of a pass that read everything the peer lacked (its
 * import vouches for them, as poll()'s header does the other way).  A
 * stream peer cannot be told: the reference's protocol carries a clock
 * only in the first header.
 */
static void
pump_txn(SbConn *conn, void *arg)
{
	PumpArg    *pa = arg;
	SbClockEntry *clock;
	int			n = SbReadClock(&conn->model, &clock, true);
	int			budget = SB_HISTORY_PAGE;

	for (int i = 0; i < n; i++)
	{
		double		held = SbRemoteClockGet(&conn->remote, clock[i].source);
		double		last = held;
		int			got;
		MemoryContext old;

		if (clock[i].ts <= held)
			continue;
		if (budget == 0 || conn->out.len - conn->out_off >= SB_OUT_HIGH_WATER)
		{
			pa->more = true;
			break;
		}
		old = MemoryContextSwitchTo(conn->session_cxt);
		got = SbReadHistoryPage(&conn->model, clock[i].source, held, budget,
								&conn->out, &last);
		MemoryContextSwitchTo(old);
		budget -= got;
		pa->lines += got;
		if (got > 0)
			remote_raise(conn, clock[i].source, last);
		if (budget > 0)
		{
			/* nothing more is held up to the clock: the rest was superseded */
			if (clock[i].ts > last)
				conn->clock_owed = true;
			remote_raise(conn, clock[i].source, clock[i].ts);
		}
		else
			pa->more = true;
	}
	if (!pa->more && conn->clock_owed && conn->transport == SB_TRANSPORT_LIBPQ)
	{
		append_header(conn, clock, n);
		conn->clock_owed = false;
	}
}

bool
SbConnPump(SbConn *conn, uint64 commits)
{
	PumpArg		pa = {false, 0};

	if (!conn->header_received || !conn->header_sent ||
		(conn->state != SB_CONN_SYNCING && conn->state != SB_CONN_LIVE))
		return true;

	/*
	 * A side that sends nothing (readable: false) still answers the peer's
	 * header with "SYNC", as the reference does, so the peer can go live.
	 */
	if (!conn->send_enabled)
	{
		if (!conn->sync_sent)
		{
			append_line(conn, "\"SYNC\"", 6);
			conn->sync_sent = true;
			SbConnNoteSynced(conn);
		}
		conn->caught_up = true;
		conn->commits_seen = commits;
		return true;
	}
	if (conn->caught_up && conn->commits_seen == commits)
		return true;
	if (conn->out.len - conn->out_off >= SB_OUT_HIGH_WATER)
		return true;

	if (!SbConnTransaction(conn, "scuttlebutt: sending history", pump_txn, &pa))
		return false;
	conn->sent += pa.lines;
	if (pa.more)
	{
		conn->caught_up = false;
		return true;
	}
	conn->caught_up = true;
	conn->commits_seen = commits;
	if (!conn->sync_sent)
	{
		append_line(conn, "\"SYNC\"", 6);
		conn->sync_sent = true;
		SbConnNoteSynced(conn);
	}
	return true;
}
