/*-------------------------------------------------------------------------
 *
 * model_cache.h
 *	  A per-backend cache of model lookups (name -> id, kind, node id).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_MODEL_CACHE_H
#define SCUTTLEBUTT_MODEL_CACHE_H

#include "store.h"

extern void SbModelCacheInit(void);

/* Fills *model from the cache; false if the name is not cached */
extern bool SbModelCacheGet(const char *name, SbModelRef *model);

extern void SbModelCachePut(const SbModelRef *model);

/* This database's node id (scuttlebutt.node), cached like the models */
extern const char *SbLocalNodeId(void);

#endif							/* SCUTTLEBUTT_MODEL_CACHE_H */
