/* tls.c: OpenSSL contexts, verification, pinning, ALPN, the handshake
 * driver and the non-blocking I/O helpers of the mux. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tls/tls.h"
#include "tls/tls_int.h"
#include "util/err.h"
#include "util/log.h"
#include "util/loop.h"
#include "util/xmalloc.h"

/* TLS 1.2 suites: forward secrecy and AEAD only. TLS 1.3 uses OpenSSL's
 * default three (AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305). */
#define TLS12_CIPHERS \
	"ECDHE+AES128GCM:ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL"
/* AES-128-GCM first: 10 rounds against AES-256's 14 is about a third less
 * CPU per byte on the bulk path, at a security level that is ample (ssh's
 * aes128-gcm, TLS 1.3's mandatory suite); ChaCha20 still wins on CPUs
 * without AES instructions (SSL_OP_PRIORITIZE_CHACHA). */
#define TLS13_SUITES \
	"TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:" \
	"TLS_AES_256_GCM_SHA384"
#define TLS_GROUPS "X25519:P-256:P-384"

/* OpenSSL reads up to this much from the socket at once (read-ahead): one
 * read(2) then brings several 16 KiB records, not two reads per record. */
#define TLS_READ_BUF (64 * 1024)

struct tls_ctx {
	int is_server;
	int dgram;                  /* DTLS 1.2 (dtls.c) */
	void (*setup)(SSL_CTX *sc); /* dtls.c's extra settings, or NULL */
	SSL_CTX *ssl_ctx;
	/* server: what reload reads again */
	char *cert, *key, *client_ca;
	int client_auth;
	/* client */
	char *server_name; /* NULL: no name check */
	int name_is_ip;
	int has_pin;
	unsigned char pin[32];
	int ca_given;
	int has_cert;
	unsigned char *alpn_wire; /* length-prefixed list, or NULL */
	size_t alpn_len;
};

/* Per-SSL state (ex_data): copies, so an SSL never depends on its tls_ctx
 * staying alive (a reload frees the old context's tls_ctx side). */
struct tls_conn {
	int is_server;
	int has_pin, name_is_ip, ca_given, has_cert;
	unsigned char pin[32];
	char name[256];
	/* the first verification failure the verify callback saw */
	int verr, vdepth, pin_mismatch;
	char vinfo[128];
	char why[400];
	int why_sys;    /* why came from a system call error, not TLS */
	char alpn[256]; /* a selected ALPN name not in our tables */
};

static pthread_once_t conn_idx_once = PTHREAD_ONCE_INIT;
static int conn_idx = -1;

static void
conn_exfree(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
    void *argp)
{
	free(ptr);
}

static void
conn_idx_init(void)
{
	conn_idx = SSL_get_ex_new_index(0, "mgrok tls_conn", NULL, NULL,
	    conn_exfree);
}

static struct tls_conn *
conn_of(SSL *ssl)
{
	pthread_once(&conn_idx_once, conn_idx_init);
	if (ssl == NULL || conn_idx < 0)
		return NULL;
	return SSL_get_ex_data(ssl, conn_idx);
}

void
tls_errf(char *err, size_t cap, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || cap == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, cap, fmt, ap);
	va_end(ap);
}

/* The deepest OpenSSL reason on the queue, for messages that have nothing
 * better to say; clears the queue. */
static void
ossl_reason(char *buf, size_t cap)
{
	unsigned long e, last = 0;

	while ((e = ERR_get_error()) != 0)
		last = e;
	if (last == 0) {
		snprintf(buf, cap, "unknown error");
		return;
	}
	const char *r = ERR_reason_error_string(last);
	snprintf(buf, cap, "%s", r != NULL ? r : "unknown error");
}

static void
hexstr(const unsigned char *md, size_t n, char *out)
{
	static const char hx[] = "0123456789ABCDEF";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hx[md[i] >> 4];
		out[2 * i + 1] = hx[md[i] & 15];
	}
	out[2 * n] = '\0';
}

static int
cert_pin_str(X509 *x, char *out, size_t cap)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (cap < TLS_PIN_MAX)
		return MG_ENOSPC;
	if (!X509_digest(x, EVP_sha256(), md, &mdlen) || mdlen != 32)
		return MG_EIO;
	memcpy(out, "sha256:", 7);
	hexstr(md, 32, out + 7);
	return 0;
}

int
tls_pin_parse(const char *s, unsigned char md[32])
{
	size_t n = 0;

	if (s == NULL || strncasecmp(s, "sha256:", 7) != 0)
		return MG_EINVAL;
	s += 7;
	while (*s != '\0') {
		int hi, lo;

		if (*s == ':') {
			s++;
			continue;
		}
		if (!isxdigit((unsigned char)s[0]) ||
		    !isxdigit((unsigned char)s[1]) || n == 32)
			return MG_EINVAL;
		hi = isdigit((unsigned char)s[0]) ? s[0] - '0' :
		    tolower((unsigned char)s[0]) - 'a' + 10;
		lo = isdigit((unsigned char)s[1]) ? s[1] - '0' :
		    tolower((unsigned char)s[1]) - 'a' + 10;
		md[n++] = (unsigned char)(hi << 4 | lo);
		s += 2;
	}
	return n == 32 ? 0 : MG_EINVAL;
}

static int
is_ip_literal(const char *s)
{
	unsigned char buf[16];

	return inet_pton(AF_INET, s, buf) == 1 ||
	    inet_pton(AF_INET6, s, buf) == 1;
}

