/*-------------------------------------------------------------------------
 *
 * privileges.c
 *	  Per-model privileges: whether a role may read or write a model, and
 *	  running a function's table work as the extension's owner.
 *
 * A model's owner (scuttlebutt.registry.owner) and superusers hold every
 * privilege; other roles hold those granted to them, to a role whose
 * privileges they have (has_privs_of_role, as PostgreSQL's own ACLs), or
 * to PUBLIC (role 0) in scuttlebutt.grants.  Each process keeps what it
 * computed per (role, model) in a hash table: the row-level security
 * policies of scuttlebutt.updates and scuttlebutt.clocks ask for every
 * row they show.  Any relcache invalidation drops it (a statement trigger
 * on scuttlebutt.grants and scuttlebutt.registry sends one at commit, as
 * for the model cache), and so does any change of role membership or of
 * a role's attributes (syscache callbacks), since held privileges follow
 * both.
 *
 * The SQL functions check the calling role's privilege (GetUserId(): they
 * are not SECURITY DEFINER, which would hide the caller) and then do their
 * table work as the extension's owner with a pinned search_path, exactly
 * as fmgr_security_definer runs a SECURITY DEFINER function; the tables
 * themselves grant ordinary roles no writes.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "ext_relation.h"
#include "privileges.h"
#include "spi_util.h"

typedef struct PrivCacheKey
{
	Oid			role;
	int32		model_id;
} PrivCacheKey;

typedef struct PrivCacheEntry
{
	PrivCacheKey key;			/* hash key */
	int			held;			/* SbPrivilege bits */
	Oid			owner;			/* InvalidOid: no such model */
} PrivCacheEntry;

/* Most (role, model) pairs remembered per process */
#define SB_PRIV_CACHE_MAX 10000

static HTAB *priv_cache = NULL;
static SPIPlanPtr grants_plan = NULL;

/* Forgets every privilege computed */
void
SbPrivilegesForget(void)
{
	if (priv_cache != NULL)
	{
		hash_destroy(priv_cache);
		priv_cache = NULL;
	}
}

/* Grants, models or any other relation changed */
static void
priv_relcache_callback(Datum arg pg_attribute_unused(),
					   Oid relid pg_attribute_unused())
{
	SbPrivilegesForget();
}

/* A role's membership or attributes (superuser) changed */
static void
priv_syscache_callback(Datum arg pg_attribute_unused(),
					   int cacheid pg_attribute_unused(),
					   uint32 hashvalue pg_attribute_unused())
{
	SbPrivilegesForget();
}

/* From _PG_init: the callbacks that keep the cache current */
void
SbPrivilegesInit(void)
{
	CacheRegisterRelcacheCallback(priv_relcache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHMEMROLEMEM, priv_syscache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHOID, priv_syscache_callback, (Datum) 0);
}

/* The privilege's name in grant() and in messages */
const char *
SbPrivilegeName(SbPrivilege priv)
{
	return priv == SB_PRIV_WRITE ? "write" : "read";
}

/*
 * Computes what role holds on the model from its owner and grants.  Runs
 * as the extension's owner: the grants are readable by everyone anyway,
 * and this is called from row-level security policies of any role.
 */
static void
compute_privileges(Oid role, int32 model_id, PrivCacheEntry *entry)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1];
	SbOwnerScope scope;

	entry->held = 0;
	entry->owner = InvalidOid;

	SbBeginOwnerScope(&scope);
	SPI_connect();
	values[0] = Int32GetDatum(model_id);
	/*
	 * A fresh snapshot, so that a model created earlier in the caller's
	 * statement is seen (but a parallel worker may not take one)
	 */
	if (SPI_execute_plan(SbPrepareOnce(&grants_plan,
									   "SELECT r.owner::oid, g.role::oid, g.privilege"
									   " FROM scuttlebutt.registry r"
									   " LEFT JOIN scuttlebutt.grants g ON g.model_id = r.id"
									   " WHERE r.id = $1",
									   1, argtypes),
						 values, NULL, IsInParallelMode(), 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the grants of scuttlebutt model %d", model_id);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Oid			owner = DatumGetObjectId(SPI_getbinval(tuple, desc, 1, &isnull));
		Oid			grantee;
		char	   *privilege;

		if (i == 0)
		{
			entry->owner = owner;
			if (has_privs_of_role(role, owner))
			{
				entry->held = SB_PRIV_READ | SB_PRIV_WRITE;
				break;
			}
		}
		grantee = DatumGetObjectId(SPI_getbinval(tuple, desc, 2, &isnull));
		if (isnull)
			continue;
		if (grantee != ACL_ID_PUBLIC && !has_privs_of_role(role, grantee))
			continue;
		privilege = SPI_getvalue(tuple, desc, 3);
		if (strcmp(privilege, "read") == 0)
			entry->held |= SB_PRIV_READ;
		else if (strcmp(privilege, "write") == 0)
			entry->held |= SB_PRIV_WRITE;
	}
	SPI_finish();
	SbEndOwnerScope(&scope);
}

