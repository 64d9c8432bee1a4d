/*-------------------------------------------------------------------------
 *
 * sql_model.c
 *	  SQL functions of the model registry and of key/value models:
 *	  create_model(), drop_model(), set(), delete(), set_many().
 *
 * The reads (get, keys, entries, to_json, models) are SQL functions in the
 * install script.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "jstext.h"
#include "node_key.h"
#include "privileges.h"
#include "sql_util.h"
#include "store.h"

PG_FUNCTION_INFO_V1(scuttlebutt_create_model);
PG_FUNCTION_INFO_V1(scuttlebutt_drop_model);
PG_FUNCTION_INFO_V1(scuttlebutt_set);
PG_FUNCTION_INFO_V1(scuttlebutt_delete);
PG_FUNCTION_INFO_V1(scuttlebutt_set_many);

/*
 * scuttlebutt.create_model(name, kind, signed): a signed model accepts the
 * signatures of this node's key's algorithm, or the reference's RSA-SHA1
 * when the node has no key.  The caller owns the model.  Who may create
 * models is who may execute this function (not PUBLIC: GRANT EXECUTE), not
 * who has CREATE on schema scuttlebutt: that would let a role put
 * functions and operators there that outrank the extension's own in
 * other roles' calls, superusers' included.
 */
Datum
scuttlebutt_create_model(PG_FUNCTION_ARGS)
{
	char	   *name = SbRequiredTextArg(fcinfo, 0, "model name");
	char	   *kind_name = SbRequiredTextArg(fcinfo, 1, "model kind");
	bool		is_signed;
	SbKind		kind;
	Oid			argtypes[4] = {TEXTOID, TEXTOID, TEXTOID, OIDOID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', 'n', ' '};
	SbOwnerScope scope;

	if (!SbKindFromName(kind_name, &kind))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid scuttlebutt model kind \"%s\"", kind_name),
				 errhint("The kind must be 'model', 'events' or 'value'.")));
	if (name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("model name must not be empty")));

	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("signed must not be null")));
	is_signed = PG_GETARG_BOOL(2);

	values[0] = CStringGetTextDatum(name);
	values[1] = CStringGetTextDatum(kind_name);
	if (is_signed)
	{
		const SbNodeKey *key = SbGetNodeKey();

		values[2] = CStringGetTextDatum(SbSignatureAlgorithmName(key ? key->algorithm
																 : SB_SIG_RSA_SHA1));
		nulls[2] = ' ';
	}
	values[3] = ObjectIdGetDatum(GetUserId());
	SbBeginOwnerScope(&scope);
	SPI_connect();
	if (SPI_execute_with_args("INSERT INTO scuttlebutt.registry (name, kind, signature_algorithm, owner)"
							  " VALUES ($1, $2, $3, $4::pg_catalog.regrole)"
							  " ON CONFLICT (name) DO NOTHING",
							  4, argtypes, values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not insert into scuttlebutt.registry");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("scuttlebutt model \"%s\" already exists", name)));
	SPI_finish();
	SbEndOwnerScope(&scope);
	PG_RETURN_VOID();
}

/*
 * scuttlebutt.drop_model(name): the model, its clock, its updates and its
 * grants; its owner or a superuser may
 */
