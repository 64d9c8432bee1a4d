/*-------------------------------------------------------------------------
 *
 * wire.c
 *	  The wire codec: every line of the scuttlebutt protocol is parsed and
 *	  written here.
 *
 * Reading.  A line is one JSON text: an update array, a header object, the string
 * "SYNC", or anything else (ignored, as the reference does).  We parse it
 * with PostgreSQL's own JSON parser (common/jsonapi.h) and semantic
 * actions that pick out the parts the protocol needs, keeping byte spans
 * into the original text: updates are stored and relayed exactly as
 * received, since signatures cover that text.
 *
 * Strings are de-escaped while parsing, which makes the lexer reject what
 * PostgreSQL's text and jsonb cannot hold (\u0000, lone surrogates), so
 * every stored update can later be read as jsonb.
 *
 * Nothing here throws on bad input: the caller decides whether that is an
 * ERROR (SQL functions) or a closed connection (the replication worker).
 *
 * Writing.  The lines this node writes (an update of its own, a header,
 * a clock, "SYNC") are built by the SbAppend/SbWireAppend functions at the
 * end of this file, byte for byte as the reference's JSON.stringify
 * writes them (jstext.c): peers compare and sign that text.  Updates from
 * elsewhere are never rewritten: they are stored and relayed as received.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <float.h>
#include <math.h>

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "utils/errcodes.h"
#include "utils/memutils.h"

#include "compat.h"
#include "jstext.h"
#include "wire.h"

/* Deepest nesting accepted in a line (each level costs parser stack) */

/* A decimal exponent beyond this cannot be held by jsonb's numeric */
#define SB_MAX_DECIMAL_EXPONENT 100000

typedef struct ParseState
{
	JsonLexContext *lex;
	SbMessage  *msg;
	const char *base;
	int			top_index;		/* current element/field of the root */
	int			change_index;	/* current element of an update's change */
	bool		in_clock_field;
	bool		in_meta_field;
	bool		in_id_field;
	int			clock_alloc;
	char	   *pending_clock_source;
	SbMessageError *err;
	bool		root_is_array;
	bool		root_is_object;
	bool		root_seen;
	bool		elem1_is_number;
	bool		elem2_is_string;
	bool		elem3_is_string;
	bool		meta_model_field;
	bool		meta_token_field;
	/* strings not de-escaped (see parse_message): read from the text */
	bool		raw_strings;
	const char *element_start;	/* the current array element's first byte */
} ParseState;

static void
set_error(ParseState *st, int code, const char *fmt, const char *arg)
{
	if (st->err->sqlerrcode != 0)
		return;					/* keep the first */
	st->err->sqlerrcode = code;
	st->err->message = psprintf(fmt, arg);
}

static int
offset_of(ParseState *st, const char *p)
{
	return (int) (p - st->base);
}

/*
 * Whether a JSON number token (valid, as the lexer checked) is beyond a
 * double: JSON.parse would read it as +-Infinity, which JSON.stringify
 * writes as null, so it cannot round-trip.  The decimal order of magnitude
 * of the digits as written decides without converting them; only a number
 * of the order of DBL_MAX is converted.  (Underflow reads as 0, as
 * JSON.parse reads it.)
 */
static bool
number_overflows_double(const char *token)
{
	const char *p = token;
	const char *first;
	long		order;			/* floor(log10(|x|)) */
	long		exp10 = 0;
	bool		exp_negative = false;

	if (*p == '-')
		p++;
	while (*p == '0')
		p++;
	for (first = p; *p >= '0' && *p <= '9'; p++);
	if (p > first)
	{
		order = (p - first) - 1;
		if (*p == '.')
			p++;
	}
	else
	{
		/* an integer part of zero: the first significant fraction digit */
		if (*p == '.')
			p++;
		for (first = p; *p == '0'; p++);
		if (!(*p >= '1' && *p <= '9'))
			return false;		/* zero */
		order = -(long) (p - first) - 1;
	}
	while (*p >= '0' && *p <= '9')
		p++;
	if (*p == 'e' || *p == 'E')
	{
		p++;
		exp_negative = *p == '-';
		if (*p == '+' || *p == '-')
			p++;
		/* saturating: an exponent this large decides on its own */
		for (; *p >= '0' && *p <= '9' && exp10 < SB_MAX_DECIMAL_EXPONENT; p++)
			exp10 = exp10 * 10 + (*p - '0');
	}
	order += exp_negative ? -exp10 : exp10;
	if (order != DBL_MAX_10_EXP)
		return order > DBL_MAX_10_EXP;
	return isinf(strtod(token, NULL));
}

