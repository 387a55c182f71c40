/* forward.c: see forward.h and docs/internals/cluster.md. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <netinet/in.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <hiredis/hiredis.h>

#include "cluster/nodelink.h"
#include "cluster/routes.h"
#include "cluster/rstore.h"
#include "metrics/metrics.h"
#include "mux/mux.h"
#include "relay/relay.h"
#include "server/accept.h"
#include "server/cluster.h"
#include "server/forward.h"
#include "server/registry.h"
#include "server/server_int.h"
#include "util/err.h"
#include "util/log.h"
#include "util/mtime.h"
#include "util/net.h"
#include "util/strmap.h"
#include "util/xmalloc.h"

#define HDR_VERSION 1
#define SCAN_ROUNDS 64     /* SCAN calls per sweep, at most */
#define CACHE_KEEP_MS 30000 /* an entry unused this long is dropped */

/*
 * The lookup: a route's owner, epoch and the owner's node-link address in
 * one round trip. KEYS route; ARGV the node key prefix. {} when nobody
 * owns it; {node, epoch, addr or "-"}.
 */
static const char lua_lookup[] =
    "local r = redis.call('HMGET', KEYS[1], 'node', 'epoch')\n"
    "if not r[1] then return {} end\n"
    "local a = redis.call('HGET', ARGV[1] .. r[1], 'addr')\n"
    "return {r[1], r[2], a or '-'}\n";

enum rstate { R_EMPTY, R_LOOKUP, R_READY };

struct fvisitor;
TAILQ_HEAD(fvisitor_list, fvisitor);

/* a cached route lookup */
struct rentry {
	TAILQ_ENTRY(rentry) link;     /* f->entries */
	enum rstate state;
	int owned;                    /* READY: a node owns it */
	char node[ROUTES_ID_MAX + 1];
	char addr[300];
	uint64_t epoch;
	uint64_t until_ms;            /* fresh until then */
	uint64_t used_ms;
	int stale;                    /* the channel said it moved */
	struct fvisitor_list wait;
	char key[ROUTES_KEY_MAX];
};

/* a visitor on its way to another node */
struct fvisitor {
	TAILQ_ENTRY(fvisitor) link;
	struct forward *f;
	enum fwd_kind kind;
	int fd;
	uint16_t port;
	struct sockaddr_storage peer;
	struct evbuffer *prefix;      /* NULL: none */
	forward_open_fn cb;           /* forward_open's (then fd is -1) */
	void *cb_arg;
	char host[256];
};

/* a listener on a TCP port another node's tunnel owns */
struct fport {
	LIST_ENTRY(fport) link;
	struct forward *f;
	struct evconnlistener *lst;
	uint16_t port;
	unsigned missed;              /* sweeps in a row without its route */
};

struct forward {
	struct server *srv;
	struct nodelink_set *links;
	const struct rstore_script *s_lookup;
	forward_inject_fn inject[FWD_HTTPS + 1];
	forward_tcp_stream_fn tcp_stream;
	void (*route_moved)(struct server *srv, const char *key);
	struct strmap map;            /* route key -> rentry */
	TAILQ_HEAD(, rentry) entries;
	unsigned nentries;
	LIST_HEAD(, fport) ports;
	unsigned nports;
	unsigned waiting;
	unsigned pending;             /* store answers still due: after
					 forward_stop the last one frees f */
	int scanning;
	int closing;
	unsigned fenced;              /* routes fenced at the last beat */
	struct forward_udp_hooks udp; /* UDP's side (server.c sets it) */
	LIST_HEAD(, knode) nodes;     /* the other nodes the store listed */
	unsigned nnodes;
	uint8_t udp_open[8192];       /* UDP ports told open (a bit each) */
	uint8_t udp_miss[8192];       /* ... and missed by the last sweep */
	struct forward_stats st;
};

/* ---- helpers ---- */

static struct forward *
fwd(const struct server *srv)
{
	return srv->fwd;
}

int
forward_on(const struct server *srv)
{
	return srv->fwd != NULL && !srv->fwd->closing;
}

static void
visitor_free(struct fvisitor *v, int reset)
{
	if (v->cb != NULL && reset)
		/* forward_open's caller learns it went nowhere */
		v->cb(v->cb_arg, NULL, "not forwarded");
	if (v->fd >= 0) {
		if (reset)
			proxy_reset_close(v->fd);
		else
			close(v->fd);
	}
	if (v->prefix)
		evbuffer_free(v->prefix);
	v->f->waiting--;
	free(v);
}

/* nobody else has it: this node's own front answers (HTTP(S): a 404
 * page), or a reset (TCP) */
static void
visitor_local(struct fvisitor *v)
{
	struct forward *f = v->f;

	if (!f->closing && (v->kind == FWD_HTTP || v->kind == FWD_HTTPS) &&
	    f->inject[v->kind] != NULL) {
		int fd = v->fd;
		v->fd = -1;
		f->inject[v->kind](f->srv, NULL, fd,
		    (struct sockaddr *)&v->peer, v->prefix);
	}
	f->st.refused += v->kind == FWD_TCP || v->kind == FWD_UDP;
	visitor_free(v, 1);
}

