/*-------------------------------------------------------------------------
 *
 * verify_pool.c
 *	  Verifying a batch of signatures on more cores than the backend's.
 *
 * An RSA 2048 verification costs about half of what storing a signed
 * update does, and it needs nothing of the database: so a batch is
 * verified by helper threads (scuttlebutt.verify_threads) while the
 * backend goes on (import() stores the batch before it), and the backend
 * joins them once it needs the verdicts.
 *
 * A PostgreSQL backend is single-threaded, and the threads keep to what is
 * safe beside one: they call OpenSSL only, each with verification
 * contexts of its own that the backend copied for it; they read and write
 * only memory this file got from malloc; they take no PostgreSQL lock,
 * raise no error, and block every signal.  That memory is reused or freed
 * only when no thread is in the batch: a batch the backend abandons (an
 * ERROR between Start and Finish) is cancelled and waited for by the next
 * Begin, and at process exit.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <pthread.h>
#include <signal.h>

#include "storage/ipc.h"

#include "guc.h"
#include "verify_pool.h"

/* Signatures a thread takes at a time: small, so that the threads even out */
#define SB_POOL_CHUNK 4

/* Fewer signatures than this are verified by the backend alone */
#define SB_POOL_MIN_SHARED 8

/* Memory kept between batches; beyond it, given back */
#define SB_POOL_KEEP_BYTES (4 * 1024 * 1024)

/* A helper thread needs little stack: OpenSSL's verification only */
#define SB_POOL_STACK_BYTES (512 * 1024)

typedef struct PoolItem
{
	int			key;
	int			len;
	int			siglen;
	size_t		text_off;		/* into the arena: it may move while filled */
	size_t		sig_off;
} PoolItem;

typedef struct PoolBatch
{
	/* filled by the backend before Start; read-only while shared */
	PoolItem   *items;
	int			nitems;
	int			maxitems;
	bool	   *verdicts;
	char	   *arena;
	size_t		arena_used;
	size_t		arena_size;
	SbVerifyContext *contexts;	/* [key * ncontexts + thread] */
	int			nkeys;
	int			maxkeys;
	int			ncontexts;		/* the backend (0) and helpers 1.. taking part */

	/* under mutex while shared */
	bool		shared;
	int			next;			/* first signature no thread has taken */
	int			limit;			/* past the last one to take */
	int			done;			/* signatures taken and verified */
} PoolBatch;

static PoolBatch batch;
static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work_cond = PTHREAD_COND_INITIALIZER;
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;
static int	nthreads = 0;
static bool threads_failed = false;

/* Verifies signatures [from, to) with thread t's contexts */
static void
verify_range(int from, int to, int t)
{
	for (int i = from; i < to; i++)
	{
		PoolItem   *item = &batch.items[i];

		batch.verdicts[i] =
			SbVerifyWith(&batch.contexts[item->key * batch.ncontexts + t],
						 batch.arena + item->text_off, item->len,
						 (unsigned char *) batch.arena + item->sig_off,
						 item->siglen);
	}
}

/*
 * Takes chunks of the shared batch and verifies them with thread t's
 * contexts until none is left; called and returns with mutex held
 */
static void
take_chunks(int t)
{
	while (batch.shared && batch.next < batch.limit && t < batch.ncontexts)
	{
		int			from = batch.next;
		int			to = Min(from + SB_POOL_CHUNK, batch.limit);

		batch.next = to;
		pthread_mutex_unlock(&mutex);
		verify_range(from, to, t);
		pthread_mutex_lock(&mutex);
		batch.done += to - from;
		if (batch.done == batch.limit)
			pthread_cond_broadcast(&done_cond);
	}
}

/* A helper thread: OpenSSL only, see the file's comment */
static void *
helper_main(void *arg)
{
	int			t = (int) (intptr_t) arg;

	pthread_mutex_lock(&mutex);
	for (;;)
	{
		take_chunks(t);
		pthread_cond_wait(&work_cond, &mutex);
	}
	return NULL;
}

/* Ends the shared batch: what no thread has taken is dropped */
static void
settle_shared(void)
{
	pthread_mutex_lock(&mutex);
	if (batch.shared)
	{
		batch.limit = batch.next;
		while (batch.done < batch.limit)
			pthread_cond_wait(&done_cond, &mutex);
		batch.shared = false;
	}
	pthread_mutex_unlock(&mutex);
}

/* No helper may be in a batch while the process exits (OpenSSL's atexit) */
static void
pool_exit(int code pg_attribute_unused(), Datum arg pg_attribute_unused())
{
	settle_shared();
}

