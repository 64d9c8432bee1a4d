/*-------------------------------------------------------------------------
 *
 * ext_relation.c
 *	  The extension's own tables and indexes, by name: the C that reads or
 *	  writes them without SQL (clock and history scans, bulk and lone
 *	  writes) finds them here, with one clear error if one is missing.
 *
 * A live pull opens them for every update on both servers, so their OIDs
 * are kept, and forgotten at any relcache invalidation (model_cache.c's
 * callback): the extension can be dropped and created again under a
 * running worker, with new OIDs, and dropping or renaming a relation
 * invalidates its relcache entry.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "utils/lsyscache.h"

#include "ext_relation.h"

/* Names looked up this far, and their OIDs (the extension has a handful) */
#define SB_EXT_RELATIONS 16

typedef struct KnownRelation
{
	const char *name;			/* a literal of the caller's */
	Oid			oid;
} KnownRelation;

static KnownRelation known[SB_EXT_RELATIONS];
static int	nknown = 0;

void
SbForgetRelationOids(void)
{
	nknown = 0;
}

Oid
SbRelationOid(const char *name)
{
	Oid			relid;

	for (int i = 0; i < nknown; i++)
		if (strcmp(known[i].name, name) == 0)
			return known[i].oid;
	relid = get_relname_relid(name, get_namespace_oid("scuttlebutt", false));
	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"scuttlebutt.%s\" does not exist", name),
				 errhint("The extension's objects are its own: create the extension again.")));
	if (nknown < SB_EXT_RELATIONS)
	{
		known[nknown].name = name;
		known[nknown].oid = relid;
		nknown++;
	}
	return relid;
}
