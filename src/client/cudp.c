/* cudp.c: `mgrok connect --udp` (options in src/cli): each local UDP
 * source address gets its own DTLS 1.2 connection to the server's stream
 * proxy (docs/protocol.md section 6): the 274-byte header first, then one
 * record per datagram both ways. */
#include <errno.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "client/connect.h"
#include "proto/sproxy.h"
#include "tls/dtls.h"
#include "tls/tls.h"
#include "util/err.h"
#include "util/log.h"
#include "util/loop.h"
#include "util/mtime.h"
#include "util/net.h"
#include "util/xmalloc.h"

#define CU_MAX_FLOWS 1024
#define CU_BUCKETS 256
#define CU_HS_TIMEOUT_S 10
#define CU_IDLE_S 300
#define CU_PENDING_MAX (64 * 1024) /* queued per flow while handshaking */
#define CU_BATCH 64                /* datagrams per wake-up, per socket */
#define CU_SCRATCH 65536           /* any UDP datagram fits */

struct cflow;
LIST_HEAD(cflow_list, cflow);

struct cudp {
	struct event_base *base;
	struct tls_ctx *ctx;
	struct sockaddr_storage server;
	socklen_t server_len;
	int lfd;
	struct cflow_list buckets[CU_BUCKETS];
	unsigned nflows;
	unsigned idle_s;
	uint8_t hdr[SPROXY_HDR_LEN];
	uint8_t *buf;
	uint64_t next_id, flows_failed, up_pkts, down_pkts, drops, icmp;
	char server_str[300];
	struct event *lev;
};

/* One local source address and its DTLS connection. */
struct cflow {
	LIST_ENTRY(cflow) link;
	struct cudp *u;
	struct sockaddr_storage src;
	socklen_t srclen;
	int fd;
	SSL *ssl;
	struct tls_hs *hs;
	struct event *ev, *timer;
	struct evbuffer *pend;       /* 2-byte length + datagram, each */
	int up;                      /* handshake done, header sent */
	uint64_t id, last_ms, up_pkts, down_pkts;
	char srca[NET_ADDRSTR_MAX];
};

static uint64_t
cu_now_ms(struct cudp *u)
{
	/* monotonic, not libevent's cached time of day: see util/mtime.h */
	(void)u;
	return mtime_ms();
}

static unsigned
cu_hash(const struct sockaddr_storage *ss)
{
	const uint8_t *p;
	size_t n;
	uint32_t h = 2166136261u;

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)ss;

		h = (h ^ (uint32_t)s4->sin_port) * 16777619u;
		p = (const uint8_t *)&s4->sin_addr;
		n = 4;
	} else {
		const struct sockaddr_in6 *s6 = (const void *)ss;

		h = (h ^ (uint32_t)s6->sin6_port) * 16777619u;
		p = (const uint8_t *)&s6->sin6_addr;
		n = 16;
	}
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 16777619u;
	return h % CU_BUCKETS;
}

static int
cu_same(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return 0;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a;
		const struct sockaddr_in *y = (const void *)b;

		return x->sin_port == y->sin_port &&
		    x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (a->ss_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)a;
		const struct sockaddr_in6 *y = (const void *)b;

		return x->sin6_port == y->sin6_port &&
		    memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0;
	}
	return 0;
}

/* Free f; why (NULL: already logged) goes to the log. */
static void
cf_close(struct cflow *f, const char *why)
{
	struct cudp *u = f->u;

	if (why != NULL)
		log_info("flow %llu (%s): closed: %s (%llu datagrams out, "
		    "%llu back)", (unsigned long long)f->id, f->srca, why,
		    (unsigned long long)f->up_pkts,
		    (unsigned long long)f->down_pkts);
	if (f->hs != NULL)
		tls_handshake_cancel(f->hs);
	if (f->ev != NULL)
		event_free(f->ev);
	if (f->timer != NULL)
		event_free(f->timer);
	if (f->ssl != NULL) {
		if (f->up)
			tls_shutdown(f->ssl); /* the server closes its side */
		SSL_free(f->ssl);
	}
	if (f->fd >= 0)
		close(f->fd);
	if (f->pend != NULL) {
		if (evbuffer_get_length(f->pend) > 0)
			u->drops++;
		evbuffer_free(f->pend);
	}
	LIST_REMOVE(f, link);
	u->nflows--;
	free(f);
}

