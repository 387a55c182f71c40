/* fuzz_http.c: libFuzzer harness for the HTTP tracker, head rewriting,
 * basic auth and SNI peeking. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "http/http.h"
#include "util/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* which X-Forwarded-For mode a head is rewritten in: from its length */
static size_t
hl_seed(const struct http_head *h)
{
	return h->head_len;
}

static void
fuzz_head(struct http_track *t, const struct http_head *h, int is_request,
    struct evbuffer *out)
{
	struct http_rewrite rw = { "192.0.2.1", "https", h->host,
		"127.0.0.1:8080", 1, (int)(hl_seed(h) & 1) };
	char xff[64];
	const uint8_t *hb;
	size_t hl;

	hb = http_track_head_bytes(t, &hl);
	if (hb == NULL || hl != h->head_len || hl == 0 || hl > HTTP_HEAD_MAX)
		abort();
	if (strnlen(h->method, sizeof(h->method)) == sizeof(h->method) ||
	    strnlen(h->url, sizeof(h->url)) == sizeof(h->url) ||
	    strnlen(h->reason, sizeof(h->reason)) == sizeof(h->reason) ||
	    strnlen(h->host, sizeof(h->host)) == sizeof(h->host) ||
	    strnlen(h->authorization, sizeof(h->authorization)) ==
	    sizeof(h->authorization))
		abort();
	if (!is_request)
		return;
	/* A request head the tracker accepted is one rewrite accepts. */
	if (http_rewrite_head(hb, hl, &rw, out) != 0)
		abort();
	evbuffer_drain(out, evbuffer_get_length(out));
	/* the last X-Forwarded-For entry: a short string without a comma,
	 * never a space at either end */
	if (http_xff_last(hb, hl, xff, sizeof(xff)) == 0) {
		size_t n = strlen(xff);
		if (n == 0 || n >= sizeof(xff) || strchr(xff, ',') ||
		    xff[0] == ' ' || xff[n - 1] == ' ')
			abort();
	}
	http_basic_auth_ok(h->authorization, "user:pass");
}

/* fuzz_track: feed the input in pieces whose sizes come from the input,
 * each piece in its own allocation of exactly its size. */
static void
fuzz_track(const uint8_t *data, size_t size, int is_request,
    struct evbuffer *out)
{
	struct http_track *t = http_track_new(is_request);
	size_t pos = 0, i = 0, used, rem, piece, guard = 0;
	enum http_track_ev ev;
	struct http_head h;
	uint8_t *buf;

	if (!is_request && size > 0 && (data[0] & 1))
		http_track_expect_no_body(t);
	while (pos < size) {
		uint8_t k = data[(i++ * 7919) % size];

		piece = k & 0x80 ? size - pos : (size_t)(k & 0x3f) + 1;
		if (piece > size - pos)
			piece = size - pos;
		buf = malloc(piece);
		memcpy(buf, data + pos, piece);
		rem = piece;
		for (;;) {
			if (++guard > 4 * size + 100)
				abort();  /* no progress */
			ev = http_track_feed(t, buf + (piece - rem), rem,
			    &used, &h);
			if (used > rem)
				abort();
			rem -= used;
			pos += used;
			if (ev == HTTP_T_HEAD || ev == HTTP_T_UPGRADE)
				fuzz_head(t, &h, is_request, out);
			if (ev == HTTP_T_ERROR || ev == HTTP_T_TOO_LONG ||
			    ev == HTTP_T_UPGRADE) {
				if (http_track_error(t) == NULL)
					abort();
				free(buf);
				goto out;
			}
			if (ev == HTTP_T_MORE) {
				if (rem != 0)
					abort();
				break;
			}
			if (!is_request && ev == HTTP_T_DONE &&
			    (k & 0x40))
				http_track_expect_no_body(t);
		}
		free(buf);
	}
out:
	http_track_free(t);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_rewrite rw = { "2001:db8::1", "http", NULL, "x", 0,
		size & 1 };
	struct evbuffer *out = evbuffer_new();
	char name[HTTP_HOST_MAX + 1];
	uint8_t *copy;
	int rc;

	fuzz_track(data, size, 1, out);
	fuzz_track(data, size, 0, out);

	rc = http_rewrite_head(data, size, &rw, out);
	if (rc != 0 && rc != MG_EPROTO)
		abort();

	rc = http_sni_peek(data, size, name, sizeof(name));
	if (rc == 0) {
		for (const char *p = name; *p != '\0'; p++)
			if (*p >= 'A' && *p <= 'Z')
				abort();
	} else if (rc != MG_EAGAIN && rc != MG_EPROTO && rc != MG_ENOSPC)
		abort();
	/* The ALPN list rides along: the same answer, whole entries that
	 * fit. */
	{
		uint8_t alpn[40];
		size_t al = 99, i;
		if (http_hello_peek(data, size, name, sizeof(name), alpn,
		    sizeof(alpn), &al) != rc || al > sizeof(alpn) ||
		    (rc != 0 && al != 0))
			abort();
		for (i = 0; i < al; i += 1 + alpn[i])
			if (alpn[i] == 0)
				abort();
		if (i != al)
			abort();
	}
	/* A prefix of a valid prefix is a valid prefix. */
	if (rc == MG_EAGAIN && size > 0) {
		copy = malloc(size / 2 + 1);
		memcpy(copy, data, size / 2);
		if (http_sni_peek(copy, size / 2, name, sizeof(name)) !=
		    MG_EAGAIN)
			abort();
		free(copy);
	}

	if (size < 600) {
		copy = malloc(size + 1);
		memcpy(copy, data, size);
		copy[size] = '\0';
		http_basic_auth_ok((char *)copy, "user:pass");
		free(copy);
	}
	evbuffer_free(out);
	return 0;
}
