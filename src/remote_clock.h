/*-------------------------------------------------------------------------
 *
 * remote_clock.h
 *	  What a peer is known to hold: the greatest timestamp per source.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_REMOTE_CLOCK_H
#define SCUTTLEBUTT_REMOTE_CLOCK_H

#include "wire_message.h"

/* Per source, the greatest timestamp held: newer updates are needed */
typedef struct SbRemoteClock
{
	int			n;
	int			alloc;
	SbClockEntry *entries;		/* sorted by source (strcmp) */
} SbRemoteClock;

/* The entry of source (-infinity when absent) */
extern double SbRemoteClockGet(SbRemoteClock *rc, const char *source);

/* Raises the entry of source to ts, allocating in cxt */
extern void SbRemoteClockRaise(SbRemoteClock *rc, MemoryContext cxt,
							   const char *source, double ts);

#endif							/* SCUTTLEBUTT_REMOTE_CLOCK_H */