static void
cf_arm(struct cflow *f, unsigned s)
{
	struct timeval tv = { s, 0 };

	evtimer_add(f->timer, &tv);
}

static void
cf_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct cflow *f = arg;
	uint64_t now = cu_now_ms(f->u), idle_ms = (uint64_t)f->u->idle_s *
	    1000;
	char why[64];

	if (now - f->last_ms >= idle_ms) {
		snprintf(why, sizeof(why), "idle for %u s", f->u->idle_s);
		cf_close(f, why);
		return;
	}
	cf_arm(f, (unsigned)((idle_ms - (now - f->last_ms) + 999) / 1000));
}

/* One local datagram into a record. 0, or -1 when f was closed. */
static int
cf_send(struct cflow *f, const uint8_t *p, size_t len)
{
	struct cudp *u = f->u;
	int rc = dtls_write(f->ssl, p, len);

	if (rc == 0) {
		f->up_pkts++;
		u->up_pkts++;
		return 0;
	}
	if (rc == MG_EAGAIN) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS)
			u->icmp++;
		u->drops++;
		return 0;
	}
	cf_close(f, tls_why(f->ssl));
	return -1;
}

/* Records from the server back to the local source. */
static void
cf_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct cflow *f = arg;
	struct cudp *u = f->u;

	loop_note_io();
	for (int i = 0; i < CU_BATCH; i++) {
		ssize_t n = dtls_read(f->ssl, u->buf, DTLS_MAX_RECORD);

		if (n == 0) {
			cf_close(f, "the server closed the connection");
			return;
		}
		if (n < 0) {
			if (errno == EAGAIN)
				return;
			if (errno == EIO) {
				cf_close(f, tls_why(f->ssl));
				return;
			}
			u->icmp++;
			continue;
		}
		f->last_ms = cu_now_ms(u);
		if (sendto(u->lfd, u->buf, (size_t)n, 0,
		    (struct sockaddr *)&f->src, f->srclen) < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK &&
			    errno != ENOBUFS)
				u->icmp++;
			u->drops++;
			continue;
		}
		f->down_pkts++;
		u->down_pkts++;
	}
	/* records may be left inside OpenSSL with the socket drained */
	event_active(f->ev, EV_READ, 0);
}

static void
cf_on_handshake(SSL *ssl, int err, const char *why, void *arg)
{
	struct cflow *f = arg;
	struct cudp *u = f->u;
	uint8_t b[DTLS_MAX_RECORD];
	uint16_t len;

	f->hs = NULL;
	if (err != 0) {
		log_error("flow %llu (%s): DTLS with %s: %s",
		    (unsigned long long)f->id, f->srca, u->server_str, why);
		u->flows_failed++;
		cf_close(f, NULL);
		return;
	}
	/* the header first: losing it would make the server refuse us */
	if (dtls_write(ssl, u->hdr, sizeof(u->hdr)) != 0) {
		log_error("flow %llu (%s): cannot send the header: %s",
		    (unsigned long long)f->id, f->srca, errno == EIO ?
		    tls_why(ssl) : strerror(errno));
		u->flows_failed++;
		cf_close(f, NULL);
		return;
	}
	f->up = 1;
	log_info("flow %llu (%s): DTLS connected to %s",
	    (unsigned long long)f->id, f->srca, u->server_str);
	while (evbuffer_remove(f->pend, &len, sizeof(len)) == sizeof(len)) {
		if (len > sizeof(b) ||
		    evbuffer_remove(f->pend, b, len) != (int)len)
			break; /* cannot happen: cu_on_local wrote both */
		if (cf_send(f, b, len) < 0)
			return;
	}
	evbuffer_free(f->pend);
	f->pend = NULL;
	f->last_ms = cu_now_ms(u);
	f->ev = event_new(u->base, f->fd, EV_READ | EV_PERSIST, cf_on_read,
	    f);
	event_add(f->ev, NULL);
	cf_arm(f, u->idle_s);
	event_active(f->ev, EV_READ, 0);
}

