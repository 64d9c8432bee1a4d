/*-------------------------------------------------------------------------
 *
 * sql_value.c
 *	  SQL functions of value models (r-value): set_value().
 *
 * The value is read by get_value(), an SQL function in the install script.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "lib/stringinfo.h"

#include "privileges.h"
#include "sql_util.h"
#include "store.h"

PG_FUNCTION_INFO_V1(scuttlebutt_set_value);

/* scuttlebutt.set_value(model, value): the update's timestamp */
Datum
scuttlebutt_set_value(PG_FUNCTION_ARGS)
{
	char	   *model_name = SbRequiredTextArg(fcinfo, 0, "model name");
	StringInfoData change;
	SbModelRef	model;
	SbOwnerScope scope;
	double		ts;

	initStringInfo(&change);
	SbAppendJsonbArg(&change, fcinfo, 1);

	SbModelLookup(model_name, SB_KIND_VALUE, &model);
	SbCheckModelPrivilege(model.id, model.name, SB_PRIV_WRITE);
	SbBeginOwnerScope(&scope);
	ts = SbLocalWrite(&model, "", change.data);
	SbEndOwnerScope(&scope);
	PG_RETURN_FLOAT8(ts);
}
