/*
 * wbatch.c: batched TLS writes (tls_batch_writes in tls.h).
 *
 * With a socket BIO, OpenSSL writes each record (16 KiB at most) with its
 * own write(2): a bulk tunnel makes 30,000 system calls and as many small
 * TCP sends a second per direction, and the reader wakes for each. Here the
 * SSL's write BIO gathers records in an evbuffer and sends them with one
 * writev when the batch is full or the writer flushes: about 16 records per
 * system call. The buffer is bounded by cap: once full and the socket takes
 * nothing, the BIO asks OpenSSL to retry, as a full socket would.
 */
#include <errno.h>
#include <sys/types.h>

#include <event2/buffer.h>
#include <openssl/bio.h>
#include <openssl/ssl.h>

#include "tls/tls.h"
#include "util/err.h"
#include "util/xmalloc.h"

struct wbatch {
	int fd;
	int err;             /* errno of a failed write; sticky */
	size_t cap;
	struct evbuffer *buf; /* whole records, oldest first */
};

/* Send what the socket takes. 0 when all went, -1 with errno (EAGAIN: the
 * socket is full; anything else is sticky in w->err). */
static int
wb_push(struct wbatch *w)
{
	if (w->err) {
		errno = w->err;
		return -1;
	}
	/* bounded: each round sends bytes or stops */
	while (evbuffer_get_length(w->buf) > 0) {
		int n = evbuffer_write(w->buf, w->fd);
		if (n > 0)
			continue;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return -1;
		w->err = n == 0 ? EPIPE : errno;
		errno = w->err;
		return -1;
	}
	return 0;
}

static int
wb_write_ex(BIO *b, const char *data, size_t len, size_t *written)
{
	struct wbatch *w = BIO_get_data(b);

	BIO_clear_retry_flags(b);
	*written = 0;
	if (w->err) {
		errno = w->err;
		return 0;
	}
	if (evbuffer_get_length(w->buf) + len > w->cap &&
	    wb_push(w) < 0 && errno != EAGAIN)
		return 0; /* SSL_ERROR_SYSCALL, errno set */
	if (evbuffer_get_length(w->buf) > 0 &&
	    evbuffer_get_length(w->buf) + len > w->cap) {
		BIO_set_retry_write(b);
		return 0;
	}
	if (evbuffer_add(w->buf, data, len) != 0)
		return 0;
	*written = len;
	return 1;
}

static long
wb_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct wbatch *w = BIO_get_data(b);

	(void)num;
	(void)ptr;
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return wb_push(w) == 0 || errno == EAGAIN;
	case BIO_CTRL_WPENDING:
		return (long)evbuffer_get_length(w->buf);
	case BIO_CTRL_PENDING:
		return 0;
	default:
		return 0;
	}
}

static int
wb_destroy(BIO *b)
{
	struct wbatch *w = BIO_get_data(b);

	if (w != NULL) {
		evbuffer_free(w->buf);
		free(w);
		BIO_set_data(b, NULL);
	}
	return 1;
}

static BIO_METHOD *wb_meth;
static int wb_type;

static BIO_METHOD *
wb_method(void)
{
	if (wb_meth == NULL) {
		wb_type = BIO_get_new_index() | BIO_TYPE_SOURCE_SINK;
		wb_meth = BIO_meth_new(wb_type, "mgrok batched writes");
		if (wb_meth == NULL ||
		    !BIO_meth_set_write_ex(wb_meth, wb_write_ex) ||
		    !BIO_meth_set_ctrl(wb_meth, wb_ctrl) ||
		    !BIO_meth_set_destroy(wb_meth, wb_destroy))
			abort();
	}
	return wb_meth;
}

static struct wbatch *
wb_of(SSL *ssl)
{
	BIO *b = SSL_get_wbio(ssl);

	if (wb_meth == NULL || b == NULL || BIO_method_type(b) != wb_type)
		return NULL;
	return BIO_get_data(b);
}

int
tls_batch_writes(SSL *ssl, int fd, size_t cap)
{
	struct wbatch *w;
	BIO *b;

	if (wb_of(ssl) != NULL)
		return 0;
	if ((b = BIO_new(wb_method())) == NULL)
		return MG_ENOMEM;
	w = xcalloc(1, sizeof(*w));
	w->fd = fd;
	w->cap = cap;
	if ((w->buf = evbuffer_new()) == NULL)
		abort();
	BIO_set_data(b, w);
	BIO_set_init(b, 1);
	/* the read side keeps its socket BIO; this one takes the writes */
	SSL_set0_wbio(ssl, b);
	return 0;
}

size_t
tls_wpending(SSL *ssl)
{
	struct wbatch *w = wb_of(ssl);

	return w != NULL ? evbuffer_get_length(w->buf) : 0;
}

int
tls_flush(SSL *ssl)
{
	struct wbatch *w = wb_of(ssl);

	return w != NULL ? wb_push(w) : 0;
}
