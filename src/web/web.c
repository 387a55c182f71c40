/*
 * web.c: the HTTP listener of the admin API and the inspector (web.h) on
 * libevent 2.1's evhttp.
 *
 * Connections. evhttp 2.1 has no connection limit and no hook for a new
 * connection, only the bufferevent callback (evhttp_set_bevcb), which runs
 * before the connection object exists. So the callback makes the
 * bufferevent (plain or TLS), records it, and a deferred event (run in the
 * same loop pass, before any byte is read) finds the connection through the
 * bufferevent's callback argument (evhttp makes it the connection) and
 * either sets a close callback on it, which keeps the count, or, past
 * max_conns, frees it at once.
 *
 * A request runs: auth (Bearer token, constant time), the Host check and
 * the same-origin check of an open listener, the route (longest match),
 * then the handler; unrouted GETs go to the embedded pages. web_path and
 * web_query read the web's context of the request being handled (the loop is
 * single-threaded and a handler never runs inside another).
 *
 * SSE streams ride on a chunked reply: the stream is tied to its
 * connection's record, so the close callback ends it when the peer goes.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "metrics/events.h"
#include "util/crypto.h"
#include "util/net.h"
#include "util/mtime.h"
#include "util/xmalloc.h"
#include "web/web.h"
#include "web/webassets.h"

#define WEB_MAX_HEADERS (16 * 1024)
#define WEB_SSE_MAXQ (1024 * 1024) /* queued output of one stream */
#define WEB_SSE_KEEPALIVE_S 15
#define WEB_METHODS_ALL (EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | \
	EVHTTP_REQ_POST | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | \
	EVHTTP_REQ_PATCH | EVHTTP_REQ_OPTIONS)

struct wroute {
	int methods;
	char *path;
	size_t len;
	int prefix; /* path ends in '/' */
	web_handler handler;
	void *arg;
};

struct wsse;

/* one accepted connection */
struct wconn {
	struct web *w;
	struct bufferevent *bev;
	struct evhttp_connection *evcon; /* once the deferred pass saw it */
	int refuse;                      /* over max_conns: free at once */
	int counted;                     /* in w->nconns */
	unsigned inflight;               /* requests not yet answered */
	uint64_t last_ms;                /* accepted, or a request came or
					    was answered (monotonic) */
	struct wsse *sse;
	struct wconn *prev, *next;
};

struct wsse {
	struct web *w;
	struct wconn *c;
	struct evhttp_request *req;
	struct evfeed_sub *sub;
	struct event *keepalive, *kill;
	int dead; /* dropped (slow reader): the kill event frees it */
};

/* the request being handled: its decoded path and query, for web_path
 * and web_query during its handler's call */
struct reqctx {
	struct evhttp_request *req;
	char *path;
	struct evkeyvalq query;
	int query_parsed;
};

struct web {
	struct event_base *base;
	struct evhttp *http;
	SSL_CTX *ssl;
	char *what, *assets;
	int has_token;
	uint8_t token_md[CRYPTO_SHA256_LEN];
	int open;     /* no token and no client CA */
	int loopback; /* bound to a loopback address */
	char addr[NET_ADDRSTR_MAX];
	uint16_t port;
	unsigned max_conns, max_sse, timeout_s, request_s;
	struct wroute *routes;
	size_t nroutes;
	struct wconn *conns;
	struct event *pending; /* the deferred pass over new connections */
	struct event *sweep;   /* ends connections that send no request */
	int npending;
	unsigned nconns, nsse;
	uint64_t requests, unauthorized, refused;
	struct reqctx *cur;    /* the request being handled, or NULL */
};

/* "--admin-cert" for the admin listener, "the inspector's cert" else */
static const char *
flag(const struct web *w, const char *name, char *buf, size_t cap)
{
	if (strcmp(w->what, "admin") == 0)
		snprintf(buf, cap, "--admin-%s", name);
	else
		snprintf(buf, cap, "the %s's %s", w->what, name);
	return buf;
}

static int
sa_is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)sa;

		return (ntohl(s4->sin_addr.s_addr) >> 24) == 127;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)sa;
		const uint8_t *b = s6->sin6_addr.s6_addr;

		if (IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr))
			return 1;
		return IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr) && b[12] == 127;
	}
	return 0;
}