/* The cached entry of (role, model), computed on a miss */
static PrivCacheEntry *
lookup(Oid role, int32 model_id)
{
	PrivCacheKey key;
	PrivCacheEntry computed;
	PrivCacheEntry *entry;
	bool		found;

	memset(&key, 0, sizeof(key));
	key.role = role;
	key.model_id = model_id;
	if (priv_cache != NULL)
	{
		entry = hash_search(priv_cache, &key, HASH_FIND, NULL);
		if (entry != NULL)
			return entry;
	}

	/* an invalidation while computing drops the table: enter it after */
	compute_privileges(role, model_id, &computed);
	if (!OidIsValid(computed.owner))
	{
		/* no such model (yet): nothing held, and nothing to remember */
		static PrivCacheEntry none;

		none = computed;
		return &none;
	}

	if (priv_cache != NULL && hash_get_num_entries(priv_cache) >= SB_PRIV_CACHE_MAX)
		SbPrivilegesForget();
	if (priv_cache == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(PrivCacheKey);
		ctl.entrysize = sizeof(PrivCacheEntry);
		ctl.hcxt = CacheMemoryContext;
		priv_cache = hash_create("scuttlebutt privilege cache", 64, &ctl,
								 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	entry = hash_search(priv_cache, &key, HASH_ENTER, &found);
	entry->held = computed.held;
	entry->owner = computed.owner;
	return entry;
}

/* Superusers first: they need no lookup, and hold even unknown models */
bool
SbModelPrivilegeHeld(Oid role, int32 model_id, SbPrivilege priv)
{
	if (superuser_arg(role))
		return true;
	return (lookup(role, model_id)->held & priv) != 0;
}

/* The check every SQL function makes, with the error naming what is missing */
void
SbCheckModelPrivilege(int32 model_id, const char *model_name, SbPrivilege priv)
{
	if (!SbModelPrivilegeHeld(GetUserId(), model_id, priv))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for scuttlebutt model \"%s\": %s privilege required",
						model_name, SbPrivilegeName(priv))));
}

/* From the cache entry of the current user (any entry holds the owner) */
Oid
SbModelOwner(int32 model_id)
{
	return lookup(GetUserId(), model_id)->owner;
}

/* Who may grant, revoke and drop: the owner, its members, superusers */
bool
SbIsModelOwner(int32 model_id)
{
	Oid			owner = SbModelOwner(model_id);

	return superuser() || (OidIsValid(owner) && has_privs_of_role(GetUserId(), owner));
}

/*
 * The owner of scuttlebutt.registry: the role that created the extension
 * and its tables, so the one row-level security does not apply to
 */
Oid
SbExtensionOwner(void)
{
	Oid			rel = SbRelationOid("registry");
	HeapTuple	tuple;
	Oid			owner;

	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(rel));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", rel);
	owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);
	return owner;
}

/*
 * As fmgr_security_definer does around a SECURITY DEFINER function with
 * SET search_path: the user and a new GUC nest level, both undone by
 * SbEndOwnerScope or by the abort of an error
 */
void
SbBeginOwnerScope(SbOwnerScope *scope)
{
	Oid			owner = SbExtensionOwner();

	GetUserIdAndSecContext(&scope->save_userid, &scope->save_sec_context);
	SetUserIdAndSecContext(owner,
						   scope->save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	scope->save_nestlevel = NewGUCNestLevel();
	/* a caller already there (a libpq peer's session) spares the setting and its undoing */
	if (strcmp(namespace_search_path, SB_OWNER_SEARCH_PATH) != 0)
		(void) set_config_option("search_path", SB_OWNER_SEARCH_PATH,
								 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
								 true, 0, false);
}

/* Back to the caller's user and settings */
void
SbEndOwnerScope(SbOwnerScope *scope)
{
	AtEOXact_GUC(true, scope->save_nestlevel);
	SetUserIdAndSecContext(scope->save_userid, scope->save_sec_context);
}
