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

typedef struct TrustedKeyEntry
{
	char		source[SB_MAX_SOURCE_BYTES + 1];	/* hash key */
	EVP_PKEY   *key;			/* NULL: no trusted key */
} TrustedKeyEntry;

/* Most sources remembered per process, keys and unknown ones */
#define SB_KEY_CACHE_MAX 10000

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
		EVP_PKEY_free(entry->key);
	hash_destroy(key_cache);
	key_cache = NULL;
}

void
SbTrustedKeysInit(void)
{
	CacheRegisterRelcacheCallback(key_cache_flush, (Datum) 0);
}

/* The trusted key of source, parsed; NULL if there is none */
static EVP_PKEY *
trusted_key(const char *source)
{
	TrustedKeyEntry *entry;
	bool		found;
	char	   *pem = NULL;
	EVP_PKEY   *key;

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
		return entry->key;

	SPI_connect();
	SbPrepareOnce(&key_plan,
				  "SELECT public_key FROM scuttlebutt.trusted_keys WHERE source = $1",
				  1, (Oid[]) {TEXTOID});
	SbExecutePlan(key_plan, (Datum[]) {CStringGetTextDatum(source)}, NULL,
				  SPI_OK_SELECT);
	if (SPI_processed == 1)
		pem = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	/* parsed before the entry exists: a key that fails leaves none */
	key = pem ? SbParsePublicKey(pem, strlen(pem)) : NULL;
	entry = hash_search(key_cache, source, HASH_ENTER, &found);
	entry->key = key;
	SPI_finish();
	return key;
}

static bool
reject(SbMessageError *err, int sqlerrcode, char *message)
{
	err->sqlerrcode = sqlerrcode;
	err->message = message;
	return false;
}

bool
SbVerifyUpdate(const SbModelRef *model, const SbMessage *msg,
			   SbMessageError *err)
{
	const SbNodeKey *own;
	EVP_PKEY   *key;
	StringInfoData signed_text;
	bool		ok;

	if (model->signature == SB_SIG_NONE)
		return true;
	if (msg->signature == NULL)
		return reject(err, ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
					  psprintf("update from source \"%s\" is not signed, and model \"%s\" is signed",
							   msg->source, model->name));
	own = SbGetNodeKey();
	if (own != NULL && strcmp(msg->source, own->id) == 0)
		key = own->key;
	else
		key = trusted_key(msg->source);
	if (key == NULL)
		return reject(err, ERRCODE_UNDEFINED_OBJECT,
					  psprintf("no trusted key for source \"%s\"", msg->source));
	if (SbKeySignatureAlgorithm(key) != model->signature)
		return reject(err, ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
					  psprintf("source \"%s\" has an %s key, and model \"%s\" accepts %s signatures only",
							   msg->source, SbKeyTypeName(key), model->name,
							   SbSignatureAlgorithmName(model->signature)));

	/* the bytes security.js verifies: JSON.stringify([change, ts, source]) */
	initStringInfo(&signed_text);
	SbAppendSignedText(&signed_text, msg->text + msg->change.start,
					   msg->change.end - msg->change.start, msg->ts, msg->source);
	ok = SbVerifyText(key, signed_text.data, signed_text.len, msg->signature);
	pfree(signed_text.data);
	if (!ok)
		return reject(err, ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
					  psprintf("signature of the update from source \"%s\" at %.17g does not verify",
							   msg->source, msg->ts));
	return true;
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
	SbSignText(own->key, buf->data, buf->len, &sig);
	Assert(buf->len > 0 && buf->data[buf->len - 1] == ']');
	buf->len--;
	appendStringInfoString(buf, ",\"");
	appendBinaryStringInfo(buf, sig.data, sig.len);
	appendStringInfoString(buf, "\"]");
	pfree(sig.data);
}