/* An encrypted key must fail with a message, never prompt on a terminal. */
static int
no_passphrase(char *buf, int size, int rwflag, void *u)
{
	return -1;
}

/* Can the user's file be opened? The errno text is what people recognise. */
static int
check_file(const char *flag, const char *path, char *err, size_t errcap)
{
	FILE *f = fopen(path, "r");

	if (f == NULL) {
		tls_errf(err, errcap, "%s %s: %s", flag, path, strerror(errno));
		return MG_EIO;
	}
	fclose(f);
	return 0;
}

static SSL_CTX *
ctx_base(int is_server, int dgram, char *err, size_t errcap)
{
	SSL_CTX *sc;
	char why[160];

	if (dgram)
		sc = SSL_CTX_new(is_server ? DTLS_server_method() :
		    DTLS_client_method());
	else
		sc = SSL_CTX_new(is_server ? TLS_server_method() :
		    TLS_client_method());
	if (sc == NULL) {
		ossl_reason(why, sizeof(why));
		tls_errf(err, errcap, "TLS: cannot create a context: %s", why);
		return NULL;
	}
	if (dgram) {
		SSL_CTX_set_min_proto_version(sc, DTLS1_2_VERSION);
		SSL_CTX_set_max_proto_version(sc, DTLS1_2_VERSION);
	} else
		SSL_CTX_set_min_proto_version(sc, TLS1_2_VERSION);
	SSL_CTX_set_options(sc, SSL_OP_NO_COMPRESSION |
	    SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
	    SSL_OP_PRIORITIZE_CHACHA | SSL_OP_NO_TICKET |
	    SSL_OP_IGNORE_UNEXPECTED_EOF);
	/*
	 * RELEASE_BUFFERS: an idle connection holds no 16 KiB+ record buffers
	 * (the tunnel idles most of the time). The loopback benchmark in
	 * tests/unit/test_tls.c shows no measurable cost on bulk transfer.
	 */
	SSL_CTX_set_mode(sc, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_read_ahead(sc, 1);
	SSL_CTX_set_default_read_buffer_len(sc, TLS_READ_BUF);
	SSL_CTX_set_session_cache_mode(sc, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(sc, 0);
	SSL_CTX_set_default_passwd_cb(sc, no_passphrase);
	if (!SSL_CTX_set_cipher_list(sc, TLS12_CIPHERS) ||
	    (!dgram && !SSL_CTX_set_ciphersuites(sc, TLS13_SUITES)) ||
	    !SSL_CTX_set1_groups_list(sc, TLS_GROUPS)) {
		ossl_reason(why, sizeof(why));
		tls_errf(err, errcap, "TLS: cipher set-up failed: %s", why);
		SSL_CTX_free(sc);
		return NULL;
	}
	return sc;
}

/* Certificate chain and key, checked to belong together. */
static int
load_cert_key(SSL_CTX *sc, const char *cert, const char *key, char *err,
    size_t errcap)
{
	char why[160];
	int rc;

	if ((rc = check_file("--tls-cert", cert, err, errcap)) != 0 ||
	    (rc = check_file("--tls-key", key, err, errcap)) != 0)
		return rc;
	ERR_clear_error();
	if (SSL_CTX_use_certificate_chain_file(sc, cert) != 1) {
		ossl_reason(why, sizeof(why));
		tls_errf(err, errcap, "--tls-cert %s: not a PEM certificate (%s)",
		    cert, why);
		return MG_EINVAL;
	}
	if (SSL_CTX_use_PrivateKey_file(sc, key, SSL_FILETYPE_PEM) != 1) {
		unsigned long e = ERR_peek_last_error();

		ossl_reason(why, sizeof(why));
		if (ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)
			tls_errf(err, errcap, "--tls-key %s does not match the "
			    "certificate in --tls-cert %s", key, cert);
		else
			tls_errf(err, errcap, "--tls-key %s: not an unencrypted "
			    "PEM private key (%s)", key, why);
		return MG_EINVAL;
	}
	if (SSL_CTX_check_private_key(sc) != 1) {
		ERR_clear_error();
		tls_errf(err, errcap, "--tls-key %s does not match the certificate "
		    "in --tls-cert %s", key, cert);
		return MG_EINVAL;
	}
	return 0;
}

static int
load_ca(SSL_CTX *sc, const char *flag, const char *path, char *err,
    size_t errcap)
{
	char why[160];
	int rc;

	if ((rc = check_file(flag, path, err, errcap)) != 0)
		return rc;
	ERR_clear_error();
	if (SSL_CTX_load_verify_locations(sc, path, NULL) != 1) {
		ossl_reason(why, sizeof(why));
		tls_errf(err, errcap, "%s %s: no PEM certificates in it (%s)",
		    flag, path, why);
		return MG_EINVAL;
	}
	return 0;
}

static int verify_cb(int ok, X509_STORE_CTX *xs);

/* Server ALPN: the first protocol in the client's list that we serve.
 * A client offering only others is refused (no_application_protocol)
 * rather than silently treated as a tunnel session. */
static int
alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
    const unsigned char *in, unsigned int inlen, void *arg)
{
	static const char *const ours[] = { TLS_ALPN_TUNNEL, TLS_ALPN_STREAM,
		TLS_ALPN_HTTP };

	for (unsigned int i = 0; i < inlen;) {
		unsigned int l = in[i];

		if (i + 1 + l > inlen)
			break;
		for (size_t k = 0; k < sizeof(ours) / sizeof(ours[0]); k++) {
			if (strlen(ours[k]) == l &&
			    memcmp(ours[k], in + i + 1, l) == 0) {
				*out = in + i + 1;
				*outlen = (unsigned char)l;
				return SSL_TLSEXT_ERR_OK;
			}
		}
		i += 1 + l;
	}
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

static int
server_ssl_ctx(const struct tls_ctx *c, SSL_CTX **out, char *err,
    size_t errcap)
{
	SSL_CTX *sc = ctx_base(1, c->dgram, err, errcap);
	int rc;

	if (sc == NULL)
		return MG_EIO;
	if ((rc = load_cert_key(sc, c->cert, c->key, err, errcap)) != 0)
		goto fail;
	if (c->client_ca != NULL) {
		STACK_OF(X509_NAME) *names;
		int mode = SSL_VERIFY_PEER;

		if ((rc = load_ca(sc, "--tls-client-ca", c->client_ca, err,
		    errcap)) != 0)
			goto fail;
		names = SSL_load_client_CA_file(c->client_ca);
		if (names != NULL)
			SSL_CTX_set_client_CA_list(sc, names);
		ERR_clear_error();
		if (c->client_auth == TLS_CLIENT_AUTH_REQUIRE)
			mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
		SSL_CTX_set_verify(sc, mode, verify_cb);
		SSL_CTX_set_verify_depth(sc, 8);
	}
	SSL_CTX_set_alpn_select_cb(sc, alpn_select, NULL);
	if (c->setup != NULL)
		c->setup(sc);
	*out = sc;
	return 0;
fail:
	SSL_CTX_free(sc);
	return rc;
}

static int
opt_missing(const char *s)
{
	return s == NULL || *s == '\0';
}

static int
server_ctx_new(const struct tls_server_opts *o, int dgram,
    void (*setup)(SSL_CTX *), struct tls_ctx **out, char *err, size_t errcap)
{
	struct tls_ctx *c = NULL;
	int rc = MG_EINVAL;

	*out = NULL;
	if (opt_missing(o->cert) || opt_missing(o->key)) {
		tls_errf(err, errcap, "--tls needs --tls-cert and --tls-key");
		goto out;
	}
	if (o->client_auth != TLS_CLIENT_AUTH_NONE &&
	    opt_missing(o->client_ca)) {
		tls_errf(err, errcap, "--tls-client-auth needs --tls-client-ca");
		goto out;
	}
	c = xcalloc(1, sizeof(*c));
	c->is_server = 1;
	c->dgram = dgram;
	c->setup = setup;
	c->cert = xstrdup(o->cert);
	c->key = xstrdup(o->key);
	if (!opt_missing(o->client_ca)) {
		c->client_ca = xstrdup(o->client_ca);
		c->client_auth = o->client_auth == TLS_CLIENT_AUTH_OPTIONAL ?
		    TLS_CLIENT_AUTH_OPTIONAL : TLS_CLIENT_AUTH_REQUIRE;
	}
	if ((rc = server_ssl_ctx(c, &c->ssl_ctx, err, errcap)) != 0)
		goto out;
	*out = c;
	c = NULL;
	rc = 0;
out:
	tls_ctx_free(c);
	return rc;
}

int
tls_server_reload(struct tls_ctx *c, char *err, size_t errcap)
{
	SSL_CTX *sc = NULL;
	int rc;

	if (c == NULL || !c->is_server) {
		tls_errf(err, errcap, "not a TLS server context");
		return MG_EINVAL;
	}
	if ((rc = server_ssl_ctx(c, &sc, err, errcap)) != 0)
		return rc;
	/* Live SSLs hold their own reference to the old SSL_CTX. */
	SSL_CTX_free(c->ssl_ctx);
	c->ssl_ctx = sc;
	return 0;
}

int
tls_server_ctx_new(const struct tls_server_opts *o, struct tls_ctx **out,
    char *err, size_t errcap)
{
	return server_ctx_new(o, 0, NULL, out, err, errcap);
}

static int
client_ctx_new(const struct tls_client_opts *o, int dgram,
    void (*setup)(SSL_CTX *), struct tls_ctx **out, char *err, size_t errcap)
{
	struct tls_ctx *c = NULL;
	const char *alpn;
	int rc = MG_EINVAL;

	*out = NULL;
	if (opt_missing(o->cert) != opt_missing(o->key)) {
		tls_errf(err, errcap, "--tls-cert and --tls-key go together");
		goto out;
	}
	c = xcalloc(1, sizeof(*c));
	c->dgram = dgram;
	c->setup = setup;
	if (!opt_missing(o->pin)) {
		if (tls_pin_parse(o->pin, c->pin) != 0) {
			tls_errf(err, errcap, "--tls-pin %s: expected sha256: "
			    "and 64 hex digits", o->pin);
			goto out;
		}
		c->has_pin = 1;
	}
	if (!opt_missing(o->server_name)) {
		if (strlen(o->server_name) > 255) {
			tls_errf(err, errcap, "--tls-server-name: too long");
			goto out;
		}
		c->server_name = xstrdup(o->server_name);
		c->name_is_ip = is_ip_literal(o->server_name);
	}
	alpn = o->alpn != NULL ? o->alpn : TLS_ALPN_TUNNEL;
	if (*alpn != '\0') {
		size_t l = strlen(alpn);

		if (l > 255) {
			tls_errf(err, errcap, "ALPN protocol name too long");
			goto out;
		}
		c->alpn_wire = xmalloc(l + 1);
		c->alpn_wire[0] = (unsigned char)l;
		memcpy(c->alpn_wire + 1, alpn, l);
		c->alpn_len = l + 1;
	}
	if ((c->ssl_ctx = ctx_base(0, dgram, err, errcap)) == NULL)
		goto out;
	if (!opt_missing(o->ca)) {
		if ((rc = load_ca(c->ssl_ctx, "--tls-ca", o->ca, err,
		    errcap)) != 0)
			goto out;
		c->ca_given = 1;
	} else if (!c->has_pin) {
		SSL_CTX_set_default_verify_paths(c->ssl_ctx);
		ERR_clear_error();
	}
	if (!opt_missing(o->cert)) {
		if ((rc = load_cert_key(c->ssl_ctx, o->cert, o->key, err,
		    errcap)) != 0)
			goto out;
		c->has_cert = 1;
	}
	SSL_CTX_set_verify(c->ssl_ctx, SSL_VERIFY_PEER, verify_cb);
	SSL_CTX_set_verify_depth(c->ssl_ctx, 8);
	if (setup != NULL)
		setup(c->ssl_ctx);
	*out = c;
	c = NULL;
	rc = 0;
out:
	tls_ctx_free(c);
	return rc;
}

int
tls_client_ctx_new(const struct tls_client_opts *o, struct tls_ctx **out,
    char *err, size_t errcap)
{
	return client_ctx_new(o, 0, NULL, out, err, errcap);
}

int
tls_dgram_server_ctx_new(const struct tls_server_opts *o,
    void (*setup)(SSL_CTX *), struct tls_ctx **out, char *err, size_t errcap)
{
	return server_ctx_new(o, 1, setup, out, err, errcap);
}

int
tls_dgram_client_ctx_new(const struct tls_client_opts *o,
    void (*setup)(SSL_CTX *), struct tls_ctx **out, char *err, size_t errcap)
{
	return client_ctx_new(o, 1, setup, out, err, errcap);
}

void
tls_ctx_free(struct tls_ctx *c)
{
	if (c == NULL)
		return;
	SSL_CTX_free(c->ssl_ctx);
	free(c->cert);
	free(c->key);
	free(c->client_ca);
	free(c->server_name);
	free(c->alpn_wire);
	free(c);
}

static SSL *ssl_new(struct tls_ctx *c, int fd, const char *name);

SSL *
tls_ssl_new(struct tls_ctx *c, int fd)
{
	return ssl_new(c, fd, c->server_name);
}

SSL *
tls_ssl_new_name(struct tls_ctx *c, int fd, const char *name)
{
	if (name == NULL || strlen(name) > 255)
		return NULL;
	return ssl_new(c, fd, name);
}

static SSL *
ssl_new(struct tls_ctx *c, int fd, const char *name)
{
	SSL *ssl;
	struct tls_conn *tc;
	int name_is_ip = name != NULL && is_ip_literal(name);

	pthread_once(&conn_idx_once, conn_idx_init);
	if (conn_idx < 0 || (ssl = SSL_new(c->ssl_ctx)) == NULL)
		return NULL;
	tc = xcalloc(1, sizeof(*tc));
	tc->is_server = c->is_server;
	if (!SSL_set_ex_data(ssl, conn_idx, tc)) {
		free(tc);
		goto fail;
	}
	if (!SSL_set_fd(ssl, fd))
		goto fail;
	if (c->is_server) {
		SSL_set_accept_state(ssl);
		return ssl;
	}
	tc->has_pin = c->has_pin;
	memcpy(tc->pin, c->pin, sizeof(tc->pin));
	tc->ca_given = c->ca_given;
	tc->has_cert = c->has_cert;
	if (name != NULL) {
		snprintf(tc->name, sizeof(tc->name), "%s", name);
		tc->name_is_ip = name_is_ip;
		if (!name_is_ip && !SSL_set_tlsext_host_name(ssl, name))
			goto fail;
		/* A pin names the exact certificate: no name check then. */
		if (!c->has_pin) {
			if (name_is_ip) {
				if (!X509_VERIFY_PARAM_set1_ip_asc(
				    SSL_get0_param(ssl), name))
					goto fail;
			} else if (!SSL_set1_host(ssl, name))
				goto fail;
		}
	}
	if (c->alpn_wire != NULL &&
	    SSL_set_alpn_protos(ssl, c->alpn_wire, (unsigned)c->alpn_len) != 0)
		goto fail;
	SSL_set_connect_state(ssl);
	return ssl;
fail:
	ERR_clear_error();
	SSL_free(ssl);
	return NULL;
}

/*
 * Verification. With a pin, only the leaf's digest counts (chain, expiry
 * and name are the pin's business). Otherwise OpenSSL's verdict stands and
 * the first failure is noted for the message.
 */
static int
verify_cb(int ok, X509_STORE_CTX *xs)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(xs,
	    SSL_get_ex_data_X509_STORE_CTX_idx());
	struct tls_conn *tc = conn_of(ssl);
	int depth = X509_STORE_CTX_get_error_depth(xs);
	X509 *cur = X509_STORE_CTX_get_current_cert(xs);

	if (tc == NULL)
		return ok;
	if (tc->has_pin) {
		unsigned char md[EVP_MAX_MD_SIZE];
		unsigned int mdlen = 0;

		if (depth != 0)
			return 1;
		if (cur != NULL && X509_digest(cur, EVP_sha256(), md, &mdlen) &&
		    mdlen == 32 && CRYPTO_memcmp(md, tc->pin, 32) == 0) {
			X509_STORE_CTX_set_error(xs, X509_V_OK);
			return 1;
		}
		if (!tc->pin_mismatch) {
			tc->pin_mismatch = 1;
			if (cur == NULL || cert_pin_str(cur, tc->vinfo,
			    sizeof(tc->vinfo)) != 0)
				snprintf(tc->vinfo, sizeof(tc->vinfo), "?");
		}
		X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
		return 0;
	}
	if (!ok && tc->verr == 0) {
		int e = X509_STORE_CTX_get_error(xs);

		tc->verr = e;
		tc->vdepth = depth;
		tc->vinfo[0] = '\0';
		if (cur != NULL && (e == X509_V_ERR_CERT_HAS_EXPIRED ||
		    e == X509_V_ERR_CERT_NOT_YET_VALID)) {
			const ASN1_TIME *t = e == X509_V_ERR_CERT_HAS_EXPIRED ?
			    X509_get0_notAfter(cur) : X509_get0_notBefore(cur);
			BIO *b = BIO_new(BIO_s_mem());

			if (b != NULL && ASN1_TIME_print(b, t)) {
				int n = BIO_read(b, tc->vinfo,
				    (int)sizeof(tc->vinfo) - 1);
				tc->vinfo[n > 0 ? n : 0] = '\0';
			}
			BIO_free(b);
		}
	}
	return ok;
}

/* The sentence for a verification failure noted by verify_cb. */
static void
why_verify(struct tls_conn *tc, long vres, char *out, size_t cap)
{
	const char *who = tc->is_server ? "the client's certificate" :
	    "the server's certificate";
	const char *ca = tc->is_server ? "the CA in --tls-client-ca" :
	    tc->ca_given ? "the CA in --tls-ca" : "a CA in the system roots";
	const char *hint = !tc->is_server && !tc->ca_given ?
	    " (use --tls-ca or --tls-pin)" : "";
	int e = tc->verr != 0 ? tc->verr : (int)vres;
	int leaf = tc->verr == 0 || tc->vdepth == 0;

	if (tc->pin_mismatch) {
		snprintf(out, cap, "the server's certificate %s does not "
		    "match --tls-pin", tc->vinfo);
		return;
	}
	switch (e) {
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
	case X509_V_ERR_CERT_SIGNATURE_FAILURE:
		snprintf(out, cap, "%s is not signed by %s%s (%s)", who, ca,
		    hint, X509_verify_cert_error_string(e));
		return;
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
		snprintf(out, cap, "%s is self-signed and not trusted "
		    "(%s)", who, tc->is_server ? "not in --tls-client-ca" :
		    "use --tls-pin, or --tls-ca with it");
		return;
	case X509_V_ERR_CERT_HAS_EXPIRED:
		snprintf(out, cap, "%s%s has expired (notAfter %s)",
		    leaf ? who : "the CA certificate of ",
		    leaf ? "" : who, tc->vinfo);
		return;
	case X509_V_ERR_CERT_NOT_YET_VALID:
		snprintf(out, cap, "%s%s is not valid yet (notBefore %s; "
		    "check the clock)", leaf ? who : "the CA certificate of ",
		    leaf ? "" : who, tc->vinfo);
		return;
	case X509_V_ERR_HOSTNAME_MISMATCH:
	case X509_V_ERR_IP_ADDRESS_MISMATCH:
		snprintf(out, cap, "the server's certificate does not match "
		    "the name %s (use --tls-server-name)", tc->name);
		return;
	case X509_V_ERR_INVALID_PURPOSE:
		snprintf(out, cap, "%s is not for %s use (extendedKeyUsage)",
		    who, tc->is_server ? "client" : "server");
		return;
	default:
		snprintf(out, cap, "%s failed verification: %s", who,
		    X509_verify_cert_error_string(e));
	}
}

/*
 * Make tc->why from the state after a failed SSL call: the verification
 * note first, then the OpenSSL error queue (alerts from the peer, protocol
 * errors), then errno. Clears the error queue. Returns an MG_E* code.
 */
static int
conn_fail(SSL *ssl, struct tls_conn *tc, int sslerr, int sys_errno)
{
	unsigned long e, first = 0;
	const char *peer = tc->is_server ? "the client" : "the server";
	char *out = tc->why;
	size_t cap = sizeof(tc->why);
	long vres = SSL_get_verify_result(ssl);
	int reason;

	while ((e = ERR_get_error()) != 0)
		if (first == 0 && ERR_GET_LIB(e) == ERR_LIB_SSL)
			first = e;
	reason = first != 0 ? ERR_GET_REASON(first) : 0;

	if (tc->pin_mismatch || ((reason == SSL_R_CERTIFICATE_VERIFY_FAILED ||
	    tc->verr != 0) && (tc->verr != 0 || vres != X509_V_OK))) {
		why_verify(tc, vres, out, cap);
		return MG_EAUTH;
	}
	switch (reason) {
	case 0:
		break;
	case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
		snprintf(out, cap, tc->has_cert ? "the server requires a "
		    "client certificate and did not accept ours" :
		    "the server requires a client certificate "
		    "(--tls-cert/--tls-key)");
		return MG_EAUTH;
	case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
		snprintf(out, cap, "client sent no certificate");
		return MG_EAUTH;
	case SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE:
		/* TLS 1.2 servers refuse a missing certificate this way. */
		snprintf(out, cap, "%s refused the handshake (TLS alert "
		    "handshake failure)%s", peer, !tc->is_server &&
		    !tc->has_cert ? ": it may require a client certificate "
		    "(--tls-cert/--tls-key)" : "");
		return MG_EAUTH;
	case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
	case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
	case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
	case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
	case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
	case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
	case SSL_R_TLSV1_ALERT_DECRYPT_ERROR:
		snprintf(out, cap, "%s rejected our certificate (TLS alert "
		    "%s)", peer, SSL_alert_desc_string_long(reason -
		    SSL_AD_REASON_OFFSET));
		return MG_EAUTH;
	case SSL_R_TLSV1_ALERT_NO_APPLICATION_PROTOCOL:
		snprintf(out, cap, "the server does not serve the ALPN "
		    "protocol we asked for");
		return MG_EPROTO;
	case SSL_R_NO_APPLICATION_PROTOCOL:
		snprintf(out, cap, "the client asked for an ALPN protocol we "
		    "do not serve");
		return MG_EPROTO;
	case SSL_R_WRONG_VERSION_NUMBER:
	case SSL_R_HTTP_REQUEST:
	case SSL_R_HTTPS_PROXY_REQUEST:
	case SSL_R_PACKET_LENGTH_TOO_LONG:
	case SSL_R_RECORD_LENGTH_MISMATCH:
		snprintf(out, cap, "%s does not speak TLS (%s)", peer,
		    tc->is_server ? "a plain client on a --tls server?" :
		    "is the server running with --tls?");
		return MG_EPROTO;
	case SSL_R_UNSUPPORTED_PROTOCOL:
	case SSL_R_NO_SHARED_CIPHER:
	case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
	case SSL_R_NO_PROTOCOLS_AVAILABLE:
	case SSL_R_NO_SUITABLE_KEY_SHARE:
	case SSL_R_NO_SHARED_GROUPS:
		snprintf(out, cap, "no TLS version or cipher in common with %s "
		    "(TLS 1.2+ with ECDHE and AES-GCM or ChaCha20 is required)",
		    peer);
		return MG_EPROTO;
	case SSL_R_UNEXPECTED_EOF_WHILE_READING:
		snprintf(out, cap, "%s closed the connection during the TLS "
		    "handshake", peer);
		return MG_ECLOSED;
	default:
		if (reason > SSL_AD_REASON_OFFSET &&
		    reason < SSL_AD_REASON_OFFSET + 256)
			snprintf(out, cap, "%s sent TLS alert %s", peer,
			    SSL_alert_desc_string_long(reason -
			    SSL_AD_REASON_OFFSET));
		else
			snprintf(out, cap, "TLS error: %s",
			    ERR_reason_error_string(first) != NULL ?
			    ERR_reason_error_string(first) : "unknown");
		return MG_EPROTO;
	}
	if (sslerr == SSL_ERROR_SYSCALL && sys_errno != 0) {
		snprintf(out, cap, "TLS: %s", strerror(sys_errno));
		return MG_EIO;
	}
	snprintf(out, cap, "%s closed the connection%s", peer,
	    SSL_is_init_finished(ssl) ? "" : " during the TLS handshake");
	return MG_ECLOSED;
}

const char *
tls_why(SSL *ssl)
{
	struct tls_conn *tc = conn_of(ssl);

	return tc != NULL ? tc->why : "";
}

/* ---- the handshake driver ---- */

struct tls_hs {
	SSL *ssl;
	struct tls_conn *tc;
	struct event *io, *timer;
	unsigned timeout_s;
	void (*done)(SSL *, int, const char *, void *);
	void *arg;
};

static void hs_io(evutil_socket_t fd, short what, void *arg);

static void
hs_finish(struct tls_hs *hs, int err)
{
	event_free(hs->io);
	event_free(hs->timer);
	hs->io = hs->timer = NULL;
	if (err == 0)
		hs->tc->why[0] = '\0';
	else
		log_debug("TLS handshake (%s) failed: %s", hs->tc->is_server ?
		    "server" : "client", hs->tc->why);
	hs->done(hs->ssl, err, hs->tc->why, hs->arg);
	free(hs);
}

/* A pinned client checks the leaf itself too, so a chain on which OpenSSL
 * never consulted the callback for depth 0 cannot slip through. */
static int
pin_recheck(struct tls_hs *hs)
{
	X509 *peer = SSL_get0_peer_certificate(hs->ssl);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (peer != NULL && X509_digest(peer, EVP_sha256(), md, &mdlen) &&
	    mdlen == 32 && CRYPTO_memcmp(md, hs->tc->pin, 32) == 0)
		return 0;
	hs->tc->pin_mismatch = 1;
	if (peer == NULL || cert_pin_str(peer, hs->tc->vinfo,
	    sizeof(hs->tc->vinfo)) != 0)
		snprintf(hs->tc->vinfo, sizeof(hs->tc->vinfo), "(none)");
	why_verify(hs->tc, X509_V_OK, hs->tc->why, sizeof(hs->tc->why));
	return MG_EAUTH;
}

static void
hs_step(struct tls_hs *hs)
{
	struct timeval tv;
	int r, e, sys;
	short want;

	ERR_clear_error();
	errno = 0;
	r = SSL_do_handshake(hs->ssl);
	sys = errno;
	if (r == 1) {
		if (!hs->tc->is_server && hs->tc->has_pin &&
		    pin_recheck(hs) != 0) {
			hs_finish(hs, MG_EAUTH);
			return;
		}
		hs_finish(hs, 0);
		return;
	}
	e = SSL_get_error(hs->ssl, r);
	if (e == SSL_ERROR_WANT_READ)
		want = EV_READ;
	else if (e == SSL_ERROR_WANT_WRITE)
		want = EV_WRITE;
	else {
		hs_finish(hs, conn_fail(hs->ssl, hs->tc, e, sys));
		return;
	}
	event_del(hs->io);
	event_assign(hs->io, event_get_base(hs->io), SSL_get_fd(hs->ssl), want,
	    hs_io, hs);
	/* DTLS: wake up when its retransmission timer runs out. */
	if (SSL_is_dtls(hs->ssl) && DTLSv1_get_timeout(hs->ssl, &tv))
		event_add(hs->io, &tv);
	else
		event_add(hs->io, NULL);
}

static void
hs_io(evutil_socket_t fd, short what, void *arg)
{
	struct tls_hs *hs = arg;

	loop_note_io();
	if ((what & EV_TIMEOUT) && SSL_is_dtls(hs->ssl)) {
		ERR_clear_error();
		if (DTLSv1_handle_timeout(hs->ssl) < 0) {
			hs_finish(hs, conn_fail(hs->ssl, hs->tc,
			    SSL_ERROR_SSL, 0));
			return;
		}
	}
	hs_step(hs);
}

static void
hs_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct tls_hs *hs = arg;

	snprintf(hs->tc->why, sizeof(hs->tc->why), "TLS handshake timed out "
	    "after %u s", hs->timeout_s);
	hs_finish(hs, MG_ETIMEDOUT);
}

