/* proxydial.c: see proxydial.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <nettle/base64.h>

#include "relay/dial.h"
#include "relay/proxydial.h"
#include "util/loop.h"
#include "util/xmalloc.h"

#define PX_IN_MAX 8192       /* the longest reply head we read */

/* ------------------------------------------------------------ dialing */

enum px_state { PX_DIAL, PX_HTTP, PX_S_GREET, PX_S_AUTH, PX_S_CONNECT };

struct pxdial {
	struct event_base *base;
	struct proxy_url u;
	char host[256];
	uint16_t port;
	pxdial_done_fn done;
	void *arg;
	struct addrinfo *ai;
	struct dial *dial;
	struct event *ev, *timer;
	enum px_state state;
	int fd;
	unsigned timeout_s;
	uint8_t out[2048];
	size_t outlen, outpos;
	uint8_t in[PX_IN_MAX];
	size_t inlen;
	uint8_t target[16];     /* SOCKS5 (local resolution): the address */
	int target_af;          /* 0: send the name */
};

static void
px_finish(struct pxdial *d, const char *err, int auth)
{
	pxdial_done_fn done = d->done;
	void *arg = d->arg;
	int fd = d->fd;

	dial_cancel(d->dial);
	if (d->ev)
		event_free(d->ev);
	if (d->timer)
		event_free(d->timer);
	if (d->ai)
		freeaddrinfo(d->ai);
	if (err != NULL && fd >= 0) {
		close(fd);
		fd = -1;
	}
	free(d);
	done(fd, err, auth, arg);
}

