/* test_web.c: the HTTP listener (web/web.h) in-process on 127.0.0.1:0,
 * driven by raw sockets on the same event base: routes, 404, 405 with
 * Allow, the Bearer token, the Host and Origin checks, JSON body errors,
 * an embedded page, SSE (replay, live event, the end at web_free), the
 * loopback rule and the connection cap. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <event2/http.h>

#include "metrics/events.h"
#include "util/mtime.h"
#include "web/web.h"

struct cli {
	int fd;
	struct event *ev;
	char buf[65536];
	size_t n;
	int eof;
};

static struct event_base *base;

static void
on_read(evutil_socket_t fd, short what, void *arg)
{
	struct cli *c = arg;
	ssize_t r;

	(void)what;
	r = read(fd, c->buf + c->n, sizeof(c->buf) - 1 - c->n);
	if (r <= 0) {
		c->eof = 1;
		event_del(c->ev);
		return;
	}
	c->n += (size_t)r;
	c->buf[c->n] = '\0';
}

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

/* run the loop until c holds until (or EOF if until is NULL) */
static void
pump(struct cli *c, const char *until, int ms)
{
	uint64_t end = mtime_ms() + (uint64_t)ms;
	struct event *t = event_new(base, -1, EV_PERSIST, on_tick, NULL);
	struct timeval tv = {0, 20000};

	event_add(t, &tv);
	while (mtime_ms() < end) {
		if (c != NULL && until != NULL && strstr(c->buf, until))
			break;
		if (c != NULL && until == NULL && c->eof)
			break;
		event_base_loop(base, EVLOOP_ONCE);
	}
	event_free(t);
}

static struct cli *
cli_open(uint16_t port)
{
	struct cli *c = calloc(1, sizeof(*c));
	struct sockaddr_in sin;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(connect(c->fd, (void *)&sin, sizeof(sin)), 0);
	evutil_make_socket_nonblocking(c->fd);
	c->ev = event_new(base, c->fd, EV_READ | EV_PERSIST, on_read, c);
	event_add(c->ev, NULL);
	return c;
}

static void
cli_close(struct cli *c)
{
	event_free(c->ev);
	close(c->fd);
	free(c);
}

/* one request with Connection: close; the whole response into out */
static int
req(struct web *w, const char *head, const char *body, char *out,
    size_t cap)
{
	struct cli *c = cli_open(web_port(w));
	char msg[4096];
	int n, code = 0;

	n = snprintf(msg, sizeof(msg), "%s\r\nConnection: close\r\n"
	    "Content-Length: %zu\r\n\r\n%s", head, body ? strlen(body) : 0,
	    body ? body : "");
	assert_int_equal(write(c->fd, msg, (size_t)n), n);
	pump(c, NULL, 3000);
	sscanf(c->buf, "HTTP/1.1 %d", &code);
	if (out != NULL) {
		size_t m = c->n < cap - 1 ? c->n : cap - 1;

		memcpy(out, c->buf, m);
		out[m] = '\0';
	}
	cli_close(c);
	return code;
}

static void
h_hello(struct evhttp_request *r, void *arg)
{
	struct web *w = arg;
	const char *q = web_query(w, r, "x");

	web_reply_json(r, 200, json_pack("{s:s,s:s?}", "path", web_path(w, r),
	    "x", q));
}

static void
h_echo(struct evhttp_request *r, void *arg)
{
	json_t *j = web_body_json(r);

	(void)arg;
	if (j != NULL)
		web_reply_json(r, 201, j);
}

static void
h_events(struct evhttp_request *r, void *arg)
{
	struct web **wp = arg;

	web_sse(wp[0], r, (struct evfeed *)wp[1]);
}

static struct web *
start(const char *token, unsigned max_conns, const char *assets)
{
	struct web_conf cf = {0};
	char err[256] = "";
	struct web *w;

	cf.what = "admin";
	cf.addr = "127.0.0.1:0";
	cf.token = token;
	cf.max_conns = max_conns;
	cf.assets = assets;
	cf.require_auth_off_loopback = 1;
	w = web_new(base, &cf, err, sizeof(err));
	assert_non_null(w);
	web_route(w, EVHTTP_REQ_GET, "/api/v1/info", h_hello, w);
	web_route(w, EVHTTP_REQ_GET, "/api/v1/t/", h_hello, w);
	web_route(w, EVHTTP_REQ_POST | EVHTTP_REQ_DELETE, "/api/v1/t/x/",
	    h_echo, NULL);
	web_route(w, EVHTTP_REQ_POST, "/echo", h_echo, NULL);
	return w;
}

