/*-------------------------------------------------------------------------
 *
 * sql_events.c
 *	  SQL functions of events models: emit().
 *
 * The log is read by events(), an SQL function in the install script.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"

#include "privileges.h"
#include "sql_util.h"
#include "store.h"

PG_FUNCTION_INFO_V1(scuttlebutt_emit);

/* scuttlebutt.emit(model, event, data): the event's timestamp */
Datum
scuttlebutt_emit(PG_FUNCTION_ARGS)
{
	char	   *model_name = SbRequiredTextArg(fcinfo, 0, "model name");
	char	   *event = SbRequiredTextArg(fcinfo, 1, "event name");
	char	   *change;
	SbModelRef	model;
	SbOwnerScope scope;
	double		ts;

	SbCheckName(event, "event name");
	change = SbNamedChange(event, fcinfo, 2);
	SbModelLookup(model_name, SB_KIND_EVENTS, &model);
	SbCheckModelPrivilege(model.id, model.name, SB_PRIV_WRITE);
	SbBeginOwnerScope(&scope);
	ts = SbLocalWrite(&model, NULL, change);
	SbEndOwnerScope(&scope);
	PG_RETURN_FLOAT8(ts);
}
