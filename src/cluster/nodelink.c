/* nodelink.c: see nodelink.h. */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "cluster/nodelink.h"
#include "mux/mux.h"
#include "relay/dial.h"
#include "util/crypto.h"
#include "util/err.h"
#include "util/log.h"
#include "util/mtime.h"
#include "util/net.h"
#include "util/xmalloc.h"

#define ID_MAX 63
#define NONCE 16
#define MAC 32
#define PROTO_VERSION 1

/* the messages of a link's first stream (one PSH each) */
#define M_HELLO 'H' /* dialer: ver u8, nc[16], len u8 + its id,
		       len u8 + the id it wants to reach */
#define M_CHAL 'C'  /* listener: ns[16], mac('s')[32], len u8 + its id */
#define M_AUTH 'A'  /* dialer: mac('c')[32] */
#define M_STATUS 'S' /* either, every second once up: store_up u8 */
#define M_ERROR 'E' /* either, before closing: a reason (text) */

enum lstate { L_DIAL, L_AUTH, L_UP };

struct lopen {
	TAILQ_ENTRY(lopen) link;
	nodelink_open_fn cb;
	void *arg;
	size_t len;
	uint8_t hdr[];
};
TAILQ_HEAD(lopen_list, lopen);

struct link {
	LIST_ENTRY(link) le;
	struct nodelink_set *ls;
	enum lstate state;
	int dialer;                   /* we dialled it */
	char peer[ID_MAX + 1];        /* its id ("" until its Hello) */
	char addr[300];
	struct addrinfo *ai;
	struct dial *dial;
	struct mux *mux;
	struct mux_stream *ctl;
	struct event *tick;
	uint64_t deadline_ms;         /* to be up by then */
	uint8_t nc[NONCE], ns[NONCE];
	struct lopen_list wait;
	unsigned nwait;
	uint64_t heard_ms;            /* its last status */
	int peer_store_up;
};

struct nodelink_set {
	struct event_base *base;
	struct evconnlistener *lst;
	struct nodelink_hooks h;
	char self[ID_MAX + 1];
	char *secret;
	LIST_HEAD(, link) links;
	unsigned nlinks;
	unsigned nunauth;             /* incoming links not up yet */
	int store_up;
	struct nodelink_stats st;
};

/* a stream a peer opened, until its header is whole */
struct lhdr {
	struct nodelink_set *ls;
	char from[ID_MAX + 1];
};

static void link_dead(struct link *l, const char *why);

void
nodelink_hmac(const char *secret, char role, const uint8_t nc[16],
    const uint8_t ns[16], const char *dialer, const char *listener,
    uint8_t out[32])
{
	uint8_t buf[1 + 2 * NONCE + 2 * (1 + ID_MAX)];
	size_t n = 0, dl = strlen(dialer), ll = strlen(listener);
	unsigned outlen = MAC;

	if (dl > ID_MAX)
		dl = ID_MAX;
	if (ll > ID_MAX)
		ll = ID_MAX;
	buf[n++] = (uint8_t)role;
	memcpy(buf + n, nc, NONCE);
	n += NONCE;
	memcpy(buf + n, ns, NONCE);
	n += NONCE;
	buf[n++] = (uint8_t)dl;
	memcpy(buf + n, dialer, dl);
	n += dl;
	buf[n++] = (uint8_t)ll;
	memcpy(buf + n, listener, ll);
	n += ll;
	if (HMAC(EVP_sha256(), secret, (int)strlen(secret), buf, n, out,
	    &outlen) == NULL)
		memset(out, 0, MAC);
}

/* ---- messages ---- */

static void
send_error(struct link *l, const char *why)
{
	uint8_t m[200];
	size_t n = strlen(why);

	if (l->ctl == NULL)
		return;
	if (n > sizeof(m) - 1)
		n = sizeof(m) - 1;
	m[0] = M_ERROR;
	memcpy(m + 1, why, n);
	mux_stream_send_msg(l->ctl, m, n + 1);
}

static void
send_status(struct link *l)
{
	uint8_t m[2] = { M_STATUS, (uint8_t)(l->ls->store_up != 0) };

	mux_stream_send_msg(l->ctl, m, sizeof(m));
}

