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

/* At most so many bytes of unread input are dropped at a close */
#define SB_CLOSE_DRAIN_BYTES (256 * 1024)

/*
 * Closes the socket so that the peer sees its end, not a reset: close()
 * with input left unread makes the kernel answer with a reset (RFC 1122,
 * 4.2.2.13), and the peer may then lose the last bytes we sent and read
 * ECONNRESET (a peer that wrote as we closed: remove_peer(), a shutdown).
 * So our end is sent first, and what has arrived is read and dropped
 * (without waiting; a peer that keeps sending past the bound is reset).
 */
void
SbChannelCloseSocket(SbChannel *ch)
{
	char		buf[8192];
	size_t		dropped = 0;
	ssize_t		n;

	if (ch->sock == PGINVALID_SOCKET)
		return;
	(void) shutdown(ch->sock, SHUT_WR);
	while (dropped < SB_CLOSE_DRAIN_BYTES &&
		   (n = recv(ch->sock, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
		dropped += n;
	closesocket(ch->sock);
	ch->sock = PGINVALID_SOCKET;
}

static void
tcp_close(SbChannel *ch)
{
	SbChannelCloseSocket(ch);
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