static void
px_fail(struct pxdial *d, int auth, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
px_fail(struct pxdial *d, int auth, const char *fmt, ...)
{
	char msg[512], u[600], full[1200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(full, sizeof(full), "proxy %s: %s", proxy_url_str(&d->u, u,
	    sizeof(u)), msg);
	px_finish(d, full, auth);
}

/* printable text of a peer's bytes (a reason phrase) */
static void
px_printable(const uint8_t *p, size_t n, char *out, size_t cap)
{
	size_t o = 0;

	for (size_t i = 0; i < n && o + 1 < cap; i++)
		out[o++] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '?';
	out[o] = '\0';
}

static void px_on_io(evutil_socket_t fd, short what, void *arg);

/* queue out[0..outlen) and wait for the reply (state st) */
static void
px_send(struct pxdial *d, enum px_state st)
{
	d->state = st;
	d->outpos = 0;
	d->inlen = 0;
	if (d->ev)
		event_free(d->ev);
	d->ev = event_new(d->base, d->fd, EV_WRITE | EV_PERSIST, px_on_io, d);
	event_add(d->ev, NULL);
}

static void
px_wait_reply(struct pxdial *d)
{
	event_free(d->ev);
	d->ev = event_new(d->base, d->fd, EV_READ | EV_PERSIST, px_on_io, d);
	event_add(d->ev, NULL);
}

static void
px_put(struct pxdial *d, const void *p, size_t n)
{
	if (d->outlen + n <= sizeof(d->out)) {
		memcpy(d->out + d->outlen, p, n);
		d->outlen += n;
	}
}

static void
px_http_request(struct pxdial *d)
{
	int v6 = strchr(d->host, ':') != NULL;
	char hp[300];
	int n;

	snprintf(hp, sizeof(hp), "%s%s%s:%u", v6 ? "[" : "", d->host, v6 ? "]" :
	    "", d->port);
	n = snprintf((char *)d->out, sizeof(d->out), "CONNECT %s HTTP/1.1\r\n"
	    "Host: %s\r\n", hp, hp);
	d->outlen = (size_t)n;
	if (d->u.user[0]) {
		char cred[520], b64[BASE64_ENCODE_RAW_LENGTH(520) + 1];
		size_t cl = (size_t)snprintf(cred, sizeof(cred), "%s:%s",
		    d->u.user, d->u.pass);
		base64_encode_raw((char *)b64, cl, (const uint8_t *)cred);
		b64[BASE64_ENCODE_RAW_LENGTH(cl)] = '\0';
		d->outlen += (size_t)snprintf((char *)d->out + d->outlen,
		    sizeof(d->out) - d->outlen,
		    "Proxy-Authorization: Basic %s\r\n", b64);
		explicit_bzero(cred, sizeof(cred));
	}
	px_put(d, "\r\n", 2);
	px_send(d, PX_HTTP);
}

static void
px_socks_connect(struct pxdial *d)
{
	uint8_t pb[2] = { (uint8_t)(d->port >> 8), (uint8_t)d->port };

	d->outlen = 0;
	px_put(d, "\x05\x01\x00", 3);
	if (d->target_af == AF_INET) {
		px_put(d, "\x01", 1);
		px_put(d, d->target, 4);
	} else if (d->target_af == AF_INET6) {
		px_put(d, "\x04", 1);
		px_put(d, d->target, 16);
	} else {
		uint8_t l = (uint8_t)strlen(d->host);
		px_put(d, "\x03", 1);
		px_put(d, &l, 1);
		px_put(d, d->host, l);
	}
	px_put(d, pb, 2);
	px_send(d, PX_S_CONNECT);
}

static const char *
socks_rep(uint8_t rep)
{
	static const char *const r[] = { "succeeded",
		"general SOCKS server failure", "connection not allowed by "
		"ruleset", "network unreachable", "host unreachable",
		"connection refused", "TTL expired", "command not supported",
		"address type not supported" };

	return rep < sizeof(r) / sizeof(r[0]) ? r[rep] : "unknown error";
}

/* the reply so far (d->in[0..inlen)): 1 done, 0 more needed, -1 failed
 * (d is gone) */
static int
px_reply(struct pxdial *d)
{
	char why[200];

	switch (d->state) {
	case PX_HTTP: {
		uint8_t *e = memmem(d->in, d->inlen, "\r\n\r\n", 4);
		int code = 0;
		char *sp, *nl;
		if (e == NULL) {
			if (d->inlen == sizeof(d->in)) {
				px_fail(d, 0, "its reply to CONNECT has no end "
				    "within %d bytes", PX_IN_MAX);
				return -1;
			}
			return 0;
		}
		*e = '\0';
		if (strncmp((char *)d->in, "HTTP/1.", 7) != 0 ||
		    (sp = strchr((char *)d->in, ' ')) == NULL ||
		    sscanf(sp + 1, "%3d", &code) != 1) {
			px_printable(d->in, strcspn((char *)d->in, "\r\n"), why,
			    sizeof(why));
			px_fail(d, 0, "not an HTTP proxy (it answered \"%s\")",
			    why);
			return -1;
		}
		nl = sp + 1 + strcspn(sp + 1, "\r\n");
		px_printable((uint8_t *)sp + 1, (size_t)(nl - sp - 1), why,
		    sizeof(why));
		/* 407; tinyproxy says 401 */
		if (code == 407 || code == 401) {
			px_fail(d, 1, d->u.user[0] ? "it refused the user name "
			    "or password (%s)" : "it asks for a user name and "
			    "password (%s): give them in the URL, "
			    "http://USER:PASS@HOST:PORT", why);
			return -1;
		}
		if (code < 200 || code > 299) {
			px_fail(d, 0, "it refused CONNECT %s:%u (%s)", d->host,
			    d->port, why);
			return -1;
		}
		if ((size_t)(e + 4 - d->in) != d->inlen) {
			px_fail(d, 0, "it sent data after its reply to "
			    "CONNECT");
			return -1;
		}
		return 1;
	}
	case PX_S_GREET:
		if (d->inlen < 2)
			return 0;
		if (d->in[0] != 5 || d->inlen > 2) {
			px_fail(d, 0, "not a SOCKS5 proxy");
			return -1;
		}
		if (d->in[1] == 0x02 && d->u.user[0]) {
			uint8_t ul = (uint8_t)strlen(d->u.user);
			uint8_t pl = (uint8_t)strlen(d->u.pass);
			d->outlen = 0;
			px_put(d, "\x01", 1);
			px_put(d, &ul, 1);
			px_put(d, d->u.user, ul);
			px_put(d, &pl, 1);
			px_put(d, d->u.pass, pl);
			px_send(d, PX_S_AUTH);
			return 0;
		}
		if (d->in[1] == 0x00) {
			px_socks_connect(d);
			return 0;
		}
		px_fail(d, 1, "it accepts none of the methods offered (%s)",
		    d->u.user[0] ? "none, user/password" : "none: it may want a "
		    "user name and password, socks5://USER:PASS@HOST:PORT");
		return -1;
	case PX_S_AUTH:
		if (d->inlen < 2)
			return 0;
		if (d->in[1] != 0 || d->inlen > 2) {
			px_fail(d, 1, "it refused the user name or password");
			return -1;
		}
		px_socks_connect(d);
		return 0;
	case PX_S_CONNECT: {
		size_t need = 6;
		if (d->inlen < 5)
			return 0;
		if (d->in[0] != 5) {
			px_fail(d, 0, "not a SOCKS5 reply");
			return -1;
		}
		if (d->in[1] != 0) {
			px_fail(d, 0, "it could not reach %s:%u: %s", d->host,
			    d->port, socks_rep(d->in[1]));
			return -1;
		}
		need += d->in[3] == 1 ? 4 : d->in[3] == 4 ? 16 : d->in[3] == 3 ?
		    1u + d->in[4] : 0;
		if (need == 6) {
			px_fail(d, 0, "bad address type in its reply");
			return -1;
		}
		if (d->inlen < need)
			return 0;
		if (d->inlen > need) {
			px_fail(d, 0, "it sent data after its reply");
			return -1;
		}
		return 1;
	}
	default:
		return 0;
	}
}

static void
px_on_io(evutil_socket_t fd, short what, void *arg)
{
	struct pxdial *d = arg;
	ssize_t n;
	int rc;

	loop_note_io();
	if (d->outpos < d->outlen) {
		n = send(fd, d->out + d->outpos, d->outlen - d->outpos,
		    MSG_NOSIGNAL);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			px_fail(d, 0, "cannot write to it: %s", strerror(errno));
			return;
		}
		d->outpos += (size_t)n;
		if (d->outpos == d->outlen) {
			explicit_bzero(d->out, sizeof(d->out));
			px_wait_reply(d);
		}
		return;
	}
	n = recv(fd, d->in + d->inlen, sizeof(d->in) - d->inlen, 0);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		px_fail(d, 0, "it closed the connection %s", n < 0 ?
		    strerror(errno) : "before its reply");
		return;
	}
	d->inlen += (size_t)n;
	if ((rc = px_reply(d)) == 1)
		px_finish(d, NULL, 0);
}

