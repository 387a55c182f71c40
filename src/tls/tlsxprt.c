/*
 * tlsxprt.c: TLS as a transport of the mux (mux/xprt.h): the mux's reads
 * and writes become tls_readv and tls_write_evbuffer on a connection whose
 * handshake is done, with its records batched (batchio.c).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <openssl/ssl.h>

#include "mux/mux.h"
#include "mux/xprt.h"
#include "tls/tls.h"

/* TLS records gathered per writev, and read per read(2) (tls_batch_io) */
#define TLSX_BATCH (256 * 1024)

static ssize_t
tlsx_readv(void *ctx, int fd, struct iovec *iov, int n, int *want_write)
{
	(void)fd;
	return tls_readv(ctx, iov, n, want_write);
}

static ssize_t
tlsx_write(void *ctx, int fd, struct evbuffer *out, int *want_read)
{
	SSL *ssl = ctx;
	ssize_t n;

	(void)fd;
	/* with out empty this sends batched records only, and notes the
	 * reason of a failure as any TLS write does */
	n = tls_write_evbuffer(ssl, out, want_read);
	if (n < 0 && errno != EAGAIN && errno != EINTR) {
		/* the peer may have sent an alert (a refused client
		 * certificate) before closing; one read picks it up, so the
		 * reason the user sees is the alert, not the broken pipe */
		uint8_t scratch[512];
		struct iovec iov = { scratch, sizeof(scratch) };
		int saved = errno, ww;

		(void)tls_readv(ssl, &iov, 1, &ww);
		errno = saved;
	}
	return n;
}

static size_t
tlsx_pending(void *ctx)
{
	return tls_wpending(ctx);
}

static int
tlsx_buffered(void *ctx)
{
	return !tls_read_dry(ctx);
}

static void
tlsx_shutdown(void *ctx, int fd)
{
	tls_shutdown(ctx);
	shutdown(fd, SHUT_RDWR);
}

static const char *
tlsx_error(void *ctx)
{
	return tls_why(ctx);
}

static const char *
tlsx_describe(void *ctx, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s %s", SSL_get_version(ctx),
	    SSL_get_cipher_name(ctx));
	return buf;
}

static void
tlsx_close(void *ctx)
{
	SSL_free(ctx);
}

static const struct mux_xprt_ops tls_xprt_ops = {
	.readv = tlsx_readv,
	.write = tlsx_write,
	.pending = tlsx_pending,
	.buffered = tlsx_buffered,
	.shutdown = tlsx_shutdown,
	.error = tlsx_error,
	.describe = tlsx_describe,
	.close = tlsx_close,
};

struct mux *
mux_new_tls(struct event_base *base, int fd, SSL *ssl, int is_client,
    const struct mux_config *cfg, const struct mux_callbacks *cbs, void *arg)
{
	if (ssl == NULL) /* the callers' one path for both kinds */
		return mux_new(base, fd, is_client, cfg, cbs, arg);
	/* a tunnel session is long-lived and carries bulk: keep its record
	 * buffers instead of freeing them at every lull */
	SSL_clear_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
	/* and send and read its records in batches, not one system call
	 * each */
	if (tls_batch_io(ssl, fd, TLSX_BATCH) != 0)
		abort();
	return mux_new_xprt(base, fd, &tls_xprt_ops, ssl, is_client, cfg,
	    cbs, arg);
}
