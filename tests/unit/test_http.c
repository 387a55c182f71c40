/* test_http.c: the HTTP tracker, head rewriting, basic auth, error pages
 * and SNI peeking (src/http). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <openssl/bio.h>
#include <openssl/ssl.h>

#include "http/http.h"
#include "util/err.h"

#define B(s) (const uint8_t *)(s)
#define MAX_EVS 16

/* What a feeding loop saw: each event and the input offset after it. */
struct ev {
	enum http_track_ev ev;
	size_t at;
	struct http_head h;
};

/*
 * drive: feed buf to t in pieces of `step` bytes, each piece again and
 * again until it is used up, as a connection would; record every event but
 * HTTP_T_MORE. Stops at a terminal event. Returns the number of events.
 */
static int
drive(struct http_track *t, const char *buf, size_t len, size_t step,
    struct ev *evs)
{
	struct http_head h;
	size_t pos = 0, used, rem;
	enum http_track_ev ev;
	int n = 0;

	while (pos < len) {
		rem = len - pos < step ? len - pos : step;
		for (;;) {
			memset(&h, 0x5a, sizeof(h));
			ev = http_track_feed(t, B(buf + pos), rem, &used, &h);
			assert_true(used <= rem);
			pos += used;
			rem -= used;
			if (ev == HTTP_T_MORE) {
				assert_int_equal(rem, 0);
				break;
			}
			assert_true(n < MAX_EVS);
			evs[n].ev = ev;
			evs[n].at = pos;
			evs[n].h = h;
			n++;
			if (ev == HTTP_T_ERROR || ev == HTTP_T_TOO_LONG ||
			    ev == HTTP_T_UPGRADE)
				return n;
		}
	}
	return n;
}

/* check_all_steps: every piece size gives the same events at the same
 * offsets. */
static void
check_all_steps(int is_request, const char *buf, const struct ev *want,
    int nwant, int no_body_first)
{
	size_t len = strlen(buf);
	struct ev evs[MAX_EVS];

	for (size_t step = 1; step <= len; step++) {
		struct http_track *t = http_track_new(is_request);
		int n;

		if (no_body_first)
			http_track_expect_no_body(t);
		n = drive(t, buf, len, step, evs);
		if (n != nwant)
			fail_msg("step %zu: %d events, want %d", step, n,
			    nwant);
		for (int i = 0; i < n; i++) {
			if (evs[i].ev != want[i].ev || evs[i].at != want[i].at)
				fail_msg("step %zu ev %d: %d@%zu want %d@%zu",
				    step, i, evs[i].ev, evs[i].at, want[i].ev,
				    want[i].at);
		}
		http_track_free(t);
	}
}

static void
test_simple_get(void **state)
{
	const char *req = "GET /x?y=1 HTTP/1.1\r\nHost: Example.COM\r\n"
	    "User-Agent: t\r\nAuthorization: Basic Zm9vOmJhcg==\r\n\r\n";
	size_t len = strlen(req), used, hl;
	struct http_track *t = http_track_new(1);
	const uint8_t *hb;
	struct http_head h;

	assert_int_equal(http_track_feed(t, B(req), len, &used, &h),
	    HTTP_T_HEAD);
	assert_int_equal(used, len);
	assert_true(h.is_request);
	assert_string_equal(h.method, "GET");
	assert_string_equal(h.url, "/x?y=1");
	assert_string_equal(h.host, "example.com");
	assert_string_equal(h.authorization, "Basic Zm9vOmJhcg==");
	assert_int_equal(h.http_major, 1);
	assert_int_equal(h.http_minor, 1);
	assert_int_equal(h.keep_alive, 1);
	assert_int_equal(h.upgrade, 0);
	assert_int_equal(h.head_len, len);
	hb = http_track_head_bytes(t, &hl);
	assert_int_equal(hl, len);
	assert_memory_equal(hb, req, len);
	/* No body: the message ends right there. */
	assert_int_equal(http_track_feed(t, B(""), 0, &used, &h),
	    HTTP_T_DONE);
	assert_int_equal(used, 0);
	assert_int_equal(http_track_feed(t, B(""), 0, &used, &h),
	    HTTP_T_MORE);
	http_track_free(t);

	/* Fed one byte at a time, the head comes with the last byte. */
	{
		struct ev want[] = { { HTTP_T_HEAD, len, { 0 } },
			{ HTTP_T_DONE, len, { 0 } } };
		check_all_steps(1, req, want, 2, 0);
	}
}

static void
test_http10_and_bare_lf(void **state)
{
	const char *r10 = "GET / HTTP/1.0\r\nHost: a\r\n\r\n";
	const char *lf = "GET / HTTP/1.1\nHost: b\n\n";
	struct http_track *t = http_track_new(1);
	struct http_head h;
	size_t used, hl;

	assert_int_equal(http_track_feed(t, B(r10), strlen(r10), &used, &h),
	    HTTP_T_HEAD);
	assert_int_equal(h.http_minor, 0);
	assert_int_equal(h.keep_alive, 0);
	http_track_free(t);

	t = http_track_new(1);
	assert_int_equal(http_track_feed(t, B(lf), strlen(lf), &used, &h),
	    HTTP_T_HEAD);
	assert_int_equal(used, strlen(lf));
	assert_string_equal(h.host, "b");
	http_track_head_bytes(t, &hl);
	assert_int_equal(hl, strlen(lf));
	http_track_free(t);
}

