/* test_inspect.c: the inspector's store (client/inspect.h) fed through its
 * hrelay observer: bounds on entries and bytes (oldest first, honest
 * accounting), redaction on and off, pipelined answers matched in order,
 * the HAR shape, connection records, and the replay input's checks. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/event.h>

#include "client/inspect.h"
#include "metrics/events.h"
#include "metrics/metrics.h"
#include "relay/hrelay.h"

struct fx {
	struct event_base *base;
	struct metrics *m;
	struct evfeed *feed;
	struct inspect *ins;
};

static void
fx_init(struct fx *f, size_t body_max, size_t max_bytes, unsigned max_req,
    int secrets)
{
	struct inspect_conf cf = { body_max, max_bytes, max_req, 10, secrets };

	f->base = event_base_new();
	f->m = metrics_new(100);
	f->feed = evfeed_new(100);
	f->ins = inspect_new(f->base, &cf, f->m, f->feed);
}

static void
fx_done(struct fx *f)
{
	inspect_free(f->ins);
	evfeed_free(f->feed);
	metrics_free(f->m);
	event_base_free(f->base);
}

static const char REQ[] = "POST /hook?x=1&y=two HTTP/1.1\r\n"
			  "Host: web.example.com\r\n"
			  "Authorization: Bearer secret\r\n"
			  "Cookie: a=b\r\n"
			  "Content-Length: 5\r\n\r\n";
static const char RESP[] = "HTTP/1.1 200 OK\r\n"
			   "Content-Type: application/json\r\n"
			   "Set-Cookie: s=1\r\n"
			   "Content-Length: 2\r\n\r\n";

/* one request and its answer through the observer */
static void
exchange(struct inspect *ins, const char *tunnel, const void *body,
    size_t blen)
{
	const struct hrelay_obs *o = inspect_http_obs();
	void *a = inspect_http_open(ins, tunnel, "203.0.113.9:50412");

	o->req_head(a, NULL, (const uint8_t *)REQ, strlen(REQ));
	o->req_body(a, body, blen);
	o->req_end(a);
	o->resp_head(a, NULL, (const uint8_t *)RESP, strlen(RESP));
	o->resp_body(a, (const uint8_t *)"{}", 2);
	o->resp_end(a);
	o->close(a, NULL);
}

static json_t *
first(struct inspect *ins)
{
	json_t *j = inspect_requests_json(ins, 0, NULL);
	json_t *e = json_incref(json_array_get(json_object_get(j, "requests"),
	    0));

	json_decref(j);
	return e;
}

static const char *
hval(json_t *msg, const char *name)
{
	json_t *h = json_object_get(msg, "headers");

	for (size_t i = 0; i < json_array_size(h); i++) {
		json_t *p = json_array_get(h, i);
		if (strcasecmp(json_string_value(json_array_get(p, 0)),
		    name) == 0)
			return json_string_value(json_array_get(p, 1));
	}
	return NULL;
}

static void
test_capture_and_redaction(void **state)
{
	struct fx f;
	json_t *e;

	(void)state;
	fx_init(&f, 1024, 1 << 20, 100, 0);
	exchange(f.ins, "web", "hello", 5);
	e = first(f.ins);
	assert_non_null(e);
	assert_string_equal(json_string_value(json_object_get(e, "id")), "r1");
	assert_string_equal(json_string_value(json_object_get(e,
	    "remote_addr")), "203.0.113.9:50412");
	json_t *rq = json_object_get(e, "request"), *rs = json_object_get(e,
	    "response");
	assert_string_equal(json_string_value(json_object_get(rq, "method")),
	    "POST");
	assert_string_equal(json_string_value(json_object_get(rq, "uri")),
	    "/hook?x=1&y=two");
	assert_string_equal(hval(rq, "Authorization"), "[redacted]");
	assert_string_equal(hval(rq, "Cookie"), "[redacted]");
	assert_string_equal(hval(rq, "Host"), "web.example.com");
	assert_string_equal(hval(rs, "Set-Cookie"), "[redacted]");
	assert_string_equal(json_string_value(json_object_get(
	    json_object_get(rq, "body"), "base64")), "aGVsbG8=");
	assert_int_equal(json_integer_value(json_object_get(rs, "status")),
	    200);
	assert_true(json_is_null(json_object_get(e, "error")));
	json_decref(e);
	fx_done(&f);

	fx_init(&f, 1024, 1 << 20, 100, 1); /* --inspect-capture-secrets */
	exchange(f.ins, "web", "hello", 5);
	e = first(f.ins);
	rq = json_object_get(e, "request");
	assert_string_equal(hval(rq, "Authorization"), "Bearer secret");
	assert_string_equal(hval(json_object_get(e, "response"),
	    "Set-Cookie"), "s=1");
	json_decref(e);
	fx_done(&f);
}

