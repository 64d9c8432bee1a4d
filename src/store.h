/*-------------------------------------------------------------------------
 *
 * store.h
 *	  Table access: model lookups, local writes, clocks, history pages and
 *	  the sequencer's reservation row (through SPI; the clock and history
 *	  pages by index scans).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_STORE_H
#define SCUTTLEBUTT_STORE_H

#include "lib/stringinfo.h"

#include "signature.h"
#include "wire.h"

typedef struct SbModelRef
{
	int32		id;
	SbKind		kind;
	char	   *name;
	char	   *node_id;		/* this database's source id */
	SbSignatureAlgorithm signature; /* what a signed model accepts */
} SbModelRef;

/* Any kind, for SbModelLookup */
#define SB_KIND_ANY (-1)

/*
 * Finds a model by name; ERROR (undefined_object) if there is none, and
 * (wrong_object_type) if expected_kind is not SB_KIND_ANY and differs.
 */
extern void SbModelLookup(const char *name, int expected_kind, SbModelRef *model);

/* Like SbModelLookup, but false (no error) when there is no such model */
extern bool SbModelTryLookup(const char *name, SbModelRef *model);

/*
 * A local update: takes the next timestamp of this node's source (past
 * that of the key's current value), stores [change, ts, node_id] and
 * returns ts.  change_text is the change's JSON text as JSON.stringify
 * writes it; key is the row key (NULL for events, "" for a value).
 */
extern double SbLocalWrite(SbModelRef *model, const char *key,
						   const char *change_text);

/*
 * Many local updates to distinct keys of a key/value model at once; sorts
 * keys (and change_texts with them) in place, in byte order.
 */
extern void SbLocalWriteMany(SbModelRef *model, int n, char **keys,
							 char **change_texts);

/*
 * Raises the model's clock to entries where they are ahead.  Only for a
 * clock read with a complete history in one snapshot, all of which is
 * applied here: every update up to it is then held, or lost to one held.
 */
extern void SbRaiseClock(SbModelRef *model, SbClockEntry *entries, int n);

/*
 * The model's clock, sorted by source, as readers may see it (this node's
 * own source at its visible limit); returns the number of entries.
 * in_caller_snapshot: in the active snapshot, as a header must be read
 * with the history it vouches for; otherwise in a new one.
 */
extern int	SbReadClock(SbModelRef *model, SbClockEntry **entries,
						bool in_caller_snapshot);

/*
 * ts of source's clock entry or update as readers may see it: for this
 * node's own source, no later than the visible limit (_visible_ts())
 */
extern double SbVisibleTs(int32 model_id, const char *source, double ts);

/*
 * Appends to out, one per line, updates of source newer than after and
 * not past upto (the source's entry of a clock read in the same snapshot:
 * a header vouches for no more), in timestamp order, read in the caller's
 * snapshot: up to limit of them, and none more once max_bytes were
 * appended (at least one is).  Sets *last_ts to the last one's timestamp,
 * and *complete when that was all there is (neither bound stopped it).
 * Returns how many.  out grows in its own memory context; nothing else is
 * left allocated.
 */
extern int	SbReadHistoryPage(SbModelRef *model, const char *source,
							  double after, double upto, int limit,
							  int64 max_bytes, StringInfo out, double *last_ts,
							  bool *complete);

/*
 * A local update's wire text [change,ts,node] as a json datum, built in buf
 * (reset first), signed with the node's key when the model is signed
 */
extern Datum SbUpdateTextDatum(StringInfo buf, const SbModelRef *model,
							   const char *change_text, double ts);

#endif							/* SCUTTLEBUTT_STORE_H */