/* 1 loopback, 0 not, -1 cannot tell before binding (a name) */
static int
host_is_loopback(const char *host)
{
	struct in_addr a4;
	struct in6_addr a6;

	if (net_is_wildcard(host))
		return 0;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, host, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6) ||
		    (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
	return -1;
}

static void
refuse_msg(const struct web *w, const char *addr, char *err, size_t errcap)
{
	if (strcmp(w->what, "admin") == 0)
		snprintf(err, errcap, "admin listener %s is not on loopback: "
		    "set --admin-token or --admin-client-ca (with --admin-cert/"
		    "--admin-key) so that only operators can use it", addr);
	else
		snprintf(err, errcap, "%s listener %s is not on loopback: it "
		    "shows captured requests and replays them, so it listens "
		    "on this machine only; use --inspect-addr 127.0.0.1:PORT "
		    "(or an SSH tunnel to reach it from elsewhere)", w->what,
		    addr);
}

/* ---- TLS ---- */

static void
ssl_why(char *buf, size_t cap)
{
	unsigned long e = ERR_peek_last_error();

	if (e == 0)
		snprintf(buf, cap, "unknown error");
	else
		ERR_error_string_n(e, buf, cap);
	ERR_clear_error();
}

static SSL_CTX *
ssl_make(struct web *w, const struct web_conf *cf, char *err, size_t errcap)
{
	SSL_CTX *ctx = NULL;
	STACK_OF(X509_NAME) *names;
	char f1[48], f2[48], why[256];

	if ((cf->cert == NULL) != (cf->key == NULL)) {
		snprintf(err, errcap, "%s listener: %s and %s go together",
		    w->what, flag(w, "cert", f1, sizeof(f1)),
		    flag(w, "key", f2, sizeof(f2)));
		return NULL;
	}
	if (cf->client_ca != NULL && cf->cert == NULL) {
		snprintf(err, errcap, "%s listener: %s needs %s and %s",
		    w->what, flag(w, "client-ca", why, sizeof(why)),
		    flag(w, "cert", f1, sizeof(f1)),
		    flag(w, "key", f2, sizeof(f2)));
		return NULL;
	}
	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
		ssl_why(why, sizeof(why));
		snprintf(err, errcap, "%s listener: TLS: %s", w->what, why);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION |
	    SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (SSL_CTX_use_certificate_chain_file(ctx, cf->cert) != 1) {
		ssl_why(why, sizeof(why));
		snprintf(err, errcap, "%s listener: %s %s: %s", w->what,
		    flag(w, "cert", f1, sizeof(f1)), cf->cert, why);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, cf->key, SSL_FILETYPE_PEM) != 1) {
		ssl_why(why, sizeof(why));
		snprintf(err, errcap, "%s listener: %s %s: %s", w->what,
		    flag(w, "key", f1, sizeof(f1)), cf->key, why);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		ERR_clear_error();
		snprintf(err, errcap, "%s listener: %s %s does not match the "
		    "certificate in %s %s", w->what,
		    flag(w, "key", f1, sizeof(f1)), cf->key,
		    flag(w, "cert", f2, sizeof(f2)), cf->cert);
		goto fail;
	}
	if (cf->client_ca != NULL) {
		if (SSL_CTX_load_verify_locations(ctx, cf->client_ca,
		    NULL) != 1 ||
		    (names = SSL_load_client_CA_file(cf->client_ca)) == NULL) {
			ssl_why(why, sizeof(why));
			snprintf(err, errcap, "%s listener: %s %s: %s",
			    w->what, flag(w, "client-ca", f1, sizeof(f1)),
			    cf->client_ca, why);
			goto fail;
		}
		SSL_CTX_set_client_CA_list(ctx, names);
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER |
		    SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

/* ---- connections ---- */

static void
conn_unlink(struct wconn *c)
{
	struct web *w = c->w;

	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	if (c->counted)
		w->nconns--;
	free(c);
}

static struct wconn *
conn_find(struct web *w, struct evhttp_connection *evcon)
{
	struct wconn *c;

	for (c = w->conns; c != NULL && evcon != NULL; c = c->next)
		if (c->evcon == evcon)
			return c;
	return NULL;
}

static void sse_free(struct wsse *s, int clean);
static void on_request(struct evhttp_request *req, void *arg);

static void
on_conn_close(struct evhttp_connection *evcon, void *arg)
{
	struct wconn *c = arg;

	if (c->sse != NULL)
		sse_free(c->sse, 0);
	conn_unlink(c);
}

/* the deferred pass: bind each new bufferevent to its connection */
static void
on_pending(evutil_socket_t fd, short what, void *arg)
{
	struct web *w = arg;
	struct wconn *c, *next;
	void *cbarg;

	for (c = w->conns; c != NULL && w->npending > 0; c = next) {
		next = c->next;
		if (c->evcon != NULL)
			continue;
		w->npending--;
		cbarg = NULL;
		bufferevent_getcb(c->bev, NULL, NULL, NULL, &cbarg);
		if (cbarg == NULL) { /* evhttp failed to take it */
			conn_unlink(c);
			continue;
		}
		if (c->refuse) {
			w->refused++;
			conn_unlink(c);
			evhttp_connection_free(cbarg);
			continue;
		}
		c->evcon = cbarg;
		evhttp_connection_set_closecb(c->evcon, on_conn_close, c);
	}
}

/*
 * A connection must send a whole request within request_s of its
 * accept or of its last answer: evhttp's own timeout is an idle one that
 * every byte resets, so without this a peer sending a header byte now and
 * then would keep a slot (of max_conns) forever, before any token check.
 * Event streams and requests being answered (a replay) are exempt.
 */

/* evhttp calls this once a reply went out on a connection (never for a
 * request whose connection went away first): arg is the web, and the
 * connection is looked up, not kept */
static void
on_request_done(struct evhttp_request *req, void *arg)
{
	struct wconn *c = conn_find(arg, evhttp_request_get_connection(req));

	if (c == NULL)
		return;
	if (c->inflight > 0)
		c->inflight--;
	c->last_ms = mtime_ms();
}

static void
on_sweep(evutil_socket_t fd, short what, void *arg)
{
	struct web *w = arg;
	struct wconn *c, *next;
	uint64_t now = mtime_ms();

	for (c = w->conns; c != NULL; c = next) {
		next = c->next;
		if (c->evcon == NULL || c->sse != NULL || c->inflight > 0 ||
		    now - c->last_ms < (uint64_t)w->request_s * 1000)
			continue;
		w->refused++;
		/* the close callback unlinks c */
		evhttp_connection_free(c->evcon);
	}
}

static struct bufferevent *
on_bev(struct event_base *base, void *arg)
{
	struct web *w = arg;
	struct wconn *c = xcalloc(1, sizeof(*c));
	struct bufferevent *bev;
	SSL *ssl;

	c->w = w;
	if (w->nconns >= w->max_conns) {
		c->refuse = 1;
		bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	} else if (w->ssl != NULL) {
		if ((ssl = SSL_new(w->ssl)) == NULL)
			abort();
		bev = bufferevent_openssl_socket_new(base, -1, ssl,
		    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
		if (bev != NULL)
			bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	} else {
		bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	}
	if (bev == NULL) {
		fprintf(stderr, "web: out of memory for a bufferevent\n");
		abort();
	}
	if (!c->refuse) {
		c->counted = 1;
		w->nconns++;
	}
	c->bev = bev;
	c->last_ms = mtime_ms();
	c->next = w->conns;
	if (w->conns != NULL)
		w->conns->prev = c;
	w->conns = c;
	w->npending++;
	event_active(w->pending, EV_TIMEOUT, 1);
	return bev;
}

/* ---- listener ---- */

struct web *
web_new(struct event_base *base, const struct web_conf *cf, char *err,
    size_t errcap)
{
	struct web *w = xcalloc(1, sizeof(*w));
	struct evhttp_bound_socket *bs;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[256];
	const char *why = NULL;
	uint16_t port;
	int fd = -1, lb;

	w->base = base;
	w->what = xstrdup(cf->what != NULL ? cf->what : "web");
	w->assets = cf->assets != NULL ? xstrdup(cf->assets) : NULL;
	w->max_conns = cf->max_conns ? cf->max_conns : 64;
	w->max_sse = cf->max_sse ? cf->max_sse : 16;
	w->timeout_s = cf->timeout_s ? cf->timeout_s : 30;
	if (cf->token != NULL && cf->token[0] != '\0') {
		w->has_token = 1;
		crypto_sha256(cf->token, strlen(cf->token), w->token_md);
	}
	w->open = !w->has_token && cf->client_ca == NULL;

	if (cf->addr == NULL ||
	    net_split_hostport(cf->addr, host, sizeof(host), &port,
	    &why) != 0) {
		snprintf(err, errcap, "%s listener %s: %s", w->what,
		    cf->addr != NULL ? cf->addr : "(none)",
		    why != NULL ? why : "no address");
		goto fail;
	}
	/* refuse before binding when the address says it already */
	lb = host_is_loopback(host);
	if (cf->require_auth_off_loopback && w->open && lb == 0) {
		refuse_msg(w, cf->addr, err, errcap);
		goto fail;
	}
	if (cf->cert != NULL || cf->key != NULL || cf->client_ca != NULL) {
		if ((w->ssl = ssl_make(w, cf, err, errcap)) == NULL)
			goto fail;
	}
	if ((fd = net_listen_tcp(host, port, 128)) < 0) {
		snprintf(err, errcap, "%s listener %s: %s", w->what, cf->addr,
		    errno == EADDRINUSE ? "address in use" :
		    errno == EADDRNOTAVAIL ? "no such local address" :
		    strerror(errno));
		goto fail;
	}
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
		snprintf(err, errcap, "%s listener %s: %s", w->what, cf->addr,
		    strerror(errno));
		goto fail;
	}
	w->loopback = sa_is_loopback((struct sockaddr *)&ss);
	if (cf->require_auth_off_loopback && w->open && !w->loopback) {
		refuse_msg(w, cf->addr, err, errcap);
		goto fail;
	}
	net_addr_str((struct sockaddr *)&ss, w->addr, sizeof(w->addr));
	w->port = net_local_port(fd);

	if ((w->http = evhttp_new(base)) == NULL ||
	    (w->pending = event_new(base, -1, 0, on_pending, w)) == NULL ||
	    (w->sweep = event_new(base, -1, EV_PERSIST, on_sweep, w)) ==
	    NULL) {
		snprintf(err, errcap, "%s listener: out of memory", w->what);
		goto fail;
	}
	evhttp_set_allowed_methods(w->http, WEB_METHODS_ALL);
	evhttp_set_max_headers_size(w->http, WEB_MAX_HEADERS);
	evhttp_set_max_body_size(w->http, cf->max_body ? cf->max_body :
	    1024 * 1024);
	evhttp_set_timeout(w->http, (int)w->timeout_s);
	{
		/* a sweep every third of the deadline: ends late by that */
		struct timeval tv;
		w->request_s = cf->request_timeout_s ? cf->request_timeout_s :
		    15;
		tv.tv_sec = w->request_s >= 3 ? w->request_s / 3 : 0;
		tv.tv_usec = w->request_s >= 3 ? 0 : 300000;
		event_add(w->sweep, &tv);
	}
	evhttp_set_default_content_type(w->http, "text/plain; charset=utf-8");
	evhttp_set_bevcb(w->http, on_bev, w);
	if ((bs = evhttp_accept_socket_with_handle(w->http, fd)) == NULL) {
		snprintf(err, errcap, "%s listener %s: %s", w->what, cf->addr,
		    strerror(errno));
		goto fail;
	}
	fd = -1; /* the evhttp owns it */
	evhttp_set_gencb(w->http, on_request, w);
	return w;
fail:
	if (fd >= 0)
		close(fd);
	web_free(w);
	return NULL;
}

uint16_t
web_port(const struct web *w)
{
	return w->port;
}

const char *
web_addr(const struct web *w)
{
	return w->addr;
}

void
web_route(struct web *w, int methods, const char *path, web_handler handler,
    void *arg)
{
	struct wroute *r;

	w->routes = xrealloc(w->routes, (w->nroutes + 1) * sizeof(*w->routes));
	r = &w->routes[w->nroutes++];
	r->methods = methods;
	r->path = xstrdup(path);
	r->len = strlen(path);
	r->prefix = r->len > 0 && path[r->len - 1] == '/';
	r->handler = handler;
	r->arg = arg;
}

void
web_stats(const struct web *w, struct web_stats *out)
{
	out->requests = w->requests;
	out->unauthorized = w->unauthorized;
	out->refused = w->refused;
	out->conns = w->nconns;
	out->sse = w->nsse;
}

/* ---- replies ---- */

static void
reply(struct evhttp_request *req, int code, const char *ctype,
    struct evbuffer *body)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);

	if (ctype != NULL) {
		evhttp_remove_header(h, "Content-Type");
		evhttp_add_header(h, "Content-Type", ctype);
	}
	if (evhttp_find_header(h, "X-Content-Type-Options") == NULL)
		evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
	/* evhttp 2.1 would send a HEAD's body */
	if (body != NULL && evhttp_request_get_command(req) == EVHTTP_REQ_HEAD)
		evbuffer_drain(body, evbuffer_get_length(body));
	evhttp_send_reply(req, code, NULL, body);
}

