/*-------------------------------------------------------------------------
 *
 * timestamp.h
 *	  Scuttlebutt timestamps: float8 milliseconds since the Unix epoch.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_TIMESTAMP_H
#define SCUTTLEBUTT_TIMESTAMP_H

/* The wall clock, in milliseconds with a microsecond fraction */
extern double SbNowMillis(void);

/*
 * The greatest timestamp a remote update may carry now: the wall clock plus
 * scuttlebutt.max_clock_skew
 */
extern double SbTimestampBound(void);

/* The next timestamp after ts that a local update may take */
extern double SbTimestampAfter(double ts);

/* The same without the ERROR (Infinity past the largest double) */
extern double SbTimestampNext(double ts);

/* A value below ts and above any timestamp taken before ts */
extern double SbTimestampBefore(double ts);

#endif							/* SCUTTLEBUTT_TIMESTAMP_H */
