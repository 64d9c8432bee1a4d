/*-------------------------------------------------------------------------
 *
 * apply.h
 *	  Applying batches of updates from elsewhere to a model's tables.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_APPLY_H
#define SCUTTLEBUTT_APPLY_H

#include "store.h"
#include "wire.h"

/*
 * Applies updates from elsewhere, each already parsed and checked for the
 * model's kind, in order: an update at or below its source's clock is old
 * and dropped; the others advance the clock and are stored unless they
 * lose to a newer value.  Returns how many were stored; stored[i] (if not
 * NULL) says which.
 */
extern int64 SbApplyUpdates(SbModelRef *model, SbMessage *updates, int n,
							bool *stored);

#endif							/* SCUTTLEBUTT_APPLY_H */