double
SbJsonNumber(const char *token)
{
	static const double powers_of_ten[] = {
		1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
		1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19
	};
	const char *p = token;
	uint64		mantissa = 0;
	int			digits = 0;
	int			fraction = -1;	/* digits after the point, once past it */
	double		value;

	if (*p == '-')
		p++;
	for (;; p++)
	{
		if (*p >= '0' && *p <= '9')
		{
			if (++digits > 19)
				return strtod(token, NULL);
			mantissa = mantissa * 10 + (*p - '0');
			if (fraction >= 0)
				fraction++;
		}
		else if (*p == '.' && fraction < 0)
			fraction = 0;
		else
			break;
	}
	/* an exponent, or digits no double holds exactly */
	if (*p != '\0' || mantissa > (UINT64CONST(1) << 53))
		return strtod(token, NULL);
	value = (double) mantissa;
	if (fraction > 0)
		value /= powers_of_ten[fraction];
	return *token == '-' ? -value : value;
}

/* Rejects numbers whose exponent jsonb's numeric type cannot hold */
static bool
number_fits_numeric(const char *token)
{
	const char *e = strpbrk(token, "eE");
	long		exponent;

	if (e == NULL)
		return strlen(token) < SB_MAX_DECIMAL_EXPONENT;
	/* saturates at LONG_MIN or LONG_MAX, whose labs() would overflow */
	exponent = strtol(e + 1, NULL, 10);
	return exponent > -SB_MAX_DECIMAL_EXPONENT && exponent < SB_MAX_DECIMAL_EXPONENT;
}

/*
 * The index of the quote that closes the string whose opening quote is at
 * open, or len: the first quote after it that an even run of backslashes
 * (none, or escaped backslashes) precedes.  Found by memchr, for strings
 * are most of an update's bytes; the run stops at the opening quote.
 */
static int
string_end(const char *text, int len, int open)
{
	int			i = open;

	for (;;)
	{
		const char *quote = memchr(text + i + 1, '"', len - i - 1);
		int			backslashes = 0;

		if (quote == NULL)
			return len;
		i = quote - text;
		while (text[i - 1 - backslashes] == '\\')
			backslashes++;
		if (backslashes % 2 == 0)
			return i;
	}
}

int
SbJsonScan(const char *text, int len, bool *line_break)
{
	int			depth = 0;
	int			max = 0;

	*line_break = false;
	for (int i = 0; i < len; i++)
	{
		switch (text[i])
		{
			case '"':
				i = string_end(text, len, i);
				break;
			case '[':
			case '{':
				if (++depth > max && (max = depth) > SB_MAX_JSON_DEPTH)
					return -1;
				break;
			case ']':
			case '}':
				depth--;
				break;
			case '\n':
			case '\r':
				*line_break = true;
				break;
		}
	}
	return max;
}

/*
 * What pg_parse_json must not be given, found in one pass before it runs:
 * nesting deeper than SB_MAX_JSON_DEPTH (the parser recurses once per
 * level, and on PostgreSQL 15 a semantic action cannot stop it), and a
 * line break outside strings (JSON whitespace, but a stored update is
 * sent as one line).
 */
