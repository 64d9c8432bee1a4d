/*-------------------------------------------------------------------------
 *
 * fuzz_jscanon.c
 *	  libFuzzer target: JsAppendReparsed (jscanon.c), the text a signature
 *	  covers, computed from any bytes a peer may send.
 *
 * Properties, for every input:
 *	- it returns (no crash, no sanitizer report, no ereport);
 *	- when it accepts the input, what it writes is JSON it accepts again,
 *	  and a fixed point: reparsing it gives the same bytes (JavaScript's
 *	  JSON.stringify(JSON.parse(x)) is idempotent on its own output);
 *	- what it writes holds no JSON whitespace outside strings and no raw
 *	  control character at all (JSON.stringify writes neither);
 *	- it appends: what the buffer held before is left as it was.
 *
 * That the bytes are JavaScript's own is test/interop/json_reparse.js's
 * part (jscanon_cli against Node).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"

#include "fuzz.h"
#include "jscanon.h"

#define PREFIX "prefix:"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	StringInfoData out;
	StringInfoData again;
	int			plen = strlen(PREFIX);

	if (size > 1024 * 1024)
		return -1;

	initStringInfo(&out);
	appendStringInfoString(&out, PREFIX);
	if (JsAppendReparsed(&out, (const char *) data, (int) size))
	{
		const char *text = out.data + plen;
		int			len = out.len - plen;

		if (memcmp(out.data, PREFIX, plen) != 0)
			FuzzFail("what the buffer held is kept", data, size);
		for (int i = 0; i < len; i++)
		{
			if ((unsigned char) text[i] < 0x20)
				FuzzFail("no whitespace or control character is written", data, size);
			if (text[i] == ' ')
			{
				/* a space only inside a string: an odd number of '"' before */
				bool		in_string = false;

				for (int j = 0; j < i; j++)
				{
					if (text[j] == '\\')
						j++;
					else if (text[j] == '"')
						in_string = !in_string;
				}
				if (!in_string)
					FuzzFail("no space outside strings", data, size);
			}
		}

		initStringInfo(&again);
		if (!JsAppendReparsed(&again, text, len))
			FuzzFail("the output parses", data, size);
		if (again.len != len || memcmp(again.data, text, len) != 0)
			FuzzFail("the output is a fixed point", data, size);
	}
	FuzzFreeAll();
	return 0;
}
