/*-------------------------------------------------------------------------
 *
 * model_functions.c
 *	  SQL-callable functions that create models and write to them.
 *
 * Reads (get, entries, events, clock, history, ...) are SQL functions in
 * the install script; everything that writes, and every input check, is
 * here.  Each entry point validates its arguments first, so bad input is
 * an ERROR before anything is stored.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "jstext.h"
#include "model_functions.h"
#include "model_store.h"
#include "wire_message.h"

PG_FUNCTION_INFO_V1(scuttlebutt_create_model);
PG_FUNCTION_INFO_V1(scuttlebutt_drop_model);
PG_FUNCTION_INFO_V1(scuttlebutt_model_id);
PG_FUNCTION_INFO_V1(scuttlebutt_valid_clock);
PG_FUNCTION_INFO_V1(scuttlebutt_set);
PG_FUNCTION_INFO_V1(scuttlebutt_delete);
PG_FUNCTION_INFO_V1(scuttlebutt_set_many);
PG_FUNCTION_INFO_V1(scuttlebutt_emit);
PG_FUNCTION_INFO_V1(scuttlebutt_set_value);
PG_FUNCTION_INFO_V1(scuttlebutt_apply_update);
PG_FUNCTION_INFO_V1(scuttlebutt_stringify);

/* A text argument that must not be NULL */
static char *
required_text_arg(FunctionCallInfo fcinfo, int argno, const char *what)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", what)));
	return text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

/* Keys, event names and sources: "__proto__" breaks the reference peer */
void
SbCheckName(const char *name, const char *what)
{
	if (strcmp(name, "__proto__") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s \"__proto__\" is not allowed", what),
				 errdetail("The reference JavaScript peer rejects \"__proto__\" as a key, event name or source.")));
}

/* Raises the error a wire-message check reported */
void
SbReportMessageError(SbMessageError *err, const char *context)
{
	ereport(ERROR,
			(errcode(err->sqlerrcode),
			 errmsg("invalid %s: %s", context, err->message)));
}

/* JSON.stringify of a jsonb argument; SQL NULL is JSON null */
static void
append_jsonb_arg(StringInfo buf, FunctionCallInfo fcinfo, int argno)
{
	if (PG_ARGISNULL(argno))
		appendStringInfoString(buf, "null");
	else
		JsAppendJsonb(buf, &PG_GETARG_JSONB_P(argno)->root);
}

Datum
scuttlebutt_create_model(PG_FUNCTION_ARGS)
{
	char	   *name = required_text_arg(fcinfo, 0, "model name");
	char	   *kind_name = required_text_arg(fcinfo, 1, "model kind");
	SbKind		kind;
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2];

	if (!SbKindFromName(kind_name, &kind))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid scuttlebutt model kind \"%s\"", kind_name),
				 errhint("The kind must be 'model', 'events' or 'value'.")));
	if (name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("model name must not be empty")));

	values[0] = CStringGetTextDatum(name);
	values[1] = CStringGetTextDatum(kind_name);
	SPI_connect();
	if (SPI_execute_with_args("INSERT INTO scuttlebutt.registry (name, kind)"
							  " VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
							  2, argtypes, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not insert into scuttlebutt.registry");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("scuttlebutt model \"%s\" already exists", name)));
	SPI_finish();
	PG_RETURN_VOID();
}

Datum
scuttlebutt_drop_model(PG_FUNCTION_ARGS)
{
	char	   *name = required_text_arg(fcinfo, 0, "model name");
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	bool		isnull;

	values[0] = CStringGetTextDatum(name);
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
	PG_RETURN_VOID();
}

/* scuttlebutt._model_id(name, expected_kind): for the SQL functions */
Datum
scuttlebutt_model_id(PG_FUNCTION_ARGS)
{
	char	   *name = required_text_arg(fcinfo, 0, "model name");
	int			expected = SB_KIND_ANY;
	SbModelRef	model;

	if (!PG_ARGISNULL(1))
	{
		char	   *kind_name = text_to_cstring(PG_GETARG_TEXT_PP(1));
		SbKind		kind;

		if (!SbKindFromName(kind_name, &kind))
			elog(ERROR, "unknown model kind \"%s\"", kind_name);
		expected = kind;
	}
	SbModelLookup(name, expected, &model);
	PG_RETURN_INT32(model.id);
}

/* scuttlebutt._valid_clock(jsonb): a clock is {source: finite number} */
Datum
scuttlebutt_valid_clock(PG_FUNCTION_ARGS)
{
	Jsonb	   *clock;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (PG_ARGISNULL(0))
		PG_RETURN_BOOL(true);
	clock = PG_GETARG_JSONB_P(0);
	if (!JB_ROOT_IS_OBJECT(clock))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sources must be a JSON object of source ids to timestamps"),
				 errdetail("Got a JSON %s.", JB_ROOT_IS_ARRAY(clock) && !JB_ROOT_IS_SCALAR(clock) ? "array" : "scalar")));

	it = JsonbIteratorInit(&clock->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *source;

		if (tok != WJB_KEY)
			continue;
		source = pnstrdup(v.val.string.val, v.val.string.len);
		tok = JsonbIteratorNext(&it, &v, true);
		if (v.type != jbvNumeric)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("timestamp of source \"%s\" in sources is not a number",
							source)));
		if (!isfinite(JsNumericToDouble(v.val.numeric)))
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("timestamp of source \"%s\" in sources is out of range",
							source)));
	}
	PG_RETURN_BOOL(true);
}

