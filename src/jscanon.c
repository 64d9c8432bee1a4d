/*-------------------------------------------------------------------------
 *
 * jscanon.c
 *	  JSON.stringify(JSON.parse(text)) computed in C: the bytes a JavaScript
 *	  peer signs and verifies for JSON text it received.
 *
 * security.js verifies a signature over JSON.stringify(update.slice(0, 3))
 * of the update as JSON.parse read it, so the signed bytes are not the
 * bytes received: a peer may lay the same value out in many ways
 * (whitespace, "\u0041" for "A", "\/", 1E2 for 100, 1.0, -0, duplicate
 * object keys, array-index keys out of order, ...), and only the value
 * reaches the signature.  Here the text is parsed with PostgreSQL's own
 * JSON parser (common/jsonapi.h) and written straight back out with
 * jstext.c's writers as JSON.stringify writes the value JSON.parse builds:
 *
 *	- scalars and arrays are written as they are read, in one pass;
 *	- an object's members are written as they are read too ("key":value
 *	  spans of the output, remembered in a stack of members), and only when
 *	  JavaScript's order differs from the text's (an array-index key after
 *	  another key, or array-index keys not ascending) or a key repeats, are
 *	  the spans rearranged when the object ends: array-index keys ascending,
 *	  then the others in the order of their first occurrence, each with the
 *	  value of its last occurrence (JSON.parse's CreateDataProperty keeps a
 *	  property's place and replaces its value).
 *
 * What JSON.parse accepts and PostgreSQL's parser refuses (the escape
 * \u0000, escapes of lone surrogates) is refused here: such text cannot be
 * stored as PostgreSQL text anyway.  Text that is not UTF-8, or nested
 * deeper than SB_MAX_JSON_DEPTH, is refused as well (the wire parser
 * refuses both first).  String escapes decode to the server encoding
 * (pg_unicode_to_server), so the bytes are UTF-8 in a UTF8 database, as
 * the extension's databases are.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <stdlib.h>

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "utils/errcodes.h"

#include "compat.h"
#include "jscanon.h"
#include "jstext.h"
#include "wire.h"

/* Objects with more members than this find repeated keys by sorting */
#define JS_CANON_PAIRWISE_MAX 16

/* Open containers and object members held without an allocation */
#define JS_CANON_LOCAL_FRAMES 16
#define JS_CANON_LOCAL_MEMBERS 32

/* One "key":value of an open object: a span of the output */
typedef struct CanonMember
{
	const char *key;			/* de-escaped */
	int			keylen;
	int			start;			/* offset in out of the key's '"' */
	int			end;			/* offset just past the value */
	int			position;		/* order in the object's text */
	uint32		index;			/* valid when is_index */
	bool		is_index;
	bool		dropped;		/* a later occurrence of an earlier key */
} CanonMember;

/* An open array or object */
typedef struct CanonFrame
{
	int			count;			/* elements or members so far */
	int			start;			/* offset in out of the '[' or '{' */
	int			member_base;	/* objects: first member in the stack */
	uint32		last_index;		/* the last array-index key seen */
	bool		seen_index;
	bool		seen_other;		/* a key that is no array index */
	bool		reorder;		/* JavaScript's order is not the text's */
} CanonFrame;

typedef struct CanonState
{
	StringInfo	out;
	CanonFrame *frames;
	int			nframes;
	int			depth;
	CanonMember *members;
	int			nmembers;
	int			members_alloc;
	bool		failed;
	/* enough for most updates without an allocation */
	CanonFrame	frames_local[JS_CANON_LOCAL_FRAMES];
	CanonMember members_local[JS_CANON_LOCAL_MEMBERS];
} CanonState;

/* Opens an array or object: a frame, and its '[' or '{' */
static CanonFrame *
canon_push(CanonState *st, char open)
{
	CanonFrame *f;

	if (st->depth >= st->nframes)
	{
		st->failed = true;		/* the depth scan disagreed: refuse */
		return NULL;
	}
	f = &st->frames[st->depth++];
	memset(f, 0, sizeof(*f));
	f->start = st->out->len;
	f->member_base = st->nmembers;
	appendStringInfoChar(st->out, open);
	return f;
}

/* The actions below write as they read; a failed push stops all output */
static SbJsonAction
canon_array_start(void *state)
{
	CanonState *st = state;

	if (!st->failed)
		canon_push(st, '[');
	SB_JSON_ACTION_RETURN;
}

static SbJsonAction
canon_array_end(void *state)
{
	CanonState *st = state;

	if (!st->failed)
	{
		st->depth--;
		appendStringInfoChar(st->out, ']');
	}
	SB_JSON_ACTION_RETURN;
}