Datum
scuttlebutt_drop_model(PG_FUNCTION_ARGS)
{
	char	   *name = SbRequiredTextArg(fcinfo, 0, "model name");
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	bool		isnull;
	SbModelRef	model;
	SbOwnerScope scope;

	SbModelLookup(name, SB_KIND_ANY, &model);
	if (!SbIsModelOwner(model.id))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of scuttlebutt model \"%s\" to drop it", name)));

	values[0] = CStringGetTextDatum(name);
	SbBeginOwnerScope(&scope);
	SPI_connect();
	if (SPI_execute_with_args("DELETE FROM scuttlebutt.registry WHERE name = $1"
							  " RETURNING id",
							  1, argtypes, values, NULL, false, 0) != SPI_OK_DELETE_RETURNING)
		elog(ERROR, "could not delete from scuttlebutt.registry");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("scuttlebutt model \"%s\" does not exist", name)));

	/* clocks go by ON DELETE CASCADE; updates have no foreign key (cost) */
	argtypes[0] = INT4OID;
	values[0] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
							  &isnull);
	if (SPI_execute_with_args("DELETE FROM scuttlebutt.updates WHERE model_id = $1",
							  1, argtypes, values, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not delete from scuttlebutt.updates");
	SPI_finish();
	SbEndOwnerScope(&scope);
	PG_RETURN_VOID();
}

/* set(model, key, value) and delete(model, key) */
static double
set_key(FunctionCallInfo fcinfo, bool delete)
{
	char	   *model_name = SbRequiredTextArg(fcinfo, 0, "model name");
	char	   *key = SbRequiredTextArg(fcinfo, 1, "key");
	char	   *change;
	SbModelRef	model;
	SbOwnerScope scope;
	double		ts;

	SbCheckName(key, "key");
	change = SbNamedChange(key, fcinfo, delete ? -1 : 2);
	SbModelLookup(model_name, SB_KIND_MODEL, &model);
	SbCheckModelPrivilege(model.id, model.name, SB_PRIV_WRITE);
	SbBeginOwnerScope(&scope);
	ts = SbLocalWrite(&model, key, change);
	SbEndOwnerScope(&scope);
	return ts;
}

/* scuttlebutt.set(model, key, value): the update's timestamp */
Datum
scuttlebutt_set(PG_FUNCTION_ARGS)
{
	PG_RETURN_FLOAT8(set_key(fcinfo, false));
}

/* scuttlebutt.delete(model, key): sets the key to null */
Datum
scuttlebutt_delete(PG_FUNCTION_ARGS)
{
	PG_RETURN_FLOAT8(set_key(fcinfo, true));
}

/*
 * scuttlebutt.set_many(model, entries): one update per key of a JSON
 * object, in one statement; returns how many
 */
Datum
scuttlebutt_set_many(PG_FUNCTION_ARGS)
{
	char	   *model_name = SbRequiredTextArg(fcinfo, 0, "model name");
	Jsonb	   *entries;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			n;
	int			count = 0;
	char	  **keys;
	char	  **changes;
	SbModelRef	model;
	StringInfoData buf;
	SbOwnerScope scope;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("entries must not be null")));
	entries = PG_GETARG_JSONB_P(1);
	if (!JB_ROOT_IS_OBJECT(entries))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("entries must be a JSON object of keys to values")));

	n = JB_ROOT_COUNT(entries);
	keys = palloc(sizeof(char *) * Max(n, 1));
	changes = palloc(sizeof(char *) * Max(n, 1));
	initStringInfo(&buf);

	it = JsonbIteratorInit(&entries->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok != WJB_KEY)
			continue;
		keys[count] = pnstrdup(v.val.string.val, v.val.string.len);
		SbCheckName(keys[count], "key");
		resetStringInfo(&buf);
		appendStringInfoChar(&buf, '[');
		JsAppendString(&buf, v.val.string.val, v.val.string.len);
		appendStringInfoChar(&buf, ',');
		tok = JsonbIteratorNext(&it, &v, true);
		Assert(tok == WJB_VALUE);
		JsAppendJsonbValue(&buf, &v);
		appendStringInfoChar(&buf, ']');
		changes[count] = pnstrdup(buf.data, buf.len);
		count++;
	}

	SbModelLookup(model_name, SB_KIND_MODEL, &model);
	SbCheckModelPrivilege(model.id, model.name, SB_PRIV_WRITE);
	SbBeginOwnerScope(&scope);
	SbLocalWriteMany(&model, count, keys, changes);
	SbEndOwnerScope(&scope);
	PG_RETURN_INT64(count);
}
