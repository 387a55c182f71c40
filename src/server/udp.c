/* udp.c: the public side of UDP proxies: one socket per proxy, one flow
 * (data stream) per public source address (docs/protocol.md section 5). */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "mux/mux.h"
#include "proto/proxyproto.h"
#include "proto/sthdr.h"
#include "relay/dgram.h"
#include "server/group.h"
#include "server/server_int.h"
#include "util/acl.h"
#include "util/err.h"
#include "util/log.h"
#include "util/mtime.h"
#include "util/loop.h"
#include "util/net.h"
#include "util/ratelim.h"
#include "util/xmalloc.h"

#define UFLOW_BUCKETS 256
#define UDP_BATCH 16
#define UDP_SLOT 65536
#define UDP_SEND_BATCH 64 /* datagrams per dgram_send */
#define UDP_MAX_PER_EVENT 256
#define UDP_FLOW_WINDOW (16 * 1024 * 1024)

/* A flow: on its tunnel's hash chain and idle list, ended with it. A
 * flow another node forwards (forward.h) has its visitor's datagrams come
 * and its replies go on a node link's stream (link) instead of the
 * tunnel's socket; it is on the idle list only (its peer is the visitor
 * as that node saw it, not a source on this socket). */
struct uflow {
	struct uflow *next;           /* hash chain */
	TAILQ_ENTRY(uflow) lru;       /* px->flow_lru, least recent first */
	struct proxy *px;
	struct session *sess;         /* whose stream st is */
	struct mux_stream *st;
	struct mux_stream *link;      /* NULL: the visitor is on udp_fd */
	struct sockaddr_storage peer;
	socklen_t plen;
	int gso; /* UDP GSO towards the peer (dgram_send) */
	uint64_t last_ms;
	struct smet_conn rec;         /* its figures and record */
	const char *end_why;
};

static void uflow_readable(struct mux_stream *st, void *arg);
static void uflow_closed(struct mux_stream *st, void *arg);
static void ulink_readable(struct mux_stream *st, void *arg);
static void ulink_closed(struct mux_stream *st, void *arg);

static const struct mux_stream_cbs uflow_cbs = {
	.readable = uflow_readable,
	.closed = uflow_closed,
};

static const struct mux_stream_cbs ulink_cbs = {
	.readable = ulink_readable,
	.closed = ulink_closed,
};

/* Why datagrams from visitors were dropped (the metric's reason), in the
 * order they are counted. */
enum udrop {
	UD_AWAY,
	UD_SIZE,
	UD_POLICY,
	UD_UNTRUSTED,
	UD_HEADER,
	UD_FLOW,
	UD_MUX,
	UD_BW,
	UD_COUNT
};
static const char *const udrop_why[UD_COUNT] = { "client_away", "bad_size",
	"policy", "untrusted_source", "bad_proxy_header", "no_stream",
	"stream_full", "bandwidth" };

/* A batch of datagrams from visitors (one read of the socket or of a
 * link stream): its figures are counted once, at its end, and the
 * frames it queues on mux (may be NULL) go out in one write. */
struct ubatch {
	struct mux *mux;
	uint64_t now_ms, now_us;
	int bw;                       /* under a bandwidth limit */
	uint64_t pkts;
	uint64_t drop[UD_COUNT];
};

static unsigned
addr_hash(const struct sockaddr *sa, socklen_t len)
{
	return dgram_addr_hash(sa, len) % UFLOW_BUCKETS;
}

static struct uflow **
uflow_slot(struct proxy *px, const struct sockaddr *sa, socklen_t len)
{
	struct uflow **pp = &px->flows[addr_hash(sa, len)];

	for (; *pp != NULL; pp = &(*pp)->next)
		if ((*pp)->plen == len && memcmp(&(*pp)->peer, sa, len) == 0)
			break;
	return pp;
}

