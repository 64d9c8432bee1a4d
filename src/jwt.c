/*-------------------------------------------------------------------------
 *
 * jwt.c
 *	  JSON Web Tokens (RFC 7519) for stream connections: the token a client
 *	  puts in its header's meta names the role it acts as.
 *
 * The convention is PostgREST's: a token signed by the app's
 * authentication service, whose "role" claim names a PostgreSQL role.  A
 * token is taken only in JWS compact form (three base64url parts), signed
 * with HS256 under scuttlebutt.jwt_secret, or with RS256 or EdDSA under the
 * public key in scuttlebutt.jwt_public_key_file.  Each algorithm takes
 * only its own kind of key, so a token cannot make an RSA public key
 * serve as an HMAC secret; "none" is never accepted.  "exp" and "nbf" are
 * enforced when present, "aud" must name scuttlebutt.jwt_audience when
 * that is set, and a claim we read that appears twice refuses the token
 * (two parsers could disagree on which one counts).
 *
 * The reasons a token is refused go to the server log only: the client
 * is told nothing that could help it guess.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "common/base64.h"
#include "common/jsonapi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "nodes/value.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "compat.h"
#include "jwt.h"
#include "signature.h"

/* A token longer than this is refused unread */
#define SB_JWT_MAX_LENGTH 8192
/* HS256 secrets shorter than its hash are guessable (RFC 7518, 3.2) */
#define SB_JWT_MIN_SECRET_BYTES 32
#define SB_JWT_MIN_RSA_BITS 2048

char	   *sb_jwt_secret = NULL;
char	   *sb_jwt_public_key_file = NULL;
char	   *sb_jwt_audience = NULL;

/* The parsed public key; reloaded at first use after the setting changes */
static EVP_PKEY *jwt_key = NULL;
static bool jwt_key_stale = true;

/* ---- the public key file ---- */

/* The key in path, or NULL with *why (palloc'd) */
static EVP_PKEY *
read_public_key_file(const char *path, char **why)
{
	FILE	   *file = AllocateFile(path, "r");
	EVP_PKEY   *key;

	if (file == NULL)
	{
		*why = psprintf("could not open \"%s\": %m", path);
		return NULL;
	}
	key = PEM_read_PUBKEY(file, NULL, NULL, NULL);
	FreeFile(file);
	ERR_clear_error();
	if (key == NULL)
	{
		*why = psprintf("\"%s\" holds no public key in PEM format (\"BEGIN PUBLIC KEY\")", path);
		return NULL;
	}
	if (SbKeySignatureAlgorithm(key) == SB_SIG_NONE)
		*why = psprintf("the key in \"%s\" is neither RSA (RS256) nor Ed25519 (EdDSA)", path);
	else if (EVP_PKEY_base_id(key) == EVP_PKEY_RSA &&
			 EVP_PKEY_get_bits(key) < SB_JWT_MIN_RSA_BITS)
		*why = psprintf("the RSA key in \"%s\" has %d bits; RS256 needs at least %d",
						path, EVP_PKEY_get_bits(key), SB_JWT_MIN_RSA_BITS);
	else
		return key;
	EVP_PKEY_free(key);
	return NULL;
}

bool
SbCheckJwtPublicKeyFile(char **newval, void **extra pg_attribute_unused(),
						GucSource source pg_attribute_unused())
{
	EVP_PKEY   *key;
	char	   *why = NULL;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	key = read_public_key_file(*newval, &why);
	if (key == NULL)
	{
		GUC_check_errdetail("%s", why);
		return false;
	}
	EVP_PKEY_free(key);
	return true;
}

void
SbAssignJwtPublicKeyFile(const char *newval pg_attribute_unused(),
						 void *extra pg_attribute_unused())
{
	jwt_key_stale = true;
}

bool
SbCheckJwtSecret(char **newval, void **extra pg_attribute_unused(),
				 GucSource source pg_attribute_unused())
{
	if (*newval != NULL && (*newval)[0] != '\0' &&
		strlen(*newval) < SB_JWT_MIN_SECRET_BYTES)
	{
		GUC_check_errdetail("An HS256 secret must be at least %d bytes long.",
							SB_JWT_MIN_SECRET_BYTES);
		return false;
	}
	return true;
}

