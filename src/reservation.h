/*-------------------------------------------------------------------------
 *
 * reservation.h
 *	  The sequencer's reservation: the clocks row of this node's source.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_RESERVATION_H
#define SCUTTLEBUTT_RESERVATION_H

/*
 * The sequencer's reservation row (the clocks row of this node's source):
 * read as committed now, with the latest update of the source held
 * (-Infinity: none); and moved to at least reserved, if early only when
 * nobody holds the row (returns whether it was written).
 */
extern void SbReadReservation(int32 model_id, const char *node_id,
							  double *reserved, double *latest);
extern bool SbWriteReservation(int32 model_id, const char *node_id,
							   double reserved, bool early);

#endif							/* SCUTTLEBUTT_RESERVATION_H */