static bool
prescan(const char *text, int len, SbMessageError *err)
{
	bool		line_break;

	if (SbJsonScan(text, len, &line_break) < 0)
	{
		err->sqlerrcode = ERRCODE_STATEMENT_TOO_COMPLEX;
		err->message = pstrdup("JSON nesting is deeper than "
							   CppAsString2(SB_MAX_JSON_DEPTH) " levels");
		return false;
	}
	if (line_break)
	{
		err->sqlerrcode = ERRCODE_INVALID_PARAMETER_VALUE;
		err->message = pstrdup("line break outside a string: an update must be one line");
		return false;
	}
	return true;
}

static SbJsonAction
on_object_start(void *state)
{
	ParseState *st = state;
	int			level = st->lex->lex_level;

	if (level == 0)
	{
		st->root_is_object = true;
		st->root_seen = true;
	}
	else if (level == 1 && st->in_clock_field)
		st->msg->has_clock = true;
	else if (level == 1 && st->root_is_array && st->top_index == 0)
		st->msg->change_is_array = false;

	SB_JSON_ACTION_RETURN;
}

static SbJsonAction
on_array_start(void *state)
{
	ParseState *st = state;
	int			level = st->lex->lex_level;

	if (level == 0)
	{
		st->root_is_array = true;
		st->root_seen = true;
	}
	else if (level == 1 && st->root_is_array && st->top_index == 0)
		st->msg->change_is_array = true;

	SB_JSON_ACTION_RETURN;
}

static SbJsonAction
on_object_field_start(void *state, char *fname, bool isnull pg_attribute_unused())
{
	ParseState *st = state;
	int			level = st->lex->lex_level;
	SbMessage  *msg = st->msg;

	if (level == 1 && st->root_is_object)
	{
		st->in_clock_field = strcmp(fname, "clock") == 0;
		st->in_meta_field = strcmp(fname, "meta") == 0;
		st->in_id_field = strcmp(fname, "id") == 0;
		if (st->in_meta_field)
		{
			msg->has_meta = true;
			msg->meta.start = offset_of(st, st->lex->token_start);
		}
	}
	else if (level == 2 && st->root_is_object && st->in_clock_field &&
			 msg->has_clock)
		st->pending_clock_source = pstrdup(fname);
	else if (level == 2 && st->root_is_object && st->in_meta_field)
	{
		st->meta_model_field = strcmp(fname, "model") == 0;
		st->meta_token_field = strcmp(fname, "token") == 0;
	}

	SB_JSON_ACTION_RETURN;
}

static SbJsonAction
on_object_field_end(void *state, char *fname pg_attribute_unused(), bool isnull pg_attribute_unused())
{
	ParseState *st = state;
	int			level = st->lex->lex_level;

	if (level == 1 && st->root_is_object)
	{
		if (st->in_meta_field)
			st->msg->meta.end = offset_of(st, st->lex->prev_token_terminator);
		st->in_clock_field = st->in_meta_field = st->in_id_field = false;
	}
	else if (level == 2 && st->pending_clock_source != NULL)
	{
		/* the clock value was not a number */
		set_error(st, ERRCODE_INVALID_PARAMETER_VALUE,
				  "header clock entry \"%s\" is not a number",
				  st->pending_clock_source);
		st->pending_clock_source = NULL;
	}
	else if (level == 2)
		st->meta_model_field = st->meta_token_field = false;

	SB_JSON_ACTION_RETURN;
}

static SbJsonAction
on_array_element_start(void *state, bool isnull pg_attribute_unused())
{
	ParseState *st = state;
	int			level = st->lex->lex_level;

	st->element_start = st->lex->token_start;

	if (level == 1 && st->root_is_array && st->top_index == 0)
		st->msg->change.start = offset_of(st, st->lex->token_start);

	SB_JSON_ACTION_RETURN;
}

