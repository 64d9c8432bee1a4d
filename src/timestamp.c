/*-------------------------------------------------------------------------
 *
 * timestamp.c
 *	  Scuttlebutt timestamps: float8 milliseconds since the Unix epoch.
 *
 * The reference peer makes its timestamps strictly increasing by adding a
 * fraction when the millisecond repeats.  We read the clock to the
 * microsecond and, when that is not past the last timestamp (same
 * microsecond, a clock step backwards, or a peer whose clock runs ahead),
 * step just past it: by a microsecond, or by more where doubles are too
 * coarse for that to change the value.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "utils/timestamp.h"

#include "guc.h"
#include "timestamp.h"

/* Milliseconds from the Unix epoch to PostgreSQL's epoch (2000-01-01) */
#define SB_POSTGRES_EPOCH_MS \
	((double) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000.0)

/* A microsecond, in milliseconds */
#define SB_TIMESTAMP_STEP 0.001

double
SbNowMillis(void)
{
	return SB_POSTGRES_EPOCH_MS + (double) GetCurrentTimestamp() / 1000.0;
}

double
SbTimestampBound(void)
{
	return SbNowMillis() + sb_max_clock_skew_ms;
}

double
SbTimestampNext(double ts)
{
	double		next = ts + SB_TIMESTAMP_STEP;

	if (next <= ts)
		next = nextafter(ts, INFINITY);
	return next;
}

double
SbTimestampBefore(double ts)
{
	double		prev = ts - SB_TIMESTAMP_STEP;

	if (prev >= ts)
		prev = nextafter(ts, -INFINITY);
	return prev;
}

double
SbTimestampAfter(double ts)
{
	double		next = SbTimestampNext(ts);

	if (!isfinite(next))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("no timestamp is left after %g", ts),
				 errdetail("A source's timestamps must increase, and this one has reached the largest double.")));
	return next;
}
