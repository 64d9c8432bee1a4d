/*-------------------------------------------------------------------------
 *
 * rsa_split_sign.c
 *	  RSA-SHA1 (PKCS#1 v1.5) signatures with the two CRT halves computed
 *	  on two threads at once.
 *
 * An RSA private-key operation by the CRT is two independent
 * exponentiations, one modulo each prime, and they are nearly all of its
 * cost.  OpenSSL runs them one after the other (in one SIMD pass on
 * processors with AVX-512 IFMA only); here the backend computes
 * the one modulo q while a helper thread computes the one modulo p, so a
 * signature takes a little over half of OpenSSL's time on a second core
 * that a single writer leaves idle.  The steps are OpenSSL 3's own
 * (crypto/rsa/rsa_ossl.c) on its public BIGNUM interface:
 *   - the padded digest is blinded (BN_BLINDING: multiplied by r^e mod n
 *     for a random r, which is renewed every 32 signatures and squared in
 *     between), so no secret-dependent step sees the chosen message; as
 *     RSA_setup_blinding does, the blinding's modulus carries
 *     BN_FLG_CONSTTIME, so that r is inverted and raised to e on
 *     constant-time paths;
 *   - the halves are those of rsa_ossl_mod_exp's path for primes of one
 *     size (its "smooth" CRT), no step branching on a secret (the public
 *     BIGNUM calls, unlike OpenSSL's internal ones, trim leading zero
 *     limbs off their results): the blinded
 *     message is reduced mod p and mod q by a Montgomery round trip, not a
 *     division; BN_mod_exp_mont_consttime with Montgomery contexts of the
 *     flagged primes; (cp - cq) * qinv mod p by a constant-time modular
 *     addition and a Montgomery multiplication.  A key whose primes differ
 *     in size is left to OpenSSL (which then takes its slower path of
 *     divisions), as are multi-prime keys;
 *   - the result is checked with the public exponent before it is
 *     unblinded, and a mismatch (a fault) gives no signature (the caller
 *     then signs with OpenSSL alone), so a miscalculated half never leaks
 *     a prime;
 *   - the signer's intermediate values are cleared after every
 *     signature; the two threads' BN_CTX pools, kept for speed, hold their
 *     temporaries until reused (OpenSSL frees its BN_CTX after each).
 * PKCS#1 v1.5 signatures are deterministic: the bytes equal OpenSSL's
 * (test/t/148_sign_threads.pl compares them).
 *
 * The helper thread, one per process, keeps to what is safe beside a
 * PostgreSQL backend: it calls OpenSSL only, on memory that OpenSSL or
 * this file got from malloc, blocks every signal, and takes no PostgreSQL
 * lock.  The backend hands it one exponentiation and waits for it before
 * it does anything else, so no PostgreSQL state is touched meanwhile.  It
 * starts at the process's first split signature (never in the
 * postmaster, which parses no node key); a process forked after that has
 * no helper and signs with OpenSSL alone.
 *
 * No palloc, no ereport here: a caller gets NULL or false (also when the
 * helper thread cannot start) and signs with OpenSSL alone.
 *
 *-------------------------------------------------------------------------
 */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>

#include "rsa_split_sign.h"

/* DER of DigestInfo for SHA-1 up to the digest (RFC 8017, 9.2 note 1) */
static const unsigned char sha1_digest_info[] = {
	0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e,
	0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14
};

#define SHA1_BYTES 20

/* The helper thread needs little stack: BIGNUM work allocates on the heap */
#define HELPER_STACK_BYTES (256 * 1024)

struct SbRsaSplitSigner
{
	BIGNUM	   *n;
	BIGNUM	   *e;
	BIGNUM	   *p;				/* secret values: BN_FLG_CONSTTIME */
	BIGNUM	   *q;
	BIGNUM	   *dp;
	BIGNUM	   *dq;
	BIGNUM	   *qinv;
	BIGNUM	   *qinv_mont;		/* qinv in p's Montgomery form */
	BN_MONT_CTX *mont_n;
	BN_MONT_CTX *mont_p;
	BN_MONT_CTX *mont_q;
	BN_BLINDING *blinding;
	BN_CTX	   *ctx;			/* the calling thread's */
	int			size;			/* bytes of a signature */
	/* scratch, reused */
	BIGNUM	   *m;				/* the padded digest, blinded */
	BIGNUM	   *unblind;
	BIGNUM	   *cp;				/* blinded message mod p, then ^dp */
	BIGNUM	   *cq;				/* blinded message mod q, then ^dq */
	BIGNUM	   *t;				/* (cp - cq) * qinv mod p, on its way */
	BIGNUM	   *prod;
	BIGNUM	   *sig;			/* blinded signature, then the signature */
	BIGNUM	   *check;
};