static void
px_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct pxdial *d = arg;

	px_fail(d, 0, "no %s within %u s", d->state == PX_DIAL ? "connection" :
	    "answer", d->timeout_s);
}

static void
px_on_dialed(int fd, int err, const struct sockaddr *sa, void *arg)
{
	struct pxdial *d = arg;

	d->dial = NULL;
	if (fd < 0) {
		px_fail(d, 0, "cannot connect: %s", strerror(err ? err :
		    ECONNREFUSED));
		return;
	}
	d->fd = fd;
	if (d->u.kind == PROXY_URL_HTTP) {
		px_http_request(d);
		return;
	}
	d->outlen = 0;
	px_put(d, d->u.user[0] ? "\x05\x02\x00\x02" : "\x05\x01\x00",
	    d->u.user[0] ? 4 : 3);
	px_send(d, PX_S_GREET);
}

struct pxdial *
pxdial_start(struct event_base *base, const struct proxy_url *u,
    const char *host, uint16_t port, unsigned timeout_s,
    pxdial_done_fn done, void *arg, char *why, size_t wl)
{
	struct pxdial *d;
	struct addrinfo hints;
	struct timeval tv = { (time_t)timeout_s, 0 };
	char ps[8], us[600];
	int rc;

	if (strlen(host) >= sizeof(d->host)) {
		snprintf(why, wl, "host name too long for a proxy");
		return NULL;
	}
	d = xcalloc(1, sizeof(*d));
	d->base = base;
	d->u = *u;
	snprintf(d->host, sizeof(d->host), "%s", host);
	d->port = port;
	d->done = done;
	d->arg = arg;
	d->fd = -1;
	d->timeout_s = timeout_s;
	/* the target: an address literal is sent as one; socks5:// resolves
	 * the name here, socks5h:// and HTTP let the proxy do it */
	if (inet_pton(AF_INET, host, d->target) == 1)
		d->target_af = AF_INET;
	else if (inet_pton(AF_INET6, host, d->target) == 1)
		d->target_af = AF_INET6;
	else if (u->kind == PROXY_URL_SOCKS5) {
		struct addrinfo *ta;
		memset(&hints, 0, sizeof(hints));
		hints.ai_socktype = SOCK_STREAM;
		if ((rc = getaddrinfo(host, NULL, &hints, &ta)) != 0) {
			snprintf(why, wl, "cannot resolve %s: %s (socks5h:// "
			    "lets the proxy resolve it)", host,
			    gai_strerror(rc));
			free(d);
			return NULL;
		}
		d->target_af = ta->ai_family;
		if (ta->ai_family == AF_INET)
			memcpy(d->target, &((struct sockaddr_in *)(void *)
			    ta->ai_addr)->sin_addr, 4);
		else
			memcpy(d->target, &((struct sockaddr_in6 *)(void *)
			    ta->ai_addr)->sin6_addr, 16);
		freeaddrinfo(ta);
	} else if (strlen(host) > 255) {
		snprintf(why, wl, "host name too long for SOCKS5");
		free(d);
		return NULL;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	snprintf(ps, sizeof(ps), "%u", u->port);
	if ((rc = getaddrinfo(u->host, ps, &hints, &d->ai)) != 0) {
		snprintf(why, wl, "cannot resolve proxy %s: %s",
		    proxy_url_str(u, us, sizeof(us)), gai_strerror(rc));
		free(d);
		return NULL;
	}
	d->timer = evtimer_new(base, px_on_timer, d);
	evtimer_add(d->timer, &tv);
	d->dial = dial_start(base, d->ai, SOCK_STREAM, timeout_s, NULL,
	    px_on_dialed, d);
	if (d->dial == NULL) {
		snprintf(why, wl, "cannot connect to proxy %s: %s",
		    proxy_url_str(u, us, sizeof(us)), strerror(errno));
		event_free(d->timer);
		freeaddrinfo(d->ai);
		free(d);
		return NULL;
	}
	return d;
}

void
pxdial_cancel(struct pxdial *d)
{
	if (d == NULL)
		return;
	dial_cancel(d->dial);
	if (d->ev)
		event_free(d->ev);
	if (d->timer)
		event_free(d->timer);
	if (d->fd >= 0)
		close(d->fd);
	if (d->ai)
		freeaddrinfo(d->ai);
	free(d);
}