static void
test_routes(void **state)
{
	struct web *w;
	char out[8192];
	struct web_stats st;

	(void)state;
	base = event_base_new();
	w = start(NULL, 0, NULL);
	assert_non_null(strstr(web_addr(w), "127.0.0.1:"));
	assert_int_equal(req(w, "GET /api/v1/info?x=a%20b HTTP/1.1\r\n"
	    "Host: 127.0.0.1", NULL, out, sizeof(out)), 200);
	assert_non_null(strstr(out, "{\"path\":\"/api/v1/info\",\"x\":\"a b\"}"));
	assert_non_null(strstr(out, "Content-Type: application/json"));
	assert_non_null(strstr(out, "Cache-Control: no-store"));
	assert_int_equal(req(w, "GET /api/v1/t/7%2F8 HTTP/1.1\r\nHost: "
	    "localhost:9", NULL, out, sizeof(out)), 200);
	assert_non_null(strstr(out, "\"path\":\"/api/v1/t/7/8\""));
	/* the longest prefix wins, and its methods apply */
	assert_int_equal(req(w, "GET /api/v1/t/x/1 HTTP/1.1\r\nHost: [::1]",
	    NULL, out, sizeof(out)), 405);
	assert_non_null(strstr(out, "Allow: POST, DELETE"));
	assert_int_equal(req(w, "PUT /api/v1/info HTTP/1.1\r\nHost: localhost",
	    "{}", out, sizeof(out)), 405);
	assert_non_null(strstr(out, "Allow: GET, HEAD"));
	assert_int_equal(req(w, "HEAD /api/v1/info HTTP/1.1\r\nHost: localhost",
	    NULL, out, sizeof(out)), 200);
	assert_null(strstr(out, "{\"path\""));
	assert_int_equal(req(w, "GET /nope HTTP/1.1\r\nHost: localhost",
	    NULL, out, sizeof(out)), 404);
	assert_non_null(strstr(out, "{\"error\":"));
	/* JSON bodies */
	assert_int_equal(req(w, "POST /echo HTTP/1.1\r\nHost: localhost",
	    "{\"a\":1}", out, sizeof(out)), 201);
	assert_non_null(strstr(out, "\r\n\r\n{\"a\":1}"));
	assert_int_equal(req(w, "POST /echo HTTP/1.1\r\nHost: localhost",
	    "{\"a\":1,\"a\":2}", out, sizeof(out)), 400);
	assert_non_null(strstr(out, "duplicate"));
	assert_int_equal(req(w, "POST /echo HTTP/1.1\r\nHost: localhost",
	    "{\"a\":", out, sizeof(out)), 400);
	assert_non_null(strstr(out, "line 1 column"));
	assert_int_equal(req(w, "POST /echo HTTP/1.1\r\nHost: localhost",
	    "[1]", out, sizeof(out)), 400);
	assert_non_null(strstr(out, "must be a JSON object"));
	/* DNS rebinding and cross-origin guards */
	assert_int_equal(req(w, "GET /api/v1/info HTTP/1.1\r\nHost: "
	    "evil.example", NULL, out, sizeof(out)), 403);
	assert_non_null(strstr(out, "Host"));
	assert_int_equal(req(w, "GET /api/v1/info HTTP/1.1\r\nHost: "
	    "127.0.0.1.evil.example:80", NULL, out, sizeof(out)), 403);
	assert_int_equal(req(w, "POST /echo HTTP/1.1\r\nHost: localhost:1\r\n"
	    "Origin: http://evil.example", "{}", out, sizeof(out)), 403);
	assert_non_null(strstr(out, "cross-origin request refused"));
	assert_int_equal(req(w, "POST /echo HTTP/1.1\r\nHost: localhost:1\r\n"
	    "Origin: http://localhost:1", "{}", out, sizeof(out)), 201);
	/* a GET with a foreign Origin is only reading */
	assert_int_equal(req(w, "GET /api/v1/info HTTP/1.1\r\nHost: "
	    "localhost\r\nOrigin: http://evil.example", NULL, out,
	    sizeof(out)), 200);
	pump(NULL, NULL, 50);
	web_stats(w, &st);
	assert_int_equal(st.requests, 15);
	assert_int_equal(st.conns, 0);
	web_free(w);
	event_base_free(base);
}

