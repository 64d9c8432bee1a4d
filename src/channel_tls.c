/*-------------------------------------------------------------------------
 *
 * channel_tls.c
 *	  The TLS byte channel (OpenSSL), non-blocking.
 *
 * The handshake is advanced a step at a time by the worker's loop, like
 * every other read and write: SSL_ERROR_WANT_READ and _WANT_WRITE become
 * the events the channel asks to wait for, so a stalled handshake blocks
 * no one (the stream's handshake timeout ends it).  After the handshake
 * a read may need the socket writable and a write readable; the channel
 * keeps asking for what its last call lacked.
 *
 * A dialed channel verifies the server's certificate against its CA file
 * (or the system's) and its host name as libpq's sslmode=verify-full does,
 * IP addresses included, and sends the name as SNI.  An accepting channel
 * keeps the Common Name of a client certificate that verified.
 *
 * Errors carry OpenSSL's reason (and the certificate check's, when that
 * failed), never bytes the peer sent.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <errno.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "storage/latch.h"
#include "utils/memutils.h"

#include "channel.h"
#include "tls_context.h"

typedef struct TlsState
{
	SSL		   *ssl;
	bool		server;
	bool		handshaken;
	uint32		handshake_wants;	/* WL_SOCKET_* the handshake waits for */
	bool		read_wants_write;	/* the last read needs the socket
									 * writable */
	bool		write_wants_read;	/* the last write needs input first */
} TlsState;

static inline TlsState *
tls_of(SbChannel *ch)
{
	return (TlsState *) ch->state;
}

/*
 * ch->error from OpenSSL's queue: its reason, and the certificate check's
 * when that is what failed
 */
static void
set_ssl_error(SbChannel *ch, TlsState *t)
{
	const char *reason = SbTlsErrorReason();
	long		verify = SSL_get_verify_result(t->ssl);

	if (verify != X509_V_OK)
		snprintf(ch->error, sizeof(ch->error), "%s: %s", reason,
				 X509_verify_cert_error_string(verify));
	else
		strlcpy(ch->error, reason, sizeof(ch->error));
}

/*
 * What an SSL call's result means: bytes (> 0), 0 for the peer's end,
 * SB_CHANNEL_WOULD_BLOCK (*wants: the event to wait for), or
 * SB_CHANNEL_ERROR with ch->error set
 */
static ssize_t
ssl_result(SbChannel *ch, TlsState *t, int rc, uint32 *wants)
{
	int			saved_errno = errno;
	int			err = SSL_get_error(t->ssl, rc);

	switch (err)
	{
		case SSL_ERROR_NONE:
			return rc;
		case SSL_ERROR_WANT_READ:
			*wants = WL_SOCKET_READABLE;
			return SB_CHANNEL_WOULD_BLOCK;
		case SSL_ERROR_WANT_WRITE:
			*wants = WL_SOCKET_WRITEABLE;
			return SB_CHANNEL_WOULD_BLOCK;
		case SSL_ERROR_ZERO_RETURN:
			return 0;
		case SSL_ERROR_SYSCALL:
			if (ERR_peek_error() != 0)
			{
				set_ssl_error(ch, t);
				return SB_CHANNEL_ERROR;
			}
			if (saved_errno == 0)
				return 0;		/* an end without close_notify */
			ch->error[0] = '\0';
			errno = saved_errno;
			return SB_CHANNEL_ERROR;
		default:
			set_ssl_error(ch, t);
			return SB_CHANNEL_ERROR;
	}
}

