/*-------------------------------------------------------------------------
 *
 * signature.h
 *	  The cryptography of signed updates (OpenSSL): key ids, public keys in
 *	  PEM, signing and verifying an update's text.
 *
 * As the reference's security.js: a source's id is base64(SHA-1(its
 * public key's PEM text)), and a signature is base64 of RSA-SHA1 (PKCS#1
 * v1.5) over JSON.stringify([change, timestamp, source]).  Ed25519 signs
 * the same bytes.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_SIGNATURE_H
#define SCUTTLEBUTT_SIGNATURE_H

#include <openssl/evp.h>

#include "lib/stringinfo.h"

/* What a signed model accepts; stored by name in scuttlebutt.registry */
typedef enum SbSignatureAlgorithm
{
	SB_SIG_NONE = 0,			/* an unsigned model */
	SB_SIG_RSA_SHA1,			/* "rsa-sha1": the reference's */
	SB_SIG_ED25519				/* "ed25519" */
} SbSignatureAlgorithm;

/* The name as stored and shown ("rsa-sha1", "ed25519"); NULL for none */
extern const char *SbSignatureAlgorithmName(SbSignatureAlgorithm alg);

/* The algorithm of a name (any case); false if there is none such */
extern bool SbSignatureAlgorithmFromName(const char *name,
										 SbSignatureAlgorithm *alg);

/* The algorithm a key signs with; SB_SIG_NONE for other key types */
extern SbSignatureAlgorithm SbKeySignatureAlgorithm(EVP_PKEY *key);

/* The key type's name for scuttlebutt.keys: "rsa" or "ed25519" */
extern const char *SbKeyTypeName(EVP_PKEY *key);

/* base64(SHA-1(bytes)): the id of the source whose public PEM this is */
extern char *SbKeyId(const char *pem, int len);

/*
 * A public key from PEM text (SPKI "PUBLIC KEY", or PKCS#1 "RSA PUBLIC
 * KEY"); ERROR (invalid_parameter_value) if it is none, or not of a type
 * we sign with.  The key is OpenSSL's: EVP_PKEY_free it.
 */
extern EVP_PKEY *SbParsePublicKey(const char *pem, int len);

/* The public half of a key as SPKI PEM, as `openssl pkey -pubout` writes */
extern char *SbPublicKeyPem(EVP_PKEY *key);

/* Appends base64 of key's signature of data (ERROR if OpenSSL fails) */
extern void SbSignText(EVP_PKEY *key, const char *data, int len,
					   StringInfo out);

/* Whether signature_b64 is key's valid signature of data */
extern bool SbVerifyText(EVP_PKEY *key, const char *data, int len,
						 const char *signature_b64);

#endif							/* SCUTTLEBUTT_SIGNATURE_H */