static SbJsonAction
canon_array_element_start(void *state, bool isnull pg_attribute_unused())
{
	CanonState *st = state;

	if (!st->failed)
	{
		CanonFrame *f = &st->frames[st->depth - 1];

		if (f->count++ > 0)
			appendStringInfoChar(st->out, ',');
	}
	SB_JSON_ACTION_RETURN;
}

static SbJsonAction
canon_object_start(void *state)
{
	CanonState *st = state;

	if (!st->failed)
		canon_push(st, '{');
	SB_JSON_ACTION_RETURN;
}

/* Writes "key": and remembers where the member starts */
static SbJsonAction
canon_object_field_start(void *state, char *fname, bool isnull pg_attribute_unused())
{
	CanonState *st = state;
	CanonFrame *f;
	CanonMember *m;

	if (st->failed)
		SB_JSON_ACTION_RETURN;
	f = &st->frames[st->depth - 1];
	if (f->count > 0)
		appendStringInfoChar(st->out, ',');
	if (st->nmembers == st->members_alloc)
	{
		CanonMember *grown = palloc(sizeof(CanonMember) * st->members_alloc * 2);

		memcpy(grown, st->members, sizeof(CanonMember) * st->members_alloc);
		if (st->members != st->members_local)
			pfree(st->members);
		st->members = grown;
		st->members_alloc *= 2;
	}
	m = &st->members[st->nmembers++];
	m->key = fname;
	m->keylen = strlen(fname);
	m->start = st->out->len;
	m->end = -1;
	m->position = f->count++;
	m->dropped = false;
	m->is_index = JsIsArrayIndex(fname, m->keylen, &m->index);
	if (m->is_index)
	{
		if (f->seen_other || (f->seen_index && m->index <= f->last_index))
			f->reorder = true;
		f->seen_index = true;
		f->last_index = m->index;
	}
	else
		f->seen_other = true;

	JsAppendString(st->out, fname, m->keylen);
	appendStringInfoChar(st->out, ':');
	SB_JSON_ACTION_RETURN;
}

static SbJsonAction
canon_object_field_end(void *state, char *fname pg_attribute_unused(),
					   bool isnull pg_attribute_unused())
{
	CanonState *st = state;

	if (!st->failed)
		st->members[st->nmembers - 1].end = st->out->len;
	SB_JSON_ACTION_RETURN;
}

/* Keys by length, then bytes (equal exactly when the keys are) */
static int
canon_key_cmp(const CanonMember *a, const CanonMember *b)
{
	if (a->keylen != b->keylen)
		return a->keylen < b->keylen ? -1 : 1;
	return memcmp(a->key, b->key, a->keylen);
}

/* qsort: members by key, then by position */
static int
canon_key_position_cmp(const void *pa, const void *pb)
{
	const CanonMember *a = *(CanonMember *const *) pa;
	const CanonMember *b = *(CanonMember *const *) pb;
	int			c = canon_key_cmp(a, b);

	if (c != 0)
		return c;
	return a->position - b->position;
}

/* qsort: JavaScript's own-key order (array indexes ascending, then the rest) */
static int
canon_js_order_cmp(const void *pa, const void *pb)
{
	const CanonMember *a = pa;
	const CanonMember *b = pb;

	if (a->is_index != b->is_index)
		return a->is_index ? -1 : 1;
	if (a->is_index && a->index != b->index)
		return a->index < b->index ? -1 : 1;
	return a->position - b->position;
}

/*
 * A repeated key's first occurrence takes the span (the value) of its last,
 * and the others are dropped.  Returns whether any key repeats.
 */
static bool
canon_merge_repeated(CanonMember *m, int n)
{
	bool		any = false;

	if (n <= JS_CANON_PAIRWISE_MAX)
	{
		for (int i = 1; i < n; i++)
			for (int j = 0; j < i; j++)
				if (!m[j].dropped && canon_key_cmp(&m[i], &m[j]) == 0)
				{
					/* i is later than j: its value wins, j's place stays */
					m[j].end = m[i].end;
					m[j].start = m[i].start;
					m[i].dropped = true;
					any = true;
					break;
				}
		return any;
	}
	else
	{
		CanonMember **sorted = palloc(sizeof(CanonMember *) * n);

		for (int i = 0; i < n; i++)
			sorted[i] = &m[i];
		qsort(sorted, n, sizeof(CanonMember *), canon_key_position_cmp);
		for (int i = 0; i < n;)
		{
			int			j = i + 1;

			while (j < n && canon_key_cmp(sorted[i], sorted[j]) == 0)
				sorted[j++]->dropped = true;
			if (j - i > 1)
			{
				sorted[i]->start = sorted[j - 1]->start;
				sorted[i]->end = sorted[j - 1]->end;
				any = true;
			}
			i = j;
		}
		pfree(sorted);
		return any;
	}
}

/*
 * Closes an object: when JavaScript's order or repeated keys make its text
 * differ from what was written, rewrites the members in place.
 */
