/*-------------------------------------------------------------------------
 *
 * remote_clock.c
 *	  What a peer is known to hold: the greatest timestamp per source.
 *
 * A sorted array searched by binary search: a session looks a source up
 * for every page of history it sends, and raises it for every update sent
 * or received.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "remote_clock.h"

static int
remote_find(SbRemoteClock *rc, const char *source, bool *found)
{
	int			lo = 0;
	int			hi = rc->n - 1;

	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;
		int			c = strcmp(rc->entries[mid].source, source);

		if (c == 0)
		{
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	*found = false;
	return lo;
}

double
SbRemoteClockGet(SbRemoteClock *rc, const char *source)
{
	bool		found;
	int			i = remote_find(rc, source, &found);

	return found ? rc->entries[i].ts : -INFINITY;
}

void
SbRemoteClockRaise(SbRemoteClock *rc, MemoryContext cxt, const char *source, double ts)
{
	bool		found;
	int			i = remote_find(rc, source, &found);

	if (found)
	{
		if (ts > rc->entries[i].ts)
			rc->entries[i].ts = ts;
		return;
	}
	if (rc->n == rc->alloc)
	{
		rc->alloc = Max(16, rc->alloc * 2);
		rc->entries = rc->entries
			? repalloc(rc->entries, sizeof(SbClockEntry) * rc->alloc)
			: MemoryContextAlloc(cxt, sizeof(SbClockEntry) * rc->alloc);
	}
	memmove(&rc->entries[i + 1], &rc->entries[i], sizeof(SbClockEntry) * (rc->n - i));
	rc->entries[i].source = MemoryContextStrdup(cxt, source);
	rc->entries[i].ts = ts;
	rc->n++;
}
