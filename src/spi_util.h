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

/*
 * A row of a bounded execution, handed to its consumer, which returns the
 * bytes it took.
 */
typedef int64 (*SbRowConsumer) (TupleTableSlot *slot, void *arg);

/*
 * Runs plan read-only in the active snapshot, handing each row to consume
 * as the executor makes it, and stops once max_bytes have been taken (at
 * least one row): nothing of the result is held in between, whatever the
 * rows' sizes.  Returns the rows taken; *cut says that it stopped on the
 * bytes (rows may be left).
 */
extern uint64 SbExecuteBounded(SPIPlanPtr plan, Oid *argtypes, Datum *values,
							   int64 max_bytes, SbRowConsumer consume,
							   void *arg, bool *cut);

/* Array parameters: text[] (NULL items are NULLs), json[], float8[] */
extern Datum SbTextArray(char **items, int n);
extern Datum SbJsonArray(char **items, int *lens, int n);
extern Datum SbFloat8Array(double *items, int n);

#endif							/* SCUTTLEBUTT_SPI_UTIL_H */
