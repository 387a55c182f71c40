/* fuzz_httpfront.c: libFuzzer harness for the server's HTTP front as
 * src/server/hproxy.c builds it from src/http: a request tracker and a
 * response tracker over one keep-alive connection, Host routing, basic
 * auth, head rewriting, HEAD and CONNECT telling the response tracker what
 * to expect, interim 1xx responses, pipelined requests. (The hconn itself
 * needs a running server; this drives the same calls in the same order.)
 *
 * Input: byte 0 seeds the piece sizes, bytes 1-2 the length of the
 * visitor's bytes (the rest are the local service's), byte 3 flags (bit 0:
 * the tunnel has basic auth, bit 1: HTTPS). Both directions arrive in
 * pieces of input-chosen sizes, each in an allocation of exactly its size.
 * Checks: the trackers never consume more than fed and always progress; a
 * routed Host is a normalised host (lower case, no port, reg-name
 * characters or a bracketed IPv6 literal); a request head they accept is
 * one http_rewrite_head accepts, and the rewritten head parses again as a
 * request with the same method, target and host (or, past 16 KiB with
 * the added lines, as too long). */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "http/http.h"
#include "util/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const fh_hosts[] = { "demo.example.com", "[::1]",
	"127.0.0.1", "a-b.c" };

struct fh_dir {
	const uint8_t *p;
	size_t len, pos, i;
	uint8_t seed;
};

/* The next piece of a direction, in its own allocation; NULL at the end. */
static uint8_t *
fh_piece(struct fh_dir *d, size_t *n)
{
	uint8_t k, *b;

	if (d->pos >= d->len)
		return NULL;
	k = d->p[(d->i++ * 7919) % d->len] ^ d->seed;
	*n = k & 0x80 ? d->len - d->pos : (size_t)(k & 0x1f) + 1;
	if (*n > d->len - d->pos)
		*n = d->len - d->pos;
	b = malloc(*n);
	memcpy(b, d->p + d->pos, *n);
	return b;
}

static void
fh_check_host(const struct http_head *h)
{
	const char *s = h->host;
	size_t n = strlen(s);

	if (n == 0)
		return;
	if (s[0] == '[') {
		if (s[n - 1] != ']')
			abort();
		for (size_t i = 1; i + 1 < n; i++)
			if (!isxdigit((unsigned char)s[i]) && s[i] != ':' &&
			    s[i] != '.')
				abort();
		return;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (isupper(c) || c == ':' || c <= ' ' || c >= 0x7f ||
		    strchr("/?#@[]\"<>\\^`{|}", c) != NULL)
			abort();
	}
}

/* The rewritten head is a request head with the same method, target and
 * host (no new_host asked). */
static void
fh_reparse(struct evbuffer *up, const struct http_head *h)
{
	size_t len = evbuffer_get_length(up), used = 0;
	struct http_track *t = http_track_new(1);
	struct http_head h2;
	enum http_track_ev ev;
	uint8_t *b = malloc(len);

	evbuffer_remove(up, b, len);
	ev = http_track_feed(t, b, len, &used, &h2);
	if (len > HTTP_HEAD_MAX) {
		/* the added X-Forwarded-* lines may pass the limit */
		if (ev != HTTP_T_TOO_LONG)
			abort();
		goto out;
	}
	if (ev != HTTP_T_HEAD && ev != HTTP_T_UPGRADE)
		abort();
	if (strcmp(h->method, h2.method) != 0 || strcmp(h->url, h2.url) != 0 ||
	    strcmp(h->host, h2.host) != 0)
		abort();
out:
	http_track_free(t);
	free(b);
}