static void
test_bounds(void **state)
{
	struct fx f;
	static uint8_t big[8192];
	json_t *e, *b;

	(void)state;
	/* at most 5 entries: the oldest go */
	fx_init(&f, 1024, 1 << 20, 5, 0);
	for (int i = 0; i < 12; i++)
		exchange(f.ins, "web", "hello", 5);
	assert_int_equal(inspect_nrequests(f.ins), 5);
	e = first(f.ins);
	assert_string_equal(json_string_value(json_object_get(e, "id")),
	    "r12");
	json_decref(e);
	fx_done(&f);

	/* a body over body_max is cut and marked; bytes stay under the cap,
	 * counted with the heads and the bookkeeping */
	fx_init(&f, 1000, 16384, 1000, 0);
	for (int i = 0; i < 200; i++) {
		exchange(f.ins, i % 2 ? "a" : "b", big, sizeof(big));
		assert_true(inspect_bytes(f.ins) <= 16384);
	}
	assert_true(inspect_nrequests(f.ins) < 200);
	assert_true(inspect_nrequests(f.ins) >= 3);
	/* honest: each entry costs at least its heads and its body */
	assert_true(inspect_bytes(f.ins) >= inspect_nrequests(f.ins) *
	    (strlen(REQ) + strlen(RESP) + 1000));
	e = first(f.ins);
	b = json_object_get(json_object_get(e, "request"), "body");
	assert_int_equal(json_integer_value(json_object_get(b, "size")),
	    sizeof(big));
	assert_int_equal(json_integer_value(json_object_get(b, "captured")),
	    1000);
	assert_true(json_is_true(json_object_get(b, "truncated")));
	json_decref(e);
	/* the gauges say the same */
	{
		char *txt;
		struct evbuffer *out = evbuffer_new();
		char want[64];
		metrics_prometheus(f.m, out);
		evbuffer_add(out, "", 1);
		txt = (char *)evbuffer_pullup(out, -1);
		snprintf(want, sizeof(want), "mgrok_inspect_bytes %zu\n",
		    inspect_bytes(f.ins));
		assert_non_null(strstr(txt, want));
		evbuffer_free(out);
	}
	/* the tunnel filter */
	{
		json_t *j = inspect_requests_json(f.ins, 1000, "a");
		json_t *a = json_object_get(j, "requests");
		for (size_t i = 0; i < json_array_size(a); i++)
			assert_string_equal(json_string_value(json_object_get(
			    json_array_get(a, i), "tunnel")), "a");
		json_decref(j);
	}
	inspect_clear(f.ins);
	assert_int_equal(inspect_nrequests(f.ins), 0);
	assert_int_equal(inspect_bytes(f.ins), 0);
	fx_done(&f);
}