void
web_reply_buf(struct evhttp_request *req, int code, const char *ctype,
    struct evbuffer *body)
{
	reply(req, code, ctype, body);
}

void
web_reply_json(struct evhttp_request *req, int code, json_t *j)
{
	struct evbuffer *b = evbuffer_new();
	char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);

	if (b == NULL)
		abort();
	json_decref(j);
	evbuffer_add(b, s != NULL ? s : "null", s != NULL ? strlen(s) : 4);
	free(s);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Cache-Control", "no-store");
	reply(req, code, "application/json", b);
	evbuffer_free(b);
}

void
web_reply_error(struct evhttp_request *req, int code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	web_reply_json(req, code, json_pack("{s:s}", "error", msg));
}

/* ---- request helpers ---- */

const char *
web_path(struct web *w, struct evhttp_request *req)
{
	const struct evhttp_uri *u;
	const char *p;

	if (w->cur != NULL && w->cur->req == req)
		return w->cur->path;
	u = evhttp_request_get_evhttp_uri(req);
	p = u != NULL ? evhttp_uri_get_path(u) : NULL;
	return p != NULL && *p != '\0' ? p : "/";
}

const char *
web_query(struct web *w, struct evhttp_request *req, const char *key)
{
	struct reqctx *cur = w->cur;
	const struct evhttp_uri *u;
	const char *q;

	if (cur == NULL || cur->req != req)
		return NULL;
	if (!cur->query_parsed) {
		cur->query_parsed = 1;
		u = evhttp_request_get_evhttp_uri(req);
		q = u != NULL ? evhttp_uri_get_query(u) : NULL;
		if (q != NULL &&
		    evhttp_parse_query_str(q, &cur->query) != 0)
			evhttp_clear_headers(&cur->query);
	}
	return evhttp_find_header(&cur->query, key);
}