/* Unlink and free f; the stream is freed (FIN) unless the mux took it. */
static void
uflow_free(struct uflow *f)
{
	struct proxy *px = f->px;

	if (f->link == NULL) {
		struct uflow **pp = uflow_slot(px, (struct sockaddr *)&f->peer,
		    f->plen);
		if (*pp == f)
			*pp = f->next;
	}
	TAILQ_REMOVE(&px->flow_lru, f, lru);
	px->nflows--;
	smet_udp_flow(px->srv, -1);
	smet_conn_end(px->srv, &f->rec, f->end_why ? f->end_why :
	    f->st ? "idle" : "session lost");
	if (f->st)
		mux_stream_free(f->st);
	if (f->link)
		mux_stream_free(f->link);
	free(f);
}

/* A datagram went through f: it is now the most recent flow. */
static void
uflow_touch(struct uflow *f, uint64_t now)
{
	struct proxy *px = f->px;

	f->last_ms = now;
	if (TAILQ_NEXT(f, lru) != NULL) {
		TAILQ_REMOVE(&px->flow_lru, f, lru);
		TAILQ_INSERT_TAIL(&px->flow_lru, f, lru);
	}
}

/* A new flow of px for the source sa (the visitor vis), or for link (a
 * node link's stream, taken on success; then sa is vis); NULL when no
 * stream to the client can be opened. */
static struct uflow *
uflow_new(struct proxy *px, const struct sockaddr *sa, socklen_t len,
    const struct sockaddr *vis, struct mux_stream *link)
{
	struct proxy *t = px;
	struct mux_stream *st;
	struct uflow *f;

	if (px->nflows >= px->srv->cf->udp_max_flows) {
		struct uflow *old = TAILQ_FIRST(&px->flow_lru);
		log_info("udp port %u: %u flows, closing the longest idle",
		    px->port, px->nflows);
		old->end_why = "evicted";
		uflow_free(old);
	}
	/* a group's flow keeps the member it got for its life */
	if (px->is_group && (t = group_pick(px, vis, NULL, NULL, 0, 0)) ==
	    NULL)
		return NULL;
	if (t->health < 0 || (st = proxy_stream_open(t, vis)) == NULL)
		return NULL;
	f = xcalloc(1, sizeof(*f));
	f->px = px;
	f->sess = t->sess;
	f->st = st;
	f->link = link;
	memcpy(&f->peer, sa, len);
	f->plen = len;
	f->gso = dgram_gso_supported();
	if (link == NULL) {
		struct uflow **pp = &px->flows[addr_hash(sa, len)];
		f->next = *pp;
		*pp = f;
	}
	TAILQ_INSERT_TAIL(&px->flow_lru, f, lru);
	px->nflows++;
	smet_udp_flow(px->srv, 1);
	smet_conn_begin(&f->rec, t, vis);
	mux_stream_set_cbs(st, &uflow_cbs, f);
	/* datagrams never wait here (sendmmsg takes them or they drop), so
	 * a big window costs no memory; fairness between flows is kept by
	 * mux_stream_send_datagram, which drops a flood's datagrams first */
	mux_stream_set_window(st, UDP_FLOW_WINDOW);
	/* a burst of datagrams (one frame each) goes out in one send */
	mux_stream_set_batched(st);
	if (link != NULL) {
		/* the same for the visitor's side, on the node link */
		mux_stream_set_cbs(link, &ulink_cbs, f);
		mux_stream_set_window(link, UDP_FLOW_WINDOW);
		mux_stream_set_batched(link);
	}
	return f;
}

/* uflow_send_out: the datagrams iov[0..n) from the client, to f's
 * visitor; how many went (their bytes added to *bytes), the rest
 * dropped. */
static int
uflow_send_out(struct uflow *f, struct iovec *iov, int n, uint64_t *bytes)
{
	int sent = 0;

	if (f->link == NULL)
		return dgram_send(f->px->udp_fd, (struct sockaddr *)&f->peer,
		    f->plen, iov, n, &f->gso, bytes);
	for (int i = 0; i < n; i++)
		if (mux_stream_send_datagram(f->link, iov[i].iov_base,
		    iov[i].iov_len) == 0) {
			sent++;
			*bytes += iov[i].iov_len;
		}
	return sent;
}