/*
 * The helper thread and the one exponentiation it is given at a time:
 * result = base^exp mod mod.
 *
 * Waking a sleeping thread costs tens of microseconds on a virtual machine
 * (the idle core is halted), so the backend wakes the helper when a
 * signature begins, before it hashes and blinds, and the helper then spins
 * until the job is posted; the backend spins for the result, which is due
 * about when its own half is done.
 *
 * Between signatures the helper sleeps, unless they come close together:
 * when it was woken within HELPER_LINGER_NS of finishing its job before,
 * it spins that long for the next before it sleeps.  A writer committing
 * with synchronous_commit = on signs about once a millisecond here, and a
 * helper woken from sleep for each started its half about 80 us late: such
 * a set() ran at 0.65 of openssl speed's signing rate, 0.90 to 0.93 with
 * the linger.  After a pause longer than the linger, at most one linger is
 * wasted, and the next two signatures find the helper asleep (it takes one
 * short gap to spin again).
 */
typedef enum HelperState
{
	HELPER_IDLE,				/* asleep, lingering, or about to be */
	HELPER_WOKEN,				/* a job is coming: spin */
	HELPER_POSTED,				/* job holds one: run it */
	HELPER_DONE					/* job.ok says how it went */
} HelperState;

typedef struct HelperJob
{
	BIGNUM	   *result;
	const BIGNUM *base;			/* NULL: nothing to do after all */
	const BIGNUM *exp;
	const BIGNUM *mod;
	BN_MONT_CTX *mont;
	bool		ok;
} HelperJob;

static pthread_mutex_t helper_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t helper_wake = PTHREAD_COND_INITIALIZER;
static HelperJob job;			/* written before POSTED, read after */
static _Atomic int helper_state_now = HELPER_IDLE;
static int	helper_started = 0; /* 0: not yet, 1: running, -1: cannot */
static pid_t helper_pid;		/* the process it runs in */

/* Spins before a waiting thread yields its core (the other may be busy) */
#define SPINS_BEFORE_YIELD 20000

/* How long an idle helper spins for the next job when jobs come often */
#define HELPER_LINGER_NS 1000000

static void
cpu_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Waits while the helper's state is state */
static void
wait_while(int state)
{
	int			spins = 0;

	while (atomic_load_explicit(&helper_state_now, memory_order_acquire) == state)
	{
		if (++spins < SPINS_BEFORE_YIELD)
			cpu_pause();
		else
			sched_yield();
	}
}

/*
 * Spins while the helper is idle, until deadline; whether a job came.  It
 * yields its core every few microseconds, so another process that needs
 * the core gets it.
 */
static bool
linger_until(uint64_t deadline)
{
	int			spins = 0;

	while (atomic_load_explicit(&helper_state_now, memory_order_acquire) == HELPER_IDLE)
	{
		cpu_pause();
		if ((++spins & 63) != 0)
			continue;
		if (now_ns() >= deadline)
			return false;
		sched_yield();
	}
	return true;
}

static void *
helper_main(void *arg)
{
	BN_CTX	   *ctx = BN_CTX_new();
	uint64_t	last_done = 0;
	bool		jobs_come_often = false;

	(void) arg;
	for (;;)
	{
		bool		ok = false;

		if (!jobs_come_often || !linger_until(last_done + HELPER_LINGER_NS))
		{
			/* (the backend wakes us holding the mutex: no wake-up is lost) */
			pthread_mutex_lock(&helper_mutex);
			while (atomic_load(&helper_state_now) == HELPER_IDLE)
				pthread_cond_wait(&helper_wake, &helper_mutex);
			pthread_mutex_unlock(&helper_mutex);
		}
		jobs_come_often = now_ns() - last_done < HELPER_LINGER_NS;
		wait_while(HELPER_WOKEN);
		if (job.base != NULL)
			ok = ctx != NULL &&
				BN_mod_exp_mont_consttime(job.result, job.base, job.exp, job.mod,
										  ctx, job.mont);
		job.ok = ok;
		atomic_store_explicit(&helper_state_now, HELPER_DONE, memory_order_release);
		/* the backend sets IDLE once it has read the result */
		wait_while(HELPER_DONE);
		last_done = now_ns();
	}
	return NULL;
}