/* set(model, key, value) and delete(model, key) */
static double
set_key(FunctionCallInfo fcinfo, bool delete)
{
	char	   *model_name = required_text_arg(fcinfo, 0, "model name");
	char	   *key = required_text_arg(fcinfo, 1, "key");
	StringInfoData change;
	SbModelRef	model;

	SbCheckName(key, "key");
	initStringInfo(&change);
	appendStringInfoChar(&change, '[');
	JsAppendString(&change, key, strlen(key));
	appendStringInfoChar(&change, ',');
	if (delete)
		appendStringInfoString(&change, "null");
	else
		append_jsonb_arg(&change, fcinfo, 2);
	appendStringInfoChar(&change, ']');

	SbModelLookup(model_name, SB_KIND_MODEL, &model);
	return SbLocalWrite(&model, key, change.data);
}

Datum
scuttlebutt_set(PG_FUNCTION_ARGS)
{
	PG_RETURN_FLOAT8(set_key(fcinfo, false));
}

Datum
scuttlebutt_delete(PG_FUNCTION_ARGS)
{
	PG_RETURN_FLOAT8(set_key(fcinfo, true));
}

Datum
scuttlebutt_set_many(PG_FUNCTION_ARGS)
{
	char	   *model_name = required_text_arg(fcinfo, 0, "model name");
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
	SbLocalWriteMany(&model, count, keys, changes);
	PG_RETURN_INT64(count);
}

Datum
scuttlebutt_emit(PG_FUNCTION_ARGS)
{
	char	   *model_name = required_text_arg(fcinfo, 0, "model name");
	char	   *event = required_text_arg(fcinfo, 1, "event name");
	StringInfoData change;
	SbModelRef	model;

	SbCheckName(event, "event name");
	initStringInfo(&change);
	appendStringInfoChar(&change, '[');
	JsAppendString(&change, event, strlen(event));
	appendStringInfoChar(&change, ',');
	append_jsonb_arg(&change, fcinfo, 2);
	appendStringInfoChar(&change, ']');

	SbModelLookup(model_name, SB_KIND_EVENTS, &model);
	PG_RETURN_FLOAT8(SbLocalWrite(&model, NULL, change.data));
}

Datum
scuttlebutt_set_value(PG_FUNCTION_ARGS)
{
	char	   *model_name = required_text_arg(fcinfo, 0, "model name");
	StringInfoData change;
	SbModelRef	model;

	initStringInfo(&change);
	append_jsonb_arg(&change, fcinfo, 1);

	SbModelLookup(model_name, SB_KIND_VALUE, &model);
	PG_RETURN_FLOAT8(SbLocalWrite(&model, "", change.data));
}

/* Trims the white space JSON allows around a value */
void
SbTrimJsonText(const char **text, int *len)
{
	while (*len > 0 && strchr(" \t\r\n", (*text)[0]) != NULL)
	{
		(*text)++;
		(*len)--;
	}
	while (*len > 0 && strchr(" \t\r\n", (*text)[*len - 1]) != NULL)
		(*len)--;
}

Datum
scuttlebutt_apply_update(PG_FUNCTION_ARGS)
{
	char	   *model_name = required_text_arg(fcinfo, 0, "model name");
	text	   *update;
	const char *data;
	int			len;
	SbMessage	msg;
	SbMessageError err;
	SbModelRef	model;
	bool		stored;
	bool		ok;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("update must not be null")));
	update = PG_GETARG_TEXT_PP(1);
	data = VARDATA_ANY(update);
	len = VARSIZE_ANY_EXHDR(update);
	SbTrimJsonText(&data, &len);

	SbModelLookup(model_name, SB_KIND_ANY, &model);
	ok = SbParseMessage(data, len, &msg, &err);
	if (!ok && msg.type != SB_MSG_HEADER)
		SbReportMessageError(&err, "scuttlebutt update");
	if (msg.type != SB_MSG_UPDATE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid scuttlebutt update: not a JSON array"),
				 errdetail("An update is [change, timestamp, source] or [change, timestamp, source, signature].")));
	if (!SbCheckUpdateForKind(&msg, model.kind, &err))
		SbReportMessageError(&err, "scuttlebutt update");

	SbApplyUpdates(&model, &msg, 1, &stored);
	PG_RETURN_BOOL(stored);
}

Datum
scuttlebutt_stringify(PG_FUNCTION_ARGS)
{
	Jsonb	   *value = PG_GETARG_JSONB_P(0);
	StringInfoData buf;

	initStringInfo(&buf);
	JsAppendJsonb(&buf, &value->root);
	PG_RETURN_TEXT_P(cstring_to_text_with_len(buf.data, buf.len));
}