static void
test_pipelined(void **state)
{
	const char *r1 = "GET /a HTTP/1.1\r\nHost: one\r\n\r\n";
	const char *r2 = "HEAD /b HTTP/1.1\r\nHost: two\r\n"
	    "Connection: close\r\n\r\n";
	char buf[256];
	size_t l1 = strlen(r1), l2 = strlen(r2), used, off = 0;
	struct http_track *t = http_track_new(1);
	struct http_head h;

	snprintf(buf, sizeof(buf), "%s%s", r1, r2);
	assert_int_equal(http_track_feed(t, B(buf), l1 + l2, &used, &h),
	    HTTP_T_HEAD);
	assert_int_equal(used, l1);
	assert_string_equal(h.url, "/a");
	assert_string_equal(h.host, "one");
	assert_int_equal(h.keep_alive, 1);
	off += used;
	assert_int_equal(http_track_feed(t, B(buf + off), l1 + l2 - off,
	    &used, &h), HTTP_T_DONE);
	assert_int_equal(used, 0);
	assert_int_equal(http_track_feed(t, B(buf + off), l1 + l2 - off,
	    &used, &h), HTTP_T_HEAD);
	assert_int_equal(used, l2);
	assert_string_equal(h.method, "HEAD");
	assert_string_equal(h.url, "/b");
	assert_string_equal(h.host, "two");
	assert_int_equal(h.keep_alive, 0);
	assert_int_equal(h.head_len, l2);
	off += used;
	assert_int_equal(off, l1 + l2);
	assert_int_equal(http_track_feed(t, B(buf + off), 0, &used, &h),
	    HTTP_T_DONE);
	assert_int_equal(used, 0);
	http_track_free(t);

	{
		struct ev want[] = { { HTTP_T_HEAD, l1, { 0 } },
			{ HTTP_T_DONE, l1, { 0 } },
			{ HTTP_T_HEAD, l1 + l2, { 0 } },
			{ HTTP_T_DONE, l1 + l2, { 0 } } };
		check_all_steps(1, buf, want, 4, 0);
	}
	/* Empty lines between requests are consumed but not a head. */
	{
		const char *crlf = "GET / HTTP/1.1\r\n\r\n\r\n"
		    "GET /z HTTP/1.1\r\n\r\n";
		struct ev want[] = { { HTTP_T_HEAD, 18, { 0 } },
			{ HTTP_T_DONE, 18, { 0 } },
			{ HTTP_T_HEAD, 20 + 19, { 0 } },
			{ HTTP_T_DONE, 39, { 0 } } };
		struct ev evs[MAX_EVS];
		size_t hl;

		assert_int_equal(strlen(crlf), 39);
		check_all_steps(1, crlf, want, 4, 0);
		t = http_track_new(1);
		assert_int_equal(drive(t, crlf, 39, 39, evs), 4);
		assert_int_equal(evs[2].h.head_len, 19);
		assert_string_equal(evs[2].h.url, "/z");
		assert_memory_equal(http_track_head_bytes(t, &hl),
		    "GET /z HTTP/1.1\r\n\r\n", 19);
		http_track_free(t);
	}
}

static void
test_content_length_split(void **state)
{
	const char *head = "POST /up HTTP/1.1\r\nHost: a\r\n"
	    "Content-Length: 10\r\n\r\n";
	const char *next = "GET /n HTTP/1.1\r\n\r\n";
	size_t hl = strlen(head), used;
	struct http_track *t = http_track_new(1);
	struct http_head h;
	char buf[256];

	assert_int_equal(http_track_feed(t, B(head), hl, &used, &h),
	    HTTP_T_HEAD);
	assert_int_equal(used, hl);
	assert_int_equal(http_track_feed(t, B("01234"), 5, &used, &h),
	    HTTP_T_MORE);
	assert_int_equal(used, 5);
	snprintf(buf, sizeof(buf), "56789%s", next);
	assert_int_equal(http_track_feed(t, B(buf), strlen(buf), &used, &h),
	    HTTP_T_DONE);
	assert_int_equal(used, 5);
	assert_int_equal(http_track_feed(t, B(buf + 5), strlen(buf + 5),
	    &used, &h), HTTP_T_HEAD);
	assert_int_equal(used, strlen(next));
	assert_string_equal(h.url, "/n");
	http_track_free(t);

	snprintf(buf, sizeof(buf), "%s0123456789%s", head, next);
	{
		struct ev want[] = { { HTTP_T_HEAD, hl, { 0 } },
			{ HTTP_T_DONE, hl + 10, { 0 } },
			{ HTTP_T_HEAD, strlen(buf), { 0 } },
			{ HTTP_T_DONE, strlen(buf), { 0 } } };
		check_all_steps(1, buf, want, 4, 0);
	}
}

static void
test_chunked_split(void **state)
{
	const char *head = "POST /c HTTP/1.1\r\nHost: a\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n";
	const char *body = "5\r\nhello\r\n"
	    "1a;name=val\r\nabcdefghijklmnopqrstuvwxyz\r\n"
	    "0\r\nX-Trailer: t\r\nX-Other: u\r\n\r\n";
	const char *next = "GET /after HTTP/1.1\r\nHost: b\r\n\r\n";
	size_t hl = strlen(head), bl = strlen(body), nl = strlen(next);
	struct ev evs[MAX_EVS];
	char buf[512];

	snprintf(buf, sizeof(buf), "%s%s%s", head, body, next);
	{
		struct ev want[] = { { HTTP_T_HEAD, hl, { 0 } },
			{ HTTP_T_DONE, hl + bl, { 0 } },
			{ HTTP_T_HEAD, hl + bl + nl, { 0 } },
			{ HTTP_T_DONE, hl + bl + nl, { 0 } } };
		check_all_steps(1, buf, want, 4, 0);
	}
	/* Two pieces, split at every place of the body. */
	for (size_t cut = 1; cut < bl; cut++) {
		struct http_track *t = http_track_new(1);
		struct http_head h;
		size_t used;

		assert_int_equal(drive(t, head, hl, hl, evs), 1);
		assert_int_equal(http_track_feed(t, B(body), cut, &used, &h),
		    HTTP_T_MORE);
		assert_int_equal(used, cut);
		assert_int_equal(http_track_feed(t, B(body + cut), bl - cut,
		    &used, &h), HTTP_T_DONE);
		assert_int_equal(used, bl - cut);
		http_track_free(t);
	}
	/* The trailers are not the head's headers. */
	{
		struct http_track *t = http_track_new(1);

		assert_int_equal(drive(t, buf, strlen(buf), 7, evs), 4);
		assert_string_equal(evs[2].h.host, "b");
		assert_string_equal(evs[2].h.url, "/after");
		http_track_free(t);
	}
}

