/* health.c: a tunnel's health check (health.h): probes on a timer, the
 * rise/fall state machine, and the HTTP status line it reads. */
#include "client/health.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "relay/dial.h"
#include "tls/tls.h"
#include "util/err.h"
#include "util/xmalloc.h"

#define HEALTH_READ_MAX 4096 /* bytes read for an HTTP status line */

const char *
health_state_name(int state)
{
	return state == HEALTH_UP ? "up" : state == HEALTH_DOWN ? "down" :
	    "unknown";
}

/* ---- the pure parts ---- */

void
health_sm_init(struct health_sm *sm)
{
	sm->state = HEALTH_UNKNOWN;
	sm->ok_run = sm->fail_run = 0;
}

int
health_sm_feed(struct health_sm *sm, unsigned rise, unsigned fall, int ok)
{
	if (ok) {
		sm->fail_run = 0;
		if (sm->ok_run < UINT32_MAX)
			sm->ok_run++;
		if (sm->state != HEALTH_UP && sm->ok_run >= rise) {
			sm->state = HEALTH_UP;
			return 1;
		}
	} else {
		sm->ok_run = 0;
		if (sm->fail_run < UINT32_MAX)
			sm->fail_run++;
		if (sm->state != HEALTH_DOWN && sm->fail_run >= fall) {
			sm->state = HEALTH_DOWN;
			return 1;
		}
	}
	return 0;
}

int
health_expect_match(const struct health_spec *h, int code)
{
	for (unsigned i = 0; i < h->nexpect && i < HEALTH_MAX_RANGES; i++)
		if (code >= h->expect_lo[i] && code <= h->expect_hi[i])
			return 1;
	return 0;
}

int
health_status_line(const uint8_t *p, size_t len, int *code)
{
	static const char pfx[] = "HTTP/1.";
	size_t n = sizeof(pfx) - 1, i;

	/* judge what is there as soon as it cannot be a status line */
	for (i = 0; i < len && i < n; i++)
		if (p[i] != (uint8_t)pfx[i])
			return -1;
	if (len < n + 1 + 1 + 3)
		return len > n && !isdigit(p[n]) ? -1 : 0;
	if (!isdigit(p[n]) || p[n + 1] != ' ' || !isdigit(p[n + 2]) ||
	    !isdigit(p[n + 3]) || !isdigit(p[n + 4]))
		return -1;
	/* the line must end for the status to count (a reason may follow) */
	for (i = n + 5; i < len; i++) {
		if (p[i] == '\n') {
			if (i > n + 5 && p[n + 5] != ' ' && p[n + 5] != '\r')
				return -1;
			*code = (p[n + 2] - '0') * 100 + (p[n + 3] - '0') * 10 +
			    (p[n + 4] - '0');
			return *code >= 100 ? 1 : -1;
		}
	}
	return 0;
}

/* ---- the checks ---- */

struct health {
	struct event_base *base;
	struct health_spec spec;
	const struct addrinfo *ai;
	char host[300];      /* Host: header, "host:port" */
	char sni[256];       /* "" = none */
	struct health_cbs cbs;
	void *arg;
	struct tls_ctx *tls; /* TLS checks: a context without verification */
	struct event *tick;  /* the next probe */
	struct event *tmo;   /* the probe in flight's deadline */
	struct event *io;    /* HTTP: writing the request, reading back */
	struct health_sm sm;
	uint64_t checks;
	char reason[256];
	/* the probe in flight */
	int busy;
	struct dial *dial;
	int fd;
	SSL *ssl;
	struct tls_hs *hs;
	char req[1024];       /* GET path (255) + Host (300) fit */
	size_t req_len, req_off;
	uint8_t buf[HEALTH_READ_MAX];
	size_t len;
};

static void health_probe(struct health *h);

/* "connection refused" from ECONNREFUSED: strerror, lower case */
static void
health_errno_text(int err, char *out, size_t cap)
{
	snprintf(out, cap, "%s", strerror(err ? err : EIO));
	if (out[0] && out[1] && !isupper((unsigned char)out[1]))
		out[0] = (char)tolower((unsigned char)out[0]);
}

