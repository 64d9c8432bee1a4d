/*-------------------------------------------------------------------------
 *
 * channel_tcp.c
 *	  The plain TCP byte channel.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "channel.h"

/* EINTR is retried; EAGAIN is "would block"; anything else is an error */
static ssize_t
io_result(ssize_t n)
{
	if (n >= 0)
		return n;
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		return SB_CHANNEL_WOULD_BLOCK;
	return SB_CHANNEL_ERROR;
}

static ssize_t
tcp_read(SbChannel *ch, void *buf, size_t len)
{
	ssize_t		n;

	do
		n = recv(ch->sock, buf, len, 0);
	while (n < 0 && errno == EINTR);
	return io_result(n);
}

static ssize_t
tcp_write(SbChannel *ch, const void *buf, size_t len)
{
	ssize_t		n;

	do
		n = send(ch->sock, buf, len, 0);
	while (n < 0 && errno == EINTR);
	return io_result(n);
}

static void
tcp_close(SbChannel *ch)
{
	if (ch->sock != PGINVALID_SOCKET)
		closesocket(ch->sock);
	ch->sock = PGINVALID_SOCKET;
}

static const SbChannelOps tcp_ops = {
	.read = tcp_read,
	.write = tcp_write,
	.close = tcp_close,
};

void
SbChannelTcpOpen(SbChannel *ch, pgsocket sock)
{
	ch->ops = &tcp_ops;
	ch->sock = sock;
}
