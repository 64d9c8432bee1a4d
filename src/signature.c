/*-------------------------------------------------------------------------
 *
 * signature.c
 *	  The cryptography of signed updates, on OpenSSL's EVP interface.
 *
 * Signatures are base64, as security.js writes them (Node's
 * sign(key, 'base64')); they are decoded strictly, since every signer we
 * interoperate with writes canonical base64.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "common/base64.h"
#include "utils/timestamp.h"

#include "guc.h"
#include "rsa_split_sign.h"
#include "shmem.h"
#include "signature.h"

/* SHA-1 fetched once: an implicit fetch per signature costs as much again */
static EVP_MD *sha1_md = NULL;

static EVP_MD *
get_sha1(void)
{
	if (sha1_md == NULL)
	{
		sha1_md = EVP_MD_fetch(NULL, "SHA1", NULL);
		if (sha1_md == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("OpenSSL offers no SHA-1, which RSA-SHA1 signatures need")));
	}
	return sha1_md;
}

/* The first error OpenSSL queued, for a message, and the queue cleared */
static const char *
openssl_error(void)
{
	unsigned long code = ERR_get_error();
	const char *reason = code ? ERR_reason_error_string(code) : NULL;

	ERR_clear_error();
	return reason ? reason : "no reason given";
}

const char *
SbSignatureAlgorithmName(SbSignatureAlgorithm alg)
{
	switch (alg)
	{
		case SB_SIG_RSA_SHA1:
			return "rsa-sha1";
		case SB_SIG_ED25519:
			return "ed25519";
		case SB_SIG_NONE:
			break;
	}
	return NULL;
}

bool
SbSignatureAlgorithmFromName(const char *name, SbSignatureAlgorithm *alg)
{
	if (pg_strcasecmp(name, "rsa-sha1") == 0)
		*alg = SB_SIG_RSA_SHA1;
	else if (pg_strcasecmp(name, "ed25519") == 0)
		*alg = SB_SIG_ED25519;
	else
		return false;
	return true;
}

SbSignatureAlgorithm
SbKeySignatureAlgorithm(EVP_PKEY *key)
{
	switch (EVP_PKEY_get_base_id(key))
	{
		case EVP_PKEY_RSA:
			return SB_SIG_RSA_SHA1;
		case EVP_PKEY_ED25519:
			return SB_SIG_ED25519;
	}
	return SB_SIG_NONE;
}

/*
 * Whether OpenSSL signs a test text with key, and the signature verifies
 * with the key's public half: a key whose parts disagree (a wrong private
 * exponent, zeroed CRT values) is refused when it is loaded rather than
 * at every signed write.  No ereport: check hooks call it.
 */
bool
SbKeyCanSign(EVP_PKEY *key)
{
	static const unsigned char text[] = "scuttlebutt signing key check";
	const EVP_MD *md = SbKeySignatureAlgorithm(key) == SB_SIG_RSA_SHA1
		? EVP_sha1() : NULL;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char sig[SB_MAX_SIGNATURE_BYTES];
	size_t		siglen = sizeof(sig);
	bool		ok;

	ok = ctx != NULL && EVP_PKEY_get_size(key) <= (int) sizeof(sig) &&
		EVP_DigestSignInit(ctx, NULL, md, NULL, key) == 1 &&
		EVP_DigestSign(ctx, sig, &siglen, text, sizeof(text) - 1) == 1 &&
		EVP_MD_CTX_reset(ctx) == 1 &&
		EVP_DigestVerifyInit(ctx, NULL, md, NULL, key) == 1 &&
		EVP_DigestVerify(ctx, sig, siglen, text, sizeof(text) - 1) == 1;
	EVP_MD_CTX_free(ctx);
	ERR_clear_error();
	return ok;
}

const char *
SbKeyTypeName(EVP_PKEY *key)
{
	return SbKeySignatureAlgorithm(key) == SB_SIG_ED25519 ? "ed25519" : "rsa";
}

