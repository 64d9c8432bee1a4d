/*-------------------------------------------------------------------------
 *
 * stream_functions.h
 *	  The persistence streams: export() and import().
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_STREAM_FUNCTIONS_H
#define SCUTTLEBUTT_STREAM_FUNCTIONS_H

#include "lib/stringinfo.h"

/* A vector clock as the JavaScript object JSON.stringify would write */
extern void SbAppendClockObject(StringInfo buf, int n, char **sources,
								double *ts);

#endif							/* SCUTTLEBUTT_STREAM_FUNCTIONS_H */