static struct cflow *
cf_new(struct cudp *u, const struct sockaddr_storage *src, socklen_t srclen)
{
	struct cflow *f = xcalloc(1, sizeof(*f));

	f->u = u;
	f->fd = -1;
	memcpy(&f->src, src, sizeof(f->src));
	f->srclen = srclen;
	f->id = ++u->next_id;
	f->last_ms = cu_now_ms(u);
	net_addr_str((const struct sockaddr *)src, f->srca, sizeof(f->srca));
	f->pend = evbuffer_new();
	f->timer = evtimer_new(u->base, cf_on_timer, f);
	LIST_INSERT_HEAD(&u->buckets[cu_hash(src)], f, link);
	u->nflows++;
	f->fd = socket(u->server.ss_family, SOCK_DGRAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (f->fd < 0 || connect(f->fd, (struct sockaddr *)&u->server,
	    u->server_len) < 0) {
		log_error("flow %llu (%s): cannot reach %s: %s",
		    (unsigned long long)f->id, f->srca, u->server_str,
		    strerror(errno));
		goto fail;
	}
	if ((f->ssl = dtls_ssl_new(u->ctx, f->fd)) == NULL ||
	    (f->hs = tls_handshake_start(u->base, f->ssl, 0, CU_HS_TIMEOUT_S,
	    cf_on_handshake, f)) == NULL) {
		log_error("flow %llu (%s): cannot start DTLS",
		    (unsigned long long)f->id, f->srca);
		goto fail;
	}
	log_debug("flow %llu (%s): new, DTLS handshake with %s",
	    (unsigned long long)f->id, f->srca, u->server_str);
	return f;
fail:
	u->flows_failed++;
	cf_close(f, NULL);
	return NULL;
}

/* Local datagrams: find or make the flow of their source. */
static void
cu_on_local(evutil_socket_t fd, short what, void *arg)
{
	struct cudp *u = arg;

	loop_note_io();
	for (int i = 0; i < CU_BATCH; i++) {
		struct sockaddr_storage src;
		socklen_t sl = sizeof(src);
		struct cflow *f;
		ssize_t n = recvfrom(u->lfd, u->buf, CU_SCRATCH, 0,
		    (struct sockaddr *)&src, &sl);

		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK ||
			    errno == EINTR)
				return;
			if (dtls_transient(errno)) {
				u->icmp++;
				continue;
			}
			log_error("udp: %s", strerror(errno));
			return;
		}
		if (n == 0 || n > DTLS_MAX_RECORD ||
		    (src.ss_family != AF_INET && src.ss_family != AF_INET6)) {
			u->drops++; /* DTLS carries 1..16384 bytes a record */
			continue;
		}
		LIST_FOREACH(f, &u->buckets[cu_hash(&src)], link)
			if (cu_same(&f->src, &src))
				break;
		if (f == NULL) {
			if (u->nflows >= CU_MAX_FLOWS) {
				log_debug("udp: %u flows open, datagram "
				    "dropped", u->nflows);
				u->drops++;
				continue;
			}
			if ((f = cf_new(u, &src, sl)) == NULL) {
				u->drops++;
				continue;
			}
		}
		f->last_ms = cu_now_ms(u);
		if (f->up) {
			(void)cf_send(f, u->buf, (size_t)n);
			continue;
		}
		if (evbuffer_get_length(f->pend) + 2 + (size_t)n >
		    CU_PENDING_MAX) {
			u->drops++;
			continue;
		}
		{
			uint16_t len = (uint16_t)n;

			evbuffer_add(f->pend, &len, sizeof(len));
			evbuffer_add(f->pend, u->buf, (size_t)n);
		}
	}
}