/* Datagrams from the client, to the flow's public peer, in batches of
 * one sendmmsg. */
static void
uflow_readable(struct mux_stream *st, void *arg)
{
	struct uflow *f = arg;
	struct proxy *px = f->px;
	struct server *srv = px->srv;
	struct evbuffer *rx = mux_stream_rx(st);
	struct iovec iov[UDP_SEND_BATCH];
	struct mux *lm = f->link ? mux_stream_session(f->link) : NULL;
	int n = 0;

	if (srv->udp_buf == NULL)
		srv->udp_buf = xmalloc((size_t)UDP_BATCH * UDP_SLOT);
	if (lm != NULL)
		mux_cork(lm);
	for (;;) { /* bounded: the queue is bounded by the window */
		size_t consumed = 0;
		int sent;
		n = dgram_take(rx, srv->udp_buf, (size_t)UDP_BATCH * UDP_SLOT,
		    iov, UDP_SEND_BATCH, &consumed);
		if (n <= 0)
			break;
		uint64_t bytes = 0;
		int k = n;
		if (shaper_limited(px->shaper, SHAPER_OUT)) {
			/* over the bandwidth limit: dropped, not delayed */
			uint64_t now = mtime_us();
			k = 0;
			for (int i = 0; i < n; i++) {
				size_t g = shaper_take(px->shaper, SHAPER_OUT,
				    now, iov[i].iov_len);
				if (g == iov[i].iov_len) {
					iov[k++] = iov[i];
					continue;
				}
				shaper_refund(px->shaper, SHAPER_OUT, g);
			}
			if (k < n) {
				px->dg.drops_out += (uint64_t)(n - k);
				smet_udp_drop(srv, SMET_OUT, "bandwidth",
				    (uint64_t)(n - k));
			}
		}
		sent = k ? uflow_send_out(f, iov, k, &bytes) : 0;
		smet_conn_bytes(&f->rec, SMET_OUT, bytes);
		smet_udp(px, SMET_OUT, (uint64_t)sent);
		if (k > sent) {
			px->dg.drops_out += (uint64_t)(k - sent);
			smet_udp_drop(srv, SMET_OUT, "send_failed",
			    (uint64_t)(k - sent));
		}
		evbuffer_drain(rx, consumed);
		mux_stream_consumed(st, consumed);
		uflow_touch(f, mtime_ms());
	}
	if (n == MG_EPROTO || (mux_stream_fin_received(st) &&
	    mux_stream_queued(st) > 0 && n == 0)) {
		/* a bad length, or a FIN in the middle of a datagram */
		srv->session_fail(f->sess, CODE_PROTOCOL,
		    "bad datagram length on a UDP flow");
		/* the session and this flow are gone */
	} else if (mux_stream_eof(st)) {
		f->end_why = "closed";
		uflow_free(f);
	}
	if (lm != NULL)
		mux_uncork(lm); /* another session's: still there */
}

static void
uflow_closed(struct mux_stream *st, void *arg)
{
	struct uflow *f = arg;

	f->st = NULL; /* the session died and takes the stream */
	uflow_free(f);
}

/* The owner of a flow another node forwards: the node link's stream ended
 * (the forwarding node's flow ended, or the link died). */
static void
ulink_closed(struct mux_stream *st, void *arg)
{
	struct uflow *f = arg;

	f->link = NULL; /* the link died and takes the stream */
	f->end_why = "node link lost";
	uflow_free(f);
}

/* see server_int.h */
int
udp_lb_header(uint8_t **p, size_t *len, const struct sockaddr *sa,
    struct sockaddr_storage *vis)
{
	struct proxyproto_hdr h;
	int rc = proxyproto_parse(*p, *len, &h, NULL);

