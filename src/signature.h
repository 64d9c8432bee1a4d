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

/* Whether key signs a test text verifiably (a private key's parts agree) */
extern bool SbKeyCanSign(EVP_PKEY *key);

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

/*
 * A private key set up once to sign many texts: an OpenSSL context (SHA-1
 * for RSA) copied for each signature, since setting one up costs a
 * provider fetch each time; for a two-prime RSA key also its values for
 * signing on two threads (rsa_split_sign.c, scuttlebutt.sign_threads).
 * Made in CurrentMemoryContext; does not take key.
 */
typedef struct SbSigner
{
	EVP_PKEY   *key;
	EVP_MD_CTX *context;
	struct SbRsaSplitSigner *split; /* NULL: OpenSSL signs alone */
} SbSigner;

extern SbSigner *SbSignerCreate(EVP_PKEY *key);
extern void SbSignerFree(SbSigner *signer);

/* Appends base64 of the signature of data by signer's key */
extern void SbSignText(SbSigner *signer, const char *data, int len,
					   StringInfo out);

/* Longest signature taken, decoded (RSA 8192 is 1,024 bytes) */
#define SB_MAX_SIGNATURE_BYTES 1536

/*
 * One thread's means to verify signatures by one key: for RSA an OpenSSL
 * context set up once (PKCS#1 v1.5, SHA-1) serves every verification; for
 * Ed25519 (one-shot only) a context set up once is copied into a scratch
 * one per use.  Either spares a provider fetch per update.  Only OpenSSL
 * allocates and uses it, so a helper thread may hold one (verify_pool.c);
 * each thread needs its own.
 */
typedef struct SbVerifyContext
{
	EVP_PKEY_CTX *rsa;			/* RSA: initialized for verification */
	EVP_MD_CTX *ed_template;	/* Ed25519: initialized, copied per use */
	EVP_MD_CTX *ed_scratch;		/* Ed25519: the copy */
} SbVerifyContext;

/*
 * A public key ready to verify many signatures in this backend.  Made in
 * CurrentMemoryContext; takes ownership of key.
 */
typedef struct SbVerifier
{
	EVP_PKEY   *key;
	SbSignatureAlgorithm algorithm;
	SbVerifyContext context;
} SbVerifier;

extern SbVerifier *SbVerifierCreate(EVP_PKEY *key);
extern void SbVerifierFree(SbVerifier *verifier);

/*
 * Another context like the verifier's, for another thread; false if
 * OpenSSL could not make one.  Free it with SbVerifyContextFree.
 */
extern bool SbVerifyContextCopy(const SbVerifier *verifier, SbVerifyContext *copy);
extern void SbVerifyContextFree(SbVerifyContext *context);

/*
 * The bytes of a base64 signature (buf holds SB_MAX_SIGNATURE_BYTES);
 * -1 if it is empty, too long or not canonical base64
 */
extern int	SbDecodeSignature(const char *signature_b64, unsigned char *buf);

/*
 * Whether sig is a valid signature of data under context.  Calls OpenSSL
 * only (no palloc, no ereport): safe off the backend's thread.
 */
extern bool SbVerifyWith(SbVerifyContext *context, const char *data, size_t len,
						 const unsigned char *sig, size_t siglen);

/* Whether signature_b64 is a valid signature of data by the verifier's key */
extern bool SbVerifyText(SbVerifier *verifier, const char *data, int len,
						 const char *signature_b64);

#endif							/* SCUTTLEBUTT_SIGNATURE_H */
