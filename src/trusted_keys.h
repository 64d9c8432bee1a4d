/*-------------------------------------------------------------------------
 *
 * trusted_keys.h
 *	  The public keys of trusted sources (scuttlebutt.trusted_keys), and
 *	  the check of every update that reaches a signed model.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_TRUSTED_KEYS_H
#define SCUTTLEBUTT_TRUSTED_KEYS_H

#include "store.h"
#include "wire.h"

/* Registers the relcache callback that drops the cached keys */
extern void SbTrustedKeysInit(void);

/*
 * Whether an update may enter model: always for an unsigned model; for a
 * signed one, when it carries a valid signature of the model's algorithm
 * by its source's trusted key (this node's own key for this node's id).
 * Otherwise false, with *err saying which check failed.  Reads the keys
 * table, so it runs in a transaction.
 */
extern bool SbVerifyUpdate(const SbModelRef *model, const SbMessage *msg,
						   SbMessageError *err);

/*
 * Verifying many updates at once, beside other work: Start makes the
 * checks that need no signature (signed at all, a trusted key of the
 * model's algorithm) and hands the signatures to other threads
 * (verify_pool.c); Finish waits for their verdicts.  Then
 * errs[i].sqlerrcode is 0 for an update that may enter, else errs[i] says
 * why it may not, as SbVerifyUpdate's *err.  The updates must stay until
 * Finish; between the two the caller may do anything, ERROR included.
 * One verification at a time per process.
 */
typedef struct SbUpdateVerification
{
	int			n;
	bool		signed_model;
	SbMessageError *errs;		/* n */
	int		   *item;			/* n: each one's signature in the pool, or -1 */
} SbUpdateVerification;

extern void SbVerifyUpdatesStart(SbUpdateVerification *v, const SbModelRef *model,
								 const SbMessage *updates, int n);
extern void SbVerifyUpdatesFinish(SbUpdateVerification *v, const SbMessage *updates);

/*
 * A local update's signature, appended to buf holding its text
 * [change,ts,source] (the signed bytes): buf becomes
 * [change,ts,source,"signature"].  ERROR if the node cannot sign for
 * model.
 */
extern void SbSignLocalUpdate(const SbModelRef *model, StringInfo buf);

#endif							/* SCUTTLEBUTT_TRUSTED_KEYS_H */
