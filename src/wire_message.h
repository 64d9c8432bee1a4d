/*-------------------------------------------------------------------------
 *
 * wire_message.h
 *	  Kept for its includers: the wire codec is wire.h.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_WIRE_MESSAGE_H
#define SCUTTLEBUTT_WIRE_MESSAGE_H

#include "wire.h"

#endif							/* SCUTTLEBUTT_WIRE_MESSAGE_H */