static size_t
hdr_build(const struct fvisitor *v, uint64_t epoch, uint8_t *b)
{
	size_t n = 0, hl = strlen(v->host);

	b[n++] = HDR_VERSION;
	b[n++] = (uint8_t)v->kind;
	for (int i = 7; i >= 0; i--)
		b[n++] = (uint8_t)(epoch >> (8 * i));
	b[n++] = (uint8_t)(v->port >> 8);
	b[n++] = (uint8_t)v->port;
	if (v->peer.ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)&v->peer;
		b[n++] = 6;
		memcpy(b + n, &s6->sin6_addr, 16);
		n += 16;
		memcpy(b + n, &s6->sin6_port, 2);
	} else {
		const struct sockaddr_in *s4 = (const void *)&v->peer;
		b[n++] = 4;
		memcpy(b + n, &s4->sin_addr, 4);
		n += 4;
		memcpy(b + n, &s4->sin_port, 2);
	}
	n += 2;
	b[n++] = (uint8_t)hl;
	memcpy(b + n, v->host, hl);
	return n + hl;
}

/* ---- the forwarder's side ---- */

/* v's route key (v->host lower-cased already) */
static int
visitor_key(const struct fvisitor *v, char *key, size_t cap)
{
	char name[256];

	if (v->kind == FWD_TCP || v->kind == FWD_UDP)
		snprintf(name, sizeof(name), "%u", v->port);
	else
		snprintf(name, sizeof(name), "%s", v->host);
	return routes_key(v->kind == FWD_TCP ? ROUTE_TCP : v->kind ==
	    FWD_UDP ? ROUTE_UDP : ROUTE_HOST, name, key, cap) < 0 ? -1 : 0;
}

static void
on_open(void *arg, struct mux_stream *st, const char *err)
{
	struct fvisitor *v = arg;
	struct forward *f = v->f;
	struct relay_opts o;
	int fd;

	if (st == NULL) {
		char e[LOG_ESC_MAX], key[ROUTES_KEY_MAX];
		struct rentry *re;
		log_info("cluster: a visitor of %s could not be forwarded: %s",
		    v->kind == FWD_TCP ? "a TCP port" : v->kind == FWD_UDP ?
		    "a UDP port" : v->host,
		    log_esc(err, strlen(err), e, sizeof(e)));
		f->st.refused++;
		/* its owner may be gone: the next visitor asks the store */
		if (!f->closing && visitor_key(v, key, sizeof(key)) == 0 &&
		    (re = strmap_get(&f->map, key)) != NULL)
			re->stale = 1;
		visitor_free(v, 1);
		return;
	}
	if (f->closing) {
		mux_stream_abort(st);
		visitor_free(v, 1);
		return;
	}
	if (v->cb != NULL) {
		f->st.out_conns++;
		v->cb(v->cb_arg, st, NULL);
		v->cb = NULL;
		visitor_free(v, 0);
		return;
	}
	if (v->prefix) {
		size_t len;
		/* read from the visitor already: counted like the rest */
		met_add(f->srv->m.fw_bytes[0], evbuffer_get_length(v->prefix));
		while ((len = evbuffer_get_contiguous_space(v->prefix)) > 0) {
			mux_stream_write(st, evbuffer_pullup(v->prefix,
			    (ssize_t)len), len);
			evbuffer_drain(v->prefix, len);
		}
	}
	memset(&o, 0, sizeof(o));
	o.flags = RELAY_RST_IF_REFUSED;
	/* counted as they move (mgrok_cluster_forwarded_bytes_total) */
	o.from_sock = f->srv->m.fw_bytes[0];
	o.to_sock = f->srv->m.fw_bytes[1];
	f->st.out_conns++;
	fd = v->fd;
	v->fd = -1;
	visitor_free(v, 0);
	relay_start(f->srv->base, fd, st, &o);
}

static void
visitor_go(struct fvisitor *v, struct rentry *e)
{
	struct forward *f = v->f;
	uint8_t hdr[64 + 256];

	if (!e->owned || strcmp(e->node, cluster_node(f->srv->cl)) == 0) {
		/* nobody, or this node (its tunnel is gone) */
		visitor_local(v);
		return;
	}
	nodelink_open(f->links, e->node, e->addr, hdr, hdr_build(v, e->epoch,
	    hdr), on_open, v);
}

static void entry_lookup(struct forward *f, struct rentry *e);

static struct rentry *
entry_get(struct forward *f, const char *key)
{
	struct rentry *e = strmap_get(&f->map, key);

	if (e != NULL)
		return e;
	e = xcalloc(1, sizeof(*e));
	snprintf(e->key, sizeof(e->key), "%s", key);
	TAILQ_INIT(&e->wait);
	TAILQ_INSERT_TAIL(&f->entries, e, link);
	strmap_put(&f->map, e->key, e);
	f->nentries++;
	return e;
}

static void
entry_free(struct forward *f, struct rentry *e)
{
	strmap_del(&f->map, e->key);
	TAILQ_REMOVE(&f->entries, e, link);
	f->nentries--;
	free(e);
}

