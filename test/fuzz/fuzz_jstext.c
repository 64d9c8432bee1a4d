/*-------------------------------------------------------------------------
 *
 * fuzz_jstext.c
 *	  libFuzzer target: the JavaScript JSON text codec (jstext.c), the
 *	  writer whose bytes peers compare and sign.
 *
 * The first byte picks what the rest is fed to:
 *	0: JsAppendNumber of the next 8 bytes as a double: the text reads back
 *	   as the same double (strtod), is laid out as Number.prototype.toString
 *	   lays it out (exponent form exactly outside [1e-6, 1e21), no
 *	   redundant zeros, at most 17 significant digits), and is a JSON
 *	   number the wire parser accepts;
 *	1: JsAppendString of the bytes: a JSON string that the parser reads
 *	   back as the same bytes (when they are UTF-8 without NUL, as text
 *	   in the database is);
 *	2: JsIsArrayIndex of the bytes, against its definition (the
 *	   canonical decimal form of an integer below 2^32 - 1);
 *	3: JsAppendClockObject of sources (the bytes split at NUL) with
 *	   timestamps: a header's clock the wire parser reads back entry for
 *	   entry.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>
#include <stdlib.h>

#include "common/jsonapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"

#include "compat.h"
#include "fuzz.h"
#include "jstext.h"
#include "wire.h"

static void
check_number(double v, const uint8_t *data, size_t size)
{
	StringInfoData buf;
	char	   *end;
	double		back;
	const char *e;
	int			digits = 0;
	int			zeros = 0;		/* zeros since the last nonzero digit */
	bool		leading = true;

	initStringInfo(&buf);
	JsAppendNumber(&buf, v);
	if (!isfinite(v))
	{
		if (strcmp(buf.data, "null") != 0)
			FuzzFail("a non-finite number is written as null", data, size);
		return;
	}
	back = strtod(buf.data, &end);
	if (*end != '\0' || back != v)
		FuzzFail("a number reads back as the same double", data, size);
	e = strchr(buf.data, 'e');
	if (v != 0 && (fabs(v) >= 1e21 || fabs(v) < 1e-6) != (e != NULL))
		FuzzFail("exponent form exactly outside [1e-6, 1e21)", data, size);
	if (e && e[1] != '+' && e[1] != '-')
		FuzzFail("an exponent has its sign", data, size);
	/* significant: from the first nonzero digit to the last */
	for (const char *p = buf.data; *p && p != e; p++)
	{
		if (*p < '0' || *p > '9')
			continue;
		if (*p != '0')
		{
			digits = digits + zeros + 1;
			zeros = 0;
			leading = false;
		}
		else if (!leading)
			zeros++;
	}
	if (digits > 17)
		FuzzFail("at most 17 significant digits", data, size);
	if (strchr(buf.data, '.') && (e ? e[-1] : buf.data[buf.len - 1]) == '0')
		FuzzFail("no trailing zero after the point", data, size);
	{
		char	   *line = psprintf("[[\"k\",%s],1,\"s\"]", buf.data);
		SbMessage	msg;
		SbMessageError err;

		if (!SbParseMessage(line, strlen(line), &msg, &err))
			FuzzFail("a number we write is one the wire parser accepts", data, size);
	}
}

/* The de-escaped value of a JSON string literal, or NULL if it is none */
static char *
parse_string(const char *text, int len)
{
	JsonLexContext *lex = SbMakeJsonLexContext(text, len, PG_UTF8, true);

	if (json_lex(lex) != JSON_SUCCESS || lex->token_type != JSON_TOKEN_STRING ||
		json_lex(lex) != JSON_SUCCESS || lex->token_type != JSON_TOKEN_END)
		return NULL;
	return lex->strval->data;
}

static void
check_string(const uint8_t *bytes, size_t n, const uint8_t *data, size_t size)
{
	StringInfoData buf;
	char	   *back;

	initStringInfo(&buf);
	JsAppendString(&buf, (const char *) bytes, (int) n);
	for (int i = 0; i < buf.len; i++)
		if ((unsigned char) buf.data[i] < 0x20)
			FuzzFail("a string is written without control characters", data, size);
	if (memchr(bytes, '\0', n) != NULL ||
		pg_encoding_verifymbstr(PG_UTF8, (const char *) bytes, (int) n) != (int) n)
		return;
	back = parse_string(buf.data, buf.len);
	if (back == NULL || strlen(back) != n || memcmp(back, bytes, n) != 0)
		FuzzFail("a string reads back as the same bytes", data, size);
}

static void
check_array_index(const uint8_t *bytes, size_t n, const uint8_t *data, size_t size)
{
	uint32		index = 0;
	bool		is_index = JsIsArrayIndex((const char *) bytes, (int) n, &index);
	bool		expected = n >= 1 && n <= 10 && (bytes[0] != '0' || n == 1);
	uint64		v = 0;

	for (size_t i = 0; i < n && expected; i++)
	{
		expected = bytes[i] >= '0' && bytes[i] <= '9';
		v = v * 10 + (bytes[i] - '0');
	}
	expected = expected && v <= UINT64CONST(4294967294);
	if (is_index != expected || (is_index && index != v))
		FuzzFail("JsIsArrayIndex follows its definition", data, size);
}

static void
check_clock(const uint8_t *bytes, size_t n, const uint8_t *data, size_t size)
{
	char	  **sources = palloc(sizeof(char *) * (n + 1));
	double	   *ts = palloc(sizeof(double) * (n + 1));
	int			count = 0;
	char	   *text = palloc(n + 1);
	char	   *p = text;
	StringInfoData buf;
	SbMessage	msg;
	SbMessageError err;

	memcpy(text, bytes, n);
	text[n] = '\0';
	/* "source\0source\0...": each one's timestamp from its length and place */
	while (p < text + n && count < 64)
	{
		if (pg_encoding_verifymbstr(PG_UTF8, p, strlen(p)) != (int) strlen(p))
			return;				/* text in the database is valid UTF-8 */
		sources[count] = p;
		ts[count] = ldexp((double) strlen(p) + count, count * 17 - 500);
		count++;
		p += strlen(p) + 1;
	}
	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"id\":\"x\",\"clock\":");
	JsAppendClockObject(&buf, count, sources, ts);
	appendStringInfoChar(&buf, '}');
	if (!SbParseMessage(buf.data, buf.len, &msg, &err) || msg.type != SB_MSG_HEADER ||
		msg.nclock != count)
		FuzzFail("a clock we write is a header's clock", data, size);
	for (int i = 0; i < count; i++)
	{
		bool		found = false;

		for (int j = 0; j < msg.nclock && !found; j++)
			found = strcmp(sources[i], msg.clock[j].source) == 0 && ts[i] == msg.clock[j].ts;
		if (!found)
			FuzzFail("every clock entry reads back", data, size);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 1024 * 1024)
		return -1;
	switch (data[0] % 4)
	{
		case 0:
			{
				double		v;

				if (size < 1 + sizeof(double))
					break;
				memcpy(&v, data + 1, sizeof(double));
				check_number(v, data, size);
				break;
			}
		case 1:
			check_string(data + 1, size - 1, data, size);
			break;
		case 2:
			check_array_index(data + 1, size - 1, data, size);
			break;
		case 3:
			check_clock(data + 1, size - 1, data, size);
			break;
	}
	FuzzFreeAll();
	return 0;
}