static void
test_head_response(void **state)
{
	const char *r1 = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n";
	const char *r2 = "HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\n";
	size_t l1 = strlen(r1), l2 = strlen(r2);
	struct ev evs[MAX_EVS];
	char buf[256];

	snprintf(buf, sizeof(buf), "%s%sabc", r1, r2);
	{
		/* Only the first response answers HEAD. */
		struct ev want[] = { { HTTP_T_HEAD, l1, { 0 } },
			{ HTTP_T_DONE, l1, { 0 } },
			{ HTTP_T_HEAD, l1 + l2, { 0 } },
			{ HTTP_T_DONE, l1 + l2 + 3, { 0 } } };
		check_all_steps(0, buf, want, 4, 1);
	}
	{
		struct http_track *t = http_track_new(0);

		http_track_expect_no_body(t);
		assert_int_equal(drive(t, buf, strlen(buf), 1000, evs), 4);
		assert_false(evs[0].h.is_request);
		assert_int_equal(evs[0].h.status, 200);
		assert_string_equal(evs[0].h.reason, "OK");
		assert_int_equal(evs[2].h.status, 404);
		assert_string_equal(evs[2].h.reason, "Not Found");
		assert_string_equal(evs[2].h.authorization, "");
		http_track_free(t);
	}
	/* Without the hint the first body would swallow the second. */
	{
		struct http_track *t = http_track_new(0);

		assert_int_equal(drive(t, buf, strlen(buf), 1000, evs), 1);
		assert_int_equal(evs[0].ev, HTTP_T_HEAD);
		http_track_free(t);
	}
}

static void
test_no_body_statuses(void **state)
{
	const char *r204 = "HTTP/1.1 204 No Content\r\nX: y\r\n\r\n";
	const char *r304 = "HTTP/1.1 304 Not Modified\r\n"
	    "Content-Length: 50\r\n\r\n";
	const char *r100 = "HTTP/1.1 100 Continue\r\n\r\n";
	const char *r200 = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
	size_t a = strlen(r204), b = strlen(r304), c = strlen(r100);
	char buf[512];

	snprintf(buf, sizeof(buf), "%s%s%s%s", r204, r304, r100, r200);
	{
		struct ev want[] = { { HTTP_T_HEAD, a, { 0 } },
			{ HTTP_T_DONE, a, { 0 } },
			{ HTTP_T_HEAD, a + b, { 0 } },
			{ HTTP_T_DONE, a + b, { 0 } },
			{ HTTP_T_HEAD, a + b + c, { 0 } },
			{ HTTP_T_DONE, a + b + c, { 0 } },
			{ HTTP_T_HEAD, strlen(buf) - 2, { 0 } },
			{ HTTP_T_DONE, strlen(buf), { 0 } } };
		check_all_steps(0, buf, want, 8, 0);
	}
	/* A 100 does not use up the HEAD hint: the 200 still has no body. */
	snprintf(buf, sizeof(buf), "%sHTTP/1.1 200 OK\r\nContent-Length: 9"
	    "\r\n\r\n", r100);
	{
		struct ev want[] = { { HTTP_T_HEAD, c, { 0 } },
			{ HTTP_T_DONE, c, { 0 } },
			{ HTTP_T_HEAD, strlen(buf), { 0 } },
			{ HTTP_T_DONE, strlen(buf), { 0 } } };
		check_all_steps(0, buf, want, 4, 1);
	}
}

static void
test_upgrade_response(void **state)
{
	const char *head = "HTTP/1.1 101 Switching Protocols\r\n"
	    "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
	size_t hl = strlen(head), used;
	struct http_track *t = http_track_new(0);
	struct http_head h;
	char buf[256];

	memcpy(buf, head, hl);
	memcpy(buf + hl, "\x81\x05hello", 7);
	assert_int_equal(http_track_feed(t, B(buf), hl + 7, &used, &h),
	    HTTP_T_UPGRADE);
	assert_int_equal(used, hl);
	assert_int_equal(h.status, 101);
	assert_int_equal(h.upgrade, 1);
	assert_int_equal(h.head_len, hl);
	/* The rest is not HTTP: the tracker takes none of it. */
	memset(&h, 0, sizeof(h));
	assert_int_equal(http_track_feed(t, B(buf + hl), 7, &used, &h),
	    HTTP_T_UPGRADE);
	assert_int_equal(used, 0);
	assert_int_equal(h.status, 0);
	assert_int_equal(http_track_feed(t, B(""), 0, &used, &h),
	    HTTP_T_UPGRADE);
	assert_int_equal(used, 0);
	http_track_free(t);

	/* A 101 without Upgrade headers ends HTTP all the same. */
	t = http_track_new(0);
	snprintf(buf, sizeof(buf), "HTTP/1.1 101 Switching\r\n\r\nraw");
	assert_int_equal(http_track_feed(t, B(buf), strlen(buf), &used, &h),
	    HTTP_T_UPGRADE);
	assert_int_equal(used, strlen(buf) - 3);
	http_track_free(t);

	/* A 2xx answer to CONNECT is a tunnel; a 407 is not. */
	t = http_track_new(0);
	http_track_expect_connect(t);
	snprintf(buf, sizeof(buf), "HTTP/1.1 407 No\r\nContent-Length: 1\r\n"
	    "\r\nxHTTP/1.1 200 Connection established\r\n\r\nraw");
	{
		struct ev evs[MAX_EVS];

		/* The hint is used up by the 407, as a client would
		 * send another CONNECT and say so again. */
		const char *ok = strstr(buf, "xHTTP") + 1;

		assert_int_equal(drive(t, buf, strlen(buf), 5, evs), 3);
		assert_int_equal(evs[0].h.status, 407);
		assert_int_equal(evs[1].ev, HTTP_T_DONE);
		assert_int_equal(evs[1].at, (size_t)(ok - buf));
		assert_int_equal(evs[2].ev, HTTP_T_HEAD);
		http_track_free(t);
		t = http_track_new(0);
		http_track_expect_connect(t);
		assert_int_equal(drive(t, ok, strlen(ok), 5, evs), 1);
		assert_int_equal(evs[0].ev, HTTP_T_UPGRADE);
		assert_int_equal(evs[0].at, strlen(ok) - 3);
	}
	http_track_free(t);
}

