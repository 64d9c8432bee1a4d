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
	SB_BULK_TABLE_CHANGED		/* not here: a trigger or CHECK was added, the
								 * table is published (replacing), or the
								 * transaction is read-only; nothing stored */
} SbBulkResult;

/*
 * Inserts the rows (in the order given: key order for the merge path's
 * lock order), unless one of them conflicts with a row held (a unique
 * violation) or the table has more than the extension gave it.  Other
 * errors are raised.
 */
extern SbBulkResult SbBulkInsertUpdates(int32 model_id, const SbBulkRow *rows, int n);

/*
 * Stores the rows of a latest-per-key model (in key order, the merge
 * path's lock order): each replaces its key's held row if newer (the merge
 * rule), or is inserted if the key is new; *stored counts the rows
 * stored.  Nothing is stored (SB_BULK_KEY_HELD) if a concurrent writer
 * committed a new key first or the batch gives a key twice, nor
 * (SB_BULK_TABLE_CHANGED) if the table has more than the extension gave
 * it, is published, or the transaction is read-only.  Not for a transaction that
 * uses one snapshot throughout (REPEATABLE READ and above): the upsert
 * raises the serialization failures such a transaction expects.
 */
extern SbBulkResult SbBulkReplaceUpdates(int32 model_id, const SbBulkRow *rows, int n,
										 int *stored);

/*
 * scuttlebutt.updates opened to store updates one at a time under the
 * merge rule (a live pull's); NULL where the upsert must store them: the
 * table is not as the extension made it, or is published, or the
 * transaction is read-only
 */
typedef struct BulkTarget SbUpdatesWriter;
extern SbUpdatesWriter *SbOpenUpdatesWriter(void);

/*
 * Stores one update of a latest-per-key model as the upsert would, with
 * neither a plan nor a subtransaction: the key's held row deleted if
 * older (else locked, and false returned), the update inserted (a key
 * held by none speculatively, as ON CONFLICT inserts).  Writers of the
 * key are waited for; errors are raised.
 */
extern bool SbStoreOneUpdate(SbUpdatesWriter *w, int32 model_id, const SbBulkRow *r);
extern void SbCloseUpdatesWriter(SbUpdatesWriter *w);

/*
 * The row an index scan begun with a dirty snapshot finds, once no
 * uncommitted transaction writes it (waited for, shown as waiting_to);
 * false if none
 */
extern bool SbFetchCommittedRow(IndexScanDesc scan, SnapshotData *dirty, ScanKey keys,
								int nkeys, TupleTableSlot *slot, XLTW_Oper waiting_to);

#endif							/* SB_BULK_INSERT_H */