/* a length-prefixed id at p[0..), within end; 0 and id, or -1 */
static int
get_id(const uint8_t **p, const uint8_t *end, char id[ID_MAX + 1])
{
	size_t n;

	if (*p >= end)
		return -1;
	n = **p;
	if (n == 0 || n > ID_MAX || (size_t)(end - *p) < 1 + n)
		return -1;
	memcpy(id, *p + 1, n);
	id[n] = '\0';
	for (size_t i = 0; i < n; i++)
		if (id[i] <= ' ' || id[i] > '~')
			return -1;
	*p += 1 + n;
	return 0;
}

static size_t
put_id(uint8_t *p, const char *id)
{
	size_t n = strlen(id);

	p[0] = (uint8_t)n;
	memcpy(p + 1, id, n);
	return 1 + n;
}

/* the link is up: the streams waiting for it go */
static void
link_flush(struct link *l)
{
	struct lopen *o;

	while ((o = TAILQ_FIRST(&l->wait)) != NULL) {
		struct mux_stream *st = mux_stream_open(l->mux);
		uint8_t pre[2] = { (uint8_t)(o->len >> 8), (uint8_t)o->len };

		TAILQ_REMOVE(&l->wait, o, link);
		l->nwait--;
		if (st == NULL) {
			l->ls->st.open_failures++;
			o->cb(o->arg, NULL, "the node link takes no more "
			    "streams");
		} else {
			mux_stream_write(st, pre, 2);
			mux_stream_write(st, o->hdr, o->len);
			l->ls->st.opened++;
			o->cb(o->arg, st, NULL);
		}
		free(o); /* (a callback never ends the link) */
	}
}

/* the link is authenticated: streams may go */
static void
link_up(struct link *l)
{
	if (!l->dialer)
		l->ls->nunauth--;
	l->state = L_UP;
	l->heard_ms = 0;
	l->ls->st.links_up++;
	l->ls->st.links++;
	log_info("cluster: node link with %s (%s) up", l->peer,
	    l->addr[0] ? l->addr : "incoming");
	send_status(l);
	link_flush(l);
}

static void
on_hello(struct link *l, const uint8_t *p, size_t len)
{
	const uint8_t *end = p + len;
	char want[ID_MAX + 1];
	uint8_t m[1 + NONCE + MAC + 1 + ID_MAX], mac[MAC];
	size_t n = 0;

	p++;
	if (len < 2 + NONCE || *p++ != PROTO_VERSION) {
		send_error(l, "unknown node link version");
		link_dead(l, "a Hello of another version");
		return;
	}
	memcpy(l->nc, p, NONCE);
	p += NONCE;
	if (get_id(&p, end, l->peer) != 0 || get_id(&p, end, want) != 0) {
		send_error(l, "a malformed Hello");
		link_dead(l, "a malformed Hello");
		return;
	}
	if (strcmp(want, l->ls->self) != 0) {
		char why[200];
		snprintf(why, sizeof(why), "this is node %s, not %s",
		    l->ls->self, want);
		l->ls->st.auth_failures++;
		send_error(l, why);
		link_dead(l, why);
		return;
	}
	crypto_random(l->ns, NONCE);
	nodelink_hmac(l->ls->secret, 's', l->nc, l->ns, l->peer, l->ls->self,
	    mac);
	m[n++] = M_CHAL;
	memcpy(m + n, l->ns, NONCE);
	n += NONCE;
	memcpy(m + n, mac, MAC);
	n += MAC;
	n += put_id(m + n, l->ls->self);
	mux_stream_send_msg(l->ctl, m, n);
}

static void
on_chal(struct link *l, const uint8_t *p, size_t len)
{
	const uint8_t *end = p + len;
	char who[ID_MAX + 1];
	uint8_t mac[MAC], m[1 + MAC];

	p++;
	if (len < 1 + NONCE + MAC + 2) {
		link_dead(l, "a malformed challenge");
		return;
	}
	memcpy(l->ns, p, NONCE);
	p += NONCE;
	nodelink_hmac(l->ls->secret, 's', l->nc, l->ns, l->ls->self, l->peer,
	    mac);
	if (!crypto_memeq(mac, p, MAC)) {
		l->ls->st.auth_failures++;
		send_error(l, "the cluster secret differs");
		link_dead(l, "its proof does not match: the cluster secret "
		    "differs");
		return;
	}
	p += MAC;
	if (get_id(&p, end, who) != 0 || strcmp(who, l->peer) != 0) {
		l->ls->st.auth_failures++;
		link_dead(l, "it is another node");
		return;
	}
	nodelink_hmac(l->ls->secret, 'c', l->nc, l->ns, l->ls->self, l->peer,
	    m + 1);
	m[0] = M_AUTH;
	mux_stream_send_msg(l->ctl, m, sizeof(m));
	link_up(l);
}