static SbJsonAction
on_array_element_end(void *state, bool isnull pg_attribute_unused())
{
	ParseState *st = state;
	int			level = st->lex->lex_level;

	if (level == 1 && st->root_is_array)
	{
		if (st->top_index == 0)
			st->msg->change.end = offset_of(st, st->lex->prev_token_terminator);
		st->top_index++;
	}
	else if (level == 2 && st->root_is_array && st->top_index == 0 &&
			 st->msg->change_is_array)
		st->change_index++;

	SB_JSON_ACTION_RETURN;
}

/*
 * A string scalar that is an array element, as the lexer left it: without
 * de-escaping, the lexer hands semantic actions no string, but the text
 * between the quotes is the string itself when the line has no backslash.
 */
static char *
element_string(ParseState *st, char *token)
{
	const char *start = st->element_start + 1;

	if (token != NULL || !st->raw_strings)
		return token;
	return pnstrdup(start, st->lex->prev_token_terminator - 1 - start);
}

static SbJsonAction
on_scalar(void *state, char *token, JsonTokenType tokentype)
{
	ParseState *st = state;
	int			level = st->lex->lex_level;
	SbMessage  *msg = st->msg;

	if (tokentype == JSON_TOKEN_NUMBER &&
		(!number_fits_numeric(token) || number_overflows_double(token)))
		set_error(st, ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
				  "number \"%.40s\" is out of range for a JavaScript number", token);

	if (level == 0)
	{
		st->root_seen = true;
		if (tokentype == JSON_TOKEN_STRING && strcmp(token, "SYNC") == 0)
			msg->type = SB_MSG_SYNC;
		SB_JSON_ACTION_RETURN;
	}

	if (st->root_is_array && level == 1)
	{
		switch (st->top_index)
		{
			case 1:
				if (tokentype == JSON_TOKEN_NUMBER)
				{
					st->elem1_is_number = true;
					msg->ts = SbJsonNumber(token);
				}
				break;
			case 2:
				if (tokentype == JSON_TOKEN_STRING)
				{
					st->elem2_is_string = true;
					msg->source = element_string(st, token);
				}
				break;
			case 3:
				if (tokentype == JSON_TOKEN_STRING)
				{
					st->elem3_is_string = true;
					msg->signature = element_string(st, token);
				}
				break;
		}
	}
	else if (st->root_is_array && level == 2 && st->top_index == 0 &&
			 msg->change_is_array && st->change_index == 0 &&
			 tokentype == JSON_TOKEN_STRING)
		msg->key = element_string(st, token);
	else if (st->root_is_object && level == 1)
	{
		if (st->in_id_field && tokentype == JSON_TOKEN_STRING)
			msg->id = token;
		if (st->in_meta_field && tokentype == JSON_TOKEN_STRING)
			msg->meta_model = token;
	}
	else if (st->root_is_object && level == 2 && st->in_meta_field &&
			 st->meta_model_field && tokentype == JSON_TOKEN_STRING)
		msg->meta_model = token;
	else if (st->root_is_object && level == 2 && st->in_meta_field &&
			 st->meta_token_field && tokentype == JSON_TOKEN_STRING)
	{
		/* one too long is no token (a token rule refuses it) */
		msg->meta_token = NULL;
		msg->meta_token_too_long = strlen(token) > SB_MAX_TOKEN_BYTES;
		if (!msg->meta_token_too_long)
			msg->meta_token = token;
	}
	else if (st->root_is_object && level == 2 &&
			 st->pending_clock_source != NULL)
	{
		double		ts;

		if (tokentype != JSON_TOKEN_NUMBER)
			SB_JSON_ACTION_RETURN;	/* reported at field end */
		ts = SbJsonNumber(token);
		if (!isfinite(ts))
			set_error(st, ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
					  "header clock entry \"%s\" is out of range",
					  st->pending_clock_source);
		if (msg->nclock == st->clock_alloc)
		{
			st->clock_alloc = Max(8, st->clock_alloc * 2);
			msg->clock = msg->clock
				? repalloc(msg->clock, sizeof(SbClockEntry) * st->clock_alloc)
				: palloc(sizeof(SbClockEntry) * st->clock_alloc);
		}
		msg->clock[msg->nclock].source = st->pending_clock_source;
		msg->clock[msg->nclock].ts = ts;
		msg->nclock++;
		st->pending_clock_source = NULL;
	}

	SB_JSON_ACTION_RETURN;
}