json_t *
web_body_json(struct evhttp_request *req)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	const char *p = len > 0 ? (const char *)evbuffer_pullup(in, -1) : "";
	json_error_t e;
	json_t *j;

	if (len == 0) {
		web_reply_error(req, 400, "the request needs a JSON object "
		    "as its body");
		return NULL;
	}
	j = json_loadb(p, len, JSON_REJECT_DUPLICATES, &e);
	if (j == NULL) {
		web_reply_error(req, 400, "bad JSON body: line %d column %d: "
		    "%s", e.line, e.column, e.text);
		return NULL;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		web_reply_error(req, 400, "the body must be a JSON object");
		return NULL;
	}
	return j;
}

/* ---- checks before the handler ---- */

static int
token_ok(struct web *w, struct evhttp_request *req)
{
	const char *h = evhttp_find_header(evhttp_request_get_input_headers(
	    req), "Authorization");
	uint8_t md[CRYPTO_SHA256_LEN];

	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
		return 0;
	h += 7;
	while (*h == ' ')
		h++;
	/* digests have one length, so the comparison time says nothing */
	crypto_sha256(h, strlen(h), md);
	return crypto_memeq(md, w->token_md, sizeof(md));
}

/* split "name", "name:port", "[v6]" or "[v6]:port"; 0 or -1 */
static int
split_host(const char *s, char *name, size_t cap)
{
	const char *end, *port;
	size_t n;

	if (s[0] == '[') {
		if ((end = strchr(s, ']')) == NULL)
			return -1;
		n = (size_t)(end - s - 1);
		s++;
		port = end + 1;
	} else {
		end = strchr(s, ':');
		n = end != NULL ? (size_t)(end - s) : strlen(s);
		port = s + n;
	}
	if (*port == ':') {
		port++;
		if (*port == '\0' || strspn(port, "0123456789") != strlen(port))
			return -1;
	} else if (*port != '\0') {
		return -1;
	}
	if (n == 0 || n >= cap)
		return -1;
	memcpy(name, s, n);
	name[n] = '\0';
	return 0;
}

