/*-------------------------------------------------------------------------
 *
 * node_key.c
 *	  This node's signing key: read from scuttlebutt.signing_key_file,
 *	  checked as PostgreSQL checks ssl_key_file, parsed once per process
 *	  and setting.
 *
 * The check hook reads the file, so a key that cannot be used stops the
 * server at start (when preloaded) and is refused (the old one kept) at
 * reload.  Each
 * process parses the key again at its first use after a change: the
 * private key stays in OpenSSL's memory, never in shared memory.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/err.h>
#include <openssl/pem.h>

#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/memutils.h"

#include "key_file.h"
#include "node_key.h"

char	   *sb_signing_key_file = NULL;

static SbNodeKey *node_key = NULL;
static bool node_key_stale = true;

/*
 * Reads and parses the key file; NULL with *why set (palloc'd) if it is
 * missing, readable by others, no RSA or Ed25519 private key, or one that
 * cannot sign.
 */
static EVP_PKEY *
read_key_file(const char *path, char **why)
{
	FILE	   *file;
	EVP_PKEY   *key;

	if (!SbKeyFilePermitted(path, why))
		return NULL;
	file = AllocateFile(path, "r");
	if (file == NULL)
	{
		*why = psprintf("could not open \"%s\": %m", path);
		return NULL;
	}
	key = PEM_read_PrivateKey(file, NULL, SbNoPassphrase, NULL);
	FreeFile(file);
	/* (OpenSSL's reason is left out: its wording differs between versions) */
	ERR_clear_error();
	if (key == NULL)
	{
		*why = psprintf("\"%s\" holds no unencrypted private key in PEM format", path);
		return NULL;
	}
	if (SbKeySignatureAlgorithm(key) == SB_SIG_NONE)
	{
		EVP_PKEY_free(key);
		*why = psprintf("the key in \"%s\" is neither RSA nor Ed25519", path);
		return NULL;
	}
	if (!SbKeyCanSign(key))
	{
		EVP_PKEY_free(key);
		*why = psprintf("the key in \"%s\" cannot sign: OpenSSL refused it, or its signature did not verify with its public key", path);
		return NULL;
	}
	return key;
}

bool
SbCheckSigningKeyFile(char **newval, void **extra pg_attribute_unused(),
					  GucSource source pg_attribute_unused())
{
	EVP_PKEY   *key;
	char	   *why = NULL;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	key = read_key_file(*newval, &why);
	if (key == NULL && process_shared_preload_libraries_in_progress)
	{
		/*
		 * At server start a refused value would fall back to no key, and the
		 * node would write under its random id: stop, as a bad ssl_key_file
		 * does.
		 */
		ereport(FATAL,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("scuttlebutt.signing_key_file cannot be used: %s", why)));
	}
	if (key == NULL)
	{
		GUC_check_errdetail("%s", why);
		return false;
	}
	EVP_PKEY_free(key);
	return true;
}

void
SbAssignSigningKeyFile(const char *newval pg_attribute_unused(),
					   void *extra pg_attribute_unused())
{
	node_key_stale = true;
}

static void
free_node_key(void)
{
	if (node_key == NULL)
		return;
	SbVerifierFree(node_key->verifier);
	SbSignerFree(node_key->signer);
	EVP_PKEY_free(node_key->key);
	pfree(node_key->public_pem);
	pfree(node_key->id);
	pfree(node_key);
	node_key = NULL;
}

const SbNodeKey *
SbGetNodeKey(void)
{
	if (node_key_stale)
	{
		MemoryContext old;
		EVP_PKEY   *key;
		char	   *why = NULL;
		char	   *pem;

		free_node_key();
		if (sb_signing_key_file == NULL || sb_signing_key_file[0] == '\0')
		{
			node_key_stale = false;
			return NULL;
		}
		key = read_key_file(sb_signing_key_file, &why);
		if (key == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("scuttlebutt.signing_key_file cannot be used: %s", why)));
		old = MemoryContextSwitchTo(TopMemoryContext);
		PG_TRY();
		{
			pem = SbPublicKeyPem(key);
		}
		PG_CATCH();
		{
			EVP_PKEY_free(key);
			PG_RE_THROW();
		}
		PG_END_TRY();
		node_key = palloc(sizeof(SbNodeKey));
		node_key->key = key;
		node_key->algorithm = SbKeySignatureAlgorithm(key);
		node_key->public_pem = pem;
		node_key->id = SbKeyId(pem, strlen(pem));
		/* its own reference: the verifier frees the key it holds */
		EVP_PKEY_up_ref(key);
		node_key->verifier = SbVerifierCreate(key);
		node_key->signer = SbSignerCreate(key);
		MemoryContextSwitchTo(old);
		node_key_stale = false;
	}
	return node_key;
}