/* The checks of a parsed update's elements: [change, ts, source(, sig)] */
static bool
check_update(ParseState *st, SbMessage *msg, SbMessageError *err)
{
	if (msg->nelems < 3 || msg->nelems > 4)
	{
		err->sqlerrcode = ERRCODE_INVALID_PARAMETER_VALUE;
		err->message = psprintf("update has %d elements, expected [change, timestamp, source] or [change, timestamp, source, signature]",
								msg->nelems);
		return false;
	}
	if (!st->elem1_is_number)
	{
		err->sqlerrcode = ERRCODE_INVALID_PARAMETER_VALUE;
		err->message = pstrdup("update timestamp (element 1) is not a number");
		return false;
	}
	if (!isfinite(msg->ts))
	{
		err->sqlerrcode = ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE;
		err->message = pstrdup("update timestamp (element 1) is out of range for a JavaScript number");
		return false;
	}
	if (!st->elem2_is_string)
	{
		err->sqlerrcode = ERRCODE_INVALID_PARAMETER_VALUE;
		err->message = pstrdup("update source (element 2) is not a string");
		return false;
	}
	if (strcmp(msg->source, "__proto__") == 0)
	{
		err->sqlerrcode = ERRCODE_INVALID_PARAMETER_VALUE;
		err->message = pstrdup("update source \"__proto__\" is not allowed");
		return false;
	}
	if (strlen(msg->source) > SB_MAX_SOURCE_BYTES)
	{
		err->sqlerrcode = ERRCODE_PROGRAM_LIMIT_EXCEEDED;
		err->message = psprintf("update source is %zu bytes long, longer than the %d bytes allowed",
								strlen(msg->source), SB_MAX_SOURCE_BYTES);
		return false;
	}
	if (msg->nelems == 4 && !st->elem3_is_string)
	{
		err->sqlerrcode = ERRCODE_INVALID_PARAMETER_VALUE;
		err->message = pstrdup("update signature (element 3) is not a string");
		return false;
	}
	return true;
}

/* Whether the JSON text's first token is "[" */
static bool
starts_array(const char *text, int len)
{
	for (int i = 0; i < len; i++)
		if (text[i] != ' ' && text[i] != '\t')
			return text[i] == '[';
	return false;
}