static void
on_auth(struct link *l, const uint8_t *p, size_t len)
{
	uint8_t mac[MAC];

	nodelink_hmac(l->ls->secret, 'c', l->nc, l->ns, l->peer, l->ls->self,
	    mac);
	if (len != 1 + MAC || !crypto_memeq(mac, p + 1, MAC)) {
		l->ls->st.auth_failures++;
		send_error(l, "the cluster secret differs");
		link_dead(l, "its proof does not match: the cluster secret "
		    "differs");
		return;
	}
	link_up(l);
}

static void
ctl_message(struct mux_stream *st, const uint8_t *p, size_t len, void *arg)
{
	struct link *l = arg;
	char e[LOG_ESC_MAX], why[300];

	(void)st;
	if (len == 0)
		return;
	switch (p[0]) {
	case M_HELLO:
		if (!l->dialer && l->state == L_AUTH && l->peer[0] == '\0') {
			on_hello(l, p, len);
			return;
		}
		break;
	case M_CHAL:
		if (l->dialer && l->state == L_AUTH) {
			on_chal(l, p, len);
			return;
		}
		break;
	case M_AUTH:
		if (!l->dialer && l->state == L_AUTH && l->peer[0]) {
			on_auth(l, p, len);
			return;
		}
		break;
	case M_STATUS:
		if (l->state == L_UP && len == 2) {
			l->heard_ms = mtime_ms();
			l->peer_store_up = p[1] != 0;
			return;
		}
		break;
	case M_ERROR:
		snprintf(why, sizeof(why), "it says: %s", log_esc(p + 1,
		    len - 1, e, sizeof(e)));
		if (l->state != L_UP)
			l->ls->st.auth_failures++;
		link_dead(l, why);
		return;
	}
	link_dead(l, "a message out of turn");
}

static void
ctl_closed(struct mux_stream *st, void *arg)
{
	struct link *l = arg;

	(void)st;
	l->ctl = NULL;
}

static const struct mux_stream_cbs ctl_cbs = {
	.message = ctl_message,
	.closed = ctl_closed,
};

/* ---- streams a peer opens ---- */

static void
hdr_readable(struct mux_stream *st, void *arg)
{
	struct lhdr *h = arg;
	struct evbuffer *rx = mux_stream_rx(st);
	uint8_t pre[2], hdr[NODELINK_HDR_MAX];
	size_t n;

	if (mux_stream_queued(st) < 2) {
		if (mux_stream_fin_received(st) || mux_stream_reset(st))
			goto drop;
		return;
	}
	evbuffer_copyout(rx, pre, 2);
	n = (size_t)pre[0] << 8 | pre[1];
	if (n == 0 || n > NODELINK_HDR_MAX)
		goto drop;
	if (mux_stream_queued(st) < 2 + n) {
		if (mux_stream_fin_received(st) || mux_stream_reset(st))
			goto drop;
		return;
	}
	evbuffer_drain(rx, 2);
	evbuffer_remove(rx, hdr, n);
	mux_stream_consumed(st, 2 + n);
	mux_stream_set_cbs(st, NULL, NULL);
	h->ls->st.accepted++;
	h->ls->h.accept(h->ls->h.arg, h->from, st, hdr, n);
	free(h);
	return;
drop:
	mux_stream_set_cbs(st, NULL, NULL);
	mux_stream_abort(st);
	free(h);
}

static void
hdr_closed(struct mux_stream *st, void *arg)
{
	(void)st;
	free(arg);
}

static const struct mux_stream_cbs hdr_cbs = {
	.readable = hdr_readable,
	.closed = hdr_closed,
};

static void
link_accept(struct mux *m, struct mux_stream *st, void *arg)
{
	struct link *l = arg;
	struct lhdr *h;

	(void)m;
	if (l->ctl == NULL && !l->dialer && l->state == L_AUTH) {
		l->ctl = st;
		mux_stream_set_cbs(st, &ctl_cbs, l);
		return;
	}
	if (l->state != L_UP) {
		mux_stream_abort(st);
		return;
	}
	h = xcalloc(1, sizeof(*h));
	h->ls = l->ls;
	snprintf(h->from, sizeof(h->from), "%s", l->peer);
	mux_stream_set_cbs(st, &hdr_cbs, h);
	if (mux_stream_queued(st) > 0)
		hdr_readable(st, h);
}