/* The configured public key, or NULL when none is set or it cannot be read */
static EVP_PKEY *
configured_public_key(char **reason)
{
	if (jwt_key_stale)
	{
		char	   *why = NULL;

		if (jwt_key)
			EVP_PKEY_free(jwt_key);
		jwt_key = NULL;
		if (sb_jwt_public_key_file && sb_jwt_public_key_file[0] != '\0')
		{
			jwt_key = read_public_key_file(sb_jwt_public_key_file, &why);
			if (jwt_key == NULL)
			{
				/* removed or replaced since the reload: say so each time */
				*reason = psprintf("scuttlebutt.jwt_public_key_file cannot be used: %s", why);
				return NULL;
			}
		}
		jwt_key_stale = false;
	}
	if (jwt_key == NULL)
		*reason = pstrdup("scuttlebutt.jwt_public_key_file is not set");
	return jwt_key;
}

/* ---- base64url ---- */

/*
 * Decodes one part of the token (base64url without padding, RFC 7515);
 * NULL if it holds anything else.  *len gets the decoded length.
 */
static char *
base64url_decode(const char *part, int partlen, int *len)
{
	char	   *b64 = palloc(partlen + 4);
	char	   *out;
	int			n;

	if (partlen % 4 == 1)
		return NULL;
	for (int i = 0; i < partlen; i++)
	{
		char		c = part[i];

		if (c == '-')
			c = '+';
		else if (c == '_')
			c = '/';
		else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
				   (c >= '0' && c <= '9')))
			return NULL;
		b64[i] = c;
	}
	n = partlen;
	while (n % 4 != 0)
		b64[n++] = '=';
	out = palloc(pg_b64_dec_len(n) + 1);
	*len = pg_b64_decode(b64, n, out, pg_b64_dec_len(n));
	if (*len < 0)
		return NULL;
	out[*len] = '\0';
	return out;
}

/* ---- the header's and the claims' JSON ---- */

typedef struct JwtFields
{
	int			depth;
	bool		root_is_object;
	const char *field;			/* the root object's field being read */
	bool		in_aud_array;
	const char *bad;			/* why the fields cannot be taken */
	/* header */
	char	   *alg;
	bool		crit;
	/* claims */
	char	   *role;
	bool		has_exp;
	double		exp;
	bool		has_nbf;
	double		nbf;
	bool		has_aud;
	List	   *aud;
} JwtFields;

static SbJsonAction
on_object_start(void *state)
{
	JwtFields  *f = state;

	if (f->depth == 0)
		f->root_is_object = true;
	f->depth++;
	SB_JSON_ACTION_RETURN;
}

static SbJsonAction
on_nest_end(void *state)
{
	JwtFields  *f = state;

	f->depth--;
	f->in_aud_array = false;
	SB_JSON_ACTION_RETURN;
}

static SbJsonAction
on_array_start(void *state)
{
	JwtFields  *f = state;

	f->in_aud_array = f->depth == 1 && f->field && strcmp(f->field, "aud") == 0;
	if (f->in_aud_array)
		f->has_aud = true;
	f->depth++;
	SB_JSON_ACTION_RETURN;
}

static SbJsonAction
on_field_start(void *state, char *fname, bool isnull pg_attribute_unused())
{
	JwtFields  *f = state;

	if (f->depth != 1)
		SB_JSON_ACTION_RETURN;
	f->field = fname;
	if (strcmp(fname, "crit") == 0)
		f->crit = true;
	/* a claim we read, given twice */
	if ((strcmp(fname, "alg") == 0 && f->alg) ||
		(strcmp(fname, "role") == 0 && f->role) ||
		(strcmp(fname, "exp") == 0 && f->has_exp) ||
		(strcmp(fname, "nbf") == 0 && f->has_nbf) ||
		(strcmp(fname, "aud") == 0 && f->has_aud))
		f->bad = psprintf("\"%s\" appears twice", fname);
	SB_JSON_ACTION_RETURN;
}

/* A number claim (exp, nbf): seconds since the epoch */
static void
take_time(JwtFields *f, const char *token, JsonTokenType type,
		  bool *has, double *value)
{
	*has = true;
	if (type != JSON_TOKEN_NUMBER)
		f->bad = psprintf("\"%s\" is not a number", f->field);
	else
		*value = strtod(token, NULL);
}