static bool
parse_message(const char *text, int len, SbMessage *msg, SbMessageError *err)
{
	bool		raw;
	JsonLexContext *lex;
	JsonSemAction sem;
	ParseState	st;
	JsonParseErrorType rc;

	memset(msg, 0, sizeof(*msg));
	memset(err, 0, sizeof(*err));
	msg->text = text;
	msg->len = len;
	msg->type = SB_MSG_IGNORED;
	if (!prescan(text, len, err))
		return false;
	/* a peer's bytes are no text until checked: JSON travels as UTF-8 */
	if (pg_encoding_verifymbstr(PG_UTF8, text, len) != len)
	{
		err->sqlerrcode = ERRCODE_CHARACTER_NOT_IN_REPERTOIRE;
		err->message = pstrdup("invalid UTF-8");
		return false;
	}

	/*
	 * De-escaping costs the lexer a buffer and a copy of every string.  An
	 * update without a backslash has nothing to de-escape (its strings are
	 * their text), and then nothing for de-escaping to reject either; a
	 * header, whose field names are needed, is always de-escaped.
	 */
	raw = starts_array(text, len) && memchr(text, '\\', len) == NULL;
	lex = SbMakeJsonLexContext(text, len, GetDatabaseEncoding(), !raw);
	memset(&st, 0, sizeof(st));
	st.raw_strings = raw;
	st.lex = lex;
	st.msg = msg;
	st.base = text;
	st.err = err;

	memset(&sem, 0, sizeof(sem));
	sem.semstate = &st;
	sem.object_start = on_object_start;
	sem.array_start = on_array_start;
	sem.object_field_start = on_object_field_start;
	sem.object_field_end = on_object_field_end;
	sem.array_element_start = on_array_element_start;
	sem.array_element_end = on_array_element_end;
	sem.scalar = on_scalar;

	rc = pg_parse_json(lex, &sem);
	if (rc != JSON_SUCCESS)
	{
		memset(err, 0, sizeof(*err));
		switch (rc)
		{
			case JSON_UNICODE_CODE_POINT_ZERO:
			case JSON_UNICODE_HIGH_ESCAPE:
			case JSON_UNICODE_HIGH_SURROGATE:
			case JSON_UNICODE_LOW_SURROGATE:
				err->sqlerrcode = ERRCODE_UNTRANSLATABLE_CHARACTER;
				break;
			default:
				err->sqlerrcode = ERRCODE_INVALID_TEXT_REPRESENTATION;
				break;
		}
		err->message = psprintf("invalid JSON: %s", json_errdetail(rc, lex));
		return false;
	}
	if (err->sqlerrcode != 0)
		return false;

	if (st.root_is_object)
	{
		msg->type = SB_MSG_HEADER;
		if (!msg->has_clock)
		{
			err->sqlerrcode = ERRCODE_INVALID_PARAMETER_VALUE;
			err->message = pstrdup("header has no \"clock\" object");
			return false;
		}
		return true;
	}
	if (!st.root_is_array)
		return true;			/* "SYNC" or ignored */

	msg->type = SB_MSG_UPDATE;
	msg->nelems = st.top_index;
	msg->change_nelems = st.change_index;
	return check_update(&st, msg, err);
}

/* The parsed message's strings, copied out of the parse context */
static void
keep_parts(SbMessage *msg, SbMessageError *err)
{
#define KEEP(p) ((p) = (p) ? pstrdup(p) : NULL)
	KEEP(msg->source);
	KEEP(msg->key);
	KEEP(msg->signature);
	KEEP(msg->id);
	KEEP(msg->meta_model);
	KEEP(msg->meta_token);
	KEEP(err->message);
#undef KEEP
	if (msg->clock != NULL)
	{
		SbClockEntry *clock = palloc(sizeof(SbClockEntry) * Max(msg->nclock, 1));

		for (int i = 0; i < msg->nclock; i++)
		{
			clock[i].source = pstrdup(msg->clock[i].source);
			clock[i].ts = msg->clock[i].ts;
		}
		msg->clock = clock;
	}
}

/*
 * The lexer allocates a kilobyte and copies every token of a line: parsed
 * in a context of its own, reset after each line, a line leaves only the
 * few strings the message holds, not megabytes of garbage per page of a
 * pull (fresh memory, and a page fault per 4 kB of it).
 */
bool
SbParseMessage(const char *text, int len, SbMessage *msg, SbMessageError *err)
{
	static MemoryContext parse_cxt = NULL;
	MemoryContext caller = CurrentMemoryContext;
	bool		ok;

	if (parse_cxt == NULL)
		parse_cxt = AllocSetContextCreate(TopMemoryContext,
										  "scuttlebutt line parsing",
										  16 * 1024, 16 * 1024,
										  ALLOCSET_DEFAULT_MAXSIZE);
	MemoryContextReset(parse_cxt);
	MemoryContextSwitchTo(parse_cxt);
	ok = parse_message(text, len, msg, err);
	MemoryContextSwitchTo(caller);
	keep_parts(msg, err);
	MemoryContextReset(parse_cxt);
	return ok;
}

