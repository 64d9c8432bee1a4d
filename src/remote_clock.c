/*-------------------------------------------------------------------------
 *
 * remote_clock.c
 *	  What a peer is known to hold: the greatest timestamp per source.
 *
 * A hash table keyed by source (lib/simplehash.h): a session looks a
 * source up for every page of history it sends, and raises it for every
 * update sent or received and for every entry of a header, so a header of
 * many thousand sources takes linear time, not the quadratic time that
 * sorted insertion took.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "common/hashfn.h"

#include "remote_clock.h"

typedef struct SbRemoteEntry
{
	char	   *source;
	double		ts;
	uint32		hash;
	char		status;			/* simplehash's */
} SbRemoteEntry;

#define SH_PREFIX sbrc
#define SH_ELEMENT_TYPE SbRemoteEntry
#define SH_KEY_TYPE char *
#define SH_KEY source
#define SH_HASH_KEY(tb, key) hash_bytes((const unsigned char *) (key), strlen(key))
#define SH_EQUAL(tb, a, b) (strcmp((a), (b)) == 0)
#define SH_STORE_HASH
#define SH_GET_HASH(tb, a) ((a)->hash)
#define SH_SCOPE static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

double
SbRemoteClockGet(SbRemoteClock *rc, const char *source)
{
	SbRemoteEntry *e;

	if (rc->table == NULL)
		return -INFINITY;
	e = sbrc_lookup(rc->table, (char *) source);
	return e ? e->ts : -INFINITY;
}

void
SbRemoteClockRaise(SbRemoteClock *rc, MemoryContext cxt, const char *source, double ts)
{
	SbRemoteEntry *e;
	bool		found;

	if (rc->table == NULL)
		rc->table = sbrc_create(cxt, 16, NULL);
	e = sbrc_insert(rc->table, (char *) source, &found);
	if (found)
	{
		if (ts > e->ts)
			e->ts = ts;
		return;
	}
	/* the key must outlive the caller's string */
	e->source = MemoryContextStrdup(cxt, source);
	e->ts = ts;
	rc->n++;
}

SbClockEntry *
SbRemoteClockEntries(SbRemoteClock *rc)
{
	SbClockEntry *entries = palloc(sizeof(SbClockEntry) * Max(rc->n, 1));
	int			i = 0;

	if (rc->table != NULL)
	{
		sbrc_iterator it;
		SbRemoteEntry *e;

		sbrc_start_iterate(rc->table, &it);
		while ((e = sbrc_iterate(rc->table, &it)) != NULL)
		{
			entries[i].source = e->source;
			entries[i].ts = e->ts;
			i++;
		}
	}
	Assert(i == rc->n);
	return entries;
}