/* A string claim (alg, role) */
static void
take_string(JwtFields *f, char *token, JsonTokenType type, char **value)
{
	if (type != JSON_TOKEN_STRING)
	{
		f->bad = psprintf("\"%s\" is not a string", f->field);
		*value = pstrdup("");
	}
	else
		*value = token;
}

static SbJsonAction
on_scalar(void *state, char *token, JsonTokenType type)
{
	JwtFields  *f = state;

	if (f->in_aud_array && f->depth == 2)
	{
		if (type != JSON_TOKEN_STRING)
			f->bad = "\"aud\" is not a string or an array of strings";
		else
			f->aud = lappend(f->aud, makeString(token));
	}
	if (f->depth != 1 || f->field == NULL)
		SB_JSON_ACTION_RETURN;
	if (strcmp(f->field, "alg") == 0)
		take_string(f, token, type, &f->alg);
	else if (strcmp(f->field, "role") == 0)
		take_string(f, token, type, &f->role);
	else if (strcmp(f->field, "exp") == 0)
		take_time(f, token, type, &f->has_exp, &f->exp);
	else if (strcmp(f->field, "nbf") == 0)
		take_time(f, token, type, &f->has_nbf, &f->nbf);
	else if (strcmp(f->field, "aud") == 0)
	{
		f->has_aud = true;
		if (type != JSON_TOKEN_STRING)
			f->bad = "\"aud\" is not a string or an array of strings";
		else
			f->aud = lappend(f->aud, makeString(token));
	}
	SB_JSON_ACTION_RETURN;
}

/* Reads the fields of one decoded part into f; false with *reason */
static bool
read_fields(const char *what, const char *json, int len, JwtFields *f,
			char **reason)
{
	JsonLexContext *lex;
	JsonSemAction sem;
	JsonParseErrorType rc;

	memset(f, 0, sizeof(*f));
	if (pg_encoding_verifymbstr(PG_UTF8, json, len) != len)
	{
		*reason = psprintf("the token's %s is not UTF-8", what);
		return false;
	}
	lex = SbMakeJsonLexContext(json, len, PG_UTF8, true);
	memset(&sem, 0, sizeof(sem));
	sem.semstate = f;
	sem.object_start = on_object_start;
	sem.object_end = on_nest_end;
	sem.array_start = on_array_start;
	sem.array_end = on_nest_end;
	sem.object_field_start = on_field_start;
	sem.scalar = on_scalar;
	rc = pg_parse_json(lex, &sem);
	if (rc != JSON_SUCCESS)
		*reason = psprintf("the token's %s is not JSON: %s", what,
						   json_errdetail(rc, lex));
	else if (!f->root_is_object)
		*reason = psprintf("the token's %s is not a JSON object", what);
	else if (f->bad)
		*reason = psprintf("the token's %s is malformed: %s", what, f->bad);
	else
		return true;
	return false;
}

/* ---- signatures ---- */

static bool
verify_hs256(const char *input, int inlen, const char *sig, int siglen,
			 char **reason)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;

	if (sb_jwt_secret == NULL || sb_jwt_secret[0] == '\0')
	{
		*reason = pstrdup("the token is signed with HS256 and scuttlebutt.jwt_secret is not set");
		return false;
	}
	if (HMAC(EVP_sha256(), sb_jwt_secret, strlen(sb_jwt_secret),
			 (const unsigned char *) input, inlen, mac, &maclen) == NULL)
	{
		ERR_clear_error();
		*reason = pstrdup("HMAC-SHA256 failed in OpenSSL");
		return false;
	}
	if ((unsigned int) siglen != maclen || CRYPTO_memcmp(mac, sig, maclen) != 0)
	{
		*reason = pstrdup("the token's signature does not verify");
		return false;
	}
	return true;
}

/* RS256 (RSA PKCS#1 v1.5, SHA-256) or EdDSA (Ed25519) */
static bool
verify_public(const char *alg, const char *input, int inlen, const char *sig,
			  int siglen, char **reason)
{
	EVP_PKEY   *key = configured_public_key(reason);
	bool		rsa = strcmp(alg, "RS256") == 0;
	EVP_MD_CTX *ctx;
	bool		ok;

	if (key == NULL)
	{
		*reason = psprintf("the token is signed with %s and %s", alg, *reason);
		return false;
	}
	if ((EVP_PKEY_base_id(key) == EVP_PKEY_RSA) != rsa)
	{
		*reason = psprintf("the token is signed with %s, which the key in scuttlebutt.jwt_public_key_file does not verify",
						   alg);
		return false;
	}
	ctx = EVP_MD_CTX_new();
	ok = ctx != NULL &&
		EVP_DigestVerifyInit(ctx, NULL, rsa ? EVP_sha256() : NULL, NULL, key) == 1 &&
		EVP_DigestVerify(ctx, (const unsigned char *) sig, siglen,
						 (const unsigned char *) input, inlen) == 1;
	EVP_MD_CTX_free(ctx);
	ERR_clear_error();
	if (!ok)
		*reason = pstrdup("the token's signature does not verify");
	return ok;
}

