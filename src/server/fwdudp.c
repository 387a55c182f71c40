/* fwdudp.c: UDP ports another node owns, their flows forwarded to it
 * (fwdudp.h). */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "metrics/metrics.h"
#include "mux/mux.h"
#include "relay/dgram.h"
#include "server/forward.h"
#include "server/fwdudp.h"
#include "server/server_int.h"
#include "util/acl.h"
#include "util/err.h"
#include "util/log.h"
#include "util/loop.h"
#include "util/mtime.h"
#include "util/net.h"
#include "util/xmalloc.h"

#define FU_BUCKETS 256
#define FU_BATCH 16             /* datagrams per recvmmsg */
#define FU_SLOT 65536           /* room for the largest */
#define FU_MAX_PER_EVENT 256    /* datagrams read per wake-up, at most */
#define FU_SEND_BATCH 64        /* datagrams per dgram_send */
#define FU_FLOW_WINDOW (16 * 1024 * 1024) /* as udp.c's flows */
#define FU_MAX_CORK 4           /* node link sessions corked per batch */

enum fu_state {
	FU_OPENING = 1, /* forward_open's answer is due */
	FU_UP,          /* st carries the flow */
	FU_FAILED,      /* no stream: datagrams dropped until retry_ms */
};

/* A visitor's flow: on its port's hash chain and idle list. One that
 * ends while its stream is being opened leaves both (p NULL) and is
 * freed by forward_open's answer, which is always due. */
struct fu_flow {
	struct fu_flow *next;         /* hash chain */
	TAILQ_ENTRY(fu_flow) lru;     /* p->lru, least recent first */
	struct fu_port *p;
	enum fu_state state;
	struct mux_stream *st;        /* FU_UP */
	struct sockaddr_storage src;  /* its datagrams' source: replies go
					 there */
	socklen_t slen;
	struct sockaddr_storage vis;  /* the visitor: src, or whom a trusted
					 balancer's header named */
	int gso;                      /* UDP GSO towards src (dgram_send) */
	uint64_t last_ms;
	uint64_t retry_ms;            /* FU_FAILED: asks again from then */
	struct evbuffer *q;           /* FU_OPENING: u16 length | payload */
	unsigned nq;
};

struct fu_port {
	LIST_ENTRY(fu_port) link;
	struct fwdudp *fu;
	uint16_t port;
	int fd;                       /* -1: not bound (yet) */
	int bind_logged;
	struct event *ev, *sweep;
	struct fu_flow *flows[FU_BUCKETS];
	TAILQ_HEAD(, fu_flow) lru;
	unsigned nflows;
};

struct fwdudp {
	struct server *srv;
	LIST_HEAD(, fu_port) ports;
	unsigned nports;
	uint8_t *buf;                 /* FU_BATCH * FU_SLOT: reads, and
					 datagrams split across chains */
};

/* Drops of one batch, counted once at its end, and the node link
 * sessions corked meanwhile (their frames go out in one write). */
struct fu_batch {
	uint64_t now;
	uint64_t bytes;
	uint64_t drop_size, drop_untrusted, drop_header, drop_stream,
	    drop_full;
	struct mux *cork[FU_MAX_CORK];
	int ncork;
};

static void fu_flow_readable(struct mux_stream *st, void *arg);
static void fu_flow_closed(struct mux_stream *st, void *arg);

static const struct mux_stream_cbs fu_flow_cbs = {
	.readable = fu_flow_readable,
	.closed = fu_flow_closed,
};

static void
fu_cork(struct fu_batch *b, struct mux_stream *st)
{
	struct mux *m = mux_stream_session(st);

	for (int i = 0; i < b->ncork; i++)
		if (b->cork[i] == m)
			return;
	if (b->ncork < FU_MAX_CORK) {
		mux_cork(m);
		b->cork[b->ncork++] = m;
	}
}

