/*-------------------------------------------------------------------------
 *
 * verify_pool.h
 *	  Verifying a batch of signatures on more cores than the backend's.
 *
 * One batch at a time per process:
 *
 *	SbVerifyPoolBegin();
 *	k = SbVerifyPoolAddKey(verifier);			(per key)
 *	i = SbVerifyPoolAdd(k, text, len, sig, siglen);	(per signature)
 *	SbVerifyPoolStart();		the helper threads begin
 *	... other work, which may ERROR: the batch is then abandoned ...
 *	verdicts = SbVerifyPoolFinish();	the backend helps; verdicts[i]
 *
 * Begin may come at any time: a batch still in flight is waited for.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_VERIFY_POOL_H
#define SCUTTLEBUTT_VERIFY_POOL_H

#include "signature.h"

/* Starts an empty batch (after waiting out one still in flight) */
extern void SbVerifyPoolBegin(void);

/*
 * Registers a key for this batch, copying its verification context for
 * every thread (the verifier may be freed afterwards); its number
 */
extern int	SbVerifyPoolAddKey(const SbVerifier *verifier);

/* Queues a signature to verify by key; its number in the verdicts */
extern int	SbVerifyPoolAdd(int key, const char *text, int len,
							const unsigned char *sig, int siglen);

/* Hands the batch to the helper threads (a small one stays here) */
extern void SbVerifyPoolStart(void);

/*
 * Verifies what the helpers have not taken yet, waits for the rest, and
 * returns the verdicts (valid until the next Begin)
 */
extern const bool *SbVerifyPoolFinish(void);

#endif							/* SCUTTLEBUTT_VERIFY_POOL_H */
