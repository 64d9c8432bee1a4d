/*-------------------------------------------------------------------------
 *
 * node_key.h
 *	  This node's signing key (scuttlebutt.signing_key_file), and the id it
 *	  gives the node.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_NODE_KEY_H
#define SCUTTLEBUTT_NODE_KEY_H

#include "utils/guc.h"

#include "signature.h"

typedef struct SbNodeKey
{
	EVP_PKEY   *key;			/* the private key, parsed once */
	SbSignatureAlgorithm algorithm;
	char	   *public_pem;		/* SPKI PEM: what peers trust */
	char	   *id;				/* base64(SHA-1(public_pem)) */
	SbVerifier *verifier;		/* for this node's own updates coming back */
	SbSigner   *signer;			/* set up once */
} SbNodeKey;

extern char *sb_signing_key_file;

/*
 * The node's key, loaded at first use after each change of the setting;
 * NULL when none is set.  ERROR (config_file_error) if the file cannot be
 * used.
 */
extern const SbNodeKey *SbGetNodeKey(void);

/* Hooks of scuttlebutt.signing_key_file (guc.c defines the setting) */
extern bool SbCheckSigningKeyFile(char **newval, void **extra, GucSource source);
extern void SbAssignSigningKeyFile(const char *newval, void *extra);

#endif							/* SCUTTLEBUTT_NODE_KEY_H */
