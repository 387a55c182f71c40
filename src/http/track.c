/* track.c: the HTTP/1.x message tracker over http-parser (see http.h). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <http_parser.h>

#include "http/http.h"
#include "http/http_int.h"
#include "util/xmalloc.h"

#define TRACK_NAME_MAX 32        /* longest header name we look at */
#define TRACK_HOSTRAW_MAX (HTTP_HOST_MAX + 16) /* "[...]:65535" */
#define TRACK_HEAD_MIN 1024      /* first allocation of the head buffer */

enum track_state {
	TS_HEAD = 0,     /* collecting a head */
	TS_BODY,         /* head reported, body flowing */
	TS_DONE,         /* message end to report on the next feed */
	TS_RAW,          /* after UPGRADE: the rest is not HTTP */
	TS_DEAD,         /* after ERROR or TOO_LONG */
};

enum track_hdr {
	TH_OTHER = 0,
	TH_HOST,
	TH_AUTH,
};

struct http_track {
	http_parser parser;
	int is_request;
	enum track_state state;
	const char *err;

	/* The head being collected (and, once complete, the last head). */
	uint8_t *head;
	size_t head_len, head_cap;

	/* What the callbacks learnt of the current head. */
	struct http_head cur;
	char name[TRACK_NAME_MAX + 1];
	size_t name_len;
	int name_long, in_value;
	enum track_hdr hdr;
	char hostraw[TRACK_HOSTRAW_MAX + 1];
	size_t hostraw_len;
	size_t url_len, reason_len, auth_len;
	int host_seen, host_long, auth_seen, auth_bad;
	int head_done, msg_done;

	/* The next final response answers HEAD (no body) or CONNECT. */
	int expect_no_body, expect_connect;
};

static void
track_append(char *dst, size_t cap, size_t *len, const char *at, size_t n,
    int *overflow)
{
	size_t room = cap - 1 - *len;

	if (n > room) {
		if (overflow != NULL)
			*overflow = 1;
		n = room;
	}
	memcpy(dst + *len, at, n);
	*len += n;
	dst[*len] = '\0';
}

static int
track_on_message_begin(http_parser *hp)
{
	struct http_track *t = hp->data;

	memset(&t->cur, 0, sizeof(t->cur));
	t->cur.is_request = t->is_request;
	t->name_len = 0;
	t->name_long = t->in_value = 0;
	t->hdr = TH_OTHER;
	t->hostraw_len = t->url_len = t->reason_len = t->auth_len = 0;
	t->hostraw[0] = '\0';
	t->host_seen = t->host_long = t->auth_seen = t->auth_bad = 0;
	t->head_done = t->msg_done = 0;
	return 0;
}

static int
track_on_url(http_parser *hp, const char *at, size_t n)
{
	struct http_track *t = hp->data;

	track_append(t->cur.url, sizeof(t->cur.url), &t->url_len, at, n,
	    NULL);
	return 0;
}

static int
track_on_status(http_parser *hp, const char *at, size_t n)
{
	struct http_track *t = hp->data;

	track_append(t->cur.reason, sizeof(t->cur.reason), &t->reason_len,
	    at, n, NULL);
	return 0;
}

static int
track_on_header_field(http_parser *hp, const char *at, size_t n)
{
	struct http_track *t = hp->data;

	/* Trailers of a chunked body come here too: ignore them. */
	if (t->head_done)
		return 0;
	if (t->in_value) {
		t->in_value = 0;
		t->name_len = 0;
		t->name_long = 0;
	}
	track_append(t->name, sizeof(t->name), &t->name_len, at, n,
	    &t->name_long);
	return 0;
}

static int
track_on_header_value(http_parser *hp, const char *at, size_t n)
{
	struct http_track *t = hp->data;

	if (t->head_done)
		return 0;
	if (!t->in_value) {
		/* The first piece of a value: decide what the header is. */
		t->in_value = 1;
		t->hdr = TH_OTHER;
		if (!t->name_long && strcasecmp(t->name, "host") == 0) {
			t->hdr = TH_HOST;
			/* RFC 7230 5.4: more than one Host is a 400. */
			if (t->host_seen++)
				t->err = "more than one Host header";
		} else if (!t->name_long &&
		    strcasecmp(t->name, "authorization") == 0) {
			t->hdr = TH_AUTH;
			if (t->auth_seen++)
				t->auth_bad = 1;
		}
	}
	switch (t->hdr) {
	case TH_HOST:
		track_append(t->hostraw, sizeof(t->hostraw), &t->hostraw_len,
		    at, n, &t->host_long);
		break;
	case TH_AUTH:
		track_append(t->cur.authorization,
		    sizeof(t->cur.authorization), &t->auth_len, at, n,
		    &t->auth_bad);
		break;
	default:
		break;
	}
	return 0;
}

/* reg-name and IPv4 characters (RFC 3986), checked so that a Host used
 * for routing and logging is a plain name. */
static int
track_host_char(int c)
{
	return isalnum(c) || strchr("-._~!$&'()*+,;=%", c) != NULL;
}

