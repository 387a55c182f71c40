/* dtls.c: DTLS 1.2 contexts, cookies, connection hand-over and record I/O
 * for the stream proxy's UDP side (docs/protocol.md section 6). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "tls/dtls.h"
#include "tls/tls.h"
#include "tls/tls_int.h"
#include "util/err.h"
#include "util/log.h"

#define COOKIE_LEN 32

/*
 * The cookie key: random, per process, never written anywhere. A restart
 * only makes clients in the middle of a cookie exchange retry.
 */
static pthread_once_t cookie_once = PTHREAD_ONCE_INIT;
static unsigned char cookie_key[32];
static int cookie_key_ok;

static void
cookie_key_init(void)
{
	cookie_key_ok = RAND_bytes(cookie_key, sizeof(cookie_key)) == 1;
	ERR_clear_error();
}

/*
 * HMAC of the peer's family, port and address. The peer comes from the
 * write BIO: during DTLSv1_listen it is the listening BIO (which notes each
 * datagram's sender), after dtls_accept_on the connected one (the read BIO
 * is then briefly a memory BIO holding the ClientHello).
 */
static int
cookie_calc(SSL *ssl, unsigned char out[COOKIE_LEN])
{
	BIO_ADDR *a = BIO_ADDR_new();
	unsigned char msg[1 + 2 + 16];
	unsigned int outlen = 0;
	size_t alen = 0;
	unsigned short port;
	int ok = 0;

	pthread_once(&cookie_once, cookie_key_init);
	if (!cookie_key_ok || a == NULL)
		goto out;
	if (BIO_dgram_get_peer(SSL_get_wbio(ssl), a) <= 0)
		goto out;
	if (!BIO_ADDR_rawaddress(a, NULL, &alen) || alen > 16)
		goto out;
	msg[0] = (unsigned char)BIO_ADDR_family(a);
	port = BIO_ADDR_rawport(a);
	memcpy(msg + 1, &port, 2);
	if (!BIO_ADDR_rawaddress(a, msg + 3, &alen))
		goto out;
	if (HMAC(EVP_sha256(), cookie_key, sizeof(cookie_key), msg, 3 + alen,
	    out, &outlen) == NULL || outlen != COOKIE_LEN)
		goto out;
	ok = 1;
out:
	BIO_ADDR_free(a);
	return ok;
}

static int
cookie_generate(SSL *ssl, unsigned char *cookie, unsigned int *len)
{
	if (!cookie_calc(ssl, cookie))
		return 0;
	*len = COOKIE_LEN;
	return 1;
}

static int
cookie_verify(SSL *ssl, const unsigned char *cookie, unsigned int len)
{
	unsigned char want[COOKIE_LEN];

	return len == COOKIE_LEN && cookie_calc(ssl, want) &&
	    CRYPTO_memcmp(want, cookie, COOKIE_LEN) == 0;
}

static void
server_setup(SSL_CTX *sc)
{
	SSL_CTX_set_options(sc, SSL_OP_COOKIE_EXCHANGE);
	SSL_CTX_set_cookie_generate_cb(sc, cookie_generate);
	SSL_CTX_set_cookie_verify_cb(sc, cookie_verify);
}

int
dtls_server_ctx_new(const struct tls_server_opts *o, struct tls_ctx **out,
    char *err, size_t errcap)
{
	struct tls_server_opts so = *o;

	*out = NULL;
	if (o->client_ca == NULL || *o->client_ca == '\0') {
		snprintf(err, errcap, "the stream proxy over DTLS needs "
		    "--tls-client-ca");
		return MG_EINVAL;
	}
	so.client_auth = TLS_CLIENT_AUTH_REQUIRE;
	return tls_dgram_server_ctx_new(&so, server_setup, out, err, errcap);
}

int
dtls_client_ctx_new(const struct tls_client_opts *o, struct tls_ctx **out,
    char *err, size_t errcap)
{
	struct tls_client_opts co = *o;

	if (co.alpn == NULL)
		co.alpn = "";
	return tls_dgram_client_ctx_new(&co, NULL, out, err, errcap);
}

static BIO_ADDR *
bio_addr(const struct sockaddr *sa)
{
	BIO_ADDR *a = BIO_ADDR_new();
	int ok = 0;

	if (a == NULL)
		return NULL;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;

		ok = BIO_ADDR_rawmake(a, AF_INET, &s4->sin_addr, 4,
		    s4->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 =
		    (const struct sockaddr_in6 *)sa;

		ok = BIO_ADDR_rawmake(a, AF_INET6, &s6->sin6_addr, 16,
		    s6->sin6_port);
	}
	if (!ok) {
		BIO_ADDR_free(a);
		return NULL;
	}
	return a;
}

/* A datagram BIO on fd, marked connected to peer (or to fd's peer). */
static BIO *
dgram_bio(int fd, const struct sockaddr *peer)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	BIO *b = BIO_new_dgram(fd, BIO_NOCLOSE);
	BIO_ADDR *a = NULL;

	if (b == NULL)
		return NULL;
	if (peer == NULL && getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
		peer = (struct sockaddr *)&ss;
	if (peer != NULL) {
		if ((a = bio_addr(peer)) == NULL) {
			BIO_free(b);
			return NULL;
		}
		BIO_ctrl(b, BIO_CTRL_DGRAM_SET_CONNECTED, 0, a);
		BIO_ADDR_free(a);
	}
	return b;
}