static void
test_pipelined_and_cut(void **state)
{
	struct fx f;
	const struct hrelay_obs *o = inspect_http_obs();
	static const char g1[] = "GET /one HTTP/1.1\r\nHost: h\r\n\r\n";
	static const char g2[] = "GET /two HTTP/1.1\r\nHost: h\r\n\r\n";
	static const char r404[] = "HTTP/1.1 404 Not Found\r\n"
				   "Content-Length: 0\r\n\r\n";
	json_t *j, *a;
	void *c;

	(void)state;
	fx_init(&f, 1024, 1 << 20, 100, 0);
	c = inspect_http_open(f.ins, "web", NULL);
	o->req_head(c, NULL, (const uint8_t *)g1, strlen(g1));
	o->req_end(c);
	o->req_head(c, NULL, (const uint8_t *)g2, strlen(g2));
	o->req_end(c);
	o->resp_head(c, NULL, (const uint8_t *)RESP, strlen(RESP));
	o->resp_body(c, (const uint8_t *)"{}", 2);
	o->resp_end(c);
	o->resp_head(c, NULL, (const uint8_t *)r404, strlen(r404));
	o->resp_end(c);
	/* a third is cut: no answer */
	o->req_head(c, NULL, (const uint8_t *)g1, strlen(g1));
	o->req_end(c);
	o->close(c, "the local service reset the connection");
	j = inspect_requests_json(f.ins, 0, NULL);
	a = json_object_get(j, "requests");
	assert_int_equal(json_array_size(a), 3);
	/* newest first */
	assert_true(json_is_null(json_object_get(json_array_get(a, 0),
	    "response")));
	assert_string_equal(json_string_value(json_object_get(json_array_get(
	    a, 0), "error")), "the local service reset the connection");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(
	    json_array_get(a, 1), "response"), "status")), 404);
	assert_string_equal(json_string_value(json_object_get(json_object_get(
	    json_array_get(a, 1), "request"), "uri")), "/two");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(
	    json_array_get(a, 2), "response"), "status")), 200);
	json_decref(j);
	fx_done(&f);
}

static void
test_har(void **state)
{
	struct fx f;
	json_t *h, *log, *e, *rq, *rs;
	char *s;

	(void)state;
	fx_init(&f, 1024, 1 << 20, 100, 0);
	exchange(f.ins, "web", "hello", 5);
	exchange(f.ins, "web", "\x00\xff", 2); /* binary: base64 */
	h = inspect_har_json(f.ins);
	s = json_dumps(h, 0);
	assert_non_null(s);
	free(s);
	log = json_object_get(h, "log");
	assert_string_equal(json_string_value(json_object_get(log,
	    "version")), "1.2");
	assert_string_equal(json_string_value(json_object_get(
	    json_object_get(log, "creator"), "name")), "mgrok");
	assert_int_equal(json_array_size(json_object_get(log, "entries")), 2);
	e = json_array_get(json_object_get(log, "entries"), 1);
	assert_non_null(strstr(json_string_value(json_object_get(e,
	    "startedDateTime")), "T"));
	assert_true(json_is_number(json_object_get(e, "time")));
	rq = json_object_get(e, "request");
	assert_string_equal(json_string_value(json_object_get(rq, "url")),
	    "http://web.example.com/hook?x=1&y=two");
	assert_int_equal(json_array_size(json_object_get(rq, "queryString")),
	    2);
	assert_string_equal(json_string_value(json_object_get(json_object_get(
	    rq, "postData"), "text")), "hello");
	assert_int_equal(json_integer_value(json_object_get(rq, "bodySize")),
	    5);
	rs = json_object_get(e, "response");
	assert_int_equal(json_integer_value(json_object_get(rs, "status")),
	    200);
	assert_string_equal(json_string_value(json_object_get(json_object_get(
	    rs, "content"), "text")), "{}");
	assert_non_null(json_object_get(e, "cache"));
	assert_non_null(json_object_get(json_object_get(e, "timings"),
	    "wait"));
	json_decref(h);
	fx_done(&f);
}

static void
test_conns(void **state)
{
	struct fx f;
	struct inspect_conn *c1, *c2;
	json_t *j, *a;

	(void)state;
	fx_init(&f, 1024, 1 << 20, 100, 0);
	c1 = inspect_conn_open(f.ins, "db", "tcp", "203.0.113.9:1");
	c2 = inspect_conn_open(f.ins, "db", "udp", NULL);
	inspect_conn_close(c1, 1200, 56000, "closed");
	j = inspect_connections_json(f.ins, 0, NULL);
	a = json_object_get(j, "connections");
	assert_int_equal(json_array_size(a), 2);
	assert_true(json_is_true(json_object_get(json_array_get(a, 0),
	    "active")));
	assert_int_equal(json_integer_value(json_object_get(json_array_get(a,
	    1), "bytes_out")), 56000);
	assert_string_equal(json_string_value(json_object_get(json_array_get(
	    a, 1), "close_reason")), "closed");
	json_decref(j);
	/* 10 kept: the rest go, the one still open stays valid */
	for (int i = 0; i < 30; i++)
		inspect_conn_close(inspect_conn_open(f.ins, "db", "tcp", NULL),
		    1, 1, "reset");
	inspect_conn_close(c2, 5, 6, "idle");
	j = inspect_connections_json(f.ins, 100, NULL);
	assert_int_equal(json_array_size(json_object_get(j, "connections")),
	    10);
	json_decref(j);
	fx_done(&f);
}