static int
host_ok(struct web *w, const char *host)
{
	char name[256];

	if (host == NULL) /* HTTP/1.0: no browser sends that */
		return 1;
	if (strcasecmp(host, w->addr) == 0)
		return 1;
	if (split_host(host, name, sizeof(name)) != 0)
		return 0;
	if (strcasecmp(name, "localhost") == 0 ||
	    strcasecmp(name, "localhost.") == 0)
		return 1;
	return host_is_loopback(name) == 1;
}

/* the Origin's host[:port] equals Host */
static int
origin_ok(const char *origin, const char *host)
{
	const char *p = strstr(origin, "://");

	if (p == NULL || host == NULL)
		return 0;
	p += 3;
	return strcasecmp(p, host) == 0;
}

static void
methods_str(int m, char *buf, size_t cap)
{
	static const struct {
		int bit;
		const char *name;
	} names[] = {
		{EVHTTP_REQ_GET, "GET"}, {EVHTTP_REQ_HEAD, "HEAD"},
		{EVHTTP_REQ_POST, "POST"}, {EVHTTP_REQ_PUT, "PUT"},
		{EVHTTP_REQ_DELETE, "DELETE"}, {EVHTTP_REQ_PATCH, "PATCH"},
		{EVHTTP_REQ_OPTIONS, "OPTIONS"},
	};
	size_t i, n = 0;

	buf[0] = '\0';
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (m & names[i].bit)
			n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0,
			    "%s%s", n ? ", " : "", names[i].name);
}