static void
test_upgrade_request(void **state)
{
	const char *ws = "GET /chat HTTP/1.1\r\nHost: ws.example:80\r\n"
	    "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
	    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	    "Sec-WebSocket-Version: 13\r\n\r\n";
	const char *conn = "CONNECT db:5432 HTTP/1.1\r\nHost: db:5432\r\n\r\n";
	size_t wl = strlen(ws), used, hl;
	struct http_track *t = http_track_new(1);
	struct http_head h;
	char buf[512];

	snprintf(buf, sizeof(buf), "%s\x81\x85xxxxhello", ws);
	assert_int_equal(http_track_feed(t, B(buf), strlen(buf), &used, &h),
	    HTTP_T_UPGRADE);
	assert_int_equal(used, wl);
	assert_int_equal(h.upgrade, 1);
	assert_string_equal(h.host, "ws.example");
	assert_string_equal(h.url, "/chat");
	assert_memory_equal(http_track_head_bytes(t, &hl), ws, wl);
	assert_int_equal(hl, wl);
	http_track_free(t);

	t = http_track_new(1);
	assert_int_equal(http_track_feed(t, B(conn), strlen(conn), &used, &h),
	    HTTP_T_UPGRADE);
	assert_int_equal(used, strlen(conn));
	assert_string_equal(h.method, "CONNECT");
	http_track_free(t);

	/* An Upgrade request with a body: raw only after the body. */
	snprintf(buf, sizeof(buf), "POST / HTTP/1.1\r\nHost: a\r\n"
	    "Upgrade: h2c\r\nConnection: Upgrade\r\nContent-Length: 4\r\n"
	    "\r\nbodyPRI * HTTP/2.0");
	{
		size_t h2 = strlen(buf) - strlen("bodyPRI * HTTP/2.0");
		struct ev want[] = { { HTTP_T_HEAD, h2, { 0 } },
			{ HTTP_T_UPGRADE, h2 + 4, { 0 } } };
		check_all_steps(1, buf, want, 2, 0);
	}
}

static void
make_head(char *buf, size_t total)
{
	const char *start = "GET / HTTP/1.1\r\nX-Pad: ";
	size_t sl = strlen(start);

	memcpy(buf, start, sl);
	memset(buf + sl, 'a', total - sl - 4);
	memcpy(buf + total - 4, "\r\n\r\n", 5);
}

static void
test_too_long(void **state)
{
	static char buf[HTTP_HEAD_MAX + 8];
	struct ev evs[MAX_EVS];
	struct http_track *t;
	struct http_head h;
	size_t used;

	make_head(buf, HTTP_HEAD_MAX + 1);
	t = http_track_new(1);
	assert_int_equal(http_track_feed(t, B(buf), HTTP_HEAD_MAX + 1, &used,
	    &h), HTTP_T_TOO_LONG);
	assert_int_equal(http_track_feed(t, B(buf), 1, &used, &h),
	    HTTP_T_ERROR);
	http_track_free(t);
	for (size_t step = 1000; step < 5000; step += 1234) {
		t = http_track_new(1);
		assert_int_equal(drive(t, buf, HTTP_HEAD_MAX + 1, step, evs),
		    1);
		assert_int_equal(evs[0].ev, HTTP_T_TOO_LONG);
		http_track_free(t);
	}
	/* Exactly HTTP_HEAD_MAX is fine. */
	make_head(buf, HTTP_HEAD_MAX);
	t = http_track_new(1);
	assert_int_equal(http_track_feed(t, B(buf), HTTP_HEAD_MAX, &used,
	    &h), HTTP_T_HEAD);
	assert_int_equal(used, HTTP_HEAD_MAX);
	assert_int_equal(h.head_len, HTTP_HEAD_MAX);
	http_track_free(t);
	t = http_track_new(1);
	assert_int_equal(drive(t, buf, HTTP_HEAD_MAX, 333, evs), 2);
	assert_int_equal(evs[0].ev, HTTP_T_HEAD);
	assert_int_equal(evs[0].at, HTTP_HEAD_MAX);
	http_track_free(t);
}

static void
expect_error(int is_request, const char *in)
{
	struct http_track *t = http_track_new(is_request);
	struct ev evs[MAX_EVS];
	int n;

	n = drive(t, in, strlen(in), strlen(in), evs);
	if (n < 1 || evs[n - 1].ev != HTTP_T_ERROR)
		fail_msg("no error for %s", in);
	assert_true(strlen(http_track_error(t)) > 0);
	assert_string_not_equal(http_track_error(t), "no error");
	http_track_free(t);
}

static void
test_malformed(void **state)
{
	struct http_track *t = http_track_new(1);
	struct http_head h;
	size_t used;

	assert_int_equal(http_track_feed(t, B("GET / XTTP/1.1\r\n\r\n"), 18,
	    &used, &h), HTTP_T_ERROR);
	assert_string_equal(http_track_error(t), "invalid constant string");
	assert_int_equal(http_track_feed(t, B("GET"), 3, &used, &h),
	    HTTP_T_ERROR);
	http_track_free(t);

	expect_error(1, "G@T / HTTP/1.1\r\n\r\n");
	expect_error(1, "GET /a b HTTP/1.1\r\n\r\n");
	expect_error(1, "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n");
	expect_error(1, "POST / HTTP/1.1\r\nContent-Length: 1\r\n"
	    "Content-Length: 2\r\n\r\n");
	expect_error(1, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
	    "\r\nzz\r\n");
	expect_error(1, "GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n");
	expect_error(0, "HTTP/1.1 2x0 OK\r\n\r\n");
	expect_error(0, "FTP/1.1 200 OK\r\n\r\n");
	/* Debian's http-parser is built non-strict; the tracker still
	 * refuses request heads that are not plain "name: value" lines. */
	expect_error(1, "GET / HTTQ/1.1\r\n\r\n");
	expect_error(1, "GET / HTTP/1.1\r\nHost : a\r\n\r\n");
}