struct tls_hs *
tls_handshake_start(struct event_base *base, SSL *ssl, int is_server,
    unsigned timeout_s, void (*done)(SSL *ssl, int err, const char *why,
    void *arg), void *arg)
{
	struct tls_conn *tc = conn_of(ssl);
	struct tls_hs *hs;
	struct timeval tv = { timeout_s, 0 };

	if (tc == NULL || done == NULL || SSL_get_fd(ssl) < 0)
		return NULL;
	if (tc->is_server != (is_server != 0))
		return NULL;
	hs = xcalloc(1, sizeof(*hs));
	hs->ssl = ssl;
	hs->tc = tc;
	hs->timeout_s = timeout_s;
	hs->done = done;
	hs->arg = arg;
	hs->io = event_new(base, SSL_get_fd(ssl), EV_WRITE, hs_io, hs);
	hs->timer = evtimer_new(base, hs_timeout, hs);
	if (hs->io == NULL || hs->timer == NULL ||
	    evtimer_add(hs->timer, &tv) != 0) {
		tls_handshake_cancel(hs);
		return NULL;
	}
	/* First step from the loop, so done never runs inside this call. */
	event_active(hs->io, EV_WRITE, 0);
	return hs;
}

void
tls_handshake_cancel(struct tls_hs *hs)
{
	if (hs == NULL)
		return;
	if (hs->io != NULL)
		event_free(hs->io);
	if (hs->timer != NULL)
		event_free(hs->timer);
	free(hs);
}

