/*-------------------------------------------------------------------------
 *
 * sql_keys.c
 *	  SQL functions of signed updates: node_id(), node_public_key(),
 *	  trust_key(), distrust_key(), set_signature_algorithm(), _key_id().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"

#include "model_cache.h"
#include "node_key.h"
#include "sql_util.h"
#include "store.h"

PG_FUNCTION_INFO_V1(scuttlebutt_node_id);
PG_FUNCTION_INFO_V1(scuttlebutt_node_public_key);
PG_FUNCTION_INFO_V1(scuttlebutt_key_id);
PG_FUNCTION_INFO_V1(scuttlebutt_trust_key);
PG_FUNCTION_INFO_V1(scuttlebutt_distrust_key);
PG_FUNCTION_INFO_V1(scuttlebutt_set_signature_algorithm);

/* scuttlebutt.node_id(): the key's id with a signing key, else the random one */
Datum
scuttlebutt_node_id(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(SbLocalNodeId()));
}

/* scuttlebutt.node_public_key(): SPKI PEM, or NULL without a key */
Datum
scuttlebutt_node_public_key(PG_FUNCTION_ARGS)
{
	const SbNodeKey *key = SbGetNodeKey();

	if (key == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(key->public_pem));
}

/* scuttlebutt._key_id(public_key): base64(SHA-1(its bytes)) */
Datum
scuttlebutt_key_id(PG_FUNCTION_ARGS)
{
	text	   *pem = PG_GETARG_TEXT_PP(0);

	PG_RETURN_TEXT_P(cstring_to_text(SbKeyId(VARDATA_ANY(pem),
											 VARSIZE_ANY_EXHDR(pem))));
}

/*
 * scuttlebutt.trust_key(public_key): trusts the key for the source whose
 * id is its hash, and returns that id.  The exact text given is hashed
 * (trailing newline included), as the JavaScript side hashes its PEM.
 */
Datum
scuttlebutt_trust_key(PG_FUNCTION_ARGS)
{
	char	   *pem = SbRequiredTextArg(fcinfo, 0, "public key");
	EVP_PKEY   *key = SbParsePublicKey(pem, strlen(pem));
	char	   *id = SbKeyId(pem, strlen(pem));
	const char *type = SbKeyTypeName(key);
	int			bits = EVP_PKEY_get_bits(key);

	EVP_PKEY_free(key);
	SPI_connect();
	/* the same key again changes nothing (not even its added time) */
	SPI_execute_with_args("INSERT INTO scuttlebutt.trusted_keys"
						  " (source, public_key, algorithm, key_size)"
						  " VALUES ($1, $2, $3, $4) ON CONFLICT (source) DO NOTHING",
						  4, (Oid[]) {TEXTOID, TEXTOID, TEXTOID, INT4OID},
						  (Datum[]) {CStringGetTextDatum(id), CStringGetTextDatum(pem),
							  CStringGetTextDatum(type), Int32GetDatum(bits)},
						  NULL, false, 0);
	SPI_finish();
	PG_RETURN_TEXT_P(cstring_to_text(id));
}

/* scuttlebutt.distrust_key(source): true if a key was removed */
Datum
scuttlebutt_distrust_key(PG_FUNCTION_ARGS)
{
	char	   *source = SbRequiredTextArg(fcinfo, 0, "source");
	bool		removed;

	SPI_connect();
	if (SPI_execute_with_args("DELETE FROM scuttlebutt.trusted_keys WHERE source = $1",
							  1, (Oid[]) {TEXTOID},
							  (Datum[]) {CStringGetTextDatum(source)},
							  NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not delete from scuttlebutt.trusted_keys");
	removed = SPI_processed > 0;
	SPI_finish();
	PG_RETURN_BOOL(removed);
}

/*
 * scuttlebutt.set_signature_algorithm(model, algorithm): what a signed
 * model accepts, changed only while it holds nothing signed the other way
 */
Datum
scuttlebutt_set_signature_algorithm(PG_FUNCTION_ARGS)
{
	char	   *name = SbRequiredTextArg(fcinfo, 0, "model name");
	char	   *alg_name = SbRequiredTextArg(fcinfo, 1, "signature algorithm");
	SbSignatureAlgorithm alg;
	SbModelRef	model;
	bool		holds;

	if (!SbSignatureAlgorithmFromName(alg_name, &alg))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid signature algorithm \"%s\"", alg_name),
				 errhint("The algorithm must be 'rsa-sha1' or 'ed25519'.")));
	SbModelLookup(name, SB_KIND_ANY, &model);
	if (model.signature == SB_SIG_NONE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("scuttlebutt model \"%s\" is not signed", name)));
	if (model.signature == alg)
		PG_RETURN_VOID();

	/*
	 * A write already under way under the old algorithm may still commit:
	 * set the algorithm before the model is written or replicated.
	 */
	SPI_connect();
	SPI_execute_with_args("SELECT FROM scuttlebutt.updates WHERE model_id = $1 LIMIT 1",
						  1, (Oid[]) {INT4OID}, (Datum[]) {Int32GetDatum(model.id)},
						  NULL, false, 1);
	holds = SPI_processed > 0;
	if (holds)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("scuttlebutt model \"%s\" holds updates signed with %s",
						name, SbSignatureAlgorithmName(model.signature)),
				 errhint("Create a new model for the other algorithm.")));
	SPI_execute_with_args("UPDATE scuttlebutt.registry SET signature_algorithm = $2 WHERE id = $1",
						  2, (Oid[]) {INT4OID, TEXTOID},
						  (Datum[]) {Int32GetDatum(model.id),
							  CStringGetTextDatum(SbSignatureAlgorithmName(alg))},
						  NULL, false, 0);
	SPI_finish();
	PG_RETURN_VOID();
}
