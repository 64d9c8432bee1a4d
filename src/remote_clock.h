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

struct sbrc_hash;

/*
 * Per source, the greatest timestamp held: newer updates are needed.  All
 * zeroes is an empty clock; its memory is the context given to the first
 * SbRemoteClockRaise (reset that context and zero the struct to start over).
 */
typedef struct SbRemoteClock
{
	int			n;				/* sources held */
	struct sbrc_hash *table;	/* NULL while empty */
} SbRemoteClock;

/* The entry of source (-infinity when absent) */
extern double SbRemoteClockGet(SbRemoteClock *rc, const char *source);

/* Raises the entry of source to ts, allocating in cxt */
extern void SbRemoteClockRaise(SbRemoteClock *rc, MemoryContext cxt,
							   const char *source, double ts);

/* Every entry, in no particular order, as an array of rc->n allocated here */
extern SbClockEntry *SbRemoteClockEntries(SbRemoteClock *rc);

#endif							/* SCUTTLEBUTT_REMOTE_CLOCK_H */