/* ---- the claims ---- */

static bool
check_claims(JwtFields *c, char **reason)
{
	double		now = (double) time(NULL);

	if (c->has_exp && !(now < c->exp))
		*reason = psprintf("the token has expired (\"exp\" %.0f, now %.0f)",
						   c->exp, now);
	else if (c->has_nbf && now < c->nbf)
		*reason = psprintf("the token is not valid yet (\"nbf\" %.0f, now %.0f)",
						   c->nbf, now);
	else if (sb_jwt_audience && sb_jwt_audience[0] != '\0' &&
			 !list_member(c->aud, makeString(sb_jwt_audience)))
		*reason = psprintf("the token's audience (\"aud\") does not name \"%s\"",
						   sb_jwt_audience);
	else if (c->role == NULL || c->role[0] == '\0')
		*reason = pstrdup("the token has no \"role\" claim");
	else if (strlen(c->role) >= NAMEDATALEN)
		*reason = pstrdup("the token's \"role\" claim is longer than a role name can be");
	else
		return true;
	return false;
}

/* ---- the token ---- */

bool
SbJwtVerify(const char *token, char **role, char **reason)
{
	int			len = strlen(token);
	const char *dot1;
	const char *dot2;
	char	   *header;
	char	   *claims;
	char	   *sig;
	int			hlen,
				clen,
				slen;
	JwtFields	h;
	JwtFields	c;
	bool		ok;

	*role = NULL;
	*reason = NULL;
	if (len > SB_JWT_MAX_LENGTH)
	{
		*reason = psprintf("the token is longer than %d bytes", SB_JWT_MAX_LENGTH);
		return false;
	}
	dot1 = strchr(token, '.');
	dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
	if (dot2 == NULL || strchr(dot2 + 1, '.') != NULL ||
		(header = base64url_decode(token, dot1 - token, &hlen)) == NULL ||
		(claims = base64url_decode(dot1 + 1, dot2 - dot1 - 1, &clen)) == NULL ||
		(sig = base64url_decode(dot2 + 1, token + len - dot2 - 1, &slen)) == NULL)
	{
		*reason = pstrdup("the token is not three base64url parts (JWS compact form)");
		return false;
	}
	if (!read_fields("header", header, hlen, &h, reason))
		return false;
	if (h.crit)
	{
		*reason = pstrdup("the token's header has \"crit\" extensions, which are not understood");
		return false;
	}
	/* the signature first: nothing of an unverified token is believed */
	if (h.alg && strcmp(h.alg, "HS256") == 0)
		ok = verify_hs256(token, dot2 - token, sig, slen, reason);
	else if (h.alg && (strcmp(h.alg, "RS256") == 0 || strcmp(h.alg, "EdDSA") == 0))
		ok = verify_public(h.alg, token, dot2 - token, sig, slen, reason);
	else
	{
		*reason = psprintf("the token's algorithm \"%s\" is not accepted (HS256, RS256 and EdDSA are)",
						   h.alg ? h.alg : "");
		ok = false;
	}
	if (!ok || !read_fields("claims", claims, clen, &c, reason) ||
		!check_claims(&c, reason))
		return false;
	*role = c.role;
	return true;
}

/* ---- SQL ---- */

PG_FUNCTION_INFO_V1(scuttlebutt_check_token);

/* check_token(token): the role a token acts as, or why it is refused */
Datum
scuttlebutt_check_token(PG_FUNCTION_ARGS)
{
	char	   *token = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *role;
	char	   *reason;

	if (!SbJwtVerify(token, &role, &reason))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("token refused: %s", reason)));
	PG_RETURN_DATUM(DirectFunctionCall1(namein, CStringGetDatum(role)));
}