const char *
tls_alpn(SSL *ssl)
{
	static const char *const known[] = { TLS_ALPN_TUNNEL, TLS_ALPN_STREAM,
		TLS_ALPN_HTTP };
	const unsigned char *p = NULL;
	unsigned int len = 0;
	struct tls_conn *tc;

	SSL_get0_alpn_selected(ssl, &p, &len);
	if (p == NULL || len == 0)
		return "";
	for (size_t k = 0; k < sizeof(known) / sizeof(known[0]); k++)
		if (strlen(known[k]) == len && memcmp(p, known[k], len) == 0)
			return known[k];
	if ((tc = conn_of(ssl)) == NULL)
		return "";
	memcpy(tc->alpn, p, len);
	tc->alpn[len] = '\0';
	return tc->alpn;
}

int
tls_peer_subject(SSL *ssl, char *buf, size_t cap)
{
	X509 *peer = SSL_get0_peer_certificate(ssl);
	BIO *b = NULL;
	char *p;
	long n;
	int rc = MG_EAUTH;

	if (peer == NULL || SSL_get_verify_result(ssl) != X509_V_OK)
		goto out;
	/* The server sets verify only with --tls-client-ca: without it an
	 * unverified certificate reads as X509_V_OK, so check the mode. */
	if (SSL_is_server(ssl) && !(SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER))
		goto out;
	if ((b = BIO_new(BIO_s_mem())) == NULL) {
		rc = MG_ENOMEM;
		goto out;
	}
	if (X509_NAME_print_ex(b, X509_get_subject_name(peer), 0,
	    XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) < 0) {
		rc = MG_EIO;
		goto out;
	}
	n = BIO_get_mem_data(b, &p);
	if (n < 0 || (size_t)n >= cap) {
		rc = MG_ENOSPC;
		goto out;
	}
	memcpy(buf, p, (size_t)n);
	buf[n] = '\0';
	rc = 0;
out:
	BIO_free(b);
	return rc;
}