	if (rc == MG_EAGAIN || (rc < 0 && (*len < 12 ||
	    memcmp(*p, "\r\n\r\n\0\r\nQUIT\n", 12) != 0)))
		return 0;
	if (rc < 0 || h.version != 2)
		return -1;
	*p += rc;
	*len -= (size_t)rc;
	if (h.family == AF_INET || h.family == AF_INET6)
		memcpy(vis, &h.src, sizeof(*vis));
	else
		memcpy(vis, sa, sa->sa_family == AF_INET6 ?
		    sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
	return 1;
}

static void
ubatch_begin(struct ubatch *b, struct proxy *px, struct mux *m)
{
	memset(b, 0, sizeof(*b));
	b->mux = m;
	b->now_ms = mtime_ms();
	b->bw = shaper_limited(px->shaper, SHAPER_IN);
	b->now_us = b->bw ? mtime_us() : 0;
	if (m != NULL)
		mux_cork(m);
}

/* the batch's figures, once; then its frames go out */
static void
ubatch_end(struct ubatch *b, struct proxy *px)
{
	struct server *srv = px->srv;

	for (int i = 0; i < UD_COUNT; i++)
		px->dg.drops_in += b->drop[i];
	if (b->pkts)
		smet_udp(px, SMET_IN, b->pkts);
	for (int i = 0; i < UD_COUNT; i++)
		if (b->drop[i])
			smet_udp_drop(srv, SMET_IN, udrop_why[i], b->drop[i]);
	if (b->mux != NULL)
		mux_uncork(b->mux);
}

/* a visitor from vis, new to px: 0 when the owner's allow lists, rates
 * and limits take it (a flow's later datagrams come from the same one),
 * -1 (counted in b) otherwise */
static int
udp_admit(struct proxy *px, const struct sockaddr *vis, struct ubatch *b)
{
	unsigned retry;

	if (px->sess == NULL && !px->is_group) {
		b->drop[UD_AWAY]++;
		return -1;
	}
	if (proxy_visitor_allowed(px, vis) < 0 ||
	    proxy_rate_ok(px, 0, vis, &retry) < 0 ||
	    proxy_visitors_ok(px) < 0) {
		b->drop[UD_POLICY]++;
		return -1;
	}
	return 0;
}

/* one datagram from f's visitor, to the client (or dropped and counted) */
static void
uflow_deliver(struct uflow *f, const uint8_t *data, size_t len,
    struct ubatch *b)
{
	struct proxy *px = f->px;

