/*-------------------------------------------------------------------------
 *
 * merge_test.c
 *	  Unit tests of the merge rules (src/merge.c), without a server.
 *
 * Prints TAP ("1..N", then "ok N - ..." or "not ok N - ..."); exits 1 if
 * any check failed.  With four arguments (ts_a source_a ts_b source_b) it
 * prints only the sign of SbVersionCmp, for comparing with what SQL does.
 * Built and run by "make unit-test" at the top of the
 * tree (test/unit/Makefile) and by test/t/006_merge_rules.pl.
 *
 *-------------------------------------------------------------------------
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "merge.h"

static int	ntests = 0;
static int	nfailed = 0;

static void
check(int ok, const char *name)
{
	ntests++;
	if (!ok)
		nfailed++;
	printf("%sok %d - %s\n", ok ? "" : "not ", ntests, name);
}

/* the sign of a comparison */
static int
sign(int c)
{
	return c < 0 ? -1 : (c > 0 ? 1 : 0);
}

int
main(int argc, char **argv)
{
	SbKind		kind;
	const char *e_acute = "\xc3\xa9";	/* U+00E9, UTF-8 C3 A9 */
	const char *replacement = "\xef\xbf\xbd";	/* U+FFFD */
	const char *emoji = "\xf0\x9f\x98\x80";	/* U+1F600 */

	/*
	 * merge_test TS_A SOURCE_A TS_B SOURCE_B [TS_A SOURCE_A TS_B SOURCE_B
	 * ...]: prints the sign of the order of each pair, one a line
	 */
	if (argc > 1 && (argc - 1) % 4 == 0)
	{
		for (int i = 1; i < argc; i += 4)
			printf("%d\n", sign(SbVersionCmp(strtod(argv[i], NULL), argv[i + 1],
											 strtod(argv[i + 2], NULL), argv[i + 3])));
		return 0;
	}

	printf("1..34\n");

	/* versions: the timestamp first */
	check(sign(SbVersionCmp(2, "A", 1, "B")) == 1, "greater ts wins over a greater source");
	check(sign(SbVersionCmp(1, "B", 2, "A")) == -1, "smaller ts loses to a smaller source");
	check(sign(SbVersionCmp(1.5, "A", 1.25, "A")) == 1, "greater fractional ts wins, same source");
	check(sign(SbVersionCmp(-1, "A", -2, "A")) == 1, "negative timestamps ordered as numbers");

	/* ties: equal ts, the greater source in byte order, both orders */
	check(sign(SbVersionCmp(5, "B", 5, "A")) == 1, "tie: greater source wins (B over A)");
	check(sign(SbVersionCmp(5, "A", 5, "B")) == -1, "tie: smaller source loses (A under B)");
	check(SbVersionCmp(5, "A", 5, "A") == 0, "tie: equal ts and source are the same version");
	check(sign(SbVersionCmp(5, "a", 5, "B")) == 1, "tie: byte order, not case-insensitive (a over B)");
	check(sign(SbVersionCmp(5, "ab", 5, "a")) == 1, "tie: a longer source with the same prefix wins");
	check(sign(SbVersionCmp(5, "a", 5, "ab")) == -1, "tie: a prefix loses to its extension");
	check(sign(SbVersionCmp(5, "10", 5, "9")) == -1, "tie: digits compare as bytes, not numbers");
	check(sign(SbVersionCmp(0.0, "A", -0.0, "B")) == -1, "tie: -0 and 0 are one timestamp, source decides");

	/* non-ASCII sources: unsigned bytes, as SQL's COLLATE "C" */
	check(sign(SbVersionCmp(5, e_acute, 5, "z")) == 1, "tie: U+00E9 (C3 A9) wins over z (7A): bytes are unsigned");
	check(sign(SbVersionCmp(5, "z", 5, e_acute)) == -1, "tie: z loses to U+00E9 in the other order too");
	check(sign(SbVersionCmp(5, emoji, 5, replacement)) == 1,
		  "tie: U+1F600 wins over U+FFFD (UTF-8 byte order is code point order)");
	check(sign(SbVersionCmp(5, replacement, 5, emoji)) == -1,
		  "tie: U+FFFD loses to U+1F600 in the other order too");

	/* antisymmetry over a few pairs */
	{
		const char *sources[] = {"", "A", "B", "a", "ab", "\xc3\xa9", "\xf0\x9f\x98\x80"};
		double		stamps[] = {-0.0, 0.0, 1, 1.0000000000000002};
		int			ok = 1;

		for (int i = 0; i < 7; i++)
			for (int j = 0; j < 7; j++)
				for (int s = 0; s < 4; s++)
					for (int t = 0; t < 4; t++)
						if (sign(SbVersionCmp(stamps[s], sources[i], stamps[t], sources[j])) !=
							-sign(SbVersionCmp(stamps[t], sources[j], stamps[s], sources[i])))
							ok = 0;
		check(ok, "cmp(a, b) = -cmp(b, a) for every pair tried");
	}

	/* the clock rule: strictly past the source's clock */
	check(SbClockAccepts(-INFINITY, 0), "a source with no clock accepts any timestamp");
	check(SbClockAccepts(1, 2), "an update past the clock is new");
	check(!SbClockAccepts(2, 2), "an update at the clock is old (seen already)");
	check(!SbClockAccepts(3, 2), "an update below the clock is old");

	/* what each kind keeps */
	check(SbKindKeeps(SB_KIND_MODEL) == SB_KEEP_LATEST_PER_KEY, "a model keeps the latest update per key");
	check(SbKindKeeps(SB_KIND_EVENTS) == SB_KEEP_ALL, "events keep every update");
	check(SbKindKeeps(SB_KIND_VALUE) == SB_KEEP_LATEST, "a value keeps the latest update");

	/* the merge of an accepted update */
	check(SbMerge(SB_KIND_MODEL, 0, NULL, 1, "A") == SB_MERGE_ADD, "model: a key holding nothing takes the update");
	check(SbMerge(SB_KIND_MODEL, 1, "A", 1, "B") == SB_MERGE_REPLACE, "model: at a tie the greater source replaces");
	check(SbMerge(SB_KIND_MODEL, 1, "B", 1, "A") == SB_MERGE_LOSE, "model: at a tie the smaller source loses");
	check(SbMerge(SB_KIND_MODEL, 1, "A", 1, "A") == SB_MERGE_LOSE, "model: the same version again changes nothing");
	check(SbMerge(SB_KIND_VALUE, 2, "A", 1, "Z") == SB_MERGE_LOSE, "value: an older update loses whatever its source");
	check(SbMerge(SB_KIND_VALUE, 1, "Z", 2, "A") == SB_MERGE_REPLACE, "value: a newer update replaces");
	check(SbMerge(SB_KIND_EVENTS, 2, "Z", 1, "A") == SB_MERGE_ADD, "events: an older event is kept beside newer ones");

	/* kind names */
	check(strcmp(SbKindName(SB_KIND_EVENTS), "events") == 0, "the name of events is \"events\"");
	check(SbKindFromName("value", &kind) && kind == SB_KIND_VALUE, "\"value\" names the value kind");
	check(!SbKindFromName("Model", &kind), "kind names are case-sensitive");

	return nfailed > 0 ? 1 : 0;
}
