/*-------------------------------------------------------------------------
 *
 * ext_relation.h
 *	  The extension's own tables and indexes, by name.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SB_EXT_RELATION_H
#define SB_EXT_RELATION_H

/* The OID of scuttlebutt.<name>, a table or index of the extension's; ERROR if none */
extern Oid	SbRelationOid(const char *name);

/* Forgets the OIDs kept (at any relcache invalidation) */
extern void SbForgetRelationOids(void);

#endif							/* SB_EXT_RELATION_H */
