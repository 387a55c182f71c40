/* rewrite.c: request head rewriting for HTTP tunnels (see http.h). */
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "http/http.h"
#include "http/http_int.h"
#include "util/err.h"

/* One line of a head: [start, end) without its line ending, which is
 * [end, next). */
struct rw_line {
	const uint8_t *start, *end, *next;
};

enum rw_kind {
	RW_OTHER = 0,
	RW_HOST,
	RW_XFF,
	RW_XFP,
	RW_XFH,
	RW_AUTH,
};

static int
rw_tchar(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || (c != 0 && strchr("!#$%&'*+-.^_`|~",
	    c) != NULL);
}

/* rw_next_line: the line at p (before lim); 0, or -1 without an LF. */
static int
rw_next_line(const uint8_t *p, const uint8_t *lim, struct rw_line *l)
{
	const uint8_t *lf = memchr(p, '\n', (size_t)(lim - p));

	if (lf == NULL)
		return -1;
	l->start = p;
	l->end = lf > p && lf[-1] == '\r' ? lf - 1 : lf;
	l->next = lf + 1;
	return 0;
}

/* rw_name_is: does header line l have the name `name`? */
static int
rw_name_is(const struct rw_line *l, const uint8_t *colon, const char *name)
{
	size_t n = strlen(name);

	return (size_t)(colon - l->start) == n &&
	    strncasecmp((const char *)l->start, name, n) == 0;
}

static enum rw_kind
rw_classify(const struct rw_line *l, const uint8_t *colon)
{
	if (rw_name_is(l, colon, "host"))
		return RW_HOST;
	if (rw_name_is(l, colon, "x-forwarded-for"))
		return RW_XFF;
	if (rw_name_is(l, colon, "x-forwarded-proto"))
		return RW_XFP;
	if (rw_name_is(l, colon, "x-forwarded-host"))
		return RW_XFH;
	if (rw_name_is(l, colon, "authorization"))
		return RW_AUTH;
	return RW_OTHER;
}

/* rw_request_line: "METHOD SP target SP HTTP/x.y"? */
static int
rw_request_line(const struct rw_line *l)
{
	const uint8_t *p = l->start, *sp;

	while (p < l->end && rw_tchar(*p))
		p++;
	if (p == l->start || p == l->end || *p != ' ')
		return -1;
	p++;
	if ((sp = memchr(p, ' ', (size_t)(l->end - p))) == NULL || sp == p)
		return -1;
	sp++;
	if (l->end - sp != 8 || memcmp(sp, "HTTP/", 5) != 0)
		return -1;
	return 0;
}

/* rw_header_line: the colon of a "name: value" line, or NULL. */
static const uint8_t *
rw_header_line(const struct rw_line *l)
{
	const uint8_t *p = l->start;

	while (p < l->end && rw_tchar(*p))
		p++;
	if (p == l->start || p == l->end || *p != ':')
		return NULL;
	for (const uint8_t *q = p; q < l->end; q++)
		if (*q == '\0' || *q == '\r')
			return NULL;
	return p;
}

/* A value we put into a head must not end a line or the head. */
static int
rw_value_ok(const char *v)
{
	return v == NULL || strpbrk(v, "\r\n") == NULL;
}

/*
 * rw_scan: check that head is a request head and find the last
 * X-Forwarded-For line (the one the client address is appended to).
 */
static int
rw_scan(const uint8_t *head, size_t len, const uint8_t **last_xff)
{
	const uint8_t *p = head, *lim = head + len, *colon;
	struct rw_line l;

	*last_xff = NULL;
	if (rw_next_line(p, lim, &l) != 0 || rw_request_line(&l) != 0)
		return MG_EPROTO;
	for (p = l.next;; p = l.next) {
		if (rw_next_line(p, lim, &l) != 0)
			return MG_EPROTO;
		if (l.start == l.end)
			break;
		/* obs-fold (a line starting with SP or HT) is refused. */
		if ((colon = rw_header_line(&l)) == NULL)
			return MG_EPROTO;
		if (rw_classify(&l, colon) == RW_XFF)
			*last_xff = l.start;
	}
	if (l.next != lim)
		return MG_EPROTO;       /* bytes after the head */
	return 0;
}

