/*-------------------------------------------------------------------------
 *
 * sql_util.h
 *	  Input checks and argument helpers shared by the SQL-callable functions.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_SQL_UTIL_H
#define SCUTTLEBUTT_SQL_UTIL_H

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/jsonb.h"

#include "wire.h"

/* A clock argument is {source: finite number}: an ERROR otherwise */
extern void SbCheckClockArg(Jsonb *clock);

/* A text argument as a C string; ERROR (null_value_not_allowed) if NULL */
extern char *SbRequiredTextArg(FunctionCallInfo fcinfo, int argno,
							   const char *what);

/* ERROR (null_value_not_allowed) if any argument of function is NULL */
extern void SbCheckArgsNotNull(FunctionCallInfo fcinfo, const char *function);
extern void SbCheckFirstArgsNotNull(FunctionCallInfo fcinfo, int n,
									const char *function);

/* ERROR if a key, event name or source is "__proto__" */
extern void SbCheckName(const char *name, const char *what);

/* ERROR with the errcode and message of a failed wire-message check */
extern void SbReportMessageError(SbMessageError *err, const char *context)
			pg_attribute_noreturn();

/* Narrows text to the JSON value inside surrounding white space */
extern void SbTrimJsonText(const char **text, int *len);

/* Appends JSON.stringify of a jsonb argument (SQL NULL: JSON null) */
extern void SbAppendJsonbArg(StringInfo buf, FunctionCallInfo fcinfo, int argno);

/* The change [name, value]: value the jsonb argument argno (-1: null) */
extern char *SbNamedChange(const char *name, FunctionCallInfo fcinfo, int argno);

#endif							/* SCUTTLEBUTT_SQL_UTIL_H */
