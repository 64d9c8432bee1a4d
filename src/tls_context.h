/*-------------------------------------------------------------------------
 *
 * tls_context.h
 *	  The OpenSSL contexts of stream connections: the listener's, made
 *	  from the settings, and a dialed peer's, made from its row.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_TLS_CONTEXT_H
#define SCUTTLEBUTT_TLS_CONTEXT_H

#include <openssl/ssl.h>

#include "channel.h"

/*
 * Reads the listener's certificate and key again (worker start, each
 * reload) when scuttlebutt.ssl is on.  A file that cannot be used is
 * refused with a WARNING: the previous context stays in use, or, without
 * one, the listener refuses every connection (and says so).
 */
extern void SbTlsServerReload(void);

/* The listener's context, or NULL: scuttlebutt.ssl off, or none loaded */
extern SSL_CTX *SbTlsServerContext(void);

/*
 * A new context for dialing with config's files (the caller frees it);
 * NULL with *why (palloc'd) when one cannot be used.
 */
extern SSL_CTX *SbTlsClientContext(const SbTlsClientConfig *config, char **why);

/* OpenSSL's reason for its first queued error (the queue is cleared) */
extern const char *SbTlsErrorReason(void);

#endif							/* SCUTTLEBUTT_TLS_CONTEXT_H */
