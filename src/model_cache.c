/*-------------------------------------------------------------------------
 *
 * model_cache.c
 *	  A per-backend cache of model lookups (name -> id, kind, node id).
 *
 * Every write starts by resolving the model's name, which as a query
 * would cost about a tenth of a single-row set().  We keep what we found
 * in a small hash table and drop all of it on any relcache invalidation.
 * A statement trigger on scuttlebutt.registry and scuttlebutt.node sends
 * one at commit whenever models or the node id change (pg_cron's way of
 * keeping a cache of a configuration table), so every backend sees
 * create_model() / drop_model() from its next transaction on.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "ext_relation.h"
#include "model_cache.h"
#include "node_key.h"
#include "shmem.h"

/* Longer names and ids are simply not cached */
#define SB_CACHE_NAME_LEN 128

typedef struct ModelCacheEntry
{
	char		name[SB_CACHE_NAME_LEN];	/* hash key */
	int32		id;
	SbKind		kind;
	SbSignatureAlgorithm signature;
} ModelCacheEntry;

static HTAB *model_cache = NULL;
static char *local_node_id = NULL;
static bool local_node_id_stale = false;

/*
 * Any relcache invalidation: the registry or the node may have changed,
 * or the extension been created again.  The relation OIDs kept by
 * ext_relation.c go too, in the same callback: a backend has ten for all
 * its libraries.
 */
static void
model_cache_flush(Datum arg pg_attribute_unused(), Oid relid pg_attribute_unused())
{
	SbForgetRelationOids();
	if (model_cache != NULL)
	{
		hash_destroy(model_cache);
		model_cache = NULL;
	}
	/* kept, not freed: a caller may hold it (SbLocalNodeId reads it again) */
	local_node_id_stale = true;
}

void
SbModelCacheInit(void)
{
	CacheRegisterRelcacheCallback(model_cache_flush, (Datum) 0);
}

bool
SbModelCacheGet(const char *name, SbModelRef *model)
{
	ModelCacheEntry *entry;

	if (model_cache == NULL || strlen(name) >= SB_CACHE_NAME_LEN)
		return false;
	entry = hash_search(model_cache, name, HASH_FIND, NULL);
	if (entry == NULL)
		return false;
	model->id = entry->id;
	model->kind = entry->kind;
	model->name = pstrdup(name);
	model->signature = entry->signature;
	model->node_id = pstrdup(SbLocalNodeId());
	return true;
}

void
SbModelCachePut(const SbModelRef *model)
{
	ModelCacheEntry *entry;

	if (strlen(model->name) >= SB_CACHE_NAME_LEN)
		return;
	if (model_cache == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = SB_CACHE_NAME_LEN;
		ctl.entrysize = sizeof(ModelCacheEntry);
		ctl.hcxt = CacheMemoryContext;
		model_cache = hash_create("scuttlebutt model cache", 64, &ctl,
								  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	entry = hash_search(model_cache, model->name, HASH_ENTER, NULL);
	entry->id = model->id;
	entry->kind = model->kind;
	entry->signature = model->signature;
}

const char *
SbLocalNodeId(void)
{
	const SbNodeKey *key = SbGetNodeKey();

	/* with a signing key, the node is the key's source (security.js) */
	if (key != NULL)
		return key->id;
	if (local_node_id == NULL || local_node_id_stale)
	{
		char	   *id;

		SPI_connect();
		if (SPI_execute("SELECT id FROM scuttlebutt.node", true, 1) != SPI_OK_SELECT ||
			SPI_processed != 1)
			elog(ERROR, "scuttlebutt.node must hold exactly one row");
		id = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		/*
		 * A new string only for a new id (the extension created again): the
		 * old one stays, since callers hold it across table opens, which
		 * take invalidations
		 */
		if (local_node_id == NULL || strcmp(id, local_node_id) != 0)
			local_node_id = MemoryContextStrdup(CacheMemoryContext, id);
		local_node_id_stale = false;
		SPI_finish();
	}
	return local_node_id;
}

PG_FUNCTION_INFO_V1(scuttlebutt_registry_changed);

/*
 * Statement trigger: tell every backend (this one too) to drop its cache,
 * and the worker to check its open connections' privileges again (grants
 * and model owners decide them)
 */
Datum
scuttlebutt_registry_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "scuttlebutt_registry_changed: not called by trigger manager");
	CacheInvalidateRelcache(trigdata->tg_relation);
	/* a row added (a model, a grant) takes nothing from an open connection */
	if (!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		SbNotePrivilegesChanged();
	return PointerGetDatum(NULL);
}
