/*-------------------------------------------------------------------------
 *
 * commit.h
 *	  The extension's one transaction callback: the commit path.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_COMMIT_H
#define SCUTTLEBUTT_COMMIT_H

/* Registers the transaction and subtransaction callbacks (from _PG_init) */
extern void SbCommitInit(void);

#endif							/* SCUTTLEBUTT_COMMIT_H */