static void
host_of(const char *value, const char *want)
{
	struct http_track *t = http_track_new(1);
	struct http_head h;
	char buf[512];
	size_t used;

	snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: %s\r\n\r\n",
	    value);
	if (want == NULL) {
		assert_int_equal(http_track_feed(t, B(buf), strlen(buf),
		    &used, &h), HTTP_T_ERROR);
	} else {
		assert_int_equal(http_track_feed(t, B(buf), strlen(buf),
		    &used, &h), HTTP_T_HEAD);
		assert_string_equal(h.host, want);
	}
	http_track_free(t);
}

static void
test_host(void **state)
{
	char big[300];

	host_of("Example.com:8080", "example.com");
	host_of("WWW.Example.com", "www.example.com");
	host_of("10.0.0.1:80", "10.0.0.1");
	host_of("[::1]:8080", "[::1]");
	host_of("[2001:DB8::1]", "[2001:db8::1]");
	host_of("a.b  ", "a.b");
	host_of("", "");
	host_of("a b", NULL);
	host_of("a/b", NULL);
	host_of("a:80x", NULL);
	host_of("[::1", NULL);
	host_of("[::1]x", NULL);
	host_of("[zz::1]", NULL);
	host_of(":80", NULL);
	memset(big, 'a', 255);
	big[255] = '\0';
	host_of(big, big);
	memset(big, 'a', 256);
	big[256] = '\0';
	host_of(big, NULL);
	expect_error(1, "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n");

	/* A repeated Authorization is not trusted. */
	{
		const char *r = "GET / HTTP/1.1\r\nAuthorization: Basic a\r\n"
		    "Authorization: Basic b\r\n\r\n";
		struct http_track *t = http_track_new(1);
		struct http_head h;
		size_t used;

		assert_int_equal(http_track_feed(t, B(r), strlen(r), &used,
		    &h), HTTP_T_HEAD);
		assert_string_equal(h.authorization, "");
		assert_string_equal(h.host, "");
		http_track_free(t);
	}
}

static char *
rewrite(const char *head, const struct http_rewrite *rw, int *rc)
{
	struct evbuffer *out = evbuffer_new();
	size_t n;
	char *s;

	*rc = http_rewrite_head(B(head), strlen(head), rw, out);
	n = evbuffer_get_length(out);
	s = malloc(n + 1);
	evbuffer_remove(out, s, n);
	s[n] = '\0';
	evbuffer_free(out);
	return s;
}

