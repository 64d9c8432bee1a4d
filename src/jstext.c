/*-------------------------------------------------------------------------
 *
 * jstext.c
 *	  Writing JSON text byte for byte as JavaScript's JSON.stringify does.
 *
 * Signatures cover the text of an update, so an update made here must be
 * written exactly as the reference JavaScript peer would write the same
 * value (PROTOCOL.md, "JSON text that must match byte for byte"):
 *
 *	- object keys that are array indexes (canonical decimal integers below
 *	  2^32 - 1) first in ascending numeric order, then the others in their
 *	  order in the source value (for jsonb: jsonb's own key order);
 *	- numbers as Number.prototype.toString: the shortest digits that round
 *	  trip (PostgreSQL's Ryu, as float8out uses), laid out in plain notation
 *	  when 1e-6 <= |x| < 1e21 and in exponent notation otherwise;
 *	- strings with only '"', '\\' and control characters escaped.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "common/shortest_dec.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/numeric.h"

#include "jstext.h"

/*
 * The shortest decimal that reads back as value, as ECMAScript requires.
 * Ryu is shortest except when a shorter decimal lies exactly on the
 * boundary of the value's rounding interval (1e23 reads back as the double
 * Ryu writes 9.999999999999999e+22; JavaScript writes 1e+23).  So we check
 * whether one digit fewer, correctly rounded, still reads back, and if it
 * does keep going down.  Writes "d.ddde+x" or Ryu's form into out.
 */
static void
js_shortest_digits(double value, char *out)
{
	char		candidate[DOUBLE_SHORTEST_DECIMAL_LEN + 8];
	int			ndigits = 0;

	double_to_shortest_decimal_buf(value, out);

	/*
	 * The boundaries are x +- ulp/2.  Below 2^53 ulp/2 is a fraction whose
	 * decimal form needs at least 17 digits, never fewer than Ryu's: only
	 * larger values can have a shorter boundary decimal.
	 */
	if (fabs(value) < 9007199254740992.0)
		return;

	for (const char *p = out; *p && *p != 'e'; p++)
		if (*p >= '0' && *p <= '9')
			ndigits++;

	/* leading zeros of "0.000123" are not significant */
	for (const char *p = out; *p == '0' || *p == '.'; p++)
		if (*p == '0')
			ndigits--;

	while (ndigits > 1)
	{
		snprintf(candidate, sizeof(candidate), "%.*e", ndigits - 2, value);
		if (strtod(candidate, NULL) != value)
			break;
		strcpy(out, candidate);
		ndigits--;
	}
}

/*
 * Number.prototype.toString.  Ryu gives the shortest round-trip digits; we
 * only re-lay them out.  ECMA-262 Number::toString: with digits d1..dk and
 * the value d1.d2..dk x 10^(n-1):
 *	 k <= n <= 21	   digits then n-k zeros
 *	 0 < n <= 21	   digits with a point after the n-th
 *	 -6 < n <= 0	   "0." then -n zeros then digits
 *	 otherwise		   d1[.d2..dk]e(+|-)(n-1)
 */
void
JsAppendNumber(StringInfo buf, double value)
{
	char		ryu[DOUBLE_SHORTEST_DECIMAL_LEN];
	char		digits[DOUBLE_SHORTEST_DECIMAL_LEN];
	int			k = 0;
	int			n;
	int			exp10 = 0;
	int			point = -1;		/* digits before the point in Ryu output */
	const char *p;

	if (isnan(value) || isinf(value))
	{
		appendStringInfoString(buf, "null");
		return;
	}
	if (value == 0)
	{
		appendStringInfoChar(buf, '0');		/* -0 too */
		return;
	}
	if (value < 0)
	{
		appendStringInfoChar(buf, '-');
		value = -value;
	}

	js_shortest_digits(value, ryu);

	/* Ryu writes either plain "123.45" or "1.2345e+67": take it apart */
	for (p = ryu; *p; p++)
	{
		if (*p >= '0' && *p <= '9')
			digits[k++] = *p;
		else if (*p == '.')
			point = k;
		else if (*p == 'e' || *p == 'E')
		{
			exp10 = atoi(p + 1);
			break;
		}
	}
	if (point < 0)
		point = k;

	/* strip leading zeros ("0.001") and trailing zeros ("1200") */
	{
		int			lead = 0;

		while (lead < k - 1 && digits[lead] == '0')
			lead++;
		if (lead > 0)
		{
			memmove(digits, digits + lead, k - lead);
			k -= lead;
			point -= lead;
		}
		while (k > 1 && digits[k - 1] == '0')
			k--;
	}
	n = point + exp10;

	if (k <= n && n <= 21)
	{
		appendBinaryStringInfo(buf, digits, k);
		for (int i = k; i < n; i++)
			appendStringInfoChar(buf, '0');
	}
	else if (0 < n && n <= 21)
	{
		appendBinaryStringInfo(buf, digits, n);
		appendStringInfoChar(buf, '.');
		appendBinaryStringInfo(buf, digits + n, k - n);
	}
	else if (-6 < n && n <= 0)
	{
		appendStringInfoString(buf, "0.");
		for (int i = n; i < 0; i++)
			appendStringInfoChar(buf, '0');
		appendBinaryStringInfo(buf, digits, k);
	}
	else
	{
		appendStringInfoChar(buf, digits[0]);
		if (k > 1)
		{
			appendStringInfoChar(buf, '.');
			appendBinaryStringInfo(buf, digits + 1, k - 1);
		}
		appendStringInfo(buf, "e%c%d", n - 1 >= 0 ? '+' : '-', abs(n - 1));
	}
}