/* Starts helper threads up to n, each with every signal blocked */
static void
start_threads(int n)
{
	pthread_attr_t attr;

	if (nthreads >= n || threads_failed)
		return;
	if (nthreads == 0)
		on_proc_exit(pool_exit, (Datum) 0);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, SB_POOL_STACK_BYTES);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	while (nthreads < n)
	{
		sigset_t	all;
		sigset_t	old;
		pthread_t	thread;
		int			rc;

		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		rc = pthread_create(&thread, &attr, helper_main,
							(void *) (intptr_t) (nthreads + 1));
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		if (rc != 0)
		{
			/* verifying goes on with the threads there are */
			ereport(LOG,
					(errmsg("scuttlebutt: could not start a signature verification thread: %s",
							strerror(rc))));
			threads_failed = true;
			break;
		}
		nthreads++;
	}
	pthread_attr_destroy(&attr);
}

/* realloc, or ERROR: only the backend calls it, with no batch shared */
static void *
pool_realloc(void *ptr, size_t size)
{
	void	   *p = realloc(ptr, size);

	if (p == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Failed on request of size %zu for signatures to verify.", size)));
	return p;
}

void
SbVerifyPoolBegin(void)
{
	settle_shared();
	for (int i = 0; i < batch.nkeys * batch.ncontexts; i++)
		SbVerifyContextFree(&batch.contexts[i]);
	batch.nkeys = 0;
	batch.nitems = 0;
	batch.arena_used = 0;
	if (batch.arena_size > SB_POOL_KEEP_BYTES)
	{
		free(batch.arena);
		batch.arena = NULL;
		batch.arena_size = 0;
	}
	start_threads(sb_verify_threads);
	batch.ncontexts = 1 + Min(nthreads, sb_verify_threads);
}

int
SbVerifyPoolAddKey(const SbVerifier *verifier)
{
	SbVerifyContext *copies;

	if (batch.nkeys == batch.maxkeys)
	{
		batch.maxkeys = Max(8, batch.maxkeys * 2);
		/* (contexts of SB_MAX_VERIFY_THREADS + 1 threads fit any batch) */
		batch.contexts = pool_realloc(batch.contexts,
									  sizeof(SbVerifyContext) * batch.maxkeys *
									  (SB_MAX_VERIFY_THREADS + 1));
	}
	copies = &batch.contexts[batch.nkeys * batch.ncontexts];
	for (int t = 0; t < batch.ncontexts; t++)
	{
		if (SbVerifyContextCopy(verifier, &copies[t]))
			continue;
		while (--t >= 0)
			SbVerifyContextFree(&copies[t]);
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("OpenSSL could not copy a signature verification context.")));
	}
	return batch.nkeys++;
}

int
SbVerifyPoolAdd(int key, const char *text, int len,
				const unsigned char *sig, int siglen)
{
	PoolItem   *item;
	size_t		need = (size_t) len + siglen;

	Assert(key >= 0 && key < batch.nkeys && !batch.shared);
	if (batch.nitems == batch.maxitems)
	{
		batch.maxitems = Max(64, batch.maxitems * 2);
		batch.items = pool_realloc(batch.items, sizeof(PoolItem) * batch.maxitems);
		batch.verdicts = pool_realloc(batch.verdicts, sizeof(bool) * batch.maxitems);
	}
	if (batch.arena_used + need > batch.arena_size)
	{
		batch.arena_size = Max(64 * 1024, Max(batch.arena_size * 2, batch.arena_used + need));
		batch.arena = pool_realloc(batch.arena, batch.arena_size);
	}
	item = &batch.items[batch.nitems];
	item->key = key;
	item->len = len;
	item->siglen = siglen;
	item->text_off = batch.arena_used;
	memcpy(batch.arena + batch.arena_used, text, len);
	batch.arena_used += len;
	item->sig_off = batch.arena_used;
	memcpy(batch.arena + batch.arena_used, sig, siglen);
	batch.arena_used += siglen;
	return batch.nitems++;
}

void
SbVerifyPoolStart(void)
{
	if (batch.nitems < SB_POOL_MIN_SHARED || batch.ncontexts < 2)
		return;
	pthread_mutex_lock(&mutex);
	batch.shared = true;
	batch.next = 0;
	batch.limit = batch.nitems;
	batch.done = 0;
	pthread_cond_broadcast(&work_cond);
	pthread_mutex_unlock(&mutex);
}

const bool *
SbVerifyPoolFinish(void)
{
	pthread_mutex_lock(&mutex);
	if (!batch.shared)
	{
		pthread_mutex_unlock(&mutex);
		verify_range(0, batch.nitems, 0);
		return batch.verdicts;
	}
	take_chunks(0);
	while (batch.done < batch.limit)
		pthread_cond_wait(&done_cond, &mutex);
	batch.shared = false;
	pthread_mutex_unlock(&mutex);
	return batch.verdicts;
}
