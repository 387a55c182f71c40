/*
 * batchio.c: batched TLS socket I/O for bulk sessions (tls_batch_io in
 * tls.h): a write BIO and a read BIO in place of OpenSSL's socket BIO.
 *
 * Writes: with a socket BIO, OpenSSL writes each record (16 KiB at most)
 * with its own write(2): a bulk tunnel makes 30,000 system calls and as many
 * small TCP sends a second per direction, and the reader wakes for each.
 * The write BIO gathers records in an evbuffer and sends them with one
 * writev when the batch is full or the writer flushes: about 16 records per
 * system call. Bounded by cap: once full and the socket takes nothing, the
 * BIO asks OpenSSL to retry, as a full socket would.
 *
 * Reads: OpenSSL's own read-ahead does big reads, but OpenSSL 3.0 aligns
 * every record it starts by moving all the read-ahead bytes after it to the
 * front of its buffer (ssl3_read_n): with a 256 KiB read-ahead that copies
 * each byte several times. So read-ahead is off, and the read BIO reads up
 * to cap bytes with one read(2) into its own buffer and hands OpenSSL the
 * exact bytes it asks for (a record header, then its body): one copy. The
 * buffer is freed whenever a read finds the socket empty, so an idle
 * session holds none. Records it holds are invisible to readiness events:
 * after a pause the mux reads once on its own (mux_resume_read).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

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

/* ---- reads ---- */

struct rbatch {
	int fd;
	int err;       /* errno of a failed read; sticky */
	int eof;
	int dry;       /* the last read(2) found the socket empty (so the
	                * buffer is empty too) */
	size_t cap;
	uint8_t *data; /* cap bytes, or NULL while idle */
	size_t off, len;
};

/* An empty buffer goes back to the allocator: an idle session holds none. */
static void
rb_release(struct rbatch *r)
{
	free(r->data);
	r->data = NULL;
}

static int
rb_read_ex(BIO *b, char *out, size_t want, size_t *got)
{
	struct rbatch *r = BIO_get_data(b);
	size_t k;

	BIO_clear_retry_flags(b);
	*got = 0;
	if (r->len == 0) {
		ssize_t n;

		if (r->err) {
			errno = r->err;
			return 0;
		}
		if (r->eof)
			return 0;
		if (r->data == NULL)
			r->data = xmalloc(r->cap);
		do
			n = read(r->fd, r->data, r->cap);
		while (n < 0 && errno == EINTR);
		r->dry = n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
		if (n <= 0) {
			int e = errno;

			rb_release(r);
			errno = e;
			if (r->dry) {
				BIO_set_retry_read(b);
				return 0;
			}
			if (n < 0)
				r->err = errno;
			else
				r->eof = 1;
			return 0;
		}
		r->off = 0;
		r->len = (size_t)n;
	}
	k = want < r->len ? want : r->len;
	memcpy(out, r->data + r->off, k);
	r->off += k;
	r->len -= k;
	*got = k;
	return 1;
}

static long
rb_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct rbatch *r = BIO_get_data(b);

	(void)num;
	(void)ptr;
	switch (cmd) {
	case BIO_CTRL_EOF:
		return r->eof && r->len == 0;
	case BIO_CTRL_PENDING:
		return (long)r->len;
	case BIO_CTRL_FLUSH:
		return 1;
	default:
		return 0;
	}
}

static int
rb_destroy(BIO *b)
{
	struct rbatch *r = BIO_get_data(b);

	if (r != NULL) {
		rb_release(r);
		free(r);
		BIO_set_data(b, NULL);
	}
	return 1;
}

static BIO_METHOD *wb_meth, *rb_meth;
static int wb_type, rb_type;

static void
methods_init(void)
{
	if (wb_meth != NULL)
		return;
	wb_type = BIO_get_new_index() | BIO_TYPE_SOURCE_SINK;
	rb_type = BIO_get_new_index() | BIO_TYPE_SOURCE_SINK;
	wb_meth = BIO_meth_new(wb_type, "mgrok batched writes");
	rb_meth = BIO_meth_new(rb_type, "mgrok batched reads");
	if (wb_meth == NULL || rb_meth == NULL ||
	    !BIO_meth_set_write_ex(wb_meth, wb_write_ex) ||
	    !BIO_meth_set_ctrl(wb_meth, wb_ctrl) ||
	    !BIO_meth_set_destroy(wb_meth, wb_destroy) ||
	    !BIO_meth_set_read_ex(rb_meth, rb_read_ex) ||
	    !BIO_meth_set_ctrl(rb_meth, rb_ctrl) ||
	    !BIO_meth_set_destroy(rb_meth, rb_destroy))
		abort();
}

static struct wbatch *
wb_of(SSL *ssl)
{
	BIO *b = SSL_get_wbio(ssl);

	if (wb_meth == NULL || b == NULL || BIO_method_type(b) != wb_type)
		return NULL;
	return BIO_get_data(b);
}

static struct rbatch *
rb_of(SSL *ssl)
{
	BIO *b = SSL_get_rbio(ssl);

	if (rb_meth == NULL || b == NULL || BIO_method_type(b) != rb_type)
		return NULL;
	return BIO_get_data(b);
}

int
tls_batch_io(SSL *ssl, int fd, size_t cap)
{
	struct wbatch *w;
	struct rbatch *r;
	BIO *wb, *rb;

	methods_init();
	if (wb_of(ssl) != NULL)
		return 0;
	wb = BIO_new(wb_meth);
	rb = BIO_new(rb_meth);
	if (wb == NULL || rb == NULL) {
		BIO_free(wb);
		BIO_free(rb);
		return MG_ENOMEM;
	}
	w = xcalloc(1, sizeof(*w));
	w->fd = fd;
	w->cap = cap;
	if ((w->buf = evbuffer_new()) == NULL)
		abort();
	BIO_set_data(wb, w);
	BIO_set_init(wb, 1);
	r = xcalloc(1, sizeof(*r));
	r->fd = fd;
	r->cap = cap;
	BIO_set_data(rb, r);
	BIO_set_init(rb, 1);
	/* records the handshake already read stay in OpenSSL's buffer and
	 * come first; from here on it asks for exact lengths */
	SSL_set_read_ahead(ssl, 0);
	SSL_set0_rbio(ssl, rb);
	SSL_set0_wbio(ssl, wb);
	return 0;
}

int
tls_read_dry(SSL *ssl)
{
	struct rbatch *r = rb_of(ssl);

	/* OpenSSL asks the BIO for bytes only once it has handed out every
	 * decrypted byte it held, so a dry BIO means nothing is waiting */
	return r != NULL && r->dry && SSL_pending(ssl) == 0;
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
