/*-------------------------------------------------------------------------
 *
 * mux_demux.h
 *	  Many models over one stream connection, as the npm mux-demux does it.
 *
 * A mux-demux connection carries newline-terminated JSON arrays
 * [id, event, ...] instead of one scuttlebutt stream: ["id","new",{"meta":
 * m,"opts":{...}}] opens a sub-stream whose meta m names a model (a string,
 * or an object with a "model" and perhaps a "token" field), ["id","data",
 * text] carries text of that sub-stream's scuttlebutt line protocol,
 * ["id","end"], ["id","error",message] and ["id","close"] end it, and
 * ["id","pause"] / ["id","resume"] hold and release what is sent on it.
 * Each sub-stream is served as a scuttlebutt session of its own (a stream
 * session whose channel is the sub-stream), checked by the listen rules
 * and privileges for its model; one that is refused or fails gets an
 * "error" frame and ends, the others go on.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_MUX_DEMUX_H
#define SCUTTLEBUTT_MUX_DEMUX_H

#include "lib/stringinfo.h"

#include "session.h"

typedef struct SbMux SbMux;

/* What the first line of an incoming connection is */
typedef enum SbMuxGuess
{
	SB_MUX_NO,					/* a scuttlebutt header (or anything else) */
	SB_MUX_YES,					/* a mux-demux frame: a JSON array */
	SB_MUX_UNDECIDED			/* only whitespace so far */
} SbMuxGuess;

extern SbMuxGuess SbMuxGuessFrame(const char *bytes, int len);

/* The incoming session carrier turns out to be multiplexed */
extern SbMux *SbMuxBegin(SbSession *carrier);

/*
 * Takes the complete frames of in (the carrier's input) and serves them;
 * false if the carrier was closed (a frame that breaks the protocol).
 */
extern bool SbMuxInput(SbMux *mux, StringInfo in);

/* The carrier's input ended: what its sub-streams received still counts */
extern void SbMuxApplyPending(SbMux *mux);

/* The carrier closes (reason: its SbCloseReason, or -1): so do they all */
extern void SbMuxEnd(SbMux *mux, int reason);

#endif							/* SCUTTLEBUTT_MUX_DEMUX_H */
