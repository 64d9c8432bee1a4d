/*-------------------------------------------------------------------------
 *
 * spi_util.c
 *	  SPI helpers shared by the table access code: statements prepared once
 *	  per backend, their execution, and the array parameters of set-based
 *	  statements.
 *
 * Callers are connected to SPI (SPI_connect) around these calls.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "spi_util.h"

/* Prepares a statement once per backend and keeps it. */
SPIPlanPtr
SbPrepareOnce(SPIPlanPtr *cache, const char *sql, int nargs, Oid *argtypes)
{
	if (*cache == NULL)
	{
		/*
		 * Generic plans: these statements are planned once; custom plans
		 * would re-plan them on every call for no better plan.
		 */
		SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, argtypes,
											  CURSOR_OPT_GENERIC_PLAN);

		if (plan == NULL)
			elog(ERROR, "could not prepare \"%s\": %s", sql,
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		*cache = plan;
	}
	return *cache;
}

/* Runs a prepared statement (read-write); ERROR unless it returns expected */
void
SbExecutePlan(SPIPlanPtr plan, Datum *values, const char *nulls, int expected)
{
	int			rc = SPI_execute_plan(plan, values, nulls, false, 0);

	if (rc != expected)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
}

/* text[] of C strings (NULL items are NULL elements) */
Datum
SbTextArray(char **items, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));
	bool	   *nulls = palloc(sizeof(bool) * Max(n, 1));
	int			dims[1] = {n};
	int			lbs[1] = {1};

	for (int i = 0; i < n; i++)
	{
		nulls[i] = items[i] == NULL;
		d[i] = nulls[i] ? (Datum) 0 : CStringGetTextDatum(items[i]);
	}
	return PointerGetDatum(construct_md_array(d, nulls, 1, dims, lbs, TEXTOID,
											  -1, false, TYPALIGN_INT));
}

/* json[] from texts already known to be valid JSON (json is text inside) */
Datum
SbJsonArray(char **items, int *lens, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = PointerGetDatum(cstring_to_text_with_len(items[i], lens[i]));
	return PointerGetDatum(construct_array(d, n, JSONOID, -1, false,
										   TYPALIGN_INT));
}

/* float8[] of doubles */
Datum
SbFloat8Array(double *items, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = Float8GetDatum(items[i]);
	return PointerGetDatum(construct_array(d, n, FLOAT8OID, sizeof(float8),
										   FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}