static SbJsonAction
canon_object_end(void *state)
{
	CanonState *st = state;
	CanonFrame *f;
	CanonMember *m;
	int			n;
	bool		repeated;

	if (st->failed)
		SB_JSON_ACTION_RETURN;
	f = &st->frames[--st->depth];
	m = &st->members[f->member_base];
	n = st->nmembers - f->member_base;

	repeated = n > 1 && canon_merge_repeated(m, n);
	if (f->reorder || repeated)
	{
		StringInfo	out = st->out;
		int			base = f->start + 1;	/* just past the '{' */
		int			len = out->len - base;
		char	   *copy = palloc(len);
		int			kept = 0;

		memcpy(copy, out->data + base, len);
		for (int i = 0; i < n; i++)
			if (!m[i].dropped)
				m[kept++] = m[i];
		if (f->reorder)
			qsort(m, kept, sizeof(CanonMember), canon_js_order_cmp);

		out->len = base;
		for (int i = 0; i < kept; i++)
		{
			if (i > 0)
				appendStringInfoChar(out, ',');
			appendBinaryStringInfo(out, copy + (m[i].start - base),
								   m[i].end - m[i].start);
		}
		pfree(copy);
	}
	st->nmembers = f->member_base;
	appendStringInfoChar(st->out, '}');
	SB_JSON_ACTION_RETURN;
}

/* A string, number or literal, written as JSON.stringify writes it */
static SbJsonAction
canon_scalar(void *state, char *token, JsonTokenType tokentype)
{
	CanonState *st = state;

	if (st->failed)
		SB_JSON_ACTION_RETURN;
	switch (tokentype)
	{
		case JSON_TOKEN_STRING:
			JsAppendString(st->out, token, strlen(token));
			break;
		case JSON_TOKEN_NUMBER:
			/* strtod rounds correctly, as JSON.parse: +-Infinity is null */
			JsAppendNumber(st->out, strtod(token, NULL));
			break;
		case JSON_TOKEN_TRUE:
			appendStringInfoString(st->out, "true");
			break;
		case JSON_TOKEN_FALSE:
			appendStringInfoString(st->out, "false");
			break;
		case JSON_TOKEN_NULL:
			appendStringInfoString(st->out, "null");
			break;
		default:
			st->failed = true;
			break;
	}
	SB_JSON_ACTION_RETURN;
}

/*
 * JSON.stringify(JSON.parse(text)) appended to out (jscanon.h).  The
 * checks before the parse are one pass each over the text: UTF-8, and the
 * nesting depth, which sizes the stack of open containers.
 */
bool
JsAppendReparsed(StringInfo out, const char *text, int len)
{
	JsonLexContext *lex;
	JsonSemAction sem;
	CanonState	st;
	int			max_depth;
	bool		line_break;

	if (len < 0 || pg_encoding_verifymbstr(PG_UTF8, text, len) != len)
		return false;
	max_depth = SbJsonScan(text, len, &line_break);
	if (max_depth < 0)
		return false;

	st.out = out;
	st.depth = 0;
	st.nframes = max_depth;
	st.frames = max_depth <= JS_CANON_LOCAL_FRAMES ? st.frames_local
		: palloc(sizeof(CanonFrame) * max_depth);
	st.nmembers = 0;
	st.members_alloc = JS_CANON_LOCAL_MEMBERS;
	st.members = st.members_local;
	st.failed = false;

	memset(&sem, 0, sizeof(sem));
	sem.semstate = &st;
	sem.object_start = canon_object_start;
	sem.object_end = canon_object_end;
	sem.object_field_start = canon_object_field_start;
	sem.object_field_end = canon_object_field_end;
	sem.array_start = canon_array_start;
	sem.array_end = canon_array_end;
	sem.array_element_start = canon_array_element_start;
	sem.scalar = canon_scalar;

	lex = SbMakeJsonLexContext(text, len, PG_UTF8, true);
	if (pg_parse_json(lex, &sem) != JSON_SUCCESS || st.failed)
		return false;
	Assert(st.depth == 0);
	return true;
}

/*
 * What security.js signs for an update: JSON.stringify([change, ts,
 * source]), the change as JavaScript reads the received text, ts and source
 * as the wire parser read them.  The wire parser accepted the line, so a
 * change that does not parse here is an internal error.
 */
void
SbAppendSignedText(StringInfo out, const char *change_text, int change_len,
				   double ts, const char *source)
{
	appendStringInfoChar(out, '[');
	if (!JsAppendReparsed(out, change_text, change_len))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("change of update is not valid JSON")));
	appendStringInfoChar(out, ',');
	JsAppendNumber(out, ts);
	appendStringInfoChar(out, ',');
	JsAppendString(out, source, strlen(source));
	appendStringInfoChar(out, ']');
}
