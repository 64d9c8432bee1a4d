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
 * Whether an update from elsewhere is at most scuttlebutt.max_clock_skew
 * ahead of this server's clock, bound being SbTimestampBound(); fills *err
 * (datetime_field_overflow) otherwise.
 */
extern bool SbCheckClockSkew(const SbMessage *msg, double bound,
							 SbMessageError *err);

/*
 * Applies updates from elsewhere, each already parsed and checked for the
 * model's kind, in order: an update at or below its source's clock is old
 * and dropped; the others advance the clock and are stored unless they
 * lose to a newer value.  Returns how many were stored; stored[i] (if not
 * NULL) says which.  An update past SbCheckClockSkew is an ERROR: callers
 * that defer such updates leave them out first.
 */
extern int64 SbApplyUpdates(SbModelRef *model, SbMessage *updates, int n,
							bool *stored);

#endif							/* SCUTTLEBUTT_APPLY_H */