/* Starts the helper once; false if it cannot run (then OpenSSL signs) */
static bool
helper_running(void)
{
	pthread_attr_t attr;
	pthread_t	thread;
	sigset_t	all,
				old;

	if (helper_started != 0)
		return helper_started > 0 && helper_pid == getpid();
	helper_started = -1;
	helper_pid = getpid();
	if (pthread_attr_init(&attr) != 0)
		return false;
	pthread_attr_setstacksize(&attr, HELPER_STACK_BYTES);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	/* signals stay the backend's: the thread starts with all blocked */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	if (pthread_create(&thread, &attr, helper_main, NULL) == 0)
		helper_started = 1;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	return helper_started > 0;
}

/* The helper, asleep, is told that a job comes */
static void
helper_wake_up(void)
{
	pthread_mutex_lock(&helper_mutex);
	atomic_store(&helper_state_now, HELPER_WOKEN);
	pthread_cond_signal(&helper_wake);
	pthread_mutex_unlock(&helper_mutex);
}

/* Posts the job (base NULL: none after all) */
static void
helper_post(BIGNUM *result, const BIGNUM *base, const BIGNUM *exp,
			const BIGNUM *mod, BN_MONT_CTX *mont)
{
	job.result = result;
	job.base = base;
	job.exp = exp;
	job.mod = mod;
	job.mont = mont;
	atomic_store_explicit(&helper_state_now, HELPER_POSTED, memory_order_release);
}

/* Waits for the posted job; whether it succeeded.  The helper is idle again. */
static bool
helper_wait(void)
{
	bool		ok;

	wait_while(HELPER_POSTED);
	ok = job.ok;
	atomic_store_explicit(&helper_state_now, HELPER_IDLE, memory_order_release);
	return ok;
}

/* A key parameter as a BIGNUM, constant-time flagged if secret */
static BIGNUM *
get_param(EVP_PKEY *key, const char *name, bool secret)
{
	BIGNUM	   *bn = NULL;

	if (!EVP_PKEY_get_bn_param(key, name, &bn))
		return NULL;
	if (secret)
		BN_set_flags(bn, BN_FLG_CONSTTIME);
	return bn;
}

void
SbRsaSplitSignerFree(SbRsaSplitSigner *s)
{
	if (s == NULL)
		return;
	BN_free(s->n);
	BN_free(s->e);
	BN_clear_free(s->p);
	BN_clear_free(s->q);
	BN_clear_free(s->dp);
	BN_clear_free(s->dq);
	BN_clear_free(s->qinv);
	BN_clear_free(s->qinv_mont);
	BN_MONT_CTX_free(s->mont_n);
	BN_MONT_CTX_free(s->mont_p);
	BN_MONT_CTX_free(s->mont_q);
	BN_BLINDING_free(s->blinding);
	BN_CTX_free(s->ctx);
	BN_clear_free(s->m);
	BN_clear_free(s->unblind);
	BN_clear_free(s->cp);
	BN_clear_free(s->cq);
	BN_clear_free(s->t);
	BN_clear_free(s->prod);
	BN_clear_free(s->sig);
	BN_clear_free(s->check);
	free(s);
}

/*
 * The blinding, as RSA_setup_blinding makes it: of a BN_FLG_CONSTTIME
 * copy of n, which BN_BLINDING keeps, so that the random blinding value is
 * inverted (and raised to e) on constant-time paths
 */
static BN_BLINDING *
create_blinding(SbRsaSplitSigner *s)
{
	BIGNUM	   *n = BN_new();
	BN_BLINDING *blinding;

	if (n == NULL)
		return NULL;
	BN_with_flags(n, s->n, BN_FLG_CONSTTIME);
	blinding = BN_BLINDING_create_param(NULL, s->e, n, s->ctx,
										BN_mod_exp_mont, s->mont_n);
	BN_free(n);
	return blinding;
}