SSL *
dtls_ssl_new(struct tls_ctx *c, int fd)
{
	SSL *ssl = tls_ssl_new(c, fd);
	BIO *b;

	if (ssl == NULL)
		return NULL;
	/* tls_ssl_new gave it a stream socket BIO: datagrams need their own */
	if (!SSL_is_dtls(ssl) || (b = dgram_bio(fd, NULL)) == NULL) {
		ERR_clear_error();
		SSL_free(ssl);
		return NULL;
	}
	SSL_set_bio(ssl, b, b);
	return ssl;
}

int
dtls_listen(SSL *ssl, struct sockaddr_storage *peer, socklen_t *peerlen)
{
	BIO_ADDR *a = BIO_ADDR_new();
	size_t alen = 0;
	int r, rc = MG_EIO;

	if (a == NULL)
		return MG_EIO;
	ERR_clear_error();
	r = DTLSv1_listen(ssl, a);
	ERR_clear_error();
	if (r == 0) {
		rc = 0;
		goto out;
	}
	if (r < 0)
		goto out;
	memset(peer, 0, sizeof(*peer));
	if (BIO_ADDR_family(a) == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)peer;

		if (!BIO_ADDR_rawaddress(a, NULL, &alen) || alen != 4)
			goto out;
		s4->sin_family = AF_INET;
		BIO_ADDR_rawaddress(a, &s4->sin_addr, &alen);
		s4->sin_port = BIO_ADDR_rawport(a);
		*peerlen = sizeof(*s4);
	} else if (BIO_ADDR_family(a) == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)peer;

		if (!BIO_ADDR_rawaddress(a, NULL, &alen) || alen != 16)
			goto out;
		s6->sin6_family = AF_INET6;
		BIO_ADDR_rawaddress(a, &s6->sin6_addr, &alen);
		s6->sin6_port = BIO_ADDR_rawport(a);
		*peerlen = sizeof(*s6);
	} else
		goto out;
	rc = 1;
out:
	BIO_ADDR_free(a);
	return rc;
}

int
dtls_accept_on(SSL *ssl, int fd, const struct sockaddr *peer)
{
	BIO *d;

	/*
	 * OpenSSL 3.0's DTLSv1_listen has taken the ClientHello off the
	 * listening socket and keeps it inside the SSL: the handshake
	 * carries on from it on the new socket.
	 */
	if ((d = dgram_bio(fd, peer)) == NULL) {
		ERR_clear_error();
		return MG_EIO;
	}
	SSL_set_bio(ssl, d, d); /* frees the listening BIO, not its fd */
	return 0;
}

int
dtls_transient(int e)
{
	return e == ECONNREFUSED || e == EHOSTUNREACH || e == ENETUNREACH ||
	    e == EHOSTDOWN || e == ENETDOWN || e == EAGAIN ||
	    e == EWOULDBLOCK || e == ENOBUFS || e == EMSGSIZE || e == EPERM;
}

ssize_t
dtls_read(SSL *ssl, void *buf, size_t cap)
{
	size_t got = 0;
	int r, e, sys;

	ERR_clear_error();
	errno = 0;
	r = SSL_read_ex(ssl, buf, cap, &got);
	sys = errno;
	if (r == 1) {
		if (got == 0) {
			errno = EAGAIN;
			return -1;
		}
		return (ssize_t)got;
	}
	e = SSL_get_error(ssl, r);
	switch (e) {
	case SSL_ERROR_ZERO_RETURN:
		ERR_clear_error();
		return 0;
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		ERR_clear_error();
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_SYSCALL:
		if (ERR_peek_error() == 0 && (sys == 0 ||
		    (dtls_transient(sys) && sys != EMSGSIZE))) {
			/* an ICMP error, or an empty datagram (sys 0): the
			 * record layer is untouched */
			errno = sys == 0 ? EAGAIN : sys;
			return -1;
		}
		/* FALLTHROUGH */
	default:
		tls_io_failed(ssl, e, sys);
		errno = EIO;
		return -1;
	}
}

int
dtls_write(SSL *ssl, const void *buf, size_t len)
{
	size_t put = 0;
	int r, e, sys;

	if (len == 0 || len > DTLS_MAX_RECORD)
		return MG_EINVAL;
	ERR_clear_error();
	errno = 0;
	r = SSL_write_ex(ssl, buf, len, &put);
	sys = errno;
	if (r == 1)
		return 0;
	e = SSL_get_error(ssl, r);
	if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ||
	    (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 &&
	    dtls_transient(sys))) {
		/* DTLS drops a record it could not send (ssl3_write_pending):
		 * nothing is left half-written. */
		ERR_clear_error();
		errno = sys != 0 ? sys : EAGAIN;
		return MG_EAGAIN;
	}
	tls_io_failed(ssl, e, sys);
	errno = EIO;
	return MG_EIO;
}
