/*-------------------------------------------------------------------------
 *
 * ext_relation.c
 *	  The extension's own tables and indexes, by name: the C that reads or
 *	  writes them without SQL (clock and history scans, bulk and lone
 *	  writes) finds them here, with one clear error if one is missing.
 *
 * Looked up each time (two syscache probes): the extension can be dropped
 * and created again under a running worker, with new OIDs.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "utils/lsyscache.h"

#include "ext_relation.h"

Oid
SbRelationOid(const char *name)
{
	Oid			relid = get_relname_relid(name, get_namespace_oid("scuttlebutt", false));

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"scuttlebutt.%s\" does not exist", name),
				 errhint("The extension's objects are its own: create the extension again.")));
	return relid;
}
