/*-------------------------------------------------------------------------
 *
 * sql_util.c
 *	  Input checks and argument helpers shared by the SQL-callable functions.
 *
 * Every entry point validates its arguments with these before it touches
 * a table, so bad input is an ERROR before anything is stored.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "jstext.h"
#include "sql_util.h"

/* A text argument that must not be NULL */
char *
SbRequiredTextArg(FunctionCallInfo fcinfo, int argno, const char *what)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", what)));
	return text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

void
SbCheckArgsNotNull(FunctionCallInfo fcinfo, const char *function)
{
	SbCheckFirstArgsNotNull(fcinfo, PG_NARGS(), function);
}

/* The same for the first n arguments (those after may be null) */
void
SbCheckFirstArgsNotNull(FunctionCallInfo fcinfo, int n, const char *function)
{
	for (int i = 0; i < n; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("arguments of %s must not be null", function)));
}

/*
 * Keys and event names: "__proto__" breaks the reference peer, and a name
 * longer than SB_MAX_KEY_BYTES could not be stored by every peer (the wire
 * checks say the same of updates from elsewhere: wire.c)
 */
void
SbCheckName(const char *name, const char *what)
{
	if (strcmp(name, "__proto__") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s \"__proto__\" is not allowed", what),
				 errdetail("The reference JavaScript peer rejects \"__proto__\" as a key, event name or source.")));
	if (strlen(name) > SB_MAX_KEY_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s is %zu bytes long, longer than the %d bytes allowed",
						what, strlen(name), SB_MAX_KEY_BYTES)));
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
void
SbAppendJsonbArg(StringInfo buf, FunctionCallInfo fcinfo, int argno)
{
	if (PG_ARGISNULL(argno))
		appendStringInfoString(buf, "null");
	else
		JsAppendJsonb(buf, &PG_GETARG_JSONB_P(argno)->root);
}

/*
 * The change [name, value] of a key or an event, value being the jsonb
 * argument argno (-1: null, as delete() writes)
 */
char *
SbNamedChange(const char *name, FunctionCallInfo fcinfo, int argno)
{
	StringInfoData change;

	initStringInfo(&change);
	appendStringInfoChar(&change, '[');
	JsAppendString(&change, name, strlen(name));
	appendStringInfoChar(&change, ',');
	if (argno < 0)
		appendStringInfoString(&change, "null");
	else
		SbAppendJsonbArg(&change, fcinfo, argno);
	appendStringInfoChar(&change, ']');
	return change.data;
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

/* A clock argument is a JSON object of finite numbers: an ERROR says what is not */
void
SbCheckClockArg(Jsonb *clock)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

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
}
