/*-------------------------------------------------------------------------
 *
 * wire.h
 *	  The wire codec: every line of the scuttlebutt protocol is parsed and
 *	  written here (update, header, clock, "SYNC").
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_WIRE_H
#define SCUTTLEBUTT_WIRE_H

#include "lib/stringinfo.h"

#include "merge.h"

/*
 * Longest key, event name and source, in bytes: every index row of
 * scuttlebutt.updates and scuttlebutt.clocks then stays well under
 * btree's limit (about 2,700 bytes), so an update the checks accept can
 * always be stored.  Reference ids are short (random hex, or a key's
 * SHA-1 in base64), and the sources bound the header's size.
 */
#define SB_MAX_KEY_BYTES 1024
#define SB_MAX_SOURCE_BYTES 256
/* A header's meta.token (a JWT) may be at most this long */
#define SB_MAX_TOKEN_BYTES 8192

/* Deepest nesting of JSON text taken: pg_parse_json recurses per level */
#define SB_MAX_JSON_DEPTH 512

typedef enum SbMessageType
{
	SB_MSG_UPDATE,				/* [change, ts, source(, signature)] */
	SB_MSG_HEADER,				/* {"id":..., "clock":{...}, "meta":...} */
	SB_MSG_SYNC,				/* "SYNC" */
	SB_MSG_IGNORED				/* any other JSON value: ignored, as the
								 * reference does */
} SbMessageType;

/* A span of the line's text: [start, end) byte offsets */
typedef struct SbSpan
{
	int			start;
	int			end;
} SbSpan;

typedef struct SbClockEntry
{
	char	   *source;
	double		ts;
} SbClockEntry;

/* What went wrong with a line, for an ERROR or a connection's log */
typedef struct SbMessageError
{
	int			sqlerrcode;		/* 0: no error */
	char	   *message;
} SbMessageError;

typedef struct SbMessage
{
	SbMessageType type;
	const char *text;			/* the line, as received */
	int			len;

	/* SB_MSG_UPDATE */
	double		ts;
	char	   *source;
	char	   *key;			/* change[0] when it is a string, else NULL */
	SbSpan		change;			/* element 0 */
	char	   *signature;		/* element 3, or NULL */
	int			nelems;			/* elements of the update */
	bool		change_is_array;
	int			change_nelems;

	/* SB_MSG_HEADER */
	char	   *id;				/* NULL if absent or not a string */
	bool		has_clock;
	int			nclock;
	SbClockEntry *clock;
	bool		has_meta;
	SbSpan		meta;
	char	   *meta_model;		/* meta as a string, or meta.model */
	char	   *meta_token;		/* meta.token when a string (at most
								 * SB_MAX_TOKEN_BYTES), else NULL */
	bool		meta_token_too_long;	/* meta.token was longer */
} SbMessage;

/*
 * Parses one line (without its newline).  Returns false and fills *err
 * when the line is not valid JSON, holds text PostgreSQL cannot store, or
 * is a malformed update or header.  Never throws for bad input.
 */
extern bool SbParseMessage(const char *text, int len, SbMessage *msg,
						   SbMessageError *err);

/*
 * Checks that an update's change has the shape the model kind needs, and
 * fills msg->key with the row key the update is stored under (NULL for
 * events).  Returns false and fills *err otherwise.
 */
extern bool SbCheckUpdateForKind(SbMessage *msg, SbKind kind,
								 SbMessageError *err);

/*
 * One pass over JSON text, strings skipped as the lexer skips them: the
 * deepest nesting, or -1 once deeper than SB_MAX_JSON_DEPTH; *line_break
 * says whether a line break occurs outside strings.
 */
extern int	SbJsonScan(const char *text, int len, bool *line_break);

/*
 * strtod() of a JSON number token (as the lexer passed it), the same
 * double to the bit: where its digits form an integer of at most 2^53 and
 * it has no exponent, that integer and the power of ten it is divided by
 * (at most 10^19, below 10^22) are exact doubles, so one IEEE division
 * rounds as strtod() does (Clinger's fast path), without strtod()'s
 * arbitrary precision.  A timestamp in milliseconds with three decimals
 * has 16 digits.
 */
extern double SbJsonNumber(const char *token);

/* ---- writing: each appends one line's text, without its newline ---- */

/* A clock as the JavaScript object JSON.stringify would write */
extern void SbAppendClockJson(StringInfo buf, const SbClockEntry *entries, int n);

/* An update [change,ts,"source"], change_text being the change's JSON text */
extern void SbAppendUpdateText(StringInfo buf, const char *change_text,
							   double ts, const char *source);

/*
 * A header {"id":...,"clock":{...}} with ,"meta":"<meta_model>" before the
 * closing brace when meta_model is not NULL (the side that dialed names
 * the model it wants)
 */
extern void SbWireAppendHeader(StringInfo buf, const char *id,
							   const SbClockEntry *clock, int nclock,
							   const char *meta_model);

/* The string "SYNC": the history that the header announced is all sent */
extern void SbWireAppendSync(StringInfo buf);

#endif							/* SCUTTLEBUTT_WIRE_H */