int
http_request_head_check(const uint8_t *head, size_t len)
{
	const uint8_t *last_xff;

	return rw_scan(head, len, &last_xff);
}

int
http_xff_last(const uint8_t *head, size_t len, char *out, size_t cap)
{
	const uint8_t *last, *colon, *s, *e;
	struct rw_line l;

	if (rw_scan(head, len, &last) != 0 || last == NULL ||
	    rw_next_line(last, head + len, &l) != 0 ||
	    (colon = rw_header_line(&l)) == NULL)
		return -1;
	e = l.end;
	while (e > colon + 1 && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	for (s = e; s > colon + 1 && s[-1] != ','; s--)
		;
	while (s < e && (*s == ' ' || *s == '\t'))
		s++;
	if (s == e || (size_t)(e - s) >= cap)
		return -1;
	memcpy(out, s, (size_t)(e - s));
	out[e - s] = '\0';
	return 0;
}

static void
rw_add_header(struct evbuffer *out, const char *name, const char *value)
{
	evbuffer_add_printf(out, "%s: %s\r\n", name, value);
}

int
http_rewrite_head(const uint8_t *head, size_t len,
    const struct http_rewrite *rw, struct evbuffer *out)
{
	const uint8_t *p, *lim = head + len, *last_xff, *colon;
	struct evbuffer *tmp = NULL;
	struct rw_line l = { NULL, NULL, NULL };
	int rc, host_done = 0;

	if (!rw_value_ok(rw->client_ip) || !rw_value_ok(rw->proto) ||
	    !rw_value_ok(rw->fwd_host) || !rw_value_ok(rw->new_host))
		return MG_EINVAL;
	if ((rc = rw_scan(head, len, &last_xff)) != 0)
		return rc;
	if ((tmp = evbuffer_new()) == NULL)
		return MG_ENOMEM;

	rw_next_line(head, lim, &l);
	evbuffer_add(tmp, l.start, (size_t)(l.next - l.start));
	for (p = l.next;; p = l.next) {
		rw_next_line(p, lim, &l);
		if (l.start == l.end)
			break;
		colon = rw_header_line(&l);
		switch (rw_classify(&l, colon)) {
		case RW_HOST:
			if (rw->new_host == NULL)
				goto keep;
			/* One Host only: a repeated one is dropped. */
			if (!host_done)
				evbuffer_add_printf(tmp, "%.*s %s%.*s",
				    (int)(colon + 1 - l.start), l.start,
				    rw->new_host, (int)(l.next - l.end),
				    l.end);
			host_done = 1;
			continue;
		case RW_XFF:
			/* from anyone but a trusted proxy, a claim about
			 * the visitor's address is not passed on */
			if (rw->client_ip == NULL || rw->xff_trusted)
				goto keep;
			continue;
		case RW_XFP:
			if (rw->proto != NULL)
				continue;
			goto keep;
		case RW_XFH:
			if (rw->fwd_host != NULL)
				continue;
			goto keep;
		case RW_AUTH:
			if (rw->drop_authorization)
				continue;
			goto keep;
		case RW_OTHER:
			break;
		}
keep:
		evbuffer_add(tmp, l.start, (size_t)(l.next - l.start));
	}
	if (rw->new_host != NULL && !host_done)
		rw_add_header(tmp, "Host", rw->new_host);
	if (rw->client_ip != NULL && (last_xff == NULL || !rw->xff_trusted))
		rw_add_header(tmp, "X-Forwarded-For", rw->client_ip);
	if (rw->proto != NULL)
		rw_add_header(tmp, "X-Forwarded-Proto", rw->proto);
	if (rw->fwd_host != NULL)
		rw_add_header(tmp, "X-Forwarded-Host", rw->fwd_host);
	/* The final empty line, with its own line ending. */
	evbuffer_add(tmp, l.start, (size_t)(l.next - l.start));
	evbuffer_add_buffer(out, tmp);
	evbuffer_free(tmp);
	return 0;
}