char *
SbKeyId(const char *pem, int len)
{
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int dlen;
	char	   *id;
	int			idlen;

	if (!EVP_Digest(pem, len, digest, &dlen, get_sha1(), NULL))
		elog(ERROR, "SHA-1 failed: %s", openssl_error());
	id = palloc(pg_b64_enc_len(dlen) + 1);
	idlen = pg_b64_encode((const char *) digest, dlen, id, pg_b64_enc_len(dlen));
	if (idlen < 0)
		elog(ERROR, "could not encode a key id in base64");
	id[idlen] = '\0';
	return id;
}

EVP_PKEY *
SbParsePublicKey(const char *pem, int len)
{
	EVP_PKEY   *key = NULL;
	OSSL_DECODER_CTX *dctx;
	const unsigned char *data = (const unsigned char *) pem;
	size_t		remaining = len;
	const char *begin = memmem(pem, len, "-----BEGIN ", 11);

	/* one key, alone: a second block would be a second key under one id */
	if (begin == NULL ||
		memmem(begin + 11, len - (begin + 11 - pem), "-----BEGIN ", 11) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("public key must be one PEM block"),
				 errhint("Give the text of a PEM public key, as \"openssl pkey -pubout\" writes it.")));

	dctx = OSSL_DECODER_CTX_new_for_pkey(&key, "PEM", NULL, NULL,
										 EVP_PKEY_PUBLIC_KEY, NULL, NULL);
	if (dctx == NULL)
		elog(ERROR, "could not create an OpenSSL decoder: %s", openssl_error());
	if (!OSSL_DECODER_from_data(dctx, &data, &remaining))
		key = NULL;
	OSSL_DECODER_CTX_free(dctx);
	if (key == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("could not read a public key from the PEM text"),
				 errdetail("OpenSSL: %s", openssl_error()),
				 errhint("Give \"BEGIN PUBLIC KEY\" (RSA or Ed25519) or \"BEGIN RSA PUBLIC KEY\" PEM text.")));
	if (SbKeySignatureAlgorithm(key) == SB_SIG_NONE)
	{
		EVP_PKEY_free(key);
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("public key is neither RSA nor Ed25519")));
	}
	ERR_clear_error();
	return key;
}

char *
SbPublicKeyPem(EVP_PKEY *key)
{
	BIO		   *bio = BIO_new(BIO_s_mem());
	char	   *data;
	long		len;
	char	   *pem;

	if (bio == NULL || !PEM_write_bio_PUBKEY(bio, key))
	{
		BIO_free(bio);
		elog(ERROR, "could not write a public key: %s", openssl_error());
	}
	len = BIO_get_mem_data(bio, &data);
	pem = pnstrdup(data, len);
	BIO_free(bio);
	return pem;
}

SbSigner *
SbSignerCreate(EVP_PKEY *key)
{
	SbSigner   *signer = palloc0(sizeof(SbSigner));
	const EVP_MD *md = SbKeySignatureAlgorithm(key) == SB_SIG_RSA_SHA1
		? get_sha1() : NULL;

	signer->key = key;
	signer->context = EVP_MD_CTX_new();
	if (signer->context == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	if (EVP_DigestSignInit(signer->context, NULL, md, NULL, key) != 1)
	{
		EVP_MD_CTX_free(signer->context);
		elog(ERROR, "could not set up a signature: %s", openssl_error());
	}
	/* (NULL for Ed25519 and multi-prime RSA: OpenSSL signs those alone) */
	signer->split = SbRsaSplitSignerCreate(key);
	ERR_clear_error();
	return signer;
}

void
SbSignerFree(SbSigner *signer)
{
	SbRsaSplitSignerFree(signer->split);
	EVP_MD_CTX_free(signer->context);
	pfree(signer);
}

/*
 * An RSA signature of data on two threads into sig (the key's size);
 * false if the split signer failed (a fault included): then OpenSSL signs
 */
static bool
sign_split(SbSigner *signer, const char *data, int len, unsigned char *sig)
{
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int dlen;
	bool		ok;

	ok = EVP_Digest(data, len, digest, &dlen, sha1_md, NULL) &&
		SbRsaSplitSign(signer->split, digest, sig);
	ERR_clear_error();
	return ok;
}

/* After two processes signed at once, how long none splits a signature */
#define SB_SIGN_CONTENDED_MS 1000

/* A signature of data by OpenSSL alone into sig; false if it failed */
static bool
sign_alone(SbSigner *signer, const char *data, int len, unsigned char *sig,
		   size_t *siglen)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool		ok;

	ok = ctx != NULL && EVP_MD_CTX_copy_ex(ctx, signer->context) &&
		EVP_DigestSign(ctx, sig, siglen, (const unsigned char *) data, len) == 1;
	EVP_MD_CTX_free(ctx);
	return ok;
}

