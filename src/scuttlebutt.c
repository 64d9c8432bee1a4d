/*-------------------------------------------------------------------------
 *
 * scuttlebutt.c
 *	  Entry point of the scuttlebutt extension.
 *
 * scuttlebutt keeps the replicated data models of the JavaScript
 * scuttlebutt package (key/value model, events, r-value) in tables.  Each
 * concern lives in its own file:
 *
 *	jstext.c			JSON text byte for byte as JSON.stringify writes it
 *	wire_message.c		parsing one line of the wire protocol
 *	timestamp.c			local timestamps
 *	model_store.c		the tables: clocks, merge rule, batches (SPI)
 *	model_cache.c		per-backend cache of model lookups
 *	guc.c				configuration parameters
 *	shmem.c				shared state, and waking the worker at commit
 *	worker.c			the replication worker's loop, listener, peers
 *	connection.c		one stream connection's state machine
 *	peer_functions.c	SQL functions for peers and monitoring
 *	model_functions.c	SQL functions that create and write models
 *	stream_functions.c	export() / import() dumps
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"

#include "miscadmin.h"

#include "guc.h"
#include "model_cache.h"
#include "shmem.h"
#include "worker.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	SbGucInit();
	SbModelCacheInit();
	SbShmemInit();
	SbWorkerInit();
}