int
tls_peer_pin(SSL *ssl, char *out, size_t cap)
{
	X509 *peer = SSL_get0_peer_certificate(ssl);

	if (peer == NULL)
		return MG_EAUTH;
	return cert_pin_str(peer, out, cap);
}

int
tls_cert_pin(const char *pem_path, char *out, size_t cap)
{
	FILE *f;
	X509 *x;
	int rc;

	if (cap < TLS_PIN_MAX)
		return MG_ENOSPC;
	if ((f = fopen(pem_path, "r")) == NULL)
		return MG_EIO;
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (x == NULL) {
		ERR_clear_error();
		return MG_EIO;
	}
	rc = cert_pin_str(x, out, cap);
	X509_free(x);
	return rc;
}

/* ---- non-blocking I/O for the mux ---- */

int
tls_io_failed(SSL *ssl, int sslerr, int sys_errno)
{
	struct tls_conn *tc = conn_of(ssl);

	if (tc == NULL) {
		ERR_clear_error();
		return MG_EIO;
	}
	return conn_fail(ssl, tc, sslerr, sys_errno);
}

/* An I/O failure: note the reason for tls_why, errno EIO. */
static ssize_t
io_fail(SSL *ssl, int e, int sys)
{
	struct tls_conn *tc = conn_of(ssl);

	/* keep the first reason, except that a TLS-level one (an alert the
	 * peer sent before closing) beats a bare "Broken pipe" from the
	 * write that met the closed connection */
	if (tc != NULL && (tc->why[0] == '\0' ||
	    (tc->why_sys && e == SSL_ERROR_SSL))) {
		tc->why[0] = '\0';
		conn_fail(ssl, tc, e, sys);
		tc->why_sys = e == SSL_ERROR_SYSCALL;
	} else {
		ERR_clear_error();
	}
	errno = EIO;
	return -1;
}