/* the answer: serve whoever waited */
static void
entry_answered(struct forward *f, struct rentry *e, int ok)
{
	struct fvisitor *v;

	while ((v = TAILQ_FIRST(&e->wait)) != NULL) {
		TAILQ_REMOVE(&e->wait, v, link);
		if (ok)
			visitor_go(v, e);
		else
			visitor_local(v); /* nothing known at all */
	}
}

/* one store answer less; the last one after forward_stop frees f */
static void
pending_done(struct forward *f)
{
	if (--f->pending == 0 && f->closing) {
		strmap_free(&f->map);
		free(f);
	}
}

struct lookup {
	struct forward *f;
	struct rentry *e;
};

static void
on_lookup(void *arg, const struct redisReply *r, const char *err)
{
	struct lookup *lk = arg;
	struct forward *f = lk->f;
	struct rentry *e = lk->e;
	int ok = 0;

	free(lk);
	if (f->closing) {
		/* forward_stop left the entry (and f) for this answer */
		entry_answered(f, e, 0);
		entry_free(f, e);
		pending_done(f);
		return;
	}
	f->pending--;
	if (err == NULL && r != NULL && r->type == REDIS_REPLY_ARRAY &&
	    r->elements == 0) {
		e->owned = 0;
		ok = 1;
	} else if (err == NULL && r != NULL && r->type == REDIS_REPLY_ARRAY &&
	    r->elements == 3 && r->element[0]->type == REDIS_REPLY_STRING &&
	    r->element[1]->type == REDIS_REPLY_STRING &&
	    r->element[2]->type == REDIS_REPLY_STRING &&
	    routes_id_ok(r->element[0]->str)) {
		e->owned = 1;
		snprintf(e->node, sizeof(e->node), "%s", r->element[0]->str);
		e->epoch = strtoull(r->element[1]->str, NULL, 10);
		snprintf(e->addr, sizeof(e->addr), "%s", r->element[2]->str);
		ok = 1;
	}
	if (ok) {
		e->state = R_READY;
		e->stale = 0;
		e->until_ms = mtime_ms() + FWD_CACHE_MS;
	} else {
		/* the store's trouble: what was known still serves (a Redis
		 * outage keeps the routes cached working) */
		log_info("cluster: looking up %s: %s", e->key, err ? err :
		    "an answer of another shape");
		ok = e->owned || e->node[0];
		e->state = ok ? R_READY : R_EMPTY;
	}
	entry_answered(f, e, ok);
}

static void
entry_lookup(struct forward *f, struct rentry *e)
{
	struct lookup *lk;
	const char *argv[2] = { e->key, ROUTES_NODE_PREFIX };
	size_t len[2] = { strlen(e->key), strlen(ROUTES_NODE_PREFIX) };
	struct rstore *rs = cluster_store(f->srv->cl);

	lk = xcalloc(1, sizeof(*lk));
	lk->f = f;
	lk->e = e;
	e->state = R_LOOKUP;
	if (rstore_eval(rs, f->s_lookup, on_lookup, lk, 1, 2, argv, len) !=
	    0) {
		/* the store is down: the cache as it is */
		int known = e->owned || e->node[0];
		free(lk);
		e->state = known ? R_READY : R_EMPTY;
		entry_answered(f, e, known);
		return;
	}
	f->pending++;
	f->st.lookups++;
}

static void visitor_start(struct forward *f, struct fvisitor *v,
    const char *host);