/* the probe's resources go; the check stays */
static void
health_probe_clear(struct health *h)
{
	dial_cancel(h->dial);
	h->dial = NULL;
	tls_handshake_cancel(h->hs);
	h->hs = NULL;
	if (h->ssl != NULL)
		SSL_free(h->ssl);
	h->ssl = NULL;
	/* io and tmo stay allocated: this may run inside their callback */
	if (h->io != NULL)
		event_del(h->io);
	if (h->fd >= 0)
		close(h->fd);
	h->fd = -1;
	if (h->tmo != NULL)
		event_del(h->tmo);
	h->len = h->req_off = 0;
	h->busy = 0;
}

/* the probe ended: ok, or failed for reason */
static void
health_done(struct health *h, int ok, const char *reason)
{
	health_probe_clear(h);
	h->checks++;
	if (!ok)
		snprintf(h->reason, sizeof(h->reason), "%s", reason);
	if (h->cbs.result)
		h->cbs.result(h->arg, ok, ok ? "" : h->reason);
	if (health_sm_feed(&h->sm, h->spec.rise, h->spec.fall, ok) &&
	    h->cbs.change)
		h->cbs.change(h->arg, h->sm.state, h->sm.state == HEALTH_DOWN ?
		    h->reason : "", h->sm.state == HEALTH_DOWN ?
		    h->sm.fail_run : h->sm.ok_run);
}

static void
health_fail_errno(struct health *h, int err)
{
	char why[128];

	health_errno_text(err, why, sizeof(why));
	health_done(h, 0, why);
}

static void
health_on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct health *h = arg;
	unsigned ms = h->spec.timeout_ms;
	char why[64];

	if (ms % 1000 == 0)
		snprintf(why, sizeof(why), "timeout after %u s", ms / 1000);
	else
		snprintf(why, sizeof(why), "timeout after %u ms", ms);
	health_done(h, 0, why);
}

/* HTTP: the request out, then the status line in */
static void
health_on_io(evutil_socket_t fd, short what, void *arg)
{
	struct health *h = arg;
	ssize_t n;
	int code, r;

	if (h->req_off < h->req_len) {
		n = send(h->fd, h->req + h->req_off, h->req_len - h->req_off,
		    MSG_NOSIGNAL);
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
		    errno != EINTR) {
			health_fail_errno(h, errno);
			return;
		}
		if (n > 0)
			h->req_off += (size_t)n;
		if (h->req_off == h->req_len) {
			event_del(h->io);
			event_assign(h->io, h->base, h->fd,
			    EV_READ | EV_PERSIST, health_on_io, h);
			event_add(h->io, NULL);
		}
		return;
	}
	n = recv(h->fd, h->buf + h->len, sizeof(h->buf) - h->len, 0);
	if (n < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			health_fail_errno(h, errno);
		return;
	}
	h->len += (size_t)n;
	r = health_status_line(h->buf, h->len, &code);
	if (r == 1) {
		char why[32];
		snprintf(why, sizeof(why), "HTTP %d", code);
		health_done(h, health_expect_match(&h->spec, code), why);
	} else if (r < 0) {
		health_done(h, 0, "not an HTTP response");
	} else if (n == 0) {
		health_done(h, 0, "closed before a status line");
	} else if (h->len == sizeof(h->buf)) {
		health_done(h, 0, "no status line in the first 4 KiB");
	}
}

static void
health_on_handshake(SSL *ssl, int err, const char *why, void *arg)
{
	struct health *h = arg;
	char msg[300];

	h->hs = NULL; /* freed by tls once this returns */
	if (err == 0) {
		tls_shutdown(ssl);
		health_done(h, 1, "");
		return;
	}
	snprintf(msg, sizeof(msg), "TLS handshake failed: %s",
	    why && *why ? why : mg_strerror(err));
	health_done(h, 0, msg);
}

static void
health_on_dialed(int fd, int err, const struct sockaddr *sa, void *arg)
{
	struct health *h = arg;

	h->dial = NULL;
	if (fd < 0) {
		health_fail_errno(h, err ? err : ECONNREFUSED);
		return;
	}
	h->fd = fd;
	switch (h->spec.type) {
	case HEALTH_TCP:
		health_done(h, 1, "");
		return;
	case HEALTH_HTTP:
		event_assign(h->io, h->base, fd, EV_WRITE | EV_PERSIST,
		    health_on_io, h);
		if (event_add(h->io, NULL) != 0) {
			health_done(h, 0, "out of event slots");
			return;
		}
		return;
	case HEALTH_TLS:
		h->ssl = h->sni[0] ? tls_ssl_new_name(h->tls, fd, h->sni) :
		    tls_ssl_new(h->tls, fd);
		if (h->ssl == NULL) {
			health_done(h, 0, "TLS handshake failed: cannot make "
			    "a TLS connection");
			return;
		}
		/* a local service's certificate is its own business (often
		 * self-signed): only the handshake is checked */
		SSL_set_verify(h->ssl, SSL_VERIFY_NONE, NULL);
		h->hs = tls_handshake_start(h->base, h->ssl, 0,
		    h->spec.timeout_ms / 1000 + 1, health_on_handshake, h);
		if (h->hs == NULL)
			health_done(h, 0, "TLS handshake failed: cannot start");
		return;
	}
	health_done(h, 0, "unknown check type");
}