/*
 * JSON.stringify's QuoteJSONString.  Input is valid UTF-8 (PostgreSQL text),
 * so the lone-surrogate rule never applies; everything but '"', '\\' and
 * control characters is copied as is.
 */
void
JsAppendString(StringInfo buf, const char *str, int len)
{
	static const char hex[] = "0123456789abcdef";
	int			run = 0;

	appendStringInfoChar(buf, '"');
	for (int i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) str[i];
		const char *esc = NULL;

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		appendBinaryStringInfo(buf, str + run, i - run);
		run = i + 1;
		switch (c)
		{
			case '"':
				esc = "\\\"";
				break;
			case '\\':
				esc = "\\\\";
				break;
			case '\b':
				esc = "\\b";
				break;
			case '\f':
				esc = "\\f";
				break;
			case '\n':
				esc = "\\n";
				break;
			case '\r':
				esc = "\\r";
				break;
			case '\t':
				esc = "\\t";
				break;
		}
		if (esc)
			appendStringInfoString(buf, esc);
		else
		{
			appendStringInfoString(buf, "\\u00");
			appendStringInfoChar(buf, hex[c >> 4]);
			appendStringInfoChar(buf, hex[c & 0xf]);
		}
	}
	appendBinaryStringInfo(buf, str + run, len - run);
	appendStringInfoChar(buf, '"');
}

/*
 * ECMA-262 array index: the canonical decimal form of an integer in
 * [0, 2^32 - 2].  JavaScript enumerates such own keys first, ascending.
 */
bool
JsIsArrayIndex(const char *key, int len, uint32 *index)
{
	uint64		v = 0;

	if (len < 1 || len > 10)
		return false;
	if (key[0] == '0' && len > 1)
		return false;
	for (int i = 0; i < len; i++)
	{
		if (key[i] < '0' || key[i] > '9')
			return false;
		v = v * 10 + (key[i] - '0');
	}
	if (v > UINT64CONST(4294967294))
		return false;
	*index = (uint32) v;
	return true;
}

/*
 * A JSON number as JavaScript's JSON.parse reads it: the nearest double,
 * 0 for underflow.  Where JavaScript would read Infinity (and write null),
 * we refuse rather than change the value.
 */
double
JsNumericToDouble(Numeric num)
{
	double		d = DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow,
													   NumericGetDatum(num)));

	if (isinf(d))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("number is out of range for a JavaScript number"),
				 errdetail("JavaScript numbers are doubles, at most 1.7976931348623157e+308 in magnitude.")));
	return d;
}

typedef struct JsObjectMember
{
	JsonbValue	key;
	JsonbValue	value;
	uint32		index;			/* valid when is_index */
	bool		is_index;
	int			position;		/* order in the jsonb object */
} JsObjectMember;

static int
JsObjectMemberCmp(const void *a, const void *b)
{
	const JsObjectMember *ma = a;
	const JsObjectMember *mb = b;

	if (ma->is_index != mb->is_index)
		return ma->is_index ? -1 : 1;
	if (ma->is_index && ma->index != mb->index)
		return ma->index < mb->index ? -1 : 1;
	return ma->position - mb->position;
}

