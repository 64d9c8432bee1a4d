/*-------------------------------------------------------------------------
 *
 * jscanon.h
 *	  The text JavaScript gives for JSON text it reads and writes back:
 *	  JSON.stringify(JSON.parse(text)), which is what a signature covers.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_JSCANON_H
#define SCUTTLEBUTT_JSCANON_H

#include "lib/stringinfo.h"

/*
 * Appends JSON.stringify(JSON.parse(text)) to out: JavaScript's own key order (array-index keys
 * ascending first, then the others in first-insertion order; a duplicate key keeps its first
 * position and takes its last value), numbers as Number.prototype.toString, strings re-escaped
 * as JSON.stringify escapes them. Returns false (out unspecified) if text is not valid JSON.
 */
extern bool JsAppendReparsed(StringInfo out, const char *text, int len);

/* The signed text of a parsed update: JSON.stringify([change, ts, source]) */
extern void SbAppendSignedText(StringInfo out, const char *change_text, int change_len,
							   double ts, const char *source);

#endif							/* SCUTTLEBUTT_JSCANON_H */