static void
test_rewrite(void **state)
{
	const char *in = "GET /p HTTP/1.1\r\nHost: Example.com:8080\r\n"
	    "User-Agent:  odd\tspacing \r\nX-Forwarded-For: 1.1.1.1\r\n"
	    "Cookie: a=b\r\nx-forwarded-for: 2.2.2.2  \r\n"
	    "X-Forwarded-Proto: evil\r\nAuthorization: Basic eHg=\r\n"
	    "x-forwarded-host: evil\r\nAccept: */*\r\n\r\n";
	/* from a visitor: its X-Forwarded-For lines are dropped */
	const char *want = "GET /p HTTP/1.1\r\nHost: localhost:3000\r\n"
	    "User-Agent:  odd\tspacing \r\n"
	    "Cookie: a=b\r\n"
	    "Accept: */*\r\nX-Forwarded-For: 9.9.9.9\r\n"
	    "X-Forwarded-Proto: https\r\n"
	    "X-Forwarded-Host: Example.com:8080\r\n\r\n";
	/* from a trusted proxy: kept as they are (their last entry is the
	 * visitor), nothing added */
	const char *want_trusted = "GET /p HTTP/1.1\r\n"
	    "Host: localhost:3000\r\n"
	    "User-Agent:  odd\tspacing \r\nX-Forwarded-For: 1.1.1.1\r\n"
	    "Cookie: a=b\r\nx-forwarded-for: 2.2.2.2  \r\n"
	    "Accept: */*\r\nX-Forwarded-Proto: https\r\n"
	    "X-Forwarded-Host: Example.com:8080\r\n\r\n";
	struct http_rewrite rw = { "9.9.9.9", "https", "Example.com:8080",
		"localhost:3000", 1, 0 };
	char *s, last[64];
	int rc;

	s = rewrite(in, &rw, &rc);
	assert_int_equal(rc, 0);
	assert_string_equal(s, want);
	free(s);
	rw.xff_trusted = 1;
	s = rewrite(in, &rw, &rc);
	assert_int_equal(rc, 0);
	assert_string_equal(s, want_trusted);
	free(s);
	/* what the nearest proxy saw: the last entry of the last line */
	assert_int_equal(http_xff_last(B(in), strlen(in), last, sizeof(last)),
	    0);
	assert_string_equal(last, "2.2.2.2");
	{
		const char *two = "GET / HTTP/1.1\r\nX-Forwarded-For: 6.6.6.6,"
		    " 10.0.0.7 \r\n\r\n";
		const char *none = "GET / HTTP/1.1\r\nX-Forwarded-For:  \r\n"
		    "\r\n";
		assert_int_equal(http_xff_last(B(two), strlen(two), last,
		    sizeof(last)), 0);
		assert_string_equal(last, "10.0.0.7");
		assert_int_equal(http_xff_last(B(two), strlen(two), last, 4),
		    -1);
		assert_int_equal(http_xff_last(B(none), strlen(none), last,
		    sizeof(last)), -1);
	}

	/* No X-Forwarded-For yet: added before the final CRLF; the rest,
	 * Authorization included, kept byte for byte. */
	{
		const char *in2 = "POST /x HTTP/1.0\r\nhost: a\r\n"
		    "Authorization: Bearer t\r\nX-Empty:\r\n\r\n";
		const char *want2 = "POST /x HTTP/1.0\r\nhost: a\r\n"
		    "Authorization: Bearer t\r\nX-Empty:\r\n"
		    "X-Forwarded-For: ::1\r\nX-Forwarded-Proto: http\r\n\r\n";
		struct http_rewrite rw2 = { "::1", "http", NULL, NULL, 0, 0 };

		s = rewrite(in2, &rw2, &rc);
		assert_int_equal(rc, 0);
		assert_string_equal(s, want2);
		free(s);
	}
	/* An empty X-Forwarded-For from a visitor: replaced. */
	{
		struct http_rewrite rw3 = { "5.5.5.5", NULL, NULL, NULL, 0, 0 };

		s = rewrite("GET / HTTP/1.1\r\nX-Forwarded-For: \r\n\r\n",
		    &rw3, &rc);
		assert_int_equal(rc, 0);
		assert_string_equal(s, "GET / HTTP/1.1\r\n"
		    "X-Forwarded-For: 5.5.5.5\r\n\r\n");
		free(s);
	}
	/* A trusted proxy that sent none: the address is added. */
	{
		struct http_rewrite rw5 = { "7.7.7.7", NULL, NULL, NULL, 0, 1 };

		s = rewrite("GET / HTTP/1.1\r\nA: b\r\n\r\n", &rw5, &rc);
		assert_int_equal(rc, 0);
		assert_string_equal(s, "GET / HTTP/1.1\r\nA: b\r\n"
		    "X-Forwarded-For: 7.7.7.7\r\n\r\n");
		free(s);
	}
	/* Nothing to do: the same bytes. Bare LF heads stay bare LF. */
	{
		struct http_rewrite none = { NULL, NULL, NULL, NULL, 0, 0 };
		const char *lf = "GET / HTTP/1.1\nA: b\n\n";

		s = rewrite(lf, &none, &rc);
		assert_int_equal(rc, 0);
		assert_string_equal(s, lf);
		free(s);
	}
	/* A head the tracker returned. */
	{
		const char *req = "GET /t HTTP/1.1\r\nHost: h.test\r\n\r\nbody";
		struct http_track *t = http_track_new(1);
		struct evbuffer *out = evbuffer_new();
		struct http_rewrite rw4 = { "1.2.3.4", "http", "h.test",
			"127.0.0.1:8000", 0, 0 };
		struct http_head h;
		const uint8_t *hb;
		size_t used, hl;
		const char *w = "GET /t HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
		    "X-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Proto: http\r\n"
		    "X-Forwarded-Host: h.test\r\n\r\n";

		assert_int_equal(http_track_feed(t, B(req), strlen(req),
		    &used, &h), HTTP_T_HEAD);
		hb = http_track_head_bytes(t, &hl);
		assert_int_equal(http_rewrite_head(hb, hl, &rw4, out), 0);
		assert_int_equal(evbuffer_get_length(out), strlen(w));
		assert_memory_equal(evbuffer_pullup(out, -1), w, strlen(w));
		evbuffer_free(out);
		http_track_free(t);
	}
}

static void
test_rewrite_refused(void **state)
{
	struct http_rewrite rw = { "1.1.1.1", "http", NULL, NULL, 0, 0 };
	struct http_rewrite bad = { "1.1.1.1\r\nX: y", "http", NULL, NULL, 0, 0 };
	static const char *const heads[] = {
		"HTTP/1.1 200 OK\r\nA: b\r\n\r\n",
		"GET / HTTP/1.1\r\nA: b\r\n",
		"GET / HTTP/1.1\r\nA: b\r\n\r\nbody",
		"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n",
		"GET / HTTP/1.1\r\nNoColon\r\n\r\n",
		"GET / HTTP/1.1\r\n: x\r\n\r\n",
		"GET /\r\n\r\n",
		"\r\n",
		"",
	};
	struct evbuffer *out = evbuffer_new();

	for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
		if (http_rewrite_head(B(heads[i]), strlen(heads[i]), &rw,
		    out) != MG_EPROTO)
			fail_msg("accepted %s", heads[i]);
		assert_int_equal(evbuffer_get_length(out), 0);
	}
	assert_int_equal(http_rewrite_head(B("GET / HTTP/1.1\r\n\r\n"), 18,
	    &bad, out), MG_EINVAL);
	assert_int_equal(evbuffer_get_length(out), 0);
	evbuffer_free(out);
}

static void
test_basic_auth(void **state)
{
	/* "alice:s3cret" */
	assert_true(http_basic_auth_ok("Basic YWxpY2U6czNjcmV0",
	    "alice:s3cret"));
	assert_true(http_basic_auth_ok("  bAsIc   YWxpY2U6czNjcmV0  ",
	    "alice:s3cret"));
	assert_false(http_basic_auth_ok("Basic YWxpY2U6czNjcmV0",
	    "alice:s3creT"));
	assert_false(http_basic_auth_ok("Basic YWxpY2U6czNjcmV0",
	    "alice:s3cret2"));
	assert_false(http_basic_auth_ok("Basic YWxpY2U6czNjcmV0", "alice"));
	/* "a:b" is YTpi; "a:" is YTo= */
	assert_true(http_basic_auth_ok("Basic YTpi", "a:b"));
	assert_true(http_basic_auth_ok("Basic YTo=", "a:"));
	assert_false(http_basic_auth_ok("Basic YTo", "a:"));
	assert_false(http_basic_auth_ok("Basic YTpi!", "a:b"));
	assert_false(http_basic_auth_ok("Basic YTpi extra", "a:b"));
	assert_false(http_basic_auth_ok("Basic", "a:b"));
	assert_false(http_basic_auth_ok("Basic ", ""));
	assert_false(http_basic_auth_ok("BasicYTpi", "a:b"));
	assert_false(http_basic_auth_ok("Bearer YTpi", "a:b"));
	assert_false(http_basic_auth_ok("Digest username=\"a\"", "a:b"));
	assert_false(http_basic_auth_ok("", "a:b"));
	assert_false(http_basic_auth_ok(NULL, "a:b"));
}

