/* test_tls.c: src/tls against the TLS parts of docs/protocol.md (sections 1,
 * 2, 4.2, 6): verification, pins, mTLS, ALPN, messages, I/O, reload,
 * `mgrok certs`. Both handshake sides run on one event_base. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "mux/mux.h"
#include "tls/tls.h"
#include "util/err.h"

/* short, so that paths built from them never truncate */
static char tmpdir[256];
static char pki_a[512], pki_b[512], pki_exp[512], pki_r[512];

/* ---- plumbing ---- */

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
	static char buf[8][PATH_MAX];
	static int k;

	k = (k + 1) % 8;
	if ((size_t)snprintf(buf[k], sizeof(buf[k]), "%s/%s", dir, file) >=
	    sizeof(buf[k]))
		fail_msg("path too long");
	return buf[k];
}

static void
make_pair(int fds[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(fcntl(fds[i], F_SETFL,
		    fcntl(fds[i], F_GETFL) | O_NONBLOCK), 0);
}

/* TCP over loopback, for the benchmark (closer to the real thing). */
static void
make_tcp_pair(int fds[2])
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	int l, one = 1;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true((l = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
	assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(l, 1), 0);
	assert_int_equal(getsockname(l, (struct sockaddr *)&sa, &sl), 0);
	assert_true((fds[1] = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
	assert_int_equal(connect(fds[1], (struct sockaddr *)&sa, sizeof(sa)),
	    0);
	assert_true((fds[0] = accept(l, NULL, NULL)) >= 0);
	close(l);
	for (int i = 0; i < 2; i++) {
		setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one,
		    sizeof(one));
		assert_int_equal(fcntl(fds[i], F_SETFL,
		    fcntl(fds[i], F_GETFL) | O_NONBLOCK), 0);
	}
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

static void
copy_file(const char *from, const char *to)
{
	char buf[16384];
	FILE *f = fopen(from, "rb"), *g = fopen(to, "wb");
	size_t n;

	assert_non_null(f);
	assert_non_null(g);
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		assert_int_equal(fwrite(buf, 1, n, g), n);
	fclose(f);
	fclose(g);
}

static int
contains(const char *hay, const char *needle)
{
	if (strstr(hay, needle) == NULL) {
		print_error("\"%s\" does not contain \"%s\"\n", hay, needle);
		return 0;
	}
	return 1;
}

/* ---- contexts ---- */

static struct tls_ctx *
server_ctx(const char *dir, const char *client_ca_dir, int auth)
{
	struct tls_server_opts o = { 0 };
	struct tls_ctx *c = NULL;
	char err[512] = "";

	o.cert = P(dir, "server.pem");
	o.key = P(dir, "server.key");
	if (client_ca_dir != NULL)
		o.client_ca = P(client_ca_dir, "ca.pem");
	o.client_auth = auth;
	if (tls_server_ctx_new(&o, &c, err, sizeof(err)) != 0)
		fail_msg("server ctx: %s", err);
	return c;
}

static struct tls_ctx *
client_ctx(const char *ca_dir, const char *cert_dir, const char *name,
    const char *pin, const char *alpn)
{
	struct tls_client_opts o = { 0 };
	struct tls_ctx *c = NULL;
	char err[512] = "";

	if (ca_dir != NULL)
		o.ca = P(ca_dir, "ca.pem");
	if (cert_dir != NULL) {
		o.cert = P(cert_dir, "client.pem");
		o.key = P(cert_dir, "client.key");
	}
	o.server_name = name;
	o.pin = pin;
	o.alpn = alpn;
	if (tls_client_ctx_new(&o, &c, err, sizeof(err)) != 0)
		fail_msg("client ctx: %s", err);
	return c;
}

/* ---- one connection, both sides ---- */

struct side {
	SSL *ssl;
	int fd;
	int done, err;
	char why[400];
};

struct conn {
	struct event_base *base;
	struct side s, c; /* server, client */
};

static void
hs_done(SSL *ssl, int err, const char *why, void *arg)
{
	struct side *sd = arg;

	assert_ptr_equal(ssl, sd->ssl);
	assert_int_equal(sd->done, 0); /* exactly once */
	sd->done = 1;
	sd->err = err;
	snprintf(sd->why, sizeof(sd->why), "%s", why);
}

static int
both_done(void *arg)
{
	struct conn *k = arg;

	return k->s.done && k->c.done;
}

/* Set by a test to make the client offer TLS 1.2 at most. */
static int client_max_tls12;

/* Handshake srv and cli over a socketpair; both results in k. */
static void
handshake(struct conn *k, struct tls_ctx *srv, struct tls_ctx *cli)
{
	int fds[2];

	memset(k, 0, sizeof(*k));
	assert_non_null(k->base = event_base_new());
	make_pair(fds);
	k->s.fd = fds[0];
	k->c.fd = fds[1];
	assert_non_null(k->s.ssl = tls_ssl_new(srv, k->s.fd));
	assert_non_null(k->c.ssl = tls_ssl_new(cli, k->c.fd));
	if (client_max_tls12)
		SSL_set_max_proto_version(k->c.ssl, TLS1_2_VERSION);
	assert_non_null(tls_handshake_start(k->base, k->s.ssl, 1, 5, hs_done,
	    &k->s));
	assert_non_null(tls_handshake_start(k->base, k->c.ssl, 0, 5, hs_done,
	    &k->c));
	/* done is never called from inside start */
	assert_int_equal(k->s.done + k->c.done, 0);
	assert_true(run_until(k->base, both_done, k, 8000));
	/* the messages a user would see */
	if (k->s.err != 0)
		print_message("    server: %s\n", k->s.why);
	if (k->c.err != 0)
		print_message("    client: %s\n", k->c.why);
}

static void
conn_close(struct conn *k)
{
	SSL_free(k->s.ssl);
	SSL_free(k->c.ssl);
	close(k->s.fd);
	close(k->c.fd);
	event_base_free(k->base);
}

struct rd {
	struct conn *k;
	ssize_t r;
	int e;
};

/* After a TLS 1.3 handshake the client learns of a refusal on reading. */
static int
client_read_settled(void *arg)
{
	struct rd *x = arg;
	char buf[64];
	struct iovec v = { buf, sizeof(buf) };
	int ww;

	x->r = tls_readv(x->k->c.ssl, &v, 1, &ww);
	x->e = errno;
	return !(x->r < 0 && x->e == EAGAIN);
}

/* ---- setup ---- */

static int
group_setup(void **state)
{
	struct tls_certs_opts o = { 0 };
	char err[512];

	signal(SIGPIPE, SIG_IGN);
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/mgrok-tls-XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	snprintf(pki_a, sizeof(pki_a), "%.255s/a", tmpdir);
	snprintf(pki_b, sizeof(pki_b), "%.255s/b", tmpdir);
	snprintf(pki_exp, sizeof(pki_exp), "%.255s/exp", tmpdir);
	snprintf(pki_r, sizeof(pki_r), "%.255s/r", tmpdir);
	o.hosts = "localhost,127.0.0.1,::1";
	o.out_dir = pki_a;
	if (tls_certs_generate(&o, err, sizeof(err)) != 0)
		goto fail;
	o.out_dir = pki_b;
	if (tls_certs_generate(&o, err, sizeof(err)) != 0)
		goto fail;
	/* Same CA as a, a second server certificate (for reload). */
	o.out_dir = pki_r;
	o.ca_dir = pki_a;
	if (tls_certs_generate(&o, err, sizeof(err)) != 0)
		goto fail;
	/* Same CA as a, leaves that ended 75 days ago. */
	o.out_dir = pki_exp;
	o.shift_s = -900L * 86400;
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
test_pin_parse(void **state)
{
	unsigned char a[32], b[32];
	char s[TLS_PIN_MAX], low[200];
	size_t j = 0;

	assert_int_equal(tls_cert_pin(P(pki_a, "server.pem"), s, sizeof(s)),
	    0);
	assert_int_equal(strlen(s), 71);
	assert_int_equal(tls_pin_parse(s, a), 0);
	/* lower case with ':' separators, "SHA256:" prefix */
	j = (size_t)snprintf(low, sizeof(low), "SHA256:");
	for (int i = 7; s[i] != '\0'; i += 2)
		j += (size_t)snprintf(low + j, sizeof(low) - j, "%s%c%c",
		    i > 7 ? ":" : "", s[i] | 0x20, s[i + 1] | 0x20);
	assert_int_equal(tls_pin_parse(low, b), 0);
	assert_memory_equal(a, b, 32);
	assert_int_equal(tls_pin_parse("sha256:abcd", a), MG_EINVAL);
	assert_int_equal(tls_pin_parse("md5:00", a), MG_EINVAL);
	s[20] = 'x';
	assert_int_equal(tls_pin_parse(s, a), MG_EINVAL);
	assert_int_equal(tls_cert_pin("/nonexistent.pem", s, sizeof(s)),
	    MG_EIO);
}

static void
test_ctx_errors(void **state)
{
	struct tls_server_opts so = { 0 };
	struct tls_client_opts co = { 0 };
	struct tls_ctx *c = NULL;
	char err[512];

	so.cert = "/nonexistent/x.pem";
	so.key = P(pki_a, "server.key");
	assert_int_equal(tls_server_ctx_new(&so, &c, err, sizeof(err)),
	    MG_EIO);
	assert_null(c);
	assert_string_equal(err,
	    "--tls-cert /nonexistent/x.pem: No such file or directory");

	so.cert = P(pki_a, "server.pem");
	so.key = P(pki_b, "server.key");
	assert_int_equal(tls_server_ctx_new(&so, &c, err, sizeof(err)),
	    MG_EINVAL);
	assert_true(contains(err, "does not match the certificate"));

	so.key = P(pki_a, "ca.pem"); /* not a key */
	assert_int_equal(tls_server_ctx_new(&so, &c, err, sizeof(err)),
	    MG_EINVAL);
	assert_true(contains(err, "--tls-key"));

	so.key = P(pki_a, "server.key");
	so.client_auth = TLS_CLIENT_AUTH_REQUIRE;
	assert_int_equal(tls_server_ctx_new(&so, &c, err, sizeof(err)),
	    MG_EINVAL);
	assert_true(contains(err, "--tls-client-ca"));

	co.ca = P(pki_a, "nope.pem");
	assert_int_equal(tls_client_ctx_new(&co, &c, err, sizeof(err)),
	    MG_EIO);
	assert_true(contains(err, "--tls-ca"));
	assert_true(contains(err, "No such file or directory"));
	co.ca = NULL;
	co.pin = "sha256:12";
	assert_int_equal(tls_client_ctx_new(&co, &c, err, sizeof(err)),
	    MG_EINVAL);
	assert_true(contains(err, "--tls-pin"));
	co.pin = NULL;
	co.cert = P(pki_a, "client.pem");
	assert_int_equal(tls_client_ctx_new(&co, &c, err, sizeof(err)),
	    MG_EINVAL);
	assert_null(c);
}

static void
test_handshake_ca(void **state)
{
	struct tls_ctx *s = server_ctx(pki_a, NULL, 0);
	struct tls_ctx *c = client_ctx(pki_a, NULL, "localhost", NULL, NULL);
	struct tls_ctx *c4 = client_ctx(pki_a, NULL, "127.0.0.1", NULL, NULL);
	struct tls_ctx *c6 = client_ctx(pki_a, NULL, "::1", NULL, NULL);
	struct conn k;
	char buf[256];

	handshake(&k, s, c);
	assert_int_equal(k.s.err, 0);
	assert_int_equal(k.c.err, 0);
	assert_string_equal(k.c.why, "");
	assert_int_equal(SSL_version(k.c.ssl), TLS1_3_VERSION);
	/* no client CA: no verified subject */
	assert_int_equal(tls_peer_subject(k.s.ssl, buf, sizeof(buf)),
	    MG_EAUTH);
	conn_close(&k);

	handshake(&k, s, c4);
	assert_int_equal(k.c.err, 0);
	conn_close(&k);
	handshake(&k, s, c6);
	assert_int_equal(k.c.err, 0);
	conn_close(&k);
	tls_ctx_free(s);
	tls_ctx_free(c);
	tls_ctx_free(c4);
	tls_ctx_free(c6);
}

static void
test_other_ca(void **state)
{
	struct tls_ctx *s = server_ctx(pki_b, NULL, 0);
	struct tls_ctx *c = client_ctx(pki_a, NULL, "localhost", NULL, NULL);
	struct conn k;

	handshake(&k, s, c);
	assert_int_equal(k.c.err, MG_EAUTH);
	assert_true(contains(k.c.why, "the server's certificate is not "
	    "signed by the CA in --tls-ca"));
	assert_int_not_equal(k.s.err, 0);
	assert_true(contains(k.s.why, "the client rejected our certificate"));
	conn_close(&k);
	tls_ctx_free(s);
	tls_ctx_free(c);
}

static void
test_expired(void **state)
{
	struct tls_ctx *s = server_ctx(pki_exp, NULL, 0);
	struct tls_ctx *c = client_ctx(pki_a, NULL, "localhost", NULL, NULL);
	struct conn k;

	handshake(&k, s, c);
	assert_int_equal(k.c.err, MG_EAUTH);
	assert_true(contains(k.c.why, "the server's certificate has expired "
	    "(notAfter "));
	conn_close(&k);
	tls_ctx_free(s);
	tls_ctx_free(c);
}

static void
test_name_mismatch(void **state)
{
	struct tls_ctx *s = server_ctx(pki_a, NULL, 0);
	struct tls_ctx *c = client_ctx(pki_a, NULL, "tunnel.example.com",
	    NULL, NULL);
	struct tls_ctx *cip = client_ctx(pki_a, NULL, "127.0.0.2", NULL,
	    NULL);
	struct conn k;

	handshake(&k, s, c);
	assert_int_equal(k.c.err, MG_EAUTH);
	assert_true(contains(k.c.why, "the server's certificate does not "
	    "match the name tunnel.example.com"));
	conn_close(&k);
	handshake(&k, s, cip);
	assert_int_equal(k.c.err, MG_EAUTH);
	assert_true(contains(k.c.why, "does not match the name 127.0.0.2"));
	conn_close(&k);
	tls_ctx_free(s);
	tls_ctx_free(c);
	tls_ctx_free(cip);
}

static void
test_pin(void **state)
{
	/* b's server, no CA on the client: only the pin vouches for it;
	 * the name does not matter either. */
	struct tls_ctx *s = server_ctx(pki_b, NULL, 0);
	char pin_b[TLS_PIN_MAX], pin_a[TLS_PIN_MAX], got[TLS_PIN_MAX];
	char want[200];
	struct tls_ctx *ok, *bad;
	struct conn k;

	assert_int_equal(tls_cert_pin(P(pki_b, "server.pem"), pin_b,
	    sizeof(pin_b)), 0);
	assert_int_equal(tls_cert_pin(P(pki_a, "server.pem"), pin_a,
	    sizeof(pin_a)), 0);
	ok = client_ctx(NULL, NULL, "elsewhere.example", pin_b, NULL);
	bad = client_ctx(NULL, NULL, "localhost", pin_a, NULL);

	handshake(&k, s, ok);
	assert_int_equal(k.c.err, 0);
	assert_int_equal(k.s.err, 0);
	assert_int_equal(tls_peer_pin(k.c.ssl, got, sizeof(got)), 0);
	assert_string_equal(got, pin_b);
	conn_close(&k);

	handshake(&k, s, bad);
	assert_int_equal(k.c.err, MG_EAUTH);
	snprintf(want, sizeof(want), "the server's certificate %s does not "
	    "match --tls-pin", pin_b);
	assert_string_equal(k.c.why, want);
	assert_int_not_equal(k.s.err, 0);
	conn_close(&k);
	tls_ctx_free(s);
	tls_ctx_free(ok);
	tls_ctx_free(bad);
}

static void
test_mtls(void **state)
{
	struct tls_ctx *s = server_ctx(pki_a, pki_a, TLS_CLIENT_AUTH_REQUIRE);
	struct tls_ctx *sopt = server_ctx(pki_a, pki_a,
	    TLS_CLIENT_AUTH_OPTIONAL);
	struct tls_ctx *cok = client_ctx(pki_a, pki_a, "localhost", NULL,
	    NULL);
	struct tls_ctx *cnone = client_ctx(pki_a, NULL, "localhost", NULL,
	    NULL);
	struct tls_ctx *cother = client_ctx(pki_a, pki_b, "localhost", NULL,
	    NULL);
	struct conn k;
	struct rd x;
	char buf[256];

	/* required and sent */
	handshake(&k, s, cok);
	assert_int_equal(k.s.err, 0);
	assert_int_equal(k.c.err, 0);
	assert_int_equal(tls_peer_subject(k.s.ssl, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "CN=mgrok-client");
	assert_int_equal(tls_peer_subject(k.s.ssl, buf, 4), MG_ENOSPC);
	conn_close(&k);

	/* required, not sent: the server says so at once; the TLS 1.3 client
	 * finished first and hears the alert on its first read */
	handshake(&k, s, cnone);
	assert_int_equal(k.s.err, MG_EAUTH);
	assert_string_equal(k.s.why, "client sent no certificate");
	x.k = &k;
	if (k.c.err == 0) {
		assert_true(run_until(k.base, client_read_settled, &x, 3000));
		assert_int_equal(x.r, -1);
		assert_int_equal(x.e, EIO);
		print_message("    client, first read: %s\n",
		    tls_why(k.c.ssl));
		assert_string_equal(tls_why(k.c.ssl), "the server requires a "
		    "client certificate (--tls-cert/--tls-key)");
	} else
		assert_true(contains(k.c.why, "client certificate"));
	conn_close(&k);

	/* a certificate from another CA */
	handshake(&k, s, cother);
	assert_int_equal(k.s.err, MG_EAUTH);
	assert_true(contains(k.s.why, "the client's certificate is not "
	    "signed by the CA in --tls-client-ca"));
	conn_close(&k);

	/* optional: none is fine, and there is no subject */
	handshake(&k, sopt, cnone);
	assert_int_equal(k.s.err, 0);
	assert_int_equal(k.c.err, 0);
	assert_int_equal(tls_peer_subject(k.s.ssl, buf, sizeof(buf)),
	    MG_EAUTH);
	conn_close(&k);
	handshake(&k, sopt, cok);
	assert_int_equal(k.s.err, 0);
	assert_int_equal(tls_peer_subject(k.s.ssl, buf, sizeof(buf)), 0);
	conn_close(&k);

	tls_ctx_free(s);
	tls_ctx_free(sopt);
	tls_ctx_free(cok);
	tls_ctx_free(cnone);
	tls_ctx_free(cother);
}

/* TLS 1.2 peers: AEAD suites with ECDHE only, and the mTLS refusal comes
 * during the handshake. */
static void
test_tls12(void **state)
{
	struct tls_ctx *s = server_ctx(pki_a, pki_a, TLS_CLIENT_AUTH_REQUIRE);
	struct tls_ctx *cok = client_ctx(pki_a, pki_a, "localhost", NULL,
	    NULL);
	struct tls_ctx *cnone = client_ctx(pki_a, NULL, "localhost", NULL,
	    NULL);
	struct conn k;
	const char *cipher;

	client_max_tls12 = 1;
	handshake(&k, s, cok);
	assert_int_equal(k.s.err, 0);
	assert_int_equal(k.c.err, 0);
	assert_int_equal(SSL_version(k.c.ssl), TLS1_2_VERSION);
	cipher = SSL_get_cipher_name(k.c.ssl);
	assert_true(strncmp(cipher, "ECDHE-", 6) == 0);
	assert_true(strstr(cipher, "GCM") != NULL ||
	    strstr(cipher, "CHACHA20") != NULL);
	assert_string_equal(tls_alpn(k.s.ssl), TLS_ALPN_TUNNEL);
	conn_close(&k);

	handshake(&k, s, cnone);
	assert_int_equal(k.s.err, MG_EAUTH);
	assert_string_equal(k.s.why, "client sent no certificate");
	assert_int_equal(k.c.err, MG_EAUTH);
	assert_true(contains(k.c.why, "client certificate"));
	conn_close(&k);
	client_max_tls12 = 0;
	tls_ctx_free(s);
	tls_ctx_free(cok);
	tls_ctx_free(cnone);
}

static void
test_alpn(void **state)
{
	static const struct {
		const char *offer, *want;
	} cases[] = {
		{ NULL, TLS_ALPN_TUNNEL },
		{ TLS_ALPN_STREAM, TLS_ALPN_STREAM },
		{ TLS_ALPN_HTTP, TLS_ALPN_HTTP },
		{ "", "" },
	};
	struct tls_ctx *s = server_ctx(pki_a, NULL, 0), *c;
	struct conn k;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		c = client_ctx(pki_a, NULL, "localhost", NULL, cases[i].offer);
		handshake(&k, s, c);
		assert_int_equal(k.s.err, 0);
		assert_int_equal(k.c.err, 0);
		assert_string_equal(tls_alpn(k.s.ssl), cases[i].want);
		assert_string_equal(tls_alpn(k.c.ssl), cases[i].want);
		conn_close(&k);
		tls_ctx_free(c);
	}
	/* only protocols we do not serve: refused */
	c = client_ctx(pki_a, NULL, "localhost", NULL, "h2");
	handshake(&k, s, c);
	assert_int_equal(k.s.err, MG_EPROTO);
	assert_true(contains(k.s.why, "ALPN"));
	assert_int_equal(k.c.err, MG_EPROTO);
	assert_true(contains(k.c.why, "ALPN"));
	conn_close(&k);
	tls_ctx_free(c);
	tls_ctx_free(s);
}

static void
test_not_tls_and_timeout(void **state)
{
	struct tls_ctx *s = server_ctx(pki_a, NULL, 0);
	struct event_base *base = event_base_new();
	struct side sd = { 0 };
	int fds[2];
	uint64_t t0;

	/* a plain client */
	make_pair(fds);
	sd.ssl = tls_ssl_new(s, fds[0]);
	assert_non_null(tls_handshake_start(base, sd.ssl, 1, 5, hs_done, &sd));
	assert_int_equal(write(fds[1], "GRT1\x01secret-token\r\n\r\n", 20), 20);
	while (!sd.done)
		event_base_loop(base, EVLOOP_ONCE);
	assert_int_equal(sd.err, MG_EPROTO);
	assert_true(contains(sd.why, "does not speak TLS"));
	SSL_free(sd.ssl);
	close(fds[0]);
	close(fds[1]);

	/* a silent client: the deadline */
	memset(&sd, 0, sizeof(sd));
	make_pair(fds);
	sd.ssl = tls_ssl_new(s, fds[0]);
	t0 = wall_ms();
	assert_non_null(tls_handshake_start(base, sd.ssl, 1, 1, hs_done, &sd));
	while (!sd.done)
		event_base_loop(base, EVLOOP_ONCE);
	assert_int_equal(sd.err, MG_ETIMEDOUT);
	assert_true(wall_ms() - t0 < 3000);
	assert_string_equal(sd.why, "TLS handshake timed out after 1 s");
	SSL_free(sd.ssl);

	/* cancel: done is never called */
	memset(&sd, 0, sizeof(sd));
	sd.ssl = tls_ssl_new(s, fds[0]);
	tls_handshake_cancel(tls_handshake_start(base, sd.ssl, 1, 1, hs_done,
	    &sd));
	event_base_loop(base, EVLOOP_NONBLOCK);
	assert_int_equal(sd.done, 0);
	SSL_free(sd.ssl);
	close(fds[0]);
	close(fds[1]);
	event_base_free(base);
	tls_ctx_free(s);
}

/* ---- data: tls_readv and tls_write_evbuffer ---- */

struct pump {
	SSL *ssl;
	int fd;
	struct event *ev;
	struct evbuffer *out;  /* still to send */
	struct evbuffer *in;   /* received (unless discard) */
	size_t got;
	int discard, eof, err, shut;
	int w_wants_read, r_wants_write, w_blocked;
};

static void pump_cb(evutil_socket_t fd, short what, void *arg);

static void
pump_arm(struct pump *p)
{
	short ev = 0;

	if (!p->eof)
		ev |= EV_READ;
	if (p->r_wants_write ||
	    ((evbuffer_get_length(p->out) > 0 || tls_wpending(p->ssl) > 0) &&
	    p->w_blocked && !p->w_wants_read))
		ev |= EV_WRITE;
	event_del(p->ev);
	if (ev != 0) {
		event_assign(p->ev, event_get_base(p->ev), p->fd, ev, pump_cb,
		    p);
		event_add(p->ev, NULL);
	}
}

static void
pump_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pump *p = arg;
	static char sink[256 * 1024];

	if (p->err)
		return;
	p->w_blocked = p->w_wants_read = 0;
	while (evbuffer_get_length(p->out) > 0) {
		ssize_t w = tls_write_evbuffer(p->ssl, p->out,
		    &p->w_wants_read);

		if (w < 0) {
			if (errno == EAGAIN)
				p->w_blocked = 1;
			else
				p->err = 1;
			break;
		}
	}
	/* records still batched (tls_batch_io) go before close_notify */
	if (!p->w_blocked && !p->err && tls_wpending(p->ssl) > 0 &&
	    tls_flush(p->ssl) < 0) {
		if (errno == EAGAIN)
			p->w_blocked = 1;
		else
			p->err = 1;
	}
	if (evbuffer_get_length(p->out) == 0 && tls_wpending(p->ssl) == 0 &&
	    !p->shut) {
		tls_shutdown(p->ssl);
		p->shut = 1;
		if (tls_wpending(p->ssl) > 0)
			p->w_blocked = 1; /* close_notify waits for writable */
	}
	p->r_wants_write = 0;
	while (!p->eof && !p->err) {
		struct evbuffer_iovec v[2];
		struct iovec iov[2];
		int n = 1;
		ssize_t r;

		if (p->discard) {
			iov[0].iov_base = sink;
			iov[0].iov_len = sizeof(sink);
		} else {
			n = evbuffer_reserve_space(p->in, 256 * 1024, v, 2);
			for (int i = 0; i < n; i++) {
				iov[i].iov_base = v[i].iov_base;
				iov[i].iov_len = v[i].iov_len;
			}
		}
		r = tls_readv(p->ssl, iov, n, &p->r_wants_write);
		if (r > 0) {
			p->got += (size_t)r;
			if (!p->discard) {
				size_t left = (size_t)r;

				for (int i = 0; i < n; i++) {
					if (v[i].iov_len > left)
						v[i].iov_len = left;
					left -= v[i].iov_len;
				}
				evbuffer_commit_space(p->in, v, n);
			}
			continue;
		}
		if (!p->discard)
			evbuffer_commit_space(p->in, v, 0);
		if (r == 0)
			p->eof = 1;
		else if (errno != EAGAIN)
			p->err = 1;
		break;
	}
	/* Writing may have been blocked on reading, which just happened. */
	if (p->w_wants_read && !p->err && evbuffer_get_length(p->out) > 0) {
		event_active(p->ev, EV_WRITE, 0);
		return;
	}
	pump_arm(p);
}

static void
pump_init(struct pump *p, struct event_base *base, SSL *ssl, int fd,
    const void *data, size_t len, int discard)
{
	memset(p, 0, sizeof(*p));
	p->ssl = ssl;
	p->fd = fd;
	p->discard = discard;
	p->out = evbuffer_new();
	p->in = evbuffer_new();
	/* many chains, as the mux's output has */
	for (size_t off = 0; off < len; off += 32768)
		evbuffer_add(p->out, (const char *)data + off,
		    len - off < 32768 ? len - off : 32768);
	p->ev = event_new(base, fd, EV_READ | EV_WRITE, pump_cb, p);
	event_active(p->ev, EV_WRITE, 0);
}

static void
pump_free(struct pump *p)
{
	event_free(p->ev);
	evbuffer_free(p->out);
	evbuffer_free(p->in);
}

static int
pumps_done(void *arg)
{
	struct pump *p = arg;

	return (p[0].eof || p[0].err) && (p[1].eof || p[1].err);
}

/* 8 MiB each way at once, compared; batched: both sides gather records
 * (tls_batch_io) over sockets with small buffers, so batches fill and
 * wait for writable many times */
static void
io_both_ways(struct tls_ctx *s, struct tls_ctx *c, int batched)
{
	const size_t N = 8u << 20;
	unsigned char *a = malloc(N), *b = malloc(N);
	struct pump p[2];
	struct conn k;
	uint32_t x = 12345;

	for (size_t i = 0; i < N; i++) {
		x = x * 1103515245 + 12345;
		a[i] = (unsigned char)(x >> 16);
		b[i] = (unsigned char)(x >> 8) ^ 0x5a;
	}
	handshake(&k, s, c);
	assert_int_equal(k.s.err, 0);
	assert_int_equal(k.c.err, 0);
	if (batched) {
		int small = 16384;

		for (int i = 0; i < 2; i++) {
			struct side *sd = i ? &k.c : &k.s;
			setsockopt(sd->fd, SOL_SOCKET, SO_SNDBUF, &small,
			    sizeof(small));
			assert_int_equal(tls_batch_io(sd->ssl, sd->fd,
					     64 * 1024),
			    0);
		}
	}
	pump_init(&p[0], k.base, k.s.ssl, k.s.fd, a, N, 0);
	pump_init(&p[1], k.base, k.c.ssl, k.c.fd, b, N, 0);
	assert_true(run_until(k.base, pumps_done, p, 20000));
	assert_int_equal(p[0].err, 0);
	assert_int_equal(p[1].err, 0);
	/* each side saw close_notify after all the other's bytes */
	assert_int_equal(evbuffer_get_length(p[1].in), N);
	assert_int_equal(evbuffer_get_length(p[0].in), N);
	assert_memory_equal(evbuffer_pullup(p[1].in, -1), a, N);
	assert_memory_equal(evbuffer_pullup(p[0].in, -1), b, N);
	assert_int_equal(tls_wpending(k.s.ssl), 0);
	assert_int_equal(tls_wpending(k.c.ssl), 0);
	pump_free(&p[0]);
	pump_free(&p[1]);
	conn_close(&k);
	free(a);
	free(b);
}

static void
test_io_8mib(void **state)
{
	struct tls_ctx *s = server_ctx(pki_a, NULL, 0);
	struct tls_ctx *c = client_ctx(pki_a, NULL, "localhost", NULL, NULL);
	struct conn k;

	io_both_ways(s, c, 0);
	io_both_ways(s, c, 1);

	/* batched writes to a peer that has gone: a clear error, at once
	 * or on the next call, never a hang */
	handshake(&k, s, c);
	{
		static char big[256 * 1024];
		struct evbuffer *out = evbuffer_new();
		ssize_t r = 0;
		int wr, i;

		assert_int_equal(tls_batch_io(k.s.ssl, k.s.fd, 65536), 0);
		close(k.c.fd);
		k.c.fd = -1;
		evbuffer_add(out, big, sizeof(big));
		for (i = 0; i < 8 && r >= 0; i++)
			r = tls_write_evbuffer(k.s.ssl, out, &wr);
		assert_true(r < 0);
		assert_int_equal(errno, EIO);
		assert_true(contains(tls_why(k.s.ssl), "Broken pipe") ||
		    contains(tls_why(k.s.ssl), "reset"));
		evbuffer_free(out);
	}
	conn_close(&k);

	/* plain EOF without close_notify reads as 0 too */
	handshake(&k, s, c);
	{
		char buf[16];
		struct iovec v = { buf, sizeof(buf) };
		int ww;

		shutdown(k.c.fd, SHUT_WR);
		assert_int_equal(tls_readv(k.s.ssl, &v, 1, &ww), 0);
	}
	conn_close(&k);
	tls_ctx_free(s);
	tls_ctx_free(c);
}

/* ---- reload ---- */

static void
test_reload(void **state)
{
	char live[512], pin_a[TLS_PIN_MAX], pin_r[TLS_PIN_MAX];
	char got[TLS_PIN_MAX], err[512];
	struct tls_ctx *s, *c;
	struct conn k1, k2;
	struct pump p[2];

	snprintf(live, sizeof(live), "%.255s/live", tmpdir);
	assert_int_equal(mkdir(live, 0700), 0);
	copy_file(P(pki_a, "server.pem"), P(live, "server.pem"));
	copy_file(P(pki_a, "server.key"), P(live, "server.key"));
	assert_int_equal(tls_cert_pin(P(pki_a, "server.pem"), pin_a,
	    sizeof(pin_a)), 0);
	assert_int_equal(tls_cert_pin(P(pki_r, "server.pem"), pin_r,
	    sizeof(pin_r)), 0);
	assert_string_not_equal(pin_a, pin_r);
	s = server_ctx(live, NULL, 0);
	c = client_ctx(pki_a, NULL, "localhost", NULL, NULL);

	handshake(&k1, s, c);
	assert_int_equal(k1.c.err, 0);
	assert_int_equal(tls_peer_pin(k1.c.ssl, got, sizeof(got)), 0);
	assert_string_equal(got, pin_a);

	copy_file(P(pki_r, "server.pem"), P(live, "server.pem"));
	copy_file(P(pki_r, "server.key"), P(live, "server.key"));
	assert_int_equal(tls_server_reload(s, err, sizeof(err)), 0);
	handshake(&k2, s, c);
	assert_int_equal(k2.c.err, 0);
	assert_int_equal(tls_peer_pin(k2.c.ssl, got, sizeof(got)), 0);
	assert_string_equal(got, pin_r);
	conn_close(&k2);

	/* a bad reload (key of another certificate) keeps the good one */
	copy_file(P(pki_b, "server.key"), P(live, "server.key"));
	assert_int_not_equal(tls_server_reload(s, err, sizeof(err)), 0);
	assert_true(contains(err, "does not match the certificate"));
	handshake(&k2, s, c);
	assert_int_equal(k2.c.err, 0);
	assert_int_equal(tls_peer_pin(k2.c.ssl, got, sizeof(got)), 0);
	assert_string_equal(got, pin_r);
	conn_close(&k2);

	/* the first connection still carries data on its old context */
	pump_init(&p[0], k1.base, k1.s.ssl, k1.s.fd, "hello", 5, 0);
	pump_init(&p[1], k1.base, k1.c.ssl, k1.c.fd, "world", 5, 0);
	assert_true(run_until(k1.base, pumps_done, p, 5000));
	assert_int_equal(evbuffer_get_length(p[1].in), 5);
	assert_memory_equal(evbuffer_pullup(p[1].in, -1), "hello", 5);
	assert_memory_equal(evbuffer_pullup(p[0].in, -1), "world", 5);
	pump_free(&p[0]);
	pump_free(&p[1]);
	conn_close(&k1);
	tls_ctx_free(s);
	tls_ctx_free(c);
}

/* ---- mgrok certs ---- */

static mode_t
mode_of(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return st.st_mode & 0777;
}

static void
test_certs_main(void **state)
{
	char dir[512], cmd[4096], pin1[TLS_PIN_MAX],
	    pin2[TLS_PIN_MAX], err[512];
	/* the options of `mgrok certs` are src/cli's (tested end to end) */
	struct tls_certs_opts o = { 0 };

	snprintf(dir, sizeof(dir), "%.255s/cli", tmpdir);
	o.out_dir = dir;
	o.hosts = "tunnel.example.com,127.0.0.1,::1";
	o.days = 30;
	assert_int_equal(tls_certs_generate(&o, err, sizeof(err)), 0);
	assert_int_equal(mode_of(P(dir, "ca.key")), 0600);
	assert_int_equal(mode_of(P(dir, "server.key")), 0600);
	assert_int_equal(mode_of(P(dir, "client.key")), 0600);
	assert_int_equal(mode_of(P(dir, "ca.pem")), 0644);
	assert_int_equal(mode_of(P(dir, "server.pem")), 0644);
	assert_int_equal(mode_of(P(dir, "client.pem")), 0644);

	snprintf(cmd, sizeof(cmd), "openssl verify -purpose sslserver "
	    "-CAfile %s/ca.pem %s/server.pem >/dev/null 2>&1", dir, dir);
	assert_int_equal(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "openssl verify -purpose sslclient "
	    "-CAfile %s/ca.pem %s/client.pem >/dev/null 2>&1", dir, dir);
	assert_int_equal(system(cmd), 0);
	/* the server certificate is not a client one, and vice versa */
	snprintf(cmd, sizeof(cmd), "openssl verify -purpose sslclient "
	    "-CAfile %s/ca.pem %s/server.pem >/dev/null 2>&1", dir, dir);
	assert_int_not_equal(system(cmd), 0);
	/* SANs, key type, basic constraints */
	snprintf(cmd, sizeof(cmd), "openssl x509 -noout -text -in "
	    "%s/server.pem | grep -q 'DNS:tunnel.example.com, IP Address:"
	    "127.0.0.1, IP Address:0:0:0:0:0:0:0:1'", dir);
	assert_int_equal(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "openssl x509 -noout -text -in "
	    "%s/ca.pem | grep -q 'CA:TRUE' && openssl x509 -noout -text -in "
	    "%s/server.pem | grep -q 'prime256v1'", dir, dir);
	assert_int_equal(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "openssl x509 -noout -subject -in "
	    "%s/client.pem | grep -q 'CN = mgrok-client'", dir);
	assert_int_equal(system(cmd), 0);

	/* refuses to overwrite, and leaves the files alone */
	assert_int_equal(tls_cert_pin(P(dir, "server.pem"), pin1,
	    sizeof(pin1)), 0);
	assert_int_not_equal(tls_certs_generate(&o, err, sizeof(err)), 0);
	assert_int_equal(tls_cert_pin(P(dir, "server.pem"), pin2,
	    sizeof(pin2)), 0);
	assert_string_equal(pin1, pin2);
	/* --force does */
	o.force = 1;
	assert_int_equal(tls_certs_generate(&o, err, sizeof(err)), 0);
	assert_int_equal(tls_cert_pin(P(dir, "server.pem"), pin2,
	    sizeof(pin2)), 0);
	assert_string_not_equal(pin1, pin2);
	assert_int_equal(mode_of(P(dir, "server.key")), 0600);

	/* bad input */
	o.hosts = "a b,c";
	assert_int_not_equal(tls_certs_generate(&o, err, sizeof(err)), 0);
}

/* ---- benchmark (no assertions on time: it prints) ---- */

/*
 * One way, client -> server, n bytes over TCP loopback; the client is a
 * forked process so encryption and decryption run on two cores as in a
 * real tunnel. Returns MiB/s seen by the receiver.
 */
static double
cpu_s(int who)
{
	struct rusage ru;

	getrusage(who, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	    (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

struct bench_res {
	double mibs, rx_cpu, tx_cpu; /* MiB/s; CPU seconds per GiB */
};

static void
bench_once(struct tls_ctx *s, struct tls_ctx *c, size_t n, int release,
    int read_ahead, struct bench_res *res)
{
	double c0 = cpu_s(RUSAGE_SELF), k0 = cpu_s(RUSAGE_CHILDREN);
	struct side sd = { 0 }, cd = { 0 };
	struct event_base *base;
	struct pump p;
	int fds[2], st;
	uint64_t t0 = 0, t1;
	pid_t pid;

	make_tcp_pair(fds);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		static unsigned char data[1 << 20];
		struct pump q;

		close(fds[0]);
		base = event_base_new();
		cd.ssl = tls_ssl_new(c, fds[1]);
		tls_handshake_start(base, cd.ssl, 0, 5, hs_done, &cd);
		while (!cd.done)
			event_base_loop(base, EVLOOP_ONCE);
		if (cd.err != 0)
			_exit(1);
		if (!release)
			SSL_clear_mode(cd.ssl, SSL_MODE_RELEASE_BUFFERS);
		SSL_set_read_ahead(cd.ssl, read_ahead);
		pump_init(&q, base, cd.ssl, fds[1], "", 0, 1);
		q.shut = 1; /* not before everything is queued */
		for (size_t sent = 0; sent < n; sent += sizeof(data)) {
			evbuffer_add_reference(q.out, data, sizeof(data), NULL,
			    NULL);
			while (evbuffer_get_length(q.out) > (4u << 20))
				event_base_loop(base, EVLOOP_ONCE);
			event_active(q.ev, EV_WRITE, 0);
		}
		q.shut = 0;
		event_active(q.ev, EV_WRITE, 0);
		while ((evbuffer_get_length(q.out) > 0 || !q.shut) && !q.err)
			event_base_loop(base, EVLOOP_ONCE);
		/* Linger until the receiver has it all and closes. */
		fcntl(fds[1], F_SETFL, 0);
		while (read(fds[1], data, sizeof(data)) > 0)
			;
		_exit(q.err);
	}
	close(fds[1]);
	base = event_base_new();
	sd.ssl = tls_ssl_new(s, fds[0]);
	tls_handshake_start(base, sd.ssl, 1, 5, hs_done, &sd);
	while (!sd.done)
		event_base_loop(base, EVLOOP_ONCE);
	assert_int_equal(sd.err, 0);
	if (!release)
		SSL_clear_mode(sd.ssl, SSL_MODE_RELEASE_BUFFERS);
	SSL_set_read_ahead(sd.ssl, read_ahead);
	pump_init(&p, base, sd.ssl, fds[0], "", 0, 1);
	while (!p.eof && !p.err) {
		event_base_loop(base, EVLOOP_ONCE);
		if (t0 == 0 && p.got > 0)
			t0 = wall_ms();
	}
	t1 = wall_ms();
	assert_int_equal(p.got, n);
	pump_free(&p);
	SSL_free(sd.ssl);
	close(fds[0]);
	event_base_free(base);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_int_equal(st, 0);
	res->mibs = (double)n / (1 << 20) / ((double)(t1 - t0 + 1) / 1000);
	res->rx_cpu = (cpu_s(RUSAGE_SELF) - c0) * (1 << 30) / (double)n;
	res->tx_cpu = (cpu_s(RUSAGE_CHILDREN) - k0) * (1 << 30) / (double)n;
}

static void
test_bench(void **state)
{
	const char *env = getenv("MGROK_TLS_BENCH");
	size_t n = (env != NULL ? (size_t)atoi(env) : 128) << 20;
	struct tls_ctx *s = server_ctx(pki_a, NULL, 0);
	struct tls_ctx *c = client_ctx(pki_a, NULL, "localhost", NULL, NULL);

	static const struct {
		const char *name;
		int release, read_ahead;
	} modes[] = {
		{ "release-buffers + read-ahead 64K (default)", 1, 1 },
		{ "no release-buffers + read-ahead 64K", 0, 1 },
		{ "release-buffers, no read-ahead", 1, 0 },
	};
	struct bench_res r;

	print_message("tls bench: %zu MiB one way over TCP loopback, sender "
	    "and receiver in two processes\n", n >> 20);
	for (int round = 0; round < 2; round++)
		for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
			bench_once(s, c, n, modes[i].release,
			    modes[i].read_ahead, &r);
			print_message("  %-44s %5.0f MiB/s, CPU s/GiB: receiver "
			    "%.2f sender %.2f\n", modes[i].name, r.mibs,
			    r.rx_cpu, r.tx_cpu);
		}
	tls_ctx_free(s);
	tls_ctx_free(c);
}

/* ---- the mux over TLS (tlsxprt.c) ---- */

struct tm_side {
	struct mux_stream *st;
	struct evbuffer *got;
	int closed, err;
};

static void
tm_readable(struct mux_stream *st, void *arg)
{
	struct tm_side *x = arg;
	size_t n = mux_stream_queued(st);

	evbuffer_remove_buffer(mux_stream_rx(st), x->got, n);
	mux_stream_consumed(st, n);
}

static void
tm_stream_closed(struct mux_stream *st, void *arg)
{
	((struct tm_side *)arg)->st = NULL;
}

static const struct mux_stream_cbs tm_stream_cbs = {
	.readable = tm_readable,
	.closed = tm_stream_closed,
};

static void
tm_accept(struct mux *m, struct mux_stream *st, void *arg)
{
	struct tm_side *x = arg;

	x->st = st;
	mux_stream_set_cbs(st, &tm_stream_cbs, x);
}

static void
tm_closed(struct mux *m, int err, void *arg)
{
	struct tm_side *x = arg;

	x->closed++;
	x->err = err;
}

static const struct mux_callbacks tm_cbs = { tm_accept, tm_closed };

struct tm_want {
	struct tm_side *x;
	size_t n;
};

static int
pred_closed_tm(void *arg)
{
	return ((struct tm_side *)arg)->closed > 0;
}

static int
tm_got(void *arg)
{
	struct tm_want *w = arg;

	return evbuffer_get_length(w->x->got) >= w->n;
}

/* A session over TLS through the mux's transport table: 4 MiB arrive
 * whole, the transport describes itself, and mux_free takes the SSL (the
 * test frees none) and sends close_notify, which the peer reads as the
 * orderly end of the session. */
static void
test_mux_over_tls(void **state)
{
	struct tls_ctx *s = server_ctx(pki_a, NULL, 0);
	struct tls_ctx *c = client_ctx(pki_a, NULL, "localhost", NULL, NULL);
	struct mux_config cfg;
	struct tm_side sx = { 0 }, cx = { 0 };
	struct tm_want w = { &sx, 4u << 20 };
	struct mux *ms, *mc;
	struct conn k;
	char buf[128];
	uint8_t *pat = malloc(w.n), *chk = malloc(w.n);

	handshake(&k, s, c);
	assert_int_equal(k.s.err + k.c.err, 0);
	mux_config_default(&cfg);
	sx.got = evbuffer_new();
	ms = mux_new_tls(k.base, k.s.fd, k.s.ssl, 0, &cfg, &tm_cbs, &sx);
	mc = mux_new_tls(k.base, k.c.fd, k.c.ssl, 1, &cfg, &tm_cbs, &cx);
	assert_non_null(mux_tls_params(mc, buf, sizeof(buf)));
	assert_true(contains(buf, "TLSv1.3"));
	assert_null(mux_tls_error(mc));
	cx.st = mux_stream_open(mc);
	assert_non_null(cx.st);
	mux_stream_set_cbs(cx.st, &tm_stream_cbs, &cx);
	for (size_t i = 0; i < w.n; i++)
		pat[i] = (uint8_t)(i * 7 + i / 4093);
	{
		struct evbuffer *src = evbuffer_new();
		uint64_t end = wall_ms() + 10000;

		evbuffer_add(src, pat, w.n);
		/* bounded: the window reopens as the server drains */
		while (evbuffer_get_length(src) > 0 && wall_ms() < end) {
			(void)mux_stream_send_buffer(cx.st, src);
			run_until(k.base, tm_got, &w, 5);
		}
		assert_int_equal(evbuffer_get_length(src), 0);
		evbuffer_free(src);
	}
	assert_true(run_until(k.base, tm_got, &w, 10000));
	assert_int_equal(evbuffer_remove(sx.got, chk, w.n), (int)w.n);
	assert_memory_equal(chk, pat, w.n);
	assert_int_equal(sx.closed + cx.closed, 0);
	mux_free(mc); /* close_notify, SSL_free, close */
	assert_true(run_until(k.base, pred_closed_tm, &sx, 5000));
	assert_int_equal(sx.err, MG_ECLOSED);
	mux_free(ms);
	event_base_free(k.base);
	evbuffer_free(sx.got);
	free(pat);
	free(chk);
	tls_ctx_free(s);
	tls_ctx_free(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pin_parse),
		cmocka_unit_test(test_ctx_errors),
		cmocka_unit_test(test_handshake_ca),
		cmocka_unit_test(test_other_ca),
		cmocka_unit_test(test_expired),
		cmocka_unit_test(test_name_mismatch),
		cmocka_unit_test(test_pin),
		cmocka_unit_test(test_mtls),
		cmocka_unit_test(test_tls12),
		cmocka_unit_test(test_alpn),
		cmocka_unit_test(test_not_tls_and_timeout),
		cmocka_unit_test(test_io_8mib),
		cmocka_unit_test(test_reload),
		cmocka_unit_test(test_certs_main),
		cmocka_unit_test(test_mux_over_tls),
		cmocka_unit_test(test_bench),
	};

	/* bounds every test: a hang is a failure, not a stuck CI */
	alarm(120);
	/* e.g. TEST_TLS_FILTER=test_bench */
	if (getenv("TEST_TLS_FILTER") != NULL)
		cmocka_set_test_filter(getenv("TEST_TLS_FILTER"));
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
