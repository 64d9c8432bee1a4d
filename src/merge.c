/*-------------------------------------------------------------------------
 *
 * merge.c
 *	  The kinds of model and their merge rules, as pure functions.
 *
 * Every node must reach the same state whatever order updates arrive in,
 * so the rules are deterministic: an update is considered only if it is
 * past its source's clock, and of two versions of one key the one with
 * the greater (timestamp, source) stays, sources compared byte by byte.
 * (The reference JavaScript model keeps the later arrival at equal
 * timestamps, which can leave two nodes different.)
 *
 * Plain C without PostgreSQL headers: test/unit/merge_test.c links this
 * file alone.  The SQL statements that apply the rules to the tables use
 * merge.h's SB_MERGE_SQL_* text; test/t/006_merge_rules.pl runs the unit
 * test and sql/merge.sql checks that the tables agree at ties.
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "merge.h"

/* The kind's name in scuttlebutt.registry.kind */
const char *
SbKindName(SbKind kind)
{
	switch (kind)
	{
		case SB_KIND_MODEL:
			return "model";
		case SB_KIND_EVENTS:
			return "events";
		case SB_KIND_VALUE:
			return "value";
	}
	return "?";
}

/* The kind named name; false if there is none */
bool
SbKindFromName(const char *name, SbKind *kind)
{
	if (strcmp(name, "model") == 0)
		*kind = SB_KIND_MODEL;
	else if (strcmp(name, "events") == 0)
		*kind = SB_KIND_EVENTS;
	else if (strcmp(name, "value") == 0)
		*kind = SB_KIND_VALUE;
	else
		return false;
	return true;
}

/* Which updates a kind keeps */
SbKeep
SbKindKeeps(SbKind kind)
{
	switch (kind)
	{
		case SB_KIND_MODEL:
			return SB_KEEP_LATEST_PER_KEY;
		case SB_KIND_EVENTS:
			return SB_KEEP_ALL;
		case SB_KIND_VALUE:
			return SB_KEEP_LATEST;
	}
	return SB_KEEP_ALL;
}

/* (ts, source) order: greater ts, then greater source by unsigned bytes */
int
SbVersionCmp(double ts_a, const char *source_a, double ts_b,
			 const char *source_b)
{
	int			c;

	if (ts_a != ts_b)
		return ts_a < ts_b ? -1 : 1;
	/* strcmp compares as unsigned char (C99 7.21.4): byte order */
	c = strcmp(source_a, source_b);
	return c < 0 ? -1 : (c > 0 ? 1 : 0);
}

/* New only past the source's clock */
bool
SbClockAccepts(double clock_ts, double ts)
{
	return ts > clock_ts;
}

/* Storing an accepted update: added, replacing, or losing to what is held */
SbMergeOutcome
SbMerge(SbKind kind, double held_ts, const char *held_source, double ts,
		const char *source)
{
	if (SbKindKeeps(kind) == SB_KEEP_ALL || held_source == NULL)
		return SB_MERGE_ADD;
	return SbVersionCmp(ts, source, held_ts, held_source) > 0
		? SB_MERGE_REPLACE : SB_MERGE_LOSE;
}