bool
SbCheckUpdateForKind(SbMessage *msg, SbKind kind, SbMessageError *err)
{
	memset(err, 0, sizeof(*err));
	Assert(msg->type == SB_MSG_UPDATE);

	switch (kind)
	{
		case SB_KIND_MODEL:
		case SB_KIND_EVENTS:
			{
				const char *what = kind == SB_KIND_MODEL ? "key" : "event name";

				if (!msg->change_is_array ||
					(kind == SB_KIND_MODEL && msg->change_nelems != 2) ||
					(kind == SB_KIND_EVENTS && msg->change_nelems < 1))
				{
					err->sqlerrcode = ERRCODE_INVALID_PARAMETER_VALUE;
					err->message = kind == SB_KIND_MODEL
						? pstrdup("change (element 0) of a model update must be [key, value]")
						: pstrdup("change (element 0) of an events update must be [event, data]");
					return false;
				}
				if (msg->key == NULL)
				{
					err->sqlerrcode = ERRCODE_INVALID_PARAMETER_VALUE;
					err->message = psprintf("%s (change element 0) is not a string", what);
					return false;
				}
				if (strcmp(msg->key, "__proto__") == 0)
				{
					err->sqlerrcode = ERRCODE_INVALID_PARAMETER_VALUE;
					err->message = psprintf("%s \"__proto__\" is not allowed", what);
					return false;
				}
				if (strlen(msg->key) > SB_MAX_KEY_BYTES)
				{
					err->sqlerrcode = ERRCODE_PROGRAM_LIMIT_EXCEEDED;
					err->message = psprintf("%s is %zu bytes long, longer than the %d bytes allowed",
											what, strlen(msg->key), SB_MAX_KEY_BYTES);
					return false;
				}
				if (kind == SB_KIND_EVENTS)
					msg->key = NULL;	/* events are all kept: no row key */
				break;
			}
		case SB_KIND_VALUE:
			msg->key = "";		/* the one row of a value model */
			break;
	}
	return true;
}

/* ---- writing ---- */

/* A clock {source: ts, ...} in JavaScript's own-key order */
void
SbAppendClockJson(StringInfo buf, const SbClockEntry *entries, int n)
{
	char	  **sources = palloc(sizeof(char *) * Max(n, 1));
	double	   *ts = palloc(sizeof(double) * Max(n, 1));

	for (int i = 0; i < n; i++)
	{
		sources[i] = entries[i].source;
		ts[i] = entries[i].ts;
	}
	JsAppendClockObject(buf, n, sources, ts);
	pfree(sources);
	pfree(ts);
}

/* An update [change,ts,"source"] as JSON.stringify writes it */
void
SbAppendUpdateText(StringInfo buf, const char *change_text, double ts,
				   const char *source)
{
	appendStringInfoChar(buf, '[');
	appendStringInfoString(buf, change_text);
	appendStringInfoChar(buf, ',');
	JsAppendNumber(buf, ts);
	appendStringInfoChar(buf, ',');
	JsAppendString(buf, source, strlen(source));
	appendStringInfoChar(buf, ']');
}

/*
 * A header as the reference writes it: {"id":...,"clock":{...}}, with
 * ,"meta":"model" when the dialing side names the model it wants
 */
void
SbWireAppendHeader(StringInfo buf, const char *id, const SbClockEntry *clock,
				   int nclock, const char *meta_model)
{
	appendStringInfoString(buf, "{\"id\":");
	JsAppendString(buf, id, strlen(id));
	appendStringInfoString(buf, ",\"clock\":");
	SbAppendClockJson(buf, clock, nclock);
	if (meta_model != NULL)
	{
		appendStringInfoString(buf, ",\"meta\":");
		JsAppendString(buf, meta_model, strlen(meta_model));
	}
	appendStringInfoChar(buf, '}');
}

/* "SYNC": the end of the history a header announced */
void
SbWireAppendSync(StringInfo buf)
{
	appendStringInfoString(buf, "\"SYNC\"");
}
