/*-------------------------------------------------------------------------
 *
 * jstext.h
 *	  Writing JSON text byte for byte as JavaScript's JSON.stringify does.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_JSTEXT_H
#define SCUTTLEBUTT_JSTEXT_H

#include "lib/stringinfo.h"
#include "utils/jsonb.h"

/* Number.prototype.toString (non-finite numbers are written as null) */
extern void JsAppendNumber(StringInfo buf, double value);

/* A JSON string literal, escaped as JSON.stringify escapes it */
extern void JsAppendString(StringInfo buf, const char *str, int len);

/* JSON.stringify of a jsonb value (the root container of a Jsonb) */
extern void JsAppendJsonb(StringInfo buf, JsonbContainer *container);

/* JSON.stringify of one JsonbValue (scalar or jbvBinary) */
extern void JsAppendJsonbValue(StringInfo buf, JsonbValue *value);

/* Is this object key an array index, which JavaScript orders first? */
extern bool JsIsArrayIndex(const char *key, int len, uint32 *index);

/* A jsonb number as a JavaScript number; errors if out of double range */
extern double JsNumericToDouble(Numeric num);

/* {source: ts, ...} in JavaScript's own-key order */
extern void JsAppendClockObject(StringInfo buf, int n, char **sources,
								double *ts);

#endif							/* SCUTTLEBUTT_JSTEXT_H */
