/* xprt.c: the plain-socket transport of the mux; see xprt.h. */
#include <sys/socket.h>
#include <sys/uio.h>

#include <event2/buffer.h>

#include "mux/xprt.h"

static ssize_t
plain_readv(void *ctx, int fd, struct iovec *iov, int n, int *want_write)
{
	(void)ctx;
	*want_write = 0;
	return readv(fd, iov, n);
}

static ssize_t
plain_write(void *ctx, int fd, struct evbuffer *out, int *want_read)
{
	(void)ctx;
	*want_read = 0;
	return evbuffer_write(out, fd);
}

static void
plain_shutdown(void *ctx, int fd)
{
	(void)ctx;
	shutdown(fd, SHUT_RDWR);
}

const struct mux_xprt_ops mux_xprt_plain = {
	.readv = plain_readv,
	.write = plain_write,
	.shutdown = plain_shutdown,
};