static void
test_token(void **state)
{
	struct web *w;
	char out[8192];
	struct web_stats st;

	(void)state;
	base = event_base_new();
	w = start("s3cret", 0, NULL);
	assert_int_equal(req(w, "GET /api/v1/info HTTP/1.1\r\nHost: x",
	    NULL, out, sizeof(out)), 401);
	assert_non_null(strstr(out, "WWW-Authenticate: Bearer realm=\"mgrok\""));
	assert_non_null(strstr(out, "{\"error\":"));
	assert_int_equal(req(w, "GET /api/v1/info HTTP/1.1\r\nHost: x\r\n"
	    "Authorization: Bearer s3cre", NULL, out, sizeof(out)), 401);
	assert_int_equal(req(w, "GET /api/v1/info HTTP/1.1\r\nHost: x\r\n"
	    "Authorization: Basic s3cret", NULL, out, sizeof(out)), 401);
	/* with a token the Host check is not needed */
	assert_int_equal(req(w, "GET /api/v1/info HTTP/1.1\r\nHost: x\r\n"
	    "Authorization: Bearer s3cret", NULL, out, sizeof(out)), 200);
	web_stats(w, &st);
	assert_int_equal(st.unauthorized, 3);
	web_free(w);
	event_base_free(base);
}

static void
test_assets(void **state)
{
	struct web *w;
	char out[16384];

	(void)state;
	base = event_base_new();
	w = start(NULL, 0, "dashboard");
	assert_int_equal(req(w, "GET / HTTP/1.1\r\nHost: localhost", NULL,
	    out, sizeof(out)), 200);
	assert_non_null(strstr(out, "Content-Type: text/html; charset=utf-8"));
	assert_non_null(strstr(out, "Cache-Control: no-cache"));
	assert_non_null(strstr(out, "X-Content-Type-Options: nosniff"));
	assert_non_null(strstr(out, "Content-Security-Policy: default-src "
	    "'self'"));
	assert_non_null(strstr(out, "<!doctype html>"));
	assert_int_equal(req(w, "GET /index.html HTTP/1.1\r\nHost: localhost",
	    NULL, out, sizeof(out)), 200);
	assert_int_equal(req(w, "GET /missing.js HTTP/1.1\r\nHost: localhost",
	    NULL, out, sizeof(out)), 404);
	assert_int_equal(req(w, "POST / HTTP/1.1\r\nHost: localhost", "x",
	    out, sizeof(out)), 405);
	/* routes still come first */
	assert_int_equal(req(w, "GET /api/v1/info HTTP/1.1\r\nHost: localhost",
	    NULL, out, sizeof(out)), 200);
	web_free(w);
	event_base_free(base);
}

static void
test_sse(void **state)
{
	struct evfeed *f = evfeed_new(10);
	struct web *w;
	void *args[2];
	struct cli *c, *c2;
	struct web_stats st;
	const char *get = "GET /events?since=1 HTTP/1.1\r\nHost: localhost\r\n\r\n";

	(void)state;
	base = event_base_new();
	w = start(NULL, 0, NULL);
	args[0] = w;
	args[1] = f;
	web_route(w, EVHTTP_REQ_GET, "/events", h_events, args);
	evfeed_emit(f, "one", NULL);
	evfeed_emit(f, "two", json_pack("{s:i}", "n", 2));
	c = cli_open(web_port(w));
	assert_int_equal(write(c->fd, get, strlen(get)), (ssize_t)strlen(get));
	pump(c, "\"n\":2}\n\n", 3000);
	assert_non_null(strstr(c->buf, "Content-Type: text/event-stream"));
	assert_non_null(strstr(c->buf, "Cache-Control: no-cache"));
	assert_null(strstr(c->buf, "event: one"));
	assert_non_null(strstr(c->buf, "id: 2\nevent: two\ndata: {\"seq\":2,"));
	evfeed_emit(f, "three", NULL);
	pump(c, "event: three", 3000);
	assert_non_null(strstr(c->buf, "id: 3\nevent: three\n"));
	/* Last-Event-ID wins; a peer that goes ends its stream */
	c2 = cli_open(web_port(w));
	dprintf(c2->fd, "GET /events HTTP/1.1\r\nHost: localhost\r\n"
	    "Last-Event-ID: 2\r\n\r\n");
	pump(c2, "event: three", 3000);
	assert_null(strstr(c2->buf, "event: two"));
	web_stats(w, &st);
	assert_int_equal(st.sse, 2);
	assert_int_equal(evfeed_nsubscribers(f), 2);
	cli_close(c2);
	pump(NULL, NULL, 200);
	web_stats(w, &st);
	assert_int_equal(st.sse, 1);
	assert_int_equal(evfeed_nsubscribers(f), 1);
	/* web_free ends the stream with the last chunk */
	web_free(w);
	assert_int_equal(evfeed_nsubscribers(f), 0);
	pump(c, NULL, 3000);
	assert_true(c->eof);
	if (strstr(c->buf, "\r\n0\r\n\r\n") == NULL)
		fprintf(stderr, "got [%s]\n", c->buf);
	assert_non_null(strstr(c->buf, "\r\n0\r\n\r\n"));
	cli_close(c);
	evfeed_free(f);
	event_base_free(base);
}

