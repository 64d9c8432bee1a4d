/*-------------------------------------------------------------------------
 *
 * shim.c
 *	  The little of the server that wire.c and jstext.c need, for the
 *	  fuzz targets, which run without one.
 *
 * Memory: palloc and friends allocate from malloc and remember every
 * chunk, and FuzzFreeAll() frees them all after each input (as the worker
 * resets its loop context), so AddressSanitizer sees every chunk's bounds
 * and a run does not grow.  Memory contexts are names only.  libpgcommon (the frontend build of
 * common/jsonapi.c, stringinfo.c, psprintf.c, Ryu) allocates through
 * these.
 *
 * Errors: nothing the targets reach may raise one, so errstart() aborts,
 * which libFuzzer reports as a crash with its input.  The server functions
 * that only jsonb input reaches (jstext.c's JsAppendJsonb) abort likewise.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <stdio.h>
#include <stdlib.h>

#include "common/jsonapi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "fuzz.h"

typedef struct Chunk
{
	struct Chunk *prev;
	struct Chunk *next;
	size_t		size;
	max_align_t align[];		/* the caller's bytes start here */
} Chunk;

static Chunk *chunks;

static void *
chunk_alloc(size_t size, bool zero)
{
	Chunk	   *c = zero ? calloc(1, sizeof(Chunk) + size) : malloc(sizeof(Chunk) + size);

	if (c == NULL)
		abort();
	c->size = size;
	c->prev = NULL;
	c->next = chunks;
	if (chunks)
		chunks->prev = c;
	chunks = c;
	return c->align;
}

static Chunk *
chunk_of(void *p)
{
	return (Chunk *) ((char *) p - offsetof(Chunk, align));
}

static void
chunk_unlink(Chunk *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		chunks = c->next;
	if (c->next)
		c->next->prev = c->prev;
}

void
FuzzFreeAll(void)
{
	while (chunks)
	{
		Chunk	   *next = chunks->next;

		free(chunks);
		chunks = next;
	}
}

void *
palloc(Size size)
{
	return chunk_alloc(size, false);
}

void *
palloc0(Size size)
{
	return chunk_alloc(size, true);
}

void *
palloc_extended(Size size, int flags)
{
	return chunk_alloc(size, (flags & MCXT_ALLOC_ZERO) != 0);
}

void
pfree(void *p)
{
	Chunk	   *c = chunk_of(p);

	chunk_unlink(c);
	free(c);
}

void *
repalloc(void *p, Size size)
{
	void	   *q = chunk_alloc(size, false);
	Chunk	   *c = chunk_of(p);

	memcpy(q, p, Min(c->size, size));
	pfree(p);
	return q;
}

char *
pstrdup(const char *s)
{
	return pnstrdup(s, strlen(s));
}

char *
pnstrdup(const char *s, Size len)
{
	char	   *p;

	len = strnlen(s, len);
	p = chunk_alloc(len + 1, false);
	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

/*
 * Memory contexts: one chunk list serves them all (FuzzFreeAll is the
 * reset), so a context is only a name to switch to.
 */
static MemoryContextData shim_context;
MemoryContext CurrentMemoryContext = &shim_context;
MemoryContext TopMemoryContext = &shim_context;

MemoryContext
AllocSetContextCreateInternal(MemoryContext parent, const char *name,
							  Size minContextSize, Size initBlockSize,
							  Size maxBlockSize)
{
	return &shim_context;
}

void
MemoryContextReset(MemoryContext context)
{
}

/* the server's encoding: the worker's database is UTF8 */
int
GetDatabaseEncoding(void)
{
	return PG_UTF8;
}

/*
 * The frontend build of jsonapi.c on PostgreSQL 15 lacks json_errdetail
 * (17's has it: weak, so that one wins where it exists)
 */
__attribute__((weak)) char *
json_errdetail(JsonParseErrorType error, JsonLexContext *lex)
{
	(void) lex;
	return psprintf("JSON parse error %d", (int) error);
}

/* ---- never reached by the targets: a crash if they are ---- */

static void
unreachable(const char *what)
{
	fprintf(stderr, "fuzz shim: %s reached\n", what);
	abort();
}

bool
errstart(int elevel, const char *domain)
{
	(void) elevel;
	(void) domain;
	unreachable("an ereport");
	return false;
}

bool
errstart_cold(int elevel, const char *domain)
{
	return errstart(elevel, domain);
}

void
errfinish(const char *filename, int lineno, const char *funcname)
{
	(void) filename;
	(void) lineno;
	(void) funcname;
	unreachable("errfinish");
}

int
errcode(int sqlerrcode)
{
	(void) sqlerrcode;
	return 0;
}

int
errmsg(const char *fmt,...)
{
	(void) fmt;
	return 0;
}

int
errmsg_internal(const char *fmt,...)
{
	(void) fmt;
	return 0;
}

int
errdetail(const char *fmt,...)
{
	(void) fmt;
	return 0;
}

void
check_stack_depth(void)
{
}

JsonbIterator *
JsonbIteratorInit(JsonbContainer *container)
{
	(void) container;
	unreachable("JsonbIteratorInit");
	return NULL;
}

JsonbIteratorToken
JsonbIteratorNext(JsonbIterator **it, JsonbValue *val, bool skipNested)
{
	(void) it;
	(void) val;
	(void) skipNested;
	unreachable("JsonbIteratorNext");
	return WJB_DONE;
}

Datum
numeric_float8_no_overflow(PG_FUNCTION_ARGS)
{
	(void) fcinfo;
	unreachable("numeric_float8_no_overflow");
	return (Datum) 0;
}

Datum
DirectFunctionCall1Coll(PGFunction func, Oid collation, Datum arg1)
{
	(void) func;
	(void) collation;
	(void) arg1;
	unreachable("DirectFunctionCall1Coll");
	return (Datum) 0;
}

void
FuzzFail(const char *what, const uint8_t *data, size_t size)
{
	fprintf(stderr, "property failed: %s (input of %zu bytes)\n", what, size);
	(void) data;
	abort();
}
