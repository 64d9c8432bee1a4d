/*-------------------------------------------------------------------------
 *
 * sql_internal.c
 *	  Internal SQL functions (names starting with an underscore) that the
 *	  install script's SQL functions and store.c's statements call on every
 *	  surface: _model_id(), _ts_after(), _next_local_ts(),
 *	  _visible_ts().
 *
 * Helpers of one surface live with it (_valid_clock in sql_history.c,
 * _export_header and _sync_line in sql_streams.c, _conninfo_* and
 * _peers_changed in sql_peers.c, _registry_changed in model_cache.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "fmgr.h"
#include "utils/builtins.h"

#include "privileges.h"
#include "sequencer.h"
#include "sql_util.h"
#include "store.h"
#include "timestamp.h"

PG_FUNCTION_INFO_V1(scuttlebutt_model_id);

/*
 * scuttlebutt._model_id(name, expected_kind): for the SQL functions, which
 * all read; ERROR (insufficient_privilege) unless the caller may read the
 * model, rather than the empty result row-level security would give
 */
Datum
scuttlebutt_model_id(PG_FUNCTION_ARGS)
{
	char	   *name = SbRequiredTextArg(fcinfo, 0, "model name");
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
	SbCheckModelPrivilege(model.id, model.name, SB_PRIV_READ);
	PG_RETURN_INT32(model.id);
}

PG_FUNCTION_INFO_V1(scuttlebutt_ts_after);

/* SQL access for the clock statements: scuttlebutt._ts_after(float8) */
Datum
scuttlebutt_ts_after(PG_FUNCTION_ARGS)
{
	PG_RETURN_FLOAT8(SbTimestampAfter(PG_GETARG_FLOAT8(0)));
}

PG_FUNCTION_INFO_V1(scuttlebutt_next_local_ts);

/*
 * scuttlebutt._next_local_ts(model_id, node_id, floor): the timestamp of
 * a local write, past floor (the key's current timestamp, or NULL), for
 * store.c's single-statement write.
 */
Datum
scuttlebutt_next_local_ts(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("model id and node id must not be null")));
	if (!SbSequencerActive())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("scuttlebutt's timestamp sequencer needs the library in shared_preload_libraries")));
	PG_RETURN_FLOAT8(SbSequencerNext(PG_GETARG_INT32(0),
									 text_to_cstring(PG_GETARG_TEXT_PP(1)),
									 PG_ARGISNULL(2) ? NAN : PG_GETARG_FLOAT8(2),
									 1));
}

PG_FUNCTION_INFO_V1(scuttlebutt_visible_ts);

/*
 * scuttlebutt._visible_ts(model_id, source, ts): ts, or for this node's
 * own source the visible limit if lower.  Every reader of a clock or of
 * history applies it.
 */
Datum
scuttlebutt_visible_ts(PG_FUNCTION_ARGS)
{
	PG_RETURN_FLOAT8(SbVisibleTs(PG_GETARG_INT32(0),
								 text_to_cstring(PG_GETARG_TEXT_PP(1)),
								 PG_GETARG_FLOAT8(2)));
}