	uflow_touch(f, b->now_ms);
	if (b->bw) {
		/* over the bandwidth limit: dropped */
		size_t g = shaper_take(px->shaper, SHAPER_IN, b->now_us, len);
		if (g < len) {
			shaper_refund(px->shaper, SHAPER_IN, g);
			b->drop[UD_BW]++;
			return;
		}
	}
	if (mux_stream_send_datagram(f->st, data, len) < 0) {
		if (b->bw)
			shaper_refund(px->shaper, SHAPER_IN, len);
		b->drop[UD_MUX]++;
		return;
	}
	smet_conn_bytes(&f->rec, SMET_IN, len);
	b->pkts++;
}

/* Datagrams from a forwarded flow's visitor, from the node link, to the
 * client: as if they had come to this node's socket. */
static void
ulink_readable(struct mux_stream *st, void *arg)
{
	struct uflow *f = arg;
	struct proxy *px = f->px;
	struct server *srv = px->srv;
	struct evbuffer *rx = mux_stream_rx(st);
	struct iovec iov[UDP_SEND_BATCH];
	struct ubatch b;
	int n;

	if (srv->udp_buf == NULL)
		srv->udp_buf = xmalloc((size_t)UDP_BATCH * UDP_SLOT);
	ubatch_begin(&b, px, mux_stream_session(f->st));
	for (;;) { /* bounded: the queue is bounded by the window */
		size_t consumed = 0;
		n = dgram_take(rx, srv->udp_buf, (size_t)UDP_BATCH * UDP_SLOT,
		    iov, UDP_SEND_BATCH, &consumed);
		if (n <= 0)
			break;
		for (int i = 0; i < n; i++)
			uflow_deliver(f, iov[i].iov_base, iov[i].iov_len, &b);
		evbuffer_drain(rx, consumed);
		mux_stream_consumed(st, consumed);
	}
	if (n == MG_EPROTO || (mux_stream_fin_received(st) &&
	    mux_stream_queued(st) > 0 && n == 0)) {
		/* a bad length, or a FIN in the middle of a datagram: the
		 * other node's fault, this flow alone ends */
		log_info("udp port %u: a bad datagram from a node link: flow "
		    "closed", px->port);
		f->end_why = "reset";
		uflow_free(f);
	} else if (mux_stream_eof(st)) {
		f->end_why = "closed";
		uflow_free(f);
	}
	ubatch_end(&b, px); /* the client's session is still there */
}

/* see server_int.h */
void
udp_link_flow(struct server *srv, struct proxy *px, struct mux_stream *st,
    const struct sockaddr *peer)
{
	socklen_t len = peer->sa_family == AF_INET6 ?
	    sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
	struct uflow *f = NULL;
	struct ubatch b;

	ubatch_begin(&b, px, NULL);
	if (px->type != PROXY_UDP || px->flows == NULL)
		b.drop[UD_AWAY]++;
	else if (udp_admit(px, peer, &b) == 0 &&
	    (f = uflow_new(px, peer, len, peer, st)) == NULL)
		b.drop[UD_FLOW]++;
	/* a refused flow counts as one datagram dropped: the other node
	 * sees the stream end, and its visitor's next datagram asks again */
	ubatch_end(&b, px);
	if (f == NULL) {
		mux_stream_abort(st);
		return;
	}
	if (mux_stream_queued(st) > 0 || mux_stream_fin_received(st))
		ulink_readable(st, f); /* sent with the header */
}

static void
udp_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct proxy *px = arg;
	struct server *srv = px->srv;
	struct sockaddr_storage addrs[UDP_BATCH];
	unsigned addrlen[UDP_BATCH];
	size_t lens[UDP_BATCH];
	const struct server_conf *cf = srv->cf;
	struct ubatch b;
	int total = 0;

	loop_note_io();
	if (srv->udp_buf == NULL)
		srv->udp_buf = xmalloc((size_t)UDP_BATCH * UDP_SLOT);
	ubatch_begin(&b, px, px->sess ? px->sess->mux : NULL);
	while (total < UDP_MAX_PER_EVENT) {
		int n = dgram_recv(fd, srv->udp_buf, UDP_SLOT, UDP_BATCH, addrs, addrlen,
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
			uint8_t *data = srv->udp_buf + (size_t)i * UDP_SLOT;
			struct uflow *f;
			int hdr = 0;
			if (cf->ntrusted && !acl_match_addr(cf->trusted,
			    cf->ntrusted, sa, 0)) {
				b.drop[UD_UNTRUSTED]++;
				continue;
			}
			if (cf->ntrusted && len > 0 && len <= DGRAM_MAX &&
			    (hdr = udp_lb_header(&data, &len, sa, &vss)) < 0) {
				b.drop[UD_HEADER]++;
				continue;
			}
			if (hdr)
				vis = (struct sockaddr *)&vss;
			if (len == 0 || len > DGRAM_MAX) {
				b.drop[UD_SIZE]++;
				continue;
			}
			if (px->sess == NULL && !px->is_group) {
				b.drop[UD_AWAY]++;
				continue;
			}
			f = *uflow_slot(px, sa, sl);
			/* a balancer's new flow must say whose it is */
			if (f == NULL && cf->ntrusted && !hdr) {
				b.drop[UD_HEADER]++;
				continue;
			}
			if (f == NULL && udp_admit(px, vis, &b) < 0)
				continue;
			if (f == NULL && (f = uflow_new(px, sa, sl, vis,
			    NULL)) == NULL) {
				b.drop[UD_FLOW]++;
				continue;
			}
			uflow_deliver(f, data, len, &b);
		}
		if (n < UDP_BATCH)
			break;
	}
	ubatch_end(&b, px);
}