static void
health_probe(struct health *h)
{
	struct timeval tv;

	if (h->busy) /* one probe at a time: this tick is skipped */
		return;
	h->busy = 1;
	tv.tv_sec = h->spec.timeout_ms / 1000;
	tv.tv_usec = (h->spec.timeout_ms % 1000) * 1000;
	event_add(h->tmo, &tv);
	/* dial's own bound is in whole seconds: ours comes first */
	h->dial = dial_start(h->base, h->ai, SOCK_STREAM,
	    h->spec.timeout_ms / 1000 + 1, NULL, health_on_dialed, h);
	if (h->dial == NULL)
		health_fail_errno(h, errno);
}

static void
health_on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct health *h = arg;
	struct timeval tv;

	tv.tv_sec = h->spec.interval_ms / 1000;
	tv.tv_usec = (h->spec.interval_ms % 1000) * 1000;
	evtimer_add(h->tick, &tv);
	health_probe(h);
}

struct health *
health_new(struct event_base *base, const struct health_spec *spec,
    const struct health_target *t, const struct health_cbs *cbs, void *arg,
    char *err, size_t errcap)
{
	struct health *h = xcalloc(1, sizeof(*h));
	struct timeval now = { 0, 0 };
	struct in6_addr a6;
	int ip;

	h->base = base;
	h->spec = *spec;
	h->ai = t->ai;
	h->cbs = *cbs;
	h->arg = arg;
	h->fd = -1;
	health_sm_init(&h->sm);
	snprintf(h->host, sizeof(h->host), strchr(t->host, ':') ? "[%s]:%u" :
	    "%s:%u", t->host, t->port);
	ip = t->sni != NULL && inet_pton(strchr(t->sni, ':') ? AF_INET6 :
	    AF_INET, t->sni, &a6) == 1;
	if (t->sni != NULL && !ip && strlen(t->sni) < sizeof(h->sni))
		snprintf(h->sni, sizeof(h->sni), "%s", t->sni);
	if (spec->type == HEALTH_HTTP) {
		int n = snprintf(h->req, sizeof(h->req), "GET %s HTTP/1.1\r\n"
		    "Host: %s\r\nUser-Agent: mgrok-health/1\r\nConnection: "
		    "close\r\n\r\n", spec->path[0] ? spec->path : "/", h->host);
		h->req_len = n > 0 && (size_t)n < sizeof(h->req) ? (size_t)n :
		    0;
	}
	if (spec->type == HEALTH_TLS) {
		struct tls_client_opts to;
		memset(&to, 0, sizeof(to));
		to.alpn = ""; /* the local service's protocol is not ours */
		if (tls_client_ctx_new(&to, &h->tls, err, errcap) < 0) {
			free(h);
			return NULL;
		}
	}
	h->tick = evtimer_new(base, health_on_tick, h);
	h->tmo = evtimer_new(base, health_on_timeout, h);
	h->io = event_new(base, -1, 0, health_on_io, h);
	if (h->tick == NULL || h->tmo == NULL || h->io == NULL) {
		snprintf(err, errcap, "out of event slots");
		health_free(h);
		return NULL;
	}
	evtimer_add(h->tick, &now);
	return h;
}

void
health_free(struct health *h)
{
	if (h == NULL)
		return;
	health_probe_clear(h);
	if (h->io)
		event_free(h->io);
	if (h->tick)
		event_free(h->tick);
	if (h->tmo)
		event_free(h->tmo);
	tls_ctx_free(h->tls);
	free(h);
}

int
health_state(const struct health *h)
{
	return h->sm.state;
}

const char *
health_reason(const struct health *h)
{
	return h->reason;
}

uint64_t
health_checks(const struct health *h)
{
	return h->checks;
}
