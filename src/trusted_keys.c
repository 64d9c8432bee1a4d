/*-------------------------------------------------------------------------
 *
 * trusted_keys.c
 *	  Verifying updates of signed models against the trusted keys, and
 *	  signing this node's own.
 *
 * Each process keeps the keys it has looked up, parsed, in a hash table
 * (sources without a key too, so that a stream of updates from an unknown
 * source costs one lookup); any relcache invalidation drops it, as the
 * model cache is dropped.  Verification runs before an update is stored
 * or moves any clock, on every path: the worker's sessions, _push(),
 * apply_update() and import().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/memutils.h"

#include "jscanon.h"
#include "node_key.h"
#include "spi_util.h"
#include "trusted_keys.h"
#include "verify_pool.h"

typedef struct TrustedKeyEntry
{
	char		source[SB_MAX_SOURCE_BYTES + 1];	/* hash key */
	SbVerifier *verifier;		/* NULL: no trusted key */
} TrustedKeyEntry;

/* Most sources remembered per process, keys and unknown ones */
#define SB_KEY_CACHE_MAX 10000

/* A source's key in one batch to verify */
typedef struct SourceKeyEntry
{
	char		source[SB_MAX_SOURCE_BYTES + 1];	/* hash key */
	int			pool_key;		/* SbVerifyPoolAddKey's; -1: refused */
	SbMessageError refusal;		/* why, when refused for the source */
} SourceKeyEntry;

static HTAB *key_cache = NULL;
static SPIPlanPtr key_plan = NULL;

static void
key_cache_flush(Datum arg pg_attribute_unused(), Oid relid pg_attribute_unused())
{
	HASH_SEQ_STATUS status;
	TrustedKeyEntry *entry;

	if (key_cache == NULL)
		return;
	hash_seq_init(&status, key_cache);
	while ((entry = hash_seq_search(&status)) != NULL)
		if (entry->verifier != NULL)
			SbVerifierFree(entry->verifier);
	hash_destroy(key_cache);
	key_cache = NULL;
}

void
SbTrustedKeysInit(void)
{
	CacheRegisterRelcacheCallback(key_cache_flush, (Datum) 0);
}