static const char *
method_name(enum evhttp_cmd_type m)
{
	switch (m) {
	case EVHTTP_REQ_GET: return "GET";
	case EVHTTP_REQ_HEAD: return "HEAD";
	case EVHTTP_REQ_POST: return "POST";
	case EVHTTP_REQ_PUT: return "PUT";
	case EVHTTP_REQ_DELETE: return "DELETE";
	case EVHTTP_REQ_PATCH: return "PATCH";
	case EVHTTP_REQ_OPTIONS: return "OPTIONS";
	default: return "this method";
	}
}

static void
reply_405(struct evhttp_request *req, int allowed)
{
	char allow[80];

	if (allowed & EVHTTP_REQ_GET)
		allowed |= EVHTTP_REQ_HEAD;
	methods_str(allowed, allow, sizeof(allow));
	evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
	    allow);
	web_reply_error(req, 405, "%s is not allowed here (allowed: %s)",
	    method_name(evhttp_request_get_command(req)), allow);
}

static void
serve_asset(struct web *w, struct evhttp_request *req, const char *path)
{
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	char want[512];
	const struct web_asset *a = NULL;
	const char *set = w->assets;
	struct evbuffer *b;
	size_t i, n = strlen(path);

	if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD) {
		reply_405(req, EVHTTP_REQ_GET);
		return;
	}
	if (n + sizeof("index.html") > sizeof(want))
		goto notfound;
	memcpy(want, path, n + 1);
	if (n == 0 || want[n - 1] == '/')
		memcpy(want + n, "index.html", sizeof("index.html"));
	/* the pieces both pages share live in the set "common", under
	 * /common/ on every listener that serves pages */
	if (strncmp(want, "/common/", 8) == 0) {
		set = "common";
		memmove(want, want + 7, strlen(want + 7) + 1);
	}
	for (i = 0; i < web_nassets; i++)
		if (strcmp(web_assets[i].set, set) == 0 &&
		    strcmp(web_assets[i].path, want) == 0) {
			a = &web_assets[i];
			break;
		}
	if (a == NULL)
		goto notfound;
	if ((b = evbuffer_new()) == NULL)
		abort();
	evbuffer_add_reference(b, a->data, a->len, NULL, NULL);
	evhttp_add_header(h, "Cache-Control", "no-cache");
	evhttp_add_header(h, "Content-Security-Policy", "default-src 'self'; "
	    "img-src 'self' data:; style-src 'self' 'unsafe-inline'");
	evhttp_add_header(h, "Referrer-Policy", "no-referrer");
	reply(req, 200, a->ctype, b);
	evbuffer_free(b);
	return;
notfound:
	web_reply_error(req, 404, "no such page");
}