/* the batch's figures; then its frames go out */
static void
fu_batch_end(struct server *srv, struct fu_batch *b)
{
	if (b->bytes)
		met_add(srv->m.fw_bytes[0], b->bytes);
	if (b->drop_size)
		smet_udp_drop(srv, SMET_IN, "bad_size", b->drop_size);
	if (b->drop_untrusted)
		smet_udp_drop(srv, SMET_IN, "untrusted_source",
		    b->drop_untrusted);
	if (b->drop_header)
		smet_udp_drop(srv, SMET_IN, "bad_proxy_header",
		    b->drop_header);
	if (b->drop_stream)
		smet_udp_drop(srv, SMET_IN, "no_stream", b->drop_stream);
	if (b->drop_full)
		smet_udp_drop(srv, SMET_IN, "stream_full", b->drop_full);
	/* uncorking writes and never calls back (errors wait for a later
	 * event), and no session is freed meanwhile */
	for (int i = 0; i < b->ncork; i++)
		mux_uncork(b->cork[i]);
}

static unsigned
fu_hash(const struct sockaddr *sa, socklen_t len)
{
	return dgram_addr_hash(sa, len) % FU_BUCKETS;
}

static struct fu_flow **
fu_slot(struct fu_port *p, const struct sockaddr *sa, socklen_t len)
{
	struct fu_flow **pp = &p->flows[fu_hash(sa, len)];

	for (; *pp != NULL; pp = &(*pp)->next)
		if ((*pp)->slen == len && memcmp(&(*pp)->src, sa, len) == 0)
			break;
	return pp;
}

static void
fu_flow_destroy(struct fu_flow *f)
{
	if (f->q)
		evbuffer_free(f->q);
	free(f);
}

/* f ends: off its port; its stream ends (FIN), or, while the stream is
 * being opened, f waits for forward_open's answer alone */
static void
fu_flow_end(struct fu_flow *f)
{
	struct fu_port *p = f->p;
	struct fu_flow **pp = fu_slot(p, (struct sockaddr *)&f->src, f->slen);

	if (*pp == f)
		*pp = f->next;
	TAILQ_REMOVE(&p->lru, f, lru);
	p->nflows--;
	f->p = NULL;
	if (f->state == FU_OPENING) {
		if (f->nq)
			smet_udp_drop(p->fu->srv, SMET_IN, "no_stream", f->nq);
		evbuffer_drain(f->q, evbuffer_get_length(f->q));
		f->nq = 0;
		return;
	}
	mux_stream_free(f->st);
	fu_flow_destroy(f);
}

static void
fu_flow_touch(struct fu_flow *f, uint64_t now)
{
	struct fu_port *p = f->p;

	f->last_ms = now;
	if (TAILQ_NEXT(f, lru) != NULL) {
		TAILQ_REMOVE(&p->lru, f, lru);
		TAILQ_INSERT_TAIL(&p->lru, f, lru);
	}
}

/* one datagram on f's stream: 0, or -1 (dropped: the window is full) */
static int
fu_flow_put(struct fu_flow *f, const uint8_t *data, size_t len)
{
	return mux_stream_send_datagram(f->st, data, len) == 0 ? 0 : -1;
}

