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
 * A local update's signature, appended to buf holding its text
 * [change,ts,source] (the signed bytes): buf becomes
 * [change,ts,source,"signature"].  ERROR if the node cannot sign for
 * model.
 */
extern void SbSignLocalUpdate(const SbModelRef *model, StringInfo buf);

#endif							/* SCUTTLEBUTT_TRUSTED_KEYS_H */