static void
link_closed(struct mux *m, int err, void *arg)
{
	struct link *l = arg;

	(void)m;
	if (l->mux == NULL)
		return; /* link_dead is closing it */
	link_dead(l, err == MG_ETIMEDOUT ? "nothing heard for 5 s" :
	    err == MG_ECLOSED ? "closed by the peer" : mg_strerror(err));
}

static const struct mux_callbacks link_cbs = {
	.accept = link_accept,
	.closed = link_closed,
};

static void
link_tick(evutil_socket_t fd, short what, void *arg)
{
	struct link *l = arg;

	(void)fd;
	(void)what;
	if (l->state != L_UP) {
		if (mtime_ms() >= l->deadline_ms)
			link_dead(l, "not up within 5 s");
		return;
	}
	if (l->ctl != NULL)
		send_status(l);
}

static struct mux *
link_mux(struct link *l, int fd)
{
	struct mux_config cfg;

	mux_config_default(&cfg);
	cfg.version = 2;
	cfg.keepalive_ms = NODELINK_STATUS_MS;
	cfg.dead_ms = NODELINK_DEAD_MS;
	/* node links carry bulk between two of ours: the largest frames
	 * smux allows (u16 lengths) halve the frames of a transfer */
	cfg.frame_size = 65535 - 64;
	return mux_new(l->ls->base, fd, l->dialer, &cfg, &link_cbs, l);
}

static struct link *
link_new(struct nodelink_set *ls, int dialer)
{
	struct link *l = xcalloc(1, sizeof(*l));
	struct timeval tv = { NODELINK_STATUS_MS / 1000,
		(NODELINK_STATUS_MS % 1000) * 1000 };

	l->ls = ls;
	l->dialer = dialer;
	l->state = dialer ? L_DIAL : L_AUTH;
	l->deadline_ms = mtime_ms() + NODELINK_AUTH_TIMEOUT_MS;
	TAILQ_INIT(&l->wait);
	l->tick = event_new(ls->base, -1, EV_PERSIST, link_tick, l);
	event_add(l->tick, &tv);
	LIST_INSERT_HEAD(&ls->links, l, le);
	ls->nlinks++;
	return l;
}

static void
link_dead(struct link *l, const char *why)
{
	struct nodelink_set *ls = l->ls;
	struct lopen *o;
	char e[LOG_ESC_MAX], w[400];

	if (l->state == L_UP) {
		ls->st.links--;
		log_warn("cluster: node link with %s lost: %s", l->peer, why);
	} else
		log_warn("cluster: node link %s %s%s%s: %s", l->dialer ? "to" :
		    "from", l->peer[0] ? log_esc(l->peer, strlen(l->peer), e,
		    sizeof(e)) : "", l->peer[0] && l->addr[0] ? " at " : "",
		    l->addr, why);
	snprintf(w, sizeof(w), "node link to %s: %s", l->peer, why);
	LIST_REMOVE(l, le);
	ls->nlinks--;
	if (!l->dialer && l->state != L_UP)
		ls->nunauth--;
	event_free(l->tick);
	dial_cancel(l->dial);
	if (l->ai)
		freeaddrinfo(l->ai);
	if (l->mux) {
		/* closed first: the streams' owners hear of the end (their
		 * closed callbacks) rather than keep pointers mux_free would
		 * free under them, and what is queued (an Error) gets one
		 * last try; link_closed sees l->mux NULL and leaves l alone */
		struct mux *m = l->mux;
		l->mux = NULL;
		l->ctl = NULL;
		mux_close(m, MG_ECLOSED);
		mux_free(m);
	}
	while ((o = TAILQ_FIRST(&l->wait)) != NULL) {
		TAILQ_REMOVE(&l->wait, o, link);
		ls->st.open_failures++;
		o->cb(o->arg, NULL, w);
		free(o);
	}
	free(l);
}

/* ---- dialling ---- */