/*
 * track_host: t->hostraw ("Name:port", "[v6]:port") into t->cur.host, lower
 * case, port cut, IPv6 literals keeping their brackets. 0, or -1 if the
 * value is not a host.
 */
static int
track_host(struct http_track *t)
{
	char *s = t->hostraw, *end = s + t->hostraw_len, *hend, *q;
	size_t n;

	if (t->host_long)
		return -1;
	while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	while (s < end && (*s == ' ' || *s == '\t'))
		s++;
	if (s == end)
		return 0;           /* an empty Host is allowed (no authority) */
	if (*s == '[') {
		if ((hend = memchr(s, ']', (size_t)(end - s))) == NULL)
			return -1;
		for (q = s + 1; q < hend; q++)
			if (!isxdigit((unsigned char)*q) && *q != ':' &&
			    *q != '.')
				return -1;
		hend++;
	} else {
		for (hend = s; hend < end && *hend != ':'; hend++)
			if (!track_host_char((unsigned char)*hend))
				return -1;
	}
	if (hend < end) {
		/* Only a port may follow: ":" and digits. */
		if (*hend != ':')
			return -1;
		for (q = hend + 1; q < end; q++)
			if (!isdigit((unsigned char)*q))
				return -1;
	}
	n = (size_t)(hend - s);
	if (n == 0 || n > HTTP_HOST_MAX)
		return -1;
	for (size_t i = 0; i < n; i++)
		t->cur.host[i] = (char)tolower((unsigned char)s[i]);
	t->cur.host[n] = '\0';
	/* the value as sent, port included (X-Forwarded-Host) */
	n = (size_t)(end - s);
	if (n >= sizeof(t->cur.host_header))
		n = sizeof(t->cur.host_header) - 1;
	memcpy(t->cur.host_header, s, n);
	t->cur.host_header[n] = '\0';
	return 0;
}

static int
track_on_headers_complete(http_parser *hp)
{
	struct http_track *t = hp->data;
	int rc = 0;

	t->head_done = 1;
	t->cur.http_major = hp->http_major;
	t->cur.http_minor = hp->http_minor;
	if (t->is_request) {
		snprintf(t->cur.method, sizeof(t->cur.method), "%s",
		    http_method_str((enum http_method)hp->method));
		t->cur.upgrade = hp->upgrade;
		if (t->err == NULL && track_host(t) != 0)
			t->err = "invalid Host header";
		if (t->auth_bad)
			t->cur.authorization[0] = '\0';
	} else {
		t->cur.status = hp->status_code;
		t->cur.authorization[0] = '\0';
		/* 101 and a 2xx answer to CONNECT end HTTP on this
		 * connection, Upgrade header or not: 2 tells http-parser. */
		if (hp->status_code == 101 || (t->expect_connect &&
		    hp->status_code >= 200 && hp->status_code < 300)) {
			t->cur.upgrade = 1;
			rc = 2;
		} else if ((t->expect_no_body && hp->status_code >= 200) ||
		    hp->status_code < 200 || hp->status_code == 204 ||
		    hp->status_code == 304) {
			/* RFC 7230 3.3.3: never a body, whatever
			 * Content-Length or Transfer-Encoding say (http-parser
			 * alone would read one). */
			rc = 1;
		}
		/* A 1xx is followed by the real answer: keep expecting. */
		if (hp->status_code >= 200 || hp->status_code == 101)
			t->expect_no_body = t->expect_connect = 0;
	}
	/* Stop here: http-parser returns before the final LF of the head,
	 * which http_track_feed passes in after the pause. */
	http_parser_pause(hp, 1);
	return rc;
}

static int
track_on_message_complete(http_parser *hp)
{
	struct http_track *t = hp->data;

	t->msg_done = 1;
	http_parser_pause(hp, 1);
	return 0;
}

static const http_parser_settings track_settings = {
	.on_message_begin = track_on_message_begin,
	.on_url = track_on_url,
	.on_status = track_on_status,
	.on_header_field = track_on_header_field,
	.on_header_value = track_on_header_value,
	.on_headers_complete = track_on_headers_complete,
	.on_message_complete = track_on_message_complete,
};

struct http_track *
http_track_new(int is_request)
{
	struct http_track *t = xcalloc(1, sizeof(*t));

	t->is_request = is_request != 0;
	http_parser_init(&t->parser, is_request ? HTTP_REQUEST :
	    HTTP_RESPONSE);
	t->parser.data = t;
	t->state = TS_HEAD;
	return t;
}

void
http_track_free(struct http_track *t)
{
	if (t == NULL)
		return;
	free(t->head);
	free(t);
}

void
http_track_expect_no_body(struct http_track *t)
{
	t->expect_no_body = 1;
}

void
http_track_expect_connect(struct http_track *t)
{
	t->expect_connect = 1;
}

const char *
http_track_error(const struct http_track *t)
{
	return t->err != NULL ? t->err : "no error";
}

const uint8_t *
http_track_head_bytes(const struct http_track *t, size_t *len)
{
	*len = t->head_len;
	return t->head;
}

