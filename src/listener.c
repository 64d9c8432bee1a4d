/*-------------------------------------------------------------------------
 *
 * listener.c
 *	  The worker's listening sockets for incoming stream peers.
 *
 * One socket per address of scuttlebutt.listen_addresses on
 * scuttlebutt.port, reopened when either changes at a reload.
 *
 * The accept queue holds what a storm of clients (every browser
 * reconnecting after a restart) sends while the worker is busy: sized as
 * PostgreSQL sizes its own, from the connection limit.  A queue that
 * overflows drops the handshake's last packet: the client sees an open
 * connection, sends its header, and waits for the kernel's retransmission
 * backoff (seconds, growing) before the worker ever sees it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/ip.h"
#include "nodes/pg_list.h"
#include "utils/memutils.h"
#include "utils/varlena.h"

#include "guc.h"
#include "listener.h"

#define SB_MAX_LISTENERS 16

static pgsocket listeners[SB_MAX_LISTENERS];
static int	nlisteners;
static int	listen_port = -1;	/* what the listeners are bound to */
static char *listen_addresses;
static int	listen_backlog;		/* what the listeners were given */

/*
 * Most connections asked of the kernel's accept queue, as PostgreSQL 15
 * bounds its own (PG_SOMAXCONN, gone from 16 on); the kernel caps it at
 * net.core.somaxconn anyway
 */
#define SB_MAX_BACKLOG 10000

/* Connections the kernel may queue for accept() */
static int
backlog(void)
{
	return Min(2 * sb_max_connections, SB_MAX_BACKLOG);
}

void
SbListenerCloseAll(void)
{
	for (int i = 0; i < nlisteners; i++)
		closesocket(listeners[i]);
	nlisteners = 0;
}

int
SbListenerCount(void)
{
	return nlisteners;
}

pgsocket
SbListenerSocket(int i)
{
	return listeners[i];
}

static void
open_listener(const char *host, int port)
{
	struct addrinfo hints;
	struct addrinfo *res;
	char		portstr[16];
	int			rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	snprintf(portstr, sizeof(portstr), "%d", port);
	rc = getaddrinfo(strcmp(host, "*") == 0 ? NULL : host, portstr, &hints, &res);
	if (rc != 0)
	{
		ereport(WARNING,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("scuttlebutt: could not resolve listen address \"%s\": %s",
						host, gai_strerror(rc))));
		return;
	}
	for (struct addrinfo *ai = res; ai && nlisteners < SB_MAX_LISTENERS; ai = ai->ai_next)
	{
		pgsocket	sock = socket(ai->ai_family, SOCK_STREAM, 0);
		int			one = 1;

		if (sock == PGINVALID_SOCKET)
			continue;
		(void) setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
#ifdef IPV6_V6ONLY
		if (ai->ai_family == AF_INET6)
			(void) setsockopt(sock, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
#endif
		if (bind(sock, ai->ai_addr, ai->ai_addrlen) < 0 ||
			listen(sock, backlog()) < 0 || !pg_set_noblock(sock))
		{
			ereport(WARNING,
					(errcode_for_socket_access(),
					 errmsg("scuttlebutt: could not listen on \"%s\" port %d: %m",
							host, port)));
			closesocket(sock);
			continue;
		}
		listeners[nlisteners++] = sock;
	}
	freeaddrinfo(res);
}

bool
SbListenerConfigure(void)
{
	List	   *hosts;
	ListCell   *lc;
	char	   *raw;

	if (listen_port == sb_port && listen_addresses &&
		strcmp(listen_addresses, sb_listen_addresses) == 0)
	{
		/* scuttlebutt.max_connections changed: listen() again resizes */
		if (listen_backlog != backlog())
		{
			listen_backlog = backlog();
			for (int i = 0; i < nlisteners; i++)
				(void) listen(listeners[i], listen_backlog);
		}
		return false;
	}

	SbListenerCloseAll();
	if (listen_addresses)
		pfree(listen_addresses);
	listen_addresses = MemoryContextStrdup(TopMemoryContext, sb_listen_addresses);
	listen_port = sb_port;
	listen_backlog = backlog();
	if (sb_port == 0)
		return true;

	raw = pstrdup(sb_listen_addresses);
	if (!SplitGUCList(raw, ',', &hosts))
	{
		ereport(WARNING,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("scuttlebutt: invalid scuttlebutt.listen_addresses \"%s\"",
						sb_listen_addresses)));
		return true;
	}
	foreach(lc, hosts)
		open_listener((char *) lfirst(lc), sb_port);
	if (nlisteners > 0)
		ereport(LOG,
				(errmsg("scuttlebutt: listening for stream peers on \"%s\" port %d",
						sb_listen_addresses, sb_port)));
	return true;
}

static void
format_addr(struct sockaddr *sa, socklen_t len, char *out, size_t outlen)
{
	char		host[NI_MAXHOST];
	char		serv[NI_MAXSERV];

	if (pg_getnameinfo_all((struct sockaddr_storage *) sa, len, host, sizeof(host),
						   serv, sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV) != 0)
		strlcpy(out, "?", outlen);
	else if (sa->sa_family == AF_INET6)
		snprintf(out, outlen, "[%s]:%s", host, serv);
	else
		snprintf(out, outlen, "%s:%s", host, serv);
}

pgsocket
SbListenerAccept(int i, SockAddr *addr, char *remote, size_t remote_len)
{
	pgsocket	sock;
	int			one = 1;

	memset(addr, 0, sizeof(*addr));
	addr->salen = sizeof(addr->addr);
	sock = accept(listeners[i], (struct sockaddr *) &addr->addr, &addr->salen);
	if (sock == PGINVALID_SOCKET)
		return sock;			/* EAGAIN, or a transient error */
	format_addr((struct sockaddr *) &addr->addr, addr->salen, remote, remote_len);
	(void) pg_set_noblock(sock);
	(void) setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return sock;
}