static void
dial_done(int fd, int err, const struct sockaddr *sa, void *arg)
{
	struct link *l = arg;
	uint8_t m[2 + NONCE + 2 * (1 + ID_MAX)];
	size_t n = 0;

	(void)sa;
	l->dial = NULL;
	if (fd < 0) {
		char why[200];
		snprintf(why, sizeof(why), "cannot connect: %s",
		    strerror(err));
		link_dead(l, why);
		return;
	}
	l->state = L_AUTH;
	if ((l->mux = link_mux(l, fd)) == NULL ||
	    (l->ctl = mux_stream_open(l->mux)) == NULL) {
		link_dead(l, "cannot start a session");
		return;
	}
	mux_stream_set_cbs(l->ctl, &ctl_cbs, l);
	crypto_random(l->nc, NONCE);
	m[n++] = M_HELLO;
	m[n++] = PROTO_VERSION;
	memcpy(m + n, l->nc, NONCE);
	n += NONCE;
	n += put_id(m + n, l->ls->self);
	n += put_id(m + n, l->peer);
	mux_stream_send_msg(l->ctl, m, n);
}

static struct link *
link_find(struct nodelink_set *ls, const char *node)
{
	struct link *l, *best = NULL;

	/* an authenticated link either way first, else ours being made */
	LIST_FOREACH(l, &ls->links, le) {
		if (strcmp(l->peer, node) != 0 || (l->mux == NULL &&
		    l->dial == NULL))
			continue;
		if (l->state == L_UP)
			return l;
		if (l->dialer)
			best = l;
	}
	return best;
}

static struct link *
link_dial(struct nodelink_set *ls, const char *node, const char *addr,
    const char **why)
{
	struct addrinfo hints, *ai = NULL;
	char host[256], port[8];
	uint16_t p;
	const char *e;
	struct link *l;

	if (ls->nlinks - ls->nunauth >= NODELINK_MAX_LINKS) {
		*why = "too many node links";
		return NULL;
	}
	if (net_split_hostport(addr, host, sizeof(host), &p, &e) != 0 ||
	    host[0] == '\0') {
		*why = "its node address is not HOST:PORT";
		return NULL;
	}
	snprintf(port, sizeof(port), "%u", p);
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
	if (getaddrinfo(host, port, &hints, &ai) != 0 || ai == NULL) {
		*why = "its node address is not an IP address and port";
		return NULL;
	}
	l = link_new(ls, 1);
	snprintf(l->peer, sizeof(l->peer), "%s", node);
	snprintf(l->addr, sizeof(l->addr), "%s", addr);
	l->ai = ai;
	l->dial = dial_start(ls->base, ai, SOCK_STREAM,
	    NODELINK_AUTH_TIMEOUT_MS / 1000, NULL, dial_done, l);
	if (l->dial == NULL) {
		*why = "cannot connect";
		link_dead(l, strerror(errno));
		return NULL;
	}
	return l;
}

void
nodelink_open(struct nodelink_set *ls, const char *node, const char *addr,
    const uint8_t *hdr, size_t len, nodelink_open_fn cb, void *arg)
{
	struct link *l = link_find(ls, node);
	const char *why = NULL;
	struct lopen *o;

	if (len == 0 || len > NODELINK_HDR_MAX) {
		ls->st.open_failures++;
		cb(arg, NULL, "a stream header of a bad size");
		return;
	}
	if (l == NULL && (addr == NULL || addr[0] == '\0' ||
	    strcmp(addr, "-") == 0)) {
		ls->st.open_failures++;
		cb(arg, NULL, "the node has no --node-addr");
		return;
	}
	if (l == NULL && (l = link_dial(ls, node, addr, &why)) == NULL) {
		ls->st.open_failures++;
		cb(arg, NULL, why);
		return;
	}
	if (l->nwait >= NODELINK_MAX_WAIT) {
		ls->st.open_failures++;
		cb(arg, NULL, "too many visitors wait for this node link");
		return;
	}
	o = xmalloc(sizeof(*o) + len);
	o->cb = cb;
	o->arg = arg;
	o->len = len;
	memcpy(o->hdr, hdr, len);
	TAILQ_INSERT_TAIL(&l->wait, o, link);
	l->nwait++;
	if (l->state == L_UP)
		link_flush(l);
}

void
nodelink_touch(struct nodelink_set *ls, const char *node, const char *addr)
{
	const char *why;

	if (link_find(ls, node) != NULL || addr == NULL || addr[0] == '\0' ||
	    strcmp(addr, "-") == 0 || strcmp(node, ls->self) == 0)
		return;
	link_dial(ls, node, addr, &why);
}

/* ---- listening ---- */

