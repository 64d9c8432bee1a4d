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

#include "storage/latch.h"

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

/* TCP has no handshake */
static int
tcp_handshake(SbChannel *ch pg_attribute_unused())
{
	return SB_CHANNEL_DONE;
}

/* Input always; room for output when some waits */
static uint32
tcp_wait_events(SbChannel *ch pg_attribute_unused(), bool output)
{
	return WL_SOCKET_READABLE | (output ? WL_SOCKET_WRITEABLE : 0);
}

/* The kernel holds every byte not read: none is buffered here */
static size_t
tcp_pending(SbChannel *ch pg_attribute_unused())
{
	return 0;
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
	.handshake = tcp_handshake,
	.wait_events = tcp_wait_events,
	.pending = tcp_pending,
	.close = tcp_close,
};

void
SbChannelTcpOpen(SbChannel *ch, pgsocket sock)
{
	SbChannelInit(ch, &tcp_ops, sock, NULL);
}
