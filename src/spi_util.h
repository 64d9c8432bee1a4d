/*-------------------------------------------------------------------------
 *
 * spi_util.h
 *	  SPI helpers shared by the table access code.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_SPI_UTIL_H
#define SCUTTLEBUTT_SPI_UTIL_H

#include "executor/spi.h"

/*
 * A statement prepared (generic plan) and kept in *cache on first use:
 * the statements here run with different values but always one plan.
 */
extern SPIPlanPtr SbPrepareOnce(SPIPlanPtr *cache, const char *sql, int nargs,
								Oid *argtypes);

/* Runs plan (not read-only, no row limit); ERROR unless it returns expected */
extern void SbExecutePlan(SPIPlanPtr plan, Datum *values, const char *nulls,
						  int expected);

/* Array parameters: text[] (NULL items are NULLs), json[], float8[] */
extern Datum SbTextArray(char **items, int n);
extern Datum SbJsonArray(char **items, int *lens, int n);
extern Datum SbFloat8Array(double *items, int n);

#endif							/* SCUTTLEBUTT_SPI_UTIL_H */
