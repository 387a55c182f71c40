/* test_dtls.c: src/tls/dtls.c on loopback UDP: the cookie exchange, the
 * hand-over to a connected socket, mTLS, one record per datagram, ICMP
 * errors. Both sides run on one event_base. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "tls/dtls.h"
#include "tls/tls.h"
#include "util/err.h"

static char tmpdir[256];
static char pki_a[512], pki_b[512];

static uint64_t
wall_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

static const char *
P(const char *dir, const char *file)
{
	static char buf[8][600];
	static int k;

	k = (k + 1) % 8;
	snprintf(buf[k], sizeof(buf[k]), "%s/%s", dir, file);
	return buf[k];
}

static void
tick(evutil_socket_t fd, short what, void *arg)
{
}

/* Run base until pred(arg) or max_ms; the 5 ms tick bounds each wait. */
static int
run_until(struct event_base *base, int (*pred)(void *), void *arg,
    unsigned max_ms)
{
	struct event *t = event_new(base, -1, EV_PERSIST, tick, NULL);
	struct timeval tv = { 0, 5000 };
	uint64_t end = wall_ms() + max_ms;
	int ok;

	event_add(t, &tv);
	while (!(ok = pred(arg)) && wall_ms() < end)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(t);
	return ok;
}

static int
udp_socket(void)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;

	assert_true(fd >= 0);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one,
	    sizeof(one)), 0);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one,
	    sizeof(one)), 0);
	return fd;
}

/* ---- one DTLS connection, both sides ---- */

struct side {
	SSL *ssl;
	int fd;
	int done, err;
	char why[400];
};

struct dconn {
	struct event_base *base;
	struct tls_ctx *sctx, *cctx;
	int lfd;                   /* the server's listening socket */
	struct sockaddr_in laddr;
	struct event *lev;
	SSL *lssl;
	int hvr_seen;              /* HelloVerifyRequests the client got */
	int listens;               /* dtls_listen calls that returned 1 */
	struct side s, c;
};

static void
hs_done(SSL *ssl, int err, const char *why, void *arg)
{
	struct side *sd = arg;

	sd->done = 1;
	sd->err = err;
	snprintf(sd->why, sizeof(sd->why), "%s", why);
}

static void
on_listen(evutil_socket_t fd, short what, void *arg)
{
	struct dconn *d = arg;
	struct sockaddr_storage peer;
	socklen_t pl = sizeof(peer);
	int r;

	if (d->lssl == NULL)
		assert_non_null(d->lssl = dtls_ssl_new(d->sctx, d->lfd));
	r = dtls_listen(d->lssl, &peer, &pl);
	assert_true(r >= 0);
	if (r == 0)
		return;
	d->listens++;
	d->s.ssl = d->lssl;
	d->lssl = NULL;
	d->s.fd = udp_socket();
	assert_int_equal(bind(d->s.fd, (struct sockaddr *)&d->laddr,
	    sizeof(d->laddr)), 0);
	assert_int_equal(connect(d->s.fd, (struct sockaddr *)&peer, pl), 0);
	assert_int_equal(dtls_accept_on(d->s.ssl, d->s.fd,
	    (struct sockaddr *)&peer), 0);
	assert_non_null(tls_handshake_start(d->base, d->s.ssl, 1, 5, hs_done,
	    &d->s));
	event_del(d->lev);
}

static void
msg_cb(int write_p, int version, int content_type, const void *buf,
    size_t len, SSL *ssl, void *arg)
{
	struct dconn *d = arg;

	if (!write_p && content_type == SSL3_RT_HANDSHAKE && len > 0 &&
	    ((const unsigned char *)buf)[0] == DTLS1_MT_HELLO_VERIFY_REQUEST)
		d->hvr_seen++;
}

static struct tls_ctx *
sctx_new(const char *dir)
{
	struct tls_server_opts o = { 0 };
	struct tls_ctx *c = NULL;
	char err[512] = "";

	o.cert = P(dir, "server.pem");
	o.key = P(dir, "server.key");
	o.client_ca = P(dir, "ca.pem");
	if (dtls_server_ctx_new(&o, &c, err, sizeof(err)) != 0)
		fail_msg("server ctx: %s", err);
	return c;
}

static struct tls_ctx *
cctx_new(const char *ca_dir, const char *cert_dir)
{
	struct tls_client_opts o = { 0 };
	struct tls_ctx *c = NULL;
	char err[512] = "";

	o.ca = P(ca_dir, "ca.pem");
	if (cert_dir != NULL) {
		o.cert = P(cert_dir, "client.pem");
		o.key = P(cert_dir, "client.key");
	}
	o.server_name = "127.0.0.1";
	if (dtls_client_ctx_new(&o, &c, err, sizeof(err)) != 0)
		fail_msg("client ctx: %s", err);
	return c;
}

