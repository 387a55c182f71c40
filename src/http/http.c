/* http.c: basic auth, error pages and status texts for HTTP tunnels. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <http_parser.h>
#include <nettle/base64.h>

#include "http/http.h"
#include "util/crypto.h"

/* Longest base64 credential looked at: more than any sane user:pass. */
#define HTTP_AUTH_B64_MAX 1024

int
http_basic_auth_ok(const char *authorization, const char *user_pass)
{
	uint8_t dec[BASE64_DECODE_LENGTH(HTTP_AUTH_B64_MAX)];
	struct base64_decode_ctx ctx;
	const char *p, *b64;
	size_t n, declen = 0, want;
	int ok = 0;

	if (authorization == NULL || user_pass == NULL)
		return 0;
	p = authorization;
	p += strspn(p, " \t");
	if (strncasecmp(p, "basic", 5) != 0 || (p[5] != ' ' && p[5] != '\t'))
		return 0;
	p += 5;
	p += strspn(p, " \t");
	b64 = p;
	n = strcspn(p, " \t");
	if (n == 0 || n > HTTP_AUTH_B64_MAX || p[n + strspn(p + n, " \t")]
	    != '\0')
		return 0;
	base64_decode_init(&ctx);
	if (!base64_decode_update(&ctx, &declen, dec, n, b64) ||
	    !base64_decode_final(&ctx))
		goto out;
	want = strlen(user_pass);
	ok = declen == want && crypto_memeq(dec, user_pass, want);
out:
	explicit_bzero(dec, sizeof(dec));
	return ok;
}

const char *
http_status_text(int status)
{
	switch (status) {
#define XX(num, name, string) case num: return #string;
	HTTP_STATUS_MAP(XX)
#undef XX
	default:
		return "Unknown";
	}
}

static void
http_html_escape(struct evbuffer *out, const char *s)
{
	for (; *s != '\0'; s++) {
		switch (*s) {
		case '&':
			evbuffer_add(out, "&amp;", 5);
			break;
		case '<':
			evbuffer_add(out, "&lt;", 4);
			break;
		case '>':
			evbuffer_add(out, "&gt;", 4);
			break;
		case '"':
			evbuffer_add(out, "&quot;", 6);
			break;
		case '\'':
			evbuffer_add(out, "&#39;", 5);
			break;
		default:
			evbuffer_add(out, s, 1);
			break;
		}
	}
}

void
http_error_response(struct evbuffer *out, int status, const char *detail,
    const char *extra_headers, int keep_alive)
{
	struct evbuffer *body = evbuffer_new();
	const char *text = http_status_text(status);

	if (body == NULL)
		return;
	evbuffer_add_printf(body, "<!DOCTYPE html>\n<html><head>"
	    "<meta charset=\"utf-8\"><title>%d %s</title></head>\n"
	    "<body><h1>%d %s</h1>\n", status, text, status, text);
	if (detail != NULL && *detail != '\0') {
		evbuffer_add(body, "<p>", 3);
		http_html_escape(body, detail);
		evbuffer_add(body, "</p>\n", 5);
	}
	evbuffer_add_printf(body, "<hr><p>mgrok</p></body></html>\n");
	evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n"
	    "Content-Type: text/html; charset=utf-8\r\n"
	    "Content-Length: %zu\r\n"
	    "Cache-Control: no-store\r\n"
	    "Connection: %s\r\n"
	    "%s\r\n", status, text, evbuffer_get_length(body),
	    keep_alive ? "keep-alive" : "close",
	    extra_headers != NULL ? extra_headers : "");
	evbuffer_add_buffer(out, body);
	evbuffer_free(body);
}