struct cudp *
cudp_new(struct event_base *base, const struct connect_opts *co, char *err,
    size_t errcap)
{
	struct tls_client_opts o = co->tls;
	struct cudp *u = xcalloc(1, sizeof(*u));
	struct addrinfo hints, *res = NULL;
	char ps[8];
	const char *env;
	int r;

	u->base = base;
	u->lfd = -1;
	for (int i = 0; i < CU_BUCKETS; i++)
		LIST_INIT(&u->buckets[i]);
	u->idle_s = CU_IDLE_S;
	/* a testing knob: tests cannot wait 5 min for an idle close */
	if ((env = getenv("MGROK_DTLS_IDLE_S")) != NULL && *env != '\0') {
		char *end;
		unsigned long v = strtoul(env, &end, 10);

		if (*end == '\0' && v >= 1 && v <= 86400)
			u->idle_s = (unsigned)v;
	}
	if (o.server_name == NULL)
		o.server_name = co->shost;
	o.alpn = "";
	if (sproxy_encode(co->dhost, co->dport, u->hdr) < 0) {
		snprintf(err, errcap, "--to: host too long");
		goto fail;
	}
	snprintf(u->server_str, sizeof(u->server_str), strchr(co->shost, ':') ?
	    "[%s]:%u" : "%s:%u", co->shost, co->sport);
	if (dtls_client_ctx_new(&o, &u->ctx, err, errcap) < 0)
		goto fail;
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_DGRAM;
	hints.ai_flags = AI_NUMERICSERV;
	snprintf(ps, sizeof(ps), "%u", co->sport);
	if ((r = getaddrinfo(co->shost, ps, &hints, &res)) != 0) {
		snprintf(err, errcap, "cannot resolve %s: %s", co->shost,
		    gai_strerror(r));
		goto fail;
	}
	memcpy(&u->server, res->ai_addr, res->ai_addrlen);
	u->server_len = res->ai_addrlen;
	freeaddrinfo(res);
	if ((u->lfd = net_bind_udp(co->lhost, co->lport)) < 0) {
		snprintf(err, errcap, "cannot listen on udp %s:%u: %s",
		    co->lhost, co->lport, strerror(errno));
		goto fail;
	}
	u->buf = xmalloc(CU_SCRATCH);
	u->lev = event_new(base, u->lfd, EV_READ | EV_PERSIST, cu_on_local,
	    u);
	event_add(u->lev, NULL);
	return u;
fail:
	cudp_free(u);
	return NULL;
}

const char *
cudp_local_addr(const struct cudp *u, char *buf, size_t cap)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (getsockname(u->lfd, (struct sockaddr *)&ss, &sl) < 0)
		return "?";
	return net_addr_str((struct sockaddr *)&ss, buf, cap);
}

void
cudp_stats(const struct cudp *u, struct cudp_stats *st)
{
	st->flows = u->next_id;
	st->failed = u->flows_failed;
	st->up_pkts = u->up_pkts;
	st->down_pkts = u->down_pkts;
	st->drops = u->drops;
	st->icmp = u->icmp;
}

void
cudp_free(struct cudp *u)
{
	if (u == NULL)
		return;
	for (int i = 0; i < CU_BUCKETS; i++)
		while (!LIST_EMPTY(&u->buckets[i]))
			cf_close(LIST_FIRST(&u->buckets[i]), "shutting down");
	if (u->lev != NULL)
		event_free(u->lev);
	if (u->lfd >= 0)
		close(u->lfd);
	free(u->buf);
	tls_ctx_free(u->ctx);
	free(u);
}