static void
fu_flow_opened(void *arg, struct mux_stream *st, const char *err)
{
	struct fu_flow *f = arg;
	struct server *srv;
	char a[NET_ADDRSTR_MAX], e[LOG_ESC_MAX];
	uint64_t sent = 0, dropped = 0;

	if (f->p == NULL) {
		/* it ended meanwhile (idle, evicted, its port closed) */
		mux_stream_free(st);
		fu_flow_destroy(f);
		return;
	}
	srv = f->p->fu->srv;
	if (st == NULL) {
		log_debug("cluster: udp port %u: the flow of %s not forwarded: "
		    "%s", f->p->port, net_addr_str((struct sockaddr *)&f->vis,
		    a, sizeof(a)), log_esc(err, strlen(err), e, sizeof(e)));
		if (f->nq)
			smet_udp_drop(srv, SMET_IN, "no_stream", f->nq);
		evbuffer_drain(f->q, evbuffer_get_length(f->q));
		f->nq = 0;
		f->state = FU_FAILED;
		f->retry_ms = mtime_ms() + FWDUDP_RETRY_MS;
		return;
	}
	f->state = FU_UP;
	f->st = st;
	mux_stream_set_cbs(st, &fu_flow_cbs, f);
	/* replies are sent at once or dropped (udp.c's reasons) */
	mux_stream_set_window(st, FU_FLOW_WINDOW);
	mux_stream_set_batched(st);
	mux_cork(mux_stream_session(st));
	while (f->nq > 0) {
		uint8_t pre[2];
		size_t len;
		evbuffer_copyout(f->q, pre, 2);
		len = (size_t)pre[0] << 8 | pre[1];
		if (fu_flow_put(f, evbuffer_pullup(f->q, (ssize_t)(2 + len)) +
		    2, len) == 0) {
			sent += len;
		} else
			dropped++;
		evbuffer_drain(f->q, 2 + len);
		f->nq--;
	}
	mux_uncork(mux_stream_session(st));
	if (sent)
		met_add(srv->m.fw_bytes[0], sent);
	if (dropped)
		smet_udp_drop(srv, SMET_IN, "stream_full", dropped);
}

/* ask the owner for a stream for f (again) */
static void
fu_flow_open(struct fu_flow *f)
{
	f->state = FU_OPENING;
	/* the answer may come before forward_open returns */
	forward_open(f->p->fu->srv, FWD_UDP, f->p->port,
	    (struct sockaddr *)&f->vis, fu_flow_opened, f);
}