/* A verifier of the trusted key of source; NULL if there is none */
static SbVerifier *
trusted_key(const char *source)
{
	TrustedKeyEntry *entry;
	bool		found;
	char	   *pem = NULL;
	SbVerifier *verifier = NULL;
	MemoryContext old;

	/* sources without a key are remembered too, but not without bound */
	if (key_cache != NULL &&
		hash_get_num_entries(key_cache) >= SB_KEY_CACHE_MAX)
		key_cache_flush((Datum) 0, InvalidOid);
	if (key_cache == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = SB_MAX_SOURCE_BYTES + 1;
		ctl.entrysize = sizeof(TrustedKeyEntry);
		ctl.hcxt = CacheMemoryContext;
		key_cache = hash_create("scuttlebutt trusted keys", 64, &ctl,
								HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	entry = hash_search(key_cache, source, HASH_FIND, NULL);
	if (entry != NULL)
		return entry->verifier;

	SPI_connect();
	SbPrepareOnce(&key_plan,
				  "SELECT public_key FROM scuttlebutt.trusted_keys WHERE source = $1",
				  1, (Oid[]) {TEXTOID});
	SbExecutePlan(key_plan, (Datum[]) {CStringGetTextDatum(source)}, NULL,
				  SPI_OK_SELECT);
	if (SPI_processed == 1)
		pem = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	/* made before the entry exists: a key that fails leaves none */
	if (pem != NULL)
	{
		EVP_PKEY   *key = SbParsePublicKey(pem, strlen(pem));

		old = MemoryContextSwitchTo(CacheMemoryContext);
		verifier = SbVerifierCreate(key);
		MemoryContextSwitchTo(old);
	}
	entry = hash_search(key_cache, source, HASH_ENTER, &found);
	entry->verifier = verifier;
	SPI_finish();
	return verifier;
}

static bool
reject(SbMessageError *err, int sqlerrcode, char *message)
{
	err->sqlerrcode = sqlerrcode;
	err->message = message;
	return false;
}

static bool
reject_unsigned(const SbModelRef *model, const SbMessage *msg, SbMessageError *err)
{
	return reject(err, ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
				  psprintf("update from source \"%s\" is not signed, and model \"%s\" is signed",
						   msg->source, model->name));
}

/*
 * The key a source's signatures in model are verified with (this node's
 * own for this node's id), or NULL and *err saying why none is
 */
static SbVerifier *
key_of_source(const SbModelRef *model, const char *source, SbMessageError *err)
{
	const SbNodeKey *own = SbGetNodeKey();
	SbVerifier *key;

	if (own != NULL && strcmp(source, own->id) == 0)
		key = own->verifier;
	else
		key = trusted_key(source);
	if (key == NULL)
	{
		reject(err, ERRCODE_UNDEFINED_OBJECT,
			   psprintf("no trusted key for source \"%s\"", source));
		return NULL;
	}
	if (key->algorithm != model->signature)
	{
		reject(err, ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
			   psprintf("source \"%s\" has an %s key, and model \"%s\" accepts %s signatures only",
						source, SbKeyTypeName(key->key), model->name,
						SbSignatureAlgorithmName(model->signature)));
		return NULL;
	}
	return key;
}

/* The bytes security.js verifies: JSON.stringify([change, ts, source]) */
static void
signed_text(const SbMessage *msg, StringInfo buf)
{
	resetStringInfo(buf);
	SbAppendSignedText(buf, msg->text + msg->change.start,
					   msg->change.end - msg->change.start, msg->ts, msg->source);
}

static bool
reject_signature(const SbMessage *msg, SbMessageError *err)
{
	return reject(err, ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
				  psprintf("signature of the update from source \"%s\" at %.17g does not verify",
						   msg->source, msg->ts));
}

bool
SbVerifyUpdate(const SbModelRef *model, const SbMessage *msg,
			   SbMessageError *err)
{
	SbVerifier *key;
	StringInfoData text;
	bool		ok;

	if (model->signature == SB_SIG_NONE)
		return true;
	if (msg->signature == NULL)
		return reject_unsigned(model, msg, err);
	key = key_of_source(model, msg->source, err);
	if (key == NULL)
		return false;
	initStringInfo(&text);
	signed_text(msg, &text);
	ok = SbVerifyText(key, text.data, text.len, msg->signature);
	pfree(text.data);
	return ok || reject_signature(msg, err);
}

void
SbVerifyUpdatesStart(SbUpdateVerification *v, const SbModelRef *model,
					 const SbMessage *updates, int n)
{
	StringInfoData text;
	HTAB	   *keys = NULL;
	HASHCTL		ctl;

	v->n = n;
	v->signed_model = model->signature != SB_SIG_NONE;
	v->errs = palloc0(sizeof(SbMessageError) * Max(n, 1));
	v->item = palloc(sizeof(int) * Max(n, 1));
	if (!v->signed_model)
		return;

	/* each source's key copied into the batch once */
	ctl.keysize = SB_MAX_SOURCE_BYTES + 1;
	ctl.entrysize = sizeof(SourceKeyEntry);
	ctl.hcxt = CurrentMemoryContext;
	keys = hash_create("scuttlebutt keys of a batch", 16, &ctl,
					   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	initStringInfo(&text);
	SbVerifyPoolBegin();
	for (int i = 0; i < n; i++)
	{
		const SbMessage *msg = &updates[i];
		unsigned char sig[SB_MAX_SIGNATURE_BYTES];
		int			siglen;
		SourceKeyEntry *entry;
		bool		found;

		v->item[i] = -1;
		if (msg->signature == NULL)
		{
			reject_unsigned(model, msg, &v->errs[i]);
			continue;
		}
		entry = hash_search(keys, msg->source, HASH_ENTER, &found);
		if (!found)
		{
			SbVerifier *key = key_of_source(model, msg->source, &entry->refusal);

			entry->pool_key = key ? SbVerifyPoolAddKey(key) : -1;
		}
		if (entry->pool_key < 0)
		{
			v->errs[i] = entry->refusal;
			continue;
		}
		siglen = SbDecodeSignature(msg->signature, sig);
		if (siglen <= 0)
		{
			reject_signature(msg, &v->errs[i]);
			continue;
		}
		signed_text(msg, &text);
		v->item[i] = SbVerifyPoolAdd(entry->pool_key, text.data, text.len,
									 sig, siglen);
	}
	pfree(text.data);
	hash_destroy(keys);
	SbVerifyPoolStart();
}

void
SbVerifyUpdatesFinish(SbUpdateVerification *v, const SbMessage *updates)
{
	const bool *verdicts;

	if (!v->signed_model)
		return;
	verdicts = SbVerifyPoolFinish();
	for (int i = 0; i < v->n; i++)
		if (v->item[i] >= 0 && !verdicts[v->item[i]])
			reject_signature(&updates[i], &v->errs[i]);
}

void
SbSignLocalUpdate(const SbModelRef *model, StringInfo buf)
{
	const SbNodeKey *own;
	StringInfoData sig;

	if (model->signature == SB_SIG_NONE)
		return;
	own = SbGetNodeKey();
	if (own == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("scuttlebutt model \"%s\" is signed, and this node has no signing key",
						model->name),
				 errhint("Set scuttlebutt.signing_key_file to a PEM private key.")));
	if (own->algorithm != model->signature)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("scuttlebutt model \"%s\" accepts %s signatures, and this node's key is %s",
						model->name, SbSignatureAlgorithmName(model->signature),
						SbKeyTypeName(own->key))));
	/* [change,ts,source] is what is signed; then ,"signature" goes in */
	initStringInfo(&sig);
	SbSignText(own->signer, buf->data, buf->len, &sig);
	Assert(buf->len > 0 && buf->data[buf->len - 1] == ']');
	buf->len--;
	appendStringInfoString(buf, ",\"");
	appendBinaryStringInfo(buf, sig.data, sig.len);
	appendStringInfoString(buf, "\"]");
	pfree(sig.data);
}