enum fh_state { FH_HEAD, FH_BODY, FH_RAW, FH_END };

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fh_dir rq = { 0 }, rs = { 0 };
	struct http_track *tq, *ts;
	struct evbuffer *up;
	struct http_head h, rh;
	enum fh_state st = FH_HEAD;
	int auth, https, routed = 0, req_done = 0, resp_done = 0;
	int interim = 0, guard = 0;
	size_t qlen;

	if (size < 4)
		return 0;
	qlen = (size_t)(data[1] | data[2] << 8) % (size - 3);
	auth = data[3] & 1;
	https = data[3] & 2;
	rq.p = data + 4;
	rq.len = qlen < size - 4 ? qlen : size - 4;
	rq.seed = data[0];
	rs.p = rq.p + rq.len;
	rs.len = size - 4 - rq.len;
	rs.seed = (uint8_t)(data[0] * 3);
	tq = http_track_new(1);
	ts = http_track_new(0);
	up = evbuffer_new();

	while (st != FH_END && st != FH_RAW && guard++ < 4096) {
		size_t n = 0, rem, used;
		uint8_t *b;
		enum http_track_ev ev;
		int progress = 0;

		/* the visitor's side */
		if (!req_done && (b = fh_piece(&rq, &n)) != NULL) {
			progress = 1;
			rem = n;
			/* after a head, feed once more even with nothing
			 * left: a bodiless request ends right there */
			for (int g = 0, again = 1; rem > 0 || again; g++) {
				if (g > 2 * (int)n + 8) /* no progress */
					abort();
				again = 0;
				ev = http_track_feed(tq, b + (n - rem), rem,
				    &used, &h);
				if (used > rem)
					abort();
				rem -= used;
				rq.pos += used;
				if (ev == HTTP_T_MORE) {
					if (rem != 0)
						abort();
					break;
				}
				if (ev == HTTP_T_ERROR || ev == HTTP_T_TOO_LONG) {
					if (http_track_error(tq) == NULL)
						abort();
					st = FH_END; /* 400 / 431 */
					break;
				}
				if (ev == HTTP_T_HEAD || (ev == HTTP_T_UPGRADE &&
				    st == FH_HEAD)) {
					const uint8_t *hb;
					size_t hl;
					struct http_rewrite rw = { "192.0.2.7",
						https ? "https" : "http", NULL,
						NULL, auth, 0 };
					size_t i;

					if (st != FH_HEAD)
						abort(); /* a head mid-body */
					fh_check_host(&h);
					for (i = 0; i < 4; i++)
						if (strcmp(fh_hosts[i], h.host) == 0)
							break;
					if (i == 4 || (auth &&
					    !http_basic_auth_ok(h.authorization,
					    "user:pass"))) {
						st = FH_END; /* 404 / 401 */
						break;
					}
					routed++;
					rw.fwd_host = h.host_header[0] ?
					    h.host_header : h.host;
					hb = http_track_head_bytes(tq, &hl);
					if (hb == NULL || hl != h.head_len ||
					    http_rewrite_head(hb, hl, &rw, up))
						abort();
					fh_reparse(up, &h);
					if (strcmp(h.method, "HEAD") == 0)
						http_track_expect_no_body(ts);
					if (strcmp(h.method, "CONNECT") == 0)
						http_track_expect_connect(ts);
					st = FH_BODY;
					resp_done = 0;
					again = 1;
				}
				if (ev == HTTP_T_UPGRADE) {
					req_done = 1;
					break;
				}
				if (ev == HTTP_T_DONE) {
					if (st != FH_BODY)
						abort(); /* an end without a head */
					req_done = 1;
					http_track_free(tq);
					tq = http_track_new(1);
					break; /* the rest waits for the response */
				}
			}
			free(b); /* what was not consumed is fed again */
		}
		if (st == FH_END)
			break;
		/* the local service's side, once a request went up */
		if (routed && !resp_done && (b = fh_piece(&rs, &n)) != NULL) {
			progress = 1;
			rem = n;
			for (int g = 0, again = 1; rem > 0 || again; g++) {
				if (g > 2 * (int)n + 8) /* no progress */
					abort();
				again = 0;
				ev = http_track_feed(ts, b + (n - rem), rem,
				    &used, &rh);
				if (used > rem)
					abort();
				rem -= used;
				rs.pos += used;
				if (ev == HTTP_T_MORE)
					break;
				if (ev == HTTP_T_ERROR || ev == HTTP_T_TOO_LONG) {
					st = FH_END; /* 502 */
					break;
				}
				if (ev == HTTP_T_UPGRADE) {
					st = FH_RAW;
					break;
				}
				if (ev == HTTP_T_HEAD) {
					/* 3DIGIT: "050" is a status too */
					if (rh.status < 0 || rh.status > 999)
						abort();
					interim = rh.status < 200 &&
					    rh.status != 101;
					again = 1;
				} else if (ev == HTTP_T_DONE && interim) {
					interim = 0;
					http_track_free(ts);
					ts = http_track_new(0);
				} else if (ev == HTTP_T_DONE) {
					resp_done = 1;
					http_track_free(ts);
					ts = http_track_new(0);
					break;
				}
			}
			free(b);
		}
		if (req_done && resp_done) {
			/* keep-alive: the next request on the connection */
			req_done = resp_done = 0;
			routed = 0;
			st = FH_HEAD;
			http_track_free(tq);
			tq = http_track_new(1);
		}
		if (!progress)
			break;
	}
	http_track_free(tq);
	http_track_free(ts);
	evbuffer_free(up);
	return 0;
}
