/*-------------------------------------------------------------------------
 *
 * wire_message.h
 *	  Parsing one line of the scuttlebutt wire protocol.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_WIRE_MESSAGE_H
#define SCUTTLEBUTT_WIRE_MESSAGE_H

#include "lib/stringinfo.h"

/* Kinds of model; the same codes as scuttlebutt.registry.kind */
typedef enum SbKind
{
	SB_KIND_MODEL,				/* 'model': key/value, latest per key */
	SB_KIND_EVENTS,				/* 'events': every update kept */
	SB_KIND_VALUE				/* 'value': r-value, the latest update */
} SbKind;

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

/* A clock as the JavaScript object JSON.stringify would write */
extern void SbAppendClockJson(StringInfo buf, const SbClockEntry *entries, int n);

/* A header line's text (meta_model NULL: no meta), without a newline */
extern void SbWireAppendHeader(StringInfo buf, const char *id,
							   const SbClockEntry *clock, int nclock,
							   const char *meta_model);

/* The "SYNC" line's text, without a newline */
extern void SbWireAppendSync(StringInfo buf);

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

extern const char *SbKindName(SbKind kind);
extern bool SbKindFromName(const char *name, SbKind *kind);

#endif							/* SCUTTLEBUTT_WIRE_MESSAGE_H */
