/*-------------------------------------------------------------------------
 *
 * lone_apply.h
 *	  A live pull's lone update applied by direct table access.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SB_LONE_APPLY_H
#define SB_LONE_APPLY_H

#include "store.h"
#include "wire.h"

/* What SbApplyLoneDirect did, besides storing (1) or losing (0) */
#define SB_LONE_NOT_TAKEN	(-1)	/* the clock did not take it: nothing written */
#define SB_LONE_UNSUITED	(-2)	/* not done here: nothing written */

/*
 * Applies one update of another node's source to a model (see
 * lone_apply.c): the clock advanced, then the update stored under the
 * merge rule.  Returns 1 if stored, 0 if it lost, or an SB_LONE_ code.
 */
extern int	SbApplyLoneDirect(SbModelRef *model, const SbMessage *u);

#endif							/* SB_LONE_APPLY_H */
