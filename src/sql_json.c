/*-------------------------------------------------------------------------
 *
 * sql_json.c
 *	  SQL functions of the JSON text codec: stringify().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "jstext.h"

PG_FUNCTION_INFO_V1(scuttlebutt_stringify);

/* scuttlebutt.stringify(jsonb): the text JSON.stringify writes */
Datum
scuttlebutt_stringify(PG_FUNCTION_ARGS)
{
	Jsonb	   *value = PG_GETARG_JSONB_P(0);
	StringInfoData buf;

	initStringInfo(&buf);
	JsAppendJsonb(&buf, &value->root);
	PG_RETURN_TEXT_P(cstring_to_text_with_len(buf.data, buf.len));
}