static enum http_track_ev
track_fail(struct http_track *t, enum http_track_ev ev, const char *why)
{
	t->state = TS_DEAD;
	if (t->err == NULL)
		t->err = why;
	return ev;
}

/* track_parser_failed: did http-parser stop on an error (not a pause)? */
static int
track_parser_failed(struct http_track *t)
{
	enum http_errno e = HTTP_PARSER_ERRNO(&t->parser);

	if (e == HPE_OK || e == HPE_PAUSED)
		return 0;
	t->err = http_errno_description(e);
	return 1;
}

/* track_next: the next feed starts a new message. */
static void
track_next(struct http_track *t)
{
	t->state = TS_HEAD;
	t->head_len = 0;
	t->head_done = t->msg_done = 0;
}

static void
track_keep(struct http_track *t, const uint8_t *p, size_t n)
{
	size_t cap = t->head_cap;

	if (t->head_len + n > cap) {
		if (cap == 0)
			cap = TRACK_HEAD_MIN;
		while (cap < t->head_len + n)
			cap *= 2;
		if (cap > HTTP_HEAD_MAX)
			cap = HTTP_HEAD_MAX;
		t->head = xrealloc(t->head, cap);
		t->head_cap = cap;
	}
	memcpy(t->head + t->head_len, p, n);
	t->head_len += n;
}

/*
 * track_head_end: the parser paused in on_headers_complete just before the
 * head's final LF. Feed that LF, so that http-parser decides what follows:
 * nothing (a message without body, maybe an upgrade) or a body.
 */
static enum http_track_ev
track_head_end(struct http_track *t, struct http_head *h)
{
	static const char lf = '\n';
	http_parser *hp = &t->parser;

	if (t->err != NULL)
		return track_fail(t, HTTP_T_ERROR, t->err);
	if (t->is_request &&
	    http_request_head_check(t->head, t->head_len) != 0)
		return track_fail(t, HTTP_T_ERROR, "malformed request head");
	http_parser_pause(hp, 0);
	http_parser_execute(hp, &track_settings, &lf, 1);
	if (track_parser_failed(t))
		return track_fail(t, HTTP_T_ERROR, t->err);
	t->cur.keep_alive = http_should_keep_alive(hp);
	t->cur.head_len = t->head_len;
	*h = t->cur;
	if (t->msg_done && hp->upgrade) {
		/* 101, CONNECT, or an Upgrade request without a body. */
		t->state = TS_RAW;
		t->err = "the connection was upgraded";
		return HTTP_T_UPGRADE;
	}
	t->state = t->msg_done ? TS_DONE : TS_BODY;
	return HTTP_T_HEAD;
}

enum http_track_ev
http_track_feed(struct http_track *t, const uint8_t *p, size_t len,
    size_t *used, struct http_head *h)
{
	http_parser *hp = &t->parser;
	size_t off = 0, room, n;

	*used = 0;
	switch (t->state) {
	case TS_RAW:
		return HTTP_T_UPGRADE;
	case TS_DEAD:
		return HTTP_T_ERROR;
	case TS_DONE:
		track_next(t);
		return HTTP_T_DONE;
	case TS_BODY:
		if (len == 0)
			return HTTP_T_MORE;   /* 0 means EOF to http-parser */
		http_parser_pause(hp, 0);
		n = http_parser_execute(hp, &track_settings, (const char *)p,
		    len);
		if (track_parser_failed(t))
			return track_fail(t, HTTP_T_ERROR, t->err);
		*used = n;
		if (!t->msg_done)
			return HTTP_T_MORE;
		if (hp->upgrade) {
			/* An Upgrade request with a body: raw after it. */
			t->state = TS_RAW;
			t->err = "the connection was upgraded";
			return HTTP_T_UPGRADE;
		}
		track_next(t);
		return HTTP_T_DONE;
	case TS_HEAD:
		break;
	}

	/* Empty lines between messages are allowed (RFC 7230 3.5) and are
	 * not part of any head. */
	if (t->head_len == 0)
		while (off < len && (p[off] == '\r' || p[off] == '\n'))
			off++;
	if (off == len) {
		*used = len;
		return HTTP_T_MORE;
	}
	http_parser_pause(hp, 0);
	room = HTTP_HEAD_MAX - t->head_len;
	if (room > len - off)
		room = len - off;
	n = http_parser_execute(hp, &track_settings, (const char *)p + off,
	    room);
	if (track_parser_failed(t)) {
		*used = off + n;
		return track_fail(t, HTTP_T_ERROR, t->err);
	}
	if (!t->head_done) {
		track_keep(t, p + off, n);
		*used = off + n;
		if (t->head_len >= HTTP_HEAD_MAX)
			return track_fail(t, HTTP_T_TOO_LONG, "head too long");
		return HTTP_T_MORE;
	}
	/* Paused on the head's final LF, which is p[off + n]. */
	track_keep(t, p + off, n + 1);
	*used = off + n + 1;
	return track_head_end(t, h);
}
