/*-------------------------------------------------------------------------
 *
 * rejoin.h
 *	  A server restored from a backup rejoins its peers before it writes.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_REJOIN_H
#define SCUTTLEBUTT_REJOIN_H

/* In the postmaster, as shared memory is made: detects a restore */
extern void SbRejoinStartup(void);

/* Whether local writes wait for a rejoin */
extern bool SbRejoining(void);

/* Ends the rejoin (how: for the log); false if none was under way */
extern bool SbRejoinEnd(const char *how);

/* ERROR (55000) while rejoining: the local writes' check */
extern void SbRejoinCheckLocalWrite(void);

#endif							/* SCUTTLEBUTT_REJOIN_H */