/* a new flow from src (the visitor vis) */
static struct fu_flow *
fu_flow_new(struct fu_port *p, const struct sockaddr *src, socklen_t slen,
    const struct sockaddr *vis, uint64_t now)
{
	struct fu_flow *f, **pp;

	if (p->nflows >= p->fu->srv->cf->udp_max_flows) {
		log_info("cluster: udp port %u: %u flows forwarded, closing "
		    "the longest idle", p->port, p->nflows);
		fu_flow_end(TAILQ_FIRST(&p->lru));
	}
	f = xcalloc(1, sizeof(*f));
	f->p = p;
	memcpy(&f->src, src, slen);
	f->slen = slen;
	memcpy(&f->vis, vis, vis->sa_family == AF_INET6 ?
	    sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
	f->gso = dgram_gso_supported();
	f->last_ms = now;
	f->q = evbuffer_new();
	if (f->q == NULL)
		abort();
	pp = &p->flows[fu_hash(src, slen)];
	f->next = *pp;
	*pp = f;
	TAILQ_INSERT_TAIL(&p->lru, f, lru);
	p->nflows++;
	fu_flow_open(f);
	return f;
}

/* one datagram from f's visitor: to the owner, held while the stream is
 * being opened, or dropped (counted in b) */
static void
fu_flow_send(struct fu_flow *f, const uint8_t *data, size_t len,
    struct fu_batch *b)
{
	fu_flow_touch(f, b->now);
	if (f->state == FU_FAILED && b->now >= f->retry_ms)
		fu_flow_open(f);
	switch (f->state) {
	case FU_FAILED:
		b->drop_stream++;
		break;
	case FU_OPENING:
		if (f->nq >= FWDUDP_QUEUE_MAX || evbuffer_get_length(f->q) +
		    2 + len > FWDUDP_QUEUE_BYTES) {
			b->drop_full++;
			break;
		}
		{
			uint8_t pre[2] = { (uint8_t)(len >> 8), (uint8_t)len };
			evbuffer_add(f->q, pre, 2);
			evbuffer_add(f->q, data, len);
			f->nq++;
		}
		break;
	case FU_UP:
		fu_cork(b, f->st);
		if (fu_flow_put(f, data, len) < 0)
			b->drop_full++;
		else
			b->bytes += len;
		break;
	}
}

/* Replies from the owner, to the visitor from the port's socket. */
static void
fu_flow_readable(struct mux_stream *st, void *arg)
{
	struct fu_flow *f = arg;
	struct fu_port *p = f->p;
	struct server *srv = p->fu->srv;
	struct evbuffer *rx = mux_stream_rx(st);
	struct iovec iov[FU_SEND_BATCH];
	uint64_t bytes = 0, dropped = 0;
	int n;

	for (;;) { /* bounded: the queue is bounded by the window */
		size_t consumed = 0;
		int sent;
		n = dgram_take(rx, p->fu->buf, (size_t)FU_BATCH * FU_SLOT,
		    iov, FU_SEND_BATCH, &consumed);
		if (n <= 0)
			break;
		/* (a flow exists only on a bound port) */
		sent = dgram_send(p->fd, (struct sockaddr *)&f->src, f->slen,
		    iov, n, &f->gso, &bytes);
		dropped += (uint64_t)(n - sent);
		evbuffer_drain(rx, consumed);
		mux_stream_consumed(st, consumed);
		fu_flow_touch(f, mtime_ms());
	}
	if (bytes)
		met_add(srv->m.fw_bytes[1], bytes);
	if (dropped)
		smet_udp_drop(srv, SMET_OUT, "send_failed", dropped);
	if (n == MG_EPROTO || (mux_stream_fin_received(st) &&
	    mux_stream_queued(st) > 0 && n == 0)) {
		/* a bad length, or a FIN in the middle of a datagram */
		log_info("cluster: udp port %u: a bad datagram from the owner "
		    "node: flow closed", p->port);
		fu_flow_end(f);
	} else if (mux_stream_reset(st)) {
		/* the owner refused the flow (or dropped it): its visitor's
		 * datagrams wait a moment before asking again */
		mux_stream_free(st);
		f->st = NULL;
		f->state = FU_FAILED;
		f->retry_ms = mtime_ms() + FWDUDP_RETRY_MS;
	} else if (mux_stream_eof(st))
		fu_flow_end(f); /* the owner's flow ended */
}

static void
fu_flow_closed(struct mux_stream *st, void *arg)
{
	struct fu_flow *f = arg;

	(void)st;
	f->st = NULL; /* the node link died and takes the stream */
	fu_flow_end(f);
}

static void
fu_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct fu_port *p = arg;
	struct fwdudp *fu = p->fu;
	struct server *srv = fu->srv;
	const struct server_conf *cf = srv->cf;
	struct sockaddr_storage addrs[FU_BATCH];
	unsigned addrlen[FU_BATCH];
	size_t lens[FU_BATCH];
	struct fu_batch b;
	int total = 0;

	(void)what;
	loop_note_io();
	memset(&b, 0, sizeof(b));
	b.now = mtime_ms();
	while (total < FU_MAX_PER_EVENT) {
		int n = dgram_recv(fd, fu->buf, FU_SLOT, FU_BATCH, addrs, addrlen,
		    lens);
		if (n <= 0)
			break;
		total += n;
		for (int i = 0; i < n; i++) {
			size_t len = lens[i];
			struct sockaddr *sa = (struct sockaddr *)&addrs[i];
			socklen_t sl = addrlen[i];
			struct sockaddr_storage vss;
			struct sockaddr *vis = sa;
			uint8_t *data = fu->buf + (size_t)i * FU_SLOT;
			struct fu_flow *f;
			int hdr = 0;
			/* a balancer's header says whose datagram it is, as
			 * on the owner's own port (udp.c) */
			if (cf->ntrusted && !acl_match_addr(cf->trusted,
			    cf->ntrusted, sa, 0)) {
				b.drop_untrusted++;
				continue;
			}
			if (cf->ntrusted && len > 0 && len <= DGRAM_MAX &&
			    (hdr = udp_lb_header(&data, &len, sa, &vss)) < 0) {
				b.drop_header++;
				continue;
			}
			if (hdr)
				vis = (struct sockaddr *)&vss;
			if (len == 0 || len > DGRAM_MAX) {
				b.drop_size++;
				continue;
			}
			f = *fu_slot(p, sa, sl);
			if (f == NULL && cf->ntrusted && !hdr) {
				b.drop_header++;
				continue;
			}
			if (f == NULL)
				f = fu_flow_new(p, sa, sl, vis, b.now);
			fu_flow_send(f, data, len, &b);
		}
		if (n < FU_BATCH)
			break;
	}
	fu_batch_end(srv, &b);
}

