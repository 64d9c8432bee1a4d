/*-------------------------------------------------------------------------
 *
 * privileges.h
 *	  Per-model privileges (read, write): who holds them, and running a
 *	  function's table work as the extension's owner once the caller's
 *	  privilege is checked.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_PRIVILEGES_H
#define SCUTTLEBUTT_PRIVILEGES_H

typedef enum SbPrivilege
{
	SB_PRIV_READ = 1,
	SB_PRIV_WRITE = 2
} SbPrivilege;

/*
 * Whether role holds priv on the model (its owner and superusers hold
 * every privilege); must run inside a transaction; cheap enough to call
 * per connection
 */
extern bool SbModelPrivilegeHeld(Oid role, int32 model_id, SbPrivilege priv);

/* Registers the cache's invalidation callbacks (from _PG_init) */
extern void SbPrivilegesInit(void);

/*
 * Forgets every privilege this process computed.  For a reader woken by
 * a commit that changed grants: that commit's invalidations are sent
 * after its commit callbacks, so they may not have arrived yet.
 */
extern void SbPrivilegesForget(void);

/* "read" or "write" */
extern const char *SbPrivilegeName(SbPrivilege priv);

/* ERROR (insufficient_privilege) unless the current user holds priv */
extern void SbCheckModelPrivilege(int32 model_id, const char *model_name,
								  SbPrivilege priv);

/* The model's owner (InvalidOid if there is no such model) */
extern Oid	SbModelOwner(int32 model_id);

/* Whether the current user owns the model or is superuser */
extern bool SbIsModelOwner(int32 model_id);

/* The role that owns the extension (and its tables) */
extern Oid	SbExtensionOwner(void);

/* The owner scope's search_path, as the GUC spells it */
#define SB_OWNER_SEARCH_PATH "pg_catalog, pg_temp"

/*
 * The user and settings a function's table work ran under, to restore
 * after it (as fmgr_security_definer saves them)
 */
typedef struct SbOwnerScope
{
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
} SbOwnerScope;

/*
 * Runs what follows as the extension's owner with search_path
 * pg_catalog, pg_temp, until SbEndOwnerScope (an error restores both,
 * as it does after a SECURITY DEFINER function)
 */
extern void SbBeginOwnerScope(SbOwnerScope *scope);
extern void SbEndOwnerScope(SbOwnerScope *scope);

#endif							/* SCUTTLEBUTT_PRIVILEGES_H */
