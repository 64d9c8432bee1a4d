/*-------------------------------------------------------------------------
 *
 * tls_context.c
 *	  The OpenSSL contexts of stream connections.
 *
 * The listener's context is made from scuttlebutt.ssl_cert_file and
 * ssl_key_file (by default the server's own ssl_cert_file and
 * ssl_key_file, relative to the data directory, which is the worker's
 * working directory) and scuttlebutt.ssl_ca_file, at worker start and at
 * every reload, as the postmaster reloads its own: connections already
 * open keep the context they began with (OpenSSL counts its references).
 * A dialed peer's context is made at each connection from its row's
 * files, as libpq makes one per connection.
 *
 * Both speak TLS 1.2 or later, never renegotiate, and take no passphrase:
 * an encrypted key is refused.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "utils/guc.h"

#include "guc.h"
#include "key_file.h"
#include "tls_context.h"

static SSL_CTX *server_ctx = NULL;

const char *
SbTlsErrorReason(void)
{
	unsigned long e = ERR_get_error();
	const char *reason = "no reason given";

	if (e != 0)
	{
		const char *text = ERR_reason_error_string(e);

		reason = text ? text : psprintf("OpenSSL error %lu", e);
	}
	ERR_clear_error();
	return reason;
}

/* What both sides share: protocol versions, write modes, no passphrase */
static SSL_CTX *
new_context(const SSL_METHOD *method, char **why)
{
	SSL_CTX    *ctx = SSL_CTX_new(method);

	if (ctx == NULL)
	{
		*why = psprintf("could not create a TLS context: %s", SbTlsErrorReason());
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
	/* an end without close_notify is an end: a partial line is dropped */
						| SSL_OP_IGNORE_UNEXPECTED_EOF
#endif
		);
	/* the outbox may grow or move between a write and its retry */
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
					 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_default_passwd_cb(ctx, SbNoPassphrase);
	return ctx;
}

/* Loads a certificate chain and its key into ctx; false with *why if not */
static bool
load_identity(SSL_CTX *ctx, const char *cert, const char *key,
			  const char *cert_setting, const char *key_setting, char **why)
{
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
	{
		*why = psprintf("could not load %s \"%s\": %s", cert_setting, cert,
						SbTlsErrorReason());
		return false;
	}
	if (!SbKeyFilePermitted(key, why))
	{
		*why = psprintf("%s: %s", key_setting, *why);
		return false;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
	{
		*why = psprintf("could not load %s \"%s\": %s", key_setting, key,
						SbTlsErrorReason());
		return false;
	}
	if (SSL_CTX_check_private_key(ctx) != 1)
	{
		*why = psprintf("%s \"%s\" does not match %s \"%s\": %s", key_setting, key,
						cert_setting, cert, SbTlsErrorReason());
		return false;
	}
	return true;
}

/* The listener's context from the settings; NULL with *why if it cannot be made */
static SSL_CTX *
build_server_context(char **why)
{
	const char *cert = sb_ssl_cert_file[0] ? sb_ssl_cert_file
		: GetConfigOption("ssl_cert_file", false, false);
	const char *key = sb_ssl_key_file[0] ? sb_ssl_key_file
		: GetConfigOption("ssl_key_file", false, false);
	SSL_CTX    *ctx;

	if (cert == NULL || cert[0] == '\0' || key == NULL || key[0] == '\0')
	{
		*why = pstrdup("no certificate or key file is set");
		return NULL;
	}
	ctx = new_context(TLS_server_method(), why);
	if (ctx == NULL)
		return NULL;
	/* nothing resumes a session: no cache, no TLS 1.3 tickets to send */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
#if OPENSSL_VERSION_NUMBER >= 0x10101000L
	SSL_CTX_set_num_tickets(ctx, 0);
#endif
	if (!load_identity(ctx, cert,
					   key, sb_ssl_cert_file[0] ? "scuttlebutt.ssl_cert_file" : "ssl_cert_file",
					   sb_ssl_key_file[0] ? "scuttlebutt.ssl_key_file" : "ssl_key_file", why))
	{
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (sb_ssl_ca_file[0] != '\0')
	{
		STACK_OF(X509_NAME) *names;

		if (SSL_CTX_load_verify_locations(ctx, sb_ssl_ca_file, NULL) != 1 ||
			(names = SSL_load_client_CA_file(sb_ssl_ca_file)) == NULL)
		{
			*why = psprintf("could not load scuttlebutt.ssl_ca_file \"%s\": %s",
							sb_ssl_ca_file, SbTlsErrorReason());
			SSL_CTX_free(ctx);
			return NULL;
		}
		SSL_CTX_set_client_CA_list(ctx, names);

		/*
		 * A certificate is asked for, and verified when given, but not
		 * required: whether a connection needs one is decided later, when
		 * it says which model it wants.
		 */
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	}
	ERR_clear_error();
	return ctx;
}

void
SbTlsServerReload(void)
{
	SSL_CTX    *ctx;
	char	   *why = NULL;

	if (!sb_ssl)
	{
		if (server_ctx)
			SSL_CTX_free(server_ctx);
		server_ctx = NULL;
		return;
	}
	ctx = build_server_context(&why);
	if (ctx == NULL)
	{
		if (server_ctx)
			ereport(WARNING,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("scuttlebutt: could not load the stream listener's TLS certificate: %s", why),
					 errdetail("New connections keep the certificate loaded before.")));
		else
			ereport(WARNING,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("scuttlebutt: could not load the stream listener's TLS certificate: %s", why),
					 errdetail("scuttlebutt.ssl is on: the stream listener refuses every connection, and serves none in plain text, until a certificate can be loaded.")));
		return;
	}
	if (server_ctx)
		SSL_CTX_free(server_ctx);
	server_ctx = ctx;
}

SSL_CTX *
SbTlsServerContext(void)
{
	return sb_ssl ? server_ctx : NULL;
}

SSL_CTX *
SbTlsClientContext(const SbTlsClientConfig *config, char **why)
{
	SSL_CTX    *ctx;

	if ((config->cert == NULL) != (config->key == NULL))
	{
		*why = pstrdup("sslcert and sslkey must be given together");
		return NULL;
	}
	ctx = new_context(TLS_client_method(), why);
	if (ctx == NULL)
		return NULL;
	if (config->rootcert != NULL
		? SSL_CTX_load_verify_locations(ctx, config->rootcert, NULL) != 1
		: SSL_CTX_set_default_verify_paths(ctx) != 1)
	{
		if (config->rootcert)
			*why = psprintf("could not load sslrootcert \"%s\": %s",
							config->rootcert, SbTlsErrorReason());
		else
			*why = psprintf("could not load the system's CA certificates: %s",
							SbTlsErrorReason());
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (config->cert != NULL &&
		!load_identity(ctx, config->cert, config->key, "sslcert", "sslkey", why))
	{
		SSL_CTX_free(ctx);
		return NULL;
	}
	ERR_clear_error();
	return ctx;
}
