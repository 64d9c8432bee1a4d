/*-------------------------------------------------------------------------
 *
 * bulk_insert.h
 *	  Storing updates without the executor: a batch with the table's
 *	  multi-insert (new keys' updates, or updates replacing the rows of
 *	  held keys), or one update as ON CONFLICT would.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SB_BULK_INSERT_H
#define SB_BULK_INSERT_H

#include "access/genam.h"
#include "executor/tuptable.h"
#include "storage/lmgr.h"
#include "utils/snapshot.h"

/* One row of scuttlebutt.updates, but its model */
typedef struct SbBulkRow
{
	const char *source;
	double		ts;
	const char *key;			/* NULL for an event */
	const char *doc;			/* the update as received: a line
								 * SbParseMessage accepted */
	int			doclen;
} SbBulkRow;

typedef enum SbBulkResult
{
	SB_BULK_STORED,
	SB_BULK_KEY_HELD,			/* a row conflicts with one held: nothing stored */
	SB_BULK_UNSUITED			/* the upsert's to store (a trigger or CHECK of
								 * the table's own, a read-only transaction;
								 * to replace, a published table or one
								 * snapshot throughout): nothing stored */
} SbBulkResult;

/*
 * Inserts the rows (in the order given: key order for the merge path's
 * lock order), in a subtransaction: nothing if one of them conflicts with
 * a row held (a unique violation: SB_BULK_KEY_HELD).  Other errors are
 * raised.
 */
extern SbBulkResult SbBulkInsertUpdates(int32 model_id, const SbBulkRow *rows, int n);

/*
 * Stores the rows of a latest-per-key model (in key order, the merge
 * path's lock order), each as SbStoreOneUpdate would, the replacements of
 * held rows multi-inserted at the end; *stored counts the rows stored.
 * Nothing is stored if the batch gives a key twice (SB_BULK_KEY_HELD), or
 * where the upsert must store them (SB_BULK_UNSUITED).  Other errors are
 * raised.
 */
extern SbBulkResult SbBulkReplaceUpdates(int32 model_id, const SbBulkRow *rows, int n,
										 int *stored);

/*
 * scuttlebutt.updates opened to store updates one at a time under the
 * merge rule (a live pull's); NULL where the upsert must store them (as
 * SB_BULK_UNSUITED)
 */
typedef struct BulkTarget SbUpdatesWriter;
extern SbUpdatesWriter *SbOpenUpdatesWriter(void);

/*
 * Stores one update of a latest-per-key model as the upsert would, with
 * neither a plan nor a subtransaction: the key's held row deleted if
 * older (else locked, and false returned, its ts in *newer_ts if not
 * NULL), the update inserted (a key held by none speculatively, as ON
 * CONFLICT inserts).  Writers of the key are waited for; errors are
 * raised.
 */
extern bool SbStoreOneUpdate(SbUpdatesWriter *w, int32 model_id, const SbBulkRow *r,
							 double *newer_ts);
extern void SbCloseUpdatesWriter(SbUpdatesWriter *w);

/*
 * The row an index scan begun with a dirty snapshot finds, once no
 * uncommitted transaction writes it (waited for, shown as waiting_to);
 * false if none
 */
extern bool SbFetchCommittedRow(IndexScanDesc scan, SnapshotData *dirty, ScanKey keys,
								int nkeys, TupleTableSlot *slot, XLTW_Oper waiting_to);

#endif							/* SB_BULK_INSERT_H */