/* The Common Name of a verified client certificate, or NULL */
static char *
verified_cn(SSL *ssl)
{
	X509	   *cert;
	X509_NAME  *name;
	int			idx;
	char	   *cn = NULL;

#if OPENSSL_VERSION_NUMBER >= 0x30000000L
	cert = SSL_get1_peer_certificate(ssl);
#else
	cert = SSL_get_peer_certificate(ssl);
#endif
	if (cert == NULL)
		return NULL;
	name = X509_get_subject_name(cert);
	idx = name ? X509_NAME_get_index_by_NID(name, NID_commonName, -1) : -1;
	if (SSL_get_verify_result(ssl) == X509_V_OK && idx >= 0)
	{
		ASN1_STRING *data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
		unsigned char *utf8 = NULL;
		int			len = ASN1_STRING_to_UTF8(&utf8, data);

		/* as be-secure-openssl.c: a name with a NUL in it is no name */
		if (len >= 0 && strlen((char *) utf8) == (size_t) len)
			cn = MemoryContextStrdup(TopMemoryContext, (char *) utf8);
		if (utf8)
			OPENSSL_free(utf8);
	}
	X509_free(cert);
	return cn;
}

static int
tls_handshake(SbChannel *ch)
{
	TlsState   *t = tls_of(ch);
	int			rc;
	ssize_t		result;

	if (t->handshaken)
		return SB_CHANNEL_DONE;
	ERR_clear_error();
	errno = 0;
	rc = t->server ? SSL_accept(t->ssl) : SSL_connect(t->ssl);
	if (rc == 1)
	{
		t->handshaken = true;
		ch->tls = true;
		if (t->server)
			ch->peer_cn = verified_cn(t->ssl);
		ereport(DEBUG1,
				(errmsg_internal("scuttlebutt: TLS handshake done (%s, %s)%s%s%s",
								 SSL_get_version(t->ssl),
								 SSL_CIPHER_get_name(SSL_get_current_cipher(t->ssl)),
								 ch->peer_cn ? ", client certificate CN \"" : "",
								 ch->peer_cn ? ch->peer_cn : "",
								 ch->peer_cn ? "\"" : "")));
		return SB_CHANNEL_DONE;
	}
	result = ssl_result(ch, t, rc, &t->handshake_wants);
	if (result == SB_CHANNEL_WOULD_BLOCK)
		return SB_CHANNEL_WOULD_BLOCK;
	if (result == 0 || (result == SB_CHANNEL_ERROR && ch->error[0] == '\0'))
		snprintf(ch->error, sizeof(ch->error), "%s during the TLS handshake",
				 result == 0 ? "the peer closed the connection" : strerror(errno));
	return SB_CHANNEL_ERROR;
}

static ssize_t
tls_read(SbChannel *ch, void *buf, size_t len)
{
	TlsState   *t = tls_of(ch);
	uint32		wants = 0;
	ssize_t		n;

	ERR_clear_error();
	errno = 0;
	n = ssl_result(ch, t, SSL_read(t->ssl, buf, (int) Min(len, (size_t) INT_MAX)), &wants);
	t->read_wants_write = n == SB_CHANNEL_WOULD_BLOCK && wants == WL_SOCKET_WRITEABLE;
	/* what a write waited for has been read */
	t->write_wants_read = false;
	return n;
}

static ssize_t
tls_write(SbChannel *ch, const void *buf, size_t len)
{
	TlsState   *t = tls_of(ch);
	uint32		wants = 0;
	ssize_t		n;

	ERR_clear_error();
	errno = 0;
	n = ssl_result(ch, t, SSL_write(t->ssl, buf, (int) Min(len, (size_t) INT_MAX)), &wants);
	if (n == 0)
	{
		/* the peer's close_notify: nothing more can be written */
		strlcpy(ch->error, "the peer ended the TLS session", sizeof(ch->error));
		return SB_CHANNEL_ERROR;
	}
	/* a write that needs input waits for a read, not for writability */
	t->write_wants_read = n == SB_CHANNEL_WOULD_BLOCK && wants == WL_SOCKET_READABLE;
	return n;
}

/*
 * Handshaking: what it waits for; then input always, and writability for
 * output (unless the write waits for input) or for a read that needs it
 */
static uint32
tls_wait_events(SbChannel *ch, bool output)
{
	TlsState   *t = tls_of(ch);

	if (!t->handshaken)
		return t->handshake_wants;
	return WL_SOCKET_READABLE |
		((output && !t->write_wants_read) || t->read_wants_write
		 ? WL_SOCKET_WRITEABLE : 0);
}

/*
 * Bytes of a record OpenSSL has read and decrypted but not handed out: the
 * socket may not be readable while they wait
 */
