/*-------------------------------------------------------------------------
 *
 * merge.h
 *	  The kinds of model and their merge rules, as pure functions.
 *
 * Plain C (no PostgreSQL headers), so that the rules are tested without a
 * server (test/unit/merge_test.c).  The SQL that applies the same rules
 * to the tables is defined here too, beside them (SB_MERGE_SQL_*), and
 * used by store.c and apply.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_MERGE_H
#define SCUTTLEBUTT_MERGE_H

#include <stdbool.h>

/* Kinds of model; the same codes as scuttlebutt.registry.kind */
typedef enum SbKind
{
	SB_KIND_MODEL,				/* 'model': key/value, latest per key */
	SB_KIND_EVENTS,				/* 'events': every update kept */
	SB_KIND_VALUE				/* 'value': r-value, the latest update */
} SbKind;

extern const char *SbKindName(SbKind kind);
extern bool SbKindFromName(const char *name, SbKind *kind);

/* What a kind keeps of the updates it accepts */
typedef enum SbKeep
{
	SB_KEEP_LATEST_PER_KEY,		/* model: one update per key */
	SB_KEEP_ALL,				/* events: every update */
	SB_KEEP_LATEST				/* value: one update */
} SbKeep;

extern SbKeep SbKindKeeps(SbKind kind);

/*
 * The order of versions (ts, source): <0, 0 or >0 as a is older than, the
 * same as or newer than b.  The greater timestamp is newer; at equal
 * timestamps the greater source in byte order (unsigned bytes, as strcmp
 * and memcmp compare, i.e. code point order of UTF-8 text).  -0 and 0 are
 * the same timestamp.  Timestamps are finite (the parser refuses others).
 */
extern int	SbVersionCmp(double ts_a, const char *source_a,
						 double ts_b, const char *source_b);

/*
 * The clock rule: an update is new, and the model considers it, only if
 * its timestamp is above the clock of its source (-Infinity: none yet).
 * Anything at or below was seen already, whether it is still held or not.
 */
extern bool SbClockAccepts(double clock_ts, double ts);

/* What storing a new update (one the clock accepts) does */
typedef enum SbMergeOutcome
{
	SB_MERGE_ADD,				/* kept beside what is held */
	SB_MERGE_REPLACE,			/* replaces the held update of its key */
	SB_MERGE_LOSE				/* the held update of its key is newer */
} SbMergeOutcome;

/*
 * The merge of a new update (ts, source) into a model of the kind whose
 * row for the update's key holds (held_ts, held_source), held_source NULL
 * when the key holds nothing: events keep every update; a model key and a
 * value keep the newer version (SbVersionCmp).
 */
extern SbMergeOutcome SbMerge(SbKind kind, double held_ts,
							  const char *held_source, double ts,
							  const char *source);

/*
 * The same rules in SQL, for the statements that apply them to
 * scuttlebutt.updates (aliased u):
 *	- the row key: a model's key, '' for a value, NULL for an event (NULL
 *	  never conflicts in updates_latest_per_key, so every event is kept);
 *	- on a conflict, the incoming row replaces the held one only if its
 *	  version is newer.  source is a COLLATE "C" column, so the row
 *	  comparison orders sources by bytes, as SbVersionCmp does; float8
 *	  comparison makes -0 equal to 0, as C does.
 */
#define SB_MERGE_SQL_NEWER "(excluded.ts, excluded.source) > (u.ts, u.source)"

#define SB_MERGE_SQL_UPSERT \
	" ON CONFLICT (model_id, key) DO UPDATE" \
	" SET source = excluded.source, ts = excluded.ts, doc = excluded.doc" \
	" WHERE " SB_MERGE_SQL_NEWER

#endif							/* SCUTTLEBUTT_MERGE_H */