static void
JsAppendScalar(StringInfo buf, JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			appendStringInfoString(buf, "null");
			break;
		case jbvBool:
			appendStringInfoString(buf, v->val.boolean ? "true" : "false");
			break;
		case jbvString:
			JsAppendString(buf, v->val.string.val, v->val.string.len);
			break;
		case jbvNumeric:
			JsAppendNumber(buf, JsNumericToDouble(v->val.numeric));
			break;
		default:
			elog(ERROR, "unexpected jsonb value type %d", (int) v->type);
	}
}

/* Writes the members of an object or elements of an array, recursively. */
void
JsAppendJsonb(StringInfo buf, JsonbContainer *container)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	check_stack_depth();

	it = JsonbIteratorInit(container);
	tok = JsonbIteratorNext(&it, &v, true);

	if (tok == WJB_BEGIN_ARRAY && v.val.array.rawScalar)
	{
		tok = JsonbIteratorNext(&it, &v, true);
		Assert(tok == WJB_ELEM);
		JsAppendScalar(buf, &v);
		return;
	}

	if (tok == WJB_BEGIN_ARRAY)
	{
		bool		first = true;

		appendStringInfoChar(buf, '[');
		while ((tok = JsonbIteratorNext(&it, &v, true)) == WJB_ELEM)
		{
			if (!first)
				appendStringInfoChar(buf, ',');
			first = false;
			JsAppendJsonbValue(buf, &v);
		}
		appendStringInfoChar(buf, ']');
	}
	else if (tok == WJB_BEGIN_OBJECT)
	{
		int			n = v.val.object.nPairs;
		JsObjectMember *members = palloc(sizeof(JsObjectMember) * Max(n, 1));
		int			count = 0;
		bool		any_index = false;

		while ((tok = JsonbIteratorNext(&it, &v, true)) == WJB_KEY)
		{
			JsObjectMember *m = &members[count];

			m->key = v;
			m->position = count;
			m->is_index = JsIsArrayIndex(v.val.string.val, v.val.string.len,
										 &m->index);
			any_index |= m->is_index;
			tok = JsonbIteratorNext(&it, &m->value, true);
			Assert(tok == WJB_VALUE);
			count++;
		}
		if (any_index)
			qsort(members, count, sizeof(JsObjectMember), JsObjectMemberCmp);

		appendStringInfoChar(buf, '{');
		for (int i = 0; i < count; i++)
		{
			if (i > 0)
				appendStringInfoChar(buf, ',');
			JsAppendString(buf, members[i].key.val.string.val,
						   members[i].key.val.string.len);
			appendStringInfoChar(buf, ':');
			JsAppendJsonbValue(buf, &members[i].value);
		}
		appendStringInfoChar(buf, '}');
		pfree(members);
	}
	else
		elog(ERROR, "unexpected jsonb iterator token %d", (int) tok);
}

void
JsAppendJsonbValue(StringInfo buf, JsonbValue *value)
{
	if (value->type == jbvBinary)
		JsAppendJsonb(buf, value->val.binary.data);
	else
		JsAppendScalar(buf, value);
}

typedef struct ClockMember
{
	char	   *source;
	double		ts;
	uint32		index;
	bool		is_index;
} ClockMember;

/* JavaScript's own-key order: array indexes ascending, then the rest */
static int
cmp_clock_member(const void *a, const void *b)
{
	const ClockMember *ma = a;
	const ClockMember *mb = b;

	if (ma->is_index != mb->is_index)
		return ma->is_index ? -1 : 1;
	if (ma->is_index)
		return ma->index < mb->index ? -1 : (ma->index > mb->index ? 1 : 0);
	return strcmp(ma->source, mb->source);
}

/* A vector clock as the JavaScript object JSON.stringify would write */
void
JsAppendClockObject(StringInfo buf, int n, char **sources, double *ts)
{
	ClockMember *members = palloc(sizeof(ClockMember) * Max(n, 1));

	for (int i = 0; i < n; i++)
	{
		members[i].source = sources[i];
		members[i].ts = ts[i];
		members[i].is_index = JsIsArrayIndex(sources[i], strlen(sources[i]),
											 &members[i].index);
	}
	qsort(members, n, sizeof(ClockMember), cmp_clock_member);

	appendStringInfoChar(buf, '{');
	for (int i = 0; i < n; i++)
	{
		if (i > 0)
			appendStringInfoChar(buf, ',');
		JsAppendString(buf, members[i].source, strlen(members[i].source));
		appendStringInfoChar(buf, ':');
		JsAppendNumber(buf, members[i].ts);
	}
	appendStringInfoChar(buf, '}');
	pfree(members);
}

