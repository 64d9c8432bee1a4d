/*-------------------------------------------------------------------------
 *
 * fuzz_wire.c
 *	  libFuzzer target: one line of the protocol, as a peer sends it, into
 *	  SbParseMessage (wire.c) and SbCheckUpdateForKind.
 *
 * Beyond "no crash, no sanitizer report": a parse either succeeds or says
 * why, with an errcode; a parsed header written back by this node's writer
 * (SbWireAppendHeader) parses again to the same id, clock and model; an
 * update's spans lie inside the line; SbJsonScan agrees with a scan of one
 * byte at a time, and SbJsonNumber with strtod() on every number in it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <stdlib.h>

#include "common/jsonapi.h"
#include "lib/stringinfo.h"

#include "fuzz.h"
#include "wire.h"

/*
 * SbJsonScan as one byte at a time: inside a string a backslash takes the
 * next byte with it.  SbJsonScan finds the string's end by memchr; both
 * must agree on every input (a depth counted short would size jscanon.c's
 * frames short).
 */
static int
reference_scan(const char *text, int len, bool *line_break)
{
	int			depth = 0;
	int			max = 0;

	*line_break = false;
	for (int i = 0; i < len; i++)
	{
		if (text[i] == '"')
		{
			for (i++; i < len && text[i] != '"'; i++)
				if (text[i] == '\\')
					i++;
		}
		else if (text[i] == '[' || text[i] == '{')
		{
			if (++depth > max && (max = depth) > SB_MAX_JSON_DEPTH)
				return -1;
		}
		else if (text[i] == ']' || text[i] == '}')
			depth--;
		else if (text[i] == '\n' || text[i] == '\r')
			*line_break = true;
	}
	return max;
}

static void
check_scan(const char *line, int len, const uint8_t *data, size_t size)
{
	bool		break_fast;
	bool		break_ref;
	int			fast = SbJsonScan(line, len, &break_fast);

	if (fast != reference_scan(line, len, &break_ref) ||
		(fast >= 0 && break_fast != break_ref))
		FuzzFail("SbJsonScan agrees with the byte-by-byte scan", data, size);
}

/* Numbers checked are at most so long (a token and its NUL fit in token[]) */
#define NUMBER_MAX 63

/*
 * The length of the longest JSON number at p, as PostgreSQL's lexer reads
 * one (IsValidJsonNumber), or 0: a number starts with '-' or a digit and
 * ends with a digit, inside a run of the characters numbers are made of.
 */
static int
json_number_length(const char *p, const char *end)
{
	int			run = 0;

	if (!(*p == '-' || (*p >= '0' && *p <= '9')))
		return 0;
	while (p + run < end && run < NUMBER_MAX && p[run] != '\0' &&
		   strchr("+-.0123456789eE", p[run]) != NULL)
		run++;
	for (int n = run; n > 0; n--)
		if (p[n - 1] >= '0' && p[n - 1] <= '9' && IsValidJsonNumber(p, n))
			return n;
	return 0;
}

/* SbJsonNumber gives strtod's double, to the bit, for every number in the line */
static void
check_numbers(const char *line, int len, const uint8_t *data, size_t size)
{
	char		token[NUMBER_MAX + 1];

	for (int i = 0; i < len; i++)
	{
		int			n = json_number_length(line + i, line + len);
		double		fast;
		double		slow;

		if (n == 0)
			continue;
		memcpy(token, line + i, n);
		token[n] = '\0';
		fast = SbJsonNumber(token);
		slow = strtod(token, NULL);
		if (memcmp(&fast, &slow, sizeof(double)) != 0)
			FuzzFail("SbJsonNumber gives strtod's double", data, size);
		i += n - 1;
	}
}

static void
check_header_round_trip(SbMessage *msg, const uint8_t *data, size_t size)
{
	StringInfoData buf;
	SbMessage	again;
	SbMessageError err;
	const char *id = msg->id ? msg->id : "";

	initStringInfo(&buf);
	SbWireAppendHeader(&buf, id, msg->clock, msg->nclock, msg->meta_model);
	if (!SbParseMessage(buf.data, buf.len, &again, &err) || again.type != SB_MSG_HEADER)
		FuzzFail("a header we write parses again", data, size);
	if (again.id == NULL || strcmp(again.id, id) != 0)
		FuzzFail("the header's id survives", data, size);
	if (again.nclock != msg->nclock)
		FuzzFail("the header's clock keeps its entries", data, size);
	if ((msg->meta_model == NULL) != (again.meta_model == NULL) ||
		(msg->meta_model && strcmp(msg->meta_model, again.meta_model) != 0))
		FuzzFail("the header's model survives", data, size);
	/* the writer orders the clock as JavaScript does: compare as sets */
	for (int i = 0; i < msg->nclock; i++)
	{
		bool		found = false;

		for (int j = 0; j < again.nclock && !found; j++)
			found = strcmp(msg->clock[i].source, again.clock[j].source) == 0 &&
				msg->clock[i].ts == again.clock[j].ts;
		if (!found)
			FuzzFail("every clock entry survives", data, size);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* a copy of exactly the line's bytes: a read past it is caught */
	char	   *line = malloc(size ? size : 1);
	SbMessage	msg;
	SbMessageError err;

	if (size > 4 * 1024 * 1024)
	{
		free(line);
		return -1;
	}
	memcpy(line, data, size);
	check_scan(line, (int) size, data, size);
	check_numbers(line, (int) size, data, size);
	if (!SbParseMessage(line, (int) size, &msg, &err))
	{
		if (err.sqlerrcode == 0 || err.message == NULL)
			FuzzFail("a refused line comes with an errcode and a message", data, size);
	}
	else if (msg.type == SB_MSG_HEADER)
		check_header_round_trip(&msg, data, size);
	else if (msg.type == SB_MSG_UPDATE)
	{
		if (msg.change.start < 0 || msg.change.end > (int) size ||
			msg.change.start > msg.change.end)
			FuzzFail("the change's span lies inside the line", data, size);
		for (int kind = SB_KIND_MODEL; kind <= SB_KIND_VALUE; kind++)
		{
			SbMessage	copy = msg;

			if (!SbCheckUpdateForKind(&copy, (SbKind) kind, &err) &&
				(err.sqlerrcode == 0 || err.message == NULL))
				FuzzFail("a refused update comes with an errcode and a message", data, size);
		}
	}
	free(line);
	FuzzFreeAll();
	return 0;
}