static int
both_done(void *arg)
{
	struct dconn *d = arg;

	/* a refused client may never learn it: the server side decides */
	return d->c.done && (d->s.done || d->c.err != 0);
}

/* Handshake a client (certificate from cert_dir, or none) with a server
 * of pki_a. */
static void
dconn_open(struct dconn *d, const char *cert_dir)
{
	socklen_t sl = sizeof(d->laddr);

	memset(d, 0, sizeof(*d));
	d->s.fd = d->c.fd = -1;
	assert_non_null(d->base = event_base_new());
	d->sctx = sctx_new(pki_a);
	d->cctx = cctx_new(pki_a, cert_dir);
	d->lfd = udp_socket();
	d->laddr.sin_family = AF_INET;
	d->laddr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(d->lfd, (struct sockaddr *)&d->laddr,
	    sizeof(d->laddr)), 0);
	assert_int_equal(getsockname(d->lfd, (struct sockaddr *)&d->laddr,
	    &sl), 0);
	d->lev = event_new(d->base, d->lfd, EV_READ | EV_PERSIST, on_listen,
	    d);
	event_add(d->lev, NULL);

	d->c.fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	assert_true(d->c.fd >= 0);
	assert_int_equal(connect(d->c.fd, (struct sockaddr *)&d->laddr,
	    sizeof(d->laddr)), 0);
	assert_non_null(d->c.ssl = dtls_ssl_new(d->cctx, d->c.fd));
	SSL_set_msg_callback(d->c.ssl, msg_cb);
	SSL_set_msg_callback_arg(d->c.ssl, d);
	assert_non_null(tls_handshake_start(d->base, d->c.ssl, 0, 5, hs_done,
	    &d->c));
	assert_true(run_until(d->base, both_done, d, 8000));
}

static void
dconn_close(struct dconn *d)
{
	SSL_free(d->s.ssl);
	SSL_free(d->c.ssl);
	SSL_free(d->lssl);
	if (d->s.fd >= 0)
		close(d->s.fd);
	if (d->c.fd >= 0)
		close(d->c.fd);
	close(d->lfd);
	event_free(d->lev);
	tls_ctx_free(d->sctx);
	tls_ctx_free(d->cctx);
	event_base_free(d->base);
}

/* Read one record within max_ms. */
static ssize_t
read_record(struct dconn *d, SSL *ssl, void *buf, size_t cap, unsigned max_ms)
{
	uint64_t end = wall_ms() + max_ms;
	ssize_t n;

	for (;;) {
		n = dtls_read(ssl, buf, cap);
		if (n >= 0 || errno != EAGAIN || wall_ms() >= end)
			return n;
		usleep(1000);
	}
}

/* ---- setup ---- */

static int
group_setup(void **state)
{
	struct tls_certs_opts o = { 0 };
	char err[512];

	signal(SIGPIPE, SIG_IGN);
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/mgrok-dtls-XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	snprintf(pki_a, sizeof(pki_a), "%.255s/a", tmpdir);
	snprintf(pki_b, sizeof(pki_b), "%.255s/b", tmpdir);
	o.hosts = "localhost,127.0.0.1";
	o.out_dir = pki_a;
	if (tls_certs_generate(&o, err, sizeof(err)) != 0)
		goto fail;
	o.out_dir = pki_b;
	if (tls_certs_generate(&o, err, sizeof(err)) != 0)
		goto fail;
	return 0;
fail:
	fprintf(stderr, "setup: %s\n", err);
	return -1;
}

static int
group_teardown(void **state)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%.255s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

/* ---- tests ---- */

static void
test_ctx_errors(void **state)
{
	struct tls_server_opts o = { 0 };
	struct tls_ctx *c = NULL;
	char err[512] = "";

	o.cert = P(pki_a, "server.pem");
	o.key = P(pki_a, "server.key");
	assert_int_equal(dtls_server_ctx_new(&o, &c, err, sizeof(err)),
	    MG_EINVAL);
	assert_null(c);
	assert_non_null(strstr(err, "--tls-client-ca"));
	o.client_ca = "/nonexistent/ca.pem";
	assert_true(dtls_server_ctx_new(&o, &c, err, sizeof(err)) < 0);
	assert_non_null(strstr(err, "No such file"));
}