int
nodelink_adopt_fd(struct nodelink_set *ls, int fd, const struct sockaddr *sa)
{
	struct link *l;
	char a[NET_ADDRSTR_MAX];

	/* incoming links not authenticated yet have their own bound, so
	 * that strangers cannot use up the room of the nodes' links */
	if (ls->nlinks >= NODELINK_MAX_LINKS + NODELINK_MAX_UNAUTH ||
	    ls->nunauth >= NODELINK_MAX_UNAUTH) {
		log_warn("cluster: node link from %s refused: %u links "
		    "already, %u of them not authenticated", sa ?
		    net_addr_str(sa, a, sizeof(a)) : "a socket", ls->nlinks,
		    ls->nunauth);
		close(fd);
		return -1;
	}
	net_sock_tune(fd);
	l = link_new(ls, 0);
	ls->nunauth++;
	if (sa != NULL)
		net_addr_str(sa, l->addr, sizeof(l->addr));
	if ((l->mux = link_mux(l, fd)) == NULL) {
		link_dead(l, "cannot start a session");
		return -1;
	}
	return 0;
}

static void
on_accept(struct evconnlistener *lst, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	(void)lst;
	(void)salen;
	(void)nodelink_adopt_fd(arg, fd, sa);
}

struct nodelink_set *
nodelink_new(struct event_base *base, const char *self,
    const char *listen_addr, const char *secret, const struct nodelink_hooks *h,
    char *err, size_t errcap)
{
	struct nodelink_set *ls;
	char host[256];
	uint16_t port;
	const char *e;
	int fd;

	if (secret == NULL || strlen(secret) < NODELINK_SECRET_MIN) {
		snprintf(err, errcap, "node links need a cluster secret of at "
		    "least %d bytes (--cluster-secret)", NODELINK_SECRET_MIN);
		return NULL;
	}
	ls = xcalloc(1, sizeof(*ls));
	ls->base = base;
	ls->h = *h;
	snprintf(ls->self, sizeof(ls->self), "%s", self);
	ls->secret = xstrdup(secret);
	LIST_INIT(&ls->links);
	if (listen_addr != NULL && listen_addr[0] != '\0') {
		if (net_split_hostport(listen_addr, host, sizeof(host), &port,
		    &e) != 0) {
			snprintf(err, errcap, "--node-addr %s: %s", listen_addr,
			    e);
			nodelink_free(ls);
			return NULL;
		}
		if ((fd = net_listen_tcp(host, port, 128)) < 0 ||
		    (ls->lst = evconnlistener_new(base, on_accept, ls,
		    LEV_OPT_CLOSE_ON_FREE, -1, fd)) == NULL) {
			snprintf(err, errcap, "--node-addr %s: cannot listen: "
			    "%s", listen_addr, strerror(errno));
			if (fd >= 0)
				close(fd);
			nodelink_free(ls);
			return NULL;
		}
	}
	return ls;
}

void
nodelink_free(struct nodelink_set *ls)
{
	if (ls == NULL)
		return;
	if (ls->lst)
		evconnlistener_free(ls->lst);
	while (!LIST_EMPTY(&ls->links))
		link_dead(LIST_FIRST(&ls->links), "closing");
	OPENSSL_cleanse(ls->secret, strlen(ls->secret));
	free(ls->secret);
	free(ls);
}

void
nodelink_set_store_up(struct nodelink_set *ls, int up)
{
	struct link *l;

	if (ls->store_up == up)
		return;
	ls->store_up = up;
	LIST_FOREACH(l, &ls->links, le)
		if (l->state == L_UP && l->ctl != NULL)
			send_status(l); /* at once, not at the next tick */
}

unsigned
nodelink_peers_reach_store(const struct nodelink_set *ls, unsigned *heard)
{
	const struct link *l, *k;
	uint64_t now = mtime_ms();
	unsigned up = 0, any = 0;

	LIST_FOREACH(l, &ls->links, le) {
		int dup = 0;
		if (l->state != L_UP || l->heard_ms == 0 ||
		    now - l->heard_ms > NODELINK_DEAD_MS)
			continue;
		for (k = LIST_FIRST(&ls->links); k != l && !dup;
		    k = LIST_NEXT(k, le))
			dup = k->state == L_UP && k->heard_ms != 0 &&
			    now - k->heard_ms <= NODELINK_DEAD_MS &&
			    strcmp(k->peer, l->peer) == 0;
		if (dup)
			continue;
		any++;
		up += l->peer_store_up != 0;
	}
	if (heard)
		*heard = any;
	return up;
}

void
nodelink_stats(const struct nodelink_set *ls, struct nodelink_stats *st)
{
	*st = ls->st;
}