ssize_t
tls_readv(SSL *ssl, struct iovec *iov, int n, int *want_write)
{
	size_t total = 0;
	int i = 0;
	size_t off = 0;

	if (want_write != NULL)
		*want_write = 0;
	/* once: a call that succeeds leaves the queue empty, and after the
	 * first failure we return (per call, clearing costs a lookup) */
	ERR_clear_error();
	while (i < n) {
		size_t got = 0;
		int r, e, sys;

		if (off == iov[i].iov_len) {
			i++;
			off = 0;
			continue;
		}
		errno = 0;
		r = SSL_read_ex(ssl, (char *)iov[i].iov_base + off,
		    iov[i].iov_len - off, &got);
		sys = errno;
		if (r == 1) {
			off += got;
			total += got;
			continue;
		}
		if (total > 0) {
			/* Report the bytes; whatever stopped us repeats on
			 * the next call (EOF and errors are sticky). */
			ERR_clear_error();
			return (ssize_t)total;
		}
		e = SSL_get_error(ssl, r);
		switch (e) {
		case SSL_ERROR_ZERO_RETURN:
			return 0;
		case SSL_ERROR_WANT_READ:
			errno = EAGAIN;
			return -1;
		case SSL_ERROR_WANT_WRITE:
			if (want_write != NULL)
				*want_write = 1;
			errno = EAGAIN;
			return -1;
		case SSL_ERROR_SYSCALL:
			if (sys == 0 && ERR_peek_error() == 0)
				return 0; /* EOF without close_notify */
			return io_fail(ssl, e, sys);
		default:
			return io_fail(ssl, e, sys);
		}
	}
	return (ssize_t)total;
}