/* ---- replay input ---- */

static const char *const names[] = { "Host", "Authorization",
	"Content-Length" };
static const char *const values[] = { "web.example.com", "[redacted]",
	"5" };
static const unsigned char red[] = { 0, 1, 0 };

static int
parse(const char *json, int truncated, struct evbuffer *out, int *code,
    char *err)
{
	struct inspect_req_view v = { "POST", "/hook", "HTTP/1.1", 3, names,
		values, red, (const uint8_t *)"hello", 5, truncated ? 900 : 5,
		truncated, NULL };

	return inspect_replay_parse(json, strlen(json), &v, "r7", out, code,
	    err, 256);
}

static void
test_replay_parse(void **state)
{
	static const char *const bad[] = {
		"", "[]", "{\"id\":", "{\"method\":\"G T\"}",
		"{\"method\":\"\"}", "{\"method\":7}",
		"{\"uri\":\"nope\"}", "{\"uri\":\"/a b\"}",
		"{\"uri\":\"/a\\r\\nX: y\"}", "{\"uri\":\"\"}",
		"{\"headers\":{}}", "{\"headers\":[[\"A\"]]}",
		"{\"headers\":[[\"A B\",\"v\"]]}",
		"{\"headers\":[[\"A\",\"v\\r\\nX: y\"]]}",
		"{\"headers\":[[\"A\",1]]}", "{\"body\":5}",
		"{\"body_base64\":\"***\"}",
		"{\"body\":\"a\",\"body_base64\":\"YQ==\"}",
	};
	struct evbuffer *out = evbuffer_new();
	char err[256], *s;
	int code;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		code = 0;
		assert_int_equal(parse(bad[i], 0, out, &code, err), -1);
		assert_int_equal(code, 400);
		assert_int_equal(evbuffer_get_length(out), 0);
	}
	/* truncated body, unmodified: 409 naming the request */
	assert_int_equal(parse("{\"id\":\"r7\"}", 1, out, &code, err), -1);
	assert_int_equal(code, 409);
	assert_string_equal(err, "request r7's body was truncated at 5 "
	    "bytes: it cannot be replayed unmodified");
	/* as captured: the redacted header is left out */
	assert_int_equal(parse("{\"id\":\"r7\"}", 0, out, &code, err), 0);
	evbuffer_add(out, "", 1);
	s = (char *)evbuffer_pullup(out, -1);
	assert_string_equal(s, "POST /hook HTTP/1.1\r\nHost: web.example.com"
	    "\r\nContent-Length: 5\r\n\r\nhello");
	evbuffer_drain(out, evbuffer_get_length(out));
	/* modified: method, uri, headers, body (Content-Length fixed) */
	assert_int_equal(parse("{\"id\":\"r7\",\"method\":\"PUT\",\"uri\":"
	    "\"/x?y=1\",\"headers\":[[\"Host\",\"h\"],[\"X-A\",\"1\"],"
	    "[\"Content-Length\",\"99\"]],\"body_base64\":\"YWJj\"}", 1, out,
	    &code, err), 0);
	evbuffer_add(out, "", 1);
	s = (char *)evbuffer_pullup(out, -1);
	assert_string_equal(s, "PUT /x?y=1 HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n"
	    "Content-Length: 3\r\n\r\nabc");
	evbuffer_free(out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_capture_and_redaction),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_pipelined_and_cut),
		cmocka_unit_test(test_har),
		cmocka_unit_test(test_conns),
		cmocka_unit_test(test_replay_parse),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
