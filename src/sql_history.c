/*-------------------------------------------------------------------------
 *
 * sql_history.c
 *	  SQL functions at the protocol level: apply_update(), and the check of
 *	  the sources argument of history().
 *
 * clock() and history() themselves are SQL functions in the install
 * script (history() is inlined into one index scan per source).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"

#include "apply.h"
#include "jstext.h"
#include "privileges.h"
#include "sql_util.h"
#include "store.h"
#include "trusted_keys.h"
#include "wire.h"

PG_FUNCTION_INFO_V1(scuttlebutt_valid_clock);
PG_FUNCTION_INFO_V1(scuttlebutt_apply_update);

/* scuttlebutt._valid_clock(jsonb): a clock is {source: finite number} */
Datum
scuttlebutt_valid_clock(PG_FUNCTION_ARGS)
{
	if (!PG_ARGISNULL(0))
		SbCheckClockArg(PG_GETARG_JSONB_P(0));
	PG_RETURN_BOOL(true);
}

/*
 * scuttlebutt.apply_update(model, update): applies one update from
 * elsewhere under the merge rules; true if it changed the model
 */
Datum
scuttlebutt_apply_update(PG_FUNCTION_ARGS)
{
	char	   *model_name = SbRequiredTextArg(fcinfo, 0, "model name");
	text	   *update;
	const char *data;
	int			len;
	SbMessage	msg;
	SbMessageError err;
	SbModelRef	model;
	bool		stored;
	bool		ok;
	SbOwnerScope scope;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("update must not be null")));
	update = PG_GETARG_TEXT_PP(1);
	data = VARDATA_ANY(update);
	len = VARSIZE_ANY_EXHDR(update);
	SbTrimJsonText(&data, &len);

	SbModelLookup(model_name, SB_KIND_ANY, &model);
	SbCheckModelPrivilege(model.id, model.name, SB_PRIV_WRITE);
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
	SbBeginOwnerScope(&scope);
	if (!SbVerifyUpdate(&model, &msg, &err))
		ereport(ERROR,
				(errcode(err.sqlerrcode),
				 errmsg("scuttlebutt update refused by signed model \"%s\": %s",
						model.name, err.message)));

	SbApplyUpdates(&model, &msg, 1, &stored);
	SbEndOwnerScope(&scope);
	PG_RETURN_BOOL(stored);
}
