/*-------------------------------------------------------------------------
 *
 * model_functions.h
 *	  Input checks shared by the SQL-callable functions.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_MODEL_FUNCTIONS_H
#define SCUTTLEBUTT_MODEL_FUNCTIONS_H

#include "wire_message.h"

/* ERROR if a key, event name or source is "__proto__" */
extern void SbCheckName(const char *name, const char *what);

/* ERROR with the errcode and message of a failed wire-message check */
extern void SbReportMessageError(SbMessageError *err, const char *context)
			pg_attribute_noreturn();

/* Narrows text to the JSON value inside surrounding white space */
extern void SbTrimJsonText(const char **text, int *len);

#endif							/* SCUTTLEBUTT_MODEL_FUNCTIONS_H */
