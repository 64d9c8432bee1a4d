/*-------------------------------------------------------------------------
 *
 * sql_privileges.c
 *	  SQL functions of per-model privileges: grant(), revoke(), and
 *	  _may_read(), the row-level security policy of the tables readers
 *	  query.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"

#include "privileges.h"
#include "sql_util.h"
#include "store.h"

PG_FUNCTION_INFO_V1(scuttlebutt_grant);
PG_FUNCTION_INFO_V1(scuttlebutt_revoke);
PG_FUNCTION_INFO_V1(scuttlebutt_may_read);

/* A privilege's name as given to grant() or revoke(); ERROR if unknown */
static const char *
privilege_arg(FunctionCallInfo fcinfo, int argno)
{
	char	   *name = SbRequiredTextArg(fcinfo, argno, "privilege");

	if (strcmp(name, "read") != 0 && strcmp(name, "write") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unrecognized scuttlebutt privilege \"%s\"", name),
				 errhint("The privilege must be 'read' or 'write'.")));
	return name;
}

/*
 * The model, grantee (ACL_ID_PUBLIC for 'public') and privilege of a
 * grant() or revoke() call, after checking that the caller owns the model
 */
static void
grant_args(FunctionCallInfo fcinfo, const char *what, SbModelRef *model,
		   Oid *grantee, const char **privilege)
{
	char	   *model_name = SbRequiredTextArg(fcinfo, 0, "model name");

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("role must not be null")));
	*privilege = privilege_arg(fcinfo, 2);
	SbModelLookup(model_name, SB_KIND_ANY, model);
	*grantee = get_role_oid_or_public(NameStr(*PG_GETARG_NAME(1)));
	if (!SbIsModelOwner(model->id))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of scuttlebutt model \"%s\" to %s its privileges",
						model_name, what)));
}

/* scuttlebutt.grant(model, role, privilege) */
Datum
scuttlebutt_grant(PG_FUNCTION_ARGS)
{
	SbModelRef	model;
	Oid			grantee;
	const char *privilege;
	Oid			argtypes[4] = {INT4OID, OIDOID, TEXTOID, OIDOID};
	Datum		values[4];
	SbOwnerScope scope;

	grant_args(fcinfo, "grant", &model, &grantee, &privilege);
	values[0] = Int32GetDatum(model.id);
	values[1] = ObjectIdGetDatum(grantee);
	values[2] = CStringGetTextDatum(privilege);
	values[3] = ObjectIdGetDatum(GetUserId());

	SbBeginOwnerScope(&scope);
	SPI_connect();
	if (SPI_execute_with_args("INSERT INTO scuttlebutt.grants"
							  " (model_id, role, privilege, granted_by)"
							  " VALUES ($1, $2::pg_catalog.regrole, $3,"
							  " $4::pg_catalog.regrole)"
							  " ON CONFLICT DO NOTHING",
							  4, argtypes, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not insert into scuttlebutt.grants");
	SPI_finish();
	SbEndOwnerScope(&scope);
	PG_RETURN_VOID();
}

/* scuttlebutt.revoke(model, role, privilege): nothing if it was not granted */
Datum
scuttlebutt_revoke(PG_FUNCTION_ARGS)
{
	SbModelRef	model;
	Oid			grantee;
	const char *privilege;
	Oid			argtypes[3] = {INT4OID, OIDOID, TEXTOID};
	Datum		values[3];
	SbOwnerScope scope;

	grant_args(fcinfo, "revoke", &model, &grantee, &privilege);
	values[0] = Int32GetDatum(model.id);
	values[1] = ObjectIdGetDatum(grantee);
	values[2] = CStringGetTextDatum(privilege);

	SbBeginOwnerScope(&scope);
	SPI_connect();
	if (SPI_execute_with_args("DELETE FROM scuttlebutt.grants"
							  " WHERE model_id = $1 AND role = $2::pg_catalog.regrole"
							  " AND privilege = $3",
							  3, argtypes, values, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not delete from scuttlebutt.grants");
	SPI_finish();
	SbEndOwnerScope(&scope);
	PG_RETURN_VOID();
}

/* scuttlebutt._may_read(model_id): the calling role may read the model */
Datum
scuttlebutt_may_read(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(SbModelPrivilegeHeld(GetUserId(), PG_GETARG_INT32(0),
										SB_PRIV_READ));
}
