/*-------------------------------------------------------------------------
 *
 * sequencer.h
 *	  This node's timestamps, handed out in shared memory, and the horizon
 *	  below which readers may see them.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_SEQUENCER_H
#define SCUTTLEBUTT_SEQUENCER_H

#include "access/xact.h"

/* Shared memory (called from shmem.c's hooks) */
extern void SbSequencerShmemRequest(void);
extern void SbSequencerShmemInit(void);

/*
 * The end of a (sub)transaction, called by commit.c's callbacks, the
 * sequencer first: publishes or forgets this transaction's timestamps.
 */
extern void SbSequencerXactEvent(XactEvent event);
extern void SbSequencerSubXactEvent(SubXactEvent event,
									SubTransactionId mySubid);

/* Whether local writes go through the sequencer (the library is preloaded) */
extern bool SbSequencerActive(void);

/*
 * Takes count timestamps for this node's source in a model, each past the
 * previous one and the first past floor (NaN: none), the last one handed
 * out and the wall clock, and returns the first; the rest follow by
 * SbTimestampAfter.  Until this transaction ends, readers see none of this
 * node's updates at or past the first.
 */
extern double SbSequencerNext(int32 model_id, const char *node_id,
							  double floor, int count);

/* The first timestamp the last SbSequencerNext() returned */
extern double SbSequencerLastTaken(void);

/*
 * This transaction stores updates of this node's own source that came
 * from elsewhere, the first at first_ts and none past last_ts: later
 * timestamps go past them, and readers wait for this transaction as for a
 * local write.
 */
extern void SbSequencerAdopt(int32 model_id, const char *node_id,
							 double first_ts, double last_ts);

/*
 * A peer's clock says it holds an update of this node's own source at ts
 * (say, handed out before this server was restored from a backup): later
 * local timestamps go past it.  Nothing if they already do.
 */
extern void SbSequencerLearn(int32 model_id, const char *node_id, double ts);

/*
 * The greatest timestamp of this node's source in a model that a reader
 * with the active snapshot may be shown: every update of that source at
 * or below it is in the snapshot, or will never commit.  It is the latest
 * such update committed, unless a running local write holds it lower.
 */
extern double SbSequencerVisibleLimit(int32 model_id, const char *node_id);

/*
 * A peer vouches that this node's source reached ts (see sequencer.c);
 * true if readers are now shown more
 */
extern bool SbSequencerRaiseShown(int32 model_id, const char *node_id,
								  double ts);

#endif							/* SCUTTLEBUTT_SEQUENCER_H */