SbRsaSplitSigner *
SbRsaSplitSignerCreate(EVP_PKEY *key)
{
	SbRsaSplitSigner *s;
	BIGNUM	   *third = NULL;

	if (EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA)
		return NULL;
	/* a multi-prime key has more than two halves: OpenSSL signs it */
	if (EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_FACTOR3, &third))
	{
		BN_clear_free(third);
		return NULL;
	}
	s = calloc(1, sizeof(SbRsaSplitSigner));
	if (s == NULL)
		return NULL;
	s->n = get_param(key, OSSL_PKEY_PARAM_RSA_N, false);
	s->e = get_param(key, OSSL_PKEY_PARAM_RSA_E, false);
	s->p = get_param(key, OSSL_PKEY_PARAM_RSA_FACTOR1, true);
	s->q = get_param(key, OSSL_PKEY_PARAM_RSA_FACTOR2, true);
	s->dp = get_param(key, OSSL_PKEY_PARAM_RSA_EXPONENT1, true);
	s->dq = get_param(key, OSSL_PKEY_PARAM_RSA_EXPONENT2, true);
	s->qinv = get_param(key, OSSL_PKEY_PARAM_RSA_COEFFICIENT1, true);
	s->qinv_mont = BN_new();
	s->ctx = BN_CTX_new();
	s->mont_n = BN_MONT_CTX_new();
	s->mont_p = BN_MONT_CTX_new();
	s->mont_q = BN_MONT_CTX_new();
	s->m = BN_new();
	s->unblind = BN_new();
	s->cp = BN_new();
	s->cq = BN_new();
	s->t = BN_new();
	s->prod = BN_new();
	s->sig = BN_new();
	s->check = BN_new();
	if (!s->n || !s->e || !s->p || !s->q || !s->dp || !s->dq || !s->qinv ||
		!s->qinv_mont || !s->ctx || !s->mont_n || !s->mont_p || !s->mont_q ||
		!s->m || !s->unblind || !s->cp || !s->cq || !s->t || !s->prod ||
		!s->sig || !s->check ||
	/* reduce() and combine_halves() need primes of one size, as OpenSSL's */
		BN_num_bits(s->p) != BN_num_bits(s->q) ||
		!BN_MONT_CTX_set(s->mont_n, s->n, s->ctx) ||
		!BN_MONT_CTX_set(s->mont_p, s->p, s->ctx) ||
		!BN_MONT_CTX_set(s->mont_q, s->q, s->ctx) ||
		!BN_to_montgomery(s->qinv_mont, s->qinv, s->mont_p, s->ctx))
	{
		SbRsaSplitSignerFree(s);
		return NULL;
	}
	BN_set_flags(s->qinv_mont, BN_FLG_CONSTTIME);
	BN_set_flags(s->cp, BN_FLG_CONSTTIME);
	BN_set_flags(s->cq, BN_FLG_CONSTTIME);
	BN_set_flags(s->t, BN_FLG_CONSTTIME);
	BN_set_flags(s->prod, BN_FLG_CONSTTIME);
	s->size = BN_num_bytes(s->n);
	/* room for 0x00 0x01, 8 bytes of 0xff at least, 0x00 and the DigestInfo */
	if (s->size < 11 + (int) sizeof(sha1_digest_info) + SHA1_BYTES)
	{
		SbRsaSplitSignerFree(s);
		return NULL;
	}
	s->blinding = create_blinding(s);
	if (s->blinding == NULL)
	{
		SbRsaSplitSignerFree(s);
		return NULL;
	}
	return s;
}

int
SbRsaSplitSignatureSize(const SbRsaSplitSigner *s)
{
	return s->size;
}

/* EMSA-PKCS1-v1_5 of a SHA-1 digest into m (RFC 8017, 9.2) */
static bool
encode_digest(SbRsaSplitSigner *s, const unsigned char *digest,
			  unsigned char *em)
{
	int			tlen = sizeof(sha1_digest_info) + SHA1_BYTES;

	em[0] = 0x00;
	em[1] = 0x01;
	memset(em + 2, 0xff, s->size - tlen - 3);
	em[s->size - tlen - 1] = 0x00;
	memcpy(em + s->size - tlen, sha1_digest_info, sizeof(sha1_digest_info));
	memcpy(em + s->size - SHA1_BYTES, digest, SHA1_BYTES);
	if (BN_bin2bn(em, s->size, s->m) == NULL)
		return false;
	/* blinded, it is reduced by the secret primes */
	BN_set_flags(s->m, BN_FLG_CONSTTIME);
	return true;
}