static void
udp_on_sweep(evutil_socket_t fd, short what, void *arg)
{
	struct proxy *px = arg;
	uint64_t now = mtime_ms();
	uint64_t idle = (uint64_t)px->srv->cf->udp_idle_s * 1000;

	struct uflow *f;

	/* least recent first: stop at the first flow still in use */
	while ((f = TAILQ_FIRST(&px->flow_lru)) != NULL &&
	    now - f->last_ms >= idle) {
		log_debug("udp port %u: flow idle for %u s, closed", px->port,
		    px->srv->cf->udp_idle_s);
		uflow_free(f);
	}
}

static int
udp_proxy_start(struct proxy *px, int fd)
{
	struct server *srv = px->srv;
	unsigned ms = srv->cf->udp_idle_s * 1000 / 4;
	struct timeval tv;

	if (ms < 250)
		ms = 250;
	if (ms > 5000)
		ms = 5000;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	/* a burst of public datagrams must wait in the kernel while the
	 * loop writes to the tunnel: ask for 4 MiB (FORCE works as root,
	 * past net.core.rmem_max) */
	{
		int sz = 4 * 1024 * 1024;
		if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz,
		    sizeof(sz)) < 0)
			setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	}
	px->udp_fd = fd;
	px->flows = xcalloc(UFLOW_BUCKETS, sizeof(*px->flows));
	TAILQ_INIT(&px->flow_lru);
	px->udp_ev = event_new(srv->base, fd, EV_READ | EV_PERSIST,
	    udp_on_read, px);
	px->udp_sweep = event_new(srv->base, -1, EV_PERSIST, udp_on_sweep,
	    px);
	if (px->udp_ev == NULL || px->udp_sweep == NULL)
		abort();
	event_add(px->udp_ev, NULL);
	event_add(px->udp_sweep, &tv);
	return 0;
}

static void
udp_proxy_log(const struct proxy *px)
{
	char n[LOG_ESC_MAX];

	log_info("udp \"%s\" port %u: %llu flows; in %llu datagrams %llu "
		 "bytes %llu dropped; out %llu datagrams %llu bytes %llu "
		 "dropped",
	    log_esc(px->name, strlen(px->name), n, sizeof(n)), px->port,
	    (unsigned long long)smet_px_conns(px),
	    (unsigned long long)smet_px_dgrams(px, SMET_IN),
	    (unsigned long long)smet_px_bytes(px, SMET_IN),
	    (unsigned long long)px->dg.drops_in,
	    (unsigned long long)smet_px_dgrams(px, SMET_OUT),
	    (unsigned long long)smet_px_bytes(px, SMET_OUT),
	    (unsigned long long)px->dg.drops_out);
}

static void
udp_proxy_stop(struct proxy *px)
{
	if (px->flows) {
		while (!TAILQ_EMPTY(&px->flow_lru))
			uflow_free(TAILQ_FIRST(&px->flow_lru));
		free(px->flows);
		px->flows = NULL;
	}
	if (px->udp_ev)
		event_free(px->udp_ev);
	if (px->udp_sweep)
		event_free(px->udp_sweep);
	px->udp_ev = px->udp_sweep = NULL;
	if (px->udp_fd >= 0)
		close(px->udp_fd);
	px->udp_fd = -1;
}

const struct proxy_ops udp_proxy_ops = {
	.start = udp_proxy_start,
	.stop = udp_proxy_stop,
	.log = udp_proxy_log,
};