static void
test_loopback_rule(void **state)
{
	struct web_conf cf = {0};
	char err[512] = "";

	(void)state;
	base = event_base_new();
	cf.what = "admin";
	cf.addr = "0.0.0.0:0";
	cf.require_auth_off_loopback = 1;
	assert_null(web_new(base, &cf, err, sizeof(err)));
	assert_string_equal(err, "admin listener 0.0.0.0:0 is not on "
	    "loopback: set --admin-token or --admin-client-ca (with "
	    "--admin-cert/--admin-key) so that only operators can use it");
	cf.what = "inspector";
	cf.addr = ":0";
	assert_null(web_new(base, &cf, err, sizeof(err)));
	assert_non_null(strstr(err, "inspector listener :0 is not on "
	    "loopback: it shows captured requests and replays them"));
	cf.addr = "127.0.0.1:x";
	assert_null(web_new(base, &cf, err, sizeof(err)));
	assert_non_null(strstr(err, "inspector listener 127.0.0.1:x: "));
	/* a busy port */
	{
		struct web *w;

		cf.addr = "127.0.0.1:0";
		cf.what = "admin";
		w = web_new(base, &cf, err, sizeof(err));
		assert_non_null(w);
		cf.addr = web_addr(w);
		assert_null(web_new(base, &cf, err, sizeof(err)));
		assert_non_null(strstr(err, ": address in use"));
		assert_non_null(strstr(err, "admin listener 127.0.0.1:"));
		web_free(w);
	}
	/* TLS files that do not load */
	cf.addr = "127.0.0.1:0";
	cf.cert = "/nonexistent/c.pem";
	cf.key = "/nonexistent/k.pem";
	assert_null(web_new(base, &cf, err, sizeof(err)));
	assert_non_null(strstr(err, "--admin-cert /nonexistent/c.pem"));
	event_base_free(base);
}

static void
test_conn_cap(void **state)
{
	struct web *w;
	struct cli *a, *b, *c;
	struct web_stats st;
	char out[4096];

	(void)state;
	base = event_base_new();
	w = start(NULL, 2, NULL);
	a = cli_open(web_port(w));
	b = cli_open(web_port(w));
	pump(NULL, NULL, 100);
	web_stats(w, &st);
	assert_int_equal(st.conns, 2);
	c = cli_open(web_port(w));
	pump(c, NULL, 2000);
	assert_true(c->eof);
	assert_int_equal(c->n, 0);
	web_stats(w, &st);
	assert_int_equal(st.refused, 1);
	assert_int_equal(st.conns, 2);
	cli_close(a);
	cli_close(b);
	cli_close(c);
	pump(NULL, NULL, 200);
	web_stats(w, &st);
	assert_int_equal(st.conns, 0);
	assert_int_equal(req(w, "GET /api/v1/info HTTP/1.1\r\nHost: localhost",
	    NULL, out, sizeof(out)), 200);
	web_free(w);
	event_base_free(base);
}

/* a peer that trickles a head and never completes a request loses its
 * slot after request_timeout_s; one that asks in time keeps it */
static void
test_request_deadline(void **state)
{
	struct web_conf cf = {0};
	char err[256] = "", out[4096];
	struct web *w;
	struct cli *slow, *fast;
	struct web_stats st;

	(void)state;
	base = event_base_new();
	cf.what = "admin";
	cf.addr = "127.0.0.1:0";
	cf.request_timeout_s = 1;
	w = web_new(base, &cf, err, sizeof(err));
	assert_non_null(w);
	slow = cli_open(web_port(w));
	fast = cli_open(web_port(w));
	pump(NULL, NULL, 100);
	(void)!write(slow->fd, "GET / HT", 8);
	pump(NULL, NULL, 500);
	{
		static const char rq[] = "GET /x HTTP/1.1\r\nHost: localhost"
		    "\r\n\r\n";
		(void)!write(fast->fd, rq, sizeof(rq) - 1);
	}
	pump(fast, "\r\n\r\n", 2000);
	assert_true(fast->n > 0);
	pump(slow, NULL, 2500);
	assert_true(slow->eof);
	web_stats(w, &st);
	assert_int_equal(st.refused, 1);
	assert_true(req(w, "GET /x HTTP/1.1\r\nHost: localhost", NULL, out,
	    sizeof(out)) == 404);
	cli_close(slow);
	cli_close(fast);
	web_free(w);
	event_base_free(base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_routes),
		cmocka_unit_test(test_request_deadline),
		cmocka_unit_test(test_token),
		cmocka_unit_test(test_assets),
		cmocka_unit_test(test_sse),
		cmocka_unit_test(test_loopback_rule),
		cmocka_unit_test(test_conn_cap),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