static void
test_error_response(void **state)
{
	struct evbuffer *out = evbuffer_new();
	char *s, *body, *cl;
	size_t n;

	http_error_response(out, 404, "no tunnel for <b>x&y</b>",
	    "WWW-Authenticate: Basic realm=\"mgrok\"\r\n", 0);
	n = evbuffer_get_length(out);
	s = malloc(n + 1);
	evbuffer_remove(out, s, n);
	s[n] = '\0';
	assert_true(strncmp(s, "HTTP/1.1 404 Not Found\r\n", 24) == 0);
	assert_non_null(strstr(s, "\r\nContent-Type: text/html"));
	assert_non_null(strstr(s, "\r\nConnection: close\r\n"));
	assert_non_null(strstr(s,
	    "\r\nWWW-Authenticate: Basic realm=\"mgrok\"\r\n\r\n"));
	assert_non_null(body = strstr(s, "\r\n\r\n"));
	body += 4;
	assert_non_null(cl = strstr(s, "Content-Length: "));
	assert_int_equal(strtoul(cl + 16, NULL, 10), strlen(body));
	assert_non_null(strstr(body, "<title>404 Not Found</title>"));
	assert_non_null(strstr(body,
	    "no tunnel for &lt;b&gt;x&amp;y&lt;/b&gt;"));
	assert_null(strstr(body, "<b>"));
	free(s);

	http_error_response(out, 502, NULL, NULL, 1);
	n = evbuffer_get_length(out);
	s = malloc(n + 1);
	evbuffer_remove(out, s, n);
	s[n] = '\0';
	assert_true(strncmp(s, "HTTP/1.1 502 Bad Gateway\r\n", 26) == 0);
	assert_non_null(strstr(s, "\r\nConnection: keep-alive\r\n"));
	body = strstr(s, "\r\n\r\n") + 4;
	cl = strstr(s, "Content-Length: ");
	assert_int_equal(strtoul(cl + 16, NULL, 10), strlen(body));
	free(s);
	evbuffer_free(out);

	/* The page parses as one complete response. */
	{
		struct http_track *t = http_track_new(0);
		struct evbuffer *o2 = evbuffer_new();
		struct ev evs[MAX_EVS];

		http_error_response(o2, 431, "too big", NULL, 1);
		n = evbuffer_get_length(o2);
		assert_int_equal(drive(t, (char *)evbuffer_pullup(o2, -1), n,
		    n, evs), 2);
		assert_int_equal(evs[1].ev, HTTP_T_DONE);
		assert_int_equal(evs[1].at, n);
		assert_int_equal(evs[0].h.status, 431);
		assert_string_equal(evs[0].h.reason,
		    "Request Header Fields Too Large");
		evbuffer_free(o2);
		http_track_free(t);
	}
	assert_string_equal(http_status_text(404), "Not Found");
	assert_string_equal(http_status_text(503), "Service Unavailable");
	assert_string_equal(http_status_text(999), "Unknown");
}

/* client_hello_alpn: the first flight of a real OpenSSL client, offering
 * the ALPN list alpn[0..alen) (wire format) when alpn is not NULL. */
static size_t
client_hello_alpn(const char *sni, const char *alpn, unsigned alen,
    uint8_t *buf, size_t cap)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	BIO *inner = NULL, *net = NULL;
	SSL *ssl;
	int n;

	assert_non_null(ctx);
	assert_non_null(ssl = SSL_new(ctx));
	if (sni != NULL)
		assert_int_equal(SSL_set_tlsext_host_name(ssl, sni), 1);
	if (alpn != NULL)
		assert_int_equal(SSL_set_alpn_protos(ssl,
		    (const unsigned char *)alpn, alen), 0);
	assert_int_equal(BIO_new_bio_pair(&inner, 0, &net, 0), 1);
	SSL_set_bio(ssl, inner, inner);
	assert_int_equal(SSL_connect(ssl), -1);
	assert_int_equal(SSL_get_error(ssl, -1), SSL_ERROR_WANT_READ);
	n = BIO_read(net, buf, (int)cap);
	assert_true(n > 100);
	SSL_free(ssl);
	BIO_free(net);
	SSL_CTX_free(ctx);
	return (size_t)n;
}

/* client_hello: the same without ALPN. */
static size_t
client_hello(const char *sni, uint8_t *buf, size_t cap)
{
	return client_hello_alpn(sni, NULL, 0, buf, cap);
}

/* http_hello_peek: the SNI as http_sni_peek, and the ALPN offer. */
static void
test_hello_alpn(void **state)
{
	static uint8_t hello[4096];
	static const char list[] = "\x02h2\x08http/1.1";
	char out[HTTP_HOST_MAX + 1];
	uint8_t alpn[64];
	size_t n, al = 99;

	n = client_hello_alpn("a.test", list, sizeof(list) - 1, hello,
	    sizeof(hello));
	assert_int_equal(http_hello_peek(hello, n, out, sizeof(out), alpn,
	    sizeof(alpn), &al), 0);
	assert_string_equal(out, "a.test");
	assert_int_equal(al, sizeof(list) - 1);
	assert_memory_equal(alpn, list, al);
	/* whole entries only: "h2" fits in 5 bytes, http/1.1 does not */
	assert_int_equal(http_hello_peek(hello, n, out, sizeof(out), alpn, 5,
	    &al), 0);
	assert_int_equal(al, 3);
	assert_memory_equal(alpn, "\x02h2", 3);
	assert_int_equal(http_hello_peek(hello, n, out, sizeof(out), alpn, 2,
	    &al), 0);
	assert_int_equal(al, 0);
	/* a prefix: none yet */
	assert_int_equal(http_hello_peek(hello, n - 1, out, sizeof(out), alpn,
	    sizeof(alpn), &al), MG_EAGAIN);
	assert_int_equal(al, 0);
	/* no ALPN offered */
	n = client_hello("a.test", hello, sizeof(hello));
	assert_int_equal(http_hello_peek(hello, n, out, sizeof(out), alpn,
	    sizeof(alpn), &al), 0);
	assert_int_equal(al, 0);
	assert_int_equal(http_hello_peek(hello, n, out, sizeof(out), NULL, 0,
	    NULL), 0);
}

