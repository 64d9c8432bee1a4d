/*-------------------------------------------------------------------------
 *
 * scuttlebutt.c
 *	  Entry point of the scuttlebutt extension.
 *
 * scuttlebutt keeps the replicated data models of the JavaScript
 * scuttlebutt package (key/value model, events, r-value) in tables.  Each
 * concern lives in its own file:
 *
 *	scuttlebutt.c		_PG_init: each module's Init
 *	guc.c				configuration parameters
 *	jstext.c			JSON text byte for byte as JSON.stringify writes it
 *	wire.c				the wire codec: parses and writes every line
 *	merge.c				the kinds and their merge rules (pure functions)
 *	timestamp.c			local timestamps
 *	spi_util.c			prepared statements and array parameters (SPI)
 *	store.c				table access: lookups, local writes, clocks, history
 *	apply.c				batched applies of updates from elsewhere
 *	model_cache.c		per-backend cache of model lookups
 *	privileges.c		per-model privileges held, and table work as the
 *						extension's owner
 *	sequencer.c			local timestamps in shared memory, visible limits
 *	reservation.c		the sequencer's clocks row (table access)
 *	rejoin.c			after a restore, no local write before the peers synced
 *	shmem.c				shared state, commit counts, waking the worker
 *	commit.c			the one transaction callback (sequencer, then wake-ups)
 *	worker.c			the replication worker: loop, wait set, peer list
 *	session.c			a peer session, whatever carries it: states,
 *						pending batch, history sender ("pump")
 *	remote_clock.c		what a peer holds, per source
 *	close_reason.c		why a session ended: name, errcode, level
 *	transport.h			the interface a transport fills in
 *	stream.c			the stream transport: the line protocol on a channel
 *	channel_tcp.c		the plain TCP byte channel under it
 *	listener.c			the stream listener's sockets
 *	libpq_peer.c		the libpq transport: a peer dialed over libpq
 *	conninfo.c			libpq connection strings shown without passwords
 *	sql_util.c			input checks shared by the SQL-callable functions
 *	sql_internal.c		the internal _functions used across surfaces
 *	sql_model.c			create_model, drop_model, set, delete, set_many
 *	sql_events.c		emit
 *	sql_value.c			set_value
 *	sql_history.c		apply_update, history()'s argument check
 *	sql_streams.c		export() / import() dumps
 *	sql_json.c			stringify
 *	sql_peers.c			peers and monitoring (peer_status, wait_for_sync)
 *	sql_poll.c			poll(), the remote end of a libpq peer
 *	sql_privileges.c	grant, revoke, and the readers' row policy
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"

#include "miscadmin.h"

#include "commit.h"
#include "guc.h"
#include "model_cache.h"
#include "privileges.h"
#include "shmem.h"
#include "trusted_keys.h"
#include "worker.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	SbGucInit();
	SbModelCacheInit();
	SbTrustedKeysInit();
	SbPrivilegesInit();
	SbShmemInit();
	SbCommitInit();
	SbWorkerInit();
}
