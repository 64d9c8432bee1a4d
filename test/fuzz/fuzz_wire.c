/*-------------------------------------------------------------------------
 *
 * fuzz_wire.c
 *	  libFuzzer target: one line of the protocol, as a peer sends it, into
 *	  SbParseMessage (wire.c) and SbCheckUpdateForKind.
 *
 * Beyond "no crash, no sanitizer report": a parse either succeeds or says
 * why, with an errcode; a parsed header written back by this node's writer
 * (SbWireAppendHeader) parses again to the same id, clock and model; an
 * update's spans lie inside the line.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <stdlib.h>

#include "lib/stringinfo.h"

#include "fuzz.h"
#include "wire.h"

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