static void
test_handshake_echo(void **state)
{
	struct dconn d;
	char subj[256];
	uint8_t out[DTLS_MAX_RECORD], in[DTLS_MAX_RECORD + 1];

	dconn_open(&d, pki_a);
	assert_int_equal(d.c.err, 0);
	assert_int_equal(d.s.err, 0);
	/* the cookie exchange happened: one HelloVerifyRequest, one accept */
	assert_int_equal(d.hvr_seen, 1);
	assert_int_equal(d.listens, 1);
	assert_int_equal(SSL_version(d.c.ssl), DTLS1_2_VERSION);
	assert_int_equal(tls_peer_subject(d.s.ssl, subj, sizeof(subj)), 0);
	assert_string_equal(subj, "CN=mgrok-client");

	/* one record per datagram, both ways, boundaries kept */
	for (size_t len = 1; len <= 1200; len += 37) {
		ssize_t n;

		for (size_t i = 0; i < len; i++)
			out[i] = (uint8_t)(i * 7 + len);
		assert_int_equal(dtls_write(d.c.ssl, out, len), 0);
		n = read_record(&d, d.s.ssl, in, sizeof(in), 2000);
		assert_int_equal(n, (ssize_t)len);
		assert_memory_equal(in, out, len);
		assert_int_equal(dtls_write(d.s.ssl, in, (size_t)n), 0);
		n = read_record(&d, d.c.ssl, in, sizeof(in), 2000);
		assert_int_equal(n, (ssize_t)len);
		assert_memory_equal(in, out, len);
	}
	/* the largest record */
	memset(out, 0xA5, sizeof(out));
	assert_int_equal(dtls_write(d.c.ssl, out, DTLS_MAX_RECORD), 0);
	assert_int_equal(read_record(&d, d.s.ssl, in, sizeof(in), 2000),
	    DTLS_MAX_RECORD);
	assert_int_equal(dtls_write(d.c.ssl, out, 0), MG_EINVAL);
	assert_int_equal(dtls_write(d.c.ssl, out, DTLS_MAX_RECORD + 1),
	    MG_EINVAL);

	/* close_notify reads as 0 */
	tls_shutdown(d.c.ssl);
	assert_int_equal(read_record(&d, d.s.ssl, in, sizeof(in), 2000), 0);
	dconn_close(&d);
}

static void
test_no_client_cert(void **state)
{
	struct dconn d;

	dconn_open(&d, NULL);
	assert_true(d.s.done);
	assert_int_equal(d.s.err, MG_EAUTH);
	assert_non_null(strstr(d.s.why, "no certificate"));
	assert_true(d.c.done);
	assert_true(d.c.err != 0);
	dconn_close(&d);
}

static void
test_other_ca_cert(void **state)
{
	struct dconn d;

	dconn_open(&d, pki_b);
	assert_true(d.s.done);
	assert_int_equal(d.s.err, MG_EAUTH);
	assert_non_null(strstr(d.s.why, "not signed by the CA in "
	    "--tls-client-ca"));
	dconn_close(&d);
}

static void
test_icmp_error(void **state)
{
	struct dconn d;
	uint8_t b[64] = "ping";
	ssize_t n;

	dconn_open(&d, pki_a);
	assert_int_equal(d.s.err, 0);
	/* the server goes away: the client's next send draws an ICMP port
	 * unreachable, reported on its connected socket */
	close(d.s.fd);
	d.s.fd = -1;
	close(d.lfd);
	d.lfd = socket(AF_INET, SOCK_DGRAM, 0);
	assert_int_equal(dtls_write(d.c.ssl, b, 4), 0);
	usleep(50000);
	n = dtls_read(d.c.ssl, b, sizeof(b));
	assert_int_equal(n, -1);
	assert_int_equal(errno, ECONNREFUSED);
	assert_true(dtls_transient(errno));
	/* and the connection is still usable afterwards */
	assert_int_equal(dtls_write(d.c.ssl, b, 4), 0);
	usleep(50000);
	n = dtls_read(d.c.ssl, b, sizeof(b));
	assert_int_equal(n, -1);
	assert_int_equal(errno, ECONNREFUSED);
	n = dtls_read(d.c.ssl, b, sizeof(b));
	assert_int_equal(n, -1);
	assert_int_equal(errno, EAGAIN);
	dconn_close(&d);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ctx_errors),
		cmocka_unit_test(test_handshake_echo),
		cmocka_unit_test(test_no_client_cert),
		cmocka_unit_test(test_other_ca_cert),
		cmocka_unit_test(test_icmp_error),
	};

	alarm(120); /* a hang is a failure */
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