static int
fu_port_bind(struct fu_port *p)
{
	struct server *srv = p->fu->srv;
	int fd, sz = 4 * 1024 * 1024;

	if ((fd = net_bind_udp(srv->cf->bind_addr, p->port)) < 0) {
		if (!p->bind_logged)
			log_info("cluster: udp port %u (another node's): %s; "
			    "trying again", p->port, strerror(errno));
		p->bind_logged = 1;
		return -1;
	}
	/* as the owner's port (udp.c): a burst waits in the kernel */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz)) < 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	p->fd = fd;
	p->ev = event_new(srv->base, fd, EV_READ | EV_PERSIST, fu_on_read, p);
	if (p->ev == NULL)
		abort();
	event_add(p->ev, NULL);
	log_debug("cluster: udp port %u is another node's: forwarding",
	    p->port);
	return 0;
}

/* idle flows end, least recent first; an unbound port tries again */
static void
fu_on_sweep(evutil_socket_t fd, short what, void *arg)
{
	struct fu_port *p = arg;
	uint64_t now = mtime_ms();
	uint64_t idle = (uint64_t)p->fu->srv->cf->udp_idle_s * 1000;
	struct fu_flow *f;

	(void)fd;
	(void)what;
	if (p->fd < 0)
		fu_port_bind(p);
	while ((f = TAILQ_FIRST(&p->lru)) != NULL && now - f->last_ms >= idle)
		fu_flow_end(f);
}

static struct fu_port *
fu_port_find(struct fwdudp *fu, uint16_t port)
{
	struct fu_port *p;

	if (fu == NULL)
		return NULL;
	LIST_FOREACH(p, &fu->ports, link)
		if (p->port == port)
			return p;
	return NULL;
}

static void
fu_port_open(struct server *srv, uint16_t port)
{
	struct fwdudp *fu = srv->fwdudp;
	struct fu_port *p;
	unsigned ms = srv->cf->udp_idle_s * 1000 / 4;
	struct timeval tv;

	if (fu_port_find(fu, port) != NULL)
		return;
	if (fu == NULL) {
		fu = xcalloc(1, sizeof(*fu));
		fu->srv = srv;
		LIST_INIT(&fu->ports);
		fu->buf = xmalloc((size_t)FU_BATCH * FU_SLOT);
		srv->fwdudp = fu;
	}
	p = xcalloc(1, sizeof(*p));
	p->fu = fu;
	p->port = port;
	p->fd = -1;
	TAILQ_INIT(&p->lru);
	if (ms < 250)
		ms = 250;
	if (ms > 5000)
		ms = 5000;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	p->sweep = event_new(srv->base, -1, EV_PERSIST, fu_on_sweep, p);
	if (p->sweep == NULL)
		abort();
	event_add(p->sweep, &tv);
	LIST_INSERT_HEAD(&fu->ports, p, link);
	fu->nports++;
	fu_port_bind(p);
}

static void
fu_port_close(struct fu_port *p)
{
	struct fwdudp *fu = p->fu;
	struct server *srv = fu->srv;

	while (!TAILQ_EMPTY(&p->lru))
		fu_flow_end(TAILQ_FIRST(&p->lru));
	if (p->ev)
		event_free(p->ev);
	event_free(p->sweep);
	if (p->fd >= 0) {
		close(p->fd);
		log_debug("cluster: udp port %u: no longer forwarded", p->port);
	}
	LIST_REMOVE(p, link);
	free(p);
	if (--fu->nports == 0) {
		srv->fwdudp = NULL;
		free(fu->buf);
		free(fu);
	}
}

void
fwdudp_port(struct server *srv, uint16_t port, int open)
{
	struct fu_port *p = fu_port_find(srv->fwdudp, port);

	if (open)
		fu_port_open(srv, port);
	else if (p != NULL)
		fu_port_close(p);
}