/*
 * r = a mod the modulus of mont, for a below modulus * 2^(its bits rounded
 * up to whole limbs): out of Montgomery form and back, as rsa_ossl_mod_exp
 * reduces (BN_mod divides, and a division's steps depend on its operands)
 */
static bool
reduce(BIGNUM *r, const BIGNUM *a, BN_MONT_CTX *mont, BN_CTX *ctx)
{
	return BN_from_montgomery(r, a, mont, ctx) &&
		BN_to_montgomery(r, r, mont, ctx);
}

/* cq = cq^dq mod q here while the woken helper computes cp = cp^dp mod p */
static bool
exponentiate_halves(SbRsaSplitSigner *s)
{
	bool		ok;

	helper_post(s->cp, s->cp, s->dp, s->p, s->mont_p);
	ok = BN_mod_exp_mont_consttime(s->cq, s->cq, s->dq, s->q, s->ctx, s->mont_q);
	return helper_wait() && ok;
}

/*
 * Garner's recombination, sig = cq + ((cp - cq) * qinv mod p) * q, in the
 * steps of rsa_ossl_mod_exp (bn_mod_sub_fixed_top, bn_mul_mont_fixed_top,
 * bn_mul_fixed_top, bn_mod_add_fixed_top) by their public forms: none
 * branches on a secret value (BN_sub and BN_mod would), they only trim
 * leading zero limbs off their results
 */
static bool
combine_halves(SbRsaSplitSigner *s)
{
	/* t = p - (cq mod p): cq may exceed p, though not twice over */
	return reduce(s->t, s->cq, s->mont_p, s->ctx) &&
		BN_usub(s->t, s->p, s->t) &&
	/* t = cp + t mod p = (cp - cq) mod p */
		BN_mod_add_quick(s->t, s->cp, s->t, s->p) &&
	/* t = t * qinv mod p */
		BN_mod_mul_montgomery(s->t, s->t, s->qinv_mont, s->mont_p, s->ctx) &&
	/* sig = t * q + cq (below n: the addition never wraps) */
		BN_mul(s->prod, s->t, s->q, s->ctx) &&
		BN_mod_add_quick(s->sig, s->prod, s->cq, s->n);
}

/* Zeroes the intermediate values of a signature, as OpenSSL's BN_CTX_free */
static void
clear_scratch(SbRsaSplitSigner *s, unsigned char *em)
{
	OPENSSL_cleanse(em, s->size);
	BN_clear(s->m);
	BN_clear(s->unblind);
	BN_clear(s->cp);
	BN_clear(s->cq);
	BN_clear(s->t);
	BN_clear(s->prod);
	BN_clear(s->sig);
	BN_clear(s->check);
}

bool
SbRsaSplitSign(SbRsaSplitSigner *s, const unsigned char *digest,
			   unsigned char *sig)
{
	unsigned char em[1024];
	bool		ok;

	if (s->size > (int) sizeof(em) || !helper_running())
		return false;
	/* the helper wakes while we pad and blind */
	helper_wake_up();
	if (!encode_digest(s, digest, em) ||
	/* m = m * r^e mod n */
		!BN_BLINDING_convert_ex(s->m, s->unblind, s->blinding, s->ctx) ||
	/* the halves: cp = m mod p, cq = m mod q */
		!reduce(s->cp, s->m, s->mont_p, s->ctx) ||
		!reduce(s->cq, s->m, s->mont_q, s->ctx))
	{
		helper_post(NULL, NULL, NULL, NULL, NULL);
		(void) helper_wait();
		clear_scratch(s, em);
		return false;
	}
	ok =
	/* cp = cp^dp mod p, cq = cq^dq mod q */
		exponentiate_halves(s) &&
		combine_halves(s) &&
	/*
	 * fault check: (signature^e mod n) is the blinded message (public
	 * values, as OpenSSL checks them: sig is blinded, not flagged)
	 */
		BN_mod_exp_mont(s->check, s->sig, s->e, s->n, s->ctx, s->mont_n) &&
		BN_cmp(s->check, s->m) == 0 &&
	/* unblind: * r^-1 mod n */
		BN_BLINDING_invert_ex(s->sig, s->unblind, s->blinding, s->ctx) &&
		BN_bn2binpad(s->sig, sig, s->size) == s->size;
	clear_scratch(s, em);
	return ok;
}
