/*-------------------------------------------------------------------------
 *
 * bulk_insert.h
 *	  Storing a batch of new keys' updates with COPY's multi-insert.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SB_BULK_INSERT_H
#define SB_BULK_INSERT_H

/* One row of scuttlebutt.updates, but its model */
typedef struct SbBulkRow
{
	const char *source;
	double		ts;
	const char *key;			/* NULL for an event */
	const char *doc;			/* the update as received */
	int			doclen;
} SbBulkRow;

/*
 * Inserts the rows (in the order given: key order for the merge path's
 * lock order); false, with nothing stored, if one of them conflicts with a
 * row held (a unique violation).  Other errors are raised.
 */
extern bool SbBulkInsertUpdates(int32 model_id, const SbBulkRow *rows, int n);

#endif							/* SB_BULK_INSERT_H */
