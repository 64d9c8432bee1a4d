/*-------------------------------------------------------------------------
 *
 * jscanon_cli.c
 *	  JsAppendReparsed (jscanon.c) as a filter, for comparing it with
 *	  Node's JSON.stringify(JSON.parse(text)) (test/interop/json_reparse.js)
 *	  and for timing it.
 *
 *	jscanon_cli [-z] [-t N]
 *
 * Reads one JSON text per line of stdin (with -z: per NUL-terminated
 * record, so that texts may hold line feeds) and writes, per text, one
 * line: the text JavaScript would write back, or INVALID.  With -t N each
 * text is reparsed N times and the line is instead its cost: nanoseconds
 * per call, a tab, the output.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "lib/stringinfo.h"

#include "fuzz.h"
#include "jscanon.h"

static double
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int
main(int argc, char **argv)
{
	int			sep = '\n';
	long		times = 0;
	int			opt;
	char	   *line = NULL;
	size_t		cap = 0;
	ssize_t		n;

	while ((opt = getopt(argc, argv, "zt:")) != -1)
	{
		switch (opt)
		{
			case 'z':
				sep = '\0';
				break;
			case 't':
				times = atol(optarg);
				break;
			default:
				fprintf(stderr, "usage: %s [-z] [-t N]\n", argv[0]);
				return 2;
		}
	}

	while ((n = getdelim(&line, &cap, sep, stdin)) != -1)
	{
		StringInfoData out;
		bool		ok;

		if (n > 0 && line[n - 1] == sep)
			n--;
		if (times > 0)
		{
			double		start = now_ns();

			for (long i = 0; i < times; i++)
			{
				initStringInfo(&out);
				JsAppendReparsed(&out, line, (int) n);
				FuzzFreeAll();
			}
			printf("%.0f\t", (now_ns() - start) / times);
		}
		initStringInfo(&out);
		ok = JsAppendReparsed(&out, line, (int) n);
		if (ok)
		{
			fwrite(out.data, 1, out.len, stdout);
			putchar('\n');
		}
		else
			puts("INVALID");
		FuzzFreeAll();
	}
	free(line);
	return 0;
}
