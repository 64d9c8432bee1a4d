/*-------------------------------------------------------------------------
 *
 * rsa_split_sign.h
 *	  RSA-SHA1 (PKCS#1 v1.5) signatures with the two CRT halves computed
 *	  on two threads at once (see rsa_split_sign.c).
 *
 * OpenSSL and malloc only: no palloc, no ereport.  Not for concurrent use
 * by several threads of the caller (a backend has one).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_RSA_SPLIT_SIGN_H
#define SCUTTLEBUTT_RSA_SPLIT_SIGN_H

#include <stdbool.h>

#include <openssl/evp.h>

typedef struct SbRsaSplitSigner SbRsaSplitSigner;

/*
 * A signer for a two-prime RSA private key, its Montgomery and blinding
 * values set up once; NULL for other keys or if OpenSSL fails (then sign
 * with OpenSSL alone).  Does not keep key.
 */
extern SbRsaSplitSigner *SbRsaSplitSignerCreate(EVP_PKEY *key);
extern void SbRsaSplitSignerFree(SbRsaSplitSigner *signer);

/* Bytes of a signature: the modulus' */
extern int	SbRsaSplitSignatureSize(const SbRsaSplitSigner *signer);

/*
 * Signs a SHA-1 digest (20 bytes) into sig (SbRsaSplitSignatureSize
 * bytes); false if OpenSSL failed or the result did not check out (then
 * sig holds nothing of use: sign with OpenSSL alone)
 */
extern bool SbRsaSplitSign(SbRsaSplitSigner *signer, const unsigned char *digest,
						   unsigned char *sig);

#endif							/* SCUTTLEBUTT_RSA_SPLIT_SIGN_H */