static void
on_request(struct evhttp_request *req, void *arg)
{
	struct web *w = arg;
	struct reqctx ctx;
	const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	const char *raw, *host, *origin;
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	struct wroute *best = NULL;
	size_t i;
	int allowed;

	w->requests++;
	{
		struct wconn *c = conn_find(w,
		    evhttp_request_get_connection(req));
		if (c != NULL) {
			c->inflight++;
			c->last_ms = mtime_ms();
			evhttp_request_set_on_complete_cb(req, on_request_done,
			    w);
		}
	}
	memset(&ctx, 0, sizeof(ctx));
	ctx.req = req;
	TAILQ_INIT(&ctx.query);
	raw = u != NULL ? evhttp_uri_get_path(u) : NULL;
	if (raw == NULL || *raw == '\0')
		raw = "/";
	if ((ctx.path = evhttp_uridecode(raw, 0, NULL)) == NULL)
		abort();
	w->cur = &ctx;

	if (w->has_token && !token_ok(w, req)) {
		w->unauthorized++;
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "WWW-Authenticate", "Bearer realm=\"mgrok\"");
		web_reply_error(req, 401, "this %s listener needs "
		    "\"Authorization: Bearer TOKEN\" with its token", w->what);
		goto out;
	}
	host = evhttp_find_header(in, "Host");
	if (w->open && w->loopback && !host_ok(w, host)) {
		web_reply_error(req, 403, "the Host header must name a "
		    "loopback address (this %s listener is open only to this "
		    "machine)", w->what);
		goto out;
	}
	origin = evhttp_find_header(in, "Origin");
	if (w->open && origin != NULL && (m == EVHTTP_REQ_POST ||
	    m == EVHTTP_REQ_PUT || m == EVHTTP_REQ_DELETE ||
	    m == EVHTTP_REQ_PATCH) && !origin_ok(origin, host)) {
		web_reply_error(req, 403, "cross-origin request refused");
		goto out;
	}

	for (i = 0; i < w->nroutes; i++) {
		struct wroute *r = &w->routes[i];
		int hit = r->prefix ? strncmp(ctx.path, r->path, r->len) == 0 :
		    strcmp(ctx.path, r->path) == 0;

		if (hit && (best == NULL || r->len > best->len ||
		    (r->len == best->len && !r->prefix)))
			best = r;
	}
	if (best == NULL) {
		if (w->assets != NULL)
			serve_asset(w, req, ctx.path);
		else
			web_reply_error(req, 404, "no such endpoint");
		goto out;
	}
	allowed = best->methods;
	if (allowed & EVHTTP_REQ_GET)
		allowed |= EVHTTP_REQ_HEAD;
	if (!(allowed & (int)m)) {
		reply_405(req, best->methods);
		goto out;
	}
	best->handler(req, best->arg);
out:
	w->cur = NULL;
	evhttp_clear_headers(&ctx.query);
	free(ctx.path);
}

/* ---- Server-Sent Events ---- */

static struct evbuffer *
sse_out(struct wsse *s)
{
	return bufferevent_get_output(
	    evhttp_connection_get_bufferevent(s->c->evcon));
}

/* drop a stream whose reader is too slow: the connection is freed from
 * the kill event, not from inside the feed's callback */
static void
sse_drop(struct wsse *s)
{
	if (s->dead)
		return;
	s->dead = 1;
	evfeed_unsubscribe(s->sub);
	s->sub = NULL;
	event_del(s->keepalive);
	event_active(s->kill, EV_TIMEOUT, 1);
}

static void
sse_send(struct wsse *s, const char *text, size_t len)
{
	struct evbuffer *b;

	if (s->dead)
		return;
	if (evbuffer_get_length(sse_out(s)) + len > WEB_SSE_MAXQ) {
		sse_drop(s);
		return;
	}
	if ((b = evbuffer_new()) == NULL)
		abort();
	evbuffer_add(b, text, len);
	evhttp_send_reply_chunk(s->req, b);
	evbuffer_free(b);
}

static void
sse_event(void *arg, const struct evfeed_event *ev)
{
	struct wsse *s = arg;
	char *t = NULL;
	int n;

	n = asprintf(&t, "id: %llu\nevent: %s\ndata: %s\n\n",
	    (unsigned long long)ev->seq, ev->type, ev->json);
	if (n < 0)
		abort();
	sse_send(s, t, (size_t)n);
	free(t);
}

static void
on_sse_keepalive(evutil_socket_t fd, short what, void *arg)
{
	static const char ka[] = ": keepalive\n\n";

	sse_send(arg, ka, sizeof(ka) - 1);
}