static size_t
tls_pending(SbChannel *ch)
{
	TlsState   *t = tls_of(ch);

	return t->handshaken ? (size_t) Max(SSL_pending(t->ssl), 0) : 0;
}

static void
tls_close(SbChannel *ch)
{
	TlsState   *t = tls_of(ch);

	if (t != NULL)
	{
		/* one try at close_notify: a socket that cannot take it is closed anyway */
		if (t->handshaken)
		{
			ERR_clear_error();
			(void) SSL_shutdown(t->ssl);
		}
		ERR_clear_error();
		SSL_free(t->ssl);
		pfree(t);
		ch->state = NULL;
	}
	if (ch->peer_cn)
		pfree(ch->peer_cn);
	ch->peer_cn = NULL;
	ch->tls = false;
	SbChannelCloseSocket(ch);
}

static const SbChannelOps tls_ops = {
	.read = tls_read,
	.write = tls_write,
	.handshake = tls_handshake,
	.wait_events = tls_wait_events,
	.pending = tls_pending,
	.close = tls_close,
};

/* Makes ch a TLS channel of ctx on sock (ctx: one reference taken) */
static bool
tls_open(SbChannel *ch, pgsocket sock, SSL_CTX *ctx, bool server, SSL **ssl_out)
{
	SSL		   *ssl = SSL_new(ctx);
	TlsState   *t;

	if (ssl == NULL || SSL_set_fd(ssl, sock) != 1)
	{
		snprintf(ch->error, sizeof(ch->error), "could not start a TLS session: %s",
				 SbTlsErrorReason());
		if (ssl)
			SSL_free(ssl);
		return false;
	}
	t = MemoryContextAllocZero(TopMemoryContext, sizeof(TlsState));
	t->ssl = ssl;
	t->server = server;
	/* the client speaks first */
	t->handshake_wants = server ? WL_SOCKET_READABLE : WL_SOCKET_WRITEABLE;
	SbChannelInit(ch, &tls_ops, sock, t);
	*ssl_out = ssl;
	return true;
}

bool
SbChannelTlsAccept(SbChannel *ch, pgsocket sock)
{
	SSL_CTX    *ctx = SbTlsServerContext();
	SSL		   *ssl;

	if (ctx == NULL)
	{
		strlcpy(ch->error,
				"scuttlebutt.ssl is on but no certificate is loaded (see the server log): plain text is not served",
				sizeof(ch->error));
		return false;
	}
	return tls_open(ch, sock, ctx, true, &ssl);
}

bool
SbChannelTlsConnect(SbChannel *ch, pgsocket sock, const SbTlsClientConfig *config)
{
	char	   *why = NULL;
	SSL_CTX    *ctx = SbTlsClientContext(config, &why);
	SSL		   *ssl;
	unsigned char addr[16];
	bool		is_ip;
	bool		ok;

	if (ctx == NULL)
	{
		strlcpy(ch->error, why, sizeof(ch->error));
		return false;
	}
	ok = tls_open(ch, sock, ctx, false, &ssl);
	SSL_CTX_free(ctx);			/* the session holds its own reference */
	if (!ok)
		return false;

	/* the name dialed must be the certificate's, as verify-full checks it */
	is_ip = inet_pton(AF_INET, config->host, addr) == 1 ||
		inet_pton(AF_INET6, config->host, addr) == 1;
	X509_VERIFY_PARAM_set_hostflags(SSL_get0_param(ssl),
									X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if (is_ip
		? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), config->host) != 1
		: (SSL_set1_host(ssl, config->host) != 1 ||
		   /* SNI names hosts, never addresses (RFC 6066) */
		   SSL_set_tlsext_host_name(ssl, config->host) != 1))
	{
		const char *reason = SbTlsErrorReason();

		/* back to a bare socket, which the caller closes */
		SSL_free(ssl);
		pfree(ch->state);
		SbChannelTcpOpen(ch, sock);
		snprintf(ch->error, sizeof(ch->error),
				 "could not set the host name to verify: %s", reason);
		return false;
	}
	return true;
}