ssize_t
tls_write_evbuffer(SSL *ssl, struct evbuffer *out, int *want_read)
{
	size_t total = 0;

	if (want_read != NULL)
		*want_read = 0;
	ERR_clear_error(); /* once, as in tls_readv */
	for (;;) {
		struct evbuffer_iovec v;
		size_t len = evbuffer_get_length(out), put = 0;
		int r, e, sys;

		if (len == 0)
			break;
		if (evbuffer_peek(out, -1, NULL, &v, 1) < 1)
			break;
		/*
		 * A short leading chain (a lone frame header, say) would make
		 * a tiny record: gather up to one full record first. A chain
		 * of some KiB goes as it is, a record a little short of full:
		 * gathering it would copy most of a record every time. The
		 * length only ever grows between retries, as TLS requires.
		 */
		if (v.iov_len < 4096 && len > v.iov_len) {
			size_t want = len < 16384 ? len : 16384;

			v.iov_base = evbuffer_pullup(out, (ssize_t)want);
			v.iov_len = want;
		}
		errno = 0;
		r = SSL_write_ex(ssl, v.iov_base, v.iov_len, &put);
		sys = errno;
		if (r == 1) {
			evbuffer_drain(out, put);
			total += put;
			continue;
		}
		if (total > 0) {
			ERR_clear_error();
			break;
		}
		e = SSL_get_error(ssl, r);
		if (e == SSL_ERROR_WANT_WRITE) {
			errno = EAGAIN;
			return -1;
		}
		if (e == SSL_ERROR_WANT_READ) {
			if (want_read != NULL)
				*want_read = 1;
			errno = EAGAIN;
			return -1;
		}
		return io_fail(ssl, e, sys);
	}
	/* batched records go now; what the socket does not take waits for
	 * writable (tls_wpending), and an error shows on the next call */
	if (tls_flush(ssl) < 0 && errno != EAGAIN && total == 0)
		return io_fail(ssl, SSL_ERROR_SYSCALL, errno);
	return (ssize_t)total;
}

void
tls_shutdown(SSL *ssl)
{
	ERR_clear_error();
	if (SSL_is_init_finished(ssl))
		(void)SSL_shutdown(ssl);
	(void)tls_flush(ssl);
	ERR_clear_error();
}