static void
on_sse_kill(evutil_socket_t fd, short what, void *arg)
{
	struct wsse *s = arg;

	/* the close callback frees s (and this event) */
	evhttp_connection_free(s->c->evcon);
}

/*
 * sse_free: clean (web_free): end the chunked reply and push what is
 * queued to the socket; else the connection is going (its close
 * callback): a request that evhttp detached from it is ours to free, which
 * evhttp_send_reply_end does when the request has no connection.
 */
static void
sse_free(struct wsse *s, int clean)
{
	struct web *w = s->w;
	struct bufferevent *bev;

	evfeed_unsubscribe(s->sub);
	event_free(s->keepalive);
	event_free(s->kill);
	if (clean) {
		bev = evhttp_connection_get_bufferevent(s->c->evcon);
		evhttp_send_reply_end(s->req);
		/* best effort: the connection is freed before the loop
		 * runs again, so what is queued goes to the socket now */
		if (w->ssl == NULL) {
			struct evbuffer *o = bufferevent_get_output(bev);
			size_t n = evbuffer_get_length(o);
			ssize_t r = n > 0 ? write(bufferevent_getfd(bev),
			    evbuffer_pullup(o, -1), n) : 0;

			if (r > 0)
				evbuffer_drain(o, (size_t)r);
		}
	} else if (evhttp_request_get_connection(s->req) == NULL) {
		evhttp_send_reply_end(s->req);
	}
	s->c->sse = NULL;
	w->nsse--;
	free(s);
}

void
web_sse(struct web *w, struct evhttp_request *req, struct evfeed *feed)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	struct wconn *c = conn_find(w, evcon);
	struct timeval ka = {WEB_SSE_KEEPALIVE_S, 0};
	struct timeval wt = {(time_t)w->timeout_s, 0};
	const char *last, *since;
	uint64_t after = 0;
	struct wsse *s;

	if (c == NULL || c->sse != NULL || w->nsse >= w->max_sse) {
		w->refused++;
		web_reply_error(req, 503, "too many event streams (at most "
		    "%u)", w->max_sse);
		return;
	}
	last = evhttp_find_header(evhttp_request_get_input_headers(req),
	    "Last-Event-ID");
	since = web_query(w, req, "since");
	if (last != NULL)
		after = strtoull(last, NULL, 10);
	else if (since != NULL)
		after = strtoull(since, NULL, 10);

	s = xcalloc(1, sizeof(*s));
	s->w = w;
	s->c = c;
	s->req = req;
	if ((s->keepalive = event_new(w->base, -1, EV_PERSIST,
	    on_sse_keepalive, s)) == NULL ||
	    (s->kill = event_new(w->base, -1, 0, on_sse_kill, s)) == NULL)
		abort();
	c->sse = s;
	w->nsse++;

	evhttp_add_header(h, "Content-Type", "text/event-stream");
	evhttp_add_header(h, "Cache-Control", "no-cache");
	evhttp_add_header(h, "X-Accel-Buffering", "no");
	evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
	evhttp_send_reply_start(req, 200, "OK");
	/* no read timeout on a stream (the peer only listens); a peer that
	 * stops reading is cut after the write timeout or at WEB_SSE_MAXQ */
	bufferevent_set_timeouts(evhttp_connection_get_bufferevent(evcon),
	    NULL, &wt);

	evfeed_replay(feed, after, sse_event, s);
	if (s->dead)
		return;
	s->sub = evfeed_subscribe(feed, sse_event, s);
	event_add(s->keepalive, &ka);
}

void
web_free(struct web *w)
{
	struct wconn *c, *next;
	size_t i;

	if (w == NULL)
		return;
	for (c = w->conns; c != NULL; c = c->next)
		if (c->sse != NULL)
			sse_free(c->sse, 1);
	/* evhttp_free frees every connection; the close callbacks free
	 * their records, the rest (not yet seen by on_pending) go here */
	if (w->http != NULL)
		evhttp_free(w->http);
	for (c = w->conns; c != NULL; c = next) {
		next = c->next;
		free(c);
	}
	if (w->pending != NULL)
		event_free(w->pending);
	if (w->sweep != NULL)
		event_free(w->sweep);
	for (i = 0; i < w->nroutes; i++)
		free(w->routes[i].path);
	free(w->routes);
	SSL_CTX_free(w->ssl);
	free(w->what);
	free(w->assets);
	free(w);
}