static void
check_prefixes(const uint8_t *p, size_t len)
{
	char out[HTTP_HOST_MAX + 1];

	for (size_t i = 0; i < len; i++)
		if (http_sni_peek(p, i, out, sizeof(out)) != MG_EAGAIN)
			fail_msg("prefix %zu of %zu not EAGAIN", i, len);
}

static void
test_sni(void **state)
{
	static uint8_t hello[4096], frag[4200];
	char out[HTTP_HOST_MAX + 1];
	size_t n, rl, cut = 60;

	n = client_hello("Example.COM", hello, sizeof(hello));
	assert_int_equal(http_sni_peek(hello, n, out, sizeof(out)), 0);
	assert_string_equal(out, "example.com");
	check_prefixes(hello, n);
	/* More bytes after the hello change nothing. */
	memcpy(hello + n, "\x17\x03\x03\x00\x01x", 6);
	assert_int_equal(http_sni_peek(hello, n + 6, out, sizeof(out)), 0);
	assert_string_equal(out, "example.com");
	assert_int_equal(http_sni_peek(hello, n, out, 5), MG_ENOSPC);

	/* The same hello in two records. */
	rl = n - 5;
	memcpy(frag, hello, 3);
	frag[3] = (uint8_t)(cut >> 8);
	frag[4] = (uint8_t)cut;
	memcpy(frag + 5, hello + 5, cut);
	memcpy(frag + 5 + cut, hello, 3);
	frag[8 + cut] = (uint8_t)((rl - cut) >> 8);
	frag[9 + cut] = (uint8_t)(rl - cut);
	memcpy(frag + 10 + cut, hello + 5 + cut, rl - cut);
	assert_int_equal(http_sni_peek(frag, n + 5, out, sizeof(out)), 0);
	assert_string_equal(out, "example.com");
	check_prefixes(frag, n + 5);
	/* The second record is not a handshake. */
	frag[5 + cut] = 23;
	assert_int_equal(http_sni_peek(frag, n + 5, out, sizeof(out)),
	    MG_EPROTO);
	assert_int_equal(http_sni_peek(frag, 6 + cut, out, sizeof(out)),
	    MG_EPROTO);

	n = client_hello(NULL, hello, sizeof(hello));
	strcpy(out, "junk");
	assert_int_equal(http_sni_peek(hello, n, out, sizeof(out)), 0);
	assert_string_equal(out, "");
	check_prefixes(hello, n);

	assert_int_equal(http_sni_peek(B("GET / HTTP/1.1\r\n"), 16, out,
	    sizeof(out)), MG_EPROTO);
	assert_int_equal(http_sni_peek(B("G"), 1, out, sizeof(out)),
	    MG_EPROTO);
	assert_int_equal(http_sni_peek(B("\x16\x01"), 2, out, sizeof(out)),
	    MG_EPROTO);
	assert_int_equal(http_sni_peek(B("\x16\x03\x01\x00\x00"), 5, out,
	    sizeof(out)), MG_EPROTO);
	assert_int_equal(http_sni_peek(B("\x16\x03\x01\x00\x05\x02"), 6,
	    out, sizeof(out)), MG_EPROTO);
	assert_int_equal(http_sni_peek(B("\x16\x03\x01\x00\x05\x01"), 6,
	    out, sizeof(out)), MG_EAGAIN);
	assert_int_equal(http_sni_peek(B(""), 0, out, sizeof(out)),
	    MG_EAGAIN);

	/* Corrupt lengths inside a real hello. */
	n = client_hello("a.test", hello, sizeof(hello));
	hello[9 + 2 + 32] = 33;         /* session id longer than 32 */
	assert_int_equal(http_sni_peek(hello, n, out, sizeof(out)),
	    MG_EPROTO);
	n = client_hello("a.test", hello, sizeof(hello));
	hello[8]++;     /* the extensions no longer fill the hello */
	assert_int_equal(http_sni_peek(hello, n, out, sizeof(out)),
	    MG_EPROTO);
	hello[8] -= 2;  /* they overrun it */
	assert_int_equal(http_sni_peek(hello, n, out, sizeof(out)),
	    MG_EPROTO);
	/* A handshake longer than a record, with the rest to come. */
	n = client_hello("a.test", hello, sizeof(hello));
	hello[4]--;
	assert_int_equal(http_sni_peek(hello, n - 1, out, sizeof(out)),
	    MG_EAGAIN);
	memmove(hello + n, hello + n - 1, 1);
	memcpy(hello + n - 1, "\x16\x03\x01\x00\x01", 5);
	memcpy(hello + n + 4, hello + n, 1);
	assert_int_equal(http_sni_peek(hello, n + 5, out, sizeof(out)), 0);
	assert_string_equal(out, "a.test");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_simple_get),
		cmocka_unit_test(test_http10_and_bare_lf),
		cmocka_unit_test(test_pipelined),
		cmocka_unit_test(test_content_length_split),
		cmocka_unit_test(test_chunked_split),
		cmocka_unit_test(test_head_response),
		cmocka_unit_test(test_no_body_statuses),
		cmocka_unit_test(test_upgrade_response),
		cmocka_unit_test(test_upgrade_request),
		cmocka_unit_test(test_too_long),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_host),
		cmocka_unit_test(test_rewrite),
		cmocka_unit_test(test_rewrite_refused),
		cmocka_unit_test(test_basic_auth),
		cmocka_unit_test(test_error_response),
		cmocka_unit_test(test_sni),
		cmocka_unit_test(test_hello_alpn),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