void
forward_open(struct server *srv, enum fwd_kind kind, uint16_t port,
    const struct sockaddr *peer, forward_open_fn cb, void *arg)
{
	struct forward *f = fwd(srv);
	struct fvisitor *v = xcalloc(1, sizeof(*v));

	v->f = f;
	v->kind = kind;
	v->fd = -1;
	v->port = port;
	v->cb = cb;
	v->cb_arg = arg;
	memcpy(&v->peer, peer, peer->sa_family == AF_INET6 ?
	    sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
	f->waiting++;
	visitor_start(f, v, NULL);
}

void
forward_visitor(struct server *srv, enum fwd_kind kind, const char *host,
    uint16_t port, int fd, const struct sockaddr *peer,
    struct evbuffer *prefix)
{
	struct forward *f = fwd(srv);
	struct fvisitor *v;

	v = xcalloc(1, sizeof(*v));
	v->f = f;
	v->kind = kind;
	v->fd = fd;
	v->port = port;
	memcpy(&v->peer, peer, peer->sa_family == AF_INET6 ?
	    sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
	f->waiting++;
	if (prefix != NULL && evbuffer_get_length(prefix) > 0) {
		v->prefix = evbuffer_new();
		evbuffer_add_buffer(v->prefix, prefix);
	}
	visitor_start(f, v, host);
}

/* look v's route up (or take it from the cache), then forward v */
static void
visitor_start(struct forward *f, struct fvisitor *v, const char *host)
{
	enum fwd_kind kind = v->kind;
	struct rentry *e;
	char key[ROUTES_KEY_MAX];
	uint64_t now = mtime_ms();

	if (kind != FWD_TCP && kind != FWD_UDP) {
		size_t i;
		for (i = 0; host[i] && i < sizeof(v->host) - 1; i++)
			v->host[i] = (char)tolower((unsigned char)host[i]);
		v->host[i] = '\0';
	}
	if (f->waiting > FWD_MAX_WAIT || visitor_key(v, key, sizeof(key))) {
		visitor_local(v);
		return;
	}
	e = entry_get(f, key);
	e->used_ms = now;
	if (e->state == R_READY && !e->stale && now < e->until_ms) {
		f->st.cache_hits++;
		visitor_go(v, e);
		return;
	}
	TAILQ_INSERT_TAIL(&e->wait, v, link);
	if (e->state != R_LOOKUP)
		entry_lookup(f, e);
}

/* ---- the owner's side ---- */

/* a forwarded visitor's header: 0 and the fields, or -1 */
static int
hdr_parse(const uint8_t *b, size_t n, struct fvisitor *v, uint64_t *epoch)
{
	size_t i = 0, hl;

	if (n < 2 + 8 + 2 + 1 || b[0] != HDR_VERSION)
		return -1;
	v->kind = b[1];
	if (v->kind < FWD_TCP || v->kind > FWD_HTTPS)
		return -1;
	i = 2;
	*epoch = 0;
	for (int k = 0; k < 8; k++)
		*epoch = *epoch << 8 | b[i++];
	v->port = (uint16_t)(b[i] << 8 | b[i + 1]);
	i += 2;
	memset(&v->peer, 0, sizeof(v->peer));
	if (b[i] == 4 && n >= i + 1 + 4 + 2 + 1) {
		struct sockaddr_in *s4 = (void *)&v->peer;
		s4->sin_family = AF_INET;
		memcpy(&s4->sin_addr, b + i + 1, 4);
		memcpy(&s4->sin_port, b + i + 5, 2);
		i += 7;
	} else if (b[i] == 6 && n >= i + 1 + 16 + 2 + 1) {
		struct sockaddr_in6 *s6 = (void *)&v->peer;
		s6->sin6_family = AF_INET6;
		memcpy(&s6->sin6_addr, b + i + 1, 16);
		memcpy(&s6->sin6_port, b + i + 17, 2);
		i += 19;
	} else
		return -1;
	hl = b[i++];
	if (n != i + hl)
		return -1;
	memcpy(v->host, b + i, hl);
	v->host[hl] = '\0';
	for (size_t k = 0; k < hl; k++)
		if (v->host[k] <= ' ' || v->host[k] > '~')
			return -1;
	return 0;
}

static void
on_link_stream(void *arg, const char *from, struct mux_stream *st,
    const uint8_t *hdr, size_t len)
{
	struct forward *f = arg;
	struct server *srv = f->srv;
	struct fvisitor v;
	struct proxy *px = NULL;
	uint64_t epoch;
	const char *why = NULL;
	char e[LOG_ESC_MAX], a[NET_ADDRSTR_MAX];
	int sp[2];
	struct relay_opts o;

	memset(&v, 0, sizeof(v));
	if (f->closing || hdr_parse(hdr, len, &v, &epoch) != 0) {
		why = "a malformed header";
		goto refuse;
	}
	if (v.kind == FWD_TCP || v.kind == FWD_UDP)
		px = registry_by_port(&srv->reg, v.kind == FWD_UDP, v.port);
	else if (v.kind == FWD_HTTP || v.kind == FWD_HTTPS)
		px = registry_by_host(&srv->reg, v.host);
	if (px == NULL) {
		why = "no tunnel here serves it";
		goto refuse;
	}
	if (px->cl_epoch != epoch) {
		why = "its epoch is not this node's claim";
		goto refuse;
	}
	if (forward_fenced(srv, px)) {
		why = "this node's claim is past (cut off from the store)";
		goto refuse;
	}
	if (v.kind == FWD_UDP) {
		if (f->udp.flow == NULL) {
			why = "UDP is not forwarded here";
			goto refuse;
		}
		f->st.in_conns++;
		f->udp.flow(srv, px, st, (struct sockaddr *)&v.peer);
		return;
	}
	if (v.kind == FWD_TCP && f->tcp_stream != NULL &&
	    f->tcp_stream(srv, px, st, (struct sockaddr *)&v.peer) == 0) {
		f->st.in_conns++; /* joined to the agent's stream directly */
		return;
	}
	if (f->inject[v.kind] == NULL) {
		why = "not forwarded for this kind";
		goto refuse;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
	    sp) != 0) {
		why = strerror(errno);
		goto refuse;
	}
	memset(&o, 0, sizeof(o));
	f->st.in_conns++;
	relay_start(srv->base, sp[0], st, &o);
	f->inject[v.kind](srv, v.kind == FWD_TCP ? px : NULL, sp[1],
	    (struct sockaddr *)&v.peer, NULL);
	return;
refuse:
	f->st.refused++;
	log_info("cluster: a visitor forwarded by node %s for %s (from %s) "
	    "refused: %s", from, v.kind == FWD_TCP ? "a TCP port" :
	    log_esc(v.host, strlen(v.host), e, sizeof(e)),
	    v.peer.ss_family ? net_addr_str((struct sockaddr *)&v.peer, a,
	    sizeof(a)) : "?", why);
	mux_stream_abort(st);
}

/* ---- the fence ---- */

int
forward_fenced(struct server *srv, const struct proxy *px)
{
	struct forward *f = fwd(srv);

	if (f == NULL || px->cl_epoch == 0 || mtime_ms() <= px->cl_valid_ms)
		return 0;
	return nodelink_peers_reach_store(f->links, NULL) > 0;
}

/* ---- listeners on the ports other nodes own ---- */

static struct fport *
fport_find(struct forward *f, uint16_t port)
{
	struct fport *p;

	LIST_FOREACH(p, &f->ports, link)
		if (p->port == port)
			return p;
	return NULL;
}

static void
fport_close(struct fport *p)
{
	LIST_REMOVE(p, link);
	p->f->nports--;
	evconnlistener_free(p->lst);
	free(p);
}

static void
fport_on_accept(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct fport *p = arg;

	(void)l;
	(void)salen;
	net_sock_tune(fd);
	forward_visitor(p->f->srv, FWD_TCP, NULL, p->port, fd, sa, NULL);
}

static void
fport_open(struct forward *f, uint16_t port)
{
	struct server *srv = f->srv;
	struct fport *p;
	int fd;

	if (port < srv->cf->start_port || port > srv->cf->end_port ||
	    fport_find(f, port) != NULL ||
	    registry_by_port(&srv->reg, 0, port) != NULL)
		return;
	if ((fd = net_listen_tcp(srv->cf->bind_addr, port, 1024)) < 0) {
		log_debug("cluster: port %u (another node's): %s", port,
		    strerror(errno));
		return;
	}
	p = xcalloc(1, sizeof(*p));
	p->f = f;
	p->port = port;
	if ((p->lst = accept_listen(srv, fd, fport_on_accept, p, 1)) ==
	    NULL) {
		free(p);
		return;
	}
	LIST_INSERT_HEAD(&f->ports, p, link);
	f->nports++;
	log_debug("cluster: port %u is another node's: forwarding", port);
}

static void uport_set(struct forward *f, uint16_t port, int open);

void
forward_take_port(struct server *srv, int udp, uint16_t port)
{
	struct forward *f = fwd(srv);
	struct fport *p;

	if (f == NULL)
		return;
	if (udp)
		uport_set(f, port, 0);
	else if ((p = fport_find(f, port)) != NULL)
		fport_close(p);
}

/* the TCP ports with a route: a SCAN of the route keys, then listeners
 * opened for the new ones and closed for those gone */
struct sweep {
	struct forward *f;
	unsigned rounds;
	uint8_t seen[2][8192];        /* a bit per port: TCP, UDP */
};

#define BIT(m, p) ((m)[(p) >> 3] & (1 << ((p) & 7)))
#define SETBIT(m, p) ((m)[(p) >> 3] |= (uint8_t)(1 << ((p) & 7)))
#define CLRBIT(m, p) ((m)[(p) >> 3] &= (uint8_t)~(1 << ((p) & 7)))

/* a UDP port another node owns: the UDP side listens on it (or stops) */
static void
uport_set(struct forward *f, uint16_t port, int open)
{
	struct server *srv = f->srv;

	if (f->udp.port == NULL || port < srv->cf->start_port ||
	    port > srv->cf->end_port || !BIT(f->udp_open, port) == !open)
		return;
	if (open && registry_by_port(&srv->reg, 1, port) != NULL)
		return;
	if (open)
		SETBIT(f->udp_open, port);
	else
		CLRBIT(f->udp_open, port);
	f->udp.port(srv, port, open);
}

static void
sweep_apply(struct sweep *sw)
{
	struct forward *f = sw->f;
	struct fport *p, *next;
	const struct server_conf *cf = f->srv->cf;

	/* a port closes when two sweeps in a row (2 s apart) miss its
	 * route, not one: a Redis restarted empty is being filled again by
	 * the owners; a release closes it at once (the channel) */
	for (p = LIST_FIRST(&f->ports); p != NULL; p = next) {
		next = LIST_NEXT(p, link);
		if (BIT(sw->seen[0], p->port))
			p->missed = 0;
		else if (++p->missed >= 2)
			fport_close(p);
	}
	for (uint32_t port = cf->start_port; port <= cf->end_port; port++) {
		if (BIT(sw->seen[0], port))
			fport_open(f, (uint16_t)port);
		if (BIT(sw->seen[1], port)) {
			CLRBIT(f->udp_miss, port);
			uport_set(f, (uint16_t)port, 1);
		} else if (BIT(f->udp_open, port)) {
			if (BIT(f->udp_miss, port)) {
				CLRBIT(f->udp_miss, port);
				uport_set(f, (uint16_t)port, 0);
			} else
				SETBIT(f->udp_miss, port);
		}
	}
}

static void
on_scan(void *arg, const struct redisReply *r, const char *err)
{
	struct sweep *sw = arg;
	struct forward *f = sw->f;
	size_t pl = strlen(ROUTES_KEY_PREFIX) + 4; /* and "tcp:", "udp:" */

	if (f->closing) {
		free(sw);
		pending_done(f);
		return;
	}
	if (err != NULL || r->type != REDIS_REPLY_ARRAY ||
	    r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
	    r->element[1]->type != REDIS_REPLY_ARRAY)
		goto done;
	for (size_t i = 0; i < r->element[1]->elements; i++) {
		const struct redisReply *k = r->element[1]->element[i];
		unsigned long port;
		char *end;
		int udp;
		if (k->type != REDIS_REPLY_STRING || k->len <= pl)
			continue;
		udp = strncmp(k->str, ROUTES_KEY_PREFIX "udp:", pl) == 0;
		if (!udp && strncmp(k->str, ROUTES_KEY_PREFIX "tcp:", pl) != 0)
			continue;
		port = strtoul(k->str + pl, &end, 10);
		if (*end == '\0' && port > 0 && port < 65536)
			SETBIT(sw->seen[udp], port);
	}
	if (strcmp(r->element[0]->str, "0") == 0) {
		sweep_apply(sw);
		goto done;
	}
	if (++sw->rounds < SCAN_ROUNDS && rstore_cmd(cluster_store(
	    f->srv->cl), on_scan, sw, "SCAN %s MATCH %s COUNT 1000",
	    r->element[0]->str, ROUTES_KEY_PREFIX "*") == 0)
		return; /* still pending */
done:
	f->scanning = 0;
	free(sw);
	pending_done(f);
}

static void
sweep_start(struct forward *f)
{
	struct sweep *sw;

	if (f->scanning)
		return;
	sw = xcalloc(1, sizeof(*sw));
	sw->f = f;
	if (rstore_cmd(cluster_store(f->srv->cl), on_scan, sw,
	    "SCAN 0 MATCH %s COUNT 1000", ROUTES_KEY_PREFIX "*") != 0) {
		free(sw);
		return;
	}
	f->scanning = 1;
	f->pending++;
}

/* ---- the other nodes: links kept to each, to hear their statuses ---- */

#define KNODES_MAX 256
#define KNODE_KEEP_MS 60000 /* a node not seen in the store this long is
			       forgotten */

struct knode {
	LIST_ENTRY(knode) link;
	char id[ROUTES_ID_MAX + 1];
	char addr[300];
	uint64_t seen_ms;
};

/* a node the store listed, at addr */
static void
knode_seen(struct forward *f, const char *id, const char *addr)
{
	struct knode *k;

	LIST_FOREACH(k, &f->nodes, link)
		if (strcmp(k->id, id) == 0)
			break;
	if (k == NULL) {
		if (f->nnodes >= KNODES_MAX)
			return;
		k = xcalloc(1, sizeof(*k));
		snprintf(k->id, sizeof(k->id), "%s", id);
		LIST_INSERT_HEAD(&f->nodes, k, link);
		f->nnodes++;
	}
	snprintf(k->addr, sizeof(k->addr), "%s", addr);
	k->seen_ms = mtime_ms();
}

/*
 * Every beat: forget nodes the store has not listed for a minute; while
 * the store is out of reach, keep links to the others known (either id
 * dials then): their statuses tell a Redis outage from a partition.
 */
static void
knodes_beat(struct forward *f, int store_up)
{
	struct knode *k, *next;
	uint64_t now = mtime_ms();

	for (k = LIST_FIRST(&f->nodes); k != NULL; k = next) {
		next = LIST_NEXT(k, link);
		if (now - k->seen_ms > KNODE_KEEP_MS) {
			LIST_REMOVE(k, link);
			f->nnodes--;
			free(k);
		} else if (!store_up)
			nodelink_touch(f->links, k->id, k->addr);
	}
}

static void
knodes_free(struct forward *f)
{
	struct knode *k;

	while ((k = LIST_FIRST(&f->nodes)) != NULL) {
		LIST_REMOVE(k, link);
		free(k);
	}
	f->nnodes = 0;
}

struct nodescan {
	struct forward *f;
	unsigned rounds;
};

static void
on_node_addr(void *arg, const struct redisReply *r, const char *err)
{
	char *node = arg;
	struct forward *f = *(struct forward **)node;

	if (!f->closing && err == NULL && r != NULL &&
	    r->type == REDIS_REPLY_STRING) {
		knode_seen(f, node + sizeof(f), r->str);
		/* one link per pair: the smaller id dials */
		if (strcmp(cluster_node(f->srv->cl), node + sizeof(f)) < 0)
			nodelink_touch(f->links, node + sizeof(f), r->str);
	}
	free(node);
	if (f->closing)
		pending_done(f);
	else
		f->pending--;
}

static void
on_node_scan(void *arg, const struct redisReply *r, const char *err)
{
	struct nodescan *ns = arg;
	struct forward *f = ns->f;
	struct rstore *rs = cluster_store(f->srv->cl);
	size_t pl = strlen(ROUTES_NODE_PREFIX);

	if (f->closing) {
		free(ns);
		pending_done(f);
		return;
	}
	if (err != NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_STRING ||
	    r->element[1]->type != REDIS_REPLY_ARRAY)
		goto done;
	for (size_t i = 0; i < r->element[1]->elements && i < 256; i++) {
		const struct redisReply *k = r->element[1]->element[i];
		char *node;
		if (k->type != REDIS_REPLY_STRING || k->len <= pl ||
		    strcmp(k->str + pl, cluster_node(f->srv->cl)) == 0 ||
		    !routes_id_ok(k->str + pl))
			continue;
		/* the forward, then the node's id */
		node = xmalloc(sizeof(f) + strlen(k->str + pl) + 1);
		memcpy(node, &f, sizeof(f));
		strcpy(node + sizeof(f), k->str + pl);
		if (rstore_cmd(rs, on_node_addr, node, "HGET %s addr",
		    k->str) == 0)
			f->pending++;
		else
			free(node);
	}
	if (strcmp(r->element[0]->str, "0") != 0 &&
	    ++ns->rounds < SCAN_ROUNDS && rstore_cmd(rs, on_node_scan, ns,
	    "SCAN %s MATCH %s* COUNT 1000", r->element[0]->str,
	    ROUTES_NODE_PREFIX) == 0)
		return;
done:
	free(ns);
	f->pending--;
}

static void
nodescan_start(struct forward *f)
{
	struct nodescan *ns = xcalloc(1, sizeof(*ns));

	ns->f = f;
	if (rstore_cmd(cluster_store(f->srv->cl), on_node_scan, ns,
	    "SCAN 0 MATCH %s* COUNT 1000", ROUTES_NODE_PREFIX) != 0) {
		free(ns);
		return;
	}
	f->pending++;
}

/* ---- what the store's channel says ---- */

static void
on_routes_msg(void *arg, const char *channel, const char *msg, size_t len)
{
	struct forward *f = arg;
	char verb[16], key[ROUTES_KEY_MAX], node[ROUTES_ID_MAX + 1];
	char num[24];
	char *tok[4] = { verb, key, node, num };
	size_t cap[4] = { sizeof(verb), sizeof(key), sizeof(node),
		sizeof(num) };
	unsigned long long epoch = 0;
	struct rentry *e;
	size_t i = 0;
	int n = 0;

	(void)channel;
	if (f->closing)
		return;
	if (msg == NULL) {
		/* (re)subscribed: what was said meanwhile is lost */
		TAILQ_FOREACH(e, &f->entries, link)
			e->stale = 1;
		return;
	}
	/* "claim KEY NODE EPOCH" or "release KEY": words that fit, or
	 * nothing is done (a message of another shape) */
	while (i < len && n < 4) {
		size_t w = 0;
		while (i < len && msg[i] == ' ')
			i++;
		while (i < len && msg[i] != ' ') {
			if (w + 1 >= cap[n])
				return;
			tok[n][w++] = msg[i++];
		}
		if (w == 0)
			break;
		tok[n++][w] = '\0';
	}
	if (n < 2 || i < len)
		return;
	if (n == 4)
		epoch = strtoull(num, NULL, 10);
	e = strmap_get(&f->map, key);
	if (strcmp(verb, "claim") == 0 && n == 4) {
		int tcp = strncmp(key, ROUTES_KEY_PREFIX "tcp:",
		    strlen(ROUTES_KEY_PREFIX "tcp:")) == 0;
		int udp = strncmp(key, ROUTES_KEY_PREFIX "udp:",
		    strlen(ROUTES_KEY_PREFIX "udp:")) == 0;
		if (e != NULL && e->state == R_READY) {
			if (e->owned && strcmp(e->node, node) == 0) {
				/* the same node, a new epoch */
				e->epoch = epoch;
				e->until_ms = mtime_ms() + FWD_CACHE_MS;
			} else
				e->stale = 1; /* its address: look it up */
		}
		if (strcmp(node, cluster_node(f->srv->cl)) != 0 &&
		    f->route_moved != NULL)
			f->route_moved(f->srv, key);
		if (tcp && strcmp(node, cluster_node(f->srv->cl)) != 0)
			fport_open(f, (uint16_t)strtoul(key +
			    strlen(ROUTES_KEY_PREFIX "tcp:"), NULL, 10));
		if (udp && strcmp(node, cluster_node(f->srv->cl)) != 0)
			uport_set(f, (uint16_t)strtoul(key +
			    strlen(ROUTES_KEY_PREFIX "udp:"), NULL, 10), 1);
	} else if (strcmp(verb, "release") == 0) {
		if (e != NULL && e->state == R_READY)
			e->stale = 1;
		if (strncmp(key, ROUTES_KEY_PREFIX "tcp:",
		    strlen(ROUTES_KEY_PREFIX "tcp:")) == 0) {
			struct fport *p = fport_find(f, (uint16_t)strtoul(key +
			    strlen(ROUTES_KEY_PREFIX "tcp:"), NULL, 10));
			if (p != NULL)
				fport_close(p);
		}
		if (strncmp(key, ROUTES_KEY_PREFIX "udp:",
		    strlen(ROUTES_KEY_PREFIX "udp:")) == 0)
			uport_set(f, (uint16_t)strtoul(key +
			    strlen(ROUTES_KEY_PREFIX "udp:"), NULL, 10), 0);
	}
}

/* ---- the cluster's beat and the store's state ---- */

void
forward_on_beat(struct server *srv)
{
	struct forward *f = fwd(srv);
	struct rentry *e, *next;
	struct proxy *px;
	uint64_t now = mtime_ms();
	unsigned fenced = 0;

	if (f == NULL || f->closing)
		return;
	if (cluster_up(srv->cl)) {
		sweep_start(f);
		nodescan_start(f);
	}
	knodes_beat(f, cluster_up(srv->cl));
	for (e = TAILQ_FIRST(&f->entries); e != NULL; e = next) {
		next = TAILQ_NEXT(e, link);
		if (e->state != R_LOOKUP && TAILQ_EMPTY(&e->wait) &&
		    now - e->used_ms > CACHE_KEEP_MS)
			entry_free(f, e);
	}
	LIST_FOREACH(px, &srv->reg.all, link)
		fenced += forward_fenced(srv, px);
	if (fenced != f->fenced)
		log_warn("cluster: %u routes of this node are fenced (their "
		    "claims are past while other nodes reach the store): not "
		    "served until claimed again", fenced);
	f->fenced = fenced;
}

void
forward_on_store(struct server *srv, int up)
{
	struct forward *f = fwd(srv);

	if (f != NULL)
		nodelink_set_store_up(f->links, up);
}

/* ---- start, stop, figures ---- */

int
forward_start(struct server *srv, forward_inject_fn tcp,
    forward_inject_fn http, forward_inject_fn https, char *err,
    size_t errcap)
{
	struct forward *f = xcalloc(1, sizeof(*f));
	struct nodelink_hooks h = { on_link_stream, f };
	const struct server_conf *cf = srv->cf;

	f->srv = srv;
	f->inject[FWD_TCP] = tcp;
	f->inject[FWD_HTTP] = http;
	f->inject[FWD_HTTPS] = https;
	strmap_init(&f->map);
	TAILQ_INIT(&f->entries);
	LIST_INIT(&f->nodes);
	LIST_INIT(&f->ports);
	if ((f->links = nodelink_new(srv->base, cluster_node(srv->cl),
	    cf->node_addr, cf->cluster_secret, &h, err, errcap)) == NULL) {
		strmap_free(&f->map);
		free(f);
		return -1;
	}
	f->s_lookup = rstore_script_add(cluster_store(srv->cl), lua_lookup);
	if (rstore_subscribe(cluster_store(srv->cl), ROUTES_CHANNEL,
	    on_routes_msg, f) != 0) {
		snprintf(err, errcap, "cannot subscribe to %s", ROUTES_CHANNEL);
		nodelink_free(f->links);
		strmap_free(&f->map);
		free(f);
		return -1;
	}
	srv->fwd = f;
	return 0;
}

void
forward_stop(struct server *srv)
{
	struct forward *f = fwd(srv);
	struct rentry *e, *next;

	if (f == NULL)
		return;
	srv->fwd = NULL;
	f->closing = 1;
	while (!LIST_EMPTY(&f->ports))
		fport_close(LIST_FIRST(&f->ports));
	for (uint32_t port = 1; port < 65536; port++)
		if (BIT(f->udp_open, port))
			uport_set(f, (uint16_t)port, 0);
	nodelink_free(f->links); /* opens still waiting fail: fds closed */
	f->links = NULL;
	knodes_free(f);
	for (e = TAILQ_FIRST(&f->entries); e != NULL; e = next) {
		next = TAILQ_NEXT(e, link);
		if (e->state == R_LOOKUP)
			continue; /* its answer frees it */
		entry_answered(f, e, 0);
		entry_free(f, e);
	}
	if (f->pending == 0) {
		strmap_free(&f->map);
		free(f);
	}
}

void
forward_set_route_moved(struct server *srv,
    void (*fn)(struct server *srv, const char *key))
{
	if (srv->fwd != NULL)
		srv->fwd->route_moved = fn;
}

void
forward_set_tcp_stream(struct server *srv, forward_tcp_stream_fn fn)
{
	if (srv->fwd != NULL)
		srv->fwd->tcp_stream = fn;
}

void
forward_set_udp(struct server *srv, const struct forward_udp_hooks *h)
{
	if (srv->fwd != NULL)
		srv->fwd->udp = *h;
}

void
forward_stats(const struct server *srv, struct forward_stats *st)
{
	const struct forward *f = fwd(srv);
	struct nodelink_stats ns;

	memset(st, 0, sizeof(*st));
	if (f == NULL)
		return;
	*st = f->st;
	st->ports = f->nports;
	for (size_t i = 0; i < sizeof(f->udp_open); i++)
		st->ports += (unsigned)__builtin_popcount(f->udp_open[i]);
	st->waiting = f->waiting;
	nodelink_stats(f->links, &ns);
	st->links = ns.links;
	{
		/* this node, and the others the store listed lately */
		const struct knode *k;
		uint64_t now = mtime_ms();
		st->nodes_up = 1;
		LIST_FOREACH(k, &f->nodes, link)
			st->nodes_up += now - k->seen_ms <= 3 * 2000;
	}
}
