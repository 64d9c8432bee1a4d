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

/*
 * The current transaction commits without waiting for its WAL to reach
 * disk (synchronous_commit = off, for this transaction only).  For
 * applying what a peer holds durably and sends again after a crash here:
 * what a crash loses, the model's clock loses with it (one transaction),
 * so the next exchange asks for it again.  Logical replication's apply
 * commits so too.
 */
extern void SbCommitWithoutFlush(void);

/*
 * The same for every transaction of the worker's session (set once, from
 * the worker's start): a live pull applies a transaction per commit, and
 * a setting per transaction costs a GUC nest level in each.  Its other
 * transactions read, or write what peers hold as well.
 */
extern void SbSessionCommitsWithoutFlush(void);

/*
 * The current transaction commits as synchronous_commit is configured
 * (SET LOCAL ... TO DEFAULT), in a session that commits without the flush
 */
extern void SbCommitWithFlush(void);

#endif							/* SCUTTLEBUTT_COMMIT_H */
