/*-------------------------------------------------------------------------
 *
 * commit.c
 *	  The extension's one transaction callback: the commit path, in the
 *	  order it must run.
 *
 * A transaction that wrote a model ends in two steps, and their order is
 * enforced here, not left to the order of callback registration (which
 * PostgreSQL calls newest first):
 *
 *	1. the sequencer (sequencer.c) publishes the timestamps the
 *	   transaction took as committed, or forgets them on abort;
 *	2. shared memory (shmem.c) moves the commit counts and wakes the
 *	   worker and the backends waiting in poll().
 *
 * Why this order: a reader woken in step 2 computes its visible limit of
 * this node's source from the sequencer.  Were it woken first, it could
 * still find the transaction's entry running, hold its limit below the
 * new write, find nothing new and wait again; the write would then reach
 * peers only at the next commit that wakes them.
 *
 * Both run after the transaction became visible (XACT_EVENT_COMMIT), and
 * neither may throw there.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "utils/guc.h"

#include "commit.h"
#include "sequencer.h"
#include "shmem.h"

/* The end of a transaction: the sequencer first, then counts and wake-ups */
static void
sb_xact_callback(XactEvent event, void *arg pg_attribute_unused())
{
	SbSequencerXactEvent(event);
	SbShmemXactEvent(event);
}

/* The end of a subtransaction: only the sequencer keeps state for it */
static void
sb_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					SubTransactionId parentSubid pg_attribute_unused(),
					void *arg pg_attribute_unused())
{
	SbSequencerSubXactEvent(event, mySubid);
}

/*
 * Registered in every backend that loads the library, preloaded or not
 * (each step does nothing without its shared memory).
 */
void
SbCommitInit(void)
{
	RegisterXactCallback(sb_xact_callback, NULL);
	RegisterSubXactCallback(sb_subxact_callback, NULL);
}

/* synchronous_commit for the current transaction (SET LOCAL; NULL: TO DEFAULT) */
static void
set_local_synchronous_commit(const char *value)
{
	(void) set_config_option("synchronous_commit", value, PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);
}

void
SbCommitWithoutFlush(void)
{
	set_local_synchronous_commit("off");
}

void
SbSessionCommitsWithoutFlush(void)
{
	SetConfigOption("synchronous_commit", "off", PGC_USERSET, PGC_S_SESSION);
}

void
SbCommitWithFlush(void)
{
	/* the reset value, which the session's setting leaves as configured */
	set_local_synchronous_commit(NULL);
}