/*
 * Counts this process among those signing with a two-prime RSA key, until
 * signing_ends(); whether it may split its signature: only while it is
 * the only one, and none has signed beside another for a second.  A
 * process that splits keeps both cores busy: with two writers on two
 * cores, splitting whenever one was alone for a moment signed 17% slower
 * than OpenSSL alone in each (always splitting, 30%), so the split serves
 * a lone writer, whose second core idles.
 */
static bool
signing_begins(SbSigner *signer)
{
	TimestampTz now;

	if (signer->split == NULL || sb_shared == NULL)
		return false;
	now = GetCurrentTimestamp();
	if (pg_atomic_fetch_add_u32(&sb_shared->rsa_signers, 1) > 0)
	{
		pg_atomic_write_u64(&sb_shared->rsa_contended_until,
							(uint64) TimestampTzPlusMilliseconds(now, SB_SIGN_CONTENDED_MS));
		return false;
	}
	return sb_sign_threads &&
		now >= (TimestampTz) pg_atomic_read_u64(&sb_shared->rsa_contended_until);
}

static void
signing_ends(SbSigner *signer)
{
	if (signer->split != NULL && sb_shared != NULL)
		pg_atomic_fetch_sub_u32(&sb_shared->rsa_signers, 1);
}

void
SbSignText(SbSigner *signer, const char *data, int len, StringInfo out)
{
	size_t		siglen = EVP_PKEY_get_size(signer->key);
	unsigned char *sig = palloc(siglen);
	int			enclen;
	bool		split;
	bool		split_failed;
	bool		ok;

	/* (nothing between the two may throw: the count must come down) */
	split = signing_begins(signer);
	ok = split && sign_split(signer, data, len, sig);
	split_failed = split && !ok;
	ok = ok || sign_alone(signer, data, len, sig, &siglen);
	signing_ends(signer);
	/* (a failed fault check shows here too: test/t/148 looks for it) */
	if (split_failed)
		elog(DEBUG1, "scuttlebutt: RSA signature on two threads failed, OpenSSL signs alone");
	if (!ok)
		elog(ERROR, "could not sign an update: %s", openssl_error());
	enclen = pg_b64_enc_len(siglen);
	enlargeStringInfo(out, enclen + 1);
	enclen = pg_b64_encode((const char *) sig, siglen, out->data + out->len, enclen);
	if (enclen < 0)
		elog(ERROR, "could not encode a signature in base64");
	out->len += enclen;
	out->data[out->len] = '\0';
	pfree(sig);
}

/* A context to verify with key, set up; false if OpenSSL could not */
static bool
verify_context_init(EVP_PKEY *key, SbVerifyContext *c)
{
	memset(c, 0, sizeof(*c));
	if (SbKeySignatureAlgorithm(key) == SB_SIG_RSA_SHA1)
	{
		c->rsa = EVP_PKEY_CTX_new(key, NULL);
		if (c->rsa != NULL &&
			EVP_PKEY_verify_init(c->rsa) == 1 &&
			EVP_PKEY_CTX_set_rsa_padding(c->rsa, RSA_PKCS1_PADDING) == 1 &&
			EVP_PKEY_CTX_set_signature_md(c->rsa, get_sha1()) == 1)
			return true;
	}
	else
	{
		c->ed_template = EVP_MD_CTX_new();
		c->ed_scratch = EVP_MD_CTX_new();
		if (c->ed_template != NULL && c->ed_scratch != NULL &&
			EVP_DigestVerifyInit(c->ed_template, NULL, NULL, NULL, key) == 1)
			return true;
	}
	SbVerifyContextFree(c);
	return false;
}

void
SbVerifyContextFree(SbVerifyContext *context)
{
	EVP_PKEY_CTX_free(context->rsa);
	EVP_MD_CTX_free(context->ed_template);
	EVP_MD_CTX_free(context->ed_scratch);
	memset(context, 0, sizeof(*context));
}

bool
SbVerifyContextCopy(const SbVerifier *verifier, SbVerifyContext *copy)
{
	memset(copy, 0, sizeof(*copy));
	if (verifier->context.rsa != NULL)
		copy->rsa = EVP_PKEY_CTX_dup(verifier->context.rsa);
	else
	{
		copy->ed_template = EVP_MD_CTX_new();
		copy->ed_scratch = EVP_MD_CTX_new();
		if (copy->ed_template == NULL || copy->ed_scratch == NULL ||
			!EVP_MD_CTX_copy_ex(copy->ed_template, verifier->context.ed_template))
			SbVerifyContextFree(copy);
	}
	ERR_clear_error();
	return copy->rsa != NULL || copy->ed_template != NULL;
}

SbVerifier *
SbVerifierCreate(EVP_PKEY *key)
{
	SbVerifier *v = palloc0(sizeof(SbVerifier));

	v->key = key;
	v->algorithm = SbKeySignatureAlgorithm(key);
	if (!verify_context_init(key, &v->context))
	{
		pfree(v);
		elog(ERROR, "could not set up signature verification: %s", openssl_error());
	}
	return v;
}

void
SbVerifierFree(SbVerifier *verifier)
{
	SbVerifyContextFree(&verifier->context);
	EVP_PKEY_free(verifier->key);
	pfree(verifier);
}

int
SbDecodeSignature(const char *signature_b64, unsigned char *buf)
{
	int			enclen = strlen(signature_b64);

	if (enclen == 0 || enclen > pg_b64_enc_len(SB_MAX_SIGNATURE_BYTES))
		return -1;
	return pg_b64_decode(signature_b64, enclen, (char *) buf,
						 SB_MAX_SIGNATURE_BYTES);
}

bool
SbVerifyWith(SbVerifyContext *context, const char *data, size_t len,
			 const unsigned char *sig, size_t siglen)
{
	int			ok;

	if (context->rsa != NULL)
	{
		unsigned char digest[EVP_MAX_MD_SIZE];
		unsigned int dlen;

		/* (sha1_md was fetched when the context was made) */
		ok = EVP_Digest(data, len, digest, &dlen, sha1_md, NULL) &&
			EVP_PKEY_verify(context->rsa, sig, siglen, digest, dlen) == 1;
	}
	else
	{
		/* Ed25519 signs the message itself: one shot, no digest */
		ok = EVP_MD_CTX_copy_ex(context->ed_scratch, context->ed_template) &&
			EVP_DigestVerify(context->ed_scratch, sig, siglen,
							 (const unsigned char *) data, len) == 1;
	}
	ERR_clear_error();
	return ok;
}

bool
SbVerifyText(SbVerifier *verifier, const char *data, int len,
			 const char *signature_b64)
{
	unsigned char sig[SB_MAX_SIGNATURE_BYTES];
	int			siglen = SbDecodeSignature(signature_b64, sig);

	return siglen > 0 && SbVerifyWith(&verifier->context, data, len, sig, siglen);
}
